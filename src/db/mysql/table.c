/*
 * table.c - the `table` writer on MariaDB/MySQL, and the connection's SQL
 * methods (exec, query, cursor) for the sql, assert, rebuild and compare
 * steps.
 *
 * A chunk goes to the server as one LOAD DATA LOCAL INFILE statement whose
 * "file" is the chunk, streamed from memory by this client's infile handler
 * (no file is written, and no file of this machine is ever sent: a server
 * asking for one gets the chunk or nothing). Upsert and update load the
 * chunk into a temporary staging table first and merge it with one
 * statement.
 *
 * Nothing is coerced. The session is strict (conn.c), but LOAD DATA LOCAL
 * works as if IGNORE were given: a value MySQL cannot store is stored cut
 * or zeroed, and a row that breaks a key, a CHECK or a foreign key is
 * skipped, each with only a warning. So every statement runs under a
 * savepoint and any warning undoes it; the rows the warnings name ("at row
 * 5") are then sent alone, as an INSERT whose error is the server's own
 * (its number, SQLSTATE and words go to the rejects file), and the rest
 * again in bulk. Warnings that name no row (a key, a CHECK, a foreign key)
 * and errors (a trigger's SIGNAL) split the rows into pieces, each tried
 * under its own savepoint, down to single rows. The chunk's good rows load;
 * nothing of a bad one does.
 *
 * The checkpoint (docs/internals.md, "Exactly-once restart") is a row of
 * nightshift_checkpoint in the target, written in the chunk's InnoDB
 * transaction.
 */
#include "db/mysql/mysql.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A set of rows smaller than this that still fails is sent row by row. */
#define SMALL 8
/* How many pieces a failing set is split into. */
#define FANOUT 16

typedef struct mcol {
    char *name;
    bool key;     /* one of the upsert / update key columns */
    bool boolean; /* TINYINT(1), MySQL's BOOLEAN: true/false words sent as 1/0 */
    bool notnull;
    char *type; /* its column_type: "int(11)", "varchar(20)", ... */
    /* What a value must look like to be sure to load (a guess, held to
     * PostgreSQL's reading of the type: a value outside it is sent alone,
     * where the server decides; one inside it goes in bulk). */
    ns_coltype ct;
} mcol;

typedef struct my_writer {
    ns_writer base;
    MYSQL *m;
    char *where; /* "connection 'target' (mysql://...)" for messages */
    char *table; /* NULL: the connection only */
    ns_write_mode mode;
    mcol *cols; /* one per input field, in input order */
    size_t ncols;
    char *load;         /* LOAD DATA ... INTO the table, or the staging table */
    char *merge;        /* upsert / update: the staging table into the table */
    char *missing;      /* update: the staged rows whose key the table lacks */
    char *one;          /* one row, with ? for each column (the isolation's) */
    ns_my_stmt *ins;    /* `one`, prepared when first needed */
    const char **row_p; /* its parameters (one row's values and lengths) */
    size_t *row_len;
    ns_my_stmt *ckpt_owner, *ckpt_put;
    bool in_txn, replaced;
    int depth; /* savepoints open */
    /* Rows per bulk statement: the whole chunk until a statement fails;
     * then as many as make about one piece in five hold a bad row at the
     * rate seen so far in the step (a failed statement's rows are sent
     * again: small pieces keep that little where bad rows are dense).
     * first_bad: the bad rows the first statement of a piece saw. */
    size_t first_bad;
    double sent_rows, bad_rows;
    ns_my_guess *guess; /* rows the server will likely refuse (guess.c) */
    bool requeue;       /* write_set gave its rows back (see there) */
    bool loading;       /* in its LOAD DATA: the infile handler may send the chunk */
    /* The chunk's rows as LOAD DATA reads them (the infile handler's). */
    ns_buf data;
    size_t sent;
    ns_watchdog *wd;
    double limit;
    ns_my_cancel *cancel;
} my_writer;

/* ------------------------------------------------------------ helpers */

static ns_status fail(my_writer *w, ns_error *err, const char *what)
{
    return ns__my_fail(w->m, err, w->where, what);
}

static ns_status exec(my_writer *w, const char *sql, ns_error *err)
{
    if (mysql_real_query(w->m, sql, (unsigned long)strlen(sql)) != 0)
        return fail(w, err, sql);
    MYSQL_RES *r = mysql_store_result(w->m);
    mysql_free_result(r);
    return NS_OK;
}

static void guard(my_writer *w)
{
    ns__watchdog_arm(w->wd, w->limit, ns__my_interrupt, w->cancel);
}

static ns_status unguard(my_writer *w, ns_status st, ns_error *err)
{
    return ns__watchdog_end(w->wd, st, err, w->where, "the statement", w->limit);
}

static void quote(ns_buf *b, const char *name)
{
    ns__buf_quoted(b, name, '`');
}

/* `schema`.`table` or `table` */
static void table_name(ns_buf *b, const char *t)
{
    const char *dot = strchr(t, '.');
    if (dot) {
        char *s = ns__strndup(t, (size_t)(dot - t));
        quote(b, s ? s : "");
        free(s);
        ns__buf_putc(b, '.');
        quote(b, dot + 1);
    } else {
        quote(b, t);
    }
}

/* ---------------------------------------------------- LOAD DATA's file */

static int infile_init(void **ptr, const char *name, void *arg)
{
    my_writer *w = arg;
    (void)name;
    *ptr = w;
    w->sent = 0;
    /* Only while this writer loads a chunk: a LOAD DATA LOCAL of a sql:
     * step, or a server asking unbidden, gets an error, not a file. */
    return w->loading ? 0 : 1;
}

static int infile_read(void *ptr, char *buf, unsigned int len)
{
    my_writer *w = ptr;
    size_t n = w->data.len - w->sent;
    if (n > len)
        n = len;
    memcpy(buf, w->data.data + w->sent, n);
    w->sent += n;
    return (int)n;
}

static void infile_end(void *ptr)
{
    (void)ptr;
}

static int infile_error(void *ptr, char *msg, unsigned int len)
{
    (void)ptr;
    snprintf(msg, len, "nightshift sends no file (a table writer sends its chunk)");
    return 2000;
}

/* A value as LOAD DATA's default format reads it: tab between fields, a
 * newline after the row, backslash escapes, \N for NULL. */
static void put_value(ns_buf *b, const ns_value *v)
{
    if (!v->ptr) {
        ns__buf_append(b, "\\N", 2);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < v->len; i++) {
        char c = v->ptr[i], e;
        switch (c) {
        case '\\':
            e = '\\';
            break;
        case '\t':
            e = 't';
            break;
        case '\n':
            e = 'n';
            break;
        case '\r':
            e = 'r';
            break;
        default:
            continue;
        }
        ns__buf_append(b, v->ptr + start, i - start);
        ns__buf_putc(b, '\\');
        ns__buf_putc(b, e);
        start = i + 1;
    }
    ns__buf_append(b, v->ptr + start, v->len - start);
}

/* A truth value's word as TINYINT(1) stores it ("1", "0"); NULL when the
 * value is not one of the words PostgreSQL and SQLite read as booleans (a
 * number goes as it is: the server checks it). */
static const char *truth(const ns_value *v)
{
    static const char *const yes[] = {"true", "t", "yes", "y", "on"};
    static const char *const no[] = {"false", "f", "no", "n", "off"};
    if (!v->ptr || v->len == 0 || v->len > 5)
        return NULL;
    for (size_t i = 0; i < 5; i++) {
        if (strlen(yes[i]) == v->len && strncasecmp(v->ptr, yes[i], v->len) == 0)
            return "1";
        if (strlen(no[i]) == v->len && strncasecmp(v->ptr, no[i], v->len) == 0)
            return "0";
    }
    return NULL;
}

