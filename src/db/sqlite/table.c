/*
 * table.c - the `table` writer on an SQLite target.
 *
 * Input fields are mapped to the table's columns by name before anything
 * runs. Each value is checked against its column's declared type and NOT
 * NULL in the client (coltype.c), then bound natively (integers as int64).
 * Constraints only the database knows (UNIQUE, CHECK, foreign keys,
 * triggers) are isolated for free: in SQLite a failing INSERT rolls back only
 * its own statement, so the chunk's transaction continues with the next row
 * and the good rows commit without replaying anything. The earlier of two
 * rows colliding on a key is the one kept, since rows go in file order.
 *
 * The checkpoint (docs/internals.md, "Exactly-once restart") is a row of nightshift_checkpoint in
 * the target, written in the chunk's own transaction.
 */
#include "db/sqlite/sqlite.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct tcol {
    char *name;
    ns_coltype ct;
    bool notnull, rowid_alias;
} tcol;

typedef struct sqlite_writer {
    ns_writer base;
    sqlite3 *db;
    bool own_db;
    char *where; /* "connection 'target' (sqlite:x.db)" for messages */
    char *table;
    ns_write_mode mode;
    tcol *cols; /* one per input field, in input order */
    size_t ncols;
    sqlite3_stmt *ins, *ckpt_get, *ckpt_put, *ckpt_owner;
    bool in_txn, replaced;
    /* A stop request or the statement_timeout reaches a statement, or a
     * wait for another connection's lock, through the watchdog. */
    ns_watchdog *wd;
    double limit; /* statement_timeout, seconds (0: none) */
    ns_sqwait wait;
} sqlite_writer;

static void guard(sqlite_writer *w)
{
    ns__sqwait_arm(&w->wait, w->wd, w->limit);
}

/* After a guarded call: a failure the watchdog caused is said as such. */
static ns_status unguard(sqlite_writer *w, ns_status st, ns_error *err)
{
    return ns__watchdog_end(w->wd, st, err, w->where, "the statement", w->limit);
}

#define CKPT_TABLE                                                                                 \
    "CREATE TABLE IF NOT EXISTS nightshift_checkpoint ("                                           \
    "  job_name TEXT NOT NULL,"                                                                    \
    "  job_key TEXT NOT NULL,"                                                                     \
    "  step_name TEXT NOT NULL,"                                                                   \
    "  partition_name TEXT NOT NULL DEFAULT '',"                                                   \
    "  execution_id INTEGER NOT NULL,"                                                             \
    "  step_execution_id INTEGER NOT NULL,"                                                        \
    "  context TEXT NOT NULL,"                                                                     \
    "  updated_at TEXT NOT NULL,"                                                                  \
    "  PRIMARY KEY (job_name, job_key, step_name, partition_name))"

static ns_status db_fail(sqlite_writer *w, ns_error *err, const char *what)
{
    return ns__err(err, sqlite3_errcode(w->db) == SQLITE_NOMEM ? NS_ENOMEM : NS_EDB,
                   sqlite3_errstr(sqlite3_extended_errcode(w->db)), "%s: %s: %s", w->where, what,
                   sqlite3_errmsg(w->db));
}

static ns_status exec(sqlite_writer *w, const char *sql, ns_error *err)
{
    if (sqlite3_exec(w->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(w, err, sql);
    return NS_OK;
}

typedef struct tinfo {
    char *name, *type;
    bool notnull, has_default, generated;
    int pk;
} tinfo;

static void free_tinfo(tinfo *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].type);
    }
    free(t);
}

