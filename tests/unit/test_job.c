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

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        double secs; /* < 0: refused */
    } cases[] = {{"10s", 10},   {"500ms", 0.5}, {"2m", 120},   {"1h", 3600},
                 {"1m30s", 90}, {"1.5", 1.5},   {"0", 0},      {"0.25s", 0.25},
                 {"", -1},      {"s", -1},      {"10", 10},    {"1e3", -1},
                 {"0x10", -1},  {"-1s", -1},    {"10 s", -1},  {"10sec", -1},
                 {"1.s", -1},   {".5s", -1},    {"1s2", -1},   {"inf", -1},
                 {"nan", -1},   {"10s10s", 20}, {"1d", 86400}, {"99999999999999999s", -1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double v = -1;
        bool ok = ns__parse_duration(cases[i].text, &v);
        if (ok != (cases[i].secs >= 0) || (ok && v != cases[i].secs))
            fail_msg("duration '%s': %s %g", cases[i].text, ok ? "read as" : "refused", v);
    }
    char buf[32];
    assert_string_equal(ns__duration_str(500, buf), "500ms");
    assert_string_equal(ns__duration_str(30000, buf), "30s");
    assert_string_equal(ns__duration_str(120000, buf), "2m");
    assert_string_equal(ns__duration_str(86400000, buf), "24h");
}

/* The status table decides what is retried; the waits grow and stay in
 * their bounds. */
