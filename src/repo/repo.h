/*
 * repo.h - the job repository interface (docs/internals.md, "Job repository (SQLite)").
 *
 * A repository backend is a vtable; ns_repo is an instance whose first
 * member points to it. Each backend lives with its driver (src/db/<name>/
 * repo.c). The decision of
 * what a launch does (start, restart, refuse, recover a dead execution) is
 * backend-independent and lives in repo.c; backends supply the atomic
 * transaction around it.
 */
#ifndef NS_REPO_H
#define NS_REPO_H

#include "util/util.h"

#include <jansson.h>

typedef struct ns_param_val {
    const char *name;
    const char *type;
    const char *value;
    bool identifying;
} ns_param_val;

/* What a launch asks for. */
typedef struct ns_launch_req {
    const char *job_name;
    const char *job_path;
    const char *workdir;        /* where relative paths are resolved */
    const ns_param_val *params; /* with run.id only when restarting a --next instance */
    size_t nparams;
    bool next;        /* add run.id = 1 + the largest run.id given to this job */
    bool restartable; /* the job's restartable: flag */
    double lease;     /* seconds */
    /* A scheduler's tick: the execution is created only if the tick
     * (job, tick_at) is PENDING, and the tick becomes STARTED with it, in
     * one transaction; 0 when the launch is not a tick's. */
    int64_t tick_at;
    const char *scheduled_at; /* the tick's time, ISO (shown by list and show) */
    const char *params_key;   /* the key of the tick's parameters without run.id */
} ns_launch_req;

/* What a launch got. */
typedef struct ns_launch_res {
    int64_t execution_id, instance_id;
    int64_t restart_of; /* the execution this one restarts, 0 when none */
    char job_key[33];
    int64_t run_id;          /* with next: the run.id given; else 0 */
    char notice[512];        /* set when a dead execution was marked FAILED */
    ns_batch_status refused; /* on NS_EREFUSED: the status of the instance's last execution */
} ns_launch_res;

/* A scheduler's tick: one row per (job, scheduled instant), inserted before
 * the run it starts (docs/internals.md, "The scheduler"). */
typedef struct ns_tick {
    char job[129];
    int64_t at;          /* the scheduled instant, seconds since the epoch */
    char local_time[32]; /* the local time it names, "2024-03-10T02:30:00" */
    char state[16];      /* PENDING, STARTED, SKIPPED, MISSED */
    char reason[400];
    int64_t execution_id; /* 0 when none */
    char params_key[33];
    char claimed_by[300]; /* "host:pid" of the scheduler that owns it */
    double claimed_at;    /* epoch seconds, renewed while it is PENDING */
} ns_tick;

/* The last execution of an instance, as the launch decision sees it. */
typedef struct ns_last_exec {
    int64_t id;
    ns_batch_status status;
    char host[256];
    int64_t pid;
    int64_t process_start; /* see ns__process_start; -1 when not recorded */
    double heartbeat;      /* epoch seconds */
} ns_last_exec;

typedef enum ns_launch_action {
    NS_LAUNCH_START,   /* no execution yet */
    NS_LAUNCH_RESTART, /* last one FAILED or STOPPED */
    NS_LAUNCH_RECOVER, /* last one is marked running but its process is gone */
    NS_LAUNCH_REFUSE
} ns_launch_action;

/* The error for a repository whose schema is newer than this build knows. */
ns_status ns__repo_too_new(ns_error *err, int version, int known);
/* Decides; on NS_LAUNCH_REFUSE writes why into msg. */
ns_launch_action ns__launch_decide(const ns_last_exec *last, bool have_last, bool restartable,
                                   double lease, char *msg, size_t msglen);
/* Key of an instance: hash of the sorted identifying parameters (run.id
 * included, like any other). */
ns_status ns__instance_key(const ns_param_val *params, size_t n, char out[33]);
/* The parameters a launch stores (its own, plus run.id when given) and the
 * key of its instance. *out is malloc'd; every backend's launch uses this. */
ns_status ns__launch_params(const ns_launch_req *req, const char *run_id, ns_param_val **out,
                            size_t *n, char key[33], ns_error *err);

