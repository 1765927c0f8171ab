/*
 * writer_http.c - the `http` writer: writer: {http: {url, method, headers,
 * body, batch, concurrency, rate, timeout, success}} sends each item (or
 * each batch of items) as one HTTP request (docs/jobs.md, "writer: http").
 *
 * Requests go through libcurl's multi interface: up to `concurrency` in
 * flight on one connection pool, started no faster than `rate`. A chunk is
 * written when every request of it has an outcome: delivered (a status in
 * `success`), rejected (another status the retry policy does not retry: the
 * item goes to the rejects file with the status and 1 KiB of the answer),
 * or failed (a failure still transient after retry.limit tries, or one
 * that is not an HTTP answer at all: the chunk fails and a later run sends
 * it again). A request the step's retry policy retries (429, 502, 503, 504,
 * timeouts, resets by default) is sent again on its own, after the policy's
 * backoff or the server's Retry-After, whichever is longer: the rest of the
 * chunk is not sent twice for it.
 *
 * A request cannot be taken back, so this writer is at-least-once (no
 * NS_WRITER_TRANSACTIONAL): the runner commits the checkpoint in the
 * repository's database once the chunk has its outcomes, and a run killed
 * in the middle of a chunk sends that chunk again on restart. Every request
 * carries an Idempotency-Key made of the job instance, the step and the
 * item's number in the input, the same on that restart, so a receiver can
 * tell a repeat.
 *
 * Templates: ${item.FIELD} is the item's value (percent-encoded inside the
 * url), ${item.FIELD|json} a JSON string or null, ${item.FIELD|url}
 * percent-encoded; the rest of a template (${params.X}, ${env.X}, ...) is
 * substituted once, when the writer opens. What a header or the url holds
 * from ${env.X} goes into the request only: messages show the template.
 */
#include "io/io.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ------------------------------------------------------ configuration */

typedef enum http_method { M_POST, M_PUT, M_PATCH, M_DELETE, M_GET } http_method;
static const char *const methods[] = {"POST", "PUT", "PATCH", "DELETE", "GET", NULL};

typedef struct http_cfg {
    char *url; /* item templates */
    int method;
    ns_map headers;
    char *body;
    int64_t batch; /* items per request (a JSON array); 0: one request per item */
    int64_t concurrency;
    char *rate;
    double timeout;
    ns_names success;
    /* from check() */
    double per_second;    /* the rate; 0: none */
    unsigned char ok[75]; /* success statuses 0..599, a bit each */
} http_cfg;

static const ns_key http_keys[] = {
    {.name = "url",
     .type = NS_KEY_ITEM,
     .offset = offsetof(http_cfg, url),
     .flags = NS_KEY_REQUIRED,
     .hint = "where to send each item, e.g. \"https://api.example.com/users/${item.id}\""},
    {.name = "method",
     .type = NS_KEY_ENUM,
     .offset = offsetof(http_cfg, method),
     .def = "POST",
     .choices = methods},
    {.name = "headers", .type = NS_KEY_MAP, .offset = offsetof(http_cfg, headers)},
    {.name = "body", .type = NS_KEY_ITEM, .offset = offsetof(http_cfg, body)},
    {.name = "batch",
     .type = NS_KEY_INT,
     .offset = offsetof(http_cfg, batch),
     .min = 1,
     .max = 10000},
    {.name = "concurrency",
     .type = NS_KEY_INT,
     .offset = offsetof(http_cfg, concurrency),
     .def = "1",
     .min = 1,
     .max = 256},
    {.name = "rate", .type = NS_KEY_STRING, .offset = offsetof(http_cfg, rate)},
    {.name = "timeout",
     .type = NS_KEY_DURATION,
     .offset = offsetof(http_cfg, timeout),
     .def = "30s",
     .min = 1,
     .max = 3600 * 1000},
    {.name = "success", .type = NS_KEY_NAMES, .offset = offsetof(http_cfg, success)},
    {0}};

static bool status_ok(const unsigned char *ok, long status)
{
    return status >= 0 && status < 600 && (ok[status >> 3] & (1u << (status & 7)));
}

/* "50/s", "3000/min", "100/m", "10/h", "0.5/s": requests per second. */
static bool parse_rate(const char *s, double *out)
{
    char *end;
    double n = strtod(s, &end);
    static const struct {
        const char *unit;
        double secs;
    } units[] = {{"/s", 1}, {"/sec", 1}, {"/m", 60}, {"/min", 60}, {"/h", 3600}};
    if (end == s || !(n > 0) || n > 1e6)
        return false;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0) {
            *out = n / units[i].secs;
            return true;
        }
    return false;
}

