/* fuzz_cron.c - libFuzzer harness for the cron parser and the fire-time
 * search: any text is an expression or a clean error; for an expression,
 * in three zones under every policy, each fire time is after the instant
 * asked about, is found again when asked from just before it, and (unless
 * the gap policy moved it) falls on a local time the expression names. */
#include "sched/cron.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static ns_tz *zones[3];

static bool matches(const ns_cron *c, int64_t wall)
{
    int64_t at;
    return ns__cron_match_from(c, wall, &at) && at == wall;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const names[] = {"America/New_York", "Australia/Lord_Howe", "Asia/Seoul"};
    if (!zones[0])
        for (int i = 0; i < 3; i++) {
            ns_error err = {0};
            if (ns_tz_load(names[i], &zones[i], &err) != NS_OK)
                abort();
        }
    if (size < 8 || size > 300)
        return 0;
    int64_t after = 0;
    memcpy(&after, data, 8);
    after = (int64_t)((uint64_t)after % 6000000000u) - 1000000000; /* 1938 to 2158 */
    char expr[300];
    memcpy(expr, data + 8, size - 8);
    expr[size - 8] = '\0';
    ns_cron c;
    char why[256];
    if (!ns_cron_parse(expr, &c, why, sizeof(why))) {
        if (!why[0])
            abort(); /* every error says why */
        return 0;
    }
    for (int z = 0; z < 3; z++)
        for (int gap = 0; gap < 3; gap++)
            for (int rep = 0; rep < 3; rep++) {
                if (c.elapsed && (gap || rep))
                    continue; /* the policies do not apply */
                ns_fire f, g;
                int64_t t = after;
                for (int k = 0; k < 3; k++) {
                    if (!ns_cron_next(&c, zones[z], (ns_dst_gap)gap, (ns_dst_repeat)rep, t, &f))
                        break;
                    if (f.at <= t)
                        abort();
                    if (!ns_cron_next(&c, zones[z], (ns_dst_gap)gap, (ns_dst_repeat)rep, f.at - 1,
                                      &g) ||
                        g.at != f.at)
                        abort();
                    ns_tz_info info;
                    ns_tz_at(zones[z], f.at, &info);
                    if (!(f.flags & NS_FIRE_GAP) &&
                        (f.wall != f.at + info.off || !matches(&c, f.wall)))
                        abort();
                    t = f.at;
                }
            }
    return 0;
}
