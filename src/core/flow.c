/*
 * flow.c - a job's steps in the order its on: graph says, each run by its
 * step type.
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

/* Where the flow goes after step i ended with `code`: the index of the next
 * step, or -1 with the job's outcome in *end. `replay`: the step completed in
 * an earlier execution, so a `stop` it led to has been honoured already. */
static long next_step(const ns_job *job, size_t i, ns_batch_status status, const char *code,
                      bool replay, ns_batch_status *end)
{
    const ns_step_def *s = &job->steps[i];
    const char *to = NULL;
    for (size_t k = 0; k < s->non && !to; k++)
        if (strcmp(s->on[k].code, code) == 0)
            to = s->on[k].to;
    for (size_t k = 0; k < s->non && !to; k++)
        if (strcmp(s->on[k].code, "*") == 0)
            to = s->on[k].to;
    if (to && strcmp(to, "end") == 0)
        return *end = NS_BATCH_COMPLETED, -1;
    if (to && strcmp(to, "fail") == 0)
        return *end = NS_BATCH_FAILED, -1;
    if (to && strcmp(to, "stop") == 0 && !replay)
        return *end = NS_BATCH_STOPPED, -1;
    if (to && strcmp(to, "stop") != 0)
        return ns__job_step(job, to);
    /* No transition: on in file order after a success, else the job ends. */
    if (status == NS_BATCH_COMPLETED)
        return i + 1 < job->nsteps ? (long)i + 1 : (*end = NS_BATCH_COMPLETED, -1);
    return *end = status == NS_BATCH_STOPPED ? NS_BATCH_STOPPED : NS_BATCH_FAILED, -1;
}

void ns__flow_run(run_ctx *rc, char *code, size_t codelen, char *msg, size_t msglen,
                  ns_batch_status *end)
{
    const ns_job *job = rc->job;
    ns_repo *repo = rc->repo;
    ns_batch_status status = NS_BATCH_COMPLETED;

    /* From the first step, each step's exit code picks the next (on:, else
     * the next in file order after a success). A step completed by an
     * earlier execution of the instance is not run again; its recorded exit
     * code steers the flow as it did then. */
    *end = NS_BATCH_COMPLETED;
    for (long i = 0; i >= 0;) {
        const ns_step_def *def = &job->steps[i];
        char smsg[1024] = "";
        ns_step_state ss = {0};
        ns_error e = {0};
        bool replay = false;
        /* What runs the step: its type plugin's (see src/core/registry.c). */
        const ns_step_type *t = def->type ? def->type->impl : NULL;
        if (repo->vt->step_state(repo, rc->launch.instance_id, def->name, &ss, &e) != NS_OK) {
            status = NS_BATCH_FAILED;
            snprintf(code, codelen, "FAILED");
            snprintf(smsg, sizeof(smsg), "%s", e.message);
        } else if (ss.completed) {
            ns__run_notice(rc, "step %s: already completed for this instance (%s); not run again",
                           def->name, ss.exit_code);
            status = NS_BATCH_COMPLETED;
            snprintf(code, codelen, "%s", ss.exit_code[0] ? ss.exit_code : "COMPLETED");
            replay = true;
        } else if (!t || t->version != NS_STEP_TYPE_VERSION) {
            status = NS_BATCH_FAILED;
            snprintf(code, codelen, "FAILED");
            snprintf(smsg, sizeof(smsg), "no step type of version %d for this step",
                     NS_STEP_TYPE_VERSION);
        } else {
            t->run(rc, def, &status, code, codelen, smsg, sizeof(smsg));
        }
        free(ss.context);
        /* The job's message: the failing step's, else each step's note. */
        size_t used = status == NS_BATCH_COMPLETED ? strlen(msg) : 0;
        if (smsg[0] && snprintf(msg + used, msglen - used, "%sstep %s: %s", used ? "; " : "",
                                def->name, smsg) < 0)
            msg[used] = '\0';
        i = next_step(job, (size_t)i, status, code, replay, end);
        if (i >= 0 && status == NS_BATCH_COMPLETED && ns__run_stop_requested(rc)) {
            *end = NS_BATCH_STOPPED;
            snprintf(msg, msglen, "stopped on request after step %s", def->name);
            i = -1;
        }
    }
}