static ns_status http_check(void *cfg, ns_key_ctx *ctx)
{
    http_cfg *c = cfg;
    if (c->rate && !parse_rate(c->rate, &c->per_second))
        return ns__key_fail(ctx, "rate",
                            "must be requests per second, minute or hour: \"50/s\", \"3000/min\", "
                            "\"10/h\"");
    memset(c->ok, 0, sizeof(c->ok));
    if (!c->success.n)
        for (long st = 200; st < 300; st++)
            c->ok[st >> 3] |= (unsigned char)(1u << (st & 7));
    for (size_t i = 0; i < c->success.n; i++) {
        const char *v = c->success.v[i];
        char *end;
        long st = strtol(v, &end, 10);
        if (*end || strlen(v) != 3 || st < 100 || st > 599) {
            char key[40];
            snprintf(key, sizeof(key), "success[%zu]", i);
            return ns__key_fail(ctx, key, "must be an HTTP status, 100 to 599 (got '%s')", v);
        }
        c->ok[st >> 3] |= (unsigned char)(1u << (st & 7));
    }
    if (c->batch && strstr(c->url, "${item."))
        return ns__key_fail(ctx, "url",
                            "a batch is one request for several items: its url cannot name an "
                            "item's field");
    for (size_t i = 0; c->batch && i < c->headers.n; i++)
        if (strstr(c->headers.values[i], "${item.")) {
            char key[300];
            snprintf(key, sizeof(key), "headers.%s", c->headers.names[i]);
            return ns__key_fail(ctx, key,
                                "a batch is one request for several items: its headers cannot "
                                "name an item's field");
        }
    if (c->method == M_GET && (c->body || c->batch))
        return ns__key_fail(ctx, c->body ? "body" : "batch", "a GET request carries no body");
    return NS_OK;
}

/* ---------------------------------------------------------- templates */

typedef enum filter { F_RAW, F_JSON, F_URL } filter;

/* A template cut into literal text (substituted when the writer opens) and
 * item fields (filled in for each item). */
typedef struct part {
    char *text; /* a literal; NULL for a field */
    size_t len;
    int field; /* the field's index in the items */
    filter f;
} part;
typedef struct tmpl {
    part *p;
    size_t n;
    char *shown; /* for messages: ${env.X} and ${item.X} as written */
} tmpl;

static void tmpl_free(tmpl *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->p[i].text);
    free(t->p);
    free(t->shown);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------ requests */

typedef enum unit_state { U_QUEUED, U_ACTIVE, U_DONE } unit_state;

/* One request: an item, or a batch of them. */
typedef struct unit {
    size_t start, count; /* its items: order[start .. start + count) */
    char *url, *body;
    size_t body_len;
    struct curl_slist *hdrs;
    char key[96]; /* Idempotency-Key */
    int64_t attempt;
    double not_before;
    unit_state state;
    CURL *h;
    char excerpt[1028];
    size_t excerpt_len, got;
    bool too_big; /* the answer passed MAX_ANSWER: the rest was not read */
    char errbuf[CURL_ERROR_SIZE];
} unit;

#define EXCERPT     1024
#define LOG_RETRIES 5 /* retries logged one by one in a chunk */
#define MAX_ANSWER  (1u << 20)

typedef struct hw {
    ns_writer base;
    ns_io_env env;
    const char *const *cols;
    size_t ncols;
    http_method method;
    tmpl url, body;
    bool body_default; /* no body: key given: the item as a JSON object */
    tmpl *hdr;         /* values of the headers */
    char **hdr_name;
    size_t nhdr;
    bool own_key, own_type; /* the job gives Idempotency-Key, Content-Type */
    int64_t batch, concurrency;
    double per_second, timeout;
    unsigned char ok[75];
    char key_base[40]; /* hex of the job instance and step */
    CURLM *multi;
    CURL **idle; /* easy handles not in use */
    size_t nidle;
    double next_slot; /* the rate: when the next request may start */
    uint64_t seed;
    int64_t sent; /* requests answered in this execution */
    /* The retries of the chunk being written: the first few are logged one
     * by one, the rest summed up by cause when the chunk ends. */
    int64_t logged;
    struct {
        char what[160];
        int64_t n;
    } quiet[8];
    size_t nquiet;
    ns_buf out; /* scratch for rendering */
} hw;

static ns_status oom(ns_error *err)
{
    return ns__err(err, NS_ENOMEM, NULL, "out of memory");
}

static void url_escape(ns_buf *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            ns__buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            ns__buf_append(b, e, 3);
        }
    }
}

/* Cuts `text` (as the job file gives it) into parts: literals substituted
 * now, fields looked up among the items' fields. */
