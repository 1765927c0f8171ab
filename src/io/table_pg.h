/*
 * table_pg.h - what the files of the PostgreSQL table writer share:
 * table_pg.c (catalog, open, checkpoint, commit), table_pg_copy.c (COPY,
 * isolation of bad rows, the Bloom filter of keys), table_pg_merge.c
 * (staging and merge for upsert and update), table_pg_sql.c (the SQL
 * connection's methods: exec, query, cursor). Private to src/io.
 */
#ifndef NS_TABLE_PG_H
#define NS_TABLE_PG_H

#include "io/io.h"

#include <libpq-fe.h>

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

#define STAGE "pg_temp.nightshift_stage"

/* What a failed COPY says: its SQLSTATE, the COPY line at fault (0 when
 * none) and whether the error is about one row at all. */
typedef struct copy_error {
    char code[8];
    long line;
    bool row_level;
    char column[128];
    char message[600];
} copy_error;

/* table_pg.c */
ns_status ns__pgw_fail(pg_writer *w, PGresult *res, ns_error *err, const char *what);
ns_status ns__pgw_exec(pg_writer *w, ns_error *err, const char *what, const char *sql, int n,
                       const char *const *v);
ns_status ns__pgw_begin(pg_writer *w, ns_error *err);

/* table_pg_copy.c */
void ns__pgw_reject(ns_item *it, const char *code, const char *column, const char *msg,
                    ns_arena *a);
void ns__pgw_read_error(PGresult *res, copy_error *e);
void ns__pgw_chunk_reset(pg_writer *w);
ns_status ns__pgw_feed(ns_writer *base, ns_item *items, size_t index, ns_arena *a, ns_error *err);
ns_status ns__pgw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *a, ns_error *err);

/* table_pg_merge.c */
ns_status ns__pgw_stage(pg_writer *w, ns_error *err);
ns_status ns__pgw_merge_chunk(pg_writer *w, ns_item *items, ns_arena *a, ns_error *err);

/* table_pg_sql.c: exec, query and cursor */
extern const ns_sql_vt ns__pgw_sql;

#endif
