/*
 * conn.c - MariaDB/MySQL connections: their URLs, nightshift's session
 * (strict, utf8mb4, keepalives), the SQLSTATE of a failure, and KILL QUERY
 * for the watchdog.
 */
#include "db/mysql/mysql.h"

#include <ctype.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Strict for every table, no zero dates, no silent engine change: a value
 * MySQL would otherwise coerce (12x -> 12, a bad date -> 0000-00-00, a long
 * string cut) is an error, or a warning under LOAD DATA LOCAL, which the
 * writer takes as the row's error. */
#define NS_MY_SQL_MODE                                                                             \
    "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,"                   \
    "NO_ENGINE_SUBSTITUTION"

static char *decode(const char *p, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && isxdigit((unsigned char)p[i + 1]) &&
            isxdigit((unsigned char)p[i + 2])) {
            char hex[3] = {p[i + 1], p[i + 2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *o++ = p[i];
        }
    }
    *o = '\0';
    return out;
}

void ns__my_url_free(ns_my_url *u)
{
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->db);
    free(u->socket);
    memset(u, 0, sizeof(*u));
}

ns_status ns__my_url_parse(const char *url, ns_my_url *u, char *why, size_t n)
{
    const char *p;
    memset(u, 0, sizeof(*u));
    u->connect_timeout = 10;
    if (strncmp(url, "mysql://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "mariadb://", 10) == 0)
        p = url + 10;
    else {
        snprintf(why, n, "not a mysql:// or mariadb:// URL");
        return NS_EINVAL;
    }
    const char *end = p + strcspn(p, "/?");
    const char *at = memrchr(p, '@', (size_t)(end - p));
    bool oom = false;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *ue = colon ? colon : at;
        oom |= !(u->user = decode(p, (size_t)(ue - p)));
        if (colon)
            oom |= !(u->password = decode(colon + 1, (size_t)(at - colon - 1)));
        p = at + 1;
    }
    /* host, host:port, [v6]:port */
    const char *hs = p, *he = end, *port = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close) {
            snprintf(why, n, "an IPv6 host has no closing ']'");
            ns__my_url_free(u);
            return NS_EINVAL;
        }
        hs = p + 1;
        he = close;
        if (close + 1 < end && close[1] == ':')
            port = close + 2;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon) {
            he = colon;
            port = colon + 1;
        }
    }
    if (he > hs)
        oom |= !(u->host = decode(hs, (size_t)(he - hs)));
    if (port) {
        char *e;
        long v = strtol(port, &e, 10);
        if (e != end || v <= 0 || v > 65535) {
            snprintf(why, n, "the port is not a number from 1 to 65535");
            ns__my_url_free(u);
            return NS_EINVAL;
        }
        u->port = (unsigned)v;
    }
    p = end;
    if (*p == '/') {
        size_t dl = strcspn(p + 1, "?");
        if (dl)
            oom |= !(u->db = decode(p + 1, dl));
        p += 1 + dl;
    }
    if (*p == '?') {
        p++;
        while (*p && !oom) {
            size_t len = strcspn(p, "&");
            const char *eq = memchr(p, '=', len);
            size_t kl = eq ? (size_t)(eq - p) : len;
            const char *v = eq ? eq + 1 : p + len;
            size_t vl = (size_t)(p + len - v);
            if (kl == 6 && strncmp(p, "socket", 6) == 0) {
                free(u->socket);
                oom |= !(u->socket = decode(v, vl));
            } else if (kl == 8 && strncmp(p, "password", 8) == 0) {
                free(u->password);
                oom |= !(u->password = decode(v, vl));
            } else if (kl == 15 && strncmp(p, "connect_timeout", 15) == 0) {
                char num[16];
                snprintf(num, sizeof(num), "%.*s", (int)(vl < 15 ? vl : 15), v);
                char *e;
                long t = strtol(num, &e, 10);
                if (!vl || *e || t <= 0 || t > 3600) {
                    snprintf(why, n, "connect_timeout is not a number of seconds (1 to 3600)");
                    ns__my_url_free(u);
                    return NS_EINVAL;
                }
                u->connect_timeout = (unsigned)t;
            } else {
                snprintf(why, n,
                         "unknown parameter '%.*s' (nightshift reads socket, password and "
                         "connect_timeout)",
                         (int)(kl > 40 ? 40 : kl), p);
                ns__my_url_free(u);
                return NS_EINVAL;
            }
            p += len;
            if (*p == '&')
                p++;
        }
    }
    if (oom) {
        ns__my_url_free(u);
        snprintf(why, n, "out of memory");
        return NS_ENOMEM;
    }
    return NS_OK;
}

