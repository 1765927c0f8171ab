/*
 * pg.c - the job repository on PostgreSQL, in schema `nightshift`.
 *
 * Several processes and machines may share it. A launch locks its instance's
 * row (INSERT ... ON CONFLICT DO NOTHING, then SELECT ... FOR UPDATE), so
 * simultaneous launches of one instance are serialised and all but the first
 * see its execution. The schema is created and migrated on first use under
 * an advisory lock. Statements per launch do not depend on history (every
 * lookup is by index); a chunk costs two statements. While a job runs, a
 * thread with its own connection renews the heartbeat (keepalive_start).
 */
#include "db/pg/pg.h"
#include "repo/repo.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The heartbeat thread (see keepalive_start). */
typedef struct beat {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, stop;
    char *url;
    int64_t execution_id;
    double interval;
    ns_watchdog *watchdog; /* the run's: no beat past a statement's limit */
} beat;

typedef struct pgr {
    PGconn *c;
    char started[32]; /* this backend's start, in microseconds; "" until asked */
    int started_pid;  /* the backend `started` is of */
    char *url;
    beat beat;
} pgr;

#define CONN(r) (((pgr *)(r)->impl)->c)
/* Timestamps leave the database as "YYYY-MM-DDTHH:MM:SS.mmmZ", like SQLite's. */
#define ISO(x) "to_char(" x " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* Serialises migrations of one database ('nsmg'). */
#define MIGRATION_LOCK "1853058919"

static const char *const migrations[] = {
    "CREATE TABLE nightshift.ns_job_instance ("
    "  id bigserial PRIMARY KEY,"
    "  job_name text NOT NULL,"
    "  job_key text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  UNIQUE (job_name, job_key));"
    "CREATE TABLE nightshift.ns_job_execution ("
    "  id bigserial PRIMARY KEY,"
    "  instance_id bigint NOT NULL REFERENCES nightshift.ns_job_instance (id),"
    "  version bigint NOT NULL DEFAULT 0,"
    "  status text NOT NULL,"
    "  exit_code text NOT NULL DEFAULT 'UNKNOWN',"
    "  exit_message text NOT NULL DEFAULT '',"
    "  job_file text NOT NULL DEFAULT '',"
    "  workdir text NOT NULL DEFAULT '',"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  started_at timestamptz,"
    "  ended_at timestamptz,"
    "  last_updated timestamptz NOT NULL DEFAULT now(),"
    "  host text NOT NULL,"
    "  pid bigint NOT NULL,"
    "  process_start bigint NOT NULL DEFAULT -1,"
    "  heartbeat timestamptz NOT NULL DEFAULT now(),"
    "  stop_requested boolean NOT NULL DEFAULT false,"
    "  restart_of bigint);"
    "CREATE INDEX ns_job_execution_instance ON nightshift.ns_job_execution (instance_id, id);"
    "CREATE INDEX ns_job_execution_status ON nightshift.ns_job_execution (status, id);"
    "CREATE TABLE nightshift.ns_job_param ("
    "  execution_id bigint NOT NULL REFERENCES nightshift.ns_job_execution (id),"
    "  name text NOT NULL,"
    "  type text NOT NULL,"
    "  value text NOT NULL,"
    "  identifying boolean NOT NULL,"
    "  PRIMARY KEY (execution_id, name));"
    "CREATE TABLE nightshift.ns_run_id ("
    "  job_name text PRIMARY KEY,"
    "  last bigint NOT NULL);"
    "CREATE TABLE nightshift.ns_step_execution ("
    "  id bigserial PRIMARY KEY,"
    "  execution_id bigint NOT NULL REFERENCES nightshift.ns_job_execution (id),"
    "  instance_id bigint NOT NULL,"
    "  step_name text NOT NULL,"
    "  partition_name text NOT NULL DEFAULT '',"
    "  version bigint NOT NULL DEFAULT 0,"
    "  status text NOT NULL,"
    "  exit_code text NOT NULL DEFAULT 'EXECUTING',"
    "  exit_message text NOT NULL DEFAULT '',"
    "  read_count bigint NOT NULL DEFAULT 0,"
    "  write_count bigint NOT NULL DEFAULT 0,"
    "  filter_count bigint NOT NULL DEFAULT 0,"
    "  read_skip_count bigint NOT NULL DEFAULT 0,"
    "  process_skip_count bigint NOT NULL DEFAULT 0,"
    "  write_skip_count bigint NOT NULL DEFAULT 0,"
    "  commit_count bigint NOT NULL DEFAULT 0,"
    "  rollback_count bigint NOT NULL DEFAULT 0,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  ended_at timestamptz,"
    "  last_updated timestamptz NOT NULL DEFAULT now(),"
    "  UNIQUE (execution_id, step_name, partition_name));"
    "CREATE INDEX ns_step_execution_instance"
    "  ON nightshift.ns_step_execution (instance_id, step_name, partition_name, id);"
    "CREATE TABLE nightshift.ns_execution_context ("
    "  step_execution_id bigint PRIMARY KEY REFERENCES nightshift.ns_step_execution (id),"
    "  context text NOT NULL);",
    /* 2: the repository's identity (see sqlite.c); --next past hand-given ids. */
    "CREATE TABLE nightshift.ns_repository (id text NOT NULL);"
    "INSERT INTO nightshift.ns_repository"
    "  SELECT md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text);"
    "INSERT INTO nightshift.ns_run_id (job_name, last)"
    "  SELECT i.job_name, max(p.value::bigint) FROM nightshift.ns_job_param p"
    "  JOIN nightshift.ns_job_execution e ON e.id = p.execution_id"
    "  JOIN nightshift.ns_job_instance i ON i.id = e.instance_id"
    "  WHERE p.name = 'run.id' GROUP BY i.job_name"
    "  ON CONFLICT (job_name) DO UPDATE"
    "  SET last = greatest(nightshift.ns_run_id.last, excluded.last);",
    /* 3: `show` says which execution restarted this one. */
    "CREATE INDEX ns_job_execution_restart ON nightshift.ns_job_execution (restart_of);",
    /* 4: chunks tried again after a transient failure (retry:). */
    "ALTER TABLE nightshift.ns_step_execution ADD COLUMN retry_count bigint NOT NULL DEFAULT 0;",
    /* 5: an instance whose executions were purged keeps its last status
     * (it still refuses a re-run); purge's candidates by time. */
    ("ALTER TABLE nightshift.ns_job_instance ADD COLUMN purged text;"
     "CREATE INDEX ns_job_execution_created ON nightshift.ns_job_execution (created_at);"),
    /* 6: the scheduler's ticks (see sqlite.c) */
    ("CREATE TABLE nightshift.ns_tick ("
     "  job_name text NOT NULL,"
     "  at bigint NOT NULL,"
     "  local_time text NOT NULL,"
     "  state text NOT NULL,"
     "  reason text NOT NULL DEFAULT '',"
     "  execution_id bigint,"
     "  params_key text NOT NULL DEFAULT '',"
     "  claimed_by text NOT NULL,"
     "  claimed_at double precision NOT NULL,"
     "  PRIMARY KEY (job_name, at));"
     "CREATE INDEX ns_tick_pending ON nightshift.ns_tick (state, job_name);"
     "ALTER TABLE nightshift.ns_job_execution ADD COLUMN scheduled_at text;"),
    /* 7: notifications (see sqlite.c) */
    ("ALTER TABLE nightshift.ns_job_execution ADD COLUMN notify_errors text;"
     "CREATE TABLE nightshift.ns_notify_slot (target text PRIMARY KEY,"
     "  next_at double precision NOT NULL);"),
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static ns_status fail(PGconn *c, PGresult *res, ns_error *err, const char *what)
{
    const char *state = ns__pg_state(c, res);
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c);
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    return ns__err(err, NS_EDB, state, "repository: %s: %.*s", what, (int)len, msg);
}