/* The value a column is sent: a truth word as 1/0 into TINYINT(1). */
static ns_value sent(const my_writer *w, size_t j, const ns_value *v)
{
    const char *t = w->cols[j].boolean ? truth(v) : NULL;
    return t ? (ns_value){.ptr = t, .len = 1} : *v;
}

static ns_value sent_of(void *arg, size_t j, const ns_value *v)
{
    return sent(arg, j, v);
}

static void put_rows(my_writer *w, ns_item *items, const size_t *idx, size_t n)
{
    w->data.len = 0;
    for (size_t r = 0; r < n; r++) {
        const ns_item *it = &items[idx[r]];
        for (size_t j = 0; j < w->ncols; j++) {
            if (j)
                ns__buf_putc(&w->data, '\t');
            ns_value v = sent(w, j, &it->fields[j]);
            put_value(&w->data, &v);
        }
        if (w->mode == NS_MODE_UPSERT || w->mode == NS_MODE_UPDATE)
            ns__buf_printf(&w->data, "\t%zu", idx[r]);
        ns__buf_putc(&w->data, '\n');
    }
}

/* ------------------------------------------------------------ warnings */

typedef struct warning {
    unsigned code;
    size_t row; /* 1-based row of the statement; 0: it names none */
    char message[512];
} warning;

/* "... at row 5", "Row 5 doesn't contain data ...", "Row 5 was truncated" */
static size_t row_of(const char *m)
{
    const char *p = strstr(m, " at row ");
    if (p)
        return (size_t)strtoull(p + 8, NULL, 10);
    if (strncmp(m, "Row ", 4) == 0)
        return (size_t)strtoull(m + 4, NULL, 10);
    return 0;
}

/* The warnings of the last statement (at most `max`). */
static ns_status read_warnings(my_writer *w, warning *out, size_t max, size_t *n, ns_error *err)
{
    *n = 0;
    if (mysql_real_query(w->m, "SHOW WARNINGS", 13) != 0)
        return fail(w, err, "SHOW WARNINGS");
    MYSQL_RES *r = mysql_store_result(w->m);
    if (!r)
        return fail(w, err, "SHOW WARNINGS");
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r)) && *n < max) {
        warning *x = &out[(*n)++];
        x->code = row[1] ? (unsigned)strtoul(row[1], NULL, 10) : 0;
        snprintf(x->message, sizeof(x->message), "%s", row[2] ? row[2] : "");
        x->row = row_of(x->message);
    }
    mysql_free_result(r);
    return NS_OK;
}

/* The column a server message names: "for column 'n'", "for column
 * `db`.`t`.`n`", "Column 'n' cannot be null"; NULL when none. */
static const char *column_of(my_writer *w, const char *m, ns_arena *a)
{
    const char *p = strstr(m, "olumn ");
    if (!p)
        return NULL;
    p += 6;
    const char *end = NULL;
    if (*p == '\'') {
        p++;
        end = strchr(p, '\'');
    } else if (*p == '`') {
        /* the last of `db`.`t`.`c` */
        for (;;) {
            const char *close = strchr(p + 1, '`');
            if (!close)
                return NULL;
            if (close[1] == '.' && close[2] == '`') {
                p = close + 2;
                continue;
            }
            p++;
            end = close;
            break;
        }
    }
    if (!end)
        return NULL;
    for (size_t j = 0; j < w->ncols; j++)
        if (strlen(w->cols[j].name) == (size_t)(end - p) &&
            strncasecmp(w->cols[j].name, p, (size_t)(end - p)) == 0)
            return w->cols[j].name;
    return ns__arena_strndup(a, p, (size_t)(end - p));
}

static void reject(my_writer *w, ns_item *it, unsigned code, const char *state, const char *msg,
                   ns_arena *a)
{
    char text[700];
    snprintf(text, sizeof(text), "%s (MySQL error %u)", msg, code);
    it->code = ns__arena_strndup(a, state, strlen(state));
    it->column = column_of(w, msg, a);
    it->message = ns__arena_strndup(a, text, strlen(text));
}

/* ---------------------------------------------------------- savepoints */

static ns_status savepoint(my_writer *w, const char *verb, int depth, ns_error *err)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "%s ns_s%d", verb, depth);
    return exec(w, sql, err);
}

/* ------------------------------------------------------ one row alone */

/* Sends one row as its own statement (`one`): its error, or a warning it
 * raises, is the row's, and nothing of it stays. */
static ns_status one_row(my_writer *w, ns_item *it, ns_arena *a, ns_error *err)
{
    ns_status st;
    if (!w->row_p)
        w->row_p = calloc(w->ncols ? w->ncols : 1, sizeof(*w->row_p));
    if (!w->row_len)
        w->row_len = calloc(w->ncols ? w->ncols : 1, sizeof(*w->row_len));
    if (!w->row_p || !w->row_len)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    const char **p = w->row_p;
    size_t *len = w->row_len;
    if (!w->ins && (st = ns__my_prepare(w->m, w->one, strlen(w->one), &w->ins, err, w->where,
                                        "prepare the row statement")) != NS_OK)
        return st;
    /* update: SET the other columns, WHERE the keys (the statement's order) */
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t j = 0; j < w->ncols; j++) {
            /* update: the SET columns first, then the keys; else in order */
            bool now = w->mode == NS_MODE_UPDATE ? w->cols[j].key == (pass == 1) : pass == 0;
            if (!now)
                continue;
            ns_value v = sent(w, j, &it->fields[j]);
            len[k] = v.len;
            p[k++] = v.ptr;
        }
    ns_error e = {0};
    if ((st = savepoint(w, "SAVEPOINT", w->depth + 1, err)) == NS_OK)
        st = ns__my_execute_n(w->ins, p, len, k, &e);
    else
        e = *err;
    if (st != NS_OK) {
        unsigned no = ns__my_stmt_errno(w->ins);
        if (st == NS_ENOMEM || no == 0 || ns__my_chunk_failure(no)) {
            *err = e; /* the chunk's failure, not the row's */
            return st;
        }
        char msg[512], state[6];
        snprintf(msg, sizeof(msg), "%s", ns__my_stmt_error(w->ins));
        snprintf(state, sizeof(state), "%s", ns__my_stmt_state(w->ins));
        if ((st = savepoint(w, "ROLLBACK TO SAVEPOINT", w->depth + 1, err)) != NS_OK)
            return st;
        reject(w, it, no, state, msg, a);
        return NS_OK;
    }
    int64_t changed = ns__my_affected(w->ins);
    if (mysql_warning_count(w->m)) {
        warning x;
        size_t n;
        if ((st = read_warnings(w, &x, 1, &n, err)) != NS_OK)
            return st;
        if ((st = savepoint(w, "ROLLBACK TO SAVEPOINT", w->depth + 1, err)) != NS_OK)
            return st;
        if (n)
            reject(w, it, x.code, ns__my_errno_state(x.code), x.message, a);
        else
            reject(w, it, 0, "01000", "a warning the server did not list", a);
        return NS_OK;
    }
    if (w->mode == NS_MODE_UPDATE && changed == 0) {
        it->code = "NS_NO_ROW";
        it->message = "no row of the table has this key";
    }
    /* Not released: the next SAVEPOINT of that name replaces it (a round
     * trip saved per row). */
    return NS_OK;
}

/* ------------------------------------------------------------ the bulk */

/* Whether a row is likely to be refused: NULL in a NOT NULL column, a value
 * its column's type does not read (as PostgreSQL would read the type; more
 * fractional digits than a DECIMAL's scale, which MySQL rounds with a note).
 * Such a row is sent alone, so the bulk around it loads at the first try. */
