/*
 * sqwait.c - how an SQLite connection waits for another's lock, and how a
 * stop request or a statement_timeout reaches it (docs/operations.md,
 * "Timeouts"). SQLite's own busy timeout sleeps through both; this busy
 * handler naps briefly and gives up (SQLITE_BUSY) as soon as the watchdog
 * has cut the statement short, and the watchdog's interrupt also stops a
 * statement that runs (sqlite3_interrupt).
 */
#include "util.h"

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

void ns__sqwait_init(ns_sqwait *q, struct sqlite3 *db, double limit)
{
    q->db = db;
    q->limit = limit;
    atomic_store(&q->cut, 0);
    sqlite3_busy_handler(db, busy, q);
}

void ns__sqwait_interrupt(void *arg, int level)
{
    ns_sqwait *q = arg;
    (void)level; /* no connection to drop: each level interrupts */
    atomic_store(&q->cut, 1);
    sqlite3_interrupt(q->db);
}

void ns__sqwait_arm(ns_sqwait *q, ns_watchdog *wd, double limit)
{
    atomic_store(&q->cut, 0);
    ns__watchdog_arm(wd, limit, ns__sqwait_interrupt, q);
}
