/* progress.c - what a running job shows: live progress on a terminal
 * (items, items/s, percent and ETA when the input size is known), one summary
 * line per step in pipes and CI. Also the signal handlers. */
#include "cli.h"
#include "fmt.h"

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
    const ns_counts *c = &p->counts;
    long long skipped = c->read_skip + c->process_skip + c->write_skip;
    fprintf(stderr, "\r\033[K%s: %s items  %s/s", p->step, fmt_count(c->read, a, sizeof(a)),
            fmt_count((long long)rate, b, sizeof(b)));
    if (skipped)
        fprintf(stderr, "  skipped %s", fmt_count(skipped, a, sizeof(a)));
    if (p->bytes_total > 0 && p->bytes_done >= 0) {
        double frac = (double)p->bytes_done / (double)p->bytes_total;
        /* After a restart only what this run read tells its speed. */
        int64_t start = p->bytes_start > 0 ? p->bytes_start : 0;
        double done = (double)(p->bytes_done - start),
               left = (double)(p->bytes_total - p->bytes_done);
        fprintf(stderr, "  %3.0f%%", frac * 100);
        if (done > 0 && done > 0.01 * (double)(p->bytes_total - start) && p->elapsed > 1) {
            double eta = p->elapsed * left / done;
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
            ns_batch_status_name(p->status), fmt_count(c->read, r, sizeof(r)),
            fmt_count(c->write, w, sizeof(w)), fmt_count(skipped, sk, sizeof(sk)));
    if (skipped) {
        char x[32], y[32], z[32];
        fprintf(stderr, " (read %s, process %s, write %s)", fmt_count(c->read_skip, x, sizeof(x)),
                fmt_count(c->process_skip, y, sizeof(y)), fmt_count(c->write_skip, z, sizeof(z)));
    }
    if (c->filter)
        fprintf(stderr, "  filtered %s", fmt_count(c->filter, r, sizeof(r)));
    fprintf(stderr, "  commits %s  %.2fs", fmt_count(c->commit, r, sizeof(r)), p->elapsed);
    if (p->elapsed > 0 && c->read)
        fprintf(stderr, "  %s items/s",
                fmt_count((long long)((double)c->read / p->elapsed), r, sizeof(r)));
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
    static ns_listener l = {
        .step_start = on_start, .chunk = on_chunk, .step_end = on_end, .notice = on_notice};
    tty = isatty(STDERR_FILENO) && !getenv("CI");
    return &l;
}

static volatile sig_atomic_t stop_token;

volatile sig_atomic_t *cli_stop_token(void)
{
    return &stop_token;
}

static void on_signal(int sig)
{
    stop_token = 1; /* the run stops after its current chunk */
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
    /* The exit code, as `show` gives it, when it says more than the status. */
    fprintf(stderr, "execution %lld: %s%s%s\n", (long long)out->execution_id,
            out->code[0] ? out->code : ns_batch_status_name(out->status),
            out->message[0] ? ": " : "", out->message);
    return out->exit_code;
}
