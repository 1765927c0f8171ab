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

    if (!cli_parse(argc, argv, &o) || (o.nargs < 1 && !o.plugins)) {
        cli_usage("validate");
        goto done;
    }
    if (o.plugins) {
        /* What a job file may name, with each section's keys. */
        const char *kind, *name, *key;
        for (size_t i = 0; ns_plugin_at(i, &kind, &name); i++) {
            printf("%-9s %-8s", kind, name);
            for (size_t j = 0; (key = ns_plugin_key(i, j)); j++)
                printf("%s%s", j ? ", " : " ", key);
            if (!ns_plugin_key(i, 0))
                printf(" (no section: the step's reader, processor, writer, chunk, skip, rejects)");
            putchar('\n');
        }
        rc = 0;
        if (o.nargs == 0)
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
        ns_schedule_info si;
        printf("%s: ok (job %s, %zu step%s", o.args[i], ns_job_name(job), ns_job_step_count(job),
               ns_job_step_count(job) == 1 ? "" : "s");
        if (ns_job_schedule(job, &si))
            printf("; scheduled \"%s\" in %s", si.cron, si.timezone);
        printf(")\n");
        ns_job_free(job);
    }
done:
    free(o.args);
    return rc;
}
