/*
 * launch.c - ns_job_run and ns_execution_restart: parameters, the lease,
 * the launch in the repository (start, restart, refuse), then the flow.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The lease's longest: PostgreSQL takes idle_in_transaction_session_timeout
 * (set to the lease) in milliseconds, as a 32-bit integer. */
#define LEASE_MAX 2000000.0

/* The lease: the launch's (the caller's setting: the library reads no
 * environment variable for it; the command passes $NIGHTSHIFT_LEASE), else
 * 60 s. A value that is not a number of seconds in (0, LEASE_MAX] is an
 * error, not 60. */
static ns_status lease_of(const ns_launch *launch, double *out, ns_error *err)
{
    if (!launch || launch->lease_seconds == 0)
        return NS_OK;
    if (!(launch->lease_seconds > 0 && launch->lease_seconds <= LEASE_MAX))
        return ns__err(err, NS_EPARAM, NULL,
                       "lease: %g is not a number of seconds greater than 0 and at most %.0f",
                       launch->lease_seconds, LEASE_MAX);
    *out = launch->lease_seconds;
    return NS_OK;
}

static int exit_for(ns_batch_status s)
{
    switch (s) {
    case NS_BATCH_COMPLETED:
        return NS_EXIT_COMPLETED;
    case NS_BATCH_STOPPED:
        return NS_EXIT_STOPPED;
    default:
        return NS_EXIT_FAILED;
    }
}

/* `nightshift stop` for a run blocked in a statement: the watchdog asks the
 * repository, on a read-only handle of its own (opened on the first ask,
 * in the watchdog's thread), whether the execution is STOPPING. */
typedef struct stop_probe {
    const char *url;
    int64_t execution_id;
    ns_repo *repo;
} stop_probe;

static bool stop_asked_elsewhere(void *arg)
{
    stop_probe *p = arg;
    ns_exec_info info = {0};
    if (!p->repo && ns_repo_open_readonly(p->url, &p->repo, NULL) != NS_OK)
        return false;
    bool asked = p->repo->vt->exec_info(p->repo, p->execution_id, &info, NULL) == NS_OK &&
                 info.status == NS_BATCH_STOPPING;
    ns__exec_info_free(&info);
    return asked;
}

static void notify_notice(void *arg, const char *line)
{
    ns__run_notice(arg, "%s", line);
}

/* Sets up the launch of a scheduler's tick: its time, the key of its
 * parameters, and the run.id of the instance the last tick with them ran
 * (*with_run: the parameters with it, malloc'd), so that a failed one is
 * restarted rather than a new one begun. */
