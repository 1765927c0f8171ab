/* test_job.c - the job-file loader: a valid file, and each kind of error
 * naming its file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char valid[] = "job: users-upload\n"
                            "description: Monthly\n"
                            "params:\n"
                            "  file: {type: string, required: true}\n"
                            "  month: {type: date, default: '2026-11-01'}\n"
                            "  note: {type: string, identifying: false}\n"
                            "connections:\n"
                            "  target: \"sqlite:${env.DB}\"\n"
                            "steps:\n"
                            "  - name: load\n"
                            "    chunk: 500\n"
                            "    reader:\n"
                            "      csv: {path: \"${params.file}\", delimiter: ';'}\n"
                            "    writer:\n"
                            "      table: {connection: target, name: users, mode: upsert, key: "
                            "[id]}\n"
                            "    skip: {limit: 10}\n"
                            "    rejects: \"rej/${job.name}-${execution.id}.csv\"\n";

/* A key's value in a plugin's configuration, found by its key table. */
static const void *cfg_key(const ns_plugin *p, const void *cfg, const char *name)
{
    assert_non_null(p);
    for (const ns_key *k = p->keys; k && k->name; k++)
        if (strcmp(k->name, name) == 0)
            return (const char *)cfg + k->offset;
    fail_msg("plugin %s has no key %s", p->name, name);
    return NULL;
}

static void test_valid(void **state)
{
    (void)state;
    ns_job *job = NULL;
    ns_error err = {0};
    assert_int_equal(ns_job_load_buffer("job.yaml", valid, strlen(valid), &job, &err), NS_OK);
    assert_string_equal(job->name, "users-upload");
    assert_int_equal(job->nparams, 3);
    assert_true(job->params[0].required);
    assert_false(job->params[2].identifying);
    assert_int_equal(job->nsteps, 1);
    assert_int_equal(job->steps[0].chunk, 500);
    const ns_step_def *d = &job->steps[0];
    assert_string_equal(d->type->name, "chunk");
    assert_string_equal(d->reader->name, "csv");
    assert_string_equal(d->writer->name, "table");
    assert_null(d->processor);
    assert_int_equal(*(const char *)cfg_key(d->reader, d->reader_cfg, "delimiter"), ';');
    assert_true(*(const bool *)cfg_key(d->reader, d->reader_cfg, "header")); /* the default */
    assert_string_equal(*(char *const *)cfg_key(d->reader, d->reader_cfg, "path"),
                        "${params.file}");
    assert_int_equal(*(const int *)cfg_key(d->writer, d->writer_cfg, "mode"), 1 /* upsert */);
    const ns_names *key = cfg_key(d->writer, d->writer_cfg, "key");
    assert_int_equal(key->n, 1);
    assert_string_equal(key->v[0], "id");
    assert_int_equal(job->steps[0].skip_limit, 10);
    assert_true(job->restartable);
    ns_job_free(job);
}

/* Replaces the first occurrence of `from` in the valid file by `to` and
 * expects the loader's message to start with `want`. */
static void expect(const char *from, const char *to, const char *want)
{
    char buf[4096];
    const char *at = strstr(valid, from);
    assert_non_null(at);
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - valid), valid, to, at + strlen(from));
    ns_job *job = NULL;
    ns_error err = {0};
    ns_status st = ns_job_load_buffer("job.yaml", buf, strlen(buf), &job, &err);
    if (st != NS_ECONFIG || strncmp(err.message, want, strlen(want)) != 0)
        fail_msg("status %s, message:\n  %s\nwanted a message starting with:\n  %s",
                 ns_status_name(st), err.message, want);
    ns_job_free(job);
}

