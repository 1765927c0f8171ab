/*
 * schedule.c - a job file's schedule: and notify: sections
 * (docs/scheduling.md): the schedule's keys by their table, its params and
 * misfire of shapes of their own, the cron expression and zone checked as
 * they load; each notification and its events.
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

#include "sched/cron.h"
#include "sched/tz.h"

/* ------------------------------------------------ schedule: and notify: */

static ns_status sched_params(loader *l, ns_schedule_def *sd, const yaml_node_t *n)
{
    if (n->type != YAML_MAPPING_NODE)
        return ns__cfg_fail(l, n, "schedule.params",
                            "must be a mapping of parameter names to values");
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (!(sd->param_names = calloc(cnt ? cnt : 1, sizeof(char *))) ||
        !(sd->param_values = calloc(cnt ? cnt : 1, sizeof(char *))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *kn = ns__cfg_node(l, p->key), *v = ns__cfg_node(l, p->value);
        const char *name = ns__cfg_scalar(kn);
        char key[300];
        snprintf(key, sizeof(key), "schedule.params.%s", name ? name : "?");
        const ns_param_def *pd = name ? ns__job_param(l->job, name) : NULL;
        if (!pd)
            return ns__cfg_fail(l, kn, key, "no such parameter in params");
        for (size_t j = 0; j < sd->nparams; j++)
            if (strcmp(sd->param_names[j], name) == 0)
                return ns__cfg_fail(l, kn, key, "given twice");
        if (!(sd->param_names[sd->nparams] = ns__strdup(name)))
            return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
        sd->nparams++;
        ns_status st = ns__cfg_string(l, v, key, &sd->param_values[sd->nparams - 1]);
        if (st != NS_OK)
            return st;
        const char *val = sd->param_values[sd->nparams - 1];
        char why[160];
        if (strchr(val, '$'))
            return ns__cfg_fail(l, v, key, "takes a value, not a ${...} reference");
        if (strcmp(val, "scheduled") == 0 && (pd->type == NS_P_DATE || pd->type == NS_P_TIMESTAMP))
            continue;
        if (pd->type == NS_P_DATE && !ns__param_value(pd->type, val, NULL, why, sizeof(why)))
            return ns__cfg_fail(
                l, v, key, "'%s' is not a date (YYYY-MM-DD, today, yesterday or scheduled)", val);
        if (pd->type == NS_P_TIMESTAMP && !ns__param_value(pd->type, val, NULL, why, sizeof(why)))
            return ns__cfg_fail(l, v, key,
                                "'%s' is not a timestamp (YYYY-MM-DDTHH:MM:SS or scheduled)", val);
        if (!ns__param_value(pd->type, val, NULL, why, sizeof(why)))
            return ns__cfg_fail(l, v, key, "%s", why);
    }
    return NS_OK;
}

/* schedule: its keys. params: and misfire: have shapes of their own
 * (read by sched_params and sched_misfire); the rest by the table. */
static const char *const overlaps[] = {"forbid", "queue_one", "allow", NULL};
static const char *const gaps[] = {"next", "shift", "skip", NULL};
static const char *const repeats[] = {"first", "last", "both", NULL};

typedef struct dst_cfg {
    int gap, repeat;
} dst_cfg;

static const ns_key dst_keys[] = {
    {.name = "gap", .type = NS_KEY_ENUM, .offset = offsetof(dst_cfg, gap), .choices = gaps},
    {.name = "repeat",
     .type = NS_KEY_ENUM,
     .offset = offsetof(dst_cfg, repeat),
     .choices = repeats},
    {0}};

typedef struct sched_cfg {
    char *cron, *timezone;
    int overlap;
    dst_cfg *dst;
    double deadline, jitter;
} sched_cfg;

static const ns_key sched_keys[] = {{.name = "cron",
                                     .type = NS_KEY_STRING,
                                     .offset = offsetof(sched_cfg, cron),
                                     .flags = NS_KEY_REQUIRED,
                                     .hint = "\"0 3 * * *\" is at 03:00 every day"},
                                    {.name = "timezone",
                                     .type = NS_KEY_STRING,
                                     .offset = offsetof(sched_cfg, timezone),
                                     .def = "UTC"},
                                    {.name = "overlap",
                                     .type = NS_KEY_ENUM,
                                     .offset = offsetof(sched_cfg, overlap),
                                     .def = "forbid",
                                     .choices = overlaps},
                                    {.name = "dst",
                                     .type = NS_KEY_SECTION,
                                     .offset = offsetof(sched_cfg, dst),
                                     .sub = dst_keys,
                                     .sub_size = sizeof(dst_cfg)},
                                    {.name = "deadline",
                                     .type = NS_KEY_DURATION,
                                     .offset = offsetof(sched_cfg, deadline),
                                     .def = "1h",
                                     .min = 1000,
                                     .max = 366LL * 86400 * 1000},
                                    {.name = "jitter",
                                     .type = NS_KEY_DURATION,
                                     .offset = offsetof(sched_cfg, jitter),
                                     .def = "0s",
                                     .max = 3600 * 1000},
                                    {0}};

/* misfire: skip | run_once | catch_up, or {policy: catch_up, max: N}. */
static ns_status sched_misfire(loader *l, ns_schedule_def *sd, const yaml_node_t *x)
{
    static const char *const misfires[] = {"skip", "run_once", "catch_up", NULL};
    const yaml_node_t *pol = x;
    ns_status st;
    int v;
    if (x->type == YAML_MAPPING_NODE) {
        static const char *const mk[] = {"policy", "max", NULL};
        if ((st = ns__cfg_check_keys(l, x, "schedule.misfire", mk)) != NS_OK)
            return st;
        if (!(pol = ns__cfg_get(l, x, "policy")))
            return ns__cfg_fail(l, x, "schedule.misfire.policy",
                                "is required (skip, run_once or catch_up)");
    }
    if ((st = ns__cfg_choice(l, pol, "schedule.misfire", misfires, &v)) != NS_OK)
        return st;
    sd->misfire = (ns_misfire)v;
    yaml_node_t *m = x->type == YAML_MAPPING_NODE ? ns__cfg_get(l, x, "max") : NULL;
    if (m && sd->misfire != NS_MISFIRE_CATCH_UP)
        return ns__cfg_fail(l, m, "schedule.misfire.max", "is for policy: catch_up only");
    if (m && (st = ns__cfg_int(l, m, "schedule.misfire.max", 1, 1000, &sd->catch_up_max)) != NS_OK)
        return st;
    return NS_OK;
}

ns_status ns__cfg_schedule(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"cron", "timezone", "params", "misfire", "overlap",
                                       "dst",  "deadline", "jitter", NULL};
    ns_status st;
    yaml_node_t *x;
    sched_cfg c = {0};

    if (n->type == YAML_SCALAR_NODE)
        return ns__cfg_fail(l, n, "schedule",
                            "must be a mapping: schedule: {cron: \"0 3 * * *\", ...}");
    if (n->type != YAML_MAPPING_NODE)
        return ns__cfg_fail(l, n, "schedule", "must be a mapping with cron:");
    if ((st = ns__cfg_check_keys(l, n, "schedule", keys)) != NS_OK)
        return st;
    ns_schedule_def *sd = l->job->schedule = calloc(1, sizeof(*sd));
    if (!sd)
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    sd->line = (int)n->start_mark.line + 1;
    sd->misfire = NS_MISFIRE_RUN_ONCE;
    sd->catch_up_max = NS_CATCH_UP_MAX;
    if ((st = ns__cfg_walk_keys(l, sched_keys, &c, n, "schedule", false)) != NS_OK)
        goto out;
    sd->cron = c.cron;
    sd->timezone = c.timezone;
    c.cron = c.timezone = NULL;
    sd->overlap = (ns_overlap)c.overlap;
    sd->gap = c.dst ? (ns_dst_gap)c.dst->gap : NS_GAP_NEXT;
    sd->repeat = c.dst ? (ns_dst_repeat)c.dst->repeat : NS_REPEAT_FIRST;
    sd->deadline = c.deadline;
    sd->jitter = c.jitter;
    char why[256];
    if (!ns_cron_parse(sd->cron, &sd->expr, why, sizeof(why))) {
        st = ns__cfg_fail(l, ns__cfg_get(l, n, "cron"), "schedule.cron", "\"%s\": %s", sd->cron,
                          why);
        goto out;
    }
    ns_tz *tz;
    ns_error e = {0};
    if (ns_tz_load(sd->timezone, &tz, &e) != NS_OK) {
        st = ns__cfg_fail(l, ns__cfg_get(l, n, "timezone"), "schedule.timezone", "%s", e.message);
        goto out;
    }
    ns_tz_free(tz);
    if ((x = ns__cfg_get(l, n, "params")) && (st = sched_params(l, sd, x)) != NS_OK)
        goto out;
    if ((x = ns__cfg_get(l, n, "misfire")) && (st = sched_misfire(l, sd, x)) != NS_OK)
        goto out;
    if (sd->jitter >= sd->deadline) {
        x = ns__cfg_get(l, n, "jitter");
        st = ns__cfg_fail(l, x ? x : n, "schedule.jitter",
                          "must be shorter than the deadline (%gs)", sd->deadline);
    }
out:
    ns__cfg_free_keys(sched_keys, &c);
    return st;
}

