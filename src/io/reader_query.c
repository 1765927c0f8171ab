/*
 * reader_query.c - the `query` reader: the rows of an SQL query on SQLite or
 * PostgreSQL, read in pages by keyset ("greater than the last key seen",
 * never OFFSET), so a job may update the very columns its query filters on
 * without rows being skipped or read twice (docs/scenarios.md §4). The last key is
 * the restart position.
 *
 * Each page is
 *   SELECT * FROM (<sql>) AS ns_q WHERE (k1, k2) > (:last) ORDER BY k1, k2 LIMIT n
 * Job parameters appear in the SQL as :name and are bound, never pasted.
 * Key values keep their type in the position (SQLite orders integers before
 * text, so an integer key bound as text would page wrongly).
 *
 * On PostgreSQL the next page is asked for as soon as a page arrives, and a
 * thread receives it (libpq parsing the rows) while the job writes the
 * current one: receiving a page in the job's own thread left a COPY target
 * idle meanwhile. The thread alone touches the connection until joined.
 */
#include "io/io.h"

#include <libpq-fe.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct query_reader {
    ns_reader base;
    bool pg;
    sqlite3 *db;
    sqlite3_stmt *first, *next; /* SQLite */
    PGconn *c;                  /* PostgreSQL: statements prepared as ns_first/ns_next */
    ns_watchdog *wd;            /* the run's, around each page's fetch */
    ns_sqwait wait;             /* SQLite: its lock waits, cut short by the watchdog */
    double limit;               /* the connection's statement_timeout */
    ns_pg_cancel *cancel;
    bool pending;  /* the next page's query is already sent */
    bool fetching; /* ... and a thread is receiving its result */
    pthread_t fetcher;
    PGresult *ahead; /* what the fetcher received */
    PGresult *res;   /* PostgreSQL: the current page (cells point into it) */
    char *shown;
    const char **params; /* values of the SQL's :name parameters, in order */
    size_t nparams;
    char **names;
    size_t ncols;
    size_t *key; /* result column of each key column */
    size_t nkey;
    json_t *last; /* key of the last row returned (array), NULL before the first */
    size_t page_size;
    /* The current page: cells as text, NULL for SQL NULL; on SQLite also each
     * row's key with its types (json arrays, owned). */
    char **cells;
    json_t **keys;
    /* SQLite: per row, the first column whose text holds a NUL byte (+1;
     * 0: none). SQLite stores such text; no C string, CSV or PostgreSQL
     * text can carry it, so the row is rejected rather than cut short. */
    size_t *nul;
    size_t rows, row;
    ns_arena page;
    bool done; /* the last page was short: no more rows */
    int64_t count;
    ns_value *vals;
    ns_buf raw;
} query_reader;

/* reader: {query: {connection, sql, key}} */
typedef struct query_cfg {
    char *connection;
    char *sql; /* job parameters appear as :name, bound, never pasted */
    ns_names key;
} query_cfg;

static const ns_key query_keys[] = {
    {.name = "connection",
     .type = NS_KEY_CONNECTION,
     .offset = offsetof(query_cfg, connection),
     .flags = NS_KEY_REQUIRED},
    {.name = "sql",
     .type = NS_KEY_QUERY,
     .offset = offsetof(query_cfg, sql),
     .flags = NS_KEY_REQUIRED},
    {.name = "key",
     .type = NS_KEY_NAMES,
     .offset = offsetof(query_cfg, key),
     .flags = NS_KEY_REQUIRED,
     .hint = "the unique columns the rows are paged by (never OFFSET)"},
    {0}};

static ns_status sq_fail(query_reader *r, ns_error *err, const char *what)
{
    return ns__err(err, NS_EDB, sqlite3_errstr(sqlite3_extended_errcode(r->db)), "%s: %s: %s",
                   r->shown, what, sqlite3_errmsg(r->db));
}

