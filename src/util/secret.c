/*
 * secret.c - the values nightshift must never write, and the one redaction
 * every text passes before it leaves the library.
 *
 * A secret is a value substituted for ${env.X}, or a password found in a
 * connection URL (URI userinfo, `?password=`, keyword `password=`), each
 * also in the forms a server may echo it in (base64, JSON-escaped,
 * percent-encoded and -decoded). Drivers
 * quote such values back in their messages ("invalid integer value
 * \"TOPSECRET\" for connection option \"port\""), so redacting the URL we
 * format ourselves is not enough: every message, notice, stored exit
 * message and reject message is scanned for every registered value.
 *
 * Short values cannot be told from ordinary words and numbers: a value of
 * fewer than NS_SECRET_MIN bytes is not registered, and one shorter than
 * NS_SECRET_ANYWHERE bytes is only replaced where it stands alone (not
 * inside a longer word or number), so a port 5432 does not eat "15432".
 */
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_SECRET_MIN      4
#define NS_SECRET_ANYWHERE 8
#define MASK               "***"

static bool has(const ns_secrets *s, const char *v, size_t n)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == n && memcmp(s->v[i], v, n) == 0)
            return true;
    return false;
}

static void add_raw(ns_secrets *s, const char *v, size_t n)
{
    if (n < NS_SECRET_MIN || memchr(v, '\0', n) || has(s, v, n))
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **p = realloc(s->v, cap * sizeof(*p));
        if (!p) {
            s->failed = true; /* see ns__secrets_ok */
            return;
        }
        s->v = p;
        s->cap = cap;
    }
    char *copy = ns__strndup(v, n);
    if (!copy) {
        s->failed = true;
        return;
    }
    s->v[s->n++] = copy;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* base64 of n bytes into out (4 per 3; n a multiple of 3). */
static size_t base64(const unsigned char *p, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    return o;
}

/* A value and the forms a server may echo it in: base64 (an Authorization:
 * Basic header, a token it encodes), JSON-escaped, percent-encoded. */
static void add_forms(ns_secrets *s, const char *v, size_t n)
{
    add_raw(s, v, n);
    if (n < NS_SECRET_MIN)
        return;
    /* In base64 the value's bytes fall into groups of three by where it
     * starts: from each of the three starting points, the characters that
     * only the value decides (at least 8 of them, or it is no secret). */
    for (size_t k = 0; k < 3 && k < n; k++) {
        size_t len = (n - k) / 3 * 3;
        if (len < 6)
            continue;
        char *enc = malloc(len / 3 * 4 + 1);
        if (!enc) {
            s->failed = true;
            return;
        }
        add_raw(s, enc, base64((const unsigned char *)v + k, len, enc));
        free(enc);
    }
    ns_buf json = {0}, pct = {0};
    bool json_differs = false, pct_differs = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '"' || c == '\\' || c == '/') {
            ns__buf_putc(&json, '\\');
            ns__buf_putc(&json, (char)c);
            json_differs = true;
        } else if (c < 0x20) {
            ns__buf_printf(&json, "\\u%04x", c);
            json_differs = true;
        } else {
            ns__buf_putc(&json, (char)c);
        }
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            ns__buf_putc(&pct, (char)c);
        } else {
            ns__buf_printf(&pct, "%%%02X", c);
            pct_differs = true;
        }
    }
    if (json.failed || pct.failed)
        s->failed = true;
    if (json_differs)
        add_raw(s, json.data, json.len);
    if (pct_differs)
        add_raw(s, pct.data, pct.len);
    ns__buf_free(&json);
    ns__buf_free(&pct);
}

void ns__secrets_add(ns_secrets *s, const char *v, size_t n)
{
    if (!s || !v)
        return;
    add_forms(s, v, n);
    /* A driver may quote the value percent-decoded ("p%40ss" is "p@ss"). */
    if (!memchr(v, '%', n))
        return;
    char *dec = malloc(n + 1);
    size_t k = 0;
    if (!dec) {
        s->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (v[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)v[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)v[i + 2])) >= 0) {
            dec[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dec[k++] = v[i];
        }
    }
    add_forms(s, dec, k);
    free(dec);
}

/* Adds the value of `key=` in a query string or keyword list at p. */
static void add_keyword(ns_secrets *s, const char *p, bool query)
{
    if (query) {
        size_t n = strcspn(p, "&#");
        ns__secrets_add(s, p, n);
        return;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\'') {
        ns__secrets_add(s, p, strcspn(p, " \t\n"));
        return;
    }
    /* 'quoted value' with \' and \\ escapes (libpq's keyword syntax). */
    ns_buf b = {0};
    for (p++; *p && *p != '\''; p++) {
        if (*p == '\\' && p[1])
            p++;
        ns__buf_putc(&b, *p);
    }
    if (b.len)
        ns__secrets_add(s, b.data, b.len);
    else if (!b.data && *p)
        s->failed = true;
    ns__buf_free(&b);
}

