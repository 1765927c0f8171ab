/*
 * util.h - internal helpers shared by every module: errors, memory arenas,
 * growable buffers, strings, time, hashing and UTF-8. Not part of the public
 * API; names are ns__ (two underscores).
 */
#ifndef NS_UTIL_H
#define NS_UTIL_H

#include "nightshift.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Test builds count allocations to fail the Nth one (fault.c). */
#ifdef NS_TEST_HOOKS
void *ns__t_malloc(size_t n);
void *ns__t_calloc(size_t n, size_t size);
void *ns__t_realloc(void *p, size_t n);
#define malloc(n)     ns__t_malloc(n)
#define calloc(n, s)  ns__t_calloc(n, s)
#define realloc(p, n) ns__t_realloc(p, n)
#endif

#if defined(__GNUC__)
#define NS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define NS_PRINTF(a, b)
#endif

/* ------------------------------------------------------------ errors */

/*
 * Records an error unless one is already there (the first error wins).
 * Returns `code` so callers can write `return ns__err(err, NS_EIO, ...)`.
 * `sub` may be NULL.
 */
ns_status ns__err(ns_error *err, ns_status code, const char *sub, const char *fmt, ...)
    NS_PRINTF(4, 5);
ns_status ns__verr(ns_error *err, ns_status code, const char *sub, const char *fmt, va_list ap)
    NS_PRINTF(4, 0);
/* Re-describes an error already recorded as another code (a statement the
 * watchdog cut short: NS_ESTOPPED, NS_ETIMEDOUT); its message and sub stay. */
void ns__err_recode(ns_error *err, ns_status code);
/* Prefixes an existing message with "prefix: " (used to add step context). */
void ns__err_prefix(ns_error *err, const char *fmt, ...) NS_PRINTF(2, 3);

/* ----------------------------------------------------------- secrets */

/*
 * Values that must never be written (secret.c): ${env.X} values and URL
 * passwords. Every text nightshift writes (messages, notices, exit messages,
 * reject messages) passes ns__redact with the run's set. Zero-initialise;
 * adding never fails loudly: an allocation failure marks the set, and
 * ns__redact then withholds whole messages rather than risk one.
 */
typedef struct ns_secrets {
    char **v;
    size_t n, cap;
    bool failed;
} ns_secrets;

/* Registers a value (and its percent-decoded form); shorter than 4 bytes is
 * ignored (no secret, and it would eat ordinary words). */
void ns__secrets_add(ns_secrets *s, const char *v, size_t n);
/* Registers the password of a URL (postgresql://u:PW@..., https://u:PW@...,
 * a ?password=PW query, or keyword form password=PW / password='P W'). */
void ns__secrets_add_url(ns_secrets *s, const char *url);
/* Registers what follows a URL's host: the path with its query, each path
 * segment and each query word (a webhook's URL is its key: Slack's
 * /services/T.../B.../KEY). Segments shorter than 4 bytes are ignored. */
void ns__secrets_add_url_path(ns_secrets *s, const char *url);
void ns__secrets_merge(ns_secrets *dst, const ns_secrets *src);
bool ns__secrets_ok(const ns_secrets *s);
void ns__secrets_free(ns_secrets *s);
/* Replaces every registered value in the NUL-terminated buf with "***". */
void ns__redact(const ns_secrets *s, char *buf, size_t cap);
/* A redacted malloc'd copy (NULL on ENOMEM). */
char *ns__redact_dup(const ns_secrets *s, const char *text);
/* Whether [text, text + n) holds a registered value. */
bool ns__has_secret(const ns_secrets *s, const char *text, size_t n);

/* ----------------------------------------- connection strings (dburl.c) */

/* The connection string for a message: every password in it (URI userinfo,
 * ?password=, keyword password=, quoted or not) as "***". */
void ns__db_shown(const char *url, char *out, size_t n);

/* ------------------------------------------------------------ arenas */

/*
 * A bump allocator. Everything allocated lives until ns__arena_reset or
 * ns__arena_free. Reset keeps the largest block, so a chunk loop that resets
 * after each commit allocates nothing once warm.
 */
typedef struct ns_arena_block ns_arena_block;
typedef struct ns_arena {
    ns_arena_block *head;
    size_t block_size;
} ns_arena;

