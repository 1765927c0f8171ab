/*
 * driver.c - the PostgreSQL driver: its connection strings (postgresql://
 * and postgres:// URIs, and libpq keyword/value strings, "host=db
 * dbname=app", which every psql user knows), and the query reader's pages.
 *
 * The next page is asked for as soon as a page arrives, and a thread
 * receives it (libpq parsing the rows) while the job writes the current
 * one: receiving a page in the job's own thread left a COPY target idle
 * meanwhile. The thread alone touches the connection until joined.
 */
#include "db/pg/pg.h"
#include "repo/repo.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct pg_pager {
    ns_pager base;
    PGconn *c; /* statements prepared as ns_first / ns_next */
    ns_pg_cancel *cancel;
    const char *shown;
    char **names;
    size_t ncols, page_size;
    bool pending;  /* the next page's query is already sent */
    bool fetching; /* ... and a thread is receiving its result */
    pthread_t fetcher;
    PGresult *ahead; /* what the fetcher received */
    PGresult *res;   /* the current page (cells point into it) */
    char **cells;
    size_t cells_cap;
} pg_pager;

static ns_status fail(pg_pager *p, PGresult *res, ns_error *err, const char *what)
{
    const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(p->c);
    size_t len = strlen(m);
    while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
        len--;
    return ns__err(err, NS_EDB, ns__pg_state(p->c, res), "%s: %s: %.*s", p->shown, what, (int)len,
                   m);
}

static ns_status pp_open(ns_pager *base, const ns_pager_args *a, const char *const **names,
                         size_t *ncols, ns_error *err)
{
    pg_pager *p = (pg_pager *)base;
    p->shown = a->shown;
    p->page_size = a->page_size;
    p->c = ns__pg_connect(a->url, "nightshift");
    if (!p->c || PQstatus(p->c) != CONNECTION_OK) {
        const char *m = p->c ? PQerrorMessage(p->c) : "out of memory";
        size_t len = strlen(m);
        while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
            len--;
        return ns__err(err, NS_EDB, p->c ? ns__pg_connect_state(p->c) : NULL,
                       "%s: cannot connect: %.*s", p->shown, (int)len, m);
    }
    PQsetClientEncoding(p->c, "UTF8");
    if (!(p->cancel = ns__pg_cancel_new(p->c)))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    PGresult *res = PQprepare(p->c, "ns_first", a->first, 0, NULL);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQprepare(p->c, "ns_next", a->next, 0, NULL);
    }
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQdescribePrepared(p->c, "ns_first");
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ns_status st = fail(p, res, err, "reader.query.sql");
        PQclear(res);
        return st;
    }
    p->ncols = (size_t)PQnfields(res);
    p->names = calloc(p->ncols ? p->ncols : 1, sizeof(*p->names));
    for (size_t i = 0; p->names && i < p->ncols; i++)
        if (!(p->names[i] = ns__strdup(PQfname(res, (int)i)))) {
            PQclear(res);
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        }
    PQclear(res);
    if (!p->names)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    *names = (const char *const *)p->names;
    *ncols = p->ncols;
    return NS_OK;
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
    pg_pager *p = arg;
    p->ahead = receive(p->c);
    return NULL;
}

static ns_status pp_fetch(ns_pager *base, const char *const *params, size_t nparams, json_t *last,
                          const size_t *key, size_t nkey, ns_page *page, ns_error *err)
{
    pg_pager *p = (pg_pager *)base;
    PGresult *res;

    *page = (ns_page){0};
    PQclear(p->res);
    p->res = NULL;
    if (p->fetching) {
        pthread_join(p->fetcher, NULL);
        res = p->ahead;
        p->ahead = NULL;
        p->fetching = p->pending = false;
    } else if (p->pending) {
        res = receive(p->c);
        p->pending = false;
    } else {
        size_t n = nparams + (last ? nkey : 0);
        const char **v = calloc(n ? n : 1, sizeof(*v));
        if (!v)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < nparams; i++)
            v[i] = params[i];
        for (size_t k = 0; last && k < nkey; k++)
            v[nparams + k] = json_string_value(json_array_get(last, k));
        res = PQexecPrepared(p->c, last ? "ns_next" : "ns_first", (int)n, v, NULL, NULL, 0);
        free(v);
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ns_status s = fail(p, res, err, "reader.query.sql");
        PQclear(res);
        return s;
    }
    size_t rows = (size_t)PQntuples(res);
    p->res = res; /* kept until the next fetch: cells point into it */
    if (rows * p->ncols + 1 > p->cells_cap) {
        char **c = realloc(p->cells, (rows * p->ncols + 1) * sizeof(*c));
        if (!c)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        p->cells = c;
        p->cells_cap = rows * p->ncols + 1;
    }
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < p->ncols; j++)
            p->cells[i * p->ncols + j] =
                PQgetisnull(res, (int)i, (int)j) ? NULL : PQgetvalue(res, (int)i, (int)j);
    page->rows = rows;
    page->cells = p->cells;
    /* A full page: ask for the next one now, after this page's last key. */
    if (rows == p->page_size) {
        const char **v = calloc(nparams + nkey, sizeof(*v));
        if (!v)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < nparams; i++)
            v[i] = params[i];
        for (size_t k = 0; k < nkey; k++)
            v[nparams + k] = p->cells[(rows - 1) * p->ncols + key[k]];
        p->pending =
            PQsendQueryPrepared(p->c, "ns_next", (int)(nparams + nkey), v, NULL, NULL, 0) == 1;
        free(v);
        if (!p->pending)
            return fail(p, NULL, err, "reader.query.sql");
        /* Without a thread, the page is received when needed. */
        p->fetching = pthread_create(&p->fetcher, NULL, fetch_ahead, p) == 0;
    }
    return NS_OK;
}

static void pp_arm(ns_pager *base, ns_watchdog *wd, double limit)
{
    ns__watchdog_arm(wd, limit, ns__pg_interrupt, ((pg_pager *)base)->cancel);
}

static void pp_close(ns_pager *base)
{
    pg_pager *p = (pg_pager *)base;
    if (p->fetching)
        pthread_join(p->fetcher, NULL);
    PQclear(p->ahead);
    PQclear(p->res);
    PQfinish(p->c);
    ns__pg_cancel_free(p->cancel);
    for (size_t i = 0; p->names && i < p->ncols; i++)
        free(p->names[i]);
    free(p->names);
    free(p->cells);
}

static const ns_pager_vt pg_pager_vt = {sizeof(pg_pager), pp_open, pp_fetch, pp_arm, pp_close};

/* "keyword =" at p (libpq's keywords: letters and underscores). */
static bool keyword_at(const char *p)
{
    const char *k = p;
    while (*k && (isalpha((unsigned char)*k) || *k == '_'))
        k++;
    if (k == p)
        return false;
    while (*k == ' ' || *k == '\t')
        k++;
    return *k == '=';
}

static bool accepts(const char *url)
{
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return true;
    /* A URI of another scheme is not a keyword string: "mysql://u@h/db?a=b" */
    if (strstr(url, "://"))
        return false;
    while (*url == ' ' || *url == '\t' || *url == '\n')
        url++;
    return keyword_at(url);
}

const ns_db_driver ns__driver_pg = {.name = "postgresql",
                                    .version = NS_DRIVER_VERSION,
                                    .forms = "postgresql://..., host=... dbname=...",
                                    .accepts = accepts,
                                    .placeholder = NS_PH_DOLLAR,
                                    .quote = '\"',
                                    .table = &ns__writer_table_pg,
                                    .pager = &pg_pager_vt,
                                    .repo = &ns__repo_pg};
