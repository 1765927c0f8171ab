/*
 * job.c - job file loader (docs/jobs.md).
 *
 * The file is read with libyaml's document API so that every node keeps its
 * line. The loader walks only the keys it knows, checks each one, and stops at
 * the first problem with "PATH:LINE: KEY: message". Unknown keys are errors:
 * a misspelt `chunks:` must not silently mean the default.
 */
#include "config/job.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct loader {
    const char *path;
    yaml_document_t *doc;
    ns_error *err;
    ns_job *job;
    const ns_registry *reg; /* the plugins steps may name */
} loader;

static ns_status fail(loader *l, const yaml_node_t *n, const char *key, const char *fmt, ...)
    NS_PRINTF(4, 5);

static ns_status fail(loader *l, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ns__err(l->err, NS_ECONFIG, NULL, "%s:%d: %s: %s", l->path,
                   n ? (int)n->start_mark.line + 1 : 1, key, msg);
}

static yaml_node_t *node_at(loader *l, int id)
{
    return yaml_document_get_node(l->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *map_get(loader *l, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node_at(l, p->key));
        if (k && strcmp(k, key) == 0)
            return node_at(l, p->value);
    }
    return NULL;
}

/* Every key of `map` must be in `allowed` (NULL-terminated) and appear once. */
static ns_status check_keys(loader *l, const yaml_node_t *map, const char *where,
                            const char *const *allowed)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = node_at(l, p->key);
        const char *k = scalar(kn);
        if (!k)
            return fail(l, kn, where, "keys must be plain names");
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
            return fail(l, kn, key, "unknown key (expected one of: %s)", list);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const char *k2 = scalar(node_at(l, q->key));
            if (k2 && strcmp(k, k2) == 0)
                return fail(l, kn, k, "duplicate key");
        }
    }
    return NS_OK;
}

static bool name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
            return false;
    return true;
}

static ns_status get_string(loader *l, const yaml_node_t *n, const char *key, char **out)
{
    const char *s = scalar(n);
    if (!s)
        return fail(l, n, key, "must be a string");
    if (!(*out = ns__strdup(s)))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    return NS_OK;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off",
                                                                             "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0)
            return (*out = true), true;
        if (strcasecmp(s, f[i]) == 0)
            return (*out = false), true;
    }
    return false;
}

static ns_status get_bool(loader *l, const yaml_node_t *n, const char *key, bool *out)
{
    const char *s = scalar(n);
    if (!s || !parse_bool(s, out))
        return fail(l, n, key, "must be true or false");
    return NS_OK;
}

static ns_status get_posint(loader *l, const yaml_node_t *n, const char *key, int64_t min,
                            int64_t max, int64_t *out)
{
    const char *s = scalar(n);
    int64_t v;
    if (!s || !ns__parse_i64(s, strlen(s), &v) || v < min || v > max) {
        if (min == 1)
            return fail(l, n, key, "must be a positive integer (at most %lld)", (long long)max);
        return fail(l, n, key, "must be an integer from %lld to %lld", (long long)min,
                    (long long)max);
    }
    *out = v;
    return NS_OK;
}

/* A duration from min_ms to max_ms milliseconds, in seconds. */
static ns_status get_duration(loader *l, const yaml_node_t *n, const char *key, int64_t min_ms,
                              int64_t max_ms, double *out)
{
    const char *s = scalar(n);
    double v;
    if (!s || !ns__parse_duration(s, &v))
        return fail(l, n, key, "must be a duration such as 500ms, 10s, 2m or 1h");
    if (v * 1000 < (double)min_ms || v * 1000 > (double)max_ms) {
        char lo[32], hi[32];
        return fail(l, n, key, "must be from %s to %s", ns__duration_str(min_ms, lo),
                    ns__duration_str(max_ms, hi));
    }
    *out = v;
    return NS_OK;
}

static ns_status get_number(loader *l, const yaml_node_t *n, const char *key, double min,
                            double max, double *out)
{
    const char *s = scalar(n);
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || !(v >= min && v <= max) || strpbrk(s, "xXnN"))
        return fail(l, n, key, "must be a number from %g to %g", min, max);
    *out = v;
    return NS_OK;
}

static ns_status get_char(loader *l, const yaml_node_t *n, const char *key, char *out)
{
    const char *s = scalar(n);
    if (s && strcmp(s, "\\t") == 0)
        s = "\t";
    if (!s || strlen(s) != 1 || *s == '\n' || *s == '\r')
        return fail(l, n, key, "must be a single character");
    *out = *s;
    return NS_OK;
}

