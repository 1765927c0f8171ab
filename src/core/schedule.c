/*
 * schedule.c - a job's schedule as the library shows it: its settings and
 * its fire times (src/sched/ computes them).
 */
#include "config/job.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>

struct ns_schedule {
    const ns_schedule_def *def;
    ns_tz *tz;
};

int ns_job_schedule(const ns_job *job, ns_schedule_info *out)
{
    static const char *const misfires[] = {"skip", "run_once", "catch_up"};
    static const char *const overlaps[] = {"forbid", "queue_one", "allow"};
    static const char *const gaps[] = {"next", "shift", "skip"};
    static const char *const repeats[] = {"first", "last", "both"};
    const ns_schedule_def *sd = job->schedule;
    if (!sd)
        return false;
    *out = (ns_schedule_info){
        .cron = sd->cron,
        .timezone = sd->timezone,
        .misfire = misfires[sd->misfire],
        .overlap = overlaps[sd->overlap],
        .gap = gaps[sd->gap],
        .repeat = repeats[sd->repeat],
        .catch_up_max = sd->catch_up_max,
        .deadline = sd->deadline,
        .jitter = sd->jitter,
        .nparams = sd->nparams,
        .param_names = (const char *const *)sd->param_names,
        .param_values = (const char *const *)sd->param_values,
    };
    return true;
}

ns_status ns_schedule_open(const ns_job *job, ns_schedule **out, ns_error *err)
{
    *out = NULL;
    if (!job->schedule)
        return ns__err(err, NS_ENOTFOUND, NULL, "job %s has no schedule", job->name);
    ns_schedule *s = calloc(1, sizeof(*s));
    if (!s)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    s->def = job->schedule;
    ns_status st = ns_tz_load(s->def->timezone, &s->tz, err);
    if (st != NS_OK) {
        free(s);
        return st;
    }
    *out = s;
    return NS_OK;
}

int ns_schedule_next(const ns_schedule *s, int64_t after, ns_fire_time *out)
{
    ns_fire f;
    if (!ns_cron_next(&s->def->expr, s->tz, s->def->gap, s->def->repeat, after, &f))
        return false;
    ns_tz_info z;
    ns_tz_at(s->tz, f.at, &z);
    *out = (ns_fire_time){.at = f.at, .wall = f.wall, .offset = z.off, .flags = 0};
    memcpy(out->abbr, z.abbr, sizeof(out->abbr));
    out->flags |= f.flags & NS_FIRE_GAP ? NS_FIRE_IN_GAP : 0;
    out->flags |= f.flags & NS_FIRE_REPEAT ? NS_FIRE_IN_REPEAT : 0;
    return true;
}

void ns_schedule_close(ns_schedule *s)
{
    if (!s)
        return;
    ns_tz_free(s->tz);
    free(s);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **ns_job_files(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    if (!d)
        return NULL;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || !((len > 5 && strcmp(e->d_name + len - 5, ".yaml") == 0) ||
                                     (len > 4 && strcmp(e->d_name + len - 4, ".yml") == 0)))
            continue;
        if (*n + 2 > cap) {
            char **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
            if (!nv)
                goto oom;
            v = nv;
        }
        size_t plen = strlen(dir) + len + 2;
        if (!(v[*n] = malloc(plen)))
            goto oom;
        snprintf(v[*n], plen, "%s/%s", dir, e->d_name);
        ++*n;
    }
    closedir(d);
    if (!v && !(v = calloc(1, sizeof(*v))))
        return NULL;
    qsort(v, *n, sizeof(*v), by_name);
    v[*n] = NULL;
    return v;
oom:
    closedir(d);
    for (size_t i = 0; i < *n; i++)
        free(v[i]);
    free(v);
    *n = 0;
    errno = ENOMEM;
    return NULL;
}
