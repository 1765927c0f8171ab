/* pgstate.c - the SQLSTATE of a libpq failure, for ns_error.sub. */
#include "util.h"

#include <libpq-fe.h>

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
