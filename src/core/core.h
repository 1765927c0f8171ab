/*
 * core.h - what the launcher and step runners of src/core share: the
 * execution's context, a running step, and the helpers they all use.
 */
#ifndef NS_CORE_H
#define NS_CORE_H

#include "config/job.h"
#include "io/io.h"
#include "proc/proc.h"
#include "repo/repo.h"

#include <signal.h>
#include <stdio.h>

/* The execution's parameters, typed and as name/value arrays. */
typedef struct ns__params {
    ns_param_val *v;
    char **names, **values; /* parallel arrays, for substitution */
    const char **types;     /* and each one's type, for SQL binding */
    size_t n;
} ns__params;

/* One execution of a job. */
typedef struct run_ctx {
    const char *workdir; /* restart ID: relative paths are resolved here */
    ns_repo *repo;
    const ns_job *job;
    const ns_listener **listeners; /* the launch's listener and listeners */
    size_t nlisteners;
    volatile sig_atomic_t *stop; /* the caller's stop token, NULL: none */
    ns_launch_res launch;
    ns__params *params;
    double lease; /* seconds without a heartbeat before a launch elsewhere takes over */
    /* What must never be written: the repository's password, every ${env.X}
     * value substituted and every connection URL's password. Every text
     * leaving the run (notices, progress, rejects, the repository's exit
     * messages, the outcome) passes ns__redact with it. */
    ns_secrets secrets;
    ns_checkpoint_use checkpoint; /* what a step may do with its target's checkpoint */
    /* Watches the statement the run is in: its limit, and a stop request
     * reaching it (util/watchdog.c). */
    ns_watchdog *watchdog;
} run_ctx;

typedef struct step_run {
    run_ctx *rc;
    const ns_step_def *def;
    ns_step_exec se;
    ns_counts counts;
    ns_reader *reader;
    ns_proc *proc;      /* NULL without a processor */
    json_t *proc_state; /* the processor's state the checkpoint kept (restart) */
    ns_writer *writer;
    /* Where the checkpoint is committed: the writer itself when it is
     * transactional, else a connection to the repository's database. */
    ns_writer *store;
    bool shared;         /* the store uses the repository's connection */
    char *rejects_path;  /* the file, as opened */
    char *rejects_shown; /* the same with ${env.X} unexpanded: for messages */
    char *rejects_saved; /* rejects_shown made absolute: for the checkpoint */
    FILE *rejects;
    int64_t rejects_offset;
    int64_t rejects_committed; /* its length when the last chunk committed */
    int64_t chunks; /* chunks committed for this step of the instance, across executions */
    /* Records read by earlier executions of the step, as of the checkpoint
     * this one resumed from: an item's number (ns_item.seq) is this plus the
     * records read so far, the same across restarts. */
    int64_t records_base;
    char *context; /* JSON of the last checkpoint */
    /* The context the target holds as far as this run knows: its last
     * commit's, or the one it resumed from (NULL: none). A retry compares
     * the target's row with it to tell whether a commit whose answer was
     * lost went through. */
    char *ctx_committed;
    int64_t attempt;  /* retries of the chunk under way */
    bool repo_behind; /* the target committed, recording it in the repository failed */
    uint64_t seed;    /* the retry jitter's */
    /* Where the time went, seconds: reading (with streaming to a writer
     * that takes items as they are read), the processor, writing, committing,
     * waiting to retry (docs/operations.md, "Where the time went"). */
    double secs[5];
    bool stop;
    double stop_checked; /* when the repository was last asked (ns__step_stopping) */
    double t0;
    char last_reject[512]; /* "line N: CODE: message" of the latest reject */
    bool done;             /* the target says this step already completed */
    bool resumed;          /* continuing from a checkpoint */
    int64_t bytes_start;   /* the reader's input position when this execution began */
} step_run;

/* Whether a stop was asked of the step's run: a signal, or `nightshift stop`
 * (the repository is asked at most once a second). */
bool ns__step_stopping(step_run *s);
/* Waits `secs` before a retry (counted as retry wait), or less when a stop
 * is asked: then true. */
