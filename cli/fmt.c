/* fmt.c - formatting of repository JSON for people. */
#include "fmt.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int parse(const char *s, double *out);

void fmt_time(json_t *iso, char *buf, size_t n)
{
    double t;
    struct tm tm;
    if (!parse(json_string_value(iso), &t)) {
        snprintf(buf, n, "-");
        return;
    }
    time_t secs = (time_t)t;
    /* Local time, its zone named (UTC says UTC); JSON stays ISO 8601. */
    if (!localtime_r(&secs, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S %Z", &tm))
        snprintf(buf, n, "-");
}

const char *fmt_count(long long v, char *buf, size_t n)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof(tmp), "%lld", v < 0 ? -v : v);
    size_t o = 0;
    if (v < 0 && o + 1 < n)
        buf[o++] = '-';
    for (int i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

/* A parameter's value as it could be typed back: quoted when it is empty or
 * holds blanks, commas, quotes, '=' or control characters. */
static void quoted(const char *v, char *out, size_t n)
{
    bool need = !*v;
    for (const char *p = v; *p && !need; p++)
        need = *p == ' ' || *p == '\t' || *p == ',' || *p == '"' || *p == '\'' || *p == '=' ||
               *p == '\\' || (unsigned char)*p < 0x20;
    if (!need) {
        snprintf(out, n, "%s", v);
        return;
    }
    size_t o = 0;
    if (o + 1 < n)
        out[o++] = '"';
    for (const char *p = v; *p && o + 5 < n; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        if ((unsigned char)*p < 0x20)
            o += (size_t)snprintf(out + o, n - o, "\\x%02X", (unsigned)(unsigned char)*p);
        else
            out[o++] = *p;
    }
    if (o + 1 < n)
        out[o++] = '"';
    out[o] = '\0';
}

static int parse(const char *s, double *out)
{
    struct tm tm;
    int ms = 0;
    memset(&tm, 0, sizeof(tm));
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (double)timegm(&tm) + ms / 1000.0;
    return 1;
}

double fmt_seconds(json_t *from, json_t *to)
{
    double a, b;
    if (!parse(json_string_value(from), &a) || !parse(json_string_value(to), &b))
        return -1;
    return b - a;
}

void fmt_duration(json_t *from, json_t *to, char *buf, size_t n)
{
    double a, b;
    if (!parse(json_string_value(from), &a) || !parse(json_string_value(to), &b)) {
        snprintf(buf, n, "-");
        return;
    }
    double d = b - a;
    if (d < 60)
        snprintf(buf, n, "%.2fs", d);
    else if (d < 3600)
        snprintf(buf, n, "%dm%02ds", (int)d / 60, (int)d % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)d / 3600, (int)d % 3600 / 60);
}

void fmt_params(json_t *params, char *buf, size_t n)
{
    const char *k;
    json_t *v;
    size_t o = 0;
    buf[0] = '\0';
    json_object_foreach(params, k, v)
    {
        char val[512];
        if (json_is_string(v))
            quoted(json_string_value(v), val, sizeof(val));
        else if (json_is_integer(v))
            snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(val, sizeof(val), "%g", json_real_value(v));
        else
            snprintf(val, sizeof(val), "%s", json_is_true(v) ? "true" : "false");
        int w = snprintf(buf + o, n - o, "%s%s=%s", o ? " " : "", k, val);
        if (w < 0 || (size_t)w >= n - o)
            break;
        o += (size_t)w;
    }
}
