/*
 * driver.c - the MariaDB/MySQL driver: its connection strings (mysql:// and
 * mariadb:// URLs), and the query reader's pages: both page queries
 * prepared once, each page's rows copied into the pager's arena (a page is
 * at most 10,000 rows), the keys as text (MySQL compares a text parameter
 * with a number as a number).
 */
#include "db/mysql/mysql.h"

#include <stdlib.h>
#include <string.h>

typedef struct my_pager {
    ns_pager base;
    MYSQL *m;
    ns_my_stmt *first, *next;
    ns_my_cancel *cancel;
    const char *shown;
    size_t ncols, page_size;
    const char *const *names;
    ns_arena page;
} my_pager;

static ns_status mp_open(ns_pager *base, const ns_pager_args *a, const char *const **names,
                         size_t *ncols, ns_error *err)
{
    my_pager *p = (my_pager *)base;
    ns_status st;
    p->shown = a->shown;
    p->page_size = a->page_size;
    ns__arena_init(&p->page, 1 << 20);
    if ((st = ns__my_connect(a->url, a->shown, &p->m, err)) != NS_OK)
        return st;
    if (!(p->cancel = ns__my_cancel_new(p->m, a->url)))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    /* A read-only transaction: one snapshot for every page is not kept
     * (pages follow the table as it changes, as on PostgreSQL), but
     * nothing this connection runs may write. */
    if (mysql_query(p->m, "SET SESSION TRANSACTION READ ONLY") != 0)
        return ns__my_fail(p->m, err, a->shown, "cannot open the database");
    if ((st = ns__my_prepare(p->m, a->first, strlen(a->first), &p->first, err, a->shown,
                             "reader.query.sql")) != NS_OK ||
        (st = ns__my_prepare(p->m, a->next, strlen(a->next), &p->next, err, a->shown,
                             "reader.query.sql")) != NS_OK)
        return st;
    p->ncols = ns__my_ncols(p->first, &p->names);
    *names = p->names;
    *ncols = p->ncols;
    return NS_OK;
}

static ns_status mp_fetch(ns_pager *base, const char *const *params, size_t nparams, json_t *last,
                          const size_t *key, size_t nkey, ns_page *page, ns_error *err)
{
    my_pager *p = (my_pager *)base;
    ns_my_stmt *s = last ? p->next : p->first;
    size_t n = nparams + (last ? nkey : 0);
    const char **v = calloc(n ? n : 1, sizeof(*v));
    ns_status st;
    (void)key;
    *page = (ns_page){0};
    ns__arena_reset(&p->page);
    if (!v)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < nparams; i++)
        v[i] = params[i];
    for (size_t k = 0; last && k < nkey; k++)
        v[nparams + k] = json_string_value(json_array_get(last, k));
    st = ns__my_execute(s, v, n, err);
    free(v);
    if (st != NS_OK)
        return st;
    char **cells = ns__arena_alloc(&p->page, (p->page_size * p->ncols + 1) * sizeof(char *));
    if (!cells)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    size_t rows = 0;
    for (;;) {
        const char *const *row;
        bool eof;
        if ((st = ns__my_fetch(s, &row, &eof, err)) != NS_OK)
            break;
        if (eof)
            break;
        if (rows == p->page_size) /* LIMIT says it cannot be */
            continue;
        for (size_t i = 0; i < p->ncols; i++) {
            char *cell = row[i] ? ns__arena_strndup(&p->page, row[i], strlen(row[i])) : NULL;
            if (row[i] && !cell) {
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                break;
            }
            cells[rows * p->ncols + i] = cell;
        }
        if (st != NS_OK)
            break;
        rows++;
    }
    ns__my_reset(s);
    if (st != NS_OK)
        return st;
    page->rows = rows;
    page->cells = cells;
    return NS_OK;
}

static void mp_arm(ns_pager *base, ns_watchdog *wd, double limit)
{
    ns__watchdog_arm(wd, limit, ns__my_interrupt, ((my_pager *)base)->cancel);
}

static void mp_close(ns_pager *base)
{
    my_pager *p = (my_pager *)base;
    ns__my_close(p->first);
    ns__my_close(p->next);
    if (p->m)
        mysql_close(p->m);
    ns__my_cancel_free(p->cancel);
    ns__arena_free(&p->page);
}

static const ns_pager_vt my_pager_vt = {sizeof(my_pager), mp_open, mp_fetch, mp_arm, mp_close};

static bool accepts(const char *url)
{
    return strncmp(url, "mysql://", 8) == 0 || strncmp(url, "mariadb://", 10) == 0;
}

const ns_db_driver ns__driver_mysql = {.name = "mysql",
                                       .version = NS_DRIVER_VERSION,
                                       .forms = "mysql://...",
                                       .accepts = accepts,
                                       .placeholder = NS_PH_QMARK,
                                       .quote = '`',
                                       .table = &ns__writer_table_mysql,
                                       .pager = &my_pager_vt,
                                       .repo = NULL};
