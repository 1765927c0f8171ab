/* repo.c - repository dispatch and the backend-independent launch rules. */
#include "repo/repo.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ns_status ns__repo_open(const ns_repo_vt *vt, const char *url, bool readonly, ns_repo **out,
                        ns_error *err)
{
    ns_repo *r;
    ns_status st;

    if (!(r = calloc(1, sizeof(*r))) || !(r->url = ns__strdup(url))) {
        free(r);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    ns__secrets_add_url(&r->secrets, url);
    r->vt = vt;
    r->readonly = readonly;
    if ((st = vt->open(r, url, err)) != NS_OK)
        goto fail;
    *out = r;
    return NS_OK;
fail:
    if (err)
        ns__redact(&r->secrets, err->message, sizeof(err->message));
    ns__secrets_free(&r->secrets);
    free(r->url);
    free(r);
    return st;
}

void ns_repo_set_lease(ns_repo *r, double seconds)
{
    r->lease = seconds;
}

void ns_repo_close(ns_repo *r)
{
    if (!r)
        return;
    r->vt->close(r);
    ns__secrets_free(&r->secrets);
    free(r->url);
    free(r);
}

ns_status ns__repo_too_new(ns_error *err, int version, int known)
{
    return ns__err(err, NS_EDB, NULL,
                   "repository schema version %d is newer than this nightshift knows (%d); "
                   "upgrade nightshift",
                   version, known);
}

/* Errors of the public calls pass the repository's redaction. */
static ns_status said(ns_repo *r, ns_status st, ns_error *err)
{
    if (st != NS_OK && err)
        ns__redact(&r->secrets, err->message, sizeof(err->message));
    return st;
}

const char *ns_repo_url(const ns_repo *r)
{
    return r->url;
}

ns_status ns_repo_request_stop(ns_repo *r, int64_t id, ns_error *err)
{
    return said(r, r->vt->request_stop(r, id, err), err);
}

ns_status ns_repo_abandon(ns_repo *r, int64_t id, ns_error *err)
{
    return said(r, r->vt->abandon(r, id, err), err);
}

/* The executions of a job (all jobs: NULL) marked running, newest first,
 * as list's JSON: *out is an array, NULL on error. */
static const char *const running_states[] = {"STARTING", "STARTED", "STOPPING"};
static ns_status running_json(ns_repo *r, const char *job, json_t **out, ns_error *err)
{
    *out = json_array();
    for (size_t k = 0; k < sizeof(running_states) / sizeof(running_states[0]); k++) {
        char *text = NULL;
        /* every one of them: a repository holds few running executions */
        ns_status st = r->vt->list_json(r, job, running_states[k], 1000000, &text, err);
        json_t *some = st == NS_OK ? json_loads(text, 0, NULL) : NULL;
        free(text);
        if (st == NS_OK && (!json_is_array(some) || json_array_extend(*out, some) != 0))
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory reading the running executions");
        json_decref(some);
        if (st != NS_OK) {
            json_decref(*out);
            *out = NULL;
            return st;
        }
    }
    return NS_OK;
}

ns_status ns__repo_running(ns_repo *r, const char *job, int *n, int64_t *id, ns_error *err)
{
    json_t *all, *e;
    size_t i;
    *n = 0;
    *id = 0;
    ns_status st = running_json(r, job, &all, err);
    json_array_foreach(all, i, e)
    {
        const char *live = json_string_value(json_object_get(e, "liveness"));
        if (live && strcmp(live, "alive") == 0) {
            ++*n;
            *id = json_integer_value(json_object_get(e, "id"));
        }
    }
    json_decref(all);
    return st;
}

ns_status ns_repo_recover(ns_repo *r, const char *job, int dry_run, ns_recover_fn fn, void *arg,
                          int *found, ns_error *err)
{
    double lease = r->lease > 0 ? r->lease : 60;
    json_t *all;
    *found = 0;
    ns_status st = running_json(r, job, &all, err);
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e)
    {
        const char *live = json_string_value(json_object_get(e, "liveness"));
        const char *beat = json_string_value(json_object_get(e, "heartbeat"));
        const char *host = json_string_value(json_object_get(e, "host"));
        const char *name = json_string_value(json_object_get(e, "job"));
        int64_t id = json_integer_value(json_object_get(e, "id"));
        int64_t pid = json_integer_value(json_object_get(e, "pid"));
        char why[400], said_why[600];
        double at;
        if (!live || !beat ||
            (strcmp(live, "process gone") != 0 && strcmp(live, "heartbeat stale") != 0))
            continue;
        if (strcmp(live, "process gone") == 0)
            snprintf(why, sizeof(why), "process %lld on %s is gone", (long long)pid,
                     host ? host : "?");
        else
            snprintf(why, sizeof(why),
                     "its heartbeat (from process %lld on %s) is %.0f s old, past the lease "
                     "of %.0f s",
                     (long long)pid, host ? host : "?",
                     ns__parse_iso(beat, &at) ? ns__now() - at : -1.0, lease);
        (*found)++;
        ns_status outcome = NS_OK;
        if (!dry_run) {
            ns_error e2 = {0};
            snprintf(said_why, sizeof(said_why),
                     "%s: it stopped without recording an end (killed or crashed); marked "
                     "FAILED by nightshift recover",
                     why);
            outcome = r->vt->mark_dead(r, id, beat, said_why, &e2);
            if (outcome != NS_OK && outcome != NS_ECONFLICT) {
                if (err)
                    *err = e2;
                st = outcome;
                break;
            }
        }
        if (fn)
            fn(arg, id, name ? name : "?", why, outcome);
    }
    json_decref(all);
    return said(r, st, err);
}

