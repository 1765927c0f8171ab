/*
 * receiver.c - ns-receiver, a small HTTP server that records what it is
 * sent and can misbehave on purpose: the third party of the dormant-users
 * example, and the server the HTTP writer's tests start (on loopback).
 * Not part of the nightshift library or command.
 *
 *   ns-receiver [--port N] [--port-file F] [--record F] [--faults SPEC]
 *               [--seed N] [--retry-after S] [--slow S] [--reject-match TEXT]
 *               [--echo] [--dedupe] [--first N=FAULT] [--garbage N]
 *
 * --port 0 (the default) takes a free port and writes it to --port-file.
 * --record appends one JSON line per request: {"t": seconds since the
 * epoch, "method", "path", "key": Idempotency-Key, "headers": {...},
 * "args": the query's, "body", "status": what it answered (0: the connection was dropped),
 * "fault": what was injected, or null}.
 * --faults "429=0.05,503=0.05,500=0.02,400=0.02,slow=0.01,reset=0.01": the
 * chance of each misbehaviour for each request (a status answered with a
 * JSON error; `slow` waits --slow seconds, default 5, then answers 200;
 * `reset` drops the connection without an answer). 429 and 503 carry
 * Retry-After: --retry-after seconds (default 1).
 * --reject-match TEXT answers 400 to every request whose body holds TEXT.
 * --echo puts the request's path and headers into the body of every 4xx
 * and 5xx answer (a server that echoes what it got: the tests check no
 * secret leaks from it; Slack's webhook key is in the path).
 * --dedupe answers 409 to a request whose Idempotency-Key was answered 2xx.
 * --first N=FAULT gives the first N requests FAULT (429, 500, slow, reset, ...),
 * the later ones the usual answer: a server that recovers.
 * --garbage N makes every answer's body N bytes of every byte value (control
 * bytes, invalid UTF-8): what a hostile or broken server may send.
 */
#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct fault {
    const char *name;
    double p;
} fault;

static fault faults[16];
static size_t nfaults;
static FILE *record;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long seed = 1;
static double retry_after = 1, slow_secs = 5;
static const char *reject_match;
static int echo, dedupe;
static size_t garbage;
static char **keys_done;
static size_t nkeys, capkeys;
static volatile sig_atomic_t quit;
static long first_n, served;
static const char *first_fault;

typedef struct req {
    char *body;
    size_t len, cap;
} req;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double draw(void)
{
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(seed >> 11) / 9007199254740992.0;
}

static void json_str(FILE *f, const char *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

typedef struct hdrs {
    FILE *f;
    int n;
    char *key;
} hdrs;

static enum MHD_Result each_header(void *arg, enum MHD_ValueKind kind, const char *k, const char *v)
{
    hdrs *h = arg;
    (void)kind;
    if (h->n++)
        fputc(',', h->f);
    json_str(h->f, k, strlen(k));
    fputc(':', h->f);
    json_str(h->f, v ? v : "", v ? strlen(v) : 0);
    return MHD_YES;
}

static bool key_seen(const char *key)
{
    for (size_t i = 0; key && i < nkeys; i++)
        if (strcmp(keys_done[i], key) == 0)
            return true;
    return false;
}

static void key_add(const char *key)
{
    if (!key || key_seen(key))
        return;
    if (nkeys == capkeys) {
        capkeys = capkeys ? 2 * capkeys : 1024;
        keys_done = realloc(keys_done, capkeys * sizeof(*keys_done));
    }
    keys_done[nkeys++] = strdup(key);
}

static void log_request(struct MHD_Connection *c, const char *method, const char *url, const req *r,
                        int status, const char *fault_name)
{
    if (!record)
        return;
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    pthread_mutex_lock(&mu);
    fprintf(record, "{\"t\":%.6f,\"method\":", now());
    json_str(record, method, strlen(method));
    fputs(",\"path\":", record);
    json_str(record, url, strlen(url));
    fputs(",\"key\":", record);
    if (key)
        json_str(record, key, strlen(key));
    else
        fputs("null", record);
    fputs(",\"headers\":{", record);
    hdrs h = {record, 0, NULL};
    MHD_get_connection_values(c, MHD_HEADER_KIND, each_header, &h);
    fputs("},\"args\":{", record);
    hdrs a = {record, 0, NULL};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, each_header, &a);
    fputs("},\"body\":", record);
    json_str(record, r->body ? r->body : "", r->len);
    fprintf(record, ",\"status\":%d,\"fault\":", status);
    if (fault_name)
        json_str(record, fault_name, strlen(fault_name));
    else
        fputs("null", record);
    fputs("}\n", record);
    fflush(record);
    pthread_mutex_unlock(&mu);
}

static enum MHD_Result collect(void *arg, enum MHD_ValueKind kind, const char *k, const char *v)
{
    FILE *f = arg;
    (void)kind;
    fprintf(f, "%s: %s\n", k, v ? v : "");
    return MHD_YES;
}

