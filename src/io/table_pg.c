/*
 * table_pg.c - the `table` writer on a PostgreSQL target.
 *
 * Bulk path: each chunk is one transaction streaming its rows with
 * COPY ... FROM STDIN (text format). Before sending, every value is checked
 * against what the catalog says of its column (type, length, NOT NULL, no NUL
 * byte), so most bad rows never reach the server.
 *
 * What only the server knows (CHECK, UNIQUE, keys, triggers) is isolated
 * exactly: COPY runs inside a savepoint; an error that names its line
 * ("COPY t, line N") rejects item N, the savepoint is rolled back, the rows
 * before N are sent again and the COPY continues after N. Errors without a
 * line (foreign keys, checked after the statement) are isolated by bisection,
 * each half in its own savepoint. Good rows of a chunk always load, and the
 * earlier of two rows colliding on a key is the one kept.
 *
 * upsert and update go through a staging table: the chunk is COPYed into a
 * temporary table of the target's column types (so a bad value is still
 * named by its COPY line), then merged into the table by one statement per
 * run of records with distinct keys (by the server's own equality: " 7" is
 * 7). A merge the server refuses is bisected over its range down to the one
 * record at fault. Runs and halves keep file order, so every record meets
 * the table as the records before it left it, as if applied one by one: the
 * last record of a key wins and a refused one leaves its predecessor.
 *
 * The checkpoint (docs/internals.md, "Exactly-once restart") is a row of nightshift_checkpoint in
 * the target, written in the chunk's transaction.
 */
#include "io/io.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pcol {
    char *name;
    ns_coltype ct;
    bool notnull;
} pcol;

/*
 * A unique index whose columns are all in the input, with a Bloom filter of
 * the keys this load has sent (fixed size: memory does not grow with input).
 */
#define BLOOM_BITS (64u << 20) /* 8 MiB: ~1e-5 false positives at 1M keys */

typedef struct ukey {
    size_t *cols; /* input field of each index column */
    size_t ncols;
    uint64_t *bits; /* 64-byte aligned, inside mem */
    void *mem;      /* calloc'd: a large calloc maps zero pages lazily */
} ukey;

typedef struct pg_writer {
    ns_writer base;
    ukey *keys;
    size_t nkeys;
    size_t *held; /* items of the chunk held out of the streamed COPY */
    size_t nheld, heldcap;
    PGconn *c;
    char *where;  /* "connection 'target' (postgresql://...)" for messages */
    char *qtable; /* the table as a quoted, qualified name */
    ns_write_mode mode;
    pcol *cols; /* one per input field, in input order */
    size_t ncols;
    char *copy_sql;
    char *merge_sql;   /* upsert/update: staged rows [$1, $2) into the table */
    char *repeats_sql; /* upsert/update: staged rows repeating a key */
    size_t *key;       /* upsert/update: the input fields of the key */
    size_t nkey;
    bool in_txn, replaced;
    /* The chunk's COPY data: line k is data[off[k], off[k + 1]) and holds
     * item[k] of the chunk's items. */
    ns_buf data;
    size_t *off;
    size_t *item;
    size_t lines, cap;
    bool fed;     /* feed() has seen this chunk */
    bool copying; /* a COPY of this chunk is streaming */
    size_t sent;  /* bytes of data already sent */
} pg_writer;

#define CKPT_TABLE                                                                                 \
    "CREATE TABLE IF NOT EXISTS nightshift_checkpoint ("                                           \
    "  job_name text NOT NULL,"                                                                    \
    "  job_key text NOT NULL,"                                                                     \
    "  step_name text NOT NULL,"                                                                   \
    "  partition_name text NOT NULL DEFAULT '',"                                                   \
    "  execution_id bigint NOT NULL,"                                                              \
    "  step_execution_id bigint NOT NULL,"                                                         \
    "  context text NOT NULL,"                                                                     \
    "  updated_at timestamptz NOT NULL DEFAULT now(),"                                             \
    "  PRIMARY KEY (job_name, job_key, step_name, partition_name))"

static ns_status fail(pg_writer *w, PGresult *res, ns_error *err, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(w->c);
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    return ns__err(err, NS_EDB, state, "%s: %s: %.*s", w->where, what, (int)len, msg);
}

