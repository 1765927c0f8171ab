/*
 * table.c - the `table` writer on a PostgreSQL target.
 *
 * Bulk path: each chunk is one transaction streaming its rows with
 * COPY ... FROM STDIN (text format). Before sending, every value is checked
 * against what the catalog says of its column (type, length, NOT NULL, no NUL
 * byte), so most bad rows never reach the server.
 *
 * What only the server knows (CHECK, UNIQUE, keys, triggers) is isolated
 * exactly: COPY runs inside a savepoint; an error that names its line
 * ("COPY t, line N") rejects item N, the savepoint is rolled back, the rows
 * before N are sent again and the COPY continues after N. Errors without a
 * line (foreign keys, checked after the statement) are isolated by bisection,
 * each half in its own savepoint. Good rows of a chunk always load, and the
 * earlier of two rows colliding on a key is the one kept.
 *
 * upsert and update go through a staging table: the chunk is COPYed into a
 * temporary table of the target's column types (so a bad value is still
 * named by its COPY line), then merged into the table by one statement per
 * run of records with distinct keys (by the server's own equality: " 7" is
 * 7). A merge the server refuses is bisected over its range down to the one
 * record at fault. Runs and halves keep file order, so every record meets
 * the table as the records before it left it, as if applied one by one: the
 * last record of a key wins and a refused one leaves its predecessor.
 *
 * The checkpoint (docs/internals.md, "Exactly-once restart") is a row of nightshift_checkpoint in
 * the target, written in the chunk's transaction.
 *
 * This file: the catalog lookup and open, the checkpoint and the commit
 * (the rest: pg.h).
 */
#include "db/pg/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_TABLE                                                                                 \
    "CREATE TABLE IF NOT EXISTS nightshift_checkpoint ("                                           \
    "  job_name text NOT NULL,"                                                                    \
    "  job_key text NOT NULL,"                                                                     \
    "  step_name text NOT NULL,"                                                                   \
    "  partition_name text NOT NULL DEFAULT '',"                                                   \
    "  execution_id bigint NOT NULL,"                                                              \
    "  step_execution_id bigint NOT NULL,"                                                         \
    "  context text NOT NULL,"                                                                     \
    "  updated_at timestamptz NOT NULL DEFAULT now(),"                                             \
    "  PRIMARY KEY (job_name, job_key, step_name, partition_name))"

ns_status ns__pgw_fail(pg_writer *w, PGresult *res, ns_error *err, const char *what)
{
    const char *state = ns__pg_state(w->c, res);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(w->c);
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    return ns__err(err, NS_EDB, state, "%s: %s: %.*s", w->where, what, (int)len, msg);
}

ns_status ns__pgw_exec(pg_writer *w, ns_error *err, const char *what, const char *sql, int n,
                       const char *const *v)
{
    PGresult *res = PQexecParams(w->c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(res);
    ns_status st =
        s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? NS_OK : ns__pgw_fail(w, res, err, what);
    PQclear(res);
    return st;
}

ns_status ns__pgw_rollback_to(pg_writer *w, const char *name, ns_error *err)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT %s; RELEASE SAVEPOINT %s", name, name);
    PGresult *res = PQexec(w->c, sql);
    ns_status st =
        PQresultStatus(res) == PGRES_COMMAND_OK ? NS_OK : ns__pgw_fail(w, res, err, "savepoint");
    PQclear(res);
    return st;
}

/* The server's 23505 message for index k up to the key's values:
 * 'duplicate key value violates unique constraint "i" (Key (a, "B")=('
 * (names quoted as the server quotes them: unless plain lower case). */