/* The rejects files of the executions a purge deletes: paths with the
 * execution that wrote each, from the contexts. */
typedef struct purge_files {
    char **path;
    int64_t *id;
    size_t n, cap;
    bool oom;
} purge_files;

static void purge_context(void *arg, int64_t id, const char *ctx)
{
    purge_files *f = arg;
    json_t *o = json_loads(ctx ? ctx : "", 0, NULL);
    const char *p = json_string_value(json_object_get(json_object_get(o, "rejects"), "path"));
    /* a path with ${env.X} in it is not known here: left alone */
    if (p && !strstr(p, "${")) {
        for (size_t i = 0; i < f->n; i++)
            if (f->id[i] == id && strcmp(f->path[i], p) == 0)
                p = NULL;
        if (p && f->n == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 64;
            char **np = realloc(f->path, cap * sizeof(*np));
            if (np)
                f->path = np;
            int64_t *ni = np ? realloc(f->id, cap * sizeof(*ni)) : NULL;
            if (ni)
                f->id = ni;
            if (np && ni)
                f->cap = cap;
            else
                f->oom = true;
        }
        if (p && f->n < f->cap && (f->path[f->n] = ns__strdup(p)))
            f->id[f->n++] = id;
        else if (p)
            f->oom = true;
    }
    json_decref(o);
}

/* "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM[:SS]" (UTC) as the repositories' ISO
 * form; false when it is neither. */
static bool purge_time(const char *in, char *out, size_t n)
{
    size_t len = strlen(in);
    if (len == 10 && ns__valid_date(in, len)) {
        snprintf(out, n, "%sT00:00:00.000Z", in);
        return true;
    }
    if ((len == 16 || len == 19 || (len == 20 && in[19] == 'Z')) && ns__valid_timestamp(in, len) &&
        in[10] == 'T') {
        snprintf(out, n, "%.10sT%.5s:%.2s.000Z", in, in + 11, len >= 19 ? in + 17 : "00");
        return true;
    }
    return false;
}

ns_status ns_repo_purge(ns_repo *r, const char *job, const char *before, int64_t keep_last,
                        int dry_run, int with_files, ns_purge_counts *out, ns_error *err)
{
    char when[40];
    purge_files f = {0};
    memset(out, 0, sizeof(*out));
    if (!before && keep_last <= 0)
        return ns__err(err, NS_EINVAL, NULL, "purge needs --before DATE or --keep-last N");
    if (before && !purge_time(before, when, sizeof(when)))
        return ns__err(err, NS_EINVAL, NULL,
                       "--before %s: not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SS)",
                       before);
    ns_status st = r->vt->purge(r, job, before ? when : NULL, keep_last, dry_run,
                                with_files ? purge_context : NULL, &f, out, err);
    if (st == NS_OK && f.oom)
        st = ns__err(err, NS_ENOMEM, NULL,
                     "out of memory listing the rejects files (the executions are purged; the "
                     "files are kept)");
    for (size_t i = 0; i < f.n; i++) {
        char repo[33];
        int64_t wrote;
        /* Only a file that says it is that execution's, of this repository. */
        if (st == NS_OK && ns__file_writer(f.path[i], repo, &wrote) && wrote == f.id[i] &&
            strcmp(repo, r->id) == 0 && (dry_run || unlink(f.path[i]) == 0))
            out->files++;
        free(f.path[i]);
    }
    free(f.path);
    free(f.id);
    return said(r, st, err);
}

ns_status ns_repo_show_json(ns_repo *r, int64_t id, char **out, ns_error *err)
{
    return said(r, r->vt->show_json(r, id, out, err), err);
}

