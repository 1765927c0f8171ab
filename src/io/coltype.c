/*
 * coltype.c - checks a text value against a column's declared type, the way
 * PostgreSQL would, so that a job rejects the same records on SQLite (which
 * would store "12x" in an INTEGER column) as on PostgreSQL. Codes and
 * messages follow PostgreSQL's.
 */
#include "io/io.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has(const char *up, const char *word)
{
    return strstr(up, word) != NULL;
}

void ns__coltype_parse(const char *decl, ns_coltype *ct)
{
    char up[64];
    size_t i;

    memset(ct, 0, sizeof(*ct));
    snprintf(ct->decl, sizeof(ct->decl), "%s", decl ? decl : "");
    for (i = 0; i + 1 < sizeof(up) && ct->decl[i]; i++)
        up[i] = (char)toupper((unsigned char)ct->decl[i]);
    up[i] = '\0';
    const char *paren = strchr(up, '(');
    long a = 0, b = 0;
    int nargs = paren ? sscanf(paren, "(%ld , %ld)", &a, &b) : 0;

    if (!*up || has(up, "BLOB")) {
        ct->kind = NS_CT_ANY;
    } else if (has(up, "BOOL")) {
        ct->kind = NS_CT_BOOL;
    } else if (has(up, "TIMESTAMP") || has(up, "DATETIME")) {
        ct->kind = NS_CT_TIMESTAMP;
    } else if (strncmp(up, "DATE", 4) == 0 && !isalnum((unsigned char)up[4])) {
        ct->kind = NS_CT_DATE;
    } else if (has(up, "INT")) {
        /* SQLite rule: any type naming INT has integer affinity. SMALLINT is
         * 16-bit as in PostgreSQL; the rest are 64-bit as SQLite stores them. */
        ct->kind = NS_CT_INT;
        bool small = has(up, "SMALLINT") || has(up, "INT2");
        ct->min = small ? -32768 : INT64_MIN;
        ct->max = small ? 32767 : INT64_MAX;
    } else if (has(up, "CHAR") || has(up, "CLOB") || has(up, "TEXT")) {
        ct->kind = NS_CT_TEXT;
        ct->length = nargs >= 1 && a > 0 ? a : 0;
    } else if (has(up, "REAL") || has(up, "FLOA") || has(up, "DOUB")) {
        ct->kind = NS_CT_REAL;
    } else if (has(up, "NUMERIC") || has(up, "DECIMAL")) {
        ct->kind = NS_CT_NUMERIC;
        if (nargs >= 1 && a > 0 && a <= 1000) {
            ct->precision = (int)a;
            ct->scale = nargs == 2 && b >= 0 && b <= a ? (int)b : 0;
        }
    } else {
        ct->kind = NS_CT_ANY;
    }
}

void ns__coltype_parse_pg(const char *t, ns_coltype *ct)
{
    static const struct {
        const char *name;
        ns_ckind kind;
        int64_t min, max;
    } exact[] = {
        {"smallint", NS_CT_INT, INT16_MIN, INT16_MAX},
        {"integer", NS_CT_INT, INT32_MIN, INT32_MAX},
        {"bigint", NS_CT_INT, INT64_MIN, INT64_MAX},
        {"real", NS_CT_REAL, 0, 0},
        {"double precision", NS_CT_REAL, 0, 0},
        {"boolean", NS_CT_BOOL, 0, 0},
        {"date", NS_CT_DATE, 0, 0},
        {"text", NS_CT_TEXT, 0, 0},
    };
    static const char *const prefixed[] = {"numeric", "timestamp", "character varying",
                                           "character"};

    memset(ct, 0, sizeof(*ct));
    snprintf(ct->decl, sizeof(ct->decl), "%s", t);
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(t, exact[i].name) == 0) {
            ct->kind = exact[i].kind;
            ct->min = exact[i].min;
            ct->max = exact[i].max;
            return;
        }
    /* numeric(p,s), timestamp(3) with time zone, character varying(20), ... */
    for (size_t i = 0; i < sizeof(prefixed) / sizeof(prefixed[0]); i++)
        if (strncmp(t, prefixed[i], strlen(prefixed[i])) == 0 && !strchr(t, '[')) {
            ns__coltype_parse(t, ct);
            return;
        }
    /* Anything else (json, uuid, arrays, enums, time, interval, ...) is left
     * to the server, whose error names the line. */
    ct->kind = NS_CT_ANY;
}

static void trim(const char **p, size_t *n)
{
    while (*n && isspace((unsigned char)(*p)[0]))
        (*p)++, (*n)--;
    while (*n && isspace((unsigned char)(*p)[*n - 1]))
        (*n)--;
}

static bool syntax(const ns_coltype *ct, const char *tname, const char *p, size_t n,
                   const char **code, char *msg, size_t len)
{
    *code = "22P02";
    snprintf(msg, len, "invalid input syntax for type %s: \"%.*s\"", tname, (int)(n > 80 ? 80 : n),
             p);
    (void)ct;
    return false;
}

