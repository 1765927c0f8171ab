/*
 * cron.c - the cron parser and the next fire time (docs/scheduling.md).
 *
 * Fields: lists of `*`, `N`, `A-B`, each with an optional `/STEP`
 * (`N/STEP` is `N-max/STEP`), month and weekday names (JAN, MON), 7 for
 * Sunday, `?` for `*` in the day fields and `L` (last day) in the
 * day-of-month field.
 *
 * Fire times: an expression with a fixed hour names local times; each is
 * turned into instants in the zone, through the gap and repeat policies.
 * An expression whose hour is `*` or a step names the instants whose wall
 * time matches, span by span of constant offset: every 15 minutes stays
 * every 15 minutes across a change, none dropped and none doubled.
 */
#include "sched/cron.h"

#include <ctype.h>
#include <string.h>

#define YEAR_MAX 9999

typedef struct field {
    const char *name;
    int lo, hi;
    const char *const *names; /* for lo.. */
} field;

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                     "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const wdays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const field fields[] = {
    {"second", 0, 59, NULL},       {"minute", 0, 59, NULL},  {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL}, {"month", 1, 12, months}, {"day of week", 0, 7, wdays},
};

static bool fail(char *why, size_t len, const char *fmt, ...) NS_PRINTF(3, 4);
static bool fail(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return false;
}

/* A number or a name at *p; advances p. */
static bool value(const field *f, const char **p, int *out, char *why, size_t len)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s)) {
            v = v * 10 + (*s++ - '0');
            if (v > 1000)
                break;
        }
        if (v < f->lo || v > f->hi)
            return fail(why, len, "%s %ld is out of range %d-%d", f->name, v, f->lo, f->hi);
        *out = (int)v;
        *p = s;
        return true;
    }
    if (isalpha((unsigned char)*s)) {
        size_t n = 0;
        while (isalpha((unsigned char)s[n]))
            n++;
        for (int i = 0; n == 3 && f->names && f->names[i]; i++)
            if (tolower((unsigned char)s[0]) == f->names[i][0] &&
                tolower((unsigned char)s[1]) == f->names[i][1] &&
                tolower((unsigned char)s[2]) == f->names[i][2]) {
                *out = f->lo + i;
                *p = s + 3;
                return true;
            }
        if (!f->names)
            return fail(why, len, "%s: unexpected \"%c\"", f->name, *s);
        return fail(why, len, "%s: unknown name \"%.*s\" (%s)", f->name, n > 16 ? 16 : (int)n, s,
                    f->names == months ? "JAN-DEC" : "SUN-SAT");
    }
    if (!*s)
        return fail(why, len, "%s: a value is missing", f->name);
    return fail(why, len, "%s: unexpected \"%c\"", f->name, *s);
}

/* One field into bits; sets *star when it starts with '*' or '?'. */
static bool parse_field(const field *f, const char *s, uint64_t *bits, bool *star, bool *last,
                        bool *stepped, char *why, size_t len)
{
    *bits = 0;
    *star = s[0] == '*' || s[0] == '?';
    for (const char *p = s;;) {
        int a, b, step = 1;
        if (*p == '*' || *p == '?') {
            if (*p == '?' && strcmp(f->name, "day of month") && strcmp(f->name, "day of week"))
                return fail(why, len, "%s: '?' is only for the day fields", f->name);
            a = f->lo;
            b = f->hi;
            p++;
        } else if (*p == 'L' && f->name == fields[3].name && (p[1] == ',' || !p[1])) {
            *last = true;
            p++;
            goto next;
        } else {
            if (!value(f, &p, &a, why, len))
                return false;
            b = a;
            if (*p == '-') {
                p++;
                if (!value(f, &p, &b, why, len))
                    return false;
                if (b < a)
                    return fail(why, len, "%s: range %d-%d runs backwards", f->name, a, b);
            } else if (*p == '/')
                b = f->hi; /* N/STEP: from N to the end (for weekdays 7, Sunday again) */
        }
        if (*p == '/') {
            const char *q = ++p;
            long v = 0;
            while (isdigit((unsigned char)*p) && v <= 1000)
                v = v * 10 + (*p++ - '0');
            if (p == q || v < 1 || v > f->hi - f->lo + 1)
                return fail(why, len, "%s: step must be from 1 to %d", f->name, f->hi - f->lo + 1);
            step = (int)v;
            *stepped = true;
        }
        for (int v = a; v <= b; v += step)
            *bits |= 1ull << (f->name == fields[5].name && v == 7 ? 0 : v);
    next:
        if (*p == '\0')
            return true;
        if (*p != ',')
            return fail(why, len, "%s: unexpected \"%c\"", f->name, *p);
        if (!*++p)
            return fail(why, len, "%s: a value is missing after ','", f->name);
    }
}

