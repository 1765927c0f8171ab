/*
 * chunk.c - the chunk step: reader -> (processor) -> writer in chunks, each
 * committed with the reader's position, the counters and the rejects-file
 * offset in the target's transaction (docs/internals.md, "A chunk" and
 * "Exactly-once restart"). On restart the target's checkpoint is the truth:
 * the reader seeks to it, the rejects file is cut back to it, and the
 * repository's record of the dead execution is brought up to it.
 */
#include "core/core.h"
#include "proc/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Whether the step's writer is at-least-once: its checkpoint is kept in
 * s->store, with the state its sync() returns. */
static bool at_least_once(const step_run *s)
{
    return !(s->writer->vt->caps & NS_WRITER_TRANSACTIONAL);
}

static ns_status make_context(step_run *s, json_t *writer_state, ns_error *err)
{
    json_t *saved = NULL;
    ns_status st;
    if (s->proc && (st = s->proc->vt->save(s->proc, &saved, err)) != NS_OK)
        return st;
    /* milliseconds: enough for people, and stable text */
    json_t *secs = json_pack(
        "{s:f, s:f, s:f, s:f, s:f}", "read", round(s->secs[0] * 1000) / 1000, "process",
        round(s->secs[1] * 1000) / 1000, "write", round(s->secs[2] * 1000) / 1000, "commit",
        round(s->secs[3] * 1000) / 1000, "retry_wait", round(s->secs[4] * 1000) / 1000);
    ns_ckpt c = {.execution_id = s->rc->launch.execution_id,
                 .step_execution_id = s->se.id,
                 .seconds = secs,
                 .chunks = s->chunks,
                 .records = s->records_base + s->counts.read,
                 .counts = s->counts,
                 .position = s->reader->vt->position(s->reader),
                 .rejects_path = s->rejects_saved,
                 .rejects_offset = s->rejects_offset,
                 .processor = saved,
                 .writer = writer_state};
    snprintf(c.repository, sizeof(c.repository), "%s", s->rc->repo->id);
    char *text = NULL;
    st = c.position ? ns__ckpt_encode(&c, &text, err)
                    : ns__err(err, NS_ENOMEM, NULL, "out of memory");
    json_decref(c.position);
    json_decref(saved);
    json_decref(secs);
    if (st != NS_OK)
        return st;
    size_t len = strlen(text);
    if (saved && len > NS_PROC_STATE_MAX) {
        free(text);
        return ns__err(err, NS_EINVAL, NULL,
                       "processor: cannot save the state: the checkpoint would be %zu bytes of "
                       "JSON, over the %zu it may carry; keep in `state` only what a restart "
                       "needs",
                       len, NS_PROC_STATE_MAX);
    }
    free(s->context);
    s->context = text;
    s->se.context = text;
    return NS_OK;
}

/* The step's row in the target's checkpoint table (see ns_ckpt_key). */
static ns_ckpt_key ckpt_key(const step_run *s, bool reclaim)
{
    return (ns_ckpt_key){.job_name = s->rc->job->name,
                         .job_key = s->rc->launch.job_key,
                         .step = s->def->name,
                         .partition = "",
                         .execution_id = s->rc->launch.execution_id,
                         .step_execution_id = s->se.id,
                         .reclaim = reclaim};
}

