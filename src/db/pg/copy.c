/*
 * copy.c - the PostgreSQL table writer's bulk path: each chunk
 * streamed with COPY (fed while the chunk is read), every value checked
 * against its column first, and what only the server knows isolated row by
 * row inside savepoints (table.c says how).
 */
#include "db/pg/pg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends one value in COPY text format: runs without a special byte are
 * copied whole; \\, tab, newline and carriage return are escaped. */
static ns_status copy_value(ns_buf *b, const ns_value *v)
{
    if (!v->ptr)
        return ns__buf_append(b, "\\N", 2);
    if (ns__buf_reserve(b, v->len * 2) != NS_OK)
        return NS_ENOMEM;
    const char *p = v->ptr, *end = v->ptr + v->len;
    char *o = b->data + b->len;
    while (p < end) {
        const char *run = p;
        while (p < end && *p != '\\' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p < end) {
            *o++ = '\\';
            *o++ = *p == '\t' ? 't' : *p == '\n' ? 'n' : *p == '\r' ? 'r' : '\\';
            p++;
        }
    }
    b->len = (size_t)(o - b->data);
    return NS_OK;
}

void ns__pgw_reject(ns_item *it, const char *code, const char *column, const char *msg, ns_arena *a)
{
    it->code = ns__arena_strndup(a, code, strlen(code));
    it->column = column ? ns__arena_strndup(a, column, strlen(column)) : NULL;
    it->message = ns__arena_strndup(a, msg, strlen(msg));
}

void ns__pgw_read_error(PGresult *res, copy_error *e)
{
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    const char *column = PQresultErrorField(res, PG_DIAG_COLUMN_NAME);
    const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
    const char *line = ctx ? strstr(ctx, "COPY ") : NULL;

    memset(e, 0, sizeof(*e));
    snprintf(e->code, sizeof(e->code), "%s", code ? code : "XX000");
    snprintf(e->constraint, sizeof(e->constraint), "%s", constraint ? constraint : "");
    /* "COPY items, line 3, column qty: "12x"" */
    if (line && (line = strstr(line, ", line ")))
        e->line = strtol(line + 7, NULL, 10);
    const char *col = line ? strstr(line, ", column ") : NULL;
    const char *key = detail ? strstr(detail, "Key (") : NULL;
    if (column)
        snprintf(e->column, sizeof(e->column), "%s", column);
    else if (col)
        snprintf(e->column, sizeof(e->column), "%.*s", (int)strcspn(col + 9, ":"), col + 9);
    else if (key && strcspn(key + 5, ",)") < strcspn(key + 5, ")") + 1 &&
             key[5 + strcspn(key + 5, ",)")] == ')')
        /* "Key (email)=(x) already exists.": one column, named. */
        snprintf(e->column, sizeof(e->column), "%.*s", (int)strcspn(key + 5, ")"), key + 5);
    if (snprintf(e->message, sizeof(e->message), "%s%s%s%s", msg ? msg : "error",
                 detail ? " (" : "", detail ? detail : "", detail ? ")" : "") < 0)
        e->message[0] = '\0';
    /* Cardinality and data exceptions, integrity violations, a trigger's RAISE and limits
     * such as an oversized index row are about the row; anything else (a
     * lost connection, a full disk, permissions) is not. */
    e->row_level = strncmp(e->code, "21", 2) == 0 || strncmp(e->code, "22", 2) == 0 ||
                   strncmp(e->code, "23", 2) == 0 || strncmp(e->code, "P0", 2) == 0 ||
                   strncmp(e->code, "54", 2) == 0;
}

/* Ends the COPY under way and reads its outcome: NS_OK, or NS_EDB with *e
 * filled (and err too when the error is not about a row). */
static ns_status copy_end(pg_writer *w, copy_error *e, ns_error *err)
{
    /* Every way out leaves *e said: a failure without a result (the
     * connection gone mid-COPY) is not about a row. */
    memset(e, 0, sizeof(*e));
    if (PQputCopyEnd(w->c, NULL) != 1)
        return ns__pgw_fail(w, NULL, err, "COPY");
    ns_status st = NS_OK;
    PGresult *res;
    while ((res = PQgetResult(w->c)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && st == NS_OK) {
            ns__pgw_read_error(res, e);
            st = NS_EDB;
            if (!e->row_level)
                ns__pgw_fail(w, res, err, "COPY");
        }
        PQclear(res);
    }
    return st;
}

/* Starts the writer's COPY ... FROM STDIN in a new savepoint ns_rows
 * (OPEN), also releasing the one before (RELEASE). */
enum copy_sp { SP_OPEN, SP_RELEASE };

static ns_status copy_in(pg_writer *w, enum copy_sp sp, ns_error *err)
{
    size_t skip = sp == SP_RELEASE ? 0 : strlen(COPY_RELEASE);
    PGresult *res = PQexec(w->c, w->copy_sql + skip);
    ns_status st = PQresultStatus(res) == PGRES_COPY_IN ? NS_OK : ns__pgw_fail(w, res, err, "COPY");
    PQclear(res);
    return st;
}

/* Sends COPY lines [lo, hi) in savepoint ns_rows (sp: OPEN or RELEASE).
 * NS_OK, or NS_EDB with *e filled. */
static ns_status copy_range(pg_writer *w, size_t lo, size_t hi, enum copy_sp sp, copy_error *e,
                            ns_error *err)
{
    memset(e, 0, sizeof(*e));
    ns_status st = copy_in(w, sp, err);
    if (st != NS_OK)
        return st;
    const char *from = w->data.data + w->off[lo];
    size_t len = w->off[hi] - w->off[lo];
    if (len && PQputCopyData(w->c, from, (int)len) != 1)
        return ns__pgw_fail(w, NULL, err, "COPY");
    return copy_end(w, e, err);
}