static bool doubtful(const my_writer *w, const ns_item *it)
{
    for (size_t j = 0; j < w->ncols; j++) {
        const mcol *c = &w->cols[j];
        ns_value v = sent(w, j, &it->fields[j]);
        if (!v.ptr) {
            if (c->notnull)
                return true;
            continue;
        }
        if (c->ct.kind == NS_CT_ANY)
            continue;
        ns_bound b;
        const char *code;
        char msg[8];
        if (!ns__coltype_check(&c->ct, v.ptr, v.len, &b, &code, msg, sizeof(msg)))
            return true;
        if (c->ct.kind == NS_CT_NUMERIC) {
            const char *dot = memchr(v.ptr, '.', v.len);
            size_t frac = 0;
            for (const char *q = dot ? dot + 1 : v.ptr + v.len;
                 q < v.ptr + v.len && *q >= '0' && *q <= '9'; q++)
                frac++;
            if (frac > (size_t)c->ct.scale || memchr(v.ptr, 'e', v.len) ||
                memchr(v.ptr, 'E', v.len))
                return true;
        }
    }
    return false;
}

/*
 * Sends rows idx[0..n) in one statement (two for upsert and update: the
 * staging table's load and the merge). *clean: no error, no warning, and
 * the rows are in. Otherwise their effect is undone (ROLLBACK TO the
 * savepoint) and rows[] (1-based, as the warnings name them) marks the rows
 * a warning named; *unnamed tells that a warning or error named none.
 */
static ns_status bulk(my_writer *w, ns_item *items, const size_t *idx, size_t n, bool *clean,
                      bool *named, bool *unnamed, ns_error *err)
{
    ns_status st;
    *clean = false;
    *unnamed = false;
    memset(named, 0, n * sizeof(*named));
    put_rows(w, items, idx, n);
    if (w->data.failed)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    int depth = ++w->depth;
    if ((st = savepoint(w, "SAVEPOINT", depth, err)) != NS_OK)
        goto out;
    if (w->merge && (st = exec(w, "DELETE FROM ns_stage", err)) != NS_OK)
        goto out;
    bool failed = false;
    w->loading = true;
    int rc = mysql_real_query(w->m, w->load, (unsigned long)strlen(w->load));
    w->loading = false;
    if (rc != 0) {
        unsigned no = mysql_errno(w->m);
        if (ns__my_chunk_failure(no)) {
            st = fail(w, err, "load the chunk");
            if (no == 1148 || no == 3948)
                ns__err_prefix(err, "the server does not allow LOAD DATA LOCAL INFILE (set "
                                    "local_infile = ON on the server; MySQL 8 has it off)");
            goto out;
        }
        failed = true;
    }
    if (!failed && mysql_warning_count(w->m)) {
        size_t cap = n + 16, nw;
        warning *ws = malloc(cap * sizeof(*ws));
        if (!ws) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
        st = read_warnings(w, ws, cap, &nw, err);
        if (depth == 1)
            w->first_bad = nw ? nw : 1;
        for (size_t i = 0; st == NS_OK && i < nw; i++) {
            ns__my_guess_arm(w->guess, ws[i].code);
            if (ws[i].row >= 1 && ws[i].row <= n)
                named[ws[i].row - 1] = true;
            else
                *unnamed = true;
        }
        free(ws);
        if (st != NS_OK)
            goto out;
        failed = true;
    }
    if (!failed && w->merge) {
        /* update: the rows whose key the table lacks are not updated;
         * named as such (and, as their own, say NS_NO_ROW when alone). */
        if (w->missing) {
            if (mysql_real_query(w->m, w->missing, (unsigned long)strlen(w->missing)) != 0) {
                st = fail(w, err, "find the keys the table lacks");
                goto out;
            }
            MYSQL_RES *r = mysql_store_result(w->m);
            MYSQL_ROW row;
            while (r && (row = mysql_fetch_row(r))) {
                size_t item = (size_t)strtoull(row[0], NULL, 10);
                items[item].code = "NS_NO_ROW";
                items[item].message = "no row of the table has this key";
            }
            mysql_free_result(r);
        }
        if (mysql_real_query(w->m, w->merge, (unsigned long)strlen(w->merge)) != 0) {
            if (ns__my_chunk_failure(mysql_errno(w->m))) {
                st = fail(w, err, "merge the chunk");
                goto out;
            }
            failed = true;
            *unnamed = true;
        } else if (mysql_warning_count(w->m)) {
            failed = true;
            *unnamed = true;
        }
        if (failed && w->missing)
            for (size_t r = 0; r < n; r++)
                if (items[idx[r]].code && strcmp(items[idx[r]].code, "NS_NO_ROW") == 0)
                    items[idx[r]].code = items[idx[r]].message = NULL;
    }
    if (failed && depth == 1 && !w->first_bad)
        w->first_bad = 1; /* an error: at least one */
    if (failed) {
        bool any = false;
        for (size_t r = 0; r < n; r++)
            any |= named[r];
        *unnamed |= !any; /* an error: it names no row */
        st = savepoint(w, "ROLLBACK TO SAVEPOINT", depth, err);
    } else {
        *clean = true; /* the savepoint stays: the next of its name replaces it */
    }
out:
    w->depth--;
    return st;
}

/*
 * Writes rows idx[0..n): in bulk when they are clean; else the rows the
 * warnings named alone and the others again in bulk, or, when the warnings
 * name no row, the rows in FANOUT pieces, each again by these rules. top:
 * the call is write_runs' (a split's is not): its first failure of a kind
 * the guess learns from gives the rows back (w->requeue) to be guessed at.
 */
static ns_status write_set(my_writer *w, ns_item *items, const size_t *idx, size_t n, bool top,
                           ns_arena *a, ns_error *err)
{
    ns_status st;
    if (n == 0)
        return NS_OK;
    if (n < SMALL && w->mode != NS_MODE_INSERT && w->mode != NS_MODE_REPLACE) {
        for (size_t r = 0; r < n; r++)
            if ((st = one_row(w, &items[idx[r]], a, err)) != NS_OK)
                return st;
        return NS_OK;
    }
    bool clean, unnamed;
    bool *named = calloc(n, sizeof(*named));
    if (!named)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    int armed = ns__my_guess_armed(w->guess);
    if ((st = bulk(w, items, idx, n, &clean, named, &unnamed, err)) != NS_OK || clean)
        goto out;
    if (top && ns__my_guess_armed(w->guess) > armed) {
        /* The first failure of its kind: the rows go back to be guessed
         * at first (undone already), rather than be split here. */
        w->requeue = true;
        goto out;
    }
    if (n == 1) {
        st = one_row(w, &items[idx[0]], a, err);
        goto out;
    }
    if (!unnamed) {
        /* The named rows alone, the stretches between them in bulk. */
        size_t from = 0;
        for (size_t r = 0; r <= n && st == NS_OK; r++) {
            if (r < n && !named[r])
                continue;
            if ((st = write_set(w, items, idx + from, r - from, false, a, err)) != NS_OK)
                break;
            if (r < n)
                st = one_row(w, &items[idx[r]], a, err);
            from = r + 1;
        }
        goto out;
    }
    if (n < SMALL) {
        for (size_t r = 0; r < n && st == NS_OK; r++)
            st = one_row(w, &items[idx[r]], a, err);
        goto out;
    }
    /* A few hundred rows are split in two: the half that loads is kept. */
    size_t parts = n <= 256 ? 2 : FANOUT;
    size_t piece = (n + parts - 1) / parts;
    if (piece < SMALL / 2)
        piece = SMALL / 2;
    for (size_t from = 0; from < n && st == NS_OK; from += piece)
        st = write_set(w, items, idx + from, from + piece > n ? n - from : piece, false, a, err);
out:
    free(named);
    return st;
}

