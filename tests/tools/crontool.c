/*
 * crontool.c - the cron and zone functions on the command line, for the
 * oracle tests (tests/integration/test_cron_oracle.sh): one question per
 * line on stdin, fields separated by tabs, one answer per line on stdout.
 *
 *   at      ZONE T                         -> OFFSET DST ABBR
 *   changes ZONE FROM TO                   -> T:OFFSET ... (each change in (FROM, TO])
 *   resolve ZONE WALL                      -> N T... [gap END OFF]
 *   parse   EXPR                           -> ok | error: WHY
 *   next    EXPR ZONE GAP REPEAT AFTER N   -> T:WALL:FLAGS ...
 */
#include "sched/cron.h"

#include <string.h>

static ns_tz *zone(const char *name)
{
    static ns_tz *cache[64];
    static size_t n;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ns_tz_name(cache[i]), name) == 0)
            return cache[i];
    ns_tz *tz;
    ns_error err = {0};
    if (ns_tz_load(name, &tz, &err) != NS_OK) {
        printf("error: %s\n", err.message);
        return NULL;
    }
    if (n == 64)
        ns_tz_free(cache[--n]);
    return cache[n++] = tz;
}

static int policy(const char *s, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return 0;
}

int main(void)
{
    static const char *const gaps[] = {"next", "shift", "skip", NULL};
    static const char *const reps[] = {"first", "last", "both", NULL};
    char line[4096];
    while (fgets(line, sizeof(line), stdin)) {
        char *f[8] = {0}; /* the fields a line has; the others NULL */
        int n = 0;
        line[strcspn(line, "\n")] = '\0';
        for (char *p = line, *q; n < 8; p = q + 1) {
            f[n++] = p;
            if (!(q = strchr(p, '\t')))
                break;
            *q = '\0';
        }
        ns_tz *tz;
        if (strcmp(f[0], "at") == 0 && n == 3) {
            if (!(tz = zone(f[1])))
                continue;
            ns_tz_info z;
            ns_tz_at(tz, strtoll(f[2], NULL, 10), &z);
            printf("%d %d %s\n", z.off, z.dst, z.abbr);
        } else if (strcmp(f[0], "changes") == 0 && n == 4) {
            if (!(tz = zone(f[1])))
                continue;
            long long t = strtoll(f[2], NULL, 10), to = strtoll(f[3], NULL, 10);
            const char *sep = "";
            while ((t = ns_tz_next_change(tz, t)) <= to) {
                ns_tz_info z;
                ns_tz_at(tz, t, &z);
                printf("%s%lld:%d", sep, t, z.off);
                sep = " ";
            }
            printf("\n");
        } else if (strcmp(f[0], "resolve") == 0 && n == 3) {
            if (!(tz = zone(f[1])))
                continue;
            int64_t at[2], end;
            int32_t off;
            int k = ns_tz_resolve(tz, strtoll(f[2], NULL, 10), at, &end, &off);
            printf("%d", k);
            for (int i = 0; i < k; i++)
                printf(" %lld", (long long)at[i]);
            if (k == 0)
                printf(" gap %lld %d", (long long)end, off);
            printf("\n");
        } else if (strcmp(f[0], "parse") == 0 && n == 2) {
            ns_cron c;
            char why[256];
            if (ns_cron_parse(f[1], &c, why, sizeof(why)))
                printf("ok%s\n", c.elapsed ? " elapsed" : "");
            else
                printf("error: %s\n", why);
        } else if (strcmp(f[0], "next") == 0 && n == 7) {
            ns_cron c;
            char why[256];
            if (!ns_cron_parse(f[1], &c, why, sizeof(why))) {
                printf("error: %s\n", why);
                continue;
            }
            if (!(tz = zone(f[2])))
                continue;
            int64_t t = strtoll(f[5], NULL, 10);
            long count = strtol(f[6], NULL, 10);
            const char *sep = "";
            for (long i = 0; i < count; i++) {
                ns_fire fire;
                if (!ns_cron_next(&c, tz, (ns_dst_gap)policy(f[3], gaps),
                                  (ns_dst_repeat)policy(f[4], reps), t, &fire))
                    break;
                printf("%s%lld:%lld:%u", sep, (long long)fire.at, (long long)fire.wall, fire.flags);
                sep = " ";
                t = fire.at;
            }
            printf("\n");
        } else
            printf("error: unknown question\n");
        fflush(stdout);
    }
    return 0;
}
