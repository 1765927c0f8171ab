/* cmd_stop.c - `nightshift stop EXECUTION_ID`: ask a running execution, in any
 * process sharing the repository, to stop after its current chunk. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_stop(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    int64_t id;
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 1) {
        cli_usage("stop");
        goto done;
    }
    if (!cli_exec_id(o.args[0], &id))
        goto done;
    if (!(repo = cli_repo(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    ns_status st = ns_repo_request_stop(repo, id, &err);
    if (st == NS_OK) {
        fprintf(stderr, "execution %lld: STOPPING (it stops after its current chunk)\n",
                (long long)id);
        rc = 0;
    } else {
        cli_error(&err);
        rc = st == NS_EREFUSED ? NS_EXIT_REFUSED : st == NS_ENOTFOUND ? NS_EXIT_USAGE : 1;
    }
done:
    ns_repo_close(repo);
    free(o.args);
    return rc;
}
