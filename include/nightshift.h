/*
 * nightshift.h - public API of libnightshift, a batch-job engine.
 *
 * A job is a YAML file of ordered steps. A chunk step reads items, writes them
 * in transactional chunks, and records every run in a job repository so that it
 * can be listed, restarted where it stopped, and never run twice by accident.
 *
 * Conventions (see docs/internals.md):
 * - Every fallible call returns ns_status; NS_OK is 0.
 * - Calls take an optional `ns_error *err` (may be NULL). The first error
 *   written wins; later ones are dropped, so the root cause is kept.
 * - Out-parameters are written only on success.
 * - Every `_free`/`_close` accepts NULL.
 * - A returned `const char *` is borrowed from its object and stays valid until
 *   the next call on that object, unless said otherwise.
 * - Handles are not thread-safe; use one per thread.
 */
#ifndef NIGHTSHIFT_H
#define NIGHTSHIFT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NS_BUILDING_LIBRARY) && defined(__GNUC__)
#define NS_EXTERN __attribute__((visibility("default")))
#else
#define NS_EXTERN
#endif

#define NS_VERSION_STRING "0.1.0"

/* Status codes, generated from one table (name, message). */
#define NS_STATUS_MAP(XX)                                                                          \
    XX(OK, "success")                                                                              \
    XX(ENOMEM, "out of memory")                                                                    \
    XX(EINVAL, "invalid argument")                                                                 \
    XX(EIO, "input/output error")                                                                  \
    XX(ECONFIG, "invalid job file")                                                                \
    XX(EPARAM, "invalid job parameter")                                                            \
    XX(EDB, "database error")                                                                      \
    XX(ESCHEMA, "target does not match the input")                                                 \
    XX(EREFUSED, "launch refused")                                                                 \
    XX(ENOTFOUND, "not found")                                                                     \
    XX(ECONFLICT, "concurrent modification")                                                       \
    XX(ESKIPLIMIT, "skip limit exceeded")                                                          \
    XX(EUNSUPPORTED, "not supported")                                                              \
    XX(ESTOPPED, "stopped on request")                                                             \
    XX(ETIMEDOUT, "timed out")

typedef enum ns_status {
#define NS_XX(name, msg) NS_##name,
    NS_STATUS_MAP(NS_XX)
#undef NS_XX
        NS_STATUS_COUNT
} ns_status;

/* "NS_EIO" etc.; "NS_UNKNOWN" for an out-of-range value. Never NULL. */
NS_EXTERN const char *ns_status_name(ns_status s);
/* A short English description of the code. Never NULL. */
NS_EXTERN const char *ns_strerror(ns_status s);

/*
 * Error detail. `message` is complete and meant for people: it already names
 * where (file:line, step, column) and why. `sub` carries the backend detail
 * such as a SQLSTATE ("23505") or an SQLite result name, empty when none.
 */
typedef struct ns_error {
    ns_status code;
    char sub[32];
    char message[1024];
} ns_error;

NS_EXTERN void ns_error_clear(ns_error *err);

/* Batch statuses of executions and step executions (docs/internals.md, "Job repository (SQLite)").
 */
#define NS_BATCH_STATUS_MAP(XX)                                                                    \
    XX(STARTING)                                                                                   \
    XX(STARTED)                                                                                    \
    XX(STOPPING)                                                                                   \
    XX(STOPPED)                                                                                    \
    XX(FAILED)                                                                                     \
    XX(COMPLETED)                                                                                  \
    XX(ABANDONED)                                                                                  \
    XX(UNKNOWN)

typedef enum ns_batch_status {
#define NS_XX(name) NS_BATCH_##name,
    NS_BATCH_STATUS_MAP(NS_XX)
#undef NS_XX
} ns_batch_status;

NS_EXTERN const char *ns_batch_status_name(ns_batch_status s);
/* Returns NS_BATCH_UNKNOWN for an unrecognised name. */
NS_EXTERN ns_batch_status ns_batch_status_parse(const char *name);

