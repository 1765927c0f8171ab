/*
 * reader_query.c - the `query` reader: the rows of an SQL query on any
 * database with a driver, read in pages by keyset ("greater than the last
 * key seen", never OFFSET), so a job may update the very columns its query
 * filters on without rows being skipped or read twice (docs/scenarios.md
 * §4). The last key is the restart position.
 *
 * Each page is
 *   SELECT * FROM (<sql>) AS ns_q WHERE (k1, k2) > (:last) ORDER BY k1, k2 LIMIT n
 * Job parameters appear in the SQL as :name and are bound, never pasted, in
 * the driver's placeholders. This file builds the queries, checks the keys
 * and keeps the position; the driver's pager (ns_pager_vt, src/db/<name>/)
 * connects, runs them and hands each page back.
 */
#include "io/io.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct query_reader {
    ns_reader base;
    const ns_db_driver *driver;
    ns_pager *pager;
    ns_watchdog *wd; /* the run's, around each page's fetch */
    double limit;    /* the connection's statement_timeout */
    char *shown;
    const char **params; /* values of the SQL's :name parameters, in order */
    size_t nparams;
    const char *const *names; /* the pager's */
    size_t ncols;
    size_t *key; /* result column of each key column */
    size_t nkey;
    json_t *last; /* key of the last row returned (array), NULL before the first */
    size_t page_size;
    ns_page page; /* the current one */
    size_t row;
    bool fetched; /* a page was fetched */
    bool done;    /* the last page was short: no more rows */
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

/* The page queries: the first, and the one continuing after a key. */
static ns_status build_sql(query_reader *r, const query_cfg *d, const ns_io_env *args, char **first,
                           char **next, ns_error *err)
{
    ns_buf inner = {0}, b = {0};
    char missing[128];

    /* :name -> $n / ?n, the values bound in that order, then the key's. */
    ns_placeholder ph = r->driver->placeholder;
    ns_status st =
        ns__sql_bind(d->sql, strlen(d->sql), ph, args->param_names, args->param_values,
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
                ns__buf_quoted(&b, d->key.v[k], r->driver->quote);
            }
            ns__buf_printf(&b, ") > (");
            for (size_t k = 0; k < d->key.n; k++)
                ns__buf_placeholder(&b, ph, k ? ", " : "", r->nparams + k + 1);
            ns__buf_printf(&b, ")");
        }
        ns__buf_printf(&b, " ORDER BY ");
        for (size_t k = 0; k < d->key.n; k++) {
            if (k)
                ns__buf_printf(&b, ", ");
            ns__buf_quoted(&b, d->key.v[k], r->driver->quote);
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

    if ((st = env->connection(env->ctx, d->connection, &url, &r->shown, &r->driver, err)) != NS_OK)
        return st;
    const ns_pager_vt *vt = r->driver ? r->driver->pager : NULL;
    if (!vt) {
        st = ns__err(err, NS_EUNSUPPORTED, NULL, "%s: the query reader cannot read this database",
                     r->shown);
        goto out;
    }
    r->page_size = env->chunk < 100 ? 100 : env->chunk > 10000 ? 10000 : (size_t)env->chunk;
    r->wd = env->watchdog;
    r->limit = env->stmt_limit ? env->stmt_limit(env->ctx, d->connection) : 0;
    if ((st = build_sql(r, d, env, &first, &next, err)) != NS_OK)
        goto out;
    if (!(r->pager = calloc(1, vt->instance_size))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    r->pager->vt = vt;
    ns_pager_args a = {.url = url,
                       .shown = r->shown,
                       .first = first,
                       .next = next,
                       .page_size = r->page_size,
                       .limit = r->limit};
    if ((st = vt->open(r->pager, &a, &r->names, &r->ncols, err)) != NS_OK)
        goto out;
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

static ns_status q_next(ns_reader *base, ns_record *out, bool *eof, ns_error *err)
{
    query_reader *r = (query_reader *)base;
    ns_status st;

    if (r->row >= r->page.rows) {
        if (r->done && r->fetched) {
            *eof = true;
            return NS_OK;
        }
        r->pager->vt->arm(r->pager, r->wd, r->limit);
        st = r->pager->vt->fetch(r->pager, r->params, r->nparams, r->last, r->key, r->nkey,
                                 &r->page, err);
        st = ns__watchdog_end(r->wd, st, err, r->shown, "a page of the query", r->limit);
        if (st != NS_OK)
            return st;
        r->row = 0;
        r->fetched = true;
        r->done = r->page.rows < r->page_size;
        if (r->page.rows == 0) {
            r->done = true;
            *eof = true;
            return NS_OK;
        }
    }
    char **row = &r->page.cells[r->row * r->ncols];
    size_t nul = r->page.nul ? r->page.nul[r->row] : 0;
    json_t *key;
    if (r->page.keys) {
        key = json_incref(r->page.keys[r->row]);
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
    if (r->pager) {
        if (r->pager->vt)
            r->pager->vt->close(r->pager);
        free(r->pager);
    }
    free(r->key);
    free(r->vals);
    free(r->params);
    free(r->shown);
    json_decref(r->last);
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
