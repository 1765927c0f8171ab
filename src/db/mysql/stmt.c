/*
 * stmt.c - MariaDB/MySQL statements with text parameters and text results,
 * streamed (never the whole result in memory): prepared ones through the
 * binary protocol, every column bound as a string that grows when a value
 * does not fit; parameterless ones as text (mysql_real_query and
 * mysql_use_result).
 */
#include "db/mysql/mysql.h"

#include <stdlib.h>
#include <string.h>

struct ns_my_stmt {
    MYSQL *m;
    MYSQL_STMT *st; /* NULL: a text query */
    MYSQL_RES *res; /* text: its result, NULL when it has none */
    const char *where, *what;
    size_t nparams;
    size_t ncols;
    char **names;
    MYSQL_BIND *rb;
    char **buf;
    unsigned long *len, *cap;
    my_bool *isnull, *trunc;
    const char **vals;
};

static ns_status oom(ns_error *err)
{
    return ns__err(err, NS_ENOMEM, NULL, "out of memory");
}

static ns_status stmt_fail(ns_my_stmt *s, ns_error *err)
{
    unsigned no = mysql_stmt_errno(s->st);
    const char *state = ns__my_state_of(no, mysql_stmt_sqlstate(s->st));
    return ns__err(err, no == 2008 ? NS_ENOMEM : NS_EDB, state, "%s: %s: %s (%u)", s->where,
                   s->what, mysql_stmt_error(s->st), no);
}

/* The result's columns: names, and for a prepared statement its buffers. */
static ns_status describe(ns_my_stmt *s, MYSQL_FIELD *f, size_t n, ns_error *err)
{
    s->ncols = n;
    if (!(s->names = calloc(n ? n : 1, sizeof(*s->names))) ||
        !(s->vals = calloc(n ? n : 1, sizeof(*s->vals))))
        return oom(err);
    for (size_t i = 0; i < n; i++)
        if (!(s->names[i] = ns__strndup(f[i].name, f[i].name_length)))
            return oom(err);
    if (!s->st)
        return NS_OK;
    if (!(s->rb = calloc(n ? n : 1, sizeof(*s->rb))) ||
        !(s->buf = calloc(n ? n : 1, sizeof(*s->buf))) ||
        !(s->len = calloc(n ? n : 1, sizeof(*s->len))) ||
        !(s->cap = calloc(n ? n : 1, sizeof(*s->cap))) ||
        !(s->isnull = calloc(n ? n : 1, sizeof(*s->isnull))) ||
        !(s->trunc = calloc(n ? n : 1, sizeof(*s->trunc))))
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        s->cap[i] = 64;
        if (!(s->buf[i] = malloc(s->cap[i])))
            return oom(err);
    }
    return NS_OK;
}

static void bind_results(ns_my_stmt *s)
{
    for (size_t i = 0; i < s->ncols; i++) {
        MYSQL_BIND *b = &s->rb[i];
        memset(b, 0, sizeof(*b));
        b->buffer_type = MYSQL_TYPE_STRING;
        b->buffer = s->buf[i];
        b->buffer_length = s->cap[i];
        b->length = &s->len[i];
        b->is_null = &s->isnull[i];
        b->error = &s->trunc[i];
    }
    mysql_stmt_bind_result(s->st, s->rb);
}

ns_status ns__my_prepare(MYSQL *m, const char *sql, size_t len, ns_my_stmt **out, ns_error *err,
                         const char *where, const char *what)
{
    ns_my_stmt *s = calloc(1, sizeof(*s));
    ns_status st = NS_OK;
    *out = NULL;
    if (!s)
        return oom(err);
    s->m = m;
    s->where = where;
    s->what = what;
    if (!(s->st = mysql_stmt_init(m))) {
        free(s);
        return oom(err);
    }
    if (mysql_stmt_prepare(s->st, sql, (unsigned long)len) != 0) {
        st = stmt_fail(s, err);
        goto out;
    }
    s->nparams = mysql_stmt_param_count(s->st);
    MYSQL_RES *meta = mysql_stmt_result_metadata(s->st);
    if (meta) {
        st = describe(s, mysql_fetch_fields(meta), mysql_num_fields(meta), err);
        mysql_free_result(meta);
    }
out:
    if (st != NS_OK) {
        ns__my_close(s);
        return st;
    }
    *out = s;
    return NS_OK;
}

ns_status ns__my_execute(ns_my_stmt *s, const char *const *params, size_t n, ns_error *err)
{
    return ns__my_execute_n(s, params, NULL, n, err);
}