static ns_status tmpl_compile(hw *w, const char *text, const char *what, filter dflt, tmpl *t,
                              ns_error *err)
{
    ns_buf shown = {0};
    ns_status st = NS_OK;
    const char *p = text;
    while (*p && st == NS_OK) {
        const char *ref = p;
        /* the next ${item. that is not $${item. (a literal) */
        while ((ref = strstr(ref, "${item.")) && ref > text && ref[-1] == '$')
            ref += 2;
        size_t lit = ref ? (size_t)(ref - p) : strlen(p);
        part *np = realloc(t->p, (t->n + 2) * sizeof(*t->p));
        if (!np)
            return oom(err);
        t->p = np;
        if (lit) {
            char *chunk = ns__asprintf("%.*s", (int)lit, p), *real = NULL, *sh = NULL;
            if (!chunk)
                return oom(err);
            st = w->env.subst(w->env.ctx, chunk, what, false, &real, &sh, err);
            free(chunk);
            if (st != NS_OK)
                break;
            t->p[t->n++] = (part){.text = real, .len = strlen(real)};
            ns__buf_append(&shown, sh, strlen(sh));
            free(sh);
        }
        if (!ref)
            break;
        const char *end = strchr(ref, '}');
        const char *name = ref + 7, *bar = memchr(name, '|', (size_t)(end - name));
        size_t nlen = (size_t)((bar ? bar : end) - name);
        filter f = !bar ? dflt : strncmp(bar, "|json}", 6) == 0 ? F_JSON : F_URL;
        size_t i = 0;
        while (i < w->ncols && !(strlen(w->cols[i]) == nlen && !strncmp(w->cols[i], name, nlen)))
            i++;
        if (i == w->ncols) {
            ns_buf have = {0};
            for (size_t j = 0; j < w->ncols && j < 20; j++) {
                ns__buf_append(&have, j ? ", " : "", j ? 2 : 0);
                ns__buf_append(&have, w->cols[j], strlen(w->cols[j]));
            }
            ns__buf_putc(&have, '\0');
            st = ns__err(err, NS_ECONFIG, NULL,
                         "%s: ${item.%.*s}: the items have no field %.*s "
                         "(they have: %s)",
                         what, (int)nlen, name, (int)nlen, name, have.data ? have.data : "");
            ns__buf_free(&have);
            break;
        }
        t->p[t->n++] = (part){.field = (int)i, .f = f};
        ns__buf_append(&shown, ref, (size_t)(end - ref + 1));
        p = end + 1;
    }
    ns__buf_putc(&shown, '\0');
    if (st == NS_OK && !(t->shown = ns__strdup(shown.data ? shown.data : "")))
        st = oom(err);
    ns__buf_free(&shown);
    return st;
}

/* Why a value cannot go into a request, NULL when it can. */
static const char *unfit(const ns_value *v, filter f, bool header, const char **code)
{
    if (!v->ptr && f != F_JSON) {
        *code = "23502";
        return "is NULL: only ${item.FIELD|json} can carry a NULL (as null)";
    }
    if (!v->ptr)
        return NULL;
    if (f == F_JSON && ns__utf8_valid_prefix((const unsigned char *)v->ptr, v->len) < v->len) {
        *code = "22021";
        return "is not valid UTF-8, which JSON cannot carry";
    }
    if (header && f == F_RAW)
        for (size_t i = 0; i < v->len; i++)
            if (v->ptr[i] == '\r' || v->ptr[i] == '\n' || v->ptr[i] == '\0') {
                *code = "22P02";
                return "holds a line break or a NUL, which a header cannot carry (use "
                       "${item.FIELD|url} or |json)";
            }
    if (f == F_RAW && memchr(v->ptr, '\0', v->len)) {
        *code = "22021";
        return "holds a NUL byte";
    }
    return NULL;
}

/* Renders t for item `it` into w->out (appended). On a value that cannot
 * go into the request, sets the item's reject and returns false. */
static bool render(hw *w, const tmpl *t, ns_item *it, bool header, ns_arena *arena, bool *nomem)
{
    for (size_t i = 0; i < t->n; i++) {
        const part *p = &t->p[i];
        if (p->text) {
            ns__buf_append(&w->out, p->text, p->len);
            continue;
        }
        if ((size_t)p->field >= it->nfields) {
            it->code = "NS_FIELD_COUNT";
            it->message = "the item has fewer fields than the writer was opened with";
            return false;
        }
        const ns_value *v = &it->fields[p->field];
        const char *code = NULL, *why = unfit(v, p->f, header, &code);
        if (why) {
            char msg[200];
            snprintf(msg, sizeof(msg), "%s %s", w->cols[p->field], why);
            it->code = code;
            it->column = w->cols[p->field];
            it->message = ns__arena_strndup(arena, msg, strlen(msg));
            *nomem |= !it->message;
            return false;
        }
        if (p->f == F_JSON && !v->ptr)
            ns__buf_append(&w->out, "null", 4);
        else if (p->f == F_JSON)
            ns__buf_json_string(&w->out, v->ptr, v->len);
        else if (p->f == F_URL)
            url_escape(&w->out, v->ptr, v->len);
        else
            ns__buf_append(&w->out, v->ptr, v->len);
    }
    return true;
}