bool ns__step_wait(step_run *s, double secs);
/* A writer's retry within a chunk: counted (retry_count) and logged. */
void ns__step_retried(step_run *s, const char *what, int64_t attempt, double wait,
                      const char *detail);

/*
 * Claims the step's checkpoint row in writer w (the fence, see
 * ns_writer_vt.checkpoint) and decides whether its context may be used: only
 * when an execution of this instance recorded in this repository wrote it,
 * unless rc->checkpoint says otherwise. *ctx: the context to resume from
 * (NULL: start from the beginning); *foreign: it is an adopted checkpoint
 * of unknown origin (nothing of this repository to reconcile, no rejects
 * file of ours to cut back). A checkpoint of unknown origin fails with
 * NS_EREFUSED and a message naming the choices.
 */
ns_status ns__run_claim(step_run *s, ns_writer *w, const ns_ckpt_key *key, char **ctx,
                        bool *foreign, ns_error *err);
/* Refuses to start writing an output file (rejects, a compare's output)
 * where one already holds data (another execution's: never overwritten,
 * the message names its writer) or a symbolic link stands. */
ns_status ns__run_check_output(step_run *s, const char *path, const char *shown, const char *what,
                               ns_error *err);
/* Who wrote the output file at path ("execution 4 of this repository"), for
 * messages. */
void ns__run_writer_of(run_ctx *rc, const char *path, char *buf, size_t n);
/* Registers a connection URL's password and redacts text in place. */
void ns__run_secret_url(run_ctx *rc, const char *url);
void ns__run_redact(run_ctx *rc, char *buf, size_t cap);
/* Records a step's end in the repository (msg redacted first, in place). */
ns_status ns__run_step_end(step_run *s, ns_batch_status status, const char *code, char *msg,
                           size_t msglen, ns_error *err);
/* A note for the listener (a restart's decisions, skipped steps). */
void ns__run_notice(run_ctx *rc, const char *fmt, ...) NS_PRINTF(2, 3);
/* Progress and step start/end for the listeners. */
typedef enum ns_step_event { NS_EV_STEP_START, NS_EV_CHUNK, NS_EV_STEP_END } ns_step_event;
void ns__run_report(step_run *s, ns_step_event ev, ns_batch_status status, const char *message);
/* The job's start and end for the listeners. */
void ns__run_job_event(run_ctx *rc, bool end, const ns_job_event *e);
/* A rejected record for the listeners. */
void ns__run_rejected(step_run *s, int64_t line, const char *column, const char *code,
                      const char *message);
/* Whether the caller asked the run to stop. */
bool ns__run_stop_requested(const run_ctx *rc);
/* Substitutes a template (real value, and the form shown with ${env.X} kept). */
ns_status ns__run_subst(step_run *s, const char *tmpl, const char *what, char **real, char **shown,
                        ns_error *err);
/* Makes a relative path relative to the launch directory (skipping `skip`
 * bytes of prefix such as "sqlite:"). */
ns_status ns__run_resolve(const run_ctx *rc, char **path, size_t skip, ns_error *err);
/* Opens s->writer on a connection only, for SQL steps and compares (own:
 * never the repository's connection). */
ns_status ns__run_open_writer(step_run *s, const char *conn_name, bool own, ns_error *err);
/* Opens s->store on the repository's database, sharing its connection: where
 * an at-least-once writer's checkpoints are kept. */
ns_status ns__run_open_store(step_run *s, ns_error *err);
/* A stored path (${env.X} kept) with its ${env.X} expanded. */
ns_status ns__run_expand(run_ctx *rc, const char *shown, const char *what, char **real,
                         ns_error *err);
