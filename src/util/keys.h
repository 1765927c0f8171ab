/*
 * keys.h - how a plugin (a reader, a writer, a processor, a step type)
 * declares the keys of its section of a job file: a table, as Redis's
 * standardConfig. The job loader (src/config/) walks a section by its
 * plugin's table: unknown keys, missing required ones and values of the
 * wrong kind are errors naming "file:line: key", defaults are filled in, and
 * the plugin's check() sees a complete configuration for the rules that
 * span keys. Nothing here knows YAML: a plugin includes this, not config/.
 */
#ifndef NS_KEYS_H
#define NS_KEYS_H

#include "util/util.h"

/* A list of distinct names (NS_KEY_NAMES). */
typedef struct ns_names {
    char **v;
    size_t n;
} ns_names;

/* A mapping of names to item templates (NS_KEY_MAP), in file order. */
typedef struct ns_map {
    char **names, **values;
    size_t n;
} ns_map;

/* A text given inline or read from a file beside the job (a script):
 * `origin` is how Lua and messages name it ("=job.yaml, steps[0].x" inline,
 * "@file.lua" from a file). */
typedef struct ns_text {
    char *text;
    size_t len;
    char *origin;
} ns_text;

typedef enum ns_key_type {
    NS_KEY_STRING,     /* char *: any text */
    NS_KEY_IDENT,      /* char *: a table name: not empty, no '"' */
    NS_KEY_TEMPLATE,   /* char *: may hold ${params.X}, ${env.X}, ... (checked) */
    NS_KEY_CONNECTION, /* char *: the name of one of the job's connections */
    NS_KEY_QUERY,      /* char *: one SQL statement; every :name a declared parameter */
    NS_KEY_SCRIPT,     /* char *: SQL statements (at least one); :name declared */
    NS_KEY_BOOL,       /* bool */
    NS_KEY_INT,        /* int64_t, from min to max */
    NS_KEY_CHAR,       /* char: one character ("\t" for a tab) */
    NS_KEY_NAMES,      /* ns_names: a non-empty list of distinct names */
    NS_KEY_ENUM,       /* int: the index of the value in choices */
    NS_KEY_TEXT,       /* ns_text: given inline */
    NS_KEY_FILE,       /* ns_text: the key names a file beside the job; its text */
    NS_KEY_SQL_FILE,   /* char *: the key names a file beside the job; its SQL script */
    NS_KEY_SECTION,    /* void *: a nested mapping read by `sub` into `sub_size` bytes */
    NS_KEY_DURATION,   /* double: seconds, written "10s", "500ms", "2m" or a number; min and
                          max in milliseconds */
    NS_KEY_NUMBER,     /* double: a decimal number from min to max */
    NS_KEY_ITEM,       /* char *: a TEMPLATE that may also hold ${item.FIELD}, ${item.FIELD|json}
                          and ${item.FIELD|url}, filled in for each item by the plugin */
    NS_KEY_MAP,        /* ns_map: a mapping of names to NS_KEY_ITEM templates (headers) */
} ns_key_type;

/* The key must be given. Keys that share an offset are alternatives (say
 * `lua:` or `file:`): with REQUIRED on one of them, exactly one is given. */
#define NS_KEY_REQUIRED 1u
/* A TEMPLATE that is a file path: a parameter's value that does not start
 * it may not add a folder to it (checked at launch). */
#define NS_KEY_PATH 2u
/* A SECTION may also be given as a plain string, read into its first key
 * (compare's output: a path, or {table: {...}}). */
#define NS_KEY_OR_STRING 4u
/* A TEMPLATE outside any step (a connection's URL): no ${step.name}. */
#define NS_KEY_NO_STEP 8u

typedef struct ns_key {
    const char *name;
    ns_key_type type;
    size_t offset; /* of the value in the plugin's configuration */
    unsigned flags;
    const char *def; /* the default, as it would be written in the job file */
    int64_t min, max;
    const char *const *choices; /* NS_KEY_ENUM: the values, NULL-terminated */
    const struct ns_key *sub;   /* NS_KEY_SECTION: its keys, ended by a NULL name */
    size_t sub_size;            /* NS_KEY_SECTION: the size of what they fill */
    const char *hint;           /* what a missing required key says */
} ns_key;