/* What a refused connection's error number means, as PostgreSQL's SQLSTATE
 * for the same refusal (so that retry.on and the docs name one set). */
static const char *connect_state(unsigned no)
{
    switch (no) {
    case ER_ACCESS_DENIED_ERROR:
    case ER_DBACCESS_DENIED_ERROR:
    case ER_ACCESS_DENIED_NO_PASSWORD_ERROR:
        return "28000";
    case ER_BAD_DB_ERROR:
        return "3D000";
    case ER_CON_COUNT_ERROR:
    case ER_TOO_MANY_USER_CONNECTIONS:
        return "53300";
    case ER_SERVER_SHUTDOWN:
        return "57P03";
    default:
        return "NS_CONNECT";
    }
}

static void keepalive(MYSQL *m)
{
    int fd = (int)mysql_get_socket(m), on = 1, idle = 30, intvl = 10, cnt = 3;
    if (fd < 0)
        return;
    /* A Unix socket takes none of these; the calls fail harmlessly. */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* The infile handler of a connection that sends no file: a server asking
 * for one (as a hostile server may, in answer to any statement) gets an
 * error, never a file of this machine. The table writer installs its own,
 * which sends its chunk and nothing else. */
static int no_file_init(void **ptr, const char *name, void *arg)
{
    (void)name;
    (void)arg;
    *ptr = NULL;
    return 1;
}

static int no_file_read(void *ptr, char *buf, unsigned int len)
{
    (void)ptr;
    (void)buf;
    (void)len;
    return -1;
}

static void no_file_end(void *ptr)
{
    (void)ptr;
}

static int no_file_error(void *ptr, char *msg, unsigned int len)
{
    (void)ptr;
    snprintf(msg, len, "nightshift sends no file on this connection");
    return 2000;
}

ns_status ns__my_connect(const char *url, const char *shown, MYSQL **out, ns_error *err)
{
    ns_my_url u;
    char why[160];
    ns_status st = ns__my_url_parse(url, &u, why, sizeof(why));
    MYSQL *m = NULL;
    *out = NULL;
    if (st != NS_OK)
        return ns__err(err, st, NULL, "%s: %s", shown, why);
    if (!(m = mysql_init(NULL))) {
        ns__my_url_free(&u);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    unsigned on = 1;
    mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &u.connect_timeout);
    mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &on);
    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_optionsv(m, MYSQL_INIT_COMMAND, "SET SESSION sql_mode = '" NS_MY_SQL_MODE "'");
    mysql_optionsv(m, MYSQL_INIT_COMMAND, "SET SESSION max_error_count = 65535");
    mysql_set_local_infile_handler(m, no_file_init, no_file_read, no_file_end, no_file_error, NULL);
    /* Only the options above (no my.cnf is read: no option file of the
     * user running nightshift changes what a job does). */
    if (!mysql_real_connect(m, u.socket ? "localhost" : u.host, u.user, u.password, u.db, u.port,
                            u.socket, CLIENT_FOUND_ROWS | CLIENT_MULTI_RESULTS)) {
        unsigned no = mysql_errno(m);
        st = ns__err(err, NS_EDB, connect_state(no), "%s: cannot connect: %s (%u)", shown,
                     mysql_error(m), no);
        mysql_close(m);
        ns__my_url_free(&u);
        return st;
    }
    ns__my_url_free(&u);
    keepalive(m);
    *out = m;
    return NS_OK;
}

const char *ns__my_state_of(unsigned no, const char *server)
{
    switch (no) {
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_CONN_HOST_ERROR:
    case CR_CONNECTION_ERROR:
    case CR_SERVER_LOST_EXTENDED:
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
        return "08006";
    case ER_LOCK_DEADLOCK:
        return "40001";
    case ER_LOCK_WAIT_TIMEOUT:
        return "55P03";
    case ER_QUERY_INTERRUPTED:
        return "57014";
    default:
        break;
    }
    if (no >= 2000 && no < 3000) /* the client's own: the connection */
        return "08006";
    return server && *server ? server : ns__my_errno_state(no);
}

