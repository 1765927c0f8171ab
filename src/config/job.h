/*
 * job.h - the job definition: what a job file says, validated.
 *
 * String values that may hold ${...} references are kept as templates and
 * substituted at run time by ns__subst(), once the parameters and the
 * execution id are known.
 */
#ifndef NS_JOB_H
#define NS_JOB_H

#include "util/util.h"

typedef enum ns_ptype {
    NS_P_STRING,
    NS_P_INT,
    NS_P_FLOAT,
    NS_P_BOOL,
    NS_P_DATE,
    NS_P_TIMESTAMP
} ns_ptype;

typedef struct ns_param_def {
    char *name;
    ns_ptype type;
    bool required, identifying;
    char *def; /* default value text, NULL when none */
    int line;
} ns_param_def;

typedef struct ns_conn_def {
    char *name;
    char *url; /* template */
    int line;
} ns_conn_def;

typedef enum ns_write_mode {
    NS_MODE_INSERT,
    NS_MODE_UPSERT,
    NS_MODE_REPLACE,
    NS_MODE_UPDATE /* UPDATE ... WHERE key: changes existing rows only */
} ns_write_mode;

/* What a step does. */
typedef enum ns_step_kind {
    NS_STEP_CHUNK,   /* reader -> (processor) -> writer, in chunks */
    NS_STEP_SQL,     /* a script, in one transaction */
    NS_STEP_ASSERT,  /* a query whose rows are failures */
    NS_STEP_REBUILD, /* a derived table replaced by a query's rows, atomically */
    NS_STEP_COMPARE, /* two queries matched by key, differences written out */
} ns_step_kind;

/* on: {EXIT_CODE: target} - target is a step name, "end", "fail" or "stop". */
typedef struct ns_transition {
    char *code; /* an exit code, or "*" for any other */
    char *to;
    int line;
} ns_transition;

typedef struct ns_step_def {
    char *name;
    int line;
    ns_step_kind kind;
    ns_transition *on;
    size_t non;

    /* sql, assert, rebuild */
    char *sql_conn;      /* connection name */
    char *sql_text;      /* the script (sql), the query (assert, rebuild) */
    char *rebuild_table; /* rebuild: the table replaced */

    /* compare */
    char *cmp_conn[2], *cmp_sql[2]; /* left, right */
    char **cmp_key;
    size_t cmp_nkey;
    char **cmp_columns; /* NULL: the left query's columns that are not the key */
    size_t cmp_ncolumns;
    char *cmp_output;   /* CSV path (template), when not a table */
    char *cmp_out_conn; /* or a table on a connection */
    char *cmp_out_table;

    int64_t chunk;
    int64_t skip_limit;
    char *rejects; /* template */

    /* reader: csv or query */
    enum { NS_READER_CSV, NS_READER_QUERY } reader;
    char *query_conn; /* connection name */
    char *query_sql;  /* SQL; job parameters appear as :name, bound, never pasted */
    char **query_key; /* the unique key the pages are ordered and continued by */
    size_t query_nkey;
    char *csv_path; /* template */
    bool csv_header;
    char csv_delimiter, csv_quote;
    char **csv_columns;
    size_t csv_ncolumns;

    /* processor: lua (optional; proc_code NULL when none) */
    char *proc_code; /* the script's text, inline or read from its file at load */
    size_t proc_len;
    char *proc_chunkname; /* how Lua names it in messages ("@file.lua", "=...") */
    char **proc_columns;  /* output columns when they differ from the input's */
    size_t proc_ncolumns;
    int64_t proc_instructions; /* per call */

    /* writer: table */
    char *table_conn; /* connection name */
    char *table_name;
    ns_write_mode table_mode;
    char **table_key;
    size_t table_nkey;
} ns_step_def;

struct ns_job {
    char *path; /* absolute path of the file, "" for a buffer */
    char *name;
    char *description;
    bool restartable;
    ns_param_def *params;
    size_t nparams;
    ns_conn_def *conns;
    size_t nconns;
    ns_step_def *steps;
    size_t nsteps;
};

const ns_param_def *ns__job_param(const ns_job *job, const char *name);
/* The index of the step named `name`, -1 when none. */
long ns__job_step(const ns_job *job, const char *name);
/* An exit code a step can end with (or "*"), for on: keys. */
bool ns__exit_code_known(const char *code);
const ns_conn_def *ns__job_conn(const ns_job *job, const char *name);
const char *ns__ptype_name(ns_ptype t);

/*
 * Checks a parameter value against its type and writes its canonical text
 * (dates `today`/`yesterday` resolved, booleans as true/false) into *out
 * (malloc'd). On error writes a reason into why.
 */
bool ns__param_value(ns_ptype type, const char *text, char **out, char *why, size_t whylen);

/* Checks that every ${env.X} the job uses is set (before anything runs). */
ns_status ns__job_check_env(const ns_job *job, ns_error *err);

/* Values for ${...} substitution. Any member may be NULL/0 when not known yet. */
typedef struct ns_subst_ctx {
    const ns_job *job;
    const char *const *param_names;
    const char *const *param_values;
    size_t nparams;
    int64_t execution_id;
    const char *step;
    /* Leave ${env.X} as it is (and escape "${" in other values as "$${"), so
     * the result can be shown and stored; substituting it again (without
     * keep_env) gives the real value. */
    bool keep_env;
    /* When set, every ${env.X} value substituted is registered here, so
     * that no message can quote it back (see ns__redact). */
    ns_secrets *secrets;
    /* The template is a file path: a parameter's value that does not start
     * it may not add a path component ('/', or a whole "." or ".."), so
     * `rejects/${params.tag}.csv` stays in rejects/ whatever tag is. A value
     * that starts the path (`${params.file}`) names it as it likes. */
    bool path;
} ns_subst_ctx;

/*
 * Substitutes ${params.X}, ${env.X}, ${job.name}, ${execution.id},
 * ${step.name} in tmpl. *out is malloc'd. `what` names the value in errors.
 */
ns_status ns__subst(const char *tmpl, const ns_subst_ctx *ctx, const char *what, char **out,
                    ns_error *err);

#endif