static ns_status tick_launch(ns_repo *repo, const ns_job *job, int64_t at, const ns__params *p,
                             bool has_run_id, ns_launch_req *req, char iso[32], char key[33],
                             char prev_run[32], ns_param_val **with_run, ns_error *err)
{
    ns_status st;
    bool found = false;
    if (has_run_id)
        return ns__err(err, NS_EPARAM, NULL, "a tick's run cannot be given run.id");
    if (!repo->vt->tick_prev_run)
        return ns__err(err, NS_EUNSUPPORTED, NULL, "repository: no ticks in this backend");
    ns__iso_at((double)at, iso, 32);
    if ((st = ns__instance_key(p->v, p->n, key)) != NS_OK)
        return ns__err(err, st, NULL, "out of memory");
    if ((st = repo->vt->tick_prev_run(repo, job->name, key, prev_run, &found, err)) != NS_OK)
        return st;
    req->tick_at = at;
    req->scheduled_at = iso;
    req->params_key = key;
    if (!found || !prev_run[0])
        return NS_OK;
    if (!(*with_run = calloc(p->n + 1, sizeof(**with_run))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (p->n)
        memcpy(*with_run, p->v, p->n * sizeof(**with_run));
    (*with_run)[p->n] = (ns_param_val){"run.id", "int", prev_run, true};
    req->params = *with_run;
    req->nparams = p->n + 1;
    return NS_OK;
}

ns_status ns_job_run(ns_repo *repo, const ns_job *job, const ns_launch *launch, ns_outcome *out,
                     ns_error *err)
{
    ns__params p = {0};
    stop_probe probe = {0};
    run_ctx rc = {.workdir = launch ? launch->workdir : NULL,
                  .repo = repo,
                  .job = job,
                  .stop = launch ? launch->stop : NULL,
                  .params = &p,
                  .checkpoint = launch ? launch->checkpoint : NS_CHECKPOINT_OWN};
    char cwd[4096];
    ns_status st;
    char msg[1024] = "";
    double t0 = ns__mono();

    out->execution_id = 0;
    out->status = NS_BATCH_UNKNOWN;
    out->exit_code = NS_EXIT_USAGE;
    out->message[0] = out->code[0] = '\0';
    /* The listeners: the launch's one, then its list. */
    size_t nl = launch ? launch->nlisteners : 0;
    if (!(rc.listeners = calloc(nl + 1, sizeof(*rc.listeners)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto done;
    }
    if (launch && launch->listener)
        rc.listeners[rc.nlisteners++] = launch->listener;
    for (size_t i = 0; i < nl; i++)
        if (launch->listeners[i])
            rc.listeners[rc.nlisteners++] = launch->listeners[i];
    ns__secrets_merge(&rc.secrets, &repo->secrets);
    if ((st = ns__params_resolve(job, launch ? launch->params : NULL, launch ? launch->nparams : 0,
                                 &p, err)) != NS_OK)
        goto done;
    if ((st = ns__job_check_env(job, err)) != NS_OK)
        goto done;
    if ((st = ns__params_check_paths(job, &p, err)) != NS_OK)
        goto done;
    bool has_run_id = false;
    for (size_t i = 0; i < p.n; i++)
        has_run_id |= strcmp(p.v[i].name, "run.id") == 0;
    if (has_run_id && launch && launch->next) {
        st = ns__err(err, NS_EPARAM, NULL, "--next and run.id=... cannot be used together");
        goto done;
    }
    const char *workdir = rc.workdir ? rc.workdir : getcwd(cwd, sizeof(cwd));
    double lease = 60;
    if ((st = lease_of(launch, &lease, err)) != NS_OK)
        goto done;
    ns_launch_req req = {.job_name = job->name,
                         .job_path = job->path,
                         .workdir = workdir ? workdir : "",
                         .params = p.v,
                         .nparams = p.n,
                         .next = launch && launch->next,
                         .restartable = job->restartable,
                         .lease = lease};
    rc.lease = lease;
    char tick_iso[32], params_key[33], prev_run[32] = "";
    ns_param_val *with_run = NULL;
    if (launch && launch->tick_at) {
        if ((st = tick_launch(repo, job, launch->tick_at, &p, has_run_id, &req, tick_iso,
                              params_key, prev_run, &with_run, err)) != NS_OK)
            goto done;
    }
    st = repo->vt->launch(repo, &req, &rc.launch, err);
    /* A tick whose instance completed (or was abandoned) starts the next. */
    if (st == NS_EREFUSED && req.tick_at &&
        (rc.launch.refused == NS_BATCH_COMPLETED || rc.launch.refused == NS_BATCH_ABANDONED)) {
        ns_error_clear(err);
        req.params = p.v;
        req.nparams = p.n;
        req.next = true;
        prev_run[0] = '\0';
        st = repo->vt->launch(repo, &req, &rc.launch, err);
    }
    free(with_run);
    if (st == NS_OK && prev_run[0] &&
        (st = ns__params_add(&p, "run.id", "int", prev_run, true, err)) != NS_OK)
        goto done;
    if (st != NS_OK) {
        if (rc.launch.notice[0])
            ns__run_notice(&rc, "%s", rc.launch.notice);
        out->exit_code = st == NS_EREFUSED ? NS_EXIT_REFUSED : NS_EXIT_FAILED;
        goto done;
    }
    /* From here on, a failure is the execution's. */
    out->exit_code = NS_EXIT_FAILED;
    if (rc.launch.notice[0])
        ns__run_notice(&rc, "%s", rc.launch.notice);
    if (rc.launch.run_id) {
        char v[32];
        snprintf(v, sizeof(v), "%lld", (long long)rc.launch.run_id);
        if ((st = ns__params_add(&p, "run.id", "int", v, true, err)) != NS_OK)
            goto done;
    }
    out->execution_id = rc.launch.execution_id;
    if (rc.launch.restart_of)
        ns__run_notice(&rc, "execution %lld restarts execution %lld",
                       (long long)rc.launch.execution_id, (long long)rc.launch.restart_of);
    if ((st = repo->vt->exec_status(repo, rc.launch.execution_id, NS_BATCH_STARTED, "EXECUTING", "",
                                    false, err)) != NS_OK)
        goto done;
    ns_job_event je = {
        rc.launch.execution_id, job->name, rc.launch.restart_of, NS_BATCH_STARTED, NULL, NULL, 0};
    ns__run_job_event(&rc, false, &je);
    ns__notify_run(repo, job, rc.launch.execution_id, true, &rc.secrets, notify_notice, &rc);
    if ((st = ns__watchdog_start(rc.stop, &rc.watchdog, err)) != NS_OK)
        goto done;
    probe.url = repo->url;
    probe.execution_id = rc.launch.execution_id;
    ns__watchdog_set_poll(rc.watchdog, stop_asked_elsewhere, &probe);
    /* Heartbeats at a third of the lease, also in the middle of a chunk
     * (not past a statement's limit: a heartbeat says the run moves). */
    if (repo->vt->keepalive_start &&
        (st = repo->vt->keepalive_start(repo, rc.launch.execution_id, lease / 3, rc.watchdog,
                                        err)) != NS_OK)
        goto done;

    ns_batch_status status, end = NS_BATCH_COMPLETED;
    char code[40] = "COMPLETED";
    ns__flow_run(&rc, code, sizeof(code), msg, sizeof(msg), &end);
    /* The job's exit code: the last step's when it says more than the
     * outcome (COMPLETED_WITH_DIFFERENCES, ASSERT_FAILED), else the outcome. */
    bool completed_code = strncmp(code, "COMPLETED", 9) == 0;
    status = end;
    if (end == NS_BATCH_STOPPED || (end == NS_BATCH_COMPLETED) != completed_code)
        snprintf(code, sizeof(code), "%s", ns_batch_status_name(end));
    if (repo->vt->keepalive_stop)
        repo->vt->keepalive_stop(repo);
    ns__watchdog_free(rc.watchdog);
    rc.watchdog = NULL;
    ns_repo_close(probe.repo);
    probe.repo = NULL;
    ns_error e2 = {0};
    ns__run_redact(&rc, msg, sizeof(msg));
    if (repo->vt->exec_status(repo, rc.launch.execution_id, status, code, msg, true, &e2) !=
        NS_OK) {
        status = NS_BATCH_FAILED;
        snprintf(msg, sizeof(msg), "%s", e2.message);
    }
    out->status = status;
    out->exit_code = exit_for(status);
    snprintf(out->message, sizeof(out->message), "%s", msg);
    snprintf(out->code, sizeof(out->code), "%s",
             status == NS_BATCH_FAILED && e2.code ? "FAILED" : code);
    je = (ns_job_event){
        rc.launch.execution_id, job->name,      rc.launch.restart_of, status, out->code,
        out->message,           ns__mono() - t0};
    ns__run_job_event(&rc, true, &je);
    /* After the end is recorded: a notification never changes the result. */
    ns__notify_run(repo, job, rc.launch.execution_id, false, &rc.secrets, notify_notice, &rc);
    st = NS_OK;
done:
    if (st == NS_EPARAM || st == NS_ECONFIG)
        out->exit_code = NS_EXIT_USAGE;
    else if (st == NS_ENOMEM)
        out->exit_code = NS_EXIT_FAILED; /* not the caller's fault */
    /* The boundary: nothing the caller prints may carry a secret. */
    ns__run_redact(&rc, out->message, sizeof(out->message));
    if (err)
        ns__run_redact(&rc, err->message, sizeof(err->message));
    if (rc.watchdog && repo->vt->keepalive_stop)
        repo->vt->keepalive_stop(repo);
    ns__watchdog_free(rc.watchdog);
    ns_repo_close(probe.repo);
    ns__secrets_free(&rc.secrets);
    ns__params_free(&p);
    free(rc.listeners);
    return st;
}

ns_status ns_execution_restart(ns_repo *repo, int64_t id, const ns_launch *launch, ns_outcome *out,
                               ns_error *err)
{
    ns_exec_info info = {0};
    ns_job *job = NULL;
    char **args = NULL;
    ns_status st;

    out->execution_id = 0;
    out->status = NS_BATCH_UNKNOWN;
    out->exit_code = NS_EXIT_FAILED;
    out->message[0] = out->code[0] = '\0';
    if ((st = repo->vt->exec_info(repo, id, &info, err)) != NS_OK) {
        out->exit_code = st == NS_ENOTFOUND ? NS_EXIT_USAGE : NS_EXIT_FAILED;
        goto out;
    }
    if (info.status == NS_BATCH_COMPLETED || info.status == NS_BATCH_ABANDONED) {
        st = ns__err(err, NS_EREFUSED, NULL,
                     "execution %lld is %s; only FAILED or STOPPED "
                     "executions can be restarted",
                     (long long)id, ns_batch_status_name(info.status));
        out->exit_code = NS_EXIT_REFUSED;
        goto out;
    }
    if (!info.job_path[0]) {
        st = ns__err(err, NS_EREFUSED, NULL, "execution %lld has no job file recorded",
                     (long long)id);
        out->exit_code = NS_EXIT_REFUSED;
        goto out;
    }
    if ((st = ns_job_load(info.job_path, &job, err)) != NS_OK) {
        ns__err_prefix(err, "restart of execution %lld", (long long)id);
        out->exit_code = NS_EXIT_USAGE;
        goto out;
    }
    if (!(args = calloc(info.nparams + 1, sizeof(*args)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    size_t nargs = 0;
    for (size_t i = 0; i < info.nparams; i++) {
        /* Parameters the job no longer declares cannot be passed again. */
        if (strcmp(info.params[i].name, "run.id") != 0 && !ns__job_param(job, info.params[i].name))
            continue;
        args[nargs++] = ns__asprintf("%s=%s", info.params[i].name, info.params[i].value);
    }
    ns_launch l = {.params = (const char *const *)args,
                   .nparams = nargs,
                   .listener = launch ? launch->listener : NULL,
                   .listeners = launch ? launch->listeners : NULL,
                   .nlisteners = launch ? launch->nlisteners : 0,
                   .stop = launch ? launch->stop : NULL,
                   .lease_seconds = launch ? launch->lease_seconds : 0,
                   .workdir = info.workdir,
                   .checkpoint = launch ? launch->checkpoint : NS_CHECKPOINT_OWN};
    st = ns_job_run(repo, job, &l, out, err);
out:
    if (st != NS_OK && err)
        ns__redact(&repo->secrets, err->message, sizeof(err->message));
    for (size_t i = 0; args && args[i]; i++)
        free(args[i]);
    free(args);
    ns_job_free(job);
    ns__exec_info_free(&info);
    return st;
}
