/*
 * table_pg_copy.c - the PostgreSQL table writer's bulk path: each chunk
 * streamed with COPY (fed while the chunk is read), every value checked
 * against its column first, and what only the server knows isolated row by
 * row inside savepoints (table_pg.c says how).
 */
#include "io/table_pg.h"

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
    const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
    const char *line = ctx ? strstr(ctx, "COPY ") : NULL;

    memset(e, 0, sizeof(*e));
    snprintf(e->code, sizeof(e->code), "%s", code ? code : "XX000");
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

/* Sends COPY lines [lo, hi). NS_OK, or NS_EDB with *e filled. */
static ns_status copy_range(pg_writer *w, size_t lo, size_t hi, copy_error *e, ns_error *err)
{
    memset(e, 0, sizeof(*e));
    PGresult *res = PQexec(w->c, w->copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        ns__pgw_read_error(res, e);
        ns_status st = ns__pgw_fail(w, res, err, "COPY");
        PQclear(res);
        return st;
    }
    PQclear(res);
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
/* Rows per COPY when isolating: a failed COPY is sent again up to its bad
 * row, so a segment bounds what one server-side error costs; after an
 * error, the rest of the chunk goes in smaller segments still. */
#define SEGMENT             10000
#define SEGMENT_AFTER_ERROR 1000

static ns_status isolate_by(pg_writer *w, ns_item *items, size_t lo, size_t hi, size_t seg,
                            ns_arena *a, ns_error *err);

static ns_status isolate(pg_writer *w, ns_item *items, size_t lo, size_t hi, ns_arena *a,
                         ns_error *err)
{
    return isolate_by(w, items, lo, hi, SEGMENT, a, err);
}

static ns_status isolate_by(pg_writer *w, ns_item *items, size_t lo, size_t hi, size_t seg,
                            ns_arena *a, ns_error *err)
{
    ns_status st;
    copy_error e = {0};

    while (lo < hi) {
        size_t end = hi - lo > seg ? lo + seg : hi;
        if ((st = ns__pgw_exec(w, err, "savepoint", "SAVEPOINT ns_rows", 0, NULL)) != NS_OK)
            return st;
        st = copy_range(w, lo, end, &e, err);
        if (st == NS_OK) {
            if ((st = ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_rows", 0, NULL)) !=
                NS_OK)
                return st;
            lo = end;
            continue;
        }
        if (!e.row_level)
            return st;
        if (ns__pgw_exec(w, err, "savepoint", "ROLLBACK TO SAVEPOINT ns_rows", 0, NULL) != NS_OK)
            return NS_EDB;
        seg = SEGMENT_AFTER_ERROR;
        if (e.line >= 1 && (size_t)e.line <= end - lo) {
            /* The server named the row: keep those before it, reject it,
             * go on after it. */
            size_t bad = lo + (size_t)e.line - 1;
            ns__pgw_reject(&items[w->item[bad]], e.code, e.column[0] ? e.column : NULL, e.message,
                           a);
            if (bad > lo && (st = isolate(w, items, lo, bad, a, err)) != NS_OK)
                return st;
            lo = bad + 1;
            continue;
        }
        /* No line (foreign keys are checked after the statement): halve. */
        if (end - lo == 1) {
            ns__pgw_reject(&items[w->item[lo]], e.code, e.column[0] ? e.column : NULL, e.message,
                           a);
            lo = end;
            continue;
        }
        size_t mid = lo + (end - lo) / 2;
        if ((st = isolate(w, items, lo, mid, a, err)) != NS_OK ||
            (st = isolate(w, items, mid, end, a, err)) != NS_OK)
            return st;
        lo = end;
    }
    return NS_OK;
}

/* Checks an item against the catalog; a refused item is marked rejected. */
static bool check_item(pg_writer *w, ns_item *it, ns_arena *a)
{
    char msg[256];
    for (size_t j = 0; j < w->ncols; j++) {
        const ns_value *v = &it->fields[j];
        const pcol *c = &w->cols[j];
        ns_bound b;
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
        } else if (!ns__coltype_check(&c->ct, v->ptr, v->len, &b, &code, msg, sizeof(msg))) {
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
    if (PQputCopyData(w->c, w->data.data + w->sent, (int)len) != 1)
        return ns__pgw_fail(w, NULL, err, "COPY");
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

static bool seen_before(pg_writer *w, const ns_item *it)
{
    bool seen = false;
    for (size_t k = 0; k < w->nkeys; k++) {
        const ukey *u = &w->keys[k];
        uint64_t h = 0xcbf29ce484222325ULL, x;
        bool null = false;
        for (size_t c = 0; c < u->ncols; c++) {
            const ns_value *v = &it->fields[u->cols[c]];
            if (!v->ptr) { /* NULLs never collide in a unique index */
                null = true;
                break;
            }
            /* Eight bytes at a time, then the tail and the length (which
             * also separates the columns). */
            size_t i = 0;
            for (; i + 8 <= v->len; i += 8) {
                memcpy(&x, v->ptr + i, 8);
                h = mix(h, x);
            }
            x = 0;
            memcpy(&x, v->ptr + i, v->len - i);
            h = mix(mix(h, x), v->len);
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
    if (w->nkeys && seen_before(w, &items[index])) {
        /* Probably collides with an earlier row of this load: send it after
         * the chunk's COPY, on its own, rather than fail the whole COPY. */
        if (w->nheld == w->heldcap) {
            size_t cap = w->heldcap ? w->heldcap * 2 : 64;
            size_t *h = realloc(w->held, cap * sizeof(*h));
            if (!h)
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            w->held = h;
            w->heldcap = cap;
        }
        w->held[w->nheld++] = index;
        return NS_OK;
    }
    if (!w->copying) {
        if ((st = ns__pgw_begin(w, err)) != NS_OK ||
            (st = ns__pgw_exec(w, err, "savepoint", "SAVEPOINT ns_rows", 0, NULL)) != NS_OK)
            return st;
        PGresult *res = PQexec(w->c, w->copy_sql);
        if (PQresultStatus(res) != PGRES_COPY_IN) {
            st = ns__pgw_fail(w, res, err, "COPY");
            PQclear(res);
            return st;
        }
        PQclear(res);
        w->copying = true;
    }
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
    if (w->copying) {
        st = stream_end(w, &e, err);
        if (st == NS_OK) {
            st = ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_rows", 0, NULL);
        } else if (e.row_level) {
            /* The streamed COPY failed: isolate what it held, knowing the
             * row the server named. */
            if ((st = ns__pgw_exec(w, err, "savepoint", "ROLLBACK TO SAVEPOINT ns_rows", 0,
                                   NULL)) != NS_OK)
                goto out;
            if (e.line >= 1 && (size_t)e.line <= w->lines) {
                size_t bad = (size_t)e.line - 1;
                ns__pgw_reject(&items[w->item[bad]], e.code, e.column[0] ? e.column : NULL,
                               e.message, a);
                if ((st = isolate(w, items, 0, bad, a, err)) == NS_OK)
                    st = isolate(w, items, bad + 1, w->lines, a, err);
            } else {
                st = isolate(w, items, 0, w->lines, a, err);
            }
        }
        if (st != NS_OK)
            goto out;
    }
    if (w->merge_sql && w->lines && (st = ns__pgw_merge_chunk(w, items, a, err)) != NS_OK)
        goto out;
    if (w->nheld) {
        /* Rows held out as probable duplicates of earlier ones: after the
         * rest of the chunk, in file order, one per COPY. Most are refused;
         * a false alarm loads. */
        size_t from = w->lines;
        if ((st = ns__pgw_begin(w, err)) != NS_OK)
            goto out;
        for (size_t i = 0; i < w->nheld; i++)
            if ((st = add_line(w, &items[w->held[i]], w->held[i], err)) != NS_OK)
                goto out;
        st = isolate_by(w, items, from, w->lines, 1, a, err);
    }
out:
    ns__pgw_chunk_reset(w);
    return st;
}
