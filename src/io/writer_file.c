/*
 * writer_file.c - the `file` writer: writer: {file: {path, format, header}}
 * writes the items as CSV or JSON Lines.
 *
 * A file cannot hold a checkpoint in a transaction, so this writer is
 * at-least-once (no NS_WRITER_TRANSACTIONAL) and the runner keeps the
 * checkpoint in the repository's database, with the state sync() returns:
 * the byte offset the output had when the chunk committed. A restart cuts
 * the output back to that offset, so every row is in the file exactly once.
 *
 * The output is written aside, to PATH.EXECUTION.part, and renamed to PATH
 * when the step ends: whoever watches for PATH never sees half an export.
 * A restart does not write into its predecessor's partial file but copies
 * the committed bytes of it into its own: a run presumed dead that wakes up
 * and writes a last chunk before its commit is refused (the fence) writes
 * into a file nobody will publish. The predecessors' partial files are
 * removed once the output is published (or when a restart starts over).
 */
#include "io/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum file_format { FORMAT_CSV, FORMAT_JSONL, FORMAT_AUTO } file_format;

typedef struct file_cfg {
    char *path; /* template */
    int format; /* file_format; FORMAT_AUTO: from the path once substituted */
    bool header;
    bool header_given;
} file_cfg;

/* In file_format's order. */
static const char *const formats[] = {"csv", "jsonl", NULL};

static const ns_key file_keys[] = {
    {.name = "path",
     .type = NS_KEY_TEMPLATE,
     .offset = offsetof(file_cfg, path),
     .flags = NS_KEY_REQUIRED | NS_KEY_PATH,
     .hint = "the file to write, e.g. \"out/${job.name}-${params.day}.csv\""},
    {.name = "format",
     .type = NS_KEY_ENUM,
     .offset = offsetof(file_cfg, format),
     .choices = formats},
    {.name = "header", .type = NS_KEY_BOOL, .offset = offsetof(file_cfg, header), .def = "true"},
    {0}};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static file_format format_of(const char *path)
{
    return ends_with(path, ".jsonl") || ends_with(path, ".ndjson") ? FORMAT_JSONL : FORMAT_CSV;
}

/* The format, when not given, from the path's extension (csv otherwise);
 * of a path with ${...} in it, from the path the run substitutes
 * (`path: "${params.out}"` with out=x.jsonl writes JSON Lines). */
static ns_status file_check(void *cfg, ns_key_ctx *ctx)
{
    file_cfg *c = cfg;
    c->header_given = ns__key_given(ctx, "header");
    if (!ns__key_given(ctx, "format"))
        c->format = (int)(strstr(c->path, "${") ? FORMAT_AUTO : format_of(c->path));
    if (c->format == FORMAT_JSONL && c->header_given)
        return ns__key_fail(ctx, "header", "only for format: csv (a JSON line names its fields)");
    return NS_OK;
}

typedef struct fw {
    ns_writer base;
    ns_io_env env; /* a copy: the step's services */
    const char *const *cols;
    size_t ncols;
    size_t names_room; /* the worst case of the field names on one line */
    file_format format;
    bool header;
    char *path, *path_shown; /* where the output is published */
    char *part, *part_shown; /* where this execution writes it */
    FILE *f;                 /* the part file (written through its descriptor) */
    ns_buf out;              /* rows not yet written to it */
    int64_t written;         /* bytes in the file, buffered ones not counted */
    int64_t synced;          /* bytes made durable by the last sync */
} fw;

#define FLUSH_AT (1u << 20)

static ns_status fail_io(fw *w, ns_error *err, const char *shown, const char *doing)
{
    return ns__err(err, NS_EIO, NULL, "writer.file %s: %s: %s", shown ? shown : w->path_shown,
                   doing, strerror(errno));
}

