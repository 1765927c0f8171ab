/* repo.c - repository dispatch and the backend-independent launch rules. */
#include "repo/repo.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ns_status ns_repo_open(const char *url, ns_repo **out, ns_error *err)
{
    const ns_repo_vt *vt = NULL;
    ns_repo *r;
    ns_status st;

    if (!url || !*url)
        url = getenv("NIGHTSHIFT_REPOSITORY");
    if (!url || !*url)
        url = "sqlite:nightshift.db";
    if (strncmp(url, "sqlite:", 7) == 0)
        vt = &ns__repo_sqlite;
    else if (strncmp(url, "postgresql:", 11) == 0 || strncmp(url, "postgres:", 9) == 0)
        return ns__err(err, NS_EUNSUPPORTED, NULL,
                       "repository %s: PostgreSQL repositories are not supported by this build",
                       url);
    else
        return ns__err(err, NS_EINVAL, NULL,
                       "repository '%s': unsupported URL (use sqlite:PATH or postgresql://...)",
                       url);
    if (!(r = calloc(1, sizeof(*r))) || !(r->url = ns__strdup(url))) {
        free(r);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    r->vt = vt;
    if ((st = vt->open(r, url, err)) != NS_OK) {
        free(r->url);
        free(r);
        return st;
    }
    *out = r;
    return NS_OK;
}

void ns_repo_close(ns_repo *r)
{
    if (!r)
        return;
    r->vt->close(r);
    free(r->url);
    free(r);
}

const char *ns_repo_url(const ns_repo *r)
{
    return r->url;
}

ns_status ns_repo_request_stop(ns_repo *r, int64_t id, ns_error *err)
{
    return r->vt->request_stop(r, id, err);
}

ns_status ns_repo_abandon(ns_repo *r, int64_t id, ns_error *err)
{
    return r->vt->abandon(r, id, err);
}

ns_status ns_repo_show_json(ns_repo *r, int64_t id, char **out, ns_error *err)
{
    return r->vt->show_json(r, id, out, err);
}

ns_status ns_repo_list_json(ns_repo *r, const char *job, const char *status, int limit, char **out,
                            ns_error *err)
{
    if (status && ns_batch_status_parse(status) == NS_BATCH_UNKNOWN && strcmp(status, "UNKNOWN"))
        return ns__err(err, NS_EINVAL, NULL, "unknown status '%s'", status);
    return r->vt->list_json(r, job, status, limit > 0 ? limit : 20, out, err);
}

static int cmp_param(const void *a, const void *b)
{
    return strcmp(((const ns_param_val *)a)->name, ((const ns_param_val *)b)->name);
}

void ns__instance_key(const ns_param_val *params, size_t n, char out[33])
{
    ns_param_val sorted[64];
    ns_buf b = {0};
    size_t k = 0;

    for (size_t i = 0; i < n && k < 64; i++)
        if (params[i].identifying)
            sorted[k++] = params[i];
    qsort(sorted, k, sizeof(*sorted), cmp_param);
    /* Length-prefixed so that no choice of values can make two lists equal. */
    for (size_t i = 0; i < k; i++)
        ns__buf_printf(&b, "%zu:%s%zu:%s%zu:%s", strlen(sorted[i].name), sorted[i].name,
                       strlen(sorted[i].type), sorted[i].type, strlen(sorted[i].value),
                       sorted[i].value);
    ns__hash_hex(b.data ? b.data : "", b.len, out);
    ns__buf_free(&b);
}

static bool process_gone(int64_t pid, int64_t start)
{
    if (pid <= 0)
        return true;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return true;
    /* The pid exists; it is ours only if it started when ours did (pids are
     * recycled, quickly where pid_max is 32768). */
    int64_t now = ns__process_start(pid);
    return start >= 0 && now >= 0 && now != start;
}

ns_launch_action ns__launch_decide(const ns_last_exec *last, bool have_last, bool restartable,
                                   double lease, char *msg, size_t msglen)
{
    if (!have_last)
        return NS_LAUNCH_START;
    switch (last->status) {
    case NS_BATCH_STARTING:
    case NS_BATCH_STARTED:
    case NS_BATCH_STOPPING: {
        bool here = strcmp(last->host, ns__hostname()) == 0;
        double age = ns__now() - last->heartbeat;
        /* The caller marks a dead execution FAILED first, then
         * decides again with status FAILED. */
        if ((here && process_gone(last->pid, last->process_start)) || (!here && age > lease))
            return NS_LAUNCH_RECOVER;
        snprintf(msg, msglen, "already running as execution %lld (pid %lld on %s)",
                 (long long)last->id, (long long)last->pid, last->host);
        return NS_LAUNCH_REFUSE;
    }
    case NS_BATCH_COMPLETED:
        snprintf(msg, msglen,
                 "already completed by execution %lld; pass --next or other identifying "
                 "parameters to start a new instance",
                 (long long)last->id);
        return NS_LAUNCH_REFUSE;
    case NS_BATCH_ABANDONED:
        snprintf(msg, msglen,
                 "execution %lld was abandoned and is never restarted; pass --next or other "
                 "identifying parameters to start a new instance",
                 (long long)last->id);
        return NS_LAUNCH_REFUSE;
    case NS_BATCH_FAILED:
    case NS_BATCH_STOPPED:
        if (!restartable) {
            snprintf(msg, msglen,
                     "execution %lld ended %s and the job is not restartable (restartable: "
                     "false); pass --next to start a new instance",
                     (long long)last->id, ns_batch_status_name(last->status));
            return NS_LAUNCH_REFUSE;
        }
        return NS_LAUNCH_RESTART;
    case NS_BATCH_UNKNOWN:
        break;
    }
    snprintf(msg, msglen, "execution %lld is in status UNKNOWN; abandon it first",
             (long long)last->id);
    return NS_LAUNCH_REFUSE;
}

void ns__exec_info_free(ns_exec_info *info)
{
    if (!info)
        return;
    free(info->job_name);
    free(info->job_path);
    free(info->workdir);
    for (size_t i = 0; i < info->nparams; i++) {
        free((char *)info->params[i].name);
        free((char *)info->params[i].type);
        free((char *)info->params[i].value);
    }
    free(info->params);
    memset(info, 0, sizeof(*info));
}
