/*
 * io.h - readers and writers (docs/internals.md).
 *
 * Both are vtables: a const struct with a name, a version, the size of an
 * instance and its methods; an instance struct whose first member points to
 * it. Each is a plugin (util/keys.h) found by its job-file name in the
 * registry (src/core/registry.c). Nothing here knows about the job
 * repository: a transactional writer stores the checkpoint it is given in its
 * own transaction and hands it back on restart; an at-least-once writer (a
 * file) hands the runner its state, which the runner keeps with the
 * checkpoint in the repository's database.
 */
#ifndef NS_IO_H
#define NS_IO_H

#include "io/csv.h"
#include "util/keys.h"

#include <jansson.h>

/* One input record, as a reader returns it (borrowed until its next call). */
typedef struct ns_record {
    int64_t line; /* source line, 0 when the input has none */
    const char *raw;
    size_t raw_len;
    const ns_value *fields;
    size_t nfields;
    const char *error_code; /* set when the record cannot become an item */
    int error_field;        /* -1 when the error is not about one field */
    const char *error_message;
} ns_record;

/*
 * What a plugin is opened with, besides its configuration: the run's
 * services for what only the run knows (templates need the parameters, the
 * execution id and the secrets; connections need the job's URLs and the
 * launch directory), the job's parameters for :name in SQL, the chunk size.
 */
typedef struct ns_io_env {
    void *ctx;
    /* A template of the step, substituted: *real is used, *shown is how
     * messages name it (${env.X} unexpanded). `what` names it in errors;
     * `path`: a file path, resolved against the launch directory. */
    ns_status (*subst)(void *ctx, const char *tmpl, const char *what, bool path, char **real,
                       char **shown, ns_error *err);
    /* A connection's URL (substituted; an sqlite: path resolved), how
     * messages name it ("connection 'x' (sqlite:x.db)") and its driver. */
    ns_status (*connection)(void *ctx, const char *name, char **url, char **shown,
                            const ns_db_driver **driver, ns_error *err);
    /* A form `subst` showed (${env.X} kept, as a writer's state stores a
     * path) expanded again into the real value. */
    ns_status (*expand)(void *ctx, const char *shown, char **real, ns_error *err);
    /* Refuses to start an output file where one holds another execution's
     * data or a symbolic link stands (`what` names it: "writer.file"). */
    ns_status (*output)(void *ctx, const char *path, const char *shown, const char *what,
                        ns_error *err);
    /* Marks an output file as written by this execution (see ns__tag_writer). */
    void (*tag)(void *ctx, int fd);
    /* Whether an execution of this job instance wrote the file at `path`
     * (its tag says so): a predecessor's output a restart may take over. */
    bool (*ours)(void *ctx, const char *path);
    /* Whether execution `id` belongs to this job instance. */
    bool (*ours_execution)(void *ctx, int64_t id);
    int64_t execution_id;
    const char *job_name, *job_key, *step; /* the step of a job instance */
    /* The step's retry policy, for a writer that retries what failed within
     * a chunk (each request of an HTTP chunk on its own): retried() counts
     * a retry and logs it with its cause; stopping() says a stop was asked
     * (a signal, or `nightshift stop`: asked of the repository about once a
     * second), so a wait can end early. */
    const ns_retry *retry;
    /* Watches the statement the run is in (util/watchdog.c): a reader or
     * writer arms it around a call that may block on its server, with the
     * limit of its connection (stmt_limit: seconds, 0 for none). */
    ns_watchdog *watchdog;
    double (*stmt_limit)(void *ctx, const char *connection);
    void (*retried)(void *ctx, const char *what, int64_t attempt, double wait, const char *detail);
    bool (*stopping)(void *ctx);
    /* A line for the run's log (retried() with detail NULL counts without
     * logging: a writer that retries many requests sums them up here). */
    void (*notice)(void *ctx, const char *text);
    const char *const *param_names, *const *param_values;
    size_t nparams;
    int64_t chunk; /* records per chunk */
} ns_io_env;

