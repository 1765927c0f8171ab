/*
 * dburl.c - which database driver a connection string names, and how to
 * show one.
 *
 * The one place a connection string is classified (the repository, a
 * job's connections, the table writer and the query reader all ask here,
 * through the registry's drivers), so that every form accepted in one
 * place is accepted in all. Each driver says which strings are its own;
 * the first that accepts one has it.
 */
#include "util/keys.h"

#include <string.h>

const ns_db_driver *ns__db_find(const ns_registry *r, const char *url)
{
    if (!url || !r)
        return NULL;
    for (size_t i = 0; i < r->ndrivers; i++)
        if (r->drivers[i]->accepts(url))
            return r->drivers[i]->version == NS_DRIVER_VERSION ? r->drivers[i] : NULL;
    return NULL;
}

void ns__db_forms(const ns_registry *r, char *out, size_t n)
{
    size_t at = 0;
    if (!n)
        return;
    out[0] = '\0';
    for (size_t i = 0; r && i < r->ndrivers && at < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == r->ndrivers ? " or " : ", ";
        int k = snprintf(out + at, n - at, "%s%s", sep, r->drivers[i]->forms);
        if (k < 0)
            break;
        at += (size_t)k;
    }
}

void ns__db_shown(const char *url, char *out, size_t n)
{
    ns_secrets s = {0};
    if (!n)
        return;
    ns__secrets_add_url(&s, url ? url : "");
    snprintf(out, n, "%s", url ? url : "");
    ns__redact(&s, out, n);
    ns__secrets_free(&s);
}
