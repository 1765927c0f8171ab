/*
 * sqlite.c - the job repository on SQLite (the embedded default).
 *
 * WAL mode, so `list`/`show` never wait for a running job. A launch runs in
 * one BEGIN IMMEDIATE transaction: SQLite then holds the database's single
 * write lock from the first read, so two simultaneous launches of one
 * instance are serialised and the second sees the first's execution.
 */
#include "db/sqlite/sqlite.h"
#include "repo/repo.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct sq {
    sqlite3 *db;
    char *path;
} sq;

#define DB(r) (((sq *)(r)->impl)->db)

/* Forward migrations; entry i moves the schema from version i to i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE ns_job_instance ("
    "  id INTEGER PRIMARY KEY,"
    "  job_name TEXT NOT NULL,"
    "  job_key TEXT NOT NULL,"
    "  created_at TEXT NOT NULL,"
    "  UNIQUE (job_name, job_key));"
    "CREATE TABLE ns_job_execution ("
    "  id INTEGER PRIMARY KEY,"
    "  instance_id INTEGER NOT NULL REFERENCES ns_job_instance (id),"
    "  version INTEGER NOT NULL DEFAULT 0,"
    "  status TEXT NOT NULL,"
    "  exit_code TEXT NOT NULL DEFAULT 'UNKNOWN',"
    "  exit_message TEXT NOT NULL DEFAULT '',"
    "  job_file TEXT NOT NULL DEFAULT '',"
    "  workdir TEXT NOT NULL DEFAULT '',"
    "  created_at TEXT NOT NULL,"
    "  started_at TEXT,"
    "  ended_at TEXT,"
    "  last_updated TEXT NOT NULL,"
    "  host TEXT NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  process_start INTEGER NOT NULL DEFAULT -1,"
    "  heartbeat TEXT NOT NULL,"
    "  stop_requested INTEGER NOT NULL DEFAULT 0,"
    "  restart_of INTEGER);"
    "CREATE INDEX ns_job_execution_instance ON ns_job_execution (instance_id, id);"
    "CREATE INDEX ns_job_execution_status ON ns_job_execution (status, id);"
    "CREATE TABLE ns_job_param ("
    "  execution_id INTEGER NOT NULL REFERENCES ns_job_execution (id),"
    "  name TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  identifying INTEGER NOT NULL,"
    "  PRIMARY KEY (execution_id, name)) WITHOUT ROWID;"
    "CREATE TABLE ns_run_id ("
    "  job_name TEXT PRIMARY KEY,"
    "  last INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE ns_step_execution ("
    "  id INTEGER PRIMARY KEY,"
    "  execution_id INTEGER NOT NULL REFERENCES ns_job_execution (id),"
    "  instance_id INTEGER NOT NULL,"
    "  step_name TEXT NOT NULL,"
    "  partition_name TEXT NOT NULL DEFAULT '',"
    "  version INTEGER NOT NULL DEFAULT 0,"
    "  status TEXT NOT NULL,"
    "  exit_code TEXT NOT NULL DEFAULT 'EXECUTING',"
    "  exit_message TEXT NOT NULL DEFAULT '',"
    "  read_count INTEGER NOT NULL DEFAULT 0,"
    "  write_count INTEGER NOT NULL DEFAULT 0,"
    "  filter_count INTEGER NOT NULL DEFAULT 0,"
    "  read_skip_count INTEGER NOT NULL DEFAULT 0,"
    "  process_skip_count INTEGER NOT NULL DEFAULT 0,"
    "  write_skip_count INTEGER NOT NULL DEFAULT 0,"
    "  commit_count INTEGER NOT NULL DEFAULT 0,"
    "  rollback_count INTEGER NOT NULL DEFAULT 0,"
    "  started_at TEXT NOT NULL,"
    "  ended_at TEXT,"
    "  last_updated TEXT NOT NULL,"
    "  UNIQUE (execution_id, step_name, partition_name));"
    "CREATE INDEX ns_step_execution_instance"
    "  ON ns_step_execution (instance_id, step_name, partition_name, id);"
    /* The saved state of a step execution: reader position, rejects file
     * offset. JSON, one row per step execution. */
    "CREATE TABLE ns_execution_context ("
    "  step_execution_id INTEGER PRIMARY KEY REFERENCES ns_step_execution (id),"
    "  context TEXT NOT NULL);",
    /* 2: the repository's identity, which every checkpoint it writes into a
     * target carries (a checkpoint is trusted only by the repository that
     * wrote it); --next counters past every run.id given by hand. */
    "CREATE TABLE ns_repository (id TEXT NOT NULL);"
    "INSERT INTO ns_repository VALUES (lower(hex(randomblob(16))));"
    "INSERT INTO ns_run_id (job_name, last)"
    "  SELECT i.job_name, max(CAST(p.value AS INTEGER)) FROM ns_job_param p"
    "  JOIN ns_job_execution e ON e.id = p.execution_id"
    "  JOIN ns_job_instance i ON i.id = e.instance_id"
    "  WHERE p.name = 'run.id' GROUP BY i.job_name"
    "  ON CONFLICT (job_name) DO UPDATE SET last = max(last, excluded.last);",
    /* 3: `show` says which execution restarted this one. */
    "CREATE INDEX ns_job_execution_restart ON ns_job_execution (restart_of);",
    /* 4: chunks tried again after a transient failure (retry:). */
    "ALTER TABLE ns_step_execution ADD COLUMN retry_count INTEGER NOT NULL DEFAULT 0;",
    /* 5: an instance whose executions were purged keeps its last status
     * (it still refuses a re-run); purge's candidates by time. */
    ("ALTER TABLE ns_job_instance ADD COLUMN purged TEXT;"
     "CREATE INDEX ns_job_execution_created ON ns_job_execution (created_at);"),
    /* 6: the scheduler's ticks, one per (job, scheduled instant), and the
     * scheduled time of an execution a tick started. */
    ("CREATE TABLE ns_tick ("
     "  job_name TEXT NOT NULL,"
     "  at INTEGER NOT NULL,"
     "  local_time TEXT NOT NULL,"
     "  state TEXT NOT NULL,"
     "  reason TEXT NOT NULL DEFAULT '',"
     "  execution_id INTEGER,"
     "  params_key TEXT NOT NULL DEFAULT '',"
     "  claimed_by TEXT NOT NULL,"
     "  claimed_at REAL NOT NULL,"
     "  PRIMARY KEY (job_name, at)) WITHOUT ROWID;"
     "CREATE INDEX ns_tick_pending ON ns_tick (state, job_name);"
     "ALTER TABLE ns_job_execution ADD COLUMN scheduled_at TEXT;"),
    /* 7: notifications that could not be delivered (lines), and the next
     * moment each notification target may be sent to (one a second). */
    ("ALTER TABLE ns_job_execution ADD COLUMN notify_errors TEXT;"
     "CREATE TABLE ns_notify_slot (target TEXT PRIMARY KEY, next_at REAL NOT NULL) WITHOUT ROWID;"),
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* SQLite's out-of-memory is ours too (exit status 1, not a database error). */
static ns_status db_code(sqlite3 *db)
{
    return sqlite3_errcode(db) == SQLITE_NOMEM ? NS_ENOMEM : NS_EDB;
}

static ns_status db_err(sqlite3 *db, ns_error *err, const char *what)
{
    return ns__err(err, db_code(db), sqlite3_errstr(sqlite3_extended_errcode(db)),
                   "repository: %s: %s", what, sqlite3_errmsg(db));
}

/* The status of a failure already described in err (by prep or db_err). */
static ns_status failed(const ns_error *err)
{
    return err && err->code != NS_OK ? err->code : NS_EDB;
}

