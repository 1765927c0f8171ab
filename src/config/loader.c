/*
 * loader.c - the job file loader's helpers: one YAML value read and
 * checked (a string, a number, a duration, names, a template and its
 * references, SQL and its parameters), each failure "FILE:LINE: KEY:
 * message"; files beside the job.
 */
#include "config/loader.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

ns_status ns__cfg_fail(loader *l, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ns__err(l->err, NS_ECONFIG, NULL, "%s:%d: %s: %s", l->path,
                   n ? (int)n->start_mark.line + 1 : 1, key, msg);
}

yaml_node_t *ns__cfg_node(loader *l, int id)
{
    return yaml_document_get_node(l->doc, id);
}

const char *ns__cfg_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

yaml_node_t *ns__cfg_get(loader *l, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = ns__cfg_scalar(ns__cfg_node(l, p->key));
        if (k && strcmp(k, key) == 0)
            return ns__cfg_node(l, p->value);
    }
    return NULL;
}

/* Every key of `map` must be in `allowed` (NULL-terminated) and appear once. */
ns_status ns__cfg_check_keys(loader *l, const yaml_node_t *map, const char *where,
                             const char *const *allowed)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = ns__cfg_node(l, p->key);
        const char *k = ns__cfg_scalar(kn);
        if (!k)
            return ns__cfg_fail(l, kn, where, "keys must be plain names");
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, k) == 0;
        if (!ok) {
            char list[256] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         a == allowed ? "" : ", ", *a);
            char key[256];
            snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", k);
            return ns__cfg_fail(l, kn, key, "unknown key (expected one of: %s)", list);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const char *k2 = ns__cfg_scalar(ns__cfg_node(l, q->key));
            if (k2 && strcmp(k, k2) == 0)
                return ns__cfg_fail(l, kn, k, "duplicate key");
        }
    }
    return NS_OK;
}

bool ns__cfg_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
            return false;
    return true;
}

ns_status ns__cfg_string(loader *l, const yaml_node_t *n, const char *key, char **out)
{
    const char *s = ns__cfg_scalar(n);
    if (!s)
        return ns__cfg_fail(l, n, key, "must be a string");
    if (!(*out = ns__strdup(s)))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    return NS_OK;
}

ns_status ns__cfg_bool(loader *l, const yaml_node_t *n, const char *key, bool *out)
{
    const char *s = ns__cfg_scalar(n);
    if (!s || !ns__parse_bool(s, out))
        return ns__cfg_fail(l, n, key, "must be true or false");
    return NS_OK;
}

ns_status ns__cfg_int(loader *l, const yaml_node_t *n, const char *key, int64_t min, int64_t max,
                      int64_t *out)
{
    const char *s = ns__cfg_scalar(n);
    int64_t v;
    if (!s || !ns__parse_i64(s, strlen(s), &v) || v < min || v > max) {
        if (min == 1)
            return ns__cfg_fail(l, n, key, "must be a positive integer (at most %lld)",
                                (long long)max);
        return ns__cfg_fail(l, n, key, "must be an integer from %lld to %lld", (long long)min,
                            (long long)max);
    }
    *out = v;
    return NS_OK;
}

/* A duration from min_ms to max_ms milliseconds, in seconds. */
ns_status ns__cfg_duration(loader *l, const yaml_node_t *n, const char *key, int64_t min_ms,
                           int64_t max_ms, double *out)
{
    const char *s = ns__cfg_scalar(n);
    double v;
    if (!s || !ns__parse_duration(s, &v))
        return ns__cfg_fail(l, n, key, "must be a duration such as 500ms, 10s, 2m or 1h");
    if (v * 1000 < (double)min_ms || v * 1000 > (double)max_ms) {
        char lo[32], hi[32];
        return ns__cfg_fail(l, n, key, "must be from %s to %s", ns__duration_str(min_ms, lo),
                            ns__duration_str(max_ms, hi));
    }
    *out = v;
    return NS_OK;
}

ns_status ns__cfg_number(loader *l, const yaml_node_t *n, const char *key, double min, double max,
                         double *out)
{
    const char *s = ns__cfg_scalar(n);
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || !(v >= min && v <= max) || strpbrk(s, "xXnN"))
        return ns__cfg_fail(l, n, key, "must be a number from %g to %g", min, max);
    *out = v;
    return NS_OK;
}

