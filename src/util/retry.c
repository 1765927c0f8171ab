/*
 * retry.c - which failures a step retries, and how long it waits between
 * tries (docs/operations.md, "Retries"). Whether a failure is transient is a
 * column of one table, the only place that decides it: a writer or a
 * repository says what failed (ns_error.sub: a SQLSTATE, an SQLite result,
 * HTTP_503; or its code: NS_ETIMEDOUT), never whether to try again.
 */
#include "util.h"

#include <string.h>

typedef struct fault_kind {
    const char *name; /* as a step's retry.on names it */
    const char *sub;  /* what ns_error.sub holds; "08*": a SQLSTATE class */
    const char *what; /* for messages */
    bool transient;   /* retried when retry.on is not given */
    ns_status code;   /* or, when not NS_OK, the ns_error.code it is */
} fault_kind;

static const fault_kind kinds[] = {
    {"40001", "40001", "serialization failure", true, NS_OK},
    {"40P01", "40P01", "deadlock", true, NS_OK},
    {"08*", "08*", "connection lost", true, NS_OK},
    /* a connection never made in this execution: not lost, and psql would
     * not try again either (wrong password, no such database, no host) */
    {"connect", "NS_CONNECT", "cannot connect", false, NS_OK},
    {"57014", "57014", "statement cancelled", true, NS_OK},
    {"57P01", "57P01", "server shut down by an administrator", true, NS_OK},
    {"57P02", "57P02", "server crashed", true, NS_OK},
    {"57P03", "57P03", "server not accepting connections yet", true, NS_OK},
    {"SQLITE_BUSY", "database is locked", "database locked by another connection", true, NS_OK},
    {"SQLITE_LOCKED", "database table is locked", "table locked", true, NS_OK},
    {"429", "HTTP_429", "HTTP 429 Too Many Requests", true, NS_OK},
    {"502", "HTTP_502", "HTTP 502 Bad Gateway", true, NS_OK},
    {"503", "HTTP_503", "HTTP 503 Service Unavailable", true, NS_OK},
    {"504", "HTTP_504", "HTTP 504 Gateway Timeout", true, NS_OK},
    {"timeout", "", "timed out", true, NS_ETIMEDOUT},
    {"reset", "NS_RESET", "connection reset", true, NS_OK},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

const ns_retry ns__retry_default = {
    .limit = 3, .initial = 1, .max = 30, .multiplier = 2, .jitter = true};

static bool sqlstate_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

/* What an entry of retry.on matches in ns_error.sub, written to buf. */
static bool entry_sub(const char *on, char *buf, size_t n)
{
    size_t len = strlen(on);
    for (size_t i = 0; i < NKINDS; i++)
        if (strcmp(on, kinds[i].name) == 0) {
            snprintf(buf, n, "%s", kinds[i].sub);
            return true;
        }
    /* any SQLSTATE, or a class of them ("23*") */
    bool state = len == 5 || (len == 3 && on[2] == '*');
    for (size_t i = 0; state && i < (len == 3 ? 2 : 5); i++)
        state = sqlstate_char(on[i]);
    if (state) {
        snprintf(buf, n, "%s", on);
        return true;
    }
    /* any HTTP status */
    if (len == 3 && on[0] >= '1' && on[0] <= '5' && on[1] >= '0' && on[1] <= '9' && on[2] >= '0' &&
        on[2] <= '9') {
        snprintf(buf, n, "HTTP_%s", on);
        return true;
    }
    return false;
}

bool ns__retry_on_valid(const char *on)
{
    char sub[32];
    return strcmp(on, "transient") == 0 || entry_sub(on, sub, sizeof(sub));
}

static bool sub_matches(const char *pattern, const char *sub)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, sub, n - 1) == 0 && strlen(sub) == 5;
    return strcmp(pattern, sub) == 0;
}

static const fault_kind *kind_of(const ns_error *e)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (kinds[i].code != NS_OK && e->code == kinds[i].code)
            return &kinds[i];
    for (size_t i = 0; e->sub[0] && i < NKINDS; i++)
        if (kinds[i].code == NS_OK && sub_matches(kinds[i].sub, e->sub))
            return &kinds[i];
    return NULL;
}

bool ns__retry_wanted(const ns_retry *r, const ns_error *e, char *what, size_t n)
{
    const fault_kind *k = kind_of(e);
    /* matched as written in retry.on: the kind's own sub for a coded one */
    const char *sub = k && k->code != NS_OK ? k->name : e->sub;
    bool want = false;
    if ((!sub[0] && !k) || e->code == NS_ECONFLICT || e->code == NS_ENOMEM ||
        e->code == NS_ESTOPPED)
        return false;
    if (!r->on)
        want = k && k->transient;
    for (size_t i = 0; r->on && i < r->non && !want; i++) {
        char pattern[32];
        if (strcmp(r->on[i], "transient") == 0)
            want = k && k->transient;
        else
            want = k && k->code != NS_OK
                       ? strcmp(r->on[i], k->name) == 0
                       : entry_sub(r->on[i], pattern, sizeof(pattern)) && sub_matches(pattern, sub);
    }
    if (want && what) {
        if (k && k->code != NS_OK && e->sub[0])
            snprintf(what, n, "%s, %s", k->what, e->sub);
        else if (k && k->code == NS_OK && strcmp(k->sub, sub) != 0)
            snprintf(what, n, "%s, %s", k->what, sub);
        else if (k)
            snprintf(what, n, "%s", k->what);
        else
            snprintf(what, n, "%s", sub);
    }
    return want;
}

void ns__retry_reconnecting(ns_error *e)
{
    if (strcmp(e->sub, "NS_CONNECT") == 0)
        snprintf(e->sub, sizeof(e->sub), "08001");
}

double ns__retry_delay(const ns_retry *r, int64_t attempt, uint64_t *seed)
{
    double d = r->initial;
    for (int64_t i = 1; i < attempt && d < r->max; i++)
        d *= r->multiplier;
    if (d > r->max)
        d = r->max;
    if (r->jitter) {
        /* "equal jitter": half the delay, plus up to the other half at
         * random, so runs that failed together do not return together */
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(*seed >> 11) / 9007199254740992.0;
        d = d / 2 + u * d / 2;
    }
    return d;
}