static ns_status exec_sql(sqlite3 *db, const char *sql, ns_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ns_status s = ns__err(err, db_code(db), sqlite3_errstr(sqlite3_extended_errcode(db)),
                              "repository: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return s;
    }
    return NS_OK;
}

/* Prepares `sql` and binds the arguments described by `fmt`: i = int64,
 * s = text (NULL binds NULL), d = double. */
static sqlite3_stmt *prep(sqlite3 *db, ns_error *err, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_err(db, err, "prepare");
        return NULL;
    }
    /* A mismatch between the format and the SQL is a programming error:
     * report it instead of reading stray arguments. */
    if ((size_t)sqlite3_bind_parameter_count(st) != (fmt ? strlen(fmt) : 0)) {
        ns__err(err, NS_EINVAL, NULL, "repository: internal error: %d parameters, %zu bound: %s",
                sqlite3_bind_parameter_count(st), fmt ? strlen(fmt) : 0, sql);
        sqlite3_finalize(st);
        return NULL;
    }
    va_start(ap, fmt);
    int rc = SQLITE_OK;
    for (int i = 1; rc == SQLITE_OK && fmt && *fmt; fmt++, i++) {
        if (*fmt == 'i') {
            rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
        } else if (*fmt == 'd') {
            rc = sqlite3_bind_double(st, i, va_arg(ap, double));
        } else {
            const char *s = va_arg(ap, const char *);
            if (s) /* a copy: can fail for want of memory */
                rc = sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
        }
    }
    va_end(ap);
    if (rc != SQLITE_OK) {
        db_err(db, err, "bind");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* Steps a statement that returns no row (or ignores it) and finalizes it. */
static ns_status run(sqlite3 *db, sqlite3_stmt *st, ns_error *err, const char *what)
{
    if (!st)
        return failed(err);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return db_err(db, err, what);
    return NS_OK;
}

/*
 * Reading a row. sqlite3_step's answer is a row, the end, or an error (out of
 * memory included) that must not read as "no such row"; a column's text is
 * converted on demand and comes back NULL when that conversion finds no
 * memory: *oom records it, so no caller acts on an empty value it never had.
 */
static ns_status next_row(sqlite3 *db, sqlite3_stmt *st, bool *row, ns_error *err, const char *what)
{
    int rc = sqlite3_step(st);
    *row = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? NS_OK : db_err(db, err, what);
}

/* Column i as text, "" for SQL NULL. */
static const char *col_text(sqlite3_stmt *st, int i, bool *oom)
{
    int type = sqlite3_column_type(st, i);
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t && type != SQLITE_NULL && type != SQLITE_BLOB)
        *oom = true;
    return t ? (const char *)t : "";
}

/* A copy of column i's text (see col_text); NULL sets *oom. */
static char *col_dup(sqlite3_stmt *st, int i, bool *oom)
{
    char *d = ns__strdup(col_text(st, i, oom));
    if (!d)
        *oom = true;
    return d;
}

static ns_status oom_reading(ns_error *err, const char *what)
{
    return ns__err(err, NS_ENOMEM, NULL, "repository: out of memory reading %s", what);
}