/* What a plugin's check() may ask and say (implemented by the loader). */
typedef struct ns_key_ctx ns_key_ctx;
/* Records "file:line: where.key: message" (the key's line when it was
 * given, else the section's); returns NS_ECONFIG. */
ns_status ns__key_fail(ns_key_ctx *c, const char *key, const char *fmt, ...) NS_PRINTF(3, 4);
/* Whether the job file gives the key (a dotted path into sections). */
bool ns__key_given(const ns_key_ctx *c, const char *key);

/* The kinds of plugins and their descriptor, found by the name used in the
 * job file in a registry (src/core/registry.c). */
typedef enum ns_plugin_kind {
    NS_PLUGIN_READER,
    NS_PLUGIN_WRITER,
    NS_PLUGIN_PROCESSOR,
    NS_PLUGIN_STEP
} ns_plugin_kind;

#define NS_PLUGIN_VERSION 1
typedef struct ns_plugin {
    ns_plugin_kind kind;
    const char *name;
    int version;        /* NS_PLUGIN_VERSION: checked when found */
    const ns_key *keys; /* its section's keys, ended by a NULL name */
    size_t cfg_size;    /* the configuration they fill */
    /* Optional: rules that span keys, once all are read. */
    ns_status (*check)(void *cfg, ns_key_ctx *ctx);
    /* What runs it: an ns_reader_factory, ns_writer_factory, ns_proc_vt or
     * ns_step_type, by kind. */
    const void *impl;
} ns_plugin;

/*
 * A database driver: what nightshift needs of one database family, found by
 * a connection string's form (sqlite:PATH, postgresql://..., mysql://...).
 * Each is a folder src/db/<name>/ and a line in src/core/registry.c
 * (CONTRIBUTING.md, "Database drivers"). Its vtables are declared where
 * their users are (io/io.h, repo/repo.h); here they are only named.
 */
struct ns_writer_vt;
struct ns_pager_vt;
struct ns_repo_vt;

#define NS_DRIVER_VERSION 1
typedef struct ns_db_driver {
    const char *name; /* "sqlite", "postgresql", "mysql" */
    int version;      /* NS_DRIVER_VERSION: checked when found */
    /* How its connection strings are written, for messages ("sqlite:PATH"). */
    const char *forms;
    /* Whether a connection string is one of this driver's. */
    bool (*accepts)(const char *url);
    /* Where a URL's local file path starts (sqlite: 7), resolved against
     * the launch directory; 0: its URLs name no local file. */
    size_t path_at;
    ns_placeholder placeholder;
    char quote; /* how an identifier is quoted: '"' (standard SQL), '`' (MySQL) */
    /* The table writer, which is also the SQL connection of the sql,
     * assert, rebuild and compare steps (ns_writer_vt.sql). */
    const struct ns_writer_vt *table;
    /* The query reader's pages (io/io.h). */
    const struct ns_pager_vt *pager;
    /* The job repository on it (repo/repo.h); NULL: it cannot hold one. */
    const struct ns_repo_vt *repo;
} ns_db_driver;

typedef struct ns_registry {
    const ns_plugin *const *plugins;
    size_t n;
    const ns_db_driver *const *drivers;
    size_t ndrivers;
} ns_registry;

/* The driver whose connection strings `url` is written as; NULL when none
 * (or of another version). The one place a connection string is classified
 * (util/dburl.c). */
const ns_db_driver *ns__db_find(const ns_registry *r, const char *url);
/* The forms the registry's drivers take, for a message: "sqlite:PATH,
 * postgresql://... or mysql://...". */
void ns__db_forms(const ns_registry *r, char *out, size_t n);

/* The plugin of a kind by name, NULL when none (or of another version). */
const ns_plugin *ns__plugin_find(const ns_registry *r, ns_plugin_kind kind, const char *name);

#endif