static ns_status pg_fail(query_reader *r, PGresult *res, ns_error *err, const char *what)
{
    const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(r->c);
    size_t len = strlen(m);
    while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
        len--;
    return ns__err(err, NS_EDB, ns__pg_state(r->c, res), "%s: %s: %.*s", r->shown, what, (int)len,
                   m);
}

/* The page queries: the first, and the one continuing after a key. */
static ns_status build_sql(query_reader *r, const query_cfg *d, const ns_io_env *args, char **first,
                           char **next, ns_error *err)
{
    ns_buf inner = {0}, b = {0};
    char missing[128];

    /* :name -> $n / ?n, the values bound in that order, then the key's. */
    ns_status st =
        ns__sql_bind(d->sql, strlen(d->sql), r->pg, args->param_names, args->param_values,
                     args->nparams, &inner, &r->params, &r->nparams, missing, sizeof(missing));
    if (st == NS_EPARAM)
        return ns__err(err, NS_EPARAM, NULL,
                       "reader.query.sql: :%s has no value (pass %s=VALUE or give it a default)",
                       missing, missing);
    if (st != NS_OK) {
        ns__buf_free(&inner);
        return ns__err(err, st, NULL, "out of memory");
    }
    /* A trailing ';' would end the subquery. */
    while (inner.len && (inner.data[inner.len - 1] == ';' || inner.data[inner.len - 1] == ' ' ||
                         inner.data[inner.len - 1] == '\n'))
        inner.len--;
    for (int pass = 0; pass < 2; pass++) {
        b.len = 0;
        ns__buf_printf(&b, "SELECT * FROM (%s) AS ns_q", ns__buf_cstr(&inner));
        if (pass == 1) {
            ns__buf_printf(&b, " WHERE (");
            for (size_t k = 0; k < d->key.n; k++) {
                if (k)
                    ns__buf_printf(&b, ", ");
                ns__buf_ident(&b, d->key.v[k]);
            }
            ns__buf_printf(&b, ") > (");
            for (size_t k = 0; k < d->key.n; k++)
                ns__buf_printf(&b, r->pg ? "%s$%zu" : "%s?%zu", k ? ", " : "", r->nparams + k + 1);
            ns__buf_printf(&b, ")");
        }
        ns__buf_printf(&b, " ORDER BY ");
        for (size_t k = 0; k < d->key.n; k++) {
            if (k)
                ns__buf_printf(&b, ", ");
            ns__buf_ident(&b, d->key.v[k]);
        }
        ns__buf_printf(&b, " LIMIT %zu", r->page_size);
        char *s = ns__strdup(ns__buf_cstr(&b));
        if (pass == 0)
            *first = s;
        else
            *next = s;
    }
    ns__buf_free(&inner);
    ns__buf_free(&b);
    return *first && *next ? NS_OK : ns__err(err, NS_ENOMEM, NULL, "out of memory");
}