/*
 * The repository's connection lost (a terminated backend, a server
 * restarted): opened again (PQreset, the same PGconn, so a writer sharing it
 * finds it again), waiting 0.25 s, 0.5 s, ... up to 8 s between tries (about
 * 16 s in all). Only where no transaction of the caller's is lost by it:
 * the connection was already known to be gone, or it was idle before the
 * statement that failed (a BEGIN, or a statement of its own).
 */
static bool revive(PGconn *c, bool idle_before, PGresult *res)
{
    bool bad_before = !idle_before && PQstatus(c) == CONNECTION_BAD;
    if (!c || !(idle_before || bad_before))
        return false;
    const char *state = ns__pg_state(c, res);
    if (!bad_before && strncmp(state, "08", 2) != 0 && strcmp(state, "57P01") != 0 &&
        strcmp(state, "57P02") != 0 && strcmp(state, "57P03") != 0)
        return false;
    for (double wait = 0.25; wait <= 8; wait *= 2) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        PQreset(c);
        if (PQstatus(c) == CONNECTION_OK)
            return true;
    }
    return false;
}

/* Runs a statement with text parameters; NULL (and err) unless it
 * succeeded. Sent again once on a revived connection when the connection
 * was lost while it was idle. */
static PGresult *q(PGconn *c, ns_error *err, const char *what, const char *sql, int n,
                   const char *const *v)
{
    bool was_idle = PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
    if (PQstatus(c) == CONNECTION_BAD)
        revive(c, false, NULL);
    PGresult *res = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && was_idle && revive(c, true, res)) {
        PQclear(res);
        res = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
        s = PQresultStatus(res);
    }
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        fail(c, res, err, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

static ns_status run(PGconn *c, ns_error *err, const char *what, const char *sql, int n,
                     const char *const *v)
{
    PGresult *res = q(c, err, what, sql, n, v);
    PQclear(res);
    return res ? NS_OK : NS_EDB;
}

/* Runs a script of several statements (simple protocol, no parameters). */
static ns_status script(PGconn *c, ns_error *err, const char *what, const char *sql)
{
    if (PQstatus(c) == CONNECTION_BAD)
        revive(c, false, NULL);
    PGresult *res = PQexec(c, sql);
    ns_status s = PQresultStatus(res) == PGRES_COMMAND_OK ? NS_OK : fail(c, res, err, what);
    PQclear(res);
    return s;
}

static const char *num(char *buf, int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

static int64_t get_i64(PGresult *res, int row, int col)
{
    int64_t v = 0;
    const char *s = PQgetvalue(res, row, col);
    return ns__parse_i64(s, strlen(s), &v) ? v : 0;
}

static void rollback(PGconn *c)
{
    PQclear(PQexec(c, "ROLLBACK"));
}

static ns_status migrate(PGconn *c, ns_error *err)
{
    ns_status s;
    int version = 0;
    PGresult *res = NULL;

    if ((s = run(c, err, "migrate", "BEGIN", 0, NULL)) != NS_OK)
        return s;
    if ((s = run(c, err, "migrate", "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", 0, NULL)) ||
        (s = run(c, err, "migrate", "CREATE SCHEMA IF NOT EXISTS nightshift", 0, NULL)) ||
        (s = run(c, err, "migrate",
                 "CREATE TABLE IF NOT EXISTS nightshift.ns_schema (version int NOT NULL)", 0,
                 NULL)))
        goto out;
    if (!(res = q(c, err, "migrate", "SELECT version FROM nightshift.ns_schema", 0, NULL))) {
        s = NS_EDB;
        goto out;
    }
    if (PQntuples(res) > 0)
        version = atoi(PQgetvalue(res, 0, 0));
    else if ((s = run(c, err, "migrate", "INSERT INTO nightshift.ns_schema VALUES (0)", 0, NULL)))
        goto out;
    if (version > SCHEMA_VERSION) {
        s = ns__repo_too_new(err, version, SCHEMA_VERSION);
        goto out;
    }
    for (int v = version; v < SCHEMA_VERSION; v++)
        if ((s = script(c, err, "migrate", migrations[v])) != NS_OK)
            goto out;
    char buf[24];
    const char *p[] = {num(buf, SCHEMA_VERSION)};
    if (version < SCHEMA_VERSION &&
        (s = run(c, err, "migrate", "UPDATE nightshift.ns_schema SET version = $1", 1, p)))
        goto out;
    s = run(c, err, "migrate", "COMMIT", 0, NULL);
out:
    PQclear(res);
    if (s != NS_OK)
        rollback(c);
    return s;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* NOTICEs such as "schema already exists, skipping" */
}

static ns_status pg_open(ns_repo *r, const char *url, ns_error *err)
{
    char shown[512];
    pgr *p = calloc(1, sizeof(*p));
    ns_status s;

    ns__db_shown(url, shown, sizeof(shown));
    if (!p)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (!(p->url = ns__strdup(url))) {
        free(p);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    p->c = ns__pg_connect(url, "nightshift");
    if (!p->c || PQstatus(p->c) != CONNECTION_OK) {
        const char *m = p->c ? PQerrorMessage(p->c) : "out of memory";
        size_t len = strlen(m);
        while (len && m[len - 1] == '\n')
            len--;
        s = ns__err(err, NS_EDB, NULL, "repository %s: cannot connect: %.*s", shown, (int)len, m);
        goto fail;
    }
    PQsetNoticeProcessor(p->c, quiet, NULL);
    if (r->readonly) {
        /* list, show: never created nor migrated (a user that may only
         * read); an older schema is read as it is. */
        PGresult *vr = PQexec(p->c, "SELECT version FROM nightshift.ns_schema");
        int version = PQresultStatus(vr) == PGRES_TUPLES_OK && PQntuples(vr) == 1
                          ? atoi(PQgetvalue(vr, 0, 0))
                          : -1;
        PQclear(vr);
        if (version < 0) {
            s = ns__err(err, NS_ENOTFOUND, NULL,
                        "no nightshift repository in %s (nothing has run with it yet; list and "
                        "show never create one)",
                        shown);
            goto fail;
        }
        if (version > SCHEMA_VERSION) {
            s = ns__repo_too_new(err, version, SCHEMA_VERSION);
            goto fail;
        }
        PGresult *ir =
            version >= 2 ? PQexec(p->c, "SELECT id FROM nightshift.ns_repository") : NULL;
        if (PQresultStatus(ir) == PGRES_TUPLES_OK && PQntuples(ir) == 1)
            snprintf(r->id, sizeof(r->id), "%s", PQgetvalue(ir, 0, 0));
        PQclear(ir);
        r->impl = p;
        return NS_OK;
    }
    if ((s = migrate(p->c, err)) != NS_OK) {
        ns__err_prefix(err, "%s", shown);
        goto fail;
    }
    PGresult *idr = q(p->c, err, "identity", "SELECT id FROM nightshift.ns_repository", 0, NULL);
    if (!idr || PQntuples(idr) != 1) {
        PQclear(idr);
        s = ns__err(err, NS_EDB, NULL, "repository %s: it has no identity (ns_repository)", shown);
        goto fail;
    }
    snprintf(r->id, sizeof(r->id), "%s", PQgetvalue(idr, 0, 0));
    PQclear(idr);
    r->impl = p;
    return NS_OK;
fail:
    PQfinish(p->c);
    free(p->url);
    free(p);
    return s;
}

static void pg_keepalive_stop(ns_repo *r);

static void pg_close(ns_repo *r)
{
    pgr *p = r->impl;
    if (!p)
        return;
    pg_keepalive_stop(r);
    PQfinish(p->c);
    free(p->url);
    free(p);
}

/*
 * The heartbeat thread: every `interval` seconds, on a connection of its own
 * (opened at the first beat, so short runs never open it), it renews the
 * execution's heartbeat. Beats between chunks come from step_update; these
 * keep a run whose chunk (or whole replace step) outlasts the lease from
 * being taken for dead by a launch on another host. A failed beat is tried
 * again at the next one.
 */
static void *beat_main(void *arg)
{
    beat *b = arg;
    PGconn *c = NULL;
    char id[24];
    const char *v[] = {num(id, b->execution_id)};
    struct timespec at;

    clock_gettime(CLOCK_MONOTONIC, &at);
    pthread_mutex_lock(&b->mu);
    for (;;) {
        long long step = (long long)(b->interval * 1e9), ns = at.tv_nsec + step % 1000000000LL;
        at.tv_sec += (time_t)(step / 1000000000LL + ns / 1000000000LL);
        at.tv_nsec = (long)(ns % 1000000000LL);
        while (!b->stop && pthread_cond_timedwait(&b->cv, &b->mu, &at) == 0)
            ;
        if (b->stop)
            break;
        pthread_mutex_unlock(&b->mu);
        if (c && PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
        }
        if (!c) {
            c = ns__pg_connect(b->url, "nightshift heartbeat");
            if (c)
                PQsetNoticeProcessor(c, quiet, NULL);
        }
        /* A run stuck in one statement past its limit is not renewed: the
         * heartbeat says the run makes progress, not only that it lives. */
        if (c && PQstatus(c) == CONNECTION_OK && !ns__watchdog_overdue(b->watchdog)) {
            PGresult *res = PQexecParams(
                c,
                "UPDATE nightshift.ns_job_execution SET heartbeat = now()"
                " WHERE id = $1 AND status IN ('STARTING', 'STARTED', 'STOPPING') RETURNING status",
                1, NULL, v, NULL, NULL, 0);
            /* `nightshift stop` reaches a run blocked in a statement */
            if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                strcmp(PQgetvalue(res, 0, 0), "STOPPING") == 0)
                ns__watchdog_stop_now(b->watchdog);
            PQclear(res);
        }
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    PQfinish(c);
    return NULL;
}

static ns_status pg_keepalive_start(ns_repo *r, int64_t execution_id, double interval,
                                    ns_watchdog *watchdog, ns_error *err)
{
    pgr *p = r->impl;
    beat *b = &p->beat;
    pthread_condattr_t ca;

    if (b->running)
        return NS_OK;
    b->url = p->url;
    b->watchdog = watchdog;
    b->execution_id = execution_id;
    b->interval = interval > 0.01 ? interval : 0.01;
    b->stop = false;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&b->thread, NULL, beat_main, b) != 0) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        return ns__err(err, NS_EIO, NULL, "cannot start the heartbeat thread");
    }
    b->running = true;
    return NS_OK;
}

