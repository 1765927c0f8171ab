/* cmd_validate.c - `nightshift validate JOB.yaml`. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_validate(int argc, char **argv)
{
    cli_opts o;
    ns_job *job = NULL;
    ns_error err = {0};
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs < 1) {
        cli_usage("validate");
        goto done;
    }
    rc = 0;
    for (int i = 0; i < o.nargs; i++) {
        ns_error_clear(&err);
        if (ns_job_load(o.args[i], &job, &err) != NS_OK) {
            cli_error(&err);
            rc = NS_EXIT_USAGE;
            continue;
        }
        printf("%s: ok (job %s, %zu step%s)\n", o.args[i], ns_job_name(job), ns_job_step_count(job),
               ns_job_step_count(job) == 1 ? "" : "s");
        ns_job_free(job);
    }
done:
    free(o.args);
    return rc;
}