void ns__arena_init(ns_arena *a, size_t block_size);
void *ns__arena_alloc(ns_arena *a, size_t n); /* 16-byte aligned; NULL on ENOMEM */
char *ns__arena_strndup(ns_arena *a, const char *s, size_t n);
void ns__arena_reset(ns_arena *a);
void ns__arena_free(ns_arena *a);

/* --------------------------------------------------------- buffers */

typedef struct ns_buf {
    char *data;
    size_t len, cap;
    /* An allocation failed: every later append fails too, so the text is
     * never a silently shortened one (check it where the text is used). */
    bool failed;
} ns_buf;

ns_status ns__buf_reserve(ns_buf *b, size_t extra);
ns_status ns__buf_append(ns_buf *b, const void *p, size_t n);
ns_status ns__buf_putc(ns_buf *b, char c);
/* Appends [p, p + n) as a JSON string, quoted and escaped (the bytes are
 * taken as they are: check UTF-8 first). */
void ns__buf_json_string(ns_buf *b, const char *p, size_t n);
ns_status ns__buf_printf(ns_buf *b, const char *fmt, ...) NS_PRINTF(2, 3);
/* Appends an SQL identifier, double-quoted ("a""b" for a"b). */
void ns__buf_ident(ns_buf *b, const char *name);
/* The same quoted with q (MySQL's identifiers: '`'), q inside doubled. */
void ns__buf_quoted(ns_buf *b, const char *name, char q);
void ns__buf_free(ns_buf *b);
/* NUL-terminates (not counted in len); returns data or "" when empty. */
const char *ns__buf_cstr(ns_buf *b);

/* --------------------------------------------------------- strings */

char *ns__strdup(const char *s);
char *ns__strndup(const char *s, size_t n);
char *ns__asprintf(const char *fmt, ...) NS_PRINTF(1, 2);
/* A count for people, grouped by thousands: 1234567 -> "1,234,567" (the
 * style of every count nightshift prints; line numbers and ids are not
 * counts). Returns buf (>= 32 bytes). */
const char *ns__count(int64_t v, char *buf);
/* Parses a whole decimal int64 (optional sign, no spaces). */
bool ns__parse_i64(const char *s, size_t n, int64_t *out);

/* ------------------------------------------------------------ time */

/* Wall-clock UTC as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (>= 32 bytes). */
void ns__now_iso(char *buf, size_t n);
/* The same for the instant t (seconds since the epoch). */
void ns__iso_at(double t, char *buf, size_t n);
/* Sleeps that long (through signals); nothing for 0 or less. */
void ns__sleep(double seconds);
/* Text from outside (a server's answer) as one line of UTF-8: control bytes
 * become spaces, invalid UTF-8 '?'; "..." when the first n of `total`
 * bytes were all there was room for. Returns the length written. */
size_t ns__clean_text(const char *p, size_t n, size_t total, char *out, size_t cap);
/* The same in place, for a text that must stay one line of valid UTF-8
 * (an exit message, a notice): control bytes become spaces, each invalid
 * byte '?', the length unchanged. */
void ns__clean_line(char *buf);
/* Wall-clock seconds since the epoch. */
double ns__now(void);
/* Monotonic seconds, for durations. */
double ns__mono(void);
/* Today's (or, with days = -1, yesterday's) local date as YYYY-MM-DD. */
void ns__local_date(char *buf, size_t n, int days);
/* Parses "YYYY-MM-DDTHH:MM:SS(.fff)Z" as written by ns__now_iso. */
bool ns__parse_iso(const char *s, double *out);

/* ----------------------------------------------------------- misc */

/* 128-bit non-cryptographic hash as 32 lowercase hex digits + NUL. */
void ns__hash_hex(const void *p, size_t n, char out[33]);
/* Length of the valid UTF-8 prefix of p; == n when all valid. */
size_t ns__utf8_valid_prefix(const unsigned char *p, size_t n);
/* Number of code points in valid UTF-8. */
size_t ns__utf8_count(const char *p, size_t n);
/*
 * Opens an output file nightshift writes (rejects, a compare's output):
 * truncated, or appended to (positioned at its end). Never through a
 * symbolic link (O_NOFOLLOW: a link planted at the path is refused, ELOOP)
 * and without blocking on a FIFO nobody reads (ENXIO). NULL with errno set.
 */
