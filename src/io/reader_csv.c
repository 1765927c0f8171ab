/* reader_csv.c - the `csv` reader: a CSV file with a header line (or
 * declared columns), positioned by byte offset and line for restarts. */
#include "io/io.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* reader: {csv: {path, header, delimiter, quote, columns}} */
typedef struct csv_cfg {
    char *path; /* template */
    bool header;
    char delimiter, quote;
    ns_names columns;
} csv_cfg;

static const ns_key csv_keys[] = {
    {.name = "path",
     .type = NS_KEY_TEMPLATE,
     .offset = offsetof(csv_cfg, path),
     .flags = NS_KEY_REQUIRED | NS_KEY_PATH},
    {.name = "header", .type = NS_KEY_BOOL, .offset = offsetof(csv_cfg, header), .def = "true"},
    {.name = "delimiter", .type = NS_KEY_CHAR, .offset = offsetof(csv_cfg, delimiter), .def = ","},
    {.name = "quote", .type = NS_KEY_CHAR, .offset = offsetof(csv_cfg, quote), .def = "\""},
    {.name = "columns", .type = NS_KEY_NAMES, .offset = offsetof(csv_cfg, columns)},
    {0}};

static ns_status csv_check(void *cfg, ns_key_ctx *ctx)
{
    csv_cfg *c = cfg;
    if (c->quote == c->delimiter)
        return ns__key_fail(ctx, ns__key_given(ctx, "quote") ? "quote" : "delimiter",
                            "quote and delimiter must differ");
    if (!c->header && !c->columns.v)
        return ns__key_fail(ctx, "columns", "is required when header: false");
    return NS_OK;
}

typedef struct csv_reader {
    ns_reader base;
    ns_csv *csv;
    char *path;
    char **names;
    size_t nnames;
} csv_reader;

static ns_status set_names(csv_reader *r, const ns_value *v, char *const *names, size_t n,
                           ns_error *err)
{
    if (!(r->names = calloc(n, sizeof(*r->names))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    r->nnames = n;
    for (size_t i = 0; i < n; i++) {
        const char *p = v ? v[i].ptr : names[i];
        size_t len = v ? v[i].len : strlen(names[i]);
        if (!p || !len)
            return ns__err(err, NS_ESCHEMA, NULL, "%s:1: header: column %zu has no name", r->path,
                           i + 1);
        if (!(r->names[i] = ns__strndup(p, len)))
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->names[j], r->names[i]) == 0)
                return ns__err(err, NS_ESCHEMA, NULL, "%s:1: header: column '%s' appears twice",
                               r->path, r->names[i]);
    }
    return NS_OK;
}

static ns_status csv_open(ns_reader *base, const void *cfg, const ns_io_env *env, ns_error *err)
{
    const csv_cfg *def = cfg;
    csv_reader *r = (csv_reader *)base;
    ns_csv_options opt = {.delimiter = def->delimiter, .quote = def->quote, .check_utf8 = true};
    char *path = NULL, *name = NULL;
    ns_status st;

    if ((st = env->subst(env->ctx, def->path, "reader.csv.path", true, &path, &name, err)) != NS_OK)
        return st;

#ifdef NS_TEST_HOOKS
    const char *tiny = getenv("NIGHTSHIFT_CSV_READ_SIZE"); /* tests: tiny reads */
    if (tiny && atol(tiny) > 0)
        opt.read_size = (size_t)atol(tiny);
#endif
    if (!(r->path = ns__strdup(name))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    if ((st = ns__csv_open_path(path, name, &opt, &r->csv, err)) != NS_OK)
        goto out;
    if (def->header) {
        const ns_csv_record *h = NULL;
        if ((st = ns__csv_next(r->csv, &h, err)) != NS_OK)
            goto out;
        if (!h) {
            st = ns__err(err, NS_ESCHEMA, NULL, "%s: the file is empty (no header line)", name);
            goto out;
        }
        if (h->error_code) {
            st = ns__err(err, NS_ESCHEMA, h->error_code, "%s:%lld: header: %s", name,
                         (long long)h->line, h->error_message);
            goto out;
        }
        if (def->columns.v && h->nfields != def->columns.n) {
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "%s:%lld: header has %zu fields but reader.csv.columns lists %zu", name,
                         (long long)h->line, h->nfields, def->columns.n);
            goto out;
        }
        if (!def->columns.v && (st = set_names(r, h->fields, NULL, h->nfields, err)) != NS_OK)
            goto out;
    }
    if (def->columns.v && (st = set_names(r, NULL, def->columns.v, def->columns.n, err)) != NS_OK)
        goto out;
    ns__csv_expect(r->csv, r->nnames);
out:
    free(path);
    free(name);
    return st;
}