/* --------------------------------------------------------------- open */

#define CKPT_TABLE                                                                                 \
    "CREATE TABLE IF NOT EXISTS nightshift_checkpoint ("                                           \
    "  job_name varchar(200) NOT NULL,"                                                            \
    "  job_key varchar(64) NOT NULL,"                                                              \
    "  step_name varchar(200) NOT NULL,"                                                           \
    "  partition_name varchar(200) NOT NULL DEFAULT '',"                                           \
    "  execution_id bigint NOT NULL,"                                                              \
    "  step_execution_id bigint NOT NULL,"                                                         \
    "  context longtext NOT NULL,"                                                                 \
    "  updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"                              \
    "  PRIMARY KEY (job_name, job_key, step_name, partition_name)"                                 \
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

typedef struct tcolumn {
    char *name, *type;
    bool notnull, has_default, generated, boolean;
    ns_coltype ct;
} tcolumn;

/* A MySQL column's type as the bulk's guess reads it (mcol.ct). */
static void coltype_of(const char *const *v, ns_coltype *ct)
{
    static const struct {
        const char *name;
        int64_t min, max; /* signed; unsigned: 0 .. 2 * max + 1 */
    } ints[] = {{"tinyint", INT8_MIN, INT8_MAX},
                {"smallint", INT16_MIN, INT16_MAX},
                {"mediumint", -8388608, 8388607},
                {"int", INT32_MIN, INT32_MAX},
                {"bigint", INT64_MIN, INT64_MAX}};
    const char *type = v[0] ? v[0] : "", *full = v[1] ? v[1] : "";
    memset(ct, 0, sizeof(*ct));
    snprintf(ct->decl, sizeof(ct->decl), "%s", full);
    ct->kind = NS_CT_ANY;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        if (strcmp(type, ints[i].name) == 0) {
            bool unsig = strstr(full, "unsigned") != NULL;
            ct->kind = NS_CT_INT;
            ct->min = unsig ? 0 : ints[i].min;
            /* bigint unsigned's top half is left to the server */
            ct->max = unsig && ints[i].max < INT64_MAX ? 2 * ints[i].max + 1 : ints[i].max;
            return;
        }
    if (strcmp(type, "varchar") == 0 || strcmp(type, "char") == 0) {
        ct->kind = NS_CT_TEXT;
        ct->length = v[2] ? strtoll(v[2], NULL, 10) : 0;
    } else if (strcmp(type, "decimal") == 0) {
        ct->kind = NS_CT_NUMERIC;
        ct->precision = v[3] ? atoi(v[3]) : 0;
        ct->scale = v[4] ? atoi(v[4]) : 0;
    } else if (strcmp(type, "double") == 0 || strcmp(type, "float") == 0) {
        ct->kind = NS_CT_REAL;
    } else if (strcmp(type, "date") == 0) {
        ct->kind = NS_CT_DATE;
    } else if (strcmp(type, "datetime") == 0 || strcmp(type, "timestamp") == 0) {
        ct->kind = NS_CT_TIMESTAMP;
    }
}

static void free_columns(tcolumn *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        free(t[i].name);
        free(t[i].type);
    }
    free(t);
}

/* The table's columns, from information_schema (in the URL's database,
 * unless the name says `schema.table`). */
static ns_status read_table(my_writer *w, tcolumn **out, size_t *n, ns_error *err)
{
    const char *dot = strchr(w->table, '.');
    char *schema = dot ? ns__strndup(w->table, (size_t)(dot - w->table)) : NULL;
    const char *p[2] = {dot ? dot + 1 : w->table, schema};
    const char *sql =
        dot ? "SELECT column_name, is_nullable = 'NO', column_default IS NOT NULL OR extra LIKE "
              "'%auto_increment%', extra LIKE '%GENERATED%', column_type = 'tinyint(1)',"
              " data_type, column_type, character_maximum_length, numeric_precision, numeric_scale"
              " FROM information_schema.columns"
              " WHERE table_name = ? AND table_schema = ? ORDER BY ordinal_position"
            : "SELECT column_name, is_nullable = 'NO', column_default IS NOT NULL OR extra LIKE "
              "'%auto_increment%', extra LIKE '%GENERATED%', column_type = 'tinyint(1)',"
              " data_type, column_type, character_maximum_length, numeric_precision, numeric_scale"
              " FROM information_schema.columns"
              " WHERE table_name = ? AND table_schema = DATABASE() ORDER BY ordinal_position";
    ns_my_stmt *s = NULL;
    tcolumn *t = NULL;
    size_t nt = 0, cap = 0;
    ns_status st = ns__my_run(w->m, sql, strlen(sql), p, dot ? 2 : 1, &s, err, w->where,
                              "read the table's columns");
    free(schema);
    for (bool eof = false; st == NS_OK;) {
        const char *const *v;
        if ((st = ns__my_fetch(s, &v, &eof, err)) != NS_OK || eof)
            break;
        if (nt == cap) {
            tcolumn *g = realloc(t, (cap = cap ? 2 * cap : 16) * sizeof(*t));
            if (!g) {
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                break;
            }
            t = g;
        }
        tcolumn *c = &t[nt++];
        c->name = ns__strdup(v[0] ? v[0] : "");
        c->notnull = v[1] && strcmp(v[1], "1") == 0;
        c->has_default = v[2] && strcmp(v[2], "1") == 0;
        c->generated = v[3] && strcmp(v[3], "1") == 0;
        c->boolean = v[4] && strcmp(v[4], "1") == 0;
        coltype_of(v + 5, &c->ct);
        c->type = ns__strdup(v[6] ? v[6] : "text");
        if (!c->type)
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        if (!c->name)
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    ns__my_close(s);
    if (st == NS_OK && nt == 0)
        st = ns__err(err, NS_ESCHEMA, NULL, "%s: table %s does not exist", w->where, w->table);
    if (st != NS_OK) {
        free_columns(t, nt);
        return st;
    }
    *out = t;
    *n = nt;
    return NS_OK;
}

static bool is_key(const ns_writer_cfg *cfg, const char *col)
{
    for (size_t i = 0; i < cfg->nkey; i++)
        if (strcasecmp(cfg->key[i], col) == 0)
            return true;
    return false;
}

/* The input columns onto the table's: every input column is one of the
 * table's (names compare without regard to case, as MySQL's do). */
static ns_status map_columns(my_writer *w, const ns_writer_cfg *cfg, ns_error *err)
{
    tcolumn *t = NULL;
    size_t nt = 0;
    ns_status st = read_table(w, &t, &nt, err);
    if (st != NS_OK)
        return st;
    size_t *used = calloc(nt, sizeof(*used));
    if (!used || !(w->cols = calloc(cfg->ncolumns ? cfg->ncolumns : 1, sizeof(*w->cols)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cfg->ncolumns && st == NS_OK; i++) {
        size_t k = 0;
        while (k < nt && strcasecmp(t[k].name, cfg->columns[i]) != 0)
            k++;
        if (k == nt) {
            ns_buf names = {0};
            for (size_t j = 0; j < nt; j++)
                if (!t[j].generated)
                    ns__buf_printf(&names, "%s%s", names.len ? ", " : "", t[j].name);
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input column '%s' has no column in table %s (its columns: %s)",
                         cfg->columns[i], w->table, ns__buf_cstr(&names));
            ns__buf_free(&names);
        } else if (t[k].generated) {
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input column '%s' is a generated column of table %s and cannot be "
                         "written",
                         cfg->columns[i], w->table);
        } else if (used[k]) {
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input columns '%s' and '%s' both name column %s of table %s (names "
                         "match without regard to case); rename one",
                         cfg->columns[used[k] - 1], cfg->columns[i], t[k].name, w->table);
        } else {
            used[k] = i + 1;
            mcol *c = &w->cols[w->ncols++];
            c->key = is_key(cfg, t[k].name);
            c->boolean = t[k].boolean;
            c->notnull = t[k].notnull;
            c->ct = t[k].ct;
            c->type = t[k].type;
            t[k].type = NULL;
            if (!(c->name = ns__strdup(t[k].name)))
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        }
    }
    for (size_t k = 0; k < nt && st == NS_OK; k++)
        if (!used[k] && t[k].notnull && !t[k].has_default && !t[k].generated &&
            w->mode != NS_MODE_UPDATE)
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "column %s.%s is NOT NULL without a default, but the input has no "
                         "column '%s'",
                         w->table, t[k].name, t[k].name);
    for (size_t i = 0; i < cfg->nkey && st == NS_OK; i++) {
        bool found = false;
        for (size_t k = 0; k < w->ncols; k++)
            found |= strcasecmp(cfg->key[i], w->cols[k].name) == 0;
        if (!found)
            st = ns__err(err, NS_ESCHEMA, NULL, "%s key column '%s' is not in the input",
                         w->mode == NS_MODE_UPDATE ? "update" : "upsert", cfg->key[i]);
    }
out:
    free(used);
    free_columns(t, nt);
    return st;
}