static ns_status read_table(sqlite_writer *w, tinfo **out, size_t *n, ns_error *err)
{
    sqlite3_stmt *st = NULL;
    tinfo *t = NULL;
    size_t cnt = 0;

    if (sqlite3_prepare_v2(w->db,
                           "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk, hidden"
                           " FROM pragma_table_xinfo(?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(w, err, "read table definition");
    sqlite3_bind_text(st, 1, w->table, -1, SQLITE_STATIC);
    /* A definition read in part (out of memory) would be a table without
     * some of its columns: the step fails instead. */
    int rc;
    bool oom = false;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        tinfo *p = realloc(t, (cnt + 1) * sizeof(*t));
        if (!p) {
            oom = true;
            break;
        }
        t = p;
        p = &t[cnt++];
        const unsigned char *name = sqlite3_column_text(st, 0), *ty = sqlite3_column_text(st, 1);
        p->name = name ? ns__strdup((const char *)name) : NULL;
        p->type = ns__strdup(ty ? (const char *)ty : "");
        oom = !p->name || !p->type ||
              (!ty && sqlite3_column_type(st, 1) != SQLITE_NULL); /* "" is not NULL */
        p->notnull = sqlite3_column_int(st, 2) != 0;
        p->has_default = sqlite3_column_int(st, 3) != 0;
        p->pk = sqlite3_column_int(st, 4);
        p->generated = sqlite3_column_int(st, 5) >= 2;
    }
    if (oom || rc != SQLITE_DONE) {
        ns_status s = oom ? ns__err(err, NS_ENOMEM, NULL, "%s: out of memory reading table %s",
                                    w->where, w->table)
                          : db_fail(w, err, "read table definition");
        sqlite3_finalize(st);
        free_tinfo(t, cnt);
        return s;
    }
    sqlite3_finalize(st);
    if (cnt == 0) {
        free(t);
        return ns__err(err, NS_ESCHEMA, NULL, "%s: table '%s' does not exist", w->where, w->table);
    }
    *out = t;
    *n = cnt;
    return NS_OK;
}

static bool is_key(const ns_writer_cfg *cfg, const char *col)
{
    for (size_t k = 0; k < cfg->nkey; k++)
        if (strcasecmp(cfg->key[k], col) == 0)
            return true;
    return false;
}

static ns_status build_insert(sqlite_writer *w, const ns_writer_cfg *cfg, ns_error *err)
{
    ns_buf b = {0};
    ns_status st = NS_OK;

    if (w->mode == NS_MODE_UPDATE) {
        /* ?N is input column N, so rows bind the same way in every mode. */
        ns__buf_printf(&b, "UPDATE ");
        ns__buf_ident(&b, w->table);
        size_t set = 0;
        for (size_t i = 0; i < w->ncols; i++) {
            if (is_key(cfg, w->cols[i].name))
                continue;
            ns__buf_printf(&b, set++ ? ", " : " SET ");
            ns__buf_ident(&b, w->cols[i].name);
            ns__buf_printf(&b, " = ?%zu", i + 1);
        }
        if (!set) {
            ns__buf_free(&b);
            return ns__err(err, NS_ESCHEMA, NULL,
                           "%s: mode: update needs input columns besides the key", w->where);
        }
        for (size_t i = 0, k = 0; i < w->ncols; i++) {
            if (!is_key(cfg, w->cols[i].name))
                continue;
            ns__buf_printf(&b, k++ ? " AND " : " WHERE ");
            ns__buf_ident(&b, w->cols[i].name);
            ns__buf_printf(&b, " = ?%zu", i + 1);
        }
        goto prepare;
    }
    ns__buf_printf(&b, "INSERT INTO ");
    ns__buf_ident(&b, w->table);
    ns__buf_printf(&b, " (");
    for (size_t i = 0; i < w->ncols; i++) {
        if (i)
            ns__buf_printf(&b, ", ");
        ns__buf_ident(&b, w->cols[i].name);
    }
    ns__buf_printf(&b, ") VALUES (");
    for (size_t i = 0; i < w->ncols; i++)
        ns__buf_printf(&b, i ? ", ?" : "?");
    ns__buf_printf(&b, ")");
    if (w->mode == NS_MODE_UPSERT) {
        ns__buf_printf(&b, " ON CONFLICT (");
        for (size_t i = 0; i < cfg->nkey; i++) {
            if (i)
                ns__buf_printf(&b, ", ");
            ns__buf_ident(&b, cfg->key[i]);
        }
        ns__buf_printf(&b, ") DO ");
        size_t set = 0;
        for (size_t i = 0; i < w->ncols; i++) {
            bool is_key = false;
            for (size_t k = 0; k < cfg->nkey; k++)
                is_key |= strcasecmp(cfg->key[k], w->cols[i].name) == 0;
            if (is_key)
                continue;
            ns__buf_printf(&b, set++ ? ", " : "UPDATE SET ");
            ns__buf_ident(&b, w->cols[i].name);
            ns__buf_printf(&b, " = excluded.");
            ns__buf_ident(&b, w->cols[i].name);
        }
        if (!set)
            ns__buf_printf(&b, "NOTHING");
    }
prepare:
    if (sqlite3_prepare_v2(w->db, ns__buf_cstr(&b), -1, &w->ins, NULL) != SQLITE_OK)
        st = ns__err(err, NS_ESCHEMA, NULL, "%s: table %s: %s", w->where, w->table,
                     sqlite3_errmsg(w->db));
    ns__buf_free(&b);
    return st;
}

static ns_status sw_open(ns_writer *base, const ns_writer_cfg *cfg, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    tinfo *t = NULL;
    size_t nt = 0;
    ns_status st;

    w->where = ns__strdup(cfg->conn_name);
    w->table = cfg->table ? ns__strdup(cfg->table) : NULL;
    w->mode = cfg->mode;
    w->wd = cfg->watchdog;
    w->limit = cfg->stmt_limit;
    if (!w->where || (cfg->table && !w->table))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    sqlite3 *shared = ns__writer_share(cfg, NULL);
    if (shared) {
        /* The repository's connection: its 30 s wait, which a stop request
         * now ends too (given back at close). */
        w->db = shared;
        base->shared = true;
        ns__sqwait_init(&w->wait, w->db, 30);
    } else {
        w->own_db = true;
        /* An SQL step may create the database (its script makes the
         * tables); a table writer needs its table, so its file must exist. */
        int flags =
            SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (cfg->table ? 0 : SQLITE_OPEN_CREATE);
        if (cfg->table == NULL && ns__mkdir_parents(cfg->url + 7, NULL) != NS_OK)
            return ns__err(err, NS_EIO, NULL, "%s: cannot create its directory", w->where);
        struct stat sb;
        if (cfg->table && stat(cfg->url + 7, &sb) != 0 && errno == ENOENT)
            return ns__err(err, NS_ESCHEMA, NULL,
                           "%s: the database file does not exist (a table writer needs its "
                           "table; a sql: step before it can create both)",
                           w->where);
        if (sqlite3_open_v2(cfg->url + 7, &w->db, flags, NULL) != SQLITE_OK)
            return ns__err(err, NS_EDB, NULL, "%s: cannot open the database: %s", w->where,
                           w->db ? sqlite3_errmsg(w->db) : "out of memory");
        /* A lock held by another connection is waited for up to 30 s, or
         * the connection's statement_timeout when shorter; then SQLITE_BUSY,
         * which the step's retry policy retries. A stop request ends the
         * wait at once (busy()). */
        ns__sqwait_init(&w->wait, w->db,
                        cfg->stmt_limit > 0 && cfg->stmt_limit < 30 ? cfg->stmt_limit : 30);
        /* A larger page cache keeps index maintenance of big loads in memory. */
        if ((st = exec(w, "PRAGMA cache_size = -65536", err)) != NS_OK)
            return st;
    }
    if ((st = exec(w, "PRAGMA foreign_keys = ON", err)) != NS_OK)
        return st;
    if (!cfg->table)
        goto checkpoint; /* the connection only */
    if ((st = read_table(w, &t, &nt, err)) != NS_OK)
        return st;

    int npk = 0;
    for (size_t i = 0; i < nt; i++)
        npk += t[i].pk > 0;
    if (!(w->cols = calloc(cfg->ncolumns ? cfg->ncolumns : 1, sizeof(*w->cols)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    /* used[k]: 1 + the input column mapped to table column k, 0 when none. */
    size_t *used = calloc(nt, sizeof(*used));
    if (!used) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cfg->ncolumns && st == NS_OK; i++) {
        size_t k = 0;
        while (k < nt && strcasecmp(t[k].name, cfg->columns[i]) != 0)
            k++;
        if (k == nt) {
            ns_buf names = {0};
            for (size_t j = 0; j < nt; j++)
                if (!t[j].generated)
                    ns__buf_printf(&names, "%s%s", names.len ? ", " : "", t[j].name);
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input column '%s' has no column in table %s (its columns: %s)",
                         cfg->columns[i], w->table, ns__buf_cstr(&names));
            ns__buf_free(&names);
            break;
        }
        if (t[k].generated) {
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input column '%s' is a generated column of table %s and cannot be "
                         "written",
                         cfg->columns[i], w->table);
            break;
        }
        if (used[k]) {
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input columns '%s' and '%s' both name column %s of table %s (names "
                         "match without regard to case); rename one",
                         cfg->columns[used[k] - 1], cfg->columns[i], t[k].name, w->table);
            break;
        }
        used[k] = i + 1;
        tcol *c = &w->cols[w->ncols++];
        if (!(c->name = ns__strdup(t[k].name))) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            break;
        }
        ns__coltype_parse(t[k].type, &c->ct);
        c->notnull = t[k].notnull;
        c->rowid_alias = t[k].pk == 1 && npk == 1 && strcasecmp(t[k].type, "INTEGER") == 0;
        if (c->rowid_alias) /* NULL means "assign the next rowid" */
            c->notnull = false;
    }
    for (size_t k = 0; k < nt && st == NS_OK; k++) {
        bool alias = t[k].pk == 1 && npk == 1 && strcasecmp(t[k].type, "INTEGER") == 0;
        if (!used[k] && t[k].notnull && !t[k].has_default && !alias && !t[k].generated &&
            w->mode != NS_MODE_UPDATE)
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "column %s.%s is NOT NULL without a default, but the input has no "
                         "column '%s'",
                         w->table, t[k].name, t[k].name);
    }
    free(used);
    for (size_t i = 0; i < cfg->nkey && st == NS_OK; i++) {
        bool found = false;
        for (size_t k = 0; k < w->ncols; k++)
            found |= strcasecmp(cfg->key[i], w->cols[k].name) == 0;
        if (!found)
            st = ns__err(err, NS_ESCHEMA, NULL, "upsert key column '%s' is not in the input",
                         cfg->key[i]);
    }
    if (st != NS_OK)
        goto out;
    if ((st = build_insert(w, cfg, err)) != NS_OK)
        goto out;