static const char *const *csv_columns(ns_reader *base, size_t *n)
{
    csv_reader *r = (csv_reader *)base;
    *n = r->nnames;
    return (const char *const *)r->names;
}

static ns_status csv_seek(ns_reader *base, json_t *pos, ns_error *err)
{
    csv_reader *r = (csv_reader *)base;
    json_t *off = json_object_get(pos, "offset"), *line = json_object_get(pos, "line");
    if (!json_is_integer(off) || !json_is_integer(line))
        return ns__err(err, NS_EINVAL, NULL, "%s: saved position is not a CSV position", r->path);
    /* What the file was when the position was saved, for the message if
     * its prefix is not the same any more (the digest decides). */
    char was[200] = "", t0[32], t1[32];
    json_int_t size = json_integer_value(json_object_get(pos, "size"));
    json_int_t mtime = json_integer_value(json_object_get(pos, "mtime"));
    time_t m0 = (time_t)mtime, m1 = (time_t)ns__csv_mtime(r->csv);
    struct tm tm0, tm1;
    if (json_is_integer(json_object_get(pos, "size")) && gmtime_r(&m0, &tm0) &&
        gmtime_r(&m1, &tm1) && strftime(t0, sizeof(t0), "%Y-%m-%d %H:%M:%S UTC", &tm0) &&
        strftime(t1, sizeof(t1), "%Y-%m-%d %H:%M:%S UTC", &tm1))
        snprintf(was, sizeof(was),
                 "(it was %lld bytes, modified %s; it is %lld bytes, modified %s)", (long long)size,
                 t0, (long long)ns__csv_size(r->csv), t1);
    return ns__csv_seek(r->csv, json_integer_value(off), json_integer_value(line),
                        json_string_value(json_object_get(pos, "digest")), was[0] ? was : NULL,
                        err);
}

static ns_status csv_next(ns_reader *base, ns_record *out, bool *eof, ns_error *err)
{
    csv_reader *r = (csv_reader *)base;
    const ns_csv_record *c = NULL;
    ns_status st = ns__csv_next(r->csv, &c, err);

    if (st != NS_OK)
        return st;
    *eof = c == NULL;
    if (!c)
        return NS_OK;
    out->line = c->line;
    out->raw = c->raw;
    out->raw_len = c->raw_len;
    out->fields = c->fields;
    out->nfields = c->nfields;
    out->error_code = c->error_code;
    out->error_field = c->error_field < (int)r->nnames ? c->error_field : -1;
    out->error_message = c->error_message;
    return NS_OK;
}

static json_t *csv_position(ns_reader *base)
{
    csv_reader *r = (csv_reader *)base;
    char digest[17];
    /* The digest of everything before the position: a restart on a file
     * that changed before it is refused (see ns__csv_seek). */
    ns__csv_digest(r->csv, digest);
    return json_pack("{s:I, s:I, s:s, s:I, s:I}", "offset", (json_int_t)ns__csv_offset(r->csv),
                     "line", (json_int_t)ns__csv_line(r->csv), "digest", digest, "size",
                     (json_int_t)ns__csv_size(r->csv), "mtime", (json_int_t)ns__csv_mtime(r->csv));
}

static void csv_progress(ns_reader *base, int64_t *done, int64_t *total)
{
    csv_reader *r = (csv_reader *)base;
    *done = r->csv ? ns__csv_offset(r->csv) : -1;
    *total = r->csv ? ns__csv_size(r->csv) : -1;
}

static void csv_close(ns_reader *base)
{
    csv_reader *r = (csv_reader *)base;
    ns__csv_close(r->csv);
    for (size_t i = 0; i < r->nnames; i++)
        free(r->names[i]);
    free(r->names);
    free(r->path);
}

const ns_reader_vt ns__reader_csv = {
    .name = "csv",
    .version = NS_READER_VERSION,
    .instance_size = sizeof(csv_reader),
    .open = csv_open,
    .columns = csv_columns,
    .seek = csv_seek,
    .next = csv_next,
    .position = csv_position,
    .progress = csv_progress,
    .close = csv_close,
};

const ns_plugin ns__plugin_csv = {NS_PLUGIN_READER, "csv",     NS_PLUGIN_VERSION, csv_keys,
                                  sizeof(csv_cfg),  csv_check, &ns__reader_csv};