static void column_list(const my_writer *w, ns_buf *b, const char *prefix)
{
    for (size_t j = 0; j < w->ncols; j++) {
        ns__buf_printf(b, "%s%s", j ? ", " : "", prefix);
        quote(b, w->cols[j].name);
    }
}

/* The statements of the chunk: the load, the merge, the row alone. */
static ns_status build_sql(my_writer *w, ns_error *err)
{
    ns_buf b = {0};
    ns_status st = NS_OK;
    bool staged = w->mode == NS_MODE_UPSERT || w->mode == NS_MODE_UPDATE;
    bool mariadb = strstr(mysql_get_server_info(w->m), "MariaDB") != NULL;

    if (staged) {
        /* The staging table: the table's columns and types (NOT NULL kept),
         * no keys, plus the item each row is. */
        ns__buf_printf(&b, "CREATE TEMPORARY TABLE ns_stage ENGINE=InnoDB SELECT ");
        column_list(w, &b, "");
        ns__buf_printf(&b, ", CAST(0 AS SIGNED) AS ns_item FROM ");
        table_name(&b, w->table);
        ns__buf_printf(&b, " LIMIT 0");
        if (!b.failed && (st = exec(w, "DROP TEMPORARY TABLE IF EXISTS ns_stage", err)) == NS_OK)
            st = exec(w, ns__buf_cstr(&b), err);
        if (st != NS_OK)
            goto out;
        b.len = 0;
    }
    ns__buf_printf(&b, "LOAD DATA LOCAL INFILE 'nightshift' INTO TABLE ");
    if (staged)
        ns__buf_printf(&b, "ns_stage");
    else
        table_name(&b, w->table);
    ns__buf_printf(&b, " CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\'"
                       " LINES TERMINATED BY '\\n' (");
    column_list(w, &b, "");
    ns__buf_printf(&b, staged ? ", ns_item)" : ")");
    w->load = ns__strdup(ns__buf_cstr(&b));

    if (w->mode == NS_MODE_UPSERT) {
        b.len = 0;
        ns__buf_printf(&b, "INSERT INTO ");
        table_name(&b, w->table);
        ns__buf_printf(&b, " (");
        column_list(w, &b, "");
        ns__buf_printf(&b, ") SELECT ");
        column_list(w, &b, "s.");
        ns__buf_printf(&b, " FROM ns_stage s ORDER BY s.ns_item ON DUPLICATE KEY UPDATE ");
        bool any = false;
        for (size_t j = 0; j < w->ncols; j++) {
            if (w->cols[j].key)
                continue;
            ns__buf_printf(&b, "%s", any ? ", " : "");
            quote(&b, w->cols[j].name);
            ns__buf_printf(&b, " = s.");
            quote(&b, w->cols[j].name);
            any = true;
        }
        if (!any) { /* every column is a key: nothing to change */
            quote(&b, w->cols[0].name);
            ns__buf_printf(&b, " = ");
            table_name(&b, w->table);
            ns__buf_putc(&b, '.');
            quote(&b, w->cols[0].name);
        }
        w->merge = ns__strdup(ns__buf_cstr(&b));
    } else if (w->mode == NS_MODE_UPDATE) {
        ns_buf on = {0};
        size_t nk = 0;
        for (size_t j = 0; j < w->ncols; j++) {
            if (!w->cols[j].key)
                continue;
            ns__buf_printf(&on, "%st.", nk++ ? " AND " : "");
            quote(&on, w->cols[j].name);
            ns__buf_printf(&on, " = s.");
            quote(&on, w->cols[j].name);
        }
        b.len = 0;
        ns__buf_printf(&b, "UPDATE ");
        table_name(&b, w->table);
        ns__buf_printf(&b, " t JOIN ns_stage s ON %s SET ", ns__buf_cstr(&on));
        size_t ns = 0;
        for (size_t j = 0; j < w->ncols; j++) {
            if (w->cols[j].key)
                continue;
            ns__buf_printf(&b, "%st.", ns++ ? ", " : "");
            quote(&b, w->cols[j].name);
            ns__buf_printf(&b, " = s.");
            quote(&b, w->cols[j].name);
        }
        if (!ns) { /* only keys: nothing to set */
            ns__buf_printf(&b, "t.");
            quote(&b, w->cols[0].name);
            ns__buf_printf(&b, " = t.");
            quote(&b, w->cols[0].name);
        }
        w->merge = ns__strdup(ns__buf_cstr(&b));
        b.len = 0;
        ns__buf_printf(&b, "SELECT s.ns_item FROM ns_stage s WHERE NOT EXISTS (SELECT 1 FROM ");
        table_name(&b, w->table);
        ns__buf_printf(&b, " t WHERE %s)", ns__buf_cstr(&on));
        w->missing = ns__strdup(ns__buf_cstr(&b));
        ns__buf_free(&on);
    }

    b.len = 0;
    if (w->mode == NS_MODE_UPDATE) {
        ns__buf_printf(&b, "UPDATE ");
        table_name(&b, w->table);
        ns__buf_printf(&b, " SET ");
        size_t ns = 0;
        for (size_t j = 0; j < w->ncols; j++)
            if (!w->cols[j].key) {
                ns__buf_printf(&b, "%s", ns++ ? ", " : "");
                quote(&b, w->cols[j].name);
                ns__buf_printf(&b, " = ?");
            }
        if (!ns) {
            quote(&b, w->cols[0].name);
            ns__buf_printf(&b, " = ");
            quote(&b, w->cols[0].name);
        }
        ns__buf_printf(&b, " WHERE ");
        size_t nk = 0;
        for (size_t j = 0; j < w->ncols; j++)
            if (w->cols[j].key) {
                ns__buf_printf(&b, "%s", nk++ ? " AND " : "");
                quote(&b, w->cols[j].name);
                ns__buf_printf(&b, " = ?");
            }
    } else {
        ns__buf_printf(&b, "INSERT INTO ");
        table_name(&b, w->table);
        ns__buf_printf(&b, " (");
        column_list(w, &b, "");
        ns__buf_printf(&b, ") VALUES (");
        for (size_t j = 0; j < w->ncols; j++)
            ns__buf_printf(&b, "%s?", j ? ", " : "");
        ns__buf_printf(&b, ")");
        if (w->mode == NS_MODE_UPSERT) {
            /* MariaDB reads VALUES(c); MySQL 8 warns of it and reads an alias. */
            if (!mariadb)
                ns__buf_printf(&b, " AS ns_new");
            ns__buf_printf(&b, " ON DUPLICATE KEY UPDATE ");
            bool any = false;
            for (size_t j = 0; j < w->ncols; j++) {
                if (w->cols[j].key)
                    continue;
                ns__buf_printf(&b, "%s", any ? ", " : "");
                quote(&b, w->cols[j].name);
                ns__buf_printf(&b, mariadb ? " = VALUES(" : " = ns_new.");
                quote(&b, w->cols[j].name);
                if (mariadb)
                    ns__buf_putc(&b, ')');
                any = true;
            }
            if (!any) {
                quote(&b, w->cols[0].name);
                ns__buf_printf(&b, " = ");
                quote(&b, w->cols[0].name);
            }
        }
    }
    w->one = ns__strdup(ns__buf_cstr(&b));
    if (!w->load || !w->one ||
        (staged && (!w->merge || (w->mode == NS_MODE_UPDATE && !w->missing))))
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
out:
    ns__buf_free(&b);
    return st;
}

