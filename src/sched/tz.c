/*
 * tz.c - TZif files (RFC 8536, versions 1 to 4) and the POSIX TZ rule of
 * their footer, which carries a zone past its last listed transition (all
 * of the future in a "slim" file, past 2037 in a "fat" one).
 *
 * Why not localtime_r(): it works through the process-global TZ, one zone
 * at a time, and cannot answer "which instants have this wall time" without
 * mktime()'s guessing in gaps and repeats. Why not ICU: Debian 12's ICU 72
 * carries its own zone data (2022e), older than the system's tzdata.
 */
#include "sched/tz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

/* ----------------------------------------------------------- calendar */

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's method:
 * years start in March, so the leap day is the last of its year). */
int64_t ns__days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void ns__civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int ns__weekday(int64_t days)
{
    int64_t w = (days + 4) % 7; /* 1970-01-01 was a Thursday */
    return (int)(w < 0 ? w + 7 : w);
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int ns__month_days(int64_t y, int m)
{
    static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : n[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

const char *ns__wall_str(int64_t wall, char *buf, size_t len)
{
    int64_t days = floor_div(wall, 86400), y;
    int64_t s = wall - days * 86400;
    int m, d;
    ns__civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04lld-%02d-%02d %02d:%02d:%02d", (long long)y, m, d, (int)(s / 3600),
             (int)(s / 60 % 60), (int)(s % 60));
    return buf;
}

/* --------------------------------------------------------- POSIX rule */

typedef struct rule_date {
    char kind; /* 'J': Jn (1-365, no Feb 29), 'D': n (0-365), 'M': Mm.w.d */
    int n, m, w, d;
    int32_t secs; /* local time of day of the change; may be negative or past 24h */
} rule_date;

typedef struct posix_rule {
    ns_tz_info std, dst;
    bool has_dst;
    rule_date start, end; /* start: in standard time; end: in daylight time */
} posix_rule;

struct ns_tz {
    char *name;
    size_t n; /* transitions */
    int64_t *at;
    uint8_t *idx;
    size_t ntypes;
    ns_tz_info *types;
    bool has_rule;
    posix_rule rule;
};

static const char *p_num(const char *p, int lo, int hi, int *out)
{
    if (*p < '0' || *p > '9')
        return NULL;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > hi)
            return NULL;
    }
    if (v < lo)
        return NULL;
    *out = (int)v;
    return p;
}

/* [+-]hh[:mm[:ss]] with hh up to max_h. */
static const char *p_hms(const char *p, int max_h, int32_t *out)
{
    int sign = 1, h, m = 0, s = 0;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!(p = p_num(p, 0, max_h, &h)))
        return NULL;
    if (*p == ':') {
        if (!(p = p_num(p + 1, 0, 59, &m)))
            return NULL;
        if (*p == ':' && !(p = p_num(p + 1, 0, 59, &s)))
            return NULL;
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return p;
}

static const char *p_abbr(const char *p, char *out)
{
    size_t n = 0;
    if (*p == '<') {
        for (p++; *p && *p != '>'; p++) {
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= '0' && *p <= '9') || *p == '+' || *p == '-') ||
                n >= 15)
                return NULL;
            out[n++] = *p;
        }
        if (*p++ != '>')
            return NULL;
    } else {
        while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) {
            if (n >= 15)
                return NULL;
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return n >= 3 ? p : NULL;
}

static const char *p_date(const char *p, rule_date *r)
{
    if (*p == 'J') {
        r->kind = 'J';
        p = p_num(p + 1, 1, 365, &r->n);
    } else if (*p == 'M') {
        r->kind = 'M';
        if (!(p = p_num(p + 1, 1, 12, &r->m)) || *p != '.' || !(p = p_num(p + 1, 1, 5, &r->w)) ||
            *p != '.')
            return NULL;
        p = p_num(p + 1, 0, 6, &r->d);
    } else {
        r->kind = 'D';
        p = p_num(p, 0, 365, &r->n);
    }
    if (!p)
        return NULL;
    r->secs = 7200;
    if (*p == '/')
        p = p_hms(p + 1, 167, &r->secs);
    return p;
}