/*
 * Loads COPY lines [lo, hi), rejecting exactly the rows the server refuses.
 * Each attempt runs in a savepoint, so a failed one leaves the chunk's
 * transaction as it was.
 */
/*
 * Rows per COPY when isolating. A failed COPY is sent again up to its bad
 * row, so with one error in a segment of s rows about s/2 rows' work is
 * lost; and each segment costs its round trips (SAVEPOINT, COPY, its end,
 * RELEASE), about SEGMENT_COST rows' worth. At an error rate r the cost per
 * row, SEGMENT_COST / s + r * s / 2, is least at s = sqrt(2 * SEGMENT_COST
 * / r): r is this load's so far (the errors the server found in COPYs over
 * the rows it read in them, from a prior of one in 10,000), so segments are
 * large while errors are rare and shrink where they are frequent. Rows
 * before a row the server named passed every check made row by row, and go
 * in one large segment.
 */
#define SEGMENT      10000
#define SEGMENT_MIN  16
#define SEGMENT_COST 32

static size_t segment(const pg_writer *w)
{
    double rate = ((double)w->copy_errors + 1) / ((double)w->copy_rows + 10000);
    double s = sqrt(2.0 * SEGMENT_COST / rate);
    return s < SEGMENT_MIN ? SEGMENT_MIN : s > SEGMENT ? SEGMENT : (size_t)s;
}

/* Counts a COPY of `rows` lines in the error rate: failed (e) or not. */
static void count_copy(pg_writer *w, size_t rows, const copy_error *e)
{
    if (e && e->row_level) {
        w->copy_errors++;
        rows = e->line >= 1 && (size_t)e->line <= rows ? (size_t)e->line : rows;
    }
    w->copy_rows += rows;
}

static ns_status isolate_by(pg_writer *w, ns_item *items, size_t lo, size_t hi, size_t seg,
                            ns_arena *a, ns_error *err);
static void surprise(pg_writer *w, const copy_error *e);

static ns_status isolate(pg_writer *w, ns_item *items, size_t lo, size_t hi, ns_arena *a,
                         ns_error *err)
{
    return isolate_by(w, items, lo, hi, segment(w), a, err);
}

static ns_status isolate_by(pg_writer *w, ns_item *items, size_t lo, size_t hi, size_t seg,
                            ns_arena *a, ns_error *err)
{
    ns_status st;
    copy_error e = {0};
    /* A segment the server took leaves its savepoint open: the next one's
     * round trip releases it. */
    bool open = false;

    while (lo < hi && !w->replan) {
        size_t end = hi - lo > seg ? lo + seg : hi;
        st = copy_range(w, lo, end, open ? SP_RELEASE : SP_OPEN, &e, err);
        open = st == NS_OK;
        count_copy(w, end - lo, st == NS_OK ? NULL : &e);
        if (st == NS_OK) {
            lo = end;
            continue;
        }
        if (!e.row_level)
            return st;
        if (ns__pgw_rollback_to(w, "ns_rows", err) != NS_OK)
            return NS_EDB;
        seg = segment(w);
        if (e.line >= 1 && (size_t)e.line <= end - lo) {
            /* The server named the row: keep those before it, reject it,
             * go on after it. */
            size_t bad = lo + (size_t)e.line - 1;
            ns__pgw_reject(&items[w->item[bad]], e.code, e.column[0] ? e.column : NULL, e.message,
                           a);
            surprise(w, &e);
            if (bad > lo && (st = isolate_by(w, items, lo, bad, SEGMENT, a, err)) != NS_OK)
                return st;
            lo = bad + 1;
            continue;
        }
        /* No line (foreign keys are checked after the statement): halve. */
        if (end - lo == 1) {
            ns__pgw_reject(&items[w->item[lo]], e.code, e.column[0] ? e.column : NULL, e.message,
                           a);
            surprise(w, &e);
            lo = end;
            continue;
        }
        size_t mid = lo + (end - lo) / 2;
        if ((st = isolate(w, items, lo, mid, a, err)) != NS_OK ||
            (st = isolate(w, items, mid, end, a, err)) != NS_OK)
            return st;
        lo = end;
    }
    return open ? ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_rows", 0, NULL) : NS_OK;
}

/*
 * Held rows (probable collisions with earlier rows of the load), each tried
 * on its own without a round trip of its own: in libpq's pipeline mode, per
 * row, SAVEPOINT, the INSERT, a sync (so an error does not skip what
 * follows), then ROLLBACK TO and RELEASE — the savepoint is always undone.
 * A row the server refuses is rejected with the server's own error; one it
 * takes (a false alarm) is marked in `good` and sent afterwards with the
 * others it took, so nothing is decided but by the server. Results are read
 * after every PROBE_BATCH rows, so neither side's socket buffer fills.
 * Before, each held row cost four round trips (SAVEPOINT, COPY, its data,
 * RELEASE or ROLLBACK).
 */
#define PROBE_BATCH 64

/* Reads one command's result in pipeline mode: its status, and the NULL
 * that ends it (a sync has none). */
