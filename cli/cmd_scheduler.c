/* cmd_scheduler.c - `nightshift scheduler [JOB.yaml | DIR ...]`: the daemon
 * (for systemd: contrib/nightshift-scheduler.service). The library decides
 * the ticks; this file runs them: each a child `nightshift run FILE
 * NAME=VALUE ... --tick AT`, given the repository's URL in its environment
 * ($NIGHTSHIFT_REPOSITORY), never on its command line, which every local
 * user can read (ps, /proc/PID/cmdline). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct runs {
    char exe[PATH_MAX];
    const char *repository;
    pid_t *pids;
    size_t n, cap;
} runs;

static volatile sig_atomic_t reload_token;

static void on_hup(int sig)
{
    (void)sig;
    reload_token = 1;
}

/* The environment of a run: ours, with CI=1 (a line per step, no live
 * progress) and the repository; NULL when out of memory. */
static char **run_env(const runs *r, char **repo_var)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 3, sizeof(char *));
    *repo_var = NULL;
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CI=", 3) != 0 &&
            strncmp(environ[i], "NIGHTSHIFT_REPOSITORY=", 22) != 0)
            env[k++] = environ[i];
    env[k++] = (char *)"CI=1";
    if (r->repository) {
        size_t len = strlen(r->repository) + 23;
        if (!(*repo_var = malloc(len))) {
            free(env);
            return NULL;
        }
        snprintf(*repo_var, len, "NIGHTSHIFT_REPOSITORY=%s", r->repository);
        env[k++] = *repo_var;
    }
    env[k] = NULL;
    return env;
}

static int64_t start_run(void *arg, const ns_tick_run *run, ns_error *err)
{
    runs *r = arg;
    char tick[32], *repo_var = NULL;
    int64_t handle = 0;
    char **argv = calloc(run->nparams + 6, sizeof(char *));
    char **env = run_env(r, &repo_var);
    if (r->n == r->cap) { /* room first: every child is tracked */
        size_t c = r->cap ? r->cap * 2 : 8;
        pid_t *v = realloc(r->pids, c * sizeof(*v));
        if (v) {
            r->pids = v;
            r->cap = c;
        }
    }
    if (!argv || !env || r->n == r->cap) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        goto out;
    }
    size_t n = 0;
    argv[n++] = (char *)"nightshift";
    argv[n++] = (char *)"run";
    argv[n++] = (char *)run->job_file;
    for (size_t i = 0; i < run->nparams; i++)
        argv[n++] = (char *)run->params[i];
    snprintf(tick, sizeof(tick), "%lld", (long long)run->tick);
    argv[n++] = (char *)"--tick";
    argv[n++] = tick;
    argv[n] = NULL;
    /* No handler of ours may run in the child before exec. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t ppid = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* async-signal-safe calls only from here to exec */
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the run stops (at a chunk boundary) with us */
        if (getppid() != ppid)
            _exit(3);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        execve(r->exe, argv, env);
        _exit(127);
    }
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        snprintf(err->message, sizeof(err->message), "fork: %s", strerror(fork_errno));
        goto out;
    }
    r->pids[r->n++] = pid;
    handle = pid;
out:
    free(argv);
    free(env);
    free(repo_var);
    return handle;
}

/* Only our own runs are reaped (waitpid(-1) would take any child of the
 * process's). */
static int run_ended(void *arg, int64_t *handle, int *exit_status)
{
    runs *r = arg;
    for (size_t i = 0; i < r->n; i++) {
        int status;
        pid_t p = waitpid(r->pids[i], &status, WNOHANG);
        if (p != r->pids[i] && !(p < 0 && errno == ECHILD))
            continue;
        *handle = r->pids[i];
        *exit_status = p < 0               ? 128
                       : WIFEXITED(status) ? WEXITSTATUS(status)
                                           : 128 + WTERMSIG(status);
        r->pids[i] = r->pids[--r->n];
        return 1;
    }
    return 0;
}

static void stop_run(void *arg, int64_t handle)
{
    (void)arg;
    kill((pid_t)handle, SIGTERM); /* the run stops after its chunk */
}

static void log_line(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

int cmd_scheduler(int argc, char **argv)
{
    cli_opts o;
    ns_repo *repo = NULL;
    ns_error err = {0};
    int rc = NS_EXIT_USAGE;
    runs r = {0};

    if (!cli_parse(argc, argv, &o))
        goto done;
    if (o.nargs < 1) {
        fprintf(stderr, "nightshift: scheduler: name job files or folders of them\n");
        cli_usage("scheduler");
        goto done;
    }
    ssize_t n = readlink("/proc/self/exe", r.exe, sizeof(r.exe) - 1);
    if (n <= 0) {
        fprintf(stderr, "nightshift: scheduler: cannot find its own program (/proc/self/exe)\n");
        rc = NS_EXIT_FAILED;
        goto done;
    }
    r.exe[n] = '\0';
    double lease;
    if (!cli_lease(&lease))
        goto done;
    if (!(repo = cli_repo(&o))) {
        rc = NS_EXIT_FAILED;
        goto done;
    }
    cli_signals();
    struct sigaction sa = {0};
    sa.sa_handler = on_hup;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    r.repository = ns_repo_url(repo);
    ns_scheduler_opts so = {.paths = o.args,
                            .npaths = (size_t)o.nargs,
                            .start = start_run,
                            .ended = run_ended,
                            .stop_run = stop_run,
                            .run_arg = &r,
                            .stop = cli_stop_token(),
                            .reload = &reload_token,
                            .log = log_line,
                            .lease_seconds = lease};
    if (ns_scheduler_run(repo, &so, &err) != NS_OK) {
        cli_error(&err);
        rc = NS_EXIT_FAILED;
        goto done;
    }
    rc = 0;
done:
    ns_repo_close(repo);
    free(r.pids);
    free(o.args);
    return rc;
}
