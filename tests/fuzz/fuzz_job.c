/* fuzz_job.c - libFuzzer harness for the job-file loader: any input is
 * either a job or a clean error naming a line, never a crash or leak. */
#include "config/job.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    ns_job *job = NULL;
    ns_error err = {0};
    ns_status st = ns_job_load_buffer("fuzz.yaml", (const char *)data, size, &job, &err);
    if (st == NS_OK) {
        ns_job_free(job);
    } else if (strncmp(err.message, "fuzz.yaml:", 10) != 0 && st != NS_ENOMEM) {
        abort(); /* every error must say where */
    }
    return 0;
}
