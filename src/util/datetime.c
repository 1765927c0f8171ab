/* datetime.c - strict date and timestamp syntax checks shared by parameter
 * parsing and the column type checks of the table writers. */
#include "util.h"

#include <stdlib.h>
#include <string.h>

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool ns__valid_date(const char *s, size_t n)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;

    if (n != 10 || s[4] != '-' || s[7] != '-')
        return false;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &m) || !digits(s + 8, 2, &d))
        return false;
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return false;
    int max = mdays[m - 1];
    if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        max = 29;
    return d <= max;
}

static bool valid_zone(const char *s, size_t n)
{
    int h, m;
    if (n == 1 && s[0] == 'Z')
        return true;
    if (n < 3 || (s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &h) || h > 15)
        return false;
    if (n == 3)
        return true;
    if (n == 5)
        return digits(s + 3, 2, &m) && m < 60;
    if (n == 6)
        return s[3] == ':' && digits(s + 4, 2, &m) && m < 60;
    return false;
}

bool ns__valid_timestamp(const char *s, size_t n)
{
    int h, mi, sec = 0;
    size_t i;

    if (n < 16 || !ns__valid_date(s, 10) || (s[10] != 'T' && s[10] != ' '))
        return false;
    if (!digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || h > 23 || mi > 59)
        return false;
    i = 16;
    if (i < n && s[i] == ':') {
        if (i + 3 > n || !digits(s + i + 1, 2, &sec) || sec > 60)
            return false;
        i += 3;
        if (i < n && s[i] == '.') {
            size_t k = i + 1;
            while (k < n && s[k] >= '0' && s[k] <= '9')
                k++;
            if (k == i + 1 || k - i - 1 > 9)
                return false;
            i = k;
        }
    }
    return i == n || valid_zone(s + i, n - i);
}

bool ns__parse_duration(const char *s, double *out)
{
    /* A number of seconds ("1.5"), or numbers each with a unit: "500ms",
     * "10s", "2m", "1h", "1m30s". No sign, no spaces. */
    static const struct {
        const char *unit;
        double secs;
    } units[] = {{"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};
    double total = 0;
    bool any = false, bare = false;
    const char *p = s;
    if (!s || !*s)
        return false;
    while (*p) {
        /* digits, optionally a point and digits (no exponent, no hex) */
        const char *q = p;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q == p || bare)
            return false;
        if (*q == '.') {
            const char *f = ++q;
            while (*q >= '0' && *q <= '9')
                q++;
            if (q == f)
                return false;
        }
        if (q - p > 15)
            return false;
        double v = strtod(p, NULL);
        p = q;
        if (!*p) {
            bare = true; /* a plain number is seconds, and only alone */
            if (any)
                return false;
            total = v;
            break;
        }
        size_t k = 0, nunits = sizeof(units) / sizeof(units[0]);
        while (k < nunits && strncmp(p, units[k].unit, strlen(units[k].unit)) != 0)
            k++;
        if (k == nunits)
            return false;
        p += strlen(units[k].unit);
        total += v * units[k].secs;
        any = true;
    }
    *out = total;
    return true;
}

const char *ns__duration_str(int64_t ms, char *buf)
{
    /* the largest unit that divides it: 90000 -> "90s", 120000 -> "2m" */
    if (ms % 3600000 == 0 && ms > 0)
        snprintf(buf, 32, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0 && ms > 0)
        snprintf(buf, 32, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, 32, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, 32, "%lldms", (long long)ms);
    return buf;
}
