/* cmd_show.c - `nightshift show EXECUTION_ID [--json]`. */
#include "cli.h"
#include "fmt.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static long long ival(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const char *sval(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_human(json_t *e)
{
    char a[64], b[64], d[32], params[2048];

    fmt_time(json_object_get(e, "started_at"), a, sizeof(a));
    fmt_time(json_object_get(e, "ended_at"), b, sizeof(b));
    fmt_duration(json_object_get(e, "started_at"), json_object_get(e, "ended_at"), d, sizeof(d));
    fmt_params(json_object_get(e, "params"), params, sizeof(params));
    printf("execution %lld of job %s (instance %lld)\n", ival(e, "id"), sval(e, "job"),
           ival(e, "instance_id"));
    const char *live = sval(e, "liveness");
    if (*live && strcmp(live, "alive") != 0)
        printf("  status      %s (%s: it is marked FAILED when its instance is launched "
               "again)\n",
               sval(e, "status"), live);
    else
        printf("  status      %s\n", sval(e, "status"));
    printf("  exit        %s%s%s\n", sval(e, "exit_code"), *sval(e, "exit_message") ? ": " : "",
           sval(e, "exit_message"));
    printf("  params      %s\n", *params ? params : "(none)");
    if (json_is_string(json_object_get(e, "scheduled_at"))) {
        char sched[64];
        fmt_time(json_object_get(e, "scheduled_at"), sched, sizeof(sched));
        printf("  scheduled   %s (a scheduler's tick)\n", sched);
    }
    printf("  started     %s\n  ended       %s (%s)\n", a, b, d);
    printf("  process     pid %lld on %s\n", ival(e, "pid"), sval(e, "host"));
    printf("  job file    %s\n", sval(e, "job_file"));
    size_t ni;
    json_t *ne;
    json_array_foreach(json_object_get(e, "notify_errors"), ni, ne)
        printf("  notify      NOT DELIVERED: %s\n", json_string_value(ne));
    if (json_is_integer(json_object_get(e, "restart_of")))
        printf("  restart of  execution %lld\n", ival(e, "restart_of"));
    if (json_is_integer(json_object_get(e, "restarted_by")))
        printf("  restarted   by execution %lld\n", ival(e, "restarted_by"));
    json_t *steps = json_object_get(e, "steps");
    if (!json_array_size(steps))
        return;
    size_t i, wname = 4;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        size_t len = strlen(sval(s, "name"));
        wname = len > wname ? len : wname;
    }
    printf("\n  %-*s %-10s %10s %10s %8s %16s %7s %9s %9s\n", (int)wname, "STEP", "STATUS", "READ",
           "WRITTEN", "FILTERED", "SKIPPED r/p/w", "COMMITS", "ROLLBACKS", "DURATION");
    json_array_foreach(steps, i, s)
    {
        char skip[100], r[32], w[32], f[32], x[32], y[32], z[32], c[32], rb[32];
        snprintf(skip, sizeof(skip), "%s/%s/%s",
                 fmt_count(ival(s, "read_skip_count"), x, sizeof(x)),
                 fmt_count(ival(s, "process_skip_count"), y, sizeof(y)),
                 fmt_count(ival(s, "write_skip_count"), z, sizeof(z)));
        fmt_duration(json_object_get(s, "started_at"), json_object_get(s, "ended_at"), d,
                     sizeof(d));
        printf("  %-*s %-10s %10s %10s %8s %16s %7s %9s %9s\n", (int)wname, sval(s, "name"),
               sval(s, "status"), fmt_count(ival(s, "read_count"), r, sizeof(r)),
               fmt_count(ival(s, "write_count"), w, sizeof(w)),
               fmt_count(ival(s, "filter_count"), f, sizeof(f)), skip,
               fmt_count(ival(s, "commit_count"), c, sizeof(c)),
               fmt_count(ival(s, "rollback_count"), rb, sizeof(rb)), d);
        /* An exit code that says more than the status (ASSERT_FAILED, ...). */
        const char *code = sval(s, "exit_code");
        bool more = *code && strcmp(code, sval(s, "status")) != 0 && strcmp(code, "EXECUTING") != 0;
        if (more || *sval(s, "exit_message"))
            printf("  %-*s %s%s%s\n", (int)wname, "", more ? code : "",
                   more && *sval(s, "exit_message") ? ": " : "", sval(s, "exit_message"));
        json_t *secs = json_object_get(s, "seconds");
        if (json_is_object(secs)) {
            double el =
                fmt_seconds(json_object_get(s, "started_at"), json_object_get(s, "ended_at"));
            char rate[64] = "";
            if (el > 0) {
                char n[32];
                snprintf(rate, sizeof(rate), "; %s items/s",
                         fmt_count((long long)((double)ival(s, "read_count") / el), n, sizeof(n)));
            }
            printf("  %-*s time: read %.2fs, process %.2fs, write %.2fs, commit %.2fs, retry wait "
                   "%.2fs%s\n",
                   (int)wname, "", json_number_value(json_object_get(secs, "read")),
                   json_number_value(json_object_get(secs, "process")),
                   json_number_value(json_object_get(secs, "write")),
                   json_number_value(json_object_get(secs, "commit")),
                   json_number_value(json_object_get(secs, "retry_wait")), rate);
        }
        int64_t retries = ival(s, "retry_count");
        if (retries > 0)
            printf("  %-*s %s %s after a transient failure (retry: in the job file)\n", (int)wname,
                   "", fmt_count(retries, c, sizeof(c)), retries == 1 ? "retry" : "retries");
    }
}

int cmd_show(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    char *text = NULL;
    int64_t id;
    int rc = NS_EXIT_USAGE;

    if (!cli_parse(argc, argv, &o) || o.nargs != 1) {
        cli_usage("show");
        goto done;
    }
    if (!cli_exec_id(o.args[0], &id))
        goto done;
    if (!(repo = cli_repo_readonly(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    ns_status st = ns_repo_show_json(repo, id, &text, &err);
    if (st != NS_OK) {
        cli_error(&err);
        rc = st == NS_ENOTFOUND ? NS_EXIT_USAGE : NS_EXIT_FAILED;
        goto done;
    }
    rc = 0;
    if (o.json) {
        puts(text);
    } else {
        json_t *e = json_loads(text, 0, NULL);
        print_human(e);
        json_decref(e);
    }
done:
    ns_free(text);
    ns_repo_close(repo);
    free(o.args);
    return rc;
}