/* The directory of a path (malloc'd; NULL when out of memory). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? ns__asprintf("%.*s", (int)(slash == path ? 1 : slash - path), path)
                 : ns__strdup(".");
}

/* The directory of a path, synced so a new or renamed file survives a crash. */
static void sync_dir(const char *path)
{
    char *dir = dir_of(path);
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

static ns_status flush_out(fw *w, ns_error *err)
{
    const char *p = w->out.data;
    size_t n = w->out.len;
    while (n > 0) {
        ssize_t k = write(fileno(w->f), p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return fail_io(w, err, w->part_shown, "cannot write");
        p += k;
        n -= (size_t)k;
        w->written += k;
    }
    w->out.len = 0;
    return NS_OK;
}

/* ----------------------------------------------------------- formats */

static void csv_field(ns_buf *b, const char *p, size_t n, bool null)
{
    bool quote = !null && n == 0; /* "" is an empty string, nothing is NULL */
    for (size_t i = 0; i < n && !quote; i++)
        quote = p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r';
    if (!quote) {
        ns__buf_append(b, p, n);
        return;
    }
    ns__buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"')
            ns__buf_putc(b, '"');
        ns__buf_putc(b, p[i]);
    }
    ns__buf_putc(b, '"');
}

/* Room for the worst case first (every byte escaped as \u00XX), so that
 * the appends below cannot fail half-way through a line. */
static ns_status reserve_line(fw *w, const ns_item *it)
{
    size_t n = w->names_room;
    for (size_t i = 0; it && i < it->nfields; i++)
        n += 6 * it->fields[i].len + 8;
    return ns__buf_reserve(&w->out, n);
}

static void put_header(fw *w)
{
    for (size_t i = 0; i < w->ncols; i++) {
        if (i)
            ns__buf_putc(&w->out, ',');
        csv_field(&w->out, w->cols[i], strlen(w->cols[i]), false);
    }
    ns__buf_putc(&w->out, '\n');
}

static void put_row(fw *w, const ns_item *it)
{
    ns_buf *b = &w->out;
    if (w->format == FORMAT_CSV) {
        for (size_t i = 0; i < it->nfields; i++) {
            if (i)
                ns__buf_putc(b, ',');
            csv_field(b, it->fields[i].ptr, it->fields[i].len, !it->fields[i].ptr);
        }
    } else {
        ns__buf_putc(b, '{');
        for (size_t i = 0; i < it->nfields; i++) {
            if (i)
                ns__buf_putc(b, ',');
            const char *name = i < w->ncols ? w->cols[i] : "";
            ns__buf_json_string(b, name, strlen(name));
            ns__buf_putc(b, ':');
            if (it->fields[i].ptr)
                ns__buf_json_string(b, it->fields[i].ptr, it->fields[i].len);
            else
                ns__buf_append(b, "null", 4);
        }
        ns__buf_putc(b, '}');
    }
    ns__buf_putc(b, '\n');
}

/* A value the output cannot carry: text that is not UTF-8, or a NUL (what
 * PostgreSQL refuses too, with the same code). NULL when fine. */
static const char *bad_value(const ns_value *v, size_t *at)
{
    if (!v->ptr)
        return NULL;
    if (memchr(v->ptr, '\0', v->len)) {
        *at = (size_t)((const char *)memchr(v->ptr, '\0', v->len) - v->ptr);
        return "a NUL byte";
    }
    size_t ok = ns__utf8_valid_prefix((const unsigned char *)v->ptr, v->len);
    if (ok < v->len) {
        *at = ok;
        return "invalid UTF-8";
    }
    return NULL;
}

/* ---------------------------------------------------------- the writer */

static ns_status fw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *arena, ns_error *err)
{
    fw *w = (fw *)base;
    for (size_t i = 0; i < n; i++) {
        ns_item *it = &items[i];
        const char *why = NULL;
        size_t f = 0, at = 0;
        for (; f < it->nfields && !why; f++)
            why = bad_value(&it->fields[f], &at);
        if (why) {
            char msg[160];
            f--;
            snprintf(msg, sizeof(msg), "%s at byte %zu of the value; a %s file holds UTF-8 text",
                     why, at + 1, w->format == FORMAT_CSV ? "CSV" : "JSON Lines");
            it->code = "22021";
            it->column = f < w->ncols ? w->cols[f] : NULL;
            it->message = ns__arena_strndup(arena, msg, strlen(msg));
            if (!it->message)
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            continue;
        }
        if (it->nfields != w->ncols)
            return ns__err(err, NS_EINVAL, NULL,
                           "writer.file: line %lld has %zu fields, the output has %zu columns",
                           (long long)it->line, it->nfields, w->ncols);
        if (reserve_line(w, it) != NS_OK)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        put_row(w, it);
        if (w->out.len >= FLUSH_AT) {
            ns_status st = flush_out(w, err);
            if (st != NS_OK)
                return st;
        }
    }
    return NS_OK;
}