static void test_errors_name_line_and_key(void **state)
{
    (void)state;
    expect("job: users-upload", "job: Users Upload", "job.yaml:1: job: job names use");
    expect("job: users-upload\n", "", "job.yaml:1: job: is required");
    expect("description: Monthly", "descripton: Monthly", "job.yaml:2: descripton: unknown key");
    expect("{type: string, required: true}", "{type: text}",
           "job.yaml:4: params.file.type: unknown type 'text'");
    expect("default: '2026-11-01'", "default: '2026-13-01'",
           "job.yaml:5: params.month.default: '2026-13-01' is not a date");
    expect("identifying: false", "identifying: maybe",
           "job.yaml:6: params.note.identifying: must be true or false");
    expect("chunk: 500", "chunk: 0", "job.yaml:11: steps[0].chunk: must be a positive integer");
    expect("chunk: 500", "chunk: lots", "job.yaml:11: steps[0].chunk: must be a positive integer");
    expect("chunk: 500", "chunks: 500", "job.yaml:11: steps[0].chunks: unknown key");
    expect("csv: {path", "jsonl: {path", "job.yaml:13: steps[0].reader.jsonl: unknown key");
    expect("delimiter: ';'", "delimiter: ';;'",
           "job.yaml:13: steps[0].reader.csv.delimiter: must be a single character");
    expect("${params.file}", "${params.fil}",
           "job.yaml:13: steps[0].reader.csv.path: ${params.fil}: no such parameter");
    expect("${params.file}", "${parms.file}",
           "job.yaml:13: steps[0].reader.csv.path: ${parms.file}: unknown reference");
    expect("connection: target", "connection: tagret",
           "job.yaml:15: steps[0].writer.table.connection: no connection named 'tagret'");
    expect("mode: upsert, key: [id]", "mode: merge",
           "job.yaml:15: steps[0].writer.table.mode: must be insert, upsert, update or replace");
    expect(", key: [id]", "",
           "job.yaml:15: steps[0].writer.table.key: is required with mode: upsert or update");
    expect("limit: 10", "limit: -1", "job.yaml:16: steps[0].skip.limit: must be an integer");
    expect("${execution.id}", "${execution.id", "job.yaml:17: steps[0].rejects: '${' without");
    expect("\"sqlite:${env.DB}\"", "\"mysql://x\"",
           "job.yaml:8: connections.target: unsupported URL");
    expect("    reader:\n", "    processor: {lua: x}\n    reader:\n",
           "job.yaml:12: steps[0].processor.lua: job.yaml, steps[0].processor.lua:1: syntax "
           "error near <eof>");
    expect("    reader:\n",
           "    processor: {lua: \"function process(i) end\", file: a.lua}\n"
           "    reader:\n",
           "job.yaml:12: steps[0].processor: needs exactly one of lua: (the script) and file:");
    expect("    reader:\n", "    processor: {file: /nonexistent/p.lua}\n    reader:\n",
           "job.yaml:12: steps[0].processor.file: cannot read '/nonexistent/p.lua'");
    expect("    reader:\n", "    processor: {lua: \"x = 1\", instructions: 5}\n    reader:\n",
           "job.yaml:12: steps[0].processor.instructions: must be an integer from 1000");
    expect("  - name: load\n",
           "  - name: load\n    reader: {csv: {path: a}}\n    writer: {table: {connection: target, "
           "name: t}}\n  - name: load\n",
           "job.yaml:13: steps[1].name: another step is already named 'load'");
    expect("job: users-upload", "job: [users-upload", "job.yaml:");
}

static void test_empty_and_non_mapping(void **state)
{
    (void)state;
    ns_job *job = NULL;
    ns_error err = {0};
    assert_int_equal(ns_job_load_buffer("job.yaml", "", 0, &job, &err), NS_ECONFIG);
    assert_string_equal(err.message, "job.yaml:1: job: the file is empty");
    ns_error_clear(&err);
    assert_int_equal(ns_job_load_buffer("job.yaml", "- a\n- b\n", 8, &job, &err), NS_ECONFIG);
    assert_non_null(strstr(err.message, "job.yaml:1: job: the file must be a mapping"));
    ns_error_clear(&err);
    assert_int_equal(ns_job_load_buffer("job.yaml", "job: a\nsteps: []\n", 17, &job, &err),
                     NS_ECONFIG);
    assert_string_equal(err.message, "job.yaml:2: steps: must be a non-empty list of steps");
    ns_error_clear(&err);
    assert_int_equal(ns_job_load("/nonexistent/job.yaml", &job, &err), NS_ECONFIG);
    assert_non_null(strstr(err.message, "/nonexistent/job.yaml: cannot open"));
}

