/*
 * notify.c - notifications of a job's runs (docs/scheduling.md,
 * "Notifications"): which event a run's end is (state changes, not every
 * run), the message (Slack Block Kit within Slack's limits, or the event as
 * JSON), and its delivery: retried with backoff, 429 honoured, at most one
 * message a second per target across processes (a slot in the repository),
 * and, when it cannot be delivered, a line on the execution. A
 * notification never changes the run's result, and no secret reaches a
 * message, a log or the repository.
 */
#include "core/core.h"
#include "io/csv.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ATTEMPTS      4    /* tries of one delivery */
#define RETRY_AFTER   60.0 /* the longest Retry-After honoured, seconds */
#define SLACK_HEADER  150  /* Slack's limits, characters */
#define SLACK_SECTION 3000
#define SLACK_TOTAL   12000 /* of all the text (Slack's is about 13,000) */
#define FIRST_REJECTS 3

static void appendz(ns_buf *b, const char *s)
{
    ns__buf_append(b, s, strlen(s));
}

/* The text so far, NUL-terminated; NULL when an allocation failed. */
static const char *text_of(ns_buf *b)
{
    const char *t = ns__buf_cstr(b);
    return b->failed ? NULL : t;
}

/* ------------------------------------------------------------ events */

/* The events a run's end is, from the job's earlier ended runs: `failed`
 * once per outage (then `still_failing`, *streak counting the failures in a
 * row), `recovered` when a failing job completes, `completed_with_skips`
 * when records were rejected. STOPPED and ABANDONED runs are passed over. */
static unsigned end_events(ns_repo *repo, const char *job, int64_t id, ns_batch_status status,
                           int64_t skips, int *streak)
{
    unsigned ev = 0;
    char *text = NULL;
    *streak = 0;
    ns_error err = {0};
    if (status != NS_BATCH_COMPLETED && status != NS_BATCH_FAILED)
        return 0;
    if (repo->vt->list_json(repo, job, NULL, 200, &text, &err) != NS_OK)
        text = NULL;
    json_t *all = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    size_t i;
    json_t *e;
    bool mine = false, prev_failed = false, have_prev = false;
    int failed_in_a_row = 0;
    json_array_foreach(all, i, e)
    {
        if (json_integer_value(json_object_get(e, "id")) == id) {
            mine = true;
            continue;
        }
        if (!mine)
            continue; /* newer than this one */
        const char *st = json_string_value(json_object_get(e, "status"));
        if (!st || (strcmp(st, "FAILED") != 0 && strcmp(st, "COMPLETED") != 0))
            continue;
        if (!have_prev) {
            have_prev = true;
            prev_failed = strcmp(st, "FAILED") == 0;
        }
        if (strcmp(st, "FAILED") != 0)
            break;
        failed_in_a_row++;
    }
    json_decref(all);
    if (status == NS_BATCH_COMPLETED) {
        ev |= 1u << NS_EVENT_COMPLETED;
        if (skips > 0)
            ev |= 1u << NS_EVENT_COMPLETED_WITH_SKIPS;
        if (prev_failed)
            ev |= 1u << NS_EVENT_RECOVERED;
    } else {
        *streak = 1 + failed_in_a_row;
        ev |= 1u << (prev_failed ? NS_EVENT_STILL_FAILING : NS_EVENT_FAILED);
    }
    return ev;
}

/* ----------------------------------------------------------- message */

/* The first rejected records of a rejects file: line, column, code, message. */
static json_t *first_rejects(const char *path)
{
    json_t *a = json_array();
    ns_csv *csv = NULL;
    ns_csv_options opt = {0};
    ns_error err = {0};
    if (!path || ns__csv_open_path(path, NULL, &opt, &csv, &err) != NS_OK)
        return a;
    const ns_csv_record *rec;
    for (int n = 0; n <= FIRST_REJECTS && ns__csv_next(csv, &rec, &err) == NS_OK && rec; n++) {
        if (n == 0 || rec->nfields < 4)
            continue; /* the header */
        json_t *o = json_object();
        static const char *const names[] = {"line", "column", "code", "message"};
        for (int k = 0; k < 4; k++) {
            const ns_value *v = &rec->fields[k];
            size_t len = v->len > 300 ? 300 : v->len;
            json_object_set_new(o, names[k],
                                v->ptr ? json_stringn_nocheck(v->ptr, len) : json_string(""));
        }
        json_array_append_new(a, o);
    }
    ns__csv_close(csv);
    return a;
}

