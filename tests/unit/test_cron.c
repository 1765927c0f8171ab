/*
 * test_cron.c - cron expressions and zones, case by case: the DST rules of
 * docs/scheduling.md at the changes named there (the oracle test checks
 * thousands more), parse errors naming the field, zone names that are not
 * zones, and damaged TZif files (every truncation, flipped bytes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sched/cron.h"

#include <string.h>

static ns_tz *zone(const char *name)
{
    ns_tz *tz = NULL;
    ns_error err = {0};
    if (ns_tz_load(name, &tz, &err) != NS_OK)
        fail_msg("%s", err.message);
    return tz;
}

/* The instant of a UTC date-time. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    return ns__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

/* The next fire time after `after`, as "YYYY-MM-DD HH:MM:SS+OFF" in the zone. */
static const char *next(const char *expr, ns_tz *tz, ns_dst_gap gap, ns_dst_repeat rep,
                        int64_t after, ns_fire *f)
{
    static char buf[64];
    ns_cron c;
    char why[200];
    if (!ns_cron_parse(expr, &c, why, sizeof(why)))
        fail_msg("%s: %s", expr, why);
    if (!ns_cron_next(&c, tz, gap, rep, after, f))
        return "none";
    ns_tz_info z;
    ns_tz_at(tz, f->at, &z);
    char w[32];
    ns__wall_str(f->at + z.off, w, sizeof(w));
    snprintf(buf, sizeof(buf), "%s%+03d%02d", w, z.off / 3600, abs(z.off) / 60 % 60);
    return buf;
}