/* Process exit codes of the command line (docs/cli.md). */
enum {
    NS_EXIT_COMPLETED = 0,
    NS_EXIT_FAILED = 1,
    NS_EXIT_USAGE = 2,
    NS_EXIT_STOPPED = 3,
    NS_EXIT_REFUSED = 4
};

/* ---------------------------------------------------------------- jobs */

typedef struct ns_job ns_job;

/*
 * Loads and validates a job file. On error `err->message` reads
 * "PATH:LINE: KEY: message" and NS_ECONFIG is returned.
 */
NS_EXTERN ns_status ns_job_load(const char *path, ns_job **out, ns_error *err);
/* Same, from memory; `name` is used in messages in place of a path. */
NS_EXTERN ns_status ns_job_load_buffer(const char *name, const char *data, size_t len, ns_job **out,
                                       ns_error *err);
NS_EXTERN void ns_job_free(ns_job *job);
/*
 * The plugins a job file may name: for i = 0, 1, ... it returns 1 with *kind
 * "reader", "writer", "processor" or "step" and *name the name the job file
 * uses, and 0 past the last. ns_plugin_key(i, j) is the j-th key of plugin
 * i's section, NULL past the last.
 */
NS_EXTERN int ns_plugin_at(size_t i, const char **kind, const char **name);
NS_EXTERN const char *ns_plugin_key(size_t i, size_t j);
NS_EXTERN const char *ns_job_name(const ns_job *job);
NS_EXTERN size_t ns_job_step_count(const ns_job *job);

/* ----------------------------------------------------------- schedules */

/* A job's schedule: as its job file says, defaults filled in. */
typedef struct ns_schedule_info {
    const char *cron, *timezone;
    const char *misfire, *overlap, *gap, *repeat; /* "run_once", "forbid", "next", "first" ... */
    int64_t catch_up_max;
    double deadline, jitter; /* seconds */
    size_t nparams;
    const char *const *param_names, *const *param_values;
} ns_schedule_info;

/* Fills *out and returns 1; 0 when the job has no schedule. */
NS_EXTERN int ns_job_schedule(const ns_job *job, ns_schedule_info *out);

/* A fire time. `wall` is the local time the expression names, as seconds
 * on the zone's calendar (format it as if it were UTC); `at` the instant
 * it fires. */
#define NS_FIRE_IN_GAP    1u /* the local time does not exist that day: moved by dst.gap */
#define NS_FIRE_IN_REPEAT 2u /* the local time occurs twice that day: chosen by dst.repeat */
typedef struct ns_fire_time {
    int64_t at;     /* seconds since 1970-01-01 UTC */
    int64_t wall;   /* the named local time */
    int32_t offset; /* of the zone at `at`, seconds east of UTC */
    char abbr[16];  /* "KST", "EDT", "+1030" */
    unsigned flags; /* NS_FIRE_* */
} ns_fire_time;

typedef struct ns_schedule ns_schedule;
/* The schedule of a job with its zone loaded (from the system's tzdata). */
NS_EXTERN ns_status ns_schedule_open(const ns_job *job, ns_schedule **out, ns_error *err);
/* The first fire time strictly after `after` (returns 1); 0 when none. A
 * pure function of the schedule and `after`. */
NS_EXTERN int ns_schedule_next(const ns_schedule *s, int64_t after, ns_fire_time *out);
NS_EXTERN void ns_schedule_close(ns_schedule *s);

/* The job files of a folder (*.yaml, *.yml, not hidden), sorted: a
 * NULL-terminated array of n paths, each and the array to free(); NULL
 * (errno set) when the folder cannot be read. */
NS_EXTERN char **ns_job_files(const char *dir, size_t *n);

/* ---------------------------------------------------------- repository */

typedef struct ns_repo ns_repo;

/*
 * Opens (creating and migrating as needed) a job repository.
 * URL: "sqlite:PATH" or "postgresql://..."; NULL means "sqlite:nightshift.db".
 * (The library reads no environment variable for it: the command does.)
 */