static void pg_keepalive_stop(ns_repo *r)
{
    pgr *p = r->impl;
    beat *b = &p->beat;
    if (!b->running)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    b->running = false;
}

/* The repository's connection when `conn` reaches its database as its user. */
static void *pg_shared(ns_repo *r, const char *url, void *conn)
{
    (void)url;
    if (!conn)
        return NULL;
    pgr *p = r->impl;
    /* A backend is known by its pid and start time: no other server can
     * have one with both (a mere pid, host or port could match by chance). */
    const char *started = "(extract(epoch FROM backend_start) * 1000000)::bigint::text";
    if (PQstatus(p->c) == CONNECTION_BAD)
        revive(p->c, false, NULL);
    if (p->started_pid != PQbackendPID(p->c))
        p->started[0] = '\0'; /* a new backend since (the connection was opened again) */
    if (!p->started[0]) {
        p->started_pid = PQbackendPID(p->c);
        char *sql =
            ns__asprintf("SELECT %s FROM pg_stat_activity WHERE pid = pg_backend_pid()", started);
        PGresult *res = sql ? PQexec(p->c, sql) : NULL;
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            snprintf(p->started, sizeof(p->started), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        free(sql);
        if (!p->started[0])
            return NULL;
    }
    char pid[24];
    snprintf(pid, sizeof(pid), "%d", PQbackendPID(p->c));
    const char *v[] = {pid, p->started};
    char *sql = ns__asprintf("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND %s = $2"
                             " AND datname = current_database() AND usename = current_user",
                             started);
    PGresult *res = sql ? PQexecParams(conn, sql, 2, NULL, v, NULL, NULL, 0) : NULL;
    bool same = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    PQclear(res);
    free(sql);
    return same ? p->c : NULL;
}

/* The running steps of a dead execution (id) marked FAILED with it. */
static ns_status fail_steps(PGconn *c, const char *id, ns_error *err)
{
    const char *p[] = {id};
    return run(c, err, "mark dead steps",
               "UPDATE nightshift.ns_step_execution SET status = 'FAILED', exit_code = 'FAILED',"
               " exit_message = 'the process died', ended_at = now(), last_updated = now(),"
               " version = version + 1"
               " WHERE execution_id = $1 AND status IN ('STARTING', 'STARTED', 'STOPPING')",
               1, p);
}

static ns_status mark_dead(PGconn *c, const ns_last_exec *le, char *notice, size_t n, ns_error *err)
{
    char msg[512], id[24];
    snprintf(msg, sizeof(msg),
             "process %lld on %s stopped without recording an end (killed or crashed); "
             "marked FAILED when the instance was launched again",
             (long long)le->pid, le->host);
    const char *p[] = {msg, num(id, le->id)};
    ns_status s = run(c, err, "mark dead execution",
                      "UPDATE nightshift.ns_job_execution SET status = 'FAILED',"
                      " exit_code = 'FAILED', exit_message = $1, ended_at = now(),"
                      " last_updated = now(), version = version + 1 WHERE id = $2",
                      2, p);
    if (s == NS_OK)
        s = fail_steps(c, p[1], err);
    if (snprintf(notice, n, "execution %lld: %s", (long long)le->id, msg) < 0)
        notice[0] = '\0';
    return s;
}

static ns_status pg_mark_dead(ns_repo *r, int64_t id, const char *heartbeat, const char *message,
                              ns_error *err)
{
    PGconn *c = CONN(r);
    char b[24];
    const char *p[] = {message, num(b, id), heartbeat};
    ns_status s = run(c, err, "mark dead execution", "BEGIN", 0, NULL);
    if (s != NS_OK)
        return s;
    PGresult *res = q(c, err, "mark dead execution",
                      "UPDATE nightshift.ns_job_execution SET status = 'FAILED',"
                      " exit_code = 'FAILED', exit_message = $1, ended_at = now(),"
                      " last_updated = now(), version = version + 1 WHERE id = $2"
                      " AND status IN ('STARTING', 'STARTED', 'STOPPING')"
                      " AND " ISO("heartbeat") " = $3 RETURNING id",
                      3, p);
    if (!res)
        s = NS_EDB;
    else if (PQntuples(res) != 1)
        s = ns__err(err, NS_ECONFLICT, NULL,
                    "execution %lld renewed its heartbeat or ended meanwhile: left as it is",
                    (long long)id);
    PQclear(res);
    if (s == NS_OK)
        s = fail_steps(c, p[1], err);
    if (s == NS_OK)
        return run(c, err, "mark dead execution", "COMMIT", 0, NULL);
    rollback(c);
    return s;
}

static int64_t pg_count(PGconn *c, const char *sql, ns_error *err, ns_status *s)
{
    PGresult *res = *s == NS_OK ? q(c, err, "purge", sql, 0, NULL) : NULL;
    int64_t n = res && PQntuples(res) == 1 ? get_i64(res, 0, 0) : 0;
    if (*s == NS_OK && !res)
        *s = NS_EDB;
    PQclear(res);
    return n;
}

static ns_status pg_purge(ns_repo *r, const char *job, const char *before, int64_t keep_last,
                          bool dry_run, void (*context)(void *arg, int64_t id, const char *ctx),
                          void *arg, ns_purge_counts *out, ns_error *err)
{
    PGconn *c = CONN(r);
    char keep[24];
    ns_status s;
    memset(out, 0, sizeof(*out));
    snprintf(keep, sizeof(keep), "%lld", (long long)keep_last);
    const char *p[] = {job, before, keep_last > 0 ? keep : NULL};
    if ((s = run(c, err, "purge",
                 "CREATE TEMP TABLE IF NOT EXISTS ns_purge (id bigint PRIMARY KEY)", 0, NULL)) !=
            NS_OK ||
        (s = run(c, err, "purge", "TRUNCATE pg_temp.ns_purge", 0, NULL)) != NS_OK ||
        (s = run(c, err, "purge", "BEGIN", 0, NULL)) != NS_OK)
        return s;
    s = run(c, err, "purge: choose",
            "INSERT INTO pg_temp.ns_purge (id) SELECT id FROM ("
            " SELECT e.id, e.status, e.created_at,"
            "  row_number() OVER (PARTITION BY i.job_name ORDER BY e.id DESC) AS rn,"
            "  first_value(e.status) OVER (PARTITION BY e.instance_id ORDER BY e.id DESC) AS last"
            " FROM nightshift.ns_job_execution e"
            " JOIN nightshift.ns_job_instance i ON i.id = e.instance_id"
            " WHERE $1::text IS NULL OR i.job_name = $1) x"
            " WHERE last IN ('COMPLETED', 'ABANDONED')"
            " AND status IN ('COMPLETED', 'FAILED', 'STOPPED', 'ABANDONED')"
            " AND ($2::timestamptz IS NULL OR created_at < $2::timestamptz)"
            " AND ($3::bigint IS NULL OR rn > $3::bigint)"
            /* the newest execution stays, as on SQLite (where it keeps ids
             * from being given twice) */
            " AND id < (SELECT max(id) FROM nightshift.ns_job_execution)",
            3, p);
    /* a temporary table has no statistics until asked: without them, the
     * statements below were planned as nested scans (10 minutes and more
     * on a million executions) */
    if (s == NS_OK)
        s = run(c, err, "purge", "ANALYZE pg_temp.ns_purge", 0, NULL);
    out->executions = pg_count(c, "SELECT count(*) FROM pg_temp.ns_purge", err, &s);
    out->steps = pg_count(c,
                          "SELECT count(*) FROM nightshift.ns_step_execution WHERE execution_id IN"
                          " (SELECT id FROM pg_temp.ns_purge)",
                          err, &s);
    out->params = pg_count(c,
                           "SELECT count(*) FROM nightshift.ns_job_param WHERE execution_id IN"
                           " (SELECT id FROM pg_temp.ns_purge)",
                           err, &s);
    out->contexts =
        pg_count(c,
                 "SELECT count(*) FROM nightshift.ns_execution_context WHERE step_execution_id IN"
                 " (SELECT id FROM nightshift.ns_step_execution WHERE execution_id IN"
                 " (SELECT id FROM pg_temp.ns_purge))",
                 err, &s);
    if (s == NS_OK && !dry_run) {
        PGresult *res = q(c, err, "purge: instances",
                          "UPDATE nightshift.ns_job_instance i SET purged = (SELECT e.status"
                          " FROM nightshift.ns_job_execution e WHERE e.instance_id = i.id"
                          " ORDER BY e.id DESC LIMIT 1)"
                          " WHERE i.id IN (SELECT e.instance_id FROM nightshift.ns_job_execution e"
                          " WHERE e.id IN (SELECT id FROM pg_temp.ns_purge))"
                          " AND NOT EXISTS (SELECT 1 FROM nightshift.ns_job_execution e"
                          " WHERE e.instance_id = i.id AND NOT EXISTS"
                          " (SELECT 1 FROM pg_temp.ns_purge p WHERE p.id = e.id))",
                          0, NULL);
        s = res ? NS_OK : NS_EDB;
        out->instances = res ? strtoll(PQcmdTuples(res), NULL, 10) : 0;
        PQclear(res);
    }
    if (s == NS_OK && context) {
        PGresult *res = q(c, err, "purge: contexts",
                          "SELECT s.execution_id, x.context FROM nightshift.ns_execution_context x"
                          " JOIN nightshift.ns_step_execution s ON s.id = x.step_execution_id"
                          " WHERE s.execution_id IN (SELECT id FROM pg_temp.ns_purge)",
                          0, NULL);
        s = res ? NS_OK : NS_EDB;
        for (int i = 0; res && i < PQntuples(res); i++)
            context(arg, get_i64(res, i, 0), PQgetvalue(res, i, 1));
        PQclear(res);
    }
    if (s != NS_OK || dry_run) {
        rollback(c);
        return s;
    }
    /* In batches of 10,000 executions, one transaction each (the first
     * one's holds the choice and the instances' marks), so no lock is held
     * for the whole purge; each table by its index on the execution. */
    static const char *const batch =
        "CREATE TEMP TABLE IF NOT EXISTS ns_purge_batch (id bigint PRIMARY KEY);"
        "TRUNCATE pg_temp.ns_purge_batch;"
        "INSERT INTO pg_temp.ns_purge_batch SELECT id FROM pg_temp.ns_purge ORDER BY id LIMIT "
        "10000;"
        "ANALYZE pg_temp.ns_purge_batch;"
        "DELETE FROM nightshift.ns_execution_context WHERE step_execution_id IN (SELECT id FROM"
        " nightshift.ns_step_execution WHERE execution_id IN (SELECT id FROM "
        "pg_temp.ns_purge_batch));"
        "DELETE FROM nightshift.ns_step_execution WHERE execution_id IN"
        " (SELECT id FROM pg_temp.ns_purge_batch);"
        "DELETE FROM nightshift.ns_job_param WHERE execution_id IN"
        " (SELECT id FROM pg_temp.ns_purge_batch);"
        "DELETE FROM nightshift.ns_job_execution WHERE id IN (SELECT id FROM "
        "pg_temp.ns_purge_batch);"
        "DELETE FROM pg_temp.ns_purge WHERE id IN (SELECT id FROM pg_temp.ns_purge_batch);";
    int64_t left = out->executions;
    while (s == NS_OK && left > 0) {
        if ((s = script(c, err, "purge", batch)) == NS_OK &&
            (s = run(c, err, "purge", "COMMIT", 0, NULL)) == NS_OK)
            left -= 10000;
        if (s == NS_OK && left > 0)
            s = run(c, err, "purge", "BEGIN", 0, NULL);
    }
    if (s != NS_OK)
        rollback(c);
    else if (out->executions == 0)
        s = run(c, err, "purge", "COMMIT", 0, NULL);
    return s;
}

static ns_status pg_launch(ns_repo *r, const ns_launch_req *req, ns_launch_res *res, ns_error *err)
{
    PGconn *c = CONN(r);
    PGresult *pr = NULL;
    ns_status s;
    char run_id[24] = "", why[512], b1[24], b2[24], b3[24];
    ns_last_exec le;
    bool have = false;
    ns_param_val *all = NULL;
    size_t nall = 0;

    memset(res, 0, sizeof(*res));
    memset(&le, 0, sizeof(le));
    if ((s = run(c, err, "launch", "BEGIN", 0, NULL)) != NS_OK)
        return s;
    if (req->next) {
        const char *p[] = {req->job_name};
        if (!(pr = q(c, err, "next run.id",
                     "INSERT INTO nightshift.ns_run_id (job_name, last) VALUES ($1, 1)"
                     " ON CONFLICT (job_name) DO UPDATE SET last = nightshift.ns_run_id.last + 1"
                     " RETURNING last",
                     1, p))) {
            s = NS_EDB;
            goto out;
        }
        res->run_id = get_i64(pr, 0, 0);
        PQclear(pr);
        pr = NULL;
        num(run_id, res->run_id);
    }
    if ((s = ns__launch_params(req, req->next ? run_id : NULL, &all, &nall, res->job_key, err)) !=
        NS_OK)
        goto out;
    /* A run.id given by hand moves the --next counter past it (see sqlite.c). */
    for (size_t i = 0; !req->next && i < nall; i++) {
        const char *rp[] = {req->job_name, all[i].value};
        if (strcmp(all[i].name, "run.id") == 0 &&
            (s = run(c, err, "record run.id",
                     "INSERT INTO nightshift.ns_run_id (job_name, last) VALUES ($1, $2)"
                     " ON CONFLICT (job_name) DO UPDATE"
                     " SET last = greatest(nightshift.ns_run_id.last, excluded.last)",
                     2, rp)) != NS_OK)
            goto out;
    }
    const char *ik[] = {req->job_name, res->job_key};
    if ((s = run(c, err, "create instance",
                 "INSERT INTO nightshift.ns_job_instance (job_name, job_key) VALUES ($1, $2)"
                 " ON CONFLICT (job_name, job_key) DO NOTHING",
                 2, ik)) != NS_OK)
        goto out;
    /* The row lock serialises launches of this instance across processes. */
    if (!(pr = q(c, err, "lock instance",
                 "SELECT id FROM nightshift.ns_job_instance WHERE job_name = $1 AND job_key = $2"
                 " FOR UPDATE",
                 2, ik)) ||
        PQntuples(pr) != 1) {
        s = ns__err(err, NS_EDB, NULL, "repository: the instance row vanished");
        goto out;
    }
    res->instance_id = get_i64(pr, 0, 0);
    PQclear(pr);
    const char *ip[] = {num(b1, res->instance_id)};
    if (!(pr = q(c, err, "read last execution",
                 "SELECT id, status, host, pid, extract(epoch FROM heartbeat)::float8,"
                 " process_start FROM nightshift.ns_job_execution WHERE instance_id = $1"
                 " ORDER BY id DESC LIMIT 1",
                 1, ip))) {
        s = NS_EDB;
        goto out;
    }
    have = PQntuples(pr) == 1;
    if (!have) {
        /* No execution left: one purged (its history deleted) still counts. */
        PQclear(pr);
        if (!(pr = q(c, err, "read instance",
                     "SELECT purged FROM nightshift.ns_job_instance WHERE id = $1", 1, ip))) {
            s = NS_EDB;
            goto out;
        }
        if (PQntuples(pr) == 1 && !PQgetisnull(pr, 0, 0)) {
            le.status = ns_batch_status_parse(PQgetvalue(pr, 0, 0));
            have = true;
        }
    } else {
        le.id = get_i64(pr, 0, 0);
        le.status = ns_batch_status_parse(PQgetvalue(pr, 0, 1));
        snprintf(le.host, sizeof(le.host), "%s", PQgetvalue(pr, 0, 2));
        le.pid = get_i64(pr, 0, 3);
        le.heartbeat = strtod(PQgetvalue(pr, 0, 4), NULL);
        le.process_start = get_i64(pr, 0, 5);
    }
    PQclear(pr);
    pr = NULL;
    ns_launch_action a =
        ns__launch_decide(&le, have, req->restartable, req->lease, why, sizeof(why));
    if (a == NS_LAUNCH_RECOVER) {
        if ((s = mark_dead(c, &le, res->notice, sizeof(res->notice), err)) != NS_OK)
            goto out;
        le.status = NS_BATCH_FAILED;
        a = ns__launch_decide(&le, have, req->restartable, req->lease, why, sizeof(why));
    }
    if (a == NS_LAUNCH_REFUSE) {
        /* Keep a recovery (the dead execution is FAILED either way). */
        if (res->notice[0])
            run(c, err, "launch", "COMMIT", 0, NULL);
        else
            rollback(c);
        free(all);
        res->refused = le.status;
        return ns__err(err, NS_EREFUSED, NULL, "job %s: %s", req->job_name, why);
    }
    res->restart_of = a == NS_LAUNCH_RESTART ? le.id : 0;
    char pidbuf[24], startbuf[24];
    const char *ep[] = {b1,
                        req->job_path ? req->job_path : "",
                        req->workdir ? req->workdir : "",
                        ns__hostname(),
                        num(pidbuf, (int64_t)getpid()),
                        num(startbuf, ns__process_start(getpid())),
                        res->restart_of ? num(b2, res->restart_of) : NULL,
                        req->tick_at ? req->scheduled_at : NULL};
    if (!(pr = q(c, err, "create execution",
                 "INSERT INTO nightshift.ns_job_execution (instance_id, status, job_file, workdir,"
                 " host, pid, process_start, restart_of, scheduled_at)"
                 " VALUES ($1, 'STARTING', $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                 8, ep))) {
        s = NS_EDB;
        goto out;
    }
    res->execution_id = get_i64(pr, 0, 0);
    PQclear(pr);
    pr = NULL;
    num(b3, res->execution_id);
    for (size_t i = 0; i < nall; i++) {
        const char *pp[] = {b3, all[i].name, all[i].type, all[i].value,
                            all[i].identifying ? "true" : "false"};
        if ((s = run(c, err, "save parameters",
                     "INSERT INTO nightshift.ns_job_param (execution_id, name, type, value,"
                     " identifying) VALUES ($1, $2, $3, $4, $5)",
                     5, pp)) != NS_OK)
            goto out;
    }
    /* A tick starts this execution once: only while it is PENDING. */
    if (req->tick_at) {
        char at[24];
        const char *tp[] = {b3, req->params_key ? req->params_key : "", req->job_name,
                            num(at, req->tick_at)};
        if (!(pr = q(c, err, "start the tick",
                     "UPDATE nightshift.ns_tick SET state = 'STARTED', execution_id = $1,"
                     " params_key = $2 WHERE job_name = $3 AND at = $4 AND state = 'PENDING'",
                     4, tp))) {
            s = NS_EDB;
            goto out;
        }
        bool started = strcmp(PQcmdTuples(pr), "1") == 0;
        PQclear(pr);
        pr = NULL;
        if (!started) {
            rollback(c);
            free(all);
            return ns__err(err, NS_EREFUSED, NULL,
                           "job %s: the tick of %s is not waiting to start (started or given "
                           "up by a scheduler)",
                           req->job_name, req->scheduled_at ? req->scheduled_at : "?");
        }
    }
    s = run(c, err, "launch", "COMMIT", 0, NULL);
out:
    free(all);
    PQclear(pr);
    if (s != NS_OK)
        rollback(c);
    return s;
}

static ns_status pg_exec_info(ns_repo *r, int64_t id, ns_exec_info *out, ns_error *err)
{
    PGconn *c = CONN(r);
    ns_exec_info info;
    char b[24];
    const char *p[] = {num(b, id)};

    memset(&info, 0, sizeof(info));
    PGresult *res = q(c, err, "read execution",
                      "SELECT e.id, e.instance_id, e.status, i.job_name, e.job_file, e.workdir"
                      " FROM nightshift.ns_job_execution e"
                      " JOIN nightshift.ns_job_instance i ON i.id = e.instance_id WHERE e.id = $1",
                      1, p);
    if (!res)
        return NS_EDB;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld in the repository",
                       (long long)id);
    }
    info.id = id;
    info.instance_id = get_i64(res, 0, 1);
    info.status = ns_batch_status_parse(PQgetvalue(res, 0, 2));
    info.job_name = ns__strdup(PQgetvalue(res, 0, 3));
    info.job_path = ns__strdup(PQgetvalue(res, 0, 4));
    info.workdir = ns__strdup(PQgetvalue(res, 0, 5));
    PQclear(res);
    if (!(res = q(c, err, "read parameters",
                  "SELECT name, type, value, identifying FROM nightshift.ns_job_param"
                  " WHERE execution_id = $1 ORDER BY name",
                  1, p))) {
        ns__exec_info_free(&info);
        return NS_EDB;
    }
    int n = PQntuples(res);
    if (!(info.params = calloc((size_t)n + 1, sizeof(*info.params)))) {
        PQclear(res);
        ns__exec_info_free(&info);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        ns_param_val *v = &info.params[info.nparams++];
        v->name = ns__strdup(PQgetvalue(res, i, 0));
        v->type = ns__strdup(PQgetvalue(res, i, 1));
        v->value = ns__strdup(PQgetvalue(res, i, 2));
        v->identifying = PQgetvalue(res, i, 3)[0] == 't';
    }
    PQclear(res);
    ns_status s = ns__exec_info_copied(&info, err);
    if (s == NS_OK)
        *out = info;
    return s;
}

static ns_status pg_exec_status(ns_repo *r, int64_t id, ns_batch_status status,
                                const char *exit_code, const char *message, bool ended,
                                ns_error *err)
{
    PGconn *c = CONN(r);
    char b[24];
    const char *p[] = {num(b, id)};

    for (int attempt = 0; attempt < 5; attempt++) {
        PGresult *res = q(c, err, "read execution",
                          "SELECT version FROM nightshift.ns_job_execution WHERE id = $1", 1, p);
        if (!res)
            return NS_EDB;
        if (PQntuples(res) != 1) {
            PQclear(res);
            return ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld", (long long)id);
        }
        char version[24];
        snprintf(version, sizeof(version), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        const char *u[] = {ns_batch_status_name(status),
                           exit_code ? exit_code : ns_batch_status_name(status),
                           message ? message : "",
                           ended ? "true" : "false",
                           b,
                           version};
        res = q(c, err, "update execution",
                "UPDATE nightshift.ns_job_execution SET status = $1, exit_code = $2,"
                " exit_message = $3,"
                " ended_at = CASE WHEN $4::boolean THEN now() ELSE ended_at END,"
                " started_at = CASE WHEN $4::boolean THEN started_at ELSE now() END,"
                " last_updated = now(), version = version + 1 WHERE id = $5 AND version = $6",
                6, u);
        if (!res)
            return NS_EDB;
        bool done = strcmp(PQcmdTuples(res), "1") == 0;
        PQclear(res);
        if (done)
            return NS_OK;
    }
    return ns__err(err, NS_ECONFLICT, NULL, "execution %lld: concurrent updates", (long long)id);
}

static ns_status pg_step_state(ns_repo *r, int64_t instance, const char *step, ns_step_state *out,
                               ns_error *err)
{
    char b[24];
    const char *p[] = {num(b, instance), step};
    memset(out, 0, sizeof(*out));
    PGresult *res = q(CONN(r), err, "read step",
                      "SELECT s.id, s.status, c.context, s.exit_code"
                      " FROM nightshift.ns_step_execution s"
                      " LEFT JOIN nightshift.ns_execution_context c ON c.step_execution_id = s.id"
                      " WHERE s.instance_id = $1 AND s.step_name = $2 AND s.partition_name = ''"
                      " ORDER BY s.id DESC LIMIT 1",
                      2, p);
    if (!res)
        return NS_EDB;
    if (PQntuples(res) == 1) {
        out->last_id = get_i64(res, 0, 0);
        out->completed = strcmp(PQgetvalue(res, 0, 1), "COMPLETED") == 0;
        if (!PQgetisnull(res, 0, 2) && !(out->context = ns__strdup(PQgetvalue(res, 0, 2)))) {
            PQclear(res);
            return ns__err(err, NS_ENOMEM, NULL, "out of memory reading step %s", step);
        }
        snprintf(out->exit_code, sizeof(out->exit_code), "%s", PQgetvalue(res, 0, 3));
    }
    PQclear(res);
    return NS_OK;
}

static ns_status pg_step_begin(ns_repo *r, int64_t execution_id, const char *step, ns_step_exec *se,
                               ns_error *err)
{
    char b[24];
    const char *p[] = {step, num(b, execution_id)};
    PGresult *res = q(CONN(r), err, "create step execution",
                      "INSERT INTO nightshift.ns_step_execution (execution_id, instance_id,"
                      " step_name, status) SELECT id, instance_id, $1, 'STARTED'"
                      " FROM nightshift.ns_job_execution WHERE id = $2 RETURNING id",
                      2, p);
    if (!res)
        return NS_EDB;
    memset(se, 0, sizeof(*se));
    se->id = PQntuples(res) == 1 ? get_i64(res, 0, 0) : 0;
    se->execution_id = execution_id;
    PQclear(res);
    return se->id ? NS_OK
                  : ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld", (long long)execution_id);
}

/*
 * Writes counters, context and optionally the final status of a step
 * execution in one statement. `check_version`: only at se->version.
 */
static ns_status save_step(PGconn *c, ns_step_exec *se, const char *status, const char *exit_code,
                           const char *message, bool check_version, ns_error *err)
{
    const ns_counts *k = &se->counts;
    char v[11][24];
    const char *p[] = {num(v[0], k->read),
                       num(v[1], k->write),
                       num(v[2], k->filter),
                       num(v[3], k->read_skip),
                       num(v[4], k->process_skip),
                       num(v[5], k->write_skip),
                       num(v[6], k->commit),
                       num(v[7], k->rollback),
                       num(v[8], se->id),
                       check_version ? num(v[9], se->version) : NULL,
                       se->context,
                       status,
                       exit_code,
                       message,
                       num(v[10], k->retry)};
    PGresult *res =
        q(c, err, "update step execution",
          "WITH s AS (UPDATE nightshift.ns_step_execution SET read_count = $1, write_count = $2,"
          " filter_count = $3, read_skip_count = $4, process_skip_count = $5,"
          " write_skip_count = $6, commit_count = $7, rollback_count = $8, retry_count = $15,"
          " last_updated = now(),"
          " status = coalesce($12, status), exit_code = coalesce($13, exit_code),"
          " exit_message = coalesce($14, exit_message),"
          " ended_at = CASE WHEN $12::text IS NULL THEN ended_at ELSE now() END,"
          " version = version + 1 WHERE id = $9 AND ($10::bigint IS NULL OR version = $10)"
          " RETURNING id),"
          " c AS (INSERT INTO nightshift.ns_execution_context (step_execution_id, context)"
          " SELECT id, $11 FROM s WHERE $11::text IS NOT NULL"
          " ON CONFLICT (step_execution_id) DO UPDATE SET context = excluded.context)"
          " SELECT count(*) FROM s",
          15, p);
    if (!res)
        return NS_EDB;
    bool ok = get_i64(res, 0, 0) == 1;
    PQclear(res);
    if (!ok)
        return ns__err(err, NS_ECONFLICT, NULL,
                       "step execution %lld was changed by another process", (long long)se->id);
    se->version++;
    return NS_OK;
}

static ns_status pg_step_update(ns_repo *r, ns_step_exec *se, bool *stop, ns_error *err)
{
    PGconn *c = CONN(r);
    ns_status s = save_step(c, se, NULL, NULL, NULL, true, err);
    if (s != NS_OK)
        return s;
    char b[24];
    const char *p[] = {num(b, se->execution_id)};
    PGresult *res = q(c, err, "heartbeat",
                      "UPDATE nightshift.ns_job_execution SET heartbeat = now(),"
                      " last_updated = now() WHERE id = $1 RETURNING stop_requested",
                      1, p);
    if (!res)
        return NS_EDB;
    if (PQntuples(res) == 1)
        *stop = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return NS_OK;
}

static ns_status pg_step_end(ns_repo *r, ns_step_exec *se, ns_batch_status status,
                             const char *exit_code, const char *message, ns_error *err)
{
    return save_step(CONN(r), se, ns_batch_status_name(status),
                     exit_code ? exit_code : ns_batch_status_name(status), message ? message : "",
                     true, err);
}

static ns_status pg_step_reconcile(ns_repo *r, int64_t id, const ns_counts *c, const char *context,
                                   ns_error *err)
{
    ns_step_exec se = {.id = id, .counts = *c, .context = context};
    ns_status s = save_step(CONN(r), &se, NULL, NULL, NULL, false, err);
    if (s == NS_ECONFLICT) { /* recorded in another repository: nothing to reconcile */
        ns_error_clear(err);
        return NS_OK;
    }
    return s;
}

/* After an UPDATE that matched nothing: why (no such execution, wrong status). */
static ns_status explain(PGconn *c, int64_t id, const char *fmt, ns_error *err)
{
    char b[24];
    const char *p[] = {num(b, id)};
    PGresult *res = q(c, err, "read execution",
                      "SELECT status FROM nightshift.ns_job_execution WHERE id = $1", 1, p);
    if (!res)
        return NS_EDB;
    ns_status s;
    if (PQntuples(res) != 1)
        s = ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld in the repository", (long long)id);
    else
        s = ns__err(err, NS_EREFUSED, NULL, fmt, (long long)id, PQgetvalue(res, 0, 0));
    PQclear(res);
    return s;
}

/* Moves an execution to a new status when its current one allows (the
 * UPDATE's WHERE says which); otherwise says why not with `why`. */
static ns_status transition(ns_repo *r, int64_t id, const char *what, const char *sql,
                            const char *why, ns_error *err)
{
    char b[24];
    const char *p[] = {num(b, id)};
    PGresult *res = q(CONN(r), err, what, sql, 1, p);
    if (!res)
        return NS_EDB;
    bool done = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return done ? NS_OK : explain(CONN(r), id, why, err);
}

static ns_status pg_request_stop(ns_repo *r, int64_t id, ns_error *err)
{
    return transition(r, id, "request stop",
                      "UPDATE nightshift.ns_job_execution SET stop_requested = true,"
                      " status = 'STOPPING', last_updated = now(), version = version + 1"
                      " WHERE id = $1 AND status IN ('STARTING', 'STARTED', 'STOPPING')",
                      "execution %lld is not running (status %s)", err);
}

static ns_status pg_abandon(ns_repo *r, int64_t id, ns_error *err)
{
    return transition(r, id, "abandon",
                      "UPDATE nightshift.ns_job_execution SET status = 'ABANDONED',"
                      " exit_code = 'ABANDONED', last_updated = now(),"
                      " ended_at = coalesce(ended_at, now()), version = version + 1"
                      " WHERE id = $1 AND status IN ('STOPPED', 'FAILED')",
                      "execution %lld is %s; only STOPPED or FAILED executions can be abandoned",
                      err);
}

/* ------------------------------------------------------------- JSON */

static void row(PGresult *res, int i, const char **cols, int n)
{
    for (int k = 0; k < n; k++)
        cols[k] = PQgetisnull(res, i, k) ? NULL : PQgetvalue(res, i, k);
}

/* clang-format off */
#define EXEC_COLUMNS                                                                               \
    "e.id, i.job_name, e.instance_id, e.status, e.exit_code, e.exit_message, "                     \
    ISO("e.created_at") ", " ISO("e.started_at") ", " ISO("e.ended_at") ", "                       \
    "e.host, e.pid, e.restart_of, e.job_file, " ISO("e.last_updated") ", e.workdir, "             \
    ISO("e.heartbeat") ", e.process_start, "                                                       \
    "(SELECT min(r.id) FROM nightshift.ns_job_execution r WHERE r.restart_of = e.id), "           \
    "e.scheduled_at, e.notify_errors"
#define STEP_QUERY                                                                                 \
    "SELECT s.step_name, s.partition_name, s.status, s.exit_code, s.exit_message,"                 \
    " s.read_count, s.write_count, s.filter_count, s.read_skip_count, s.process_skip_count,"       \
    " s.write_skip_count, s.commit_count, s.rollback_count, "                                      \
    ISO("s.started_at") ", " ISO("s.ended_at") ", s.id, x.context, s.retry_count"                  \
    " FROM nightshift.ns_step_execution s"                                                         \
    " LEFT JOIN nightshift.ns_execution_context x ON x.step_execution_id = s.id"                   \
    " WHERE s.execution_id = $1 ORDER BY s.id"
/* clang-format on */

/* The JSON of each execution of a result, with its parameters. */
static json_t *execs_json(const ns_repo *r, PGconn *c, PGresult *res, ns_error *err)
{
    const char *cols[NS_MAX_NCOLS];
    json_t *a = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        row(res, i, cols, NS_EXEC_NCOLS);
        json_t *o = ns__json_exec(r, cols);
        const char *p[] = {cols[0]};
        PGresult *pr = q(c, err, "read parameters",
                         "SELECT name, type, value, identifying FROM nightshift.ns_job_param"
                         " WHERE execution_id = $1 ORDER BY name",
                         1, p);
        for (int k = 0; pr && k < PQntuples(pr); k++) {
            row(pr, k, cols, NS_PARAM_NCOLS);
            ns__json_exec_param(o, cols);
        }
        PQclear(pr);
        json_array_append_new(a, o);
    }
    return a;
}

static ns_status pg_show_json(ns_repo *r, int64_t id, char **out, ns_error *err)
{
    PGconn *c = CONN(r);
    char b[24];
    const char *p[] = {num(b, id)};
    PGresult *res = q(c, err, "show",
                      "SELECT " EXEC_COLUMNS " FROM nightshift.ns_job_execution e"
                      " JOIN nightshift.ns_job_instance i ON i.id = e.instance_id WHERE e.id = $1",
                      1, p);
    if (!res)
        return NS_EDB;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld in the repository",
                       (long long)id);
    }
    json_t *a = execs_json(r, c, res, err);
    PQclear(res);
    json_t *o = json_incref(json_array_get(a, 0));
    json_decref(a);
    json_t *steps = json_array();
    res = q(c, err, "show steps", STEP_QUERY, 1, p);
    const char *cols[NS_MAX_NCOLS];
    for (int i = 0; res && i < PQntuples(res); i++) {
        row(res, i, cols, NS_STEP_NCOLS);
        json_array_append_new(steps, ns__json_step(cols));
    }
    PQclear(res);
    json_object_set_new(o, "steps", steps);
    return ns__json_dump(o, out, err);
}

