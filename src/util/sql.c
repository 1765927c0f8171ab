/*
 * sql.c - just enough SQL lexing to find a script's statements and its
 * :name parameters: quoted strings and identifiers, -- and block comments,
 * PostgreSQL's dollar-quoted bodies ($$...$$, $fn$...$fn$) and :: casts are
 * skipped, so a ';' or ':x' inside them means nothing.
 */
#include "util/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* When sql[i] opens a string, comment or dollar-quoted body, the index just
 * after it; else i. */
static size_t skip(const char *sql, size_t i)
{
    char c = sql[i];
    if (c == '\'' || c == '"') { /* 'string' or "identifier", doubled to escape */
        for (i++; sql[i]; i++)
            if (sql[i] == c && sql[++i] != c)
                return i;
        return i;
    }
    if (c == '-' && sql[i + 1] == '-') {
        while (sql[i] && sql[i] != '\n')
            i++;
        return i;
    }
    if (c == '/' && sql[i + 1] == '*') {
        const char *e = strstr(sql + i + 2, "*/");
        return e ? (size_t)(e - sql) + 2 : strlen(sql);
    }
    if (c == '$' && (i == 0 || !ident_char(sql[i - 1])) && !isdigit((unsigned char)sql[i + 1])) {
        size_t k = i + 1;
        while (ident_char(sql[k]))
            k++;
        if (sql[k] != '$')
            return i;
        size_t taglen = k - i + 1; /* "$tag$" */
        for (const char *p = sql + k + 1; (p = strchr(p, '$')) != NULL; p++)
            if (strncmp(p, sql + i, taglen) == 0)
                return (size_t)(p - sql) + taglen;
        return strlen(sql);
    }
    return i;
}

void ns__sql_params(const char *sql, bool (*fn)(void *arg, size_t at, size_t len), void *arg)
{
    for (size_t i = 0; sql[i];) {
        size_t j = skip(sql, i);
        if (j != i) {
            i = j;
        } else if (sql[i] == ':' && sql[i + 1] == ':') {
            i += 2;
        } else if (sql[i] == ':' && (isalpha((unsigned char)sql[i + 1]) || sql[i + 1] == '_')) {
            size_t k = i + 1;
            while (ident_char(sql[k]))
                k++;
            if (!fn(arg, i + 1, k - i - 1))
                return;
            i = k;
        } else {
            i++;
        }
    }
}

/* True when [p, p + n) holds only blanks and comments. */
static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (isspace((unsigned char)p[i])) {
            i++;
        } else if (p[i] == '-' && i + 1 < n && p[i + 1] == '-') {
            while (i < n && p[i] != '\n')
                i++;
        } else if (p[i] == '/' && i + 1 < n && p[i + 1] == '*') {
            size_t k = i + 2;
            while (k + 1 < n && !(p[k] == '*' && p[k + 1] == '/'))
                k++;
            i = k + 2;
        } else {
            return false;
        }
    }
    return true;
}

size_t ns__sql_split(const char *sql, bool (*fn)(void *arg, const char *stmt, size_t len),
                     void *arg)
{
    size_t start = 0, count = 0;
    for (size_t i = 0;;) {
        size_t j = skip(sql, i);
        if (j != i) {
            i = j;
            continue;
        }
        if (sql[i] == ';' || !sql[i]) {
            if (!blank(sql + start, i - start)) {
                count++;
                if (fn && !fn(arg, sql + start, i - start))
                    return count;
            }
            if (!sql[i])
                return count;
            start = ++i;
            continue;
        }
        i++;
    }
}

typedef struct binder {
    const char *sql;
    size_t len, done;
    ns_placeholder ph;
    const char *const *names, *const *values;
    size_t n;
    ns_buf *out;
    const char **vals;
    size_t nvals;
    char *missing;
    size_t missing_len;
    ns_status st;
} binder;

void ns__buf_placeholder(ns_buf *b, ns_placeholder ph, const char *sep, size_t n)
{
    if (ph == NS_PH_DOLLAR)
        ns__buf_printf(b, "%s$%zu", sep, n);
    else if (ph == NS_PH_QNUM)
        ns__buf_printf(b, "%s?%zu", sep, n);
    else
        ns__buf_printf(b, "%s?", sep);
}

static bool bind_one(void *arg, size_t at, size_t len)
{
    binder *b = arg;
    if (at >= b->len)
        return false; /* past this statement */
    const char *value = NULL;
    for (size_t i = 0; i < b->n && !value; i++)
        if (strlen(b->names[i]) == len && strncmp(b->names[i], b->sql + at, len) == 0)
            value = b->values[i];
    if (!value) {
        snprintf(b->missing, b->missing_len, "%.*s", (int)len, b->sql + at);
        b->st = NS_EPARAM;
        return false;
    }
    const char **v = realloc(b->vals, (b->nvals + 1) * sizeof(*v));
    if (!v) {
        b->st = NS_ENOMEM;
        return false;
    }
    b->vals = v;
    v[b->nvals++] = value;
    ns__buf_append(b->out, b->sql + b->done, at - 1 - b->done);
    ns__buf_placeholder(b->out, b->ph, "", b->nvals);
    b->done = at + len;
    return true;
}

ns_status ns__sql_bind(const char *stmt, size_t len, ns_placeholder ph, const char *const *names,
                       const char *const *values, size_t n, ns_buf *out, const char ***vals,
                       size_t *nvals, char *missing, size_t missing_len)
{
    char *copy = ns__strndup(stmt, len);
    if (!copy)
        return NS_ENOMEM;
    binder b = {copy, len, 0, ph, names, values, n, out, NULL, 0, missing, missing_len, NS_OK};
    out->len = 0;
    ns__sql_params(copy, bind_one, &b);
    if (b.st == NS_OK && ns__buf_append(out, copy + b.done, len - b.done) != NS_OK)
        b.st = NS_ENOMEM;
    if (b.st == NS_OK && !ns__buf_cstr(out))
        b.st = NS_ENOMEM;
    free(copy);
    if (b.st != NS_OK) {
        free(b.vals);
        return b.st;
    }
    *vals = b.vals;
    *nvals = b.nvals;
    return NS_OK;
}
