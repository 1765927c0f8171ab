/*
 * scheduler.c - `nightshift scheduler`: fires each scheduled job at its
 * ticks, exactly once per tick across every scheduler sharing the
 * repository (docs/internals.md, "The scheduler").
 *
 * A tick is a row (job, scheduled instant) inserted before its run: the
 * insert that wins is the one scheduler that owns it. The run is started
 * by the caller (opts->start: the command makes it a child process
 * `nightshift run ... --tick AT`); its launch turns the PENDING tick
 * STARTED in the transaction that creates its execution, so a tick given
 * up (MISSED, SKIPPED) or started elsewhere can never start twice. The
 * library spawns, signals and reaps nothing itself.
 */
#include "config/job.h"
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* At most this many MISSED ticks are written for one catch-up (a minutely
 * job down for a week would be 10,080): the rest are counted in the log. */
#define MISSED_ROWS 1000
#define KEEP        (MISSED_ROWS + 1000) /* + the largest catch_up max */
#define TOUCH_EVERY 5.0                  /* seconds between renewals of our PENDING ticks */

typedef struct queued {
    int64_t at;
    double start_after; /* jitter */
    bool catch_up;      /* started one after another, whatever overlap says */
} queued;

typedef struct sjob {
    char *path;
    ns_job *job;
    ns_schedule *sched;
    int64_t next; /* the next fire time not yet handled */
    bool have_next;
    queued *q;
    size_t nq, capq;
    int kids;     /* children running for it */
    bool seen;    /* on reload: still in the files */
    bool resumed; /* where it left off has been looked up */
} sjob;

typedef struct child {
    int64_t handle; /* the caller's */
    char job[129];
    int64_t at;
} child;

typedef struct sched {
    ns_repo *repo;
    const ns_scheduler_opts *o;
    sjob *jobs;
    size_t njobs;
    child *kids;
    size_t nkids, capk;
    char me[300]; /* host:pid */
    double lease;
    /* the clock: real time, or (test builds) a fast one */
    double epoch0, real0, speed;
    uint64_t rng; /* the jitter's draws (no process-wide rand()) */
} sched;

/* A draw in [0, 1) (xorshift64*). */
static double draw(sched *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* ------------------------------------------------------------ clock */

static double now_of(const sched *s)
{
    return s->epoch0 + (ns__now() - s->real0) * s->speed;
}

static void clock_init(sched *s)
{
    s->epoch0 = s->real0 = ns__now();
    s->speed = 1;
#ifdef NS_TEST_HOOKS
    /* NIGHTSHIFT_TEST_CLOCK="EPOCH SPEED REAL0": the scheduler's time is
     * EPOCH + (now - REAL0) * SPEED; schedulers given the same three agree. */
    const char *c = getenv("NIGHTSHIFT_TEST_CLOCK");
    double e, sp, r0;
    if (c && sscanf(c, "%lf %lf %lf", &e, &sp, &r0) == 3 && sp > 0) {
        s->epoch0 = e;
        s->speed = sp;
        s->real0 = r0;
    }
#endif
}

static void say(const sched *s, const char *fmt, ...) NS_PRINTF(2, 3);
static void say(const sched *s, const char *fmt, ...)
{
    char line[2048], when[32];
    time_t t = (time_t)now_of(s);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof(line), "%s scheduler: ", when);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (s->o->log)
        s->o->log(s->o->log_arg, line);
}

static void say_line(void *arg, const char *line)
{
    say(arg, "%s", line);
}

/* The fire time a tick's instant is (the next one after a second before
 * it); false when `at` is not one (its schedule changed). */
static bool fire_of(const sjob *j, int64_t at, ns_fire_time *f)
{
    return ns_schedule_next(j->sched, at - 1, f) && f->at == at;
}

/* Seconds on a calendar, by a strftime format. */
static void cal(int64_t secs, const char *fmt, char *out, size_t n)
{
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, fmt, &tm);
}

/* "2024-03-10 03:00:00 EDT" of a tick, for the log. */
static const char *tick_name(const sjob *j, int64_t at, char *buf, size_t n)
{
    ns_fire_time f;
    char w[32];
    if (!fire_of(j, at, &f)) {
        snprintf(buf, n, "%lld", (long long)at);
        return buf;
    }
    cal(at + f.offset, "%Y-%m-%d %H:%M:%S", w, sizeof(w));
    snprintf(buf, n, "%s %s", w, f.abbr);
    return buf;
}