/* The event as JSON: what a webhook gets and a command reads, and what the
 * Slack message is made of. */
static json_t *event_json(const char *event, json_t *exec, int streak)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string(event));
    static const char *const copy[] = {"job",          "status", "exit_code",   "exit_message",
                                       "scheduled_at", "params", "identifying", "started_at",
                                       "ended_at",     "host"};
    json_object_set_new(o, "execution_id", json_incref(json_object_get(exec, "id")));
    for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++) {
        json_t *v = json_object_get(exec, copy[i]);
        json_object_set_new(o, copy[i], v ? json_incref(v) : json_null());
    }
    double a, b;
    const char *sa = json_string_value(json_object_get(exec, "started_at"));
    const char *ea = json_string_value(json_object_get(exec, "ended_at"));
    if (sa && ea && ns__parse_iso(sa, &a) && ns__parse_iso(ea, &b))
        json_object_set_new(o, "duration_seconds", json_real(b - a));
    json_t *steps = json_array(), *rejects = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(exec, "steps"), i, s)
    {
        int64_t skipped = json_integer_value(json_object_get(s, "read_skip_count")) +
                          json_integer_value(json_object_get(s, "process_skip_count")) +
                          json_integer_value(json_object_get(s, "write_skip_count"));
        json_array_append_new(
            steps, json_pack("{s:O, s:O, s:O, s:O, s:I, s:O}", "name", json_object_get(s, "name"),
                             "status", json_object_get(s, "status"), "read",
                             json_object_get(s, "read_count"), "written",
                             json_object_get(s, "write_count"), "rejected", (json_int_t)skipped,
                             "exit_message", json_object_get(s, "exit_message")));
        const char *path = json_string_value(
            json_object_get(json_object_get(json_object_get(s, "context"), "rejects"), "path"));
        if (skipped && path && json_array_size(rejects) < FIRST_REJECTS) {
            json_t *r = first_rejects(path);
            json_t *x;
            size_t k;
            json_array_foreach(r, k, x)
            {
                if (json_array_size(rejects) < FIRST_REJECTS) {
                    json_object_set_new(x, "step", json_incref(json_object_get(s, "name")));
                    json_array_append(rejects, x);
                }
            }
            json_decref(r);
        }
    }
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "first_rejects", rejects);
    if (streak > 1)
        json_object_set_new(o, "failures_in_a_row", json_integer(streak));
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "nightshift show %lld",
             (long long)json_integer_value(json_object_get(exec, "id")));
    json_object_set_new(o, "show", json_string(cmd));
    return o;
}

/* Slack's mrkdwn: &, < and > escaped; at most `max` characters, cut at a
 * character boundary with a note. */
static void mrkdwn(ns_buf *b, const char *s, size_t max)
{
    size_t start = b->len;
    for (; s && *s; s++) {
        if (b->len - start >= max) {
            while (b->len > start && ((unsigned char)b->data[b->len - 1] & 0xC0) == 0x80)
                b->len--; /* no half character */
            if (b->len > start)
                b->len--;
            appendz(b, "…");
            return;
        }
        if (*s == '&')
            appendz(b, "&amp;");
        else if (*s == '<')
            appendz(b, "&lt;");
        else if (*s == '>')
            appendz(b, "&gt;");
        else
            ns__buf_append(b, s, 1);
    }
}

static json_t *section(const char *text)
{
    return json_pack("{s:s, s:{s:s, s:s}}", "type", "section", "text", "type", "mrkdwn", "text",
                     text);
}

static const char *jstr_or(json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : dflt;
}

/* The Slack message of an event: `text` (the notification's line) and
 * blocks: the job and event, the run's facts, its parameters (identifying
 * first), per-step counts, the first rejects or the error, and the command
 * to see it all. Each within Slack's limits; the whole under SLACK_TOTAL. */