static ns_status exec(pg_writer *w, ns_error *err, const char *what, const char *sql, int n,
                      const char *const *v)
{
    PGresult *res = PQexecParams(w->c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(res);
    ns_status st = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? NS_OK : fail(w, res, err, what);
    PQclear(res);
    return st;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

#define STAGE "pg_temp.nightshift_stage"

static void idents(ns_buf *b, const pg_writer *w, const char *prefix, bool keys)
{
    for (size_t i = 0; i < (keys ? w->nkey : w->ncols); i++) {
        ns__buf_printf(b, "%s%s", i ? ", " : "", prefix);
        ns__buf_ident(b, w->cols[keys ? w->key[i] : i].name);
    }
}

/*
 * Creates the staging table of upsert and update (the table's column types,
 * none of its constraints; emptied by each commit), the statement that
 * merges staged rows [$1, $2) into the table, and the one that finds staged
 * rows repeating an earlier row's key.
 */
static ns_status stage(pg_writer *w, ns_error *err)
{
    ns_buf b = {0};
    ns_status st;
    size_t set = 0;

    ns__buf_printf(&b, "CREATE TEMP TABLE nightshift_stage ON COMMIT DELETE ROWS AS"
                       " SELECT NULL::bigint AS nightshift_seq, ");
    idents(&b, w, "", false);
    ns__buf_printf(&b, " FROM %s WITH NO DATA", w->qtable);
    if ((st = exec(w, err, "staging table", "DROP TABLE IF EXISTS " STAGE, 0, NULL)) != NS_OK ||
        (st = exec(w, err, "staging table", ns__buf_cstr(&b), 0, NULL)) != NS_OK) {
        ns__buf_free(&b);
        return st;
    }

    /* The key's earlier occurrence, by the server's own equality (" 7" is 7). */
    b.len = 0;
    ns__buf_printf(&b,
                   "SELECT nightshift_seq, prev FROM (SELECT nightshift_seq, lag(nightshift_seq)"
                   " OVER (PARTITION BY ");
    idents(&b, w, "", true);
    ns__buf_printf(&b, " ORDER BY nightshift_seq) AS prev FROM " STAGE ") x"
                       " WHERE prev IS NOT NULL ORDER BY nightshift_seq");
    if (!(w->repeats_sql = ns__strdup(ns__buf_cstr(&b)))) {
        ns__buf_free(&b);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }

    b.len = 0;
    if (w->mode == NS_MODE_UPSERT) {
        ns__buf_printf(&b, "INSERT INTO %s (", w->qtable);
        idents(&b, w, "", false);
        ns__buf_printf(&b, ") SELECT ");
        idents(&b, w, "", false);
        ns__buf_printf(&b, " FROM " STAGE " WHERE nightshift_seq >= $1 AND nightshift_seq < $2"
                           " ON CONFLICT (");
        idents(&b, w, "", true);
        ns__buf_printf(&b, ") DO ");
    } else {
        ns__buf_printf(&b, "WITH u AS (UPDATE %s AS t", w->qtable);
    }
    for (size_t i = 0; i < w->ncols; i++) {
        bool key = false;
        for (size_t k = 0; k < w->nkey; k++)
            key |= w->key[k] == i;
        if (key)
            continue;
        ns__buf_printf(&b, set++ ? ", " : w->mode == NS_MODE_UPSERT ? "UPDATE SET " : " SET ");
        ns__buf_ident(&b, w->cols[i].name);
        ns__buf_printf(&b, w->mode == NS_MODE_UPSERT ? " = excluded." : " = s.");
        ns__buf_ident(&b, w->cols[i].name);
    }
    if (w->mode == NS_MODE_UPSERT && !set)
        ns__buf_printf(&b, "NOTHING");
    if (w->mode == NS_MODE_UPDATE) {
        /* ... and the staged rows whose key matched no row. */
        ns__buf_printf(&b, " FROM " STAGE " s WHERE s.nightshift_seq >= $1"
                           " AND s.nightshift_seq < $2");
        for (size_t k = 0; k < w->nkey; k++) {
            ns__buf_printf(&b, " AND t.");
            ns__buf_ident(&b, w->cols[w->key[k]].name);
            ns__buf_printf(&b, " = s.");
            ns__buf_ident(&b, w->cols[w->key[k]].name);
        }
        ns__buf_printf(&b, " RETURNING s.nightshift_seq) SELECT nightshift_seq FROM " STAGE
                           " st WHERE nightshift_seq >= $1 AND nightshift_seq < $2 AND NOT EXISTS"
                           " (SELECT 1 FROM u WHERE u.nightshift_seq = st.nightshift_seq)");
    }
    if (w->mode == NS_MODE_UPDATE && !set)
        st = ns__err(err, NS_ESCHEMA, NULL, "%s: mode: update needs input columns besides the key",
                     w->where);
    else if (!(w->merge_sql = ns__strdup(ns__buf_cstr(&b))))
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    ns__buf_free(&b);
    return st;
}

static ns_status pw_open(ns_writer *base, const ns_writer_cfg *cfg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    const char *const keys[] = {"dbname", "fallback_application_name", NULL};
    const char *const vals[] = {cfg->url, "nightshift", NULL};
    PGresult *res = NULL;
    ns_status st = NS_OK;

    w->where = ns__strdup(cfg->conn_name);
    w->mode = cfg->mode;
    if (!w->where)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    w->c = PQconnectdbParams(keys, vals, 1);
    if (!w->c || PQstatus(w->c) != CONNECTION_OK) {
        const char *m = w->c ? PQerrorMessage(w->c) : "out of memory";
        size_t len = strlen(m);
        while (len && m[len - 1] == '\n')
            len--;
        return ns__err(err, NS_EDB, NULL, "%s: cannot connect: %.*s", w->where, (int)len, m);
    }
    /* The repository's own database: one connection, one transaction for
     * the chunk's rows and its record (docs/internals.md, "Exactly-once restart"). */
    PGconn *repo = cfg->share ? cfg->share(cfg->share_arg, w->c) : NULL;
    if (repo) {
        PQfinish(w->c);
        w->c = repo;
        base->shared = true;
    }
    PQsetNoticeProcessor(w->c, quiet, NULL);
    if (PQsetClientEncoding(w->c, "UTF8") != 0)
        return fail(w, NULL, err, "set client encoding");
    if (cfg->lease > 0 && cfg->table && cfg->mode != NS_MODE_REPLACE) {
        /* A chunk's transaction never idles: from its BEGIN the COPY streams
         * (active, not idle) until the chunk is written and committed. So a
         * frozen run (presumed dead once the lease lapses) is cut off by the
         * server, which releases the rows it holds. Not for a replace (one
         * transaction across chunks: a reader or processor may take long
         * between two rows) nor the connection-only uses (a compare's
         * output idles between differences). */
        char set[96];
        snprintf(set, sizeof(set), "SET idle_in_transaction_session_timeout = %lld",
                 (long long)(cfg->lease * 1000) + 1);
        if ((st = exec(w, err, "set idle_in_transaction_session_timeout", set, 0, NULL)) != NS_OK)
            return st;
    }
    if (!cfg->table)
        goto checkpoint; /* the connection only */

    /* The table's columns, as the catalog sees them. */
    const char *p[] = {cfg->table};
    res = PQexecParams(
        w->c,
        "SELECT c.oid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod),"
        " a.attnotnull, a.atthasdef OR a.attidentity <> '', a.attgenerated <> ''"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.oid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = fail(w, res, err, "read table definition");
        goto out;
    }
    int nt = PQntuples(res);
    if (nt == 0) {
        st = ns__err(err, NS_ESCHEMA, NULL, "%s: table '%s' does not exist", w->where, cfg->table);
        goto out;
    }
    w->qtable = ns__strdup(PQgetvalue(res, 0, 0));
    w->cols = calloc(cfg->ncolumns ? cfg->ncolumns : 1, sizeof(*w->cols));
    size_t *used = calloc((size_t)nt, sizeof(*used)); /* 1 + the input column, 0: none */
    if (!w->qtable || !w->cols || !used) {
        free(used);
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cfg->ncolumns && st == NS_OK; i++) {
        int k = 0;
        /* Exact name first, then case-insensitively (CSV headers rarely
         * match PostgreSQL's case folding). */
        while (k < nt && strcmp(PQgetvalue(res, k, 1), cfg->columns[i]) != 0)
            k++;
        if (k == nt) {
            k = 0;
            while (k < nt && strcasecmp(PQgetvalue(res, k, 1), cfg->columns[i]) != 0)
                k++;
        }
        if (k == nt || PQgetvalue(res, k, 5)[0] == 't') {
            ns_buf names = {0};
            for (int j = 0; j < nt; j++)
                if (PQgetvalue(res, j, 5)[0] != 't')
                    ns__buf_printf(&names, "%s%s", names.len ? ", " : "", PQgetvalue(res, j, 1));
            st = ns__err(err, NS_ESCHEMA, NULL,
                         k == nt ? "input column '%s' has no column in table %s (its columns: %s)"
                                 : "input column '%s' is a generated column of table %s (%s)",
                         cfg->columns[i], w->qtable, ns__buf_cstr(&names));
            ns__buf_free(&names);
            break;
        }
        if (used[k]) {
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "input columns '%s' and '%s' both name column %s of table %s (names "
                         "match without regard to case); rename one",
                         cfg->columns[used[k] - 1], cfg->columns[i], PQgetvalue(res, k, 1),
                         w->qtable);
            break;
        }
        used[k] = i + 1;
        pcol *c = &w->cols[w->ncols++];
        c->name = ns__strdup(PQgetvalue(res, k, 1));
        ns__coltype_parse_pg(PQgetvalue(res, k, 2), &c->ct);
        c->notnull = PQgetvalue(res, k, 3)[0] == 't';
    }
    for (int k = 0; k < nt && st == NS_OK; k++)
        if (!used[k] && PQgetvalue(res, k, 3)[0] == 't' && PQgetvalue(res, k, 4)[0] != 't' &&
            PQgetvalue(res, k, 5)[0] != 't' && w->mode != NS_MODE_UPDATE)
            st = ns__err(err, NS_ESCHEMA, NULL,
                         "column %s.%s is NOT NULL without a default, but the input has no "
                         "column '%s'",
                         w->qtable, PQgetvalue(res, k, 1), PQgetvalue(res, k, 1));
    free(used);
    if (st != NS_OK)
        goto out;

    /* The key of upsert and update, as input fields. */
    bool merge = w->mode == NS_MODE_UPSERT || w->mode == NS_MODE_UPDATE;
    if (merge && !(w->key = calloc(cfg->nkey ? cfg->nkey : 1, sizeof(*w->key)))) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; merge && i < cfg->nkey; i++) {
        size_t j = 0;
        while (j < w->ncols && strcasecmp(w->cols[j].name, cfg->key[i]) != 0)
            j++;
        if (j == w->ncols) {
            st = ns__err(err, NS_ESCHEMA, NULL, "%s: key column '%s' is not in the input", w->where,
                         cfg->key[i]);
            goto out;
        }
        w->key[w->nkey++] = j;
        /* update only looks the key up: a NULL there matches no row. */
        if (w->mode == NS_MODE_UPDATE)
            w->cols[j].notnull = false;
    }

    /* Unique indexes (plain columns, no predicate): those the input fully
     * covers get a filter of the keys sent (insert, replace); upsert needs
     * one on exactly its key for ON CONFLICT. */
    PQclear(res);
    res = PQexecParams(w->c,
                       "SELECT array_to_string(array_agg(a.attname ORDER BY k.ord), chr(31))"
                       " FROM pg_index i"
                       " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
                       " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                       " WHERE i.indrelid = to_regclass($1) AND i.indisunique"
                       " AND i.indpred IS NULL AND i.indexprs IS NULL GROUP BY i.indexrelid"
                       " ORDER BY i.indexrelid",
                       1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = fail(w, res, err, "read unique indexes");
        goto out;
    }
    bool key_indexed = false;
    ns_buf uniques = {0};
    for (int r = 0; r < PQntuples(res); r++) {
        char *names = ns__strdup(PQgetvalue(res, r, 0));
        ukey k = {0};
        bool covered = names != NULL;
        size_t in_key = 0;
        ns__buf_printf(&uniques, "%s(", uniques.len ? ", " : "");
        for (char *save = NULL, *n = names ? strtok_r(names, "\x1f", &save) : NULL; n;
             n = strtok_r(NULL, "\x1f", &save)) {
            ns__buf_printf(&uniques, "%s%s", k.ncols ? ", " : "", n);
            size_t j = 0;
            while (j < w->ncols && strcmp(w->cols[j].name, n) != 0)
                j++;
            for (size_t q = 0; q < w->nkey; q++)
                in_key += w->key[q] == j;
            size_t *c = realloc(k.cols, (k.ncols + 1) * sizeof(*c));
            covered = covered && j < w->ncols && c;
            if (c) {
                k.cols = c;
                k.cols[k.ncols++] = j;
            }
        }
        ns__buf_printf(&uniques, ")");
        free(names);
        key_indexed |= in_key == k.ncols && k.ncols == w->nkey;
        ukey *ks = covered && !merge ? realloc(w->keys, (w->nkeys + 1) * sizeof(*ks)) : NULL;
        if (ks && (k.mem = calloc(1, BLOOM_BITS / 8 + 64)) != NULL) {
            k.bits = (uint64_t *)(((uintptr_t)k.mem + 63) & ~(uintptr_t)63);
            w->keys = ks;
            w->keys[w->nkeys++] = k;
        } else {
            if (ks)
                w->keys = ks;
            free(k.cols);
        }
    }
    if (w->mode == NS_MODE_UPSERT && !key_indexed)
        st = ns__err(err, NS_ESCHEMA, NULL,
                     "%s: mode: upsert needs a primary key or unique index on exactly its key "
                     "columns, and table %s has none (its unique keys: %s)",
                     w->where, w->qtable, uniques.len ? ns__buf_cstr(&uniques) : "none");
    ns__buf_free(&uniques);
    if (st != NS_OK || (merge && (st = stage(w, err)) != NS_OK))
        goto out;

    ns_buf sql = {0};
    ns__buf_printf(&sql, "COPY %s (%s", merge ? STAGE : w->qtable, merge ? "nightshift_seq" : "");
    for (size_t i = 0; i < w->ncols; i++) {
        if (i || merge)
            ns__buf_printf(&sql, ", ");
        ns__buf_ident(&sql, w->cols[i].name);
    }
    ns__buf_printf(&sql, ") FROM STDIN");
    w->copy_sql = ns__strdup(ns__buf_cstr(&sql));
    ns__buf_free(&sql);
    if (!w->copy_sql) {
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
checkpoint:
    /* Created once per target; the lock keeps simultaneous first runs apart. */
    if ((st = exec(w, err, "checkpoint table", "BEGIN", 0, NULL)) != NS_OK ||
        (st = exec(w, err, "checkpoint table", "SELECT pg_advisory_xact_lock(1853058920)", 0,
                   NULL)) != NS_OK ||
        (st = exec(w, err, "checkpoint table", CKPT_TABLE, 0, NULL)) != NS_OK ||
        (st = exec(w, err, "checkpoint table", "COMMIT", 0, NULL)) != NS_OK)
        PQclear(PQexec(w->c, "ROLLBACK"));
out:
    PQclear(res);
    return st;
}

/* A checkpoint row's statement parameters: $1-$4 its key, $5 the execution,
 * $6 the step execution, $7 the context. */
typedef struct ckpt_params {
    char e[24], s[24];
    const char *v[7];
} ckpt_params;

static const char *const *ckpt_params_of(ckpt_params *cp, const ns_ckpt_key *k, const char *context)
{
    snprintf(cp->e, sizeof(cp->e), "%lld", (long long)k->execution_id);
    snprintf(cp->s, sizeof(cp->s), "%lld", (long long)k->step_execution_id);
    const char *v[7] = {k->job_name, k->job_key, k->step, k->partition ? k->partition : "",
                        cp->e,       cp->s,      context};
    memcpy(cp->v, v, sizeof(v));
    return cp->v;
}

static ns_status pw_checkpoint(ns_writer *base, const ns_ckpt_key *k, char **context, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ckpt_params cp;
    const char *const *p = ckpt_params_of(&cp, k, NULL);
    /* Atomic under concurrency: a chunk of the previous owner in flight
     * holds the row; the claim waits for it and returns its context. */
    PGresult *res = PQexecParams(
        w->c,
        "INSERT INTO nightshift_checkpoint (job_name, job_key, step_name, partition_name,"
        " execution_id, step_execution_id, context) VALUES ($1, $2, $3, $4, $5, $6, '')"
        " ON CONFLICT (job_name, job_key, step_name, partition_name) DO UPDATE SET"
        " execution_id = excluded.execution_id,"
        " step_execution_id = excluded.step_execution_id, updated_at = now()"
        " RETURNING context",
        6, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        ns_status st = fail(w, res, err, "claim checkpoint");
        PQclear(res);
        return st;
    }
    const char *ctx = PQgetvalue(res, 0, 0);
    bool some = ctx[0] != '\0';
    *context = some ? ns__strdup(ctx) : NULL;
    PQclear(res);
    return some && !*context ? ns__err(err, NS_ENOMEM, NULL, "out of memory") : NS_OK;
}

/* The checkpoint row is no longer ours: another execution claimed it. */
static ns_status pw_fenced(pg_writer *w, const ns_ckpt_key *k, ns_error *err)
{
    ckpt_params cp;
    PGresult *res =
        PQexecParams(w->c,
                     "SELECT execution_id FROM nightshift_checkpoint WHERE job_name = $1"
                     " AND job_key = $2 AND step_name = $3 AND partition_name = $4",
                     4, NULL, ckpt_params_of(&cp, k, NULL), NULL, NULL, 0);
    int64_t owner = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                        ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                        : -1;
    PQclear(res);
    return ns__fenced(err, k, owner);
}

static ns_status begin(pg_writer *w, ns_error *err)
{
    ns_status st;
    if (w->in_txn)
        return NS_OK;
    /* Deferred constraints are checked at the end of each statement, where
     * bisection can find the row at fault, instead of failing the COMMIT. */
    PGresult *res = PQexec(w->c, "BEGIN; SET CONSTRAINTS ALL IMMEDIATE");
    st = PQresultStatus(res) == PGRES_COMMAND_OK ? NS_OK : fail(w, res, err, "begin");
    PQclear(res);
    if (st != NS_OK) {
        PQclear(PQexec(w->c, "ROLLBACK"));
        return st;
    }
    w->in_txn = true;
    if (w->mode == NS_MODE_REPLACE && !w->replaced) {
        /* DELETE, not TRUNCATE: readers go on seeing the old rows until the
         * new ones commit, instead of waiting on an exclusive lock. */
        char *sql = ns__asprintf("DELETE FROM %s", w->qtable);
        st = sql ? exec(w, err, "replace", sql, 0, NULL) : NS_ENOMEM;
        free(sql);
        w->replaced = st == NS_OK;
    }
    return st;
}

/* Appends one value in COPY text format: runs without a special byte are
 * copied whole; \\, tab, newline and carriage return are escaped. */
static ns_status copy_value(ns_buf *b, const ns_value *v)
{
    if (!v->ptr)
        return ns__buf_append(b, "\\N", 2);
    if (ns__buf_reserve(b, v->len * 2) != NS_OK)
        return NS_ENOMEM;
    const char *p = v->ptr, *end = v->ptr + v->len;
    char *o = b->data + b->len;
    while (p < end) {
        const char *run = p;
        while (p < end && *p != '\\' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p < end) {
            *o++ = '\\';
            *o++ = *p == '\t' ? 't' : *p == '\n' ? 'n' : *p == '\r' ? 'r' : '\\';
            p++;
        }
    }
    b->len = (size_t)(o - b->data);
    return NS_OK;
}

static void reject(ns_item *it, const char *code, const char *column, const char *msg, ns_arena *a)
{
    it->code = ns__arena_strndup(a, code, strlen(code));
    it->column = column ? ns__arena_strndup(a, column, strlen(column)) : NULL;
    it->message = ns__arena_strndup(a, msg, strlen(msg));
}

/* What a failed COPY says: its SQLSTATE, the COPY line at fault (0 when
 * none) and whether the error is about one row at all. */
typedef struct copy_error {
    char code[8];
    long line;
    bool row_level;
    char column[128];
    char message[600];
} copy_error;

static void read_error(PGresult *res, copy_error *e)
{
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    const char *column = PQresultErrorField(res, PG_DIAG_COLUMN_NAME);
    const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
    const char *line = ctx ? strstr(ctx, "COPY ") : NULL;

    memset(e, 0, sizeof(*e));
    snprintf(e->code, sizeof(e->code), "%s", code ? code : "XX000");
    /* "COPY items, line 3, column qty: "12x"" */
    if (line && (line = strstr(line, ", line ")))
        e->line = strtol(line + 7, NULL, 10);
    const char *col = line ? strstr(line, ", column ") : NULL;
    const char *key = detail ? strstr(detail, "Key (") : NULL;
    if (column)
        snprintf(e->column, sizeof(e->column), "%s", column);
    else if (col)
        snprintf(e->column, sizeof(e->column), "%.*s", (int)strcspn(col + 9, ":"), col + 9);
    else if (key && strcspn(key + 5, ",)") < strcspn(key + 5, ")") + 1 &&
             key[5 + strcspn(key + 5, ",)")] == ')')
        /* "Key (email)=(x) already exists.": one column, named. */
        snprintf(e->column, sizeof(e->column), "%.*s", (int)strcspn(key + 5, ")"), key + 5);
    if (snprintf(e->message, sizeof(e->message), "%s%s%s%s", msg ? msg : "error",
                 detail ? " (" : "", detail ? detail : "", detail ? ")" : "") < 0)
        e->message[0] = '\0';
    /* Cardinality and data exceptions, integrity violations, a trigger's RAISE and limits
     * such as an oversized index row are about the row; anything else (a
     * lost connection, a full disk, permissions) is not. */
    e->row_level = strncmp(e->code, "21", 2) == 0 || strncmp(e->code, "22", 2) == 0 ||
                   strncmp(e->code, "23", 2) == 0 || strncmp(e->code, "P0", 2) == 0 ||
                   strncmp(e->code, "54", 2) == 0;
}

/* Ends the COPY under way and reads its outcome: NS_OK, or NS_EDB with *e
 * filled (and err too when the error is not about a row). */
static ns_status copy_end(pg_writer *w, copy_error *e, ns_error *err)
{
    /* Every way out leaves *e said: a failure without a result (the
     * connection gone mid-COPY) is not about a row. */
    memset(e, 0, sizeof(*e));
    if (PQputCopyEnd(w->c, NULL) != 1)
        return fail(w, NULL, err, "COPY");
    ns_status st = NS_OK;
    PGresult *res;
    while ((res = PQgetResult(w->c)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && st == NS_OK) {
            read_error(res, e);
            st = NS_EDB;
            if (!e->row_level)
                fail(w, res, err, "COPY");
        }
        PQclear(res);
    }
    return st;
}

/* Sends COPY lines [lo, hi). NS_OK, or NS_EDB with *e filled. */
static ns_status copy_range(pg_writer *w, size_t lo, size_t hi, copy_error *e, ns_error *err)
{
    memset(e, 0, sizeof(*e));
    PGresult *res = PQexec(w->c, w->copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        read_error(res, e);
        ns_status st = fail(w, res, err, "COPY");
        PQclear(res);
        return st;
    }
    PQclear(res);
    const char *from = w->data.data + w->off[lo];
    size_t len = w->off[hi] - w->off[lo];
    if (len && PQputCopyData(w->c, from, (int)len) != 1)
        return fail(w, NULL, err, "COPY");
    return copy_end(w, e, err);
}

/*
 * Loads COPY lines [lo, hi), rejecting exactly the rows the server refuses.
 * Each attempt runs in a savepoint, so a failed one leaves the chunk's
 * transaction as it was.
 */
/* Rows per COPY when isolating: a failed COPY is sent again up to its bad
 * row, so a segment bounds what one server-side error costs; after an
 * error, the rest of the chunk goes in smaller segments still. */
#define SEGMENT             10000
#define SEGMENT_AFTER_ERROR 1000

static ns_status isolate_by(pg_writer *w, ns_item *items, size_t lo, size_t hi, size_t seg,
                            ns_arena *a, ns_error *err);

static ns_status isolate(pg_writer *w, ns_item *items, size_t lo, size_t hi, ns_arena *a,
                         ns_error *err)
{
    return isolate_by(w, items, lo, hi, SEGMENT, a, err);
}

static ns_status isolate_by(pg_writer *w, ns_item *items, size_t lo, size_t hi, size_t seg,
                            ns_arena *a, ns_error *err)
{
    ns_status st;
    copy_error e = {0};

    while (lo < hi) {
        size_t end = hi - lo > seg ? lo + seg : hi;
        if ((st = exec(w, err, "savepoint", "SAVEPOINT ns_rows", 0, NULL)) != NS_OK)
            return st;
        st = copy_range(w, lo, end, &e, err);
        if (st == NS_OK) {
            if ((st = exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_rows", 0, NULL)) != NS_OK)
                return st;
            lo = end;
            continue;
        }
        if (!e.row_level)
            return st;
        if (exec(w, err, "savepoint", "ROLLBACK TO SAVEPOINT ns_rows", 0, NULL) != NS_OK)
            return NS_EDB;
        seg = SEGMENT_AFTER_ERROR;
        if (e.line >= 1 && (size_t)e.line <= end - lo) {
            /* The server named the row: keep those before it, reject it,
             * go on after it. */
            size_t bad = lo + (size_t)e.line - 1;
            reject(&items[w->item[bad]], e.code, e.column[0] ? e.column : NULL, e.message, a);
            if (bad > lo && (st = isolate(w, items, lo, bad, a, err)) != NS_OK)
                return st;
            lo = bad + 1;
            continue;
        }
        /* No line (foreign keys are checked after the statement): halve. */
        if (end - lo == 1) {
            reject(&items[w->item[lo]], e.code, e.column[0] ? e.column : NULL, e.message, a);
            lo = end;
            continue;
        }
        size_t mid = lo + (end - lo) / 2;
        if ((st = isolate(w, items, lo, mid, a, err)) != NS_OK ||
            (st = isolate(w, items, mid, end, a, err)) != NS_OK)
            return st;
        lo = end;
    }
    return NS_OK;
}

/*
 * Merges staged rows [lo, hi) into the table (upsert, update). A range the
 * server refuses is halved, earlier half first, until the record at fault
 * is alone and rejected; update also rejects the records whose key matched
 * no row.
 */
static ns_status merge(pg_writer *w, ns_item *items, size_t lo, size_t hi, ns_arena *a,
                       ns_error *err)
{
    char l[24], h[24];
    const char *p[] = {l, h};
    copy_error e = {0};
    ns_status st;

    if (lo >= hi)
        return NS_OK;
    snprintf(l, sizeof(l), "%zu", lo);
    snprintf(h, sizeof(h), "%zu", hi);
    if ((st = exec(w, err, "savepoint", "SAVEPOINT ns_merge", 0, NULL)) != NS_OK)
        return st;
    PGresult *res = PQexecParams(w->c, w->merge_sql, 2, NULL, p, NULL, NULL, 0);
    ExecStatusType rs = PQresultStatus(res);
    if (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK) {
        for (int r = 0; rs == PGRES_TUPLES_OK && r < PQntuples(res); r++) {
            size_t line = (size_t)strtoull(PQgetvalue(res, r, 0), NULL, 10);
            if (line < w->lines)
                reject(&items[w->item[line]], "NS_NO_ROW", NULL, "no row of the table has this key",
                       a);
        }
        PQclear(res);
        return exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_merge", 0, NULL);
    }
    read_error(res, &e);
    if (!e.row_level) {
        st = fail(w, res, err, w->mode == NS_MODE_UPSERT ? "upsert" : "update");
        PQclear(res);
        return st;
    }
    PQclear(res);
    if ((st = exec(w, err, "savepoint", "ROLLBACK TO SAVEPOINT ns_merge", 0, NULL)) != NS_OK)
        return st;
    if (hi - lo == 1) {
        reject(&items[w->item[lo]], e.code, e.column[0] ? e.column : NULL, e.message, a);
        return NS_OK;
    }
    size_t mid = lo + (hi - lo) / 2;
    if ((st = merge(w, items, lo, mid, a, err)) != NS_OK)
        return st;
    return merge(w, items, mid, hi, a, err);
}

/*
 * Merges the staged chunk in runs of distinct keys, in file order: a key met
 * earlier in the current run starts the next run. So every record is applied
 * (and checked) after the records before it, as if one by one, and the last
 * record of a key is the one the table keeps.
 */
static ns_status merge_chunk(pg_writer *w, ns_item *items, ns_arena *a, ns_error *err)
{
    ns_status st = NS_OK;
    size_t from = 0;
    PGresult *res = PQexec(w->c, w->repeats_sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = fail(w, res, err, "find repeated keys");
        PQclear(res);
        return st;
    }
    for (int r = 0; r < PQntuples(res) && st == NS_OK; r++) {
        size_t seq = (size_t)strtoull(PQgetvalue(res, r, 0), NULL, 10);
        size_t prev = (size_t)strtoull(PQgetvalue(res, r, 1), NULL, 10);
        if (prev >= from) {
            st = merge(w, items, from, seq, a, err);
            from = seq;
        }
    }
    PQclear(res);
    return st != NS_OK ? st : merge(w, items, from, w->lines, a, err);
}

/* Checks an item against the catalog; a refused item is marked rejected. */
static bool check_item(pg_writer *w, ns_item *it, ns_arena *a)
{
    char msg[256];
    for (size_t j = 0; j < w->ncols; j++) {
        const ns_value *v = &it->fields[j];
        const pcol *c = &w->cols[j];
        ns_bound b;
        const char *code;
        if (!v->ptr) {
            if (c->notnull) {
                snprintf(msg, sizeof(msg),
                         "null value in column \"%s\" violates not-null constraint", c->name);
                reject(it, "23502", c->name, msg, a);
                return false;
            }
        } else if (memchr(v->ptr, '\0', v->len)) {
            reject(it, "22021", c->name,
                   "invalid byte sequence for encoding \"UTF8\": 0x00 (PostgreSQL text cannot "
                   "hold NUL)",
                   a);
            return false;
        } else if (!ns__coltype_check(&c->ct, v->ptr, v->len, &b, &code, msg, sizeof(msg))) {
            reject(it, code, c->name, msg, a);
            return false;
        }
    }
    return true;
}

/* Appends item `index` as the next COPY line. */
static ns_status add_line(pg_writer *w, const ns_item *it, size_t index, ns_error *err)
{
    if (w->lines + 2 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        size_t *off = realloc(w->off, cap * sizeof(*off));
        size_t *item = off ? realloc(w->item, cap * sizeof(*item)) : NULL;
        if (off)
            w->off = off;
        if (!item)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        w->item = item;
        w->cap = cap;
    }
    w->off[w->lines] = w->data.len;
    w->item[w->lines++] = index;
    if (w->merge_sql && ns__buf_printf(&w->data, "%zu\t", w->lines - 1) != NS_OK)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t j = 0; j < w->ncols; j++)
        if ((j && ns__buf_putc(&w->data, '\t') != NS_OK) ||
            copy_value(&w->data, &it->fields[j]) != NS_OK)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (ns__buf_putc(&w->data, '\n') != NS_OK)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    w->off[w->lines] = w->data.len;
    return NS_OK;
}

static void chunk_reset(pg_writer *w)
{
    w->data.len = 0;
    w->lines = 0;
    w->sent = 0;
    w->fed = false;
    w->nheld = 0;
}

/*
 * Sends what is buffered and not sent yet, once there is FLUSH of it (or
 * all). Small sends keep the server busy while the client parses: on the
 * 1M-row bench, 16-64 KiB loaded in 2.7-3.2 s, 256 KiB in 3.4-3.6 s, 1 MiB in
 * 3.5-4.2 s (fsync off, 2 runs each).
 */
#define FLUSH (32u << 10)

static ns_status stream(pg_writer *w, bool all, ns_error *err)
{
    size_t len = w->data.len - w->sent;
    if (!len || (!all && len < FLUSH))
        return NS_OK;
    if (PQputCopyData(w->c, w->data.data + w->sent, (int)len) != 1)
        return fail(w, NULL, err, "COPY");
    w->sent = w->data.len;
    return NS_OK;
}

/*
 * Tells whether the item's key on any unique index may already have been
 * sent in this load, and records its keys. Keys compare as bytes: two
 * spellings of one value (" 1" and "1") are not caught here, and the server
 * refusing the row later is handled like any other error.
 */
static inline uint64_t mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

static bool seen_before(pg_writer *w, const ns_item *it)
{
    bool seen = false;
    for (size_t k = 0; k < w->nkeys; k++) {
        const ukey *u = &w->keys[k];
        uint64_t h = 0xcbf29ce484222325ULL, x;
        bool null = false;
        for (size_t c = 0; c < u->ncols; c++) {
            const ns_value *v = &it->fields[u->cols[c]];
            if (!v->ptr) { /* NULLs never collide in a unique index */
                null = true;
                break;
            }
            /* Eight bytes at a time, then the tail and the length (which
             * also separates the columns). */
            size_t i = 0;
            for (; i + 8 <= v->len; i += 8) {
                memcpy(&x, v->ptr + i, 8);
                h = mix(h, x);
            }
            x = 0;
            memcpy(&x, v->ptr + i, v->len - i);
            h = mix(mix(h, x), v->len);
        }
        if (null)
            continue;
        /* Blocked filter: the key's 4 bits lie in one 512-bit block, so a
         * lookup costs one cache miss instead of four. */
        uint64_t g = mix(h, 0x243f6a8885a308d3ULL);
        uint64_t *block = u->bits + (h % (BLOOM_BITS / 512)) * 8;
        bool all = true;
        for (int i = 0; i < 4; i++) {
            unsigned bit = (unsigned)(g >> (i * 9)) & 511u;
            uint64_t mask = 1ULL << (bit % 64);
            all &= (block[bit / 64] & mask) != 0;
            block[bit / 64] |= mask;
        }
        seen |= all;
    }
    return seen;
}

/*
 * Streams the chunk while it is read: the first good item opens the chunk's
 * COPY (inside a savepoint), and lines go out as they accumulate, so the
 * server inserts while the client parses the rest.
 */
static ns_status pw_feed(ns_writer *base, ns_item *items, size_t index, ns_arena *a, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st;

    if (!w->fed)
        chunk_reset(w);
    w->fed = true;
    if (!check_item(w, &items[index], a))
        return NS_OK;
    if (w->nkeys && seen_before(w, &items[index])) {
        /* Probably collides with an earlier row of this load: send it after
         * the chunk's COPY, on its own, rather than fail the whole COPY. */
        if (w->nheld == w->heldcap) {
            size_t cap = w->heldcap ? w->heldcap * 2 : 64;
            size_t *h = realloc(w->held, cap * sizeof(*h));
            if (!h)
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            w->held = h;
            w->heldcap = cap;
        }
        w->held[w->nheld++] = index;
        return NS_OK;
    }
    if (!w->copying) {
        if ((st = begin(w, err)) != NS_OK ||
            (st = exec(w, err, "savepoint", "SAVEPOINT ns_rows", 0, NULL)) != NS_OK)
            return st;
        PGresult *res = PQexec(w->c, w->copy_sql);
        if (PQresultStatus(res) != PGRES_COPY_IN) {
            st = fail(w, res, err, "COPY");
            PQclear(res);
            return st;
        }
        PQclear(res);
        w->copying = true;
    }
    if ((st = add_line(w, &items[index], index, err)) != NS_OK)
        return st;
    return stream(w, false, err);
}

/* Ends a streaming COPY: NS_OK, or NS_EDB with *e filled. */
static ns_status stream_end(pg_writer *w, copy_error *e, ns_error *err)
{
    memset(e, 0, sizeof(*e));
    ns_status st = stream(w, true, err);
    w->copying = false;
    return st != NS_OK ? st : copy_end(w, e, err);
}

static ns_status pw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st = NS_OK;
    copy_error e = {0};

    /* A caller that did not feed the items as it read them: feed them now,
     * so there is one path (checks, held duplicates, streaming, isolation). */
    if (!w->fed)
        for (size_t i = 0; i < n; i++)
            if ((st = pw_feed(base, items, i, a, err)) != NS_OK)
                return st;
    if (w->copying) {
        st = stream_end(w, &e, err);
        if (st == NS_OK) {
            st = exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_rows", 0, NULL);
        } else if (e.row_level) {
            /* The streamed COPY failed: isolate what it held, knowing the
             * row the server named. */
            if ((st = exec(w, err, "savepoint", "ROLLBACK TO SAVEPOINT ns_rows", 0, NULL)) != NS_OK)
                goto out;
            if (e.line >= 1 && (size_t)e.line <= w->lines) {
                size_t bad = (size_t)e.line - 1;
                reject(&items[w->item[bad]], e.code, e.column[0] ? e.column : NULL, e.message, a);
                if ((st = isolate(w, items, 0, bad, a, err)) == NS_OK)
                    st = isolate(w, items, bad + 1, w->lines, a, err);
            } else {
                st = isolate(w, items, 0, w->lines, a, err);
            }
        }
        if (st != NS_OK)
            goto out;
    }
    if (w->merge_sql && w->lines && (st = merge_chunk(w, items, a, err)) != NS_OK)
        goto out;
    if (w->nheld) {
        /* Rows held out as probable duplicates of earlier ones: after the
         * rest of the chunk, in file order, one per COPY. Most are refused;
         * a false alarm loads. */
        size_t from = w->lines;
        if ((st = begin(w, err)) != NS_OK)
            goto out;
        for (size_t i = 0; i < w->nheld; i++)
            if ((st = add_line(w, &items[w->held[i]], w->held[i], err)) != NS_OK)
                goto out;
        st = isolate_by(w, items, from, w->lines, 1, a, err);
    }
out:
    chunk_reset(w);
    return st;
}

/* Runs statement `no` of a script with its :name parameters bound. */
static PGresult *run_bound(pg_writer *w, const char *stmt, size_t len, size_t no,
                           const ns_sql_args *args, bool single_rows, ns_error *err)
{
    ns_buf text = {0};
    const char **vals = NULL;
    size_t nvals = 0;
    char missing[128];
    ns_status st = ns__sql_bind(stmt, len, true, args->names, args->values, args->n, &text, &vals,
                                &nvals, missing, sizeof(missing));
    if (st != NS_OK) {
        if (st == NS_EPARAM)
            ns__err(err, NS_EPARAM, NULL, "%s: statement %zu: :%s has no value", w->where, no,
                    missing);
        else
            ns__err(err, st, NULL, "out of memory");
        return NULL;
    }
    PGresult *res = NULL;
    if (single_rows) {
        if (PQsendQueryParams(w->c, ns__buf_cstr(&text), (int)nvals, NULL, vals, NULL, NULL, 0) !=
                1 ||
            PQsetSingleRowMode(w->c) != 1)
            fail(w, NULL, err, "query");
        else
            res = PQmakeEmptyPGresult(w->c, PGRES_COMMAND_OK); /* rows via PQgetResult */
    } else {
        res = PQexecParams(w->c, ns__buf_cstr(&text), (int)nvals, NULL, vals, NULL, NULL, 0);
        ExecStatusType s = PQresultStatus(res);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY) {
            char what[64];
            snprintf(what, sizeof(what), "statement %zu", no);
            fail(w, res, err, what);
            PQclear(res);
            res = NULL;
        }
    }
    ns__buf_free(&text);
    free(vals);
    return res;
}

