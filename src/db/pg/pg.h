/*
 * pg.h - what the files of the PostgreSQL backend share: the connection
 * (conn.c: connect, SQLSTATEs, cancel), the table writer (table.c: catalog,
 * open, checkpoint, commit; copy.c: COPY, isolation of bad rows, the Bloom
 * filter of keys; merge.c: staging and merge for upsert and update; check.c:
 * the checks a row must pass before COPY; sql.c: the SQL connection's
 * methods: exec, query, cursor), the query reader's pages (driver.c) and the
 * job repository (repo.c). Private to src/db/pg.
 */
#ifndef NS_DB_PG_H
#define NS_DB_PG_H

#include "io/io.h"

#include <libpq-fe.h>

/* The SQLSTATE of a libpq failure (res may be NULL): the server's, else
 * 08006 (a failure the server did not send is the connection's). */
const char *ns__pg_state(struct pg_conn *c, const struct pg_result *res);
/* Connects to a PostgreSQL URL with nightshift's defaults, which the URL may
 * override: connect_timeout 10 s, TCP keepalives after 30 s idle, every
 * 10 s, 3 unanswered (docs/operations.md, "Timeouts"). NULL only when out
 * of memory; check PQstatus. */
#define NS_PG_CONNECT_TIMEOUT "10"
/* The SQLSTATE of a connection attempt that failed. libpq keeps none (the
 * server's ErrorResponse during startup reaches only the message), so the
 * server's words are recognised (28P01 a wrong password, 28000, 3D000 no
 * such database, 42501, 53300, 57P03); anything else (a host that does not
 * resolve, a refused or timed-out connection, another locale's words) is
 * NS_CONNECT. Neither is "connection lost": a connection never made in
 * this execution is not retried (retry.c), one lost later is (08*). */
const char *ns__pg_connect_state(struct pg_conn *c);
struct pg_conn *ns__pg_connect(const char *url, const char *app);
/* What the watchdog needs to cut short a call blocked on connection c: its
 * cancel key and socket (NULL when out of memory). ns__pg_interrupt is its
 * ns_interrupt_fn: level 1 sends a cancel request (from a thread of its
 * own), level 2 shuts the socket down. */
typedef struct ns_pg_cancel ns_pg_cancel;
ns_pg_cancel *ns__pg_cancel_new(struct pg_conn *c);
void ns__pg_cancel_free(ns_pg_cancel *k);
void ns__pg_interrupt(void *arg, int level);

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
    char *index;    /* the index's name, as the server's 23505 message says it */
    /* 'duplicate key value violates unique constraint "i" (Key (a, b)=(': the
     * server's 23505 message for this index up to the key's values */
    char *dup_prefix;
} ukey;

/* A row a key probe found in the table, and the server's message for it. */
typedef struct pg_dup {
    size_t item;
    const char *msg, *col;
} pg_dup;

/* check.c: a CHECK constraint as the client can read it. */
typedef struct ns_pg_check ns_pg_check;
/* The constraint `def` (pg_get_constraintdef) over the input columns, or
 * NULL when it is not understood (then the server alone checks it);
 * today: CURRENT_DATE as YYYY-MM-DD, NULL when not known; casing: lower()
 * and upper() map ASCII letters the plain way for the columns it reads. */
ns_pg_check *ns__pg_check_parse(const char *name, const char *def, const pcol *cols, size_t ncols,
                                const char *today, bool casing);
void ns__pg_check_free(ns_pg_check *c);
/* Whether the item may violate the constraint (false: it surely passes);
 * bounds[j]: field j as the type check read it (check_item). */
bool ns__pg_check_may_fail(const ns_pg_check *c, const pcol *cols, const ns_bound *bounds,
                           const ns_item *it);

/*
 * A question asked of the table before a chunk is sent, once errors show it
 * is worth asking (copy.c): which rows' foreign key has no parent,
 * which rows' unique key is already in the table. `sql` takes one text
 * array per field in `fields` and returns the 1-based positions of the
 * rows to hold.
 */
typedef struct pg_probe {
    char *sql;
    size_t *fields;
    size_t nfields;
    /* a unique key already in the table, a foreign key without its parent,
     * a CHECK the client does not read (the server evaluates it) */
    enum pg_probe_kind { PR_KEY, PR_FK, PR_CHECK } kind;
    size_t key;    /* PR_KEY: which of the writer's keys */
    char *conname; /* PR_CHECK: the constraint, as the server's errors name it */
    bool on;       /* asked: the load has met this kind of error */
    bool broken;   /* it failed once: never asked again */
    /* fk: the parent's keys, read into a Bloom filter once probing has
     * cost about what reading them does (copy.c, parents) */
    enum { PK_NONE, PK_INT, PK_TEXT } pkind; /* how keys compare; NONE: no filter */
    double parent_rows;                      /* the parent's estimated rows */
    char *parents_sql;                       /* COPY (SELECT key FROM parent) TO STDOUT */
    size_t probed;                           /* rows asked about so far */
    uint64_t *pbits;                         /* the filter, once read: pblocks 512-bit blocks */
    size_t pblocks;
} pg_probe;