/* A template of a notification: ${env.X}, ${job.name}; no parameters (a
 * notification is about the job, whatever run it is). */
static ns_status notify_template(loader *l, const yaml_node_t *n, const char *key, char **out)
{
    ns_status st = ns__cfg_template(l, n, key, false, out);
    if (st == NS_OK && (strstr(*out, "${params.") || strstr(*out, "${execution.")))
        return ns__cfg_fail(l, n, key, "may use ${env.NAME} and ${job.name} only");
    return st;
}

/* An http(s) URL, or one a ${...} begins (known only at run time). */
static bool notify_url_ok(const char *u)
{
    return strncmp(u, "${", 2) == 0 || strncasecmp(u, "http://", 7) == 0 ||
           strncasecmp(u, "https://", 8) == 0;
}

/* One notification's keys. slack:, webhook: and command: are
 * alternatives; command: (a list: the program and its arguments) and on:
 * (a list of events) have shapes of their own, read after the table. */
typedef struct slack_cfg {
    char *webhook;
} slack_cfg;

typedef struct webhook_cfg {
    char *url;
    ns_map headers;
} webhook_cfg;

typedef struct notify_cfg {
    void *kind; /* slack_cfg or webhook_cfg (command: read below) */
    int64_t every;
    double timeout;
} notify_cfg;

