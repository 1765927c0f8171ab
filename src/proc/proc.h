/*
 * proc.h - processors: what happens to an item between reader and writer.
 *
 * A processor sees each readable item once, in read order, and decides: write
 * it (possibly changed), filter it (counted, not written) or reject it (a
 * process skip, written to the rejects file with its line). Like readers and
 * writers, processors are vtables found by name.
 */
#ifndef NS_PROC_H
#define NS_PROC_H

#include "io/io.h"

#include <jansson.h>

typedef enum ns_proc_result {
    NS_PROC_WRITE,  /* write the item (its fields may have been replaced) */
    NS_PROC_FILTER, /* drop it: counted as filtered */
    NS_PROC_REJECT  /* reject it: it->code and it->message say why */
} ns_proc_result;

/* What a processor is opened with, besides its plugin's configuration. */
typedef struct ns_proc_args {
    const char *const *columns; /* the input's field names, in order */
    size_t ncolumns;
    const char *const *param_names; /* the job's parameters (open(params)) */
    const char *const *param_values;
    size_t nparams;
    int64_t memory_limit; /* bytes for the whole script; 0: the default */
} ns_proc_args;

/* A checkpoint is written with every chunk: a processor's state keeps it
 * under this many bytes of JSON. */
#define NS_PROC_STATE_MAX ((size_t)1 << 20)

typedef struct ns_proc ns_proc;
typedef struct ns_proc_vt {
    const char *name;
    int version;
    size_t instance_size;
    /* Prepares the processor (for a script: compiles and loads it) with
     * its plugin's configuration (its own struct). */
    ns_status (*open)(ns_proc *p, const void *cfg, const ns_proc_args *args, ns_error *err);
    /* Starts it before the first item: `saved` is the state the last
     * committed chunk saved (see save), NULL on a fresh start. */
    ns_status (*start)(ns_proc *p, json_t *saved, ns_error *err);
    /* The state to keep with the chunk about to commit, restored by start()
     * on a restart: *out a new reference, or NULL when there is none. The
     * checkpoint carrying it may be at most NS_PROC_STATE_MAX bytes. */
    ns_status (*save)(ns_proc *p, json_t **out, ns_error *err);
    /* The output field names (borrowed until close). */
    const char *const *(*columns)(ns_proc *p, size_t *n);
    /* Processes one item. On NS_PROC_WRITE the item's fields may now point
     * into `arena`; on NS_PROC_REJECT it->code/message are set (in `arena`).
     * An error return means the step cannot go on (out of memory, ...). */
    ns_status (*process)(ns_proc *p, ns_item *it, ns_arena *arena, ns_proc_result *res,
                         ns_error *err);
    /* Called once at the end of a step that read everything. */
    ns_status (*finish)(ns_proc *p, ns_error *err);
    void (*close)(ns_proc *p);
} ns_proc_vt;
struct ns_proc {
    const ns_proc_vt *vt;
};

#define NS_PROC_VERSION 2
extern const ns_proc_vt ns__proc_lua;
/* processor: {lua: CODE | file: PATH, columns: [...], instructions: N} */
extern const ns_plugin ns__plugin_lua;

ns_status ns__proc_new(const ns_proc_vt *vt, ns_proc **out, ns_error *err);
void ns__proc_free(ns_proc *p);

#endif
