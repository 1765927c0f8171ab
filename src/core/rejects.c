/*
 * rejects.c - a step's rejects file (docs/jobs.md, "Rejects file"): written
 * in file order, synced before the chunk commits, cut back to the
 * checkpoint on restart, never another execution's.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

ns_status ns__rejects_write(step_run *s, int64_t line, const char *column, const char *code,
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
        long at = ftell(s->rejects);
        if (at == 0) {
            ns__tag_writer(fileno(s->rejects), s->rc->repo->id, s->rc->launch.execution_id);
            fputs("line,column,code,message,record\n", s->rejects);
        }
        /* What the file held when this run opened it is committed (a
         * retry cuts back to no less). */
        if (at > s->rejects_committed)
            s->rejects_committed = s->rejects_offset = at;
    }
    snprintf(s->last_reject, sizeof(s->last_reject), "line %lld%s%s: %s: %.300s", (long long)line,
             column ? ", column " : "", column ? column : "", code, message);
    ns__run_rejected(s, line, column, code, message);
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

/* Flushes the rejects of a chunk to disk before the chunk commits, so that a
 * committed chunk never lacks its rejects. */
ns_status ns__rejects_sync(step_run *s, ns_error *err)
{
    if (!s->rejects)
        return NS_OK;
    if (fflush(s->rejects) != 0 || fdatasync(fileno(s->rejects)) != 0)
        return ns__err(err, NS_EIO, NULL, "rejects file %s: %s", s->rejects_shown, strerror(errno));
    long off = ftell(s->rejects);
    s->rejects_offset = off < 0 ? 0 : off;
    return NS_OK;
}

/* The rejects file this job writes for this step in execution `id`, in the
 * form checkpoints store it (see ns__run_absolute(): a relative path is taken from
 * the folder that execution was launched in, as the repository records it);
 * NULL when it cannot be said. */
static char *rejects_saved_for(step_run *s, int64_t id, bool *oom)
{
    char *real = NULL, *shown = NULL, *saved = NULL;
    ns_exec_info info = {0};
    ns_error e = {0};
    ns_status st = s->rc->repo->vt->exec_info(s->rc->repo, id, &info, &e);
    if (st == NS_OK && !info.workdir)
        st = NS_ENOMEM; /* every execution has one ("" when unknown) */
    if (st == NS_OK && info.workdir[0] &&
        (st = ns__run_subst_as(s, id, s->def->rejects, "rejects", &real, &shown, &e)) == NS_OK &&
        !(saved = real[0] == '/' ? ns__strdup(shown) : ns__asprintf("%s/%s", info.workdir, shown)))
        st = NS_ENOMEM;
    /* Unknown for want of memory or of a repository answer (an execution
     * it does not record is a real "unknown"). */
    if (oom)
        *oom = st != NS_OK && st != NS_ENOTFOUND;
    ns__exec_info_free(&info);
    free(real);
    free(shown);
    return saved;
}

/* The stored form of a path with its ${env.X} expanded; NULL on error. */
static char *expand_env(step_run *s, const char *saved)
{
    char *out = NULL;
    if (!saved || ns__run_expand(s->rc, saved, "rejects", &out, NULL) != NS_OK)
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
void ns__rejects_drop_predecessor(step_run *s, const char *checkpointed)
{
    if (!s->rc->launch.restart_of)
        return;
    char *saved = rejects_saved_for(s, s->rc->launch.restart_of, NULL);
    char *abs = expand_env(s, saved), *mine = expand_env(s, checkpointed);
    char repo[33], who[128];
    int64_t id;
    /* Out of memory, the checkpoint's file cannot be told apart from this
     * one: keep it (a file too many is evidence; one too few loses it). */
    if (checkpointed && !mine) {
        free(abs);
        abs = NULL;
    }
    /* Never another execution's: a file at the same path written by a run
     * the predecessor is not (another repository, a fixed name) is evidence. */
    if (abs && (!mine || strcmp(abs, mine) != 0) && ns__file_writer(abs, repo, &id) &&
        !(strcmp(repo, s->rc->repo->id) == 0 && id == s->rc->launch.restart_of)) {
        ns__run_writer_of(s->rc, abs, who, sizeof(who));
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
ns_status ns__rejects_cut(step_run *s, const ns_ckpt *ckpt, const char *repo_ctx, ns_error *err)
{
    const char *named = ckpt->rejects_path;
    int64_t off = ckpt->rejects_offset, author = ckpt->execution_id;
    ns_status st = NS_OK;
    if (!named)
        return NS_OK;
    bool oom;
    char *expected = rejects_saved_for(s, author, &oom), *path = NULL;
    ns_ckpt r = {0};
    /* Not knowing which file it is, for want of memory or of an answer
     * from the repository, is no answer: the step stops, nothing is cut. */
    if (oom) {
        free(expected);
        return ns__err(err, NS_ENOMEM, NULL,
                       "out of memory (or the repository did not answer) deciding on the "
                       "rejects file %s",
                       named);
    }
    ns_status dec = repo_ctx ? ns__ckpt_decode(repo_ctx, &r, err) : NS_EDB;
    if (dec == NS_ENOMEM) {
        free(expected);
        return dec;
    }
    if (dec != NS_OK && err)
        ns_error_clear(err);
    const char *recorded = dec == NS_OK ? r.rejects_path : NULL;
    if (!expected || strcmp(named, expected) != 0 || (recorded && strcmp(named, recorded) != 0)) {
        ns__run_notice(s->rc,
                       "step %s: the target's checkpoint names the rejects file %s, which is not "
                       "the file this job writes for execution %lld (%s); it is left alone",
                       s->def->name, named, (long long)author, expected ? expected : "unknown");
        goto out;
    }
    if (!(path = expand_env(s, named))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
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
    ns__ckpt_free(&r);
    free(expected);
    free(path);
    return st;
}