static ns_status pw_exec(ns_writer *base, const char *stmt, size_t len, size_t no,
                         const ns_sql_args *args, int64_t *changed, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st = begin(w, err);
    if (st != NS_OK)
        return st;
    PGresult *res = run_bound(w, stmt, len, no, args, false, err);
    if (!res)
        return err->code ? err->code : NS_EDB;
    if (PQresultStatus(res) == PGRES_COMMAND_OK)
        *changed += atoll(PQcmdTuples(res));
    PQclear(res);
    return NS_OK;
}

static ns_status pw_query(ns_writer *base, const char *sql, const ns_sql_args *args, ns_row_fn row,
                          void *arg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    PGresult *res = run_bound(w, sql, strlen(sql), 1, args, true, err);
    ns_status st = NS_OK;
    const char **names = NULL, **vals = NULL;
    bool more = true, header = false;
    if (!res)
        return err->code ? err->code : NS_EDB;
    PQclear(res);
    /* One result per row (single-row mode), then the final, empty one. */
    while ((res = PQgetResult(w->c)) != NULL) {
        ExecStatusType s = PQresultStatus(res);
        if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK) {
            if (st == NS_OK)
                st = fail(w, res, err, "query");
        } else if (more && st == NS_OK) {
            int n = PQnfields(res);
            if (!header) {
                names = calloc((size_t)n + 1, sizeof(*names));
                vals = calloc((size_t)n + 1, sizeof(*vals));
                if (!names || !vals) {
                    st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
                    PQclear(res);
                    continue;
                }
                for (int i = 0; i < n; i++)
                    names[i] = ns__strdup(PQfname(res, i));
                header = true;
                more = row(arg, (size_t)n, names, NULL);
            }
            for (int r = 0; more && r < PQntuples(res); r++) {
                for (int i = 0; i < n; i++)
                    vals[i] = PQgetisnull(res, r, i) ? NULL : PQgetvalue(res, r, i);
                more = row(arg, (size_t)n, names, vals);
            }
        }
        PQclear(res);
    }
    for (size_t i = 0; names && names[i]; i++)
        free((char *)names[i]);
    free(names);
    free(vals);
    return st;
}