static ns_status migrate(sqlite3 *db, ns_error *err)
{
    ns_status s;
    int version = 0;
    sqlite3_stmt *st = NULL;

    if ((s = exec_sql(db, "BEGIN IMMEDIATE", err)) != NS_OK)
        return s;
    if ((s = exec_sql(db, "CREATE TABLE IF NOT EXISTS ns_schema (version INTEGER NOT NULL)", err)))
        goto out;
    bool have;
    if (!(st = prep(db, err, "SELECT version FROM ns_schema", NULL))) {
        s = failed(err);
        goto out;
    }
    if ((s = next_row(db, st, &have, err, "read the schema version")) != NS_OK)
        goto out;
    if (have)
        version = sqlite3_column_int(st, 0);
    else if ((s = exec_sql(db, "INSERT INTO ns_schema VALUES (0)", err)) != NS_OK)
        goto out;
    if (version > SCHEMA_VERSION) {
        s = ns__repo_too_new(err, version, SCHEMA_VERSION);
        goto out;
    }
    for (int v = version; v < SCHEMA_VERSION; v++)
        if ((s = exec_sql(db, migrations[v], err)) != NS_OK)
            goto out;
    if (version < SCHEMA_VERSION &&
        (s = run(db,
                 prep(db, err, "UPDATE ns_schema SET version = ?", "i", (int64_t)SCHEMA_VERSION),
                 err, "migrate")) != NS_OK)
        goto out;
    s = exec_sql(db, "COMMIT", err);
out:
    sqlite3_finalize(st);
    if (s != NS_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return s;
}

/* The schema version of an open repository; -1 when it has none. */
static int schema_version(sqlite3 *db, int *rc)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    *rc = sqlite3_prepare_v2(db, "SELECT version FROM ns_schema", -1, &st, NULL);
    if (*rc == SQLITE_OK && (*rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = sqlite3_column_int(st, 0);
        *rc = SQLITE_OK;
    } else if (*rc == SQLITE_DONE) {
        *rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return v;
}

/*
 * For list and show: an existing file, opened read-only, never created nor
 * migrated (a read-only mount, another user's file). A WAL database whose
 * -shm file cannot be made (a read-only folder, no writer around) is read
 * as immutable.
 */
static ns_status sq_open_readonly(ns_repo *r, sq *q, ns_error *err)
{
    struct stat sb;
    int rc;
    if (stat(q->path, &sb) != 0)
        return ns__err(err, NS_ENOTFOUND, NULL,
                       "no repository at %s: %s (nothing has run with it yet; list and show "
                       "never create one)",
                       q->path, strerror(errno));
    if (sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return ns__err(err, NS_EDB, NULL, "repository %s: cannot open: %s", q->path,
                       q->db ? sqlite3_errmsg(q->db) : "out of memory");
    sqlite3_busy_timeout(q->db, 30000);
    int version = schema_version(q->db, &rc);
    if (rc == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_READONLY) {
        ns_buf uri = {0};
        ns__buf_printf(&uri, "file:");
        for (const char *p = q->path; *p; p++)
            ns__buf_printf(&uri, strchr("?#%", *p) ? "%%%02X" : "%c", (unsigned char)*p);
        ns__buf_printf(&uri, "?immutable=1");
        sqlite3_close(q->db);
        q->db = NULL;
        rc = sqlite3_open_v2(ns__buf_cstr(&uri), &q->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
                             NULL);
        ns__buf_free(&uri);
        if (rc != SQLITE_OK)
            return ns__err(err, NS_EDB, NULL, "repository %s: cannot open: %s", q->path,
                           q->db ? sqlite3_errmsg(q->db) : "out of memory");
        version = schema_version(q->db, &rc);
    }
    if (rc != SQLITE_OK && strstr(sqlite3_errmsg(q->db), "no such table"))
        return ns__err(err, NS_ENOTFOUND, NULL, "%s is not a nightshift repository", q->path);
    if (rc != SQLITE_OK)
        return ns__err(err, NS_EDB, NULL, "repository %s: %s", q->path, sqlite3_errmsg(q->db));
    if (version > SCHEMA_VERSION)
        return ns__repo_too_new(err, version, SCHEMA_VERSION);
    sqlite3_stmt *st = NULL;
    bool oom = false;
    if (version >= 2 &&
        sqlite3_prepare_v2(q->db, "SELECT id FROM ns_repository", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(r->id, sizeof(r->id), "%s", col_text(st, 0, &oom));
    sqlite3_finalize(st);
    if (sqlite3_errcode(q->db) == SQLITE_NOMEM || oom)
        return oom_reading(err, "its identity");
    return NS_OK;
}

static ns_status sq_open(ns_repo *r, const char *url, ns_error *err)
{
    sq *q = calloc(1, sizeof(*q));
    ns_status s;

    if (!q)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (!(q->path = ns__strdup(url + 7))) {
        free(q);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    if (!*q->path) {
        free(q->path);
        free(q);
        return ns__err(err, NS_EINVAL, NULL, "repository '%s': missing path after sqlite:", url);
    }
    if (r->readonly) {
        if ((s = sq_open_readonly(r, q, err)) != NS_OK) {
            sqlite3_close(q->db);
            free(q->path);
            free(q);
            return s;
        }
        r->impl = q;
        return NS_OK;
    }
    if (sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        s = ns__err(err, NS_EDB, NULL, "repository %s: cannot open: %s", q->path,
                    q->db ? sqlite3_errmsg(q->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(q->db, 30000);
    if ((s = exec_sql(q->db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                      "PRAGMA foreign_keys=ON",
                      err)) != NS_OK)
        goto fail;
    if ((s = migrate(q->db, err)) != NS_OK)
        goto fail;
    sqlite3_stmt *st = prep(q->db, err, "SELECT id FROM ns_repository", NULL);
    bool have = false, oom = false;
    if (!st || (s = next_row(q->db, st, &have, err, "read its identity")) != NS_OK) {
        sqlite3_finalize(st);
        s = failed(err);
        goto fail;
    }
    if (!have) {
        sqlite3_finalize(st);
        s = ns__err(err, NS_EDB, NULL, "repository %s: it has no identity (ns_repository)",
                    q->path);
        goto fail;
    }
    snprintf(r->id, sizeof(r->id), "%s", col_text(st, 0, &oom));
    sqlite3_finalize(st);
    if (oom) {
        s = oom_reading(err, "its identity");
        goto fail;
    }
    r->impl = q;
    return NS_OK;
fail:
    ns__err_prefix(err, "%s", url);
    sqlite3_close(q->db);
    free(q->path);
    free(q);
    return s;
}

static void sq_close(ns_repo *r)
{
    sq *q = r->impl;
    if (!q)
        return;
    sqlite3_close_v2(q->db);
    free(q->path);
    free(q);
}

/* The repository's connection when `url` names its file (the same inode). */
static void *sq_shared(ns_repo *r, const char *url, void *conn)
{
    struct stat a, b;
    (void)conn;
    sq *q = r->impl;
    if (strncmp(url, "sqlite:", 7) != 0 || stat(q->path, &a) != 0 || stat(url + 7, &b) != 0)
        return NULL;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino ? q->db : NULL;
}

static ns_status last_exec(sqlite3 *db, int64_t instance, ns_last_exec *le, bool *have,
                           ns_error *err)
{
    sqlite3_stmt *st = prep(db, err,
                            "SELECT id, status, host, pid, heartbeat, process_start"
                            " FROM ns_job_execution"
                            " WHERE instance_id = ? ORDER BY id DESC LIMIT 1",
                            "i", instance);
    if (!st)
        return failed(err);
    bool oom = false;
    ns_status s = next_row(db, st, have, err, "read last execution");
    if (s == NS_OK && *have) {
        le->id = sqlite3_column_int64(st, 0);
        le->status = ns_batch_status_parse(col_text(st, 1, &oom));
        snprintf(le->host, sizeof(le->host), "%s", col_text(st, 2, &oom));
        le->pid = sqlite3_column_int64(st, 3);
        if (!ns__parse_iso(col_text(st, 4, &oom), &le->heartbeat))
            le->heartbeat = 0;
        le->process_start = sqlite3_column_int64(st, 5);
    }
    sqlite3_finalize(st);
    return s == NS_OK && oom ? oom_reading(err, "the last execution") : s;
}

/* Marks a dead execution and its running steps FAILED. */
/* The running steps of a dead execution marked FAILED with it. */
static ns_status fail_steps(sqlite3 *db, int64_t id, const char *now, ns_error *err)
{
    return run(db,
               prep(db, err,
                    "UPDATE ns_step_execution SET status = 'FAILED', exit_code = 'FAILED',"
                    " exit_message = 'the process died', ended_at = ?, last_updated = ?,"
                    " version = version + 1"
                    " WHERE execution_id = ? AND status IN ('STARTING', 'STARTED', 'STOPPING')",
                    "ssi", now, now, id),
               err, "mark dead steps");
}

static ns_status mark_dead(sqlite3 *db, const ns_last_exec *le, const char *now, char *notice,
                           size_t n, ns_error *err)
{
    char msg[512];
    ns_status s;

    snprintf(msg, sizeof(msg),
             "process %lld on %s stopped without recording an end (killed or crashed); "
             "marked FAILED when the instance was launched again",
             (long long)le->pid, le->host);
    s = run(db,
            prep(db, err,
                 "UPDATE ns_job_execution SET status = 'FAILED', exit_code = 'FAILED',"
                 " exit_message = ?, ended_at = ?, last_updated = ?, version = version + 1"
                 " WHERE id = ?",
                 "sssi", msg, now, now, le->id),
            err, "mark dead execution");
    if (s == NS_OK)
        s = fail_steps(db, le->id, now, err);
    if (snprintf(notice, n, "execution %lld: %s", (long long)le->id, msg) < 0)
        notice[0] = '\0';
    return s;
}

static ns_status sq_mark_dead(ns_repo *r, int64_t id, const char *heartbeat, const char *message,
                              ns_error *err)
{
    sqlite3 *db = DB(r);
    char now[40];
    ns_status s;
    ns__now_iso(now, sizeof(now));
    if ((s = exec_sql(db, "BEGIN IMMEDIATE", err)) != NS_OK)
        return s;
    s = run(db,
            prep(db, err,
                 "UPDATE ns_job_execution SET status = 'FAILED', exit_code = 'FAILED',"
                 " exit_message = ?, ended_at = ?, last_updated = ?, version = version + 1"
                 " WHERE id = ? AND status IN ('STARTING', 'STARTED', 'STOPPING')"
                 " AND heartbeat = ?",
                 "sssis", message, now, now, id, heartbeat),
            err, "mark dead execution");
    if (s == NS_OK && sqlite3_changes(db) != 1)
        s = ns__err(err, NS_ECONFLICT, NULL,
                    "execution %lld renewed its heartbeat or ended meanwhile: left as it is",
                    (long long)id);
    if (s == NS_OK)
        s = fail_steps(db, id, now, err);
    if (s == NS_OK)
        return exec_sql(db, "COMMIT", err);
    exec_sql(db, "ROLLBACK", NULL);
    return s;
}

/* The executions a purge deletes, into temp.ns_purge (see ns_repo_purge).
 * The newest execution stays: SQLite gives a new row the largest id plus
 * one, and an id must never be given twice (rejects files and checkpoints
 * name executions by it). */
#define PURGE_CANDIDATES                                                                           \
    "INSERT INTO temp.ns_purge (id) SELECT id FROM ("                                              \
    " SELECT e.id, e.status, e.created_at,"                                                        \
    "  row_number() OVER (PARTITION BY i.job_name ORDER BY e.id DESC) AS rn,"                      \
    "  first_value(e.status) OVER (PARTITION BY e.instance_id ORDER BY e.id DESC) AS last"         \
    " FROM ns_job_execution e JOIN ns_job_instance i ON i.id = e.instance_id"                      \
    " WHERE ?1 IS NULL OR i.job_name = ?1) x"                                                      \
    " WHERE last IN ('COMPLETED', 'ABANDONED')"                                                    \
    " AND status IN ('COMPLETED', 'FAILED', 'STOPPED', 'ABANDONED')"                               \
    " AND (?2 IS NULL OR created_at < ?2) AND (?3 IS NULL OR rn > CAST(?3 AS INTEGER))"            \
    " AND id < (SELECT max(id) FROM ns_job_execution)"

static int64_t count_of(sqlite3 *db, const char *sql, ns_error *err, ns_status *s)
{
    sqlite3_stmt *st = *s == NS_OK ? prep(db, err, sql, NULL) : NULL;
    bool row = false;
    int64_t n = 0;
    if (*s == NS_OK && !st)
        *s = failed(err);
    if (st && (*s = next_row(db, st, &row, err, "purge")) == NS_OK && row)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static ns_status sq_purge(ns_repo *r, const char *job, const char *before, int64_t keep_last,
                          bool dry_run, void (*context)(void *arg, int64_t id, const char *ctx),
                          void *arg, ns_purge_counts *out, ns_error *err)
{
    sqlite3 *db = DB(r);
    char keep[24];
    ns_status s;
    memset(out, 0, sizeof(*out));
    snprintf(keep, sizeof(keep), "%lld", (long long)keep_last);
    if ((s = exec_sql(db,
                      "CREATE TEMP TABLE IF NOT EXISTS ns_purge (id INTEGER PRIMARY KEY);"
                      " DELETE FROM temp.ns_purge",
                      err)) != NS_OK ||
        (s = exec_sql(db, "BEGIN IMMEDIATE", err)) != NS_OK)
        return s;
    s = run(db, prep(db, err, PURGE_CANDIDATES, "sss", job, before, keep_last > 0 ? keep : NULL),
            err, "purge: choose");
    out->executions = count_of(db, "SELECT count(*) FROM temp.ns_purge", err, &s);
    out->steps = count_of(db,
                          "SELECT count(*) FROM ns_step_execution WHERE execution_id IN"
                          " (SELECT id FROM temp.ns_purge)",
                          err, &s);
    out->params = count_of(db,
                           "SELECT count(*) FROM ns_job_param WHERE execution_id IN"
                           " (SELECT id FROM temp.ns_purge)",
                           err, &s);
    out->contexts = count_of(db,
                             "SELECT count(*) FROM ns_execution_context WHERE step_execution_id IN"
                             " (SELECT id FROM ns_step_execution WHERE execution_id IN"
                             " (SELECT id FROM temp.ns_purge))",
                             err, &s);
    /* Instances left with nothing keep their last status. */
    if (s == NS_OK && !dry_run)
        s = exec_sql(db,
                     "UPDATE ns_job_instance SET purged = (SELECT e.status FROM ns_job_execution e"
                     " WHERE e.instance_id = ns_job_instance.id ORDER BY e.id DESC LIMIT 1)"
                     " WHERE id IN (SELECT e.instance_id FROM ns_job_execution e"
                     " WHERE e.id IN (SELECT id FROM temp.ns_purge))"
                     " AND NOT EXISTS (SELECT 1 FROM ns_job_execution e WHERE e.instance_id ="
                     " ns_job_instance.id AND e.id NOT IN (SELECT id FROM temp.ns_purge))",
                     err);
    if (s == NS_OK && !dry_run)
        out->instances = sqlite3_changes(db);
    if (s == NS_OK && context) {
        sqlite3_stmt *st = prep(db, err,
                                "SELECT s.execution_id, c.context FROM ns_execution_context c"
                                " JOIN ns_step_execution s ON s.id = c.step_execution_id"
                                " WHERE s.execution_id IN (SELECT id FROM temp.ns_purge)",
                                NULL);
        bool row = true, oom = false;
        s = st ? NS_OK : failed(err);
        while (s == NS_OK && (s = next_row(db, st, &row, err, "purge: contexts")) == NS_OK && row)
            context(arg, sqlite3_column_int64(st, 0), col_text(st, 1, &oom));
        sqlite3_finalize(st);
    }
    if (s != NS_OK || dry_run) {
        exec_sql(db, "ROLLBACK", NULL);
        return s;
    }
    /* In batches of 10,000 executions, one transaction each (the first
     * one's holds the choice and the instances' marks), so the file is not
     * locked for the whole purge. */
    static const char *const batch =
        "CREATE TEMP TABLE IF NOT EXISTS ns_purge_batch (id INTEGER PRIMARY KEY);"
        "DELETE FROM temp.ns_purge_batch;"
        "INSERT INTO temp.ns_purge_batch SELECT id FROM temp.ns_purge ORDER BY id LIMIT 10000;"
        "DELETE FROM ns_execution_context WHERE step_execution_id IN (SELECT id FROM"
        " ns_step_execution WHERE execution_id IN (SELECT id FROM temp.ns_purge_batch));"
        "DELETE FROM ns_step_execution WHERE execution_id IN (SELECT id FROM temp.ns_purge_batch);"
        "DELETE FROM ns_job_param WHERE execution_id IN (SELECT id FROM temp.ns_purge_batch);"
        "DELETE FROM ns_job_execution WHERE id IN (SELECT id FROM temp.ns_purge_batch);"
        "DELETE FROM temp.ns_purge WHERE id IN (SELECT id FROM temp.ns_purge_batch);";
    int64_t left = out->executions;
    while (s == NS_OK && left > 0) {
        if ((s = exec_sql(db, batch, err)) == NS_OK && (s = exec_sql(db, "COMMIT", err)) == NS_OK)
            left -= 10000;
        if (s == NS_OK && left > 0)
            s = exec_sql(db, "BEGIN IMMEDIATE", err);
    }
    if (s != NS_OK)
        exec_sql(db, "ROLLBACK", NULL);
    else if (out->executions == 0)
        s = exec_sql(db, "COMMIT", err);
    return s;
}

static ns_status sq_launch(ns_repo *r, const ns_launch_req *req, ns_launch_res *res, ns_error *err)
{
    sqlite3 *db = DB(r);
    ns_status s;
    char now[40], run_id[32] = "", why[512];
    int64_t instance = 0;
    ns_last_exec le;
    bool have = false;
    ns_param_val *all = NULL;
    size_t nall = 0;

    memset(res, 0, sizeof(*res));
    if ((s = exec_sql(db, "BEGIN IMMEDIATE", err)) != NS_OK)
        return s;
    ns__now_iso(now, sizeof(now));
    if (req->next) {
        sqlite3_stmt *st = prep(db, err,
                                "INSERT INTO ns_run_id (job_name, last) VALUES (?, 1)"
                                " ON CONFLICT (job_name) DO UPDATE SET last = last + 1"
                                " RETURNING last",
                                "s", req->job_name);
        if (!st || sqlite3_step(st) != SQLITE_ROW) {
            sqlite3_finalize(st);
            s = db_err(db, err, "next run.id");
            goto out;
        }
        res->run_id = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        snprintf(run_id, sizeof(run_id), "%lld", (long long)res->run_id);
    }
    if ((s = ns__launch_params(req, req->next ? run_id : NULL, &all, &nall, res->job_key, err)) !=
        NS_OK)
        goto out;
    /* A run.id given by hand moves the --next counter past it, so --next
     * always gives an id no instance has. */
    for (size_t i = 0; !req->next && i < nall; i++)
        if (strcmp(all[i].name, "run.id") == 0 &&
            (s = run(db,
                     prep(db, err,
                          "INSERT INTO ns_run_id (job_name, last) VALUES (?, CAST(? AS INTEGER))"
                          " ON CONFLICT (job_name) DO UPDATE SET last = max(last, excluded.last)",
                          "ss", req->job_name, all[i].value),
                     err, "record run.id")) != NS_OK)
            goto out;
    if ((s = run(db,
                 prep(db, err,
                      "INSERT OR IGNORE INTO ns_job_instance (job_name, job_key, created_at)"
                      " VALUES (?, ?, ?)",
                      "sss", req->job_name, res->job_key, now),
                 err, "create instance")) != NS_OK)
        goto out;
    sqlite3_stmt *st =
        prep(db, err, "SELECT id FROM ns_job_instance WHERE job_name = ? AND job_key = ?", "ss",
             req->job_name, res->job_key);
    if (!st || sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        s = db_err(db, err, "find instance");
        goto out;
    }
    instance = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if ((s = last_exec(db, instance, &le, &have, err)) != NS_OK)
        goto out;
    /* No execution left: one purged (its history deleted) still counts. */
    if (!have) {
        sqlite3_stmt *pst =
            prep(db, err, "SELECT purged FROM ns_job_instance WHERE id = ?", "i", instance);
        bool row = false, oom = false;
        if (!pst || (s = next_row(db, pst, &row, err, "read instance")) != NS_OK) {
            sqlite3_finalize(pst);
            s = pst ? s : failed(err);
            goto out;
        }
        const char *purged = row ? col_text(pst, 0, &oom) : NULL;
        if (purged && *purged) {
            le = (ns_last_exec){.status = ns_batch_status_parse(purged)};
            have = true;
        }
        sqlite3_finalize(pst);
    }
    ns_launch_action a =
        ns__launch_decide(&le, have, req->restartable, req->lease, why, sizeof(why));
    if (a == NS_LAUNCH_RECOVER) {
        if ((s = mark_dead(db, &le, now, res->notice, sizeof(res->notice), err)) != NS_OK)
            goto out;
        le.status = NS_BATCH_FAILED;
        a = ns__launch_decide(&le, have, req->restartable, req->lease, why, sizeof(why));
    }
    if (a == NS_LAUNCH_REFUSE) {
        /* Keep a recovery (the dead execution is FAILED either way). */
        if (res->notice[0])
            exec_sql(db, "COMMIT", err);
        else
            exec_sql(db, "ROLLBACK", NULL);
        free(all);
        res->refused = le.status;
        return ns__err(err, NS_EREFUSED, NULL, "job %s: %s", req->job_name, why);
    }
    res->restart_of = a == NS_LAUNCH_RESTART ? le.id : 0;
    char restart_of[32];
    snprintf(restart_of, sizeof(restart_of), "%lld", (long long)res->restart_of);
    if ((s = run(db,
                 prep(db, err,
                      "INSERT INTO ns_job_execution (instance_id, status, job_file, workdir,"
                      " created_at, last_updated, host, pid, process_start, heartbeat,"
                      " restart_of, scheduled_at)"
                      " VALUES (?, 'STARTING', ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS INTEGER), ?)",
                      "isssssiisss", instance, req->job_path ? req->job_path : "",
                      req->workdir ? req->workdir : "", now, now, ns__hostname(), (int64_t)getpid(),
                      ns__process_start(getpid()), now, res->restart_of ? restart_of : NULL,
                      req->tick_at ? req->scheduled_at : NULL),
                 err, "create execution")) != NS_OK)
        goto out;
    res->execution_id = sqlite3_last_insert_rowid(db);
    res->instance_id = instance;
    for (size_t i = 0; i < nall; i++) {
        const ns_param_val *p = &all[i];
        if ((s = run(db,
                     prep(db, err,
                          "INSERT INTO ns_job_param (execution_id, name, type, value, identifying)"
                          " VALUES (?, ?, ?, ?, ?)",
                          "isssi", res->execution_id, p->name, p->type, p->value,
                          (int64_t)p->identifying),
                     err, "save parameters")) != NS_OK)
            goto out;
    }
    /* A tick starts this execution once: only while it is PENDING. */
    if (req->tick_at) {
        if ((s = run(db,
                     prep(db, err,
                          "UPDATE ns_tick SET state = 'STARTED', execution_id = ?, params_key = ?"
                          " WHERE job_name = ? AND at = ? AND state = 'PENDING'",
                          "issi", res->execution_id, req->params_key ? req->params_key : "",
                          req->job_name, req->tick_at),
                     err, "start the tick")) != NS_OK)
            goto out;
        if (sqlite3_changes(db) != 1) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            free(all);
            return ns__err(err, NS_EREFUSED, NULL,
                           "job %s: the tick of %s is not waiting to start (started or given "
                           "up by a scheduler)",
                           req->job_name, req->scheduled_at ? req->scheduled_at : "?");
        }
    }
    s = exec_sql(db, "COMMIT", err);
out:
    free(all);
    if (s != NS_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return s;
}

/* ------------------------------------------------------------- ticks */

static void tick_row(sqlite3_stmt *st, ns_tick *t, bool *oom)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->job, sizeof(t->job), "%s", col_text(st, 0, oom));
    t->at = sqlite3_column_int64(st, 1);
    snprintf(t->local_time, sizeof(t->local_time), "%s", col_text(st, 2, oom));
    snprintf(t->state, sizeof(t->state), "%s", col_text(st, 3, oom));
    snprintf(t->reason, sizeof(t->reason), "%s", col_text(st, 4, oom));
    t->execution_id = sqlite3_column_int64(st, 5);
    snprintf(t->params_key, sizeof(t->params_key), "%s", col_text(st, 6, oom));
    snprintf(t->claimed_by, sizeof(t->claimed_by), "%s", col_text(st, 7, oom));
    t->claimed_at = sqlite3_column_double(st, 8);
}
#define TICK_COLUMNS                                                                               \
    "job_name, at, local_time, state, reason, execution_id, params_key, claimed_by, claimed_at"

static ns_status sq_tick_claim(ns_repo *r, const ns_tick *t, bool *inserted, ns_error *err)
{
    sqlite3 *db = DB(r);
    ns_status s = run(db,
                      prep(db, err,
                           "INSERT INTO ns_tick (job_name, at, local_time, state, reason,"
                           " claimed_by, claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                           " ON CONFLICT (job_name, at) DO NOTHING",
                           "sissssd", t->job, t->at, t->local_time, t->state, t->reason,
                           t->claimed_by, ns__now()),
                      err, "claim a tick");
    *inserted = s == NS_OK && sqlite3_changes(db) == 1;
    return s;
}

static ns_status sq_tick_set(ns_repo *r, const char *job, int64_t at, const char *from,
                             const char *owner, const char *to, const char *reason,
                             const char *claimer, bool *changed, ns_error *err)
{
    sqlite3 *db = DB(r);
    ns_status s = run(db,
                      prep(db, err,
                           "UPDATE ns_tick SET state = ?1, reason = coalesce(?2, reason),"
                           " claimed_by = coalesce(?3, claimed_by),"
                           " claimed_at = CASE WHEN ?3 IS NULL THEN claimed_at ELSE ?4 END"
                           " WHERE job_name = ?5 AND at = ?6 AND state = ?7"
                           " AND (?8 IS NULL OR claimed_by = ?8)",
                           "sssdsiss", to, reason, claimer, ns__now(), job, at, from, owner),
                      err, "update a tick");
    *changed = s == NS_OK && sqlite3_changes(db) == 1;
    return s;
}

static ns_status sq_tick_get(ns_repo *r, const char *job, int64_t at, ns_tick *out, bool *found,
                             ns_error *err)
{
    sqlite3 *db = DB(r);
    bool oom = false;
    sqlite3_stmt *st =
        prep(db, err, "SELECT " TICK_COLUMNS " FROM ns_tick WHERE job_name = ? AND at = ?", "si",
             job, at);
    ns_status s = st ? next_row(db, st, found, err, "read a tick") : failed(err);
    if (s == NS_OK && *found)
        tick_row(st, out, &oom);
    sqlite3_finalize(st);
    return s == NS_OK && oom ? ns__err(err, NS_ENOMEM, NULL, "out of memory reading a tick") : s;
}

static ns_status sq_tick_last(ns_repo *r, const char *job, int64_t *at, bool *found, ns_error *err)
{
    sqlite3 *db = DB(r);
    bool row = false;
    sqlite3_stmt *st = prep(db, err, "SELECT max(at) FROM ns_tick WHERE job_name = ?", "s", job);
    ns_status s = st ? next_row(db, st, &row, err, "read the last tick") : failed(err);
    *found = s == NS_OK && row && sqlite3_column_type(st, 0) != SQLITE_NULL;
    *at = *found ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return s;
}

static ns_status sq_tick_pending(ns_repo *r, const char *job, ns_tick **out, size_t *n,
                                 ns_error *err)
{
    sqlite3 *db = DB(r);
    bool have = false, oom = false;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = prep(db, err,
                            "SELECT " TICK_COLUMNS " FROM ns_tick WHERE state = 'PENDING'"
                            " AND job_name = ? ORDER BY at",
                            "s", job);
    ns_status s = st ? NS_OK : failed(err);
    while (s == NS_OK && (s = next_row(db, st, &have, err, "read ticks")) == NS_OK && have) {
        if (*n == cap) {
            ns_tick *v = realloc(*out, (cap = cap ? cap * 2 : 4) * sizeof(**out));
            if (!v) {
                s = ns__err(err, NS_ENOMEM, NULL, "out of memory reading ticks");
                break;
            }
            *out = v;
        }
        tick_row(st, &(*out)[(*n)++], &oom);
    }
    sqlite3_finalize(st);
    if (s == NS_OK && oom)
        s = ns__err(err, NS_ENOMEM, NULL, "out of memory reading ticks");
    if (s != NS_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return s;
}

static ns_status sq_tick_touch(ns_repo *r, const char *claimer, ns_error *err)
{
    sqlite3 *db = DB(r);
    return run(db,
               prep(db, err,
                    "UPDATE ns_tick SET claimed_at = ? WHERE state = 'PENDING' AND claimed_by = ?",
                    "ds", ns__now(), claimer),
               err, "renew ticks");
}

static ns_status sq_tick_prev_run(ns_repo *r, const char *job, const char *params_key,
                                  char run_id[32], bool *found, ns_error *err)
{
    sqlite3 *db = DB(r);
    bool oom = false;
    sqlite3_stmt *st = prep(db, err,
                            "SELECT (SELECT value FROM ns_job_param p WHERE p.execution_id ="
                            " t.execution_id AND p.name = 'run.id') FROM ns_tick t"
                            " WHERE t.job_name = ? AND t.params_key = ? AND t.state = 'STARTED'"
                            " ORDER BY t.at DESC LIMIT 1",
                            "ss", job, params_key);
    ns_status s = st ? next_row(db, st, found, err, "read the previous tick") : failed(err);
    run_id[0] = '\0';
    if (s == NS_OK && *found)
        snprintf(run_id, 32, "%s", col_text(st, 0, &oom));
    sqlite3_finalize(st);
    return s == NS_OK && oom ? ns__err(err, NS_ENOMEM, NULL, "out of memory reading a tick") : s;
}

static ns_status sq_exec_info(ns_repo *r, int64_t id, ns_exec_info *out, ns_error *err)
{
    sqlite3 *db = DB(r);
    ns_exec_info info;
    sqlite3_stmt *st;

    memset(&info, 0, sizeof(info));
    st = prep(db, err,
              "SELECT e.id, e.instance_id, e.status, i.job_name, e.job_file, e.workdir"
              " FROM ns_job_execution e JOIN ns_job_instance i ON i.id = e.instance_id"
              " WHERE e.id = ?",
              "i", id);
    if (!st)
        return failed(err);
    bool have, oom = false;
    ns_status s = next_row(db, st, &have, err, "read execution");
    if (s != NS_OK || !have) {
        sqlite3_finalize(st);
        return s != NS_OK ? s
                          : ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld in %s",
                                    (long long)id, r->url);
    }
    info.id = id;
    info.instance_id = sqlite3_column_int64(st, 1);
    info.status = ns_batch_status_parse(col_text(st, 2, &oom));
    info.job_name = col_dup(st, 3, &oom);
    info.job_path = col_dup(st, 4, &oom);
    info.workdir = col_dup(st, 5, &oom);
    sqlite3_finalize(st);
    st = prep(db, err,
              "SELECT name, type, value, identifying FROM ns_job_param WHERE execution_id = ?"
              " ORDER BY name",
              "i", id);
    if (!st) {
        ns__exec_info_free(&info);
        return failed(err);
    }
    while (!oom && (s = next_row(db, st, &have, err, "read parameters")) == NS_OK && have) {
        ns_param_val *p = realloc(info.params, (info.nparams + 1) * sizeof(*p));
        if (!p) {
            oom = true;
            break;
        }
        info.params = p;
        p = &info.params[info.nparams++];
        p->name = col_dup(st, 0, &oom);
        p->type = col_dup(st, 1, &oom);
        p->value = col_dup(st, 2, &oom);
        p->identifying = sqlite3_column_int(st, 3) != 0;
    }
    sqlite3_finalize(st);
    if (s != NS_OK || oom) {
        ns__exec_info_free(&info);
        return s != NS_OK ? s : oom_reading(err, "an execution");
    }
    *out = info;
    return NS_OK;
}

static ns_status sq_exec_status(ns_repo *r, int64_t id, ns_batch_status status,
                                const char *exit_code, const char *message, bool ended,
                                ns_error *err)
{
    sqlite3 *db = DB(r);
    char now[40];

    ns__now_iso(now, sizeof(now));
    /* Optimistic: read the version, update only that version; a concurrent
     * `stop` bumps it, in which case read again. */
    for (int attempt = 0; attempt < 5; attempt++) {
        sqlite3_stmt *st =
            prep(db, err, "SELECT version FROM ns_job_execution WHERE id = ?", "i", id);
        if (!st)
            return failed(err);
        bool have;
        ns_status s = next_row(db, st, &have, err, "read execution");
        if (s != NS_OK || !have) {
            sqlite3_finalize(st);
            return s != NS_OK
                       ? s
                       : ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld", (long long)id);
        }
        int64_t version = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        const char *sql = ended ? "UPDATE ns_job_execution SET status = ?, exit_code = ?,"
                                  " exit_message = ?, ended_at = ?, last_updated = ?,"
                                  " version = version + 1 WHERE id = ? AND version = ?"
                                : "UPDATE ns_job_execution SET status = ?, exit_code = ?,"
                                  " exit_message = ?, started_at = ?, last_updated = ?,"
                                  " version = version + 1 WHERE id = ? AND version = ?";
        s = run(db,
                prep(db, err, sql, "sssssii", ns_batch_status_name(status),
                     exit_code ? exit_code : ns_batch_status_name(status), message ? message : "",
                     now, now, id, version),
                err, "update execution");
        if (s != NS_OK)
            return s;
        if (sqlite3_changes(db) == 1)
            return NS_OK;
    }
    return ns__err(err, NS_ECONFLICT, NULL, "execution %lld: concurrent updates", (long long)id);
}

static ns_status sq_step_state(ns_repo *r, int64_t instance, const char *step, ns_step_state *out,
                               ns_error *err)
{
    sqlite3 *db = DB(r);
    sqlite3_stmt *st = prep(db, err,
                            "SELECT s.id, s.status, c.context, s.exit_code FROM ns_step_execution s"
                            " LEFT JOIN ns_execution_context c ON c.step_execution_id = s.id"
                            " WHERE s.instance_id = ? AND s.step_name = ? AND s.partition_name = ''"
                            " ORDER BY s.id DESC LIMIT 1",
                            "is", instance, step);
    memset(out, 0, sizeof(*out));
    if (!st)
        return failed(err);
    bool have, oom = false;
    ns_status s = next_row(db, st, &have, err, "read step");
    if (s == NS_OK && have) {
        out->last_id = sqlite3_column_int64(st, 0);
        out->completed = strcmp(col_text(st, 1, &oom), "COMPLETED") == 0;
        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
            out->context = col_dup(st, 2, &oom);
        snprintf(out->exit_code, sizeof(out->exit_code), "%s", col_text(st, 3, &oom));
    }
    sqlite3_finalize(st);
    if (s == NS_OK && oom) {
        free(out->context);
        memset(out, 0, sizeof(*out));
        return oom_reading(err, "a step");
    }
    return s;
}

static ns_status sq_step_begin(ns_repo *r, int64_t execution_id, const char *step, ns_step_exec *se,
                               ns_error *err)
{
    sqlite3 *db = DB(r);
    char now[40];

    ns__now_iso(now, sizeof(now));
    ns_status s = run(db,
                      prep(db, err,
                           "INSERT INTO ns_step_execution (execution_id, instance_id, step_name,"
                           " status, started_at, last_updated)"
                           " SELECT id, instance_id, ?, 'STARTED', ?, ? FROM ns_job_execution"
                           " WHERE id = ?",
                           "sssi", step, now, now, execution_id),
                      err, "create step execution");
    if (s != NS_OK)
        return s;
    memset(se, 0, sizeof(*se));
    se->id = sqlite3_last_insert_rowid(db);
    se->execution_id = execution_id;
    return NS_OK;
}

/* Writes counters and context of a step execution at version se->version. */
static ns_status save_step(sqlite3 *db, ns_step_exec *se, const char *status, const char *exit_code,
                           const char *message, ns_error *err)
{
    char now[40];
    const ns_counts *c = &se->counts;

    ns__now_iso(now, sizeof(now));
    ns_status s = run(db,
                      prep(db, err,
                           "UPDATE ns_step_execution SET read_count = ?, write_count = ?,"
                           " filter_count = ?, read_skip_count = ?, process_skip_count = ?,"
                           " write_skip_count = ?, commit_count = ?, rollback_count = ?,"
                           " retry_count = ?, last_updated = ?, status = coalesce(?, status),"
                           " exit_code = coalesce(?, exit_code),"
                           " exit_message = coalesce(?, exit_message),"
                           " ended_at = CASE WHEN ? IS NULL THEN ended_at ELSE ? END,"
                           " version = version + 1 WHERE id = ? AND version = ?",
                           "iiiiiiiiissssssii", c->read, c->write, c->filter, c->read_skip,
                           c->process_skip, c->write_skip, c->commit, c->rollback, c->retry, now,
                           status, exit_code, message, status, now, se->id, se->version),
                      err, "update step execution");
    if (s != NS_OK)
        return s;
    if (sqlite3_changes(db) != 1)
        return ns__err(err, NS_ECONFLICT, NULL,
                       "step execution %lld was changed by another process", (long long)se->id);
    se->version++;
    if (se->context)
        s = run(db,
                prep(db, err,
                     "INSERT INTO ns_execution_context (step_execution_id, context) VALUES (?, ?)"
                     " ON CONFLICT (step_execution_id) DO UPDATE SET context = excluded.context",
                     "is", se->id, se->context),
                err, "save context");
    return s;
}

static ns_status sq_step_update(ns_repo *r, ns_step_exec *se, bool *stop, ns_error *err)
{
    sqlite3 *db = DB(r);
    bool own = sqlite3_get_autocommit(db) != 0; /* else: inside the writer's transaction */
    char now[40];
    ns_status s;

    if (own && (s = exec_sql(db, "BEGIN IMMEDIATE", err)) != NS_OK)
        return s;
    if ((s = save_step(db, se, NULL, NULL, NULL, err)) != NS_OK)
        goto out;
    ns__now_iso(now, sizeof(now));
    sqlite3_stmt *st = prep(db, err,
                            "UPDATE ns_job_execution SET heartbeat = ?, last_updated = ?"
                            " WHERE id = ? RETURNING stop_requested",
                            "ssi", now, now, se->execution_id);
    if (!st) {
        s = failed(err);
        goto out;
    }
    bool have;
    s = next_row(db, st, &have, err, "heartbeat");
    if (s == NS_OK && have)
        *stop = sqlite3_column_int(st, 0) != 0;
    sqlite3_finalize(st);
    if (s == NS_OK && own)
        s = exec_sql(db, "COMMIT", err);
out:
    if (s != NS_OK && own)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return s;
}

static ns_status sq_step_end(ns_repo *r, ns_step_exec *se, ns_batch_status status,
                             const char *exit_code, const char *message, ns_error *err)
{
    return save_step(DB(r), se, ns_batch_status_name(status),
                     exit_code ? exit_code : ns_batch_status_name(status), message ? message : "",
                     err);
}

static ns_status sq_step_reconcile(ns_repo *r, int64_t id, const ns_counts *c, const char *context,
                                   ns_error *err)
{
    sqlite3 *db = DB(r);
    sqlite3_stmt *st = prep(db, err, "SELECT version FROM ns_step_execution WHERE id = ?", "i", id);
    if (!st)
        return failed(err);
    bool have;
    ns_status s = next_row(db, st, &have, err, "read step");
    if (s != NS_OK || !have) {
        sqlite3_finalize(st);
        return s; /* not here: recorded in another repository, nothing to reconcile */
    }
    ns_step_exec se = {
        .id = id, .version = sqlite3_column_int64(st, 0), .counts = *c, .context = context};
    sqlite3_finalize(st);
    return save_step(db, &se, NULL, NULL, NULL, err);
}

/* The status of execution id (why an update of it changed nothing). */
static ns_status status_of(ns_repo *r, int64_t id, char *out, size_t n, ns_error *err)
{
    sqlite3 *db = DB(r);
    sqlite3_stmt *st = prep(db, err, "SELECT status FROM ns_job_execution WHERE id = ?", "i", id);
    if (!st)
        return failed(err);
    bool have, oom = false;
    ns_status s = next_row(db, st, &have, err, "read execution");
    if (s == NS_OK && have)
        snprintf(out, n, "%s", col_text(st, 0, &oom));
    sqlite3_finalize(st);
    if (s == NS_OK && !have)
        s = ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld in %s", (long long)id, r->url);
    return s == NS_OK && oom ? oom_reading(err, "an execution") : s;
}

static ns_status sq_request_stop(ns_repo *r, int64_t id, ns_error *err)
{
    sqlite3 *db = DB(r);
    char now[40];

    ns__now_iso(now, sizeof(now));
    ns_status s = run(db,
                      prep(db, err,
                           "UPDATE ns_job_execution SET stop_requested = 1, status = 'STOPPING',"
                           " last_updated = ?, version = version + 1"
                           " WHERE id = ? AND status IN ('STARTING', 'STARTED', 'STOPPING')",
                           "si", now, id),
                      err, "request stop");
    if (s != NS_OK || sqlite3_changes(db) == 1)
        return s;
    char status[40];
    if ((s = status_of(r, id, status, sizeof(status), err)) != NS_OK)
        return s;
    return ns__err(err, NS_EREFUSED, NULL, "execution %lld is not running (status %s)",
                   (long long)id, status);
}

static ns_status sq_abandon(ns_repo *r, int64_t id, ns_error *err)
{
    sqlite3 *db = DB(r);
    char now[40];

    ns__now_iso(now, sizeof(now));
    ns_status s = run(db,
                      prep(db, err,
                           "UPDATE ns_job_execution SET status = 'ABANDONED',"
                           " exit_code = 'ABANDONED', last_updated = ?,"
                           " ended_at = coalesce(ended_at, ?), version = version + 1"
                           " WHERE id = ? AND status IN ('STOPPED', 'FAILED')",
                           "ssi", now, now, id),
                      err, "abandon");
    if (s != NS_OK || sqlite3_changes(db) == 1)
        return s;
    char status[40];
    if ((s = status_of(r, id, status, sizeof(status), err)) != NS_OK)
        return s;
    return ns__err(err, NS_EREFUSED, NULL,
                   "execution %lld is %s; only STOPPED or FAILED executions can be abandoned",
                   (long long)id, status);
}

/* ------------------------------------------------------------- JSON */

/* The row as text columns, NULL for SQL NULL; false when out of memory. */
static bool row(sqlite3_stmt *st, const char **cols, int n)
{
    bool oom = false;
    for (int i = 0; i < n; i++)
        cols[i] = sqlite3_column_type(st, i) == SQLITE_NULL ? NULL : col_text(st, i, &oom);
    return !oom;
}

#define EXEC_COLUMNS                                                                               \
    "e.id, i.job_name, e.instance_id, e.status, e.exit_code, e.exit_message, e.created_at,"        \
    " e.started_at, e.ended_at, e.host, e.pid, e.restart_of, e.job_file, e.last_updated,"          \
    " e.workdir, e.heartbeat, e.process_start,"                                                    \
    " (SELECT min(r.id) FROM ns_job_execution r WHERE r.restart_of = e.id), e.scheduled_at,"       \
    " e.notify_errors"

/* An execution and its parameters; NULL with err set on failure. */
static json_t *exec_json(const ns_repo *r, sqlite3 *db, sqlite3_stmt *st, ns_error *err)
{
    const char *c[NS_MAX_NCOLS];
    bool have;
    if (!row(st, c, NS_EXEC_NCOLS)) {
        oom_reading(err, "an execution");
        return NULL;
    }
    json_t *o = ns__json_exec(r, c);
    sqlite3_stmt *p = prep(db, err,
                           "SELECT name, type, value, identifying FROM ns_job_param"
                           " WHERE execution_id = ? ORDER BY name",
                           "i", sqlite3_column_int64(st, 0));
    ns_status s = p ? NS_OK : failed(err);
    while (s == NS_OK && (s = next_row(db, p, &have, err, "read parameters")) == NS_OK && have)
        if (row(p, c, NS_PARAM_NCOLS))
            ns__json_exec_param(o, c);
        else
            s = oom_reading(err, "parameters");
    sqlite3_finalize(p);
    if (s != NS_OK) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static ns_status sq_show_json(ns_repo *r, int64_t id, char **out, ns_error *err)
{
    sqlite3 *db = DB(r);
    sqlite3_stmt *st = prep(db, err,
                            "SELECT " EXEC_COLUMNS " FROM ns_job_execution e"
                            " JOIN ns_job_instance i ON i.id = e.instance_id WHERE e.id = ?",
                            "i", id);
    if (!st)
        return failed(err);
    bool have;
    ns_status s = next_row(db, st, &have, err, "read execution");
    if (s != NS_OK || !have) {
        sqlite3_finalize(st);
        return s != NS_OK ? s
                          : ns__err(err, NS_ENOTFOUND, NULL, "no execution %lld in %s",
                                    (long long)id, r->url);
    }
    json_t *o = exec_json(r, db, st, err);
    sqlite3_finalize(st);
    if (!o)
        return failed(err);

    json_t *steps = json_array();
    const char *c[NS_MAX_NCOLS];
    st = prep(db, err,
              "SELECT s.step_name, s.partition_name, s.status, s.exit_code, s.exit_message,"
              " s.read_count, s.write_count, s.filter_count, s.read_skip_count,"
              " s.process_skip_count, s.write_skip_count, s.commit_count, s.rollback_count,"
              " s.started_at, s.ended_at, s.id, c.context, s.retry_count FROM ns_step_execution s"
              " LEFT JOIN ns_execution_context c ON c.step_execution_id = s.id"
              " WHERE s.execution_id = ? ORDER BY s.id",
              "i", id);
    s = st ? NS_OK : failed(err);
    while (s == NS_OK && (s = next_row(db, st, &have, err, "read steps")) == NS_OK && have)
        if (row(st, c, NS_STEP_NCOLS))
            json_array_append_new(steps, ns__json_step(c));
        else
            s = oom_reading(err, "steps");
    sqlite3_finalize(st);
    json_object_set_new(o, "steps", steps);
    if (s != NS_OK) {
        json_decref(o);
        return s;
    }
    return ns__json_dump(o, out, err);
}

static ns_status sq_list_json(ns_repo *r, const char *job, const char *status, int limit,
                              char **out, ns_error *err)
{
    sqlite3 *db = DB(r);
    sqlite3_stmt *st = prep(db, err,
                            "SELECT " EXEC_COLUMNS " FROM ns_job_execution e"
                            " JOIN ns_job_instance i ON i.id = e.instance_id"
                            " WHERE (?1 IS NULL OR i.job_name = ?1)"
                            " AND (?2 IS NULL OR e.status = ?2)"
                            " ORDER BY e.id DESC LIMIT ?3",
                            "ssi", job, status, (int64_t)limit);
    if (!st)
        return failed(err);
    json_t *a = json_array();
    bool have;
    ns_status s;
    while ((s = next_row(db, st, &have, err, "read executions")) == NS_OK && have) {
        json_t *e = exec_json(r, db, st, err);
        if (!e) {
            s = failed(err);
            break;
        }
        json_array_append_new(a, e);
    }
    sqlite3_finalize(st);
    if (s != NS_OK) {
        json_decref(a);
        return s;
    }
    return ns__json_dump(a, out, err);
}

/* ----------------------------------------------------- notifications */

static ns_status sq_notify_failed(ns_repo *r, int64_t id, const char *line, ns_error *err)
{
    sqlite3 *db = DB(r);
    return run(
        db,
        prep(db, err,
             "UPDATE ns_job_execution SET notify_errors = coalesce(notify_errors || char(10),"
             " '') || ? WHERE id = ?",
             "si", line, id),
        err, "record a notification failure");
}

static ns_status sq_notify_slot(ns_repo *r, const char *target, double now, double gap, double *at,
                                ns_error *err)
{
    sqlite3 *db = DB(r);
    sqlite3_stmt *st = prep(db, err,
                            "INSERT INTO ns_notify_slot (target, next_at) VALUES (?1, ?2 + ?3)"
                            " ON CONFLICT (target) DO UPDATE SET next_at = max(next_at, ?2) + ?3"
                            " RETURNING next_at - ?3",
                            "sdd", target, now, gap);
    if (!st)
        return failed(err);
    int rc = sqlite3_step(st);
    *at = rc == SQLITE_ROW ? sqlite3_column_double(st, 0) : now;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? NS_OK : db_err(db, err, "reserve a notification slot");
}

const ns_repo_vt ns__repo_sqlite = {
    .name = "sqlite",
    .version = 1,
    .open = sq_open,
    .shared = sq_shared,
    .close = sq_close,
    .launch = sq_launch,
    .exec_info = sq_exec_info,
    .exec_status = sq_exec_status,
    .step_state = sq_step_state,
    .step_begin = sq_step_begin,
    .step_update = sq_step_update,
    .step_end = sq_step_end,
    .step_reconcile = sq_step_reconcile,
    .request_stop = sq_request_stop,
    .abandon = sq_abandon,
    .mark_dead = sq_mark_dead,
    .purge = sq_purge,
    .show_json = sq_show_json,
    .list_json = sq_list_json,
    .tick_claim = sq_tick_claim,
    .tick_set = sq_tick_set,
    .tick_get = sq_tick_get,
    .tick_last = sq_tick_last,
    .tick_pending = sq_tick_pending,
    .tick_touch = sq_tick_touch,
    .tick_prev_run = sq_tick_prev_run,
    .notify_failed = sq_notify_failed,
    .notify_slot = sq_notify_slot,
};