FILE *ns__fopen_out(const char *path, bool append);
/*
 * Output files carry who wrote them, in the extended attribute
 * user.nightshift.writer ("REPOSITORY_ID EXECUTION_ID"), so that a file of
 * another execution is never truncated or removed, and a refusal can name
 * its writer. Where the file system keeps no such attributes, nothing is
 * tagged and ns__file_writer says false.
 */
void ns__tag_writer(int fd, const char *repo_id, int64_t execution_id);
bool ns__file_writer(const char *path, char repo_id[33], int64_t *execution_id);
/* Creates the parent directories of a file path (mkdir -p of dirname). */
ns_status ns__mkdir_parents(const char *path, ns_error *err);
/* This machine's host name (cached). */
const char *ns__hostname(void);
/* When process `pid` started (clock ticks since boot, from /proc), so a
 * recycled pid is not mistaken for the process recorded; -1 when unknown. */
int64_t ns__process_start(int64_t pid);
/* Whether the process has exited and waits to be reaped (a zombie): dead. */
bool ns__process_zombie(int64_t pid);

/* ------------------------------------------------- dates and times */

/* YYYY-MM-DD, a real calendar day. */
bool ns__valid_date(const char *s, size_t n);
/* YYYY-MM-DD[ T]HH:MM[:SS[.frac]][Z|+HH[:MM]|-HH[:MM]]. */
bool ns__valid_timestamp(const char *s, size_t n);
/* A duration as job files write it: seconds ("1.5") or numbers with units
 * ms, s, m, h, d ("500ms", "10s", "1m30s"); *out in seconds. */
bool ns__parse_duration(const char *s, double *out);
/* A duration of ms milliseconds as a job file would write it ("500ms",
 * "10s", "2m"); returns buf (>= 32 bytes). */
const char *ns__duration_str(int64_t ms, char *buf);

/* --------------------------------------------- watchdog (watchdog.c) */

/* Cuts short a call blocked on a server: level 1 cancels the statement (may
 * block: called without the watchdog's lock), level 2 drops the connection
 * (must not block: called with it held, so the connection is still open). */
typedef void (*ns_interrupt_fn)(void *arg, int level);
typedef struct ns_watchdog ns_watchdog;
enum { NS_WD_LIMIT = 1, NS_WD_STOP = 2 };
/* A thread that watches the calls armed below; `stop` is the run's stop token. */
ns_status ns__watchdog_start(volatile sig_atomic_t *stop, ns_watchdog **out, ns_error *err);
void ns__watchdog_free(ns_watchdog *w);
/* Before a call that may block on a server for up to `limit` seconds (0: no
 * limit, only a stop request interrupts it). w may be NULL (no watchdog). */
void ns__watchdog_arm(ns_watchdog *w, double limit, ns_interrupt_fn fn, void *arg);
/* The same for an fn that never blocks: called with the watchdog's lock
 * held at every level, so that once disarm returns it is not running. */
void ns__watchdog_arm_quick(ns_watchdog *w, double limit, ns_interrupt_fn fn, void *arg);
/* After it: 0, or why it was interrupted (NS_WD_LIMIT, NS_WD_STOP). Arms
 * nest: only the outermost sets the limit, and its disarm says why. */
int ns__watchdog_disarm(ns_watchdog *w);
/* Disarms after a call that returned st: a failure the watchdog caused is
 * re-described (NS_ESTOPPED "WHAT was cut short on a stop request", or
 * NS_ETIMEDOUT "WHERE: WHAT ran past its statement_timeout (LIMIT)").
 * Returns st. */
ns_status ns__watchdog_end(ns_watchdog *w, ns_status st, ns_error *err, const char *where,
                           const char *what, double limit);
/*
 * A database connection's cancel, for the watchdog: level 1 sends the
 * driver's cancel request (send) from a detached thread of its own, since a
 * frozen server answers neither the statement nor the cancel; level 2 shuts
 * the connection's socket down (the blocked call fails: connection lost).
 * Counted: a cancel in flight keeps it alive after the connection's owner
 * let go of it (ns__cancel_release); drop frees what the driver added.
 * A driver embeds it first in its own struct.
 */