typedef struct pg_cursor {
    ns_cursor base;
    pg_writer *w;
    PGresult *row; /* the current row's result */
    char **names;
    const char **vals;
    bool done;
} pg_cursor;

static ns_status pgc_next(ns_cursor *base, const char *const **values, bool *eof, ns_error *err)
{
    pg_cursor *c = (pg_cursor *)base;
    PQclear(c->row);
    c->row = NULL;
    *eof = true;
    if (c->done)
        return NS_OK;
    PGresult *res = PQgetResult(c->w->c);
    ExecStatusType s = PQresultStatus(res);
    if (s == PGRES_SINGLE_TUPLE) {
        c->row = res;
        for (size_t i = 0; i < base->ncols; i++)
            c->vals[i] = PQgetisnull(res, 0, (int)i) ? NULL : PQgetvalue(res, 0, (int)i);
        *values = c->vals;
        *eof = false;
        return NS_OK;
    }
    /* The end (an empty PGRES_TUPLES_OK) or an error: the query is over. */
    ns_status st = s == PGRES_TUPLES_OK ? NS_OK : fail(c->w, res, err, "query");
    PQclear(res);
    while ((res = PQgetResult(c->w->c)) != NULL)
        PQclear(res);
    c->done = true;
    return st;
}

static void pgc_close(ns_cursor *base)
{
    pg_cursor *c = (pg_cursor *)base;
    PQclear(c->row);
    if (!c->done) {
        /* Stop the server sending the rest, then drain. */
        PGcancel *cancel = PQgetCancel(c->w->c);
        char buf[256];
        if (cancel) {
            PQcancel(cancel, buf, sizeof(buf));
            PQfreeCancel(cancel);
        }
        PGresult *res;
        while ((res = PQgetResult(c->w->c)) != NULL)
            PQclear(res);
    }
    for (size_t i = 0; c->names && i < base->ncols; i++)
        free(c->names[i]);
    free(c->names);
    free(c->vals);
    free(c);
}

