/* progress.c - what a running job shows: live progress on a terminal
 * (items, items/s, percent and ETA when the input size is known), one summary
 * line per step in pipes and CI. Also the signal handlers. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool tty;
static double last_draw;
static volatile sig_atomic_t signalled;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1234567 -> "1,234,567" */
static const char *num(long long v, char *buf, size_t n)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof(tmp), "%lld", v < 0 ? -v : v);
    size_t o = 0;
    if (v < 0 && o + 1 < n)
        buf[o++] = '-';
    for (int i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

static void on_start(void *ud, const ns_progress *p)
{
    (void)ud;
    last_draw = 0;
    if (tty)
        fprintf(stderr, "%s: starting\r", p->step);
}

static void on_chunk(void *ud, const ns_progress *p)
{
    char a[32], b[32];
    (void)ud;
    if (!tty)
        return;
    double t = now();
    if (t - last_draw < 0.2)
        return;
    last_draw = t;
    double rate = p->elapsed > 0 ? (double)p->counts.read / p->elapsed : 0;
    fprintf(stderr, "\r\033[K%s: %s items  %s/s", p->step, num(p->counts.read, a, sizeof(a)),
            num((long long)rate, b, sizeof(b)));
    if (p->bytes_total > 0 && p->bytes_done >= 0) {
        double frac = (double)p->bytes_done / (double)p->bytes_total;
        fprintf(stderr, "  %3.0f%%", frac * 100);
        if (frac > 0.01 && p->elapsed > 1) {
            double eta = p->elapsed * (1 - frac) / frac;
            fprintf(stderr, "  ETA %d:%02d", (int)eta / 60, (int)eta % 60);
        }
    }
    if (signalled)
        fprintf(stderr, "  (stopping after this chunk)");
}

static void on_end(void *ud, const ns_progress *p)
{
    char r[32], w[32], sk[32];
    const ns_counts *c = &p->counts;
    (void)ud;
    if (tty)
        fprintf(stderr, "\r\033[K");
    long long skipped = c->read_skip + c->process_skip + c->write_skip;
    fprintf(stderr, "%s: %s  read %s  written %s  skipped %s", p->step,
            ns_batch_status_name(p->status), num(c->read, r, sizeof(r)),
            num(c->write, w, sizeof(w)), num(skipped, sk, sizeof(sk)));
    if (skipped)
        fprintf(stderr, " (read %lld, process %lld, write %lld)", (long long)c->read_skip,
                (long long)c->process_skip, (long long)c->write_skip);
    if (c->filter)
        fprintf(stderr, "  filtered %lld", (long long)c->filter);
    fprintf(stderr, "  commits %lld  %.2fs", (long long)c->commit, p->elapsed);
    if (p->elapsed > 0 && c->read)
        fprintf(stderr, "  %s items/s",
                num((long long)((double)c->read / p->elapsed), r, sizeof(r)));
    fputc('\n', stderr);
    if (p->rejects)
        fprintf(stderr, "%s: rejected records are in %s\n", p->step, p->rejects);
}

static void on_notice(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "%snightshift: %s\n", tty ? "\r\033[K" : "", msg);
}

const ns_listener *cli_listener(void)
{
    static ns_listener l = {NULL, on_start, on_chunk, on_end, on_notice};
    tty = isatty(STDERR_FILENO) && !getenv("CI");
    return &l;
}

static void on_signal(int sig)
{
    ns_request_stop();
    signalled = 1;
    /* A second signal ends the process at once; restart is safe anyway. */
    signal(sig, SIG_DFL);
}

void cli_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_outcome(ns_status st, const ns_outcome *out, const ns_error *err)
{
    if (st != NS_OK) {
        cli_error(err);
        return out->exit_code;
    }
    fprintf(stderr, "execution %lld: %s%s%s\n", (long long)out->execution_id,
            ns_batch_status_name(out->status), out->message[0] ? ": " : "", out->message);
    return out->exit_code;
}