static ns_status set_columns(query_reader *r, const query_cfg *d, ns_error *err)
{
    if (!(r->key = calloc(d->key.n, sizeof(*r->key))) ||
        !(r->vals = calloc(r->ncols ? r->ncols : 1, sizeof(*r->vals))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    r->nkey = d->key.n;
    for (size_t k = 0; k < d->key.n; k++) {
        size_t i = 0;
        while (i < r->ncols && strcmp(r->names[i], d->key.v[k]) != 0)
            i++;
        if (i == r->ncols)
            return ns__err(err, NS_ESCHEMA, NULL,
                           "%s: reader.query.key: the query returns no column '%s'", r->shown,
                           d->key.v[k]);
        r->key[k] = i;
    }
    return NS_OK;
}

static ns_status q_open(ns_reader *base, const void *cfg, const ns_io_env *env, ns_error *err)
{
    const query_cfg *d = cfg;
    query_reader *r = (query_reader *)base;
    char *first = NULL, *next = NULL, *url = NULL;
    ns_status st;
    struct {
        const char *path, *shown;
    } a, *args = &a;

    if ((st = env->connection(env->ctx, d->connection, &url, &r->shown, err)) != NS_OK)
        return st;
    a.path = url;
    a.shown = r->shown;
    ns_db_kind kind = ns__db_kind(args->path);
    if (kind == NS_DB_NONE) {
        st = ns__err(err, NS_EUNSUPPORTED, NULL,
                     "%s: unsupported database (use sqlite:PATH, postgresql://... or host=... "
                     "dbname=...)",
                     args->shown);
        goto out;
    }
    r->pg = kind == NS_DB_PG;
    r->page_size = env->chunk < 100 ? 100 : env->chunk > 10000 ? 10000 : (size_t)env->chunk;
    ns__arena_init(&r->page, 1 << 20);
    if ((st = build_sql(r, d, env, &first, &next, err)) != NS_OK)
        goto out;
    if (!r->pg) {
        /* Read-write, not read-only: after a crash mid-commit the database
         * may have a hot journal, which only a connection that may write can
         * roll back. query_only keeps this one from writing anything else. */
        struct stat sb;
        if (stat(args->path + 7, &sb) != 0 && errno == ENOENT) {
            st = ns__err(err, NS_EIO, NULL, "%s: the database file does not exist", args->shown);
            goto out;
        }
        if (sqlite3_open_v2(args->path + 7, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                            NULL) != SQLITE_OK) {
            st = sq_fail(r, err, "cannot open the database");
            goto out;
        }
        /* Another connection's lock is waited for up to 30 s, or the
         * connection's statement_timeout when shorter; a stop request ends
         * the wait and the statement (the watchdog). */
        r->wd = env->watchdog;
        r->limit = env->stmt_limit ? env->stmt_limit(env->ctx, d->connection) : 0;
        ns__sqwait_init(&r->wait, r->db, r->limit > 0 && r->limit < 30 ? r->limit : 30);
        if (sqlite3_exec(r->db, "PRAGMA query_only = ON", NULL, NULL, NULL) != SQLITE_OK) {
            st = sq_fail(r, err, "cannot open the database");
            goto out;
        }
        if (sqlite3_prepare_v2(r->db, first, -1, &r->first, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(r->db, next, -1, &r->next, NULL) != SQLITE_OK) {
            st = sq_fail(r, err, "reader.query.sql");
            goto out;
        }
        r->ncols = (size_t)sqlite3_column_count(r->first);
        r->names = calloc(r->ncols ? r->ncols : 1, sizeof(*r->names));
        for (size_t i = 0; r->names && i < r->ncols; i++) {
            const char *name = sqlite3_column_name(r->first, (int)i); /* NULL: out of memory */
            if (!name || !(r->names[i] = ns__strdup(name))) {
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                goto out;
            }
        }
    } else {
        r->c = ns__pg_connect(args->path, "nightshift");
        if (!r->c || PQstatus(r->c) != CONNECTION_OK) {
            const char *m = r->c ? PQerrorMessage(r->c) : "out of memory";
            size_t len = strlen(m);
            while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
                len--;
            st = ns__err(err, NS_EDB, r->c ? ns__pg_connect_state(r->c) : NULL,
                         "%s: cannot connect: %.*s", r->shown, (int)len, m);
            goto out;
        }
        PQsetClientEncoding(r->c, "UTF8");
        r->wd = env->watchdog;
        r->limit = env->stmt_limit ? env->stmt_limit(env->ctx, d->connection) : 0;
        if (!(r->cancel = ns__pg_cancel_new(r->c))) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
        PGresult *res = PQprepare(r->c, "ns_first", first, 0, NULL);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            PQclear(res);
            res = PQprepare(r->c, "ns_next", next, 0, NULL);
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            st = pg_fail(r, res, err, "reader.query.sql");
            PQclear(res);
            goto out;
        }
        PQclear(res);
        res = PQdescribePrepared(r->c, "ns_first");
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            st = pg_fail(r, res, err, "reader.query.sql");
            PQclear(res);
            goto out;
        }
        r->ncols = (size_t)PQnfields(res);
        r->names = calloc(r->ncols ? r->ncols : 1, sizeof(*r->names));
        for (size_t i = 0; r->names && i < r->ncols; i++)
            if (!(r->names[i] = ns__strdup(PQfname(res, (int)i)))) {
                PQclear(res);
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                goto out;
            }
        PQclear(res);
    }
    if (!r->names) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    st = set_columns(r, d, err);
out:
    free(first);
    free(next);
    free(url);
    return st;
}

static const char *const *q_columns(ns_reader *base, size_t *n)
{
    query_reader *r = (query_reader *)base;
    *n = r->ncols;
    return (const char *const *)r->names;
}

static ns_status q_seek(ns_reader *base, json_t *pos, ns_error *err)
{
    query_reader *r = (query_reader *)base;
    json_t *key = json_object_get(pos, "key");
    if (!json_is_array(key) || json_array_size(key) != r->nkey)
        return ns__err(err, NS_EINVAL, NULL, "%s: saved position is not a key of this query",
                       r->shown);
    json_decref(r->last);
    r->last = json_incref(key);
    r->count = json_integer_value(json_object_get(pos, "count"));
    return NS_OK;
}

static void drop_page(query_reader *r)
{
    PQclear(r->res);
    r->res = NULL;
    for (size_t i = 0; r->keys && i < r->rows; i++)
        json_decref(r->keys[i]);
    r->keys = NULL;
    r->nul = NULL;
    r->cells = NULL;
    r->rows = r->row = 0;
    ns__arena_reset(&r->page);
}

/* The result of the query sent last (further results are drained). */
static PGresult *receive(PGconn *c)
{
    PGresult *res = PQgetResult(c), *extra;
    while ((extra = PQgetResult(c)) != NULL)
        PQclear(extra);
    return res;
}

static void *fetch_ahead(void *arg)
{
    query_reader *r = arg;
    r->ahead = receive(r->c);
    return NULL;
}

/* Reads the next page into r->cells. */
static ns_status fetch(query_reader *r, ns_error *err)
{
    size_t nparams = r->nparams + (r->last ? r->nkey : 0);

    drop_page(r);
    if (!r->pg) {
        sqlite3_stmt *st = r->last ? r->next : r->first;
        sqlite3_reset(st);
        for (size_t i = 0; i < r->nparams; i++)
            sqlite3_bind_text(st, (int)i + 1, r->params[i], -1, SQLITE_STATIC);
        for (size_t k = 0; r->last && k < r->nkey; k++) {
            json_t *v = json_array_get(r->last, k);
            int at = (int)(r->nparams + k) + 1;
            if (json_is_integer(v))
                sqlite3_bind_int64(st, at, json_integer_value(v));
            else if (json_is_real(v))
                sqlite3_bind_double(st, at, json_real_value(v));
            else
                sqlite3_bind_text(st, at, json_string_value(v), -1, SQLITE_TRANSIENT);
        }
        r->cells = ns__arena_alloc(&r->page, (r->page_size * r->ncols + 1) * sizeof(char *));
        r->keys = ns__arena_alloc(&r->page, r->page_size * sizeof(json_t *));
        r->nul = ns__arena_alloc(&r->page, r->page_size * sizeof(size_t));
        if (!r->cells || !r->keys || !r->nul)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            r->nul[r->rows] = 0;
            for (size_t i = 0; i < r->ncols; i++) {
                const unsigned char *t = sqlite3_column_text(st, (int)i);
                size_t n = t ? (size_t)sqlite3_column_bytes(st, (int)i) : 0;
                char *cell = t ? ns__arena_strndup(&r->page, (const char *)t, n) : NULL;
                if (t && !cell) /* not NULL: a value lost */
                    return ns__err(err, NS_ENOMEM, NULL, "out of memory");
                r->cells[r->rows * r->ncols + i] = cell;
                if (t && !r->nul[r->rows] && memchr(t, '\0', n))
                    r->nul[r->rows] = i + 1;
            }
            /* Keep each key's type for the next page's comparison. */
            json_t *k = json_array();
            for (size_t j = 0; j < r->nkey; j++) {
                int c = (int)r->key[j];
                int type = sqlite3_column_type(st, c);
                json_array_append_new(
                    k, type == SQLITE_INTEGER ? json_integer(sqlite3_column_int64(st, c))
                       : type == SQLITE_FLOAT ? json_real(sqlite3_column_double(st, c))
                       : type == SQLITE_NULL
                           ? json_null()
                           : json_string((const char *)sqlite3_column_text(st, c)));
            }
            if (!k || json_array_size(k) != r->nkey) {
                json_decref(k);
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            }
            r->keys[r->rows++] = k;
        }
        if (rc != SQLITE_DONE)
            return sq_fail(r, err, "reader.query.sql");
    } else {
        PGresult *res;
        if (r->fetching) {
            pthread_join(r->fetcher, NULL);
            res = r->ahead;
            r->ahead = NULL;
            r->fetching = r->pending = false;
        } else if (r->pending) {
            res = receive(r->c);
            r->pending = false;
        } else {
            const char **v = calloc(nparams ? nparams : 1, sizeof(*v));
            if (!v)
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            for (size_t i = 0; i < r->nparams; i++)
                v[i] = r->params[i];
            for (size_t k = 0; r->last && k < r->nkey; k++)
                v[r->nparams + k] = json_string_value(json_array_get(r->last, k));
            res = PQexecPrepared(r->c, r->last ? "ns_next" : "ns_first", (int)nparams, v, NULL,
                                 NULL, 0);
            free(v);
        }
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            ns_status s = pg_fail(r, res, err, "reader.query.sql");
            PQclear(res);
            return s;
        }
        r->rows = (size_t)PQntuples(res);
        r->res = res; /* kept until the page is dropped: cells point into it */
        r->cells = ns__arena_alloc(&r->page, (r->rows * r->ncols + 1) * sizeof(char *));
        if (!r->cells)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < r->rows; i++)
            for (size_t j = 0; j < r->ncols; j++)
                r->cells[i * r->ncols + j] =
                    PQgetisnull(res, (int)i, (int)j) ? NULL : PQgetvalue(res, (int)i, (int)j);
        /* A full page: ask for the next one now, after this page's last key. */
        if (r->rows == r->page_size) {
            const char **v = calloc(r->nparams + r->nkey, sizeof(*v));
            if (!v)
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            for (size_t i = 0; i < r->nparams; i++)
                v[i] = r->params[i];
            for (size_t k = 0; k < r->nkey; k++)
                v[r->nparams + k] = r->cells[(r->rows - 1) * r->ncols + r->key[k]];
            r->pending = PQsendQueryPrepared(r->c, "ns_next", (int)(r->nparams + r->nkey), v, NULL,
                                             NULL, 0) == 1;
            free(v);
            if (!r->pending)
                return pg_fail(r, NULL, err, "reader.query.sql");
            /* Without a thread, the page is received when needed. */
            r->fetching = pthread_create(&r->fetcher, NULL, fetch_ahead, r) == 0;
        }
    }
    r->done = r->rows < r->page_size;
    return NS_OK;
}

