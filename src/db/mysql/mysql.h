/*
 * mysql.h - what the files of the MariaDB/MySQL backend share: the
 * connection (conn.c: URLs, connect, session settings, SQLSTATEs, cancel),
 * statements with bound text parameters and text results (stmt.c), the
 * table writer and SQL connection (table.c) and the query reader's pages
 * (driver.c). Private to src/db/mysql. Client: libmariadb (Debian's
 * libmariadb-dev), which speaks to MariaDB and MySQL servers alike.
 */
#ifndef NS_DB_MYSQL_H
#define NS_DB_MYSQL_H

#include "io/io.h"

#include <mysql.h>

/* A connection URL, read: mysql://user:password@host:port/db?socket=PATH
 * (mariadb:// the same). Percent-escapes decoded; NULL: not given. */
typedef struct ns_my_url {
    char *user, *password, *host, *db, *socket;
    unsigned port;
    unsigned connect_timeout; /* seconds; 10 unless ?connect_timeout= */
} ns_my_url;
/* NS_EINVAL with why in `why` (never the password) when it cannot be read. */
ns_status ns__my_url_parse(const char *url, ns_my_url *u, char *why, size_t n);
void ns__my_url_free(ns_my_url *u);

/*
 * Connects with nightshift's session: a strict sql_mode (nothing coerced:
 * every warning is an error, docs/jobs.md "MariaDB and MySQL"), utf8mb4,
 * affected rows counting the rows matched (CLIENT_FOUND_ROWS), LOCAL INFILE
 * allowed from this client's handler only, a 10 s connect timeout and TCP
 * keepalives (30 s idle, every 10 s, 3 unanswered). On failure NS_EDB with
 * the SQLSTATE of the refusal (28000 wrong password, 3D000 no such
 * database) or NS_CONNECT, and `shown` naming the connection.
 */
ns_status ns__my_connect(const char *url, const char *shown, MYSQL **out, ns_error *err);
/* The SQLSTATE of the last failure on m: the server's, 08006 when the
 * connection is gone, 40001 for a deadlock, 57014 for a statement ended by
 * KILL QUERY (the watchdog). */
const char *ns__my_state(MYSQL *m);
/* The same for error number `no` and the SQLSTATE the server sent with it. */
const char *ns__my_state_of(unsigned no, const char *server);
/* Whether error `no` fails the chunk rather than a row: the connection, a
 * deadlock or lock wait (InnoDB undid the transaction or the statement for
 * reasons of its own), the watchdog's KILL QUERY, LOCAL INFILE refused. */
bool ns__my_chunk_failure(unsigned no);
/* The SQLSTATE of a server error number, for a warning (SHOW WARNINGS gives
 * none): the one the server sends with that error. */
const char *ns__my_errno_state(unsigned no);
/* "where: what: message" for the last failure on m. */
ns_status ns__my_fail(MYSQL *m, ns_error *err, const char *where, const char *what);

/* What the watchdog needs to end a statement on connection m: KILL QUERY
 * from a connection of its own (level 1, on a thread: the server may not
 * answer), the socket shut down (level 2). */
typedef struct ns_my_cancel ns_my_cancel;
ns_my_cancel *ns__my_cancel_new(MYSQL *m, const char *url);
void ns__my_cancel_free(ns_my_cancel *k);
void ns__my_interrupt(void *arg, int level);

/* ---------------------------------------------------------- stmt.c */

/* A statement with text parameters and text results (every column fetched
 * as its text, NULL for SQL NULL): prepared on the server, or (ns__my_run
 * without parameters) sent as text, which takes every statement MySQL has
 * (some cannot be prepared: CREATE TRIGGER, ...). */
typedef struct ns_my_stmt ns_my_stmt;
/* Runs sql with params (prepared when there are any); fetch its rows, then
 * close it. `where` and `what` name it in errors (borrowed until close). */
ns_status ns__my_run(MYSQL *m, const char *sql, size_t len, const char *const *params, size_t n,
                     ns_my_stmt **out, ns_error *err, const char *where, const char *what);
ns_status ns__my_prepare(MYSQL *m, const char *sql, size_t len, ns_my_stmt **out, ns_error *err,
                         const char *where, const char *what);
/* Executes with params (NULL values for SQL NULL); results are streamed:
 * fetch them all (or reset) before the next statement on the connection. */
ns_status ns__my_execute(ns_my_stmt *s, const char *const *params, size_t n, ns_error *err);
/* The same with each parameter's length (values need no NUL). */
ns_status ns__my_execute_n(ns_my_stmt *s, const char *const *params, const size_t *lens, size_t n,
                           ns_error *err);
/* The result's columns (after execute); 0 for a statement with none. */
size_t ns__my_ncols(ns_my_stmt *s, const char *const **names);
/* The next row's values, valid until the next call; *eof at the end. */
ns_status ns__my_fetch(ns_my_stmt *s, const char *const **values, bool *eof, ns_error *err);
int64_t ns__my_affected(ns_my_stmt *s);
/* After a failed execute: the server's error number, words and SQLSTATE. */
unsigned ns__my_stmt_errno(ns_my_stmt *s);
const char *ns__my_stmt_error(ns_my_stmt *s);
const char *ns__my_stmt_state(ns_my_stmt *s);
void ns__my_reset(ns_my_stmt *s);
void ns__my_close(ns_my_stmt *s);

/* ---------------------------------------------------------- guess.c */

/* Which rows the server will likely refuse for a key, a CHECK or a foreign
 * key (a guess: the server decides every row either way). cols: the
 * table's names of the input fields, types: their column_type. keys: track
 * unique keys seen in this load (insert and replace). schema NULL: the
 * connection's database. */
typedef struct ns_my_guess ns_my_guess;
ns_status ns__my_guess_open(MYSQL *m, const char *schema, const char *table,
                            const char *const *cols, const char *const *types, size_t ncols,
                            bool keys, ns_my_guess **out, ns_error *err, const char *where);
void ns__my_guess_free(ns_my_guess *g);
/* Whether a unique key of this row (its fields, in input order) was seen
 * earlier in this load; records its keys. */
bool ns__my_guess_seen(ns_my_guess *g, const ns_value *vals);
/* From now on, ns__my_guess_filter asks the server about the CHECKs (a
 * row was refused with warning 4025) or the foreign keys (1452). */
void ns__my_guess_arm(ns_my_guess *g, unsigned code);
/* How many of its queries are armed (0: none). */
int ns__my_guess_armed(const ns_my_guess *g);
/* Sets doubt[r] for the rows idx[r] the table's CHECKs and foreign keys
 * would refuse (armed only; rows already doubted are not sent); value()
 * gives the value a field is sent as. */
ns_status ns__my_guess_filter(ns_my_guess *g, ns_item *items, const size_t *idx, size_t n,
                              ns_value (*value)(void *arg, size_t j, const ns_value *v), void *arg,
                              bool *doubt, ns_error *err, const char *where);

/* table.c */
extern const ns_writer_vt ns__writer_table_mysql;

#endif