/* Opens this execution's part file, new and empty. */
static ns_status create_part(fw *w, ns_error *err)
{
    ns_status st;
    if ((st = w->env.output(w->env.ctx, w->part, w->part_shown, "writer.file", err)) != NS_OK)
        return st;
    if ((st = ns__mkdir_parents(w->part, err)) != NS_OK)
        return st;
    if (!(w->f = ns__fopen_out(w->part, false)))
        return fail_io(w, err, w->part_shown,
                       errno == ELOOP ? "a symbolic link is in the way" : "cannot create");
    w->env.tag(w->env.ctx, fileno(w->f));
    sync_dir(w->part);
    return NS_OK;
}

/* Copies the first n bytes of file `from` into the part file. */
static ns_status copy_prefix(fw *w, const char *from, const char *from_shown, int64_t n,
                             ns_error *err)
{
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    ns_status st = NS_OK;
    if (in < 0)
        return fail_io(w, err, from_shown, "cannot open");
    if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(in);
        return ns__err(err, NS_EIO, NULL, "writer.file %s: not a regular file", from_shown);
    }
    if (sb.st_size < n) {
        close(in);
        return ns__err(err, NS_EIO, NULL,
                       "writer.file %s: %lld bytes, fewer than the %lld the checkpoint says were "
                       "committed: it was changed outside nightshift; put it back, or restart "
                       "with --restart-from-beginning to write the output again",
                       from_shown, (long long)sb.st_size, (long long)n);
    }
    int out = fileno(w->f);
    off_t left = n;
    while (left > 0 && st == NS_OK) {
        ssize_t k = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            /* Across file systems, or a kernel without it: by hand. */
            char buf[65536];
            ssize_t r = read(in, buf, left < (off_t)sizeof(buf) ? (size_t)left : sizeof(buf));
            if (r <= 0) {
                st = fail_io(w, err, from_shown, "cannot read");
                break;
            }
            for (ssize_t done = 0; done < r;) {
                ssize_t x = write(out, buf + done, (size_t)(r - done));
                if (x < 0 && errno == EINTR)
                    continue;
                if (x < 0) {
                    st = fail_io(w, err, w->part_shown, "cannot write");
                    break;
                }
                done += x;
            }
            k = r;
        }
        left -= k;
    }
    close(in);
    if (st == NS_OK && fdatasync(out) != 0)
        st = fail_io(w, err, w->part_shown, "cannot sync");
    w->written = w->synced = n - left;
    return st;
}

/* The state's path `key` expanded; NULL with an error when it has none. */
static ns_status state_path(fw *w, json_t *state, const char *key, char **real, char **shown,
                            ns_error *err)
{
    const char *s = json_string_value(json_object_get(state, key));
    if (!s)
        return ns__err(err, NS_EDB, NULL,
                       "writer.file: the checkpoint names no %s file (it was not written by a "
                       "file writer)",
                       key);
    if (!(*shown = ns__strdup(s)))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    return w->env.expand(w->env.ctx, s, real, err);
}

/* Removes the partial files PATH.N.part that executions of this job
 * instance left (a restart told to start over does not continue them);
 * anyone else's stay. */
static void drop_stale_parts(fw *w)
{
    const char *slash = strrchr(w->path, '/');
    char *dir = dir_of(w->path);
    const char *base = slash ? slash + 1 : w->path;
    size_t blen = strlen(base);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *n = e->d_name, *p = n + blen + 1;
        if (strncmp(n, base, blen) != 0 || n[blen] != '.' || *p < '0' || *p > '9')
            continue;
        int64_t id = 0;
        while (*p >= '0' && *p <= '9' && id < INT64_MAX / 10)
            id = id * 10 + (*p++ - '0');
        if (strcmp(p, ".part") != 0)
            continue;
        char *full = ns__asprintf("%s/%s", dir, n), repo[33];
        int64_t tagged;
        /* Ours by its tag; or untagged (a run killed between creating it
         * and tagging it) and named for an execution of this instance. */
        if (full && strcmp(full, w->part) != 0 &&
            (w->env.ours(w->env.ctx, full) ||
             (!ns__file_writer(full, repo, &tagged) && w->env.ours_execution(w->env.ctx, id))))
            unlink(full);
        free(full);
    }
    if (d)
        closedir(d);
    free(dir);
}