/* Execution details needed for `restart ID`. */
typedef struct ns_exec_info {
    int64_t id, instance_id;
    ns_batch_status status;
    char *job_name, *job_path, *workdir;
    ns_param_val *params; /* all stored parameters, run.id included */
    size_t nparams;
} ns_exec_info;
void ns__exec_info_free(ns_exec_info *info);
/* NS_OK when every text of a read execution was copied; otherwise frees it and
 * returns NS_ENOMEM (a backend copies with ns__strdup and checks once). */
ns_status ns__exec_info_copied(ns_exec_info *info, ns_error *err);

/* Where a step of an instance stands before it runs. */
typedef struct ns_step_state {
    bool completed;     /* a COMPLETED step execution exists for this instance */
    int64_t last_id;    /* the latest earlier step execution, 0 when none */
    char *context;      /* its saved context (JSON), NULL when none */
    char exit_code[40]; /* its exit code ("COMPLETED", "ASSERT_FAILED", ...) */
} ns_step_state;

/* A running step execution, with what is written at each chunk. */
typedef struct ns_step_exec {
    int64_t id, version, execution_id;
    ns_counts counts;
    const char *context; /* JSON, borrowed */
} ns_step_exec;

typedef struct ns_repo_vt {
    const char *name;
    int version;
    ns_status (*open)(ns_repo *r, const char *url, ns_error *err);
    void (*close)(ns_repo *r);
    /* Its connection (an sqlite3 *, a PGconn *) when `url` of its own
     * driver reaches its database as its user, so a table writer can share
     * its transactions (ns_share); else NULL. `conn`: the writer's own
     * connection to `url`, when the answer needs one. */
    void *(*shared)(ns_repo *r, const char *url, void *conn);
    ns_status (*launch)(ns_repo *r, const ns_launch_req *req, ns_launch_res *res, ns_error *err);
    ns_status (*exec_info)(ns_repo *r, int64_t id, ns_exec_info *out, ns_error *err);
    ns_status (*exec_status)(ns_repo *r, int64_t id, ns_batch_status status, const char *exit_code,
                             const char *message, bool ended, ns_error *err);
    ns_status (*step_state)(ns_repo *r, int64_t instance_id, const char *step, ns_step_state *out,
                            ns_error *err);
    ns_status (*step_begin)(ns_repo *r, int64_t execution_id, const char *step, ns_step_exec *se,
                            ns_error *err);
    /* Saves counters and context and beats the heart; tells whether a stop
     * was requested. At most two statements. */
    ns_status (*step_update)(ns_repo *r, ns_step_exec *se, bool *stop, ns_error *err);
    ns_status (*step_end)(ns_repo *r, ns_step_exec *se, ns_batch_status status,
                          const char *exit_code, const char *message, ns_error *err);
    /* Optional: renew the execution's heartbeat every `interval` seconds
     * from a thread with its own connection until keepalive_stop, so a long
     * chunk is not taken for a dead run by a launch on another host. */
    /* Renews the heartbeat every `interval` seconds from a thread, except
     * while the run's statement is past its limit (watchdog); a STOPPING
     * status it sees reaches a statement the run is blocked in. */
    ns_status (*keepalive_start)(ns_repo *r, int64_t execution_id, double interval,
                                 ns_watchdog *watchdog, ns_error *err);
    void (*keepalive_stop)(ns_repo *r);
    /* Brings an earlier step execution up to the target's checkpoint. */
    ns_status (*step_reconcile)(ns_repo *r, int64_t step_exec_id, const ns_counts *c,
                                const char *context, ns_error *err);
    ns_status (*request_stop)(ns_repo *r, int64_t id, ns_error *err);
    ns_status (*abandon)(ns_repo *r, int64_t id, ns_error *err);
    /* Marks a running execution (and its running steps) FAILED with
     * `message`, only while its heartbeat is still `heartbeat` (as list_json
     * printed it): NS_ECONFLICT when it beat or ended since. */
    ns_status (*mark_dead)(ns_repo *r, int64_t id, const char *heartbeat, const char *message,
                           ns_error *err);
    /* ns_repo_purge; context(), when set, is told each purged step's
     * context before it goes. */
    ns_status (*purge)(ns_repo *r, const char *job, const char *before, int64_t keep_last,
                       bool dry_run, void (*context)(void *arg, int64_t id, const char *ctx),
                       void *arg, ns_purge_counts *out, ns_error *err);
    ns_status (*show_json)(ns_repo *r, int64_t id, char **out, ns_error *err);
    ns_status (*list_json)(ns_repo *r, const char *job, const char *status, int limit, char **out,
                           ns_error *err);
    /* Ticks. claim: inserts unless the tick exists (*inserted tells). set:
     * moves a tick from state `from` (and owner `owner`, when not NULL) to
     * `to` with a reason, owned by `claimer` (when not NULL) as of now;
     * *changed tells whether it matched. last: the latest tick of a job.
     * pending: a job's PENDING ticks (malloc'd array). touch: renews every
     * PENDING tick `claimer` owns. prev_run: the run.id (text, "" when
     * none) of the execution of the latest STARTED tick of a job whose
     * parameters had `params_key`; *found false when there is none. */
    ns_status (*tick_claim)(ns_repo *r, const ns_tick *t, bool *inserted, ns_error *err);
    ns_status (*tick_set)(ns_repo *r, const char *job, int64_t at, const char *from,
                          const char *owner, const char *to, const char *reason,
                          const char *claimer, bool *changed, ns_error *err);
    ns_status (*tick_get)(ns_repo *r, const char *job, int64_t at, ns_tick *out, bool *found,
                          ns_error *err);
    ns_status (*tick_last)(ns_repo *r, const char *job, int64_t *at, bool *found, ns_error *err);
    ns_status (*tick_pending)(ns_repo *r, const char *job, ns_tick **out, size_t *n, ns_error *err);
    ns_status (*tick_touch)(ns_repo *r, const char *claimer, ns_error *err);
    ns_status (*tick_prev_run)(ns_repo *r, const char *job, const char *params_key, char run_id[32],
                               bool *found, ns_error *err);
    /* Notifications: a line saying one could not be delivered, kept on the
     * execution; and the moment a message to `target` (a hash) may go,
     * spacing the messages to one target `gap` seconds apart across every
     * process using the repository. */
    ns_status (*notify_failed)(ns_repo *r, int64_t execution_id, const char *line, ns_error *err);
    ns_status (*notify_slot)(ns_repo *r, const char *target, double now, double gap, double *at,
                             ns_error *err);
} ns_repo_vt;