/* The item as a JSON object of its fields (the body when none is given). */
static bool render_object(hw *w, ns_item *it, ns_arena *arena, bool *nomem)
{
    ns__buf_putc(&w->out, '{');
    for (size_t i = 0; i < it->nfields && i < w->ncols; i++) {
        const ns_value *v = &it->fields[i];
        const char *code = NULL, *why = unfit(v, F_JSON, false, &code);
        if (why) {
            char msg[200];
            snprintf(msg, sizeof(msg), "%s %s", w->cols[i], why);
            it->code = code;
            it->column = w->cols[i];
            it->message = ns__arena_strndup(arena, msg, strlen(msg));
            *nomem |= !it->message;
            return false;
        }
        if (i)
            ns__buf_putc(&w->out, ',');
        ns__buf_json_string(&w->out, w->cols[i], strlen(w->cols[i]));
        ns__buf_putc(&w->out, ':');
        if (v->ptr)
            ns__buf_json_string(&w->out, v->ptr, v->len);
        else
            ns__buf_append(&w->out, "null", 4);
    }
    ns__buf_putc(&w->out, '}');
    return true;
}

/* w->out as a malloc'd string (NULL: out of memory or a failed render). */
static char *take_out(hw *w, size_t *len)
{
    ns__buf_putc(&w->out, '\0');
    if (w->out.failed) {
        w->out.len = 0;
        w->out.failed = false;
        return NULL;
    }
    char *s = malloc(w->out.len);
    if (s)
        memcpy(s, w->out.data, w->out.len);
    if (len)
        *len = w->out.len - 1;
    w->out.len = 0;
    return s;
}

static void unit_free(unit *u)
{
    free(u->url);
    free(u->body);
    curl_slist_free_all(u->hdrs);
    u->url = u->body = NULL;
    u->hdrs = NULL;
}

/* Builds unit u's request from its items; an item that cannot be sent is
 * rejected here and left out (a unit left empty is done). */
static ns_status build(hw *w, unit *u, ns_item *items, size_t *order, ns_arena *arena,
                       ns_error *err)
{
    bool nomem = false;
    size_t kept = 0;
    ns_item *first = NULL;
    char *hv = NULL;
    /* The url and headers: per item (batch 1), or fixed (batch). */
    for (size_t k = 0; k < u->count; k++) {
        ns_item *it = &items[order[u->start + k]];
        size_t mark = w->out.len;
        bool fine = true;
        if (w->batch)
            ns__buf_putc(&w->out, kept ? ',' : '[');
        if (w->body_default)
            fine = render_object(w, it, arena, &nomem);
        else if (w->body.n)
            fine = render(w, &w->body, it, false, arena, &nomem);
        if (!fine) {
            w->out.len = mark;
            continue;
        }
        order[u->start + kept++] = order[u->start + k];
        if (!first)
            first = it;
    }
    u->count = kept;
    if (nomem)
        return oom(err);
    if (!kept) {
        w->out.len = 0;
        u->state = U_DONE;
        return NS_OK;
    }
    if (w->batch)
        ns__buf_putc(&w->out, ']');
    if (w->body_default || w->body.n) {
        if (!(u->body = take_out(w, &u->body_len)))
            return oom(err);
    }
    /* Per-item url and headers; an item of a single request that cannot
     * go into them is rejected too. */
    if (!render(w, &w->url, first, false, arena, &nomem)) {
        w->out.len = 0;
        free(u->body);
        u->body = NULL;
        u->count = 0;
        u->state = U_DONE;
        return nomem ? oom(err) : NS_OK;
    }
    if (!(u->url = take_out(w, NULL)))
        return oom(err);
    for (size_t i = 0; i < w->nhdr; i++) {
        ns__buf_append(&w->out, w->hdr_name[i], strlen(w->hdr_name[i]));
        /* "Name;" sends a header with no value; "Name:" would remove it */
        ns__buf_append(&w->out, w->hdr[i].n ? ": " : ";", w->hdr[i].n ? 2 : 1);
        if (!render(w, &w->hdr[i], first, true, arena, &nomem)) {
            w->out.len = 0;
            unit_free(u);
            u->count = 0;
            u->state = U_DONE;
            return nomem ? oom(err) : NS_OK;
        }
        if (!(hv = take_out(w, NULL)))
            return oom(err);
        struct curl_slist *l = curl_slist_append(u->hdrs, hv);
        free(hv);
        if (!l)
            return oom(err);
        u->hdrs = l;
    }
    int64_t last = items[order[u->start + u->count - 1]].seq;
    if (u->count > 1)
        snprintf(u->key, sizeof(u->key), "ns-%s-%lld-%lld", w->key_base, (long long)first->seq,
                 (long long)last);
    else
        snprintf(u->key, sizeof(u->key), "ns-%s-%lld", w->key_base, (long long)first->seq);
    char line[160];
    struct curl_slist *l;
    const char *fixed[3] = {NULL, NULL, "Expect:"};
    if (!w->own_key) {
        snprintf(line, sizeof(line), "Idempotency-Key: %s", u->key);
        fixed[0] = line;
    }
    if (!w->own_type && u->body)
        fixed[1] = "Content-Type: application/json";
    for (size_t i = 0; i < 3; i++) {
        if (!fixed[i])
            continue;
        if (!(l = curl_slist_append(u->hdrs, fixed[i])))
            return oom(err);
        u->hdrs = l;
    }
    return NS_OK;
}

