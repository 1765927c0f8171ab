/*
 * sqlstep.c - the sql:, assert: and rebuild: steps. They open their
 * connection like chunk steps (ns__run_open_writer: the table writers double
 * as "a database connection with a transaction and a checkpoint row"), so
 * they share the repository's transaction when the target is its database
 * and are restart-safe the same way.
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

/* The section of an sql:, assert: or rebuild: step. */
typedef struct db_cfg {
    char *connection;
    char *table; /* rebuild */
    char *text;  /* sql: the script; assert:, rebuild: the query */
} db_cfg;

typedef enum db_kind { DB_SQL, DB_ASSERT, DB_REBUILD } db_kind;

/* What an assertion collects: every row counted, the first ones kept. */
#define ASSERT_SAMPLES 10

typedef struct assert_rows {
    int64_t n;
    ns_buf sample;
} assert_rows;

static bool assert_row(void *arg, size_t ncols, const char *const *names, const char *const *values)
{
    assert_rows *a = arg;
    if (!values)
        return true;
    if (a->n++ < ASSERT_SAMPLES) {
        ns__buf_printf(&a->sample, "%s(", a->n > 1 ? ", " : "");
        for (size_t i = 0; i < ncols; i++)
            ns__buf_printf(&a->sample, "%s%s=%s", i ? ", " : "", names[i],
                           values[i] ? values[i] : "NULL");
        ns__buf_printf(&a->sample, ")");
    }
    return true;
}

/* Runs a script statement by statement in the writer's transaction. */
typedef struct script_run {
    ns_writer *w;
    const ns_sql_args *args;
    int64_t *changed;
    size_t no;
    ns_error *err;
    ns_status st;
} script_run;

static bool run_statement(void *arg, const char *stmt, size_t len)
{
    script_run *r = arg;
    r->st = r->w->vt->sql->exec(r->w, stmt, len, ++r->no, r->args, r->changed, r->err);
    return r->st == NS_OK;
}

static ns_status exec_script(ns_writer *w, const char *script, const ns_sql_args *args,
                             int64_t *changed, ns_error *err)
{
    script_run r = {w, args, changed, 0, err, NS_OK};
    ns__sql_split(script, run_statement, &r);
    return r.st;
}

/* The column names of a query's result. */
typedef struct col_names {
    ns_buf list; /* "a, b, c" quoted */
    char quote;  /* as the connection's SQL quotes a name */
} col_names;

static bool collect_names(void *arg, size_t ncols, const char *const *names,
                          const char *const *values)
{
    col_names *c = arg;
    (void)values;
    for (size_t i = 0; i < ncols; i++) {
        if (i)
            ns__buf_printf(&c->list, ", ");
        ns__buf_quoted(&c->list, names[i], c->quote);
    }
    return false; /* the names are all it needs */
}

/*
 * Runs an sql:, assert: or rebuild: step. sql and rebuild run in one
 * transaction that also holds the step's checkpoint row (and, when the
 * target is the repository's database, the step's record), so a restart
 * after a crash never applies them twice. An assertion only reads.
 */
/*
 * After a failed try of a sql, assert or rebuild step: whether the step's
 * retry policy tries it again (the transaction was undone: the writer is
 * closed, and after the wait the step starts over on a new connection,
 * finding its own commit if the one in doubt went through). On a stop
 * during the wait, *e says so (NS_ESTOPPED) and false is returned.
 */
static bool retry_db(step_run *s, ns_error *e, int64_t *attempt)
{
    const ns_retry *r = &s->def->retry;
    char what[160];
    if (*attempt > 0) /* retried before: it had been connected */
        ns__retry_reconnecting(e);
    if (!ns__retry_wanted(r, e, what, sizeof(what)))
        return false;
    if (*attempt >= r->limit) {
        size_t len = strlen(e->message);
        if (*attempt > 0)
            snprintf(e->message + len, sizeof(e->message) - len,
                     " (%s; gave up after %lld %s, retry.limit)", what, (long long)*attempt,
                     *attempt == 1 ? "retry" : "retries");
        return false;
    }
    (*attempt)++;
    double wait = ns__retry_delay(r, *attempt, &s->seed);
    ns__run_notice(s->rc, "step %s failed (%s), retry %lld of %lld in %.1f s: %s", s->def->name,
                   what, (long long)*attempt, (long long)r->limit, wait, e->message);
    s->counts.retry++;
    ns__writer_free(s->writer);
    s->writer = NULL;
    if (ns__step_wait(s, wait)) {
        ns__err_recode(e, NS_ESTOPPED);
        ns__err_prefix(e, "stopped on request while waiting to retry");
        return false;
    }
    ns_error_clear(e);
    return true;
}

