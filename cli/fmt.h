/* fmt.h - formatting of repository JSON for people (list, show). */
#ifndef NS_FMT_H
#define NS_FMT_H

#include <jansson.h>
#include <stddef.h>

/* "2026-11-21T10:00:00.123Z" -> "2026-11-21 19:00:00 KST" (local time and
 * its zone); "-" when null. */
void fmt_time(json_t *iso, char *buf, size_t n);
/* Duration between two ISO times ("1.23s", "4m05s"); "-" when unknown. */
void fmt_duration(json_t *from, json_t *to, char *buf, size_t n);
/* The seconds between two ISO times; -1 when either is not one. */
double fmt_seconds(json_t *from, json_t *to);
/* {"file": "x.csv", "note": "a b", "run.id": 3} -> "file=x.csv note=\"a b\" run.id=3" */
void fmt_params(json_t *params, char *buf, size_t n);
/* 1234567 -> "1,234,567": the one number style of everything printed. */
const char *fmt_count(long long v, char *buf, size_t n);

#endif
