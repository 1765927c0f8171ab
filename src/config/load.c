/*
 * load.c - the job file loader (docs/jobs.md): the job's structure
 * (params, connections, steps and their flow, retry), each section by its
 * key table where it has one (keys.c); schedule: and notify: in
 * schedule.c. The job it makes is freed here too (ns_job_free).
 *
 * The file is read with libyaml's document API so that every node keeps its
 * line. The loader walks only the keys it knows, checks each one, and stops at
 * the first problem with "PATH:LINE: KEY: message". Unknown keys are errors:
 * a misspelt `chunks:` must not silently mean the default.
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

/* One parameter's declaration: params.NAME: {type, required, default,
 * identifying}, or just its type's name. */
typedef struct param_cfg {
    char *type;
    bool required, identifying;
    char *def;
} param_cfg;

static const ns_key param_keys[] = {
    {.name = "type", .type = NS_KEY_STRING, .offset = offsetof(param_cfg, type), .def = "string"},
    {.name = "required", .type = NS_KEY_BOOL, .offset = offsetof(param_cfg, required)},
    {.name = "default", .type = NS_KEY_STRING, .offset = offsetof(param_cfg, def)},
    {.name = "identifying",
     .type = NS_KEY_BOOL,
     .offset = offsetof(param_cfg, identifying),
     .def = "true"},
    {0}};

/* A connection: a URL, or {url: URL, statement_timeout: DURATION}. */
static const ns_key conn_keys[] = {{.name = "url",
                                    .type = NS_KEY_TEMPLATE,
                                    .offset = offsetof(ns_conn_def, url),
                                    .flags = NS_KEY_REQUIRED | NS_KEY_NO_STEP},
                                   {.name = "statement_timeout",
                                    .type = NS_KEY_DURATION,
                                    .offset = offsetof(ns_conn_def, statement_timeout),
                                    .def = "1h",
                                    .max = 7 * 24 * 3600 * 1000LL},
                                   {0}};

/* A section's entry names (params, connections): a mapping of distinct
 * names, each checked by ok(); calls each(i, name, its node) in order. */
static ns_status entries(loader *l, const yaml_node_t *map, const char *section, const char *shape,
                         bool (*ok)(const char *name), const char *bad_name, const char *dup,
                         ns_status (*each)(loader *l, size_t i, const char *name,
                                           const yaml_node_t *kn, const yaml_node_t *v))
{
    char key[256];
    if (map->type != YAML_MAPPING_NODE)
        return ns__cfg_fail(l, map, section, "must be %s", shape);
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &map->data.mapping.pairs.start[i];
        yaml_node_t *kn = ns__cfg_node(l, p->key);
        const char *name = ns__cfg_scalar(kn);
        snprintf(key, sizeof(key), "%s.%s", section, name ? name : "?");
        if (!name || !ok(name))
            return ns__cfg_fail(l, kn, key, "%s", bad_name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(ns__cfg_scalar(ns__cfg_node(l, map->data.mapping.pairs.start[j].key)),
                       name) == 0)
                return ns__cfg_fail(l, kn, key, "%s", dup);
        ns_status st = each(l, i, name, kn, ns__cfg_node(l, p->value));
        if (st != NS_OK)
            return st;
    }
    return NS_OK;
}

static bool param_name_ok(const char *name)
{
    return *name && !strchr(name, '=') && strcmp(name, "run.id") != 0;
}