static void db_step(run_ctx *rc, const ns_step_def *def, db_kind kind, ns_batch_status *status,
                    char *code, size_t codelen, char *msg, size_t msglen)
{
    const db_cfg *cfg = def->type_cfg;
    step_run s = {.rc = rc,
                  .def = def,
                  .t0 = ns__mono(),
                  .seed = (uint64_t)getpid() << 32 ^ (uint64_t)(ns__now() * 1e6)};
    int64_t attempt = 0;
    bool tried = false;
    ns_step_state state = {0};
    ns_error e = {0}, *err = &e;
    ns_status st;
    bool started = false;
    char *ctx = NULL;
    assert_rows ar = {0};
    col_names cn = {0};
    ns_buf sql = {0};
    ns_sql_args args = ns__step_sql_args(rc);

    *status = NS_BATCH_FAILED;
    snprintf(code, codelen, "FAILED");
    if ((st = ns__step_start(&s, &state, &started, err)) != NS_OK)
        goto out;
again:
    tried = true;
    if ((st = ns__run_open_writer(&s, cfg->connection, false, err)) != NS_OK)
        goto out;
    if (!s.writer->vt->sql) {
        st = ns__err(err, NS_EUNSUPPORTED, NULL, "step %s: its connection cannot run SQL",
                     def->name);
        goto out;
    }

    if (kind == DB_ASSERT) {
        if ((st = s.writer->vt->sql->query(s.writer, cfg->text, &args, assert_row, &ar, err)) !=
            NS_OK)
            goto out;
        s.counts.read = ar.n;
        if (ar.n == 0) {
            *status = NS_BATCH_COMPLETED;
            snprintf(code, codelen, "COMPLETED");
        } else {
            snprintf(code, codelen, "ASSERT_FAILED");
            snprintf(msg, msglen, "assertion failed: %lld row%s, e.g. %s%s", (long long)ar.n,
                     ar.n == 1 ? "" : "s", ns__buf_cstr(&ar.sample),
                     ar.n > ASSERT_SAMPLES ? ", ..." : "");
        }
        goto out;
    }

    /* sql, rebuild: done already, says the target's checkpoint? */
    ns_ckpt_key key = {
        rc->job->name, rc->launch.job_key, def->name, "", rc->launch.execution_id, s.se.id, false};
    bool foreign;
    if ((st = ns__run_claim(&s, s.writer, &key, &ctx, &foreign, err)) != NS_OK)
        goto out;
    if (ctx) {
        if ((st = ns__step_counts_done(&s, ctx, err)) != NS_OK)
            goto out;
        *status = NS_BATCH_COMPLETED;
        snprintf(code, codelen, "COMPLETED");
        goto out;
    }
    int64_t changed = 0;
    if (kind == DB_SQL) {
        st = exec_script(s.writer, cfg->text, &args, &changed, err);
    } else {
        /* Rebuild: the table's rows replaced by the query's in one
         * transaction, so readers see the old rows until the new ones are
         * all there; the table itself (indexes, grants, views on it, keys)
         * stays. Columns by the query's names; the others take defaults. */
        ns_buf q = {0};
        cn.quote = s.writer->driver ? s.writer->driver->quote : '"';
        ns__buf_printf(&q, "SELECT * FROM (%s) AS ns_q WHERE 1 = 0", cfg->text);
        st = s.writer->vt->sql->query(s.writer, ns__buf_cstr(&q), &args, collect_names, &cn, err);
        ns__buf_free(&q);
        if (st == NS_OK) {
            int64_t deleted = 0;
            ns__buf_printf(&sql, "DELETE FROM %s", cfg->table);
            st = exec_script(s.writer, ns__buf_cstr(&sql), &args, &deleted, err);
        }
        if (st == NS_OK) {
            sql.len = 0;
            ns__buf_printf(&sql, "INSERT INTO %s (%s) SELECT * FROM (%s) AS ns_q", cfg->table,
                           ns__buf_cstr(&cn.list), cfg->text);
            st = exec_script(s.writer, ns__buf_cstr(&sql), &args, &changed, err);
        }
    }
    if (st != NS_OK)
        goto out;
    if ((st = ns__step_commit_done(&s, s.writer, &key, changed, err)) != NS_OK)
        goto out;
    *status = NS_BATCH_COMPLETED;
    snprintf(code, codelen, "COMPLETED");
    if (kind == DB_REBUILD)
        snprintf(msg, msglen, "%s rebuilt with %lld rows", cfg->table, (long long)changed);
out:
    if (st != NS_OK && tried && retry_db(&s, &e, &attempt)) {
        ar.n = 0;
        ar.sample.len = 0;
        cn.list.len = 0;
        sql.len = 0;
        free(ctx);
        ctx = NULL;
        s.counts.read = 0;
        goto again;
    }
    ns__step_end(&s, st, &e, started, status, code, codelen, msg, msglen);
    ns__writer_free(s.writer);
    ns__buf_free(&ar.sample);
    ns__buf_free(&cn.list);
    ns__buf_free(&sql);
    free(ctx);
    free(s.context);
    free(state.context);
}

