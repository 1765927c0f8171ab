/*
 * conn.c - PostgreSQL connections: the SQLSTATE of a libpq failure (for
 * ns_error.sub), of a failed connection attempt, and cancel for the watchdog.
 */
#include "db/pg/pg.h"

#include <libpq-fe.h>
#include <string.h>

const char *ns__pg_state(struct pg_conn *c, const struct pg_result *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state && *state)
        return state;
    /* The server sends a SQLSTATE with every error (protocol 3), so a
     * failure without one is libpq's own: the connection is gone (the
     * socket closed under a COPY, a backend terminated, the server
     * restarted). libpq does not always say so by the connection's status
     * (a reset socket leaves it CONNECTION_OK until the next call: seen
     * with pg_ctl restart -m immediate); its class is 08 all the same, so
     * the retry policy sees what it is. */
    (void)c;
    return "08006";
}

PGconn *ns__pg_connect(const char *url, const char *app)
{
    /* Defaults first: what the URL says is read after them and wins
     * (libpq keeps the last value of a keyword). Without a connect
     * timeout, a server that accepts the connection and never answers (a
     * frozen postmaster) holds the caller for ever; without keepalives, a
     * peer gone without a word (a host powered off, a dropped route) is
     * noticed only by the next write. */
    const char *const keys[] = {
        "connect_timeout",  "keepalives", "keepalives_idle",           "keepalives_interval",
        "keepalives_count", "dbname",     "fallback_application_name", NULL};
    const char *const vals[] = {NS_PG_CONNECT_TIMEOUT, "1", "30", "10", "3", url, app, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

/* A connection's cancel key, for the watchdog (ns__pg_interrupt). */
struct ns_pg_cancel {
    ns_cancel base;
    PGcancel *cancel;
};

static void send_cancel(ns_cancel *base)
{
    char buf[256];
    (void)PQcancel(((ns_pg_cancel *)base)->cancel, buf, sizeof(buf));
}

static void drop_cancel(ns_cancel *base)
{
    ns_pg_cancel *k = (ns_pg_cancel *)base;
    PQfreeCancel(k->cancel);
    free(k);
}

ns_pg_cancel *ns__pg_cancel_new(struct pg_conn *c)
{
    ns_pg_cancel *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    if (!(k->cancel = PQgetCancel(c))) {
        free(k);
        return NULL;
    }
    ns__cancel_init(&k->base, PQsocket(c), send_cancel, drop_cancel);
    return k;
}

void ns__pg_cancel_free(ns_pg_cancel *k)
{
    if (k)
        ns__cancel_release(&k->base);
}

void ns__pg_interrupt(void *arg, int level)
{
    ns__cancel_interrupt(arg ? &((ns_pg_cancel *)arg)->base : NULL, level);
}

/* What the server said while refusing a connection, in its English words,
 * and the SQLSTATE it sent with them. */
static const struct {
    const char *words, *state;
} refusals[] = {
    {"password authentication failed", "28P01"},
    {"no pg_hba.conf entry", "28000"},
    {"is not permitted to log in", "28000"},
    {"authentication failed", "28000"},
    {"permission denied for database", "42501"},
    {"too many connections", "53300"},
    {"remaining connection slots are reserved", "53300"},
    {"the database system is starting up", "57P03"},
    {"the database system is shutting down", "57P03"},
    {"the database system is in recovery mode", "57P03"},
};

const char *ns__pg_connect_state(struct pg_conn *c)
{
    const char *m = c ? PQerrorMessage(c) : "";
    /* "database "x" does not exist" and "role "x" does not exist" */
    const char *db = strstr(m, "database \"");
    if (db && strstr(db, "\" does not exist"))
        return "3D000";
    const char *role = strstr(m, "role \"");
    if (role && strstr(role, "\" does not exist"))
        return "28000";
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
        if (strstr(m, refusals[i].words))
            return refusals[i].state;
    return "NS_CONNECT";
}
