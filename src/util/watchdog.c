/*
 * watchdog.c - a statement's time limit, enforced by the client, and a stop
 * request that reaches a run blocked inside a statement (docs/operations.md,
 * "Timeouts").
 *
 * A frozen server answers neither the statement nor a cancel request, and a
 * thread blocked in libpq cannot be woken by a signal (libpq retries on
 * EINTR). So one thread per run watches the one statement the run is in:
 * a plugin arms the watchdog before a call that may block on its server
 * (ns__watchdog_arm, with its limit and an interrupt function) and disarms
 * it after. Past the limit, or at a stop request, the watchdog interrupts
 * at level 1 (cancel the statement: PQcancel); if the call has not returned
 * GRACE seconds later, at level 2 (drop the connection: shutdown() of its
 * socket, which makes the blocked call fail at once). Level 2 is called
 * with the watchdog's lock held, and disarm takes it: the connection cannot
 * be closed under it. Level 1 may block (a cancel request to a frozen
 * server), so it is called without the lock: the plugin's function must
 * stay safe after disarm returns (table_pg hands the cancel to a thread of
 * its own).
 */
#include "util.h"

#include <pthread.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <time.h>

#define GRACE 5.0 /* seconds between the cancel and dropping the connection */

struct ns_watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    volatile sig_atomic_t *stop; /* the run's stop token (may be NULL) */
    bool quit, stop_now;
    /* the armed call (calls armed inside it count in depth only) */
    bool armed;
    int depth;
    double armed_at;
    double deadline, fired_at;
    int level;  /* interrupts made: 0, 1 (cancelled), 2 (dropped) */
    int why;    /* NS_WD_LIMIT or NS_WD_STOP */
    bool quick; /* fn never blocks: called with the lock held at level 1 too */
    ns_interrupt_fn fn;
    void *arg;
    /* asked about once a second while a call is armed for longer than
     * that: whether a stop was asked elsewhere (`nightshift stop`) */
    bool (*poll)(void *arg);
    void *poll_arg;
    double polled;
};

static void *watch(void *p)
{
    ns_watchdog *w = p;
    pthread_mutex_lock(&w->mu);
    while (!w->quit) {
        struct timespec ts; /* monotonic: a clock set back does not hold it */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (!w->armed || w->quit)
            continue;
        double now = ns__mono();
        if (w->poll && w->level == 0 && now - w->polled >= 1 && now - w->armed_at >= 1) {
            bool (*poll)(void *) = w->poll;
            void *parg = w->poll_arg;
            w->polled = now;
            pthread_mutex_unlock(&w->mu);
            bool asked = poll(parg);
            pthread_mutex_lock(&w->mu);
            if (asked)
                w->stop_now = true;
            if (!w->armed)
                continue;
        }
        bool stop = w->stop_now || (w->stop && *w->stop);
        if (w->level == 0 && (now >= w->deadline || stop)) {
            w->level = 1;
            w->why = stop && now < w->deadline ? NS_WD_STOP : NS_WD_LIMIT;
            w->fired_at = now;
            ns_interrupt_fn fn = w->fn;
            void *arg = w->arg;
            if (w->quick) {
                fn(arg, 1); /* disarm waits for it: arg outlives the call */
                continue;
            }
            pthread_mutex_unlock(&w->mu);
            fn(arg, 1);
            pthread_mutex_lock(&w->mu);
        } else if (w->level == 1 && now >= w->fired_at + GRACE) {
            w->level = 2;
            w->fn(w->arg, 2);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

ns_status ns__watchdog_start(volatile sig_atomic_t *stop, ns_watchdog **out, ns_error *err)
{
    ns_watchdog *w = calloc(1, sizeof(*w));
    if (!w)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    w->stop = stop;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, watch, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return ns__err(err, NS_ENOMEM, NULL, "cannot start the watchdog thread");
    }
    *out = w;
    return NS_OK;
}

void ns__watchdog_free(ns_watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void arm(ns_watchdog *w, double limit, ns_interrupt_fn fn, void *arg, bool quick)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    if (w->depth++ == 0) {
        w->quick = quick;
        w->armed = true;
        w->armed_at = ns__mono();
        w->deadline = w->armed_at + (limit > 0 ? limit : 1e12);
        w->level = 0;
        w->why = 0;
        w->fn = fn;
        w->arg = arg;
    }
    pthread_mutex_unlock(&w->mu);
}

void ns__watchdog_arm(ns_watchdog *w, double limit, ns_interrupt_fn fn, void *arg)
{
    arm(w, limit, fn, arg, false);
}

void ns__watchdog_arm_quick(ns_watchdog *w, double limit, ns_interrupt_fn fn, void *arg)
{
    arm(w, limit, fn, arg, true);
}

int ns__watchdog_disarm(ns_watchdog *w)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    int why = 0;
    if (w->depth > 0 && --w->depth == 0) {
        why = w->level ? w->why : 0;
        w->armed = false;
        w->level = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return why;
}

bool ns__watchdog_overdue(ns_watchdog *w)
{
    if (!w)
        return false;
    pthread_mutex_lock(&w->mu);
    bool late = w->armed && ns__mono() >= w->deadline;
    pthread_mutex_unlock(&w->mu);
    return late;
}

void ns__watchdog_set_poll(ns_watchdog *w, bool (*poll)(void *arg), void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->poll = poll;
    w->poll_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

void ns__watchdog_stop_now(ns_watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop_now = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

ns_status ns__watchdog_end(ns_watchdog *w, ns_status st, ns_error *err, const char *where,
                           const char *what, double limit)
{
    int why = ns__watchdog_disarm(w);
    if (!why || st == NS_OK || !err)
        return st;
    if (why == NS_WD_STOP) {
        ns__err_recode(err, NS_ESTOPPED);
        ns__err_prefix(err, "%s was cut short on a stop request", what);
    } else {
        char lim[32];
        ns__err_recode(err, NS_ETIMEDOUT);
        ns__err_prefix(err, "%s: %s ran past its statement_timeout (%s) and was cut short", where,
                       what, ns__duration_str((int64_t)(limit * 1000), lim));
    }
    return st;
}

void ns__cancel_init(ns_cancel *k, int fd, void (*send)(ns_cancel *), void (*drop)(ns_cancel *))
{
    k->send = send;
    k->drop = drop;
    k->fd = fd;
    k->refs = 1;
    pthread_mutex_init(&k->mu, NULL);
}

void ns__cancel_release(ns_cancel *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    bool last = --k->refs == 0;
    pthread_mutex_unlock(&k->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&k->mu);
    k->drop(k);
}

static void *send_cancel(void *arg)
{
    ns_cancel *k = arg;
    k->send(k);
    ns__cancel_release(k);
    return NULL;
}

void ns__cancel_interrupt(void *arg, int level)
{
    ns_cancel *k = arg;
    if (!k)
        return;
    if (level >= 2) {
        /* the blocked call fails at once; the connection is lost (08006) */
        shutdown(k->fd, SHUT_RDWR);
        return;
    }
    pthread_attr_t at;
    pthread_t t;
    pthread_mutex_lock(&k->mu);
    k->refs++;
    pthread_mutex_unlock(&k->mu);
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, send_cancel, k) != 0)
        ns__cancel_release(k);
    pthread_attr_destroy(&at);
}