checkpoint:
    if ((st = exec(w, CKPT_TABLE, err)) != NS_OK)
        goto out;
    /* The claim (see sw_checkpoint) and the fenced save (see sw_commit). */
    if (sqlite3_prepare_v2(
            w->db,
            "INSERT INTO nightshift_checkpoint (job_name, job_key, step_name, partition_name,"
            " execution_id, step_execution_id, context, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, '', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
            " ON CONFLICT (job_name, job_key, step_name, partition_name) DO UPDATE SET"
            " execution_id = excluded.execution_id,"
            " step_execution_id = excluded.step_execution_id, updated_at = excluded.updated_at"
            " RETURNING context",
            -1, &w->ckpt_get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(
            w->db,
            "INSERT INTO nightshift_checkpoint (job_name, job_key, step_name, partition_name,"
            " execution_id, step_execution_id, context, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
            " ON CONFLICT (job_name, job_key, step_name, partition_name) DO UPDATE SET"
            " step_execution_id = excluded.step_execution_id,"
            " context = excluded.context, updated_at = excluded.updated_at"
            " WHERE nightshift_checkpoint.execution_id = excluded.execution_id",
            -1, &w->ckpt_put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(w->db,
                           "SELECT execution_id, context FROM nightshift_checkpoint"
                           " WHERE job_name = ?"
                           " AND job_key = ? AND step_name = ? AND partition_name = ?",
                           -1, &w->ckpt_owner, NULL) != SQLITE_OK)
        st = db_fail(w, err, "prepare checkpoint");
out:
    free_tinfo(t, nt);
    return st;
}

static void bind_key(sqlite3_stmt *st, const ns_ckpt_key *k)
{
    sqlite3_bind_text(st, 1, k->job_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->job_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, k->step, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, k->partition ? k->partition : "", -1, SQLITE_STATIC);
}

static ns_status sw_checkpoint(ns_writer *base, const ns_ckpt_key *key, char **context,
                               ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    const char *ctx;
    *context = NULL;
    if (key->reclaim) {
        /* Still ours (see ns_ckpt_key.reclaim)? No row: claimed below. */
        bind_key(w->ckpt_owner, key);
        int rc = sqlite3_step(w->ckpt_owner);
        int64_t owner = rc == SQLITE_ROW ? sqlite3_column_int64(w->ckpt_owner, 0) : -1;
        ctx = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(w->ckpt_owner, 1) : NULL;
        if (rc == SQLITE_ROW && owner == key->execution_id && ctx && ctx[0] &&
            !(*context = ns__strdup(ctx)))
            rc = SQLITE_NOMEM;
        sqlite3_reset(w->ckpt_owner);
        if (rc == SQLITE_NOMEM)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return db_fail(w, err, "claim checkpoint");
        if (rc == SQLITE_ROW)
            return owner == key->execution_id ? NS_OK : ns__fenced(err, key, owner);
    }
    bind_key(w->ckpt_get, key);
    sqlite3_bind_int64(w->ckpt_get, 5, key->execution_id);
    sqlite3_bind_int64(w->ckpt_get, 6, key->step_execution_id);
    int rc = sqlite3_step(w->ckpt_get);
    *context = NULL;
    if (rc == SQLITE_ROW && (ctx = (const char *)sqlite3_column_text(w->ckpt_get, 0)) && ctx[0] &&
        !(*context = ns__strdup(ctx)))
        rc = SQLITE_NOMEM;
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(w->ckpt_get);
    sqlite3_reset(w->ckpt_get);
    if (rc != SQLITE_DONE) {
        free(*context);
        *context = NULL;
        return rc == SQLITE_NOMEM ? ns__err(err, NS_ENOMEM, NULL, "out of memory")
                                  : db_fail(w, err, "claim checkpoint");
    }
    return NS_OK;
}

/* The checkpoint row is no longer ours: another execution claimed it. */
static ns_status sw_fenced(sqlite_writer *w, const ns_ckpt_key *key, ns_error *err)
{
    int64_t owner = -1;
    bind_key(w->ckpt_owner, key);
    if (sqlite3_step(w->ckpt_owner) == SQLITE_ROW)
        owner = sqlite3_column_int64(w->ckpt_owner, 0);
    sqlite3_reset(w->ckpt_owner);
    return ns__fenced(err, key, owner);
}

static ns_status begin(sqlite_writer *w, ns_error *err)
{
    ns_status st;
    if (w->in_txn)
        return NS_OK;
    if ((st = exec(w, "BEGIN IMMEDIATE", err)) != NS_OK)
        return st;
    w->in_txn = true;
    if (w->mode == NS_MODE_REPLACE && !w->replaced) {
        ns_buf b = {0};
        ns__buf_printf(&b, "DELETE FROM ");
        ns__buf_ident(&b, w->table);
        st = exec(w, ns__buf_cstr(&b), err);
        ns__buf_free(&b);
        w->replaced = st == NS_OK;
    }
    return st;
}

/* Maps an SQLite constraint failure to a SQLSTATE and the column it names. */
static void reject_constraint(sqlite_writer *w, ns_item *it, ns_arena *a)
{
    int ext = sqlite3_extended_errcode(w->db);
    const char *msg = sqlite3_errmsg(w->db);

    switch (ext) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID:
        it->code = "23505";
        break;
    case SQLITE_CONSTRAINT_NOTNULL:
        it->code = "23502";
        break;
    case SQLITE_CONSTRAINT_CHECK:
        it->code = "23514";
        break;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        it->code = "23503";
        break;
    case SQLITE_CONSTRAINT_TRIGGER:
        it->code = "P0001";
        break;
    default:
        it->code = "23000";
    }
    it->message = ns__arena_strndup(a, msg, strlen(msg));
    /* "UNIQUE constraint failed: users.email" names one column; a list
     * ("users.a, users.b") names none in particular. */
    const char *colon = strstr(msg, "failed: ");
    if ((ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_NOTNULL ||
         ext == SQLITE_CONSTRAINT_PRIMARYKEY) &&
        colon && !strchr(colon, ',')) {
        const char *dot = strrchr(colon, '.');
        if (dot)
            it->column = ns__arena_strndup(a, dot + 1, strlen(dot + 1));
    }
}

