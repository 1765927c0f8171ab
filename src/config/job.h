/*
 * job.h - the job definition: what a job file says, validated.
 *
 * String values that may hold ${...} references are kept as templates and
 * substituted at run time by ns__subst(), once the parameters and the
 * execution id are known.
 */
#ifndef NS_JOB_H
#define NS_JOB_H

#include "sched/cron.h"
#include "util/keys.h"
#include "util/util.h"

typedef enum ns_ptype {
    NS_P_STRING,
    NS_P_INT,
    NS_P_FLOAT,
    NS_P_BOOL,
    NS_P_DATE,
    NS_P_TIMESTAMP
} ns_ptype;

typedef struct ns_param_def {
    char *name;
    ns_ptype type;
    bool required, identifying;
    char *def; /* default value text, NULL when none */
    int line;
} ns_param_def;

typedef struct ns_conn_def {
    char *name;
    char *url; /* template */
    int line;
    /* The longest a statement may take before the client cancels it (and
     * drops the connection when the server does not answer); 0: none. */
    double statement_timeout;
} ns_conn_def;
/* The default statement_timeout of a connection, seconds. */
#define NS_STATEMENT_TIMEOUT 3600.0

/* on: {EXIT_CODE: target} - target is a step name, "end", "fail" or "stop". */
typedef struct ns_transition {
    char *code; /* an exit code, or "*" for any other */
    char *to;
    int line;
} ns_transition;

/*
 * A step as its job file says it. What it does is a step type (chunk, sql,
 * assert, rebuild, compare: a plugin); a chunk step's reader, processor and
 * writer are plugins too. Each plugin's configuration is its own struct,
 * filled by its key table (util/keys.h) and owned by the step.
 */
typedef struct ns_step_def {
    char *name;
    int line;
    ns_transition *on;
    size_t non;

    const ns_plugin *type; /* what runs it */
    void *type_cfg;        /* its configuration; NULL for a chunk step */

    /* chunk steps */
    int64_t chunk;
    int64_t skip_limit;
    ns_retry retry;                               /* retry: (ns__retry_default when not given) */
    char *rejects;                                /* template */
    const ns_plugin *reader, *processor, *writer; /* processor NULL when none */
    void *reader_cfg, *proc_cfg, *writer_cfg;
} ns_step_def;

/* schedule: - when the scheduler runs the job (docs/scheduling.md). */
typedef enum ns_misfire { NS_MISFIRE_SKIP, NS_MISFIRE_RUN_ONCE, NS_MISFIRE_CATCH_UP } ns_misfire;
typedef enum ns_overlap { NS_OVERLAP_FORBID, NS_OVERLAP_QUEUE_ONE, NS_OVERLAP_ALLOW } ns_overlap;

typedef struct ns_schedule_def {
    char *cron; /* as written */
    ns_cron expr;
    char *timezone; /* IANA name, "UTC" when not given */
    /* params: NAME -> value text; a date's `today`/`yesterday` and a date's
     * or timestamp's `scheduled` are resolved at the scheduled time in the
     * schedule's zone. */
    char **param_names, **param_values;
    size_t nparams;
    ns_misfire misfire;
    int64_t catch_up_max;
    ns_overlap overlap;
    ns_dst_gap gap;
    ns_dst_repeat repeat;
    double deadline; /* seconds after the scheduled time a tick may still start */
    double jitter;   /* seconds of random delay at most */
    int line;
} ns_schedule_def;
#define NS_DEADLINE_DEFAULT 3600.0
#define NS_CATCH_UP_MAX     10

/* notify: - who hears about a run (docs/scheduling.md). */
#define NS_NOTIFY_EVENTS(XX)                                                                       \
    XX(STARTED, "started")                                                                         \
    XX(COMPLETED, "completed")                                                                     \
    XX(COMPLETED_WITH_SKIPS, "completed_with_skips")                                               \
    XX(FAILED, "failed")                                                                           \
    XX(STILL_FAILING, "still_failing")                                                             \
    XX(RECOVERED, "recovered")                                                                     \
    XX(MISSED, "missed")
typedef enum ns_event {
#define NS_XX(name, text) NS_EVENT_##name,
    NS_NOTIFY_EVENTS(NS_XX)
#undef NS_XX
        NS_EVENT_COUNT
} ns_event;
const char *ns__event_name(ns_event e);
/* Every event's name, in ns_event's order, NULL-ended. */
extern const char *const ns__event_names[];