typedef struct ns_cancel ns_cancel;
struct ns_cancel {
    void (*send)(ns_cancel *k);
    void (*drop)(ns_cancel *k);
    int fd;
    int refs;
    pthread_mutex_t mu;
};
void ns__cancel_init(ns_cancel *k, int fd, void (*send)(ns_cancel *), void (*drop)(ns_cancel *));
void ns__cancel_release(ns_cancel *k);
/* The ns_interrupt_fn of an ns_cancel *. */
void ns__cancel_interrupt(void *arg, int level);
/* Whether the armed call is past its limit (a heartbeat then stops renewing). */
bool ns__watchdog_overdue(ns_watchdog *w);
/* poll(arg) is asked, from the watchdog's thread, about once a second while
 * a call has been armed for a second or more: true when a stop was asked
 * elsewhere (`nightshift stop`); it must use connections of its own. */
void ns__watchdog_set_poll(ns_watchdog *w, bool (*poll)(void *arg), void *arg);
/* A stop asked from elsewhere (`nightshift stop`, seen by the heartbeat). */
void ns__watchdog_stop_now(ns_watchdog *w);

/* ------------------------------------------ SQLite waits (sqwait.c) */

/* ----------------------------------------------- retries (retry.c) */

/* A step's retry policy (docs/jobs.md, "retry"): how often a failed chunk
 * is tried again, how long between tries, and on which failures. */
typedef struct ns_retry {
    int64_t limit;       /* tries after the first; 0: none */
    double initial, max; /* the first wait, the longest one (seconds) */
    double multiplier;   /* each wait is the one before times this */
    bool jitter;         /* waits drawn in [d/2, d] */
    char **on;           /* the failures retried, as written; NULL: transient */
    size_t non;
} ns_retry;
/* limit 3, 1 s doubling up to 30 s, with jitter, on the transient failures. */
extern const ns_retry ns__retry_default;
/* Whether `on` is something retry.on may name: a name of the status table
 * (40001, 08*, SQLITE_BUSY, 503, timeout, ...), "transient", any SQLSTATE
 * or class of them ("23*"), any HTTP status. */
bool ns__retry_on_valid(const char *on);
/* Whether the policy retries the failure `e` (by its e->sub); when it does,
 * `what` names the failure ("connection lost, 08006"). */
bool ns__retry_wanted(const ns_retry *r, const ns_error *e, char *what, size_t n);
/* After a failure that was retried (so the step had been connected), a
 * connection that cannot be made again is the connection lost: NS_CONNECT
 * becomes 08001, which the policy retries (the server is still down). */
void ns__retry_reconnecting(ns_error *e);
/* The wait before try number `attempt` (1: the first retry), in seconds. */
double ns__retry_delay(const ns_retry *r, int64_t attempt, uint64_t *seed);

/* ------------------------------------------------- SQL text (sql.c) */

/* How a driver's SQL writes the n-th bound parameter. */
typedef enum ns_placeholder {
    NS_PH_DOLLAR, /* $1 (PostgreSQL) */
    NS_PH_QNUM,   /* ?1 (SQLite) */
    NS_PH_QMARK   /* ? (MySQL: one value per occurrence, in order) */
} ns_placeholder;

/* Appends `sep` and the placeholder of parameter n (1: the first). */
void ns__buf_placeholder(ns_buf *b, ns_placeholder ph, const char *sep, size_t n);

/*
 * The :name parameters of an SQL text, in order of appearance (strings,
 * comments, dollar-quoted bodies and :: casts skipped). Calls fn for each
 * with its offset and length (the name without the colon); stops when fn
 * returns false.
 */
void ns__sql_params(const char *sql, bool (*fn)(void *arg, size_t at, size_t len), void *arg);
/* Calls fn for each statement of a script (split at ';' outside strings,
 * comments and dollar-quoted bodies; blank ones skipped) until it returns
 * false. fn may be NULL. Returns the number of statements. */
size_t ns__sql_split(const char *sql, bool (*fn)(void *arg, const char *stmt, size_t len),
                     void *arg);
/*
 * Rewrites one statement's :name parameters as placeholders of style `ph`
 * into *out, and lists their values in order of appearance (a name used
 * twice is two values: `?` placeholders take one each)
 * (*vals, malloc'd; the strings are borrowed from `values`). NS_EPARAM with
 * the name in `missing` when a parameter has no value.
 */
ns_status ns__sql_bind(const char *stmt, size_t len, ns_placeholder ph, const char *const *names,
                       const char *const *values, size_t n, ns_buf *out, const char ***vals,
                       size_t *nvals, char *missing, size_t missing_len);
#endif
