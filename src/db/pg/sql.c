/*
 * sql.c - the PostgreSQL connection's SQL methods, for the sql,
 * assert, rebuild and compare steps and the query reader's peers: exec (one
 * statement of a script, :name bound), query (rows streamed to a callback)
 * and cursor (rows in key order, fetched in batches).
 */
#include "db/pg/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs statement `no` of a script with its :name parameters bound. */
static PGresult *run_bound(pg_writer *w, const char *stmt, size_t len, size_t no,
                           const ns_sql_args *args, bool single_rows, ns_error *err)
{
    ns_buf text = {0};
    const char **vals = NULL;
    size_t nvals = 0;
    char missing[128];
    ns_status st = ns__sql_bind(stmt, len, NS_PH_DOLLAR, args->names, args->values, args->n, &text,
                                &vals, &nvals, missing, sizeof(missing));
    if (st != NS_OK) {
        if (st == NS_EPARAM)
            ns__err(err, NS_EPARAM, NULL, "%s: statement %zu: :%s has no value", w->where, no,
                    missing);
        else
            ns__err(err, st, NULL, "out of memory");
        return NULL;
    }
    PGresult *res = NULL;
    if (single_rows) {
        if (PQsendQueryParams(w->c, ns__buf_cstr(&text), (int)nvals, NULL, vals, NULL, NULL, 0) !=
                1 ||
            PQsetSingleRowMode(w->c) != 1)
            ns__pgw_fail(w, NULL, err, "query");
        else
            res = PQmakeEmptyPGresult(w->c, PGRES_COMMAND_OK); /* rows via PQgetResult */
    } else {
        res = PQexecParams(w->c, ns__buf_cstr(&text), (int)nvals, NULL, vals, NULL, NULL, 0);
        ExecStatusType s = PQresultStatus(res);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY) {
            char what[64];
            snprintf(what, sizeof(what), "statement %zu", no);
            ns__pgw_fail(w, res, err, what);
            PQclear(res);
            res = NULL;
        }
    }
    ns__buf_free(&text);
    free(vals);
    return res;
}

static ns_status ns__pgw_exec_stmt(ns_writer *base, const char *stmt, size_t len, size_t no,
                                   const ns_sql_args *args, int64_t *changed, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st = ns__pgw_begin(w, err);
    if (st != NS_OK)
        return st;
    PGresult *res = run_bound(w, stmt, len, no, args, false, err);
    if (!res)
        return err->code ? err->code : NS_EDB;
    if (PQresultStatus(res) == PGRES_COMMAND_OK)
        *changed += atoll(PQcmdTuples(res));
    PQclear(res);
    return NS_OK;
}

static ns_status ns__pgw_query(ns_writer *base, const char *sql, const ns_sql_args *args,
                               ns_row_fn row, void *arg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    PGresult *res = run_bound(w, sql, strlen(sql), 1, args, true, err);
    ns_status st = NS_OK;
    const char **names = NULL, **vals = NULL;
    bool more = true, header = false;
    if (!res)
        return err->code ? err->code : NS_EDB;
    PQclear(res);
    /* One result per row (single-row mode), then the final, empty one. */
    while ((res = PQgetResult(w->c)) != NULL) {
        ExecStatusType s = PQresultStatus(res);
        if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK) {
            if (st == NS_OK)
                st = ns__pgw_fail(w, res, err, "query");
        } else if (more && st == NS_OK) {
            int n = PQnfields(res);
            if (!header) {
                names = calloc((size_t)n + 1, sizeof(*names));
                vals = calloc((size_t)n + 1, sizeof(*vals));
                if (!names || !vals) {
                    st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                    PQclear(res);
                    continue;
                }
                for (int i = 0; i < n && st == NS_OK; i++)
                    if (!(names[i] = ns__strdup(PQfname(res, i))))
                        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                if (st != NS_OK) {
                    PQclear(res);
                    continue;
                }
                header = true;
                more = row(arg, (size_t)n, names, NULL);
            }
            for (int r = 0; more && r < PQntuples(res); r++) {
                for (int i = 0; i < n; i++)
                    vals[i] = PQgetisnull(res, r, i) ? NULL : PQgetvalue(res, r, i);
                more = row(arg, (size_t)n, names, vals);
            }
        }
        PQclear(res);
    }
    for (size_t i = 0; names && names[i]; i++)
        free((char *)names[i]);
    free(names);
    free(vals);
    return st;
}

typedef struct pg_cursor {
    ns_cursor base;
    pg_writer *w;
    PGresult *row; /* the current row's result */
    char **names;
    const char **vals;
    bool done;
} pg_cursor;

static ns_status pgc_next_row(ns_cursor *base, const char *const **values, bool *eof,
                              ns_error *err);

static ns_status pgc_next(ns_cursor *base, const char *const **values, bool *eof, ns_error *err)
{
    pg_writer *w = ((pg_cursor *)base)->w;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, pgc_next_row(base, values, eof, err), err);
}