static ns_status sw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    sqlite3_stmt *ins = w->ins;
    ns_status st;
    char msg[256];

    if ((st = begin(w, err)) != NS_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        ns_item *it = &items[i];
        bool bad = false;
        for (size_t j = 0; j < w->ncols && !bad; j++) {
            const ns_value *v = &it->fields[j];
            const tcol *c = &w->cols[j];
            int bi = (int)j + 1;
            if (!v->ptr) {
                if (c->notnull) {
                    it->code = "23502";
                    it->column = c->name;
                    snprintf(msg, sizeof(msg),
                             "null value in column \"%s\" violates not-null constraint", c->name);
                    it->message = ns__arena_strndup(a, msg, strlen(msg));
                    bad = true;
                } else {
                    sqlite3_bind_null(ins, bi);
                }
                continue;
            }
            ns_bound b;
            const char *code;
            if (memchr(v->ptr, '\0', v->len)) {
                /* SQLite would store it; PostgreSQL refuses it: the same job
                 * must behave the same on both. */
                it->code = "22021";
                it->column = c->name;
                it->message = "invalid byte sequence for encoding \"UTF8\": 0x00 (text cannot "
                              "hold NUL bytes)";
                bad = true;
            } else if (!ns__coltype_check(&c->ct, v->ptr, v->len, &b, &code, msg, sizeof(msg))) {
                it->code = code;
                it->column = c->name;
                it->message = ns__arena_strndup(a, msg, strlen(msg));
                bad = true;
            } else if (b.kind == NS_B_INT) {
                sqlite3_bind_int64(ins, bi, b.i);
            } else if (b.kind == NS_B_REAL) {
                sqlite3_bind_double(ins, bi, b.d);
            } else {
                sqlite3_bind_text(ins, bi, b.len ? b.p : "", (int)b.len, SQLITE_STATIC);
            }
        }
        if (bad)
            continue;
        int rc = sqlite3_step(ins);
        if (rc == SQLITE_DONE) {
            sqlite3_reset(ins);
            if (w->mode == NS_MODE_UPDATE && sqlite3_changes(w->db) == 0) {
                it->code = "NS_NO_ROW";
                it->message = "no row of the table has this key";
            }
            continue;
        }
        if ((rc & 0xff) == SQLITE_CONSTRAINT ||
            (sqlite3_extended_errcode(w->db) & 0xff) == SQLITE_CONSTRAINT) {
            reject_constraint(w, it, a);
            sqlite3_reset(ins);
            continue;
        }
        /* step's own answer: errcode may already be another call's */
        st = ns__err(err, rc == SQLITE_NOMEM ? NS_ENOMEM : NS_EDB,
                     sqlite3_errstr(sqlite3_extended_errcode(w->db)),
                     "%s: writing the record of line %lld into %s: %s", w->where,
                     (long long)it->line, w->table,
                     sqlite3_errcode(w->db) == rc ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc));
        sqlite3_reset(ins);
        return st;
    }
    return NS_OK;
}

