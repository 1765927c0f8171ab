/* cmd_purge.c - `nightshift purge (--before DATE | --keep-last N) [--job
 * NAME] [--dry-run] [--with-files]`: old executions deleted. */
#include "cli.h"
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_purge(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    ns_purge_counts c;
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 0) {
        cli_usage("purge");
        goto done;
    }
    if (!o.before && o.keep_last <= 0) {
        fprintf(stderr, "nightshift: purge needs --before DATE or --keep-last N\n");
        cli_usage("purge");
        goto done;
    }
    if (!(repo = cli_repo(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    ns_status st =
        ns_repo_purge(repo, o.job, o.before, o.keep_last, o.dry_run, o.with_files, &c, &err);
    if (st != NS_OK) {
        cli_error(&err);
        rc = st == NS_EINVAL ? NS_EXIT_USAGE : NS_EXIT_FAILED;
        goto done;
    }
    char e[32], s[32], p[32], x[32];
    printf("%s %s executions, %s steps, %s parameters, %s contexts",
           o.dry_run ? "would delete" : "deleted", fmt_count(c.executions, e, sizeof(e)),
           fmt_count(c.steps, s, sizeof(s)), fmt_count(c.params, p, sizeof(p)),
           fmt_count(c.contexts, x, sizeof(x)));
    if (o.with_files)
        printf(", %lld rejects files", (long long)c.files);
    printf("%s\n", o.dry_run ? " (--dry-run: nothing changed)" : "");
    rc = 0;
done:
    ns_repo_close(repo);
    free(o.args);
    return rc;
}
