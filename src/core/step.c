/*
 * step.c - what every kind of step shares: substituting its templates,
 * telling the listener, opening its connections (sharing the repository's
 * transaction when the target is its database), the one commit protocol
 * (target rows + checkpoint, then the repository) and the trust decision on
 * a target's checkpoint.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ns__run_secret_url(run_ctx *rc, const char *url)
{
    ns__secrets_add_url(&rc->secrets, url);
}

/* The boundary of every text a run says (messages, notices, the exit
 * message it records and returns): no secret in it, and one line of valid
 * UTF-8, so that show, the JSONs and notifications carry what stderr does. */
void ns__run_redact(run_ctx *rc, char *buf, size_t cap)
{
    ns__redact(&rc->secrets, buf, cap);
    ns__clean_line(buf);
}

/* Whether `nightshift stop` asked for this execution (STOPPING in the
 * repository). Not knowing (the repository unreachable) is "no". */
static bool stop_asked(step_run *s)
{
    ns_exec_info info = {0};
    bool asked =
        s->rc->repo->vt->exec_info(s->rc->repo, s->rc->launch.execution_id, &info, NULL) == NS_OK &&
        info.status == NS_BATCH_STOPPING;
    ns__exec_info_free(&info);
    return asked;
}

bool ns__step_stopping(step_run *s)
{
    if (s->stop || ns__run_stop_requested(s->rc))
        return true;
    double now = ns__mono();
    if (now - s->stop_checked >= 1) {
        s->stop_checked = now;
        s->stop = stop_asked(s);
    }
    return s->stop;
}

void ns__step_retried(step_run *s, const char *what, int64_t attempt, double wait,
                      const char *detail)
{
    s->counts.retry++;
    if (detail)
        ns__run_notice(s->rc, "step %s: chunk %lld: %s, retry %lld of %lld in %.1f s: %s",
                       s->def->name, (long long)s->chunks + 1, what, (long long)attempt,
                       (long long)s->def->retry.limit, wait, detail);
}

/* Waits `secs`, or less when a stop is requested (a signal, or `nightshift
 * stop`, asked of the repository about once a second): then true. */
bool ns__step_wait(step_run *s, double secs)
{
    double from = ns__mono(), until = from + secs, asked = from;
    while (!(s->stop || ns__run_stop_requested(s->rc))) {
        if (ns__mono() - asked >= 1) {
            asked = ns__mono();
            if ((s->stop = stop_asked(s)))
                break;
        }
        double left = until - ns__mono();
        if (left <= 0) {
            s->secs[4] += ns__mono() - from;
            return false;
        }
        struct timespec ts = {0, (long)((left < 0.1 ? left : 0.1) * 1e9)};
        nanosleep(&ts, NULL);
    }
    s->secs[4] += ns__mono() - from;
    return true;
}

/* Who wrote the file at path, for messages. */
void ns__run_writer_of(run_ctx *rc, const char *path, char *buf, size_t n)
{
    char repo[33];
    int64_t id;
    if (!ns__file_writer(path, repo, &id))
        snprintf(buf, n, "another run (the file does not say which)");
    else if (strcmp(repo, rc->repo->id) == 0)
        snprintf(buf, n, "execution %lld of this repository", (long long)id);
    else
        snprintf(buf, n, "execution %lld of another repository (%.12s)", (long long)id, repo);
}

ns_status ns__run_check_output(step_run *s, const char *path, const char *shown, const char *what,
                               ns_error *err)
{
    struct stat sb;
    char who[128];
    if (lstat(path, &sb) != 0)
        return NS_OK;
    if (S_ISLNK(sb.st_mode))
        return ns__err(err, NS_EIO, NULL,
                       "%s %s: it is a symbolic link; nightshift does not write through one "
                       "(remove it, or choose another path)",
                       what, shown);
    if (!S_ISREG(sb.st_mode) || sb.st_size == 0)
        return NS_OK;
    ns__run_writer_of(s->rc, path, who, sizeof(who));
    return ns__err(err, NS_EREFUSED, NULL,
                   "%s %s already holds what %s wrote; nightshift never overwrites another "
                   "execution's file: move it away, or name the file with ${execution.id}",
                   what, shown, who);
}