static ExecStatusType pipe_result(pg_writer *w, PGresult **out)
{
    PGresult *res = PQgetResult(w->c);
    ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (res && s != PGRES_PIPELINE_SYNC) {
        PGresult *end = PQgetResult(w->c);
        PQclear(end);
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return s;
}

static ns_status send_probe(pg_writer *w, const ns_item *it, const char **vals, size_t *at)
{
    w->scratch.len = 0;
    for (size_t j = 0; j < w->ncols; j++) {
        at[j] = w->scratch.len;
        const ns_value *v = &it->fields[j];
        if (v->ptr && (ns__buf_append(&w->scratch, v->ptr, v->len) != NS_OK ||
                       ns__buf_putc(&w->scratch, '\0') != NS_OK))
            return NS_ENOMEM;
    }
    for (size_t j = 0; j < w->ncols; j++)
        vals[j] = it->fields[j].ptr ? w->scratch.data + at[j] : NULL;
    bool ok =
        PQsendQueryParams(w->c, "SAVEPOINT ns_held", 0, NULL, NULL, NULL, NULL, 0) &&
        PQsendQueryPrepared(w->c, w->held_name, (int)w->ncols, vals, NULL, NULL, 0) &&
        PQpipelineSync(w->c) &&
        PQsendQueryParams(w->c, "ROLLBACK TO SAVEPOINT ns_held", 0, NULL, NULL, NULL, NULL, 0) &&
        PQsendQueryParams(w->c, "RELEASE SAVEPOINT ns_held", 0, NULL, NULL, NULL, NULL, 0);
    return ok ? NS_OK : NS_EDB;
}

static ns_status probe_held(pg_writer *w, ns_item *items, bool *good, ns_arena *a, ns_error *err)
{
    ns_status st = NS_OK;
    const char **vals = calloc(w->ncols + 1, sizeof(*vals));
    size_t *at = calloc(w->ncols + 1, sizeof(*at));
    if (!vals || !at) {
        free(vals);
        free(at);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    if (!w->held_prepared) {
        snprintf(w->held_name, sizeof(w->held_name), "ns_held_%p", (void *)w);
        PGresult *res = PQprepare(w->c, w->held_name, w->insert_sql, (int)w->ncols, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            st = ns__pgw_fail(w, res, err, "prepare");
        PQclear(res);
        w->held_prepared = st == NS_OK;
    }
    if (st != NS_OK || !PQenterPipelineMode(w->c)) {
        free(vals);
        free(at);
        return st != NS_OK ? st : ns__pgw_fail(w, NULL, err, "pipeline");
    }
    for (size_t b = 0; b < w->nheld && st == NS_OK; b += PROBE_BATCH) {
        size_t e = w->nheld - b > PROBE_BATCH ? b + PROBE_BATCH : w->nheld;
        for (size_t i = b; i < e && st == NS_OK; i++)
            if ((st = send_probe(w, &items[w->held[i]], vals, at)) != NS_OK)
                st = st == NS_ENOMEM ? ns__err(err, NS_ENOMEM, NULL, "out of memory")
                                     : ns__pgw_fail(w, NULL, err, "pipeline");
        if (st != NS_OK || !PQpipelineSync(w->c)) {
            st = st != NS_OK ? st : ns__pgw_fail(w, NULL, err, "pipeline");
            break;
        }
        /* Per row: SAVEPOINT, INSERT, sync, ROLLBACK TO, RELEASE; then the batch's sync. */
        for (size_t i = b; i < e && st == NS_OK; i++) {
            PGresult *res = NULL;
            ExecStatusType s0 = pipe_result(w, NULL), s1 = pipe_result(w, &res);
            ExecStatusType s2 = pipe_result(w, NULL), s3 = pipe_result(w, NULL),
                           s4 = pipe_result(w, NULL);
            copy_error ce;
            if (s0 == PGRES_COMMAND_OK && s1 == PGRES_COMMAND_OK) {
                good[i] = true;
            } else if (s0 == PGRES_COMMAND_OK && s1 == PGRES_FATAL_ERROR && res &&
                       (ns__pgw_read_error(res, &ce), ce.row_level)) {
                ns__pgw_reject(&items[w->held[i]], ce.code, ce.column[0] ? ce.column : NULL,
                               ce.message, a);
            } else {
                st = ns__pgw_fail(w, s0 == PGRES_COMMAND_OK ? res : NULL, err, "held row");
            }
            PQclear(res);
            if (st == NS_OK &&
                (s2 != PGRES_PIPELINE_SYNC || s3 != PGRES_COMMAND_OK || s4 != PGRES_COMMAND_OK))
                st = ns__pgw_fail(w, NULL, err, "savepoint");
        }
        if (st == NS_OK && pipe_result(w, NULL) != PGRES_PIPELINE_SYNC)
            st = ns__pgw_fail(w, NULL, err, "pipeline");
    }
    /* After a failure, results may be left unread: the step fails and
     * the connection goes with it; leaving pipeline mode is best effort. */
    if (!PQexitPipelineMode(w->c) && st == NS_OK)
        st = ns__pgw_fail(w, NULL, err, "pipeline");
    free(vals);
    free(at);
    return st;
}

/* Checks an item against the catalog; a refused item is marked rejected. */
static bool check_item(pg_writer *w, ns_item *it, ns_arena *a)
{
    char msg[256];
    for (size_t j = 0; j < w->ncols; j++) {
        const ns_value *v = &it->fields[j];
        const pcol *c = &w->cols[j];
        ns_bound scratch, *b = w->bounds ? &w->bounds[j] : &scratch;
        const char *code;
        if (!v->ptr) {
            if (c->notnull) {
                snprintf(msg, sizeof(msg),
                         "null value in column \"%s\" violates not-null constraint", c->name);
                ns__pgw_reject(it, "23502", c->name, msg, a);
                return false;
            }
        } else if (memchr(v->ptr, '\0', v->len)) {
            ns__pgw_reject(
                it, "22021", c->name,
                "invalid byte sequence for encoding \"UTF8\": 0x00 (PostgreSQL text cannot "
                "hold NUL)",
                a);
            return false;
        } else if (!ns__coltype_check(&c->ct, v->ptr, v->len, b, &code, msg, sizeof(msg))) {
            ns__pgw_reject(it, code, c->name, msg, a);
            return false;
        }
    }
    return true;
}

/* Appends item `index` as the next COPY line. */
static ns_status add_line(pg_writer *w, const ns_item *it, size_t index, ns_error *err)
{
    if (w->lines + 2 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        size_t *off = realloc(w->off, cap * sizeof(*off));
        size_t *item = off ? realloc(w->item, cap * sizeof(*item)) : NULL;
        if (off)
            w->off = off;
        if (!item)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        w->item = item;
        w->cap = cap;
    }
    w->off[w->lines] = w->data.len;
    w->item[w->lines++] = index;
    if (w->merge_sql && ns__buf_printf(&w->data, "%zu\t", w->lines - 1) != NS_OK)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t j = 0; j < w->ncols; j++)
        if ((j && ns__buf_putc(&w->data, '\t') != NS_OK) ||
            copy_value(&w->data, &it->fields[j]) != NS_OK)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (ns__buf_putc(&w->data, '\n') != NS_OK)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    w->off[w->lines] = w->data.len;
    return NS_OK;
}

void ns__pgw_chunk_reset(pg_writer *w)
{
    w->data.len = 0;
    w->lines = 0;
    w->sent = 0;
    w->fed = false;
    w->nheld = 0;
    w->npending = 0;
    w->ndups = 0;
}

/*
 * Sends what is buffered and not sent yet, once there is FLUSH of it (or
 * all). Small sends keep the server busy while the client parses: on the
 * 1M-row bench, 16-64 KiB loaded in 2.7-3.2 s, 256 KiB in 3.4-3.6 s, 1 MiB in
 * 3.5-4.2 s (fsync off, 2 runs each).
 */
#define FLUSH (32u << 10)

static ns_status stream(pg_writer *w, bool all, ns_error *err)
{
    size_t len = w->data.len - w->sent;
    if (!len || (!all && len < FLUSH))
        return NS_OK;
    ns__pgw_guard(w);
    ns_status st = PQputCopyData(w->c, w->data.data + w->sent, (int)len) == 1
                       ? NS_OK
                       : ns__pgw_fail(w, NULL, err, "COPY");
    if ((st = ns__pgw_unguard(w, st, err)) != NS_OK)
        return st;
    w->sent = w->data.len;
    return NS_OK;
}

/*
 * Tells whether the item's key on any unique index may already have been
 * sent in this load, and records its keys. Keys compare as bytes: two
 * spellings of one value (" 1" and "1") are not caught here, and the server
 * refusing the row later is handled like any other error.
 */
static inline uint64_t mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

/* Eight bytes at a time, then the tail and the length (which also
 * separates the columns of a key). */
static uint64_t hash_bytes(uint64_t h, const char *p, size_t len)
{
    uint64_t x;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&x, p + i, 8);
        h = mix(h, x);
    }
    x = 0;
    memcpy(&x, p + i, len - i);
    return mix(mix(h, x), len);
}