static ns_status pg_list_json(ns_repo *r, const char *job, const char *status, int limit,
                              char **out, ns_error *err)
{
    PGconn *c = CONN(r);
    char b[24];
    const char *p[] = {job, status, num(b, limit)};
    PGresult *res = q(c, err, "list",
                      "SELECT " EXEC_COLUMNS " FROM nightshift.ns_job_execution e"
                      " JOIN nightshift.ns_job_instance i ON i.id = e.instance_id"
                      " WHERE ($1::text IS NULL OR i.job_name = $1)"
                      " AND ($2::text IS NULL OR e.status = $2)"
                      " ORDER BY e.id DESC LIMIT $3",
                      3, p);
    if (!res)
        return NS_EDB;
    json_t *a = execs_json(r, c, res, err);
    PQclear(res);
    return ns__json_dump(a, out, err);
}

/* ------------------------------------------------------------- ticks */

#define TICK_COLUMNS                                                                               \
    "job_name, at, local_time, state, reason, coalesce(execution_id, 0), params_key, claimed_by,"  \
    " claimed_at"

static void tick_row(PGresult *res, int i, ns_tick *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->job, sizeof(t->job), "%s", PQgetvalue(res, i, 0));
    t->at = get_i64(res, i, 1);
    snprintf(t->local_time, sizeof(t->local_time), "%s", PQgetvalue(res, i, 2));
    snprintf(t->state, sizeof(t->state), "%s", PQgetvalue(res, i, 3));
    snprintf(t->reason, sizeof(t->reason), "%s", PQgetvalue(res, i, 4));
    t->execution_id = get_i64(res, i, 5);
    snprintf(t->params_key, sizeof(t->params_key), "%s", PQgetvalue(res, i, 6));
    snprintf(t->claimed_by, sizeof(t->claimed_by), "%s", PQgetvalue(res, i, 7));
    t->claimed_at = strtod(PQgetvalue(res, i, 8), NULL);
}