/* --------------------------------------------------------- transfers */

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    unit *u = arg;
    size_t len = size * n;
    if (u->excerpt_len < EXCERPT) {
        size_t take = len < EXCERPT - u->excerpt_len ? len : EXCERPT - u->excerpt_len;
        memcpy(u->excerpt + u->excerpt_len, p, take);
        u->excerpt_len += take;
    }
    u->got += len;
    if (u->got > MAX_ANSWER) {
        u->too_big = true; /* the status is known; the rest is not wanted */
        return 0;
    }
    return len;
}

static ns_status start(hw *w, unit *u, ns_error *err)
{
    CURL *h = w->nidle ? w->idle[--w->nidle] : curl_easy_init();
    if (!h)
        return oom(err);
    curl_easy_reset(h);
    u->excerpt_len = u->got = 0;
    u->too_big = false;
    u->errbuf[0] = '\0';
    long ms = (long)(w->timeout * 1000);
    curl_easy_setopt(h, CURLOPT_URL, u->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms < 10000 ? ms : 10000L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "nightshift/" NS_VERSION_STRING);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, u->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, u->errbuf);
    curl_easy_setopt(h, CURLOPT_PRIVATE, u);
    if (u->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, u->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->body_len);
    }
    if (w->method == M_GET)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else if (w->method != M_POST)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, methods[w->method]);
    else if (!u->body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    if (curl_multi_add_handle(w->multi, h) != CURLM_OK) {
        curl_easy_cleanup(h);
        return ns__err(err, NS_EIO, NULL, "writer.http: cannot start a request");
    }
    u->h = h;
    u->state = U_ACTIVE;
    return NS_OK;
}

static void stop_transfer(hw *w, unit *u)
{
    if (!u->h)
        return;
    curl_multi_remove_handle(w->multi, u->h);
    w->idle[w->nidle++] = u->h;
    u->h = NULL;
}

static const char *reason(long st)
{
    static const struct {
        long st;
        const char *text;
    } t[] = {{400, "Bad Request"},
             {401, "Unauthorized"},
             {403, "Forbidden"},
             {404, "Not Found"},
             {405, "Method Not Allowed"},
             {408, "Request Timeout"},
             {409, "Conflict"},
             {410, "Gone"},
             {413, "Content Too Large"},
             {415, "Unsupported Media Type"},
             {422, "Unprocessable Content"},
             {429, "Too Many Requests"},
             {500, "Internal Server Error"},
             {501, "Not Implemented"},
             {502, "Bad Gateway"},
             {503, "Service Unavailable"},
             {504, "Gateway Timeout"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].st == st)
            return t[i].text;
    return "";
}

/* The answer's first bytes as one line of UTF-8 text (what a server sends
 * is not trusted: control bytes become spaces, invalid UTF-8 '?'). */
static void excerpt_text(const unit *u, char *out, size_t cap)
{
    ns__clean_text(u->excerpt, u->excerpt_len, u->got, out, cap);
}

/* Where a request went, for messages: the template, and the item's line. */
static void where(hw *w, const unit *u, ns_item *items, const size_t *order, char *buf, size_t n)
{
    const ns_item *it = &items[order[u->start]];
    if (u->count > 1)
        snprintf(buf, n, "%s %s (the batch of lines %lld to %lld)", methods[w->method],
                 w->url.shown, (long long)it->line,
                 (long long)items[order[u->start + u->count - 1]].line);
    else
        snprintf(buf, n, "%s %s (line %lld)", methods[w->method], w->url.shown,
                 (long long)it->line);
}

typedef enum verdict { V_DONE, V_RETRY, V_FAIL } verdict;

/* What a finished transfer means for its unit. V_FAIL: *err says why the
 * chunk cannot be written. */