static bool seen_before(pg_writer *w, const ns_item *it)
{
    bool seen = false;
    for (size_t k = 0; k < w->nkeys; k++) {
        const ukey *u = &w->keys[k];
        uint64_t h = 0xcbf29ce484222325ULL;
        bool null = false;
        for (size_t c = 0; c < u->ncols; c++) {
            const ns_value *v = &it->fields[u->cols[c]];
            if (!v->ptr) { /* NULLs never collide in a unique index */
                null = true;
                break;
            }
            h = hash_bytes(h, v->ptr, v->len);
        }
        if (null)
            continue;
        /* Blocked filter: the key's 4 bits lie in one 512-bit block, so a
         * lookup costs one cache miss instead of four. */
        uint64_t g = mix(h, 0x243f6a8885a308d3ULL);
        uint64_t *block = u->bits + (h % (BLOOM_BITS / 512)) * 8;
        bool all = true;
        for (int i = 0; i < 4; i++) {
            unsigned bit = (unsigned)(g >> (i * 9)) & 511u;
            uint64_t mask = 1ULL << (bit % 64);
            all &= (block[bit / 64] & mask) != 0;
            block[bit / 64] |= mask;
        }
        seen |= all;
    }
    return seen;
}

static ns_status push(size_t **v, size_t *n, size_t *cap, size_t x, ns_error *err)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        size_t *p = realloc(*v, c * sizeof(*p));
        if (!p)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return NS_OK;
}

static bool probing(const pg_writer *w)
{
    for (size_t k = 0; k < w->nprobes; k++)
        if (w->probes[k].on && !w->probes[k].broken)
            return true;
    return false;
}

/* A reject the client did not see coming turns on the probes that would
 * have: a foreign key without a parent, a key already in the table, the
 * CHECK the server names. */
static void surprise(pg_writer *w, const copy_error *e)
{
    int kind = strcmp(e->code, "23503") == 0   ? PR_FK
               : strcmp(e->code, "23505") == 0 ? PR_KEY
               : strcmp(e->code, "23514") == 0 ? PR_CHECK
                                               : -1;
    if (kind < 0)
        return;
    for (size_t k = 0; k < w->nprobes; k++) {
        pg_probe *pr = &w->probes[k];
        if ((int)pr->kind == kind && !pr->broken && !pr->on &&
            (kind != PR_CHECK || strcmp(pr->conname, e->constraint) == 0)) {
            pr->on = true;
            w->replan |= w->can_replan;
        }
    }
    w->quiet = 0;
}

static ns_status start_copy(pg_writer *w, ns_error *err)
{
    ns_status st;
    if ((st = ns__pgw_begin(w, err)) != NS_OK || (st = copy_in(w, SP_OPEN, err)) != NS_OK)
        return st;
    w->copying = true;
    return NS_OK;
}

static ns_status dup_message(pg_writer *w, const ukey *u, const char *shown, const char **msg,
                             const char **col, ns_arena *a, ns_error *err);