/* std offset [dst [offset] [,start[/time],end[/time]]] (POSIX, with the
 * RFC 8536 extensions: <+0330> names, hours up to 167 in rule times). */
static bool parse_rule(const char *s, posix_rule *r)
{
    int32_t v;
    memset(r, 0, sizeof(*r));
    if (!(s = p_abbr(s, r->std.abbr)) || !(s = p_hms(s, 24, &v)))
        return false;
    r->std.off = -v;
    if (!*s)
        return true;
    if (!(s = p_abbr(s, r->dst.abbr)))
        return false;
    r->has_dst = true;
    r->dst.dst = true;
    r->dst.off = r->std.off + 3600;
    if (*s && *s != ',') {
        if (!(s = p_hms(s, 24, &v)))
            return false;
        r->dst.off = -v;
    }
    if (!*s) { /* no rule: the US rule, as glibc assumes */
        r->start = (rule_date){.kind = 'M', .m = 3, .w = 2, .d = 0, .secs = 7200};
        r->end = (rule_date){.kind = 'M', .m = 11, .w = 1, .d = 0, .secs = 7200};
        return true;
    }
    if (*s != ',' || !(s = p_date(s + 1, &r->start)) || *s != ',' || !(s = p_date(s + 1, &r->end)))
        return false;
    return *s == '\0';
}

/* The wall time (in the offset the date is given in) of a rule date. */
static int64_t rule_wall(int64_t y, const rule_date *r)
{
    int64_t days;
    if (r->kind == 'J')
        days = ns__days_from_civil(y, 1, 1) + r->n - 1 + (leap(y) && r->n >= 60);
    else if (r->kind == 'D')
        days = ns__days_from_civil(y, 1, 1) + r->n;
    else {
        int64_t first = ns__days_from_civil(y, r->m, 1);
        int day = 1 + (r->d - ns__weekday(first) + 7) % 7 + 7 * (r->w - 1);
        while (day > ns__month_days(y, r->m))
            day -= 7;
        days = first + day - 1;
    }
    return days * 86400 + r->secs;
}

/* The rule's changes in years y0..y0+3, in order; a change to standard
 * time sorts before a change to daylight time at the same instant, so
 * "0/0,J365/25" (daylight time all year) stays daylight time. */
typedef struct change {
    int64_t at;
    bool to_dst;
} change;

static void rule_changes(const posix_rule *r, int64_t y0, change out[8])
{
    for (int i = 0; i < 4; i++) {
        out[2 * i] = (change){rule_wall(y0 + i, &r->start) - r->std.off, true};
        out[2 * i + 1] = (change){rule_wall(y0 + i, &r->end) - r->dst.off, false};
    }
    for (int i = 1; i < 8; i++) /* insertion sort of 8 */
        for (int j = i; j > 0; j--) {
            change a = out[j - 1], b = out[j];
            if (a.at < b.at || (a.at == b.at && !a.to_dst))
                break;
            out[j - 1] = b;
            out[j] = a;
        }
}

static int64_t year_of(int64_t t)
{
    int64_t y;
    int m, d;
    ns__civil_from_days(floor_div(t, 86400), &y, &m, &d);
    return y;
}

static const ns_tz_info *rule_at(const posix_rule *r, int64_t t)
{
    if (!r->has_dst)
        return &r->std;
    change c[8];
    rule_changes(r, year_of(t) - 2, c);
    bool dst = !c[0].to_dst; /* before the first change: the state it leaves */
    for (int i = 0; i < 8 && c[i].at <= t; i++)
        dst = c[i].to_dst;
    return dst ? &r->dst : &r->std;
}

static int64_t rule_next(const posix_rule *r, int64_t t)
{
    if (!r->has_dst)
        return INT64_MAX;
    change c[8];
    rule_changes(r, year_of(t) - 1, c);
    for (int i = 0; i < 8; i++)
        if (c[i].at > t)
            return c[i].at;
    return INT64_MAX;
}

