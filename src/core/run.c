/*
 * run.c - the launcher and the chunk-oriented step runner.
 *
 * Data flows one way (docs/internals.md, "Modules"): job definition -> launch in the
 * repository (new execution or restart) -> for each step: reader -> writer
 * in chunks -> commit (target rows + checkpoint in one transaction) ->
 * repository update -> listener.
 *
 * Exactly-once (§7): each chunk's commit stores the reader position, the
 * counters and the rejects-file offset in the target (nightshift_checkpoint),
 * inside the transaction that writes the chunk's rows. On restart that row is
 * the truth: the reader seeks to it, the rejects file is cut back to it, and
 * the repository's record of the dead execution is brought up to it.
 */
#include "core/core.h"
#include "proc/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

volatile sig_atomic_t ns__stop_signal;

void ns_request_stop(void)
{
    ns__stop_signal = 1;
}

/* ------------------------------------------------------- parameters */

static void params_free(params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->names[i]);
        free(p->values[i]);
    }
    free(p->v);
    free(p->names);
    free(p->values);
    free(p->types);
    memset(p, 0, sizeof(*p));
}

static ns_status params_add(params *p, const char *name, const char *type, const char *value,
                            bool identifying, ns_error *err)
{
    size_t n = p->n + 1;
    ns_param_val *v = realloc(p->v, n * sizeof(*v));
    char **names = v ? realloc(p->names, n * sizeof(*names)) : NULL;
    char **values = names ? realloc(p->values, n * sizeof(*values)) : NULL;
    const char **types = values ? realloc(p->types, n * sizeof(*types)) : NULL;
    if (v)
        p->v = v;
    if (names)
        p->names = names;
    if (values)
        p->values = values;
    if (!types)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    p->types = types;
    p->types[p->n] = type;
    p->names[p->n] = ns__strdup(name);
    p->values[p->n] = ns__strdup(value);
    if (!p->names[p->n] || !p->values[p->n])
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    p->v[p->n] = (ns_param_val){p->names[p->n], type, p->values[p->n], identifying};
    p->n = n;
    return NS_OK;
}

/* Applies NAME=VALUE arguments, defaults and types (docs/jobs.md). */
static ns_status resolve_params(const ns_job *job, const char *const *args, size_t nargs,
                                params *out, ns_error *err)
{
    const char **given = calloc(job->nparams + 1, sizeof(*given));
    const char *run_id = NULL;
    ns_status st = NS_OK;

    if (!given)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < nargs && st == NS_OK; i++) {
        const char *eq = strchr(args[i], '=');
        if (!eq || eq == args[i]) {
            st = ns__err(err, NS_EPARAM, NULL, "'%s': parameters are given as NAME=VALUE", args[i]);
            break;
        }
        size_t len = (size_t)(eq - args[i]), vlen = strlen(eq + 1);
        if (ns__utf8_valid_prefix((const unsigned char *)args[i], len) < len) {
            st = ns__err(err, NS_EPARAM, NULL,
                         "argument %zu: the parameter's name is not valid UTF-8", i + 1);
            break;
        }
        size_t ok = ns__utf8_valid_prefix((const unsigned char *)eq + 1, vlen);
        if (ok < vlen) {
            /* Stored in the repository, shown as JSON, bound into SQL: a
             * value must be text. */
            st = ns__err(err, NS_EPARAM, NULL,
                         "parameter '%.*s': the value is not valid UTF-8 (byte %zu is 0x%02X)",
                         (int)len, args[i], ok + 1, (unsigned)(unsigned char)eq[1 + ok]);
            break;
        }
        if (len == 6 && strncmp(args[i], "run.id", 6) == 0) {
            run_id = eq + 1;
            continue;
        }
        size_t k = 0;
        while (k < job->nparams && !(strlen(job->params[k].name) == len &&
                                     strncmp(job->params[k].name, args[i], len) == 0))
            k++;
        if (k == job->nparams) {
            ns_buf names = {0};
            for (size_t j = 0; j < job->nparams; j++)
                ns__buf_printf(&names, "%s%s", j ? ", " : "", job->params[j].name);
            st = ns__err(err, NS_EPARAM, NULL, "unknown parameter '%.*s' (job %s declares: %s)",
                         (int)len, args[i], job->name, names.len ? ns__buf_cstr(&names) : "none");
            ns__buf_free(&names);
            break;
        }
        given[k] = eq + 1;
    }
    for (size_t k = 0; k < job->nparams && st == NS_OK; k++) {
        const ns_param_def *d = &job->params[k];
        const char *text = given[k] ? given[k] : d->def;
        char *value = NULL, why[256];
        if (!text) {
            if (d->required)
                st = ns__err(err, NS_EPARAM, NULL, "parameter '%s' is required (pass %s=VALUE)",
                             d->name, d->name);
            continue;
        }
        if (!ns__param_value(d->type, text, &value, why, sizeof(why))) {
            st = ns__err(err, NS_EPARAM, NULL, "parameter '%s' (%s): %s", d->name,
                         ns__ptype_name(d->type), why);
            break;
        }
        st = params_add(out, d->name, ns__ptype_name(d->type), value, d->identifying, err);
        free(value);
    }
    if (st == NS_OK && run_id) {
        int64_t x;
        if (!ns__parse_i64(run_id, strlen(run_id), &x))
            st =
                ns__err(err, NS_EPARAM, NULL, "parameter 'run.id': '%s' is not an integer", run_id);
        else
            st = params_add(out, "run.id", "int", run_id, true, err);
    }
    free(given);
    return st;
}

/* The lease's longest: PostgreSQL takes idle_in_transaction_session_timeout
 * (set to the lease) in milliseconds, as a 32-bit integer. */
#define LEASE_MAX 2000000.0

/* The lease: the launch's, else $NIGHTSHIFT_LEASE, else 60 s; a value that
 * is not a number of seconds in (0, LEASE_MAX] is an error, not 60. */
static ns_status lease_of(const ns_launch *launch, double *out, ns_error *err)
{
    const char *env = getenv("NIGHTSHIFT_LEASE");
    if (launch && launch->lease_seconds != 0) {
        if (!(launch->lease_seconds > 0 && launch->lease_seconds <= LEASE_MAX))
            return ns__err(err, NS_EPARAM, NULL,
                           "lease: %g is not a number of seconds from 0 to %.0f",
                           launch->lease_seconds, LEASE_MAX);
        *out = launch->lease_seconds;
        return NS_OK;
    }
    if (!env)
        return NS_OK;
    char *end;
    errno = 0;
    double v = strtod(env, &end);
    if (!*env || *end || errno || !(v > 0 && v <= LEASE_MAX))
        return ns__err(
            err, NS_EPARAM, NULL,
            "NIGHTSHIFT_LEASE: '%s' is not a number of seconds greater than 0 and at most "
            "%.0f",
            env, LEASE_MAX);
    *out = v;
    return NS_OK;
}