static const struct {
    const char *name, *expr;
} macros[] = {{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
              {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
              {"@hourly", "0 * * * *"}};

bool ns_cron_parse(const char *expr, ns_cron *c, char *why, size_t len)
{
    char buf[256], *f[7];
    int n = 0;
    memset(c, 0, sizeof(*c));
    while (isspace((unsigned char)*expr))
        expr++;
    if (expr[0] == '@') {
        size_t k = strcspn(expr, " \t");
        const char *e = NULL;
        for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
            if (strlen(macros[i].name) == k && strncmp(expr, macros[i].name, k) == 0)
                e = macros[i].expr;
        if (!e || expr[k + strspn(expr + k, " \t")])
            return fail(why, len,
                        "unknown \"%.*s\" (@yearly, @annually, @monthly, @weekly, @daily, "
                        "@midnight, @hourly)",
                        (int)(k > 32 ? 32 : k), expr);
        expr = e;
    }
    if (strlen(expr) >= sizeof(buf))
        return fail(why, len, "too long");
    strcpy(buf, expr);
    for (char *p = strtok(buf, " \t"); p; p = strtok(NULL, " \t")) {
        if (n == 7)
            break;
        f[n++] = p;
    }
    if (n != 5 && n != 6)
        return fail(why, len,
                    "%d field%s: give 5 (minute hour day-of-month month day-of-week) or 6 "
                    "(with seconds first)",
                    n, n == 1 ? "" : "s");
    uint64_t bits[6];
    bool star[6] = {0}, stepped[6] = {0};
    if (n == 5)
        bits[0] = 1; /* second 0 */
    for (int i = 6 - n; i < 6; i++) {
        char sub[200];
        if (!parse_field(&fields[i], f[i - (6 - n)], &bits[i], &star[i], &c->dom_last, &stepped[i],
                         sub, sizeof(sub)))
            return fail(why, len, "%s", sub);
    }
    c->sec = bits[0];
    c->min = bits[1];
    c->hour = (uint32_t)bits[2];
    c->dom = (uint32_t)bits[3];
    c->mon = (uint16_t)bits[4];
    c->dow = (uint8_t)bits[5];
    c->dom_star = star[3];
    c->dow_star = star[5];
    c->elapsed = star[2] || stepped[2];
    int64_t at;
    if (!ns__cron_match_from(c, 0, &at))
        return fail(why, len, "never fires (no such day)");
    return true;
}

/* ---------------------------------------------------------- matching */

static bool day_ok(const ns_cron *c, int64_t y, int m, int d, int64_t days)
{
    bool dom = (c->dom >> d & 1) || (c->dom_last && d == ns__month_days(y, m));
    bool dow = c->dow >> ns__weekday(days) & 1;
    if (c->dom_star || c->dow_star)
        return dom && dow;
    return dom || dow;
}

/* The lowest set bit at or above `from`, -1 when none. */
static int next_bit(uint64_t bits, int from)
{
    if (from > 63)
        return -1;
    bits &= ~0ull << from;
    return bits ? __builtin_ctzll(bits) : -1;
}

bool ns__cron_match_from(const ns_cron *c, int64_t wall, int64_t *out)
{
    int64_t days = wall >= 0 ? wall / 86400 : -((-wall + 86399) / 86400);
    int64_t s = wall - days * 86400, y, y0;
    int m, d;
    ns__civil_from_days(days, &y0, &m, &d);
    /* 400 years are a whole Gregorian cycle: none there, none ever. */
    for (int guard = 0; guard < 400 * 366 + 12 * 400; guard++) {
        ns__civil_from_days(days, &y, &m, &d);
        if (y > YEAR_MAX || y > y0 + 400)
            return false;
        if (!(c->mon >> m & 1)) { /* to the first of the next month */
            days += ns__month_days(y, m) - d + 1;
            s = 0;
            continue;
        }
        if (!day_ok(c, y, m, d, days)) {
            days++;
            s = 0;
            continue;
        }
        int h = (int)(s / 3600), mi = (int)(s / 60 % 60), se = (int)(s % 60);
        int nh = next_bit(c->hour, h);
        if (nh < 0) {
            days++;
            s = 0;
            continue;
        }
        if (nh > h) {
            h = nh;
            mi = se = 0;
        }
        for (;;) {
            int nm = next_bit(c->min, mi);
            if (nm >= 0 && nm > mi)
                se = 0;
            if (nm >= 0) {
                int ns = next_bit(c->sec, se);
                if (ns >= 0) {
                    *out = days * 86400 + h * 3600 + nm * 60 + ns;
                    return true;
                }
                mi = nm + 1;
                se = 0;
                if (mi < 60)
                    continue;
            }
            /* no minute left in this hour: the next hour of the day */
            h = next_bit(c->hour, h + 1);
            if (h < 0)
                break;
            mi = se = 0;
        }
        days++;
        s = 0;
    }
    return false;
}

/* ------------------------------------------------------------ zones */

static bool next_elapsed(const ns_cron *c, const ns_tz *tz, int64_t after, ns_fire *out)
{
    int64_t t = after + 1;
    for (int guard = 0; guard < 100000; guard++) {
        ns_tz_info z;
        ns_tz_at(tz, t, &z);
        int64_t end = ns_tz_next_change(tz, t), wall;
        if (!ns__cron_match_from(c, t + z.off, &wall))
            return false;
        if (wall - z.off < end) {
            out->at = wall - z.off;
            out->wall = wall;
            out->flags = 0;
            return true;
        }
        t = end;
    }
    return false;
}

/* The instants of one local time under the policies; returns how many. */
static int instants(const ns_tz *tz, int64_t wall, ns_dst_gap gap, ns_dst_repeat repeat,
                    int64_t at[2], unsigned *flags)
{
    int64_t end;
    int32_t off;
    int n = ns_tz_resolve(tz, wall, at, &end, &off);
    *flags = 0;
    if (n == 2) {
        *flags = NS_FIRE_REPEAT;
        if (repeat == NS_REPEAT_FIRST)
            return 1;
        if (repeat == NS_REPEAT_LAST) {
            at[0] = at[1];
            return 1;
        }
        return 2;
    }
    if (n == 1)
        return 1;
    *flags = NS_FIRE_GAP;
    if (gap == NS_GAP_SKIP || !end)
        return 0;
    at[0] = gap == NS_GAP_NEXT ? end : wall - off;
    return 1;
}

bool ns_cron_next(const ns_cron *c, const ns_tz *tz, ns_dst_gap gap, ns_dst_repeat repeat,
                  int64_t after, ns_fire *out)
{
    if (c->elapsed)
        return next_elapsed(c, tz, after, out);
    /* A local time fires at itself minus one of the zone's offsets, and
     * moved local times (gap: shift) are not in order: look from the
     * earliest local time that can fire after `after`, keep the earliest
     * instant, and stop once no later local time can come earlier. */
    int32_t lo, hi;
    ns_tz_range(tz, &lo, &hi);
    int64_t wall = after + lo;
    bool found = false;
    for (int guard = 0; guard < 1000000; guard++) {
        int64_t at[2];
        unsigned flags;
        if (!ns__cron_match_from(c, wall, &wall))
            break;
        if (found && wall - hi > out->at)
            break;
        int n = instants(tz, wall, gap, repeat, at, &flags);
        for (int i = 0; i < n; i++)
            if (at[i] > after && (!found || at[i] < out->at)) {
                *out = (ns_fire){.at = at[i], .wall = wall, .flags = flags};
                found = true;
            }
        wall++;
    }
    return found;
}