static ns_status fw_resume(ns_writer *base, json_t *state, ns_error *err)
{
    fw *w = (fw *)base;
    ns_status st;
    if (!state) {
        /* A fresh start. The published file may be a predecessor's of this
         * instance (a restart from the beginning): replaced at the end.
         * Anyone else's is never touched. */
        if (!w->env.ours(w->env.ctx, w->path) &&
            (st = w->env.output(w->env.ctx, w->path, w->path_shown, "writer.file", err)) != NS_OK)
            return st;
        drop_stale_parts(w);
        if ((st = create_part(w, err)) != NS_OK)
            return st;
        if (w->format == FORMAT_CSV && w->header) {
            if (reserve_line(w, NULL) != NS_OK)
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            put_header(w);
        }
        return NS_OK;
    }
    /* A restart: the output continues in the file the checkpoint names (as
     * the rejects file does), from the predecessor's part file, or from
     * the published file when the predecessor died after renaming it. */
    char *old = NULL, *old_shown = NULL, *path = NULL, *path_shown = NULL;
    json_t *off = json_object_get(state, "offset");
    if (!json_is_integer(off) || json_integer_value(off) < 0) {
        st = ns__err(err, NS_EDB, NULL, "writer.file: the checkpoint has no byte offset");
        goto out;
    }
    int64_t n = json_integer_value(off);
    if ((st = state_path(w, state, "path", &path, &path_shown, err)) != NS_OK ||
        (st = state_path(w, state, "part", &old, &old_shown, err)) != NS_OK)
        goto out;
    free(w->path);
    free(w->path_shown);
    free(w->part);
    free(w->part_shown);
    w->path = path;
    w->path_shown = path_shown;
    path = path_shown = NULL;
    w->part = ns__asprintf("%s.%lld.part", w->path, (long long)w->env.execution_id);
    w->part_shown = ns__asprintf("%s.%lld.part", w->path_shown, (long long)w->env.execution_id);
    if (!w->part || !w->part_shown) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    struct stat sb;
    const char *from = old, *from_shown = old_shown;
    if (lstat(old, &sb) != 0) {
        if (lstat(w->path, &sb) != 0 || !w->env.ours(w->env.ctx, w->path)) {
            st = ns__err(err, NS_EIO, NULL,
                         "writer.file: %s (begun by an earlier execution) is gone, and so is %s; "
                         "the checkpoint says %lld bytes of it were committed: restart with "
                         "--restart-from-beginning to write the output again",
                         old_shown, w->path_shown, (long long)n);
            goto out;
        }
        from = w->path;
        from_shown = w->path_shown;
    }
    if ((st = create_part(w, err)) != NS_OK ||
        (st = copy_prefix(w, from, from_shown, n, err)) != NS_OK)
        goto out;
out:
    if (st != NS_OK && w->f) {
        /* Nothing of this execution's to keep. */
        fclose(w->f);
        w->f = NULL;
        unlink(w->part);
    }
    free(old);
    free(old_shown);
    free(path);
    free(path_shown);
    return st;
}

static ns_status fw_sync(ns_writer *base, json_t **state, ns_error *err)
{
    fw *w = (fw *)base;
    ns_status st = flush_out(w, err);
    if (st != NS_OK)
        return st;
    if (fdatasync(fileno(w->f)) != 0)
        return fail_io(w, err, w->part_shown, "cannot sync");
    w->synced = w->written;
    *state = json_pack("{s:s, s:s, s:I}", "path", w->path_shown, "part", w->part_shown, "offset",
                       (json_int_t)w->synced);
    return *state ? NS_OK : ns__err(err, NS_ENOMEM, NULL, "out of memory");
}

/* What was written since the last sync is dropped: the chunk did not commit. */
static void fw_rollback(ns_writer *base)
{
    fw *w = (fw *)base;
    w->out.len = 0;
    if (w->f && w->written != w->synced && ftruncate(fileno(w->f), w->synced) == 0)
        w->written = w->synced;
    if (w->f)
        lseek(fileno(w->f), w->written, SEEK_SET);
}