#define CKPT_WHERE " WHERE job_name = ? AND job_key = ? AND step_name = ? AND partition_name = ?"
#define CKPT_OWNER "SELECT execution_id, context FROM nightshift_checkpoint" CKPT_WHERE
/* The fenced save: only while the row is this execution's. */
#define CKPT_PUT                                                                                   \
    "UPDATE nightshift_checkpoint SET step_execution_id = ?, context = ?,"                         \
    " updated_at = CURRENT_TIMESTAMP(6)" CKPT_WHERE " AND execution_id = ?"
#define CKPT_CLAIM                                                                                 \
    "INSERT INTO nightshift_checkpoint (job_name, job_key, step_name, partition_name,"             \
    " execution_id, step_execution_id, context) VALUES (?, ?, ?, ?, ?, ?, '')"                     \
    " ON DUPLICATE KEY UPDATE execution_id = VALUES(execution_id),"                                \
    " step_execution_id = VALUES(step_execution_id), updated_at = CURRENT_TIMESTAMP(6)"

static ns_status prep(my_writer *w, const char *sql, ns_my_stmt **out, ns_error *err)
{
    return ns__my_prepare(w->m, sql, strlen(sql), out, err, w->where, "prepare checkpoint");
}

static ns_status open_guess(my_writer *w, ns_error *err)
{
    const char **names = calloc(w->ncols ? w->ncols : 1, sizeof(*names));
    const char **types = calloc(w->ncols ? w->ncols : 1, sizeof(*types));
    const char *dot = strchr(w->table, '.');
    char *schema = dot ? ns__strndup(w->table, (size_t)(dot - w->table)) : NULL;
    ns_status st = NS_OK;
    if (!names || !types || (dot && !schema))
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t j = 0; st == NS_OK && j < w->ncols; j++) {
        names[j] = w->cols[j].name;
        types[j] = w->cols[j].type;
    }
    /* Keys seen earlier in the load refuse a row only where rows are added. */
    bool keys = w->mode == NS_MODE_INSERT || w->mode == NS_MODE_REPLACE;
    if (st == NS_OK)
        st = ns__my_guess_open(w->m, schema, dot ? dot + 1 : w->table, names, types, w->ncols, keys,
                               &w->guess, err, w->where);
    free(schema);
    free(names);
    free(types);
    return st;
}

static int by_name(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* upsert is ON DUPLICATE KEY UPDATE: without a unique index on exactly its
 * key, MySQL would insert every row (or update on another index). */
static ns_status upsert_key(my_writer *w, const ns_writer_cfg *cfg, ns_error *err)
{
    const char *dot = strchr(w->table, '.');
    char *schema = dot ? ns__strndup(w->table, (size_t)(dot - w->table)) : NULL;
    const char *p[2] = {dot ? dot + 1 : w->table, schema};
    const char *sql =
        dot ? "SELECT group_concat(lower(column_name) ORDER BY lower(column_name) SEPARATOR ',')"
              " FROM information_schema.statistics WHERE non_unique = 0 AND table_name = ?"
              " AND table_schema = ? GROUP BY index_name"
            : "SELECT group_concat(lower(column_name) ORDER BY lower(column_name) SEPARATOR ',')"
              " FROM information_schema.statistics WHERE non_unique = 0 AND table_name = ?"
              " AND table_schema = DATABASE() GROUP BY index_name";
    const char **key = calloc(cfg->nkey ? cfg->nkey : 1, sizeof(*key));
    ns_buf want = {0};
    ns_my_stmt *s = NULL;
    bool found = false;
    ns_status st = key ? NS_OK : ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; st == NS_OK && i < cfg->nkey; i++)
        key[i] = cfg->key[i];
    if (st == NS_OK) {
        qsort(key, cfg->nkey, sizeof(*key), by_name);
        for (size_t i = 0; i < cfg->nkey; i++) {
            if (i)
                ns__buf_putc(&want, ',');
            for (const char *c = key[i]; *c; c++)
                ns__buf_putc(&want, (char)tolower((unsigned char)*c));
        }
        st = ns__my_run(w->m, sql, strlen(sql), p, dot ? 2 : 1, &s, err, w->where,
                        "read the table's unique keys");
    }
    for (bool eof = false; st == NS_OK && !found;) {
        const char *const *v;
        if ((st = ns__my_fetch(s, &v, &eof, err)) != NS_OK || eof)
            break;
        found = v[0] && strcmp(v[0], ns__buf_cstr(&want)) == 0;
    }
    ns__my_close(s);
    if (st == NS_OK && !found)
        st = ns__err(err, NS_ESCHEMA, NULL,
                     "%s: upsert into %s needs a primary key or unique index on exactly its key "
                     "(%s)",
                     w->where, w->table, ns__buf_cstr(&want));
    ns__buf_free(&want);
    free(key);
    free(schema);
    return st;
}

static ns_status mw_open(ns_writer *base, const ns_writer_cfg *cfg, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    ns_status st;

    w->where = ns__strdup(cfg->conn_name);
    w->table = cfg->table ? ns__strdup(cfg->table) : NULL;
    w->mode = cfg->mode;
    w->wd = cfg->watchdog;
    w->limit = cfg->stmt_limit;
    if (!w->where || (cfg->table && !w->table))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if ((st = ns__my_connect(cfg->url, w->where, &w->m, err)) != NS_OK)
        return st;
    /* The only "file" this connection ever sends: the chunk in memory. */
    mysql_set_local_infile_handler(w->m, infile_init, infile_read, infile_end, infile_error, w);
    if (!(w->cancel = ns__my_cancel_new(w->m, cfg->url)))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    guard(w);
    st = exec(w, CKPT_TABLE, err);
    if (st == NS_OK && cfg->table && (st = map_columns(w, cfg, err)) == NS_OK)
        st = build_sql(w, err);
    if (st == NS_OK && cfg->table && w->mode == NS_MODE_UPSERT)
        st = upsert_key(w, cfg, err);
    if (st == NS_OK && cfg->table)
        st = open_guess(w, err);
    if (st == NS_OK)
        st = prep(w, CKPT_OWNER, &w->ckpt_owner, err);
    if (st == NS_OK)
        st = prep(w, CKPT_PUT, &w->ckpt_put, err);
    return unguard(w, st, err);
}

/* --------------------------------------------------------- checkpoint */

