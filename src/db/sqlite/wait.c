/*
 * wait.c - how an SQLite connection waits for another's lock, and how a
 * stop request or a statement_timeout reaches it (docs/operations.md,
 * "Timeouts"). SQLite's own busy timeout sleeps through both; this busy
 * handler naps briefly and gives up (SQLITE_BUSY) as soon as the watchdog
 * has cut the call short, and a progress handler interrupts a statement
 * that runs. The watchdog only raises a flag: both handlers run in the
 * statement's own thread, so nothing touches the connection from another
 * (sqlite3_interrupt is unsafe on a connection that may close meanwhile).
 */
#include "db/sqlite/sqlite.h"

#include <sqlite3.h>

static int busy(void *arg, int n)
{
    ns_sqwait *q = arg;
    double now = ns__mono();
    if (n == 0)
        q->since = now;
    if (atomic_load(&q->cut) || now - q->since >= q->limit)
        return 0;
    sqlite3_sleep(n < 10 ? n + 1 : 20);
    return 1;
}

/* Nonzero: the running statement stops (SQLITE_INTERRUPT). */
static int progress(void *arg)
{
    return atomic_load(&((ns_sqwait *)arg)->cut);
}

void ns__sqwait_init(ns_sqwait *q, struct sqlite3 *db, double limit)
{
    q->db = db;
    q->limit = limit;
    sqlite3_busy_handler(db, busy, q);
    sqlite3_progress_handler(db, 1000, progress, q);
}

void ns__sqwait_interrupt(void *arg, int level)
{
    (void)level; /* no connection to drop: each level raises the flag */
    atomic_store(&((ns_sqwait *)arg)->cut, 1);
}

void ns__sqwait_arm(ns_sqwait *q, ns_watchdog *wd, double limit)
{
    atomic_store(&q->cut, 0);
    ns__watchdog_arm_quick(wd, limit, ns__sqwait_interrupt, q);
}
