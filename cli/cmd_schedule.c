/* cmd_schedule.c - `nightshift schedule [JOB.yaml | DIR ...] [--count N] [--from TIME] [--json]`:
 * each job's schedule and its next fire times, in its zone and in UTC. */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* "2024-03-09", "2024-03-09T12:00[:00]Z", "...+09:00" -> seconds since the epoch. */
static bool parse_instant(const char *s, int64_t *out)
{
    struct tm tm = {0};
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0, oh = 0, om = 0;
    char sign = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
        return false;
    s += n;
    if (*s == 'T' || *s == ' ') {
        if (sscanf(s + 1, "%2d:%2d%n", &h, &mi, &n) != 2)
            return false;
        s += 1 + n;
        if (*s == ':') {
            if (sscanf(s + 1, "%2d%n", &se, &n) != 1)
                return false;
            s += 1 + n;
        }
        if (*s == 'Z')
            s++;
        else if (*s == '+' || *s == '-') {
            sign = *s;
            if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) != 2)
                return false;
            s += 1 + n;
        } else
            return false;
    }
    if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59 || oh > 23 ||
        om > 59)
        return false;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    int64_t t = (int64_t)timegm(&tm); /* UTC: not the process's zone */
    int64_t off = (int64_t)oh * 3600 + om * 60;
    *out = sign == '+' ? t - off : sign == '-' ? t + off : t;
    return true;
}

/* Seconds on a calendar as "YYYY-MM-DD HH:MM:SS" (sep ' ') or ISO ('T'). */
static void wall_str(int64_t wall, char sep, char *buf, size_t n)
{
    time_t t = (time_t)wall;
    struct tm tm;
    gmtime_r(&t, &tm);
    if (snprintf(buf, n, "%04d-%02d-%02d%c%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, sep, tm.tm_hour, tm.tm_min, tm.tm_sec) >= (int)n)
        buf[n - 1] = '\0'; /* a year past 9999: cut, never overrun */
}

static void offset_str(int32_t off, char *buf, size_t n)
{
    int a = off < 0 ? -off : off;
    snprintf(buf, n, "%c%02d:%02d", off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
}

static void duration_str(double s, char *buf, size_t n)
{
    long v = (long)s;
    if (v % 3600 == 0 && v)
        snprintf(buf, n, "%ldh", v / 3600);
    else if (v % 60 == 0 && v)
        snprintf(buf, n, "%ldm", v / 60);
    else
        snprintf(buf, n, "%lds", v);
}

/* What a flagged fire time says about the DST change it meets. */
static void note_str(const ns_fire_time *f, const ns_schedule_info *si, char *buf, size_t n)
{
    char w[32];
    wall_str(f->wall, ' ', w, sizeof(w));
    buf[0] = '\0';
    if (f->flags & NS_FIRE_IN_GAP)
        snprintf(buf, n, "%s does not exist (DST gap): %s", w + 11,
                 strcmp(si->gap, "next") == 0
                     ? "fires when the gap ends (dst.gap: next)"
                     : "fires as if the clock had not moved (dst.gap: shift)");
    else if (f->flags & NS_FIRE_IN_REPEAT)
        snprintf(buf, n, "%s occurs twice (DST repeat): %s", w + 11,
                 strcmp(si->repeat, "first") == 0  ? "the first (dst.repeat: first)"
                 : strcmp(si->repeat, "last") == 0 ? "the second (dst.repeat: last)"
                                                   : "fires at both (dst.repeat: both)");
}

static int show_one(const char *path, bool named, long count, int64_t from, bool json, json_t *all)
{
    ns_job *job = NULL;
    ns_schedule *s = NULL;
    ns_error err = {0};
    ns_schedule_info si;
    if (ns_job_load(path, &job, &err) != NS_OK) {
        cli_error(&err);
        return NS_EXIT_USAGE;
    }
    if (!ns_job_schedule(job, &si)) {
        if (named && !json)
            printf("%s (%s): no schedule\n\n", ns_job_name(job), path);
        else if (named)
            json_array_append_new(all, json_pack("{s:s, s:s, s:n}", "job", ns_job_name(job), "file",
                                                 path, "schedule"));
        ns_job_free(job);
        return 0;
    }
    if (ns_schedule_open(job, &s, &err) != NS_OK) {
        cli_error(&err);
        ns_job_free(job);
        return NS_EXIT_USAGE;
    }
    char dl[32], jit[32];
    duration_str(si.deadline, dl, sizeof(dl));
    duration_str(si.jitter, jit, sizeof(jit));
    json_t *o = NULL, *fires = NULL, *params = NULL;
    if (json) {
        params = json_object();
        for (size_t i = 0; i < si.nparams; i++)
            json_object_set_new(params, si.param_names[i], json_string(si.param_values[i]));
        fires = json_array();
        o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:I, s:s, s:{s:s, s:s}, s:f, s:f, s:o}",
                      "job", ns_job_name(job), "file", path, "cron", si.cron, "timezone",
                      si.timezone, "params", params, "misfire", si.misfire, "catch_up_max",
                      (json_int_t)si.catch_up_max, "overlap", si.overlap, "dst", "gap", si.gap,
                      "repeat", si.repeat, "deadline_seconds", si.deadline, "jitter_seconds",
                      si.jitter, "next", fires);
        json_array_append_new(all, o);
    } else {
        printf("%s (%s)\n", ns_job_name(job), path);
        printf("  cron \"%s\" in %s; misfire %s", si.cron, si.timezone, si.misfire);
        if (strcmp(si.misfire, "catch_up") == 0)
            printf(" (at most %lld)", (long long)si.catch_up_max);
        printf(", overlap %s, deadline %s", si.overlap, dl);
        if (si.jitter > 0)
            printf(", jitter up to %s", jit);
        printf(", dst gap %s / repeat %s\n", si.gap, si.repeat);
        if (si.nparams) {
            printf("  params:");
            for (size_t i = 0; i < si.nparams; i++)
                printf(" %s=%s", si.param_names[i], si.param_values[i]);
            printf("\n");
        }
    }
    int64_t t = from;
    for (long i = 0; i < count; i++) {
        ns_fire_time f;
        if (!ns_schedule_next(s, t, &f)) {
            if (!json)
                printf("  (no more fire times before the year 9999)\n");
            break;
        }
        char loc[40], utc[40], off[16], note[200];
        wall_str(f.at + f.offset, json ? 'T' : ' ', loc, sizeof(loc));
        wall_str(f.at, json ? 'T' : ' ', utc, sizeof(utc));
        offset_str(f.offset, off, sizeof(off));
        note_str(&f, &si, note, sizeof(note));
        if (json) {
            char at[64], named_wall[40], utc_z[48];
            snprintf(at, sizeof(at), "%s%s", loc, off);
            snprintf(utc_z, sizeof(utc_z), "%sZ", utc);
            wall_str(f.wall, 'T', named_wall, sizeof(named_wall));
            json_t *e =
                json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "at", at, "utc", utc_z, "zone", f.abbr,
                          "local_time", named_wall, "in_gap", (f.flags & NS_FIRE_IN_GAP) != 0,
                          "in_repeat", (f.flags & NS_FIRE_IN_REPEAT) != 0);
            json_array_append_new(fires, e);
        } else
            printf("  %s %-5s (%s)   %s UTC%s%s\n", loc, f.abbr, off, utc, note[0] ? "   " : "",
                   note);
        t = f.at;
    }
    if (!json)
        printf("\n");
    ns_schedule_close(s);
    ns_job_free(job);
    return 0;
}