static bool check_numeric(const ns_coltype *ct, const char *p, size_t n, const char **code,
                          char *msg, size_t len)
{
    size_t i = 0, intdigits = 0, fracdigits = 0, lead = 0;
    bool seen_nonzero = false;

    if (i < n && (p[i] == '+' || p[i] == '-'))
        i++;
    for (; i < n && isdigit((unsigned char)p[i]); i++) {
        if (p[i] != '0')
            seen_nonzero = true;
        if (seen_nonzero)
            intdigits++;
        lead++;
    }
    if (i < n && p[i] == '.')
        for (i++; i < n && isdigit((unsigned char)p[i]); i++)
            fracdigits++;
    if (lead + fracdigits == 0)
        return syntax(ct, "numeric", p, n, code, msg, len);
    long exp = 0;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        char tmp[32];
        size_t k = n - i - 1 < sizeof(tmp) - 1 ? n - i - 1 : sizeof(tmp) - 1;
        memcpy(tmp, p + i + 1, k);
        tmp[k] = '\0';
        char *end;
        errno = 0;
        exp = strtol(tmp, &end, 10);
        if (!k || *end || errno || exp > 1000 || exp < -1000)
            return syntax(ct, "numeric", p, n, code, msg, len);
        i = n;
    }
    if (i != n)
        return syntax(ct, "numeric", p, n, code, msg, len);
    if (ct->precision) {
        long digits = (long)intdigits + exp;
        if (digits > ct->precision - ct->scale) {
            *code = "22003";
            snprintf(msg, len,
                     "numeric field overflow: a field with precision %d, scale %d must round to an "
                     "absolute value less than 10^%d (got \"%.*s\")",
                     ct->precision, ct->scale, ct->precision - ct->scale, (int)(n > 60 ? 60 : n),
                     p);
            return false;
        }
    }
    return true;
}

bool ns__coltype_check(const ns_coltype *ct, const char *p, size_t n, ns_bound *b,
                       const char **code, char *msg, size_t msglen)
{
    b->kind = NS_B_TEXT;
    b->p = p;
    b->len = n;
    switch (ct->kind) {
    case NS_CT_ANY:
        return true;
    case NS_CT_TEXT:
        if (ct->length && (size_t)ct->length < n && ns__utf8_count(p, n) > (size_t)ct->length) {
            *code = "22001";
            snprintf(msg, msglen, "value too long for type %s (%zu characters)", ct->decl,
                     ns__utf8_count(p, n));
            return false;
        }
        return true;
    case NS_CT_INT: {
        const char *q = p;
        size_t m = n;
        trim(&q, &m);
        int64_t v;
        if (!ns__parse_i64(q, m, &v)) {
            /* Distinguish overflow from bad syntax, as PostgreSQL does. */
            size_t k = (m && (q[0] == '-' || q[0] == '+')) ? 1 : 0;
            bool digits = m > k;
            for (size_t j = k; j < m; j++)
                digits &= isdigit((unsigned char)q[j]) != 0;
            if (digits) {
                *code = "22003";
                snprintf(msg, msglen, "value \"%.*s\" is out of range for type %s",
                         (int)(m > 40 ? 40 : m), q, ct->decl);
                return false;
            }
            return syntax(ct, "integer", p, n, code, msg, msglen);
        }
        if (v < ct->min || v > ct->max) {
            *code = "22003";
            snprintf(msg, msglen, "value \"%.*s\" is out of range for type %s", (int)m, q,
                     ct->decl);
            return false;
        }
        b->kind = NS_B_INT;
        b->i = v;
        return true;
    }
    case NS_CT_REAL: {
        char tmp[128];
        const char *q = p;
        size_t m = n;
        trim(&q, &m);
        if (m == 0 || m >= sizeof(tmp))
            return syntax(ct, "double precision", p, n, code, msg, msglen);
        memcpy(tmp, q, m);
        tmp[m] = '\0';
        char *end;
        errno = 0;
        double d = strtod(tmp, &end);
        if (*end || (errno == ERANGE && isinf(d)))
            return syntax(ct, "double precision", p, n, code, msg, msglen);
        if (!isfinite(d)) /* NaN/Infinity: SQLite would store NULL for NaN */
            return true;
        b->kind = NS_B_REAL;
        b->d = d;
        return true;
    }
    case NS_CT_NUMERIC: {
        const char *q = p;
        size_t m = n;
        trim(&q, &m);
        if (!check_numeric(ct, q, m, code, msg, msglen))
            return false;
        b->p = q;
        b->len = m;
        return true;
    }
    case NS_CT_BOOL: {
        static const char *const t[] = {"t", "true", "y", "yes", "on", "1"};
        static const char *const f[] = {"f", "false", "n", "no", "off", "0"};
        const char *q = p;
        size_t m = n;
        trim(&q, &m);
        for (size_t k = 0; k < 6; k++) {
            if (strlen(t[k]) == m && strncasecmp(q, t[k], m) == 0)
                return b->kind = NS_B_INT, b->i = 1, true;
            if (strlen(f[k]) == m && strncasecmp(q, f[k], m) == 0)
                return b->kind = NS_B_INT, b->i = 0, true;
        }
        return syntax(ct, "boolean", p, n, code, msg, msglen);
    }
    case NS_CT_DATE:
        if (!ns__valid_date(p, n)) {
            *code = "22007";
            snprintf(msg, msglen, "invalid input syntax for type date: \"%.*s\" (want YYYY-MM-DD)",
                     (int)(n > 60 ? 60 : n), p);
            return false;
        }
        return true;
    case NS_CT_TIMESTAMP:
        if (!ns__valid_timestamp(p, n)) {
            *code = "22007";
            snprintf(msg, msglen,
                     "invalid input syntax for type timestamp: \"%.*s\" (want YYYY-MM-DD "
                     "HH:MM:SS)",
                     (int)(n > 60 ? 60 : n), p);
            return false;
        }
        return true;
    }
    return true;
}