static ns_status commit_chunk(step_run *s, ns_error *err)
{
    ns_ckpt_key key = ckpt_key(s, false);
    ns_status st;

    if ((st = ns__rejects_sync(s, err)) != NS_OK)
        return st;
    /* Fault injection for the tests: die, or freeze, with the chunk's
     * rejects on disk and its rows written but not committed. */
    NS_FAULT("NIGHTSHIFT_TEST_EXIT_BEFORE_COMMIT", s->chunks + 1, _exit(98));
    NS_FAULT("NIGHTSHIFT_TEST_PAUSE_BEFORE_COMMIT", s->chunks + 1, raise(SIGSTOP));
    /* An at-least-once writer makes its output durable first, and says
     * where it stands: the checkpoint keeps that. */
    json_t *wstate = NULL;
    if (at_least_once(s) && (st = s->writer->vt->sync(s->writer, &wstate, err)) != NS_OK)
        return st;
    s->counts.commit++;
    s->chunks++;
    st = make_context(s, wstate, err);
    json_decref(wstate);
    if (st != NS_OK) {
        s->counts.commit--;
        s->chunks--;
        return st;
    }
    bool committed;
    st = ns__run_commit(s, s->store, &key, s->chunks, &committed, err);
    if (committed) {
        s->rejects_committed = s->rejects_offset;
        s->repo_behind = st != NS_OK;
        free(s->ctx_committed);
        if (!(s->ctx_committed = ns__strdup(s->context)) && st == NS_OK)
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        if (st == NS_OK)
            s->attempt = 0;
    }
    if (st != NS_OK) {
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

/* Brings the step to where the target's checkpoint says it stands, claiming
 * the checkpoint for this execution (the fence, see ns_writer_vt.checkpoint). */
static ns_status resume(step_run *s, const ns_step_state *state, ns_error *err)
{
    ns_ckpt_key key = ckpt_key(s, false);
    char *ctx = NULL;
    ns_ckpt c = {0}, rc = {0};
    bool foreign;
    ns_status st;

    if ((st = ns__run_claim(s, s->store, &key, &ctx, &foreign, err)) != NS_OK)
        return st;
    if (!ctx) {
        /* An at-least-once writer starts its output afresh. */
        if (at_least_once(s) && (st = s->writer->vt->resume(s->writer, NULL, err)) != NS_OK)
            return st;
        /* A fresh start. The earlier execution's rejects are evidence of
         * committed rows unless it committed nothing: only then removed. */
        if (s->rc->checkpoint != NS_CHECKPOINT_IGNORE)
            ns__rejects_drop_predecessor(s, NULL);
        if (state->context && s->rc->checkpoint != NS_CHECKPOINT_IGNORE &&
            !s->writer->vt->single_transaction(s->writer))
            ns__run_notice(
                s->rc,
                "step %s: the repository has a saved position but the target has no "
                "checkpoint; the target is the truth, so the step starts from the beginning",
                s->def->name);
        return NS_OK;
    }
    if ((st = ns__ckpt_decode(ctx, &c, err)) != NS_OK)
        goto out;
    /* What a retry goes back to until this execution commits a chunk: the
     * target's row holds this very text. */
    if (!(s->ctx_committed = ns__strdup(ctx))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    s->proc_state = json_incref(c.processor);
    s->chunks = c.chunks;
    s->records_base = c.records;
    s->resumed = true;
    if (!foreign)
        ns__rejects_drop_predecessor(s, c.rejects_path);
    if ((st = s->reader->vt->seek(s->reader, c.position, err)) != NS_OK)
        goto out;
    /* An at-least-once writer cuts its output back to where it stood when
     * the checkpoint committed: what later chunks wrote is written again. */
    if (at_least_once(s)) {
        if (!c.writer) {
            st = ns__err(err, NS_EDB, NULL,
                         "writer %s: the checkpoint does not say where the output stands (it "
                         "was written by another kind of writer); restart with "
                         "--restart-from-beginning",
                         s->def->writer->name);
            goto out;
        }
        if ((st = s->writer->vt->resume(s->writer, c.writer, err)) != NS_OK)
            goto out;
    }
    /* An adopted checkpoint's rejects file is another repository's: left
     * as it is (this execution writes its own). */
    bool latest = c.step_execution_id == state->last_id;
    if (!foreign && (st = ns__rejects_cut(s, &c, latest ? state->context : NULL, err)) != NS_OK)
        goto out;
    /* The repository lags when the process died between the target commit
     * and the repository update: bring that step execution (the latest of
     * this instance's step, the one the checkpoint names) up to it. */
    int64_t repo_chunks = -1;
    ns_status dec = state->context ? ns__ckpt_decode(state->context, &rc, err) : NS_EDB;
    if (dec == NS_ENOMEM) {
        st = dec;
        goto out;
    }
    if (dec == NS_OK)
        repo_chunks = rc.chunks;
    else if (err)
        ns_error_clear(err); /* the repository's copy is advisory: the target's is the truth */
    if (!foreign && latest && repo_chunks < s->chunks &&
        (st = s->rc->repo->vt->step_reconcile(s->rc->repo, c.step_execution_id, &c.counts, ctx,
                                              err)) != NS_OK)
        goto out;
    if (s->writer->vt->single_transaction(s->writer)) {
        /* A whole-step transaction checkpoints only when the step is done:
         * running it again would replace the table with nothing. */
        s->done = true;
        ns__run_notice(s->rc, "step %s: already committed in the target; recorded as completed",
                       s->def->name);
        goto out;
    }
    char where[96];
    ns__ckpt_where(&c, where, sizeof(where));
    json_t *line = json_object_get(c.position, "line");
    ns__run_notice(s->rc, "step %s: resuming after chunk %lld%s%lld", s->def->name,
                   (long long)s->chunks, json_is_integer(line) ? " at line " : "",
                   json_is_integer(line) ? (long long)json_integer_value(line) : 0LL);
out:
    ns__ckpt_free(&c);
    ns__ckpt_free(&rc);
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

/* Opens the step's plugins, each with its own configuration: the reader,
 * the processor if any, the writer (and the store of an at-least-once
 * writer's checkpoint); each checked for the version it was built for. */
static ns_status open_plugins(step_run *s, ns_error *err)
{
    const ns_step_def *d = s->def;
    ns_status st;
    ns_io_env env = ns__run_env(s);
    const ns_reader_vt *rvt = d->reader->impl;
    if (rvt->version != NS_READER_VERSION) {
        st = ns__err(err, NS_EUNSUPPORTED, NULL, "reader %s: version %d, this build needs %d",
                     d->reader->name, rvt->version, NS_READER_VERSION);
        goto out;
    }
    if ((st = ns__reader_new(rvt, &s->reader, err)) != NS_OK)
        goto out;
    if ((st = s->reader->vt->open(s->reader, d->reader_cfg, &env, err)) != NS_OK)
        goto out;
    size_t ncols;
    const char *const *cols = s->reader->vt->columns(s->reader, &ncols);
    if (d->processor) {
        const ns_proc_vt *pvt = d->processor->impl;
        ns__params *pp = s->rc->params;
        ns_proc_args pa = {.columns = cols,
                           .ncolumns = ncols,
                           .param_names = (const char *const *)pp->names,
                           .param_values = (const char *const *)pp->values,
                           .nparams = pp->n};
        if (pvt->version != NS_PROC_VERSION) {
            st =
                ns__err(err, NS_EUNSUPPORTED, NULL, "processor %s: version %d, this build needs %d",
                        d->processor->name, pvt->version, NS_PROC_VERSION);
            goto out;
        }
        if ((st = ns__proc_new(pvt, &s->proc, err)) != NS_OK ||
            (st = s->proc->vt->open(s->proc, d->proc_cfg, &pa, err)) != NS_OK)
            goto out;
        /* The writer sees what the processor makes. */
        cols = s->proc->vt->columns(s->proc, &ncols);
    }
    ns_share share = ns__run_share(s->rc);
    ns_writer_args wa = {
        .env = &env, .columns = cols, .ncolumns = ncols, .lease = s->rc->lease, .share = &share};
    const ns_writer_factory *wf = d->writer->impl;
    if ((st = wf->create(d->writer_cfg, &wa, &s->writer, err)) != NS_OK)
        goto out;
    if (s->writer->vt->version != NS_WRITER_VERSION) {
        st = ns__err(err, NS_EUNSUPPORTED, NULL, "writer %s: version %d, this build needs %d",
                     d->writer->name, s->writer->vt->version, NS_WRITER_VERSION);
        goto out;
    }
    if (!at_least_once(s)) {
        s->store = s->writer;
        s->shared = s->writer->shared;
    } else if (!s->writer->vt->resume || !s->writer->vt->sync || !s->writer->vt->finish) {
        st = ns__err(err, NS_EUNSUPPORTED, NULL,
                     "writer %s: neither transactional nor able to resume its output",
                     d->writer->name);
        goto out;
    } else {
        st = ns__run_open_store(s, err);
    }
out:
    return st;
}

/* Frees what open_plugins() opened, undoing what was not committed. */
static void close_plugins(step_run *s)
{
    if (s->writer)
        s->writer->vt->rollback(s->writer);
    if (s->store && s->store != s->writer) {
        s->store->vt->rollback(s->store);
        ns__writer_free(s->store);
    }
    ns__writer_free(s->writer);
    ns__proc_free(s->proc);
    ns__reader_free(s->reader);
    s->store = s->writer = NULL;
    s->proc = NULL;
    s->reader = NULL;
}

static ns_status open_io(step_run *s, const ns_step_state *state, ns_error *err)
{
    const ns_step_def *d = s->def;
    ns_status st;

    if ((st = ns__run_subst(s, d->rejects, "rejects", &s->rejects_path, &s->rejects_shown, err)) !=
            NS_OK ||
        (st = ns__run_resolve(s->rc, &s->rejects_path, 0, err)) != NS_OK ||
        (st = ns__run_resolve(s->rc, &s->rejects_shown, 0, err)) != NS_OK)
        goto out;
    /* The checkpoint keeps an absolute path, so a restart from any directory
     * finds the file to cut back. */
    if (!(s->rejects_saved = ns__run_absolute(s->rejects_path, s->rejects_shown))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    if ((st = open_plugins(s, err)) != NS_OK || (st = resume(s, state, err)) != NS_OK)
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
    return st;
}

/* ------------------------------------------------------------ retries */

/* Cuts the rejects file back to what the last commit kept: the chunk is
 * read, and its records rejected, again. A file this run created and no
 * commit kept goes (it is made again, with its header, by the next reject). */
static ns_status rejects_back(step_run *s, ns_error *err)
{
    if (!s->rejects)
        return NS_OK;
    if (fflush(s->rejects) != 0)
        return ns__err(err, NS_EIO, NULL, "rejects file %s: %s", s->rejects_shown, strerror(errno));
    if (s->rejects_committed == 0) {
        fclose(s->rejects);
        s->rejects = NULL;
        unlink(s->rejects_path);
    } else if (ftruncate(fileno(s->rejects), (off_t)s->rejects_committed) != 0 ||
               fseek(s->rejects, 0, SEEK_END) != 0) {
        return ns__err(err, NS_EIO, NULL, "rejects file %s: cannot cut back: %s", s->rejects_shown,
                       strerror(errno));
    }
    s->rejects_offset = s->rejects_committed;
    return NS_OK;
}

static bool same_ctx(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/*
 * Opens the step's plugins again, on new connections, and puts them where
 * the target's checkpoint says the step stands: the claim taken again (a
 * run that took the instance over meanwhile fences this one off), the
 * reader at the committed position, the processor with the committed
 * state. *landed: the commit that failed had gone through (only its answer
 * was lost); the step goes on after it.
 */
static ns_status reopen(step_run *s, ns_counts *committed, bool *landed, ns_error *err)
{
    ns_ckpt_key key = ckpt_key(s, true);
    char *target = NULL;
    ns_ckpt c = {0};
    ns_status st;

    *landed = false;
    if ((st = open_plugins(s, err)) != NS_OK ||
        (st = s->store->vt->checkpoint(s->store, &key, &target, err)) != NS_OK)
        goto out;
    if (!same_ctx(target, s->ctx_committed)) {
        if (!target || !s->context || strcmp(target, s->context) != 0) {
            st = ns__err(err, NS_EDB, NULL,
                         "the target's checkpoint of this step changed while the connection "
                         "was down, and not by this run; the step stops rather than guess where "
                         "it stands (run again to resume from the target's checkpoint)");
            goto out;
        }
        /* The commit went through: what it recorded is what is committed,
         * and the repository hears of it now. */
        if ((st = ns__ckpt_decode(target, &c, err)) != NS_OK)
            goto out;
        *landed = true;
        *committed = c.counts;
        s->counts = c.counts;
        s->chunks = c.chunks;
        s->rejects_committed = s->rejects_offset = c.rejects_offset;
        s->se.context = s->context;
        if (!s->shared && (st = ns__run_commit_hook(s, err)) != NS_OK) {
            s->repo_behind = true;
            goto out;
        }
        free(s->ctx_committed);
        s->ctx_committed = target;
        target = NULL;
        ns__ckpt_free(&c);
        ns__run_notice(s->rc,
                       "step %s: chunk %lld had committed before the connection was lost; going "
                       "on after it",
                       s->def->name, (long long)s->chunks);
    }
    /* Where the committed state stands; none: the step's beginning. */
    if (s->ctx_committed && (st = ns__ckpt_decode(s->ctx_committed, &c, err)) != NS_OK)
        goto out;
    if (c.position && (st = s->reader->vt->seek(s->reader, c.position, err)) != NS_OK)
        goto out;
    if (at_least_once(s) && (st = s->writer->vt->resume(s->writer, c.writer, err)) != NS_OK)
        goto out;
    if (s->proc)
        st = s->proc->vt->start(s->proc, s->ctx_committed ? c.processor : NULL, err);
out:
    ns__ckpt_free(&c);
    free(target);
    return st;
}

typedef enum retry_outcome { RETRY_NO, RETRY_AGAIN, RETRY_STOPPED } retry_outcome;

/*
 * After a chunk failed with *err: whether the step's retry policy tries it
 * again (docs/operations.md, "Retries"). The chunk's transaction is undone,
 * the plugins are opened again on new connections after the backoff, and
 * the step goes on from its last committed checkpoint within this
 * execution (RETRY_AGAIN); the counters say what the target holds, plus
 * the retries. RETRY_NO: *err stands (naming the tries made); RETRY_STOPPED:
 * a stop request came during the wait.
 */
static retry_outcome retry_chunk(step_run *s, ns_error *err, ns_counts *committed)
{
    const ns_retry *r = &s->def->retry;
    char what[160];
    int64_t tries = 0;
    bool undone = memcmp(&s->counts, committed, sizeof(*committed)) != 0;
    retry_outcome out = RETRY_NO;

    committed->retry = s->counts.retry; /* a writer's retries within the chunk (HTTP) */
    if (s->repo_behind || !ns__retry_wanted(r, err, what, sizeof(what)))
        return RETRY_NO;
    while (out == RETRY_NO) {
        if (s->attempt >= r->limit) {
            size_t len = strlen(err->message);
            if (s->attempt > 0)
                snprintf(err->message + len, sizeof(err->message) - len,
                         " (%s; gave up after %lld %s, retry.limit)", what, (long long)s->attempt,
                         s->attempt == 1 ? "retry" : "retries");
            break;
        }
        s->attempt++;
        tries++;
        double wait = ns__retry_delay(r, s->attempt, &s->seed);
        ns__run_notice(s->rc, "step %s: chunk %lld failed (%s), retry %lld of %lld in %.1f s: %s",
                       s->def->name, (long long)s->chunks + 1, what, (long long)s->attempt,
                       (long long)r->limit, wait, err->message);
        close_plugins(s);
        if (ns__step_wait(s, wait)) {
            out = RETRY_STOPPED;
            break;
        }
        ns_error again = {0};
        bool landed;
        if (reopen(s, committed, &landed, &again) == NS_OK && rejects_back(s, &again) == NS_OK) {
            undone &= !landed;
            out = RETRY_AGAIN;
            break;
        }
        ns__retry_reconnecting(&again);
        *err = again;
        if (s->repo_behind || !ns__retry_wanted(r, err, what, sizeof(what)))
            break;
    }
    if (undone)
        committed->rollback++;
    committed->retry += tries;
    s->counts = *committed;
    return out;
}

/* One chunk in the making: its items, its unreadable or rejected records,
 * and the counters before it. */
typedef struct chunk {
    ns_item *items, *bad;
    size_t n, nbad;
    ns_counts before;
    const char *const *names; /* the reader's columns */
} chunk;

/* Reads a chunk: `chunk` records read, whatever becomes of them (items,
 * unreadable records and filtered ones all count, so the arrays and the
 * arena stay bounded), each through the processor, each item fed to a
 * writer that takes them one by one. */
static ns_status read_chunk(step_run *s, chunk *c, ns_arena *arena, bool *eof, ns_error *err)
{
    const ns_step_def *def = s->def;
    ns_status st = NS_OK;
    double t_read = ns__mono(), t_proc = s->secs[1];
    while (s->counts.read - c->before.read < def->chunk) {
        ns_record r;
        if ((st = s->reader->vt->next(s->reader, &r, eof, err)) != NS_OK)
            return st;
        if (*eof)
            break;
        s->counts.read++;
        ns_item *it = r.error_code ? &c->bad[c->nbad++] : &c->items[c->n++];
        if (to_item(&r, it, arena, r.error_code || !s->proc) != NS_OK)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        it->seq = s->records_base + s->counts.read;
        if (!r.error_code && s->proc) {
            ns_proc_result pr;
            double t0 = ns__mono();
            st = s->proc->vt->process(s->proc, it, arena, &pr, err);
            s->secs[1] += ns__mono() - t0;
            if (st != NS_OK)
                return st;
            if (pr == NS_PROC_FILTER) {
                c->n--;
                s->counts.filter++;
                continue;
            }
            if (pr == NS_PROC_REJECT) {
                c->bad[c->nbad++] = *it;
                c->n--;
                s->counts.process_skip++;
                if (skips(&s->counts) > def->skip_limit)
                    break;
                continue;
            }
        }
        if (!r.error_code && s->writer->vt->feed &&
            (st = s->writer->vt->feed(s->writer, c->items, c->n - 1, arena, err)) != NS_OK)
            return st;
        if (r.error_code) {
            s->counts.read_skip++;
            it->code = r.error_code;
            it->column = r.error_field >= 0 ? c->names[r.error_field] : NULL;
            it->message = ns__arena_strndup(arena, r.error_message, strlen(r.error_message));
            if (skips(&s->counts) > def->skip_limit)
                break;
        }
    }
    s->secs[0] += ns__mono() - t_read - (s->secs[1] - t_proc);
    /* The processor's close() before the last chunk commits: if it fails,
     * that chunk is read again on restart. */
    if (*eof && s->proc)
        st = s->proc->vt->finish(s->proc, err);
    return st;
}

/* Writes a chunk's items, then its rejects in file order (the reader's
 * merged with the writer's); past the skip limit, the chunk fails naming
 * the record that took the count over it. */
static ns_status write_chunk(step_run *s, chunk *c, ns_arena *arena, ns_error *err)
{
    const ns_step_def *def = s->def;
    ns_status st;
    double t_write = ns__mono();
    if (c->n > 0 && (st = s->writer->vt->write(s->writer, c->items, c->n, arena, err)) != NS_OK)
        return st;
    s->secs[2] += ns__mono() - t_write;
    int64_t nth = skips(&c->before);
    char crossed[512] = "";
    for (size_t i = 0, b = 0; i < c->n || b < c->nbad;) {
        ns_item *it;
        if (b < c->nbad && (i >= c->n || c->bad[b].line < c->items[i].line)) {
            it = &c->bad[b++];
        } else {
            it = &c->items[i++];
            if (!it->code) {
                s->counts.write++;
                continue;
            }
            s->counts.write_skip++;
        }
        if ((st = ns__rejects_write(s, it->line, it->column, it->code, it->message, it->raw,
                                    it->raw_len, err)) != NS_OK)
            return st;
        if (++nth == def->skip_limit + 1)
            snprintf(crossed, sizeof(crossed), "%s", s->last_reject);
    }
    if (skips(&s->counts) <= def->skip_limit)
        return NS_OK;
    if (s->rejects)
        fflush(s->rejects);
    char lim[32], so_far[32];
    return ns__err(err, NS_ESKIPLIMIT, NULL,
                   "skip limit %s exceeded by %s (%s records rejected so far, see %s); "
                   "the chunk in which it happened was rolled back",
                   ns__count(def->skip_limit, lim), crossed[0] ? crossed : s->last_reject,
                   ns__count(skips(&s->counts), so_far), s->rejects_shown);
}

/* Commits a chunk (replace mode: one transaction for the whole step, at
 * its end only); *committed then holds the counters as committed. */
static ns_status commit(step_run *s, chunk *c, bool single, bool eof, ns_counts *committed,
                        ns_error *err)
{
    ns_status st;
    double t_commit = ns__mono();
    if ((single ? eof : (c->n > 0 || s->counts.read != c->before.read || eof)) &&
        (st = commit_chunk(s, err)) != NS_OK)
        return st;
    s->secs[3] += ns__mono() - t_commit;
    if (!single || eof)
        *committed = s->counts;
    ns__run_report(s, NS_EV_CHUNK, NS_BATCH_STARTED, NULL);
    return NS_OK;
}

typedef enum after_failure { GO_ON, STOP, FAIL } after_failure;

/* A chunk failed (*e): stopped on request (a writer cut it short: it is
 * sent again on restart), retried (a transient failure: undone and tried
 * again on new connections from the last committed checkpoint), or the
 * step fails. msg says a stop. */
static after_failure on_failure(step_run *s, ns_error *e, ns_counts *committed, char *msg,
                                size_t msglen)
{
    char nread[32];
    if (e->code == NS_ESTOPPED) {
        snprintf(msg, msglen, "stopped on request during chunk %lld (%s); %s records read",
                 (long long)s->chunks + 1, e->message, ns__count(committed->read, nread));
        return STOP;
    }
    switch (retry_chunk(s, e, committed)) {
    case RETRY_AGAIN:
        ns_error_clear(e); /* the next failure is told as itself */
        return GO_ON;
    case RETRY_STOPPED:
        snprintf(msg, msglen,
                 "stopped on request while waiting to retry chunk %lld (%s); %s records read",
                 (long long)s->chunks + 1, e->message, ns__count(committed->read, nread));
        return STOP;
    case RETRY_NO:
        break;
    }
    return FAIL;
}

/* Runs one chunk step; returns its final status in *status. */
static ns_status run_step(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *msg,
                          size_t msglen)
{
    step_run s = {.rc = rc,
                  .def = def,
                  .t0 = ns__mono(),
                  .seed = (uint64_t)getpid() << 32 ^ (uint64_t)(ns__now() * 1e6)};
    ns_step_state state = {0};
    ns_error e = {0}, *err = &e;
    ns_arena arena;
    chunk c = {0};
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
    ns__run_report(&s, NS_EV_STEP_START, NS_BATCH_STARTED, NULL);
    if ((st = open_io(&s, &state, err)) != NS_OK)
        goto out;
    if (!(c.items = malloc((size_t)def->chunk * sizeof(*c.items))) ||
        !(c.bad = malloc((size_t)def->chunk * sizeof(*c.bad)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    size_t nnames;
    c.names = s.reader->vt->columns(s.reader, &nnames);
    bool single = s.writer->vt->single_transaction(s.writer);
    bool eof = s.done;
    while (!eof) {
        c.n = c.nbad = 0;
        c.before = s.counts;
        ns__arena_reset(&arena);
        if ((st = read_chunk(&s, &c, &arena, &eof, err)) == NS_OK &&
            (st = write_chunk(&s, &c, &arena, err)) == NS_OK &&
            (st = commit(&s, &c, single, eof, &committed, err)) == NS_OK) {
            if ((s.stop || ns__run_stop_requested(rc)) && !eof) {
                *status = NS_BATCH_STOPPED;
                char nread[32];
                snprintf(msg, msglen, "stopped on request after chunk %lld; %s records read",
                         (long long)s.chunks, ns__count(committed.read, nread));
                break;
            }
            continue;
        }
        after_failure next = on_failure(&s, &e, &committed, msg, msglen);
        if (next == FAIL)
            goto out;
        st = NS_OK;
        if (next == STOP) {
            *status = NS_BATCH_STOPPED;
            goto out;
        }
        eof = false; /* GO_ON: from the last committed chunk, on new connections */
        c.names = s.reader->vt->columns(s.reader, &nnames);
    }
    /* The last chunk committed: an at-least-once writer publishes its
     * output (a failure leaves it for the restart to publish). */
    if (eof && !s.done && at_least_once(&s)) {
        if ((st = s.writer->vt->finish(s.writer, err)) != NS_OK)
            goto out;
        /* Fault injection: die with the output published, the step not
         * yet recorded as completed. */
        NS_FAULT("NIGHTSHIFT_TEST_EXIT_AFTER_FINISH", 1, _exit(97));
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
        /* cut short on a stop request (opening, waiting on a lock): the
         * run stops; its next run does what is left */
        *status = e.code == NS_ESTOPPED ? NS_BATCH_STOPPED : NS_BATCH_FAILED;
        snprintf(msg, msglen, "%s", e.message);
    }
    if (*status != NS_BATCH_COMPLETED && s.writer) {
        /* Whatever was not committed is undone, and the counters say so:
         * they always describe what the target holds. */
        s.writer->vt->rollback(s.writer);
        if (s.store && s.store != s.writer)
            s.store->vt->rollback(s.store);
        committed.retry = s.counts.retry;
        if (memcmp(&s.counts, &committed, sizeof(committed)) != 0) {
            s.counts = committed;
            s.counts.rollback++;
        }
    }
    /* A run fenced off (another execution took the instance over, and cut
     * this one's rejects file back when it did) drops the rejects of the
     * chunk it could not commit: nobody else will. */
    if (st == NS_ECONFLICT && s.rejects && fflush(s.rejects) == 0)
        (void)ftruncate(fileno(s.rejects), (off_t)s.rejects_committed);
    if (s.rejects)
        fclose(s.rejects);
    if (started) {
        ns_error e2 = {0};
        if (ns__run_step_end(&s, *status, NULL, msg, msglen, &e2) != NS_OK &&
            *status != NS_BATCH_FAILED) {
            *status = NS_BATCH_FAILED;
            snprintf(msg, msglen, "%s", e2.message);
        }
        ns__run_report(&s, NS_EV_STEP_END, *status, msg[0] ? msg : NULL);
    }
    if (s.store != s.writer)
        ns__writer_free(s.store);
    ns__writer_free(s.writer);
    ns__proc_free(s.proc);
    json_decref(s.proc_state);
    ns__reader_free(s.reader);
    ns__arena_free(&arena);
    free(c.items);
    free(c.bad);
    free(s.rejects_path);
    free(s.rejects_shown);
    free(s.rejects_saved);
    free(s.context);
    free(s.ctx_committed);
    free(state.context);
    return st;
}

static void chunk_run(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *code,
                      size_t codelen, char *msg, size_t msglen)
{
    run_step(rc, def, status, msg, msglen);
    snprintf(code, codelen, "%s", ns_batch_status_name(*status));
}

static const ns_step_type chunk_type = {"chunk", NS_STEP_TYPE_VERSION, chunk_run};

/* The chunk step has no section of its own: reader:, processor:, writer:,
 * chunk:, skip: and rejects: are keys of the step. */
const ns_plugin ns__plugin_chunk = {NS_PLUGIN_STEP, "chunk",    NS_PLUGIN_VERSION, NULL, 0,
                                    NULL,           &chunk_type};
