/* cmd_run.c - `nightshift run JOB.yaml [NAME=VALUE ...] [--next]`. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_run(int argc, char **argv)
{
    cli_opts o;
    ns_job *job = NULL;
    ns_repo *repo = NULL;
    ns_error err = {0};
    ns_outcome out = {0};
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o))
        goto done;
    if (o.nargs < 1) {
        cli_usage("run");
        goto done;
    }
    ns_status lst = ns_job_load(o.args[0], &job, &err);
    if (lst != NS_OK) {
        cli_error(&err);
        if (lst == NS_ENOMEM)
            rc = NS_EXIT_FAILED; /* not the file's fault */
        goto done;
    }
    double lease;
    if (!cli_lease(&lease))
        goto done;
    if (!(repo = cli_repo(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    cli_signals();
    ns_launch l = {.params = o.args + 1,
                   .nparams = (size_t)(o.nargs - 1),
                   .next = o.next,
                   .listener = cli_listener(),
                   .stop = cli_stop_token(),
                   .lease_seconds = lease,
                   .checkpoint = o.checkpoint,
                   .tick_at = o.tick};
    ns_status st = ns_job_run(repo, job, &l, &out, &err);
    rc = cli_outcome(st, &out, &err);
done:
    ns_repo_close(repo);
    ns_job_free(job);
    free(o.args);
    return rc;
}