/* A statement's count of rows it changed is 1. */
static ns_status changed_one(PGconn *c, ns_error *err, const char *what, const char *sql, int n,
                             const char *const *v, bool *one)
{
    PGresult *res = q(c, err, what, sql, n, v);
    *one = res && strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return res ? NS_OK : NS_EDB;
}

static ns_status pg_tick_claim(ns_repo *r, const ns_tick *t, bool *inserted, ns_error *err)
{
    char at[24];
    const char *p[] = {t->job, num(at, t->at), t->local_time, t->state, t->reason, t->claimed_by};
    return changed_one(CONN(r), err, "claim a tick",
                       "INSERT INTO nightshift.ns_tick (job_name, at, local_time, state, reason,"
                       " claimed_by, claimed_at)"
                       " VALUES ($1, $2, $3, $4, $5, $6, extract(epoch FROM now()))"
                       " ON CONFLICT (job_name, at) DO NOTHING",
                       6, p, inserted);
}

static ns_status pg_tick_set(ns_repo *r, const char *job, int64_t at, const char *from,
                             const char *owner, const char *to, const char *reason,
                             const char *claimer, bool *changed, ns_error *err)
{
    char a[24];
    const char *p[] = {to, reason, claimer, job, num(a, at), from, owner};
    return changed_one(CONN(r), err, "update a tick",
                       "UPDATE nightshift.ns_tick SET state = $1, reason = coalesce($2, reason),"
                       " claimed_by = coalesce($3, claimed_by), claimed_at = CASE WHEN $3::text"
                       " IS NULL THEN claimed_at ELSE extract(epoch FROM now()) END"
                       " WHERE job_name = $4 AND at = $5 AND state = $6"
                       " AND ($7::text IS NULL OR claimed_by = $7)",
                       7, p, changed);
}

