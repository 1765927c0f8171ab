/*
 * loader.h - what the job file loader's files share (src/config/ only):
 * the loader, the YAML helpers that read and check one value and say
 * "FILE:LINE: KEY: message" when it is wrong, and the walker of key tables
 * (util/keys.h). job.c reads the job's structure; keys.c walks a section
 * by its table; schedule.c reads schedule: and notify:; loader.c holds the
 * helpers.
 */
#ifndef NS_CONFIG_LOADER_H
#define NS_CONFIG_LOADER_H

#include "config/job.h"

#include <yaml.h>

typedef struct loader {
    const char *path;
    yaml_document_t *doc;
    ns_error *err;
    ns_job *job;
    const ns_registry *reg; /* the plugins steps may name */
} loader;

/* What a plugin's check() is given (ns__key_fail, ns__key_given). */
struct ns_key_ctx {
    loader *l;
    const yaml_node_t *map; /* the section */
    const char *where;      /* its dotted name */
};

/* ------------------------------------------------------ loader.c */

/* Records "FILE:LINE: KEY: message" (n's line; 1 when n is NULL) and
 * returns NS_ECONFIG. */
ns_status ns__cfg_fail(loader *l, const yaml_node_t *n, const char *key, const char *fmt, ...)
    NS_PRINTF(4, 5);
yaml_node_t *ns__cfg_node(loader *l, int id);
/* A scalar node's text; NULL for anything else. */
const char *ns__cfg_scalar(const yaml_node_t *n);
/* The value of `key` in a mapping; NULL when not given. */
yaml_node_t *ns__cfg_get(loader *l, const yaml_node_t *map, const char *key);
/* Every key of the mapping is one of `allowed` (NULL-ended), once. */
ns_status ns__cfg_check_keys(loader *l, const yaml_node_t *map, const char *where,
                             const char *const *allowed);
/* a-z, 0-9, _ and - (job, step and connection names). */
bool ns__cfg_name_ok(const char *s);
/* One value of a kind, checked; each says what was expected. */
ns_status ns__cfg_string(loader *l, const yaml_node_t *n, const char *key, char **out);
ns_status ns__cfg_bool(loader *l, const yaml_node_t *n, const char *key, bool *out);
ns_status ns__cfg_int(loader *l, const yaml_node_t *n, const char *key, int64_t min, int64_t max,
                      int64_t *out);
ns_status ns__cfg_duration(loader *l, const yaml_node_t *n, const char *key, int64_t min_ms,
                           int64_t max_ms, double *out);
ns_status ns__cfg_number(loader *l, const yaml_node_t *n, const char *key, double min, double max,
                         double *out);
ns_status ns__cfg_char(loader *l, const yaml_node_t *n, const char *key, char *out);
ns_status ns__cfg_names(loader *l, const yaml_node_t *n, const char *key, char ***out,
                        size_t *nout);
/* A template's ${...} references, each one this place may use. */
ns_status ns__cfg_check_template(loader *l, const yaml_node_t *n, const char *key, const char *t,
                                 bool allow_step, bool allow_item);
ns_status ns__cfg_template(loader *l, const yaml_node_t *n, const char *key, bool allow_step,
                           char **out);
ns_status ns__cfg_map(loader *l, const yaml_node_t *n, const char *key, ns_map *m);
/* One of `choices` (NULL-ended): its index. */
ns_status ns__cfg_choice(loader *l, const yaml_node_t *n, const char *key,
                         const char *const *choices, int *out);
void ns__cfg_free_names(char **v, size_t n);
/* A whole file (a script); NULL when it cannot be read. */
char *ns__cfg_slurp(const char *path, size_t *len);
/* A path relative to the job file's folder: scripts live with the job. */
char *ns__cfg_beside(loader *l, const char *rel);
/* SQL text: its :name parameters declared, one query or a script. */
ns_status ns__cfg_check_sql(loader *l, const yaml_node_t *n, const char *key, const char *sql,
                            bool one);

/* -------------------------------------------------------- keys.c */

/* "a, b or c" */
void ns__cfg_join_or(const char *const *v, size_t n, char *buf, size_t len);
/* Reads a section by its table into cfg; strict: any key not in the
 * table is an error (not strict: the caller checked the others). */
ns_status ns__cfg_walk_keys(loader *l, const ns_key *keys, void *cfg, const yaml_node_t *n,
                            const char *where, bool strict);
ns_status ns__cfg_load_keys(loader *l, const ns_key *keys, void *cfg, const yaml_node_t *n,
                            const char *where);
void ns__cfg_free_keys(const ns_key *keys, void *cfg);
/* A plugin's configuration and what its keys hold. */
void ns__cfg_free_plugin(const ns_plugin *p, void *cfg);

/* ---------------------------------------------------- schedule.c */

ns_status ns__cfg_schedule(loader *l, const yaml_node_t *n);
ns_status ns__cfg_notify(loader *l, const yaml_node_t *n);

#endif
