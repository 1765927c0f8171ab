/*
 * driver.c - the SQLite driver: its connection strings (sqlite:PATH), and
 * the query reader's pages. A page is read row by row into the pager's
 * arena; each row's key keeps the type SQLite gave it (SQLite orders
 * integers before text, so an integer key bound as text would page wrongly).
 */
#include "db/sqlite/sqlite.h"
#include "repo/repo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct sq_pager {
    ns_pager base;
    sqlite3 *db;
    sqlite3_stmt *first, *next;
    ns_sqwait wait; /* its lock waits, cut short by the watchdog */
    const char *shown;
    char **names;
    size_t ncols, page_size;
    ns_arena page;
    json_t **keys; /* the current page's, owned */
    size_t rows;
} sq_pager;

static ns_status fail(sq_pager *p, ns_error *err, const char *what)
{
    return ns__err(err, NS_EDB, sqlite3_errstr(sqlite3_extended_errcode(p->db)), "%s: %s: %s",
                   p->shown, what, sqlite3_errmsg(p->db));
}

static ns_status sp_open(ns_pager *base, const ns_pager_args *a, const char *const **names,
                         size_t *ncols, ns_error *err)
{
    sq_pager *p = (sq_pager *)base;
    const char *path = a->url + 7;
    struct stat sb;

    p->shown = a->shown;
    p->page_size = a->page_size;
    ns__arena_init(&p->page, 1 << 20);
    /* Read-write, not read-only: after a crash mid-commit the database may
     * have a hot journal, which only a connection that may write can roll
     * back. query_only keeps this one from writing anything else. */
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return ns__err(err, NS_EIO, NULL, "%s: the database file does not exist", a->shown);
    if (sqlite3_open_v2(path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        return fail(p, err, "cannot open the database");
    /* Another connection's lock is waited for up to 30 s, or the
     * connection's statement_timeout when shorter; a stop request ends the
     * wait and the statement (the watchdog). */
    ns__sqwait_init(&p->wait, p->db, a->limit > 0 && a->limit < 30 ? a->limit : 30);
    if (sqlite3_exec(p->db, "PRAGMA query_only = ON", NULL, NULL, NULL) != SQLITE_OK)
        return fail(p, err, "cannot open the database");
    if (sqlite3_prepare_v2(p->db, a->first, -1, &p->first, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(p->db, a->next, -1, &p->next, NULL) != SQLITE_OK)
        return fail(p, err, "reader.query.sql");
    p->ncols = (size_t)sqlite3_column_count(p->first);
    if (!(p->names = calloc(p->ncols ? p->ncols : 1, sizeof(*p->names))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < p->ncols; i++) {
        const char *name = sqlite3_column_name(p->first, (int)i); /* NULL: out of memory */
        if (!name || !(p->names[i] = ns__strdup(name)))
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    *names = (const char *const *)p->names;
    *ncols = p->ncols;
    return NS_OK;
}

static void drop_page(sq_pager *p)
{
    for (size_t i = 0; p->keys && i < p->rows; i++)
        json_decref(p->keys[i]);
    p->keys = NULL;
    p->rows = 0;
    ns__arena_reset(&p->page);
}

static ns_status sp_fetch(ns_pager *base, const char *const *params, size_t nparams, json_t *last,
                          const size_t *key, size_t nkey, ns_page *page, ns_error *err)
{
    sq_pager *p = (sq_pager *)base;
    sqlite3_stmt *st = last ? p->next : p->first;

    drop_page(p);
    *page = (ns_page){0};
    sqlite3_reset(st);
    for (size_t i = 0; i < nparams; i++)
        sqlite3_bind_text(st, (int)i + 1, params[i], -1, SQLITE_STATIC);
    for (size_t k = 0; last && k < nkey; k++) {
        json_t *v = json_array_get(last, k);
        int at = (int)(nparams + k) + 1;
        if (json_is_integer(v))
            sqlite3_bind_int64(st, at, json_integer_value(v));
        else if (json_is_real(v))
            sqlite3_bind_double(st, at, json_real_value(v));
        else
            sqlite3_bind_text(st, at, json_string_value(v), -1, SQLITE_TRANSIENT);
    }
    char **cells = ns__arena_alloc(&p->page, (p->page_size * p->ncols + 1) * sizeof(char *));
    size_t *nul = ns__arena_alloc(&p->page, p->page_size * sizeof(size_t));
    p->keys = ns__arena_alloc(&p->page, p->page_size * sizeof(json_t *));
    if (!cells || !p->keys || !nul)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        nul[p->rows] = 0;
        for (size_t i = 0; i < p->ncols; i++) {
            const unsigned char *t = sqlite3_column_text(st, (int)i);
            size_t n = t ? (size_t)sqlite3_column_bytes(st, (int)i) : 0;
            char *cell = t ? ns__arena_strndup(&p->page, (const char *)t, n) : NULL;
            if (t && !cell) /* not NULL: a value lost */
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            cells[p->rows * p->ncols + i] = cell;
            /* SQLite stores text holding a NUL byte; no C string, CSV or
             * other database's text can carry it: the row is rejected. */
            if (t && !nul[p->rows] && memchr(t, '\0', n))
                nul[p->rows] = i + 1;
        }
        /* Keep each key's type for the next page's comparison. */
        json_t *k = json_array();
        for (size_t j = 0; j < nkey; j++) {
            int c = (int)key[j];
            int type = sqlite3_column_type(st, c);
            json_array_append_new(
                k, type == SQLITE_INTEGER ? json_integer(sqlite3_column_int64(st, c))
                   : type == SQLITE_FLOAT ? json_real(sqlite3_column_double(st, c))
                   : type == SQLITE_NULL  ? json_null()
                                          : json_string((const char *)sqlite3_column_text(st, c)));
        }
        if (!k || json_array_size(k) != nkey) {
            json_decref(k);
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        }
        p->keys[p->rows++] = k;
    }
    if (rc != SQLITE_DONE)
        return fail(p, err, "reader.query.sql");
    page->rows = p->rows;
    page->cells = cells;
    page->keys = p->keys;
    page->nul = nul;
    return NS_OK;
}

static void sp_arm(ns_pager *base, ns_watchdog *wd, double limit)
{
    ns__sqwait_arm(&((sq_pager *)base)->wait, wd, limit);
}

static void sp_close(ns_pager *base)
{
    sq_pager *p = (sq_pager *)base;
    drop_page(p);
    sqlite3_finalize(p->first);
    sqlite3_finalize(p->next);
    sqlite3_close_v2(p->db);
    for (size_t i = 0; p->names && i < p->ncols; i++)
        free(p->names[i]);
    free(p->names);
    ns__arena_free(&p->page);
}

static const ns_pager_vt sq_pager_vt = {sizeof(sq_pager), sp_open, sp_fetch, sp_arm, sp_close};

static bool accepts(const char *url)
{
    return strncmp(url, "sqlite:", 7) == 0;
}

const ns_db_driver ns__driver_sqlite = {.name = "sqlite",
                                        .version = NS_DRIVER_VERSION,
                                        .forms = "sqlite:PATH",
                                        .accepts = accepts,
                                        .path_at = 7,
                                        .placeholder = NS_PH_QNUM,
                                        .quote = '\"',
                                        .table = &ns__writer_table_sqlite,
                                        .pager = &sq_pager_vt,
                                        .repo = &ns__repo_sqlite};