static ns_status begin(my_writer *w, ns_error *err)
{
    ns_status st;
    if (w->in_txn)
        return NS_OK;
    if ((st = exec(w, "START TRANSACTION", err)) != NS_OK)
        return st;
    w->in_txn = true;
    if (w->mode == NS_MODE_REPLACE && w->table && !w->replaced) {
        ns_buf b = {0};
        ns__buf_printf(&b, "DELETE FROM ");
        table_name(&b, w->table);
        st = exec(w, ns__buf_cstr(&b), err);
        ns__buf_free(&b);
        w->replaced = st == NS_OK;
    }
    return st;
}

/* The row's owner and context (*found false: no row). */
static ns_status owner_of(my_writer *w, const ns_ckpt_key *k, int64_t *owner, char **context,
                          bool *found, ns_error *err)
{
    const char *p[4] = {k->job_name, k->job_key, k->step, k->partition ? k->partition : ""};
    const char *const *v;
    bool eof;
    ns_status st = ns__my_execute(w->ckpt_owner, p, 4, err);
    if (st == NS_OK)
        st = ns__my_fetch(w->ckpt_owner, &v, &eof, err);
    *found = st == NS_OK && !eof;
    if (*found) {
        *owner = v[0] ? strtoll(v[0], NULL, 10) : -1;
        if (context && v[1] && v[1][0] && !(*context = ns__strdup(v[1])))
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    ns__my_reset(w->ckpt_owner);
    return st;
}

static ns_status mw_checkpoint(ns_writer *base, const ns_ckpt_key *k, char **context, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    ns_status st;
    int64_t owner = -1;
    bool found;
    *context = NULL;
    if (k->reclaim) {
        /* Still ours (see ns_ckpt_key.reclaim)? No row: claimed below. */
        if ((st = owner_of(w, k, &owner, context, &found, err)) != NS_OK)
            return st;
        if (found && owner != k->execution_id) {
            free(*context);
            *context = NULL;
            return ns__fenced(err, k, owner);
        }
        if (found)
            return NS_OK;
    }
    /* Claimed and read in one transaction: the row is locked between. */
    char ex[24], sx[24];
    snprintf(ex, sizeof(ex), "%lld", (long long)k->execution_id);
    snprintf(sx, sizeof(sx), "%lld", (long long)k->step_execution_id);
    const char *p[6] = {k->job_name, k->job_key, k->step, k->partition ? k->partition : "", ex, sx};
    ns_my_stmt *s = NULL;
    if ((st = exec(w, "START TRANSACTION", err)) != NS_OK)
        return st;
    st = ns__my_run(w->m, CKPT_CLAIM, strlen(CKPT_CLAIM), p, 6, &s, err, w->where,
                    "claim checkpoint");
    ns__my_close(s);
    if (st == NS_OK)
        st = owner_of(w, k, &owner, context, &found, err);
    if (st == NS_OK)
        st = exec(w, "COMMIT", err);
    if (st != NS_OK) {
        free(*context);
        *context = NULL;
        (void)mysql_query(w->m, "ROLLBACK");
    }
    return st;
}

static ns_status mw_commit(ns_writer *base, const ns_ckpt_key *k, const char *context,
                           ns_commit_hook hook, void *arg, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    ns_status st;
    char sx[24], ex[24];
    snprintf(sx, sizeof(sx), "%lld", (long long)k->step_execution_id);
    snprintf(ex, sizeof(ex), "%lld", (long long)k->execution_id);
    const char *p[7] = {
        sx, context, k->job_name, k->job_key, k->step, k->partition ? k->partition : "", ex};
    if ((st = begin(w, err)) != NS_OK || (st = ns__my_execute(w->ckpt_put, p, 7, err)) != NS_OK)
        return st;
    if (ns__my_affected(w->ckpt_put) != 1) {
        int64_t owner = -1;
        bool found;
        if ((st = owner_of(w, k, &owner, NULL, &found, err)) != NS_OK)
            return st;
        return ns__fenced(err, k, found ? owner : -1);
    }
    if (hook && (st = hook(arg, err)) != NS_OK)
        return st;
    if ((st = exec(w, "COMMIT", err)) != NS_OK)
        return st;
    w->in_txn = false;
    return NS_OK;
}

static void mw_rollback(ns_writer *base)
{
    my_writer *w = (my_writer *)base;
    if (w->in_txn && w->m)
        (void)mysql_query(w->m, "ROLLBACK");
    w->in_txn = false;
    w->replaced = false;
    w->depth = 0;
}

/* -------------------------------------------------------------- write */

static ns_status write_runs(my_writer *w, ns_item *items, const size_t *idx, size_t m, size_t *done,
                            ns_arena *a, ns_error *err);

static ns_status mw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    ns_status st;
    size_t *idx = malloc((n ? n : 1) * sizeof(*idx)), m = 0;
    if (!idx)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if ((st = begin(w, err)) != NS_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        ns_item *it = &items[i];
        bool bad = false;
        for (size_t j = 0; j < w->ncols && !bad; j++) {
            const ns_value *v = &it->fields[j];
            if (v->ptr && memchr(v->ptr, '\0', v->len)) {
                /* MySQL would store it; PostgreSQL refuses it: the same
                 * job must behave the same on every database. */
                it->code = "22021";
                it->column = w->cols[j].name;
                it->message = "invalid byte sequence for encoding \"UTF8\": 0x00 (text cannot "
                              "hold NUL bytes)";
                bad = true;
            }
        }
        if (!bad)
            idx[m++] = i;
    }
    /* Doubtful rows alone, in their place; the runs between them in bulk. */
    bool *doubt = calloc(m ? m : 1, sizeof(*doubt));
    if (!doubt) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t r = 0; r < m; r++) {
        const ns_item *it = &items[idx[r]];
        bool seen = w->guess && ns__my_guess_seen(w->guess, it->fields);
        doubt[r] = doubtful(w, it) || seen;
    }
    if (ns__my_guess_armed(w->guess))
        st = ns__my_guess_filter(w->guess, items, idx, m, sent_of, w, doubt, err, w->where);
    size_t from = 0, done;
    for (size_t r = 0; r <= m && st == NS_OK;) {
        if (r < m && !doubt[r]) {
            r++;
            continue;
        }
        if ((st = write_runs(w, items, idx + from, r - from, &done, a, err)) != NS_OK)
            break;
        if (from + done < r) {
            /* A failure armed the guess: ask it about the rows not sent. */
            from += done;
            st = ns__my_guess_filter(w->guess, items, idx + from, m - from, sent_of, w,
                                     doubt + from, err, w->where);
            r = from;
            continue;
        }
        if (r < m)
            st = one_row(w, &items[idx[r]], a, err);
        from = ++r;
    }
    free(doubt);
out:
    free(idx);
    return st;
}

/* Rows idx[0..m) in bulk statements sized to the bad rows seen so far;
 * *done: how many were written, fewer than m when a failure armed the
 * guess (the rest are to be guessed at first). */
static ns_status write_runs(my_writer *w, ns_item *items, const size_t *idx, size_t m, size_t *done,
                            ns_arena *a, ns_error *err)
{
    ns_status st = NS_OK;
    int armed = ns__my_guess_armed(w->guess);
    size_t len, from;
    for (from = 0; from < m && st == NS_OK; from += len) {
        size_t piece = m;
        if (w->bad_rows > 0) {
            double p = 0.2 * w->sent_rows / w->bad_rows;
            piece = p < 4 * SMALL ? 4 * SMALL : p > (double)m ? m : (size_t)p;
        }
        len = m - from < piece ? m - from : piece;
        w->first_bad = 0;
        w->requeue = false;
        st = write_set(w, items, idx + from, len, true, a, err);
        w->sent_rows += (double)len;
        w->bad_rows += (double)w->first_bad;
        if (w->requeue) { /* not written: to be guessed at */
            w->requeue = false;
            break;
        }
        if (ns__my_guess_armed(w->guess) > armed) {
            from += len;
            break;
        }
    }
    *done = from < m ? from : m;
    return st;
}

