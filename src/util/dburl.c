/*
 * dburl.c - which database a connection string names, and how to show one.
 *
 * The one place a connection string is classified (the repository, a
 * job's connections, the table writer and the query reader all ask here),
 * so that every form accepted in one place is accepted in all: sqlite:PATH,
 * postgresql:// and postgres:// URIs, and libpq keyword/value strings
 * ("host=db port=5432 dbname=app user=me password=..."), which every psql
 * user knows.
 */
#include "util.h"

#include <ctype.h>
#include <string.h>

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

ns_db_kind ns__db_kind(const char *url)
{
    if (!url)
        return NS_DB_NONE;
    if (strncmp(url, "sqlite:", 7) == 0)
        return NS_DB_SQLITE;
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return NS_DB_PG;
    const char *p = url;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    /* A URI of another scheme is not a keyword string: "mysql://u@h/db?a=b" */
    if (strstr(url, "://"))
        return NS_DB_NONE;
    return keyword_at(p) ? NS_DB_PG : NS_DB_NONE;
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