/* ------------------------------------------------------------ lookups */

/* The last listed transition at or before t, for at[0] <= t < at[n - 1]. */
static size_t last_at(const ns_tz *tz, int64_t t)
{
    size_t lo = 0, hi = tz->n - 1; /* at[lo] <= t < at[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static const ns_tz_info *info_at(const ns_tz *tz, int64_t t)
{
    if (tz->n == 0 || t >= tz->at[tz->n - 1]) {
        if (tz->has_rule)
            return rule_at(&tz->rule, t);
        return tz->n ? &tz->types[tz->idx[tz->n - 1]] : &tz->types[0];
    }
    if (t < tz->at[0])
        return &tz->types[0];
    return &tz->types[tz->idx[last_at(tz, t)]];
}

void ns_tz_at(const ns_tz *tz, int64_t t, ns_tz_info *out)
{
    *out = *info_at(tz, t);
}

/* The next listed or ruled transition after t, whatever it changes. */
static int64_t next_raw(const ns_tz *tz, int64_t t)
{
    if (tz->n && t < tz->at[tz->n - 1])
        return tz->at[0] > t ? tz->at[0] : tz->at[last_at(tz, t) + 1];
    return tz->has_rule ? rule_next(&tz->rule, t) : INT64_MAX;
}

int64_t ns_tz_next_change(const ns_tz *tz, int64_t t)
{
    int32_t off = info_at(tz, t)->off;
    /* Changes of name or of the dst flag alone are passed over; a rule whose
     * changes never move the offset gives up after a few years of them. */
    for (int ruled = 0; ruled < 8;) {
        int64_t x = next_raw(tz, t);
        if (x == INT64_MAX || x > INT64_MAX / 2)
            return INT64_MAX;
        if (info_at(tz, x)->off != off)
            return x;
        ruled += tz->n == 0 || x >= tz->at[tz->n - 1];
        t = x;
    }
    return INT64_MAX;
}

int ns_tz_resolve(const ns_tz *tz, int64_t wall, int64_t out[2], int64_t *gap_end, int32_t *gap_off)
{
    /* Every instant with this wall time lies within a day of it (offsets
     * are under 26 hours); walk the spans of constant offset there. */
    int64_t t = wall - 26 * 3600, stop = wall + 26 * 3600;
    int n = 0;
    bool past = false; /* the previous span ended before wall was reached */
    int32_t prev_off = 0;
    int64_t prev_end = 0;
    *gap_end = 0;
    *gap_off = 0;
    while (t <= stop) {
        int32_t off = info_at(tz, t)->off;
        int64_t end = ns_tz_next_change(tz, t);
        int64_t c = wall - off;
        if (c >= t && c < end) {
            if (n < 2)
                out[n] = c;
            n++;
        } else if (c < t && past && n == 0 && !*gap_end) {
            *gap_end = prev_end;
            *gap_off = prev_off;
        }
        past = c >= end;
        prev_off = off;
        prev_end = end;
        if (end == INT64_MAX)
            break;
        t = end;
    }
    return n > 2 ? 2 : n;
}

void ns_tz_range(const ns_tz *tz, int32_t *lo, int32_t *hi)
{
    *lo = *hi = tz->types[0].off;
    for (size_t i = 1; i <= tz->ntypes + 1; i++) {
        int32_t o = i < tz->ntypes    ? tz->types[i].off
                    : i == tz->ntypes ? (tz->has_rule ? tz->rule.std.off : *lo)
                                      : (tz->has_rule && tz->rule.has_dst ? tz->rule.dst.off : *lo);
        *lo = o < *lo ? o : *lo;
        *hi = o > *hi ? o : *hi;
    }
}

const char *ns_tz_name(const ns_tz *tz)
{
    return tz->name;
}

void ns_tz_free(ns_tz *tz)
{
    if (!tz)
        return;
    free(tz->name);
    free(tz->at);
    free(tz->idx);
    free(tz->types);
    free(tz);
}

/* -------------------------------------------------------------- TZif */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzhead {
    uint32_t isut, isstd, leap, time, type, chars;
} tzhead;

static bool head(const unsigned char *p, size_t len, tzhead *h)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    h->isut = be32(p + 20);
    h->isstd = be32(p + 24);
    h->leap = be32(p + 28);
    h->time = be32(p + 32);
    h->type = be32(p + 36);
    h->chars = be32(p + 40);
    return h->time <= 1000000 && h->type >= 1 && h->type <= 256 && h->chars >= 1 &&
           h->chars <= 65536 && h->leap <= 10000 && (h->isstd == 0 || h->isstd == h->type) &&
           (h->isut == 0 || h->isut == h->type);
}

