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
    char a[32], b[32], d[32], params[1024];

    fmt_time(json_object_get(e, "started_at"), a, sizeof(a));
    fmt_time(json_object_get(e, "ended_at"), b, sizeof(b));
    fmt_duration(json_object_get(e, "started_at"), json_object_get(e, "ended_at"), d, sizeof(d));
    fmt_params(json_object_get(e, "params"), params, sizeof(params));
    printf("execution %lld of job %s (instance %lld)\n", ival(e, "id"), sval(e, "job"),
           ival(e, "instance_id"));
    printf("  status      %s\n", sval(e, "status"));
    printf("  exit        %s%s%s\n", sval(e, "exit_code"), *sval(e, "exit_message") ? ": " : "",
           sval(e, "exit_message"));
    printf("  params      %s\n", *params ? params : "(none)");
    printf("  started     %s\n  ended       %s (%s)\n", a, b, d);
    printf("  process     pid %lld on %s\n", ival(e, "pid"), sval(e, "host"));
    printf("  job file    %s\n", sval(e, "job_file"));
    if (json_is_integer(json_object_get(e, "restart_of")))
        printf("  restart of  execution %lld\n", ival(e, "restart_of"));
    json_t *steps = json_object_get(e, "steps");
    if (!json_array_size(steps))
        return;
    printf("\n  %-16s %-10s %10s %10s %8s %14s %7s %9s %9s\n", "STEP", "STATUS", "READ", "WRITTEN",
           "FILTERED", "SKIPPED r/p/w", "COMMITS", "ROLLBACKS", "DURATION");
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        char skip[48];
        snprintf(skip, sizeof(skip), "%lld/%lld/%lld", ival(s, "read_skip_count"),
                 ival(s, "process_skip_count"), ival(s, "write_skip_count"));
        fmt_duration(json_object_get(s, "started_at"), json_object_get(s, "ended_at"), d,
                     sizeof(d));
        printf("  %-16s %-10s %10lld %10lld %8lld %14s %7lld %9lld %9s\n", sval(s, "name"),
               sval(s, "status"), ival(s, "read_count"), ival(s, "write_count"),
               ival(s, "filter_count"), skip, ival(s, "commit_count"), ival(s, "rollback_count"),
               d);
        /* An exit code that says more than the status (ASSERT_FAILED, ...). */
        const char *code = sval(s, "exit_code");
        bool more = *code && strcmp(code, sval(s, "status")) != 0 && strcmp(code, "EXECUTING") != 0;
        if (more || *sval(s, "exit_message"))
            printf("  %-16s %s%s%s\n", "", more ? code : "",
                   more && *sval(s, "exit_message") ? ": " : "", sval(s, "exit_message"));
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
        fprintf(stderr, "usage: nightshift show EXECUTION_ID [--json]\n");
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
