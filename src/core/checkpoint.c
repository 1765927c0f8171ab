/*
 * checkpoint.c - the one codec of a step's checkpoint: the context a chunk
 * (or a single-transaction step) commits in its target's transaction and
 * mirrors into the repository, and that a restart reads back.
 *
 *   {"position": <the reader's>, "rejects": {"path": P, "offset": N},
 *    "chunks": N, "records": N, "step_execution_id": N, "counts": {read, write, filter,
 *    read_skip, process_skip, write_skip, commit, rollback, retry},
 *    "processor": <its state>, "writer": <an at-least-once writer's state>,
 *    "done": true (a single-transaction step),
 *    "repository": ID, "execution_id": N}
 *
 * The last two sign it: who wrote it, so that only the repository (and the
 * instance) that wrote a checkpoint trusts it (docs/internals.md,
 * "Exactly-once restart").
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ns_status ns__ckpt_encode(const ns_ckpt *c, char **out, ns_error *err)
{
    const ns_counts *n = &c->counts;
    json_t *o = json_pack(
        "{s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "chunks",
        (json_int_t)c->chunks, "step_execution_id", (json_int_t)c->step_execution_id, "counts",
        "read", (json_int_t)n->read, "write", (json_int_t)n->write, "filter", (json_int_t)n->filter,
        "read_skip", (json_int_t)n->read_skip, "process_skip", (json_int_t)n->process_skip,
        "write_skip", (json_int_t)n->write_skip, "commit", (json_int_t)n->commit, "rollback",
        (json_int_t)n->rollback, "retry", (json_int_t)n->retry);
    bool bad = !o;
    if (!bad && c->position)
        bad = json_object_set(o, "position", c->position) != 0;
    if (!bad && c->rejects_path)
        bad = json_object_set_new(o, "rejects",
                                  json_pack("{s:s, s:I}", "path", c->rejects_path, "offset",
                                            (json_int_t)c->rejects_offset)) != 0;
    if (!bad && c->processor)
        bad = json_object_set(o, "processor", c->processor) != 0;
    if (!bad && c->writer)
        bad = json_object_set(o, "writer", c->writer) != 0;
    if (!bad && c->seconds)
        bad = json_object_set(o, "seconds", c->seconds) != 0;
    if (!bad && c->done)
        bad = json_object_set_new(o, "done", json_true()) != 0;
    if (!bad && !c->done)
        bad = json_object_set_new(o, "records", json_integer((json_int_t)c->records)) != 0;
    if (!bad)
        bad = json_object_set_new(o, "repository", json_string(c->repository)) != 0 ||
              json_object_set_new(o, "execution_id", json_integer((json_int_t)c->execution_id));
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    *out = text;
    return NS_OK;
}

ns_status ns__ckpt_decode(const char *text, ns_ckpt *c, ns_error *err)
{
    json_error_t je;
    memset(c, 0, sizeof(*c));
    if (!(c->root = json_loads(text ? text : "", 0, &je))) {
        /* jansson reports some allocation failures as syntax errors: a text
         * that parses on a second try was short of memory, not unreadable
         * (told apart, no one is led to --ignore-checkpoint by a lack of
         * memory). */
        json_t *again = json_error_code(&je) == json_error_out_of_memory
                            ? NULL
                            : json_loads(text ? text : "", 0, NULL);
        if (again || json_error_code(&je) == json_error_out_of_memory) {
            json_decref(again);
            return ns__err(err, NS_ENOMEM, NULL, "out of memory reading the checkpoint");
        }
        return ns__err(err, NS_EDB, NULL, "unreadable checkpoint in the target: %s", je.text);
    }
    if (!json_is_object(c->root)) {
        json_decref(c->root);
        c->root = NULL;
        return ns__err(err, NS_EDB, NULL, "unreadable checkpoint in the target: not an object");
    }
    json_t *o = c->root, *n = json_object_get(o, "counts"), *r = json_object_get(o, "rejects");
    const char *repo = json_string_value(json_object_get(o, "repository"));
    c->signed_ = repo != NULL;
    snprintf(c->repository, sizeof(c->repository), "%s", repo ? repo : "");
    c->execution_id = json_integer_value(json_object_get(o, "execution_id"));
    c->step_execution_id = json_integer_value(json_object_get(o, "step_execution_id"));
    c->done = json_is_true(json_object_get(o, "done"));
    c->chunks = json_integer_value(json_object_get(o, "chunks"));
    c->has_chunks = json_is_integer(json_object_get(o, "chunks"));
    /* Older checkpoints do not count the records of earlier executions. */
    c->records = json_is_integer(json_object_get(o, "records"))
                     ? json_integer_value(json_object_get(o, "records"))
                     : json_integer_value(json_object_get(n, "read"));
    c->counts = (ns_counts){json_integer_value(json_object_get(n, "read")),
                            json_integer_value(json_object_get(n, "write")),
                            json_integer_value(json_object_get(n, "filter")),
                            json_integer_value(json_object_get(n, "read_skip")),
                            json_integer_value(json_object_get(n, "process_skip")),
                            json_integer_value(json_object_get(n, "write_skip")),
                            json_integer_value(json_object_get(n, "commit")),
                            json_integer_value(json_object_get(n, "rollback")),
                            json_integer_value(json_object_get(n, "retry"))};
    c->position = json_object_get(o, "position");
    c->rejects_path = json_string_value(json_object_get(r, "path"));
    c->rejects_offset = json_integer_value(json_object_get(r, "offset"));
    c->processor = json_object_get(o, "processor");
    c->writer = json_object_get(o, "writer");
    c->seconds = json_object_get(o, "seconds");
    return NS_OK;
}

void ns__ckpt_free(ns_ckpt *c)
{
    if (c)
        json_decref(c->root);
}

void ns__ckpt_where(const ns_ckpt *c, char *buf, size_t n)
{
    json_t *line = json_object_get(c->position, "line");
    if (c->done)
        snprintf(buf, n, " (it says the step is done)");
    else if (c->has_chunks && json_is_integer(line))
        snprintf(buf, n, " (after chunk %lld, at line %lld)", (long long)c->chunks,
                 (long long)json_integer_value(line));
    else if (c->has_chunks)
        snprintf(buf, n, " (after chunk %lld)", (long long)c->chunks);
    else
        buf[0] = '\0';
}