static size_t block_len(const tzhead *h, size_t tsize)
{
    return h->time * tsize + h->time + h->type * 6 + h->chars + h->leap * (tsize + 4) + h->isstd +
           h->isut;
}

static ns_status bad(ns_error *err, const char *name, const char *why)
{
    return ns__err(err, NS_ECONFIG, NULL, "time zone \"%s\": %s", name, why);
}

ns_status ns_tz_parse(const char *name, const unsigned char *data, size_t len, ns_tz **out,
                      ns_error *err)
{
    tzhead h;
    *out = NULL;
    if (!head(data, len, &h))
        return bad(err, name, "not a TZif file, or a damaged one");
    size_t tsize = 4, off = 44;
    if (data[4] >= '2') { /* skip the 32-bit block for the 64-bit one */
        off += block_len(&h, 4);
        if (off > len || !head(data + off, len - off, &h))
            return bad(err, name, "damaged TZif file (second header)");
        off += 44;
        tsize = 8;
    }
    if (block_len(&h, tsize) > len - off)
        return bad(err, name, "damaged TZif file (truncated)");
    if (h.leap)
        return bad(err, name, "counts leap seconds (a right/ zone): use the zone without them");
    ns_tz *tz = calloc(1, sizeof(*tz));
    if (!tz || !(tz->name = strdup(name)) ||
        (h.time && (!(tz->at = malloc(h.time * sizeof(int64_t))) || !(tz->idx = malloc(h.time)))) ||
        !(tz->types = calloc(h.type, sizeof(ns_tz_info)))) {
        ns_tz_free(tz);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    const unsigned char *p = data + off;
    tz->n = h.time;
    tz->ntypes = h.type;
    for (size_t i = 0; i < h.time; i++, p += tsize) {
        tz->at[i] = tsize == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
        if (i && tz->at[i] <= tz->at[i - 1]) {
            ns_tz_free(tz);
            return bad(err, name, "damaged TZif file (transitions out of order)");
        }
    }
    for (size_t i = 0; i < h.time; i++)
        if ((tz->idx[i] = *p++) >= h.type) {
            ns_tz_free(tz);
            return bad(err, name, "damaged TZif file (type index)");
        }
    const unsigned char *chars = p + h.type * 6;
    for (size_t i = 0; i < h.type; i++, p += 6) {
        int32_t utoff = (int32_t)be32(p);
        size_t ai = p[5];
        if (utoff <= -25 * 3600 || utoff >= 26 * 3600 || p[4] > 1 || ai >= h.chars) {
            ns_tz_free(tz);
            return bad(err, name, "damaged TZif file (local time type)");
        }
        tz->types[i].off = utoff;
        tz->types[i].dst = p[4];
        size_t k = 0;
        while (ai + k < h.chars && chars[ai + k] && k < sizeof(tz->types[i].abbr) - 1) {
            tz->types[i].abbr[k] = (char)chars[ai + k];
            k++;
        }
    }
    off += block_len(&h, tsize);
    if (tsize == 8 && off < len) { /* footer: "\n" POSIX-TZ "\n" */
        const unsigned char *nl =
            off + 1 < len ? memchr(data + off + 1, '\n', len - off - 1) : NULL;
        char tzs[128];
        size_t n = nl ? (size_t)(nl - data) - off - 1 : 0;
        if (data[off] != '\n' || !nl || n >= sizeof(tzs)) {
            ns_tz_free(tz);
            return bad(err, name, "damaged TZif file (footer)");
        }
        memcpy(tzs, data + off + 1, n);
        tzs[n] = '\0';
        if (n) {
            if (!parse_rule(tzs, &tz->rule)) {
                ns_tz_free(tz);
                return bad(err, name, "damaged TZif file (footer rule)");
            }
            tz->has_rule = true;
        }
    }
    *out = tz;
    return NS_OK;
}

/* A zone's name: "Area/Location" of letters, digits, '_', '-', '+', with no
 * empty, "." or ".." part: it names a file under the zone directory only. */
static bool zone_name_ok(const char *s)
{
    size_t n = strlen(s), part = 0;
    if (n == 0 || n > 200 || s[0] == '/')
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '/' || c == '\0') {
            if (part == 0 || (part == 1 && s[i - 1] == '.') ||
                (part == 2 && s[i - 1] == '.' && s[i - 2] == '.'))
                return false;
            part = 0;
            continue;
        }
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '+' || c == '.'))
            return false;
        part++;
    }
    return true;
}

