/* cmd_restart.c - `nightshift restart EXECUTION_ID`. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_restart(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    ns_outcome out = {0};
    int64_t id;
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 1) {
        cli_usage("restart");
        goto done;
    }
    if (!cli_exec_id(o.args[0], &id))
        goto done;
    double lease;
    if (!cli_lease(&lease))
        goto done;
    if (!(repo = cli_repo(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    cli_signals();
    ns_launch l = {.listener = cli_listener(),
                   .checkpoint = o.checkpoint,
                   .stop = cli_stop_token(),
                   .lease_seconds = lease};
    ns_status st = ns_execution_restart(repo, id, &l, &out, &err);
    rc = cli_outcome(st, &out, &err);
done:
    ns_repo_close(repo);
    free(o.args);
    return rc;
}