static json_t *slack_json(const char *event, json_t *ev)
{
    static const char *const icons[] = {"started",
                                        ":arrow_forward:",
                                        "completed",
                                        ":white_check_mark:",
                                        "completed_with_skips",
                                        ":warning:",
                                        "failed",
                                        ":x:",
                                        "still_failing",
                                        ":x:",
                                        "recovered",
                                        ":white_check_mark:",
                                        "missed",
                                        ":alarm_clock:",
                                        NULL};
    const char *icon = ":information_source:";
    for (int i = 0; icons[i]; i += 2)
        if (strcmp(icons[i], event) == 0)
            icon = icons[i + 1];
    const char *job = jstr_or(ev, "job", "?");
    const char *show = jstr_or(ev, "show", "");
    char head[SLACK_HEADER * 4 + 16], line[1024];
    snprintf(line, sizeof(line), "nightshift: job %s %s", job, event);
    /* the header is plain text: cut at a character boundary */
    snprintf(head, sizeof(head), "%s %s: %s", icon, job, event);
    size_t chars = 0, k = 0;
    for (; head[k]; k++)
        if (((unsigned char)head[k] & 0xC0) != 0x80 && ++chars > SLACK_HEADER - 1)
            break;
    head[k] = '\0';
    json_t *blocks = json_array();
    json_array_append_new(blocks, json_pack("{s:s, s:{s:s, s:s}}", "type", "header", "text", "type",
                                            "plain_text", "text", head));
    ns_buf b = {0};
    int64_t id = json_integer_value(json_object_get(ev, "execution_id"));
    if (id) {
        char facts[512];
        json_t *d = json_object_get(ev, "duration_seconds");
        snprintf(facts, sizeof(facts), "*Execution* %lld   *Status* %s", (long long)id,
                 jstr_or(ev, "status", "?"));
        mrkdwn(&b, facts, SLACK_SECTION);
        if (json_is_number(d)) {
            snprintf(facts, sizeof(facts), "   *Duration* %.1f s", json_number_value(d));
            mrkdwn(&b, facts, SLACK_SECTION);
        }
        if (json_is_string(json_object_get(ev, "scheduled_at"))) {
            appendz(&b, "\n*Scheduled* ");
            mrkdwn(&b, jstr_or(ev, "scheduled_at", ""), 64);
        }
        appendz(&b, "\n*Host* ");
        mrkdwn(&b, jstr_or(ev, "host", "?"), 256);
        if (json_is_integer(json_object_get(ev, "failures_in_a_row"))) {
            snprintf(facts, sizeof(facts), "\n*Failures in a row* %lld",
                     (long long)json_integer_value(json_object_get(ev, "failures_in_a_row")));
            appendz(&b, facts);
        }
        if (text_of(&b))
            json_array_append_new(blocks, section(text_of(&b)));
        b.len = 0;
        /* parameters, identifying first */
        json_t *params = json_object_get(ev, "params"), *ident = json_object_get(ev, "identifying");
        for (int pass = 0; pass < 2 && json_object_size(params); pass++) {
            const char *name;
            json_t *v;
            json_object_foreach(params, name, v)
            {
                bool is_ident = false;
                size_t x;
                json_t *n;
                json_array_foreach(ident, x, n) is_ident |= strcmp(json_string_value(n), name) == 0;
                if (is_ident != (pass == 0) || b.len > SLACK_SECTION - 200)
                    continue;
                char *vs = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY);
                appendz(&b, b.len ? "\n`" : "*Parameters*\n`");
                mrkdwn(&b, name, 100);
                appendz(&b, "` = ");
                mrkdwn(&b, vs ? vs : json_string_value(v), 200);
                if (!is_ident)
                    appendz(&b, " _(not identifying)_");
                free(vs);
            }
        }
        if (b.len && text_of(&b))
            json_array_append_new(blocks, section(text_of(&b)));
        b.len = 0;
        /* per-step counts, as a table */
        size_t i;
        json_t *s;
        appendz(&b, "```");
        json_array_foreach(json_object_get(ev, "steps"), i, s)
        {
            char row[400];
            snprintf(row, sizeof(row),
                     "%-20.20s %-10s read %-10lld written %-10lld rejected %lld\n",
                     jstr_or(s, "name", "?"), jstr_or(s, "status", "?"),
                     (long long)json_integer_value(json_object_get(s, "read")),
                     (long long)json_integer_value(json_object_get(s, "written")),
                     (long long)json_integer_value(json_object_get(s, "rejected")));
            if (b.len + strlen(row) > SLACK_SECTION - 100) {
                snprintf(row, sizeof(row), "... %zu more steps (%s)\n",
                         json_array_size(json_object_get(ev, "steps")) - i, show);
                appendz(&b, row);
                break;
            }
            ns__buf_append(&b, row, strlen(row));
        }
        appendz(&b, "```");
        if (i && text_of(&b))
            json_array_append_new(blocks, section(text_of(&b)));
        b.len = 0;
        /* the error, or the first rejects */
        const char *msg = jstr_or(ev, "exit_message", "");
        if (*msg) {
            appendz(&b,
                    strcmp(jstr_or(ev, "status", ""), "FAILED") == 0 ? "*Error*\n" : "*Message*\n");
            mrkdwn(&b, msg, SLACK_SECTION - 100);
            if (text_of(&b))
                json_array_append_new(blocks, section(text_of(&b)));
            b.len = 0;
        }
        json_array_foreach(json_object_get(ev, "first_rejects"), i, s)
        {
            appendz(&b, i ? "\n" : "*First rejects*\n");
            char where[200];
            snprintf(where, sizeof(where), "%s line %s%s%s: %s ", jstr_or(s, "step", "?"),
                     jstr_or(s, "line", "?"), *jstr_or(s, "column", "") ? ", column " : "",
                     jstr_or(s, "column", ""), jstr_or(s, "code", ""));
            mrkdwn(&b, where, 300);
            mrkdwn(&b, jstr_or(s, "message", ""), 400);
        }
        if (b.len && text_of(&b))
            json_array_append_new(blocks, section(text_of(&b)));
        b.len = 0;
    } else { /* a missed tick: no execution */
        appendz(&b, "*Missed*\n");
        mrkdwn(&b, jstr_or(ev, "exit_message", ""), SLACK_SECTION - 100);
        if (text_of(&b))
            json_array_append_new(blocks, section(text_of(&b)));
        b.len = 0;
        appendz(&b, "*Host* ");
        mrkdwn(&b, jstr_or(ev, "host", "?"), 256);
        if (text_of(&b))
            json_array_append_new(blocks, section(text_of(&b)));
        b.len = 0;
    }
    if (*show) {
        appendz(&b, "`");
        mrkdwn(&b, show, 100);
        appendz(&b, "`");
        json_array_append_new(blocks,
                              json_pack("{s:s, s:[{s:s, s:s}]}", "type", "context", "elements",
                                        "type", "mrkdwn", "text", text_of(&b) ? text_of(&b) : ""));
    }
    ns__buf_free(&b);
    /* The whole within Slack's limit: the longest sections give way first. */
    for (;;) {
        char *all = json_dumps(blocks, JSON_COMPACT);
        size_t len = all ? strlen(all) : 0;
        free(all);
        if (len <= SLACK_TOTAL)
            break;
        size_t longest = 0, at = 0, i;
        json_t *blk;
        json_array_foreach(blocks, i, blk)
        {
            size_t l = strlen(jstr_or(json_object_get(blk, "text"), "text", ""));
            if (l > longest) {
                longest = l;
                at = i;
            }
        }
        if (longest < 200)
            break;
        json_t *t = json_object_get(json_array_get(blocks, at), "text");
        char *cut = ns__strdup(jstr_or(t, "text", ""));
        if (!cut)
            break;
        size_t keep = longest / 2;
        while (keep && ((unsigned char)cut[keep] & 0xC0) == 0x80)
            keep--;
        snprintf(cut + keep, longest - keep + 1, "\n… (cut: %s)", show);
        json_object_set_new(t, "text", json_string(cut));
        free(cut);
    }
    while (json_array_size(blocks) > 50)
        json_array_remove(blocks, json_array_size(blocks) - 1);
    return json_pack("{s:s, s:o}", "text", line, "blocks", blocks);
}

