/*
 * test_listeners.c - the library's run API as a program embedding it sees
 * it: several listeners, each told of the job's start and end, each step's
 * start, chunks and end, and every rejected record; a stop token per run,
 * set from a listener (as a signal handler would); settings (the lease) from
 * the caller, checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nightshift.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct seen {
    int job_start, job_end, step_start, chunks, step_end, rejected;
    int64_t last_line;
    char end_code[40];
    volatile sig_atomic_t *stop_at_chunk; /* set after this many chunks, when not NULL */
    int stop_after;
} seen;

static void on_job_start(void *ud, const ns_job_event *e)
{
    seen *s = ud;
    s->job_start++;
    assert_int_equal(e->status, NS_BATCH_STARTED);
    assert_null(e->exit_code);
}
static void on_job_end(void *ud, const ns_job_event *e)
{
    seen *s = ud;
    s->job_end++;
    snprintf(s->end_code, sizeof(s->end_code), "%s", e->exit_code);
    assert_true(e->elapsed >= 0);
}
static void on_step_start(void *ud, const ns_progress *p)
{
    (void)p;
    ((seen *)ud)->step_start++;
}
static void on_chunk(void *ud, const ns_progress *p)
{
    seen *s = ud;
    (void)p;
    if (++s->chunks == s->stop_after && s->stop_at_chunk)
        *s->stop_at_chunk = 1;
}
static void on_step_end(void *ud, const ns_progress *p)
{
    (void)p;
    ((seen *)ud)->step_end++;
}
static void on_rejected(void *ud, const ns_reject_event *e)
{
    seen *s = ud;
    s->rejected++;
    assert_true(e->line > s->last_line); /* in file order */
    s->last_line = e->line;
    assert_string_equal(e->step, "load");
    assert_non_null(e->code);
}

static char dir[] = "/tmp/ns-listen-XXXXXX";

static ns_job *job(void)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "job: listen\n"
             "params:\n  file: {type: string, required: true}\n"
             "connections:\n  t: \"sqlite:%s/t.db\"\n"
             "steps:\n"
             "  - name: load\n"
             "    chunk: 10\n"
             "    reader: {csv: {path: \"${params.file}\"}}\n"
             "    writer: {table: {connection: t, name: k}}\n"
             "    skip: {limit: 1000}\n"
             "    rejects: \"%s/rejects-${execution.id}.csv\"\n",
             dir, dir);
    ns_job *j = NULL;
    ns_error err = {0};
    if (ns_job_load_buffer("listen.yaml", text, strlen(text), &j, &err) != NS_OK)
        fail_msg("%s", err.message);
    return j;
}

static void setup_files(const char *csv)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/in.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("id,v\n", f);
    for (int i = 1; i <= 100; i++)
        fprintf(f, "%d,%s\n", i, i % 9 == 0 ? "x" : "7"); /* 11 bad rows */
    fclose(f);
    (void)csv;
    snprintf(path, sizeof(path), "%s/t.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE IF EXISTS k; CREATE TABLE k (id INTEGER PRIMARY "
                                  "KEY, v INTEGER);"
                                  "DROP TABLE IF EXISTS nightshift_checkpoint",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

static void test_two_listeners_and_a_stop_token(void **state)
{
    (void)state;
    setup_files(NULL);
    char repo_url[256], arg[256];
    snprintf(repo_url, sizeof(repo_url), "sqlite:%s/repo.db", dir);
    snprintf(arg, sizeof(arg), "file=%s/in.csv", dir);
    ns_repo *repo = NULL;
    ns_error err = {0};
    assert_int_equal(ns_repo_open(repo_url, &repo, &err), NS_OK);
    ns_job *j = job();

    volatile sig_atomic_t stop = 0;
    seen a = {.stop_at_chunk = &stop, .stop_after = 3}, b = {0};
    ns_listener la = {&a,   on_step_start, on_chunk,   on_step_end,
                      NULL, on_job_start,  on_job_end, on_rejected},
                lb = {&b,   on_step_start, on_chunk,   on_step_end,
                      NULL, on_job_start,  on_job_end, on_rejected};
    const ns_listener *more[] = {&lb};
    const char *args[] = {arg};
    ns_launch l = {.params = args,
                   .nparams = 1,
                   .listener = &la,
                   .listeners = more,
                   .nlisteners = 1,
                   .stop = &stop};
    ns_outcome out;
    assert_int_equal(ns_job_run(repo, j, &l, &out, &err), NS_OK);
    /* Stopped by its token after chunk 3: 30 records, 3 of them bad. */
    assert_int_equal(out.status, NS_BATCH_STOPPED);
    assert_int_equal(out.exit_code, NS_EXIT_STOPPED);
    for (seen *s = &a; s; s = s == &a ? &b : NULL) {
        assert_int_equal(s->job_start, 1);
        assert_int_equal(s->job_end, 1);
        assert_int_equal(s->step_start, 1);
        assert_int_equal(s->chunks, 3);
        assert_int_equal(s->step_end, 1);
        assert_int_equal(s->rejected, 3);
        assert_string_equal(s->end_code, "STOPPED");
    }

    /* A new token: the restart runs to the end; the others' rejects only. */
    volatile sig_atomic_t stop2 = 0;
    seen c = {0};
    ns_listener lc = {&c,   on_step_start, on_chunk,   on_step_end,
                      NULL, on_job_start,  on_job_end, on_rejected};
    ns_launch l2 = {.params = args, .nparams = 1, .listener = &lc, .stop = &stop2};
    assert_int_equal(ns_job_run(repo, j, &l2, &out, &err), NS_OK);
    assert_int_equal(out.status, NS_BATCH_COMPLETED);
    assert_int_equal(c.rejected, 11 - 3);
    assert_int_equal(c.job_start, 1);
    assert_int_equal(c.job_end, 1);
    assert_string_equal(c.end_code, "COMPLETED");

    /* Settings come from the caller, checked: a lease out of range. */
    ns_launch bad = {.params = args, .nparams = 1, .next = 1, .lease_seconds = 3e6};
    ns_error_clear(&err);
    assert_int_equal(ns_job_run(repo, j, &bad, &out, &err), NS_EPARAM);
    assert_non_null(strstr(err.message, "lease"));
    assert_int_equal(out.exit_code, NS_EXIT_USAGE);
    ns_job_free(j);
    ns_repo_close(repo);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_two_listeners_and_a_stop_token)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