ns_status ns_repo_list_json(ns_repo *r, const char *job, const char *status, int limit, char **out,
                            ns_error *err)
{
    char upper[32] = "";
    if (status) {
        /* Any case: --status failed is FAILED. */
        size_t i = 0;
        for (; status[i] && i + 1 < sizeof(upper); i++)
            upper[i] = (char)toupper((unsigned char)status[i]);
        upper[i] = '\0';
        if (status[i] ||
            (ns_batch_status_parse(upper) == NS_BATCH_UNKNOWN && strcmp(upper, "UNKNOWN") != 0)) {
            ns_buf valid = {0};
            for (int s = NS_BATCH_STARTING; s <= NS_BATCH_UNKNOWN; s++)
                ns__buf_printf(&valid, "%s%s", s ? ", " : "",
                               ns_batch_status_name((ns_batch_status)s));
            ns__err(err, NS_EINVAL, NULL, "unknown status '%s' (one of: %s)", status,
                    ns__buf_cstr(&valid));
            ns__buf_free(&valid);
            return NS_EINVAL;
        }
    }
    return said(
        r, r->vt->list_json(r, job, status ? upper : NULL, limit > 0 ? limit : 20, out, err), err);
}

static int cmp_param(const void *a, const void *b)
{
    return strcmp(((const ns_param_val *)a)->name, ((const ns_param_val *)b)->name);
}

ns_status ns__instance_key(const ns_param_val *params, size_t n, char out[33])
{
    ns_param_val *sorted = malloc((n ? n : 1) * sizeof(*sorted));
    ns_buf b = {0};
    ns_status st = sorted ? NS_OK : NS_ENOMEM;
    size_t k = 0;

    for (size_t i = 0; sorted && i < n; i++)
        if (params[i].identifying)
            sorted[k++] = params[i];
    if (sorted)
        qsort(sorted, k, sizeof(*sorted), cmp_param);
    /* Length-prefixed so that no choice of values can make two lists equal. */
    for (size_t i = 0; st == NS_OK && i < k; i++)
        st = ns__buf_printf(&b, "%zu:%s%zu:%s%zu:%s", strlen(sorted[i].name), sorted[i].name,
                            strlen(sorted[i].type), sorted[i].type, strlen(sorted[i].value),
                            sorted[i].value);
    if (st == NS_OK)
        ns__hash_hex(b.data ? b.data : "", b.len, out);
    ns__buf_free(&b);
    free(sorted);
    return st;
}

