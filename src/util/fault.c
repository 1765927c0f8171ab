/*
 * fault.c - allocation-failure simulation for test builds (NS_TEST_HOOKS),
 * in the spirit of SQLite's: NIGHTSHIFT_TEST_FAIL_ALLOC=N makes the Nth
 * allocation of the process fail, once. It counts nightshift's own
 * allocations (util.h routes malloc, calloc and realloc here in test builds),
 * SQLite's (SQLITE_CONFIG_MALLOC) and jansson's (json_set_alloc_funcs);
 * libyaml, libpq and the C library allocate on their own and are not
 * counted. When the failure happened, the process says so on standard error
 * as it exits, so a test knows whether N was reached. Release builds have
 * none of this.
 */
#ifdef NS_TEST_HOOKS
#include "util/util.h"

#undef malloc
#undef calloc
#undef realloc

#include <jansson.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_at;  /* 0: never */
static atomic_long count;    /* allocations so far */
static atomic_bool happened; /* the Nth came */

static bool fails(void)
{
    long at = atomic_load(&fail_at);
    if (at <= 0 || atomic_fetch_add(&count, 1) + 1 != at)
        return false;
    atomic_store(&happened, true);
    return true;
}

void *ns__t_malloc(size_t n)
{
    return fails() ? NULL : malloc(n);
}

void *ns__t_calloc(size_t n, size_t size)
{
    return fails() ? NULL : calloc(n, size);
}

void *ns__t_realloc(void *p, size_t n)
{
    return fails() ? NULL : realloc(p, n);
}

/* SQLite needs each allocation's size: kept in a header before it. */
#define HDR 16

static void *sq_malloc(int n)
{
    char *p = fails() ? NULL : malloc((size_t)n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof(n));
    return p + HDR;
}

static void sq_free(void *p)
{
    if (p)
        free((char *)p - HDR);
}

static int sq_size(void *p)
{
    int n = 0;
    if (p)
        memcpy(&n, (char *)p - HDR, sizeof(n));
    return n;
}

static void *sq_realloc(void *p, int n)
{
    if (!p)
        return sq_malloc(n);
    char *q = fails() ? NULL : realloc((char *)p - HDR, (size_t)n + HDR);
    if (!q)
        return NULL;
    memcpy(q, &n, sizeof(n));
    return q + HDR;
}

static int sq_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sq_init(void *arg)
{
    (void)arg;
    return SQLITE_OK;
}

static void sq_shutdown(void *arg)
{
    (void)arg;
}

static void *js_malloc(size_t n)
{
    return fails() ? NULL : malloc(n);
}

static void report(void)
{
    if (atomic_load(&happened))
        fprintf(stderr, "nightshift (test build): allocation %ld failed as asked\n",
                atomic_load(&fail_at));
}

__attribute__((constructor)) static void fault_init(void)
{
    static const sqlite3_mem_methods methods = {sq_malloc,  sq_free, sq_realloc,  sq_size,
                                                sq_roundup, sq_init, sq_shutdown, NULL};
    const char *v = getenv("NIGHTSHIFT_TEST_FAIL_ALLOC");
    if (!v || atol(v) <= 0)
        return;
    atomic_store(&fail_at, atol(v));
    sqlite3_config(SQLITE_CONFIG_MALLOC, &methods);
    json_set_alloc_funcs(js_malloc, free);
    atexit(report);
}
#else
typedef int ns__no_fault_points; /* ISO C wants a translation unit to declare something */
#endif