/* ---------------------------------------------------------- delivery */

typedef struct answer {
    char body[1024];
    size_t len, got; /* kept, and received */
    double retry_after;
} answer;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    size_t len = size * n, room = sizeof(a->body) - 1 - a->len;
    a->got += len;
    memcpy(a->body + a->len, p, len < room ? len : room);
    a->len += len < room ? len : room;
    a->body[a->len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    answer *a = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
        a->retry_after = strtod(p + 12, NULL);
    return len;
}

/* One POST; 0 delivered, 1 worth another try (*wait: how long at least),
 * -1 not (why says, redacted: a receiver may echo the URL, which is the
 * key of a webhook). */
static int post(const char *url, const ns_map *headers, const char *const *values, const char *body,
                double timeout, const ns_secrets *sec, double *wait, char *why, size_t whylen)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    answer a = {.retry_after = 0};
    for (size_t i = 0; h && headers && i < headers->n; i++) {
        char *line = ns__asprintf("%s: %s", headers->names[i], values[i]);
        struct curl_slist *more = line ? curl_slist_append(h, line) : NULL;
        free(line);
        if (!more) {
            curl_slist_free_all(h);
            h = NULL;
        } else
            h = more;
    }
    if (!c || !h) {
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        snprintf(why, whylen, "out of memory");
        return 1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "%s", curl_easy_strerror(rc));
        return 1;
    }
    if (status >= 200 && status < 300)
        return 0;
    /* The answer's first bytes, as text that cannot break a line or JSON:
     * redacted whole before it is cut, so that no cut leaves a secret's
     * beginning behind. */
    char text[220];
    ns__redact(sec, a.body, sizeof(a.body));
    a.len = strlen(a.body);
    ns__clean_text(a.body, a.len < 200 ? a.len : 200, a.got > a.len ? a.got : a.len, text,
                   sizeof(text));
    snprintf(why, whylen, "HTTP %ld%s%s", status, a.len ? ": " : "", text);
    if (status == 429 || status >= 500 || status == 408) {
        *wait = a.retry_after > RETRY_AFTER ? RETRY_AFTER : a.retry_after;
        return 1;
    }
    return -1;
}