static ns_status load_param(loader *l, size_t i, const char *name, const yaml_node_t *kn,
                            const yaml_node_t *v)
{
    ns_param_def *pd = &l->job->params[l->job->nparams++];
    param_cfg c = {0};
    char key[256], k2[300];
    ns_status st;
    (void)i;
    snprintf(key, sizeof(key), "params.%s", name);
    if (!(pd->name = ns__strdup(name)))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    pd->identifying = true;
    pd->line = (int)kn->start_mark.line + 1;
    const yaml_node_t *tn = v;
    if (ns__cfg_scalar(v)) { /* file: int */
        if (!(c.type = ns__strdup(ns__cfg_scalar(v))))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        c.identifying = true;
    } else if (v->type != YAML_MAPPING_NODE) {
        return ns__cfg_fail(l, v, key, "must be a type name or {type: ..., ...}");
    } else if ((st = ns__cfg_load_keys(l, param_keys, &c, v, key)) != NS_OK) {
        goto out;
    } else if (!(tn = ns__cfg_get(l, v, "type"))) {
        tn = v;
    }
    snprintf(k2, sizeof(k2), "%s.type", key);
    bool found = false;
    for (int t = 0; t <= NS_P_TIMESTAMP; t++)
        if (strcmp(c.type, ns__ptype_name((ns_ptype)t)) == 0)
            pd->type = (ns_ptype)t, found = true;
    st = NS_OK;
    if (!found)
        st = ns__cfg_fail(l, tn, k2,
                          "unknown type '%s' (string, int, float, bool, date, timestamp)", c.type);
    pd->required = c.required;
    pd->identifying = c.identifying;
    if (st == NS_OK && c.def) {
        char why[160];
        const yaml_node_t *dn = ns__cfg_get(l, v, "default");
        snprintf(k2, sizeof(k2), "%s.default", key);
        if (!ns__param_value(pd->type, c.def, NULL, why, sizeof(why)))
            st = ns__cfg_fail(l, dn, k2, "%s", why);
        else if (pd->required)
            st = ns__cfg_fail(l, dn, k2, "a required parameter cannot have a default");
        pd->def = c.def;
        c.def = NULL;
    }
out:
    ns__cfg_free_keys(param_keys, &c);
    return st;
}