/* Refuses, before anything runs, parameters that would lead a path out of
 * its folder (see ns_subst_ctx.path): the run would fail at that step. */
static ns_status check_paths(const ns_job *job, const params *p, ns_error *err)
{
    ns_subst_ctx c = {.job = job,
                      .param_names = (const char *const *)p->names,
                      .param_values = (const char *const *)p->values,
                      .nparams = p->n,
                      .execution_id = 1,
                      .keep_env = true,
                      .path = true};
    for (size_t i = 0; i < job->nsteps; i++) {
        const ns_step_def *d = &job->steps[i];
        const char *tmpl[] = {d->rejects, d->csv_path, d->cmp_output};
        const char *what[] = {"rejects", "reader.csv.path", "compare.output"};
        c.step = d->name;
        for (size_t k = 0; k < 3; k++) {
            char *out = NULL, key[300];
            if (!tmpl[k])
                continue;
            snprintf(key, sizeof(key), "steps[%zu].%s", i, what[k]);
            ns_status st = ns__subst(tmpl[k], &c, key, &out, err);
            free(out);
            if (st == NS_EPARAM)
                return st;
            ns_error_clear(err); /* anything else is found when the step runs */
        }
    }
    return NS_OK;
}

/* ----------------------------------------------------------- steps */

void ns__run_secret_url(run_ctx *rc, const char *url)
{
    ns__secrets_add_url(&rc->secrets, url);
}

void ns__run_redact(run_ctx *rc, char *buf, size_t cap)
{
    ns__redact(&rc->secrets, buf, cap);
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
    if (!rc->listener || !rc->listener->notice)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ns__run_redact(rc, msg, sizeof(msg));
    rc->listener->notice(rc->listener->ud, msg);
}

void ns__run_report(step_run *s, void (*fn)(void *, const ns_progress *), ns_batch_status status,
                    const char *message)
{
    const ns_listener *l = s->rc->listener;
    char shown[1024];
    if (!l || !fn)
        return;
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
    fn(l->ud, &p);
}

/*
 * Substitutes a template into what is used (*real) and what may be shown or
 * stored (*shown): the same text with every ${env.X} left unexpanded, since an
 * environment value is never written to the repository, logs or output.
 */
static ns_status subst_as(step_run *s, int64_t execution_id, const char *tmpl, const char *what,
                          char **real, char **shown, ns_error *err)
{
    ns_subst_ctx c = {.job = s->rc->job,
                      .param_names = (const char *const *)s->rc->params->names,
                      .param_values = (const char *const *)s->rc->params->values,
                      .nparams = s->rc->params->n,
                      .execution_id = execution_id,
                      .step = s->def->name,
                      .keep_env = true,
                      .secrets = &s->rc->secrets,
                      .path = strcmp(what, "connection") != 0};
    ns_status st = ns__subst(tmpl, &c, what, shown, err);
    c.keep_env = false;
    if (st == NS_OK && (st = ns__subst(*shown, &c, what, real, err)) != NS_OK) {
        free(*shown);
        *shown = NULL;
    }
    return st;
}

/* The same, for this execution. */
ns_status ns__run_subst(step_run *s, const char *tmpl, const char *what, char **real, char **shown,
                        ns_error *err)
{
    return subst_as(s, s->rc->launch.execution_id, tmpl, what, real, shown, err);
}

/* `shown` made absolute when `real` (its expansion) is relative: the form a
 * checkpoint stores, so a restart from any directory finds the file. */
static char *absolute(const char *real, const char *shown)
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

/* Writes one CSV field, quoted when needed; invalid UTF-8 bytes as \xHH. */
void ns__csv_field(FILE *f, const char *p, size_t n)
{
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r';
    if (quote)
        fputc('"', f);
    size_t i = 0;
    while (i < n) {
        size_t ok = ns__utf8_valid_prefix((const unsigned char *)p + i, n - i);
        for (size_t k = i; k < i + ok; k++) {
            if (p[k] == '"')
                fputc('"', f);
            if (p[k] == '\0') /* valid UTF-8, but no text tool reads it back */
                fputs("\\x00", f);
            else
                fputc(p[k], f);
        }
        i += ok;
        if (i < n) {
            fprintf(f, "\\x%02X", (unsigned)(unsigned char)p[i]);
            i++;
        }
    }
    if (quote)
        fputc('"', f);
}

static ns_status reject(step_run *s, int64_t line, const char *column, const char *code,
                        const char *message, const char *raw, size_t raw_len, ns_error *err)
{
    char said[1024];
    /* A database's message may quote a value; the record stays as read. */
    snprintf(said, sizeof(said), "%s", message);
    ns__run_redact(s->rc, said, sizeof(said));
    message = said;
    if (!s->rejects) {
        if (ns__mkdir_parents(s->rejects_path, NULL) != NS_OK)
            return ns__err(err, NS_EIO, NULL, "rejects file %s: cannot create its directory: %s",
                           s->rejects_shown, strerror(errno));
        /* A step that starts afresh replaces its rejects file; a resumed one
         * appends to what its checkpoint kept (see resume()). */
        s->rejects = ns__fopen_out(s->rejects_path, s->resumed);
        if (!s->rejects)
            return ns__err(err, NS_EIO, NULL, "rejects file %s: %s", s->rejects_shown,
                           errno == ELOOP ? "it is a symbolic link; nightshift does not write "
                                            "through one (remove it, or choose another path)"
                                          : strerror(errno));
        if (ftell(s->rejects) == 0) {
            ns__tag_writer(fileno(s->rejects), s->rc->repo->id, s->rc->launch.execution_id);
            fputs("line,column,code,message,record\n", s->rejects);
        }
    }
    snprintf(s->last_reject, sizeof(s->last_reject), "line %lld%s%s: %s: %.300s", (long long)line,
             column ? ", column " : "", column ? column : "", code, message);
    fprintf(s->rejects, "%lld,", (long long)line);
    if (column)
        ns__csv_field(s->rejects, column, strlen(column));
    fputc(',', s->rejects);
    ns__csv_field(s->rejects, code, strlen(code));
    fputc(',', s->rejects);
    ns__csv_field(s->rejects, message, strlen(message));
    fputc(',', s->rejects);
    ns__csv_field(s->rejects, raw, raw_len);
    fputc('\n', s->rejects);
    return NS_OK;
}

/* Who wrote the file at path, for messages. */
static void writer_of(run_ctx *rc, const char *path, char *buf, size_t n)
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
    writer_of(s->rc, path, who, sizeof(who));
    return ns__err(err, NS_EREFUSED, NULL,
                   "%s %s already holds what %s wrote; nightshift never overwrites another "
                   "execution's file: move it away, or name the file with ${execution.id}",
                   what, shown, who);
}