static ns_status pw_cursor(ns_writer *base, const char *sql, const ns_sql_args *args,
                           const char *const *key, size_t nkey, ns_cursor **out, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_buf q = {0};
    ns_status st = NS_OK;
    pg_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    c->w = w;
    /* The result's columns first (an empty result still has them), then the
     * rows by the keys' text in byte order, whatever the columns' types and
     * the database's collation. */
    ns__buf_printf(&q, "SELECT * FROM (%s) AS ns_q LIMIT 0", sql);
    PGresult *res = run_bound(w, ns__buf_cstr(&q), q.len, 1, args, false, err);
    if (!res) {
        st = err->code ? err->code : NS_EDB;
        goto out;
    }
    size_t n = (size_t)PQnfields(res);
    c->names = calloc(n + 1, sizeof(*c->names));
    c->vals = calloc(n + 1, sizeof(*c->vals));
    if (!c->names || !c->vals) {
        PQclear(res);
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
        goto out;
    }
    c->base = (ns_cursor){n, (const char *const *)c->names, pgc_next, pgc_close};
    for (size_t i = 0; i < n; i++)
        c->names[i] = ns__strdup(PQfname(res, (int)i));
    q.len = 0;
    ns__buf_printf(&q, "SELECT * FROM (%s) AS ns_q ORDER BY ", sql);
    for (size_t k = 0; k < nkey; k++) {
        int at = -1;
        for (size_t i = 0; i < n; i++)
            if (c->names[i] && strcmp(c->names[i], key[k]) == 0)
                at = (int)i;
        if (at < 0) {
            st = ns__err(err, NS_ESCHEMA, NULL, "%s: the query has no column '%s' (its key)",
                         w->where, key[k]);
            PQclear(res);
            goto out;
        }
        ns__buf_printf(&q, k ? ", (" : "(");
        ns__buf_ident(&q, key[k]);
        ns__buf_printf(&q, ")::text COLLATE \"C\" NULLS FIRST");
    }
    PQclear(res);
    if (!(res = run_bound(w, ns__buf_cstr(&q), q.len, 1, args, true, err))) {
        st = err->code ? err->code : NS_EDB;
        c->done = true;
        goto out;
    }
    PQclear(res);
out:
    ns__buf_free(&q);
    if (st != NS_OK) {
        c->done = true;
        c->base.close = pgc_close;
        pgc_close(&c->base);
        return st;
    }
    *out = &c->base;
    return NS_OK;
}