static void test_retry_policy(void **state)
{
    (void)state;
    static const struct {
        const char *sub;
        ns_status code;
        bool transient;
    } cases[] = {{"40001", NS_EDB, true},
                 {"40P01", NS_EDB, true},
                 {"08006", NS_EDB, true},
                 {"08001", NS_EDB, true},
                 {"57P01", NS_EDB, true},
                 {"57P03", NS_EDB, true},
                 {"database is locked", NS_EDB, true},
                 {"HTTP_503", NS_EIO, true},
                 {"", NS_ETIMEDOUT, true},
                 {"57014", NS_ETIMEDOUT, true},
                 {"", NS_ESTOPPED, false},
                 {"08006", NS_ESTOPPED, false},
                 {"NS_CONNECT", NS_EDB, false},
                 {"28P01", NS_EDB, false},
                 {"23505", NS_EDB, false},
                 {"42P01", NS_EDB, false},
                 {"", NS_EDB, false},
                 {"0800", NS_EDB, false},
                 {"080067", NS_EDB, false},
                 {"08006", NS_ECONFLICT, false},
                 {"08006", NS_ENOMEM, false},
                 {"HTTP_400", NS_EIO, false},
                 {"constraint failed", NS_EDB, false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ns_error e = {.code = cases[i].code};
        char what[64] = "";
        snprintf(e.sub, sizeof(e.sub), "%s", cases[i].sub);
        if (ns__retry_wanted(&ns__retry_default, &e, what, sizeof(what)) != cases[i].transient)
            fail_msg("'%s' (%s): retried is not %d", cases[i].sub, ns_status_name(cases[i].code),
                     cases[i].transient);
        if (cases[i].transient)
            assert_true(what[0] != '\0');
    }
    /* on: replaces the list; transient brings the default ones back */
    char a1[] = "23*", a2[] = "400", b1[] = "transient", b2[] = "23505";
    char *only[] = {a1, a2};
    ns_retry r = ns__retry_default;
    r.on = only;
    r.non = 2;
    ns_error e = {.code = NS_EDB};
    snprintf(e.sub, sizeof(e.sub), "23505");
    assert_true(ns__retry_wanted(&r, &e, NULL, 0));
    snprintf(e.sub, sizeof(e.sub), "HTTP_400");
    assert_true(ns__retry_wanted(&r, &e, NULL, 0));
    snprintf(e.sub, sizeof(e.sub), "08006");
    assert_false(ns__retry_wanted(&r, &e, NULL, 0));
    char *plus[] = {b1, b2};
    r.on = plus;
    assert_true(ns__retry_wanted(&r, &e, NULL, 0));
    assert_true(ns__retry_on_valid("SQLITE_BUSY") && ns__retry_on_valid("504") &&
                ns__retry_on_valid("timeout") && ns__retry_on_valid("2300A"));
    assert_false(ns__retry_on_valid("600") || ns__retry_on_valid("23") ||
                 ns__retry_on_valid("sqlite_busy") || ns__retry_on_valid("23505x") ||
                 ns__retry_on_valid("*"));
    /* waits: 1, 2, 4, ... up to max; jitter keeps them in [d/2, d] */
    ns_retry w = {.limit = 10, .initial = 1, .max = 5, .multiplier = 2, .jitter = false};
    uint64_t seed = 42;
    double want[] = {1, 2, 4, 5, 5, 5};
    for (int i = 0; i < 6; i++)
        assert_true(ns__retry_delay(&w, i + 1, &seed) == want[i]);
    w.jitter = true;
    for (int i = 0; i < 1000; i++) {
        double d = ns__retry_delay(&w, 3, &seed);
        assert_true(d >= 2 && d <= 4);
    }
    w.multiplier = 100;
    w.max = 86400;
    w.jitter = false;
    assert_true(ns__retry_delay(&w, 1000000, &seed) == 86400);
}

/* A secret is redacted as typed and as a server may echo it: base64 at any
 * alignment (inside an Authorization: Basic header), JSON-escaped,
 * percent-encoded; a URL's password and a webhook's path likewise. */
static void test_secret_forms(void **state)
{
    (void)state;
    ns_secrets s = {0};
    const char *pw = "p\"a/ss w0rd!";
    ns__secrets_add(&s, pw, strlen(pw));
    ns__secrets_add_url(&s, "https://user:Hunter2Hunter2@h.example/x");
    ns__secrets_add_url_path(&s, "https://hooks.example/services/T0TEAM1/B0BOT22/KeyKeyKey99");
    static const char *const texts[] = {
        "echo: p\"a/ss w0rd! end",
        "json: {\"pw\":\"p\\\"a\\/ss w0rd!\"}",
        "query: pw=p%22a%2Fss%20w0rd%21&x=1",
        /* "Basic " + base64("user:Hunter2Hunter2"), and with other users */
        "Authorization: Basic dXNlcjpIdW50ZXIySHVudGVyMg==",
        "Authorization: Basic YTpIdW50ZXIySHVudGVyMg==",
        "Authorization: Basic YWI6SHVudGVyMkh1bnRlcjI=",
        "no hook at /services/T0TEAM1/B0BOT22/KeyKeyKey99",
        "no hook at \\/services\\/T0TEAM1\\/B0BOT22\\/KeyKeyKey99",
        "base64 of the key: S2V5S2V5S2V5OTk=",
    };
    static const char *const leaked[] = {
        "w0rd",    "dW50ZXIySHVudGVyM", "SHVudGVyMkh1bnRlcj", "IdW50ZXIySHVudGVyM", "KeyKeyKey99",
        "T0TEAM1", "B0BOT22",           "S2V5S2V5S2V5"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", texts[i]);
        ns__redact(&s, buf, sizeof(buf));
        for (size_t k = 0; k < sizeof(leaked) / sizeof(leaked[0]); k++)
            if (strstr(buf, leaked[k]))
                fail_msg("'%s' still holds '%s' after redaction: %s", texts[i], leaked[k], buf);
        assert_non_null(strstr(buf, "***"));
    }
    /* ordinary words stay (a path segment is a secret, as the issue says:
     * "services" goes too) */
    char plain[] = "user hooks example 2024-03-09 services";
    ns__redact(&s, plain, sizeof(plain));
    assert_string_equal(plain, "user hooks example 2024-03-09 ***");
    ns__secrets_free(&s);
}

static void test_retry_key(void **state)
{
    (void)state;
    const char *head = "job: j\n"
                       "connections: {t: 'sqlite:x.db'}\n"
                       "steps:\n"
                       "  - name: s\n"
                       "    reader: {csv: {path: in.csv}}\n"
                       "    writer: {table: {connection: t, name: x}}\n";
    char text[1024];
    ns_job *job = NULL;
    ns_error err = {0};
    /* not given: the default policy */
    assert_int_equal(ns_job_load_buffer("job.yaml", head, strlen(head), &job, &err), NS_OK);
    assert_int_equal(job->steps[0].retry.limit, 3);
    assert_true(job->steps[0].retry.initial == 1 && job->steps[0].retry.max == 30);
    assert_null(job->steps[0].retry.on);
    ns_job_free(job);
    snprintf(text, sizeof(text),
             "%s    retry: {limit: 7, backoff: {initial: 250ms, multiplier: 1.5}, jitter: false, "
             "on: [40001, '08*']}\n",
             head);
    assert_int_equal(ns_job_load_buffer("job.yaml", text, strlen(text), &job, &err), NS_OK);
    const ns_retry *r = &job->steps[0].retry;
    assert_int_equal(r->limit, 7);
    assert_true(r->initial == 0.25 && r->max == 30 && r->multiplier == 1.5 && !r->jitter);
    assert_int_equal(r->non, 2);
    assert_string_equal(r->on[1], "08*");
    ns_job_free(job);
    static const char *const bad[][2] = {
        {"retry: 3", "job.yaml:7: steps[0].retry: must be a mapping"},
        {"retry: {limit: x}", "job.yaml:7: steps[0].retry.limit: must be an integer"},
        {"retry: {backoff: {max: 2d}}", "steps[0].retry.backoff.max: must be from 0s to 24h"},
        {"retry: {on: []}", "steps[0].retry.on: must be a non-empty list"},
        {"retry: {on: [503, 503]}", "steps[0].retry.on[1]: '503' is listed twice"},
        {"retry: {on: [deadlock]}", "steps[0].retry.on[0]: 'deadlock' is not a failure"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "%s    %s\n", head, bad[i][0]);
        memset(&err, 0, sizeof(err));
        job = NULL;
        assert_int_equal(ns_job_load_buffer("job.yaml", text, strlen(text), &job, &err),
                         NS_ECONFIG);
        if (!strstr(err.message, bad[i][1]))
            fail_msg("%s: said '%s', want '%s'", bad[i][0], err.message, bad[i][1]);
    }
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
    expect("\"sqlite:${env.DB}\"", "\"oracle://x\"",
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
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_retry_policy),
        cmocka_unit_test(test_secret_forms),
        cmocka_unit_test(test_retry_key),
        cmocka_unit_test(test_errors_name_line_and_key),
        cmocka_unit_test(test_empty_and_non_mapping),
        cmocka_unit_test(test_param_values),
        cmocka_unit_test(test_substitution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