static ns_status pg_tick_get(ns_repo *r, const char *job, int64_t at, ns_tick *out, bool *found,
                             ns_error *err)
{
    char a[24];
    const char *p[] = {job, num(a, at)};
    PGresult *res = q(CONN(r), err, "read a tick",
                      "SELECT " TICK_COLUMNS " FROM nightshift.ns_tick WHERE job_name = $1"
                      " AND at = $2",
                      2, p);
    *found = res && PQntuples(res) == 1;
    if (*found)
        tick_row(res, 0, out);
    PQclear(res);
    return res ? NS_OK : NS_EDB;
}

static ns_status pg_tick_last(ns_repo *r, const char *job, int64_t *at, bool *found, ns_error *err)
{
    const char *p[] = {job};
    PGresult *res = q(CONN(r), err, "read the last tick",
                      "SELECT max(at) FROM nightshift.ns_tick WHERE job_name = $1", 1, p);
    *found = res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
    *at = *found ? get_i64(res, 0, 0) : 0;
    PQclear(res);
    return res ? NS_OK : NS_EDB;
}

static ns_status pg_tick_pending(ns_repo *r, const char *job, ns_tick **out, size_t *n,
                                 ns_error *err)
{
    const char *p[] = {job};
    *out = NULL;
    *n = 0;
    PGresult *res = q(CONN(r), err, "read ticks",
                      "SELECT " TICK_COLUMNS " FROM nightshift.ns_tick WHERE state = 'PENDING'"
                      " AND job_name = $1 ORDER BY at",
                      1, p);
    if (!res)
        return NS_EDB;
    int k = PQntuples(res);
    if (k && !(*out = calloc((size_t)k, sizeof(**out)))) {
        PQclear(res);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory reading ticks");
    }
    for (int i = 0; i < k; i++)
        tick_row(res, i, &(*out)[i]);
    *n = (size_t)k;
    PQclear(res);
    return NS_OK;
}

