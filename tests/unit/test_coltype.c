/* test_coltype.c - values against declared column types, with the SQLSTATE
 * PostgreSQL would give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/io.h"

#include <string.h>

static const char *check(const char *decl, const char *value, ns_bound *b)
{
    static char msg[256];
    ns_coltype ct;
    const char *code = NULL;
    ns_bound tmp;
    ns__coltype_parse(decl, &ct);
    if (ns__coltype_check(&ct, value, strlen(value), b ? b : &tmp, &code, msg, sizeof(msg)))
        return "ok";
    return code;
}

static void test_integers(void **state)
{
    (void)state;
    ns_bound b;
    assert_string_equal(check("INTEGER", "42", &b), "ok");
    assert_int_equal(b.kind, NS_B_INT);
    assert_int_equal(b.i, 42);
    assert_string_equal(check("INTEGER", " -7 ", &b), "ok");
    assert_int_equal(b.i, -7);
    assert_string_equal(check("INTEGER", "12x", NULL), "22P02");
    assert_string_equal(check("INTEGER", "", NULL), "22P02");
    assert_string_equal(check("INTEGER", "1.5", NULL), "22P02");
    assert_string_equal(check("BIGINT", "99999999999999999999", NULL), "22003");
    assert_string_equal(check("SMALLINT", "40000", NULL), "22003");
    assert_string_equal(check("smallint", "-32768", NULL), "ok");
}

static void test_text_lengths(void **state)
{
    (void)state;
    assert_string_equal(check("VARCHAR(3)", "abc", NULL), "ok");
    assert_string_equal(check("VARCHAR(3)", "abcd", NULL), "22001");
    /* Characters, not bytes. */
    assert_string_equal(check("CHARACTER VARYING(3)", "\xC3\xA9\xC3\xA9\xC3\xA9", NULL), "ok");
    assert_string_equal(check("TEXT", "anything at all", NULL), "ok");
}

static void test_numeric_bool_real(void **state)
{
    (void)state;
    assert_string_equal(check("NUMERIC(10,2)", "12345678.99", NULL), "ok");
    assert_string_equal(check("NUMERIC(10,2)", "123456789.00", NULL), "22003");
    assert_string_equal(check("DECIMAL(5,2)", "-0.5", NULL), "ok");
    assert_string_equal(check("NUMERIC", "1e5", NULL), "ok");
    assert_string_equal(check("NUMERIC", "1.2.3", NULL), "22P02");
    assert_string_equal(check("BOOLEAN", "yes", NULL), "ok");
    assert_string_equal(check("BOOLEAN", "maybe", NULL), "22P02");
    assert_string_equal(check("REAL", "3.25", NULL), "ok");
    assert_string_equal(check("DOUBLE PRECISION", "abc", NULL), "22P02");
}

static void test_postgresql_types(void **state)
{
    (void)state;
    ns_coltype ct;
    ns__coltype_parse_pg("integer", &ct);
    assert_int_equal(ct.kind, NS_CT_INT);
    assert_int_equal(ct.max, INT32_MAX);
    ns__coltype_parse_pg("bigint", &ct);
    assert_int_equal(ct.max, INT64_MAX);
    ns__coltype_parse_pg("character varying(20)", &ct);
    assert_int_equal(ct.kind, NS_CT_TEXT);
    assert_int_equal(ct.length, 20);
    ns__coltype_parse_pg("timestamp with time zone", &ct);
    assert_int_equal(ct.kind, NS_CT_TIMESTAMP);
    ns__coltype_parse_pg("integer[]", &ct);
    assert_int_equal(ct.kind, NS_CT_ANY);
    ns__coltype_parse_pg("time without time zone", &ct);
    assert_int_equal(ct.kind, NS_CT_ANY);
    ns__coltype_parse_pg("numeric(10,2)", &ct);
    assert_int_equal(ct.precision, 10);
    ns__coltype_parse_pg("point", &ct); /* not an integer, whatever SQLite's rules say */
    assert_int_equal(ct.kind, NS_CT_ANY);
    ns__coltype_parse_pg("interval", &ct);
    assert_int_equal(ct.kind, NS_CT_ANY);
    ns__coltype_parse_pg("smallint", &ct);
    assert_int_equal(ct.max, 32767);
}

static void test_dates(void **state)
{
    (void)state;
    assert_string_equal(check("DATE", "2024-02-29", NULL), "ok");
    assert_string_equal(check("DATE", "2023-02-29", NULL), "22007");
    assert_string_equal(check("DATE", "2024-2-1", NULL), "22007");
    assert_string_equal(check("TIMESTAMP", "2024-02-29 10:11:12.123", NULL), "ok");
    assert_string_equal(check("TIMESTAMP", "2024-02-29T10:11:12+09:00", NULL), "ok");
    assert_string_equal(check("DATETIME", "2024-02-29 24:00:00", NULL), "22007");
    assert_string_equal(check("BLOB", "\xFF anything", NULL), "ok");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers),          cmocka_unit_test(test_text_lengths),
        cmocka_unit_test(test_numeric_bool_real), cmocka_unit_test(test_dates),
        cmocka_unit_test(test_postgresql_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