typedef struct ns_reader ns_reader;
#define NS_READER_VERSION 2
typedef struct ns_reader_vt {
    const char *name;
    int version;
    size_t instance_size;
    /* Opens it with its plugin's configuration (its own struct). */
    ns_status (*open)(ns_reader *r, const void *cfg, const ns_io_env *env, ns_error *err);
    /* Names of the fields, in order. Borrowed. */
    const char *const *(*columns)(ns_reader *r, size_t *n);
    /* Continues from a position saved by position(). */
    ns_status (*seek)(ns_reader *r, json_t *pos, ns_error *err);
    /* Next record; *rec = NULL at the end. */
    ns_status (*next)(ns_reader *r, ns_record *rec, bool *eof, ns_error *err);
    /* Position after the last record returned (new reference). */
    json_t *(*position)(ns_reader *r);
    void (*progress)(ns_reader *r, int64_t *done, int64_t *total);
    void (*close)(ns_reader *r);
} ns_reader_vt;
struct ns_reader {
    const ns_reader_vt *vt;
};

/* An item in a chunk, with the writer's verdict on it. */
typedef struct ns_item {
    int64_t line;
    int64_t seq; /* the record's number in the step's input (1: the first), the same on a restart */
    const char *raw;
    size_t raw_len;
    const ns_value *fields;
    size_t nfields;
    const char *code;    /* NULL when written; else the reject code */
    const char *column;  /* the column at fault, or NULL */
    const char *message; /* why, for the rejects file */
} ns_item;

/* Identifies a step of a job instance in the target's checkpoint table. */
typedef struct ns_ckpt_key {
    const char *job_name, *job_key, *step, *partition;
    int64_t execution_id, step_execution_id;
    /* checkpoint(): the claim is taken again, on a new connection, by the
     * execution that holds it (a retry): if another execution holds the row
     * now, nothing changes and the call fails with NS_ECONFLICT. */
    bool reclaim;
} ns_ckpt_key;

/* How a table writer writes a chunk. */
typedef enum ns_write_mode {
    NS_MODE_INSERT,
    NS_MODE_UPSERT,
    NS_MODE_UPDATE, /* UPDATE ... WHERE key: changes existing rows only */
    NS_MODE_REPLACE
} ns_write_mode;

typedef struct ns_writer_cfg {
    const char *url;       /* substituted target URL; may hold secrets: never print it */
    const char *conn_name; /* connection name from the job file, for messages */
    const ns_db_driver *driver;
    /* Asked through ns__writer_share; NULL: never share the repository's
     * connection (a compare's cursors). */
    const struct ns_share *share;
    /* The run's lease (seconds; 0: none). A PostgreSQL table writer's chunk
     * transaction that sits idle longer is ended by the server: a run frozen
     * in the middle of a chunk cannot hold its locks against the run that
     * takes its instance over. */
    double lease;
    const char *table;     /* NULL: the connection only (exec, query, checkpoint, commit) */
    ns_watchdog *watchdog; /* NULL: none */
    double stmt_limit;     /* seconds a statement may take (0: no limit) */
    ns_write_mode mode;
    const char *const *key;
    size_t nkey;
    const char *const *columns; /* the input field names, in order */
    size_t ncolumns;
} ns_writer_cfg;

typedef ns_status (*ns_commit_hook)(void *arg, ns_error *err);

/* Job parameters for SQL: :name is bound to values[i] where names[i] is
 * name; types[i] ("int", "float", "string", ...) guides SQLite's binding. */
typedef struct ns_sql_args {
    const char *const *names, *const *values, *const *types;
    size_t n;
} ns_sql_args;

/* Called once with the result's column names and values == NULL, then once
 * per row (NULL values for SQL NULL); returning false stops the query. */
typedef bool (*ns_row_fn)(void *arg, size_t ncols, const char *const *names,
                          const char *const *values);

/* The rows of a query, pulled one at a time (a compare step merges two). */
typedef struct ns_cursor ns_cursor;
struct ns_cursor {
    size_t ncols;
    const char *const *names;
    /* The next row's values (NULL for SQL NULL), valid until the next call;
     * *eof at the end. */
    ns_status (*next)(ns_cursor *c, const char *const **values, bool *eof, ns_error *err);
    void (*close)(ns_cursor *c);
};

