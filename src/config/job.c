/*
 * job.c - the job as the loader made it (config/job.h): its parameters,
 * connections, steps, exit codes and events looked up by name. Reading the
 * file is load.c's; this file reads nothing, so that everything the loader
 * is made of may use it.
 */
#include "config/job.h"

#include <string.h>

const char *ns_job_name(const ns_job *job)
{
    return job->name;
}

size_t ns_job_step_count(const ns_job *job)
{
    return job->nsteps;
}

long ns__job_step(const ns_job *job, const char *name)
{
    for (size_t i = 0; i < job->nsteps; i++)
        if (job->steps[i].name && strcmp(job->steps[i].name, name) == 0)
            return (long)i;
    return -1;
}

bool ns__exit_code_known(const char *code)
{
    static const char *const codes[] = {
        "COMPLETED", "COMPLETED_WITH_DIFFERENCES", "FAILED", "ASSERT_FAILED", "STOPPED", "*"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

const ns_param_def *ns__job_param(const ns_job *job, const char *name)
{
    for (size_t i = 0; i < job->nparams; i++)
        if (strcmp(job->params[i].name, name) == 0)
            return &job->params[i];
    return NULL;
}

const ns_conn_def *ns__job_conn(const ns_job *job, const char *name)
{
    for (size_t i = 0; i < job->nconns; i++)
        if (strcmp(job->conns[i].name, name) == 0)
            return &job->conns[i];
    return NULL;
}

const char *const ns__event_names[] = {
#define NS_XX(name, text) text,
    NS_NOTIFY_EVENTS(NS_XX)
#undef NS_XX
        NULL};

const char *ns__event_name(ns_event e)
{
    return e < NS_EVENT_COUNT ? ns__event_names[e] : "?";
}