/* Appends a value to a PostgreSQL array literal: "..." with \ and \". */
static void array_elem(ns_buf *b, const ns_value *v)
{
    if (b->len > 1)
        ns__buf_putc(b, ',');
    if (!v->ptr) {
        ns__buf_printf(b, "NULL");
        return;
    }
    ns__buf_putc(b, '"');
    for (size_t i = 0; i < v->len; i++) {
        if (v->ptr[i] == '"' || v->ptr[i] == '\\')
            ns__buf_putc(b, '\\');
        ns__buf_putc(b, v->ptr[i]);
    }
    ns__buf_putc(b, '"');
}

/*
 * Text arrays, one per field in `fields` (all fields when NULL), over the
 * items at `rows[0..n)`, as statement parameters in vals. False when out
 * of memory; arr is freed by the caller (free_arrays) either way.
 */
static bool arrays(const ns_item *items, const size_t *rows, size_t n, const size_t *fields,
                   size_t nf, ns_buf *arr, const char **vals)
{
    for (size_t f = 0; f < nf; f++) {
        ns__buf_putc(&arr[f], '{');
        for (size_t r = 0; r < n; r++)
            array_elem(&arr[f], &items[rows[r]].fields[fields ? fields[f] : f]);
        ns__buf_putc(&arr[f], '}');
        if (arr[f].failed)
            return false;
        vals[f] = ns__buf_cstr(&arr[f]);
    }
    return true;
}

static void free_arrays(ns_buf *arr, size_t nf, const char **vals)
{
    for (size_t f = 0; arr && f < nf; f++)
        ns__buf_free(&arr[f]);
    free(arr);
    free(vals);
}

/*
 * A foreign key's parents, read once into a Bloom filter: a row whose key
 * is not in it has no parent (no false negatives) and is held, so the load
 * streams again instead of waiting for a probe each chunk. A false positive
 * or a parent deleted since fails the COPY as before (and turns the probe
 * on); a parent added since holds a row that then loads. Either costs time,
 * never a decision. Keys compare as integers or as bytes (pkind, chosen at
 * open from the two columns' types and collations); 32 bits per key, 6 of
 * them set in one 512-bit block (about 3e-5 false positives), at most 8 MiB.
 */
#define PARENT_BLOCKS_MAX ((8u << 20) / 64)
/* Probing a row of a chunk costs about what reading 15 to 23 parent keys
 * does (1M parents: a 50,000-row probe 0.31-0.42 s and all keys read 0.49 s
 * on one machine; 100,000 rows probed 0.18-0.29 s, the keys read 0.09-0.11 s
 * on another), so the keys are read once the rows probed would reach a
 * fifteenth of them: a rent-or-buy rule, never more than twice the best. */
#define PROBE_VS_READ 15
/* Under 12 bits per key the filter lets too many rows through to be worth
 * having. */
#define PARENT_KEYS_MAX ((double)PARENT_BLOCKS_MAX * 512 / 12)
#define PARENT_SEED     0x452821e638d01377ULL

static uint64_t parent_hash_int(int64_t i)
{
    return mix(mix(PARENT_SEED, (uint64_t)i), 8);
}

static bool parent_bits(const pg_probe *pr, uint64_t h, bool set)
{
    uint64_t g = mix(h, 0x13198a2e03707344ULL);
    uint64_t *block = pr->pbits + (h % pr->pblocks) * 8;
    bool all = true;
    for (int i = 0; i < 6; i++) {
        unsigned bit = (unsigned)(g >> (i * 9)) & 511u;
        uint64_t mask = 1ULL << (bit % 64);
        all &= (block[bit / 64] & mask) != 0;
        if (set)
            block[bit / 64] |= mask;
    }
    return all;
}

/* Whether the item's key may have a parent (NULL, or a value the filter
 * cannot read, counts as yes: the server judges it). b: the key field as
 * the type check read it, or NULL to read it here. */
static bool parent_may_exist(const pg_writer *w, const pg_probe *pr, const ns_item *it,
                             const ns_bound *b)
{
    size_t j = pr->fields[0];
    const ns_value *v = &it->fields[j];
    if (!v->ptr)
        return true;
    if (pr->pkind == PK_TEXT)
        return parent_bits(pr, hash_bytes(PARENT_SEED, v->ptr, v->len), false);
    ns_bound scratch;
    const char *code;
    char msg[128];
    if (!b) {
        if (!ns__coltype_check(&w->cols[j].ct, v->ptr, v->len, &scratch, &code, msg, sizeof(msg)))
            return true;
        b = &scratch;
    }
    return b->kind != NS_B_INT || parent_bits(pr, parent_hash_int(b->i), false);
}

/* One key of the parent as COPY's text format gives it ("\n" ended),
 * into the filter. A text key holding an escape is left out: a row with it
 * is held and then loads. */
static void parent_add(pg_probe *pr, const char *p, size_t n)
{
    if (n && p[n - 1] == '\n')
        n--;
    if (pr->pkind == PK_TEXT) {
        if (!memchr(p, '\\', n))
            parent_bits(pr, hash_bytes(PARENT_SEED, p, n), true);
        return;
    }
    char num[32];
    if (n == 0 || n >= sizeof(num))
        return;
    memcpy(num, p, n);
    num[n] = '\0';
    char *end;
    errno = 0;
    long long i = strtoll(num, &end, 10);
    if (!errno && *end == '\0')
        parent_bits(pr, parent_hash_int(i), true);
}

/*
 * Reads the parent's keys, in a savepoint. Without the right to read the
 * parent, without the memory, or with more keys than the filter can hold
 * well (by the estimate, which is not read then, or by the count read),
 * there is no filter and the probe goes on as before.
 */
