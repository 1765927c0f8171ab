/*
 * keys.c - the walker of key tables (util/keys.h): a section of a job file
 * read by its table, as Redis's standardConfig: unknown keys, missing
 * required ones and values of the wrong kind are errors naming
 * "FILE:LINE: KEY"; defaults filled in; alternatives ("exactly one of").
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

/* The node of a dotted key under the section, NULL when not given. */
static const yaml_node_t *key_node(const ns_key_ctx *c, const char *dotted)
{
    const yaml_node_t *n = c->map;
    char part[128];
    for (const char *p = dotted; n && *p;) {
        size_t len = strcspn(p, ".");
        snprintf(part, sizeof(part), "%.*s", (int)len, p);
        n = ns__cfg_get(c->l, n, part);
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
    return ns__cfg_fail(c->l, n ? n : c->map, full, "%s", msg);
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
void ns__cfg_join_or(const char *const *v, size_t n, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
                 i == 0       ? ""
                 : i + 1 == n ? " or "
                              : ", ",
                 v[i]);
}

static ns_status read_value(loader *l, const ns_key *k, void *cfg, const yaml_node_t *x,
                            const char *key)
{
    void *at = (char *)cfg + k->offset;
    char **str = at;
    ns_status st;

    switch (k->type) {
    case NS_KEY_STRING:
        return ns__cfg_string(l, x, key, str);
    case NS_KEY_IDENT:
        if ((st = ns__cfg_string(l, x, key, str)) != NS_OK)
            return st;
        if (!**str || strchr(*str, '"'))
            return ns__cfg_fail(l, x, key, "must be a table name");
        return NS_OK;
    case NS_KEY_TEMPLATE:
        return ns__cfg_template(l, x, key, !(k->flags & NS_KEY_NO_STEP), str);
    case NS_KEY_ITEM:
        if ((st = ns__cfg_string(l, x, key, str)) != NS_OK)
            return st;
        if (!**str)
            return ns__cfg_fail(l, x, key, "must not be empty");
        return ns__cfg_check_template(l, x, key, *str, true, true);
    case NS_KEY_MAP:
        return ns__cfg_map(l, x, key, at);
    case NS_KEY_CONNECTION:
        if ((st = ns__cfg_string(l, x, key, str)) != NS_OK)
            return st;
        if (!ns__job_conn(l->job, *str))
            return ns__cfg_fail(l, x, key, "no connection named '%s' in connections", *str);
        return NS_OK;
    case NS_KEY_QUERY:
    case NS_KEY_SCRIPT:
        if ((st = ns__cfg_string(l, x, key, str)) != NS_OK)
            return st;
        return ns__cfg_check_sql(l, x, key, *str, k->type == NS_KEY_QUERY);
    case NS_KEY_BOOL:
        return ns__cfg_bool(l, x, key, at);
    case NS_KEY_INT:
        return ns__cfg_int(l, x, key, k->min, k->max, at);
    case NS_KEY_CHAR:
        return ns__cfg_char(l, x, key, at);
    case NS_KEY_DURATION:
        return ns__cfg_duration(l, x, key, k->min, k->max, at);
    case NS_KEY_NUMBER:
        return ns__cfg_number(l, x, key, (double)k->min, (double)k->max, at);
    case NS_KEY_NAMES: {
        ns_names *v = at;
        return ns__cfg_names(l, x, key, &v->v, &v->n);
    }
    case NS_KEY_ENUM: {
        const char *v = ns__cfg_scalar(x);
        size_t n = 0;
        while (k->choices[n])
            n++;
        for (size_t i = 0; v && i < n; i++)
            if (strcmp(v, k->choices[i]) == 0) {
                *(int *)at = (int)i;
                return NS_OK;
            }
        char list[256];
        ns__cfg_join_or(k->choices, n, list, sizeof(list));
        return ns__cfg_fail(l, x, key, "must be %s", list);
    }
    case NS_KEY_TEXT: {
        ns_text *t = at;
        if ((st = ns__cfg_string(l, x, key, &t->text)) != NS_OK)
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
        if ((st = ns__cfg_string(l, x, key, &rel)) != NS_OK)
            return st;
        path = ns__cfg_beside(l, rel);
        if (!path || !(text = ns__cfg_slurp(path, &len)))
            st =
                ns__cfg_fail(l, x, key, "cannot read '%s': %s", path ? path : rel, strerror(errno));
        free(path);
        if (st == NS_OK && k->type == NS_KEY_FILE) {
            ns_text *t = at;
            t->text = text;
            t->len = len;
            if (!(t->origin = ns__asprintf("@%s", rel)))
                st = ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        } else if (st == NS_OK) {
            *str = text;
            st = ns__cfg_check_sql(l, x, key, text, false);
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
        return ns__cfg_load_keys(l, k->sub, *sec, x, key);
    }
    }
    return ns__cfg_fail(l, x, key, "unknown kind of key");
}

static ns_status default_value(loader *l, const ns_key *k, void *cfg)
{
    void *at = (char *)cfg + k->offset;
    if (!k->def)
        return NS_OK;
    switch (k->type) {
    case NS_KEY_BOOL:
        ns__parse_bool(k->def, at);
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
    return ns__cfg_fail(l, n, where, "%s", msg);
}

/* Reads the keys of a table from mapping n into cfg; strict: any other key
 * in n is an error (else the caller has checked them: a section that mixes
 * a table's keys with others read elsewhere, such as a step's). */
ns_status ns__cfg_walk_keys(loader *l, const ns_key *keys, void *cfg, const yaml_node_t *n,
                            const char *where, bool strict)
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
        return ns__cfg_fail(l, n, where, "must be a mapping%s", req);
    }
    for (size_t i = 0; i < nk && i < 63; i++)
        allowed[i] = keys[i].name;
    allowed[nk < 63 ? nk : 63] = NULL;
    if (strict && (st = ns__cfg_check_keys(l, n, where, allowed)) != NS_OK)
        return st;
    for (size_t i = 0; i < nk; i++) {
        const ns_key *k = &keys[i];
        bool group = false, given_other = false, required = false, first = true;
        for (size_t j = 0; j < nk; j++) {
            if (j == i || keys[j].offset != k->offset)
                continue;
            group = true;
            given_other |= ns__cfg_get(l, n, keys[j].name) != NULL;
            first &= j > i;
        }
        for (size_t j = 0; j < nk; j++)
            if (keys[j].offset == k->offset)
                required |= (keys[j].flags & NS_KEY_REQUIRED) != 0;
        snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", k->name);
        yaml_node_t *x = ns__cfg_get(l, n, k->name);
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
            return ns__cfg_fail(l, n, key, "is required%s%s", k->hint ? ": " : "",
                                k->hint ? k->hint : "");
        if ((st = default_value(l, k, cfg)) != NS_OK)
            return st;
    }
    return NS_OK;
}

ns_status ns__cfg_load_keys(loader *l, const ns_key *keys, void *cfg, const yaml_node_t *n,
                            const char *where)
{
    return ns__cfg_walk_keys(l, keys, cfg, n, where, true);
}

void ns__cfg_free_keys(const ns_key *keys, void *cfg)
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
            ns__cfg_free_names(v->v, v->n);
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
            ns__cfg_free_keys(k->sub, *sec);
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

void ns__cfg_free_plugin(const ns_plugin *p, void *cfg)
{
    if (p && cfg)
        ns__cfg_free_keys(p->keys, cfg);
    free(cfg);
}

ns_status ns__cfg_choice(loader *l, const yaml_node_t *n, const char *key,
                         const char *const *choices, int *out)
{
    const char *v = ns__cfg_scalar(n);
    char list[256];
    size_t nc = 0;
    for (; choices[nc]; nc++)
        if (v && strcmp(v, choices[nc]) == 0)
            return (*out = (int)nc), NS_OK;
    ns__cfg_join_or(choices, nc, list, sizeof(list)); /* as the key tables say it */
    return ns__cfg_fail(l, n, key, "must be %s", list);
}