ns_status ns__run_step_end(step_run *s, ns_batch_status status, const char *code, char *msg,
                           size_t msglen, ns_error *err)
{
    ns__run_redact(s->rc, msg, msglen);
    s->se.counts = s->counts;
    return s->rc->repo->vt->step_end(s->rc->repo, &s->se, status, code, msg, err);
}

void ns__run_notice(run_ctx *rc, const char *fmt, ...) NS_PRINTF(2, 3);
void ns__run_notice(run_ctx *rc, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ns__run_redact(rc, msg, sizeof(msg));
    for (size_t i = 0; i < rc->nlisteners; i++)
        if (rc->listeners[i]->notice)
            rc->listeners[i]->notice(rc->listeners[i]->ud, msg);
}

void ns__run_report(step_run *s, ns_step_event ev, ns_batch_status status, const char *message)
{
    char shown[1024];
    if (message) {
        snprintf(shown, sizeof(shown), "%s", message);
        ns__run_redact(s->rc, shown, sizeof(shown));
        message = shown;
    }
    ns_progress p = {.execution_id = s->rc->launch.execution_id,
                     .job = s->rc->job->name,
                     .step = s->def->name,
                     .status = status,
                     .counts = s->counts,
                     .bytes_done = -1,
                     .bytes_total = -1,
                     .elapsed = ns__mono() - s->t0,
                     .rejects = s->rejects ? s->rejects_shown : NULL,
                     .message = message};
    if (s->reader)
        s->reader->vt->progress(s->reader, &p.bytes_done, &p.bytes_total);
    p.bytes_start = s->bytes_start;
    for (size_t i = 0; i < s->rc->nlisteners; i++) {
        const ns_listener *l = s->rc->listeners[i];
        void (*fn)(void *, const ns_progress *) = ev == NS_EV_STEP_START ? l->step_start
                                                  : ev == NS_EV_CHUNK    ? l->chunk
                                                                         : l->step_end;
        if (fn)
            fn(l->ud, &p);
    }
}

void ns__run_job_event(run_ctx *rc, bool end, const ns_job_event *e)
{
    for (size_t i = 0; i < rc->nlisteners; i++) {
        const ns_listener *l = rc->listeners[i];
        void (*fn)(void *, const ns_job_event *) = end ? l->job_end : l->job_start;
        if (fn)
            fn(l->ud, e);
    }
}

void ns__run_rejected(step_run *s, int64_t line, const char *column, const char *code,
                      const char *message)
{
    ns_reject_event e = {
        s->rc->launch.execution_id, s->rc->job->name, s->def->name, line, column, code, message};
    for (size_t i = 0; i < s->rc->nlisteners; i++)
        if (s->rc->listeners[i]->rejected)
            s->rc->listeners[i]->rejected(s->rc->listeners[i]->ud, &e);
}

bool ns__run_stop_requested(const run_ctx *rc)
{
    return rc->stop && *rc->stop;
}

/*
 * Substitutes a template into what is used (*real) and what may be shown or
 * stored (*shown): the same text with every ${env.X} left unexpanded, since an
 * environment value is never written to the repository, logs or output.
 */
static ns_status subst_as(step_run *s, int64_t execution_id, const char *tmpl, const char *what,
                          bool path, char **real, char **shown, ns_error *err)
{
    ns_subst_ctx c = {.job = s->rc->job,
                      .param_names = (const char *const *)s->rc->params->names,
                      .param_values = (const char *const *)s->rc->params->values,
                      .nparams = s->rc->params->n,
                      .execution_id = execution_id,
                      .step = s->def->name,
                      .keep_env = true,
                      .secrets = &s->rc->secrets,
                      .path = path};
    ns_status st = ns__subst(tmpl, &c, what, shown, err);
    c.keep_env = false;
    if (st == NS_OK && (st = ns__subst(*shown, &c, what, real, err)) != NS_OK) {
        free(*shown);
        *shown = NULL;
    }
    return st;
}