static ns_status q_next(ns_reader *base, ns_record *out, bool *eof, ns_error *err)
{
    query_reader *r = (query_reader *)base;
    ns_status st;

    if (r->row >= r->rows) {
        if (r->done && r->cells) {
            *eof = true;
            return NS_OK;
        }
        if (r->pg)
            ns__watchdog_arm(r->wd, r->limit, ns__pg_interrupt, r->cancel);
        else
            ns__sqwait_arm(&r->wait, r->wd, r->limit);
        st = ns__watchdog_end(r->wd, fetch(r, err), err, r->shown, "a page of the query", r->limit);
        if (st != NS_OK)
            return st;
        if (r->rows == 0) {
            r->done = true;
            *eof = true;
            return NS_OK;
        }
    }
    char **row = &r->cells[r->row * r->ncols];
    size_t nul = r->nul ? r->nul[r->row] : 0;
    json_t *key;
    if (r->keys) {
        key = json_incref(r->keys[r->row]);
    } else {
        key = json_array();
        for (size_t k = 0; k < r->nkey; k++)
            json_array_append_new(key, row[r->key[k]] ? json_string(row[r->key[k]]) : json_null());
    }
    for (size_t k = 0; k < r->nkey; k++)
        if (json_is_null(json_array_get(key, k))) {
            json_decref(key);
            return ns__err(err, NS_EDB, NULL,
                           "%s: reader.query.key: column '%s' is NULL in row %lld; a key must "
                           "be unique and not null",
                           r->shown, r->names[r->key[k]], (long long)r->count + 1);
        }
    if (r->last && json_equal(r->last, key)) {
        json_decref(key);
        return ns__err(err, NS_EDB, NULL,
                       "%s: reader.query.key is not unique: two rows share the key of row %lld",
                       r->shown, (long long)r->count);
    }
    json_decref(r->last);
    r->last = key;
    r->row++;
    r->count++;
    /* The record's text, for the rejects file: its values as CSV. */
    r->raw.len = 0;
    for (size_t i = 0; i < r->ncols; i++) {
        r->vals[i].ptr = row[i];
        r->vals[i].len = row[i] ? strlen(row[i]) : 0;
        if (i)
            ns__buf_putc(&r->raw, ',');
        if (row[i])
            ns__buf_append(&r->raw, row[i], r->vals[i].len);
    }
    out->line = r->count;
    out->raw = ns__buf_cstr(&r->raw);
    out->raw_len = r->raw.len;
    out->fields = r->vals;
    out->nfields = r->ncols;
    out->error_code = nul ? "22021" : NULL;
    out->error_field = nul ? (int)nul - 1 : -1;
    out->error_message = nul ? "the text holds a NUL byte, which no output can carry" : NULL;
    *eof = false;
    return NS_OK;
}