/* Flushes the rejects of a chunk to disk before the chunk commits, so that a
 * committed chunk never lacks its rejects. */
static ns_status rejects_sync(step_run *s, ns_error *err)
{
    if (!s->rejects)
        return NS_OK;
    if (fflush(s->rejects) != 0 || fdatasync(fileno(s->rejects)) != 0)
        return ns__err(err, NS_EIO, NULL, "rejects file %s: %s", s->rejects_shown, strerror(errno));
    long off = ftell(s->rejects);
    s->rejects_offset = off < 0 ? 0 : off;
    return NS_OK;
}

static ns_status make_context(step_run *s, ns_error *err)
{
    const ns_counts *c = &s->counts;
    json_t *pos = s->reader->vt->position(s->reader);
    json_t *o = json_pack(
        "{s:o, s:{s:s, s:I}, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "position",
        pos, "rejects", "path", s->rejects_saved, "offset", (json_int_t)s->rejects_offset, "chunks",
        (json_int_t)s->chunks, "step_execution_id", (json_int_t)s->se.id, "counts", "read",
        (json_int_t)c->read, "write", (json_int_t)c->write, "filter", (json_int_t)c->filter,
        "read_skip", (json_int_t)c->read_skip, "process_skip", (json_int_t)c->process_skip,
        "write_skip", (json_int_t)c->write_skip, "commit", (json_int_t)c->commit, "rollback",
        (json_int_t)c->rollback);
    if (!o)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    json_t *saved = NULL;
    ns_status st;
    if ((st = ns__run_sign(s, o, err)) != NS_OK) {
        json_decref(o);
        return st;
    }
    if (s->proc && (st = s->proc->vt->save(s->proc, &saved, err)) != NS_OK) {
        json_decref(o);
        return st;
    }
    if (saved && json_object_set_new(o, "processor", saved) != 0) {
        json_decref(o);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    char *text = json_dumps(o, JSON_COMPACT);
    size_t len = text ? strlen(text) : 0;
    json_decref(o);
    if (saved && len > NS_PROC_STATE_MAX) {
        free(text);
        return ns__err(err, NS_EINVAL, NULL,
                       "processor: cannot save the state: the checkpoint would be %zu bytes of "
                       "JSON, over the %zu it may carry; keep in `state` only what a restart "
                       "needs",
                       len, NS_PROC_STATE_MAX);
    }
    if (!text)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    free(s->context);
    s->context = text;
    s->se.context = text;
    return NS_OK;
}

ns_status ns__run_commit_hook(void *arg, ns_error *err)
{
    step_run *s = arg;
    s->se.counts = s->counts;
    return s->rc->repo->vt->step_update(s->rc->repo, &s->se, &s->stop, err);
}

/* A test-only fault point (docs/cli.md): is `name` set to n? */
static bool fault_at(const char *name, int64_t n)
{
    const char *v = getenv(name);
    return v && atoll(v) == n;
}

static ns_status commit_chunk(step_run *s, ns_error *err)
{
    ns_ckpt_key key = {
        s->rc->job->name, s->rc->launch.job_key, s->def->name, "", s->rc->launch.execution_id,
        s->se.id};
    ns_status st;

    if ((st = rejects_sync(s, err)) != NS_OK)
        return st;
    /* Fault injection for the tests: die, or freeze, with the chunk's
     * rejects on disk and its rows written but not committed. */
    if (fault_at("NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT", s->chunks + 1))
        _exit(98);
    if (fault_at("NIGHTSHIFT_TEST_PAUSE_BEFORE_COMMIT", s->chunks + 1))
        raise(SIGSTOP);
    s->counts.commit++;
    s->chunks++;
    if ((st = make_context(s, err)) != NS_OK)
        return st;
    bool committed;
    if ((st = ns__run_commit(s, s->writer, &key, s->chunks, &committed, err)) != NS_OK) {
        if (!committed) {
            s->counts.commit--;
            s->chunks--;
        } else {
            /* The chunk is committed in the target; the repository lags
             * behind and is reconciled from the checkpoint on restart. */
            ns__err_prefix(err, "recording chunk %lld in the repository", (long long)s->chunks);
        }
    }
    return st;
}

ns_status ns__run_commit(step_run *s, ns_writer *w, const ns_ckpt_key *key, int64_t n,
                         bool *committed, ns_error *err)
{
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
    if (!s->shared && fault_at("NIGHTSHIFT_TEST_EXIT_AFTER_COMMIT", n))
        _exit(99);
    if (!s->shared && (st = ns__run_commit_hook(s, err)) != NS_OK)
        return st;
    /* Fault injection: freeze the whole process (heartbeat thread included)
     * with chunk n recorded, as a paused VM or a partitioned host would. */
    if (fault_at("NIGHTSHIFT_TEST_PAUSE_AFTER_COMMIT", n))
        raise(SIGSTOP);
    return NS_OK;
}

ns_status ns__run_sign(step_run *s, json_t *context, ns_error *err)
{
    if (json_object_set_new(context, "repository", json_string(s->rc->repo->id)) != 0 ||
        json_object_set_new(context, "execution_id",
                            json_integer((json_int_t)s->rc->launch.execution_id)) != 0)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    return NS_OK;
}

/* Where a checkpoint context stands, for messages: " (after chunk N at line
 * L)", " (it says the step is done)" or "". */
static void ckpt_where(json_t *o, char *buf, size_t n)
{
    json_t *chunks = json_object_get(o, "chunks");
    json_t *line = json_object_get(json_object_get(o, "position"), "line");
    if (json_is_true(json_object_get(o, "done")))
        snprintf(buf, n, " (it says the step is done)");
    else if (json_is_integer(chunks) && json_is_integer(line))
        snprintf(buf, n, " (after chunk %lld, at line %lld)", (long long)json_integer_value(chunks),
                 (long long)json_integer_value(line));
    else if (json_is_integer(chunks))
        snprintf(buf, n, " (after chunk %lld)", (long long)json_integer_value(chunks));
    else
        buf[0] = '\0';
}

ns_status ns__run_claim(step_run *s, ns_writer *w, const ns_ckpt_key *key, char **ctx,
                        bool *foreign, ns_error *err)
{
    run_ctx *rc = s->rc;
    char *raw = NULL, origin[256], where[96];
    ns_status st;

    *ctx = NULL;
    *foreign = false;
    if ((st = w->vt->checkpoint(w, key, &raw, err)) != NS_OK || !raw)
        return st;
    json_t *o = json_loads(raw, 0, NULL);
    const char *repo = json_string_value(json_object_get(o, "repository"));
    json_int_t author = json_integer_value(json_object_get(o, "execution_id"));
    bool own = false;
    /* Trusted only when this repository wrote it for this very instance: an
     * execution id alone could be another repository's (both count from 1),
     * and "the repository ran this step before" says nothing about who wrote
     * the row (issue 8: a stale checkpoint of another repository, claimed by
     * a run killed before its first commit, was trusted by the next run and
     * every row was skipped). */
    if (repo && strcmp(repo, rc->repo->id) == 0 && author > 0) {
        ns_exec_info info = {0};
        if (rc->repo->vt->exec_info(rc->repo, author, &info, NULL) == NS_OK)
            own = info.instance_id == rc->launch.instance_id;
        ns__exec_info_free(&info);
    }
    ckpt_where(o, where, sizeof(where));
    if (!o)
        snprintf(origin, sizeof(origin), "an unreadable checkpoint");
    else if (!repo)
        snprintf(origin, sizeof(origin),
                 "a checkpoint that does not say which repository wrote it (an older "
                 "nightshift, or an edited row)%s",
                 where);
    else if (strcmp(repo, rc->repo->id) != 0)
        snprintf(origin, sizeof(origin),
                 "a checkpoint of this job instance written by execution %lld of another "
                 "repository (%.12s)%s",
                 (long long)author, repo, where);
    else
        snprintf(origin, sizeof(origin),
                 "a checkpoint written by execution %lld, which this repository does not "
                 "record for this job instance%s",
                 (long long)author, where);
    if (own && rc->checkpoint != NS_CHECKPOINT_IGNORE) {
        *ctx = raw;
        json_decref(o);
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
    } else if (rc->checkpoint == NS_CHECKPOINT_ADOPT && o) {
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
    json_decref(o);
    free(raw);
    return st;
}

/* The rejects file this job writes for this step in execution `id`, in the
 * form checkpoints store it (see absolute(): a relative path is taken from
 * the folder that execution was launched in, as the repository records it);
 * NULL when it cannot be said. */
static char *rejects_saved_for(step_run *s, int64_t id)
{
    char *real = NULL, *shown = NULL, *saved = NULL;
    ns_exec_info info = {0};
    if (s->rc->repo->vt->exec_info(s->rc->repo, id, &info, NULL) == NS_OK && info.workdir &&
        info.workdir[0] &&
        subst_as(s, id, s->def->rejects, "rejects", &real, &shown, NULL) == NS_OK)
        saved = real[0] == '/' ? ns__strdup(shown) : ns__asprintf("%s/%s", info.workdir, shown);
    ns__exec_info_free(&info);
    free(real);
    free(shown);
    return saved;
}

/* The stored form of a path with its ${env.X} expanded; NULL on error. */
static char *expand_env(step_run *s, const char *saved)
{
    ns_subst_ctx env_only = {.secrets = &s->rc->secrets};
    char *out = NULL;
    if (!saved || ns__subst(saved, &env_only, "rejects", &out, NULL) != NS_OK)
        return NULL;
    return out;
}

/*
 * The rejects file the execution this one restarts wrote for this step.
 * Unless the target's checkpoint names that file (it is then cut back to the
 * checkpoint), everything in it belongs to chunks that never committed and
 * that this execution reads again: it is removed, or its records would be
 * rejected twice.
 */
static void drop_predecessor_rejects(step_run *s, const char *checkpointed)
{
    if (!s->rc->launch.restart_of)
        return;
    char *saved = rejects_saved_for(s, s->rc->launch.restart_of);
    char *abs = expand_env(s, saved), *mine = expand_env(s, checkpointed);
    char repo[33], who[128];
    int64_t id;
    /* Never another execution's: a file at the same path written by a run
     * the predecessor is not (another repository, a fixed name) is evidence. */
    if (abs && (!mine || strcmp(abs, mine) != 0) && ns__file_writer(abs, repo, &id) &&
        !(strcmp(repo, s->rc->repo->id) == 0 && id == s->rc->launch.restart_of)) {
        writer_of(s->rc, abs, who, sizeof(who));
        ns__run_notice(s->rc,
                       "step %s: %s holds what %s wrote, not the execution this one restarts; it "
                       "is left alone",
                       s->def->name, saved, who);
    } else if (abs && (!mine || strcmp(abs, mine) != 0)) {
        unlink(abs);
    }
    free(saved);
    free(abs);
    free(mine);
}

/*
 * Cuts the rejects file a checkpoint names back to the offset it saved: the
 * rows past it are read (and rejected) again now. The path comes from the
 * target, which other database users can write: the file is cut only when
 * it is the one this job's definition names for the execution that wrote
 * the checkpoint, and the one the repository recorded for it, and never
 * through a symbolic link.
 */
static ns_status cut_rejects(step_run *s, json_t *ckpt, const char *repo_ctx, ns_error *err)
{
    json_t *rej = json_object_get(ckpt, "rejects");
    const char *named = json_string_value(json_object_get(rej, "path"));
    json_int_t off = json_integer_value(json_object_get(rej, "offset"));
    json_int_t author = json_integer_value(json_object_get(ckpt, "execution_id"));
    ns_status st = NS_OK;
    if (!named)
        return NS_OK;
    char *expected = rejects_saved_for(s, author), *path = NULL;
    json_t *r = repo_ctx ? json_loads(repo_ctx, 0, NULL) : NULL;
    const char *recorded =
        json_string_value(json_object_get(json_object_get(r, "rejects"), "path"));
    if (!expected || strcmp(named, expected) != 0 || (recorded && strcmp(named, recorded) != 0)) {
        ns__run_notice(s->rc,
                       "step %s: the target's checkpoint names the rejects file %s, which is not "
                       "the file this job writes for execution %lld (%s); it is left alone",
                       s->def->name, named, (long long)author, expected ? expected : "unknown");
        goto out;
    }
    if (!(path = expand_env(s, named)))
        goto out;
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        if (errno != ENOENT)
            st = ns__err(err, NS_EIO, NULL, "rejects file %s: cannot open to cut back: %s", named,
                         strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && off >= 0 && off <= sb.st_size &&
        ftruncate(fd, (off_t)off) != 0)
        st = ns__err(err, NS_EIO, NULL, "rejects file %s: cannot truncate: %s", named,
                     strerror(errno));
    close(fd);
out:
    json_decref(r);
    free(expected);
    free(path);
    return st;
}

/* Brings the step to where the target's checkpoint says it stands, claiming
 * the checkpoint for this execution (the fence, see ns_writer_vt.checkpoint). */
static ns_status resume(step_run *s, const ns_step_state *state, ns_error *err)
{
    ns_ckpt_key key = {
        s->rc->job->name, s->rc->launch.job_key, s->def->name, "", s->rc->launch.execution_id,
        s->se.id};
    char *ctx = NULL;
    json_t *o = NULL, *repo_ctx = NULL;
    bool foreign;
    ns_status st;

    if ((st = ns__run_claim(s, s->writer, &key, &ctx, &foreign, err)) != NS_OK)
        return st;
    if (!ctx) {
        /* A fresh start. The earlier execution's rejects are evidence of
         * committed rows unless it committed nothing: only then removed. */
        if (s->rc->checkpoint != NS_CHECKPOINT_IGNORE)
            drop_predecessor_rejects(s, NULL);
        if (state->context && s->rc->checkpoint != NS_CHECKPOINT_IGNORE &&
            !s->writer->vt->single_transaction(s->writer))
            ns__run_notice(
                s->rc,
                "step %s: the repository has a saved position but the target has no "
                "checkpoint; the target is the truth, so the step starts from the beginning",
                s->def->name);
        return NS_OK;
    }
    json_error_t je;
    if (!(o = json_loads(ctx, 0, &je))) {
        st = ns__err(err, NS_EDB, NULL, "unreadable checkpoint in the target: %s", je.text);
        goto out;
    }
    json_t *pos = json_object_get(o, "position");
    json_t *cnt = json_object_get(o, "counts");
    s->proc_state = json_incref(json_object_get(o, "processor"));
    s->chunks = json_integer_value(json_object_get(o, "chunks"));
    s->resumed = true;
    if (!foreign)
        drop_predecessor_rejects(
            s, json_string_value(json_object_get(json_object_get(o, "rejects"), "path")));
    int64_t old_se = json_integer_value(json_object_get(o, "step_execution_id"));
    if ((st = s->reader->vt->seek(s->reader, pos, err)) != NS_OK)
        goto out;
    /* An adopted checkpoint's rejects file is another repository's: left
     * as it is (this execution writes its own). */
    if (!foreign &&
        (st = cut_rejects(s, o, old_se == state->last_id ? state->context : NULL, err)) != NS_OK)
        goto out;
    /* The repository lags when the process died between the target commit
     * and the repository update: bring that step execution (the latest of
     * this instance's step, the one the checkpoint names) up to it. */
    int64_t repo_chunks = -1;
    if (state->context && (repo_ctx = json_loads(state->context, 0, NULL)))
        repo_chunks = json_integer_value(json_object_get(repo_ctx, "chunks"));
    if (!foreign && old_se == state->last_id && repo_chunks < s->chunks) {
        ns_counts c = {
            json_integer_value(json_object_get(cnt, "read")),
            json_integer_value(json_object_get(cnt, "write")),
            json_integer_value(json_object_get(cnt, "filter")),
            json_integer_value(json_object_get(cnt, "read_skip")),
            json_integer_value(json_object_get(cnt, "process_skip")),
            json_integer_value(json_object_get(cnt, "write_skip")),
            json_integer_value(json_object_get(cnt, "commit")),
            json_integer_value(json_object_get(cnt, "rollback")),
        };
        if ((st = s->rc->repo->vt->step_reconcile(s->rc->repo, old_se, &c, ctx, err)) != NS_OK)
            goto out;
    }
    if (s->writer->vt->single_transaction(s->writer)) {
        /* A whole-step transaction checkpoints only when the step is done:
         * running it again would replace the table with nothing. */
        s->done = true;
        ns__run_notice(s->rc, "step %s: already committed in the target; recorded as completed",
                       s->def->name);
        goto out;
    }
    json_t *line = json_object_get(pos, "line");
    ns__run_notice(s->rc, "step %s: resuming after chunk %lld%s%lld", s->def->name,
                   (long long)s->chunks, json_is_integer(line) ? " at line " : "",
                   json_is_integer(line) ? (long long)json_integer_value(line) : 0LL);
out:
    json_decref(o);
    json_decref(repo_ctx);
    free(ctx);
    return st;
}

/* Copies a record into the chunk arena (one allocation per item). */
/* Copies a record into the chunk's arena. Without `fields`, only its raw
 * text: the item's fields then point into the reader's buffer until the next
 * read (a processor replaces them with its own copies). */
static ns_status to_item(const ns_record *r, ns_item *it, ns_arena *a, bool fields)
{
    if (!fields) {
        char *raw = ns__arena_alloc(a, r->raw_len + 1);
        if (!raw)
            return NS_ENOMEM;
        memcpy(raw, r->raw, r->raw_len);
        *it = (ns_item){.line = r->line,
                        .raw = raw,
                        .raw_len = r->raw_len,
                        .fields = r->fields,
                        .nfields = r->nfields};
        return NS_OK;
    }
    size_t total = r->raw_len + r->nfields * sizeof(ns_value);
    for (size_t i = 0; i < r->nfields; i++)
        total += r->fields[i].len;
    char *mem = ns__arena_alloc(a, total + 1);
    if (!mem)
        return NS_ENOMEM;
    ns_value *f = (ns_value *)(void *)mem;
    char *p = mem + r->nfields * sizeof(ns_value);
    for (size_t i = 0; i < r->nfields; i++) {
        f[i].len = r->fields[i].len;
        if (!r->fields[i].ptr) {
            f[i].ptr = NULL;
            continue;
        }
        memcpy(p, r->fields[i].ptr, f[i].len);
        f[i].ptr = p;
        p += f[i].len;
    }
    memcpy(p, r->raw, r->raw_len);
    *it = (ns_item){
        .line = r->line, .raw = p, .raw_len = r->raw_len, .fields = f, .nfields = r->nfields};
    return NS_OK;
}

static int64_t skips(const ns_counts *c)
{
    return c->read_skip + c->process_skip + c->write_skip;
}

static void *share_pg(void *repo, void *conn)
{
    return ns__repo_pg_shared(repo, conn);
}

/*
 * Opens s->writer on connection `conn_name` with cfg's table, mode and
 * columns (table NULL: the connection only, for SQL steps). When the
 * target is the repository's own database the writer shares its connection
 * and transactions (s->shared).
 */
ns_status ns__run_open_writer(step_run *s, const char *conn_name, ns_writer_cfg *cfg, ns_error *err)
{
    const ns_conn_def *conn = ns__job_conn(s->rc->job, conn_name);
    char *url = NULL, *url_shown = NULL, where[512];
    ns_status st;

    if ((st = ns__run_subst(s, conn->url, "connection", &url, &url_shown, err)) != NS_OK)
        goto out;
    ns__run_secret_url(s->rc, url);
    if (strncmp(url, "sqlite:", 7) == 0 &&
        ((st = ns__run_resolve(s->rc, &url, 7, err)) != NS_OK ||
         (st = ns__run_resolve(s->rc, &url_shown, 7, err)) != NS_OK))
        goto out;
    snprintf(where, sizeof(where), "connection '%s' (%s)", conn->name, url_shown);
    const ns_writer_vt *wvt = ns__writer_find_table(url);
    if (!wvt) {
        st = ns__err(err, NS_EUNSUPPORTED, NULL,
                     "%s: unsupported target (use sqlite:PATH or postgresql://...)", where);
        goto out;
    }
    cfg->url = url;
    cfg->conn_name = where;
    cfg->shared = strncmp(url, "sqlite:", 7) == 0 && !cfg->own
                      ? ns__repo_sqlite_shared(s->rc->repo, url + 7)
                      : NULL;
    cfg->share = cfg->own ? NULL : share_pg;
    cfg->share_arg = s->rc->repo;
    cfg->lease = s->rc->lease;
    if ((st = ns__writer_new(wvt, &s->writer, err)) != NS_OK)
        goto out;
    if ((st = s->writer->vt->open(s->writer, cfg, err)) != NS_OK)
        goto out;
    s->shared = s->writer->shared;
out:
    free(url);
    free(url_shown);
    return st;
}

static ns_status open_io(step_run *s, const ns_step_state *state, ns_error *err)
{
    const ns_step_def *d = s->def;
    char *path = NULL, *path_shown = NULL;
    ns_status st;

    if ((st = ns__run_subst(s, d->rejects, "rejects", &s->rejects_path, &s->rejects_shown, err)) !=
            NS_OK ||
        (st = ns__run_resolve(s->rc, &s->rejects_path, 0, err)) != NS_OK ||
        (st = ns__run_resolve(s->rc, &s->rejects_shown, 0, err)) != NS_OK)
        goto out;
    /* The checkpoint keeps an absolute path, so a restart from any directory
     * finds the file to cut back. */
    if (!(s->rejects_saved = absolute(s->rejects_path, s->rejects_shown))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    ns_reader_args args = {.param_names = (const char *const *)s->rc->params->names,
                           .param_values = (const char *const *)s->rc->params->values,
                           .nparams = s->rc->params->n};
    if (d->reader == NS_READER_CSV) {
        if ((st = ns__run_subst(s, d->csv_path, "reader.csv.path", &path, &path_shown, err)) !=
                NS_OK ||
            (st = ns__run_resolve(s->rc, &path, 0, err)) != NS_OK ||
            (st = ns__run_resolve(s->rc, &path_shown, 0, err)) != NS_OK)
            goto out;
        args.path = path;
        args.shown = path_shown;
    } else {
        const ns_conn_def *src = ns__job_conn(s->rc->job, d->query_conn);
        if ((st = ns__run_subst(s, src->url, "connection", &path, &path_shown, err)) != NS_OK)
            goto out;
        ns__run_secret_url(s->rc, path);
        if (strncmp(path, "sqlite:", 7) == 0 &&
            ((st = ns__run_resolve(s->rc, &path, 7, err)) != NS_OK ||
             (st = ns__run_resolve(s->rc, &path_shown, 7, err)) != NS_OK))
            goto out;
        char *shown = ns__asprintf("connection '%s' (%s)", src->name, path_shown);
        free(path_shown);
        path_shown = shown;
        args.path = path;
        args.shown = path_shown;
    }
    if ((st = ns__reader_new(d->reader == NS_READER_CSV ? &ns__reader_csv : &ns__reader_query,
                             &s->reader, err)) != NS_OK)
        goto out;
    if ((st = s->reader->vt->open(s->reader, d, &args, err)) != NS_OK)
        goto out;
    size_t ncols;
    const char *const *cols = s->reader->vt->columns(s->reader, &ncols);
    if (d->proc_code) {
        params *pp = s->rc->params;
        ns_proc_cfg pc = {.code = d->proc_code,
                          .code_len = d->proc_len,
                          .chunkname = d->proc_chunkname,
                          .columns = cols,
                          .ncolumns = ncols,
                          .out_columns = (const char *const *)d->proc_columns,
                          .nout = d->proc_ncolumns,
                          .param_names = (const char *const *)pp->names,
                          .param_values = (const char *const *)pp->values,
                          .nparams = pp->n,
                          .instruction_limit = d->proc_instructions};
        if ((st = ns__proc_new(&ns__proc_lua, &s->proc, err)) != NS_OK ||
            (st = s->proc->vt->open(s->proc, &pc, err)) != NS_OK)
            goto out;
        /* The writer sees what the processor makes. */
        cols = s->proc->vt->columns(s->proc, &ncols);
    }
    ns_writer_cfg cfg = {.table = d->table_name,
                         .mode = d->table_mode,
                         .key = (const char *const *)d->table_key,
                         .nkey = d->table_nkey,
                         .columns = cols,
                         .ncolumns = ncols};
    if ((st = ns__run_open_writer(s, d->table_conn, &cfg, err)) != NS_OK)
        goto out;
    if ((st = resume(s, state, err)) != NS_OK)
        goto out;
    /* A fresh start writes a new rejects file: one that is there already is
     * another execution's (said before anything is read). */
    if (!s->resumed && !s->done &&
        (st = ns__run_check_output(s, s->rejects_path, s->rejects_shown, "rejects file", err)) !=
            NS_OK)
        goto out;
    /* The processor starts where the checkpoint left it (its saved state). */
    if (s->proc && !s->done)
        st = s->proc->vt->start(s->proc, s->proc_state, err);
    int64_t total;
    s->reader->vt->progress(s->reader, &s->bytes_start, &total);
out:
    free(path);
    free(path_shown);
    return st;
}

/* Runs one chunk step; returns its final status in *status. */
static ns_status run_step(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *msg,
                          size_t msglen)
{
    step_run s = {.rc = rc, .def = def, .t0 = ns__mono()};
    ns_step_state state = {0};
    ns_error e = {0}, *err = &e;
    ns_arena arena;
    ns_item *items = NULL, *bad = NULL; /* a chunk's items; its unreadable records */
    ns_status st;
    bool started = false;
    ns_counts committed = {0}; /* the counters as of the last commit */

    ns__arena_init(&arena, 1 << 20);
    *status = NS_BATCH_FAILED;
    if ((st = rc->repo->vt->step_state(rc->repo, rc->launch.instance_id, def->name, &state, err)) !=
        NS_OK)
        goto out;
    /* (A step completed earlier is not run again: the flow in ns_job_run
     * skips it before calling here.) */
    if ((st = rc->repo->vt->step_begin(rc->repo, rc->launch.execution_id, def->name, &s.se, err)) !=
        NS_OK)
        goto out;
    started = true;
    ns__run_report(&s, rc->listener ? rc->listener->step_start : NULL, NS_BATCH_STARTED, NULL);
    if ((st = open_io(&s, &state, err)) != NS_OK)
        goto out;
    if (!(items = malloc((size_t)def->chunk * sizeof(*items))) ||
        !(bad = malloc((size_t)def->chunk * sizeof(*bad)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    const char *const *names;
    size_t nnames;
    names = s.reader->vt->columns(s.reader, &nnames);
    bool single = s.writer->vt->single_transaction(s.writer);
    bool eof = s.done;
    while (!eof) {
        size_t n = 0, nbad = 0;
        ns_counts before = s.counts;
        ns__arena_reset(&arena);
        /* A chunk is `chunk` records read, whatever becomes of them: items,
         * unreadable records and filtered ones all count, so the arrays and
         * the arena stay bounded. */
        while (s.counts.read - before.read < def->chunk) {
            ns_record r;
            if ((st = s.reader->vt->next(s.reader, &r, &eof, err)) != NS_OK)
                goto out;
            if (eof)
                break;
            s.counts.read++;
            ns_item *it = r.error_code ? &bad[nbad++] : &items[n++];
            if (to_item(&r, it, &arena, r.error_code || !s.proc) != NS_OK) {
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                goto out;
            }
            if (!r.error_code && s.proc) {
                ns_proc_result pr;
                if ((st = s.proc->vt->process(s.proc, it, &arena, &pr, err)) != NS_OK)
                    goto out;
                if (pr == NS_PROC_FILTER) {
                    n--;
                    s.counts.filter++;
                    continue;
                }
                if (pr == NS_PROC_REJECT) {
                    bad[nbad++] = *it;
                    n--;
                    s.counts.process_skip++;
                    if (skips(&s.counts) > def->skip_limit)
                        break;
                    continue;
                }
            }
            if (!r.error_code && s.writer->vt->feed &&
                (st = s.writer->vt->feed(s.writer, items, n - 1, &arena, err)) != NS_OK)
                goto out;
            if (r.error_code) {
                s.counts.read_skip++;
                it->code = r.error_code;
                it->column = r.error_field >= 0 ? names[r.error_field] : NULL;
                it->message = ns__arena_strndup(&arena, r.error_message, strlen(r.error_message));
                if (skips(&s.counts) > def->skip_limit)
                    break;
            }
        }
        /* The processor's close() before the last chunk commits: if it fails,
         * that chunk is read again on restart. */
        if (eof && s.proc && (st = s.proc->vt->finish(s.proc, err)) != NS_OK)
            goto out;
        if (n > 0 && (st = s.writer->vt->write(s.writer, items, n, &arena, err)) != NS_OK)
            goto out;
        /* Rejects in file order: merge the reader's with the writer's. The
         * one that takes the count past the limit is the one to name. */
        int64_t nth = skips(&before);
        char crossed[512] = "";
        for (size_t i = 0, b = 0; i < n || b < nbad;) {
            ns_item *it;
            if (b < nbad && (i >= n || bad[b].line < items[i].line)) {
                it = &bad[b++];
            } else {
                it = &items[i++];
                if (!it->code) {
                    s.counts.write++;
                    continue;
                }
                s.counts.write_skip++;
            }
            if ((st = reject(&s, it->line, it->column, it->code, it->message, it->raw, it->raw_len,
                             err)) != NS_OK)
                goto out;
            if (++nth == def->skip_limit + 1)
                snprintf(crossed, sizeof(crossed), "%s", s.last_reject);
        }
        if (skips(&s.counts) > def->skip_limit) {
            if (s.rejects)
                fflush(s.rejects);
            char lim[32], so_far[32];
            st = ns__err(err, NS_ESKIPLIMIT, NULL,
                         "skip limit %s exceeded by %s (%s records rejected so far, see %s); "
                         "the chunk in which it happened was rolled back",
                         ns__count(def->skip_limit, lim), crossed[0] ? crossed : s.last_reject,
                         ns__count(skips(&s.counts), so_far), s.rejects_shown);
            goto out;
        }
        /* Replace mode is one transaction for the whole step: it commits at
         * the end only. */
        if ((single ? eof : (n > 0 || s.counts.read != before.read || eof)) &&
            (st = commit_chunk(&s, err)) != NS_OK)
            goto out;
        if (!single || eof)
            committed = s.counts;
        ns__run_report(&s, rc->listener ? rc->listener->chunk : NULL, NS_BATCH_STARTED, NULL);
        if ((s.stop || ns__stop_signal) && !eof) {
            *status = NS_BATCH_STOPPED;
            char nread[32];
            snprintf(msg, msglen, "stopped on request after chunk %lld; %s records read",
                     (long long)s.chunks, ns__count(committed.read, nread));
            break;
        }
    }
    if (eof) {
        *status = NS_BATCH_COMPLETED;
        if (skips(&s.counts)) {
            char nrej[32], nread[32];
            snprintf(msg, msglen, "%s of %s records rejected (see %s)",
                     ns__count(skips(&s.counts), nrej), ns__count(s.counts.read, nread),
                     s.rejects_shown);
        }
    }
out:
    if (st != NS_OK) {
        *status = NS_BATCH_FAILED;
        snprintf(msg, msglen, "%s", e.message);
    }
    if (*status != NS_BATCH_COMPLETED && s.writer) {
        /* Whatever was not committed is undone, and the counters say so:
         * they always describe what the target holds. */
        s.writer->vt->rollback(s.writer);
        if (memcmp(&s.counts, &committed, sizeof(committed)) != 0) {
            s.counts = committed;
            s.counts.rollback++;
        }
    }
    if (s.rejects)
        fclose(s.rejects);
    if (started) {
        ns_error e2 = {0};
        if (ns__run_step_end(&s, *status, NULL, msg, msglen, &e2) != NS_OK &&
            *status != NS_BATCH_FAILED) {
            *status = NS_BATCH_FAILED;
            snprintf(msg, msglen, "%s", e2.message);
        }
        ns__run_report(&s, rc->listener ? rc->listener->step_end : NULL, *status,
                       msg[0] ? msg : NULL);
    }
    ns__writer_free(s.writer);
    ns__proc_free(s.proc);
    json_decref(s.proc_state);
    ns__reader_free(s.reader);
    ns__arena_free(&arena);
    free(items);
    free(bad);
    free(s.rejects_path);
    free(s.rejects_shown);
    free(s.rejects_saved);
    free(s.context);
    free(state.context);
    return st;
}

/* ------------------------------------------------------------ flow */

/* Where the flow goes after step i ended with `code`: the index of the next
 * step, or -1 with the job's outcome in *end. `replay`: the step completed in
 * an earlier execution, so a `stop` it led to has been honoured already. */
static long next_step(const ns_job *job, size_t i, ns_batch_status status, const char *code,
                      bool replay, ns_batch_status *end)
{
    const ns_step_def *s = &job->steps[i];
    const char *to = NULL;
    for (size_t k = 0; k < s->non && !to; k++)
        if (strcmp(s->on[k].code, code) == 0)
            to = s->on[k].to;
    for (size_t k = 0; k < s->non && !to; k++)
        if (strcmp(s->on[k].code, "*") == 0)
            to = s->on[k].to;
    if (to && strcmp(to, "end") == 0)
        return *end = NS_BATCH_COMPLETED, -1;
    if (to && strcmp(to, "fail") == 0)
        return *end = NS_BATCH_FAILED, -1;
    if (to && strcmp(to, "stop") == 0 && !replay)
        return *end = NS_BATCH_STOPPED, -1;
    if (to && strcmp(to, "stop") != 0)
        return ns__job_step(job, to);
    /* No transition: on in file order after a success, else the job ends. */
    if (status == NS_BATCH_COMPLETED)
        return i + 1 < job->nsteps ? (long)i + 1 : (*end = NS_BATCH_COMPLETED, -1);
    return *end = status == NS_BATCH_STOPPED ? NS_BATCH_STOPPED : NS_BATCH_FAILED, -1;
}

/* --------------------------------------------------------- launcher */

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

ns_status ns_job_run(ns_repo *repo, const ns_job *job, const ns_launch *launch, ns_outcome *out,
                     ns_error *err)
{
    params p = {0};
    run_ctx rc = {.workdir = launch ? launch->workdir : NULL,
                  .repo = repo,
                  .job = job,
                  .listener = launch ? launch->listener : NULL,
                  .params = &p,
                  .checkpoint = launch ? launch->checkpoint : NS_CHECKPOINT_OWN};
    char cwd[4096];
    ns_status st;
    char msg[1024] = "";

    out->execution_id = 0;
    out->status = NS_BATCH_UNKNOWN;
    out->exit_code = NS_EXIT_USAGE;
    out->message[0] = out->code[0] = '\0';
    ns__secrets_merge(&rc.secrets, &repo->secrets);
    if ((st = resolve_params(job, launch ? launch->params : NULL, launch ? launch->nparams : 0, &p,
                             err)) != NS_OK)
        goto done;
    if ((st = ns__job_check_env(job, err)) != NS_OK)
        goto done;
    if ((st = check_paths(job, &p, err)) != NS_OK)
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
    if ((st = repo->vt->launch(repo, &req, &rc.launch, err)) != NS_OK) {
        if (rc.launch.notice[0])
            ns__run_notice(&rc, "%s", rc.launch.notice);
        out->exit_code = st == NS_EREFUSED ? NS_EXIT_REFUSED : NS_EXIT_FAILED;
        goto done;
    }
    if (rc.launch.notice[0])
        ns__run_notice(&rc, "%s", rc.launch.notice);
    if (rc.launch.run_id) {
        char v[32];
        snprintf(v, sizeof(v), "%lld", (long long)rc.launch.run_id);
        params_add(&p, "run.id", "int", v, true, NULL);
    }
    out->execution_id = rc.launch.execution_id;
    if (rc.launch.restart_of)
        ns__run_notice(&rc, "execution %lld restarts execution %lld",
                       (long long)rc.launch.execution_id, (long long)rc.launch.restart_of);
    if ((st = repo->vt->exec_status(repo, rc.launch.execution_id, NS_BATCH_STARTED, "EXECUTING", "",
                                    false, err)) != NS_OK)
        goto done;
    /* Heartbeats at a third of the lease, also in the middle of a chunk. */
    if (repo->vt->keepalive_start &&
        (st = repo->vt->keepalive_start(repo, rc.launch.execution_id, lease / 3, err)) != NS_OK)
        goto done;

    /* The flow: from the first step, each step's exit code picks the next
     * (on:, else the next in file order after a success). A step completed
     * by an earlier execution of the instance is not run again; its recorded
     * exit code steers the flow as it did then. */
    ns_batch_status status = NS_BATCH_COMPLETED, end = NS_BATCH_COMPLETED;
    char code[40] = "COMPLETED";
    for (long i = 0; i >= 0;) {
        const ns_step_def *def = &job->steps[i];
        char smsg[1024] = "";
        ns_step_state ss = {0};
        bool replay = false;
        if (repo->vt->step_state(repo, rc.launch.instance_id, def->name, &ss, err) != NS_OK) {
            status = NS_BATCH_FAILED;
            snprintf(code, sizeof(code), "FAILED");
            snprintf(smsg, sizeof(smsg), "%s", err->message);
        } else if (ss.completed) {
            ns__run_notice(&rc, "step %s: already completed for this instance (%s); not run again",
                           def->name, ss.exit_code);
            status = NS_BATCH_COMPLETED;
            snprintf(code, sizeof(code), "%s", ss.exit_code[0] ? ss.exit_code : "COMPLETED");
            replay = true;
        } else if (def->kind == NS_STEP_CHUNK) {
            run_step(&rc, def, &status, smsg, sizeof(smsg));
            snprintf(code, sizeof(code), "%s", ns_batch_status_name(status));
        } else if (def->kind == NS_STEP_COMPARE) {
            ns__run_compare_step(&rc, def, &status, code, sizeof(code), smsg, sizeof(smsg));
        } else {
            ns__run_db_step(&rc, def, &status, code, sizeof(code), smsg, sizeof(smsg));
        }
        free(ss.context);
        /* The job's message: the failing step's, else each step's note. */
        size_t used = status == NS_BATCH_COMPLETED ? strlen(msg) : 0;
        if (smsg[0] && snprintf(msg + used, sizeof(msg) - used, "%sstep %s: %s", used ? "; " : "",
                                def->name, smsg) < 0)
            msg[used] = '\0';
        i = next_step(job, (size_t)i, status, code, replay, &end);
        if (i >= 0 && status == NS_BATCH_COMPLETED && ns__stop_signal) {
            end = NS_BATCH_STOPPED;
            snprintf(msg, sizeof(msg), "stopped on request after step %s", def->name);
            i = -1;
        }
    }
    /* The job's exit code: the last step's when it says more than the
     * outcome (COMPLETED_WITH_DIFFERENCES, ASSERT_FAILED), else the outcome. */
    bool completed_code = strncmp(code, "COMPLETED", 9) == 0;
    status = end;
    if (end == NS_BATCH_STOPPED || (end == NS_BATCH_COMPLETED) != completed_code)
        snprintf(code, sizeof(code), "%s", ns_batch_status_name(end));
    if (repo->vt->keepalive_stop)
        repo->vt->keepalive_stop(repo);
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
    st = NS_OK;
done:
    if (st == NS_EPARAM || st == NS_ECONFIG)
        out->exit_code = NS_EXIT_USAGE;
    /* The boundary: nothing the caller prints may carry a secret. */
    ns__run_redact(&rc, out->message, sizeof(out->message));
    if (err)
        ns__run_redact(&rc, err->message, sizeof(err->message));
    ns__secrets_free(&rc.secrets);
    params_free(&p);
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
