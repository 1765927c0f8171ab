/* test_csv.c - the CSV reader against RFC 4180 and its edge cases; every
 * case is parsed with read sizes from 1 byte to 1 MiB and must give the same
 * records, lines and offsets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io/csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t read_sizes[] = {1, 2, 3, 5, 7, 64, 4096, 1 << 20};

/* Serialises every record: "LINE@OFFSET:[f1][f2]...{CODE}" with NULL as ~. */
static char *parse_all(const char *data, size_t len, size_t read_size, size_t expect)
{
    ns_csv_options opt = {.read_size = read_size, .expect = expect, .check_utf8 = true};
    ns_csv *csv = NULL;
    ns_error err = {0};
    ns_buf out = {0};
    const ns_csv_record *r;

    assert_int_equal(ns__csv_open_mem(data, len, &opt, &csv, &err), NS_OK);
    for (;;) {
        assert_int_equal(ns__csv_next(csv, &r, &err), NS_OK);
        if (!r)
            break;
        ns__buf_printf(&out, "%lld@%lld:", (long long)r->line, (long long)r->offset);
        for (size_t i = 0; i < r->nfields; i++) {
            if (!r->fields[i].ptr)
                ns__buf_printf(&out, "~");
            else
                ns__buf_printf(&out, "[%.*s]", (int)r->fields[i].len, r->fields[i].ptr);
        }
        if (r->error_code)
            ns__buf_printf(&out, "{%s:%d}", r->error_code, r->error_field);
        ns__buf_printf(&out, "\n");
    }
    ns__csv_close(csv);
    ns__buf_cstr(&out);
    return out.data ? out.data : ns__strdup("");
}

/* Parses with every read size and checks they agree with the expected text. */
static void check(const char *data, size_t len, size_t expect, const char *want)
{
    for (size_t i = 0; i < sizeof(read_sizes) / sizeof(read_sizes[0]); i++) {
        char *got = parse_all(data, len, read_sizes[i], expect);
        if (strcmp(got, want) != 0)
            fail_msg("read size %zu:\n got:\n%s\n want:\n%s", read_sizes[i], got, want);
        free(got);
    }
}
#define CHECK(lit, expect, want) check(lit, sizeof(lit) - 1, expect, want)

static void test_simple(void **state)
{
    (void)state;
    CHECK("a,b,c\n1,2,3\n", 3, "1@0:[a][b][c]\n2@6:[1][2][3]\n");
}

static void test_quoted_delimiter_and_doubled_quotes(void **state)
{
    (void)state;
    CHECK("\"a,b\",\"say \"\"hi\"\"\",c\n", 0, "1@0:[a,b][say \"hi\"][c]\n");
}

static void test_quoted_newlines_and_start_lines(void **state)
{
    (void)state;
    CHECK("h1,h2\n\"multi\nline\nvalue\",x\nnext,y\n", 2,
          "1@0:[h1][h2]\n2@6:[multi\nline\nvalue][x]\n5@27:[next][y]\n");
}

static void test_crlf(void **state)
{
    (void)state;
    CHECK("a,b\r\n1,2\r\n\"q\r\nr\",3\r\n", 2, "1@0:[a][b]\n2@5:[1][2]\n3@10:[q\r\nr][3]\n");
}

static void test_bom(void **state)
{
    (void)state;
    CHECK("\xEF\xBB\xBFid,name\n1,x\n", 2, "1@3:[id][name]\n2@11:[1][x]\n");
}

static void test_null_vs_empty_string(void **state)
{
    (void)state;
    CHECK("a,,\"\",d\n", 4, "1@0:[a]~[][d]\n");
    /* A trailing delimiter at end of input gives a last NULL field. */
    CHECK("a,b,", 3, "1@0:[a][b]~\n");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    CHECK("id,name\n1,ok\xC3\xA9\n2,bad\xFF\n3,\"bad\xC3\"\n", 2,
          "1@0:[id][name]\n2@8:[1][ok\xC3\xA9]\n3@15:[2][bad\xFF]{NS_ENCODING:1}\n"
          "4@22:[3][bad\xC3]{NS_ENCODING:1}\n");
}

static void test_field_count(void **state)
{
    (void)state;
    CHECK("a,b\n1,2,3\n4\n5,6\n", 2,
          "1@0:[a][b]\n2@4:[1][2][3]{NS_FIELD_COUNT:-1}\n3@10:[4]{NS_FIELD_COUNT:-1}\n"
          "4@12:[5][6]\n");
}

static void test_blank_lines_and_no_final_newline(void **state)
{
    (void)state;
    CHECK("a\n\n\r\n\nb\nc", 1, "1@0:[a]\n5@6:[b]\n6@8:[c]\n");
}

