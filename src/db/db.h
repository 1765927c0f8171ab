/*
 * db.h - the database drivers (src/db/<name>/), each a const ns_db_driver
 * (util/keys.h) listed in the registry, src/core/registry.c. Nothing below
 * core/ includes this: the run hands a connection's driver down.
 */
#ifndef NS_DB_H
#define NS_DB_H

#include "util/keys.h"

extern const ns_db_driver ns__driver_sqlite;
extern const ns_db_driver ns__driver_pg;
extern const ns_db_driver ns__driver_mysql;

#endif
