/*
 * ptype.c - parameter types: the values a job's parameter of each type
 * takes, and their normal form (`today` made a date, `yes` made true). The
 * loader checks defaults and schedule values with it when a file loads; the
 * launch types the values a run is given (core/params.c). A file of its own
 * in config/, below core, so that both use it without the loader reaching
 * up into the run-time code.
 */
#include "config/job.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool ns__parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off",
                                                                             "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0)
            return (*out = true), true;
        if (strcasecmp(s, f[i]) == 0)
            return (*out = false), true;
    }
    return false;
}

static const char *const ptype_names[] = {"string", "int", "float", "bool", "date", "timestamp"};

const char *ns__ptype_name(ns_ptype t)
{
    return ptype_names[t];
}

bool ns__param_value(ns_ptype type, const char *s, char **out, char *why, size_t whylen)
{
    char buf[32];
    const char *v = s;
    size_t n = strlen(s);

    switch (type) {
    case NS_P_STRING:
        break;
    case NS_P_INT: {
        int64_t x;
        if (!ns__parse_i64(s, n, &x))
            return snprintf(why, whylen, "'%s' is not an integer", s), false;
        break;
    }
    case NS_P_FLOAT: {
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (!n || *end || errno || !isfinite(d))
            return snprintf(why, whylen, "'%s' is not a number", s), false;
        break;
    }
    case NS_P_BOOL: {
        bool b;
        if (!ns__parse_bool(s, &b))
            return snprintf(why, whylen, "'%s' is not true or false", s), false;
        v = b ? "true" : "false";
        break;
    }
    case NS_P_DATE:
        if (strcmp(s, "today") == 0 || strcmp(s, "yesterday") == 0) {
            ns__local_date(buf, sizeof(buf), s[0] == 't' ? 0 : -1);
            v = buf;
        } else if (!ns__valid_date(s, n)) {
            return snprintf(why, whylen, "'%s' is not a date (YYYY-MM-DD, today or yesterday)", s),
                   false;
        }
        break;
    case NS_P_TIMESTAMP:
        if (!ns__valid_timestamp(s, n))
            return snprintf(why, whylen, "'%s' is not a timestamp (YYYY-MM-DDTHH:MM:SS)", s), false;
        break;
    }
    if (out && !(*out = ns__strdup(v)))
        return snprintf(why, whylen, "out of memory"), false;
    return true;
}