ns_status ns__my_execute_n(ns_my_stmt *s, const char *const *params, const size_t *lens, size_t n,
                           ns_error *err)
{
    if (n != s->nparams)
        return ns__err(err, NS_EINVAL, NULL, "%s: %s: %zu parameters for %zu placeholders",
                       s->where, s->what, n, s->nparams);
    MYSQL_BIND *pb = calloc(n ? n : 1, sizeof(*pb));
    unsigned long *pl = calloc(n ? n : 1, sizeof(*pl));
    my_bool *pn = calloc(n ? n : 1, sizeof(*pn));
    ns_status st = NS_OK;
    if (!pb || !pl || !pn) {
        st = oom(err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        pb[i].buffer_type = MYSQL_TYPE_STRING;
        pb[i].buffer = (void *)(params[i] ? params[i] : "");
        pl[i] = !params[i] ? 0 : lens ? (unsigned long)lens[i] : (unsigned long)strlen(params[i]);
        pb[i].buffer_length = pl[i];
        pb[i].length = &pl[i];
        pn[i] = params[i] == NULL;
        pb[i].is_null = &pn[i];
    }
    mysql_stmt_free_result(s->st);
    if ((n && mysql_stmt_bind_param(s->st, pb) != 0) || mysql_stmt_execute(s->st) != 0) {
        st = stmt_fail(s, err);
        goto out;
    }
    if (s->ncols)
        bind_results(s);
out:
    free(pb);
    free(pl);
    free(pn);
    return st;
}

ns_status ns__my_run(MYSQL *m, const char *sql, size_t len, const char *const *params, size_t n,
                     ns_my_stmt **out, ns_error *err, const char *where, const char *what)
{
    ns_status st;
    *out = NULL;
    if (n) {
        if ((st = ns__my_prepare(m, sql, len, out, err, where, what)) != NS_OK)
            return st;
        if ((st = ns__my_execute(*out, params, n, err)) != NS_OK) {
            ns__my_close(*out);
            *out = NULL;
        }
        return st;
    }
    ns_my_stmt *s = calloc(1, sizeof(*s));
    if (!s)
        return oom(err);
    s->m = m;
    s->where = where;
    s->what = what;
    if (mysql_real_query(m, sql, (unsigned long)len) != 0) {
        st = ns__my_fail(m, err, where, what);
        free(s);
        return st;
    }
    if (mysql_field_count(m)) {
        if (!(s->res = mysql_use_result(m))) {
            st = ns__my_fail(m, err, where, what);
            free(s);
            return st;
        }
        if ((st = describe(s, mysql_fetch_fields(s->res), mysql_num_fields(s->res), err)) !=
            NS_OK) {
            ns__my_close(s);
            return st;
        }
    }
    *out = s;
    return NS_OK;
}

size_t ns__my_ncols(ns_my_stmt *s, const char *const **names)
{
    *names = (const char *const *)s->names;
    return s->ncols;
}

ns_status ns__my_fetch(ns_my_stmt *s, const char *const **values, bool *eof, ns_error *err)
{
    *eof = false;
    if (!s->ncols) {
        *eof = true;
        return NS_OK;
    }
    if (!s->st) {
        MYSQL_ROW row = mysql_fetch_row(s->res);
        if (!row) {
            if (mysql_errno(s->m))
                return ns__my_fail(s->m, err, s->where, s->what);
            *eof = true;
            return NS_OK;
        }
        /* A text row's values are NUL-terminated by the client library. */
        for (size_t i = 0; i < s->ncols; i++)
            s->vals[i] = row[i];
        *values = s->vals;
        return NS_OK;
    }
    int rc = mysql_stmt_fetch(s->st);
    if (rc == MYSQL_NO_DATA) {
        *eof = true;
        return NS_OK;
    }
    if (rc == 1)
        return stmt_fail(s, err);
    bool rebind = false;
    for (size_t i = 0; i < s->ncols; i++) {
        if (s->isnull[i]) {
            s->vals[i] = NULL;
            continue;
        }
        if (s->len[i] >= s->cap[i]) { /* truncated: grow, fetch the column again */
            unsigned long cap = s->len[i] + 1;
            char *b = realloc(s->buf[i], cap);
            if (!b)
                return oom(err);
            s->buf[i] = b;
            s->cap[i] = cap;
            MYSQL_BIND one = s->rb[i];
            one.buffer = b;
            one.buffer_length = cap;
            if (mysql_stmt_fetch_column(s->st, &one, (unsigned)i, 0) != 0)
                return stmt_fail(s, err);
            rebind = true;
        }
        s->buf[i][s->len[i]] = '\0';
        s->vals[i] = s->buf[i];
    }
    if (rebind)
        bind_results(s);
    *values = s->vals;
    return NS_OK;
}

int64_t ns__my_affected(ns_my_stmt *s)
{
    my_ulonglong n = s->st ? mysql_stmt_affected_rows(s->st) : mysql_affected_rows(s->m);
    return n == (my_ulonglong)-1 ? 0 : (int64_t)n;
}

unsigned ns__my_stmt_errno(ns_my_stmt *s)
{
    return s->st ? mysql_stmt_errno(s->st) : mysql_errno(s->m);
}

const char *ns__my_stmt_error(ns_my_stmt *s)
{
    return s->st ? mysql_stmt_error(s->st) : mysql_error(s->m);
}

const char *ns__my_stmt_state(ns_my_stmt *s)
{
    return s->st ? mysql_stmt_sqlstate(s->st) : mysql_sqlstate(s->m);
}

void ns__my_reset(ns_my_stmt *s)
{
    if (s->st)
        mysql_stmt_free_result(s->st);
}

void ns__my_close(ns_my_stmt *s)
{
    if (!s)
        return;
    if (s->st) {
        mysql_stmt_close(s->st);
    } else {
        if (s->res) {
            while (mysql_fetch_row(s->res)) /* the rest of a result not read */
                ;
            mysql_free_result(s->res);
        }
        /* further results (a CALL's) */
        while (mysql_next_result(s->m) == 0) {
            MYSQL_RES *r = mysql_use_result(s->m);
            if (r) {
                while (mysql_fetch_row(r))
                    ;
                mysql_free_result(r);
            }
        }
    }
    for (size_t i = 0; s->names && i < s->ncols; i++)
        free(s->names[i]);
    for (size_t i = 0; s->buf && i < s->ncols; i++)
        free(s->buf[i]);
    free(s->names);
    free(s->buf);
    free(s->rb);
    free(s->len);
    free(s->cap);
    free(s->isnull);
    free(s->trunc);
    free(s->vals);
    free(s);
}