ns_status ns__cfg_char(loader *l, const yaml_node_t *n, const char *key, char *out)
{
    const char *s = ns__cfg_scalar(n);
    if (s && strcmp(s, "\\t") == 0)
        s = "\t";
    if (!s || strlen(s) != 1 || *s == '\n' || *s == '\r')
        return ns__cfg_fail(l, n, key, "must be a single character");
    *out = *s;
    return NS_OK;
}

ns_status ns__cfg_names(loader *l, const yaml_node_t *n, const char *key, char ***out,
                        size_t *count)
{
    if (!n || n->type != YAML_SEQUENCE_NODE ||
        n->data.sequence.items.top == n->data.sequence.items.start)
        return ns__cfg_fail(l, n, key, "must be a non-empty list of names");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    char **v = calloc(cnt, sizeof(*v));
    if (!v)
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    *out = v;
    *count = cnt;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = ns__cfg_node(l, n->data.sequence.items.start[i]);
        char k[440];
        snprintf(k, sizeof(k), "%s[%zu]", key, i);
        const char *s = ns__cfg_scalar(it);
        if (!s || !*s)
            return ns__cfg_fail(l, it, k, "must be a name");
        for (size_t j = 0; j < i; j++)
            if (strcmp(v[j], s) == 0)
                return ns__cfg_fail(l, it, k, "'%s' is listed twice", s);
        if (!(v[i] = ns__strdup(s)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    }
    return NS_OK;
}

/* Checks the ${...} references of a template against what the job declares. */
ns_status ns__cfg_check_template(loader *l, const yaml_node_t *n, const char *key, const char *t,
                                 bool allow_step, bool allow_item)
{
    for (const char *p = t; (p = strstr(p, "${")) != NULL;) {
        if (p > t && p[-1] == '$') { /* $${ is a literal ${ */
            p += 2;
            continue;
        }
        const char *e = strchr(p, '}');
        if (!e)
            return ns__cfg_fail(l, n, key, "'${' without a closing '}'");
        size_t len = (size_t)(e - p - 2);
        const char *ref = p + 2;
        if (len > 7 && strncmp(ref, "params.", 7) == 0) {
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)(len - 7), ref + 7);
            if (!ns__job_param(l->job, name))
                return ns__cfg_fail(l, n, key, "${params.%s}: no such parameter in params", name);
        } else if (allow_item && len > 5 && strncmp(ref, "item.", 5) == 0) {
            /* ${item.FIELD}, ${item.FIELD|json}, ${item.FIELD|url}: the
             * plugin checks FIELD against the items' fields when it opens */
            const char *bar = memchr(ref, '|', len);
            size_t flen = bar ? (size_t)(bar - ref) - 5 : len - 5;
            if (flen == 0)
                return ns__cfg_fail(l, n, key, "${%.*s}: names no field", (int)len, ref);
            if (bar && !((ref + len - bar == 5 && strncmp(bar, "|json", 5) == 0) ||
                         (ref + len - bar == 4 && strncmp(bar, "|url", 4) == 0)))
                return ns__cfg_fail(l, n, key, "${%.*s}: unknown filter '%.*s' (use |json or |url)",
                                    (int)len, ref, (int)(ref + len - bar - 1), bar + 1);
        } else if (len > 4 && strncmp(ref, "env.", 4) == 0) {
            /* ${env.NAME} or ${env.NAME:-default} */
            for (size_t i = 4; i < len && !(ref[i] == ':' && i + 1 < len && ref[i + 1] == '-'); i++)
                if (!(isalnum((unsigned char)ref[i]) || ref[i] == '_'))
                    return ns__cfg_fail(l, n, key, "${%.*s}: not an environment variable name",
                                        (int)len, ref);
        } else if (!((len == 8 && strncmp(ref, "job.name", 8) == 0) ||
                     (len == 12 && strncmp(ref, "execution.id", 12) == 0) ||
                     (allow_step && len == 9 && strncmp(ref, "step.name", 9) == 0))) {
            return ns__cfg_fail(l, n, key,
                                "${%.*s}: unknown reference (use params.NAME, env.NAME, job.name, "
                                "execution.id%s%s)",
                                (int)len, ref, allow_step ? ", step.name" : "",
                                allow_item ? " or item.FIELD" : "");
        }
        p = e + 1;
    }
    return NS_OK;
}

