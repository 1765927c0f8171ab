/* main.c - the nightshift command: dispatch and the options every command shares. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every command: its name, its handler, a one-line summary and its help
 * (`nightshift COMMAND --help`, `nightshift help COMMAND`). The general
 * usage is made from the summaries, so the two never disagree. */
static const struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *synopsis, *summary, *help;
} commands[] = {
    {"run", cmd_run, "run JOB.yaml [NAME=VALUE ...] [--next]",
     "run a job (or restart its failed instance)",
     "Runs the job instance named by the job and its identifying parameters: starts it,\n"
     "restarts it after a failure or stop (completed steps are skipped, the unfinished\n"
     "one resumes after its last committed chunk), or refuses (exit 4) when it is\n"
     "running, completed or abandoned.\n"
     "\n"
     "  NAME=VALUE                the job's parameters (see its params:)\n"
     "  run.id=N, --next          a new instance: run.id N, or the next unused one\n"
     "  --adopt-checkpoint        resume from a target checkpoint this repository did\n"
     "                            not write (another or a recreated repository)\n"
     "  --ignore-checkpoint       start unfinished steps from their first record\n"
     "  --restart-from-beginning  the same (for an input file that changed)\n"
     "  --tick T                  (the scheduler's) the run of the job's tick at T, seconds\n"
     "                            since the epoch: only while the tick waits to start\n"
     "  --repository URL          the job repository\n"},
    {"restart", cmd_restart, "restart EXECUTION_ID", "restart a FAILED or STOPPED execution",
     "Reloads the job file and parameters recorded for the execution and runs it again,\n"
     "from any directory (relative paths are resolved where it was launched).\n"
     "\n"
     "  --adopt-checkpoint, --ignore-checkpoint, --restart-from-beginning   as for run\n"
     "  --repository URL          the job repository\n"},
    {"stop", cmd_stop, "stop EXECUTION_ID", "stop after the current chunk",
     "Asks a running execution, in any process or machine sharing the repository, to\n"
     "stop after its current chunk (STOPPING, then STOPPED). Not running: exit 4.\n"
     "\n"
     "  --repository URL          the job repository\n"},
    {"abandon", cmd_abandon, "abandon EXECUTION_ID", "never restart this execution",
     "Marks a STOPPED or FAILED execution ABANDONED: its instance is never restarted\n"
     "(start another with --next or other parameters). Others: exit 4.\n"
     "\n"
     "  --repository URL          the job repository\n"},
    {"recover", cmd_recover, "recover [--dry-run] [--job NAME]",
     "mark FAILED the runs whose process is gone",
     "Marks FAILED every execution the repository says is running whose process is\n"
     "gone: its pid dead on this host, or, for a run on another host, its heartbeat\n"
     "older than the lease ($NIGHTSHIFT_LEASE, default 60 s). Says why for each. A\n"
     "later run of its instance restarts it (run does the same check for the one\n"
     "instance it launches; recover does it for all, say after a host crashed).\n"
     "\n"
     "  --dry-run                 say what would be marked, change nothing\n"
     "  --job NAME                of one job\n"
     "  --repository URL          the job repository\n"},
    {"purge", cmd_purge,
     "purge (--before DATE | --keep-last N) [--job NAME] [--dry-run] [--with-files]",
     "delete old executions from the repository",
     "Deletes old executions with their steps, parameters and contexts: those created\n"
     "before DATE, or all but the N newest of each job. Never a running execution, nor\n"
     "any of an instance that is not finished (its last execution FAILED or STOPPED:\n"
     "a restart needs them). An instance whose executions are all purged still refuses\n"
     "to run again when it had completed. Prints what it deleted.\n"
     "\n"
     "  --before DATE             created before DATE (YYYY-MM-DD, or a UTC time\n"
     "                            YYYY-MM-DDTHH:MM:SS)\n"
     "  --keep-last N             keep the N newest executions of each job\n"
     "  --job NAME                of one job\n"
     "  --dry-run                 say what would be deleted, change nothing\n"
     "  --with-files              also remove their rejects files (those tagged as theirs)\n"
     "  --repository URL          the job repository\n"},
    {"list", cmd_list, "list [--job NAME] [--status STATUS] [--limit N] [--json]",
     "the newest executions",
     "Lists the newest executions, newest first. Reads only: never creates a repository.\n"
     "\n"
     "  --job NAME                of one job\n"
     "  --status STATUS           in one status (any case): STARTING, STARTED, STOPPING,\n"
     "                            STOPPED, FAILED, COMPLETED, ABANDONED, UNKNOWN\n"
     "  --limit N                 at most N (default 20)\n"
     "  --json                    as a JSON array\n"
     "  --repository URL          the job repository\n"},
    {"show", cmd_show, "show EXECUTION_ID [--json]", "one execution, its steps and counters",
     "Shows one execution: status, exit code and message, parameters, times, process,\n"
     "which execution it restarted and which restarted it, and each step's eight\n"
     "counters. Reads only: never creates a repository.\n"
     "\n"
     "  --json                    as one JSON object\n"
     "  --repository URL          the job repository\n"},
    {"schedule", cmd_schedule, "schedule JOB.yaml|DIR ... [--count N] [--from TIME] [--json]",
     "the next fire times of job schedules",
     "For each job file (a folder: its *.yaml and *.yml files that have a schedule:),\n"
     "prints the schedule with its defaults and its next N fire times, in the\n"
     "schedule's zone and in UTC; a time that falls in a DST gap or a repeated hour\n"
     "says what the dst: policy does with it. Nothing runs; no repository is opened.\n"
     "\n"
     "  --count N                 how many fire times (default 5)\n"
     "  --from TIME               after TIME instead of now: YYYY-MM-DD (UTC midnight),\n"
     "                            YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS+HH:MM\n"
     "  --json                    as a JSON array: ISO 8601 instants with their offsets\n"},
    {"scheduler", cmd_scheduler, "scheduler JOB.yaml|DIR ...", "run scheduled jobs (a daemon)",
     "Runs in the foreground (for systemd: contrib/nightshift-scheduler.service) and\n"
     "starts each job that has a schedule: at its ticks, each run a child process\n"
     "`nightshift run`. Each tick is recorded in the repository before its run, so\n"
     "schedulers sharing a PostgreSQL repository start it once. Logs a line per event\n"
     "to stderr. SIGTERM or SIGINT: the runs stop at a chunk boundary, and it exits\n"
     "once they have; SIGHUP: the job files are read again (one that is invalid is\n"
     "reported, and the others keep their schedules).\n"
     "\n"
     "  --repository URL          the job repository (also the runs')\n"},
    {"validate", cmd_validate, "validate JOB.yaml ... | validate --plugins",
     "check job files without running them",
     "Loads each job file and checks every key; an error names the file, line and key\n"
     "(exit 2). Nothing runs and no repository is opened.\n"
     "\n"
     "  --plugins                 list the readers, writers, processors and step types\n"
     "                            a job file may name, with their keys\n"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_usage(FILE *f)
{
    fputs("usage: nightshift COMMAND [ARGS]   (nightshift COMMAND --help: its arguments)\n\n", f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("  help       this, or a command's help (help COMMAND)\n"
          "\n"
          "Every command takes --repository URL (else $NIGHTSHIFT_REPOSITORY, else\n"
          "sqlite:nightshift.db) and --help. Exit status: 0 completed, 1 failed (also: the\n"
          "repository cannot be opened), 2 bad usage, invalid job file or unknown execution,\n"
          "3 stopped, 4 refused. See docs/cli.md and nightshift(1).\n",
          f);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_help(const struct command *c, FILE *f)
{
    fprintf(f, "usage: nightshift %s\n\n%s", c->synopsis, c->help);
}

void cli_usage(const char *name)
{
    const struct command *c = find_command(name);
    if (c)
        fprintf(stderr, "usage: nightshift %s\n(nightshift %s --help for more)\n", c->synopsis,
                name);
}

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
        } else if (strcmp(a, "--plugins") == 0) {
            o->plugins = true;
        } else if (strcmp(a, "--next") == 0) {
            o->next = true;
        } else if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = true;
        } else if (strcmp(a, "--with-files") == 0) {
            o->with_files = true;
        } else if (strcmp(a, "--before") == 0) {
            want = &o->before;
        } else if (strcmp(a, "--keep-last") == 0) {
            char *end = NULL;
            long long v = i + 1 < argc ? strtoll(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || v <= 0 || *end || end == argv[i + 1]) {
                fprintf(stderr, "nightshift: --keep-last takes a positive number\n");
                return false;
            }
            o->keep_last = v;
            i++;
        } else if (strcmp(a, "--adopt-checkpoint") == 0 || strcmp(a, "--ignore-checkpoint") == 0 ||
                   strcmp(a, "--restart-from-beginning") == 0) {
            ns_checkpoint_use use = a[2] == 'a' ? NS_CHECKPOINT_ADOPT : NS_CHECKPOINT_IGNORE;
            if (o->checkpoint && o->checkpoint != use) {
                fprintf(stderr, "nightshift: --adopt-checkpoint and %s cannot be used together\n",
                        use == NS_CHECKPOINT_ADOPT ? "--ignore-checkpoint" : a);
                return false;
            }
            o->checkpoint = use;
        } else if (strcmp(a, "--count") == 0) {
            char *end = NULL;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || v <= 0 || v > 10000 || *end || end == argv[i + 1]) {
                fprintf(stderr, "nightshift: --count takes a number from 1 to 10000\n");
                return false;
            }
            o->count = v;
            i++;
        } else if (strcmp(a, "--tick") == 0) {
            char *end = NULL;
            long long v = i + 1 < argc ? strtoll(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || v <= 0 || *end || end == argv[i + 1]) {
                fprintf(stderr, "nightshift: --tick takes a time in seconds since the epoch\n");
                return false;
            }
            o->tick = v;
            i++;
        } else if (strcmp(a, "--from") == 0) {
            want = &o->from;
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

/* $NIGHTSHIFT_LEASE: 0 when unset; false when it is not a lease. */
static bool env_lease(double *out)
{
    const char *env = getenv("NIGHTSHIFT_LEASE");
    char *end;
    *out = 0;
    if (!env)
        return true;
    errno = 0;
    double v = strtod(env, &end);
    if (!*env || *end || errno || !(v > 0 && v <= 2000000))
        return false;
    *out = v;
    return true;
}

bool cli_lease(double *out)
{
    if (env_lease(out))
        return true;
    fprintf(stderr,
            "nightshift: NIGHTSHIFT_LEASE: '%s' is not a number of seconds greater than 0 and at "
            "most 2000000\n",
            getenv("NIGHTSHIFT_LEASE"));
    return false;
}

/* The repository: --repository, else $NIGHTSHIFT_REPOSITORY, else the
 * library's default (sqlite:nightshift.db); the lease list and show judge
 * silent runs by, from $NIGHTSHIFT_LEASE. */
static ns_repo *open_repo(const cli_opts *o, bool readonly)
{
    ns_repo *r = NULL;
    ns_error err = {0};
    const char *url = o->repository ? o->repository : getenv("NIGHTSHIFT_REPOSITORY");
    double lease;
    if ((readonly ? ns_repo_open_readonly : ns_repo_open)(url, &r, &err) != NS_OK) {
        cli_error(&err);
        return NULL;
    }
    if (env_lease(&lease) && lease > 0)
        ns_repo_set_lease(r, lease);
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
    if (argc < 2) {
        print_usage(stderr);
        return NS_EXIT_USAGE;
    }
    const char *a = argv[1];
    if (strcmp(a, "help") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        if (argc > 2) {
            const struct command *c = find_command(argv[2]);
            if (!c) {
                fprintf(stderr, "nightshift: unknown command '%s'\n\n", argv[2]);
                print_usage(stderr);
                return NS_EXIT_USAGE;
            }
            print_help(c, stdout);
            return 0;
        }
        print_usage(stdout);
        return 0;
    }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0 || strcmp(a, "version") == 0) {
        printf("nightshift %s\n", NS_VERSION_STRING);
        return 0;
    }
    const struct command *c = find_command(a);
    if (!c) {
        fprintf(stderr, "nightshift: unknown command '%s'\n\n", a);
        print_usage(stderr);
        return NS_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(c, stdout);
            return 0;
        }
    }
    return c->fn(argc - 2, argv + 2);
}