/* The zone name that differs from `name` in case only ("asia/seoul"), in
 * out; false when none. */
static bool other_case(const char *dir, const char *name, char *out, size_t len)
{
    char path[4096];
    size_t used = 0;
    snprintf(path, sizeof(path), "%s", dir);
    out[0] = '\0';
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        DIR *d = opendir(path);
        struct dirent *e = NULL;
        while (d && (e = readdir(d)))
            if (strlen(e->d_name) == n && strncasecmp(e->d_name, p, n) == 0)
                break;
        if (!e || used + n + 2 > len) {
            if (d)
                closedir(d);
            return false;
        }
        int w = snprintf(out + used, len - used, "%s%s", used ? "/" : "", e->d_name);
        if (w < 0 || (size_t)w >= len - used) {
            closedir(d);
            return false;
        }
        used += (size_t)w;
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", e->d_name);
        closedir(d);
        p += n + (p[n] == '/');
    }
    return strcmp(out, name) != 0;
}

ns_status ns_tz_load(const char *name, ns_tz **out, ns_error *err)
{
    const char *dir = getenv("TZDIR");
    char path[4096];
    *out = NULL;
    if (!zone_name_ok(name))
        return ns__err(err, NS_ECONFIG, NULL,
                       "time zone \"%s\": not a zone name (an IANA name such as Europe/Berlin)",
                       name);
    if (!dir || !*dir)
        dir = "/usr/share/zoneinfo";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && strcmp(name, "UTC") == 0) {
            ns_tz *tz = calloc(1, sizeof(*tz));
            if (!tz || !(tz->name = strdup(name)) || !(tz->types = calloc(1, sizeof(ns_tz_info)))) {
                ns_tz_free(tz);
                return ns__err(err, NS_ENOMEM, NULL, "out of memory");
            }
            tz->ntypes = 1;
            strcpy(tz->types[0].abbr, "UTC");
            *out = tz;
            return NS_OK;
        }
        int eno = errno;
        char alt[256];
        if (eno == ENOENT && other_case(dir, name, alt, sizeof(alt)))
            return ns__err(err, NS_ECONFIG, NULL,
                           "time zone \"%s\": no such zone (%s); did you mean %s?", name, path,
                           alt);
        return ns__err(err, NS_ECONFIG, NULL, "time zone \"%s\": %s (%s)", name,
                       eno == ENOENT ? "no such zone" : strerror(eno), path);
    }
    unsigned char *buf = malloc(1u << 20);
    size_t len = buf ? fread(buf, 1, 1u << 20, f) : 0;
    bool io = buf && ferror(f);
    int eno = errno;
    fclose(f);
    if (!buf)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    ns_status st =
        io ? ns__err(err, NS_ECONFIG, NULL, "time zone \"%s\": %s (%s)", name,
                     eno == EISDIR ? "a folder of zones, not a zone" : strerror(eno), path)
           : ns_tz_parse(name, buf, len, out, err);
    free(buf);
    return st;
}