static void new_york_gap(void **state)
{
    (void)state;
    ns_tz *tz = zone("America/New_York");
    ns_fire f;
    int64_t before = utc(2024, 3, 9, 12, 0); /* the day before, after 02:30 */
    assert_string_equal(next("30 2 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, before, &f),
                        "2024-03-10 03:00:00-0400");
    assert_true(f.flags & NS_FIRE_GAP);
    assert_string_equal(next("30 2 * * *", tz, NS_GAP_SHIFT, NS_REPEAT_FIRST, before, &f),
                        "2024-03-10 03:30:00-0400");
    assert_string_equal(next("30 2 * * *", tz, NS_GAP_SKIP, NS_REPEAT_FIRST, before, &f),
                        "2024-03-11 02:30:00-0400");
    /* Every 15 minutes stays every 15 minutes: 01:45 EST, then 03:00 EDT. */
    int64_t t = utc(2024, 3, 10, 6, 30); /* 01:30 EST */
    assert_string_equal(next("*/15 * * * *", tz, NS_GAP_SKIP, NS_REPEAT_FIRST, t, &f),
                        "2024-03-10 01:45:00-0500");
    assert_string_equal(next("*/15 * * * *", tz, NS_GAP_SKIP, NS_REPEAT_FIRST, f.at, &f),
                        "2024-03-10 03:00:00-0400");
    ns_tz_free(tz);
}

static void new_york_repeat(void **state)
{
    (void)state;
    ns_tz *tz = zone("America/New_York");
    ns_fire f;
    int64_t before = utc(2024, 11, 2, 12, 0);
    assert_string_equal(next("30 1 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, before, &f),
                        "2024-11-03 01:30:00-0400");
    assert_true(f.flags & NS_FIRE_REPEAT);
    assert_string_equal(next("30 1 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, f.at, &f),
                        "2024-11-04 01:30:00-0500");
    assert_string_equal(next("30 1 * * *", tz, NS_GAP_NEXT, NS_REPEAT_LAST, before, &f),
                        "2024-11-03 01:30:00-0500");
    assert_string_equal(next("30 1 * * *", tz, NS_GAP_NEXT, NS_REPEAT_BOTH, before, &f),
                        "2024-11-03 01:30:00-0400");
    assert_string_equal(next("30 1 * * *", tz, NS_GAP_NEXT, NS_REPEAT_BOTH, f.at, &f),
                        "2024-11-03 01:30:00-0500");
    /* Hourly through the repeated hour: both 01:00s, an hour apart. */
    int64_t t = utc(2024, 11, 3, 4, 30); /* 00:30 EDT */
    int64_t prev = 0;
    for (int i = 0; i < 4; i++) {
        next("0 * * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f);
        if (prev)
            assert_int_equal(f.at - prev, 3600);
        prev = t = f.at;
    }
    ns_tz_free(tz);
}

static void berlin(void **state)
{
    (void)state;
    ns_tz *tz = zone("Europe/Berlin");
    ns_fire f;
    assert_string_equal(
        next("30 2 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, utc(2024, 3, 30, 12, 0), &f),
        "2024-03-31 03:00:00+0200");
    assert_string_equal(
        next("30 2 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, utc(2024, 10, 26, 12, 0), &f),
        "2024-10-27 02:30:00+0200");
    assert_string_equal(
        next("30 2 * * *", tz, NS_GAP_NEXT, NS_REPEAT_LAST, utc(2024, 10, 26, 12, 0), &f),
        "2024-10-27 02:30:00+0100");
    /* Past 2037, from the footer rule of the TZif file. */
    assert_string_equal(
        next("30 2 * * *", tz, NS_GAP_SHIFT, NS_REPEAT_FIRST, utc(2090, 3, 25, 12, 0), &f),
        "2090-03-26 03:30:00+0200");
    ns_tz_free(tz);
}

static void lord_howe(void **state)
{
    (void)state;
    /* 30-minute DST: 02:00 -> 02:30 on 2024-10-06, 02:00 -> 01:30 on 2024-04-07. */
    ns_tz *tz = zone("Australia/Lord_Howe");
    ns_fire f;
    int64_t spring = utc(2024, 10, 5, 0, 0), autumn = utc(2024, 4, 6, 0, 0);
    assert_string_equal(next("15 2 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, spring, &f),
                        "2024-10-06 02:30:00+1100");
    assert_string_equal(next("15 2 * * *", tz, NS_GAP_SHIFT, NS_REPEAT_FIRST, spring, &f),
                        "2024-10-06 02:45:00+1100");
    assert_string_equal(next("15 2 * * *", tz, NS_GAP_SKIP, NS_REPEAT_FIRST, spring, &f),
                        "2024-10-07 02:15:00+1100");
    assert_string_equal(next("45 1 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, autumn, &f),
                        "2024-04-07 01:45:00+1100");
    assert_string_equal(next("45 1 * * *", tz, NS_GAP_NEXT, NS_REPEAT_LAST, autumn, &f),
                        "2024-04-07 01:45:00+1030");
    /* Every 15 minutes across the half-hour jump: 15 minutes apart. */
    int64_t t = utc(2024, 10, 5, 15, 0), prev = 0; /* 01:30 +1030 */
    for (int i = 0; i < 6; i++) {
        next("*/15 * * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f);
        if (prev)
            assert_int_equal(f.at - prev, 900);
        prev = t = f.at;
    }
    ns_tz_free(tz);
}

static void seoul(void **state)
{
    (void)state;
    ns_tz *tz = zone("Asia/Seoul");
    ns_fire f;
    int64_t t = utc(2024, 1, 1, 0, 0);
    for (int i = 0; i < 400; i++) {
        int64_t prev = t;
        next("0 3 * * *", tz, NS_GAP_SKIP, NS_REPEAT_BOTH, t, &f);
        assert_int_equal(f.flags, 0);
        if (i)
            assert_int_equal(f.at - prev, 86400);
        t = f.at;
    }
    assert_string_equal(
        next("0 3 * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, utc(2026, 12, 2, 17, 0), &f),
        "2026-12-03 03:00:00+0900");
    ns_tz_free(tz);
}

static void fields(void **state)
{
    (void)state;
    ns_tz *tz = zone("UTC");
    ns_fire f;
    int64_t t = utc(2024, 1, 1, 0, 0); /* a Monday */
    assert_string_equal(next("0 0 * * 7", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-01-07 00:00:00+0000");
    assert_string_equal(next("0 0 * * SUN", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-01-07 00:00:00+0000");
    assert_string_equal(next("0 12 L FEB ?", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-02-29 12:00:00+0000");
    assert_string_equal(
        next("0 0 29 2 *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, utc(2097, 1, 1, 0, 0), &f),
        "2104-02-29 00:00:00+0000"); /* 2100 is no leap year */
    /* Both day fields restricted: either one (Vixie); one '*': the other. */
    assert_string_equal(next("0 0 13 * 5", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-01-05 00:00:00+0000");
    assert_string_equal(next("0 0 */13 * 5", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-03-01 00:00:00+0000"); /* Friday the 1st, 14th or 27th */
    assert_string_equal(next("30 0 0 1 1 *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-01-01 00:00:30+0000");
    assert_string_equal(next("@hourly", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-01-01 01:00:00+0000");
    assert_string_equal(next("5/20 * * * *", tz, NS_GAP_NEXT, NS_REPEAT_FIRST, t, &f),
                        "2024-01-01 00:05:00+0000");
    ns_tz_free(tz);
}

static void parse_errors(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"", "0 fields"},
        {"* * * *", "4 fields"},
        {"* * * * * * *", "7 fields"},
        {"60 * * * *", "minute 60 is out of range 0-59"},
        {"0 24 * * *", "hour 24 is out of range 0-23"},
        {"0 0 0 * *", "day of month 0 is out of range 1-31"},
        {"0 0 * 13 *", "month 13 is out of range 1-12"},
        {"0 0 * * 8", "day of week 8 is out of range 0-7"},
        {"5-1 * * * *", "minute: range 5-1 runs backwards"},
        {"*/0 * * * *", "minute: step must be from 1 to 60"},
        {"*/61 * * * *", "minute: step must be from 1 to 60"},
        {"0 0 * FOO *", "month: unknown name \"FOO\" (JAN-DEC)"},
        {"0 0 * * MONDAY", "day of week: unknown name \"MONDAY\" (SUN-SAT)"},
        {"1,,2 * * * *", "minute: unexpected \",\""},
        {"1, * * * *", "minute: a value is missing after ','"},
        {"? * * * *", "minute: '?' is only for the day fields"},
        {"0 0 L * L", "day of week: unknown name \"L\""},
        {"0 0 30 2 *", "never fires"},
        {"0 0 31 4,6,9,11 *", "never fires"},
        {"@reboot", "unknown \"@reboot\""},
        {"@daily 5", "unknown \"@daily\""},
        {"99999999999999999999 * * * *", "out of range"},
        {"0 0 1-99999999999 * *", "out of range"},
        {"0 0 1 1 "
         "1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,"
         "0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,"
         "2,3"
         ",4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,"
         "6"
         ",0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6",
         "too long"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ns_cron c;
        char why[200] = "";
        if (ns_cron_parse(bad[i][0], &c, why, sizeof(why)))
            fail_msg("\"%s\" was accepted", bad[i][0]);
        if (!strstr(why, bad[i][1]))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i][0], why, bad[i][1]);
    }
}

static void zone_names(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"Mars/Olympus", "no such zone"},      {"../../etc/passwd", "not a zone name"},
        {"/etc/localtime", "not a zone name"}, {"Europe/../Europe/Berlin", "not a zone name"},
        {"America", "a folder of zones"},      {"", "not a zone name"},
        {"Europe//Berlin", "not a zone name"}, {"zone.tab", "not a TZif file"},
        {"right/UTC", "leap seconds"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ns_tz *tz = NULL;
        ns_error err = {0};
        if (strcmp(bad[i][0], "right/UTC") == 0 && access("/usr/share/zoneinfo/right/UTC", R_OK))
            continue;
        assert_int_equal(ns_tz_load(bad[i][0], &tz, &err), NS_ECONFIG);
        assert_null(tz);
        if (!strstr(err.message, bad[i][1]))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i][0], err.message, bad[i][1]);
    }
}

/* Every truncation and many single-byte changes of a real file load or
 * fail cleanly (AddressSanitizer watches), and whatever loads answers. */
static void damaged_files(void **state)
{
    (void)state;
    FILE *f = fopen("/usr/share/zoneinfo/America/New_York", "rb");
    assert_non_null(f);
    static unsigned char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(len > 100);
    for (size_t n = 0; n <= len; n++) {
        ns_tz *tz = NULL;
        ns_error err = {0};
        if (ns_tz_parse("x", buf, n, &tz, &err) == NS_OK) {
            ns_tz_info z;
            ns_tz_at(tz, 1700000000, &z);
            ns_tz_free(tz);
        } else
            assert_non_null(strstr(err.message, "time zone \"x\""));
    }
    unsigned seed = 12345;
    for (int i = 0; i < 20000; i++) {
        unsigned char copy[sizeof(buf)];
        memcpy(copy, buf, len);
        for (int k = 0; k < 1 + i % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            copy[(seed >> 8) % len] = (unsigned char)(seed >> 20);
        }
        ns_tz *tz = NULL;
        ns_error err = {0};
        if (ns_tz_parse("x", copy, len, &tz, &err) == NS_OK) {
            ns_tz_info z;
            int64_t at[2], end;
            int32_t off;
            ns_tz_at(tz, (int64_t)seed * 3, &z);
            ns_tz_next_change(tz, (int64_t)seed);
            ns_tz_resolve(tz, (int64_t)seed, at, &end, &off);
            ns_cron c;
            char why[64];
            ns_fire fire;
            assert_true(ns_cron_parse("30 2 * * *", &c, why, sizeof(why)));
            ns_cron_next(&c, tz, NS_GAP_NEXT, NS_REPEAT_BOTH, (int64_t)seed, &fire);
            ns_tz_free(tz);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_york_gap),  cmocka_unit_test(new_york_repeat),
        cmocka_unit_test(berlin),        cmocka_unit_test(lord_howe),
        cmocka_unit_test(seoul),         cmocka_unit_test(fields),
        cmocka_unit_test(parse_errors),  cmocka_unit_test(zone_names),
        cmocka_unit_test(damaged_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