ns_status ns__run_subst_as(step_run *s, int64_t execution_id, const char *tmpl, const char *what,
                           char **real, char **shown, ns_error *err)
{
    return subst_as(s, execution_id, tmpl, what, strcmp(what, "connection") != 0, real, shown, err);
}

/* The same, for this execution. */
ns_status ns__run_subst(step_run *s, const char *tmpl, const char *what, char **real, char **shown,
                        ns_error *err)
{
    return ns__run_subst_as(s, s->rc->launch.execution_id, tmpl, what, real, shown, err);
}

/* `shown` made absolute when `real` (its expansion) is relative: the form a
 * checkpoint stores, so a restart from any directory finds the file. */
char *ns__run_absolute(const char *real, const char *shown)
{
    char cwd[4096];
    if (real[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        return ns__strdup(shown);
    return ns__asprintf("%s/%s", cwd, shown);
}

/* Makes a relative path (or sqlite: URL) relative to the run's working
 * directory, when it has one other than the current directory. */
ns_status ns__run_resolve(const run_ctx *rc, char **path, size_t skip, ns_error *err)
{
    if (!rc->workdir || !rc->workdir[0] || (*path)[skip] == '/' || (*path)[skip] == '\0')
        return NS_OK;
    char *abs = ns__asprintf("%.*s%s/%s", (int)skip, *path, rc->workdir, *path + skip);
    if (!abs)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    free(*path);
    *path = abs;
    return NS_OK;
}

ns_status ns__run_commit_hook(void *arg, ns_error *err)
{
    step_run *s = arg;
    s->se.counts = s->counts;
    return s->rc->repo->vt->step_update(s->rc->repo, &s->se, &s->stop, err);
}

#ifdef NS_TEST_HOOKS
bool ns__fault_at(const char *name, int64_t n)
{
    const char *v = getenv(name);
    return v && atoll(v) == n;
}
#endif

ns_status ns__run_commit(step_run *s, ns_writer *w, const ns_ckpt_key *key, int64_t n,
                         bool *committed, ns_error *err)
{
    (void)n; /* numbers the commit for the fault points of test builds */
    /* Same database: the repository update rides in the transaction (and is
     * undone with it: the step record keeps its old version). */
    int64_t version = s->se.version;
    ns_status st =
        w->vt->commit(w, key, s->context, s->shared ? ns__run_commit_hook : NULL, s, err);
    *committed = st == NS_OK;
    if (st != NS_OK) {
        s->se.version = version;
        return st;
    }
    /* Fault injection for the tests (docs/internals.md): die in the window
     * between the target's commit and the repository's update. */
    if (!s->shared)
        NS_FAULT("NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT", n, _exit(99));
    if (!s->shared && (st = ns__run_commit_hook(s, err)) != NS_OK)
        return st;
    /* Fault injection: freeze the whole process (heartbeat thread included)
     * with chunk n recorded, as a paused VM or a partitioned host would. */
    NS_FAULT("NIGHTSHIFT_TEST_PAUSE_AFTER_COMMIT", n, raise(SIGSTOP));
    return NS_OK;
}

/*
 * Whether execution `id` of this repository belongs to this run's job
 * instance. An execution it does not have is not ours (NS_OK); a failure to
 * read (out of memory, a dead repository) is the repository's error, so no
 * caller takes "could not read" for "someone else's".
 */
static ns_status instance_of(run_ctx *rc, int64_t id, bool *ours, ns_error *err)
{
    ns_exec_info info = {0};
    ns_error e = {0};
    *ours = id == rc->launch.execution_id;
    if (*ours)
        return NS_OK;
    ns_status st = rc->repo->vt->exec_info(rc->repo, id, &info, &e);
    *ours = st == NS_OK && info.instance_id == rc->launch.instance_id;
    ns__exec_info_free(&info);
    if (st == NS_OK || st == NS_ENOTFOUND)
        return NS_OK;
    if (err)
        *err = e;
    return st;
}

ns_status ns__run_claim(step_run *s, ns_writer *w, const ns_ckpt_key *key, char **ctx,
                        bool *foreign, ns_error *err)
{
    run_ctx *rc = s->rc;
    char *raw = NULL, origin[256], where[96];
    ns_status st;
    ns_ckpt c;

    *ctx = NULL;
    *foreign = false;
    if ((st = w->vt->checkpoint(w, key, &raw, err)) != NS_OK || !raw)
        return st;
    ns_status dec = ns__ckpt_decode(raw, &c, err);
    if (dec == NS_ENOMEM) {
        free(raw);
        return dec;
    }
    if (err)
        ns_error_clear(err); /* unreadable: said below, as the refusal's reason */
    bool readable = dec == NS_OK, own = false;
    where[0] = '\0';
    /* Trusted only when this repository wrote it for this very instance: an
     * execution id alone could be another repository's (both count from 1),
     * and "the repository ran this step before" says nothing about who wrote
     * the row (issue 8: a stale checkpoint of another repository, claimed by
     * a run killed before its first commit, was trusted by the next run and
     * every row was skipped). */
    if (readable && c.signed_ && strcmp(c.repository, rc->repo->id) == 0 && c.execution_id > 0 &&
        (st = instance_of(rc, c.execution_id, &own, err)) != NS_OK) {
        ns__ckpt_free(&c);
        free(raw);
        return st;
    }
    if (readable)
        ns__ckpt_where(&c, where, sizeof(where));
    if (!readable)
        snprintf(origin, sizeof(origin), "an unreadable checkpoint");
    else if (!c.signed_)
        snprintf(origin, sizeof(origin),
                 "a checkpoint that does not say which repository wrote it (an older "
                 "nightshift, or an edited row)%s",
                 where);
    else if (strcmp(c.repository, rc->repo->id) != 0)
        snprintf(origin, sizeof(origin),
                 "a checkpoint of this job instance written by execution %lld of another "
                 "repository (%.12s)%s",
                 (long long)c.execution_id, c.repository, where);
    else
        snprintf(origin, sizeof(origin),
                 "a checkpoint written by execution %lld, which this repository does not "
                 "record for this job instance%s",
                 (long long)c.execution_id, where);
    ns__ckpt_free(&c);
    if (own && rc->checkpoint != NS_CHECKPOINT_IGNORE) {
        *ctx = raw;
        return NS_OK;
    }
    if (own) {
        ns__run_notice(rc,
                       "step %s: its checkpoint%s is disregarded (--ignore-checkpoint): the step "
                       "starts from its first record",
                       s->def->name, where);
    } else if (rc->checkpoint == NS_CHECKPOINT_IGNORE) {
        ns__run_notice(rc,
                       "step %s: the target holds %s; it is disregarded (--ignore-checkpoint): "
                       "the step starts from its first record",
                       s->def->name, origin);
    } else if (rc->checkpoint == NS_CHECKPOINT_ADOPT && readable) {
        ns__run_notice(rc, "step %s: adopting %s (--adopt-checkpoint)", s->def->name, origin);
        *ctx = raw;
        *foreign = true;
        raw = NULL;
    } else {
        st = ns__err(err, NS_EREFUSED, NULL,
                     "the target holds %s. Resuming from it would skip the records it counts as "
                     "done, starting over could write them twice: run again with "
                     "--adopt-checkpoint to resume from it, or with --ignore-checkpoint to start "
                     "this step from its first record",
                     origin);
    }
    free(raw);
    return st;
}

/* ------------------------------------------- what plugins are given */

/* A template of the step (ns_io_env.subst). */
static ns_status env_subst(void *ctx, const char *tmpl, const char *what, bool path, char **real,
                           char **shown, ns_error *err)
{
    step_run *s = ctx;
    /* An HTTP request's parts are not paths: a parameter may hold a '/'. */
    bool text = strncmp(what, "writer.http", 11) == 0;
    ns_status st = subst_as(s, s->rc->launch.execution_id, tmpl, what, !text, real, shown, err);
    /* a password in an HTTP url (https://user:PW@host) is a secret too */
    if (st == NS_OK && text)
        ns__run_secret_url(s->rc, *real);
    if (st == NS_OK && path &&
        ((st = ns__run_resolve(s->rc, real, 0, err)) != NS_OK ||
         (st = ns__run_resolve(s->rc, shown, 0, err)) != NS_OK)) {
        free(*real);
        free(*shown);
        *real = *shown = NULL;
    }
    return st;
}

/* A connection of the job (ns_io_env.connection): its URL substituted, its
 * password registered as a secret, an sqlite: path resolved against the
 * launch directory; shown as "connection 'x' (URL with ${env.X} kept)". */
static ns_status env_connection(void *ctx, const char *name, char **url, char **shown,
                                const ns_db_driver **driver, ns_error *err)
{
    step_run *s = ctx;
    const ns_conn_def *conn = ns__job_conn(s->rc->job, name);
    char *u = NULL, *us = NULL;
    ns_status st;
    if (!conn)
        return ns__err(err, NS_ECONFIG, NULL, "no connection named '%s'", name);
    if ((st = ns__run_subst(s, conn->url, "connection", &u, &us, err)) != NS_OK)
        return st;
    ns__run_secret_url(s->rc, u);
    const ns_db_driver *d = ns__db_driver(u);
    if (!d) {
        char forms[256];
        ns__db_forms(&ns__registry, forms, sizeof(forms));
        st = ns__err(err, NS_EUNSUPPORTED, NULL,
                     "connection '%s' (%s): unsupported database (use %s)", conn->name, us, forms);
        goto out;
    }
    if (d->path_at && ((st = ns__run_resolve(s->rc, &u, d->path_at, err)) != NS_OK ||
                       (st = ns__run_resolve(s->rc, &us, d->path_at, err)) != NS_OK))
        goto out;
    if (!(*shown = ns__asprintf("connection '%s' (%s)", conn->name, us))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    *url = u;
    *driver = d;
    u = NULL;
out:
    free(u);
    free(us);
    return st;
}

ns_status ns__run_expand(run_ctx *rc, const char *shown, const char *what, char **real,
                         ns_error *err)
{
    ns_subst_ctx env_only = {.secrets = &rc->secrets};
    return ns__subst(shown, &env_only, what, real, err);
}

static ns_status env_expand(void *ctx, const char *shown, char **real, ns_error *err)
{
    step_run *s = ctx;
    return ns__run_expand(s->rc, shown, s->def->writer ? s->def->writer->name : "writer", real,
                          err);
}

static ns_status env_output(void *ctx, const char *path, const char *shown, const char *what,
                            ns_error *err)
{
    return ns__run_check_output(ctx, path, shown, what, err);
}

static void env_tag(void *ctx, int fd)
{
    step_run *s = ctx;
    ns__tag_writer(fd, s->rc->repo->id, s->rc->launch.execution_id);
}

/* Whether an execution of this job instance, recorded in this repository,
 * wrote the file (its tag says which). */
static bool env_ours(void *ctx, const char *path)
{
    step_run *s = ctx;
    run_ctx *rc = s->rc;
    char repo[33];
    int64_t id;
    bool ours = false;
    /* Not knowing is "not ours": the file is then kept, never replaced. */
    return ns__file_writer(path, repo, &id) && strcmp(repo, rc->repo->id) == 0 &&
           instance_of(rc, id, &ours, NULL) == NS_OK && ours;
}

static bool env_ours_execution(void *ctx, int64_t id)
{
    step_run *s = ctx;
    bool ours = false;
    return instance_of(s->rc, id, &ours, NULL) == NS_OK && ours;
}

static bool env_stopping(void *ctx)
{
    return ns__step_stopping(ctx);
}

static void env_retried(void *ctx, const char *what, int64_t attempt, double wait,
                        const char *detail)
{
    ns__step_retried(ctx, what, attempt, wait, detail);
}

/* A connection's statement_timeout (the default when it has none). */
static double env_stmt_limit(void *ctx, const char *name)
{
    step_run *s = ctx;
    const ns_conn_def *conn = ns__job_conn(s->rc->job, name);
    return conn ? conn->statement_timeout : NS_STATEMENT_TIMEOUT;
}

static void env_notice(void *ctx, const char *text)
{
    step_run *s = ctx;
    ns__run_notice(s->rc, "step %s: %s", s->def->name, text);
}

ns_io_env ns__run_env(step_run *s)
{
    const ns__params *p = s->rc->params;
    return (ns_io_env){.ctx = s,
                       .subst = env_subst,
                       .connection = env_connection,
                       .expand = env_expand,
                       .output = env_output,
                       .tag = env_tag,
                       .ours = env_ours,
                       .ours_execution = env_ours_execution,
                       .execution_id = s->rc->launch.execution_id,
                       .job_name = s->rc->job->name,
                       .job_key = s->rc->launch.job_key,
                       .step = s->def->name,
                       .retry = &s->def->retry,
                       .retried = env_retried,
                       .stopping = env_stopping,
                       .watchdog = s->rc->watchdog,
                       .stmt_limit = env_stmt_limit,
                       .notice = env_notice,
                       .param_names = (const char *const *)p->names,
                       .param_values = (const char *const *)p->values,
                       .nparams = p->n,
                       .chunk = s->def->chunk};
}

/* ns_share.conn: asked of the repository when the writer's driver is its. */
static void *share_conn(void *arg, const ns_db_driver *driver, const char *url, void *conn)
{
    ns_repo *repo = arg;
    if (!driver || driver->repo != repo->vt || !repo->vt->shared)
        return NULL;
    return repo->vt->shared(repo, url, conn);
}

ns_share ns__run_share(run_ctx *rc)
{
    return (ns_share){rc->repo, share_conn};
}

/*
 * Opens s->writer, a table writer on connection `conn_name` with no table:
 * the connection only, for SQL steps and compares (`own`: never the
 * repository's connection). When the target is the repository's own
 * database the writer shares its connection and transactions (s->shared).
 */
ns_status ns__run_open_writer(step_run *s, const char *conn_name, bool own, ns_error *err)
{
    ns_io_env env = ns__run_env(s);
    ns_share share = ns__run_share(s->rc);
    ns_writer_args args = {.env = &env, .lease = s->rc->lease, .share = own ? NULL : &share};
    ns_status st = ns__table_open(conn_name, NULL, NS_MODE_INSERT, NULL, 0, &args, &s->writer, err);
    if (st == NS_OK)
        s->shared = s->writer->shared;
    return st;
}

/*
 * Opens s->store, where an at-least-once writer's checkpoint is kept: a
 * connection to the repository's own database, sharing its connection, so
 * the checkpoint and the step's record commit in one transaction.
 */
ns_status ns__run_open_store(step_run *s, ns_error *err)
{
    ns_io_env env = ns__run_env(s);
    ns_share share = ns__run_share(s->rc);
    ns_writer_args args = {
        .env = &env, .lease = s->rc->lease, .share = &share, .stmt_limit = NS_STATEMENT_TIMEOUT};
    ns_status st = ns__table_open_url(ns__db_driver(s->rc->repo->url), s->rc->repo->url,
                                      "the repository's database", NULL, NS_MODE_INSERT, NULL, 0,
                                      &args, &s->store, err);
    if (st == NS_OK)
        s->shared = s->store->shared;
    return st;
}

/*
 * Commits a single-transaction step (sql, rebuild, compare into a table)
 * with a checkpoint row saying it is done and how many rows it wrote; the
 * repository is updated in the same transaction when it shares the
 * connection, else right after (a crash in between is caught on restart by
 * that row).
 */
ns_status ns__step_commit_done(step_run *s, ns_writer *w, const ns_ckpt_key *key, int64_t written,
                               ns_error *err)
{
    s->counts.write = written;
    s->counts.commit = 1;
    ns_ckpt c = {.execution_id = s->rc->launch.execution_id,
                 .step_execution_id = s->se.id,
                 .done = true,
                 .counts = {.write = written, .commit = 1}};
    snprintf(c.repository, sizeof(c.repository), "%s", s->rc->repo->id);
    free(s->context);
    s->context = NULL;
    ns_status st = ns__ckpt_encode(&c, &s->context, err);
    if (st != NS_OK)
        return st;
    s->se.context = s->context;
    bool committed;
    st = ns__run_commit(s, w, key, 1, &committed, err);
    if (!committed)
        s->counts = (ns_counts){0};
    return st;
}

/* The job's parameters for :name binding. */
ns_sql_args ns__step_sql_args(const run_ctx *rc)
{
    const ns__params *p = rc->params;
    return (ns_sql_args){(const char *const *)p->names, (const char *const *)p->values, p->types,
                         p->n};
}

/* Starts a step execution: the instance's state of the step, a new record
 * of it, the listener told. *started once the record exists. */
ns_status ns__step_start(step_run *s, ns_step_state *state, bool *started, ns_error *err)
{
    run_ctx *rc = s->rc;
    ns_status st;
    if ((st = rc->repo->vt->step_state(rc->repo, rc->launch.instance_id, s->def->name, state,
                                       err)) != NS_OK ||
        (st = rc->repo->vt->step_begin(rc->repo, rc->launch.execution_id, s->def->name, &s->se,
                                       err)) != NS_OK)
        return st;
    *started = true;
    ns__run_report(s, NS_EV_STEP_START, NS_BATCH_STARTED, NULL);
    return NS_OK;
}

/* The counts a done checkpoint recorded (a restart after its commit). */
ns_status ns__step_counts_done(step_run *s, const char *ctx, ns_error *err)
{
    ns_ckpt c;
    ns_status st = ns__ckpt_decode(ctx, &c, err);
    if (st != NS_OK)
        return st;
    s->counts.write = c.counts.write;
    s->counts.commit = c.counts.commit;
    ns__ckpt_free(&c);
    ns__run_notice(s->rc, "step %s: already committed in the target; recorded as completed",
                   s->def->name);
    return NS_OK;
}

/* Ends a step: failure details, its record in the repository, the listener. */
void ns__step_end(step_run *s, ns_status st, const ns_error *e, bool started,
                  ns_batch_status *status, char *code, size_t codelen, char *msg, size_t msglen)
{
    if (st != NS_OK) {
        /* A statement cut short on a stop request (the watchdog): STOPPED,
         * its transaction undone; the next run does the step again. */
        bool stopped = e->code == NS_ESTOPPED;
        *status = stopped ? NS_BATCH_STOPPED : NS_BATCH_FAILED;
        snprintf(code, codelen, "%s", stopped ? "STOPPED" : "FAILED");
        snprintf(msg, msglen, "%s", e->message);
        s->counts.write = 0;
        if (s->writer)
            s->writer->vt->rollback(s->writer);
    }
    if (!started)
        return;
    ns_error e2 = {0};
    if (ns__run_step_end(s, *status, code, msg, msglen, &e2) != NS_OK &&
        *status != NS_BATCH_FAILED) {
        *status = NS_BATCH_FAILED;
        snprintf(code, codelen, "FAILED");
        snprintf(msg, msglen, "%s", e2.message);
    }
    ns__run_report(s, NS_EV_STEP_END, *status, msg[0] ? msg : NULL);
}
