/*
 * retry.c - which failures a step retries, and how long it waits between
 * tries (docs/operations.md, "Retries"). Whether a failure is transient is a
 * column of one table, the only place that decides it: a writer or a
 * repository says what failed (ns_error.sub: a SQLSTATE, an SQLite result,
 * HTTP_503, NS_TIMEOUT), never whether to try again.
 */
#include "util.h"

#include <string.h>

typedef struct fault_kind {
    const char *name; /* as a step's retry.on names it */
    const char *sub;  /* what ns_error.sub holds; "08*": a SQLSTATE class */
    const char *what; /* for messages */
    bool transient;   /* retried when retry.on is not given */
} fault_kind;

static const fault_kind kinds[] = {
    {"40001", "40001", "serialization failure", true},
    {"40P01", "40P01", "deadlock", true},
    {"08*", "08*", "connection lost", true},
    {"57014", "57014", "statement cancelled", true},
    {"57P01", "57P01", "server shut down by an administrator", true},
    {"57P02", "57P02", "server crashed", true},
    {"57P03", "57P03", "server not accepting connections yet", true},
    {"SQLITE_BUSY", "database is locked", "database locked by another connection", true},
    {"SQLITE_LOCKED", "database table is locked", "table locked", true},
    {"429", "HTTP_429", "HTTP 429 Too Many Requests", true},
    {"502", "HTTP_502", "HTTP 502 Bad Gateway", true},
    {"503", "HTTP_503", "HTTP 503 Service Unavailable", true},
    {"504", "HTTP_504", "HTTP 504 Gateway Timeout", true},
    {"timeout", "NS_TIMEOUT", "timed out", true},
    {"reset", "NS_RESET", "connection reset", true},
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

static const fault_kind *kind_of(const char *sub)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (sub_matches(kinds[i].sub, sub))
            return &kinds[i];
    return NULL;
}

bool ns__retry_wanted(const ns_retry *r, const ns_error *e, char *what, size_t n)
{
    const char *sub = e->sub;
    const fault_kind *k = sub[0] ? kind_of(sub) : NULL;
    bool want = false;
    if (!sub[0] || e->code == NS_ECONFLICT || e->code == NS_ENOMEM)
        return false;
    if (!r->on)
        want = k && k->transient;
    for (size_t i = 0; r->on && i < r->non && !want; i++) {
        char pattern[32];
        if (strcmp(r->on[i], "transient") == 0)
            want = k && k->transient;
        else
            want = entry_sub(r->on[i], pattern, sizeof(pattern)) && sub_matches(pattern, sub);
    }
    if (want && what) {
        if (k && strcmp(k->sub, sub) != 0)
            snprintf(what, n, "%s, %s", k->what, sub);
        else if (k)
            snprintf(what, n, "%s", k->what);
        else
            snprintf(what, n, "%s", sub);
    }
    return want;
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