/* The program argv[0] names, found on $PATH as execvp would (before the
 * fork: the child may only call async-signal-safe functions). */
static char *find_program(const char *name)
{
    if (strchr(name, '/'))
        return ns__strdup(name);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        char *full = n ? ns__asprintf("%.*s/%s", (int)n, p, name) : ns__asprintf("./%s", name);
        if (full && access(full, X_OK) == 0)
            return full;
        free(full);
        p += n;
        if (*p == ':')
            p++;
    }
    return NULL;
}

/* Writes the body to the command's stdin within the time left; stops at
 * EPIPE (the command does not read it: its business). SIGPIPE is blocked
 * in this thread only, and one it raised is taken back: the process-wide
 * disposition is the embedding program's. false when out of time. */
static bool feed(int fd, const char *body, double until)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    bool in_time = true, broke = false;
    for (size_t off = 0, len = strlen(body); off < len;) {
        double left = until - ns__mono();
        if (left <= 0) {
            in_time = false;
            break;
        }
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue; /* the time left is looked at again */
        ssize_t w = write(fd, body + off, len - off);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w <= 0) {
            broke = errno == EPIPE;
            break;
        }
        off += (size_t)w;
    }
    if (broke && !was_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return in_time;
}

/* Runs the command with the event on its stdin; 0 when it exits 0, -1
 * when it cannot be found (no other try), 1 otherwise. The
 * command is its own process group: whatever it started is killed with it
 * at the timeout, and whatever it left behind when it ended, so nothing of
 * a notifier outlives its delivery. Writing the event counts against the
 * timeout. */
static int command(char *const *argv, const char *body, double timeout, char *why, size_t whylen)
{
    int in[2] = {-1, -1}, null = -1, rc = 1;
    char *prog = find_program(argv[0]);
    pid_t pid = -1;
    sigset_t all, old;
    if (!prog) { /* not worth another try */
        snprintf(why, whylen, "%s: command not found", argv[0]);
        return -1;
    }
    if (pipe2(in, O_CLOEXEC) != 0 || (null = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
        snprintf(why, whylen, "cannot run %s: %s", argv[0], strerror(errno));
        goto out;
    }
    /* No signal handler of the embedding program may run in the child
     * before exec: every signal is blocked across the fork. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = fork();
    if (pid == 0) {
        /* async-signal-safe calls only from here to exec */
        setpgid(0, 0);
        dup2(in[0], 0);
        dup2(null, 1); /* its stdout is not ours to print */
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        execv(prog, argv);
        _exit(127);
    }
    int fork_errno = errno;
    if (pid > 0)
        setpgid(pid, pid); /* also here: whichever runs first */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(in[0]);
    in[0] = -1;
    if (pid < 0) {
        snprintf(why, whylen, "cannot run %s: fork: %s", argv[0], strerror(fork_errno));
        goto out;
    }
    double until = ns__mono() + timeout;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    bool fed = feed(in[1], body, until);
    close(in[1]);
    in[1] = -1;
    int status = 0;
    bool ended = false;
    /* Ended is seen without reaping it (WNOWAIT): a zombie leader keeps
     * its group's id, so the kill below cannot reach a group that took
     * the id over. */
    while (fed && ns__mono() < until) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
            ended = true;
            break;
        }
        ns__sleep(0.01);
    }
    kill(-pid, SIGKILL); /* the group: what it started, or all of it at the timeout */
    waitpid(pid, &status, 0);
    if (!ended) {
        snprintf(why, whylen, "%s did not finish within %g s (killed)", argv[0], timeout);
        goto out;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        rc = 0;
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        snprintf(why, whylen, "%s exited 127 (it could not be started, or said so)", argv[0]);
    else if (WIFEXITED(status))
        snprintf(why, whylen, "%s exited %d", argv[0], WEXITSTATUS(status));
    else
        snprintf(why, whylen, "%s was killed by signal %d", argv[0], WTERMSIG(status));
out:
    if (in[0] >= 0)
        close(in[0]);
    if (in[1] >= 0)
        close(in[1]);
    if (null >= 0)
        close(null);
    free(prog);
    return rc;
}

