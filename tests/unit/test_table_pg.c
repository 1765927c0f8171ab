/* test_table_pg.c - the PostgreSQL table writer driven through its vtable
 * without feed(): write() must check, hold duplicates, stream and isolate
 * exactly as when the runner feeds it item by item. Needs the test server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/io.h"
#include "db/pg/pg.h"
#include "db/sqlite/sqlite.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char url[512];

static void sql(const char *stmt)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, stmt);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", stmt, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static long count(const char *stmt)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, stmt);
    long n = PQntuples(r) == 1 ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    PQfinish(c);
    return n;
}

static void test_write_without_feed(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS wt; DROP TABLE IF EXISTS nightshift_checkpoint;"
        "CREATE TABLE wt (id integer PRIMARY KEY, v text NOT NULL)");
    const char *cols[] = {"id", "v"};
    ns_writer_cfg cfg = {.url = url,
                         .conn_name = "connection 'test'",
                         .table = "wt",
                         .mode = NS_MODE_INSERT,
                         .columns = cols,
                         .ncolumns = 2};
    ns_writer *w = NULL;
    ns_error err = {0};
    assert_int_equal(ns__writer_new(&ns__writer_table_pg, &w, &err), NS_OK);
    if (w->vt->open(w, &cfg, &err) != NS_OK)
        fail_msg("open: %s", err.message);

    sql("INSERT INTO wt VALUES (7, 'already there')");
    static const char *rows[][2] = {{"1", "a"},
                                    {"2", "b"},
                                    {"7", "dup of a row in the table"},
                                    {"x", "not an integer"},
                                    {"1", "dup within the chunk"},
                                    {"3", "c"}};
    enum { N = 6 };
    ns_value vals[N][2];
    ns_item items[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 2; j++)
            vals[i][j] = (ns_value){rows[i][j], strlen(rows[i][j])};
        items[i] = (ns_item){.line = i + 2, .raw = "", .fields = vals[i], .nfields = 2};
    }
    ns_arena a;
    ns__arena_init(&a, 4096);
    if (w->vt->write(w, items, N, &a, &err) != NS_OK)
        fail_msg("write: %s", err.message);
    ns_ckpt_key key = {"job", "key", "step", "", 1, 1, false};
    if (w->vt->commit(w, &key, "{}", NULL, NULL, &err) != NS_OK)
        fail_msg("commit: %s", err.message);

    const char *want[N] = {NULL, NULL, "23505", "22P02", "23505", NULL};
    for (int i = 0; i < N; i++) {
        if (!want[i])
            assert_null(items[i].code);
        else if (!items[i].code || strcmp(items[i].code, want[i]) != 0)
            fail_msg("item %d: code %s, want %s", i, items[i].code ? items[i].code : "none",
                     want[i]);
    }
    assert_int_equal(count("SELECT count(*) FROM wt"), 4);
    assert_int_equal(count("SELECT count(*) FROM wt WHERE id = 1 AND v = 'a'"), 1);
    ns__writer_free(w);
    ns__arena_free(&a);
}

/* The connection lost in the middle of a streamed COPY: write() fails the
 * chunk with the connection's error; no item is rejected for it (the COPY's
 * error record was read uninitialised when PQputCopyData failed: valgrind
 * reports it on the old code, and the item verdicts were garbage). */
static void test_connection_lost_mid_copy(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS lost; DROP TABLE IF EXISTS nightshift_checkpoint;"
        "CREATE TABLE lost (id integer PRIMARY KEY, v text NOT NULL)");
    const char *cols[] = {"id", "v"};
    ns_writer_cfg cfg = {.url = url,
                         .conn_name = "connection 'test'",
                         .table = "lost",
                         .mode = NS_MODE_INSERT,
                         .columns = cols,
                         .ncolumns = 2};
    ns_writer *w = NULL;
    ns_error err = {0};
    assert_int_equal(ns__writer_new(&ns__writer_table_pg, &w, &err), NS_OK);
    if (w->vt->open(w, &cfg, &err) != NS_OK)
        fail_msg("open: %s", err.message);
    enum { N = 20000 };
    static char ids[N][12], vs[N][48];
    static ns_value vals[N][2];
    static ns_item items[N];
    ns_arena a;
    ns__arena_init(&a, 1 << 16);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%d", i + 1);
        snprintf(vs[i], sizeof(vs[i]), "a value long enough to fill the buffer %d", i);
        vals[i][0] = (ns_value){ids[i], strlen(ids[i])};
        vals[i][1] = (ns_value){vs[i], strlen(vs[i])};
        items[i] = (ns_item){.line = i + 2, .raw = "", .fields = vals[i], .nfields = 2};
    }
    /* Half the chunk streams, then the server ends the COPY's backend. */
    for (int i = 0; i < N / 2; i++)
        if (w->vt->feed(w, items, (size_t)i, &a, &err) != NS_OK)
            fail_msg("feed: %s", err.message);
    /* The writer's connection is the only socket this process holds now:
     * shut it, so the next send fails at once (PQputCopyData, not a result). */
    for (int fd = 3; fd < 1024; fd++) {
        struct stat sb;
        if (fstat(fd, &sb) == 0 && S_ISSOCK(sb.st_mode))
            shutdown(fd, SHUT_RDWR);
    }
    /* The rest of what was fed goes out in write(), to a closed socket. */
    ns_status st = w->vt->write(w, items, N / 2, &a, &err);
    assert_int_not_equal(st, NS_OK);
    for (int i = 0; i < N; i++)
        if (items[i].code)
            fail_msg("item %d rejected (%s: %s) for a lost connection", i, items[i].code,
                     items[i].message ? items[i].message : "");
    w->vt->rollback(w);
    ns__writer_free(w);
    ns__arena_free(&a);
}

