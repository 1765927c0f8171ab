/*
 * tz.h - time zones from the system's tzdata (TZif files, RFC 8536), read
 * by nightshift itself: a schedule's zone is an object, never the process's
 * TZ, so two jobs in two zones are computed side by side, and a tzdata
 * update is honoured at the next load without a rebuild.
 *
 * Instants are seconds since 1970-01-01 UTC (no leap seconds); a "wall"
 * time is the same count on the zone's local calendar (instant + offset).
 */
#ifndef NS_TZ_H
#define NS_TZ_H

#include "util/util.h"

typedef struct ns_tz ns_tz;

/* Loads an IANA zone ("Asia/Seoul", "UTC") from $TZDIR or
 * /usr/share/zoneinfo. An unknown name, a path-like name or a file that is
 * not TZif is an error naming the zone. */
ns_status ns_tz_load(const char *name, ns_tz **out, ns_error *err);
/* Parses a TZif image (the fuzzer's and tests' entry point). */
ns_status ns_tz_parse(const char *name, const unsigned char *data, size_t len, ns_tz **out,
                      ns_error *err);
void ns_tz_free(ns_tz *tz);
const char *ns_tz_name(const ns_tz *tz);

typedef struct ns_tz_info {
    int32_t off; /* seconds east of UTC */
    bool dst;
    char abbr[16]; /* "CET", "+1030" */
} ns_tz_info;

/* The offset in effect at instant t. */
void ns_tz_at(const ns_tz *tz, int64_t t, ns_tz_info *out);
/* The first instant after t at which the offset differs from the one at t;
 * INT64_MAX when it never changes again. */
int64_t ns_tz_next_change(const ns_tz *tz, int64_t t);

/* The lowest and highest offsets the zone ever has. */
void ns_tz_range(const ns_tz *tz, int32_t *lo, int32_t *hi);

/* The instants whose wall time is `wall`, in order: 1 normally, 2 in a
 * repeated hour (clocks set back), 0 in a gap (clocks set forward). For a
 * gap, *gap_end is the instant the gap ends (the first valid one after it)
 * and *gap_off the offset in effect before it. */
int ns_tz_resolve(const ns_tz *tz, int64_t wall, int64_t out[2], int64_t *gap_end,
                  int32_t *gap_off);

/* Calendar helpers (proleptic Gregorian, any year). */
int64_t ns__days_from_civil(int64_t y, int m, int d);
void ns__civil_from_days(int64_t days, int64_t *y, int *m, int *d);
/* 0 = Sunday. */
int ns__weekday(int64_t days);
int ns__month_days(int64_t y, int m);

/* Writes the wall time `wall` as "2024-03-10 02:30:00" (buf >= 32 bytes). */
const char *ns__wall_str(int64_t wall, char *buf, size_t len);

#endif