static ns_status load_params(loader *l, const yaml_node_t *map)
{
    size_t n = map->type == YAML_MAPPING_NODE
                   ? (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start)
                   : 0;
    if (!(l->job->params = calloc(n ? n : 1, sizeof(*l->job->params))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    return entries(l, map, "params", "a mapping of parameter names", param_name_ok,
                   "invalid parameter name", "duplicate parameter", load_param);
}

static ns_status load_conn(loader *l, size_t i, const char *name, const yaml_node_t *kn,
                           const yaml_node_t *v)
{
    ns_conn_def *c = &l->job->conns[l->job->nconns++];
    char key[256];
    ns_status st;
    (void)i;
    (void)kn;
    snprintf(key, sizeof(key), "connections.%s", name);
    if (!(c->name = ns__strdup(name)))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    c->line = (int)v->start_mark.line + 1;
    const yaml_node_t *un = v;
    if (v->type == YAML_MAPPING_NODE) {
        if ((st = ns__cfg_load_keys(l, conn_keys, c, v, key)) != NS_OK)
            return st;
        un = ns__cfg_get(l, v, "url");
    } else {
        c->statement_timeout = NS_STATEMENT_TIMEOUT;
        if ((st = ns__cfg_template(l, v, key, false, &c->url)) != NS_OK)
            return st;
    }
    if (!strchr(c->url, '$') && !ns__db_find(l->reg, c->url)) {
        char shown[512], forms[256];
        ns__db_shown(c->url, shown, sizeof(shown));
        ns__db_forms(l->reg, forms, sizeof(forms));
        return ns__cfg_fail(l, un, key, "unsupported URL '%s' (use %s)", shown, forms);
    }
    return NS_OK;
}

static ns_status load_conns(loader *l, const yaml_node_t *map)
{
    size_t n = map->type == YAML_MAPPING_NODE
                   ? (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start)
                   : 0;
    if (!(l->job->conns = calloc(n ? n : 1, sizeof(*l->job->conns))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    return entries(l, map, "connections", "a mapping of names to URLs", ns__cfg_name_ok,
                   "connection names use a-z, 0-9, _ and -", "duplicate connection", load_conn);
}

/* ------------------------------------------------- plugin sections */

/* Reads a plugin's section into a configuration of its own. */
static ns_status load_plugin(loader *l, const ns_plugin *p, const yaml_node_t *n, const char *where,
                             void **cfg)
{
    ns_status st;
    if (!(*cfg = calloc(1, p->cfg_size ? p->cfg_size : 1)))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    if ((st = ns__cfg_load_keys(l, p->keys, *cfg, n, where)) != NS_OK)
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
        return ns__cfg_fail(l, n, where, "must name exactly one %s (%s), e.g. {%s: {...}}", what,
                            names, kind == NS_PLUGIN_READER ? "csv" : "table");
    yaml_node_pair_t *p = n->data.mapping.pairs.start;
    yaml_node_t *kn = ns__cfg_node(l, p->key);
    const char *name = ns__cfg_scalar(kn);
    snprintf(key, sizeof(key), "%s.%s", where, name ? name : "?");
    if (!name || !(*pl = ns__plugin_find(l->reg, kind, name)))
        return ns__cfg_fail(l, kn, key, "unknown key (expected one of: %s)", names);
    return load_plugin(l, *pl, ns__cfg_node(l, p->value), key, cfg);
}

/* processor: {lua: ..., columns: ..., ...}: the section of the processor
 * whose name is one of its keys (a lone file: is a Lua script). */
static ns_status load_processor(loader *l, ns_step_def *s, const yaml_node_t *n, const char *where)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return ns__cfg_fail(l, n, where,
                            "must be a mapping such as {lua: \"function process(item) ...\"}");
    for (size_t i = 0; i < l->reg->n && !s->processor; i++)
        if (l->reg->plugins[i]->kind == NS_PLUGIN_PROCESSOR &&
            ns__cfg_get(l, n, l->reg->plugins[i]->name))
            s->processor = l->reg->plugins[i];
    if (!s->processor && ns__cfg_get(l, n, "file"))
        s->processor = ns__plugin_find(l->reg, NS_PLUGIN_PROCESSOR, "lua");
    if (!s->processor) {
        char names[256];
        plugin_names(l, NS_PLUGIN_PROCESSOR, names, sizeof(names));
        return ns__cfg_fail(l, n, where, "names no processor (%s)", names);
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
        return ns__cfg_fail(
            l, n, where,
            "must map exit codes to a step, end, fail or stop, e.g. {ASSERT_FAILED: "
            "alert, \"*\": end}");
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (!(s->on = calloc(cnt, sizeof(*s->on))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        ns_transition *t = &s->on[s->non++];
        yaml_node_t *k = ns__cfg_node(l, p->key), *v = ns__cfg_node(l, p->value);
        const char *code = ns__cfg_scalar(k);
        char key[300];
        if (!code)
            return ns__cfg_fail(l, k, where, "keys must be exit codes");
        snprintf(key, sizeof(key), "%s.%s", where, code);
        if (!ns__exit_code_known(code))
            return ns__cfg_fail(l, k, key,
                                "not an exit code (COMPLETED, COMPLETED_WITH_DIFFERENCES, FAILED, "
                                "ASSERT_FAILED, STOPPED, or \"*\" for any other)");
        for (size_t j = 0; j + 1 < s->non; j++)
            if (strcmp(s->on[j].code, code) == 0)
                return ns__cfg_fail(l, k, key, "is listed twice");
        if (!(t->code = ns__strdup(code)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        ns_status st = ns__cfg_string(l, v, key, &t->to);
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

static ns_status load_retry(loader *l, ns_step_def *s, const yaml_node_t *n, const char *where)
{
    retry_cfg c = {0};
    char key[160];
    ns_status st = ns__cfg_load_keys(l, retry_keys, &c, n, where);
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
            st = ns__cfg_fail(l, ns__cfg_get(l, n, "backoff"), key,
                              "initial (%gs) must not be longer than max (%gs)", s->retry.initial,
                              s->retry.max);
            goto out;
        }
    }
    for (size_t i = 0; i < c.on.n; i++)
        if (!ns__retry_on_valid(c.on.v[i])) {
            yaml_node_t *list = ns__cfg_get(l, n, "on");
            snprintf(key, sizeof(key), "%s.on[%zu]", where, i);
            st = ns__cfg_fail(
                l, ns__cfg_node(l, list->data.sequence.items.start[i]), key,
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
    ns__cfg_free_keys(retry_keys, &c);
    return st;
}

/* A chunk step's own keys (its reader, processor and writer are plugins'
 * sections, read by their tables). */
typedef struct skip_cfg {
    int64_t limit;
} skip_cfg;

static const ns_key skip_keys[] = {{.name = "limit",
                                    .type = NS_KEY_INT,
                                    .offset = offsetof(skip_cfg, limit),
                                    .def = "0",
                                    .max = INT64_MAX},
                                   {0}};

typedef struct chunk_cfg {
    int64_t chunk;
    skip_cfg *skip;
    char *rejects;
} chunk_cfg;

static const ns_key chunk_step_keys[] = {
    {.name = "chunk",
     .type = NS_KEY_INT,
     .offset = offsetof(chunk_cfg, chunk),
     .def = "1000",
     .min = 1,
     .max = 1000000},
    {.name = "skip",
     .type = NS_KEY_SECTION,
     .offset = offsetof(chunk_cfg, skip),
     .sub = skip_keys,
     .sub_size = sizeof(skip_cfg)},
    {.name = "rejects",
     .type = NS_KEY_TEMPLATE,
     .offset = offsetof(chunk_cfg, rejects),
     .def = "rejects/${job.name}-${execution.id}-${step.name}.csv"},
    {0}};

static ns_status load_step(loader *l, size_t i, const yaml_node_t *n)
{
    static const char *const chunk_keys[] = {"name",   "chunk", "reader",  "processor",
                                             "writer", "skip",  "rejects", "retry"};
    static const char *const chunk_only[] = {"chunk", "reader",  "processor", "writer",
                                             "skip",  "rejects", NULL};
    ns_step_def *s = &l->job->steps[i];
    char where[64], key[128];
    ns_status st;
    yaml_node_t *x;

    snprintf(where, sizeof(where), "steps[%zu]", i);
    if (n->type != YAML_MAPPING_NODE)
        return ns__cfg_fail(l, n, where, "must be a mapping with name:, reader: and writer:");
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
    if ((st = ns__cfg_check_keys(l, n, where, keys)) != NS_OK)
        return st;
    s->line = (int)n->start_mark.line + 1;
    snprintf(key, sizeof(key), "%s.name", where);
    if (!(x = ns__cfg_get(l, n, "name")))
        return ns__cfg_fail(l, n, key, "is required");
    if ((st = ns__cfg_string(l, x, key, &s->name)) != NS_OK)
        return st;
    if (!ns__cfg_name_ok(s->name))
        return ns__cfg_fail(l, x, key, "step names use a-z, 0-9, _ and -");
    for (size_t j = 0; j < i; j++)
        if (strcmp(l->job->steps[j].name, s->name) == 0)
            return ns__cfg_fail(l, x, key, "another step is already named '%s'", s->name);
    if (strcmp(s->name, "end") == 0 || strcmp(s->name, "fail") == 0 || strcmp(s->name, "stop") == 0)
        return ns__cfg_fail(l, x, key, "'%s' names a flow outcome (on: ...: %s); use another name",
                            s->name, s->name);
    snprintf(key, sizeof(key), "%s.on", where);
    if ((x = ns__cfg_get(l, n, "on")) && (st = load_on(l, s, x, key)) != NS_OK)
        return st;

    /* What the step does: a reader and a writer (a chunk step), or exactly
     * one step type's section. */
    const ns_plugin *type = NULL;
    char kinds[256] = "reader: and writer:";
    size_t nkinds = ns__cfg_get(l, n, "reader") || ns__cfg_get(l, n, "writer") ? 1 : 0;
    for (size_t k = 0; k < l->reg->n; k++) {
        const ns_plugin *p = l->reg->plugins[k];
        if (p->kind != NS_PLUGIN_STEP || !p->keys)
            continue;
        snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds), ", %s:", p->name);
        if (ns__cfg_get(l, n, p->name)) {
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
        return ns__cfg_fail(l, n, where, "must do exactly one thing: %s", kinds);
    if (type) {
        for (size_t k = 0; chunk_only[k]; k++)
            if ((x = ns__cfg_get(l, n, chunk_only[k]))) {
                snprintf(key, sizeof(key), "%s.%s", where, chunk_only[k]);
                return ns__cfg_fail(l, x, key, "only for reader/writer steps");
            }
        /* sql, assert, rebuild: retried as a whole (one transaction) */
        snprintf(key, sizeof(key), "%s.retry", where);
        s->retry = ns__retry_default;
        if ((x = ns__cfg_get(l, n, "retry"))) {
            if (strcmp(type->name, "compare") == 0)
                return ns__cfg_fail(l, x, key,
                                    "not for compare steps (a compare is not retried yet)");
            if ((st = load_retry(l, s, x, key)) != NS_OK)
                return st;
        }
        s->type = type;
        snprintf(key, sizeof(key), "%s.%s", where, type->name);
        return load_plugin(l, type, ns__cfg_get(l, n, type->name), key, &s->type_cfg);
    }
    if (!(s->type = ns__plugin_find(l->reg, NS_PLUGIN_STEP, "chunk")))
        return ns__cfg_fail(l, n, where, "no chunk step type in this build");
    chunk_cfg cc = {0};
    st = ns__cfg_walk_keys(l, chunk_step_keys, &cc, n, where, false);
    s->chunk = cc.chunk;
    s->skip_limit = cc.skip ? cc.skip->limit : 0;
    s->rejects = cc.rejects;
    cc.rejects = NULL;
    ns__cfg_free_keys(chunk_step_keys, &cc);
    if (st != NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.processor", where);
    if ((x = ns__cfg_get(l, n, "processor")) && (st = load_processor(l, s, x, key)) != NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.reader", where);
    if (!(x = ns__cfg_get(l, n, "reader")))
        return ns__cfg_fail(l, n, key, "is required");
    if ((st = load_one_of(l, NS_PLUGIN_READER, "reader", x, key, &s->reader, &s->reader_cfg)) !=
        NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.writer", where);
    if (!(x = ns__cfg_get(l, n, "writer")))
        return ns__cfg_fail(l, n, key, "is required");
    if ((st = load_one_of(l, NS_PLUGIN_WRITER, "writer", x, key, &s->writer, &s->writer_cfg)) !=
        NS_OK)
        return st;
    snprintf(key, sizeof(key), "%s.retry", where);
    s->retry = ns__retry_default;
    if ((x = ns__cfg_get(l, n, "retry")) && (st = load_retry(l, s, x, key)) != NS_OK)
        return st;
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
        return ns__cfg_fail(l, root, "job", "the file must be a mapping with job: and steps:");
    if ((st = ns__cfg_check_keys(l, root, "", keys)) != NS_OK)
        return st;
    if (!(x = ns__cfg_get(l, root, "job")))
        return ns__cfg_fail(l, root, "job", "is required");
    if ((st = ns__cfg_string(l, x, "job", &job->name)) != NS_OK)
        return st;
    if (!ns__cfg_name_ok(job->name) || strlen(job->name) > 128)
        return ns__cfg_fail(l, x, "job", "job names use a-z, 0-9, _ and - (at most 128)");
    if ((x = ns__cfg_get(l, root, "description")) &&
        (st = ns__cfg_string(l, x, "description", &job->description)) != NS_OK)
        return st;
    job->restartable = true;
    if ((x = ns__cfg_get(l, root, "restartable")) &&
        (st = ns__cfg_bool(l, x, "restartable", &job->restartable)) != NS_OK)
        return st;
    if ((x = ns__cfg_get(l, root, "params")) && (st = load_params(l, x)) != NS_OK)
        return st;
    if ((x = ns__cfg_get(l, root, "connections")) && (st = load_conns(l, x)) != NS_OK)
        return st;
    if (!(x = ns__cfg_get(l, root, "steps")))
        return ns__cfg_fail(l, root, "steps", "is required");
    if (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start)
        return ns__cfg_fail(l, x, "steps", "must be a non-empty list of steps");
    size_t n = (size_t)(x->data.sequence.items.top - x->data.sequence.items.start);
    if (!(job->steps = calloc(n, sizeof(*job->steps))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        job->nsteps = i + 1;
        if ((st = load_step(l, i, ns__cfg_node(l, x->data.sequence.items.start[i]))) != NS_OK)
            return st;
    }
    if ((x = ns__cfg_get(l, root, "schedule")) && (st = ns__cfg_schedule(l, x)) != NS_OK)
        return st;
    if ((x = ns__cfg_get(l, root, "notify")) && (st = ns__cfg_notify(l, x)) != NS_OK)
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
        ns__cfg_free_names(s->retry.on, s->retry.non);
        ns__cfg_free_plugin(s->type, s->type_cfg);
        ns__cfg_free_plugin(s->reader, s->reader_cfg);
        ns__cfg_free_plugin(s->processor, s->proc_cfg);
        ns__cfg_free_plugin(s->writer, s->writer_cfg);
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
        ns__cfg_free_names(sd->param_names, sd->nparams);
        ns__cfg_free_names(sd->param_values, sd->nparams);
        free(sd);
    }
    for (size_t i = 0; i < job->nnotify; i++) {
        ns_notify_def *nd = &job->notify[i];
        free(nd->url);
        ns__cfg_free_names(nd->headers.names, nd->headers.n);
        ns__cfg_free_names(nd->headers.values, nd->headers.n);
        ns__cfg_free_names(nd->argv, nd->argc);
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
