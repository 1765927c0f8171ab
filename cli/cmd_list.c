/* cmd_list.c - `nightshift list [--job NAME] [--status STATUS] [--limit N] [--json]`. */
#include "cli.h"
#include "fmt.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_list(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    char *text = NULL;
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 0) {
        cli_usage("list");
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
        /* Columns as wide as their widest value, so long job names and
         * statuses ("STARTED (process gone)") stay aligned; the parameters
         * come last, as long as they are. */
        size_t n = json_array_size(a), wid = 2, wjob = 3, wst = 6, i, undelivered = 0;
        char(*status)[64] = calloc(n, sizeof(*status));
        json_t *e;
        if (!status) {
            json_decref(a);
            rc = NS_EXIT_FAILED;
            goto done;
        }
        json_array_foreach(a, i, e)
        {
            char id[32];
            const char *live = json_string_value(json_object_get(e, "liveness"));
            bool nd = json_array_size(json_object_get(e, "notify_errors")) > 0;
            undelivered += nd;
            snprintf(status[i], sizeof(status[i]), "%s%s%s%s%s",
                     json_string_value(json_object_get(e, "status")), nd ? "!" : "",
                     live && strcmp(live, "alive") ? " (" : "",
                     live && strcmp(live, "alive") ? live : "",
                     live && strcmp(live, "alive") ? ")" : "");
            snprintf(id, sizeof(id), "%lld",
                     (long long)json_integer_value(json_object_get(e, "id")));
            const char *job = json_string_value(json_object_get(e, "job"));
            wid = strlen(id) > wid ? strlen(id) : wid;
            wjob = job && strlen(job) > wjob ? strlen(job) : wjob;
            wst = strlen(status[i]) > wst ? strlen(status[i]) : wst;
        }
        /* A SCHEDULED column when a listed run was a scheduler's tick. */
        bool scheduled = false;
        json_array_foreach(a, i, e) scheduled |= json_is_string(json_object_get(e, "scheduled_at"));
        printf("%-*s  %-*s  %-*s  %-23s  %9s  ", (int)wid, "ID", (int)wjob, "JOB", (int)wst,
               "STATUS", "STARTED", "DURATION");
        if (scheduled)
            printf("%-23s  ", "SCHEDULED");
        printf("PARAMS\n");
        json_array_foreach(a, i, e)
        {
            char started[64], dur[32], params[2048];
            fmt_time(json_object_get(e, "started_at"), started, sizeof(started));
            fmt_duration(json_object_get(e, "started_at"), json_object_get(e, "ended_at"), dur,
                         sizeof(dur));
            fmt_params(json_object_get(e, "params"), params, sizeof(params));
            printf("%-*lld  %-*s  %-*s  %-23s  %9s  ", (int)wid,
                   (long long)json_integer_value(json_object_get(e, "id")), (int)wjob,
                   json_string_value(json_object_get(e, "job")), (int)wst, status[i], started, dur);
            if (scheduled) {
                char sched[64] = "-";
                if (json_is_string(json_object_get(e, "scheduled_at")))
                    fmt_time(json_object_get(e, "scheduled_at"), sched, sizeof(sched));
                printf("%-23s  ", sched);
            }
            printf("%s\n", params);
        }
        if (undelivered)
            printf("! a notification of the run was not delivered (nightshift show ID says "
                   "which and why)\n");
        free(status);
    }
    json_decref(a);
done:
    ns_free(text);
    ns_repo_close(repo);
    free(o.args);
    return rc;
}
