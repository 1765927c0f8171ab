/* mem.c - arenas, growable buffers and string helpers. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ns_arena_block {
    ns_arena_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void ns__arena_init(ns_arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 64 * 1024;
}

void *ns__arena_alloc(ns_arena *a, size_t n)
{
    ns_arena_block *b = a->head;
    size_t need = (n + 15) & ~(size_t)15;

    if (!b || b->size - b->used < need) {
        size_t size = need > a->block_size ? need : a->block_size;
        b = malloc(sizeof(*b) + size);
        if (!b)
            return NULL;
        b->size = size;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

char *ns__arena_strndup(ns_arena *a, const char *s, size_t n)
{
    char *p = ns__arena_alloc(a, n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void ns__arena_reset(ns_arena *a)
{
    ns_arena_block *keep = NULL, *b = a->head;

    /* Keep the largest block: after a reset the next chunk fits in it. */
    while (b) {
        ns_arena_block *next = b->next;
        if (!keep || b->size > keep->size) {
            free(keep);
            keep = b;
        } else {
            free(b);
        }
        b = next;
    }
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
    a->head = keep;
}

void ns__arena_free(ns_arena *a)
{
    ns_arena_block *b = a->head;
    while (b) {
        ns_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

ns_status ns__buf_reserve(ns_buf *b, size_t extra)
{
    if (b->failed)
        return NS_ENOMEM;
    if (b->cap - b->len > extra)
        return NS_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return NS_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return NS_OK;
}

ns_status ns__buf_append(ns_buf *b, const void *p, size_t n)
{
    if (ns__buf_reserve(b, n) != NS_OK)
        return NS_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return NS_OK;
}

ns_status ns__buf_putc(ns_buf *b, char c)
{
    if (ns__buf_reserve(b, 1) != NS_OK)
        return NS_ENOMEM;
    b->data[b->len++] = c;
    return NS_OK;
}

void ns__buf_json_string(ns_buf *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    ns__buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            ns__buf_putc(b, '\\');
            ns__buf_putc(b, (char)c);
        } else if (c == '\n') {
            ns__buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            ns__buf_append(b, "\\t", 2);
        } else if (c == '\r') {
            ns__buf_append(b, "\\r", 2);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ns__buf_append(b, u, 6);
        } else {
            ns__buf_putc(b, (char)c);
        }
    }
    ns__buf_putc(b, '"');
}

ns_status ns__buf_printf(ns_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || ns__buf_reserve(b, (size_t)n + 1) != NS_OK)
        return NS_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return NS_OK;
}

void ns__buf_ident(ns_buf *b, const char *name)
{
    ns__buf_quoted(b, name, '"');
}

void ns__buf_quoted(ns_buf *b, const char *name, char q)
{
    ns__buf_putc(b, q);
    for (const char *p = name; *p; p++) {
        if (*p == q)
            ns__buf_putc(b, q);
        ns__buf_putc(b, *p);
    }
    ns__buf_putc(b, q);
}

void ns__buf_free(ns_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

const char *ns__buf_cstr(ns_buf *b)
{
    if (ns__buf_reserve(b, 1) != NS_OK)
        return "";
    b->data[b->len] = '\0';
    return b->data;
}

char *ns__strdup(const char *s)
{
    return s ? ns__strndup(s, strlen(s)) : NULL;
}

char *ns__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *ns__asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = malloc((size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

bool ns__parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t v = 0, limit;

    if (n == 0)
        return false;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
        if (n == 1)
            return false;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9)
            return false;
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

void ns_free(void *p)
{
    free(p);
}