/* The local time a tick names, "2024-03-10T02:30:00". */
static void local_iso(const sjob *j, int64_t at, char out[32])
{
    ns_fire_time f;
    cal(fire_of(j, at, &f) ? f.wall : at, "%Y-%m-%dT%H:%M:%S", out, 32);
}

/* ------------------------------------------------------------- jobs */

static void job_free(sjob *j)
{
    free(j->path);
    ns_schedule_close(j->sched);
    ns_job_free(j->job);
    free(j->q);
}

/* Loads (or, on reload, reloads) one file; a failure leaves an earlier
 * version of the job running. */
static void load_file(sched *s, const char *path)
{
    ns_job *job = NULL;
    ns_schedule *sc = NULL;
    ns_error err = {0};
    if (ns_job_load(path, &job, &err) != NS_OK) {
        say(s, "%s: not loaded: %s", path, err.message);
        for (size_t i = 0; i < s->njobs; i++)
            if (strcmp(s->jobs[i].path, path) == 0)
                s->jobs[i].seen = true; /* keeps running as it was */
        return;
    }
    if (!job->schedule) {
        ns_job_free(job);
        return;
    }
    if (ns_schedule_open(job, &sc, &err) != NS_OK) {
        say(s, "%s: not loaded: %s", path, err.message);
        ns_job_free(job);
        return;
    }
    for (size_t i = 0; i < s->njobs; i++) {
        sjob *j = &s->jobs[i];
        if (strcmp(j->job->name, job->name) != 0)
            continue;
        if (j->seen) {
            say(s, "%s: job %s is also in %s: ignored", path, job->name, j->path);
            ns_schedule_close(sc);
            ns_job_free(job);
            return;
        }
        bool same = strcmp(j->job->schedule->cron, job->schedule->cron) == 0 &&
                    strcmp(j->job->schedule->timezone, job->schedule->timezone) == 0 &&
                    j->job->schedule->gap == job->schedule->gap &&
                    j->job->schedule->repeat == job->schedule->repeat;
        ns_schedule_close(j->sched);
        ns_job_free(j->job);
        j->job = job;
        j->sched = sc;
        j->seen = true;
        if (!same && j->have_next) { /* from now on, by the new schedule */
            ns_fire_time f;
            j->have_next = ns_schedule_next(sc, (int64_t)now_of(s), &f);
            j->next = f.at;
        }
        say(s, "%s: job %s reloaded", path, job->name);
        return;
    }
    sjob *nj = realloc(s->jobs, (s->njobs + 1) * sizeof(*nj));
    char *p = ns__strdup(path);
    if (nj)
        s->jobs = nj;
    if (!nj || !p) {
        free(p);
        say(s, "%s: out of memory", path);
        ns_schedule_close(sc);
        ns_job_free(job);
        return;
    }
    s->jobs[s->njobs++] = (sjob){.path = p, .job = job, .sched = sc, .seen = true};
    ns_schedule_info si;
    ns_job_schedule(job, &si);
    say(s, "%s: job %s: \"%s\" in %s", path, job->name, si.cron, si.timezone);
}

static void load_all(sched *s)
{
    for (size_t i = 0; i < s->njobs; i++)
        s->jobs[i].seen = false;
    for (size_t i = 0; i < s->o->npaths; i++) {
        struct stat st;
        const char *p = s->o->paths[i];
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            size_t n;
            char **files = ns_job_files(p, &n);
            if (!files) {
                say(s, "%s: cannot read the folder: %s", p, strerror(errno));
                continue;
            }
            for (size_t k = 0; k < n; k++) {
                load_file(s, files[k]);
                free(files[k]);
            }
            free(files);
        } else
            load_file(s, p);
    }
    /* Jobs whose file is gone (or lost its schedule) are dropped; their
     * running children are still waited for. */
    for (size_t i = 0; i < s->njobs;) {
        if (s->jobs[i].seen) {
            i++;
            continue;
        }
        say(s, "job %s: no longer scheduled (%s)", s->jobs[i].job->name, s->jobs[i].path);
        job_free(&s->jobs[i]);
        s->jobs[i] = s->jobs[--s->njobs];
    }
}