ns_status ns__launch_params(const ns_launch_req *req, const char *run_id, ns_param_val **out,
                            size_t *n, char key[33], ns_error *err)
{
    ns_param_val *all = malloc((req->nparams + 1) * sizeof(*all));
    size_t k = req->nparams;

    if (!all)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (k)
        memcpy(all, req->params, k * sizeof(*all));
    if (run_id)
        all[k++] = (ns_param_val){"run.id", "int", run_id, true};
    if (ns__instance_key(all, k, key) != NS_OK) {
        free(all);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    *out = all;
    *n = k;
    return NS_OK;
}

static bool process_gone(int64_t pid, int64_t start)
{
    if (pid <= 0)
        return true;
    if ((kill((pid_t)pid, 0) != 0 && errno == ESRCH) || ns__process_zombie(pid))
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
        if (last->id == 0) /* its executions were purged (the instance says how it ended) */
            snprintf(msg, msglen,
                     "already completed (its executions were purged); pass --next or other "
                     "identifying parameters to start a new instance");
        else
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

ns_status ns__exec_info_copied(ns_exec_info *info, ns_error *err)
{
    long long id = (long long)info->id;
    bool ok = info->job_name && info->job_path && info->workdir;
    for (size_t i = 0; ok && i < info->nparams; i++)
        ok = info->params[i].name && info->params[i].type && info->params[i].value;
    if (ok)
        return NS_OK;
    ns__exec_info_free(info);
    return ns__err(err, NS_ENOMEM, NULL, "out of memory reading execution %lld from the repository",
                   id);
}

/* ------------------------------------------------------------- JSON */

/* Text as stored: what an older version wrote raw (invalid UTF-8, control
 * bytes) is cleaned rather than dropped (json_string refuses it). */
static json_t *jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    if (j)
        return j;
    char *c = ns__strdup(s);
    if (c)
        ns__clean_line(c);
    j = c ? json_string(c) : NULL;
    free(c);
    return j ? j : json_null();
}

static json_t *jint(const char *s)
{
    int64_t v;
    return s && ns__parse_i64(s, strlen(s), &v) ? json_integer(v) : json_null();
}

static json_t *typed_value(const char *type, const char *v)
{
    if (strcmp(type, "int") == 0)
        return jint(v);
    if (strcmp(type, "float") == 0)
        return json_real(strtod(v, NULL));
    if (strcmp(type, "bool") == 0)
        return json_boolean(strcmp(v, "true") == 0);
    return json_string(v);
}

/* Whether an execution the repository says is running still is: its
 * process on this host, or its heartbeat from another within the lease.
 * NULL when it is not marked running. */
static const char *liveness(double repo_lease, const char *status, const char *host,
                            const char *pid, const char *process_start, const char *heartbeat)
{
    ns_batch_status s = ns_batch_status_parse(status);
    if (s != NS_BATCH_STARTING && s != NS_BATCH_STARTED && s != NS_BATCH_STOPPING)
        return NULL;
    if (host && strcmp(host, ns__hostname()) == 0) {
        int64_t p = 0, start = -1;
        if (pid)
            ns__parse_i64(pid, strlen(pid), &p);
        if (process_start)
            ns__parse_i64(process_start, strlen(process_start), &start);
        return process_gone(p, start) ? "process gone" : "alive";
    }
    double lease = repo_lease, beat;
    if (!heartbeat || !ns__parse_iso(heartbeat, &beat))
        return "unknown";
    return ns__now() - beat > lease ? "heartbeat stale" : "alive";
}

json_t *ns__json_exec(const ns_repo *r, const char *const *c)
{
    static const char *const names[] = {"id",        "job",          "instance_id", "status",
                                        "exit_code", "exit_message", "created_at",  "started_at",
                                        "ended_at",  "host",         "pid",         "restart_of",
                                        "job_file",  "last_updated", "workdir",     "heartbeat"};
    json_t *o = json_object();
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
        bool num = i == 0 || i == 2 || i == 10 || i == 11;
        json_object_set_new(o, names[i], num ? jint(c[i]) : jstr(c[i]));
    }
    json_object_set_new(o, "restarted_by", jint(c[17]));
    json_object_set_new(o, "scheduled_at", jstr(c[18]));
    /* notifications that could not be delivered: one line each */
    json_t *ne = json_array();
    for (const char *p = c[19]; p && *p;) {
        size_t n = strcspn(p, "\n");
        json_array_append_new(ne, json_stringn(p, n));
        p += n + (p[n] == '\n');
    }
    json_object_set_new(o, "notify_errors", ne);
    /* A run marked running whose process is gone (kill -9, a crash) until
     * the next launch of its instance marks it FAILED: say so. */
    const char *live = liveness(r->lease > 0 ? r->lease : 60, c[3], c[9], c[10], c[16], c[15]);
    if (live)
        json_object_set_new(o, "liveness", json_string(live));
    json_object_set_new(o, "params", json_object());
    json_object_set_new(o, "identifying", json_array());
    return o;
}

void ns__json_exec_param(json_t *exec, const char *const *c)
{
    json_object_set_new(json_object_get(exec, "params"), c[0], typed_value(c[1], c[2]));
    if (c[3] && (c[3][0] == '1' || c[3][0] == 't'))
        json_array_append_new(json_object_get(exec, "identifying"), json_string(c[0]));
}

json_t *ns__json_step(const char *const *c)
{
    static const char *const names[NS_STEP_NCOLS] = {"name",
                                                     "partition",
                                                     "status",
                                                     "exit_code",
                                                     "exit_message",
                                                     "read_count",
                                                     "write_count",
                                                     "filter_count",
                                                     "read_skip_count",
                                                     "process_skip_count",
                                                     "write_skip_count",
                                                     "commit_count",
                                                     "rollback_count",
                                                     "started_at",
                                                     "ended_at",
                                                     "id",
                                                     "context",
                                                     "retry_count"};
    json_t *o = json_object();
    json_object_set_new(o, "id", jint(c[15]));
    for (int i = 0; i < 15; i++) {
        bool num = i >= 5 && i <= 12;
        json_object_set_new(o, names[i], num ? jint(c[i]) : jstr(c[i]));
    }
    json_t *ctx = c[16] ? json_loads(c[16], 0, NULL) : NULL;
    /* where the time went, as of the step's last commit */
    json_t *secs = json_object_get(ctx, "seconds");
    json_object_set_new(o, "seconds", json_is_object(secs) ? json_incref(secs) : json_null());
    json_object_set_new(o, "context", ctx ? ctx : json_null());
    json_object_set_new(o, "retry_count", jint(c[17]));
    return o;
}

ns_status ns__json_dump(json_t *v, char **out, ns_error *err)
{
    char *s = v ? json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(v);
    if (!s)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    *out = ns__strdup(s);
    free(s);
    return *out ? NS_OK : ns__err(err, NS_ENOMEM, NULL, "out of memory");
}