/* The fence (docs/internals.md): once another execution has claimed a step's
 * checkpoint row, a commit by the earlier owner fails and commits nothing. */
static void fence(const ns_writer_vt *vt, const char *target)
{
    ns_writer_cfg cfg = {.url = target, .conn_name = "connection 'test'"};
    ns_writer *a = NULL, *b = NULL;
    ns_error err = {0};
    char *ctx = NULL;
    assert_int_equal(ns__writer_new(vt, &a, &err), NS_OK);
    assert_int_equal(ns__writer_new(vt, &b, &err), NS_OK);
    if (a->vt->open(a, &cfg, &err) != NS_OK || b->vt->open(b, &cfg, &err) != NS_OK)
        fail_msg("open %s: %s", target, err.message);
    ns_ckpt_key ka = {"job", "key", "step", "", 1, 10, false},
                kb = {"job", "key", "step", "", 2, 20, false};

    /* A claims (nothing committed yet), commits; B takes over, sees A's. */
    assert_int_equal(a->vt->checkpoint(a, &ka, &ctx, &err), NS_OK);
    assert_null(ctx);
    if (a->vt->commit(a, &ka, "{\"chunks\":1}", NULL, NULL, &err) != NS_OK)
        fail_msg("%s: commit: %s", vt->name, err.message);
    assert_int_equal(b->vt->checkpoint(b, &kb, &ctx, &err), NS_OK);
    assert_non_null(ctx);
    assert_string_equal(ctx, "{\"chunks\":1}");
    free(ctx);
    /* A wakes up: its next commit is refused, and names B. */
    assert_int_equal(a->vt->commit(a, &ka, "{\"chunks\":2}", NULL, NULL, &err), NS_ECONFLICT);
    if (!strstr(err.message, "execution 2 has taken this job instance over"))
        fail_msg("%s: %s", vt->name, err.message);
    a->vt->rollback(a);
    if (b->vt->commit(b, &kb, "{\"chunks\":2,\"by\":\"b\"}", NULL, NULL, &err) != NS_OK)
        fail_msg("%s: commit by the new owner: %s", vt->name, err.message);
    assert_int_equal(b->vt->checkpoint(b, &kb, &ctx, &err), NS_OK);
    assert_string_equal(ctx, "{\"chunks\":2,\"by\":\"b\"}");
    free(ctx);
    /* A retry's claim (reclaim): the holder gets its context back, changing
     * nothing; the one taken over is refused and takes nothing. */
    kb.reclaim = ka.reclaim = true;
    ctx = NULL;
    assert_int_equal(b->vt->checkpoint(b, &kb, &ctx, &err), NS_OK);
    assert_string_equal(ctx, "{\"chunks\":2,\"by\":\"b\"}");
    free(ctx);
    ctx = NULL;
    memset(&err, 0, sizeof(err));
    assert_int_equal(a->vt->checkpoint(a, &ka, &ctx, &err), NS_ECONFLICT);
    assert_null(ctx);
    if (b->vt->commit(b, &kb, "{\"chunks\":3}", NULL, NULL, &err) != NS_OK)
        fail_msg("%s: commit after a refused reclaim: %s", vt->name, err.message);
    kb.reclaim = ka.reclaim = false;

    /* Claimed before anything was committed: the fence holds too. */
    ns_ckpt_key fa = {"job", "key", "fresh", "", 1, 11, false},
                fb = {"job", "key", "fresh", "", 2, 21, false};
    assert_int_equal(a->vt->checkpoint(a, &fa, &ctx, &err), NS_OK);
    assert_int_equal(b->vt->checkpoint(b, &fb, &ctx, &err), NS_OK);
    assert_null(ctx);
    assert_int_equal(a->vt->commit(a, &fa, "{}", NULL, NULL, &err), NS_ECONFLICT);
    a->vt->rollback(a);
    ns__writer_free(a);
    ns__writer_free(b);
}

