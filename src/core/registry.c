/*
 * registry.c - every plugin nightshift has, by kind and name: the readers,
 * writers, processors and step types a job file may name. The job loader
 * reads a step's sections by their plugins' key tables; the step runtime
 * runs them through their plugins' implementations. Adding one is a file
 * defining its ns_plugin and one line here (CONTRIBUTING.md). The same for
 * database drivers: a folder src/db/<name>/ and one line in `drivers`.
 */
#include "core/core.h"
#include "db/db.h"
#include "repo/repo.h"

static const ns_plugin *const plugins[] = {
    /* readers */
    &ns__plugin_csv,
    &ns__plugin_query,
    /* writers */
    &ns__plugin_table,
    &ns__plugin_file,
    &ns__plugin_http,
    /* processors */
    &ns__plugin_lua,
    /* step types; chunk (reader: and writer:) has no section of its own */
    &ns__plugin_chunk,
    &ns__plugin_sql,
    &ns__plugin_assert,
    &ns__plugin_rebuild,
    &ns__plugin_compare,
};

/* Database drivers, asked in this order which takes a connection string. */
static const ns_db_driver *const drivers[] = {
    &ns__driver_sqlite,
    &ns__driver_pg,
    &ns__driver_mysql,
};

const ns_registry ns__registry = {plugins, sizeof(plugins) / sizeof(plugins[0]), drivers,
                                  sizeof(drivers) / sizeof(drivers[0])};

const ns_db_driver *ns__db_driver(const char *url)
{
    return ns__db_find(&ns__registry, url);
}

static ns_status repo_open(const char *url, bool readonly, ns_repo **out, ns_error *err)
{
    if (!url || !*url)
        url = "sqlite:nightshift.db";
    const ns_db_driver *d = ns__db_driver(url);
    if (!d || !d->repo) {
        char shown[512], forms[256];
        ns__db_shown(url, shown, sizeof(shown));
        ns__db_forms(&ns__registry, forms, sizeof(forms));
        if (d)
            return ns__err(err, NS_EINVAL, NULL,
                           "repository '%s': the %s driver cannot hold a job repository", shown,
                           d->name);
        return ns__err(err, NS_EINVAL, NULL, "repository '%s': unsupported URL (use %s)", shown,
                       forms);
    }
    return ns__repo_open(d->repo, url, readonly, out, err);
}

ns_status ns_repo_open(const char *url, ns_repo **out, ns_error *err)
{
    return repo_open(url, false, out, err);
}

ns_status ns_repo_open_readonly(const char *url, ns_repo **out, ns_error *err)
{
    return repo_open(url, true, out, err);
}

int ns_plugin_at(size_t i, const char **kind, const char **name)
{
    static const char *const kinds[] = {"reader", "writer", "processor", "step"};
    if (i >= ns__registry.n)
        return 0;
    *kind = kinds[ns__registry.plugins[i]->kind];
    *name = ns__registry.plugins[i]->name;
    return 1;
}

const char *ns_plugin_key(size_t i, size_t j)
{
    if (i >= ns__registry.n || !ns__registry.plugins[i]->keys)
        return NULL;
    const ns_key *k = ns__registry.plugins[i]->keys;
    for (size_t n = 0; n < j; n++)
        if (!k[n].name)
            return NULL;
    return k[j].name;
}

ns_status ns_job_load(const char *path, ns_job **out, ns_error *err)
{
    return ns__job_load(path, &ns__registry, out, err);
}

ns_status ns_job_load_buffer(const char *name, const char *data, size_t len, ns_job **out,
                             ns_error *err)
{
    return ns__job_load_buffer(name, data, len, &ns__registry, out, err);
}