static const ns_key slack_keys[] = {{.name = "webhook",
                                     .type = NS_KEY_STRING,
                                     .offset = offsetof(slack_cfg, webhook),
                                     .flags = NS_KEY_REQUIRED,
                                     .hint = "the incoming webhook's URL"},
                                    {0}};

static const ns_key webhook_keys[] = {
    {.name = "url",
     .type = NS_KEY_STRING,
     .offset = offsetof(webhook_cfg, url),
     .flags = NS_KEY_REQUIRED},
    {.name = "headers", .type = NS_KEY_MAP, .offset = offsetof(webhook_cfg, headers)},
    {0}};

static const ns_key notify_keys[] = {{.name = "slack",
                                      .type = NS_KEY_SECTION,
                                      .offset = offsetof(notify_cfg, kind),
                                      .sub = slack_keys,
                                      .sub_size = sizeof(slack_cfg),
                                      .flags = NS_KEY_REQUIRED,
                                      .hint = "{webhook: \"${env.SLACK_WEBHOOK}\"}"},
                                     {.name = "webhook",
                                      .type = NS_KEY_SECTION,
                                      .offset = offsetof(notify_cfg, kind),
                                      .sub = webhook_keys,
                                      .sub_size = sizeof(webhook_cfg),
                                      .flags = NS_KEY_REQUIRED,
                                      .hint = "{url: ..., headers: {...}}"},
                                     {.name = "every",
                                      .type = NS_KEY_INT,
                                      .offset = offsetof(notify_cfg, every),
                                      .def = "1",
                                      .min = 1,
                                      .max = 1000000},
                                     {.name = "timeout",
                                      .type = NS_KEY_DURATION,
                                      .offset = offsetof(notify_cfg, timeout),
                                      .def = "10s",
                                      .min = 100,
                                      .max = 300 * 1000},
                                     {0}};

