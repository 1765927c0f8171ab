/* cmd_scheduler.c - `nightshift scheduler [JOB.yaml | DIR ...]`: the daemon
 * (for systemd: contrib/nightshift-scheduler.service). */
#include "cli.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t reload_token;

static void on_hup(int sig)
{
    (void)sig;
    reload_token = 1;
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
    char exe[PATH_MAX];

    if (!cli_parse(argc, argv, &o))
        goto done;
    if (o.nargs < 1) {
        fprintf(stderr, "nightshift: scheduler: name job files or folders of them\n");
        cli_usage("scheduler");
        goto done;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        fprintf(stderr, "nightshift: scheduler: cannot find its own program (/proc/self/exe)\n");
        rc = NS_EXIT_FAILED;
        goto done;
    }
    exe[n] = '\0';
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
    ns_scheduler_opts so = {.paths = o.args,
                            .npaths = (size_t)o.nargs,
                            .repository = ns_repo_url(repo),
                            .exe = exe,
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
    free(o.args);
    return rc;
}