/* ---------------------------------------------------------------- SQL */

/* :name -> ? with the values in order. */
static ns_status bind_sql(my_writer *w, const char *stmt, size_t len, size_t no,
                          const ns_sql_args *args, ns_buf *text, const char ***vals, size_t *nvals,
                          ns_error *err)
{
    char missing[128];
    ns_status st = ns__sql_bind(stmt, len, NS_PH_QMARK, args->names, args->values, args->n, text,
                                vals, nvals, missing, sizeof(missing));
    if (st == NS_EPARAM)
        return ns__err(err, NS_EPARAM, NULL, "%s: statement %zu: :%s has no value", w->where, no,
                       missing);
    if (st != NS_OK)
        return ns__err(err, st, NULL, "out of memory");
    return NS_OK;
}

static ns_status mw_exec(ns_writer *base, const char *stmt, size_t len, size_t no,
                         const ns_sql_args *args, int64_t *changed, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    ns_buf text = {0};
    const char **vals = NULL;
    size_t nvals = 0;
    ns_my_stmt *s = NULL;
    char what[64];
    snprintf(what, sizeof(what), "statement %zu", no);
    ns_status st = begin(w, err);
    if (st == NS_OK)
        st = bind_sql(w, stmt, len, no, args, &text, &vals, &nvals, err);
    if (st == NS_OK)
        st = ns__my_run(w->m, ns__buf_cstr(&text), text.len, vals, nvals, &s, err, w->where, what);
    if (st == NS_OK) {
        const char *const *v;
        bool eof = false;
        while (st == NS_OK && !eof)
            st = ns__my_fetch(s, &v, &eof, err);
        const char *const *names;
        if (st == NS_OK && ns__my_ncols(s, &names) == 0)
            *changed += ns__my_affected(s);
    }
    ns__my_close(s);
    ns__buf_free(&text);
    free(vals);
    return st;
}

static ns_status mw_query(ns_writer *base, const char *sql, const ns_sql_args *args, ns_row_fn row,
                          void *arg, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    ns_buf text = {0};
    const char **vals = NULL;
    size_t nvals = 0;
    ns_my_stmt *s = NULL;
    ns_status st = bind_sql(w, sql, strlen(sql), 1, args, &text, &vals, &nvals, err);
    if (st == NS_OK)
        st = ns__my_run(w->m, ns__buf_cstr(&text), text.len, vals, nvals, &s, err, w->where,
                        "query");
    if (st == NS_OK) {
        const char *const *names, *const *v;
        size_t n = ns__my_ncols(s, &names);
        bool eof = false;
        if (row(arg, n, names, NULL))
            while ((st = ns__my_fetch(s, &v, &eof, err)) == NS_OK && !eof)
                if (!row(arg, n, names, v))
                    break;
    }
    ns__my_close(s);
    ns__buf_free(&text);
    free(vals);
    return st;
}

typedef struct my_cursor {
    ns_cursor base;
    ns_my_stmt *s;
} my_cursor;

static ns_status myc_next(ns_cursor *base, const char *const **values, bool *eof, ns_error *err)
{
    return ns__my_fetch(((my_cursor *)base)->s, values, eof, err);
}

static void myc_close(ns_cursor *base)
{
    my_cursor *c = (my_cursor *)base;
    ns__my_close(c->s);
    free(c);
}

static ns_status mw_cursor(ns_writer *base, const char *sql, const ns_sql_args *args,
                           const char *const *key, size_t nkey, ns_cursor **out, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    ns_buf q = {0}, text = {0};
    const char **vals = NULL;
    size_t nvals = 0;
    my_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    /* Keys as text in byte order (utf8mb4_bin orders by code point, which
     * is UTF-8's byte order); MySQL sorts NULLs first. */
    ns__buf_printf(&q, "SELECT * FROM (%s) AS ns_q ORDER BY ", sql);
    for (size_t i = 0; i < nkey; i++) {
        ns__buf_printf(&q, i ? ", CAST(" : "CAST(");
        quote(&q, key[i]);
        ns__buf_printf(&q, " AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin");
    }
    ns_status st = bind_sql(w, ns__buf_cstr(&q), q.len, 1, args, &text, &vals, &nvals, err);
    if (st == NS_OK)
        st = ns__my_run(w->m, ns__buf_cstr(&text), text.len, vals, nvals, &c->s, err, w->where,
                        "query");
    ns__buf_free(&q);
    ns__buf_free(&text);
    free(vals);
    if (st != NS_OK) {
        free(c);
        return st;
    }
    const char *const *names;
    size_t n = ns__my_ncols(c->s, &names);
    c->base = (ns_cursor){n, names, myc_next, myc_close};
    *out = &c->base;
    return NS_OK;
}

/* ------------------------------------------------------------- close */

static void mw_close(ns_writer *base)
{
    my_writer *w = (my_writer *)base;
    mw_rollback(base);
    ns__my_close(w->ins);
    free(w->row_p);
    free(w->row_len);
    ns__my_close(w->ckpt_owner);
    ns__my_close(w->ckpt_put);
    if (w->m)
        mysql_close(w->m);
    ns__my_cancel_free(w->cancel);
    for (size_t i = 0; i < w->ncols; i++) {
        free(w->cols[i].name);
        free(w->cols[i].type);
    }
    free(w->cols);
    ns__my_guess_free(w->guess);
    free(w->load);
    free(w->merge);
    free(w->missing);
    free(w->one);
    ns__buf_free(&w->data);
    free(w->where);
    free(w->table);
}

static bool mw_single(ns_writer *base)
{
    return ((my_writer *)base)->mode == NS_MODE_REPLACE;
}

/* The calls that may wait on a lock or run long, under the watchdog. */
static ns_status g_checkpoint(ns_writer *base, const ns_ckpt_key *k, char **context, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    guard(w);
    return unguard(w, mw_checkpoint(base, k, context, err), err);
}

static ns_status g_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    guard(w);
    return unguard(w, mw_write(base, items, n, a, err), err);
}

static ns_status g_commit(ns_writer *base, const ns_ckpt_key *k, const char *context,
                          ns_commit_hook hook, void *arg, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    guard(w);
    return unguard(w, mw_commit(base, k, context, hook, arg, err), err);
}

static ns_status g_exec(ns_writer *base, const char *stmt, size_t len, size_t no,
                        const ns_sql_args *args, int64_t *changed, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    guard(w);
    return unguard(w, mw_exec(base, stmt, len, no, args, changed, err), err);
}

static ns_status g_query(ns_writer *base, const char *sql, const ns_sql_args *args, ns_row_fn row,
                         void *arg, ns_error *err)
{
    my_writer *w = (my_writer *)base;
    guard(w);
    return unguard(w, mw_query(base, sql, args, row, arg, err), err);
}

static const ns_sql_vt mysql_sql = {g_exec, g_query, mw_cursor};

const ns_writer_vt ns__writer_table_mysql = {
    .name = "table:mysql",
    .version = NS_WRITER_VERSION,
    .caps = NS_WRITER_TRANSACTIONAL,
    .instance_size = sizeof(my_writer),
    .open = mw_open,
    .checkpoint = g_checkpoint,
    .write = g_write,
    .commit = g_commit,
    .rollback = mw_rollback,
    .close = mw_close,
    .single_transaction = mw_single,
    .sql = &mysql_sql,
};