static void sql_run(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *code,
                    size_t codelen, char *msg, size_t msglen)
{
    db_step(rc, def, DB_SQL, status, code, codelen, msg, msglen);
}

static void assert_run(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *code,
                       size_t codelen, char *msg, size_t msglen)
{
    db_step(rc, def, DB_ASSERT, status, code, codelen, msg, msglen);
}

static void rebuild_run(run_ctx *rc, const ns_step_def *def, ns_batch_status *status, char *code,
                        size_t codelen, char *msg, size_t msglen)
{
    db_step(rc, def, DB_REBUILD, status, code, codelen, msg, msglen);
}

static const ns_step_type sql_type = {"sql", NS_STEP_TYPE_VERSION, sql_run};
static const ns_step_type assert_type = {"assert", NS_STEP_TYPE_VERSION, assert_run};
static const ns_step_type rebuild_type = {"rebuild", NS_STEP_TYPE_VERSION, rebuild_run};

/*
 * sql: {connection, script | file}, assert: {connection, sql},
 * rebuild: {connection, table, sql}. Parameters appear as :name and must be
 * declared (the loader checks); they are bound at run time, never pasted
 * into the text.
 */
#define DB_KEY(n, t, f, flags, hint)                                                               \
    {                                                                                              \
        n, t, offsetof(db_cfg, f), flags, NULL, 0, 0, NULL, NULL, 0, hint                          \
    }

static const ns_key sql_keys[] = {
    DB_KEY("connection", NS_KEY_CONNECTION, connection, NS_KEY_REQUIRED, NULL),
    DB_KEY("script", NS_KEY_SCRIPT, text, NS_KEY_REQUIRED, "SQL statements"),
    DB_KEY("file", NS_KEY_SQL_FILE, text, 0, "a .sql file beside the job"),
    {0}};
static const ns_key assert_keys[] = {
    DB_KEY("connection", NS_KEY_CONNECTION, connection, NS_KEY_REQUIRED, NULL),
    DB_KEY("sql", NS_KEY_QUERY, text, NS_KEY_REQUIRED,
           "a query whose rows are the failures, e.g. SELECT ... WHERE balance < 0"),
    {0}};
static const ns_key rebuild_keys[] = {
    DB_KEY("connection", NS_KEY_CONNECTION, connection, NS_KEY_REQUIRED, NULL),
    DB_KEY("table", NS_KEY_IDENT, table, NS_KEY_REQUIRED, "the table whose rows are replaced"),
    DB_KEY("sql", NS_KEY_QUERY, text, NS_KEY_REQUIRED, "the query giving its new rows"),
    {0}};

const ns_plugin ns__plugin_sql = {NS_PLUGIN_STEP, "sql", NS_PLUGIN_VERSION, sql_keys,
                                  sizeof(db_cfg), NULL,  &sql_type};
const ns_plugin ns__plugin_assert = {NS_PLUGIN_STEP, "assert", NS_PLUGIN_VERSION, assert_keys,
                                     sizeof(db_cfg), NULL,     &assert_type};
const ns_plugin ns__plugin_rebuild = {NS_PLUGIN_STEP, "rebuild", NS_PLUGIN_VERSION, rebuild_keys,
                                      sizeof(db_cfg), NULL,      &rebuild_type};