/* A notification's URL: ${env.X} and ${job.name} only, http(s). */
static ns_status notify_url(loader *l, const yaml_node_t *u, const char *key, char **url)
{
    ns_status st = ns__cfg_check_template(l, u, key, *url, false, false);
    if (st == NS_OK && (strstr(*url, "${params.") || strstr(*url, "${execution.")))
        st = ns__cfg_fail(l, u, key, "may use ${env.NAME} and ${job.name} only");
    if (st == NS_OK && !notify_url_ok(*url))
        st = ns__cfg_fail(l, u, key, "must be an http:// or https:// URL");
    return st;
}

/* command: ["/path/to/program", "arg", ...]: templates, no shell. */
static ns_status notify_command(loader *l, ns_notify_def *nd, const yaml_node_t *x,
                                const char *where)
{
    char key[300];
    ns_status st;
    snprintf(key, sizeof(key), "%s.command", where);
    if (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start)
        return ns__cfg_fail(l, x, key,
                            "must be a list: [\"/path/to/program\", \"arg\", ...] (no shell)");
    size_t cnt = (size_t)(x->data.sequence.items.top - x->data.sequence.items.start);
    if (!(nd->argv = calloc(cnt + 1, sizeof(char *))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        char k2[sizeof(key) + 24];
        snprintf(k2, sizeof(k2), "%s[%zu]", key, i);
        const yaml_node_t *an = ns__cfg_node(l, x->data.sequence.items.start[i]);
        if ((st = notify_template(l, an, k2, &nd->argv[i])) != NS_OK)
            return st;
        nd->argc = i + 1;
        /* a command line is every local user's to read (ps): a secret stays
         * in the environment, which the command inherits */
        if (strstr(nd->argv[i], "${env."))
            return ns__cfg_fail(l, an, k2,
                                "no ${env.NAME} in a command's arguments: every local user can "
                                "read them (ps); the command inherits the environment, so let it "
                                "read $NAME there");
    }
    return NS_OK;
}

/* on: [failed, recovered, ...] */
static ns_status notify_events(loader *l, ns_notify_def *nd, const yaml_node_t *x,
                               const char *where)
{
    char key[300];
    ns_status st;
    snprintf(key, sizeof(key), "%s.on", where);
    if (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start)
        return ns__cfg_fail(l, x, key, "must be a non-empty list of events");
    nd->events = 0;
    for (yaml_node_item_t *it = x->data.sequence.items.start; it < x->data.sequence.items.top;
         it++) {
        int e;
        if ((st = ns__cfg_choice(l, ns__cfg_node(l, *it), key, ns__event_names, &e)) != NS_OK)
            return st;
        nd->events |= 1u << e;
    }
    return NS_OK;
}

static ns_status load_notify_one(loader *l, ns_notify_def *nd, const yaml_node_t *n,
                                 const char *where)
{
    static const char *const keys[] = {"slack", "webhook", "command", "on",
                                       "every", "timeout", NULL};
    char key[300];
    ns_status st;
    yaml_node_t *x, *cmd;
    notify_cfg c = {0};

    if (n->type != YAML_MAPPING_NODE)
        return ns__cfg_fail(l, n, where,
                            "must be a mapping: {slack: {webhook: ...}}, {webhook: {url: ...}} "
                            "or {command: [...]}");
    if ((st = ns__cfg_check_keys(l, n, where, keys)) != NS_OK)
        return st;
    nd->line = (int)n->start_mark.line + 1;
    nd->events = NS_NOTIFY_DEFAULT_EVENTS;
    cmd = ns__cfg_get(l, n, "command");
    int kinds = !!ns__cfg_get(l, n, "slack") + !!ns__cfg_get(l, n, "webhook") + !!cmd;
    if (kinds != 1)
        return ns__cfg_fail(l, n, where, "needs exactly one of slack:, webhook: or command:");
    /* command: stands in for the two sections the table has */
    const ns_key *table = cmd ? notify_keys + 2 : notify_keys;
    if ((st = ns__cfg_walk_keys(l, table, &c, n, where, false)) != NS_OK)
        goto out;
    nd->every = c.every;
    nd->timeout = c.timeout;
    if ((x = ns__cfg_get(l, n, "slack"))) {
        slack_cfg *sc = c.kind;
        nd->kind = NS_NOTIFY_SLACK;
        nd->url = sc->webhook;
        sc->webhook = NULL;
        snprintf(key, sizeof(key), "%s.slack.webhook", where);
        st = notify_url(l, ns__cfg_get(l, x, "webhook"), key, &nd->url);
    } else if ((x = ns__cfg_get(l, n, "webhook"))) {
        webhook_cfg *wc = c.kind;
        nd->kind = NS_NOTIFY_WEBHOOK;
        nd->url = wc->url;
        nd->headers = wc->headers;
        wc->url = NULL;
        memset(&wc->headers, 0, sizeof(wc->headers));
        snprintf(key, sizeof(key), "%s.webhook.url", where);
        st = notify_url(l, ns__cfg_get(l, x, "url"), key, &nd->url);
        snprintf(key, sizeof(key), "%s.webhook.headers", where);
        for (size_t i = 0; st == NS_OK && i < nd->headers.n; i++)
            if (strstr(nd->headers.values[i], "${item.") ||
                strstr(nd->headers.values[i], "${params."))
                st = ns__cfg_fail(l, ns__cfg_get(l, x, "headers"), key,
                                  "may use ${env.NAME} and ${job.name} only");
    } else {
        nd->kind = NS_NOTIFY_COMMAND;
        st = notify_command(l, nd, cmd, where);
    }
    if (st == NS_OK && (x = ns__cfg_get(l, n, "on")))
        st = notify_events(l, nd, x, where);
    if (st == NS_OK && (x = ns__cfg_get(l, n, "every")) &&
        !(nd->events & 1u << NS_EVENT_STILL_FAILING)) {
        snprintf(key, sizeof(key), "%s.every", where);
        st = ns__cfg_fail(l, x, key, "is for still_failing: add it to on:");
    }
out:
    if (c.kind && ns__cfg_get(l, n, "webhook")) { /* what it holds that slack's has not */
        webhook_cfg *wc = c.kind;
        ns__cfg_free_names(wc->headers.names, wc->headers.n);
        ns__cfg_free_names(wc->headers.values, wc->headers.n);
        memset(&wc->headers, 0, sizeof(wc->headers));
    }
    /* (the alternatives share one value, freed by the first's table: both
     * begin with their URL) */
    ns__cfg_free_keys(cmd ? notify_keys + 2 : notify_keys, &c);
    return st;
}

ns_status ns__cfg_notify(loader *l, const yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start)
        return ns__cfg_fail(l, n, "notify", "must be a non-empty list: - slack: {webhook: ...}");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > 32)
        return ns__cfg_fail(l, n, "notify", "at most 32 notifications");
    if (!(l->job->notify = calloc(cnt, sizeof(*l->job->notify))))
        return ns__err(l->err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        char where[32];
        snprintf(where, sizeof(where), "notify[%zu]", i);
        l->job->nnotify = i + 1;
        ns_status st = load_notify_one(l, &l->job->notify[i],
                                       ns__cfg_node(l, n->data.sequence.items.start[i]), where);
        if (st != NS_OK)
            return st;
    }
    return NS_OK;
}
