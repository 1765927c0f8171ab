/* cmd_recover.c - `nightshift recover [--dry-run] [--job NAME]`: every
 * execution marked running whose process is gone is marked FAILED. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct recover_ctx {
    bool dry_run;
    int marked, alive_again;
} recover_ctx;

static void told(void *arg, int64_t id, const char *job, const char *why, ns_status outcome)
{
    recover_ctx *c = arg;
    if (c->dry_run) {
        printf("execution %lld (%s): %s: would be marked FAILED\n", (long long)id, job, why);
    } else if (outcome == NS_OK) {
        printf("execution %lld (%s): %s: marked FAILED\n", (long long)id, job, why);
        c->marked++;
    } else {
        printf("execution %lld (%s): %s, but it renewed its heartbeat or ended meanwhile: left "
               "as it is\n",
               (long long)id, job, why);
        c->alive_again++;
    }
}

int cmd_recover(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    recover_ctx c = {0};
    double lease;
    int found = 0, rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 0) {
        cli_usage("recover");
        goto done;
    }
    if (!cli_lease(&lease))
        goto done;
    /* --dry-run changes nothing: it neither creates nor migrates one */
    if (!(repo = o.dry_run ? cli_repo_readonly(&o) : cli_repo(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    if (lease > 0)
        ns_repo_set_lease(repo, lease);
    c.dry_run = o.dry_run;
    ns_status st = ns_repo_recover(repo, o.job, o.dry_run, told, &c, &found, &err);
    if (st != NS_OK) {
        cli_error(&err);
        rc = NS_EXIT_FAILED;
        goto done;
    }
    if (!found)
        printf("nothing to recover: every execution marked running is alive\n");
    else if (o.dry_run)
        printf("%d %s would be marked FAILED (--dry-run: nothing changed)\n", found,
               found == 1 ? "execution" : "executions");
    else
        printf("%d %s marked FAILED\n", c.marked, c.marked == 1 ? "execution" : "executions");
    rc = 0;
done:
    ns_repo_close(repo);
    free(o.args);
    return rc;
}
