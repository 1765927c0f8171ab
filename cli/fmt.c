/* fmt.c - formatting of repository JSON for people. */
#include "fmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void fmt_time(json_t *iso, char *buf, size_t n)
{
    const char *s = json_string_value(iso);
    if (!s || strlen(s) < 19) {
        snprintf(buf, n, "-");
        return;
    }
    snprintf(buf, n, "%.10s %.8s", s, s + 11);
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
        char val[256];
        if (json_is_string(v))
            snprintf(val, sizeof(val), "%s", json_string_value(v));
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