NS_EXTERN ns_status ns_repo_open(const char *url, ns_repo **out, ns_error *err);
/*
 * Opens a repository to read it only (list, show): it is never created nor
 * migrated, and works on a read-only file or mount and for a database user
 * that may only read. NS_ENOTFOUND when there is none at `url` (the message
 * names where it looked).
 */
NS_EXTERN ns_status ns_repo_open_readonly(const char *url, ns_repo **out, ns_error *err);
NS_EXTERN void ns_repo_close(ns_repo *repo);
/* The lease (seconds; default 60) after which list/show call a run on
 * another host whose heartbeat stopped "heartbeat stale". */
NS_EXTERN void ns_repo_set_lease(ns_repo *repo, double seconds);
/* The URL actually opened (after the defaults above). */
NS_EXTERN const char *ns_repo_url(const ns_repo *repo);

/*
 * Asks a running execution to stop after its current chunk (STOPPING).
 * NS_EREFUSED when the execution is not running.
 */
NS_EXTERN ns_status ns_repo_request_stop(ns_repo *repo, int64_t execution_id, ns_error *err);
/*
 * Marks a STOPPED or FAILED execution ABANDONED: it will never be restarted.
 * NS_EREFUSED when it is running, completed or already abandoned.
 */
NS_EXTERN ns_status ns_repo_abandon(ns_repo *repo, int64_t execution_id, ns_error *err);

/*
 * Marks FAILED every execution marked running whose process is gone: its
 * pid dead on this host, or, run from another host, its heartbeat older
 * than the lease (ns_repo_set_lease). `job` (NULL: all) picks one job.
 * fn is told of each, with why it is taken for dead and the outcome:
 * NS_OK when marked (or, with dry_run, when it would be), NS_ECONFLICT when
 * it renewed its heartbeat or ended meanwhile (left as it is). *found: how
 * many were taken for dead.
 */
typedef void (*ns_recover_fn)(void *arg, int64_t execution_id, const char *job, const char *why,
                              ns_status outcome);

/* What a purge deleted (or, dry, would delete). */
typedef struct ns_purge_counts {
    int64_t executions, steps, params, contexts;
    int64_t instances; /* left without executions: marked, so they still refuse a re-run */
    int64_t files;     /* rejects files removed (with_files) */
} ns_purge_counts;
/*
 * Deletes old executions with their steps, parameters and contexts: those
 * created before `before` (an ISO date or UTC time; NULL: any), or all but
 * the `keep_last` newest of each job (0: not asked), of `job` (NULL: all).
 * Never a running execution, nor any of an instance whose last execution
 * is not COMPLETED or ABANDONED (a restart needs them). An instance left
 * without executions keeps refusing to run again. with_files: the rejects
 * files those executions wrote go too (only files tagged as theirs).
 */
NS_EXTERN ns_status ns_repo_purge(ns_repo *repo, const char *job, const char *before,
                                  int64_t keep_last, int dry_run, int with_files,
                                  ns_purge_counts *out, ns_error *err);
NS_EXTERN ns_status ns_repo_recover(ns_repo *repo, const char *job, int dry_run, ns_recover_fn fn,
                                    void *arg, int *found, ns_error *err);

/*
 * JSON of one execution (with its steps) or of a list of executions (without).
 * `*out` is allocated; free it with ns_free(). `status` and `job` may be NULL;
 * `limit` <= 0 means 20.
 */
NS_EXTERN ns_status ns_repo_show_json(ns_repo *repo, int64_t execution_id, char **out,
                                      ns_error *err);
NS_EXTERN ns_status ns_repo_list_json(ns_repo *repo, const char *job, const char *status, int limit,
                                      char **out, ns_error *err);
NS_EXTERN void ns_free(void *p);

/* ------------------------------------------------------------- running */

/* Counters of a step execution, as in Spring Batch. */
typedef struct ns_counts {
    int64_t read, write, filter, read_skip, process_skip, write_skip, commit, rollback;
    int64_t retry; /* chunks tried again after a transient failure (retry:) */
} ns_counts;