void ns__secrets_add_url(ns_secrets *s, const char *url)
{
    if (!s || !url)
        return;
    const char *scheme = strstr(url, "://");
    if (scheme && scheme > url &&
        strspn(url, "abcdefghijklmnopqrstuvwxyz+.-") == (size_t)(scheme - url)) {
        /* postgresql://user:password@host..., https://user:password@host...:
         * the userinfo ends at the last '@' before the path or query. */
        const char *auth = scheme + 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *q = auth; q < auth + alen; q++)
            if (*q == '@')
                at = q;
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon)
            ns__secrets_add(s, colon + 1, (size_t)(at - colon - 1));
        const char *q = strchr(auth, '?');
        for (const char *k = q; k && *k; k = strchr(k + 1, '&')) {
            const char *name = k + 1;
            if (strncmp(name, "password=", 9) == 0)
                add_keyword(s, name + 9, true);
        }
        return;
    }
    /* Keyword form: host=... password=secret (possibly quoted). */
    for (const char *p = url; (p = strstr(p, "password")) != NULL; p += 8) {
        const char *e = p + 8;
        if (p > url && !(p[-1] == ' ' || p[-1] == '\t' || p[-1] == '?' || p[-1] == '&'))
            continue;
        while (*e == ' ' || *e == '\t')
            e++;
        if (*e != '=')
            continue;
        add_keyword(s, e + 1, p > url && (p[-1] == '?' || p[-1] == '&'));
    }
}

void ns__secrets_add_url_path(ns_secrets *s, const char *url)
{
    if (!s || !url)
        return;
    const char *scheme = strstr(url, "://");
    const char *p = scheme ? scheme + 3 : url;
    p += strcspn(p, "/?#"); /* past the host */
    size_t plen = strcspn(p, "#");
    if (!plen)
        return;
    ns__secrets_add(s, p, plen); /* path and query, whole */
    /* Each segment and each query value alone: a receiver may echo them
     * one by one, or with its own escaping between them ("\/"). */
    for (const char *q = p; q < p + plen;) {
        q += strspn(q, "/?&=");
        size_t n = strcspn(q, "/?&=#");
        if (q + n > p + plen)
            n = (size_t)(p + plen - q);
        ns__secrets_add(s, q, n);
        q += n;
    }
}

void ns__secrets_merge(ns_secrets *dst, const ns_secrets *src)
{
    for (size_t i = 0; src && i < src->n; i++)
        ns__secrets_add(dst, src->v[i], strlen(src->v[i]));
    if (src && src->failed)
        dst->failed = true;
}

bool ns__secrets_ok(const ns_secrets *s)
{
    return !s || !s->failed;
}

void ns__secrets_free(ns_secrets *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        /* Wiped: a freed secret should not linger in the heap. */
        memset(s->v[i], 0, strlen(s->v[i]));
        free(s->v[i]);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static bool word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* The registered value that matches at p (the longest one), or 0. */
static size_t match_at(const ns_secrets *s, const char *start, const char *p, const char *end)
{
    size_t best = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i][0] != *p) /* most of them, at once */
            continue;
        size_t n = strlen(s->v[i]);
        if (n <= best || (size_t)(end - p) < n || memcmp(p, s->v[i], n) != 0)
            continue;
        if (n < NS_SECRET_ANYWHERE &&
            ((p > start && word_char(p[-1])) || (p + n < end && word_char(p[n]))))
            continue;
        best = n;
    }
    return best;
}

void ns__redact(const ns_secrets *s, char *buf, size_t cap)
{
    if (!s || !buf || !cap)
        return;
    if (s->failed) {
        /* A value could not be registered: any text may hold it. */
        snprintf(buf, cap, "(message withheld: out of memory while registering secrets)");
        return;
    }
    if (!s->n)
        return;
    size_t len = strlen(buf);
    char *out = malloc(len + 1);
    if (!out) {
        /* Cannot rewrite safely: say nothing rather than the secret. */
        snprintf(buf, cap, "(message withheld: out of memory while removing secrets)");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t m = match_at(s, buf, buf + i, buf + len);
        if (m) {
            /* "***" is never longer than a registered value (>= 4 bytes). */
            memcpy(out + k, MASK, 3);
            k += 3;
            i += m;
        } else {
            out[k++] = buf[i++];
        }
    }
    out[k] = '\0';
    memcpy(buf, out, k + 1 <= cap ? k + 1 : cap);
    buf[cap - 1] = '\0';
    free(out);
}

char *ns__redact_dup(const ns_secrets *s, const char *text)
{
    char *copy = ns__strdup(text ? text : "");
    if (copy)
        ns__redact(s, copy, strlen(copy) + 1);
    return copy;
}

bool ns__has_secret(const ns_secrets *s, const char *text, size_t n)
{
    for (size_t i = 0; s && text && i < n; i++)
        if (match_at(s, text, text + i, text + n))
            return true;
    return false;
}