typedef struct ns_writer ns_writer;
#define NS_WRITER_VERSION 4

/*
 * The SQL of a database connection: what the sql, assert, rebuild and
 * compare steps run. Its own vtable, apart from writing items; a table
 * writer carries one (ns_writer_vt.sql) because a step's statements and the
 * checkpoint saying it is done commit in one transaction on one connection.
 */
typedef struct ns_sql_vt {
    /* Runs statement number `no` of a script ([stmt,
     * stmt + len), split by ns__sql_split) in the writer's transaction, begun
     * if needed, binding :name parameters; adds the rows it changed to
     * *changed. Errors name the statement by its number. */
    ns_status (*exec)(ns_writer *w, const char *stmt, size_t len, size_t no,
                      const ns_sql_args *args, int64_t *changed, ns_error *err);
    /* Runs one query (in the transaction when one is
     * open), streaming its rows to row(). */
    ns_status (*query)(ns_writer *w, const char *sql, const ns_sql_args *args, ns_row_fn row,
                       void *arg, ns_error *err);
    /* A cursor over a query's rows ordered by the key
     * columns' text, in byte order (COLLATE "C"), NULLs first; streamed so
     * memory does not grow with the result. Two databases order the same
     * keys the same way, whatever their types and collations. */
    ns_status (*cursor)(ns_writer *w, const char *sql, const ns_sql_args *args,
                        const char *const *key, size_t nkey, ns_cursor **out, ns_error *err);
} ns_sql_vt;

/* What a writer can do (ns_writer_vt.caps). */
/* It holds the checkpoint in the transaction of the chunk it writes
 * (checkpoint, commit): exactly-once by itself. Without it the writer is
 * at-least-once (resume, sync, finish; commit is the runner's, in the
 * repository's database) and made exactly-once by cutting its output back
 * to the checkpointed state on restart. */
#define NS_WRITER_TRANSACTIONAL 1u

typedef struct ns_writer_vt {
    const char *name;
    int version;
    size_t instance_size;
    unsigned caps; /* NS_WRITER_* */
    ns_status (*open)(ns_writer *w, const ns_writer_cfg *cfg, ns_error *err);
    /* Claims the step's checkpoint row for key->execution_id and returns the
     * context saved with the last committed chunk (*context = NULL if none),
     * in one atomic statement. From then on a commit by any other execution
     * fails (NS_ECONFLICT, see ns__fenced): the fence that keeps a run
     * presumed dead, whose instance another launch took over, from
     * committing a chunk the new run also commits. */
    ns_status (*checkpoint)(ns_writer *w, const ns_ckpt_key *key, char **context, ns_error *err);
    /* Writes items inside the open transaction (beginning one if needed).
     * Items the target refuses get code/column/message set (allocated in
     * `arena`); an error return means the chunk cannot be written at all. */
    ns_status (*write)(ns_writer *w, ns_item *items, size_t n, ns_arena *arena, ns_error *err);
    /* Stores the checkpoint, calls hook (inside the transaction) and commits;
     * fails without committing if the checkpoint row is no longer claimed by
     * key->execution_id. */
    ns_status (*commit)(ns_writer *w, const ns_ckpt_key *key, const char *context,
                        ns_commit_hook hook, void *arg, ns_error *err);
    void (*rollback)(ns_writer *w);
    void (*close)(ns_writer *w);
    /* Whole step in one transaction (replace mode): commit only at the end. */
    bool (*single_transaction)(ns_writer *w);
    /* Optional: told of each item of the chunk as soon as it is read, so a
     * writer may start sending it while the rest is read (items[index] is
     * stable until the chunk is written). write() still gets the chunk. */
    ns_status (*feed)(ns_writer *w, ns_item *items, size_t index, ns_arena *arena, ns_error *err);
    /* A database connection's SQL (exec, query, cursor); NULL when the
     * writer is not one. */
    const struct ns_sql_vt *sql;

    /* At-least-once writers (no NS_WRITER_TRANSACTIONAL). */
    /* Before the first write: `state` is what sync() returned for the last
     * committed chunk (NULL: a fresh start); the writer cuts its output back
     * to it, so what uncommitted chunks wrote is gone. */
    ns_status (*resume)(ns_writer *w, json_t *state, ns_error *err);
    /* Makes everything written so far durable and returns the state that
     * says where the output stands (a new reference), for the checkpoint
     * the runner commits next. */
    ns_status (*sync)(ns_writer *w, json_t **state, ns_error *err);
    /* After the last chunk committed: publishes the output (a file renamed
     * into place). Idempotent across restarts. */
    ns_status (*finish)(ns_writer *w, ns_error *err);
} ns_writer_vt;
struct ns_writer {
    const ns_writer_vt *vt;
    bool shared; /* set by open: commits go through the repository's connection */
    /* A table writer's driver (its SQL's dialect: ns_db_driver.quote),
     * set by ns__table_open_url; NULL for other writers. */
    const ns_db_driver *driver;
};