static void test_param_values(void **state)
{
    (void)state;
    char *v = NULL, why[128];
    assert_true(ns__param_value(NS_P_BOOL, "YES", &v, why, sizeof(why)));
    assert_string_equal(v, "true");
    free(v);
    assert_true(ns__param_value(NS_P_DATE, "today", &v, why, sizeof(why)));
    assert_int_equal(strlen(v), 10);
    free(v);
    assert_false(ns__param_value(NS_P_INT, "12x", NULL, why, sizeof(why)));
    assert_false(ns__param_value(NS_P_DATE, "2025-02-29", NULL, why, sizeof(why)));
    assert_true(ns__param_value(NS_P_DATE, "2024-02-29", NULL, why, sizeof(why)));
    assert_false(ns__param_value(NS_P_FLOAT, "1e999", NULL, why, sizeof(why)));
    assert_true(ns__param_value(NS_P_TIMESTAMP, "2026-01-02T03:04:05Z", NULL, why, sizeof(why)));
    assert_false(ns__param_value(NS_P_TIMESTAMP, "2026-01-02 25:00", NULL, why, sizeof(why)));
}

static void test_substitution(void **state)
{
    (void)state;
    ns_job *job = NULL;
    ns_error err = {0};
    assert_int_equal(ns_job_load_buffer("job.yaml", valid, strlen(valid), &job, &err), NS_OK);
    const char *names[] = {"file"}, *values[] = {"in.csv"};
    ns_subst_ctx c = {.job = job,
                      .param_names = names,
                      .param_values = values,
                      .nparams = 1,
                      .execution_id = 42,
                      .step = "load"};
    char *out = NULL;
    assert_int_equal(ns__subst("${job.name}/${step.name}-${execution.id}-${params.file} $${x}", &c,
                               "t", &out, &err),
                     NS_OK);
    assert_string_equal(out, "users-upload/load-42-in.csv ${x}");
    free(out);
    setenv("NS_TEST_SECRET", "pw", 1);
    assert_int_equal(ns__subst("a${env.NS_TEST_SECRET}", &c, "t", &out, &err), NS_OK);
    assert_string_equal(out, "apw");
    free(out);
    /* keep_env: environment references stay; values cannot inject one. */
    const char *evil[] = {"${env.NS_TEST_SECRET}"};
    ns_subst_ctx k = c;
    k.param_values = evil;
    k.keep_env = true;
    assert_int_equal(ns__subst("${params.file}/${env.NS_TEST_SECRET}/x", &k, "t", &out, &err),
                     NS_OK);
    assert_string_equal(out, "$${env.NS_TEST_SECRET}/${env.NS_TEST_SECRET}/x");
    char *real = NULL;
    k.keep_env = false;
    assert_int_equal(ns__subst(out, &k, "t", &real, &err), NS_OK);
    assert_string_equal(real, "${env.NS_TEST_SECRET}/pw/x");
    free(out);
    free(real);
    unsetenv("NS_TEST_UNSET");
    assert_int_equal(ns__subst("${env.NS_TEST_UNSET}", &c, "t", &out, &err), NS_EPARAM);
    ns_job_free(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_errors_name_line_and_key),
        cmocka_unit_test(test_empty_and_non_mapping),
        cmocka_unit_test(test_param_values),
        cmocka_unit_test(test_substitution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
