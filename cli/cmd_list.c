/* cmd_list.c - `nightshift list [--job NAME] [--status STATUS] [--limit N] [--json]`. */
#include "cli.h"
#include "fmt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

int cmd_list(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    char *text = NULL;
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 0) {
        fprintf(stderr, "usage: nightshift list [--job NAME] [--status STATUS] [--limit N] "
                        "[--json]\n");
        goto done;
    }
    if (!(repo = cli_repo_readonly(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    ns_status st = ns_repo_list_json(repo, o.job, o.status, o.limit, &text, &err);
    if (st != NS_OK) {
        cli_error(&err);
        rc = st == NS_EINVAL ? NS_EXIT_USAGE : NS_EXIT_FAILED;
        goto done;
    }
    rc = 0;
    if (o.json) {
        puts(text);
        goto done;
    }
    json_t *a = json_loads(text, 0, NULL);
    if (!json_array_size(a)) {
        printf("no executions\n");
    } else {
        printf("%-6s %-20s %-10s %-20s %9s  %s\n", "ID", "JOB", "STATUS", "STARTED", "DURATION",
               "PARAMS");
        size_t i;
        json_t *e;
        json_array_foreach(a, i, e)
        {
            char started[32], dur[32], params[512];
            fmt_time(json_object_get(e, "started_at"), started, sizeof(started));
            fmt_duration(json_object_get(e, "started_at"), json_object_get(e, "ended_at"), dur,
                         sizeof(dur));
            fmt_params(json_object_get(e, "params"), params, sizeof(params));
            printf("%-6lld %-20s %-10s %-20s %9s  %s\n",
                   (long long)json_integer_value(json_object_get(e, "id")),
                   json_string_value(json_object_get(e, "job")),
                   json_string_value(json_object_get(e, "status")), started, dur, params);
        }
    }
    json_decref(a);
done:
    ns_free(text);
    ns_repo_close(repo);
    free(o.args);
    return rc;
}