static sjob *job_named(sched *s, const char *name)
{
    for (size_t i = 0; i < s->njobs; i++)
        if (strcmp(s->jobs[i].job->name, name) == 0)
            return &s->jobs[i];
    return NULL;
}

/* ----------------------------------------------------------- ticks */

static bool claim(sched *s, sjob *j, int64_t at, const char *state, const char *reason)
{
    ns_tick t = {.at = at};
    bool inserted = false;
    ns_error err = {0};
    snprintf(t.job, sizeof(t.job), "%s", j->job->name);
    local_iso(j, at, t.local_time);
    snprintf(t.state, sizeof(t.state), "%s", state);
    snprintf(t.reason, sizeof(t.reason), "%s", reason);
    snprintf(t.claimed_by, sizeof(t.claimed_by), "%s", s->me);
    if (s->repo->vt->tick_claim(s->repo, &t, &inserted, &err) != NS_OK) {
        say(s, "job %s: cannot record a tick: %s", j->job->name, err.message);
        return false;
    }
    return inserted;
}

static void set_tick(sched *s, sjob *j, int64_t at, const char *from, const char *to,
                     const char *reason)
{
    bool changed;
    ns_error err = {0};
    if (s->repo->vt->tick_set(s->repo, j->job->name, at, from, NULL, to, reason, NULL, &changed,
                              &err) != NS_OK)
        say(s, "job %s: cannot update a tick: %s", j->job->name, err.message);
}

/* Whether the job has a run going (ours, or alive in the repository), or
 * a tick waiting that another scheduler owns. */
typedef enum busyness {
    FREE,    /* nothing of the job runs or waits */
    RUNNING, /* a run of it goes on (here or elsewhere) */
    WAITING  /* a tick of it waits to start at another scheduler */
} busyness;

/* Whether the job has a run going (ours, or alive in the repository), or
 * a tick waiting that another scheduler owns; why says which. */
static busyness busy(sched *s, sjob *j, int64_t except_at, char *why, size_t n)
{
    int running = 0;
    int64_t id = 0;
    ns_error err = {0};
    if (j->kids) {
        snprintf(why, n, "a run of the job is still going (started by this scheduler)");
        return RUNNING;
    }
    if (ns__repo_running(s->repo, j->job->name, &running, &id, &err) == NS_OK && running) {
        snprintf(why, n, "execution %lld of the job is still running", (long long)id);
        return RUNNING;
    }
    ns_tick *p = NULL;
    size_t np = 0;
    busyness b = FREE;
    if (s->repo->vt->tick_pending(s->repo, j->job->name, &p, &np, &err) == NS_OK)
        for (size_t i = 0; i < np && b == FREE; i++)
            if (p[i].at != except_at && strcmp(p[i].claimed_by, s->me) != 0) {
                snprintf(why, n, "the tick of %s waits to start (scheduler %s)", p[i].local_time,
                         p[i].claimed_by);
                b = WAITING;
            }
    free(p);
    return b;
}

static void enqueue(sjob *j, int64_t at, double start_after, bool catch_up)
{
    if (j->nq == j->capq) {
        size_t cap = j->capq ? j->capq * 2 : 4;
        queued *v = realloc(j->q, cap * sizeof(*v));
        if (!v)
            return;
        j->q = v;
        j->capq = cap;
    }
    j->q[j->nq++] = (queued){at, start_after, catch_up};
}