/* What a listener is told; valid for the duration of the callback. */
typedef struct ns_progress {
    int64_t execution_id;
    const char *job;
    const char *step;
    ns_batch_status status; /* of the step */
    ns_counts counts;
    int64_t bytes_done;  /* input consumed; -1 when unknown */
    int64_t bytes_total; /* input size; -1 when unknown */
    double elapsed;      /* seconds since the step started */
    const char *rejects; /* rejects file path, NULL when no item was rejected */
    const char *message; /* exit message on step end, else NULL */
    int64_t bytes_start; /* input consumed before this execution (a restart's resume point) */
} ns_progress;

/* A job's start and end, as a listener is told. */
typedef struct ns_job_event {
    int64_t execution_id;
    const char *job;
    int64_t restart_of;     /* the execution this one restarts, 0 when none */
    ns_batch_status status; /* STARTED at the start; the outcome at the end */
    const char *exit_code;  /* at the end ("COMPLETED", "ASSERT_FAILED", ...); NULL at the start */
    const char *message;    /* at the end: the exit message (no secret in it); "" when none */
    double elapsed;         /* at the end: seconds since the start */
} ns_job_event;

/* One rejected record, as it is written to the rejects file. */
typedef struct ns_reject_event {
    int64_t execution_id;
    const char *job, *step;
    int64_t line;        /* the record's source line */
    const char *column;  /* NULL when the reject is not about one column */
    const char *code;    /* a SQLSTATE or an NS_ code */
    const char *message; /* no secret in it */
} ns_reject_event;

/*
 * What happens during a run. Every callback may be NULL; all are called from
 * the thread running the job, and what they are given is valid for the
 * call only. A run may have several listeners (ns_launch.listeners): each
 * is told everything, in the order given.
 */
typedef struct ns_listener {
    void *ud;
    void (*step_start)(void *ud, const ns_progress *p);
    void (*chunk)(void *ud, const ns_progress *p); /* after each committed chunk */
    void (*step_end)(void *ud, const ns_progress *p);
    void (*notice)(void *ud, const char *message); /* e.g. a dead execution was recovered */
    void (*job_start)(void *ud, const ns_job_event *e);
    void (*job_end)(void *ud, const ns_job_event *e);
    void (*rejected)(void *ud, const ns_reject_event *e);
} ns_listener;

/*
 * What a step does with the checkpoint it finds in its target (the
 * nightshift_checkpoint row a chunk commits with its rows).
 */
typedef enum ns_checkpoint_use {
    /* Resume only from a checkpoint written by an execution of this job
     * instance recorded in this repository. One of any other origin (another
     * or a recreated repository, an edited one) fails the step with a message
     * naming the two choices below: resuming from it could skip rows the
     * target does not hold, starting over could load rows twice. */
    NS_CHECKPOINT_OWN = 0,
    /* --adopt-checkpoint: also resume from a checkpoint of unknown origin. */
    NS_CHECKPOINT_ADOPT,
    /* --ignore-checkpoint, --restart-from-beginning: steps that have not
     * completed start from their first record, whatever the checkpoint says
     * (rows they committed before stay in the target). */
    NS_CHECKPOINT_IGNORE
} ns_checkpoint_use;

typedef struct ns_launch {
    const char *const *params; /* "NAME=VALUE" strings */
    size_t nparams;
    int next;                            /* --next: a new instance with a fresh run.id */
    double lease_seconds;                /* heartbeat lease, (0, 2000000] s; 0: 60 */
    const ns_listener *listener;         /* one listener, or NULL */
    const ns_listener *const *listeners; /* and more: nlisteners of them */
    size_t nlisteners;
    /* The run's stop token: once *stop is nonzero (a signal handler may set
     * it), the run stops after its current chunk (STOPPED). NULL: none. */
    volatile sig_atomic_t *stop;
    const char *workdir; /* relative paths are resolved here; NULL: the current directory */
    ns_checkpoint_use checkpoint;
    /* A scheduler's tick (its scheduled instant, seconds since the epoch;
     * 0: none): the run starts only while the repository holds the tick as
     * PENDING, and marks it STARTED in the same transaction. Its instance:
     * the one the last tick with these parameters ran, restarted when it
     * FAILED or STOPPED; when that one COMPLETED (or was abandoned), a new
     * one, as with `next`. */
    int64_t tick_at;
} ns_launch;

