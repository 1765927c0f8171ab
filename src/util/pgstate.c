/* pgstate.c - the SQLSTATE of a libpq failure, for ns_error.sub. */
#include "util.h"

#include <libpq-fe.h>

const char *ns__pg_state(struct pg_conn *c, const struct pg_result *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state && *state)
        return state;
    /* No answer from the server: the connection is gone (the socket closed
     * under a COPY, a backend terminated, the server restarted). libpq says
     * so only by the connection's status; its class is 08 all the same, so
     * the retry policy sees what it is. */
    if (!c || PQstatus(c) != CONNECTION_OK)
        return "08006";
    return NULL;
}