struct ns_repo {
    const ns_repo_vt *vt;
    char *url;
    void *impl;
    ns_secrets secrets; /* the URL's password: never in a message */
    char id[33];        /* the repository's identity (random, set when it was created) */
    bool readonly;      /* opened to read only: never created, migrated or written */
    double lease;       /* seconds after which another host's silent run counts as dead */
};

/* How many executions of a job are running and alive (their process on
 * this host, their heartbeat within the lease from another), and the id of
 * one of them. */
ns_status ns__repo_running(ns_repo *r, const char *job, int *n, int64_t *id, ns_error *err);

/* Opens the repository at `url` with its driver's backend (the public
 * ns_repo_open finds it: src/core/registry.c); the URL's password is kept
 * out of every message. */
ns_status ns__repo_open(const ns_repo_vt *vt, const char *url, bool readonly, ns_repo **out,
                        ns_error *err);

/*
 * JSON of `show`/`list`, the same for every backend. Backends pass each row
 * as text columns (NULL for SQL NULL) in the order named below.
 */
#define NS_EXEC_NCOLS                                                                              \
    20                   /* id, job, instance_id, status, exit_code, exit_message,                 \
                            created_at, started_at, ended_at, host, pid, restart_of,               \
                            job_file, last_updated, workdir, heartbeat, process_start,             \
                            restarted_by (the execution whose restart_of is this one),             \
                            scheduled_at (a tick's time, NULL when not scheduled),                 \
                            notify_errors (lines, NULL when none) */
#define NS_PARAM_NCOLS 4 /* name, type, value, identifying */
#define NS_STEP_NCOLS                                                                              \
    18 /* name, partition, status, exit_code, exit_message, the eight                              \
          counters, started_at, ended_at, id, context, retry_count */
/* The most columns of any of the rows above (arrays of them use it). */
#define NS_MAX_NCOLS 24
json_t *ns__json_exec(const ns_repo *r, const char *const *cols);
void ns__json_exec_param(json_t *exec, const char *const *cols);
json_t *ns__json_step(const char *const *cols);
/* Serialises (and releases) v into a malloc'd string. */
ns_status ns__json_dump(json_t *v, char **out, ns_error *err);

#endif