static void test_malformed_quotes(void **state)
{
    (void)state;
    CHECK("a,b\"c,d\n1,2,3\n", 3, "1@0:[a][b\"c][d]{NS_CSV_QUOTE:1}\n2@8:[1][2][3]\n");
    CHECK("\"a\"x,b\n1,2\n", 2, "1@0:[\"a\"x][b]{NS_CSV_QUOTE:0}\n2@7:[1][2]\n");
    /* An unterminated quote runs to the end of the input. */
    CHECK("1,2\n\"open,3\n4,5\n", 2, "1@0:[1][2]\n2@4:[open,3\n4,5\n]{NS_CSV_QUOTE:0}\n");
}

static void test_quote_at_buffer_edges(void **state)
{
    (void)state;
    /* A closing quote followed by a doubled quote split across reads. */
    CHECK("\"a\"\"\",\"\"\"\"\n", 2, "1@0:[a\"][\"]\n");
    CHECK("\"x\"\r\n\"y\"", 1, "1@0:[x]\n2@5:[y]\n");
}

static void test_seek_resumes_identically(void **state)
{
    (void)state;
    const char data[] = "h\n1\n\"2\n2\"\n3\n4\n";
    ns_csv_options opt = {.read_size = 3};
    ns_csv *csv = NULL;
    ns_error err = {0};
    const ns_csv_record *r;

    assert_int_equal(ns__csv_open_mem(data, sizeof(data) - 1, &opt, &csv, &err), NS_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ns__csv_next(csv, &r, &err), NS_OK);
    int64_t off = ns__csv_offset(csv), line = ns__csv_line(csv);
    assert_int_equal(off, 10);
    assert_int_equal(line, 5);
    ns__csv_close(csv);

    assert_int_equal(ns__csv_open_mem(data, sizeof(data) - 1, &opt, &csv, &err), NS_OK);
    assert_int_equal(ns__csv_seek(csv, off, line, NULL, NULL, &err), NS_OK);
    assert_int_equal(ns__csv_next(csv, &r, &err), NS_OK);
    assert_non_null(r);
    assert_int_equal(r->line, 5);
    assert_memory_equal(r->fields[0].ptr, "3", 1);
    assert_int_equal(ns__csv_next(csv, &r, &err), NS_OK);
    assert_int_equal(r->line, 6);
    assert_int_equal(ns__csv_next(csv, &r, &err), NS_OK);
    assert_null(r);
    /* A position past the end of the file is an error, not a silent skip. */
    assert_int_equal(ns__csv_seek(csv, 1000, 1, NULL, NULL, &err), NS_EIO);
    ns__csv_close(csv);
}

static void test_raw_text_excludes_terminator(void **state)
{
    (void)state;
    const char data[] = "a,\"b\r\nc\"\r\nd,e";
    ns_csv *csv = NULL;
    ns_error err = {0};
    const ns_csv_record *r;

    assert_int_equal(ns__csv_open_mem(data, sizeof(data) - 1, NULL, &csv, &err), NS_OK);
    assert_int_equal(ns__csv_next(csv, &r, &err), NS_OK);
    assert_int_equal(r->raw_len, 8);
    assert_memory_equal(r->raw, "a,\"b\r\nc\"", 8);
    assert_int_equal(r->end, 10);
    assert_int_equal(ns__csv_next(csv, &r, &err), NS_OK);
    assert_int_equal(r->raw_len, 3);
    ns__csv_close(csv);
}

/* A generated file with every feature, compared across read sizes. */
static void test_generated_large(void **state)
{
    (void)state;
    ns_buf b = {0};
    srand(42);
    for (int i = 0; i < 3000; i++) {
        switch (rand() % 6) {
        case 0:
            ns__buf_printf(&b, "%d,plain,%d\n", i, rand());
            break;
        case 1:
            ns__buf_printf(&b, "%d,\"quoted, with comma\",\"x\"\"y\"\r\n", i);
            break;
        case 2:
            ns__buf_printf(&b, "%d,\"multi\nline\",\n", i);
            break;
        case 3:
            ns__buf_printf(&b, "%d,,\"\"\n\n", i);
            break;
        case 4:
            ns__buf_printf(&b, "%d,bad\xFE,z\n", i);
            break;
        default:
            ns__buf_printf(&b, "%d,too,many,fields\n", i);
        }
    }
    char *ref = parse_all(b.data, b.len, 1 << 20, 3);
    for (size_t i = 0; i < sizeof(read_sizes) / sizeof(read_sizes[0]); i++) {
        char *got = parse_all(b.data, b.len, read_sizes[i], 3);
        assert_string_equal(got, ref);
        free(got);
    }
    free(ref);
    ns__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_quoted_delimiter_and_doubled_quotes),
        cmocka_unit_test(test_quoted_newlines_and_start_lines),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_null_vs_empty_string),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_field_count),
        cmocka_unit_test(test_blank_lines_and_no_final_newline),
        cmocka_unit_test(test_malformed_quotes),
        cmocka_unit_test(test_quote_at_buffer_edges),
        cmocka_unit_test(test_seek_resumes_identically),
        cmocka_unit_test(test_raw_text_excludes_terminator),
        cmocka_unit_test(test_generated_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