static const char *kind_name(const ns_notify_def *nd)
{
    return nd->kind == NS_NOTIFY_SLACK     ? "slack"
           : nd->kind == NS_NOTIFY_WEBHOOK ? "webhook"
                                           : "command";
}

/* Delivers one message to one notify: entry; false with why (redacted) when
 * it could not be. */
static bool deliver(ns_repo *repo, const ns_job *job, size_t index, const char *event, json_t *ev,
                    ns_secrets *sec, char *why, size_t whylen)
{
    const ns_notify_def *nd = &job->notify[index];
    ns_subst_ctx ctx = {.job = job, .secrets = sec};
    ns_error err = {0};
    char *url = NULL, **values = NULL, **argv = NULL, *body = NULL;
    bool ok = false;
    char what[64];
    snprintf(what, sizeof(what), "notify[%zu]", index);
    if (nd->url && ns__subst(nd->url, &ctx, what, &url, &err) != NS_OK)
        goto subst_failed;
    if (url) { /* the whole URL is a secret: a webhook's path is its key */
        ns__secrets_add(sec, url, strlen(url));
        ns__secrets_add_url(sec, url);
        ns__secrets_add_url_path(sec, url);
    }
    if (nd->headers.n && !(values = calloc(nd->headers.n, sizeof(char *))))
        goto oom;
    for (size_t i = 0; i < nd->headers.n; i++) {
        if (ns__subst(nd->headers.values[i], &ctx, what, &values[i], &err) != NS_OK)
            goto subst_failed;
        /* checked here, whatever filled it in (${env.X}): a line break
         * would start a header of the value's choosing */
        for (const char *c = values[i]; *c; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t') {
                snprintf(why, whylen,
                         "header %s: its value holds a line break or control character (not "
                         "sent)",
                         nd->headers.names[i]);
                goto out;
            }
    }
    if (nd->argc && !(argv = calloc(nd->argc + 1, sizeof(char *))))
        goto oom;
    for (size_t i = 0; i < nd->argc; i++)
        if (ns__subst(nd->argv[i], &ctx, what, &argv[i], &err) != NS_OK)
            goto subst_failed;
    json_t *msg = nd->kind == NS_NOTIFY_SLACK ? slack_json(event, ev) : json_incref(ev);
    body = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!body)
        goto oom;
    /* One message a second per target, across processes: the target is
     * named by a hash (its URL is a secret). */
    char target[33];
    const char *key = url ? url : nd->argc ? argv[0] : "";
    ns__hash_hex(key, strlen(key), target);
    double backoff = 1;
    for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        double at = ns__now(), wait = 0;
        if (repo->vt->notify_slot &&
            repo->vt->notify_slot(repo, target, ns__now(), 1.0, &at, &err) != NS_OK)
            ns_error_clear(&err); /* no slot: send anyway */
        if (at > ns__now())
            ns__sleep(at - ns__now());
        int r = nd->kind == NS_NOTIFY_COMMAND ? command(argv, body, nd->timeout, why, whylen)
                                              : post(url, &nd->headers, (const char *const *)values,
                                                     body, nd->timeout, sec, &wait, why, whylen);
        if (r == 0) {
            ok = true;
            break;
        }
        if (r < 0 || attempt == ATTEMPTS) {
            char tail[64];
            snprintf(tail, sizeof(tail), " (after %d attempt%s)", attempt, attempt == 1 ? "" : "s");
            snprintf(why + strlen(why), whylen - strlen(why), "%s", tail);
            break;
        }
        ns__sleep(wait > backoff ? wait : backoff);
        backoff *= 2;
    }
    goto out;