static ns_status fw_finish(ns_writer *base, ns_error *err)
{
    fw *w = (fw *)base;
    ns_status st;
    if (w->out.len || w->written != w->synced)
        return ns__err(err, NS_EINVAL, NULL, "writer.file %s: finished with rows not committed",
                       w->path_shown);
    /* Someone may have put a file at the path since the step began. */
    if (!w->env.ours(w->env.ctx, w->path) &&
        (st = w->env.output(w->env.ctx, w->path, w->path_shown, "writer.file", err)) != NS_OK)
        return st;
    if (fclose(w->f) != 0) {
        w->f = NULL;
        return fail_io(w, err, w->part_shown, "cannot close");
    }
    w->f = NULL;
    if (rename(w->part, w->path) != 0)
        return fail_io(w, err, w->path_shown, "cannot rename the partial file to it");
    sync_dir(w->path);
    /* The partial files of the executions this one continued. */
    drop_stale_parts(w);
    return NS_OK;
}

static bool fw_single(ns_writer *base)
{
    (void)base;
    return false;
}

static void fw_close(ns_writer *base)
{
    fw *w = (fw *)base;
    if (w->f)
        fclose(w->f); /* the part file stays for a restart */
    ns__buf_free(&w->out);
    free(w->path);
    free(w->path_shown);
    free(w->part);
    free(w->part_shown);
}

static const ns_writer_vt file_vt = {
    .name = "file",
    .version = NS_WRITER_VERSION,
    .caps = 0, /* at-least-once */
    .instance_size = sizeof(fw),
    .write = fw_write,
    .rollback = fw_rollback,
    .close = fw_close,
    .single_transaction = fw_single,
    .resume = fw_resume,
    .sync = fw_sync,
    .finish = fw_finish,
};

static ns_status file_create(const void *pcfg, const ns_writer_args *args, ns_writer **out,
                             ns_error *err)
{
    const file_cfg *c = pcfg;
    const ns_io_env *env = args->env;
    ns_writer *base = NULL;
    ns_status st = ns__writer_new(&file_vt, &base, err);
    if (st != NS_OK)
        return st;
    fw *w = (fw *)base;
    w->env = *env;
    w->cols = args->columns;
    w->ncols = args->ncolumns;
    /* Computed once: every JSON line repeats the names. */
    w->names_room = 8;
    for (size_t i = 0; i < w->ncols; i++)
        w->names_room += 6 * strlen(w->cols[i]) + 16;
    w->format = (file_format)c->format;
    w->header = c->header;
    if ((st = env->subst(env->ctx, c->path, "writer.file.path", true, &w->path, &w->path_shown,
                         err)) != NS_OK)
        goto out;
    if (c->format == FORMAT_AUTO) {
        w->format = format_of(w->path);
        if (w->format == FORMAT_JSONL && c->header_given) {
            st = ns__err(err, NS_ECONFIG, NULL,
                         "writer.file.header: only for format: csv (%s is JSON Lines, whose "
                         "lines name their fields)",
                         w->path_shown);
            goto out;
        }
    }
    /* Absolute, as the checkpoint keeps it: a restart from another folder
     * continues the same file. */
    char cwd[4096];
    if (w->path[0] != '/' && getcwd(cwd, sizeof(cwd))) {
        char *p = ns__asprintf("%s/%s", cwd, w->path),
             *ps = ns__asprintf("%s/%s", cwd, w->path_shown);
        free(w->path);
        free(w->path_shown);
        w->path = p;
        w->path_shown = ps;
        if (!p || !ps) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
    }
    w->part = ns__asprintf("%s.%lld.part", w->path, (long long)env->execution_id);
    w->part_shown = ns__asprintf("%s.%lld.part", w->path_shown, (long long)env->execution_id);
    if (!w->part || !w->part_shown)
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
out:
    if (st != NS_OK)
        ns__writer_free(base);
    else
        *out = base;
    return st;
}

static const ns_writer_factory file_factory = {file_create};

const ns_plugin ns__plugin_file = {NS_PLUGIN_WRITER, "file",     NS_PLUGIN_VERSION, file_keys,
                                   sizeof(file_cfg), file_check, &file_factory};
