/* io.c - making and freeing readers and writers; the fence's error. */
#include "io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ns_status ns__reader_new(const ns_reader_vt *vt, ns_reader **out, ns_error *err)
{
    ns_reader *r = calloc(1, vt->instance_size);
    if (!r)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    r->vt = vt;
    *out = r;
    return NS_OK;
}

void ns__reader_free(ns_reader *r)
{
    if (!r)
        return;
    r->vt->close(r);
    free(r);
}

ns_status ns__writer_new(const ns_writer_vt *vt, ns_writer **out, ns_error *err)
{
    ns_writer *w = calloc(1, vt->instance_size);
    if (!w)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    w->vt = vt;
    *out = w;
    return NS_OK;
}

void ns__writer_free(ns_writer *w)
{
    if (!w)
        return;
    w->vt->close(w);
    free(w);
}

ns_status ns__fenced(ns_error *err, const ns_ckpt_key *key, int64_t owner)
{
    char who[48];
    if (owner >= 0)
        snprintf(who, sizeof(who), "execution %lld", (long long)owner);
    else
        snprintf(who, sizeof(who), "another execution");
    return ns__err(err, NS_ECONFLICT, NULL,
                   "step %s: %s has taken this job instance over in the target (this run was "
                   "presumed dead: its heartbeat lapsed past the lease); the chunk was rolled "
                   "back and this run stops",
                   key->step, who);
}

void *ns__writer_share(const ns_writer_cfg *cfg, void *conn)
{
    const ns_share *sh = cfg->share;
    return sh && sh->conn ? sh->conn(sh->arg, cfg->driver, cfg->url, conn) : NULL;
}