typedef struct ns_outcome {
    int64_t execution_id; /* 0 when no execution was created */
    ns_batch_status status;
    int exit_code;      /* NS_EXIT_* */
    char message[1024]; /* the execution's exit message; "" when none */
    /* The execution's exit code as recorded ("COMPLETED_WITH_DIFFERENCES",
     * "ASSERT_FAILED", or the status' name); "" when none was recorded. */
    char code[40];
} ns_outcome;

/*
 * Runs a job, or restarts its instance per the rules of docs/cli.md.
 * Returns NS_OK when the job ran to an end (whatever the end: see
 * out->status, out->exit_code and out->message), NS_EREFUSED when the launch
 * was refused, another code when it could not be attempted (`err` says why).
 */
NS_EXTERN ns_status ns_job_run(ns_repo *repo, const ns_job *job, const ns_launch *launch,
                               ns_outcome *out, ns_error *err);

/*
 * The run of one tick the scheduler asks its caller for: the job file run
 * with these parameters and launch.tick_at = tick, in a repository at the
 * scheduler's URL (what `nightshift run FILE NAME=VALUE ... --tick AT`
 * does). The strings are borrowed for the call.
 */
typedef struct ns_tick_run {
    const char *job;           /* the job's name */
    const char *job_file;      /* its file */
    int64_t tick;              /* the tick, seconds since the epoch */
    const char *const *params; /* "NAME=VALUE": the schedule's values at the tick */
    size_t nparams;
} ns_tick_run;

/*
 * The scheduler (docs/scheduling.md): fires the scheduled jobs of the job
 * files and folders named at their ticks, each tick claimed in the
 * repository, until *stop turns nonzero; then it asks the running runs to
 * stop at a chunk boundary and waits for them. *reload nonzero (it is
 * reset): the files are read again. Each event is one line given to log().
 *
 * The runs are the caller's: the library starts no process, handles no
 * signal and reaps no child. start() begins a run (the command: a child
 * process) and returns a handle > 0 for it, or 0 when it could not (err
 * says why); ended() reports a run that has ended since it was last asked
 * (its handle and exit status, NS_EXIT_* or 128 + N when killed by signal
 * N), false when none has; stop_run() asks one to stop after its chunk.
 * All three are called from the thread that called ns_scheduler_run.
 */
typedef struct ns_scheduler_opts {
    const char *const *paths; /* job files and folders of them */
    size_t npaths;
    int64_t (*start)(void *arg, const ns_tick_run *run, ns_error *err);
    int (*ended)(void *arg, int64_t *handle, int *exit_status); /* 1: one ended */
    void (*stop_run)(void *arg, int64_t handle);
    void *run_arg; /* the three's arg */
    volatile sig_atomic_t *stop, *reload;
    void (*log)(void *arg, const char *line);
    void *log_arg;
    double lease_seconds; /* 0: 60 */
    uint64_t seed;        /* of the jitter's draws; 0: from the pid and the clock */
} ns_scheduler_opts;
NS_EXTERN ns_status ns_scheduler_run(ns_repo *repo, const ns_scheduler_opts *opts, ns_error *err);

/*
 * Restarts a FAILED or STOPPED execution: reloads its job file and its
 * parameters from the repository; relative paths are resolved against the
 * directory the execution was launched from. Of `launch` (may be NULL) only
 * the listeners, lease_seconds, stop and checkpoint are used.
 */
NS_EXTERN ns_status ns_execution_restart(ns_repo *repo, int64_t execution_id,
                                         const ns_launch *launch, ns_outcome *out, ns_error *err);

#ifdef __cplusplus
}
#endif
#endif /* NIGHTSHIFT_H */