subst_failed:
    if (snprintf(why, whylen, "%s", err.message) >= (int)whylen)
        why[whylen - 1] = '\0'; /* cut: as long as the caller's line allows */
    goto out;
oom:
    snprintf(why, whylen, "out of memory");
out:
    ns__redact(sec, why, whylen);
    free(url);
    free(body);
    for (size_t i = 0; values && i < nd->headers.n; i++)
        free(values[i]);
    free(values);
    for (size_t i = 0; argv && i < nd->argc; i++)
        free(argv[i]);
    free(argv);
    return ok;
}

/* Sends an event to every entry that asked for it; says what failed. */
static void send_event(ns_repo *repo, const ns_job *job, ns_event e, json_t *ev, int streak,
                       int64_t execution_id, ns_secrets *sec,
                       void (*say)(void *arg, const char *line), void *arg)
{
    const char *event = ns__event_name(e);
    for (size_t i = 0; i < job->nnotify; i++) {
        const ns_notify_def *nd = &job->notify[i];
        if (!(nd->events & 1u << e))
            continue;
        if (e == NS_EVENT_STILL_FAILING && (streak - 1) % nd->every != 0)
            continue; /* every Nth failure in a row after the first */
        char why[600] = "", line[800];
        if (deliver(repo, job, i, event, ev, sec, why, sizeof(why)))
            continue;
        snprintf(line, sizeof(line), "notify[%zu] (%s): %s not delivered: %s", i, kind_name(nd),
                 event, why);
        ns__redact(sec, line, sizeof(line));
        if (say)
            say(arg, line);
        ns_error err = {0};
        if (execution_id && repo->vt->notify_failed)
            repo->vt->notify_failed(repo, execution_id, line, &err);
    }
}

void ns__notify_run(ns_repo *repo, const ns_job *job, int64_t execution_id, bool start,
                    ns_secrets *secrets, void (*say)(void *arg, const char *line), void *arg)
{
    if (!job->nnotify)
        return;
    unsigned wanted = 0;
    for (size_t i = 0; i < job->nnotify; i++)
        wanted |= job->notify[i].events;
    char *text = NULL;
    ns_error err = {0};
    if ((start && !(wanted & 1u << NS_EVENT_STARTED)) ||
        repo->vt->show_json(repo, execution_id, &text, &err) != NS_OK)
        return;
    json_t *exec = json_loads(text, 0, NULL);
    free(text);
    if (!exec)
        return;
    ns_secrets sec = {0};
    ns__secrets_merge(&sec, secrets);
    int streak = 0;
    unsigned ev;
    if (start)
        ev = 1u << NS_EVENT_STARTED;
    else {
        int64_t skips = 0;
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(exec, "steps"), i, s) skips +=
            json_integer_value(json_object_get(s, "read_skip_count")) +
            json_integer_value(json_object_get(s, "process_skip_count")) +
            json_integer_value(json_object_get(s, "write_skip_count"));
        ev = end_events(repo, job->name, execution_id,
                        ns_batch_status_parse(json_string_value(json_object_get(exec, "status"))),
                        skips, &streak);
    }
    for (int e = 0; e < NS_EVENT_COUNT; e++)
        if (ev & wanted & 1u << e) {
            json_t *o = event_json(ns__event_name((ns_event)e), exec, streak);
            send_event(repo, job, (ns_event)e, o, streak, execution_id, &sec, say, arg);
            json_decref(o);
        }
    json_decref(exec);
    ns__secrets_free(&sec);
}

void ns__notify_missed(ns_repo *repo, const ns_job *job, const char *what,
                       void (*say)(void *arg, const char *line), void *arg)
{
    bool wanted = false;
    for (size_t i = 0; i < job->nnotify; i++)
        wanted |= (job->notify[i].events & 1u << NS_EVENT_MISSED) != 0;
    if (!wanted)
        return;
    ns_secrets sec = {0};
    json_t *o =
        json_pack("{s:s, s:s, s:n, s:s, s:s, s:s}", "event", "missed", "job", job->name,
                  "execution_id", "status", "MISSED", "exit_message", what, "host", ns__hostname());
    send_event(repo, job, NS_EVENT_MISSED, o, 0, 0, &sec, say, arg);
    json_decref(o);
    ns__secrets_free(&sec);
}