/* Prepares statement `no` of a script with its :name parameters bound. */
static ns_status prepare_bound(sqlite_writer *w, const char *stmt, size_t len, size_t no,
                               const ns_sql_args *args, sqlite3_stmt **out, ns_error *err)
{
    ns_buf text = {0};
    const char **vals = NULL;
    size_t nvals = 0;
    char missing[128];
    ns_status st = ns__sql_bind(stmt, len, NS_PH_QNUM, args->names, args->values, args->n, &text,
                                &vals, &nvals, missing, sizeof(missing));
    if (st == NS_EPARAM)
        return ns__err(err, NS_EPARAM, NULL, "%s: statement %zu: :%s has no value", w->where, no,
                       missing);
    if (st != NS_OK)
        return ns__err(err, st, NULL, "out of memory");
    if (sqlite3_prepare_v2(w->db, ns__buf_cstr(&text), -1, out, NULL) != SQLITE_OK) {
        char what[64];
        snprintf(what, sizeof(what), "statement %zu", no);
        st = db_fail(w, err, what);
    }
    for (size_t i = 0; st == NS_OK && i < nvals; i++) {
        /* Typed like the parameter, so `LIMIT :n` and arithmetic work. */
        const char *type = NULL;
        for (size_t k = 0; k < args->n; k++)
            if (args->values[k] == vals[i])
                type = args->types ? args->types[k] : NULL;
        int64_t iv;
        char *end;
        if (type && strcmp(type, "int") == 0 && ns__parse_i64(vals[i], strlen(vals[i]), &iv))
            sqlite3_bind_int64(*out, (int)i + 1, iv);
        else if (type && strcmp(type, "float") == 0 && (strtod(vals[i], &end), !*end))
            sqlite3_bind_double(*out, (int)i + 1, strtod(vals[i], NULL));
        else
            sqlite3_bind_text(*out, (int)i + 1, vals[i], -1, SQLITE_TRANSIENT);
    }
    ns__buf_free(&text);
    free(vals);
    return st;
}