static ns_status read_parents(pg_writer *w, pg_probe *pr, ns_error *err)
{
    size_t want = 1024;
    while (want < PARENT_BLOCKS_MAX && (double)want * 512 < pr->parent_rows * 32)
        want *= 2;
    pr->pblocks = want;
    if (pr->parent_rows > PARENT_KEYS_MAX || !(pr->pbits = calloc(want, 64))) {
        pr->pkind = PK_NONE;
        return NS_OK;
    }
    ns_status st = ns__pgw_exec(w, err, "savepoint", "SAVEPOINT ns_parents", 0, NULL);
    if (st != NS_OK)
        return st;
    PGresult *res = PQexec(w->c, pr->parents_sql);
    bool ok = PQresultStatus(res) == PGRES_COPY_OUT;
    PQclear(res);
    double keys = 0, most = (double)want * 512 / 12;
    if (ok) {
        char *line;
        int n;
        while ((n = PQgetCopyData(w->c, &line, 0)) > 0) {
            /* The table grew past its estimate: no filter. Not cancelled
             * (a cancel may reach the statement after this one). */
            ok &= ++keys <= most;
            if (ok)
                parent_add(pr, line, (size_t)n);
            PQfreemem(line);
        }
        if (n == -2)
            return ns__pgw_fail(w, NULL, err, "read parent keys");
    }
    while ((res = PQgetResult(w->c))) {
        ok &= PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
    }
    if (!ok) {
        free(pr->pbits);
        pr->pbits = NULL;
        pr->pkind = PK_NONE;
    }
    return ok ? ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_parents", 0, NULL)
              : ns__pgw_rollback_to(w, "ns_parents", err);
}

/*
 * Asks each probe that is on about the pending rows, in one statement each
 * (inside a savepoint: a probe that fails, say on a value its cast refuses,
 * is dropped for the rest of the load and decides nothing). Marks in
 * `hold` the rows to try on their own.
 */
static ns_status run_probes(pg_writer *w, ns_item *items, bool *hold, const char **dupmsg,
                            const char **dupcol, ns_arena *a, ns_error *err)
{
    ns_status st = NS_OK;
    bool found = false;
    /* map: the pending rows a probe asks about, as item indexes (rows)
     * and as positions in pending (at) */
    size_t *rows = malloc((w->npending ? w->npending : 1) * sizeof(*rows));
    size_t *map = malloc((w->npending ? w->npending : 1) * sizeof(*map));
    bool *by_check = calloc(w->npending ? w->npending : 1, sizeof(*by_check));
    if (!rows || !map || !by_check) {
        free(rows);
        free(map);
        free(by_check);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    /* CHECK probes come first (read_holds adds them first): the server
     * checks a row's CHECKs before its keys, so a row a CHECK probe holds
     * is not for a key probe. A key probe also skips the rows an earlier
     * key probe found: the server names the first index a row collides
     * with. */
    for (size_t k = 0; k < w->nprobes && st == NS_OK; k++) {
        pg_probe *pr = &w->probes[k];
        if (!pr->on || pr->broken)
            continue;
        size_t n = 0;
        for (size_t r = 0; r < w->npending; r++)
            if (pr->kind != PR_KEY || (!dupmsg[r] && !by_check[r])) {
                rows[n] = w->pending[r];
                map[n++] = r;
            }
        if (!n)
            continue;
        if (pr->kind == PR_FK && !pr->pbits && pr->pkind != PK_NONE &&
            (double)(pr->probed + n) * PROBE_VS_READ >= pr->parent_rows) {
            if ((st = read_parents(w, pr, err)) != NS_OK)
                break;
            if (pr->pbits) { /* from now on, the filter decides (feed) */
                for (size_t i = 0; i < n; i++)
                    if (!parent_may_exist(w, pr, &items[rows[i]], NULL))
                        hold[map[i]] = found = true;
                pr->on = false;
                continue;
            }
        }
        pr->probed += n;
        ns_buf *arr = calloc(pr->nfields, sizeof(*arr));
        const char **vals = calloc(pr->nfields, sizeof(*vals));
        if (!arr || !vals || !arrays(items, rows, n, pr->fields, pr->nfields, arr, vals)) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        } else if ((st = ns__pgw_exec(w, err, "savepoint", "SAVEPOINT ns_probe", 0, NULL)) ==
                   NS_OK) {
            PGresult *res =
                PQexecParams(w->c, pr->sql, (int)pr->nfields, NULL, vals, NULL, NULL, 0);
            if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                for (int r = 0; r < PQntuples(res) && st == NS_OK; r++) {
                    size_t at = (size_t)strtoull(PQgetvalue(res, r, 0), NULL, 10);
                    if (at < 1 || at > n)
                        continue;
                    size_t row = map[at - 1];
                    hold[row] = found = true;
                    by_check[row] |= pr->kind == PR_CHECK;
                    /* The first key index the row collides with is the one
                     * the server names; a key collision is raised before a
                     * foreign key is checked (at the end of the statement). */
                    if (pr->kind == PR_KEY && !dupmsg[row])
                        st = dup_message(w, &w->keys[pr->key], PQgetvalue(res, r, 1), &dupmsg[row],
                                         &dupcol[row], a, err);
                }
                /* A CHECK may call a function that writes: what the
                 * probe did is undone. */
                if (st == NS_OK)
                    st = pr->kind == PR_CHECK ? ns__pgw_rollback_to(w, "ns_probe", err)
                                              : ns__pgw_exec(w, err, "savepoint",
                                                             "RELEASE SAVEPOINT ns_probe", 0, NULL);
            } else if (PQstatus(w->c) != CONNECTION_OK) {
                st = ns__pgw_fail(w, res, err, "probe");
            } else if ((st = ns__pgw_rollback_to(w, "ns_probe", err)) == NS_OK) {
                /* a cast it cannot make, no right to read the parent: the
                 * server alone judges these rows */
                pr->broken = true;
            }
            PQclear(res);
        }
        free_arrays(arr, pr->nfields, vals);
    }
    free(rows);
    free(map);
    free(by_check);
    /* Probes that keep finding nothing go off until the next surprise. */
    if (st == NS_OK && !found && ++w->quiet >= 2)
        for (size_t k = 0; k < w->nprobes; k++)
            w->probes[k].on = false;
    if (found)
        w->quiet = 0;
    return st;
}