static ns_status pg_tick_touch(ns_repo *r, const char *claimer, ns_error *err)
{
    const char *p[] = {claimer};
    return run(CONN(r), err, "renew ticks",
               "UPDATE nightshift.ns_tick SET claimed_at = extract(epoch FROM now())"
               " WHERE state = 'PENDING' AND claimed_by = $1",
               1, p);
}

static ns_status pg_tick_prev_run(ns_repo *r, const char *job, const char *params_key,
                                  char run_id[32], bool *found, ns_error *err)
{
    const char *p[] = {job, params_key};
    PGresult *res = q(CONN(r), err, "read the previous tick",
                      "SELECT coalesce((SELECT value FROM nightshift.ns_job_param p"
                      " WHERE p.execution_id = t.execution_id AND p.name = 'run.id'), '')"
                      " FROM nightshift.ns_tick t WHERE t.job_name = $1 AND t.params_key = $2"
                      " AND t.state = 'STARTED' ORDER BY t.at DESC LIMIT 1",
                      2, p);
    *found = res && PQntuples(res) == 1;
    run_id[0] = '\0';
    if (*found)
        snprintf(run_id, 32, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return res ? NS_OK : NS_EDB;
}

/* ----------------------------------------------------- notifications */

static ns_status pg_notify_failed(ns_repo *r, int64_t id, const char *line, ns_error *err)
{
    char b[24];
    const char *p[] = {line, num(b, id)};
    return run(CONN(r), err, "record a notification failure",
               "UPDATE nightshift.ns_job_execution SET notify_errors ="
               " coalesce(notify_errors || E'\\n', '') || $1 WHERE id = $2",
               2, p);
}

static ns_status pg_notify_slot(ns_repo *r, const char *target, double now, double gap, double *at,
                                ns_error *err)
{
    char n[40], g[40];
    snprintf(n, sizeof(n), "%.3f", now);
    snprintf(g, sizeof(g), "%.3f", gap);
    const char *p[] = {target, n, g};
    PGresult *res = q(CONN(r), err, "reserve a notification slot",
                      "INSERT INTO nightshift.ns_notify_slot (target, next_at)"
                      " VALUES ($1, $2::float8 + $3::float8) ON CONFLICT (target) DO UPDATE"
                      " SET next_at = greatest(nightshift.ns_notify_slot.next_at, $2::float8)"
                      " + $3::float8 RETURNING next_at - $3::float8",
                      3, p);
    *at = res && PQntuples(res) == 1 ? strtod(PQgetvalue(res, 0, 0), NULL) : now;
    PQclear(res);
    return res ? NS_OK : NS_EDB;
}

const ns_repo_vt ns__repo_pg = {
    .name = "postgresql",
    .version = 1,
    .open = pg_open,
    .shared = pg_shared,
    .close = pg_close,
    .launch = pg_launch,
    .exec_info = pg_exec_info,
    .exec_status = pg_exec_status,
    .step_state = pg_step_state,
    .step_begin = pg_step_begin,
    .step_update = pg_step_update,
    .step_end = pg_step_end,
    .keepalive_start = pg_keepalive_start,
    .keepalive_stop = pg_keepalive_stop,
    .step_reconcile = pg_step_reconcile,
    .request_stop = pg_request_stop,
    .abandon = pg_abandon,
    .mark_dead = pg_mark_dead,
    .purge = pg_purge,
    .show_json = pg_show_json,
    .list_json = pg_list_json,
    .tick_claim = pg_tick_claim,
    .tick_set = pg_tick_set,
    .tick_get = pg_tick_get,
    .tick_last = pg_tick_last,
    .tick_pending = pg_tick_pending,
    .tick_touch = pg_tick_touch,
    .tick_prev_run = pg_tick_prev_run,
    .notify_failed = pg_notify_failed,
    .notify_slot = pg_notify_slot,
};