ns_status ns__cfg_template(loader *l, const yaml_node_t *n, const char *key, bool allow_step,
                           char **out)
{
    ns_status st = ns__cfg_string(l, n, key, out);
    if (st == NS_OK && !**out)
        return ns__cfg_fail(l, n, key, "must not be empty");
    return st ? st : ns__cfg_check_template(l, n, key, *out, allow_step, false);
}

/* A mapping of names to item templates (NS_KEY_MAP: an HTTP request's
 * headers); a value may be empty, a name may not repeat. */
ns_status ns__cfg_map(loader *l, const yaml_node_t *n, const char *key, ns_map *m)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return ns__cfg_fail(l, n, key, "must be a mapping of names to values");
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (!(m->names = calloc(cnt ? cnt : 1, sizeof(char *))) ||
        !(m->values = calloc(cnt ? cnt : 1, sizeof(char *))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *kn = ns__cfg_node(l, p->key), *v = ns__cfg_node(l, p->value);
        const char *name = ns__cfg_scalar(kn);
        char k[440];
        snprintf(k, sizeof(k), "%s.%s", key, name ? name : "?");
        if (!name || !*name)
            return ns__cfg_fail(l, kn, k, "must be a name");
        for (size_t j = 0; j < m->n; j++)
            if (strcasecmp(m->names[j], name) == 0)
                return ns__cfg_fail(l, kn, k, "'%s' is given twice", name);
        if (!(m->names[m->n] = ns__strdup(name)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        m->n++;
        ns_status st = ns__cfg_string(l, v, k, &m->values[m->n - 1]);
        if (st == NS_OK)
            st = ns__cfg_check_template(l, v, k, m->values[m->n - 1], true, true);
        if (st != NS_OK)
            return st;
    }
    return NS_OK;
}

typedef struct sql_check {
    loader *l;
    const yaml_node_t *n;
    const char *key;
    const char *sql;
    ns_status st;
} sql_check;

static bool check_sql_param(void *arg, size_t at, size_t len)
{
    sql_check *c = arg;
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)len, c->sql + at);
    if (ns__job_param(c->l->job, name))
        return true;
    c->st = ns__cfg_fail(c->l, c->n, c->key,
                         ":%s is not a declared parameter (declare it in params)", name);
    return false;
}

void ns__cfg_free_names(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Reads a whole file (a processor script). */
char *ns__cfg_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ns_buf b = {0};
    char chunk[8192];
    size_t n;
    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (ns__buf_append(&b, chunk, n) != NS_OK) {
            fclose(f);
            ns__buf_free(&b);
            return NULL;
        }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || ns__buf_reserve(&b, 1) != NS_OK) {
        ns__buf_free(&b);
        return NULL;
    }
    *len = b.len;
    ns__buf_cstr(&b);
    return b.data ? b.data : ns__strdup("");
}

/* A path relative to the job file's directory: scripts live with the job. */
char *ns__cfg_beside(loader *l, const char *rel)
{
    const char *slash = l->path ? strrchr(l->path, '/') : NULL;
    if (rel[0] == '/' || !slash)
        return ns__strdup(rel);
    return ns__asprintf("%.*s/%s", (int)(slash - l->path), l->path, rel);
}

/* Checks the :name parameters of SQL text (all declared) and its statement
 * count (one query, or a script of at least one statement). */
ns_status ns__cfg_check_sql(loader *l, const yaml_node_t *n, const char *key, const char *sql,
                            bool one)
{
    size_t nstmt = ns__sql_split(sql, NULL, NULL);
    if (!nstmt)
        return ns__cfg_fail(l, n, key, "has no SQL statement");
    if (one && nstmt != 1)
        return ns__cfg_fail(l, n, key, "must be one query (a SELECT), not a script");
    sql_check chk = {l, n, key, sql, NS_OK};
    ns__sql_params(sql, check_sql_param, &chk);
    return chk.st;
}