/*
 * The client's reading of CHECK constraints (table_pg_check.c) against the
 * server: for every constraint it claims to understand and every value,
 * "surely passes" must be a row the server takes and "may fail" one it
 * refuses (it is exact on these forms; NaN and infinities are left in
 * doubt); the forms it must not claim to understand are refused.
 */
static void test_checks_oracle(void **state)
{
    (void)state;
    static const struct {
        const char *type, *check;
        bool understood;
    } cases[] = {
        {"integer", "x >= 0", true},
        {"integer", "x BETWEEN 1 AND 10", true},
        {"integer", "x IN (1, 2, 3)", true},
        {"integer", "x <> ALL (ARRAY[1, 2])", true},
        {"integer", "x < -5 OR x > 5", true},
        {"integer", "NOT (x = 3)", true},
        {"integer", "x IS NOT NULL AND x <> 0", true},
        {"integer", "0 < x", true},
        {"bigint", "x > -9223372036854775807", true},
        {"text", "x IN ('a', 'b')", true},
        {"text", "x <> 'it''s'", true},
        {"text", "length(x) <= 3", true},
        {"text", "x = 'é' OR x IS NULL", true},
        {"varchar(10)", "x IN ('p', 'q')", true},
        {"varchar(10)", "char_length(x) > 0", true},
        {"char(3)", "x <> 'zz'", true},
        {"char(3)", "x IN ('ab', 'cd')", true},
        {"numeric(8,3)", "x > -1.5 AND x < 100", true},
        {"numeric(8,3)", "x = 1.50", true},
        {"numeric(8,3)", "x <> 0", true},
        {"double precision", "x >= 0.5", true},
        {"double precision", "x <> 0.1", true},
        {"double precision", "x < 1e3", true},
        {"date", "x > '2020-01-01'", true},
        {"date", "x BETWEEN '2000-01-01' AND '2030-12-31'", true},
        {"date", "x IN ('2020-02-29', '2021-01-01')", true},
        {"date", "x <= CURRENT_DATE", true},
        {"date", "x > CURRENT_DATE OR x IS NULL", true},
        {"date", "x <> '2021-01-01'::date", true},
        {"date", "x > '2020-01-01'::date + 1", false},
        {"date", "x::text > '2020'", false},
        {"date", "x > now()", false},
        {"timestamp", "x > '2020-01-01'", false},
        {"text", "x ~ '^a'", false},
        {"integer", "x + 1 > 0", false},
        {"text", "lower(x) = 'a'", false},
        {"text", "lower(x) = x", true},
        {"varchar(10)", "x = upper(x)", true},
        {"text", "upper(x) <> lower(x)", true},
        {"text", "NOT (lower(x) = x) OR x IS NULL", true},
        {"text", "lower(x) > x", false},
        {"char(3)", "lower(x) = x", false},
        {"text", "initcap(x) = x", false},
        {"text", "lower(x COLLATE \"C\") = x", false},
        {"text", "x < 'm'", false},
        {"boolean", "x", false},
        {"integer", "x IN (1, NULL)", false},
    };
    static const char *const values[] = {NULL,
                                         "-100",
                                         "-6",
                                         "-5",
                                         "-1.5",
                                         "-1.49",
                                         "-1.500",
                                         "-0",
                                         "0",
                                         "0.000",
                                         "0.1",
                                         "0.5",
                                         "0.49999999999999994",
                                         "1",
                                         "1.5",
                                         "1.50",
                                         "1.500",
                                         "+2",
                                         " 7 ",
                                         "3",
                                         "5",
                                         "6",
                                         "10",
                                         "11",
                                         "99.999",
                                         "100",
                                         "100.000",
                                         "999.9999",
                                         "1000",
                                         "NaN",
                                         "Infinity",
                                         "",
                                         "a",
                                         "b",
                                         "c",
                                         "it's",
                                         "abc",
                                         "abcd",
                                         "é",
                                         "é€xy",
                                         "AbC",
                                         "ABC",
                                         "I",
                                         "i",
                                         "École",
                                         "x\x7fY",
                                         "MiXeD-123_@ok",
                                         "ab",
                                         "ab ",
                                         "cd",
                                         "zz",
                                         "zz ",
                                         "p",
                                         "q",
                                         "r",
                                         "-9223372036854775807",
                                         "-9223372036854775808",
                                         "1999-12-31",
                                         "2000-01-01",
                                         "2019-12-31",
                                         "2020-01-01",
                                         "2020-01-02",
                                         "2020-02-29",
                                         "2021-01-01",
                                         "2030-12-31",
                                         "2031-01-01",
                                         "0001-01-01",
                                         "9999-12-31",
                                         "today",
                                         "yesterday",
                                         "tomorrow"};
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    /* CURRENT_DATE, and the days either side of it, as the server says */
    PGresult *days = PQexec(c, "SELECT to_char(d, 'YYYY-MM-DD') FROM (VALUES (current_date),"
                               " (current_date - 1), (current_date + 1)) v(d)");
    assert_int_equal(PQntuples(days), 3);
    const char *today = PQgetvalue(days, 0, 0);
    size_t claims = 0;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char ddl[512], def[512];
        snprintf(ddl, sizeof(ddl),
                 "DROP TABLE IF EXISTS ck; CREATE TABLE ck (x %s CHECK (%s));"
                 " SELECT format_type(a.atttypid, a.atttypmod), pg_get_constraintdef(c.oid)"
                 " FROM pg_attribute a, pg_constraint c WHERE a.attrelid = 'ck'::regclass"
                 " AND a.attname = 'x' AND c.conrelid = 'ck'::regclass AND c.contype = 'c'",
                 cases[k].type, cases[k].check);
        PGresult *r = PQexec(c, ddl);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
            fail_msg("%s: %s", cases[k].check, PQerrorMessage(c));
        char xname[] = "x";
        pcol col = {.name = xname};
        ns__coltype_parse_pg(PQgetvalue(r, 0, 0), &col.ct);
        snprintf(def, sizeof(def), "%s", PQgetvalue(r, 0, 1));
        PQclear(r);
        /* the test server's database is initdb --locale=C: plain casing */
        ns_pg_check *ck = ns__pg_check_parse("ck_x_check", def, &col, 1, today, true);
        if (!cases[k].understood) {
            if (ck)
                fail_msg("%s: read as understood, it must not be", def);
            continue;
        }
        if (!ck)
            fail_msg("%s (%s): not understood", def, col.ct.decl);
        claims++;
        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
            const char *value = values[v];
            if (value && strcmp(value, "today") == 0)
                value = today;
            else if (value && strcmp(value, "yesterday") == 0)
                value = PQgetvalue(days, 1, 0);
            else if (value && strcmp(value, "tomorrow") == 0)
                value = PQgetvalue(days, 2, 0);
            const char *p[] = {value};
            ns_bound b = {0};
            const char *code;
            char msg[64];
            /* A value the client's type check refuses never reaches the CHECK. */
            if (value &&
                !ns__coltype_check(&col.ct, value, strlen(value), &b, &code, msg, sizeof(msg)))
                continue;
            PQclear(PQexec(c, "BEGIN"));
            r = PQexecParams(c, "INSERT INTO ck VALUES ($1)", 1, NULL, p, NULL, NULL, 0);
            const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            bool taken = PQresultStatus(r) == PGRES_COMMAND_OK,
                 refused = sqlstate && strcmp(sqlstate, "23514") == 0;
            PQclear(r);
            PQclear(PQexec(c, "ROLLBACK"));
            if (!taken && !refused)
                continue; /* a type error the client's check lets through */
            ns_value fv = {value, value ? strlen(value) : 0};
            ns_item it = {.fields = &fv, .nfields = 1};
            bool may_fail = ns__pg_check_may_fail(ck, &col, &b, &it);
            bool doubt = value && (strcmp(value, "NaN") == 0 || strcmp(value, "Infinity") == 0);
            /* lower()/upper() of a non-ASCII value: the locale's, left in doubt */
            bool ascii = true;
            for (const char *q = value; q && *q; q++)
                ascii &= (unsigned char)*q < 0x80;
            doubt |= !ascii && (strstr(def, "lower(") || strstr(def, "upper("));
            if (refused && !may_fail)
                fail_msg("%s: '%s' is refused by the server, read as surely passing", def,
                         value ? value : "NULL");
            if (taken && may_fail && !doubt)
                fail_msg("%s: '%s' is taken by the server, read as may fail", def,
                         value ? value : "NULL");
        }
        ns__pg_check_free(ck);
    }
    assert_true(claims > 25);
    PQclear(days);
    /* Text no server prints, read without harm: unterminated, too deep,
     * trailing words, an unknown column. */
    char deep[4096] = "CHECK (";
    for (int i = 0; i < 1000; i++)
        strcat(deep, "(");
    char xname[] = "x";
    pcol xcol = {.name = xname};
    ns__coltype_parse_pg("integer", &xcol.ct);
    static const char *const hostile[] = {"CHECK ((x = 'unterminated))",
                                          "CHECK ((x >= ))",
                                          "CHECK ((x >= 0)) AND",
                                          "CHECK",
                                          "",
                                          "CHECK ((y >= 0))",
                                          "CHECK ((x = ANY (ARRAY[1, )))",
                                          "CHECK ((\"x >= 0))",
                                          "CHECK ((x >= 0)) NOT VALID",
                                          "CHECK ((x = ANY (ARRAY[])))",
                                          "CHECK ((x <= CURRENT_DATE))",
                                          "CHECK ((x > '2020-01-01'::date))"};
    for (size_t h = 0; h < sizeof(hostile) / sizeof(hostile[0]); h++) {
        ns_pg_check *ck = ns__pg_check_parse("h", hostile[h], &xcol, 1, "2020-01-01", true);
        bool ok = strcmp(hostile[h], "CHECK ((x >= 0)) NOT VALID") == 0;
        if ((ck != NULL) != ok)
            fail_msg("%s: %s", hostile[h], ck ? "read as understood" : "not understood");
        ns__pg_check_free(ck);
    }
    /* Dates only as ISO text, CURRENT_DATE only when known, and a column
     * named CURRENT_DATE is a column. */
    pcol dcol = {.name = xname};
    ns__coltype_parse_pg("date", &dcol.ct);
    assert_null(
        ns__pg_check_parse("d", "CHECK ((x > '01/02/2020'::date))", &dcol, 1, "2020-01-01", true));
    assert_null(
        ns__pg_check_parse("d", "CHECK ((x > '2020-02-30'::date))", &dcol, 1, "2020-01-01", true));
    assert_null(ns__pg_check_parse("d", "CHECK ((x > CURRENT_DATE))", &dcol, 1, NULL, true));
    assert_null(ns__pg_check_parse("d", "CHECK ((\"CURRENT_DATE\" > '2020-01-01'::date))", &dcol, 1,
                                   "2020-01-01", true));
    ns_pg_check *today_ck =
        ns__pg_check_parse("d", "CHECK ((x <= CURRENT_DATE))", &dcol, 1, "2020-06-15", true);
    assert_non_null(today_ck);
    ns_value dv = {"2020-06-16", 10};
    ns_item di = {.fields = &dv, .nfields = 1};
    ns_bound db = {0};
    assert_true(ns__pg_check_may_fail(today_ck, &dcol, &db, &di));
    dv.ptr = "2020-06-15";
    assert_false(ns__pg_check_may_fail(today_ck, &dcol, &db, &di));
    ns__pg_check_free(today_ck);
    assert_null(ns__pg_check_parse("deep", deep, &xcol, 1, NULL, true));
    /* lower() and upper() are read only where casing is plain */
    pcol tcol = {.name = xname};
    ns__coltype_parse_pg("text", &tcol.ct);
    assert_null(ns__pg_check_parse("l", "CHECK ((lower(x) = x))", &tcol, 1, NULL, false));
    ns_pg_check *lower_ck = ns__pg_check_parse("l", "CHECK ((lower(x) = x))", &tcol, 1, NULL, true);
    assert_non_null(lower_ck);
    ns__pg_check_free(lower_ck);
    PQclear(PQexec(c, "DROP TABLE ck"));
    PQfinish(c);
}

static void test_fence(void **state)
{
    (void)state;
    sql("DROP TABLE IF EXISTS nightshift_checkpoint");
    fence(&ns__writer_table_pg, url);
    char path[] = "/tmp/ns-fence-XXXXXX", sqlite[64];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(sqlite, sizeof(sqlite), "sqlite:%s", path);
    fence(&ns__writer_table_sqlite, sqlite);
    unlink(path);
}

int main(void)
{
    const char *state = getenv("NS_PG_STATE");
    char file[600];
    snprintf(file, sizeof(file), "%s/url", state ? state : "");
    FILE *f = state ? fopen(file, "r") : NULL;
    if (!f || !fgets(url, sizeof(url), f)) {
        fprintf(stderr, "test_table_pg: no PostgreSQL test server (%s)\n", file);
        return 1;
    }
    fclose(f);
    url[strcspn(url, "\n")] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_without_feed), cmocka_unit_test(test_connection_lost_mid_copy),
        cmocka_unit_test(test_fence), cmocka_unit_test(test_checks_oracle)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
