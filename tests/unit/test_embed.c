/*
 * test_embed.c - the library as a guest in a program that embeds it
 * (issue 21): it never changes the process-wide SIGPIPE disposition (a
 * notify command that closes its stdin under a large event), never reaps a
 * child that is not its own (the scheduler's runs are the caller's), and
 * starts no process for the scheduler itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nightshift.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ns-embed.XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ SIGPIPE */

static atomic_int pipes_caught, changed, watching;

static void on_pipe(int sig)
{
    (void)sig;
    atomic_fetch_add(&pipes_caught, 1);
}

/* Looks at SIGPIPE's disposition as often as it can while the run goes. */
static void *watch(void *arg)
{
    (void)arg;
    while (atomic_load(&watching)) {
        struct sigaction now_sa;
        sigaction(SIGPIPE, NULL, &now_sa);
        if (now_sa.sa_handler != on_pipe)
            atomic_store(&changed, 1);
    }
    return NULL;
}

static void sigpipe_untouched(void **state)
{
    (void)state;
    make_dir();
    char yaml[1024], big[100001], param[100010], repo_url[128];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(param, sizeof(param), "note=%s", big);
    /* The command closes its stdin at once: the event (> 64 KiB, a pipe's
     * capacity) meets a closed pipe, EPIPE, and a SIGPIPE for the writer. */
    snprintf(yaml, sizeof(yaml),
             "job: pipe\n"
             "params:\n"
             "  note: {type: string, identifying: false}\n"
             "connections:\n"
             "  db: \"sqlite:%s/t.db\"\n"
             "steps:\n"
             "  - name: s\n"
             "    sql: {connection: db, script: \"SELECT 1\"}\n"
             "notify:\n"
             "  - command: [\"sh\", \"-c\", \"exec 0<&-; sleep 0.2\"]\n"
             "    on: [completed]\n",
             dir);
    write_file("pipe.yaml", yaml);
    char path[256];
    snprintf(path, sizeof(path), "%s/pipe.yaml", dir);
    snprintf(repo_url, sizeof(repo_url), "sqlite:%s/repo.db", dir);

    struct sigaction sa = {0};
    sa.sa_handler = on_pipe;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &sa, NULL), 0);

    ns_job *job = NULL;
    ns_repo *repo = NULL;
    ns_error err = {0};
    assert_int_equal(ns_job_load(path, &job, &err), NS_OK);
    assert_int_equal(ns_repo_open(repo_url, &repo, &err), NS_OK);
    const char *params[] = {param};
    ns_launch launch = {.params = params, .nparams = 1};
    ns_outcome out = {0};
    pthread_t t;
    atomic_store(&watching, 1);
    assert_int_equal(pthread_create(&t, NULL, watch, NULL), 0);
    assert_int_equal(ns_job_run(repo, job, &launch, &out, &err), NS_OK);
    atomic_store(&watching, 0);
    pthread_join(t, NULL);
    assert_int_equal(out.status, NS_BATCH_COMPLETED);
    /* the disposition was ours all along, and no SIGPIPE reached it */
    assert_int_equal(atomic_load(&changed), 0);
    assert_int_equal(atomic_load(&pipes_caught), 0);
    ns_repo_close(repo);
    ns_job_free(job);
    signal(SIGPIPE, SIG_DFL);
}

/* ------------------------------------------------- the scheduler's runs */

static volatile sig_atomic_t stop_token;
static double stop_at;
static int starts, endeds;

static int64_t start_run(void *arg, const ns_tick_run *run, ns_error *err)
{
    (void)arg;
    (void)run;
    (void)err;
    starts++;
    return 0;
}

static int run_ended(void *arg, int64_t *handle, int *exit_status)
{
    (void)arg;
    (void)handle;
    (void)exit_status;
    endeds++;
    if (now() >= stop_at)
        stop_token = 1;
    return 0;
}

static void stop_run(void *arg, int64_t handle)
{
    (void)arg;
    (void)handle;
}

static void scheduler_reaps_no_foreign_child(void **state)
{
    (void)state;
    make_dir();
    char repo_url[128];
    snprintf(repo_url, sizeof(repo_url), "sqlite:%s/repo.db", dir);
    /* A child of the embedding program, which ends while the scheduler
     * runs: its status is the program's to collect. */
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        usleep(300 * 1000);
        _exit(7);
    }
    ns_repo *repo = NULL;
    ns_error err = {0};
    assert_int_equal(ns_repo_open(repo_url, &repo, &err), NS_OK);
    const char *paths[] = {dir};
    ns_scheduler_opts o = {.paths = paths,
                           .npaths = 1,
                           .start = start_run,
                           .ended = run_ended,
                           .stop_run = stop_run,
                           .stop = &stop_token};
    stop_at = now() + 1.5;
    assert_int_equal(ns_scheduler_run(repo, &o, &err), NS_OK);
    assert_true(endeds > 0); /* it asked us, not waitpid */
    assert_int_equal(starts, 0);
    int status = 0;
    assert_int_equal(waitpid(kid, &status, 0), kid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 7);
    ns_repo_close(repo);
}

static void scheduler_needs_callbacks(void **state)
{
    (void)state;
    make_dir();
    char repo_url[128];
    snprintf(repo_url, sizeof(repo_url), "sqlite:%s/repo.db", dir);
    ns_repo *repo = NULL;
    ns_error err = {0};
    assert_int_equal(ns_repo_open(repo_url, &repo, &err), NS_OK);
    const char *paths[] = {dir};
    ns_scheduler_opts o = {.paths = paths, .npaths = 1, .stop = &stop_token};
    assert_int_equal(ns_scheduler_run(repo, &o, &err), NS_EINVAL);
    assert_non_null(strstr(err.message, "start"));
    ns_repo_close(repo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sigpipe_untouched),
        cmocka_unit_test(scheduler_reaps_no_foreign_child),
        cmocka_unit_test(scheduler_needs_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