/* What the step's plugins are given: the run's services and settings. */
ns_io_env ns__run_env(step_run *s);
/* Sharing the repository's connection (its method, bound to it). */
ns_share ns__run_share(run_ctx *rc);
/* The repository update of a committed chunk (counters, context, heartbeat). */
ns_status ns__run_commit_hook(void *arg, ns_error *err);
/*
 * Commits the writer's transaction with the checkpoint s->context, and the
 * step's record: in the same transaction when the writer shares the
 * repository's connection, else right after (*committed tells the target's
 * commit happened when that second update fails). `n` numbers the commit for
 * the NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT fault point.
 */
ns_status ns__run_commit(step_run *s, ns_writer *w, const ns_ckpt_key *key, int64_t n,
                         bool *committed, ns_error *err);
/* One CSV field, quoted when needed, invalid UTF-8 as \xHH, NUL as \x00. */
void ns__csv_field(FILE *f, const char *p, size_t n);

/* ----------------------------------------- checkpoints (checkpoint.c) */

/* A step's checkpoint, decoded or to encode (the one codec of its JSON). */
typedef struct ns_ckpt {
    char repository[33];                     /* who wrote it: the repository's identity ... */
    bool signed_;                            /* (false: an unsigned, older or edited checkpoint) */
    int64_t execution_id, step_execution_id; /* ... and the execution */
    bool done;        /* a single-transaction step (sql, rebuild, ...) committed */
    bool has_chunks;  /* (decoded: chunks was there) */
    int64_t chunks;   /* chunks committed for the step of the instance */
    int64_t records;  /* records read by the step of the instance, across executions */
    ns_counts counts; /* the step execution's counters at that commit */
    json_t *position; /* the reader's position (borrowed) */
    const char *rejects_path;
    int64_t rejects_offset;
    json_t *processor; /* the processor's state (borrowed) */
    json_t *writer;    /* an at-least-once writer's state: where its output stands (borrowed) */
    json_t *seconds;   /* where this step execution's time went (borrowed; encode: if set) */
    json_t *root;      /* decoded: owns what the pointers above point into */
} ns_ckpt;

/* JSON text of a checkpoint (malloc'd). */
ns_status ns__ckpt_encode(const ns_ckpt *c, char **out, ns_error *err);
/* Reads one; ns__ckpt_free releases it. NS_EDB when it is not a checkpoint. */
ns_status ns__ckpt_decode(const char *text, ns_ckpt *c, ns_error *err);
void ns__ckpt_free(ns_ckpt *c);
/* Where it stands, for messages: " (after chunk N, at line L)", ... or "". */
void ns__ckpt_where(const ns_ckpt *c, char *buf, size_t n);

/* ---------------------------------------------- parameters (params.c) */

void ns__params_free(ns__params *p);
ns_status ns__params_add(ns__params *p, const char *name, const char *type, const char *value,
                         bool identifying, ns_error *err);
/* Applies NAME=VALUE arguments, defaults and types (docs/jobs.md). */
ns_status ns__params_resolve(const ns_job *job, const char *const *args, size_t nargs,
                             ns__params *out, ns_error *err);
/* Refuses parameters that would lead a path out of its folder. */
ns_status ns__params_check_paths(const ns_job *job, const ns__params *p, ns_error *err);

/* ------------------------------------------------- templates (step.c) */

/* ns__run_subst for another execution's id (a predecessor's file names). */
ns_status ns__run_subst_as(step_run *s, int64_t execution_id, const char *tmpl, const char *what,
                           char **real, char **shown, ns_error *err);
/* `shown` made absolute when `real` (its expansion) is relative: the form a
 * checkpoint stores, so a restart from any directory finds the file. */
char *ns__run_absolute(const char *real, const char *shown);
/* Test-only fault points (docs/cli.md), compiled into test builds only
 * (NS_TEST_HOOKS): `action` runs when the environment variable `name` is n. */
#ifdef NS_TEST_HOOKS
bool ns__fault_at(const char *name, int64_t n);
#define NS_FAULT(name, n, action)                                                                  \
    do {                                                                                           \
        if (ns__fault_at(name, n))                                                                 \
            action;                                                                                \
    } while (0)
#else
#define NS_FAULT(name, n, action) ((void)0)
#endif

/* --------------------------------------- what steps share (step.c) */