static ns_status pw_commit(ns_writer *base, const ns_ckpt_key *k, const char *context,
                           ns_commit_hook hook, void *arg, ns_error *err)
{
    pg_writer *w = (pg_writer *)base;
    ns_status st;
    ckpt_params cp;

    if ((st = begin(w, err)) != NS_OK)
        return st;
    const char *const *p = ckpt_params_of(&cp, k, context);
    /* Fenced: saved only while the row is still claimed by this execution
     * (pw_checkpoint); otherwise nothing is updated and the chunk is not
     * committed. */
    PGresult *res =
        PQexecParams(w->c,
                     "INSERT INTO nightshift_checkpoint (job_name, job_key, step_name,"
                     " partition_name, execution_id, step_execution_id, context)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                     " ON CONFLICT (job_name, job_key, step_name, partition_name) DO UPDATE SET"
                     " step_execution_id = excluded.step_execution_id,"
                     " context = excluded.context, updated_at = now()"
                     " WHERE nightshift_checkpoint.execution_id = excluded.execution_id",
                     7, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        st = fail(w, res, err, "save checkpoint");
        PQclear(res);
        return st;
    }
    bool saved = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!saved)
        return pw_fenced(w, k, err);
    if (hook && (st = hook(arg, err)) != NS_OK)
        return st;
    res = PQexec(w->c, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        st = fail(w, res, err, "commit");
        PQclear(res);
        return st;
    }
    PQclear(res);
    w->in_txn = false;
    return NS_OK;
}