static verdict finish_unit(hw *w, unit *u, CURLcode rc, ns_item *items, const size_t *order,
                           ns_arena *arena, ns_error *err)
{
    long status = 0;
    curl_off_t after = -1;
    char at[600];
    curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(u->h, CURLINFO_RETRY_AFTER, &after);
    if (rc == CURLE_WRITE_ERROR && u->too_big)
        rc = CURLE_OK;
    stop_transfer(w, u);
    ns_error e = {0};
    char failure[CURL_ERROR_SIZE + 64];
    if (rc == CURLE_OK && status_ok(w->ok, status)) {
        w->sent++;
        return V_DONE;
    }
    where(w, u, items, order, at, sizeof(at)); /* for what follows: not per delivered request */
    if (rc == CURLE_OK) {
        snprintf(e.sub, sizeof(e.sub), "HTTP_%03ld", status);
        snprintf(failure, sizeof(failure), "HTTP %ld%s%s", status, reason(status)[0] ? " " : "",
                 reason(status));
    } else {
        bool timeout = rc == CURLE_OPERATION_TIMEDOUT;
        bool reset = rc == CURLE_COULDNT_CONNECT || rc == CURLE_RECV_ERROR ||
                     rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING ||
                     rc == CURLE_PARTIAL_FILE || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM;
        if (timeout)
            e.code = NS_ETIMEDOUT;
        else if (reset)
            snprintf(e.sub, sizeof(e.sub), "NS_RESET");
        snprintf(failure, sizeof(failure), "%s", u->errbuf[0] ? u->errbuf : curl_easy_strerror(rc));
    }
    char what[160];
    if ((e.sub[0] || e.code != NS_OK) && ns__retry_wanted(w->env.retry, &e, what, sizeof(what))) {
        const ns_retry *r = w->env.retry;
        if (u->attempt >= r->limit) {
            bool same = strcmp(what, failure) == 0;
            ns__err(err, NS_EIO, NULL,
                    "writer.http: %s: %s (%s%sgave up after %lld %s, retry.limit)", at, failure,
                    same ? "" : what, same ? "" : "; ", (long long)u->attempt,
                    u->attempt == 1 ? "retry" : "retries");
            return V_FAIL;
        }
        u->attempt++;
        double wait = ns__retry_delay(r, u->attempt, &w->seed);
        char detail[760];
        /* The server's Retry-After, within reason: a wait it asks for longer
         * than the policy's longest (or a minute) is cut to that. */
        double cap = r->max > 60 ? r->max : 60;
        if (after >= 0 && (double)after > wait)
            wait = (double)after < cap ? (double)after : cap;
        if (after >= 0)
            snprintf(detail, sizeof(detail), "%s (the server asked to wait %lld s)", at,
                     (long long)after);
        else
            snprintf(detail, sizeof(detail), "%s", at);
        if (w->logged < LOG_RETRIES) {
            w->logged++;
            w->env.retried(w->env.ctx, what, u->attempt, wait, detail);
        } else {
            w->env.retried(w->env.ctx, what, u->attempt, wait, NULL);
            size_t q = 0;
            while (q < w->nquiet && strcmp(w->quiet[q].what, what) != 0)
                q++;
            if (q == w->nquiet && q < sizeof(w->quiet) / sizeof(w->quiet[0])) {
                snprintf(w->quiet[q].what, sizeof(w->quiet[q].what), "%s", what);
                w->quiet[q].n = 0;
                w->nquiet++;
            }
            if (q < w->nquiet)
                w->quiet[q].n++;
        }
        u->not_before = ns__mono() + wait;
        u->state = U_QUEUED;
        return V_RETRY;
    }
    if (rc != CURLE_OK) {
        ns__err(err, NS_EIO, NULL, "writer.http: %s: %s", at, failure);
        return V_FAIL;
    }
    /* An answer the policy does not retry: its items are rejected. */
    char text[EXCERPT + 16], msg[EXCERPT + CURL_ERROR_SIZE + 96];
    /* the whole message within the 1 KiB a reject's message keeps */
    size_t room = EXCERPT - 4 - strlen(failure);
    excerpt_text(u, text, room < sizeof(text) ? room : sizeof(text));
    snprintf(msg, sizeof(msg), "%s%s%s", failure, text[0] ? ": " : "", text);
    char *m = ns__arena_strndup(arena, msg, strlen(msg));
    char *code = ns__arena_strndup(arena, e.sub, strlen(e.sub));
    if (!m || !code) {
        oom(err);
        return V_FAIL;
    }
    for (size_t k = 0; k < u->count; k++) {
        ns_item *it = &items[order[u->start + k]];
        it->code = code;
        it->message = m;
    }
    w->sent++;
    return V_DONE;
}

/* ---------------------------------------------------------- the writer */