typedef struct pg_writer {
    ns_writer base;
    pg_probe *probes;
    size_t nprobes;
    int quiet;       /* chunks in a row whose probes found nothing */
    bool can_replan; /* isolating inside savepoint ns_chunk */
    bool replan;     /* a probe went on: start the chunk over */
    size_t *pending; /* items fed but not sent: the probes decide first */
    size_t npending, pendcap;
    /* Items whose key a probe found in the table, with the server's 23505
     * message for each: decided in bulk after the chunk's COPY. */
    struct pg_dup *dups;
    size_t ndups, dupcap;
    char *bulk_sql;       /* INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING */
    ns_pg_check **checks; /* insert: CHECKs the client reads, to hold rows that may fail */
    ns_bound *bounds;     /* with checks: the current item's fields as the type check read them */
    size_t nchecks;
    ukey *keys;
    size_t nkeys;
    size_t *held; /* items of the chunk held out of the streamed COPY */
    size_t nheld, heldcap;
    PGconn *c;
    ns_watchdog *wd;      /* the run's (NULL: none) */
    double limit;         /* statement_timeout, seconds (0: none) */
    ns_pg_cancel *cancel; /* what the watchdog interrupts c with */
    char *where;          /* "connection 'target' (postgresql://...)" for messages */
    char *qtable;         /* the table as a quoted, qualified name */
    ns_write_mode mode;
    pcol *cols; /* one per input field, in input order */
    size_t ncols;
    char *copy_sql;     /* COPY_RELEASE COPY_OPEN "COPY ..." */
    char *insert_sql;   /* insert: one row, $1..$n, prepared as held_name */
    bool held_prepared; /* held_name is prepared on this connection */
    char held_name[40]; /* unique to this writer: a connection may be shared */
    ns_buf scratch;     /* a held row's values, NUL-terminated */
    char *merge_sql;    /* upsert/update: staged rows [$1, $2) into the table */
    char *repeats_sql;  /* upsert/update: staged rows repeating a key */
    size_t *key;        /* upsert/update: the input fields of the key */
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
    /* server-side errors met in this load's COPYs, and the rows the server
     * read in them: the isolation's segment size follows their rate */
    size_t copy_errors, copy_rows;
} pg_writer;

#define STAGE "pg_temp.nightshift_stage"

/* copy_sql starts with these: a COPY can be sent with the savepoint that
 * holds it, and with the release of the one before, in one round trip. */
#define COPY_RELEASE "RELEASE SAVEPOINT ns_rows; "
#define COPY_OPEN    "SAVEPOINT ns_rows; "

/* What a failed COPY says: its SQLSTATE, the COPY line at fault (0 when
 * none) and whether the error is about one row at all. */
typedef struct copy_error {
    char code[8];
    long line;
    bool row_level;
    char column[128];
    char constraint[64]; /* the constraint the server names, if any */
    char message[600];
} copy_error;

/* table.c */
ns_status ns__pgw_fail(pg_writer *w, PGresult *res, ns_error *err, const char *what);
/* Around a call that may block on the server: the watchdog cuts it short
 * past the connection's statement_timeout or at a stop request; unguard
 * then says so in *err (NS_ETIMEDOUT, transient; or NS_ESTOPPED). */
void ns__pgw_guard(pg_writer *w);
ns_status ns__pgw_unguard(pg_writer *w, ns_status st, ns_error *err);
/* Undoes savepoint `name` and ends it, in one round trip. A savepoint rolled
 * back stays established: one left open per failed attempt nests a
 * subtransaction each, until the server's lock table runs out ("out of
 * shared memory" after a few thousand rejects in one chunk). */
ns_status ns__pgw_rollback_to(pg_writer *w, const char *name, ns_error *err);
ns_status ns__pgw_exec(pg_writer *w, ns_error *err, const char *what, const char *sql, int n,
                       const char *const *v);
ns_status ns__pgw_begin(pg_writer *w, ns_error *err);

/* copy.c */
void ns__pgw_reject(ns_item *it, const char *code, const char *column, const char *msg,
                    ns_arena *a);
void ns__pgw_read_error(PGresult *res, copy_error *e);
void ns__pgw_chunk_reset(pg_writer *w);
ns_status ns__pgw_feed(ns_writer *base, ns_item *items, size_t index, ns_arena *a, ns_error *err);
ns_status ns__pgw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err);

/* merge.c */
ns_status ns__pgw_stage(pg_writer *w, ns_error *err);
ns_status ns__pgw_merge_chunk(pg_writer *w, ns_item *items, ns_arena *a, ns_error *err);

/* sql.c: exec, query and cursor */
extern const ns_sql_vt ns__pgw_sql;

/* table.c, repo.c */
extern const ns_writer_vt ns__writer_table_pg;
extern const struct ns_repo_vt ns__repo_pg;

#endif
