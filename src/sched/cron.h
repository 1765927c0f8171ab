/*
 * cron.h - cron expressions and their fire times in a time zone.
 *
 * The next fire time is a pure function of (expression, zone, policies,
 * instant): no clock, no TZ, no state; the scheduler and `nightshift
 * schedule` both ask it, and the tests ask it with made-up instants.
 */
#ifndef NS_CRON_H
#define NS_CRON_H

#include "sched/tz.h"

typedef struct ns_cron {
    uint64_t sec, min; /* bit n: second / minute n */
    uint32_t hour;     /* bits 0-23 */
    uint32_t dom;      /* bits 1-31 */
    uint16_t mon;      /* bits 1-12 */
    uint8_t dow;       /* bits 0-6, 0 = Sunday */
    bool dom_last;     /* L: the last day of the month */
    /* A field that starts with '*' (or '?'): the other day field alone
     * decides, as in Vixie cron; when both are restricted, either does. */
    bool dom_star, dow_star;
    /* The hour field is '*' or a step: fire times follow elapsed time
     * through a DST change instead of the gap/repeat policies. */
    bool elapsed;
} ns_cron;

/* Parses 5 fields (minute hour day-of-month month day-of-week), 6 with a
 * leading seconds field, or @yearly @annually @monthly @weekly @daily
 * @midnight @hourly. On error writes why (naming the field) and returns
 * false. An expression that can never fire (30 2 30 2 *) is an error. */
bool ns_cron_parse(const char *expr, ns_cron *out, char *why, size_t whylen);

/* What a fixed local time does in a spring-forward gap and in a repeated
 * hour. */
typedef enum ns_dst_gap { NS_GAP_NEXT, NS_GAP_SHIFT, NS_GAP_SKIP } ns_dst_gap;
typedef enum ns_dst_repeat { NS_REPEAT_FIRST, NS_REPEAT_LAST, NS_REPEAT_BOTH } ns_dst_repeat;

#define NS_FIRE_GAP    1u /* the local time does not exist that day (moved by the gap policy) */
#define NS_FIRE_REPEAT 2u /* the local time occurs twice that day */

typedef struct ns_fire {
    int64_t at;     /* the instant it fires (UTC seconds) */
    int64_t wall;   /* the local time the expression names */
    unsigned flags; /* NS_FIRE_* */
} ns_fire;

/* The first fire time strictly after `after`; false when there is none
 * before the year 9999. */
bool ns_cron_next(const ns_cron *c, const ns_tz *tz, ns_dst_gap gap, ns_dst_repeat repeat,
                  int64_t after, ns_fire *out);

/* The first wall time >= wall that the expression matches, on a calendar
 * without DST; false when none before the year 9999. */
bool ns__cron_match_from(const ns_cron *c, int64_t wall, int64_t *out);

#endif