static json_t *q_position(ns_reader *base)
{
    query_reader *r = (query_reader *)base;
    return json_pack("{s:O?, s:I}", "key", r->last, "count", (json_int_t)r->count);
}

static void q_progress(ns_reader *base, int64_t *done, int64_t *total)
{
    query_reader *r = (query_reader *)base;
    *done = -1;
    *total = -1;
    (void)r;
}

static void q_close(ns_reader *base)
{
    query_reader *r = (query_reader *)base;
    if (r->fetching)
        pthread_join(r->fetcher, NULL);
    PQclear(r->ahead);
    drop_page(r);
    sqlite3_finalize(r->first);
    sqlite3_finalize(r->next);
    sqlite3_close_v2(r->db);
    PQfinish(r->c);
    ns__pg_cancel_free(r->cancel);
    for (size_t i = 0; r->names && i < r->ncols; i++)
        free(r->names[i]);
    free(r->names);
    free(r->key);
    free(r->vals);
    free(r->params);
    free(r->shown);
    json_decref(r->last);
    ns__arena_free(&r->page);
    ns__buf_free(&r->raw);
}

const ns_reader_vt ns__reader_query = {
    .name = "query",
    .version = NS_READER_VERSION,
    .instance_size = sizeof(query_reader),
    .open = q_open,
    .columns = q_columns,
    .seek = q_seek,
    .next = q_next,
    .position = q_position,
    .progress = q_progress,
    .close = q_close,
};

const ns_plugin ns__plugin_query = {NS_PLUGIN_READER,  "query", NS_PLUGIN_VERSION, query_keys,
                                    sizeof(query_cfg), NULL,    &ns__reader_query};