/* Starts a step execution: the instance's state of the step, a new record
 * of it, the listener told. *started once the record exists. */
ns_status ns__step_start(step_run *s, ns_step_state *state, bool *started, ns_error *err);
/* Ends a non-chunk step: failure details, its record, the listener. */
void ns__step_end(step_run *s, ns_status st, const ns_error *e, bool started,
                  ns_batch_status *status, char *code, size_t codelen, char *msg, size_t msglen);
/* Commits a single-transaction step with a checkpoint saying it is done. */
ns_status ns__step_commit_done(step_run *s, ns_writer *w, const ns_ckpt_key *key, int64_t written,
                               ns_error *err);
/* The counts a done checkpoint recorded (a restart after its commit). */
ns_status ns__step_counts_done(step_run *s, const char *ctx, ns_error *err);
/* The job's parameters for :name binding. */
ns_sql_args ns__step_sql_args(const run_ctx *rc);

/* -------------------------------------------- rejects files (rejects.c) */

/* Writes one reject (the message redacted; the record as read). */
ns_status ns__rejects_write(step_run *s, int64_t line, const char *column, const char *code,
                            const char *message, const char *raw, size_t raw_len, ns_error *err);
/* Flushes and syncs the chunk's rejects before it commits; records the offset. */
ns_status ns__rejects_sync(step_run *s, ns_error *err);
/* Removes the restarted execution's rejects file when no checkpoint names
 * it (its records belong to chunks that never committed). */
void ns__rejects_drop_predecessor(step_run *s, const char *checkpointed);
/* Cuts the rejects file a trusted checkpoint names back to its offset. */
ns_status ns__rejects_cut(step_run *s, const ns_ckpt *ckpt, const char *repo_ctx, ns_error *err);

/* ---------------------------------------------------- step types */

/*
 * A kind of step: the flow (flow.c) runs it through the step's type plugin.
 * run() records its step execution and returns its status, its exit code
 * ("COMPLETED", "ASSERT_FAILED", "COMPLETED_WITH_DIFFERENCES", ...) and its
 * message. A new kind is one file defining one of these and its plugin (its
 * section's keys), and one line in registry.c.
 */
#define NS_STEP_TYPE_VERSION 1
typedef struct ns_step_type {
    const char *name;
    int version;
    void (*run)(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *code,
                size_t codelen, char *msg, size_t msglen);
} ns_step_type;

/* The step type plugins (impl: their ns_step_type). */
extern const ns_plugin ns__plugin_chunk;   /* chunk.c */
extern const ns_plugin ns__plugin_sql;     /* sqlstep.c */
extern const ns_plugin ns__plugin_assert;  /* sqlstep.c */
extern const ns_plugin ns__plugin_rebuild; /* sqlstep.c */
extern const ns_plugin ns__plugin_compare; /* compare.c */

/* Every plugin nightshift has (registry.c). */
extern const ns_registry ns__registry;
/* The driver of a connection string in ns__registry (NULL: none). */
const ns_db_driver *ns__db_driver(const char *url);

/* Runs the job's steps along its on: graph (flow.c); the last step's exit
 * code in code, the job's message in msg, its outcome in *end. */
void ns__flow_run(run_ctx *rc, char *code, size_t codelen, char *msg, size_t msglen,
                  ns_batch_status *end);

/* ------------------------------------------------ notifications (notify.c) */

/* Tells the job's notify: entries of a run's start (when one asked for
 * `started`) or end (the events it is: failed, still_failing, recovered,
 * completed, completed_with_skips). A message that cannot be delivered is
 * said (say) and recorded on the execution; nothing is returned. */
void ns__notify_run(ns_repo *repo, const ns_job *job, int64_t execution_id, bool start,
                    ns_secrets *secrets, void (*say)(void *arg, const char *line), void *arg);
/* A `missed` event: `what` says which ticks and why. */
void ns__notify_missed(ns_repo *repo, const ns_job *job, const char *what,
                       void (*say)(void *arg, const char *line), void *arg);

#endif