static ns_status get_names(loader *l, const yaml_node_t *n, const char *key, char ***out,
                           size_t *count)
{
    if (!n || n->type != YAML_SEQUENCE_NODE ||
        n->data.sequence.items.top == n->data.sequence.items.start)
        return fail(l, n, key, "must be a non-empty list of names");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    char **v = calloc(cnt, sizeof(*v));
    if (!v)
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    *out = v;
    *count = cnt;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = node_at(l, n->data.sequence.items.start[i]);
        char k[440];
        snprintf(k, sizeof(k), "%s[%zu]", key, i);
        const char *s = scalar(it);
        if (!s || !*s)
            return fail(l, it, k, "must be a name");
        for (size_t j = 0; j < i; j++)
            if (strcmp(v[j], s) == 0)
                return fail(l, it, k, "'%s' is listed twice", s);
        if (!(v[i] = ns__strdup(s)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    }
    return NS_OK;
}

/* Checks the ${...} references of a template against what the job declares. */
static ns_status check_template(loader *l, const yaml_node_t *n, const char *key, const char *t,
                                bool allow_step, bool allow_item)
{
    for (const char *p = t; (p = strstr(p, "${")) != NULL;) {
        if (p > t && p[-1] == '$') { /* $${ is a literal ${ */
            p += 2;
            continue;
        }
        const char *e = strchr(p, '}');
        if (!e)
            return fail(l, n, key, "'${' without a closing '}'");
        size_t len = (size_t)(e - p - 2);
        const char *ref = p + 2;
        if (len > 7 && strncmp(ref, "params.", 7) == 0) {
            char name[128];
            snprintf(name, sizeof(name), "%.*s", (int)(len - 7), ref + 7);
            if (!ns__job_param(l->job, name))
                return fail(l, n, key, "${params.%s}: no such parameter in params", name);
        } else if (allow_item && len > 5 && strncmp(ref, "item.", 5) == 0) {
            /* ${item.FIELD}, ${item.FIELD|json}, ${item.FIELD|url}: the
             * plugin checks FIELD against the items' fields when it opens */
            const char *bar = memchr(ref, '|', len);
            size_t flen = bar ? (size_t)(bar - ref) - 5 : len - 5;
            if (flen == 0)
                return fail(l, n, key, "${%.*s}: names no field", (int)len, ref);
            if (bar && !((ref + len - bar == 5 && strncmp(bar, "|json", 5) == 0) ||
                         (ref + len - bar == 4 && strncmp(bar, "|url", 4) == 0)))
                return fail(l, n, key, "${%.*s}: unknown filter '%.*s' (use |json or |url)",
                            (int)len, ref, (int)(ref + len - bar - 1), bar + 1);
        } else if (len > 4 && strncmp(ref, "env.", 4) == 0) {
            /* ${env.NAME} or ${env.NAME:-default} */
            for (size_t i = 4; i < len && !(ref[i] == ':' && i + 1 < len && ref[i + 1] == '-'); i++)
                if (!(isalnum((unsigned char)ref[i]) || ref[i] == '_'))
                    return fail(l, n, key, "${%.*s}: not an environment variable name", (int)len,
                                ref);
        } else if (!((len == 8 && strncmp(ref, "job.name", 8) == 0) ||
                     (len == 12 && strncmp(ref, "execution.id", 12) == 0) ||
                     (allow_step && len == 9 && strncmp(ref, "step.name", 9) == 0))) {
            return fail(l, n, key,
                        "${%.*s}: unknown reference (use params.NAME, env.NAME, job.name, "
                        "execution.id%s%s)",
                        (int)len, ref, allow_step ? ", step.name" : "",
                        allow_item ? " or item.FIELD" : "");
        }
        p = e + 1;
    }
    return NS_OK;
}

static ns_status get_template(loader *l, const yaml_node_t *n, const char *key, bool allow_step,
                              char **out)
{
    ns_status st = get_string(l, n, key, out);
    if (st == NS_OK && !**out)
        return fail(l, n, key, "must not be empty");
    return st ? st : check_template(l, n, key, *out, allow_step, false);
}

/* A mapping of names to item templates (NS_KEY_MAP: an HTTP request's
 * headers); a value may be empty, a name may not repeat. */
static ns_status get_map(loader *l, const yaml_node_t *n, const char *key, ns_map *m)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(l, n, key, "must be a mapping of names to values");
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (!(m->names = calloc(cnt ? cnt : 1, sizeof(char *))) ||
        !(m->values = calloc(cnt ? cnt : 1, sizeof(char *))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *kn = node_at(l, p->key), *v = node_at(l, p->value);
        const char *name = scalar(kn);
        char k[440];
        snprintf(k, sizeof(k), "%s.%s", key, name ? name : "?");
        if (!name || !*name)
            return fail(l, kn, k, "must be a name");
        for (size_t j = 0; j < m->n; j++)
            if (strcasecmp(m->names[j], name) == 0)
                return fail(l, kn, k, "'%s' is given twice", name);
        if (!(m->names[m->n] = ns__strdup(name)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        m->n++;
        ns_status st = get_string(l, v, k, &m->values[m->n - 1]);
        if (st == NS_OK)
            st = check_template(l, v, k, m->values[m->n - 1], true, true);
        if (st != NS_OK)
            return st;
    }
    return NS_OK;
}

static const char *const ptype_names[] = {"string", "int", "float", "bool", "date", "timestamp"};

const char *ns__ptype_name(ns_ptype t)
{
    return ptype_names[t];
}

bool ns__param_value(ns_ptype type, const char *s, char **out, char *why, size_t whylen)
{
    char buf[32];
    const char *v = s;
    size_t n = strlen(s);

    switch (type) {
    case NS_P_STRING:
        break;
    case NS_P_INT: {
        int64_t x;
        if (!ns__parse_i64(s, n, &x))
            return snprintf(why, whylen, "'%s' is not an integer", s), false;
        break;
    }
    case NS_P_FLOAT: {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (!n || *end || errno || !isfinite(d))
            return snprintf(why, whylen, "'%s' is not a number", s), false;
        break;
    }
    case NS_P_BOOL: {
        bool b;
        if (!parse_bool(s, &b))
            return snprintf(why, whylen, "'%s' is not true or false", s), false;
        v = b ? "true" : "false";
        break;
    }
    case NS_P_DATE:
        if (strcmp(s, "today") == 0 || strcmp(s, "yesterday") == 0) {
            ns__local_date(buf, sizeof(buf), s[0] == 't' ? 0 : -1);
            v = buf;
        } else if (!ns__valid_date(s, n)) {
            return snprintf(why, whylen, "'%s' is not a date (YYYY-MM-DD, today or yesterday)", s),
                   false;
        }
        break;
    case NS_P_TIMESTAMP:
        if (!ns__valid_timestamp(s, n))
            return snprintf(why, whylen, "'%s' is not a timestamp (YYYY-MM-DDTHH:MM:SS)", s), false;
        break;
    }
    if (out && !(*out = ns__strdup(v)))
        return snprintf(why, whylen, "out of memory"), false;
    return true;
}

static ns_status load_params(loader *l, const yaml_node_t *map)
{
    static const char *const keys[] = {"type", "required", "default", "identifying", NULL};
    ns_job *job = l->job;
    ns_status st;

    if (map->type != YAML_MAPPING_NODE)
        return fail(l, map, "params", "must be a mapping of parameter names");
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    job->params = calloc(n ? n : 1, sizeof(*job->params));
    if (!job->params)
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &map->data.mapping.pairs.start[i];
        yaml_node_t *kn = node_at(l, p->key), *v = node_at(l, p->value);
        const char *name = scalar(kn);
        char key[256];
        snprintf(key, sizeof(key), "params.%s", name ? name : "?");
        if (!name || !*name || strchr(name, '=') || strcmp(name, "run.id") == 0)
            return fail(l, kn, key, "invalid parameter name");
        for (size_t j = 0; j < i; j++)
            if (strcmp(job->params[j].name, name) == 0)
                return fail(l, kn, key, "duplicate parameter");
        ns_param_def *pd = &job->params[job->nparams++];
        if (!(pd->name = ns__strdup(name)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        pd->identifying = true;
        pd->line = (int)kn->start_mark.line + 1;
        const char *tname = scalar(v);
        yaml_node_t *tn = v;
        if (!tname) {
            if (v->type != YAML_MAPPING_NODE)
                return fail(l, v, key, "must be a type name or {type: ..., ...}");
            if ((st = check_keys(l, v, key, keys)) != NS_OK)
                return st;
            tn = map_get(l, v, "type");
            tname = tn ? scalar(tn) : "string";
        }
        char k2[300];
        snprintf(k2, sizeof(k2), "%s.type", key);
        bool found = false;
        for (int t = 0; t <= NS_P_TIMESTAMP; t++)
            if (tname && strcmp(tname, ptype_names[t]) == 0)
                pd->type = (ns_ptype)t, found = true;
        if (!found)
            return fail(l, tn, k2, "unknown type '%s' (string, int, float, bool, date, timestamp)",
                        tname ? tname : "");
        if (v->type != YAML_MAPPING_NODE)
            continue;
        yaml_node_t *x;
        snprintf(k2, sizeof(k2), "%s.required", key);
        if ((x = map_get(l, v, "required")) && (st = get_bool(l, x, k2, &pd->required)) != NS_OK)
            return st;
        snprintf(k2, sizeof(k2), "%s.identifying", key);
        if ((x = map_get(l, v, "identifying")) &&
            (st = get_bool(l, x, k2, &pd->identifying)) != NS_OK)
            return st;
        snprintf(k2, sizeof(k2), "%s.default", key);
        if ((x = map_get(l, v, "default"))) {
            char why[160];
            if ((st = get_string(l, x, k2, &pd->def)) != NS_OK)
                return st;
            if (!ns__param_value(pd->type, pd->def, NULL, why, sizeof(why)))
                return fail(l, x, k2, "%s", why);
            if (pd->required)
                return fail(l, x, k2, "a required parameter cannot have a default");
        }
    }
    return NS_OK;
}

static ns_status load_conns(loader *l, const yaml_node_t *map)
{
    ns_job *job = l->job;
    ns_status st;

    if (map->type != YAML_MAPPING_NODE)
        return fail(l, map, "connections", "must be a mapping of names to URLs");
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    job->conns = calloc(n ? n : 1, sizeof(*job->conns));
    if (!job->conns)
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &map->data.mapping.pairs.start[i];
        yaml_node_t *kn = node_at(l, p->key), *v = node_at(l, p->value);
        const char *name = scalar(kn);
        char key[256];
        snprintf(key, sizeof(key), "connections.%s", name ? name : "?");
        if (!name || !name_ok(name))
            return fail(l, kn, key, "connection names use a-z, 0-9, _ and -");
        for (size_t j = 0; j < i; j++)
            if (strcmp(job->conns[j].name, name) == 0)
                return fail(l, kn, key, "duplicate connection");
        ns_conn_def *c = &job->conns[job->nconns++];
        if (!(c->name = ns__strdup(name)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        c->line = (int)v->start_mark.line + 1;
        c->statement_timeout = NS_STATEMENT_TIMEOUT;
        /* A URL, or {url: URL, statement_timeout: DURATION} */
        if (v->type == YAML_MAPPING_NODE) {
            static const char *const ok[] = {"url", "statement_timeout", NULL};
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
                 q++) {
                const char *k = scalar(node_at(l, q->key));
                bool known = false;
                for (size_t j = 0; ok[j] && k; j++)
                    known |= strcmp(k, ok[j]) == 0;
                if (!known)
                    return fail(l, node_at(l, q->key), key,
                                "unknown key '%s' (expected url or statement_timeout)",
                                k ? k : "?");
            }
            yaml_node_t *t = map_get(l, v, "statement_timeout");
            char k2[300];
            snprintf(k2, sizeof(k2), "%s.statement_timeout", key);
            if (t && (st = get_duration(l, t, k2, 0, 7 * 24 * 3600 * 1000LL,
                                        &c->statement_timeout)) != NS_OK)
                return st;
            snprintf(k2, sizeof(k2), "%s.url", key);
            if (!(v = map_get(l, v, "url")))
                return fail(l, node_at(l, p->value), key, "needs url:");
            if ((st = get_template(l, v, k2, false, &c->url)) != NS_OK)
                return st;
        } else if ((st = get_template(l, v, key, false, &c->url)) != NS_OK) {
            return st;
        }
        if (!strchr(c->url, '$') && ns__db_kind(c->url) == NS_DB_NONE) {
            char shown[512];
            ns__db_shown(c->url, shown, sizeof(shown));
            return fail(l, v, key,
                        "unsupported URL '%s' (use sqlite:PATH, postgresql://... or host=... "
                        "dbname=...)",
                        shown);
        }
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
    c->st =
        fail(c->l, c->n, c->key, ":%s is not a declared parameter (declare it in params)", name);
    return false;
}

/* ------------------------------------------------- plugin sections */

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Reads a whole file (a processor script). */
static char *slurp(const char *path, size_t *len)
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
static char *beside_job(loader *l, const char *rel)
{
    const char *slash = l->path ? strrchr(l->path, '/') : NULL;
    if (rel[0] == '/' || !slash)
        return ns__strdup(rel);
    return ns__asprintf("%.*s/%s", (int)(slash - l->path), l->path, rel);
}

/* Checks the :name parameters of SQL text (all declared) and its statement
 * count (one query, or a script of at least one statement). */
static ns_status check_sql(loader *l, const yaml_node_t *n, const char *key, const char *sql,
                           bool one)
{
    size_t nstmt = ns__sql_split(sql, NULL, NULL);
    if (!nstmt)
        return fail(l, n, key, "has no SQL statement");
    if (one && nstmt != 1)
        return fail(l, n, key, "must be one query (a SELECT), not a script");
    sql_check chk = {l, n, key, sql, NS_OK};
    ns__sql_params(sql, check_sql_param, &chk);
    return chk.st;
}

struct ns_key_ctx {
    loader *l;
    const yaml_node_t *map; /* the section */
    const char *where;      /* its dotted name */
};

/* The node of a dotted key under the section, NULL when not given. */
static const yaml_node_t *key_node(const ns_key_ctx *c, const char *dotted)
{
    const yaml_node_t *n = c->map;
    char part[128];
    for (const char *p = dotted; n && *p;) {
        size_t len = strcspn(p, ".");
        snprintf(part, sizeof(part), "%.*s", (int)len, p);
        n = map_get(c->l, n, part);
        p += len + (p[len] == '.');
    }
    return n == c->map ? NULL : n;
}

ns_status ns__key_fail(ns_key_ctx *c, const char *key, const char *fmt, ...)
{
    char msg[512], full[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const yaml_node_t *n = key && *key ? key_node(c, key) : NULL;
    snprintf(full, sizeof(full), "%s%s%s", c->where, key && *key ? "." : "", key ? key : "");
    return fail(c->l, n ? n : c->map, full, "%s", msg);
}

bool ns__key_given(const ns_key_ctx *c, const char *key)
{
    return key_node(c, key) != NULL;
}

const ns_plugin *ns__plugin_find(const ns_registry *r, ns_plugin_kind kind, const char *name)
{
    for (size_t i = 0; r && i < r->n; i++)
        if (r->plugins[i]->kind == kind && strcmp(r->plugins[i]->name, name) == 0)
            return r->plugins[i]->version == NS_PLUGIN_VERSION ? r->plugins[i] : NULL;
    return NULL;
}

static size_t count_keys(const ns_key *k)
{
    size_t n = 0;
    while (k && k[n].name)
        n++;
    return n;
}

/* "a, b or c" */
static void join_or(const char *const *v, size_t n, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
                 i == 0       ? ""
                 : i + 1 == n ? " or "
                              : ", ",
                 v[i]);
}

static ns_status load_keys(loader *l, const ns_key *keys, void *cfg, const yaml_node_t *n,
                           const char *where);

static ns_status read_value(loader *l, const ns_key *k, void *cfg, const yaml_node_t *x,
                            const char *key)
{
    void *at = (char *)cfg + k->offset;
    char **str = at;
    ns_status st;

    switch (k->type) {
    case NS_KEY_STRING:
        return get_string(l, x, key, str);
    case NS_KEY_IDENT:
        if ((st = get_string(l, x, key, str)) != NS_OK)
            return st;
        if (!**str || strchr(*str, '"'))
            return fail(l, x, key, "must be a table name");
        return NS_OK;
    case NS_KEY_TEMPLATE:
        return get_template(l, x, key, true, str);
    case NS_KEY_ITEM:
        if ((st = get_string(l, x, key, str)) != NS_OK)
            return st;
        if (!**str)
            return fail(l, x, key, "must not be empty");
        return check_template(l, x, key, *str, true, true);
    case NS_KEY_MAP:
        return get_map(l, x, key, at);
    case NS_KEY_CONNECTION:
        if ((st = get_string(l, x, key, str)) != NS_OK)
            return st;
        if (!ns__job_conn(l->job, *str))
            return fail(l, x, key, "no connection named '%s' in connections", *str);
        return NS_OK;
    case NS_KEY_QUERY:
    case NS_KEY_SCRIPT:
        if ((st = get_string(l, x, key, str)) != NS_OK)
            return st;
        return check_sql(l, x, key, *str, k->type == NS_KEY_QUERY);
    case NS_KEY_BOOL:
        return get_bool(l, x, key, at);
    case NS_KEY_INT:
        return get_posint(l, x, key, k->min, k->max, at);
    case NS_KEY_CHAR:
        return get_char(l, x, key, at);
    case NS_KEY_DURATION:
        return get_duration(l, x, key, k->min, k->max, at);
    case NS_KEY_NUMBER:
        return get_number(l, x, key, (double)k->min, (double)k->max, at);
    case NS_KEY_NAMES: {
        ns_names *v = at;
        return get_names(l, x, key, &v->v, &v->n);
    }
    case NS_KEY_ENUM: {
        const char *v = scalar(x);
        size_t n = 0;
        while (k->choices[n])
            n++;
        for (size_t i = 0; v && i < n; i++)
            if (strcmp(v, k->choices[i]) == 0) {
                *(int *)at = (int)i;
                return NS_OK;
            }
        char list[256];
        join_or(k->choices, n, list, sizeof(list));
        return fail(l, x, key, "must be %s", list);
    }
    case NS_KEY_TEXT: {
        ns_text *t = at;
        if ((st = get_string(l, x, key, &t->text)) != NS_OK)
            return st;
        t->len = strlen(t->text);
        if (!(t->origin = ns__asprintf("=%s, %s", l->path, key)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        return NS_OK;
    }
    case NS_KEY_FILE:
    case NS_KEY_SQL_FILE: {
        char *rel = NULL, *path, *text = NULL;
        size_t len = 0;
        if ((st = get_string(l, x, key, &rel)) != NS_OK)
            return st;
        path = beside_job(l, rel);
        if (!path || !(text = slurp(path, &len)))
            st = fail(l, x, key, "cannot read '%s': %s", path ? path : rel, strerror(errno));
        free(path);
        if (st == NS_OK && k->type == NS_KEY_FILE) {
            ns_text *t = at;
            t->text = text;
            t->len = len;
            if (!(t->origin = ns__asprintf("@%s", rel)))
                st = ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        } else if (st == NS_OK) {
            *str = text;
            st = check_sql(l, x, key, text, false);
        }
        free(rel);
        return st;
    }
    case NS_KEY_SECTION: {
        void **sec = at;
        if (!(*sec = calloc(1, k->sub_size ? k->sub_size : 1)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        if (x->type == YAML_SCALAR_NODE && (k->flags & NS_KEY_OR_STRING))
            return read_value(l, &k->sub[0], *sec, x, key);
        return load_keys(l, k->sub, *sec, x, key);
    }
    }
    return fail(l, x, key, "unknown kind of key");
}

static ns_status default_value(loader *l, const ns_key *k, void *cfg)
{
    void *at = (char *)cfg + k->offset;
    if (!k->def)
        return NS_OK;
    switch (k->type) {
    case NS_KEY_BOOL:
        parse_bool(k->def, at);
        return NS_OK;
    case NS_KEY_INT:
        ns__parse_i64(k->def, strlen(k->def), at);
        return NS_OK;
    case NS_KEY_CHAR:
        *(char *)at = strcmp(k->def, "\\t") == 0 ? '\t' : k->def[0];
        return NS_OK;
    case NS_KEY_DURATION:
        ns__parse_duration(k->def, at);
        return NS_OK;
    case NS_KEY_NUMBER:
        *(double *)at = strtod(k->def, NULL);
        return NS_OK;
    case NS_KEY_ENUM:
        for (int i = 0; k->choices[i]; i++)
            if (strcmp(k->def, k->choices[i]) == 0)
                *(int *)at = i;
        return NS_OK;
    case NS_KEY_STRING:
    case NS_KEY_IDENT:
    case NS_KEY_TEMPLATE:
    case NS_KEY_ITEM:
        if (!(*(char **)at = ns__strdup(k->def)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        return NS_OK;
    default:
        return NS_OK;
    }
}

/* Keys sharing k's offset: alternatives ("needs exactly one of ..."). */
static ns_status alternatives(loader *l, const ns_key *keys, size_t nk, size_t i,
                              const yaml_node_t *n, const char *where)
{
    char msg[400] = "needs exactly one of";
    size_t m = 0;
    for (size_t j = 0; j < nk; j++)
        if (keys[j].offset == keys[i].offset)
            snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), "%s %s:%s%s%s",
                     m++ ? " and" : "", keys[j].name, keys[j].hint ? " (" : "",
                     keys[j].hint ? keys[j].hint : "", keys[j].hint ? ")" : "");
    return fail(l, n, where, "%s", msg);
}

static ns_status load_keys(loader *l, const ns_key *keys, void *cfg, const yaml_node_t *n,
                           const char *where)
{
    size_t nk = count_keys(keys);
    const char *allowed[64];
    char key[400];
    ns_status st;

    if (!n || n->type != YAML_MAPPING_NODE) {
        char req[256] = "";
        for (size_t i = 0; i < nk; i++)
            if (keys[i].flags & NS_KEY_REQUIRED)
                snprintf(req + strlen(req), sizeof(req) - strlen(req),
                         "%s%s:", req[0] ? " and " : " with ", keys[i].name);
        return fail(l, n, where, "must be a mapping%s", req);
    }
    for (size_t i = 0; i < nk && i < 63; i++)
        allowed[i] = keys[i].name;
    allowed[nk < 63 ? nk : 63] = NULL;
    if ((st = check_keys(l, n, where, allowed)) != NS_OK)
        return st;
    for (size_t i = 0; i < nk; i++) {
        const ns_key *k = &keys[i];
        bool group = false, given_other = false, required = false, first = true;
        for (size_t j = 0; j < nk; j++) {
            if (j == i || keys[j].offset != k->offset)
                continue;
            group = true;
            given_other |= map_get(l, n, keys[j].name) != NULL;
            first &= j > i;
        }
        for (size_t j = 0; j < nk; j++)
            if (keys[j].offset == k->offset)
                required |= (keys[j].flags & NS_KEY_REQUIRED) != 0;
        snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", k->name);
        yaml_node_t *x = map_get(l, n, k->name);
        if (x && given_other)
            return alternatives(l, keys, nk, i, n, where);
        if (x) {
            if ((st = read_value(l, k, cfg, x, key)) != NS_OK)
                return st;
            continue;
        }
        if (given_other || !first)
            continue;
        if (required && group)
            return alternatives(l, keys, nk, i, n, where);
        if (required)
            return fail(l, n, key, "is required%s%s", k->hint ? ": " : "", k->hint ? k->hint : "");
        if ((st = default_value(l, k, cfg)) != NS_OK)
            return st;
    }
    return NS_OK;
}

static void free_keys(const ns_key *keys, void *cfg)
{
    size_t nk = count_keys(keys);
    if (!cfg)
        return;
    for (size_t i = 0; i < nk; i++) {
        const ns_key *k = &keys[i];
        bool seen = false; /* alternatives share their value: free it once */
        for (size_t j = 0; j < i; j++)
            seen |= keys[j].offset == k->offset;
        if (seen)
            continue;
        void *at = (char *)cfg + k->offset;
        switch (k->type) {
        case NS_KEY_NAMES: {
            ns_names *v = at;
            free_names(v->v, v->n);
            break;
        }
        case NS_KEY_TEXT:
        case NS_KEY_FILE: {
            ns_text *t = at;
            free(t->text);
            free(t->origin);
            break;
        }
        case NS_KEY_MAP: {
            ns_map *m = at;
            for (size_t j = 0; j < m->n; j++) {
                free(m->names[j]);
                free(m->values[j]);
            }
            free(m->names);
            free(m->values);
            break;
        }
        case NS_KEY_SECTION: {
            void **sec = at;
            free_keys(k->sub, *sec);
            free(*sec);
            break;
        }
        case NS_KEY_BOOL:
        case NS_KEY_INT:
        case NS_KEY_CHAR:
        case NS_KEY_ENUM:
        case NS_KEY_DURATION:
        case NS_KEY_NUMBER:
            break;
        default:
            free(*(char **)at);
        }
    }
}

static void free_plugin_cfg(const ns_plugin *p, void *cfg)
{
    if (p && cfg)
        free_keys(p->keys, cfg);
    free(cfg);
}

/* Reads a plugin's section into a configuration of its own. */
static ns_status load_plugin(loader *l, const ns_plugin *p, const yaml_node_t *n, const char *where,
                             void **cfg)
{
    ns_status st;
    if (!(*cfg = calloc(1, p->cfg_size ? p->cfg_size : 1)))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    if ((st = load_keys(l, p->keys, *cfg, n, where)) != NS_OK)
        return st;
    if (p->check) {
        ns_key_ctx c = {l, n, where};
        st = p->check(*cfg, &c);
    }
    return st;
}

/* The names of the plugins of a kind: "csv, query". */
static void plugin_names(const loader *l, ns_plugin_kind kind, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t i = 0; i < l->reg->n; i++)
        if (l->reg->plugins[i]->kind == kind)
            snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? ", " : "",
                     l->reg->plugins[i]->name);
}

/* reader: {NAME: {...}} and writer: {NAME: {...}}: one plugin, by name. */
static ns_status load_one_of(loader *l, ns_plugin_kind kind, const char *what, const yaml_node_t *n,
                             const char *where, const ns_plugin **pl, void **cfg)
{
    char names[256], key[300];
    plugin_names(l, kind, names, sizeof(names));
    if (!n || n->type != YAML_MAPPING_NODE ||
        n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1)
        return fail(l, n, where, "must name exactly one %s (%s), e.g. {%s: {...}}", what, names,
                    kind == NS_PLUGIN_READER ? "csv" : "table");
    yaml_node_pair_t *p = n->data.mapping.pairs.start;
    yaml_node_t *kn = node_at(l, p->key);
    const char *name = scalar(kn);
    snprintf(key, sizeof(key), "%s.%s", where, name ? name : "?");
    if (!name || !(*pl = ns__plugin_find(l->reg, kind, name)))
        return fail(l, kn, key, "unknown key (expected one of: %s)", names);
    return load_plugin(l, *pl, node_at(l, p->value), key, cfg);
}

/* processor: {lua: ..., columns: ..., ...}: the section of the processor
 * whose name is one of its keys (a lone file: is a Lua script). */
static ns_status load_processor(loader *l, ns_step_def *s, const yaml_node_t *n, const char *where)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(l, n, where, "must be a mapping such as {lua: \"function process(item) ...\"}");
    for (size_t i = 0; i < l->reg->n && !s->processor; i++)
        if (l->reg->plugins[i]->kind == NS_PLUGIN_PROCESSOR &&
            map_get(l, n, l->reg->plugins[i]->name))
            s->processor = l->reg->plugins[i];
    if (!s->processor && map_get(l, n, "file"))
        s->processor = ns__plugin_find(l->reg, NS_PLUGIN_PROCESSOR, "lua");
    if (!s->processor) {
        char names[256];
        plugin_names(l, NS_PLUGIN_PROCESSOR, names, sizeof(names));
        return fail(l, n, where, "names no processor (%s)", names);
    }
    return load_plugin(l, s->processor, n, where, &s->proc_cfg);
}

typedef struct tmpl_walk {
    ns_template_fn fn;
    void *arg;
    const ns_step_def *step;
    bool stop;
} tmpl_walk;

static void walk_templates(const ns_key *keys, const void *cfg, const char *where, tmpl_walk *w)
{
    char key[300];
    for (size_t i = 0; cfg && keys && keys[i].name && !w->stop; i++) {
        const void *at = (const char *)cfg + keys[i].offset;
        snprintf(key, sizeof(key), "%s.%s", where, keys[i].name);
        if ((keys[i].type == NS_KEY_TEMPLATE || keys[i].type == NS_KEY_ITEM) &&
            *(char *const *)at) {
            w->stop = !w->fn(w->arg, w->step, key, *(char *const *)at, keys[i].flags);
        } else if (keys[i].type == NS_KEY_MAP) {
            const ns_map *m = at;
            for (size_t j = 0; j < m->n && !w->stop; j++) {
                char mk[400];
                snprintf(mk, sizeof(mk), "%s.%s", key, m->names[j]);
                w->stop = !w->fn(w->arg, w->step, mk, m->values[j], 0);
            }
        } else if (keys[i].type == NS_KEY_SECTION)
            walk_templates(keys[i].sub, *(void *const *)at, key, w);
    }
}

void ns__job_templates(const ns_job *job, ns_template_fn fn, void *arg)
{
    for (size_t i = 0; i < job->nsteps; i++) {
        const ns_step_def *s = &job->steps[i];
        tmpl_walk w = {fn, arg, s, false};
        char where[300];
        snprintf(where, sizeof(where), "steps[%zu]", i);
        if (s->rejects) {
            snprintf(where, sizeof(where), "steps[%zu].rejects", i);
            if (!fn(arg, s, where, s->rejects, NS_KEY_PATH))
                return;
        }
        if (s->reader) {
            snprintf(where, sizeof(where), "steps[%zu].reader.%s", i, s->reader->name);
            walk_templates(s->reader->keys, s->reader_cfg, where, &w);
        }
        if (s->processor) {
            snprintf(where, sizeof(where), "steps[%zu].processor", i);
            walk_templates(s->processor->keys, s->proc_cfg, where, &w);
        }
        if (s->writer) {
            snprintf(where, sizeof(where), "steps[%zu].writer.%s", i, s->writer->name);
            walk_templates(s->writer->keys, s->writer_cfg, where, &w);
        }
        if (s->type_cfg) {
            snprintf(where, sizeof(where), "steps[%zu].%s", i, s->type->name);
            walk_templates(s->type->keys, s->type_cfg, where, &w);
        }
        if (w.stop)
            return;
    }
}

/* on: {EXIT_CODE: target}; targets are checked once every step is known. */
static ns_status load_on(loader *l, ns_step_def *s, const yaml_node_t *n, const char *where)
{
    if (n->type != YAML_MAPPING_NODE || n->data.mapping.pairs.top == n->data.mapping.pairs.start)
        return fail(l, n, where,
                    "must map exit codes to a step, end, fail or stop, e.g. {ASSERT_FAILED: "
                    "alert, \"*\": end}");
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (!(s->on = calloc(cnt, sizeof(*s->on))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        ns_transition *t = &s->on[s->non++];
        yaml_node_t *k = node_at(l, p->key), *v = node_at(l, p->value);
        const char *code = scalar(k);
        char key[300];
        if (!code)
            return fail(l, k, where, "keys must be exit codes");
        snprintf(key, sizeof(key), "%s.%s", where, code);
        if (!ns__exit_code_known(code))
            return fail(l, k, key,
                        "not an exit code (COMPLETED, COMPLETED_WITH_DIFFERENCES, FAILED, "
                        "ASSERT_FAILED, STOPPED, or \"*\" for any other)");
        for (size_t j = 0; j + 1 < s->non; j++)
            if (strcmp(s->on[j].code, code) == 0)
                return fail(l, k, key, "is listed twice");
        if (!(t->code = ns__strdup(code)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        ns_status st = get_string(l, v, key, &t->to);
        if (st != NS_OK)
            return st;
        t->line = (int)v->start_mark.line + 1;
    }
    return NS_OK;
}

/* Every on: target names a step or an outcome, and no path leads back to a
 * step already on it (a loop would run completed steps again). */
static ns_status check_flow(loader *l)
{
    ns_job *job = l->job;
    for (size_t i = 0; i < job->nsteps; i++)
        for (size_t k = 0; k < job->steps[i].non; k++) {
            const ns_transition *t = &job->steps[i].on[k];
            if (strcmp(t->to, "end") == 0 || strcmp(t->to, "fail") == 0 ||
                strcmp(t->to, "stop") == 0 || ns__job_step(job, t->to) >= 0)
                continue;
            return ns__err(l->err, NS_ECONFIG, NULL,
                           "%s:%d: steps[%zu].on.%s: no step named '%s' (targets: a step, end, "
                           "fail or stop)",
                           l->path, t->line, i, t->code, t->to);
        }
    /* Depth-first search over the possible next steps: on: targets, and the
     * next in order unless "*" covers every other outcome. */
    unsigned char *mark = calloc(job->nsteps + 1, 1); /* 0 new, 1 on path, 2 done */
    size_t *stack = calloc(job->nsteps + 1, sizeof(*stack)),
           *edge = calloc(job->nsteps + 1, sizeof(*edge));
    ns_status st = NS_OK;
    if (!mark || !stack || !edge)
        st = ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    size_t depth = 0;
    if (st == NS_OK) {
        stack[depth++] = 0;
        mark[0] = 1;
    }
    while (depth && st == NS_OK) {
        size_t i = stack[depth - 1];
        const ns_step_def *s = &job->steps[i];
        bool any = false;
        for (size_t k = 0; k < s->non; k++)
            any |= strcmp(s->on[k].code, "*") == 0;
        size_t e = edge[depth - 1]++;
        long next = -1;
        if (e < s->non)
            next = ns__job_step(job, s->on[e].to);
        else if (e == s->non && !any && i + 1 < job->nsteps)
            next = (long)i + 1;
        else if (e > s->non) {
            mark[i] = 2;
            depth--;
            continue;
        }
        if (next < 0)
            continue;
        if (mark[next] == 1)
            st = ns__err(l->err, NS_ECONFIG, NULL,
                         "%s:%d: steps[%zu].on: the flow can lead from step '%s' back to step "
                         "'%s'; flows may not loop",
                         l->path, s->non ? s->on[0].line : s->line, i, s->name,
                         job->steps[next].name);
        else if (mark[next] == 0) {
            mark[next] = 1;
            edge[depth] = 0;
            stack[depth++] = (size_t)next;
        }
    }
    free(mark);
    free(stack);
    free(edge);
    return st;
}

/* retry: {limit, backoff: {initial, max, multiplier}, jitter, on} */
typedef struct backoff_cfg {
    double initial, max, multiplier;
} backoff_cfg;
typedef struct retry_cfg {
    int64_t limit;
    backoff_cfg *backoff;
    bool jitter;
    ns_names on;
} retry_cfg;

static const ns_key backoff_keys[] = {{.name = "initial",
                                       .type = NS_KEY_DURATION,
                                       .offset = offsetof(backoff_cfg, initial),
                                       .def = "1s",
                                       .max = 3600000},
                                      {.name = "max",
                                       .type = NS_KEY_DURATION,
                                       .offset = offsetof(backoff_cfg, max),
                                       .def = "30s",
                                       .max = 86400000},
                                      {.name = "multiplier",
                                       .type = NS_KEY_NUMBER,
                                       .offset = offsetof(backoff_cfg, multiplier),
                                       .def = "2",
                                       .min = 1,
                                       .max = 100},
                                      {0}};
static const ns_key retry_keys[] = {
    {.name = "limit",
     .type = NS_KEY_INT,
     .offset = offsetof(retry_cfg, limit),
     .def = "3",
     .max = 1000000},
    {.name = "backoff",
     .type = NS_KEY_SECTION,
     .offset = offsetof(retry_cfg, backoff),
     .sub = backoff_keys,
     .sub_size = sizeof(backoff_cfg)},
    {.name = "jitter", .type = NS_KEY_BOOL, .offset = offsetof(retry_cfg, jitter), .def = "true"},
    {.name = "on", .type = NS_KEY_NAMES, .offset = offsetof(retry_cfg, on)},
    {0}};

static void free_keys(const ns_key *keys, void *cfg);

static ns_status load_retry(loader *l, ns_step_def *s, const yaml_node_t *n, const char *where)
{
    retry_cfg c = {0};
    char key[160];
    ns_status st = load_keys(l, retry_keys, &c, n, where);
    if (st != NS_OK)
        goto out;
    s->retry.limit = c.limit;
    s->retry.jitter = c.jitter;
    if (c.backoff) {
        s->retry.initial = c.backoff->initial;
        s->retry.max = c.backoff->max;
        s->retry.multiplier = c.backoff->multiplier;
        if (s->retry.initial > s->retry.max) {
            snprintf(key, sizeof(key), "%s.backoff", where);
            st = fail(l, map_get(l, n, "backoff"), key,
                      "initial (%gs) must not be longer than max (%gs)", s->retry.initial,
                      s->retry.max);
            goto out;
        }
    }
    for (size_t i = 0; i < c.on.n; i++)
        if (!ns__retry_on_valid(c.on.v[i])) {
            yaml_node_t *list = map_get(l, n, "on");
            snprintf(key, sizeof(key), "%s.on[%zu]", where, i);
            st = fail(l, node_at(l, list->data.sequence.items.start[i]), key,
                      "'%s' is not a failure nightshift can retry on: name a SQLSTATE (40001) or "
                      "a class of them (08*), SQLITE_BUSY, SQLITE_LOCKED, an HTTP status (503), "
                      "timeout, reset, or transient (all of the default ones)",
                      c.on.v[i]);
            goto out;
        }
    s->retry.on = c.on.v;
    s->retry.non = c.on.n;
    c.on.v = NULL;
    c.on.n = 0;
out:
    free_keys(retry_keys, &c);
    return st;
}

static ns_status load_step(loader *l, size_t i, const yaml_node_t *n)
{
    static const char *const chunk_keys[] = {"name",   "chunk", "reader",  "processor",
                                             "writer", "skip",  "rejects", "retry"};
    static const char *const chunk_only[] = {"chunk", "reader",  "processor", "writer",
                                             "skip",  "rejects", NULL};
    static const char *const skip_keys[] = {"limit", NULL};
    ns_step_def *s = &l->job->steps[i];
    char where[64], key[128];
    ns_status st;
    yaml_node_t *x;

    snprintf(where, sizeof(where), "steps[%zu]", i);
    if (n->type != YAML_MAPPING_NODE)
        return fail(l, n, where, "must be a mapping with name:, reader: and writer:");
    /* The keys: a chunk step's, each step type's section, on. */
    const char *keys[40];
    size_t nk = 0;
    for (size_t k = 0; k < sizeof(chunk_keys) / sizeof(chunk_keys[0]); k++)
        keys[nk++] = chunk_keys[k];
    for (size_t k = 0; k < l->reg->n && nk < 38; k++)
        if (l->reg->plugins[k]->kind == NS_PLUGIN_STEP && l->reg->plugins[k]->keys)
            keys[nk++] = l->reg->plugins[k]->name;
    keys[nk++] = "on";
    keys[nk] = NULL;
    if ((st = check_keys(l, n, where, keys)) != NS_OK)
        return st;
    s->line = (int)n->start_mark.line + 1;
    snprintf(key, sizeof(key), "%s.name", where);
    if (!(x = map_get(l, n, "name")))
        return fail(l, n, key, "is required");
    if ((st = get_string(l, x, key, &s->name)) != NS_OK)
        return st;
    if (!name_ok(s->name))
        return fail(l, x, key, "step names use a-z, 0-9, _ and -");
    for (size_t j = 0; j < i; j++)
        if (strcmp(l->job->steps[j].name, s->name) == 0)
            return fail(l, x, key, "another step is already named '%s'", s->name);
    if (strcmp(s->name, "end") == 0 || strcmp(s->name, "fail") == 0 || strcmp(s->name, "stop") == 0)
        return fail(l, x, key, "'%s' names a flow outcome (on: ...: %s); use another name", s->name,
                    s->name);
    snprintf(key, sizeof(key), "%s.on", where);
    if ((x = map_get(l, n, "on")) && (st = load_on(l, s, x, key)) != NS_OK)
        return st;

    /* What the step does: a reader and a writer (a chunk step), or exactly
     * one step type's section. */
    const ns_plugin *type = NULL;
    char kinds[256] = "reader: and writer:";
    size_t nkinds = map_get(l, n, "reader") || map_get(l, n, "writer") ? 1 : 0;
    for (size_t k = 0; k < l->reg->n; k++) {
        const ns_plugin *p = l->reg->plugins[k];
        if (p->kind != NS_PLUGIN_STEP || !p->keys)
            continue;
        snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds), ", %s:", p->name);
        if (map_get(l, n, p->name)) {
            nkinds++;
            type = p;
        }
    }
    char *last = strrchr(kinds, ',');
    if (last) {
        char tail[64];
        snprintf(tail, sizeof(tail), " or%s", last + 1);
        snprintf(last, sizeof(kinds) - (size_t)(last - kinds), "%s", tail);
    }
    if (nkinds != 1)
        return fail(l, n, where, "must do exactly one thing: %s", kinds);
    if (type) {
        for (size_t k = 0; chunk_only[k]; k++)
            if ((x = map_get(l, n, chunk_only[k]))) {
                snprintf(key, sizeof(key), "%s.%s", where, chunk_only[k]);
                return fail(l, x, key, "only for reader/writer steps");
            }
        /* sql, assert, rebuild: retried as a whole (one transaction) */
        snprintf(key, sizeof(key), "%s.retry", where);
        s->retry = ns__retry_default;
        if ((x = map_get(l, n, "retry"))) {
            if (strcmp(type->name, "compare") == 0)
                return fail(l, x, key, "not for compare steps (a compare is not retried yet)");
            if ((st = load_retry(l, s, x, key)) != NS_OK)
                return st;
        }
        s->type = type;
        snprintf(key, sizeof(key), "%s.%s", where, type->name);
        return load_plugin(l, type, map_get(l, n, type->name), key, &s->type_cfg);
    }
    if (!(s->type = ns__plugin_find(l->reg, NS_PLUGIN_STEP, "chunk")))
        return fail(l, n, where, "no chunk step type in this build");
    s->chunk = 1000;
    snprintf(key, sizeof(key), "%s.chunk", where);
    if ((x = map_get(l, n, "chunk")) &&
        (st = get_posint(l, x, key, 1, 1000000, &s->chunk)) != NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.processor", where);
    if ((x = map_get(l, n, "processor")) && (st = load_processor(l, s, x, key)) != NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.reader", where);
    if (!(x = map_get(l, n, "reader")))
        return fail(l, n, key, "is required");
    if ((st = load_one_of(l, NS_PLUGIN_READER, "reader", x, key, &s->reader, &s->reader_cfg)) !=
        NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.writer", where);
    if (!(x = map_get(l, n, "writer")))
        return fail(l, n, key, "is required");
    if ((st = load_one_of(l, NS_PLUGIN_WRITER, "writer", x, key, &s->writer, &s->writer_cfg)) !=
        NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.skip", where);
    if ((x = map_get(l, n, "skip"))) {
        if (x->type != YAML_MAPPING_NODE)
            return fail(l, x, key, "must be a mapping such as {limit: 100}");
        if ((st = check_keys(l, x, key, skip_keys)) != NS_OK)
            return st;
        snprintf(key, sizeof(key), "%s.skip.limit", where);
        yaml_node_t *lim = map_get(l, x, "limit");
        if (lim && (st = get_posint(l, lim, key, 0, INT64_MAX, &s->skip_limit)) != NS_OK)
            return st;
    }
    snprintf(key, sizeof(key), "%s.retry", where);
    s->retry = ns__retry_default;
    if ((x = map_get(l, n, "retry")) && (st = load_retry(l, s, x, key)) != NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.rejects", where);
    if ((x = map_get(l, n, "rejects"))) {
        if ((st = get_template(l, x, key, true, &s->rejects)) != NS_OK)
            return st;
    } else if (!(s->rejects = ns__strdup("rejects/${job.name}-${execution.id}-${step.name}.csv"))) {
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    }
    return NS_OK;
}

/* ------------------------------------------------ schedule: and notify: */

static ns_status get_choice(loader *l, const yaml_node_t *n, const char *key,
                            const char *const *choices, int *out)
{
    const char *v = scalar(n);
    char list[200] = "";
    for (int i = 0; choices[i]; i++) {
        if (v && strcmp(v, choices[i]) == 0)
            return (*out = i), NS_OK;
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 choices[i]);
    }
    return fail(l, n, key, "must be one of: %s", list);
}

static ns_status sched_params(loader *l, ns_schedule_def *sd, const yaml_node_t *n)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail(l, n, "schedule.params", "must be a mapping of parameter names to values");
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (!(sd->param_names = calloc(cnt ? cnt : 1, sizeof(char *))) ||
        !(sd->param_values = calloc(cnt ? cnt : 1, sizeof(char *))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *kn = node_at(l, p->key), *v = node_at(l, p->value);
        const char *name = scalar(kn);
        char key[300];
        snprintf(key, sizeof(key), "schedule.params.%s", name ? name : "?");
        const ns_param_def *pd = name ? ns__job_param(l->job, name) : NULL;
        if (!pd)
            return fail(l, kn, key, "no such parameter in params");
        for (size_t j = 0; j < sd->nparams; j++)
            if (strcmp(sd->param_names[j], name) == 0)
                return fail(l, kn, key, "given twice");
        if (!(sd->param_names[sd->nparams] = ns__strdup(name)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        sd->nparams++;
        ns_status st = get_string(l, v, key, &sd->param_values[sd->nparams - 1]);
        if (st != NS_OK)
            return st;
        const char *val = sd->param_values[sd->nparams - 1];
        char why[160];
        if (strchr(val, '$'))
            return fail(l, v, key, "takes a value, not a ${...} reference");
        if (strcmp(val, "scheduled") == 0 && (pd->type == NS_P_DATE || pd->type == NS_P_TIMESTAMP))
            continue;
        if (pd->type == NS_P_DATE && !ns__param_value(pd->type, val, NULL, why, sizeof(why)))
            return fail(l, v, key, "'%s' is not a date (YYYY-MM-DD, today, yesterday or scheduled)",
                        val);
        if (pd->type == NS_P_TIMESTAMP && !ns__param_value(pd->type, val, NULL, why, sizeof(why)))
            return fail(l, v, key, "'%s' is not a timestamp (YYYY-MM-DDTHH:MM:SS or scheduled)",
                        val);
        if (!ns__param_value(pd->type, val, NULL, why, sizeof(why)))
            return fail(l, v, key, "%s", why);
    }
    return NS_OK;
}

static ns_status load_schedule(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"cron", "timezone", "params", "misfire", "overlap",
                                       "dst",  "deadline", "jitter", NULL};
    static const char *const misfires[] = {"skip", "run_once", "catch_up", NULL};
    static const char *const overlaps[] = {"forbid", "queue_one", "allow", NULL};
    static const char *const gaps[] = {"next", "shift", "skip", NULL};
    static const char *const repeats[] = {"first", "last", "both", NULL};
    ns_status st;
    yaml_node_t *x;
    int v;

    if (n->type == YAML_SCALAR_NODE)
        return fail(l, n, "schedule", "must be a mapping: schedule: {cron: \"0 3 * * *\", ...}");
    if (n->type != YAML_MAPPING_NODE)
        return fail(l, n, "schedule", "must be a mapping with cron:");
    if ((st = check_keys(l, n, "schedule", keys)) != NS_OK)
        return st;
    ns_schedule_def *sd = l->job->schedule = calloc(1, sizeof(*sd));
    if (!sd)
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    sd->line = (int)n->start_mark.line + 1;
    sd->misfire = NS_MISFIRE_RUN_ONCE;
    sd->catch_up_max = NS_CATCH_UP_MAX;
    sd->deadline = NS_DEADLINE_DEFAULT;
    if (!(x = map_get(l, n, "cron")))
        return fail(l, n, "schedule.cron", "is required (\"0 3 * * *\": at 03:00 every day)");
    if ((st = get_string(l, x, "schedule.cron", &sd->cron)) != NS_OK)
        return st;
    char why[256];
    if (!ns_cron_parse(sd->cron, &sd->expr, why, sizeof(why)))
        return fail(l, x, "schedule.cron", "\"%s\": %s", sd->cron, why);
    if ((x = map_get(l, n, "timezone"))) {
        if ((st = get_string(l, x, "schedule.timezone", &sd->timezone)) != NS_OK)
            return st;
        ns_tz *tz;
        ns_error e = {0};
        if (ns_tz_load(sd->timezone, &tz, &e) != NS_OK)
            return fail(l, x, "schedule.timezone", "%s", e.message);
        ns_tz_free(tz);
    } else if (!(sd->timezone = ns__strdup("UTC")))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    if ((x = map_get(l, n, "params")) && (st = sched_params(l, sd, x)) != NS_OK)
        return st;
    if ((x = map_get(l, n, "misfire"))) {
        yaml_node_t *pol = x;
        if (x->type == YAML_MAPPING_NODE) { /* {policy: catch_up, max: N} */
            static const char *const mk[] = {"policy", "max", NULL};
            if ((st = check_keys(l, x, "schedule.misfire", mk)) != NS_OK)
                return st;
            if (!(pol = map_get(l, x, "policy")))
                return fail(l, x, "schedule.misfire.policy",
                            "is required (skip, run_once or catch_up)");
        }
        if ((st = get_choice(l, pol, "schedule.misfire", misfires, &v)) != NS_OK)
            return st;
        sd->misfire = (ns_misfire)v;
        yaml_node_t *m = x->type == YAML_MAPPING_NODE ? map_get(l, x, "max") : NULL;
        if (m && sd->misfire != NS_MISFIRE_CATCH_UP)
            return fail(l, m, "schedule.misfire.max", "is for policy: catch_up only");
        if (m &&
            (st = get_posint(l, m, "schedule.misfire.max", 1, 1000, &sd->catch_up_max)) != NS_OK)
            return st;
    }
    if ((x = map_get(l, n, "overlap"))) {
        if ((st = get_choice(l, x, "schedule.overlap", overlaps, &v)) != NS_OK)
            return st;
        sd->overlap = (ns_overlap)v;
    }
    if ((x = map_get(l, n, "dst"))) {
        static const char *const dk[] = {"gap", "repeat", NULL};
        yaml_node_t *y;
        if (x->type != YAML_MAPPING_NODE)
            return fail(l, x, "schedule.dst", "must be a mapping: {gap: next, repeat: first}");
        if ((st = check_keys(l, x, "schedule.dst", dk)) != NS_OK)
            return st;
        if ((y = map_get(l, x, "gap"))) {
            if ((st = get_choice(l, y, "schedule.dst.gap", gaps, &v)) != NS_OK)
                return st;
            sd->gap = (ns_dst_gap)v;
        }
        if ((y = map_get(l, x, "repeat"))) {
            if ((st = get_choice(l, y, "schedule.dst.repeat", repeats, &v)) != NS_OK)
                return st;
            sd->repeat = (ns_dst_repeat)v;
        }
    }
    if ((x = map_get(l, n, "deadline")) &&
        (st = get_duration(l, x, "schedule.deadline", 1000, 366LL * 86400 * 1000, &sd->deadline)) !=
            NS_OK)
        return st;
    if ((x = map_get(l, n, "jitter")) &&
        (st = get_duration(l, x, "schedule.jitter", 0, 3600 * 1000, &sd->jitter)) != NS_OK)
        return st;
    if (sd->jitter >= sd->deadline)
        return fail(l, x ? x : n, "schedule.jitter", "must be shorter than the deadline (%gs)",
                    sd->deadline);
    return NS_OK;
}

static const char *const event_names[] = {
#define NS_XX(name, text) text,
    NS_NOTIFY_EVENTS(NS_XX)
#undef NS_XX
        NULL};

const char *ns__event_name(ns_event e)
{
    return e < NS_EVENT_COUNT ? event_names[e] : "?";
}

/* A template of a notification: ${env.X}, ${job.name}; no parameters (a
 * notification is about the job, whatever run it is). */
static ns_status notify_template(loader *l, const yaml_node_t *n, const char *key, char **out)
{
    ns_status st = get_template(l, n, key, false, out);
    if (st == NS_OK && (strstr(*out, "${params.") || strstr(*out, "${execution.")))
        return fail(l, n, key, "may use ${env.NAME} and ${job.name} only");
    return st;
}

/* An http(s) URL, or one a ${...} begins (known only at run time). */
static bool notify_url_ok(const char *u)
{
    return strncmp(u, "${", 2) == 0 || strncasecmp(u, "http://", 7) == 0 ||
           strncasecmp(u, "https://", 8) == 0;
}

static ns_status load_notify_one(loader *l, ns_notify_def *nd, const yaml_node_t *n,
                                 const char *where)
{
    static const char *const keys[] = {"slack", "webhook", "command", "on",
                                       "every", "timeout", NULL};
    char key[300];
    ns_status st;
    yaml_node_t *x;

    if (n->type != YAML_MAPPING_NODE)
        return fail(l, n, where,
                    "must be a mapping: {slack: {webhook: ...}}, {webhook: {url: ...}} "
                    "or {command: [...]}");
    if ((st = check_keys(l, n, where, keys)) != NS_OK)
        return st;
    nd->line = (int)n->start_mark.line + 1;
    nd->events = NS_NOTIFY_DEFAULT_EVENTS;
    nd->every = 1;
    nd->timeout = 10;
    int kinds = !!map_get(l, n, "slack") + !!map_get(l, n, "webhook") + !!map_get(l, n, "command");
    if (kinds != 1)
        return fail(l, n, where, "needs exactly one of slack:, webhook: or command:");
    if ((x = map_get(l, n, "slack"))) {
        static const char *const sk[] = {"webhook", NULL};
        nd->kind = NS_NOTIFY_SLACK;
        snprintf(key, sizeof(key), "%s.slack", where);
        if (x->type != YAML_MAPPING_NODE)
            return fail(l, x, key, "must be a mapping: {webhook: \"${env.SLACK_WEBHOOK}\"}");
        if ((st = check_keys(l, x, key, sk)) != NS_OK)
            return st;
        snprintf(key, sizeof(key), "%s.slack.webhook", where);
        yaml_node_t *u = map_get(l, x, "webhook");
        if (!u)
            return fail(l, x, key, "is required (the incoming webhook's URL)");
        if ((st = notify_template(l, u, key, &nd->url)) != NS_OK)
            return st;
        if (!notify_url_ok(nd->url))
            return fail(l, u, key, "must be an http:// or https:// URL");
    } else if ((x = map_get(l, n, "webhook"))) {
        static const char *const wk[] = {"url", "headers", NULL};
        nd->kind = NS_NOTIFY_WEBHOOK;
        snprintf(key, sizeof(key), "%s.webhook", where);
        if (x->type != YAML_MAPPING_NODE)
            return fail(l, x, key, "must be a mapping: {url: ..., headers: {...}}");
        if ((st = check_keys(l, x, key, wk)) != NS_OK)
            return st;
        snprintf(key, sizeof(key), "%s.webhook.url", where);
        yaml_node_t *u = map_get(l, x, "url");
        if (!u)
            return fail(l, x, key, "is required");
        if ((st = notify_template(l, u, key, &nd->url)) != NS_OK)
            return st;
        if (!notify_url_ok(nd->url))
            return fail(l, u, key, "must be an http:// or https:// URL");
        yaml_node_t *h = map_get(l, x, "headers");
        snprintf(key, sizeof(key), "%s.webhook.headers", where);
        if (h && (st = get_map(l, h, key, &nd->headers)) != NS_OK)
            return st;
        for (size_t i = 0; i < nd->headers.n; i++)
            if (strstr(nd->headers.values[i], "${item.") ||
                strstr(nd->headers.values[i], "${params."))
                return fail(l, h, key, "may use ${env.NAME} and ${job.name} only");
    } else {
        x = map_get(l, n, "command");
        nd->kind = NS_NOTIFY_COMMAND;
        snprintf(key, sizeof(key), "%s.command", where);
        if (x->type != YAML_SEQUENCE_NODE ||
            x->data.sequence.items.top == x->data.sequence.items.start)
            return fail(l, x, key,
                        "must be a list: [\"/path/to/program\", \"arg\", ...] (no shell)");
        size_t cnt = (size_t)(x->data.sequence.items.top - x->data.sequence.items.start);
        if (!(nd->argv = calloc(cnt + 1, sizeof(char *))))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < cnt; i++) {
            char k2[sizeof(key) + 24];
            snprintf(k2, sizeof(k2), "%s[%zu]", key, i);
            if ((st = notify_template(l, node_at(l, x->data.sequence.items.start[i]), k2,
                                      &nd->argv[i])) != NS_OK)
                return st;
            nd->argc = i + 1;
        }
    }
    if ((x = map_get(l, n, "on"))) {
        snprintf(key, sizeof(key), "%s.on", where);
        if (x->type != YAML_SEQUENCE_NODE ||
            x->data.sequence.items.top == x->data.sequence.items.start)
            return fail(l, x, key, "must be a non-empty list of events");
        nd->events = 0;
        for (yaml_node_item_t *it = x->data.sequence.items.start; it < x->data.sequence.items.top;
             it++) {
            int e;
            if ((st = get_choice(l, node_at(l, *it), key, event_names, &e)) != NS_OK)
                return st;
            nd->events |= 1u << e;
        }
    }
    if ((x = map_get(l, n, "every"))) {
        snprintf(key, sizeof(key), "%s.every", where);
        if (!(nd->events & 1u << NS_EVENT_STILL_FAILING))
            return fail(l, x, key, "is for still_failing: add it to on:");
        if ((st = get_posint(l, x, key, 1, 1000000, &nd->every)) != NS_OK)
            return st;
    }
    if ((x = map_get(l, n, "timeout"))) {
        snprintf(key, sizeof(key), "%s.timeout", where);
        if ((st = get_duration(l, x, key, 100, 300 * 1000, &nd->timeout)) != NS_OK)
            return st;
    }
    return NS_OK;
}

static ns_status load_notify(loader *l, const yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start)
        return fail(l, n, "notify", "must be a non-empty list: - slack: {webhook: ...}");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > 32)
        return fail(l, n, "notify", "at most 32 notifications");
    if (!(l->job->notify = calloc(cnt, sizeof(*l->job->notify))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        char where[32];
        snprintf(where, sizeof(where), "notify[%zu]", i);
        l->job->nnotify = i + 1;
        ns_status st = load_notify_one(l, &l->job->notify[i],
                                       node_at(l, n->data.sequence.items.start[i]), where);
        if (st != NS_OK)
            return st;
    }
    return NS_OK;
}

static ns_status load_root(loader *l, yaml_node_t *root)
{
    static const char *const keys[] = {"job",      "description", "restartable",
                                       "params",   "connections", "steps",
                                       "schedule", "notify",      NULL};
    ns_job *job = l->job;
    ns_status st;
    yaml_node_t *x;

    if (!root || root->type != YAML_MAPPING_NODE)
        return fail(l, root, "job", "the file must be a mapping with job: and steps:");
    if ((st = check_keys(l, root, "", keys)) != NS_OK)
        return st;
    if (!(x = map_get(l, root, "job")))
        return fail(l, root, "job", "is required");
    if ((st = get_string(l, x, "job", &job->name)) != NS_OK)
        return st;
    if (!name_ok(job->name) || strlen(job->name) > 128)
        return fail(l, x, "job", "job names use a-z, 0-9, _ and - (at most 128)");
    if ((x = map_get(l, root, "description")) &&
        (st = get_string(l, x, "description", &job->description)) != NS_OK)
        return st;
    job->restartable = true;
    if ((x = map_get(l, root, "restartable")) &&
        (st = get_bool(l, x, "restartable", &job->restartable)) != NS_OK)
        return st;
    if ((x = map_get(l, root, "params")) && (st = load_params(l, x)) != NS_OK)
        return st;
    if ((x = map_get(l, root, "connections")) && (st = load_conns(l, x)) != NS_OK)
        return st;
    if (!(x = map_get(l, root, "steps")))
        return fail(l, root, "steps", "is required");
    if (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start)
        return fail(l, x, "steps", "must be a non-empty list of steps");
    size_t n = (size_t)(x->data.sequence.items.top - x->data.sequence.items.start);
    if (!(job->steps = calloc(n, sizeof(*job->steps))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        job->nsteps = i + 1;
        if ((st = load_step(l, i, node_at(l, x->data.sequence.items.start[i]))) != NS_OK)
            return st;
    }
    if ((x = map_get(l, root, "schedule")) && (st = load_schedule(l, x)) != NS_OK)
        return st;
    if ((x = map_get(l, root, "notify")) && (st = load_notify(l, x)) != NS_OK)
        return st;
    return check_flow(l);
}

/* A job file is small: anything larger, or nested deeper, is refused before
 * it is loaded (libyaml's scanner is quadratic in the nesting of flow
 * collections: 100,000 '[' took validate 28 s). */
#define JOB_MAX_BYTES (16u << 20)
#define JOB_MAX_DEPTH 64

/* Walks the events only as far as the depth limit allows: the scanner looks
 * at most about 1,024 characters ahead, so stopping at JOB_MAX_DEPTH stops
 * the quadratic work too. */
static ns_status check_depth(const char *name, const char *data, size_t len, ns_error *err)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0;
    ns_status st = NS_OK;

    if (!yaml_parser_initialize(&parser))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    for (;;) {
        if (!yaml_parser_parse(&parser, &ev))
            break; /* the loader reports syntax errors, with their context */
        yaml_event_type_t t = ev.type;
        int line = (int)ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT)
            depth++;
        else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT)
            depth--;
        if (depth > JOB_MAX_DEPTH) {
            st = ns__err(err, NS_ECONFIG, NULL,
                         "%s:%d: yaml: nested deeper than %d levels (no job file needs that)", name,
                         line, JOB_MAX_DEPTH);
            break;
        }
        if (t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    return st;
}

ns_status ns__job_load_buffer(const char *name, const char *data, size_t len,
                              const ns_registry *reg, ns_job **out, ns_error *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    ns_status st = NS_OK;
    loader l = {name, &doc, err, NULL, reg};

    if (len > JOB_MAX_BYTES)
        return ns__err(err, NS_ECONFIG, NULL, "%s:1: too large for a job file (over %u MiB)", name,
                       JOB_MAX_BYTES >> 20);
    if ((st = check_depth(name, data, len, err)) != NS_OK)
        return st;
    if (!(l.job = calloc(1, sizeof(*l.job))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (!yaml_parser_initialize(&parser)) {
        free(l.job);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    if (!yaml_parser_load(&parser, &doc)) {
        st = ns__err(err, NS_ECONFIG, NULL, "%s:%d: yaml: %s%s%s", name,
                     (int)parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                     parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        ns_job_free(l.job);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        st = ns__err(err, NS_ECONFIG, NULL, "%s:1: job: the file is empty", name);
    else
        st = load_root(&l, root);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (st == NS_OK && !(l.job->path = ns__strdup("")))
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (st != NS_OK) {
        ns_job_free(l.job);
        return st;
    }
    *out = l.job;
    return NS_OK;
}

ns_status ns__job_load(const char *path, const ns_registry *reg, ns_job **out, ns_error *err)
{
    FILE *f = fopen(path, "rb");
    ns_buf b = {0};
    ns_status st;
    char tmp[65536];
    size_t n;

    if (!f)
        return ns__err(err, NS_ECONFIG, NULL, "%s: cannot open: %s", path, strerror(errno));
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (ns__buf_append(&b, tmp, n) != NS_OK) {
            fclose(f);
            ns__buf_free(&b);
            return ns__err(err, NS_ENOMEM, NULL, "%s: out of memory", path);
        }
        if (b.len > JOB_MAX_BYTES) {
            fclose(f);
            ns__buf_free(&b);
            return ns__err(err, NS_ECONFIG, NULL, "%s:1: too large for a job file (over %u MiB)",
                           path, JOB_MAX_BYTES >> 20);
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        ns__buf_free(&b);
        return ns__err(err, NS_ECONFIG, NULL, "%s: read error", path);
    }
    ns_job *job = NULL;
    st = ns__job_load_buffer(path, b.data ? b.data : "", b.len, reg, &job, err);
    ns__buf_free(&b);
    if (st != NS_OK)
        return st;
    char *abs = realpath(path, NULL);
    if (abs) {
        free(job->path);
        job->path = abs;
    }
    *out = job;
    return NS_OK;
}

void ns_job_free(ns_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->nparams; i++) {
        free(job->params[i].name);
        free(job->params[i].def);
    }
    for (size_t i = 0; i < job->nconns; i++) {
        free(job->conns[i].name);
        free(job->conns[i].url);
    }
    for (size_t i = 0; i < job->nsteps; i++) {
        ns_step_def *s = &job->steps[i];
        free(s->name);
        free(s->rejects);
        free_names(s->retry.on, s->retry.non);
        free_plugin_cfg(s->type, s->type_cfg);
        free_plugin_cfg(s->reader, s->reader_cfg);
        free_plugin_cfg(s->processor, s->proc_cfg);
        free_plugin_cfg(s->writer, s->writer_cfg);
        for (size_t k = 0; k < s->non; k++) {
            free(s->on[k].code);
            free(s->on[k].to);
        }
        free(s->on);
    }
    if (job->schedule) {
        ns_schedule_def *sd = job->schedule;
        free(sd->cron);
        free(sd->timezone);
        free_names(sd->param_names, sd->nparams);
        free_names(sd->param_values, sd->nparams);
        free(sd);
    }
    for (size_t i = 0; i < job->nnotify; i++) {
        ns_notify_def *nd = &job->notify[i];
        free(nd->url);
        free_names(nd->headers.names, nd->headers.n);
        free_names(nd->headers.values, nd->headers.n);
        free_names(nd->argv, nd->argc);
    }
    free(job->notify);
    free(job->params);
    free(job->conns);
    free(job->steps);
    free(job->path);
    free(job->name);
    free(job->description);
    free(job);
}

const char *ns_job_name(const ns_job *job)
{
    return job->name;
}

size_t ns_job_step_count(const ns_job *job)
{
    return job->nsteps;
}

long ns__job_step(const ns_job *job, const char *name)
{
    for (size_t i = 0; i < job->nsteps; i++)
        if (job->steps[i].name && strcmp(job->steps[i].name, name) == 0)
            return (long)i;
    return -1;
}

bool ns__exit_code_known(const char *code)
{
    static const char *const codes[] = {
        "COMPLETED", "COMPLETED_WITH_DIFFERENCES", "FAILED", "ASSERT_FAILED", "STOPPED", "*"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

const ns_param_def *ns__job_param(const ns_job *job, const char *name)
{
    for (size_t i = 0; i < job->nparams; i++)
        if (strcmp(job->params[i].name, name) == 0)
            return &job->params[i];
    return NULL;
}

const ns_conn_def *ns__job_conn(const ns_job *job, const char *name)
{
    for (size_t i = 0; i < job->nconns; i++)
        if (strcmp(job->conns[i].name, name) == 0)
            return &job->conns[i];
    return NULL;
}

static ns_status check_env(const ns_job *job, const char *t, const char *what, ns_error *err)
{
    for (const char *p = t; t && (p = strstr(p, "${env.")) != NULL; p++) {
        const char *e = strchr(p, '}');
        if (!e || (p > t && p[-1] == '$'))
            continue;
        /* the whole name, however long (never cut: a cut name is another) */
        char *name = ns__strndup(p + 6, (size_t)(e - p - 6));
        if (!name)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        bool unset = !strstr(name, ":-") && !getenv(name); /* ":-": it has a default */
        ns_status st =
            unset ? ns__err(err, NS_EPARAM, NULL, "%s: %s uses ${env.%s}, which is not set",
                            job->path[0] ? job->path : job->name, what, name)
                  : NS_OK;
        free(name);
        if (st != NS_OK)
            return st;
    }
    return NS_OK;
}

typedef struct env_walk {
    const ns_job *job;
    ns_error *err;
    ns_status st;
} env_walk;

static bool env_template(void *arg, const ns_step_def *s, const char *key, const char *tmpl,
                         unsigned flags)
{
    env_walk *w = arg;
    (void)s;
    (void)flags;
    w->st = check_env(w->job, tmpl, key, w->err);
    return w->st == NS_OK;
}

ns_status ns__job_check_env(const ns_job *job, ns_error *err)
{
    env_walk w = {job, err, NS_OK};
    char what[300];
    for (size_t i = 0; i < job->nconns && w.st == NS_OK; i++) {
        snprintf(what, sizeof(what), "connections.%s", job->conns[i].name);
        w.st = check_env(job, job->conns[i].url, what, err);
    }
    if (w.st == NS_OK)
        ns__job_templates(job, env_template, &w);
    return w.st;
}
