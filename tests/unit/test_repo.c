/* test_repo.c - the SQLite job repository and the launch rules of
 * docs/cli.md, driven through the repository interface. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "repo/repo.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every test runs on SQLite and, when the test server is up (ctest's pg
 * fixture writes its URL to $NS_PG_STATE/url), on PostgreSQL. */
static char path[256];
static char pg_url[512];
static bool on_pg;

static void sql(const char *stmt)
{
    if (on_pg) {
        PGconn *c = PQconnectdb(pg_url);
        PGresult *r = PQexec(c, "SET search_path = nightshift");
        PQclear(r);
        r = PQexec(c, stmt);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("%s: %s", stmt, PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
    } else {
        sqlite3 *db;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        if (sqlite3_exec(db, stmt, NULL, NULL, NULL) != SQLITE_OK)
            fail_msg("%s: %s", stmt, sqlite3_errmsg(db));
        sqlite3_close(db);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/ns-test-repo-%d.db", (int)getpid());
    unlink(path);
    if (on_pg) {
        PGconn *c = PQconnectdb(pg_url);
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *r = PQexec(c, "DROP SCHEMA IF EXISTS nightshift CASCADE");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("cannot reset the test database: %s", PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char p[300];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    return 0;
}

static ns_repo *open_repo(void)
{
    char url[600];
    ns_repo *r = NULL;
    ns_error err = {0};
    if (on_pg)
        snprintf(url, sizeof(url), "%s", pg_url);
    else
        snprintf(url, sizeof(url), "sqlite:%s", path);
    if (ns_repo_open(url, &r, &err) != NS_OK)
        fail_msg("open: %s", err.message);
    return r;
}

static const ns_param_val params[] = {{"file", "string", "a.csv", true},
                                      {"note", "string", "hello", false}};

static ns_status launch(ns_repo *r, const ns_param_val *p, size_t n, bool next, bool restartable,
                        ns_launch_res *res, ns_error *err)
{
    ns_launch_req req = {.job_name = "job",
                         .job_path = "/x/job.yaml",
                         .params = p,
                         .nparams = n,
                         .next = next,
                         .restartable = restartable,
                         .lease = 60};
    return r->vt->launch(r, &req, res, err);
}

static void set_status(ns_repo *r, int64_t id, ns_batch_status s)
{
    ns_error err = {0};
    assert_int_equal(r->vt->exec_status(r, id, s, NULL, "", true, &err), NS_OK);
}

static void test_instance_key(void **state)
{
    (void)state;
    char a[33], b[33], c[33];
    ns_param_val p1[] = {{"a", "string", "1", true}, {"b", "int", "2", true}};
    ns_param_val p2[] = {
        {"b", "int", "2", true}, {"a", "string", "1", true}, {"z", "string", "ignored", false}};
    ns_param_val p3[] = {{"a", "string", "12", true}, {"b", "int", "", true}};
    ns__instance_key(p1, 2, a);
    ns__instance_key(p2, 3, b);
    ns__instance_key(p3, 2, c);
    assert_string_equal(a, b);     /* order and non-identifying parameters do not matter */
    assert_string_not_equal(a, c); /* values are delimited, not concatenated */

    /* Every parameter counts, however many: only the 100th differs here. */
    ns_param_val many[100];
    char names[100][8];
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof(names[i]), "p%03d", i);
        many[i] = (ns_param_val){names[i], "string", "x", true};
    }
    assert_int_equal(ns__instance_key(many, 100, a), NS_OK);
    many[99].value = "y";
    assert_int_equal(ns__instance_key(many, 100, b), NS_OK);
    assert_string_not_equal(a, b);
}

static void test_launch_rules(void **state)
{
    (void)state;
    ns_repo *r = open_repo();
    ns_launch_res res, res2;
    ns_error err = {0};

    /* New instance: started. */
    assert_int_equal(launch(r, params, 2, false, true, &res, &err), NS_OK);
    assert_int_equal(res.restart_of, 0);
    /* Running (this process is alive): refused. */
    assert_int_equal(launch(r, params, 2, false, true, &res2, &err), NS_EREFUSED);
    assert_non_null(strstr(err.message, "already running"));
    /* Failed: restarted, pointing at the failed one. */
    set_status(r, res.execution_id, NS_BATCH_FAILED);
    ns_error_clear(&err);
    assert_int_equal(launch(r, params, 2, false, true, &res2, &err), NS_OK);
    assert_int_equal(res2.restart_of, res.execution_id);
    assert_int_equal(res2.instance_id, res.instance_id);
    /* A non-identifying parameter does not make a new instance. */
    ns_param_val other[] = {{"file", "string", "a.csv", true}, {"note", "string", "x", false}};
    set_status(r, res2.execution_id, NS_BATCH_STOPPED);
    assert_int_equal(launch(r, other, 2, false, false, &res, &err), NS_EREFUSED);
    assert_non_null(strstr(err.message, "not restartable"));
    ns_error_clear(&err);
    /* Completed: refused; --next starts a new instance with run.id 1, 2. */
    assert_int_equal(launch(r, other, 2, false, true, &res, &err), NS_OK);
    set_status(r, res.execution_id, NS_BATCH_COMPLETED);
    assert_int_equal(launch(r, params, 2, false, true, &res2, &err), NS_EREFUSED);
    assert_non_null(strstr(err.message, "already completed"));
    ns_error_clear(&err);
    assert_int_equal(launch(r, params, 2, true, true, &res2, &err), NS_OK);
    assert_int_equal(res2.run_id, 1);
    assert_int_not_equal(res2.instance_id, res.instance_id);
    set_status(r, res2.execution_id, NS_BATCH_COMPLETED);
    assert_int_equal(launch(r, params, 2, true, true, &res2, &err), NS_OK);
    assert_int_equal(res2.run_id, 2);
    /* Abandoned: refused, and abandon only takes STOPPED/FAILED. */
    assert_int_equal(r->vt->abandon(r, res2.execution_id, &err), NS_EREFUSED);
    ns_error_clear(&err);
    set_status(r, res2.execution_id, NS_BATCH_FAILED);
    assert_int_equal(r->vt->abandon(r, res2.execution_id, &err), NS_OK);
    ns_param_val with_run[] = {{"file", "string", "a.csv", true}, {"run.id", "int", "2", true}};
    assert_int_equal(launch(r, with_run, 2, false, true, &res, &err), NS_EREFUSED);
    assert_non_null(strstr(err.message, "abandoned"));
    ns_repo_close(r);
}

static void test_dead_process_recovered(void **state)
{
    (void)state;
    ns_repo *r = open_repo();
    ns_launch_res res, res2;
    ns_error err = {0};
    pid_t child = fork();

    if (child == 0) {
        /* The child launches and dies without a word, as with kill -9. */
        ns_repo *cr = open_repo();
        ns_launch_res cres;
        _exit(launch(cr, params, 1, false, true, &cres, NULL) == NS_OK ? 0 : 1);
    }
    int wst;
    waitpid(child, &wst, 0);
    assert_int_equal(WEXITSTATUS(wst), 0);
    assert_int_equal(launch(r, params, 1, false, true, &res, &err), NS_OK);
    assert_true(res.restart_of > 0);
    assert_non_null(strstr(res.notice, "marked FAILED"));
    /* A live pid that started at another time is a recycled pid: the
     * recorded process is dead. */
    char stmt[256];
    assert_true(ns__process_start(getpid()) > 0);
    snprintf(stmt, sizeof(stmt), "UPDATE ns_job_execution SET process_start = 1 WHERE id = %lld",
             (long long)res.execution_id);
    sql(stmt);
    assert_int_equal(launch(r, params, 1, false, true, &res2, &err), NS_OK);
    assert_int_equal(res2.restart_of, res.execution_id);
    res = res2;
    /* A foreign host's execution is alive until its heartbeat is older
     * than the lease. */
    char now[40];
    ns__now_iso(now, sizeof(now));
    snprintf(stmt, sizeof(stmt),
             "UPDATE ns_job_execution SET host = 'elsewhere', heartbeat = '%s' WHERE id = %lld",
             now, (long long)res.execution_id);
    sql(stmt);
    assert_int_equal(launch(r, params, 1, false, true, &res2, &err), NS_EREFUSED);
    ns_error_clear(&err);
    snprintf(stmt, sizeof(stmt),
             "UPDATE ns_job_execution SET heartbeat = '2020-01-01T00:00:00.000Z' WHERE id = %lld",
             (long long)res.execution_id);
    sql(stmt);
    assert_int_equal(launch(r, params, 1, false, true, &res2, &err), NS_OK);
    assert_int_equal(res2.restart_of, res.execution_id);
    ns_repo_close(r);
}

static void test_stop_request_and_steps(void **state)
{
    (void)state;
    ns_repo *r = open_repo();
    ns_launch_res res;
    ns_error err = {0};
    ns_step_exec se;
    bool stop = false;

    assert_int_equal(launch(r, params, 1, false, true, &res, &err), NS_OK);
    assert_int_equal(r->vt->step_begin(r, res.execution_id, "load", &se, &err), NS_OK);
    se.counts.read = 10;
    se.context = "{\"chunks\":1}";
    assert_int_equal(r->vt->step_update(r, &se, &stop, &err), NS_OK);
    assert_false(stop);
    assert_int_equal(ns_repo_request_stop(r, res.execution_id, &err), NS_OK);
    assert_int_equal(r->vt->step_update(r, &se, &stop, &err), NS_OK);
    assert_true(stop);
    /* Optimistic versions: a stale version is refused. */
    ns_step_exec stale = se;
    stale.version--;
    assert_int_equal(r->vt->step_update(r, &stale, &stop, &err), NS_ECONFLICT);
    ns_error_clear(&err);
    assert_int_equal(r->vt->step_end(r, &se, NS_BATCH_STOPPED, NULL, "", &err), NS_OK);
    ns_step_state st;
    assert_int_equal(r->vt->step_state(r, res.instance_id, "load", &st, &err), NS_OK);
    assert_false(st.completed);
    assert_string_equal(st.context, "{\"chunks\":1}");
    free(st.context);
    set_status(r, res.execution_id, NS_BATCH_STOPPED);
    assert_int_equal(ns_repo_request_stop(r, res.execution_id, &err), NS_EREFUSED);
    char *json = NULL;
    assert_int_equal(ns_repo_show_json(r, res.execution_id, &json, &err), NS_OK);
    assert_non_null(strstr(json, "\"read_count\": 10"));
    ns_free(json);
    assert_int_equal(ns_repo_show_json(r, 9999, &json, &err), NS_ENOTFOUND);
    ns_repo_close(r);
}

static void test_schema_versions(void **state)
{
    (void)state;
    ns_repo *r = open_repo();
    ns_repo_close(r);
    r = open_repo(); /* migrations are idempotent */
    ns_repo_close(r);
    sql("UPDATE ns_schema SET version = 99");
    char url[600];
    ns_error err = {0};
    if (on_pg)
        snprintf(url, sizeof(url), "%s", pg_url);
    else
        snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(ns_repo_open(url, &r, &err), NS_EDB);
    assert_non_null(strstr(err.message, "newer than this nightshift"));
    ns_error_clear(&err);
    assert_int_equal(ns_repo_open("oracle://x", &r, &err), NS_EINVAL);
    assert_non_null(strstr(err.message, "unsupported URL"));
    ns_error_clear(&err);
    /* A database with a driver but no repository backend says so. */
    assert_int_equal(ns_repo_open("mysql://u:Secret-99@h/db", &r, &err), NS_EINVAL);
    assert_non_null(strstr(err.message, "the mysql driver cannot hold a job repository"));
    assert_null(strstr(err.message, "Secret-99"));
    ns_error_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_instance_key),
        cmocka_unit_test_setup_teardown(test_launch_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_process_recovered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_request_and_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_versions, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    const char *state = getenv("NS_PG_STATE");
    if (!state)
        return failed;
    char file[600];
    snprintf(file, sizeof(file), "%s/url", state);
    FILE *f = fopen(file, "r");
    if (!f || !fgets(pg_url, sizeof(pg_url), f)) {
        fprintf(stderr, "test_repo: no PostgreSQL test server (%s): the pg fixture did not start\n",
                file);
        return 1;
    }
    fclose(f);
    pg_url[strcspn(pg_url, "\n")] = '\0';
    on_pg = true;
    return failed + cmocka_run_group_tests_name("postgresql", tests, NULL, NULL);
}
