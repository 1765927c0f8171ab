/*
 * template.c - the run-time ${...} engine: a job file's templates made
 * into the text a run uses, from its parameters, the environment (each
 * value registered as a secret), the job's and step's names and the
 * execution's id (docs/jobs.md, "Substitution"). The loader (config/job.c)
 * checks templates when the file loads; this file fills them in.
 */
#include "config/job.h"

#include <stdlib.h>
#include <string.h>

/* The value of one reference (the text between "${" and "}", whole: a
 * long ${env.X:-default} is never cut); *val borrowed, or in num. */
static ns_status lookup(char *ref, const char *t, const char *d, const ns_subst_ctx *ctx,
                        const char *what, const char **val, char num[32], ns_error *err)
{
    *val = NULL;
    if (strncmp(ref, "params.", 7) == 0) {
        for (size_t i = 0; i < ctx->nparams; i++)
            if (strcmp(ctx->param_names[i], ref + 7) == 0)
                *val = ctx->param_values[i];
        if (!*val)
            return ns__err(err, NS_EPARAM, NULL,
                           "%s: ${%s} has no value (pass %s=VALUE or give it a default)", what, ref,
                           ref + 7);
        if (ctx->path && d != t &&
            (strchr(*val, '/') || strcmp(*val, ".") == 0 || strcmp(*val, "..") == 0))
            return ns__err(err, NS_EPARAM, NULL,
                           "%s: parameter %s='%s' would add a folder to the path (a '/' or "
                           "'..' in a value inside a path); only a parameter that starts the "
                           "path may name folders",
                           what, ref + 7, *val);
        return NS_OK;
    }
    if (strncmp(ref, "env.", 4) == 0) {
        /* ${env.NAME:-default}: the default when NAME is unset or empty. */
        char *dflt = strstr(ref + 4, ":-");
        if (dflt)
            *dflt = '\0';
        *val = getenv(ref + 4);
        if (dflt && (!*val || !**val))
            *val = dflt + 2;
        if (!*val)
            return ns__err(err, NS_EPARAM, NULL, "%s: environment variable %s is not set", what,
                           ref + 4);
        /* The value from the environment is a secret; a default written in
         * the job file is not. */
        if (ctx->secrets && !(dflt && *val == dflt + 2))
            ns__secrets_add(ctx->secrets, *val, strlen(*val));
        return NS_OK;
    }
    if (strcmp(ref, "job.name") == 0 && ctx->job)
        *val = ctx->job->name;
    else if (strcmp(ref, "execution.id") == 0 && ctx->execution_id) {
        snprintf(num, 32, "%lld", (long long)ctx->execution_id);
        *val = num;
    } else if (strcmp(ref, "step.name") == 0 && ctx->step)
        *val = ctx->step;
    else
        return ns__err(err, NS_ECONFIG, NULL, "%s: ${%s} cannot be used here", what, ref);
    return NS_OK;
}

ns_status ns__subst(const char *t, const ns_subst_ctx *ctx, const char *what, char **out,
                    ns_error *err)
{
    ns_buf b = {0};
    const char *p = t;
    ns_status st = NS_OK;

    while (*p && st == NS_OK) {
        const char *d = strstr(p, "${");
        if (!d) {
            ns__buf_append(&b, p, strlen(p));
            break;
        }
        if (d > t && d[-1] == '$') { /* "$${" -> "${" (kept escaped with keep_env) */
            ns__buf_append(&b, p, (size_t)(d - p - 1));
            ns__buf_append(&b, ctx->keep_env ? "$${" : "${", ctx->keep_env ? 3 : 2);
            p = d + 2;
            continue;
        }
        ns__buf_append(&b, p, (size_t)(d - p));
        const char *e = strchr(d, '}');
        if (!e) {
            st = ns__err(err, NS_ECONFIG, NULL, "%s: '${' without '}'", what);
            break;
        }
        p = e + 1;
        if (ctx->keep_env && strncmp(d + 2, "env.", 4) == 0) {
            ns__buf_append(&b, d, (size_t)(e - d + 1));
            continue;
        }
        char *ref = ns__strndup(d + 2, (size_t)(e - d - 2)), num[32];
        const char *val = NULL;
        st = ref ? lookup(ref, t, d, ctx, what, &val, num, err)
                 : ns__err(err, NS_ENOMEM, NULL, "out of memory");
        for (const char *v = val; st == NS_OK && *v; v++) {
            if (ctx->keep_env && v[0] == '$' && v[1] == '{')
                ns__buf_putc(&b, '$'); /* a value is never read as a reference */
            ns__buf_putc(&b, *v);
        }
        free(ref);
    }
    ns__buf_cstr(&b);
    if (st == NS_OK && (!b.data || b.failed))
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (st != NS_OK) {
        ns__buf_free(&b);
        return st;
    }
    *out = b.data;
    return NS_OK;
}