extern const ns_reader_vt ns__reader_csv;
extern const ns_reader_vt ns__reader_query;

/*
 * The pages of the keyset `query` reader on one database (a driver's
 * pager): the reader builds the two page queries (the first; the next,
 * after a key) in the driver's placeholders and keeps the position; the
 * pager connects, prepares, runs them and hands back each page's cells.
 */
typedef struct ns_page {
    size_t rows;
    char **cells; /* rows x columns, NULL for SQL NULL; valid until the next fetch */
    /* Per row, its key with the types the database gave it (a JSON array),
     * owned by the pager; NULL: every key is its cells' text. A database
     * that orders integers before text (SQLite) needs the type to page. */
    json_t **keys;
    /* Per row, 1 + the first column whose text holds a NUL byte (0: none);
     * NULL: no database text can hold one. */
    size_t *nul;
} ns_page;

typedef struct ns_pager_args {
    const char *url, *shown;  /* shown: how messages name the connection */
    const char *first, *next; /* next takes the parameters, then the last key */
    size_t page_size;         /* rows a full page holds */
    double limit;             /* the connection's statement_timeout (s; 0: none) */
} ns_pager_args;

typedef struct ns_pager ns_pager;
typedef struct ns_pager_vt {
    size_t instance_size;
    /* Connects and prepares both queries; *names and *ncols: the result's
     * columns (owned by the pager). */
    ns_status (*open)(ns_pager *p, const ns_pager_args *a, const char *const **names, size_t *ncols,
                      ns_error *err);
    /* The next page, after `last` (as its row's key was handed out; NULL:
     * the first page); key[k]: the result column of key column k. */
    ns_status (*fetch)(ns_pager *p, const char *const *params, size_t nparams, json_t *last,
                       const size_t *key, size_t nkey, ns_page *page, ns_error *err);
    /* Arms the watchdog around a fetch (ns__watchdog_arm with the pager's
     * interrupt). */
    void (*arm)(ns_pager *p, ns_watchdog *wd, double limit);
    void (*close)(ns_pager *p);
} ns_pager_vt;
struct ns_pager {
    const ns_pager_vt *vt;
};

/* The plugins of io/ (their registry is src/core/registry.c). A reader
 * plugin's impl is its ns_reader_vt; a writer plugin's an ns_writer_factory. */
extern const ns_plugin ns__plugin_csv;
extern const ns_plugin ns__plugin_query;
extern const ns_plugin ns__plugin_table;
extern const ns_plugin ns__plugin_file;
extern const ns_plugin ns__plugin_http;

/*
 * How a table writer may share the repository's connection, and so its
 * transactions, when the target is the repository's own database: a
 * repository's method, bound to it by the runner.
 */
typedef struct ns_share {
    void *arg;
    /* The repository's connection (its driver's handle: an sqlite3 *, a
     * PGconn *) when `url`, of `driver`, reaches the repository's own
     * database as its user, else NULL. `conn` is the writer's connection
     * to it when the answer needs one (PostgreSQL compares the server's
     * identity), NULL when the URL says enough (an SQLite file). */
    void *(*conn)(void *arg, const ns_db_driver *driver, const char *url, void *conn);
} ns_share;

