/*
 * params.c - a launch's parameters: NAME=VALUE arguments, defaults and types
 * (docs/jobs.md, "Parameters"), and the paths they may not lead astray.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ns__params_free(ns__params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->names[i]);
        free(p->values[i]);
    }
    free(p->v);
    free(p->names);
    free(p->values);
    free(p->types);
    memset(p, 0, sizeof(*p));
}

ns_status ns__params_add(ns__params *p, const char *name, const char *type, const char *value,
                         bool identifying, ns_error *err)
{
    size_t n = p->n + 1;
    ns_param_val *v = realloc(p->v, n * sizeof(*v));
    char **names = v ? realloc(p->names, n * sizeof(*names)) : NULL;
    char **values = names ? realloc(p->values, n * sizeof(*values)) : NULL;
    const char **types = values ? realloc(p->types, n * sizeof(*types)) : NULL;
    if (v)
        p->v = v;
    if (names)
        p->names = names;
    if (values)
        p->values = values;
    if (!types)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    p->types = types;
    p->types[p->n] = type;
    p->names[p->n] = ns__strdup(name);
    p->values[p->n] = ns__strdup(value);
    if (!p->names[p->n] || !p->values[p->n]) {
        free(p->names[p->n]); /* not counted in p->n: ns__params_free would miss them */
        free(p->values[p->n]);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    p->v[p->n] = (ns_param_val){p->names[p->n], type, p->values[p->n], identifying};
    p->n = n;
    return NS_OK;
}

/* Applies NAME=VALUE arguments, defaults and types (docs/jobs.md). */
ns_status ns__params_resolve(const ns_job *job, const char *const *args, size_t nargs,
                             ns__params *out, ns_error *err)
{
    const char **given = calloc(job->nparams + 1, sizeof(*given));
    const char *run_id = NULL;
    ns_status st = NS_OK;

    if (!given)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < nargs && st == NS_OK; i++) {
        const char *eq = strchr(args[i], '=');
        if (!eq || eq == args[i]) {
            st = ns__err(err, NS_EPARAM, NULL, "'%s': parameters are given as NAME=VALUE", args[i]);
            break;
        }
        size_t len = (size_t)(eq - args[i]), vlen = strlen(eq + 1);
        if (ns__utf8_valid_prefix((const unsigned char *)args[i], len) < len) {
            st = ns__err(err, NS_EPARAM, NULL,
                         "argument %zu: the parameter's name is not valid UTF-8", i + 1);
            break;
        }
        size_t ok = ns__utf8_valid_prefix((const unsigned char *)eq + 1, vlen);
        if (ok < vlen) {
            /* Stored in the repository, shown as JSON, bound into SQL: a
             * value must be text. */
            st = ns__err(err, NS_EPARAM, NULL,
                         "parameter '%.*s': the value is not valid UTF-8 (byte %zu is 0x%02X)",
                         (int)len, args[i], ok + 1, (unsigned)(unsigned char)eq[1 + ok]);
            break;
        }
        if (len == 6 && strncmp(args[i], "run.id", 6) == 0) {
            run_id = eq + 1;
            continue;
        }
        size_t k = 0;
        while (k < job->nparams && !(strlen(job->params[k].name) == len &&
                                     strncmp(job->params[k].name, args[i], len) == 0))
            k++;
        if (k == job->nparams) {
            ns_buf names = {0};
            for (size_t j = 0; j < job->nparams; j++)
                ns__buf_printf(&names, "%s%s", j ? ", " : "", job->params[j].name);
            st = ns__err(err, NS_EPARAM, NULL, "unknown parameter '%.*s' (job %s declares: %s)",
                         (int)len, args[i], job->name, names.len ? ns__buf_cstr(&names) : "none");
            ns__buf_free(&names);
            break;
        }
        given[k] = eq + 1;
    }
    for (size_t k = 0; k < job->nparams && st == NS_OK; k++) {
        const ns_param_def *d = &job->params[k];
        const char *text = given[k] ? given[k] : d->def;
        char *value = NULL, why[256];
        if (!text) {
            if (d->required)
                st = ns__err(err, NS_EPARAM, NULL, "parameter '%s' is required (pass %s=VALUE)",
                             d->name, d->name);
            continue;
        }
        if (!ns__param_value(d->type, text, NULL, why, sizeof(why))) {
            st = ns__err(err, NS_EPARAM, NULL, "parameter '%s' (%s): %s", d->name,
                         ns__ptype_name(d->type), why);
            break;
        }
        /* Valid: a failure now is the copy's (out of memory, not a usage error). */
        if (!ns__param_value(d->type, text, &value, why, sizeof(why))) {
            st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
            break;
        }
        st = ns__params_add(out, d->name, ns__ptype_name(d->type), value, d->identifying, err);
        free(value);
    }
    if (st == NS_OK && run_id) {
        int64_t x;
        if (!ns__parse_i64(run_id, strlen(run_id), &x))
            st =
                ns__err(err, NS_EPARAM, NULL, "parameter 'run.id': '%s' is not an integer", run_id);
        else
            st = ns__params_add(out, "run.id", "int", run_id, true, err);
    }
    free(given);
    return st;
}

/* Refuses, before anything runs, parameters that would lead a path out of
 * its folder (see ns_subst_ctx.path): the run would fail at that step. */
typedef struct path_check {
    ns_subst_ctx c;
    ns_error *err;
    ns_status st;
} path_check;

static bool check_path(void *arg, const ns_step_def *s, const char *key, const char *tmpl,
                       unsigned flags)
{
    path_check *pc = arg;
    char *out = NULL;
    if (!(flags & NS_KEY_PATH))
        return true;
    pc->c.step = s->name;
    ns_status st = ns__subst(tmpl, &pc->c, key, &out, pc->err);
    free(out);
    if (st == NS_EPARAM) {
        pc->st = st;
        return false;
    }
    ns_error_clear(pc->err); /* anything else is found when the step runs */
    return true;
}

/* Every key a plugin marks as a path (NS_KEY_PATH), and the rejects file. */
ns_status ns__params_check_paths(const ns_job *job, const ns__params *p, ns_error *err)
{
    path_check pc = {.c = {.job = job,
                           .param_names = (const char *const *)p->names,
                           .param_values = (const char *const *)p->values,
                           .nparams = p->n,
                           .execution_id = 1,
                           .keep_env = true,
                           .path = true},
                     .err = err,
                     .st = NS_OK};
    ns__job_templates(job, check_path, &pc);
    return pc.st;
}

/* ----------------------------------------------------------- steps */