/* A date or timestamp value at the scheduled time in the schedule's zone. */
static void param_at(const sjob *j, int64_t at, const char *word, ns_ptype type, char *out,
                     size_t n)
{
    ns_fire_time f;
    int32_t off = fire_of(j, at, &f) ? f.offset : 0;
    cal(at + off - (strcmp(word, "yesterday") == 0 ? 86400 : 0),
        type == NS_P_TIMESTAMP ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d", out, n);
}

/* Starts the run of a claimed (PENDING) tick (by the caller's start()). */
static void spawn(sched *s, sjob *j, int64_t at)
{
    const ns_job *job = j->job;
    const ns_schedule_def *sd = job->schedule;
    const char **params = calloc(job->nparams + 1, sizeof(char *));
    char(*vals)[300] = calloc(job->nparams + 1, sizeof(*vals));
    char name[64];
    size_t n = 0;
    ns_error err = {0};
    /* room for it first: a run started is always tracked */
    if (s->nkids == s->capk) {
        size_t c = s->capk ? s->capk * 2 : 8;
        child *v = realloc(s->kids, c * sizeof(*v));
        if (v) {
            s->kids = v;
            s->capk = c;
        }
    }
    if (!params || !vals || s->nkids == s->capk) {
        free(params);
        free(vals);
        say(s, "job %s: out of memory starting a run", job->name);
        set_tick(s, j, at, "PENDING", "MISSED", "the scheduler ran out of memory starting it");
        return;
    }
    for (size_t i = 0; i < job->nparams; i++) {
        const ns_param_def *pd = &job->params[i];
        const char *v = NULL;
        for (size_t k = 0; k < sd->nparams; k++)
            if (strcmp(sd->param_names[k], pd->name) == 0)
                v = sd->param_values[k];
        if (!v && pd->def && pd->type == NS_P_DATE &&
            (strcmp(pd->def, "today") == 0 || strcmp(pd->def, "yesterday") == 0))
            v = pd->def; /* a relative default: at the scheduled time too */
        if (!v)
            continue;
        char when[40];
        if ((pd->type == NS_P_DATE || pd->type == NS_P_TIMESTAMP) &&
            (strcmp(v, "today") == 0 || strcmp(v, "yesterday") == 0 ||
             strcmp(v, "scheduled") == 0)) {
            param_at(j, at, v, pd->type, when, sizeof(when));
            v = when;
        }
        snprintf(vals[i], sizeof(vals[i]), "%s=%s", pd->name, v);
        params[n++] = vals[i];
    }
    ns_tick_run run = {
        .job = job->name, .job_file = j->path, .tick = at, .params = params, .nparams = n};
    int64_t h = s->o->start(s->o->run_arg, &run, &err);
    free(params);
    free(vals);
    if (h <= 0) {
        say(s, "job %s: cannot start a run: %s", job->name,
            err.message[0] ? err.message : "the caller's start() failed");
        set_tick(s, j, at, "PENDING", "MISSED", "the scheduler could not start a run");
        return;
    }
    s->kids[s->nkids] = (child){.handle = h, .at = at};
    snprintf(s->kids[s->nkids].job, sizeof(s->kids[s->nkids].job), "%s", job->name);
    s->nkids++;
    j->kids++;
    say(s, "job %s: tick %s: run started (%lld)", job->name, tick_name(j, at, name, sizeof(name)),
        (long long)h);
}

/* A tick that is due now: by the overlap policy, start it, queue it or
 * skip it. */
static void fire(sched *s, sjob *j, int64_t at, bool late)
{
    const ns_schedule_def *sd = j->job->schedule;
    char why[512], reason[600], name[64];
    tick_name(j, at, name, sizeof(name));
    busyness b = FREE;
    if (sd->overlap != NS_OVERLAP_ALLOW && j->nq) {
        b = WAITING;
        snprintf(why, sizeof(why), "a tick of the job is already waiting to start");
    } else if (sd->overlap != NS_OVERLAP_ALLOW)
        b = busy(s, j, at, why, sizeof(why));
    if (b && sd->overlap == NS_OVERLAP_FORBID) {
        snprintf(reason, sizeof(reason), "overlap: forbid: %s", why);
        if (claim(s, j, at, "SKIPPED", reason))
            say(s, "job %s: tick %s: skipped (%s)", j->job->name, name, reason);
        return;
    }
    if (b == WAITING) { /* queue_one: one waits, no more */
        snprintf(reason, sizeof(reason), "overlap: queue_one: %s", why);
        if (claim(s, j, at, "SKIPPED", reason))
            say(s, "job %s: tick %s: skipped (%s)", j->job->name, name, reason);
        return;
    }
    if (!claim(s, j, at, "PENDING", late ? "started late (misfire)" : ""))
        return; /* another scheduler has it */
    double jitter = sd->jitter > 0 ? sd->jitter * draw(s) : 0;
    if (b || jitter > 0) {
        enqueue(j, at, now_of(s) + jitter, false);
        if (b)
            say(s, "job %s: tick %s: waits for the run before it (overlap: queue_one)",
                j->job->name, name);
        return;
    }
    spawn(s, j, at);
}

/* The ticks that came due since the last look: by the misfire policy when
 * more than one did or the latest is past its deadline. */
static void due(sched *s, sjob *j, double now)
{
    const ns_schedule_def *sd = j->job->schedule;
    int64_t *v = NULL, count = 0;
    size_t n = 0, cap = 0;
    while (j->have_next && j->next <= (int64_t)now) {
        if (n == cap) { /* keep the latest KEEP (MISSED rows and catch-up runs) */
            if (cap >= 2 * KEEP) {
                memmove(v, v + KEEP, (n - KEEP) * sizeof(*v));
                n -= KEEP;
            } else {
                size_t c = cap ? cap * 2 : 8;
                c = c > 2 * KEEP ? 2 * KEEP : c;
                int64_t *nv = realloc(v, c * sizeof(*v));
                if (!nv)
                    break;
                v = nv;
                cap = c;
            }
        }
        v[n++] = j->next;
        count++;
        ns_fire_time f;
        j->have_next = ns_schedule_next(j->sched, j->next, &f);
        j->next = f.at;
    }
    if (!n) {
        free(v);
        return;
    }
    int64_t latest = v[n - 1];
    bool on_time = now - (double)latest <= sd->deadline;
    if (count == 1 && on_time) {
        fire(s, j, latest, false);
        free(v);
        return;
    }
    /* Missed while no scheduler was running (or the clock jumped). */
    size_t run_from = n; /* v[run_from..] run */
    const char *why;
    if (sd->misfire == NS_MISFIRE_SKIP) {
        run_from = on_time ? n - 1 : n;
        why = "missed: no scheduler was running (misfire: skip)";
    } else if (sd->misfire == NS_MISFIRE_RUN_ONCE) {
        run_from = n - 1;
        why = "missed: no scheduler was running (misfire: run_once ran the latest)";
    } else {
        run_from = n > (size_t)sd->catch_up_max ? n - (size_t)sd->catch_up_max : 0;
        why = "missed: no scheduler was running, beyond misfire catch_up's max";
    }
    int64_t missed = (int64_t)run_from + (count - (int64_t)n), recorded = 0;
    for (size_t i = run_from > MISSED_ROWS ? run_from - MISSED_ROWS : 0; i < run_from; i++)
        recorded += claim(s, j, v[i], "MISSED", why);
    if (missed && run_from) {
        char first[64], last[64], what[400];
        say(s, "job %s: %lld tick%s missed (%s); %lld recorded%s", j->job->name, (long long)missed,
            missed == 1 ? "" : "s", why, (long long)recorded,
            missed > recorded ? " (the others: by another scheduler, or beyond the latest 1000)"
                              : "");
        /* told once, by the scheduler that recorded them */
        snprintf(what, sizeof(what), "%lld tick%s missed, %s to %s: %s", (long long)missed,
                 missed == 1 ? "" : "s", tick_name(j, v[0], first, sizeof(first)),
                 tick_name(j, v[run_from - 1], last, sizeof(last)), why);
        if (recorded)
            ns__notify_missed(s->repo, j->job, what, say_line, s);
    }
    if (sd->misfire == NS_MISFIRE_CATCH_UP && n - run_from > 1) {
        for (size_t i = run_from; i < n; i++)
            if (claim(s, j, v[i], "PENDING", "catch-up (misfire: catch_up)"))
                enqueue(j, v[i], 0, true);
        say(s, "job %s: catching up %zu tick%s, oldest first", j->job->name, n - run_from,
            n - run_from == 1 ? "" : "s");
    } else if (run_from < n)
        fire(s, j, v[n - 1], !on_time);
    free(v);
}

/* Starts what waits in the job's queue when it may; gives up what waited
 * past its deadline. */
static void run_queue(sched *s, sjob *j, double now)
{
    const ns_schedule_def *sd = j->job->schedule;
    char why[512], name[64];
    while (j->nq) {
        queued q = j->q[0];
        if (!q.catch_up && now > (double)q.at + sd->deadline) {
            char reason[700];
            snprintf(reason, sizeof(reason), "missed: not started by its deadline (%gs)",
                     sd->deadline);
            set_tick(s, j, q.at, "PENDING", "MISSED", reason);
            say(s, "job %s: tick %s: %s", j->job->name, tick_name(j, q.at, name, sizeof(name)),
                reason);
            char what[800];
            snprintf(what, sizeof(what), "the tick of %s: %s", name, reason);
            ns__notify_missed(s->repo, j->job, what, say_line, s);
        } else if (now < q.start_after || ((q.catch_up || sd->overlap != NS_OVERLAP_ALLOW) &&
                                           busy(s, j, q.at, why, sizeof(why))))
            return;
        else
            spawn(s, j, q.at);
        memmove(j->q, j->q + 1, (--j->nq) * sizeof(*j->q));
    }
}

/* A PENDING tick owned by a scheduler that is gone (its process on this
 * host, or silent past the lease) is taken over. */
static void take_orphans(sched *s, sjob *j)
{
    ns_tick *p = NULL;
    size_t np = 0;
    ns_error err = {0};
    if (s->repo->vt->tick_pending(s->repo, j->job->name, &p, &np, &err) != NS_OK)
        return;
    size_t hl = strlen(ns__hostname());
    for (size_t i = 0; i < np; i++) {
        if (strcmp(p[i].claimed_by, s->me) == 0)
            continue;
        bool gone = ns__now() - p[i].claimed_at > s->lease;
        if (strncmp(p[i].claimed_by, ns__hostname(), hl) == 0 && p[i].claimed_by[hl] == ':') {
            long pid = strtol(p[i].claimed_by + hl + 1, NULL, 10);
            gone = gone || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
        }
        bool changed = false;
        if (gone &&
            s->repo->vt->tick_set(s->repo, j->job->name, p[i].at, "PENDING", p[i].claimed_by,
                                  "PENDING", NULL, s->me, &changed, &err) == NS_OK &&
            changed) {
            say(s, "job %s: tick %s: taken over from scheduler %s (gone)", j->job->name,
                p[i].local_time, p[i].claimed_by);
            enqueue(j, p[i].at, 0, strstr(p[i].reason, "catch-up") != NULL);
        }
    }
    free(p);
}

/* At start: where each job left off. A job never scheduled here begins at
 * its next fire time; one that was begins after its last tick (what came
 * due meanwhile goes by misfire:). A tick whose run was stopped or failed
 * with the scheduler (killed) is run again while within its deadline. */
static void resume(sched *s, sjob *j, double now)
{
    int64_t last;
    bool found = false;
    ns_error err = {0};
    ns_fire_time f;
    int dead = 0;
    j->resumed = true;
    ns_repo_recover(s->repo, j->job->name, 0, NULL, NULL, &dead, &err);
    if (s->repo->vt->tick_last(s->repo, j->job->name, &last, &found, &err) != NS_OK || !found) {
        j->have_next = ns_schedule_next(j->sched, (int64_t)now, &f);
        j->next = f.at;
        return;
    }
    j->have_next = ns_schedule_next(j->sched, last, &f);
    j->next = f.at;
    ns_tick t;
    bool have = false;
    if (s->repo->vt->tick_get(s->repo, j->job->name, last, &t, &have, &err) != NS_OK || !have ||
        strcmp(t.state, "STARTED") != 0 || now > (double)last + j->job->schedule->deadline)
        return;
    ns_exec_info info = {0};
    if (s->repo->vt->exec_info(s->repo, t.execution_id, &info, &err) != NS_OK)
        return;
    bool again = info.status == NS_BATCH_FAILED || info.status == NS_BATCH_STOPPED;
    ns__exec_info_free(&info);
    bool changed = false;
    char name[64];
    if (again &&
        s->repo->vt->tick_set(s->repo, j->job->name, last, "STARTED", NULL, "PENDING",
                              "run again: its run ended with a scheduler", s->me, &changed,
                              &err) == NS_OK &&
        changed) {
        say(s, "job %s: tick %s: its run (execution %lld) did not complete: run again",
            j->job->name, tick_name(j, last, name, sizeof(name)), (long long)t.execution_id);
        enqueue(j, last, 0, true);
    }
}

/* A run ended: log it; a tick its run never took (refused, or the job
 * file became invalid) is given up. */
static void reaped(sched *s, int64_t handle, int code)
{
    for (size_t i = 0; i < s->nkids; i++) {
        if (s->kids[i].handle != handle)
            continue;
        child c = s->kids[i];
        s->kids[i] = s->kids[--s->nkids];
        sjob *j = job_named(s, c.job);
        if (j && j->kids)
            j->kids--;
        char name[64] = "";
        if (j)
            tick_name(j, c.at, name, sizeof(name));
        say(s, "job %s: tick %s: run ended, exit %d (%s)", c.job, name, code,
            code == 0   ? "completed"
            : code == 1 ? "failed"
            : code == 2 ? "bad usage or job file"
            : code == 3 ? "stopped"
            : code == 4 ? "refused"
                        : "killed or crashed");
        if (j) {
            ns_tick t;
            bool have = false;
            ns_error err = {0};
            if (s->repo->vt->tick_get(s->repo, c.job, c.at, &t, &have, &err) == NS_OK && have &&
                strcmp(t.state, "PENDING") == 0) {
                char reason[200];
                snprintf(reason, sizeof(reason),
                         "the run exited %d before it started (see the scheduler's log)", code);
                set_tick(s, j, c.at, "PENDING", "SKIPPED", reason);
            }
        }
        return;
    }
}

/* Sleeps up to `seconds` of the scheduler's clock (at most a real second). */
static void nap(const sched *s, double seconds)
{
    double real = seconds / s->speed;
    ns__sleep(real > 1 ? 1 : real < 0.02 ? 0.02 : real);
}

ns_status ns_scheduler_run(ns_repo *repo, const ns_scheduler_opts *o, ns_error *err)
{
    sched s = {.repo = repo, .o = o};
    clock_init(&s);
    s.lease = o->lease_seconds > 0 ? o->lease_seconds : 60;
    snprintf(s.me, sizeof(s.me), "%s:%d", ns__hostname(), (int)getpid());
    if (!repo->vt->tick_claim)
        return ns__err(err, NS_EUNSUPPORTED, NULL, "the repository keeps no ticks");
    if (!o->start || !o->ended || !o->stop_run)
        return ns__err(err, NS_EINVAL, NULL, "the scheduler needs start, ended and stop_run");
    s.rng = o->seed
                ? o->seed
                : ((uint64_t)getpid() << 32) ^ (uint64_t)(ns__now() * 1e6) ^ 0x9E3779B97F4A7C15ULL;
    load_all(&s);
    say(&s, "started (%s), %zu scheduled job%s", s.me, s.njobs, s.njobs == 1 ? "" : "s");
    double now = now_of(&s);
    for (size_t i = 0; i < s.njobs; i++)
        resume(&s, &s.jobs[i], now);
    double touched = 0;
    bool stopping = false;
    for (;;) {
        int code;
        int64_t h;
        while (o->ended(o->run_arg, &h, &code))
            reaped(&s, h, code);
        if (o->stop && *o->stop && !stopping) {
            stopping = true;
            say(&s, "stopping: %zu run%s asked to stop at a chunk boundary", s.nkids,
                s.nkids == 1 ? "" : "s");
            for (size_t i = 0; i < s.nkids; i++)
                o->stop_run(o->run_arg, s.kids[i].handle);
        }
        if (stopping) {
            if (!s.nkids)
                break;
            ns__sleep(0.05);
            continue;
        }
        if (o->reload && *o->reload) {
            *o->reload = 0;
            say(&s, "reloading the job files");
            load_all(&s);
            now = now_of(&s);
            for (size_t i = 0; i < s.njobs; i++)
                if (!s.jobs[i].resumed)
                    resume(&s, &s.jobs[i], now);
        }
        now = now_of(&s);
        if (ns__now() - touched >= TOUCH_EVERY) {
            touched = ns__now();
            ns_error e2 = {0};
            repo->vt->tick_touch(repo, s.me, &e2);
            for (size_t i = 0; i < s.njobs; i++)
                take_orphans(&s, &s.jobs[i]);
        }
        double wake = now + 1;
        for (size_t i = 0; i < s.njobs; i++) {
            sjob *j = &s.jobs[i];
            due(&s, j, now);
            run_queue(&s, j, now);
            if (j->have_next && (double)j->next < wake)
                wake = (double)j->next;
            if (j->nq && now + 1 < wake) /* a queued tick: looked at every second */
                wake = now + 1;
        }
        nap(&s, wake - now_of(&s));
    }
    say(&s, "stopped");
    for (size_t i = 0; i < s.njobs; i++)
        job_free(&s.jobs[i]);
    free(s.jobs);
    free(s.kids);
    return NS_OK;
}
