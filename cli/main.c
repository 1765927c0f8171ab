/* main.c - the nightshift command: dispatch and the options every command shares. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: nightshift COMMAND [ARGS]\n"
    "\n"
    "  run JOB.yaml [NAME=VALUE ...] [--next]   run a job (or restart its failed instance)\n"
    "  restart EXECUTION_ID                     restart a FAILED or STOPPED execution\n"
    "      run and restart take --adopt-checkpoint or --ignore-checkpoint\n"
    "      (alias --restart-from-beginning) when a step's checkpoint is refused\n"
    "  stop EXECUTION_ID                        stop after the current chunk\n"
    "  abandon EXECUTION_ID                     never restart this execution\n"
    "  list [--job NAME] [--status STATUS] [--limit N] [--json]\n"
    "  show EXECUTION_ID [--json]\n"
    "  validate JOB.yaml                        check a job file\n"
    "\n"
    "Every command takes --repository URL (else $NIGHTSHIFT_REPOSITORY, else\n"
    "sqlite:nightshift.db). Exit status: 0 completed, 1 failed, 2 bad usage or job\n"
    "file, 3 stopped, 4 refused. See docs/cli.md.\n";

bool cli_parse(int argc, char **argv, cli_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->args = calloc((size_t)argc + 1, sizeof(*o->args));
    if (!o->args)
        return false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **want = NULL;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--next") == 0) {
            o->next = true;
        } else if (strcmp(a, "--adopt-checkpoint") == 0 || strcmp(a, "--ignore-checkpoint") == 0 ||
                   strcmp(a, "--restart-from-beginning") == 0) {
            ns_checkpoint_use use = a[2] == 'a' ? NS_CHECKPOINT_ADOPT : NS_CHECKPOINT_IGNORE;
            if (o->checkpoint && o->checkpoint != use) {
                fprintf(stderr, "nightshift: --adopt-checkpoint and %s cannot be used together\n",
                        use == NS_CHECKPOINT_ADOPT ? "--ignore-checkpoint" : a);
                return false;
            }
            o->checkpoint = use;
        } else if (strcmp(a, "--repository") == 0) {
            want = &o->repository;
        } else if (strncmp(a, "--repository=", 13) == 0) {
            o->repository = a + 13;
        } else if (strcmp(a, "--job") == 0) {
            want = &o->job;
        } else if (strcmp(a, "--status") == 0) {
            want = &o->status;
        } else if (strcmp(a, "--limit") == 0) {
            if (i + 1 >= argc || atoi(argv[i + 1]) <= 0) {
                fprintf(stderr, "nightshift: --limit takes a positive number\n");
                return false;
            }
            o->limit = atoi(argv[++i]);
        } else if (strcmp(a, "--") == 0) {
            while (++i < argc)
                o->args[o->nargs++] = argv[i];
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "nightshift: unknown option %s\n", a);
            return false;
        } else {
            o->args[o->nargs++] = a;
        }
        if (want) {
            if (i + 1 >= argc) {
                fprintf(stderr, "nightshift: %s needs a value\n", a);
                return false;
            }
            *want = argv[++i];
        }
    }
    return true;
}

void cli_error(const ns_error *err)
{
    fprintf(stderr, "nightshift: %s\n", err->message[0] ? err->message : ns_strerror(err->code));
}

static ns_repo *open_repo(const cli_opts *o, bool readonly)
{
    ns_repo *r = NULL;
    ns_error err = {0};
    if ((readonly ? ns_repo_open_readonly : ns_repo_open)(o->repository, &r, &err) != NS_OK) {
        cli_error(&err);
        return NULL;
    }
    return r;
}

ns_repo *cli_repo(const cli_opts *o)
{
    return open_repo(o, false);
}

ns_repo *cli_repo_readonly(const cli_opts *o)
{
    return open_repo(o, true);
}

bool cli_exec_id(const char *s, int64_t *id)
{
    char *end;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || *end || v <= 0) {
        fprintf(stderr, "nightshift: '%s' is not an execution id\n", s ? s : "");
        return false;
    }
    *id = v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"run", cmd_run},          {"restart", cmd_restart}, {"stop", cmd_stop},
                {"abandon", cmd_abandon},  {"list", cmd_list},       {"show", cmd_show},
                {"validate", cmd_validate}};

    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? NS_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("nightshift %s\n", NS_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "nightshift: unknown command '%s'\n\n%s", argv[1], usage);
    return NS_EXIT_USAGE;
}