static char *dup_prefix(const pg_writer *w, const ukey *k)
{
    ns_buf b = {0};
    ns__buf_printf(&b, "duplicate key value violates unique constraint \"%s\" (Key (", k->index);
    for (size_t c = 0; c < k->ncols; c++) {
        const char *n = w->cols[k->cols[c]].name;
        bool plain = (*n >= 'a' && *n <= 'z') || *n == '_';
        for (const char *p = n; *p; p++)
            plain &= (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        ns__buf_printf(&b, c ? ", " : "");
        if (plain)
            ns__buf_printf(&b, "%s", n);
        else
            ns__buf_ident(&b, n);
    }
    ns__buf_printf(&b, ")=(");
    char *p = b.failed ? NULL : ns__strdup(ns__buf_cstr(&b));
    ns__buf_free(&b);
    return p;
}

/* "INSERT INTO t (c1, c2, ...)": the input's columns. */
static void insert_into(const pg_writer *w, ns_buf *b)
{
    ns__buf_printf(b, "INSERT INTO %s (", w->qtable);
    for (size_t i = 0; i < w->ncols; i++) {
        ns__buf_printf(b, i ? ", " : "");
        ns__buf_ident(b, w->cols[i].name);
    }
    ns__buf_printf(b, ")");
}

/* A query's rows, or NULL with err said. */
static PGresult *catalog(pg_writer *w, const char *what, const char *sql, const char *const *p,
                         ns_error *err)
{
    PGresult *res = PQexecParams(w->c, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return res;
    ns__pgw_fail(w, res, err, what);
    PQclear(res);
    return NULL;
}

/* The input field of the column named name[0..len), or ncols when none. */
static size_t field_named(const pg_writer *w, const char *name, size_t len)
{
    size_t j = 0;
    while (j < w->ncols && (strlen(w->cols[j].name) != len || memcmp(w->cols[j].name, name, len)))
        j++;
    return j;
}

/* "unnest($1::text[], ..., $n::text[]) [WITH ORDINALITY] AS u(v1, ..., vn[, i])":
 * the rows of n text arrays, the statement's parameters. */
static void unnest_as(ns_buf *q, size_t n, bool ordinality)
{
    ns__buf_printf(q, "unnest(");
    for (size_t k = 0; k < n; k++)
        ns__buf_printf(q, "%s$%zu::text[]", k ? ", " : "", k + 1);
    ns__buf_printf(q, ")%s AS u(", ordinality ? " WITH ORDINALITY" : "");
    for (size_t k = 0; k < n; k++)
        ns__buf_printf(q, "%sv%zu", k ? ", " : "", k + 1);
    ns__buf_printf(q, "%s)", ordinality ? ", i" : "");
}

/* Adds a probe whose SQL is in q (freed here). */
static ns_status push_probe(pg_writer *w, ns_buf *q, enum pg_probe_kind kind, size_t key,
                            const char *conname, const size_t *fields, size_t nf, ns_error *err)
{
    pg_probe *pr = realloc(w->probes, (w->nprobes + 1) * sizeof(*pr));
    size_t *f = malloc(nf * sizeof(*f));
    char *sql = q->failed ? NULL : ns__strdup(ns__buf_cstr(q));
    char *con = conname ? ns__strdup(conname) : NULL;
    ns__buf_free(q);
    if (pr)
        w->probes = pr;
    if (!pr || !f || !sql || (conname && !con)) {
        free(f);
        free(sql);
        free(con);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    memcpy(f, fields, nf * sizeof(*f));
    w->probes[w->nprobes++] = (pg_probe){
        .sql = sql, .fields = f, .nfields = nf, .kind = kind, .key = key, .conname = con};
    return NS_OK;
}

/* A probe over `nf` fields: its SQL starts with `head`, then one
 * "u.vK::type" comparison per field joined by " AND ", then `tail`. */
static ns_status add_probe(pg_writer *w, bool fk, size_t key, const size_t *fields, size_t nf,
                           const char *head, const char *const *cmp_left, const char *tail,
                           ns_error *err)
{
    ns_buf q = {0};
    /* A key probe also gives the key as the server's 23505 message shows
     * it: "(1, x)" in "Key (a, b)=(1, x) already exists." */
    ns__buf_printf(&q, "SELECT i%s", fk ? "" : ", concat_ws(', '");
    for (size_t k = 0; !fk && k < nf; k++)
        ns__buf_printf(&q, ", (u.v%zu::%s)::text", k + 1, w->cols[fields[k]].ct.decl);
    ns__buf_printf(&q, "%s FROM ", fk ? "" : ")");
    unnest_as(&q, nf, true);
    ns__buf_printf(&q, " WHERE %s", head);
    for (size_t k = 0; k < nf; k++)
        ns__buf_printf(&q, "%s%s = u.v%zu::%s", k ? " AND " : "", cmp_left[k], k + 1,
                       w->cols[fields[k]].ct.decl);
    ns__buf_printf(&q, "%s", tail);
    return push_probe(w, &q, fk ? PR_FK : PR_KEY, key, NULL, fields, nf, err);
}

/*
 * A CHECK the client does not read, over input fields only: the server
 * evaluates it on the chunk's values, cast to the columns' types under the
 * columns' names, and names the rows for which it is false.
 */
static ns_status add_check_probe(pg_writer *w, const char *name, const char *expr,
                                 const size_t *fields, size_t nf, ns_error *err)
{
    ns_buf q = {0};
    ns__buf_printf(&q, "SELECT t.i FROM (SELECT u.i");
    for (size_t k = 0; k < nf; k++) {
        ns__buf_printf(&q, ", u.v%zu::%s AS ", k + 1, w->cols[fields[k]].ct.decl);
        ns__buf_ident(&q, w->cols[fields[k]].name);
    }
    ns__buf_printf(&q, " FROM ");
    unnest_as(&q, nf, true);
    ns__buf_printf(&q, ") t WHERE (%s) IS FALSE", expr);
    return push_probe(w, &q, PR_CHECK, 0, name, fields, nf, err);
}

/*
 * What lets the writer hold rows back from a chunk's COPY beyond the key
 * filter: the CHECK constraints the client can read (check.c),
 * and the probes (a foreign key's missing parents, keys already in the
 * table) it asks once such errors appear. Only where holding a row back
 * cannot change what the server decides about the others: every unique
 * index is one the key filter covers (so a later row colliding with a held
 * one is held too, and the earlier still wins), no trigger, no foreign key
 * from the table to itself (a held parent would fail its children).
 */
static ns_status read_holds(pg_writer *w, const char *const *p, ns_error *err)
{
    PGresult *res = catalog(
        w, "read constraints",
        "SELECT (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.oid"
        "   AND (i.indisunique OR i.indisexclusion)),"
        " (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = t.oid AND NOT g.tgisinternal)"
        " + (SELECT count(*) FROM pg_constraint f WHERE f.conrelid = t.oid AND f.contype = 'f'"
        "   AND f.confrelid = t.oid)"
        " FROM (SELECT to_regclass($1) AS oid) t",
        p, err);
    if (!res)
        return NS_EDB;
    bool safe = PQntuples(res) == 1 &&
                strtoll(PQgetvalue(res, 0, 0), NULL, 10) == (long long)w->nkeys &&
                strtoll(PQgetvalue(res, 0, 1), NULL, 10) == 0;
    PQclear(res);
    if (!safe)
        return NS_OK;
    /* Each CHECK with the columns it reads, one per line. */
    if (!(res = catalog(w, "read check constraints",
                        "SELECT c.conname, pg_get_constraintdef(c.oid),"
                        " pg_get_expr(c.conbin, c.conrelid), (SELECT string_agg(a.attname, E'\\n'"
                        "  ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = c.conrelid"
                        "  AND a.attnum = ANY (c.conkey)), to_char(current_date, 'YYYY-MM-DD'),"
                        /* lower()/upper() of ASCII text are plain: the columns'
                         * collation is the default, C or POSIX, and the
                         * database's a libc one that does not case i the
                         * Turkic way */
                        " (SELECT bool_and(a.attcollation IN (0, 100, 950, 951))"
                        "  FROM pg_attribute a WHERE a.attrelid = c.conrelid"
                        "  AND a.attnum = ANY (c.conkey)) AND (SELECT d.datlocprovider = 'c' AND"
                        "  (d.datctype IN ('C', 'POSIX') OR d.datctype LIKE 'C.%'"
                        "   OR d.datctype LIKE 'en\\_%') FROM pg_database d"
                        "  WHERE d.datname = current_database())"
                        " FROM pg_constraint c"
                        " WHERE c.conrelid = to_regclass($1) AND c.contype = 'c' ORDER BY c.oid",
                        p, err)))
        return NS_EDB;
    int n = PQntuples(res);
    if (n && !(w->checks = calloc((size_t)n, sizeof(*w->checks)))) {
        PQclear(res);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    ns_status st = NS_OK;
    for (int r = 0; r < n && st == NS_OK; r++) {
        ns_pg_check *c =
            ns__pg_check_parse(PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), w->cols, w->ncols,
                               PQgetvalue(res, r, 4), strcmp(PQgetvalue(res, r, 5), "t") == 0);
        if (c) {
            w->checks[w->nchecks++] = c;
            continue;
        }
        /* Not read: a probe, when every column it reads is an input field. */
        size_t fields[64], nf = 0;
        bool inputs = true;
        for (const char *col = PQgetvalue(res, r, 3); *col && inputs;) {
            size_t len = strcspn(col, "\n"), j = field_named(w, col, len);
            inputs = j < w->ncols && nf < sizeof(fields) / sizeof(fields[0]);
            if (inputs)
                fields[nf++] = j;
            col += len + (col[len] == '\n');
        }
        if (inputs && nf)
            st = add_check_probe(w, PQgetvalue(res, r, 0), PQgetvalue(res, r, 2), fields, nf, err);
    }
    PQclear(res);
    if (st != NS_OK)
        return st;
    if (w->nchecks && !(w->bounds = calloc(w->ncols, sizeof(*w->bounds))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");

    /* Single-column foreign keys whose column is an input field. */
    if (!(res = catalog(w, "read foreign keys",
                        "SELECT a.attname, c.confrelid::regclass::text, quote_ident(ra.attname),"
                        /* how the keys compare: as integers, as bytes, else no filter */
                        " CASE WHEN a.atttypid IN (20, 21, 23) AND ra.atttypid IN (20, 21, 23)"
                        "  THEN 1 WHEN a.atttypid IN (25, 1043) AND ra.atttypid IN (25, 1043)"
                        "  AND a.attcollation = ra.attcollation"
                        "  AND a.attcollation IN (0, 100, 950) THEN 2 ELSE 0 END,"
                        /* the parent's rows: estimated, or a bound from its size */
                        " CASE WHEN r.reltuples >= 0 THEN r.reltuples"
                        "  ELSE pg_relation_size(c.confrelid) / 32 END"
                        " FROM pg_constraint c"
                        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
                        " JOIN pg_attribute ra ON ra.attrelid = c.confrelid"
                        "  AND ra.attnum = c.confkey[1]"
                        " JOIN pg_class r ON r.oid = c.confrelid"
                        " WHERE c.conrelid = to_regclass($1) AND c.contype = 'f'"
                        " AND cardinality(c.conkey) = 1 ORDER BY c.oid",
                        p, err)))
        return NS_EDB;
    for (int r = 0; r < PQntuples(res) && st == NS_OK; r++) {
        const char *name = PQgetvalue(res, r, 0);
        size_t j = field_named(w, name, strlen(name));
        if (j == w->ncols)
            continue;
        char head[512], left[160];
        snprintf(head, sizeof(head), "u.v1 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM %s p WHERE ",
                 PQgetvalue(res, r, 1));
        snprintf(left, sizeof(left), "p.%s", PQgetvalue(res, r, 2));
        const char *l[] = {left};
        if ((st = add_probe(w, true, 0, &j, 1, head, l, ")", err)) != NS_OK)
            break;
        pg_probe *pr = &w->probes[w->nprobes - 1];
        const char *kind = PQgetvalue(res, r, 3);
        pr->pkind = kind[0] == '1' ? PK_INT : kind[0] == '2' ? PK_TEXT : PK_NONE;
        pr->parent_rows = strtod(PQgetvalue(res, r, 4), NULL);
        ns_buf q = {0};
        ns__buf_printf(&q, "COPY (SELECT %s FROM %s WHERE %s IS NOT NULL) TO STDOUT",
                       PQgetvalue(res, r, 2), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
        if (q.failed || !(pr->parents_sql = ns__strdup(ns__buf_cstr(&q))))
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        ns__buf_free(&q);
        /* the filter reads the key fields as the type check does */
        if (st == NS_OK && pr->pkind != PK_NONE && !w->bounds &&
            !(w->bounds = calloc(w->ncols, sizeof(*w->bounds))))
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    PQclear(res);
    /* Each unique key the filter covers: is it in the table already? */
    for (size_t k = 0; k < w->nkeys && st == NS_OK; k++) {
        const ukey *u = &w->keys[k];
        char **left = calloc(u->ncols, sizeof(*left));
        char head[512];
        snprintf(head, sizeof(head), "EXISTS (SELECT 1 FROM %s x WHERE ", w->qtable);
        for (size_t c = 0; left && c < u->ncols; c++) {
            ns_buf b = {0};
            ns__buf_printf(&b, "x.");
            ns__buf_ident(&b, w->cols[u->cols[c]].name);
            left[c] = b.failed ? NULL : ns__strdup(ns__buf_cstr(&b));
            ns__buf_free(&b);
            if (!left[c])
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        }
        if (!left)
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        if (st == NS_OK)
            st = add_probe(w, false, k, u->cols, u->ncols, head, (const char *const *)left, ")",
                           err);
        for (size_t c = 0; left && c < u->ncols; c++)
            free(left[c]);
        free(left);
    }
    /* Rows a key probe found in the table, tried all at once: nothing is
     * inserted when every one is refused (a re-run). */
    if (st == NS_OK && w->nkeys) {
        ns_buf q = {0};
        insert_into(w, &q);
        ns__buf_printf(&q, " SELECT ");
        for (size_t i = 0; i < w->ncols; i++)
            ns__buf_printf(&q, "%su.v%zu::%s", i ? ", " : "", i + 1, w->cols[i].ct.decl);
        ns__buf_printf(&q, " FROM ");
        unnest_as(&q, w->ncols, false);
        ns__buf_printf(&q, " ON CONFLICT DO NOTHING RETURNING 1");
        if (q.failed || !(w->bulk_sql = ns__strdup(ns__buf_cstr(&q))))
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        ns__buf_free(&q);
    }
    return st;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

void ns__pgw_guard(pg_writer *w)
{
    ns__watchdog_arm(w->wd, w->limit, ns__pg_interrupt, w->cancel);
}

ns_status ns__pgw_unguard(pg_writer *w, ns_status st, ns_error *err)
{
    return ns__watchdog_end(w->wd, st, err, w->where, "the statement", w->limit);
}

static ns_status pw_open(ns_writer *base, const ns_writer_cfg *cfg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    PGresult *res = NULL;
    ns_status st = NS_OK;

    w->where = ns__strdup(cfg->conn_name);
    w->mode = cfg->mode;
    if (!w->where)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    w->c = ns__pg_connect(cfg->url, "nightshift");
    if (!w->c || PQstatus(w->c) != CONNECTION_OK) {
        const char *m = w->c ? PQerrorMessage(w->c) : "out of memory";
        size_t len = strlen(m);
        while (len && m[len - 1] == '\n')
            len--;
        return ns__err(err, NS_EDB, w->c ? ns__pg_connect_state(w->c) : NULL,
                       "%s: cannot connect: %.*s", w->where, (int)len, m);
    }
    /* The repository's own database: one connection, one transaction for
     * the chunk's rows and its record (docs/internals.md, "Exactly-once restart"). */
    PGconn *repo = ns__writer_share(cfg, w->c);
    if (repo) {
        PQfinish(w->c);
        w->c = repo;
        base->shared = true;
    }
    PQsetNoticeProcessor(w->c, quiet, NULL);
    w->wd = cfg->watchdog;
    w->limit = cfg->stmt_limit;
    if (!(w->cancel = ns__pg_cancel_new(w->c)))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (PQsetClientEncoding(w->c, "UTF8") != 0)
        return ns__pgw_fail(w, NULL, err, "set client encoding");
    if (cfg->lease > 0 && cfg->table && cfg->mode != NS_MODE_REPLACE) {
        /* A chunk's transaction never idles: from its BEGIN the COPY streams
         * (active, not idle) until the chunk is written and committed. So a
         * frozen run (presumed dead once the lease lapses) is cut off by the
         * server, which releases the rows it holds. Not for a replace (one
         * transaction across chunks: a reader or processor may take long
         * between two rows) nor the connection-only uses (a compare's
         * output idles between differences). */
        char set[96];
        snprintf(set, sizeof(set), "SET idle_in_transaction_session_timeout = %lld",
                 (long long)(cfg->lease * 1000) + 1);
        if ((st = ns__pgw_exec(w, err, "set idle_in_transaction_session_timeout", set, 0, NULL)) !=
            NS_OK)
            return st;
    }
    if (!cfg->table)
        goto checkpoint; /* the connection only */

    /* The table's columns, as the catalog sees them. */
    const char *p[] = {cfg->table};
    res = PQexecParams(
        w->c,
        "SELECT c.oid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod),"
        " a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> ''"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.oid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = ns__pgw_fail(w, res, err, "read table definition");
        goto out;
    }
    int nt = PQntuples(res);
    if (nt == 0) {
        st = ns__err(err, NS_ESCHEMA, NULL, "%s: table '%s' does not exist", w->where, cfg->table);
        goto out;
    }
    w->qtable = ns__strdup(PQgetvalue(res, 0, 0));
    w->cols = calloc(cfg->ncolumns ? cfg->ncolumns : 1, sizeof(*w->cols));
    size_t *used = calloc((size_t)nt, sizeof(*used)); /* 1 + the input column, 0: none */
    if (!w->qtable || !w->cols || !used) {
        free(used);
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cfg->ncolumns && st == NS_OK; i++) {
        int k = 0;
        /* Exact name first, then case-insensitively (CSV headers rarely
         * match PostgreSQL's case folding). */
        while (k < nt && strcmp(PQgetvalue(res, k, 1), cfg->columns[i]) != 0)
            k++;
        if (k == nt) {
            k = 0;
            while (k < nt && strcasecmp(PQgetvalue(res, k, 1), cfg->columns[i]) != 0)
                k++;
        }
        if (k == nt || PQgetvalue(res, k, 5)[0] == 't') {
            ns_buf names = {0};
            for (int j = 0; j < nt; j++)
                if (PQgetvalue(res, j, 5)[0] != 't')
                    ns__buf_printf(&names, "%s%s", names.len ? ", " : "", PQgetvalue(res, j, 1));
            st = ns__err(err, NS_ESCHEMA, NULL,
                         k == nt ? "input column '%s' has no column in table %s (its columns: %s)"
                                 : "input column '%s' is a generated column of table %s (%s)",
                         cfg->columns[i], w->qtable, ns__buf_cstr(&names));
            ns__buf_free(&names);
            break;
        }
        if (used[k]) {
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input columns '%s' and '%s' both name column %s of table %s (names "
                         "match without regard to case); rename one",
                         cfg->columns[used[k] - 1], cfg->columns[i], PQgetvalue(res, k, 1),
                         w->qtable);
            break;
        }
        used[k] = i + 1;
        pcol *c = &w->cols[w->ncols++];
        if (!(c->name = ns__strdup(PQgetvalue(res, k, 1)))) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            break;
        }
        ns__coltype_parse_pg(PQgetvalue(res, k, 2), &c->ct);
        c->notnull = PQgetvalue(res, k, 3)[0] == 't';
    }
    for (int k = 0; k < nt && st == NS_OK; k++)
        if (!used[k] && PQgetvalue(res, k, 3)[0] == 't' && PQgetvalue(res, k, 4)[0] != 't' &&
            PQgetvalue(res, k, 5)[0] != 't' && w->mode != NS_MODE_UPDATE)
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "column %s.%s is NOT NULL without a default, but the input has no "
                         "column '%s'",
                         w->qtable, PQgetvalue(res, k, 1), PQgetvalue(res, k, 1));
    free(used);
    if (st != NS_OK)
        goto out;

    /* The key of upsert and update, as input fields. */
    bool merge = w->mode == NS_MODE_UPSERT || w->mode == NS_MODE_UPDATE;
    if (merge && !(w->key = calloc(cfg->nkey ? cfg->nkey : 1, sizeof(*w->key)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; merge && i < cfg->nkey; i++) {
        size_t j = 0;
        while (j < w->ncols && strcasecmp(w->cols[j].name, cfg->key[i]) != 0)
            j++;
        if (j == w->ncols) {
            st = ns__err(err, NS_ESCHEMA, NULL, "%s: key column '%s' is not in the input", w->where,
                         cfg->key[i]);
            goto out;
        }
        w->key[w->nkey++] = j;
        /* update only looks the key up: a NULL there matches no row. */
        if (w->mode == NS_MODE_UPDATE)
            w->cols[j].notnull = false;
    }

    /* Unique indexes (plain columns, no predicate): those the input fully
     * covers get a filter of the keys sent (insert, replace); upsert needs
     * one on exactly its key for ON CONFLICT. */
    PQclear(res);
    res = PQexecParams(w->c,
                       "SELECT array_to_string(array_agg(a.attname ORDER BY k.ord), chr(31)),"
                       " (SELECT relname FROM pg_class WHERE oid = i.indexrelid)"
                       " FROM pg_index i"
                       " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
                       " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                       " WHERE i.indrelid = to_regclass($1) AND i.indisunique"
                       " AND i.indpred IS NULL AND i.indexprs IS NULL GROUP BY i.indexrelid"
                       " ORDER BY i.indexrelid",
                       1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = ns__pgw_fail(w, res, err, "read unique indexes");
        goto out;
    }
    bool key_indexed = false;
    ns_buf uniques = {0};
    for (int r = 0; r < PQntuples(res); r++) {
        char *names = ns__strdup(PQgetvalue(res, r, 0));
        ukey k = {0};
        bool covered = names != NULL;
        size_t in_key = 0;
        ns__buf_printf(&uniques, "%s(", uniques.len ? ", " : "");
        for (char *save = NULL, *n = names ? strtok_r(names, "\x1f", &save) : NULL; n;
             n = strtok_r(NULL, "\x1f", &save)) {
            ns__buf_printf(&uniques, "%s%s", k.ncols ? ", " : "", n);
            size_t j = field_named(w, n, strlen(n));
            for (size_t q = 0; q < w->nkey; q++)
                in_key += w->key[q] == j;
            size_t *c = realloc(k.cols, (k.ncols + 1) * sizeof(*c));
            covered = covered && j < w->ncols && c;
            if (c) {
                k.cols = c;
                k.cols[k.ncols++] = j;
            }
        }
        ns__buf_printf(&uniques, ")");
        free(names);
        key_indexed |= in_key == k.ncols && k.ncols == w->nkey;
        ukey *ks = covered && !merge ? realloc(w->keys, (w->nkeys + 1) * sizeof(*ks)) : NULL;
        if (ks && (k.mem = calloc(1, BLOOM_BITS / 8 + 64)) != NULL &&
            (k.index = ns__strdup(PQgetvalue(res, r, 1))) != NULL &&
            (k.dup_prefix = dup_prefix(w, &k)) != NULL) {
            k.bits = (uint64_t *)(((uintptr_t)k.mem + 63) & ~(uintptr_t)63);
            w->keys = ks;
            w->keys[w->nkeys++] = k;
        } else {
            if (ks)
                w->keys = ks;
            free(k.cols);
            free(k.mem);
            free(k.index);
        }
    }
    if (!merge && st == NS_OK)
        st = read_holds(w, p, err);
    if (w->mode == NS_MODE_UPSERT && !key_indexed)
        st = ns__err(err, NS_ESCHEMA, NULL,
                     "%s: mode: upsert needs a primary key or unique index on exactly its key "
                     "columns, and table %s has none (its unique keys: %s)",
                     w->where, w->qtable, uniques.len ? ns__buf_cstr(&uniques) : "none");
    ns__buf_free(&uniques);
    if (st != NS_OK || (merge && (st = ns__pgw_stage(w, err)) != NS_OK))
        goto out;

    ns_buf sql = {0};
    ns__buf_printf(&sql, "%s%sCOPY %s (%s", COPY_RELEASE, COPY_OPEN, merge ? STAGE : w->qtable,
                   merge ? "nightshift_seq" : "");
    for (size_t i = 0; i < w->ncols; i++) {
        if (i || merge)
            ns__buf_printf(&sql, ", ");
        ns__buf_ident(&sql, w->cols[i].name);
    }
    ns__buf_printf(&sql, ") FROM STDIN");
    w->copy_sql = ns__strdup(ns__buf_cstr(&sql));
    if (!merge) {
        sql.len = 0;
        insert_into(w, &sql);
        ns__buf_printf(&sql, " VALUES (");
        for (size_t i = 0; i < w->ncols; i++)
            ns__buf_printf(&sql, "%s$%zu", i ? ", " : "", i + 1);
        ns__buf_printf(&sql, ")");
        if (sql.failed || !(w->insert_sql = ns__strdup(ns__buf_cstr(&sql))))
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    ns__buf_free(&sql);
    if (st == NS_OK && !w->copy_sql)
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (st != NS_OK)
        goto out;
checkpoint:
    /* Created once per target; the lock keeps simultaneous first runs apart. */
    if ((st = ns__pgw_exec(w, err, "checkpoint table", "BEGIN", 0, NULL)) != NS_OK ||
        (st = ns__pgw_exec(w, err, "checkpoint table", "SELECT pg_advisory_xact_lock(1853058920)",
                           0, NULL)) != NS_OK ||
        (st = ns__pgw_exec(w, err, "checkpoint table", CKPT_TABLE, 0, NULL)) != NS_OK ||
        (st = ns__pgw_exec(w, err, "checkpoint table", "COMMIT", 0, NULL)) != NS_OK)
        PQclear(PQexec(w->c, "ROLLBACK"));
out:
    PQclear(res);
    return st;
}

/* A checkpoint row's statement parameters: $1-$4 its key, $5 the execution,
 * $6 the step execution, $7 the context. */
typedef struct ckpt_params {
    char e[24], s[24];
    const char *v[7];
} ckpt_params;

static const char *const *ckpt_params_of(ckpt_params *cp, const ns_ckpt_key *k, const char *context)
{
    snprintf(cp->e, sizeof(cp->e), "%lld", (long long)k->execution_id);
    snprintf(cp->s, sizeof(cp->s), "%lld", (long long)k->step_execution_id);
    const char *v[7] = {k->job_name, k->job_key, k->step, k->partition ? k->partition : "",
                        cp->e,       cp->s,      context};
    memcpy(cp->v, v, sizeof(v));
    return cp->v;
}

static ns_status pw_checkpoint(ns_writer *base, const ns_ckpt_key *k, char **context, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ckpt_params cp;
    const char *const *p = ckpt_params_of(&cp, k, NULL);
    PGresult *res;
    if (k->reclaim) {
        /* Still ours, or someone took the instance over while this run
         * could not reach the server (the commit is fenced as well). */
        res = PQexecParams(w->c,
                           "SELECT execution_id, context FROM nightshift_checkpoint"
                           " WHERE job_name = $1 AND job_key = $2 AND step_name = $3"
                           " AND partition_name = $4",
                           4, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            ns_status st = ns__pgw_fail(w, res, err, "claim checkpoint");
            PQclear(res);
            return st;
        }
        if (PQntuples(res) == 1) {
            int64_t owner = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            const char *ctx = PQgetvalue(res, 0, 1);
            *context = owner == k->execution_id && ctx[0] ? ns__strdup(ctx) : NULL;
            bool oom = owner == k->execution_id && ctx[0] && !*context;
            PQclear(res);
            if (owner != k->execution_id)
                return ns__fenced(err, k, owner);
            return oom ? ns__err(err, NS_ENOMEM, NULL, "out of memory") : NS_OK;
        }
        PQclear(res); /* no row: claimed below, as on a first start */
    }
    /* Atomic under concurrency: a chunk of the previous owner in flight
     * holds the row; the claim waits for it and returns its context. */
    res = PQexecParams(
        w->c,
        "INSERT INTO nightshift_checkpoint (job_name, job_key, step_name, partition_name,"
        " execution_id, step_execution_id, context) VALUES ($1, $2, $3, $4, $5, $6, '')"
        " ON CONFLICT (job_name, job_key, step_name, partition_name) DO UPDATE SET"
        " execution_id = excluded.execution_id,"
        " step_execution_id = excluded.step_execution_id, updated_at = now()"
        " RETURNING context",
        6, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ns_status st = ns__pgw_fail(w, res, err, "claim checkpoint");
        PQclear(res);
        return st;
    }
    const char *ctx = PQgetvalue(res, 0, 0);
    bool some = ctx[0] != '\0';
    *context = some ? ns__strdup(ctx) : NULL;
    PQclear(res);
    return some && !*context ? ns__err(err, NS_ENOMEM, NULL, "out of memory") : NS_OK;
}

/* The checkpoint row is no longer ours: another execution claimed it. */
static ns_status pw_fenced(pg_writer *w, const ns_ckpt_key *k, ns_error *err)
{
    ckpt_params cp;
    PGresult *res =
        PQexecParams(w->c,
                     "SELECT execution_id FROM nightshift_checkpoint WHERE job_name = $1"
                     " AND job_key = $2 AND step_name = $3 AND partition_name = $4",
                     4, NULL, ckpt_params_of(&cp, k, NULL), NULL, NULL, 0);
    int64_t owner = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                        ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                        : -1;
    PQclear(res);
    return ns__fenced(err, k, owner);
}

ns_status ns__pgw_begin(pg_writer *w, ns_error *err)
{
    ns_status st;
    if (w->in_txn)
        return NS_OK;
    /* Deferred constraints are checked at the end of each statement, where
     * bisection can find the row at fault, instead of failing the COMMIT. */
    PGresult *res = PQexec(w->c, "BEGIN; SET CONSTRAINTS ALL IMMEDIATE");
    st = PQresultStatus(res) == PGRES_COMMAND_OK ? NS_OK : ns__pgw_fail(w, res, err, "begin");
    PQclear(res);
    if (st != NS_OK) {
        PQclear(PQexec(w->c, "ROLLBACK"));
        return st;
    }
    w->in_txn = true;
    if (w->mode == NS_MODE_REPLACE && !w->replaced) {
        /* DELETE, not TRUNCATE: readers go on seeing the old rows until the
         * new ones commit, instead of waiting on an exclusive lock. */
        char *sql = ns__asprintf("DELETE FROM %s", w->qtable);
        st = sql ? ns__pgw_exec(w, err, "replace", sql, 0, NULL) : NS_ENOMEM;
        free(sql);
        w->replaced = st == NS_OK;
    }
    return st;
}

static ns_status pw_commit(ns_writer *base, const ns_ckpt_key *k, const char *context,
                           ns_commit_hook hook, void *arg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st;
    ckpt_params cp;

    if ((st = ns__pgw_begin(w, err)) != NS_OK)
        return st;
    const char *const *p = ckpt_params_of(&cp, k, context);
    /* Fenced: saved only while the row is still claimed by this execution
     * (pw_checkpoint); otherwise nothing is updated and the chunk is not
     * committed. */
    PGresult *res =
        PQexecParams(w->c,
                     "INSERT INTO nightshift_checkpoint (job_name, job_key, step_name,"
                     " partition_name, execution_id, step_execution_id, context)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                     " ON CONFLICT (job_name, job_key, step_name, partition_name) DO UPDATE SET"
                     " step_execution_id = excluded.step_execution_id,"
                     " context = excluded.context, updated_at = now()"
                     " WHERE nightshift_checkpoint.execution_id = excluded.execution_id",
                     7, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        st = ns__pgw_fail(w, res, err, "save checkpoint");
        PQclear(res);
        return st;
    }
    bool saved = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!saved)
        return pw_fenced(w, k, err);
    if (hook && (st = hook(arg, err)) != NS_OK)
        return st;
    res = PQexec(w->c, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        st = ns__pgw_fail(w, res, err, "commit");
        PQclear(res);
        return st;
    }
    PQclear(res);
    w->in_txn = false;
    return NS_OK;
}

static void pw_rollback(ns_writer *base)
{
    pg_writer *w = (pg_writer *)base;
    if (w->copying) {
        PQputCopyEnd(w->c, "chunk abandoned by nightshift");
        PGresult *res;
        while ((res = PQgetResult(w->c)) != NULL)
            PQclear(res);
        w->copying = false;
    }
    ns__pgw_chunk_reset(w);
    if (w->in_txn && w->c)
        PQclear(PQexec(w->c, "ROLLBACK"));
    w->in_txn = false;
    w->replaced = false;
}

/* A rollback on a frozen server would wait for ever: under the watchdog. */
static void g_rollback(ns_writer *base)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    pw_rollback(base);
    ns__watchdog_disarm(w->wd);
}

static void pw_close(ns_writer *base)
{
    pg_writer *w = (pg_writer *)base;
    g_rollback(base);
    if (w->held_prepared && base->shared && w->c) { /* the connection lives on */
        char sql[64];
        snprintf(sql, sizeof(sql), "DEALLOCATE \"%s\"", w->held_name);
        PQclear(PQexec(w->c, sql));
    }
    if (!base->shared)
        PQfinish(w->c);
    ns__pg_cancel_free(w->cancel);
    for (size_t i = 0; i < w->ncols; i++)
        free(w->cols[i].name);
    free(w->cols);
    free(w->where);
    free(w->qtable);
    free(w->insert_sql);
    ns__buf_free(&w->scratch);
    free(w->copy_sql);
    free(w->merge_sql);
    free(w->repeats_sql);
    free(w->key);
    free(w->off);
    free(w->item);
    free(w->held);
    for (size_t k = 0; k < w->nkeys; k++) {
        free(w->keys[k].cols);
        free(w->keys[k].mem);
        free(w->keys[k].index);
        free(w->keys[k].dup_prefix);
    }
    free(w->dups);
    free(w->bulk_sql);
    free(w->keys);
    for (size_t k = 0; k < w->nchecks; k++)
        ns__pg_check_free(w->checks[k]);
    free(w->checks);
    free(w->bounds);
    for (size_t k = 0; k < w->nprobes; k++) {
        free(w->probes[k].sql);
        free(w->probes[k].fields);
        free(w->probes[k].parents_sql);
        free(w->probes[k].conname);
        free(w->probes[k].pbits);
    }
    free(w->probes);
    free(w->pending);
    ns__buf_free(&w->data);
}

static bool pw_single(ns_writer *base)
{
    return ((pg_writer *)base)->mode == NS_MODE_REPLACE;
}

/* The writer's calls that may block on the server, under the watchdog. */
static ns_status g_checkpoint(ns_writer *base, const ns_ckpt_key *k, char **context, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, pw_checkpoint(base, k, context, err), err);
}

static ns_status g_write(ns_writer *base, ns_item *items, size_t n, ns_arena *arena, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, ns__pgw_write(base, items, n, arena, err), err);
}

static ns_status g_feed(ns_writer *base, ns_item *items, size_t index, ns_arena *arena,
                        ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, ns__pgw_feed(base, items, index, arena, err), err);
}

static ns_status g_commit(ns_writer *base, const ns_ckpt_key *k, const char *context,
                          ns_commit_hook hook, void *arg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, pw_commit(base, k, context, hook, arg, err), err);
}

const ns_writer_vt ns__writer_table_pg = {
    .name = "table:postgresql",
    .version = NS_WRITER_VERSION,
    .caps = NS_WRITER_TRANSACTIONAL,
    .instance_size = sizeof(pg_writer),
    .open = pw_open,
    .checkpoint = g_checkpoint,
    .write = g_write,
    .commit = g_commit,
    .rollback = g_rollback,
    .close = pw_close,
    .single_transaction = pw_single,
    .feed = g_feed,
    .sql = &ns__pgw_sql,
};
