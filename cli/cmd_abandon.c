/* cmd_abandon.c - `nightshift abandon EXECUTION_ID`: a STOPPED or FAILED
 * execution is never restarted. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_abandon(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    int64_t id;
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 1) {
        cli_usage("abandon");
        goto done;
    }
    if (!cli_exec_id(o.args[0], &id))
        goto done;
    if (!(repo = cli_repo(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    ns_status st = ns_repo_abandon(repo, id, &err);
    if (st == NS_OK) {
        fprintf(stderr, "execution %lld: ABANDONED\n", (long long)id);
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