static enum MHD_Result answer(struct MHD_Connection *c, int status, const char *text)
{
    struct MHD_Response *res;
    if (garbage) {
        char *g = malloc(garbage);
        if (!g)
            return MHD_NO;
        for (size_t i = 0; i < garbage; i++)
            g[i] = (char)(i * 7 % 256);
        res = MHD_create_response_from_buffer(garbage, g, MHD_RESPMEM_MUST_FREE);
    } else {
        res = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    }
    if (!res)
        return MHD_NO;
    MHD_add_response_header(res, "Content-Type", "application/json");
    if (status == 429 || status == 503) {
        char ra[32];
        snprintf(ra, sizeof(ra), "%.0f", retry_after);
        MHD_add_response_header(res, "Retry-After", ra);
    }
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, res);
    MHD_destroy_response(res);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **con_cls)
{
    (void)cls;
    (void)version;
    req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof(*r))))
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*size) {
        if (r->len + *size + 1 > r->cap) {
            size_t cap = (r->len + *size + 1) * 2;
            char *b = realloc(r->body, cap);
            if (!b)
                return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, data, *size);
        r->len += *size;
        r->body[r->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    /* The whole request is in: decide what to do with it. */
    const char *fault_name = NULL;
    pthread_mutex_lock(&mu);
    double u = draw(), acc = 0;
    for (size_t i = 0; i < nfaults && !fault_name; i++)
        if (u < (acc += faults[i].p))
            fault_name = faults[i].name;
    if (first_fault && served++ < first_n)
        fault_name = first_fault;
    pthread_mutex_unlock(&mu);
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    int status = 200;
    char buf[8192] = "{\"ok\":true}";
    if (reject_match && r->body && strstr(r->body, reject_match)) {
        status = 400;
        fault_name = "reject-match";
        snprintf(buf, sizeof(buf), "{\"error\":\"rejected: the body holds %s\"}", reject_match);
    } else if (fault_name && strcmp(fault_name, "reset") == 0) {
        log_request(c, method, url, r, 0, fault_name);
        return MHD_NO; /* the connection is closed without an answer */
    } else if (fault_name && strcmp(fault_name, "slow") == 0) {
        struct timespec ts = {(time_t)slow_secs,
                              (long)((slow_secs - (double)(time_t)slow_secs) * 1e9)};
        nanosleep(&ts, NULL);
    } else if (fault_name) {
        status = atoi(fault_name);
        snprintf(buf, sizeof(buf), "{\"error\":\"injected %d\"}", status);
    }
    if (status == 200 && dedupe) {
        pthread_mutex_lock(&mu);
        bool seen = key_seen(key);
        if (!seen)
            key_add(key);
        pthread_mutex_unlock(&mu);
        if (seen) {
            status = 409;
            snprintf(buf, sizeof(buf), "{\"error\":\"already done\"}");
        }
    }
    if (echo && status >= 400) {
        char *mem = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&mem, &n);
        if (f) {
            fprintf(f, "no hook at %s; you sent:\n", url);
            MHD_get_connection_values(c, MHD_HEADER_KIND, collect, f);
            fclose(f);
            snprintf(buf, sizeof(buf), "%s", mem);
            free(mem);
        }
    }
    log_request(c, method, url, r, status, fault_name);
    return answer(c, status, buf);
}

static void done(void *cls, struct MHD_Connection *c, void **con_cls,
                 enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)c;
    (void)code;
    req *r = *con_cls;
    if (r) {
        free(r->body);
        free(r);
    }
    *con_cls = NULL;
}

/* The path is recorded as it came, percent-encoding and all. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void usage(void)
{
    fputs("usage: ns-receiver [--port N] [--port-file F] [--record F] [--faults SPEC] [--seed N]\n"
          "                   [--retry-after S] [--slow S] [--reject-match TEXT] [--echo] "
          "[--dedupe]\n"
          "                   [--garbage N] [--first N=FAULT]\n",
          stderr);
    exit(2);
}

static void parse_faults(char *spec)
{
    for (char *tok = strtok(spec, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq || nfaults == sizeof(faults) / sizeof(faults[0]))
            usage();
        *eq = '\0';
        faults[nfaults].name = tok;
        faults[nfaults].p = atof(eq + 1);
        if (strcmp(tok, "slow") && strcmp(tok, "reset") && (atoi(tok) < 100 || atoi(tok) > 599)) {
            fprintf(stderr, "ns-receiver: unknown fault '%s' (a status, slow or reset)\n", tok);
            exit(2);
        }
        nfaults++;
    }
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    const char *port_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--echo") == 0) {
            echo = 1;
            continue;
        }
        if (strcmp(a, "--dedupe") == 0) {
            dedupe = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--port") == 0)
            port = (unsigned)atoi(v);
        else if (strcmp(a, "--port-file") == 0)
            port_file = v;
        else if (strcmp(a, "--record") == 0) {
            if (!(record = fopen(v, "a"))) {
                fprintf(stderr, "ns-receiver: %s: %s\n", v, strerror(errno));
                return 1;
            }
        } else if (strcmp(a, "--faults") == 0)
            parse_faults(argv[i]);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, NULL, 10) * 2 + 1;
        else if (strcmp(a, "--retry-after") == 0)
            retry_after = atof(v);
        else if (strcmp(a, "--slow") == 0)
            slow_secs = atof(v);
        else if (strcmp(a, "--garbage") == 0)
            garbage = (size_t)atol(v);
        else if (strcmp(a, "--reject-match") == 0)
            reject_match = v;
        else if (strcmp(a, "--first") == 0 && strchr(v, '=')) {
            first_n = atol(v);
            first_fault = strchr(v, '=') + 1;
        } else
            usage();
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                         (uint16_t)port, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_NOTIFY_COMPLETED, done, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                         30u, MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "ns-receiver: cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned got = info ? info->port : port;
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", got) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "ns-receiver: %s: %s\n", port_file, strerror(errno));
            return 1;
        }
    }
    fprintf(stderr, "ns-receiver: listening on http://127.0.0.1:%u\n", got);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!quit)
        pause();
    MHD_stop_daemon(d);
    if (record)
        fclose(record);
    return 0;
}