int cmd_schedule(int argc, char **argv)
{
    cli_opts o;
    int rc = 0;
    int64_t from = (int64_t)time(NULL);
    if (!cli_parse(argc, argv, &o) || o.nargs < 1) {
        if (o.nargs < 1)
            fprintf(stderr, "nightshift: schedule: name job files or folders of them\n");
        cli_usage("schedule");
        free(o.args);
        return NS_EXIT_USAGE;
    }
    if (o.from && !parse_instant(o.from, &from)) {
        fprintf(stderr,
                "nightshift: --from: '%s' is not a time (YYYY-MM-DD, or "
                "YYYY-MM-DDTHH:MM:SSZ / ...+HH:MM)\n",
                o.from);
        free(o.args);
        return NS_EXIT_USAGE;
    }
    long count = o.count ? o.count : 5;
    json_t *all = json_array();
    for (int i = 0; i < o.nargs; i++) {
        struct stat st;
        if (stat(o.args[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            size_t n;
            char **files = ns_job_files(o.args[i], &n);
            if (!files) {
                fprintf(stderr, "nightshift: %s: cannot read the folder\n", o.args[i]);
                rc = NS_EXIT_USAGE;
                continue;
            }
            for (size_t k = 0; k < n; k++) {
                int r = show_one(files[k], false, count, from, o.json, all);
                rc = rc ? rc : r;
                free(files[k]);
            }
            free(files);
        } else {
            int r = show_one(o.args[i], true, count, from, o.json, all);
            rc = rc ? rc : r;
        }
    }
    if (o.json) {
        char *text = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text)
            puts(text);
        free(text);
    }
    json_decref(all);
    free(o.args);
    return rc;
}
