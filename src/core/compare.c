/*
 * compare.c - the compare: step (shadowing): two queries, possibly on two
 * databases, walked side by side in key order; every difference written to
 * a CSV file or a table.
 */
#include "core/core.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The compare: section. */
typedef struct cmp_query {
    char *connection;
    char *query;
} cmp_query;

typedef struct cmp_table {
    char *connection;
    char *name;
} cmp_table;

typedef struct cmp_output {
    char *path;       /* a CSV file (template), or */
    cmp_table *table; /* a table on a connection */
} cmp_output;

typedef struct compare_cfg {
    cmp_query *side[2]; /* left, right */
    ns_names key;
    ns_names columns; /* none: the left query's columns that are not the key */
    cmp_output *output;
} compare_cfg;

/* One side of a compare: its rows in key order, pulled one at a time. */
typedef struct cmp_side {
    const char *name; /* "left", "right" */
    ns_writer *w;
    ns_cursor *c;
    const char *const *row;
    bool eof;
    size_t *key, *col; /* where each key column and each compared column is */
    char **prev;       /* the previous row's key, to check order and uniqueness */
    bool have_prev;
    int64_t rows;
} cmp_side;

/* Keys compare as text, byte by byte, NULL first: the order both cursors
 * deliver (ns_writer_vt.cursor). */
static int key_cmp(const char *a, const char *b)
{
    if (!a || !b)
        return a ? 1 : b ? -1 : 0;
    int c = strcmp(a, b);
    return (c > 0) - (c < 0);
}

static int row_cmp(const cmp_side *l, const cmp_side *r, size_t nkey)
{
    for (size_t k = 0; k < nkey; k++) {
        int c = key_cmp(l->row[l->key[k]], r->row[r->key[k]]);
        if (c)
            return c;
    }
    return 0;
}

/* Values are equal when their text is, or when both are numbers of equal
 * value (10.50 and 10.5), or both truth values alike (t and true, f and 0). */
static bool same_value(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    if (strcmp(a, b) == 0)
        return true;
    char *ea, *eb;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    if (*a && *b && !*ea && !*eb && ea != a && eb != b)
        return x == y;
    static const char *const t[] = {"t", "true", "1", "yes"}, *const f[] = {"f", "false", "0",
                                                                            "no"};
    int ta = -1, tb = -1;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(a, t[i]) == 0)
            ta = 1;
        if (strcasecmp(a, f[i]) == 0)
            ta = 0;
        if (strcasecmp(b, t[i]) == 0)
            tb = 1;
        if (strcasecmp(b, f[i]) == 0)
            tb = 0;
    }
    return ta >= 0 && ta == tb;
}

/* The next row of a side, checking that keys rise strictly. */
static ns_status cmp_advance(cmp_side *s, size_t nkey, ns_error *err)
{
    ns_status st;
    if (s->row && !s->eof) {
        for (size_t k = 0; k < nkey; k++) {
            free(s->prev[k]);
            const char *v = s->row[s->key[k]];
            s->prev[k] = v ? ns__strdup(v) : NULL;
            if (v && !s->prev[k])
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        }
        s->have_prev = true;
    }
    if ((st = s->c->next(s->c, &s->row, &s->eof, err)) != NS_OK || s->eof)
        return st;
    s->rows++;
    int c = 0;
    for (size_t k = 0; k < nkey && s->have_prev && !c; k++)
        c = key_cmp(s->row[s->key[k]], s->prev[k]);
    if (s->have_prev && c <= 0) {
        ns_buf kb = {0};
        for (size_t k = 0; k < nkey; k++)
            ns__buf_printf(&kb, "%s%s", k ? ", " : "",
                           s->row[s->key[k]] ? s->row[s->key[k]] : "NULL");
        st = ns__err(err, NS_EINVAL, NULL,
                     c == 0 ? "%s query: key (%s) appears on two rows; compare.key must be unique"
                            : "%s query: rows not in key order at key (%s)",
                     s->name, ns__buf_cstr(&kb));
        ns__buf_free(&kb);
    }
    return st;
}

/* Where the differences go: a CSV file, or rows of a table. */
typedef struct cmp_out {
    FILE *f;
    char *path, *tmp; /* the CSV is written aside and renamed when complete */
    ns_writer *w;     /* or the table's connection */
    char *insert;     /* INSERT ... VALUES (:c0, :c1, ...) */
    size_t nvals;
    const char **names, **vals; /* c0, c1, ... and a row's values */
    char id[24];
} cmp_out;