typedef enum ns_notify_kind {
    NS_NOTIFY_SLACK,
    NS_NOTIFY_WEBHOOK,
    NS_NOTIFY_COMMAND
} ns_notify_kind;

typedef struct ns_notify_def {
    ns_notify_kind kind;
    char *url;      /* slack: webhook; webhook: url (templates: ${env.X}, ${job.name}) */
    ns_map headers; /* webhook */
    char **argv;    /* command: the program and its arguments (no shell) */
    size_t argc;
    unsigned events; /* bit (1 << ns_event) */
    int64_t every;   /* still_failing: every Nth failure in a row after the first */
    double timeout;  /* one delivery attempt */
    int line;
} ns_notify_def;
#define NS_NOTIFY_DEFAULT_EVENTS                                                                   \
    (1u << NS_EVENT_FAILED | 1u << NS_EVENT_RECOVERED | 1u << NS_EVENT_MISSED |                    \
     1u << NS_EVENT_COMPLETED_WITH_SKIPS)

struct ns_job {
    char *path; /* absolute path of the file, "" for a buffer */
    char *name;
    char *description;
    bool restartable;
    ns_param_def *params;
    size_t nparams;
    ns_conn_def *conns;
    size_t nconns;
    ns_step_def *steps;
    size_t nsteps;
    ns_schedule_def *schedule; /* NULL when the job has none */
    ns_notify_def *notify;
    size_t nnotify;
};

/*
 * Loads a job file, finding the plugins its steps name in `reg`. (The public
 * ns_job_load, in src/core/registry.c, passes the registry of every plugin
 * nightshift has.)
 */
ns_status ns__job_load(const char *path, const ns_registry *reg, ns_job **out, ns_error *err);
ns_status ns__job_load_buffer(const char *name, const char *data, size_t len,
                              const ns_registry *reg, ns_job **out, ns_error *err);

/* Calls fn for every template of every step's plugins and of the step
 * itself, with the key's full name ("steps[0].reader.csv.path") and its
 * flags (NS_KEY_PATH), until fn returns false. */
typedef bool (*ns_template_fn)(void *arg, const ns_step_def *s, const char *key, const char *tmpl,
                               unsigned flags);
void ns__job_templates(const ns_job *job, ns_template_fn fn, void *arg);

const ns_param_def *ns__job_param(const ns_job *job, const char *name);
/* The index of the step named `name`, -1 when none. */
long ns__job_step(const ns_job *job, const char *name);
/* An exit code a step can end with (or "*"), for on: keys. */
bool ns__exit_code_known(const char *code);
const ns_conn_def *ns__job_conn(const ns_job *job, const char *name);
const char *ns__ptype_name(ns_ptype t);
/* true/yes/on/1 and false/no/off/0, any case (config/ptype.c). */
bool ns__parse_bool(const char *s, bool *out);

/*
 * Checks a parameter value against its type and writes its canonical text
 * (dates `today`/`yesterday` resolved, booleans as true/false) into *out
 * (malloc'd). On error writes a reason into why.
 */
bool ns__param_value(ns_ptype type, const char *text, char **out, char *why, size_t whylen);

/* Checks that every ${env.X} the job uses is set (before anything runs). */
ns_status ns__job_check_env(const ns_job *job, ns_error *err);

/* Values for ${...} substitution. Any member may be NULL/0 when not known yet. */
typedef struct ns_subst_ctx {
    const ns_job *job;
    const char *const *param_names;
    const char *const *param_values;
    size_t nparams;
    int64_t execution_id;
    const char *step;
    /* Leave ${env.X} as it is (and escape "${" in other values as "$${"), so
     * the result can be shown and stored; substituting it again (without
     * keep_env) gives the real value. */
    bool keep_env;
    /* When set, every ${env.X} value substituted is registered here, so
     * that no message can quote it back (see ns__redact). */
    ns_secrets *secrets;
    /* The template is a file path: a parameter's value that does not start
     * it may not add a path component ('/', or a whole "." or ".."), so
     * `rejects/${params.tag}.csv` stays in rejects/ whatever tag is. A value
     * that starts the path (`${params.file}`) names it as it likes. */
    bool path;
} ns_subst_ctx;

/*
 * Substitutes ${params.X}, ${env.X}, ${job.name}, ${execution.id},
 * ${step.name} in tmpl. *out is malloc'd. `what` names the value in errors.
 */
ns_status ns__subst(const char *tmpl, const ns_subst_ctx *ctx, const char *what, char **out,
                    ns_error *err);

#endif
