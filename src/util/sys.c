/* sys.c - time, hashing, UTF-8 and file-system helpers. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

void ns__iso_at(double t, char *buf, size_t n)
{
    struct tm tm;
    time_t secs = (time_t)t;
    if ((double)secs > t)
        secs--; /* before 1970: round down */
    long ms = (long)((t - (double)secs) * 1000);
    gmtime_r(&secs, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms > 999 ? 999 : ms);
}

void ns__now_iso(char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ns__iso_at((double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0, buf, n);
}

void ns__sleep(double seconds)
{
    if (!(seconds > 0))
        return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

size_t ns__clean_text(const char *p, size_t n, size_t total, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    if (!cap)
        return 0;
    while (i < n && o + 8 < cap) {
        unsigned char c = (unsigned char)p[i];
        size_t ok = ns__utf8_valid_prefix((const unsigned char *)p + i, n - i < 4 ? n - i : 4);
        if (c < 0x80) {
            out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
            i++;
        } else if (ok > 0) {
            size_t k = 1;
            while (k < ok && ((unsigned char)p[i + k] & 0xc0) == 0x80)
                k++;
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        } else if (i + 4 > n && total > n) {
            break; /* a character cut where the text was cut */
        } else {
            out[o++] = '?';
            i++;
        }
    }
    if (total > i && o + 3 < cap)
        o += (size_t)snprintf(out + o, cap - o, "...");
    out[o] = '\0';
    return o;
}

void ns__clean_line(char *buf)
{
    size_t n = strlen(buf);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                buf[i] = ' ';
            i++;
            continue;
        }
        size_t ok = ns__utf8_valid_prefix((const unsigned char *)buf + i, n - i < 4 ? n - i : 4);
        size_t k = 1;
        while (ok && k < ok && ((unsigned char)buf[i + k] & 0xc0) == 0x80)
            k++;
        if (!ok)
            buf[i] = '?';
        i += ok ? k : 1;
    }
}

double ns__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double ns__mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ns__local_date(char *buf, size_t n, int days)
{
    time_t t = time(NULL) + (time_t)days * 86400;
    struct tm tm;
    localtime_r(&t, &tm);
    snprintf(buf, n, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

bool ns__parse_iso(const char *s, double *out)
{
    struct tm tm;
    int ms = 0;

    memset(&tm, 0, sizeof(tm));
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (double)timegm(&tm) + ms / 1000.0;
    return true;
}

/* Two independent 64-bit FNV-1a variants make a 128-bit key hash. Used for
 * job-instance keys, where inputs are short and collisions must be
 * negligible, not adversarially hard. */
void ns__hash_hex(const void *p, size_t n, char out[33])
{
    const unsigned char *s = p;
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;

    for (size_t i = 0; i < n; i++) {
        h1 = (h1 ^ s[i]) * 0x100000001b3ULL;
        h2 = (h2 ^ s[n - 1 - i]) * 0x100000001b3ULL;
        h2 ^= h2 >> 29;
    }
    /* Final avalanche (splitmix64 finaliser). */
    for (int k = 0; k < 2; k++) {
        uint64_t *h = k ? &h2 : &h1;
        *h ^= *h >> 33;
        *h *= 0xff51afd7ed558ccdULL;
        *h ^= *h >> 33;
        *h *= 0xc4ceb9fe1a85ec53ULL;
        *h ^= *h >> 33;
    }
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
}

size_t ns__utf8_valid_prefix(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        /* Fast path: eight ASCII bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = p[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            min = 0x10000;
        } else {
            return i;
        }
        if (i + len > n)
            return i;
        unsigned cp = c & (0xFFu >> (len + 1));
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return n;
}

size_t ns__utf8_count(const char *p, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += ((unsigned char)p[i] & 0xC0) != 0x80;
    return count;
}

ns_status ns__mkdir_parents(const char *path, ns_error *err)
{
    char dir[4096];
    size_t n = strlen(path);

    if (n >= sizeof(dir))
        return ns__err(err, NS_EINVAL, NULL, "%s: path too long", path);
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return NS_OK;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST)
            return ns__err(err, NS_EIO, NULL, "%s: cannot create directory: %s", dir,
                           strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ns__err(err, NS_EIO, NULL, "%s: cannot create directory: %s", dir, strerror(errno));
    return NS_OK;
}

const char *ns__hostname(void)
{
    static char name[256];
    if (!name[0] && gethostname(name, sizeof(name) - 1) != 0)
        snprintf(name, sizeof(name), "localhost");
    return name;
}

int64_t ns__process_start(int64_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: count
     * fields from the last ')'. starttime is field 22. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    int field = 2;
    for (; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    long long v;
    return sscanf(p, "%lld", &v) == 1 ? (int64_t)v : -1;
}

bool ns__process_zombie(int64_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* field 3, the state, follows the name */
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

FILE *ns__fopen_out(const char *path, bool append)
{
    int fd = open(path,
                  O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
                      (append ? O_APPEND : O_TRUNC),
                  0666);
    if (fd < 0)
        return NULL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ||
        (append && lseek(fd, 0, SEEK_END) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, append ? "a" : "w");
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

const char *ns__count(int64_t v, char *buf)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof(tmp), "%lld", (long long)(v < 0 ? -v : v));
    size_t o = 0;
    if (v < 0)
        buf[o++] = '-';
    for (int i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

#define WRITER_XATTR "user.nightshift.writer"

void ns__tag_writer(int fd, const char *repo_id, int64_t execution_id)
{
    char tag[80];
    int n = snprintf(tag, sizeof(tag), "%s %lld", repo_id, (long long)execution_id);
    if (n > 0)
        (void)fsetxattr(fd, WRITER_XATTR, tag, (size_t)n, 0); /* none where unsupported */
}

bool ns__file_writer(const char *path, char repo_id[33], int64_t *execution_id)
{
    char tag[80];
    ssize_t n = lgetxattr(path, WRITER_XATTR, tag, sizeof(tag) - 1);
    if (n <= 0)
        return false;
    tag[n] = '\0';
    long long id;
    if (sscanf(tag, "%32s %lld", repo_id, &id) != 2)
        return false;
    *execution_id = id;
    return true;
}
