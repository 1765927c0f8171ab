/*
 * sqlite.h - what the files of the SQLite backend share: the table writer
 * and SQL connection (table.c), the query reader's pages (driver.c), the
 * job repository (repo.c) and lock waits (wait.c). Private to src/db/sqlite.
 */
#ifndef NS_DB_SQLITE_H
#define NS_DB_SQLITE_H

#include "io/io.h"

#include <sqlite3.h>
#include <stdatomic.h>

/* An SQLite connection's wait for another connection's lock: up to `limit`
 * seconds, ended at once when the watchdog cuts the call short (a stop
 * request, a statement_timeout). Lives as long as the connection. */
typedef struct ns_sqwait {
    struct sqlite3 *db;
    double limit, since;
    atomic_int cut;
} ns_sqwait;
/* Installs the busy handler on db (replacing its busy timeout). */
void ns__sqwait_init(ns_sqwait *q, struct sqlite3 *db, double limit);
/* Arms the watchdog for a call on q's connection (disarm as usual). */
void ns__sqwait_arm(ns_sqwait *q, ns_watchdog *wd, double limit);
/* The watchdog's ns_interrupt_fn for it. */
void ns__sqwait_interrupt(void *arg, int level);

/* table.c, repo.c */
extern const ns_writer_vt ns__writer_table_sqlite;
extern const struct ns_repo_vt ns__repo_sqlite;

#endif