bool ns__my_chunk_failure(unsigned no)
{
    const char *st = ns__my_state_of(no, "");
    return strcmp(st, "08006") == 0 || strcmp(st, "40001") == 0 || strcmp(st, "55P03") == 0 ||
           strcmp(st, "57014") == 0 || no == ER_CON_COUNT_ERROR || no == 1148 || no == 3948;
}

const char *ns__my_state(MYSQL *m)
{
    return ns__my_state_of(mysql_errno(m), mysql_sqlstate(m));
}

const char *ns__my_errno_state(unsigned no)
{
    /* The SQLSTATE MariaDB sends with each error as an error. */
    switch (no) {
    case 1062: /* ER_DUP_ENTRY */
    case 1022: /* ER_DUP_KEY */
    case 1452: /* ER_NO_REFERENCED_ROW_2 */
    case 1451: /* ER_ROW_IS_REFERENCED_2 */
    case 1216:
    case 1217:
    case 1048: /* ER_BAD_NULL_ERROR */
    case 4025: /* ER_CONSTRAINT_FAILED */
        return "23000";
    case 1263: /* ER_WARN_NULL_TO_NOTNULL */
        return "22004";
    case 1406: /* ER_DATA_TOO_LONG */
        return "22001";
    case 1264: /* ER_WARN_DATA_OUT_OF_RANGE */
        return "22003";
    case 1366: /* ER_TRUNCATED_WRONG_VALUE_FOR_FIELD */
    case 1292: /* ER_TRUNCATED_WRONG_VALUE */
        return "22007";
    case 1365: /* ER_DIVISION_BY_ZERO */
        return "22012";
    case 1265: /* WARN_DATA_TRUNCATED */
    case 1261: /* ER_WARN_TOO_FEW_RECORDS */
    case 1262: /* ER_WARN_TOO_MANY_RECORDS */
        return "01000";
    case 1644: /* ER_SIGNAL_EXCEPTION */
        return "45000";
    default:
        return "HY000";
    }
}

ns_status ns__my_fail(MYSQL *m, ns_error *err, const char *where, const char *what)
{
    unsigned no = mysql_errno(m);
    const char *state = ns__my_state(m);
    return ns__err(err, no == CR_OUT_OF_MEMORY ? NS_ENOMEM : NS_EDB, state, "%s: %s: %s (%u)",
                   where, what, mysql_error(m), no);
}

/* ------------------------------------------------------------ cancel */

struct ns_my_cancel {
    ns_cancel base;
    char *url;
    unsigned long thread;
};

/* KILL QUERY on a connection of its own. */
static void send_kill(ns_cancel *base)
{
    ns_my_cancel *k = (ns_my_cancel *)base;
    MYSQL *m = NULL;
    ns_error e;
    if (ns__my_connect(k->url, "", &m, &e) == NS_OK) {
        char sql[64];
        snprintf(sql, sizeof(sql), "KILL QUERY %lu", k->thread);
        (void)mysql_query(m, sql);
        mysql_close(m);
    }
}

static void drop_kill(ns_cancel *base)
{
    ns_my_cancel *k = (ns_my_cancel *)base;
    free(k->url);
    free(k);
}

ns_my_cancel *ns__my_cancel_new(MYSQL *m, const char *url)
{
    ns_my_cancel *k = calloc(1, sizeof(*k));
    if (!k || !(k->url = ns__strdup(url))) {
        free(k);
        return NULL;
    }
    k->thread = mysql_thread_id(m);
    ns__cancel_init(&k->base, (int)mysql_get_socket(m), send_kill, drop_kill);
    return k;
}

void ns__my_cancel_free(ns_my_cancel *k)
{
    if (k)
        ns__cancel_release(&k->base);
}

void ns__my_interrupt(void *arg, int level)
{
    ns__cancel_interrupt(arg ? &((ns_my_cancel *)arg)->base : NULL, level);
}