static ns_status cmp_emit(cmp_out *o, const char *const *vals, ns_error *err)
{
    if (o->f) {
        for (size_t i = 0; i < o->nvals; i++) {
            if (i)
                fputc(',', o->f);
            if (vals[i])
                ns__csv_field(o->f, vals[i], strlen(vals[i]));
        }
        fputc('\n', o->f);
        return ferror(o->f) ? ns__err(err, NS_EIO, NULL, "%s: %s", o->path, strerror(errno))
                            : NS_OK;
    }
    ns_sql_args a = {o->names, vals, NULL, o->nvals};
    int64_t n = 0;
    return o->w->vt->sql->exec(o->w, o->insert, strlen(o->insert), 1, &a, &n, err);
}

/*
 * A compare step: both queries streamed in key order and merged, every row
 * found on one side only or differing in a compared column written out.
 * Memory does not depend on the number of rows.
 */
static ns_status compare(step_run *s, const ns_sql_args *args, cmp_out *o, int64_t *diffs,
                         char *msg, size_t msglen, ns_error *err)
{
    const compare_cfg *d = s->def->type_cfg;
    cmp_side side[2] = {{.name = "left"}, {.name = "right"}};
    ns_status st = NS_OK;
    size_t ncols = d->columns.n, nkey = d->key.n;
    const char *const *cols = (const char *const *)d->columns.v;
    const char **colbuf = NULL, **vals = NULL;
    ns_buf which = {0}, lv = {0}, rv = {0};
    int64_t only[2] = {0, 0}, changed = 0;

    for (int i = 0; i < 2 && st == NS_OK; i++) {
        step_run tmp = *s;
        /* Each side streams on a connection of its own: two cursors cannot
         * share one PostgreSQL connection, nor the repository's. */
        tmp.writer = NULL;
        if ((st = ns__run_open_writer(&tmp, d->side[i]->connection, true, err)) != NS_OK)
            break;
        side[i].w = tmp.writer;
        if (!side[i].w->vt->sql) {
            st = ns__err(err, NS_EUNSUPPORTED, NULL, "compare.%s: its connection cannot query",
                         side[i].name);
            break;
        }
        st = side[i].w->vt->sql->cursor(side[i].w, d->side[i]->query, args,
                                        (const char *const *)d->key.v, nkey, &side[i].c, err);
        if (st != NS_OK)
            ns__err_prefix(err, "compare.%s", side[i].name);
    }
    if (st != NS_OK)
        goto out;
    /* The compared columns: as listed, else the left's that are not keys. */
    if (!cols) {
        if (!(colbuf = calloc(side[0].c->ncols + 1, sizeof(*colbuf)))) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < side[0].c->ncols; i++) {
            bool key = false;
            for (size_t k = 0; k < nkey; k++)
                key |= strcmp(side[0].c->names[i], d->key.v[k]) == 0;
            if (!key)
                colbuf[ncols++] = side[0].c->names[i];
        }
        cols = colbuf;
    }
    for (int i = 0; i < 2 && st == NS_OK; i++) {
        cmp_side *sd = &side[i];
        sd->key = calloc(nkey + 1, sizeof(size_t));
        sd->col = calloc(ncols + 1, sizeof(size_t));
        sd->prev = calloc(nkey + 1, sizeof(char *));
        if (!sd->key || !sd->col || !sd->prev) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            break;
        }
        for (size_t j = 0; j < nkey + ncols && st == NS_OK; j++) {
            const char *want = j < nkey ? d->key.v[j] : cols[j - nkey];
            size_t at = 0;
            while (at < sd->c->ncols && strcmp(sd->c->names[at], want) != 0)
                at++;
            if (at == sd->c->ncols) {
                ns_buf have = {0};
                for (size_t k = 0; k < sd->c->ncols; k++)
                    ns__buf_printf(&have, "%s%s", k ? ", " : "", sd->c->names[k]);
                st = ns__err(err, NS_ESCHEMA, NULL,
                             "compare.%s: the query has no column '%s' (its columns: %s)", sd->name,
                             want, ns__buf_cstr(&have));
                ns__buf_free(&have);
            } else if (j < nkey) {
                sd->key[j] = at;
            } else {
                sd->col[j - nkey] = at;
            }
        }
    }
    if (st != NS_OK)
        goto out;

    /* The output's columns: kind, the key, columns, left_values, right_values. */
    o->nvals = nkey + 4 + (o->w ? 1 : 0);
    if (!(vals = calloc(o->nvals + 1, sizeof(*vals)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (o->f) {
        fputs("kind", o->f);
        for (size_t k = 0; k < nkey; k++) {
            fputc(',', o->f);
            ns__csv_field(o->f, d->key.v[k], strlen(d->key.v[k]));
        }
        fputs(",columns,left_values,right_values\n", o->f);
    }

    for (int i = 0; i < 2 && st == NS_OK; i++)
        st = cmp_advance(&side[i], nkey, err);
    while (st == NS_OK && (!side[0].eof || !side[1].eof)) {
        int c = side[0].eof ? 1 : side[1].eof ? -1 : row_cmp(&side[0], &side[1], nkey);
        which.len = lv.len = rv.len = 0;
        const cmp_side *one = c < 0 ? &side[0] : &side[1];
        if (c != 0) {
            /* A row on one side only: all its compared values. */
            ns_buf *b = c < 0 ? &lv : &rv;
            for (size_t j = 0; j < ncols; j++) {
                const char *v = one->row[one->col[j]];
                ns__buf_printf(b, "%s%s=%s", j ? "; " : "", cols[j], v ? v : "NULL");
            }
            only[c < 0 ? 0 : 1]++;
        } else {
            for (size_t j = 0; j < ncols; j++) {
                const char *a = side[0].row[side[0].col[j]], *b = side[1].row[side[1].col[j]];
                if (same_value(a, b))
                    continue;
                ns__buf_printf(&which, "%s%s", which.len ? " " : "", cols[j]);
                ns__buf_printf(&lv, "%s%s=%s", lv.len ? "; " : "", cols[j], a ? a : "NULL");
                ns__buf_printf(&rv, "%s%s=%s", rv.len ? "; " : "", cols[j], b ? b : "NULL");
            }
        }
        if (c != 0 || which.len) {
            size_t at = 0;
            if (o->w)
                vals[at++] = o->id;
            vals[at++] = c < 0 ? "only_left" : c > 0 ? "only_right" : "different";
            for (size_t k = 0; k < nkey; k++)
                vals[at++] = one->row[one->key[k]];
            vals[at++] = ns__buf_cstr(&which);
            vals[at++] = ns__buf_cstr(&lv);
            vals[at++] = ns__buf_cstr(&rv);
            changed += c == 0;
            (*diffs)++;
            if ((st = cmp_emit(o, vals, err)) != NS_OK)
                break;
        }
        if (c <= 0 && (st = cmp_advance(&side[0], nkey, err)) != NS_OK)
            break;
        if (c >= 0)
            st = cmp_advance(&side[1], nkey, err);
    }
    s->counts.read = side[0].rows + side[1].rows;
    s->counts.write = *diffs;
    if (st == NS_OK)
        snprintf(msg, msglen,
                 "%lld difference%s (%lld only left, %lld only right, %lld different) in %lld "
                 "left and %lld right rows",
                 (long long)*diffs, *diffs == 1 ? "" : "s", (long long)only[0], (long long)only[1],
                 (long long)changed, (long long)side[0].rows, (long long)side[1].rows);
out:
    for (int i = 0; i < 2; i++) {
        if (side[i].c)
            side[i].c->close(side[i].c);
        ns__writer_free(side[i].w);
        for (size_t k = 0; side[i].prev && k < nkey; k++)
            free(side[i].prev[k]);
        free(side[i].prev);
        free(side[i].key);
        free(side[i].col);
    }
    free(colbuf);
    free(vals);
    ns__buf_free(&which);
    ns__buf_free(&lv);
    ns__buf_free(&rv);
    return st;
}

static void compare_step(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *code,
                         size_t codelen, char *msg, size_t msglen)
{
    step_run s = {.rc = rc, .def = def, .t0 = ns__mono()};
    ns_step_state state = {0};
    ns_error e = {0}, *err = &e;
    ns_status st;
    bool started = false;
    cmp_out o = {0};
    char *shown = NULL, *ctx = NULL;
    int64_t diffs = 0;
    ns_sql_args args = ns__step_sql_args(rc);
    ns_buf ddl = {0};
    const compare_cfg *cfg = def->type_cfg;

    *status = NS_BATCH_FAILED;
    snprintf(code, codelen, "FAILED");
    if ((st = ns__step_start(&s, &state, &started, err)) != NS_OK)
        goto out;
    ns_ckpt_key key = {
        rc->job->name, rc->launch.job_key, def->name, "", rc->launch.execution_id, s.se.id, false};
    if (cfg->output->path) {
        if ((st = ns__run_subst(&s, cfg->output->path, "compare.output", &o.path, &shown, err)) !=
                NS_OK ||
            (st = ns__run_resolve(rc, &o.path, 0, err)) != NS_OK)
            goto out;
        if (!(o.tmp = ns__asprintf("%s.tmp", o.path))) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
        /* Renamed over the path when complete: not over another's file. */
        if ((st = ns__run_check_output(&s, o.path, shown, "compare.output", err)) != NS_OK)
            goto out;
        if (ns__mkdir_parents(o.path, NULL) != NS_OK || !(o.f = ns__fopen_out(o.tmp, false))) {
            st = ns__err(err, NS_EIO, NULL, "compare.output %s: %s", shown,
                         errno == ELOOP ? "a symbolic link is in the way of its temporary file"
                                        : strerror(errno));
            goto out;
        }
        ns__tag_writer(fileno(o.f), rc->repo->id, rc->launch.execution_id);
    } else {
        /* Differences as rows of a table, in one transaction with the step's
         * checkpoint: a restart after the commit does not write them twice. */
        if ((st = ns__run_open_writer(&s, cfg->output->table->connection, false, err)) != NS_OK)
            goto out;
        o.w = s.writer;
        bool foreign;
        if ((st = ns__run_claim(&s, o.w, &key, &ctx, &foreign, err)) != NS_OK)
            goto out;
        if (ctx) {
            if ((st = ns__step_counts_done(&s, ctx, err)) != NS_OK)
                goto out;
            diffs = s.counts.write;
            goto done;
        }
        snprintf(o.id, sizeof(o.id), "%lld", (long long)rc->launch.execution_id);
        ns__buf_printf(&ddl,
                       "CREATE TABLE IF NOT EXISTS %s (execution_id bigint NOT NULL,"
                       " kind text NOT NULL",
                       cfg->output->table->name);
        for (size_t k = 0; k < cfg->key.n; k++) {
            ns__buf_printf(&ddl, ", ");
            ns__buf_quoted(&ddl, cfg->key.v[k], o.w->driver->quote);
            ns__buf_printf(&ddl, " text");
        }
        ns__buf_printf(&ddl, ", columns text, left_values text, right_values text)");
        int64_t n = 0;
        ns_sql_args none = {0};
        if ((st = o.w->vt->sql->exec(o.w, ns__buf_cstr(&ddl), ddl.len, 1, &none, &n, err)) != NS_OK)
            goto out;
        size_t nv = cfg->key.n + 5;
        o.names = calloc(nv + 1, sizeof(*o.names));
        if (!o.names) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
        ddl.len = 0;
        ns__buf_printf(&ddl, "INSERT INTO %s (execution_id, kind", cfg->output->table->name);
        for (size_t k = 0; k < cfg->key.n; k++) {
            ns__buf_printf(&ddl, ", ");
            ns__buf_quoted(&ddl, cfg->key.v[k], o.w->driver->quote);
        }
        ns__buf_printf(&ddl, ", columns, left_values, right_values) VALUES (");
        for (size_t i = 0; i < nv; i++) {
            if (!(o.names[i] = ns__asprintf("c%zu", i))) {
                st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                goto out;
            }
            ns__buf_printf(&ddl, "%s:c%zu", i ? ", " : "", i);
        }
        ns__buf_printf(&ddl, ")");
        if (ddl.failed || !(o.insert = ns__strdup(ns__buf_cstr(&ddl)))) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
    }
    if ((st = compare(&s, &args, &o, &diffs, msg, msglen, err)) != NS_OK)
        goto out;
    if (o.f) {
        bool bad = fflush(o.f) != 0 || fsync(fileno(o.f)) != 0;
        bad |= fclose(o.f) != 0;
        o.f = NULL;
        if (bad || rename(o.tmp, o.path) != 0) {
            st = ns__err(err, NS_EIO, NULL, "compare.output %s: %s", shown, strerror(errno));
            goto out;
        }
        if (diffs)
            snprintf(msg + strlen(msg), msglen - strlen(msg), " (see %s)", shown);
        if ((st = ns__run_commit_hook(&s, err)) != NS_OK)
            goto out;
    } else {
        if ((st = ns__step_commit_done(&s, o.w, &key, diffs, err)) != NS_OK)
            goto out;
    }
done:
    *status = NS_BATCH_COMPLETED;
    snprintf(code, codelen, "%s", diffs ? "COMPLETED_WITH_DIFFERENCES" : "COMPLETED");
out:
    ns__step_end(&s, st, &e, started, status, code, codelen, msg, msglen);
    if (o.f) {
        fclose(o.f);
        remove(o.tmp);
    }
    ns__writer_free(s.writer);
    for (size_t i = 0; o.names && o.names[i]; i++)
        free((char *)o.names[i]);
    free(o.names);
    free(o.insert);
    free(o.path);
    free(o.tmp);
    free(shown);
    free(ctx);
    free(s.context);
    free(state.context);
    ns__buf_free(&ddl);
}

static const ns_step_type compare_type = {"compare", NS_STEP_TYPE_VERSION, compare_step};

/*
 * compare: {left: {connection, query}, right: {connection, query}, key: [..],
 * columns: [..], output: PATH | {table: {connection, name}}}
 */
#define CK(s, n, t, f, flags, hint)                                                                \
    {                                                                                              \
        n, t, offsetof(s, f), flags, NULL, 0, 0, NULL, NULL, 0, hint                               \
    }
#define CK_SECTION(s, n, f, flags, sub, hint)                                                      \
    {                                                                                              \
        n, NS_KEY_SECTION, offsetof(s, f), flags, NULL, 0, 0, NULL, sub, sizeof(*((s *)0)->f),     \
            hint                                                                                   \
    }

static const ns_key query_keys[] = {
    CK(cmp_query, "connection", NS_KEY_CONNECTION, connection, NS_KEY_REQUIRED, NULL),
    CK(cmp_query, "query", NS_KEY_QUERY, query, NS_KEY_REQUIRED, "SELECT ..."),
    {0}};
static const ns_key table_keys[] = {
    CK(cmp_table, "connection", NS_KEY_CONNECTION, connection, NS_KEY_REQUIRED, NULL),
    CK(cmp_table, "name", NS_KEY_IDENT, name, NS_KEY_REQUIRED, "the table"),
    {0}};
static const ns_key output_keys[] = {
    CK(cmp_output, "path", NS_KEY_TEMPLATE, path, NS_KEY_PATH, NULL),
    CK_SECTION(cmp_output, "table", table, 0, table_keys, NULL),
    {0}};
static const ns_key compare_keys[] = {
    CK_SECTION(compare_cfg, "left", side[0], NS_KEY_REQUIRED, query_keys,
               "{connection: ..., query: \"SELECT ...\"}"),
    CK_SECTION(compare_cfg, "right", side[1], NS_KEY_REQUIRED, query_keys,
               "{connection: ..., query: \"SELECT ...\"}"),
    {"key", NS_KEY_NAMES, offsetof(compare_cfg, key), NS_KEY_REQUIRED, NULL, 0, 0, NULL, NULL, 0,
     "the columns that match a left row to a right row"},
    {"columns", NS_KEY_NAMES, offsetof(compare_cfg, columns), 0, NULL, 0, 0, NULL, NULL, 0, NULL},
    CK_SECTION(compare_cfg, "output", output, NS_KEY_OR_STRING, output_keys, NULL),
    {0}};

/* One output, a CSV file by default. */
static ns_status compare_check(void *p, ns_key_ctx *ctx)
{
    compare_cfg *c = p;
    if (c->output && c->output->path && c->output->table)
        return ns__key_fail(ctx, "output",
                            "must be a CSV path or {table: {connection: ..., "
                            "name: ...}}, not both");
    if (!c->output && !(c->output = calloc(1, sizeof(*c->output))))
        return ns__key_fail(ctx, "output", "out of memory");
    if (!c->output->path && !c->output->table &&
        !(c->output->path = ns__strdup("diffs/${job.name}-${execution.id}-${step.name}.csv")))
        return ns__key_fail(ctx, "output", "out of memory");
    return NS_OK;
}

const ns_plugin ns__plugin_compare = {NS_PLUGIN_STEP, "compare",           NS_PLUGIN_VERSION,
                                      compare_keys,   sizeof(compare_cfg), compare_check,
                                      &compare_type};