/* Sends the pending rows, holding those the probes point at; those whose
 * key is in the table go to the bulk decision (dups). */
static ns_status send_pending(pg_writer *w, ns_item *items, ns_arena *a, ns_error *err)
{
    ns_status st;
    bool *hold = calloc(w->npending, sizeof(*hold));
    const char **msg = calloc(w->npending, sizeof(*msg)), **col = calloc(w->npending, sizeof(*col));
    if (!hold || !msg || !col) {
        free(hold);
        free(msg);
        free(col);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    if ((st = ns__pgw_begin(w, err)) == NS_OK)
        st = run_probes(w, items, hold, msg, col, a, err);
    for (size_t r = 0; r < w->npending && st == NS_OK; r++) {
        size_t index = w->pending[r];
        if (msg[r]) {
            if (w->ndups == w->dupcap) {
                size_t cap = w->dupcap ? w->dupcap * 2 : 64;
                pg_dup *d = realloc(w->dups, cap * sizeof(*d));
                if (!d) {
                    st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                    break;
                }
                w->dups = d;
                w->dupcap = cap;
            }
            w->dups[w->ndups++] = (pg_dup){index, msg[r], col[r]};
        } else if (hold[r]) {
            st = push(&w->held, &w->nheld, &w->heldcap, index, err);
        } else if ((w->copying || (st = start_copy(w, err)) == NS_OK) &&
                   (st = add_line(w, &items[index], index, err)) == NS_OK) {
            st = stream(w, false, err);
        }
    }
    free(hold);
    free(msg);
    free(col);
    w->npending = 0;
    return st;
}

/* The server's 23505 message for a key of index `u` shown as `shown`
 * (u->dup_prefix, made at open, holds all but the key), with the column
 * when the key has one. */
static ns_status dup_message(pg_writer *w, const ukey *u, const char *shown, const char **msg,
                             const char **col, ns_arena *a, ns_error *err)
{
    size_t np = strlen(u->dup_prefix), ns = strlen(shown);
    static const char tail[] = ") already exists.)";
    char *m = ns__arena_alloc(a, np + ns + sizeof(tail));
    if (!m)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    memcpy(m, u->dup_prefix, np);
    memcpy(m + np, shown, ns);
    memcpy(m + np + ns, tail, sizeof(tail));
    *msg = m;
    *col = u->ncols == 1 ? w->cols[u->cols[0]].name : NULL;
    return NS_OK;
}

/*
 * Decides the rows a key probe found in the table, all at once: one INSERT
 * of them all with ON CONFLICT DO NOTHING, in a savepoint. When it inserts
 * nothing, the server has refused every one for a key collision, and each
 * is rejected with the message the server gives such a row. Otherwise (the
 * table changed since the probe, or another error) it is undone and they
 * are tried one by one with the held rows.
 */
static ns_status decide_dups(pg_writer *w, ns_item *items, ns_arena *a, ns_error *err)
{
    ns_status st = NS_OK;
    ns_buf *arr = calloc(w->ncols, sizeof(*arr));
    const char **vals = calloc(w->ncols, sizeof(*vals));
    size_t *rows = malloc((w->ndups ? w->ndups : 1) * sizeof(*rows));
    bool all_refused = false;
    for (size_t r = 0; rows && r < w->ndups; r++)
        rows[r] = w->dups[r].item;
    if (!arr || !vals || !rows || !arrays(items, rows, w->ndups, NULL, w->ncols, arr, vals))
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    else if ((st = ns__pgw_exec(w, err, "savepoint", "SAVEPOINT ns_bulk", 0, NULL)) == NS_OK) {
        PGresult *res = PQexecParams(w->c, w->bulk_sql, (int)w->ncols, NULL, vals, NULL, NULL, 0);
        copy_error ce;
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            all_refused = PQntuples(res) == 0;
        } else {
            ns__pgw_read_error(res, &ce);
            if (!ce.row_level)
                st = ns__pgw_fail(w, res, err, "insert");
        }
        PQclear(res);
        if (st == NS_OK)
            st = all_refused
                     ? ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_bulk", 0, NULL)
                     : ns__pgw_rollback_to(w, "ns_bulk", err);
    }
    free_arrays(arr, w->ncols, vals);
    free(rows);
    for (size_t r = 0; r < w->ndups && st == NS_OK; r++)
        if (all_refused)
            ns__pgw_reject(&items[w->dups[r].item], "23505", w->dups[r].col, w->dups[r].msg, a);
        else
            st = push(&w->held, &w->nheld, &w->heldcap, w->dups[r].item, err);
    w->ndups = 0;
    return st;
}