static ns_status hw_write(ns_writer *base, ns_item *items, size_t n, ns_arena *arena, ns_error *err)
{
    hw *w = (hw *)base;
    size_t per = w->batch ? (size_t)w->batch : 1, nunits = (n + per - 1) / per;
    size_t *order = malloc(n * sizeof(*order));
    unit *units = calloc(nunits ? nunits : 1, sizeof(*units));
    ns_status st = NS_OK;
    size_t done = 0, active = 0, next = 0;
    size_t waiting = 0; /* requests waiting to be tried again */
    if (!order || !units) {
        free(order);
        free(units);
        return oom(err);
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 0; i < nunits; i++) {
        units[i].start = i * per;
        units[i].count = i + 1 < nunits ? per : n - i * per;
    }
    while (done < nunits && st == NS_OK) {
        double now = ns__mono();
        /* A stop asked while a request waits to be tried again ends the
         * chunk now (it is sent again on restart); otherwise the chunk is
         * finished and the run stops after it. */
        if (waiting > 0 && w->env.stopping(w->env.ctx)) {
            st = ns__err(err, NS_ESTOPPED, NULL,
                         "writer.http: stopped on request while a request waited to be tried "
                         "again");
            break;
        }
        /* Start what may start: in order, within the concurrency and rate. */
        for (size_t i = next; i < nunits && active < (size_t)w->concurrency && st == NS_OK; i++) {
            unit *u = &units[i];
            if (u->state != U_QUEUED || u->not_before > now)
                continue;
            if (w->per_second > 0 && now < w->next_slot)
                break;
            if (!u->url && u->attempt == 0) {
                if ((st = build(w, u, items, order, arena, err)) != NS_OK)
                    break;
                if (u->state == U_DONE) {
                    done++;
                    continue;
                }
            }
            if ((st = start(w, u, err)) != NS_OK)
                break;
            if (u->attempt > 0)
                waiting--;
            active++;
            if (w->per_second > 0)
                /* 5% under the rate, so that the receiver, which sees a
                 * request a little before or after it left, never counts
                 * more than the rate in a second */
                w->next_slot = (now > w->next_slot ? now : w->next_slot) + 1.05 / w->per_second;
        }
        while (next < nunits && units[next].state == U_DONE)
            next++;
        if (st != NS_OK || done == nunits)
            break;
        int running = 0;
        if (curl_multi_perform(w->multi, &running) != CURLM_OK) {
            st = ns__err(err, NS_EIO, NULL, "writer.http: the transfer loop failed");
            break;
        }
        CURLMsg *m;
        int left;
        while (st == NS_OK && (m = curl_multi_info_read(w->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            unit *u = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&u);
            CURLcode rc = m->data.result;
            active--;
            switch (finish_unit(w, u, rc, items, order, arena, err)) {
            case V_DONE:
                u->state = U_DONE;
                unit_free(u);
                done++;
                break;
            case V_RETRY:
                waiting++;
                break;
            case V_FAIL:
                st = err->code ? err->code : NS_EIO;
                break;
            }
        }
        if (st != NS_OK || done == nunits)
            break;
        /* Sleep until a transfer moves, a wait ends or the rate allows. */
        double wake = now + 0.1;
        for (size_t i = next; i < nunits; i++)
            if (units[i].state == U_QUEUED && units[i].not_before < wake)
                wake = units[i].not_before;
        if (w->per_second > 0 && w->next_slot > now && w->next_slot < wake)
            wake = w->next_slot;
        double later = wake - ns__mono();
        int ms = later <= 0 ? 0 : (int)(later * 1000) + 1;
        if (active == 0 && ms > 0) {
            struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else {
            curl_multi_poll(w->multi, NULL, 0, ms, NULL);
        }
    }
    for (size_t i = 0; i < nunits; i++) {
        stop_transfer(w, &units[i]);
        unit_free(&units[i]);
    }
    if (w->nquiet) {
        char line[1400];
        int64_t total = 0;
        size_t o = 0;
        for (size_t q = 0; q < w->nquiet; q++)
            total += w->quiet[q].n;
        o += (size_t)snprintf(line, sizeof(line), "%lld more %s of the chunk tried again (",
                              (long long)total, total == 1 ? "request" : "requests");
        for (size_t q = 0; q < w->nquiet && o < sizeof(line); q++)
            o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s: %lld", q ? ", " : "",
                                  w->quiet[q].what, (long long)w->quiet[q].n);
        if (o < sizeof(line))
            snprintf(line + o, sizeof(line) - o, ")");
        w->env.notice(w->env.ctx, line);
    }
    w->logged = 0;
    w->nquiet = 0;
    free(units);
    free(order);
    w->out.len = 0;
    return st;
}

/* Nothing to cut back: what was sent was sent (at-least-once). */
static ns_status hw_resume(ns_writer *base, json_t *state, ns_error *err)
{
    (void)base;
    (void)state;
    (void)err;
    return NS_OK;
}

static ns_status hw_sync(ns_writer *base, json_t **state, ns_error *err)
{
    hw *w = (hw *)base;
    *state = json_pack("{s:I}", "requests", (json_int_t)w->sent);
    return *state ? NS_OK : oom(err);
}

static ns_status hw_finish(ns_writer *base, ns_error *err)
{
    (void)base;
    (void)err;
    return NS_OK;
}

static void hw_rollback(ns_writer *base)
{
    (void)base; /* a request cannot be taken back */
}

static bool hw_single(ns_writer *base)
{
    (void)base;
    return false;
}

static void hw_close(ns_writer *base)
{
    hw *w = (hw *)base;
    for (size_t i = 0; i < w->nidle; i++)
        curl_easy_cleanup(w->idle[i]);
    free(w->idle);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    tmpl_free(&w->url);
    tmpl_free(&w->body);
    for (size_t i = 0; i < w->nhdr; i++)
        tmpl_free(&w->hdr[i]);
    free(w->hdr);
    free(w->hdr_name);
    ns__buf_free(&w->out);
}

static const ns_writer_vt http_vt = {
    .name = "http",
    .version = NS_WRITER_VERSION,
    .caps = 0, /* at-least-once */
    .instance_size = sizeof(hw),
    .write = hw_write,
    .rollback = hw_rollback,
    .close = hw_close,
    .single_transaction = hw_single,
    .resume = hw_resume,
    .sync = hw_sync,
    .finish = hw_finish,
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static ns_status http_create(const void *pcfg, const ns_writer_args *args, ns_writer **out,
                             ns_error *err)
{
    const http_cfg *c = pcfg;
    ns_writer *base = NULL;
    ns_status st;
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK)
        return ns__err(err, NS_EIO, NULL, "writer.http: libcurl cannot start: %s",
                       curl_easy_strerror(curl_init_rc));
    if ((st = ns__writer_new(&http_vt, &base, err)) != NS_OK)
        return st;
    hw *w = (hw *)base;
    w->env = *args->env;
    w->cols = args->columns;
    w->ncols = args->ncolumns;
    w->method = (http_method)c->method;
    w->batch = c->batch;
    w->concurrency = c->concurrency;
    w->per_second = c->per_second;
    w->timeout = c->timeout;
    memcpy(w->ok, c->ok, sizeof(w->ok));
    w->seed = (uint64_t)getpid() << 32 ^ (uint64_t)(ns__now() * 1e6);
    w->body_default = !c->body && w->method != M_GET && w->method != M_DELETE;
    if ((st = tmpl_compile(w, c->url, "writer.http.url", F_URL, &w->url, err)) != NS_OK ||
        (c->body &&
         (st = tmpl_compile(w, c->body, "writer.http.body", F_RAW, &w->body, err)) != NS_OK))
        goto out;
    if (c->headers.n && (!(w->hdr = calloc(c->headers.n, sizeof(*w->hdr))) ||
                         !(w->hdr_name = calloc(c->headers.n, sizeof(char *))))) {
        st = oom(err);
        goto out;
    }
    for (size_t i = 0; i < c->headers.n; i++) {
        char what[300];
        const char *name = c->headers.names[i];
        snprintf(what, sizeof(what), "writer.http.headers.%s", name);
        for (const char *p = name; *p; p++)
            if (*p <= ' ' || *p == ':' || *p == 0x7f) {
                st = ns__err(err, NS_ECONFIG, NULL, "%s: not a header name", what);
                goto out;
            }
        w->hdr_name[i] = c->headers.names[i];
        w->nhdr++;
        if (c->headers.values[i][0] &&
            (st = tmpl_compile(w, c->headers.values[i], what, F_RAW, &w->hdr[i], err)) != NS_OK)
            goto out;
        w->own_key |= strcasecmp(name, "Idempotency-Key") == 0;
        w->own_type |= strcasecmp(name, "Content-Type") == 0;
    }
    /* The instance and step, hashed: an opaque, stable prefix of the keys. */
    ns_buf id = {0};
    const char *parts[3] = {w->env.job_name, w->env.job_key, w->env.step};
    for (size_t i = 0; i < 3; i++)
        ns__buf_append(&id, parts[i] ? parts[i] : "", parts[i] ? strlen(parts[i]) + 1 : 1);
    XXH128_hash_t hh = XXH3_128bits(id.data ? id.data : "", id.len);
    ns__buf_free(&id);
    snprintf(w->key_base, sizeof(w->key_base), "%016llx%016llx", (unsigned long long)hh.high64,
             (unsigned long long)hh.low64);
    if (!(w->multi = curl_multi_init()) ||
        !(w->idle = calloc((size_t)w->concurrency, sizeof(CURL *)))) {
        st = oom(err);
        goto out;
    }
    curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)w->concurrency);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->concurrency);
out:
    if (st != NS_OK)
        ns__writer_free(base);
    else
        *out = base;
    return st;
}

static const ns_writer_factory http_factory = {http_create};

const ns_plugin ns__plugin_http = {NS_PLUGIN_WRITER, "http",     NS_PLUGIN_VERSION, http_keys,
                                   sizeof(http_cfg), http_check, &http_factory};
