/* main.c - the nightshift command: dispatch and the options every command shares. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every command: its name, its handler, a one-line summary and its help
 * (`nightshift COMMAND --help`, `nightshift help COMMAND`). The general
 * usage is made from the summaries, so the two never disagree. */
/* The options of each command (its own table: an option of another
 * command is bad usage). --help is every command's. */
#define REPO "--repository"
#define CKPT "--adopt-checkpoint", "--ignore-checkpoint", "--restart-from-beginning"
static const char *const run_opts[] = {"--next", CKPT, "--tick", REPO, NULL};
static const char *const restart_opts[] = {CKPT, REPO, NULL};
static const char *const repo_opts[] = {REPO, NULL};
static const char *const recover_opts[] = {"--dry-run", "--job", REPO, NULL};
static const char *const purge_opts[] = {"--before",     "--keep-last", "--job", "--dry-run",
                                         "--with-files", REPO,          NULL};
static const char *const list_opts[] = {"--job", "--status", "--limit", "--json", REPO, NULL};
static const char *const show_opts[] = {"--json", REPO, NULL};
static const char *const schedule_opts[] = {"--count", "--from", "--json", NULL};
static const char *const validate_opts[] = {"--plugins", NULL};

static const struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *synopsis, *summary, *help;
    const char *const *opts;
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
     "  --repository URL          the job repository\n",
     run_opts},
    {"restart", cmd_restart, "restart EXECUTION_ID", "restart a FAILED or STOPPED execution",
     "Reloads the job file and parameters recorded for the execution and runs it again,\n"
     "from any directory (relative paths are resolved where it was launched).\n"
     "\n"
     "  --adopt-checkpoint, --ignore-checkpoint, --restart-from-beginning   as for run\n"
     "  --repository URL          the job repository\n",
     restart_opts},
    {"stop", cmd_stop, "stop EXECUTION_ID", "stop after the current chunk",
     "Asks a running execution, in any process or machine sharing the repository, to\n"
     "stop after its current chunk (STOPPING, then STOPPED). Not running: exit 4.\n"
     "\n"
     "  --repository URL          the job repository\n",
     repo_opts},
    {"abandon", cmd_abandon, "abandon EXECUTION_ID", "never restart this execution",
     "Marks a STOPPED or FAILED execution ABANDONED: its instance is never restarted\n"
     "(start another with --next or other parameters). Others: exit 4.\n"
     "\n"
     "  --repository URL          the job repository\n",
     repo_opts},
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
     "  --repository URL          the job repository\n",
     recover_opts},
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
     "  --repository URL          the job repository\n",
     purge_opts},
    {"list", cmd_list, "list [--job NAME] [--status STATUS] [--limit N] [--json]",
     "the newest executions",
     "Lists the newest executions, newest first. Reads only: never creates a repository.\n"
     "\n"
     "  --job NAME                of one job\n"
     "  --status STATUS           in one status (any case): STARTING, STARTED, STOPPING,\n"
     "                            STOPPED, FAILED, COMPLETED, ABANDONED, UNKNOWN\n"
     "  --limit N                 at most N (default 20)\n"
     "  --json                    as a JSON array\n"
     "  --repository URL          the job repository\n",
     list_opts},
    {"show", cmd_show, "show EXECUTION_ID [--json]", "one execution, its steps and counters",
     "Shows one execution: status, exit code and message, parameters, times, process,\n"
     "which execution it restarted and which restarted it, and each step's eight\n"
     "counters. Reads only: never creates a repository.\n"
     "\n"
     "  --json                    as one JSON object\n"
     "  --repository URL          the job repository\n",
     show_opts},
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
     "  --json                    as a JSON array: ISO 8601 instants with their offsets\n",
     schedule_opts},
    {"scheduler", cmd_scheduler, "scheduler JOB.yaml|DIR ...", "run scheduled jobs (a daemon)",
     "Runs in the foreground (for systemd: contrib/nightshift-scheduler.service) and\n"
     "starts each job that has a schedule: at its ticks, each run a child process\n"
     "`nightshift run`. Each tick is recorded in the repository before its run, so\n"
     "schedulers sharing a PostgreSQL repository start it once. Logs a line per event\n"
     "to stderr. SIGTERM or SIGINT: the runs stop at a chunk boundary, and it exits\n"
     "once they have; SIGHUP: the job files are read again (one that is invalid is\n"
     "reported, and the others keep their schedules).\n"
     "\n"
     "  --repository URL          the job repository (also the runs')\n",
     repo_opts},
    {"validate", cmd_validate, "validate JOB.yaml ... | validate --plugins",
     "check job files without running them",
     "Loads each job file and checks every key; an error names the file, line and key\n"
     "(exit 2). Nothing runs and no repository is opened.\n"
     "\n"
     "  --plugins                 list the readers, writers, processors and step types\n"
     "                            a job file may name, with their keys\n",
     validate_opts},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_usage(FILE *f)
{
    fputs("usage: nightshift COMMAND [ARGS]   (nightshift COMMAND --help: its arguments)\n\n", f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("  help       this, or a command's help (help COMMAND)\n"
          "\n"
          "The commands that use the repository take --repository URL (else\n"
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

/* The command being run (its option table), set by main. */
static const struct command *current;

/* Edit distance of two short words (for "did you mean"); large when long. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The nearest of `words` to w when near enough to be a typo (two edits),
 * else the first it begins; else NULL. */
static const char *nearest(const char *w, const char *const *words, size_t n)
{
    const char *best = NULL, *prefix = NULL;
    size_t bd = 3;
    for (size_t i = 0; i < n; i++) {
        size_t d = distance(w, words[i]);
        if (d < bd) {
            bd = d;
            best = words[i];
        }
        if (!prefix && strlen(w) >= 3 && strncmp(w, words[i], strlen(w)) == 0)
            prefix = words[i];
    }
    return best ? best : prefix;
}

static bool takes(const struct command *c, const char *opt)
{
    for (size_t i = 0; c->opts[i]; i++)
        if (strcmp(c->opts[i], opt) == 0)
            return true;
    return false;
}

/* An option that no command knows, or another command's: said, false. */
static bool not_ours(const char *a)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (takes(&commands[i], a)) {
            fprintf(stderr, "nightshift: '%s' is not an option of '%s'\n", a, current->name);
            return false;
        }
    size_t n = 0;
    while (current->opts[n])
        n++;
    const char *near = nearest(a, current->opts, n);
    fprintf(stderr, "nightshift: %s: unknown option %s", current->name, a);
    if (near)
        fprintf(stderr, " (did you mean %s?)", near);
    fputc('\n', stderr);
    return false;
}

/* Digits only, no sign, no space, no overflow. */
static bool digits(const char *s, long long *out)
{
    long long v = 0;
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (LLONG_MAX - (*p - '0')) / 10)
            return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

bool cli_number(const char *what, const char *s, long long min, long long max, long long *out)
{
    long long v = 0;
    if (!digits(s, &v) || v < min || v > max) {
        if (max == LLONG_MAX)
            fprintf(stderr, "nightshift: %s takes a whole number from %lld up, not '%s'\n", what,
                    min, s ? s : "");
        else
            fprintf(stderr, "nightshift: %s takes a whole number from %lld to %lld, not '%s'\n",
                    what, min, max, s ? s : "");
        return false;
    }
    *out = v;
    return true;
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
        long long num;
        if (strcmp(a, "--") == 0) {
            while (++i < argc)
                o->args[o->nargs++] = argv[i];
            break;
        }
        if (a[0] != '-' || a[1] != '-') {
            o->args[o->nargs++] = a;
            continue;
        }
        char opt[64];
        const char *inline_value = strchr(a, '=');
        snprintf(opt, sizeof(opt), "%.*s", inline_value ? (int)(inline_value - a) : (int)strlen(a),
                 a);
        if (!takes(current, opt))
            return not_ours(opt);
        if (inline_value && strcmp(opt, "--repository") != 0) {
            fprintf(stderr, "nightshift: %s: write the value after a space (%s VALUE)\n", a, opt);
            return false;
        }
        /* an option's value: the next argument */
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--json") == 0) {
            o->json = true;
        } else if (strcmp(opt, "--plugins") == 0) {
            o->plugins = true;
        } else if (strcmp(opt, "--next") == 0) {
            o->next = true;
        } else if (strcmp(opt, "--dry-run") == 0) {
            o->dry_run = true;
        } else if (strcmp(opt, "--with-files") == 0) {
            o->with_files = true;
        } else if (strcmp(opt, "--before") == 0) {
            want = &o->before;
        } else if (strcmp(opt, "--keep-last") == 0) {
            if (!cli_number("--keep-last", val, 1, LLONG_MAX, &num))
                return false;
            o->keep_last = num;
            i++;
        } else if (strcmp(opt, "--adopt-checkpoint") == 0 ||
                   strcmp(opt, "--ignore-checkpoint") == 0 ||
                   strcmp(opt, "--restart-from-beginning") == 0) {
            ns_checkpoint_use use = a[2] == 'a' ? NS_CHECKPOINT_ADOPT : NS_CHECKPOINT_IGNORE;
            if (o->checkpoint && o->checkpoint != use) {
                fprintf(stderr, "nightshift: --adopt-checkpoint and %s cannot be used together\n",
                        use == NS_CHECKPOINT_ADOPT ? "--ignore-checkpoint" : a);
                return false;
            }
            o->checkpoint = use;
        } else if (strcmp(opt, "--count") == 0) {
            if (!cli_number("--count", val, 1, 10000, &num))
                return false;
            o->count = (long)num;
            i++;
        } else if (strcmp(opt, "--tick") == 0) {
            if (!cli_number("--tick (seconds since the epoch)", val, 1, LLONG_MAX, &num))
                return false;
            o->tick = num;
            i++;
        } else if (strcmp(opt, "--from") == 0) {
            want = &o->from;
        } else if (strcmp(opt, "--repository") == 0) {
            if (inline_value)
                o->repository = inline_value + 1;
            else
                want = &o->repository;
        } else if (strcmp(opt, "--job") == 0) {
            want = &o->job;
        } else if (strcmp(opt, "--status") == 0) {
            want = &o->status;
        } else if (strcmp(opt, "--limit") == 0) {
            if (!cli_number("--limit", val, 1, 1000000, &num))
                return false;
            o->limit = (int)num;
            i++;
        } else {
            return not_ours(opt); /* in a table, not parsed here */
        }
        if (want) {
            if (!val) {
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
    long long v = 0;
    if (!digits(s, &v) || v == 0 || *s == '0') {
        fprintf(stderr, "nightshift: '%s' is not an execution id\n", s ? s : "");
        return false;
    }
    *id = v;
    return true;
}

static int unknown_command(const char *a)
{
    const char *names[NCOMMANDS + 1];
    for (size_t i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    names[NCOMMANDS] = "help";
    const char *near = nearest(a, names, NCOMMANDS + 1);
    if (near)
        fprintf(stderr, "nightshift: unknown command '%s' (did you mean %s?)\n\n", a, near);
    else
        fprintf(stderr, "nightshift: unknown command '%s'\n\n", a);
    print_usage(stderr);
    return NS_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return NS_EXIT_USAGE;
    }
    const char *a = argv[1];
    if (strcmp(a, "help") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        const char *what = argc > 2 ? argv[2] : NULL;
        if (what &&
            (strcmp(what, "--help") == 0 || strcmp(what, "-h") == 0 || strcmp(what, "help") == 0))
            what = NULL; /* help's own help: the usage */
        if (argc > 3 || (what && what[0] == '-')) {
            fprintf(stderr, "nightshift: help takes one command name: help COMMAND\n");
            return NS_EXIT_USAGE;
        }
        if (what) {
            const struct command *c = find_command(what);
            if (!c)
                return unknown_command(what);
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
    if (!c)
        return unknown_command(a);
    current = c;
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
