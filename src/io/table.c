/*
 * table.c - the `table` writer plugin: writer: {table: {connection, name,
 * mode, key}}. The connection's driver (src/db/<name>/) brings the writer;
 * each holds the checkpoint in the chunk's own transaction.
 */
#include "io/io.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct table_cfg {
    char *connection;
    char *name;
    int mode; /* ns_write_mode */
    ns_names key;
} table_cfg;

/* In ns_write_mode's order. */
static const char *const modes[] = {"insert", "upsert", "update", "replace", NULL};

static const ns_key table_keys[] = {
    {.name = "connection",
     .type = NS_KEY_CONNECTION,
     .offset = offsetof(table_cfg, connection),
     .flags = NS_KEY_REQUIRED},
    {.name = "name",
     .type = NS_KEY_IDENT,
     .offset = offsetof(table_cfg, name),
     .flags = NS_KEY_REQUIRED},
    {.name = "mode",
     .type = NS_KEY_ENUM,
     .offset = offsetof(table_cfg, mode),
     .def = "insert",
     .choices = modes},
    {.name = "key", .type = NS_KEY_NAMES, .offset = offsetof(table_cfg, key)},
    {0}};

static ns_status table_check(void *cfg, ns_key_ctx *ctx)
{
    table_cfg *t = cfg;
    bool keyed = t->mode == NS_MODE_UPSERT || t->mode == NS_MODE_UPDATE;
    if (t->key.v && !keyed)
        return ns__key_fail(ctx, "key", "only used with mode: upsert or update");
    if (!t->key.v && keyed)
        return ns__key_fail(
            ctx, "key", "is required with mode: upsert or update (the columns of a unique key)");
    return NS_OK;
}

ns_status ns__table_open_url(const ns_db_driver *driver, const char *url, const char *shown,
                             const char *table, ns_write_mode mode, const char *const *key,
                             size_t nkey, const ns_writer_args *args, ns_writer **out,
                             ns_error *err)
{
    const ns_writer_vt *vt = driver ? driver->table : NULL;
    ns_writer *w = NULL;
    ns_status st;
    if (!vt)
        return ns__err(err, NS_EUNSUPPORTED, NULL, "%s: no table writer for this database", shown);
    ns_writer_cfg cfg = {.url = url,
                         .conn_name = shown,
                         .driver = driver,
                         .share = args->share,
                         .lease = args->lease,
                         .table = table,
                         .watchdog = args->env ? args->env->watchdog : NULL,
                         .stmt_limit = args->stmt_limit,
                         .mode = mode,
                         .key = key,
                         .nkey = nkey,
                         .columns = args->columns,
                         .ncolumns = args->ncolumns};
    if ((st = ns__writer_new(vt, &w, err)) != NS_OK)
        return st;
    w->driver = driver;
    if ((st = vt->open(w, &cfg, err)) != NS_OK) {
        ns__writer_free(w);
        return st;
    }
    *out = w;
    return NS_OK;
}

ns_status ns__table_open(const char *conn, const char *table, ns_write_mode mode,
                         const char *const *key, size_t nkey, const ns_writer_args *args,
                         ns_writer **out, ns_error *err)
{
    const ns_io_env *env = args->env;
    char *url = NULL, *where = NULL;
    const ns_db_driver *driver = NULL;
    ns_status st = env->connection(env->ctx, conn, &url, &where, &driver, err);
    ns_writer_args a = *args;
    a.stmt_limit = env->stmt_limit ? env->stmt_limit(env->ctx, conn) : 0;
    if (st == NS_OK)
        st = ns__table_open_url(driver, url, where, table, mode, key, nkey, &a, out, err);
    free(url);
    free(where);
    return st;
}

static ns_status table_create(const void *cfg, const ns_writer_args *args, ns_writer **out,
                              ns_error *err)
{
    const table_cfg *t = cfg;
    return ns__table_open(t->connection, t->name, (ns_write_mode)t->mode,
                          (const char *const *)t->key.v, t->key.n, args, out, err);
}

static const ns_writer_factory table_factory = {table_create};

const ns_plugin ns__plugin_table = {NS_PLUGIN_WRITER,  "table",     NS_PLUGIN_VERSION, table_keys,
                                    sizeof(table_cfg), table_check, &table_factory};