static ns_status sw_exec(ns_writer *base, const char *stmt, size_t len, size_t no,
                         const ns_sql_args *args, int64_t *changed, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    sqlite3_stmt *st = NULL;
    ns_status s;
    if ((s = begin(w, err)) != NS_OK ||
        (s = prepare_bound(w, stmt, len, no, args, &st, err)) != NS_OK)
        return s;
    /* Rows changed by this statement only (sqlite3_changes() keeps the
     * previous statement's count through DDL). */
    sqlite3_int64 before = sqlite3_total_changes64(w->db);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE) {
        char what[64];
        snprintf(what, sizeof(what), "statement %zu", no);
        s = db_fail(w, err, what);
    } else {
        *changed += sqlite3_total_changes64(w->db) - before;
    }
    sqlite3_finalize(st);
    return s;
}

static ns_status sw_query(ns_writer *base, const char *sql, const ns_sql_args *args, ns_row_fn row,
                          void *arg, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    sqlite3_stmt *st = NULL;
    ns_status s = prepare_bound(w, sql, strlen(sql), 1, args, &st, err);
    if (s != NS_OK)
        return s;
    int n = sqlite3_column_count(st);
    const char **names = calloc((size_t)n + 1, sizeof(*names));
    const char **vals = calloc((size_t)n + 1, sizeof(*vals));
    /* A value with NUL bytes in it is shown whole ("\x00"), not cut at the
     * first: its copy is made in `nul` (at[i]: where), placed once the row
     * is read. */
    ns_buf nul = {0};
    size_t *at = NULL;
    if (!names || !vals) {
        s = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        names[i] = sqlite3_column_name(st, i);
    if (!row(arg, (size_t)n, names, NULL))
        goto out;
    int rc;
    if (!(at = calloc((size_t)n + 1, sizeof(*at)))) {
        s = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        nul.len = 0;
        for (int i = 0; i < n; i++) {
            const char *t = (const char *)sqlite3_column_text(st, i);
            size_t len = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
            vals[i] = t;
            at[i] = SIZE_MAX;
            if (!t || strlen(t) == len)
                continue;
            at[i] = nul.len;
            for (size_t k = 0; k < len; k++)
                if (t[k])
                    ns__buf_putc(&nul, t[k]);
                else
                    ns__buf_append(&nul, "\\x00", 4);
            ns__buf_putc(&nul, '\0');
        }
        if (nul.failed) {
            s = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            goto out;
        }
        for (int i = 0; i < n; i++)
            if (at[i] != SIZE_MAX)
                vals[i] = nul.data + at[i];
        if (!row(arg, (size_t)n, names, vals))
            goto out;
    }
    if (rc != SQLITE_DONE)
        s = db_fail(w, err, "query");
out:
    ns__buf_free(&nul);
    free(at);
    free(names);
    free(vals);
    sqlite3_finalize(st);
    return s;
}

typedef struct sq_cursor {
    ns_cursor base;
    sqlite_writer *w;
    sqlite3_stmt *st;
    const char **names, **vals;
} sq_cursor;

static ns_status sqc_next(ns_cursor *base, const char *const **values, bool *eof, ns_error *err)
{
    sq_cursor *c = (sq_cursor *)base;
    int rc = sqlite3_step(c->st);
    *eof = rc == SQLITE_DONE;
    if (rc == SQLITE_DONE)
        return NS_OK;
    if (rc != SQLITE_ROW)
        return db_fail(c->w, err, "query");
    for (size_t i = 0; i < base->ncols; i++)
        c->vals[i] = (const char *)sqlite3_column_text(c->st, (int)i);
    *values = c->vals;
    return NS_OK;
}

static void sqc_close(ns_cursor *base)
{
    sq_cursor *c = (sq_cursor *)base;
    sqlite3_finalize(c->st);
    free(c->names);
    free(c->vals);
    free(c);
}

static ns_status sw_cursor(ns_writer *base, const char *sql, const ns_sql_args *args,
                           const char *const *key, size_t nkey, ns_cursor **out, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    ns_buf q = {0};
    ns_status st;
    sq_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    /* The sort spills to temporary files past the page cache's size: a
     * small cache keeps a compare's memory low whatever the row count (the
     * 64 MiB one made for loads took 270 MB for 4M rows a side). */
    if ((st = exec(w, "PRAGMA cache_size = -8192", err)) != NS_OK) {
        free(c);
        return st;
    }
    /* SQLite sorts NULLs first and text by bytes (BINARY) already. */
    ns__buf_printf(&q, "SELECT * FROM (%s) AS ns_q ORDER BY ", sql);
    for (size_t i = 0; i < nkey; i++) {
        ns__buf_printf(&q, i ? ", CAST(" : "CAST(");
        ns__buf_ident(&q, key[i]);
        ns__buf_printf(&q, " AS TEXT)");
    }
    st = prepare_bound(w, ns__buf_cstr(&q), q.len, 1, args, &c->st, err);
    ns__buf_free(&q);
    if (st != NS_OK) {
        free(c);
        return st;
    }
    size_t n = (size_t)sqlite3_column_count(c->st);
    c->w = w;
    c->names = calloc(n + 1, sizeof(*c->names));
    c->vals = calloc(n + 1, sizeof(*c->vals));
    if (!c->names || !c->vals) {
        sqc_close(&c->base);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        c->names[i] = sqlite3_column_name(c->st, (int)i);
    c->base = (ns_cursor){n, c->names, sqc_next, sqc_close};
    *out = &c->base;
    return NS_OK;
}

static ns_status sw_commit(ns_writer *base, const ns_ckpt_key *key, const char *context,
                           ns_commit_hook hook, void *arg, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    ns_status st;

    if ((st = begin(w, err)) != NS_OK)
        return st;
    bind_key(w->ckpt_put, key);
    sqlite3_bind_int64(w->ckpt_put, 5, key->execution_id);
    sqlite3_bind_int64(w->ckpt_put, 6, key->step_execution_id);
    sqlite3_bind_text(w->ckpt_put, 7, context, -1, SQLITE_STATIC);
    int rc = sqlite3_step(w->ckpt_put);
    sqlite3_reset(w->ckpt_put);
    if (rc != SQLITE_DONE)
        return db_fail(w, err, "save checkpoint");
    if (sqlite3_changes(w->db) != 1)
        return sw_fenced(w, key, err);
    if (hook && (st = hook(arg, err)) != NS_OK)
        return st;
    if (sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        st = db_fail(w, err, "commit");
        if ((sqlite3_extended_errcode(w->db) & 0xff) == SQLITE_CONSTRAINT)
            ns__err_prefix(err, "a deferred constraint failed at commit, so the chunk could not "
                                "be isolated row by row");
        return st;
    }
    w->in_txn = false;
    return NS_OK;
}

static void sw_rollback(ns_writer *base)
{
    sqlite_writer *w = (sqlite_writer *)base;
    if (w->in_txn && !sqlite3_get_autocommit(w->db))
        sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
    w->in_txn = false;
    w->replaced = false;
}

static void sw_close(ns_writer *base)
{
    sqlite_writer *w = (sqlite_writer *)base;
    sw_rollback(base);
    sqlite3_finalize(w->ins);
    sqlite3_finalize(w->ckpt_get);
    sqlite3_finalize(w->ckpt_put);
    sqlite3_finalize(w->ckpt_owner);
    if (w->own_db)
        sqlite3_close_v2(w->db);
    else if (w->db) {
        sqlite3_progress_handler(w->db, 0, NULL, NULL);
        sqlite3_busy_timeout(w->db, 30000); /* the repository's own wait again */
    }
    for (size_t i = 0; i < w->ncols; i++)
        free(w->cols[i].name);
    free(w->cols);
    free(w->where);
    free(w->table);
}

static bool sw_single(ns_writer *base)
{
    return ((sqlite_writer *)base)->mode == NS_MODE_REPLACE;
}

/* The calls that may wait on another connection's lock or run long, under
 * the watchdog. Opening too: its first statements wait for a lock. */
static ns_status g_open(ns_writer *base, const ns_writer_cfg *cfg, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    w->wd = cfg->watchdog;
    w->limit = cfg->stmt_limit;
    guard(w);
    return unguard(w, sw_open(base, cfg, err), err);
}

static ns_status g_checkpoint(ns_writer *base, const ns_ckpt_key *key, char **context,
                              ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    guard(w);
    return unguard(w, sw_checkpoint(base, key, context, err), err);
}

static ns_status g_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    guard(w);
    return unguard(w, sw_write(base, items, n, a, err), err);
}

static ns_status g_commit(ns_writer *base, const ns_ckpt_key *key, const char *context,
                          ns_commit_hook hook, void *arg, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    guard(w);
    return unguard(w, sw_commit(base, key, context, hook, arg, err), err);
}

static ns_status g_exec(ns_writer *base, const char *stmt, size_t len, size_t no,
                        const ns_sql_args *args, int64_t *changed, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    guard(w);
    return unguard(w, sw_exec(base, stmt, len, no, args, changed, err), err);
}

static ns_status g_query(ns_writer *base, const char *sql, const ns_sql_args *args, ns_row_fn row,
                         void *arg, ns_error *err)
{
    sqlite_writer *w = (sqlite_writer *)base;
    guard(w);
    return unguard(w, sw_query(base, sql, args, row, arg, err), err);
}

static const ns_sql_vt sqlite_sql = {g_exec, g_query, sw_cursor};

const ns_writer_vt ns__writer_table_sqlite = {
    .name = "table:sqlite",
    .version = NS_WRITER_VERSION,
    .caps = NS_WRITER_TRANSACTIONAL,
    .instance_size = sizeof(sqlite_writer),
    .open = g_open,
    .checkpoint = g_checkpoint,
    .write = g_write,
    .commit = g_commit,
    .rollback = sw_rollback,
    .close = sw_close,
    .single_transaction = sw_single,
    .sql = &sqlite_sql,
};