static int by_index(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Streams the chunk while it is read: the first good item opens the chunk's
 * COPY (inside a savepoint), and lines go out as they accumulate, so the
 * server inserts while the client parses the rest.
 */
ns_status ns__pgw_feed(ns_writer *base, ns_item *items, size_t index, ns_arena *a, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st;

    if (!w->fed)
        ns__pgw_chunk_reset(w);
    w->fed = true;
    if (!check_item(w, &items[index], a))
        return NS_OK;
    /* Probably collides with an earlier row of this load, or may fail a
     * CHECK: send it after the chunk's COPY, on its own, rather than fail
     * the whole COPY. (The filter records every row's keys, held or not.) */
    bool hold = w->nkeys && seen_before(w, &items[index]);
    for (size_t k = 0; !hold && k < w->nchecks; k++)
        hold = ns__pg_check_may_fail(w->checks[k], w->cols, w->bounds, &items[index]);
    /* A foreign key whose parents were read: a key not among them. */
    for (size_t k = 0; !hold && k < w->nprobes; k++)
        if (w->probes[k].pbits)
            hold = !parent_may_exist(w, &w->probes[k], &items[index],
                                     &w->bounds[w->probes[k].fields[0]]);
    if (hold)
        return push(&w->held, &w->nheld, &w->heldcap, index, err);
    /* The load has met foreign keys without a parent or keys already in
     * the table: the chunk waits for the probes before it is sent. */
    if (probing(w))
        return push(&w->pending, &w->npending, &w->pendcap, index, err);
    if (!w->copying && (st = start_copy(w, err)) != NS_OK)
        return st;
    if ((st = add_line(w, &items[index], index, err)) != NS_OK)
        return st;
    return stream(w, false, err);
}

/* Ends a streaming COPY: NS_OK, or NS_EDB with *e filled. */
static ns_status stream_end(pg_writer *w, copy_error *e, ns_error *err)
{
    memset(e, 0, sizeof(*e));
    ns_status st = stream(w, true, err);
    w->copying = false;
    return st != NS_OK ? st : copy_end(w, e, err);
}

ns_status ns__pgw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st = NS_OK;
    copy_error e = {0};

    /* A caller that did not feed the items as it read them: feed them now,
     * so there is one path (checks, held duplicates, streaming, isolation). */
    if (!w->fed)
        for (size_t i = 0; i < n; i++)
            if ((st = ns__pgw_feed(base, items, i, a, err)) != NS_OK)
                return st;
    if (w->npending && (st = send_pending(w, items, a, err)) != NS_OK)
        goto out;
    for (int pass = 0; w->copying; pass++) {
        st = stream_end(w, &e, err);
        count_copy(w, w->lines, st == NS_OK ? NULL : &e);
        if (st == NS_OK) {
            st = ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_rows", 0, NULL);
        } else if (e.row_level) {
            /* The streamed COPY failed: isolate what it held, knowing the
             * row the server named. Once per chunk, an error that turns a
             * probe on starts the chunk over (ns_chunk), the probes asked:
             * the first chunk of a re-run costs one probe, not one failed
             * COPY per row. */
            if ((st = ns__pgw_rollback_to(w, "ns_rows", err)) != NS_OK)
                goto out;
            w->can_replan = (size_t)pass <= w->nprobes && w->nprobes && w->insert_sql;
            if (w->can_replan &&
                (st = ns__pgw_exec(w, err, "savepoint", "SAVEPOINT ns_chunk", 0, NULL)) != NS_OK)
                goto out;
            if (e.line >= 1 && (size_t)e.line <= w->lines) {
                size_t bad = (size_t)e.line - 1;
                ns__pgw_reject(&items[w->item[bad]], e.code, e.column[0] ? e.column : NULL,
                               e.message, a);
                surprise(w, &e);
                if ((st = isolate_by(w, items, 0, bad, SEGMENT, a, err)) == NS_OK)
                    st = isolate(w, items, bad + 1, w->lines, a, err);
            } else {
                /* No line: a foreign key, checked at the end of the
                 * statement. When a probe can find such rows, it turns on
                 * now and the chunk starts over, instead of bisecting to the
                 * first one. */
                surprise(w, &e);
                if (!w->replan)
                    st = isolate(w, items, 0, w->lines, a, err);
            }
            if (st == NS_OK && w->replan) {
                /* Start over: every line not rejected yet waits for the probes. */
                w->replan = w->can_replan = false;
                if ((st = ns__pgw_rollback_to(w, "ns_chunk", err)) != NS_OK)
                    goto out;
                size_t nl = w->lines;
                for (size_t l = 0; l < nl && st == NS_OK; l++)
                    if (!items[w->item[l]].code)
                        st = push(&w->pending, &w->npending, &w->pendcap, w->item[l], err);
                w->data.len = 0;
                w->lines = 0;
                w->sent = 0;
                if (st == NS_OK)
                    st = send_pending(w, items, a, err);
                if (st != NS_OK)
                    goto out;
                continue;
            }
            if (st == NS_OK && w->can_replan)
                st = ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_chunk", 0, NULL);
            w->can_replan = false;
        }
        if (st != NS_OK)
            goto out;
    }
    if (w->merge_sql && w->lines && (st = ns__pgw_merge_chunk(w, items, a, err)) != NS_OK)
        goto out;
    if (w->ndups && (st = decide_dups(w, items, a, err)) != NS_OK)
        goto out;
    if (w->nheld) {
        /* Rows held out (probable duplicates of earlier ones, rows that may
         * fail a CHECK, rows the probes point at): after the rest of the
         * chunk, in file order, each tried on its own. Most are refused; a
         * false alarm loads. */
        qsort(w->held, w->nheld, sizeof(*w->held), by_index);
        size_t from = w->lines;
        if ((st = ns__pgw_begin(w, err)) != NS_OK)
            goto out;
        bool *good = w->insert_sql ? calloc(w->nheld, sizeof(*good)) : NULL;
        if (w->insert_sql && !good) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
        if (good && (st = probe_held(w, items, good, a, err)) != NS_OK) {
            free(good);
            goto out;
        }
        /* What the server took (all of them without a probe), in file
         * order, through the usual isolation. */
        for (size_t i = 0; i < w->nheld && st == NS_OK; i++)
            if (!good || good[i])
                st = add_line(w, &items[w->held[i]], w->held[i], err);
        free(good);
        if (st == NS_OK && w->lines > from)
            st = isolate_by(w, items, from, w->lines, good ? SEGMENT : 1, a, err);
    }
out:
    ns__pgw_chunk_reset(w);
    return st;
}