static ns_status pgc_next_row(ns_cursor *base, const char *const **values, bool *eof, ns_error *err)
{
    pg_cursor *c = (pg_cursor *)base;
    PQclear(c->row);
    c->row = NULL;
    *eof = true;
    if (c->done)
        return NS_OK;
    PGresult *res = PQgetResult(c->w->c);
    ExecStatusType s = PQresultStatus(res);
    if (s == PGRES_SINGLE_TUPLE) {
        c->row = res;
        for (size_t i = 0; i < base->ncols; i++)
            c->vals[i] = PQgetisnull(res, 0, (int)i) ? NULL : PQgetvalue(res, 0, (int)i);
        *values = c->vals;
        *eof = false;
        return NS_OK;
    }
    /* The end (an empty PGRES_TUPLES_OK) or an error: the query is over. */
    ns_status st = s == PGRES_TUPLES_OK ? NS_OK : ns__pgw_fail(c->w, res, err, "query");
    PQclear(res);
    while ((res = PQgetResult(c->w->c)) != NULL)
        PQclear(res);
    c->done = true;
    return st;
}

static void pgc_close(ns_cursor *base)
{
    pg_cursor *c = (pg_cursor *)base;
    PQclear(c->row);
    if (!c->done) {
        /* Stop the server sending the rest, then drain. */
        PGcancel *cancel = PQgetCancel(c->w->c);
        char buf[256];
        if (cancel) {
            PQcancel(cancel, buf, sizeof(buf));
            PQfreeCancel(cancel);
        }
        PGresult *res;
        while ((res = PQgetResult(c->w->c)) != NULL)
            PQclear(res);
    }
    for (size_t i = 0; c->names && i < base->ncols; i++)
        free(c->names[i]);
    free(c->names);
    free(c->vals);
    free(c);
}

static ns_status ns__pgw_cursor(ns_writer *base, const char *sql, const ns_sql_args *args,
                                const char *const *key, size_t nkey, ns_cursor **out, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_buf q = {0};
    ns_status st = NS_OK;
    pg_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    c->w = w;
    /* The result's columns first (an empty result still has them), then the
     * rows by the keys' text in byte order, whatever the columns' types and
     * the database's collation. */
    ns__buf_printf(&q, "SELECT * FROM (%s) AS ns_q LIMIT 0", sql);
    PGresult *res = run_bound(w, ns__buf_cstr(&q), q.len, 1, args, false, err);
    if (!res) {
        st = err->code ? err->code : NS_EDB;
        goto out;
    }
    size_t n = (size_t)PQnfields(res);
    c->names = calloc(n + 1, sizeof(*c->names));
    c->vals = calloc(n + 1, sizeof(*c->vals));
    if (!c->names || !c->vals) {
        PQclear(res);
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    c->base = (ns_cursor){n, (const char *const *)c->names, pgc_next, pgc_close};
    for (size_t i = 0; i < n; i++)
        if (!(c->names[i] = ns__strdup(PQfname(res, (int)i)))) {
            PQclear(res);
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
    q.len = 0;
    ns__buf_printf(&q, "SELECT * FROM (%s) AS ns_q ORDER BY ", sql);
    for (size_t k = 0; k < nkey; k++) {
        int at = -1;
        for (size_t i = 0; i < n; i++)
            if (c->names[i] && strcmp(c->names[i], key[k]) == 0)
                at = (int)i;
        if (at < 0) {
            st = ns__err(err, NS_ESCHEMA, NULL, "%s: the query has no column '%s' (its key)",
                         w->where, key[k]);
            PQclear(res);
            goto out;
        }
        ns__buf_printf(&q, k ? ", (" : "(");
        ns__buf_ident(&q, key[k]);
        ns__buf_printf(&q, ")::text COLLATE \"C\" NULLS FIRST");
    }
    PQclear(res);
    if (!(res = run_bound(w, ns__buf_cstr(&q), q.len, 1, args, true, err))) {
        st = err->code ? err->code : NS_EDB;
        c->done = true;
        goto out;
    }
    PQclear(res);
out:
    ns__buf_free(&q);
    if (st != NS_OK) {
        c->done = true;
        c->base.close = pgc_close;
        pgc_close(&c->base);
        return st;
    }
    *out = &c->base;
    return NS_OK;
}

/* The same, each under the watchdog (a statement's limit, a stop request). */
static ns_status g_exec(ns_writer *base, const char *stmt, size_t len, size_t no,
                        const ns_sql_args *args, int64_t *changed, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, ns__pgw_exec_stmt(base, stmt, len, no, args, changed, err), err);
}

static ns_status g_query(ns_writer *base, const char *sql, const ns_sql_args *args, ns_row_fn row,
                         void *arg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, ns__pgw_query(base, sql, args, row, arg, err), err);
}

static ns_status g_cursor(ns_writer *base, const char *sql, const ns_sql_args *args,
                          const char *const *key, size_t nkey, ns_cursor **out, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns__pgw_guard(w);
    return ns__pgw_unguard(w, ns__pgw_cursor(base, sql, args, key, nkey, out, err), err);
}

const ns_sql_vt ns__pgw_sql = {g_exec, g_query, g_cursor};