static void pw_rollback(ns_writer *base)
{
    pg_writer *w = (pg_writer *)base;
    if (w->copying) {
        PQputCopyEnd(w->c, "chunk abandoned by nightshift");
        PGresult *res;
        while ((res = PQgetResult(w->c)) != NULL)
            PQclear(res);
        w->copying = false;
    }
    chunk_reset(w);
    if (w->in_txn && w->c)
        PQclear(PQexec(w->c, "ROLLBACK"));
    w->in_txn = false;
    w->replaced = false;
}

static void pw_close(ns_writer *base)
{
    pg_writer *w = (pg_writer *)base;
    pw_rollback(base);
    if (!base->shared)
        PQfinish(w->c);
    for (size_t i = 0; i < w->ncols; i++)
        free(w->cols[i].name);
    free(w->cols);
    free(w->where);
    free(w->qtable);
    free(w->copy_sql);
    free(w->merge_sql);
    free(w->repeats_sql);
    free(w->key);
    free(w->off);
    free(w->item);
    free(w->held);
    for (size_t k = 0; k < w->nkeys; k++) {
        free(w->keys[k].cols);
        free(w->keys[k].mem);
    }
    free(w->keys);
    ns__buf_free(&w->data);
}

static bool pw_single(ns_writer *base)
{
    return ((pg_writer *)base)->mode == NS_MODE_REPLACE;
}

const ns_writer_vt ns__writer_table_pg = {
    .name = "table:postgresql",
    .version = NS_WRITER_VERSION,
    .caps = NS_WRITER_TRANSACTIONAL | NS_WRITER_SQL,
    .instance_size = sizeof(pg_writer),
    .open = pw_open,
    .checkpoint = pw_checkpoint,
    .write = pw_write,
    .commit = pw_commit,
    .rollback = pw_rollback,
    .close = pw_close,
    .single_transaction = pw_single,
    .feed = pw_feed,
    .exec = pw_exec,
    .query = pw_query,
    .cursor = pw_cursor,
};
