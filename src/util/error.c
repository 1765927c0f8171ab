/* error.c - the status table and the first-error-wins error record. */
#include "util.h"

#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
#define NS_XX(name, msg) "NS_" #name,
    NS_STATUS_MAP(NS_XX)
#undef NS_XX
};

static const char *const status_messages[] = {
#define NS_XX(name, msg) msg,
    NS_STATUS_MAP(NS_XX)
#undef NS_XX
};

static const char *const batch_names[] = {
#define NS_XX(name) #name,
    NS_BATCH_STATUS_MAP(NS_XX)
#undef NS_XX
};

const char *ns_status_name(ns_status s)
{
    if ((unsigned)s >= NS_STATUS_COUNT)
        return "NS_UNKNOWN";
    return status_names[s];
}

const char *ns_strerror(ns_status s)
{
    if ((unsigned)s >= NS_STATUS_COUNT)
        return "unknown status";
    return status_messages[s];
}

const char *ns_batch_status_name(ns_batch_status s)
{
    if ((unsigned)s > NS_BATCH_UNKNOWN)
        return "UNKNOWN";
    return batch_names[s];
}

ns_batch_status ns_batch_status_parse(const char *name)
{
    for (unsigned i = 0; i <= NS_BATCH_UNKNOWN; i++)
        if (name && strcmp(batch_names[i], name) == 0)
            return (ns_batch_status)i;
    return NS_BATCH_UNKNOWN;
}

void ns_error_clear(ns_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

ns_status ns__verr(ns_error *err, ns_status code, const char *sub, const char *fmt, va_list ap)
{
    if (!err || err->code != NS_OK)
        return code;
    err->code = code;
    snprintf(err->sub, sizeof(err->sub), "%s", sub ? sub : "");
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    return code;
}

ns_status ns__err(ns_error *err, ns_status code, const char *sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ns__verr(err, code, sub, fmt, ap);
    va_end(ap);
    return code;
}

void ns__err_prefix(ns_error *err, const char *fmt, ...)
{
    char prefix[256], old[sizeof(err->message)];
    va_list ap;

    if (!err || err->code == NS_OK)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof(old));
    /* Truncation is fine: the message stays a readable prefix. */
    if (snprintf(err->message, sizeof(err->message), "%s: %s", prefix, old) < 0)
        err->message[0] = '\0';
}

void ns__err_recode(ns_error *err, ns_status code)
{
    if (err)
        err->code = code;
}