/* The repository's connection for a writer opened with cfg, as ns_share
 * answers (NULL: none, or cfg->share unset). */
void *ns__writer_share(const ns_writer_cfg *cfg, void *conn);

/* What a writer is created with, besides its plugin's configuration. */
typedef struct ns_writer_args {
    const ns_io_env *env;
    const char *const *columns; /* the fields of the items it will be given */
    size_t ncolumns;
    double lease;          /* the run's lease (see ns_writer_cfg.lease) */
    double stmt_limit;     /* for ns__table_open_url: the connection's statement_timeout */
    const ns_share *share; /* NULL: never share the repository's connection */
} ns_writer_args;

typedef struct ns_writer_factory {
    ns_status (*create)(const void *cfg, const ns_writer_args *args, ns_writer **out,
                        ns_error *err);
} ns_writer_factory;

/* A table writer on the job's connection `conn`, of the driver its URL
 * names, opened on `table` (NULL: the connection only, for SQL steps). */
ns_status ns__table_open(const char *conn, const char *table, ns_write_mode mode,
                         const char *const *key, size_t nkey, const ns_writer_args *args,
                         ns_writer **out, ns_error *err);
/* The same on a URL of `driver` that is not one of the job's connections
 * (the repository's database); `shown` names it in messages. */
ns_status ns__table_open_url(const ns_db_driver *driver, const char *url, const char *shown,
                             const char *table, ns_write_mode mode, const char *const *key,
                             size_t nkey, const ns_writer_args *args, ns_writer **out,
                             ns_error *err);

/* Instances: allocated with the vtable's instance_size, zeroed. */
ns_status ns__reader_new(const ns_reader_vt *vt, ns_reader **out, ns_error *err);
void ns__reader_free(ns_reader *r);
ns_status ns__writer_new(const ns_writer_vt *vt, ns_writer **out, ns_error *err);
void ns__writer_free(ns_writer *w);
/* The error of a commit refused because execution `owner` (-1: unknown) has
 * claimed the checkpoint row since: NS_ECONFLICT. */
ns_status ns__fenced(ns_error *err, const ns_ckpt_key *key, int64_t owner);

/* ------------------------------------------------ column type checks */

typedef enum ns_ckind {
    NS_CT_ANY,
    NS_CT_TEXT,
    NS_CT_INT,
    NS_CT_REAL,
    NS_CT_NUMERIC,
    NS_CT_BOOL,
    NS_CT_DATE,
    NS_CT_TIMESTAMP
} ns_ckind;

typedef struct ns_coltype {
    ns_ckind kind;
    int64_t min, max;     /* NS_CT_INT */
    int64_t length;       /* NS_CT_TEXT: max characters, 0 = unlimited */
    int precision, scale; /* NS_CT_NUMERIC; precision 0 = unconstrained */
    char decl[64];        /* the declared type, for messages */
} ns_coltype;

/* The value a checked field binds as. */
typedef struct ns_bound {
    enum { NS_B_TEXT, NS_B_INT, NS_B_REAL } kind;
    int64_t i;
    double d;
    const char *p; /* NS_B_TEXT: the text (trimmed where the type allows) */
    size_t len;
} ns_bound;

/* Reads an SQL declared type ("VARCHAR(20)", "INTEGER", "NUMERIC(10,2)"). */
void ns__coltype_parse(const char *decl, ns_coltype *ct);
/* Reads a PostgreSQL type as format_type() prints it ("integer",
 * "character varying(20)", "numeric(10,2)"); integer is 32-bit there. */
void ns__coltype_parse_pg(const char *format_type, ns_coltype *ct);
/*
 * Checks a non-NULL value against a column type. On success fills *b. On
 * failure returns false with a SQLSTATE in *code and a message in msg.
 */
bool ns__coltype_check(const ns_coltype *ct, const char *p, size_t n, ns_bound *b,
                       const char **code, char *msg, size_t msglen);

#endif
