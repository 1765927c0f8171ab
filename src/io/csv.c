/*
 * csv.c - streaming RFC 4180 reader.
 *
 * The reader keeps one buffer holding the unread part of the input. A record
 * is scanned from its first byte; when the scan runs off the end of the
 * buffer, the partial record is moved to the front, more input is read and
 * the record is scanned again, so each byte is normally scanned once. Lines
 * without a quote character take a fast path (memchr for the newline, memchr
 * for each delimiter). Fields point into the buffer; only fields holding
 * doubled quotes are unescaped, into a scratch buffer reused across records.
 */
#include "io/csv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define DEFAULT_READ_SIZE (1u << 20)
/* A record larger than this is almost surely an unterminated quote. */
#define MAX_RECORD (256u << 20)

enum { F_NULL, F_BUF, F_SCRATCH };

typedef struct field {
    size_t off, len, raw_off;
    int kind;
} field;

struct ns_csv {
    int fd; /* -1 when reading from memory */
    const char *mem;
    size_t mem_len, mem_pos;
    char *path;
    ns_csv_options opt;

    char *buf;
    size_t cap, start, end; /* unread input is buf[start, end) */
    int64_t base;           /* input offset of buf[0] */
    int64_t line;           /* line of buf[start] */
    int64_t size, mtime;
    bool eof, bom_done;
    /* The running hash of the input consumed: bytes [0, hashed) went into
     * it. Nothing leaves the buffer before it is hashed. */
    XXH3_state_t *hash;
    int64_t hashed;

    field *flds;
    ns_value *vals;
    size_t fcap;
    ns_buf scratch;
    ns_csv_record rec;
};

static ns_status csv_new(const ns_csv_options *opt, ns_csv **out)
{
    ns_csv *c = calloc(1, sizeof(*c));
    if (!c)
        return NS_ENOMEM;
    c->fd = -1;
    if (opt)
        c->opt = *opt;
    if (!c->opt.delimiter)
        c->opt.delimiter = ',';
    if (!c->opt.quote)
        c->opt.quote = '"';
    if (!c->opt.read_size)
        c->opt.read_size = DEFAULT_READ_SIZE;
    c->cap = c->opt.read_size < 4096 ? 4096 : 2 * c->opt.read_size;
    c->buf = malloc(c->cap);
    c->line = 1;
    c->size = c->mtime = -1;
    c->hash = XXH3_createState();
    if (!c->buf || !c->hash) {
        free(c->buf);
        XXH3_freeState(c->hash);
        free(c);
        return NS_ENOMEM;
    }
    XXH3_64bits_reset(c->hash);
    *out = c;
    return NS_OK;
}

ns_status ns__csv_open_path(const char *path, const char *name, const ns_csv_options *opt,
                            ns_csv **out, ns_error *err)
{
    ns_csv *c = NULL;
    struct stat st;

    if (csv_new(opt, &c) != NS_OK)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    if (!(c->path = ns__strdup(name ? name : path))) {
        ns__csv_close(c);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) {
        if (errno == ENOENT)
            ns__err(err, NS_EIO, NULL, "%s: the file does not exist", c->path);
        else
            ns__err(err, NS_EIO, NULL, "%s: cannot open: %s", c->path, strerror(errno));
        ns__csv_close(c);
        return NS_EIO;
    }
    if (fstat(c->fd, &st) == 0 && S_ISREG(st.st_mode)) {
        c->size = (int64_t)st.st_size;
        c->mtime = (int64_t)st.st_mtime;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(c->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    *out = c;
    return NS_OK;
}

ns_status ns__csv_open_mem(const char *data, size_t len, const ns_csv_options *opt, ns_csv **out,
                           ns_error *err)
{
    ns_csv *c = NULL;
    if (csv_new(opt, &c) != NS_OK)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    c->mem = data;
    c->mem_len = len;
    c->size = (int64_t)len;
    if (!(c->path = ns__strdup("<memory>"))) {
        ns__csv_close(c);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    *out = c;
    return NS_OK;
}

void ns__csv_close(ns_csv *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->path);
    free(c->buf);
    XXH3_freeState(c->hash);
    free(c->flds);
    free(c->vals);
    ns__buf_free(&c->scratch);
    free(c);
}

void ns__csv_expect(ns_csv *c, size_t nfields)
{
    c->opt.expect = nfields;
}

int64_t ns__csv_offset(const ns_csv *c)
{
    return c->base + (int64_t)c->start;
}

int64_t ns__csv_line(const ns_csv *c)
{
    return c->line;
}

int64_t ns__csv_size(const ns_csv *c)
{
    return c->size;
}

int64_t ns__csv_mtime(const ns_csv *c)
{
    return c->mtime;
}

/* Hashes the consumed input up to offset `upto` (still in the buffer). */
static void hash_to(ns_csv *c, int64_t upto)
{
    if (upto <= c->hashed)
        return;
    XXH3_64bits_update(c->hash, c->buf + (c->hashed - c->base), (size_t)(upto - c->hashed));
    c->hashed = upto;
}

void ns__csv_digest(ns_csv *c, char out[17])
{
    hash_to(c, ns__csv_offset(c));
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(c->hash));
}

/* Hashes the first `n` bytes of the input afresh into c->hash. */
static ns_status hash_prefix(ns_csv *c, int64_t n, ns_error *err)
{
    XXH3_64bits_reset(c->hash);
    if (c->fd < 0) {
        XXH3_64bits_update(c->hash, c->mem, (size_t)n);
        return NS_OK;
    }
    char *block = malloc(1 << 20);
    if (!block)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    for (int64_t at = 0; at < n;) {
        size_t want = n - at < (1 << 20) ? (size_t)(n - at) : (1 << 20);
        ssize_t got = pread(c->fd, block, want, (off_t)at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            free(block);
            return ns__err(err, NS_EIO, NULL, "%s: cannot read: %s", c->path,
                           got < 0 ? strerror(errno) : "the file is shorter than it was");
        }
        XXH3_64bits_update(c->hash, block, (size_t)got);
        at += got;
    }
    free(block);
    return NS_OK;
}

ns_status ns__csv_seek(ns_csv *c, int64_t offset, int64_t line, const char *digest, const char *was,
                       ns_error *err)
{
    if (offset < 0 || (c->size >= 0 && offset > c->size))
        return ns__err(err, NS_EIO, NULL,
                       "%s: cannot resume at byte %lld: the file is %lld bytes (was it replaced?)",
                       c->path, (long long)offset, (long long)c->size);
    /* A saved position is always just after a line end; anything else means
     * the file was changed before that point since the position was saved. */
    char before = '\n';
    if (offset > 0) {
        if (c->fd >= 0 && pread(c->fd, &before, 1, (off_t)offset - 1) != 1)
            return ns__err(err, NS_EIO, NULL, "%s: cannot read: %s", c->path, strerror(errno));
        if (c->fd < 0)
            before = c->mem[offset - 1];
    }
    if (before != '\n')
        return ns__err(err, NS_EIO, NULL,
                       "%s: cannot resume at line %lld (byte %lld): the file changed before that "
                       "point since the last run",
                       c->path, (long long)line, (long long)offset);
    ns_status st;
    if ((st = hash_prefix(c, offset, err)) != NS_OK)
        return st;
    c->hashed = offset;
    char now[17];
    snprintf(now, sizeof(now), "%016llx", (unsigned long long)XXH3_64bits_digest(c->hash));
    if (digest && strcmp(now, digest) != 0)
        return ns__err(err, NS_ECONFLICT, NULL,
                       "%s: the file changed since the checkpoint: its first %lld bytes (up to "
                       "line %lld) are not the ones the earlier run read%s%s. Resuming would skip "
                       "or repeat records: put the file back, or run again with "
                       "--restart-from-beginning to read it from its first record",
                       c->path, (long long)offset, (long long)line, was ? " " : "", was ? was : "");
    if (c->fd >= 0) {
        if (lseek(c->fd, (off_t)offset, SEEK_SET) < 0)
            return ns__err(err, NS_EIO, NULL, "%s: cannot seek: %s", c->path, strerror(errno));
    } else {
        c->mem_pos = (size_t)offset;
    }
    c->base = offset;
    c->start = c->end = 0;
    c->eof = false;
    c->line = line;
    c->bom_done = true;
    return NS_OK;
}

/* Reads more input behind the unread part, compacting and growing the buffer. */
static ns_status fill(ns_csv *c, ns_error *err)
{
    if (c->start > 0) {
        hash_to(c, c->base + (int64_t)c->start);
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->base += (int64_t)c->start;
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end >= MAX_RECORD)
        return ns__err(err, NS_EIO, NS_CODE_QUOTE,
                       "%s:%lld: record longer than %u MiB; is a quoted field not closed?", c->path,
                       (long long)c->line, MAX_RECORD >> 20);
    if (c->cap - c->end < c->opt.read_size) {
        size_t cap = c->cap * 2;
        while (cap - c->end < c->opt.read_size)
            cap *= 2;
        char *p = realloc(c->buf, cap);
        if (!p)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        c->buf = p;
        c->cap = cap;
    }
    size_t want = c->opt.read_size;
    if (c->fd < 0) {
        size_t n = c->mem_len - c->mem_pos < want ? c->mem_len - c->mem_pos : want;
        memcpy(c->buf + c->end, c->mem + c->mem_pos, n);
        c->mem_pos += n;
        c->end += n;
        c->eof = n == 0;
        return NS_OK;
    }
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->end, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ns__err(err, NS_EIO, NULL, "%s: read error: %s", c->path, strerror(errno));
        c->end += (size_t)n;
        c->eof = n == 0;
        return NS_OK;
    }
}

static bool add_field(ns_csv *c, size_t i, size_t off, size_t len, int kind, size_t raw_off)
{
    if (i >= c->fcap) {
        size_t cap = c->fcap ? c->fcap * 2 : 32;
        field *f = realloc(c->flds, cap * sizeof(*f));
        if (!f)
            return false;
        c->flds = f;
        ns_value *v = realloc(c->vals, cap * sizeof(*v));
        if (!v)
            return false;
        c->vals = v;
        c->fcap = cap;
    }
    c->flds[i] = (field){off, len, raw_off, kind};
    return true;
}

static int64_t count_nl(const char *p, size_t n)
{
    int64_t k = 0;
    const char *e = p + n;
    while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

static void set_error(ns_csv *c, const char *code, int fieldno, const char *msg)
{
    if (c->rec.error_code)
        return;
    c->rec.error_code = code;
    c->rec.error_field = fieldno;
    snprintf(c->rec.error_message, sizeof(c->rec.error_message), "%s", msg);
}

enum { SCAN_MORE, SCAN_DONE, SCAN_NOMEM };

/*
 * Scans the record at buf[start]. On SCAN_DONE, fields [0, *nf) are set,
 * *raw_end is where its text ends and *term_end where its terminator ends,
 * *nl counts the newlines inside it (not its terminator).
 */
static int scan(ns_csv *c, size_t *nf_out, size_t *raw_end, size_t *term_end, int64_t *nl_out)
{
    const char *b = c->buf;
    const char d = c->opt.delimiter, q = c->opt.quote;
    const size_t i = c->start, end = c->end;
    size_t nf = 0, p = i;
    int64_t nl = 0;

    c->scratch.len = 0;
    c->rec.error_code = NULL;
    c->rec.error_field = -1;

    /* Fast path: a complete line holding no quote character. */
    const char *nlp = memchr(b + i, '\n', end - i);
    if (nlp) {
        size_t le = (size_t)(nlp - b), ce = le;
        if (ce > i && b[ce - 1] == '\r')
            ce--;
        if (!memchr(b + i, q, ce - i)) {
            size_t fs = i;
            for (;;) {
                const char *dp = memchr(b + fs, d, ce - fs);
                size_t fe = dp ? (size_t)(dp - b) : ce;
                if (!add_field(c, nf++, fs, fe - fs, fe == fs ? F_NULL : F_BUF, fs - i))
                    return SCAN_NOMEM;
                if (!dp)
                    break;
                fs = fe + 1;
            }
            *nf_out = nf;
            *raw_end = ce;
            *term_end = le + 1;
            *nl_out = 0;
            return SCAN_DONE;
        }
    }

    /* General path, one field at a time. */
    for (;;) {
        size_t fstart = p;
        if (p >= end) {
            if (!c->eof)
                return SCAN_MORE;
            /* Input ends right after a delimiter: a last, empty field. */
            if (!add_field(c, nf++, p, 0, F_NULL, p - i))
                return SCAN_NOMEM;
            *raw_end = *term_end = p;
            break;
        }
        if (b[p] == q) {
            size_t k = p + 1, close;
            bool esc = false;
            for (;;) {
                const char *qp = memchr(b + k, q, end - k);
                if (!qp) {
                    if (!c->eof)
                        return SCAN_MORE;
                    nl += count_nl(b + k, end - k);
                    set_error(c, NS_CODE_QUOTE, (int)nf,
                              "quoted field not closed before the end of the file");
                    if (!add_field(c, nf++, p + 1, end - p - 1, F_BUF, p - i))
                        return SCAN_NOMEM;
                    *raw_end = *term_end = end;
                    goto done;
                }
                size_t qi = (size_t)(qp - b);
                nl += count_nl(b + k, qi - k);
                if (qi + 1 >= end && !c->eof)
                    return SCAN_MORE;
                if (qi + 1 < end && b[qi + 1] == q) {
                    esc = true;
                    k = qi + 2;
                    continue;
                }
                close = qi;
                break;
            }
            if (esc) {
                size_t off = c->scratch.len;
                for (size_t k2 = p + 1; k2 < close; k2++) {
                    if (ns__buf_putc(&c->scratch, b[k2]) != NS_OK)
                        return SCAN_NOMEM;
                    if (b[k2] == q)
                        k2++; /* the second of a doubled quote */
                }
                if (!add_field(c, nf++, off, c->scratch.len - off, F_SCRATCH, fstart - i))
                    return SCAN_NOMEM;
            } else if (!add_field(c, nf++, p + 1, close - p - 1, F_BUF, fstart - i)) {
                return SCAN_NOMEM;
            }
            p = close + 1;
            if (p >= end) {
                if (!c->eof)
                    return SCAN_MORE;
                *raw_end = *term_end = p;
                break;
            }
            if (b[p] == d) {
                p++;
                continue;
            }
            if (b[p] == '\n') {
                *raw_end = p;
                *term_end = p + 1;
                break;
            }
            if (b[p] == '\r') {
                if (p + 1 >= end && !c->eof)
                    return SCAN_MORE;
                if (p + 1 < end && b[p + 1] == '\n') {
                    *raw_end = p;
                    *term_end = p + 2;
                    break;
                }
            }
            set_error(c, NS_CODE_QUOTE, (int)nf - 1,
                      "unexpected character after the closing quote of a field");
            /* Resynchronise: the rest of the field up to the next delimiter or
             * newline is read as unquoted text; the record is rejected anyway,
             * and the field keeps its whole raw text for the message. */
            nf--;
        }
        /* Unquoted field (or the tail of a malformed quoted one). */
        size_t vstart = b[fstart] == q ? fstart : p;
        size_t k = p;
        while (k < end) {
            char ch = b[k];
            if (ch == d || ch == '\n')
                break;
            if (ch == q)
                set_error(c, NS_CODE_QUOTE, (int)nf, "quote character inside an unquoted field");
            k++;
        }
        if (k >= end && !c->eof)
            return SCAN_MORE;
        size_t fe = k;
        if ((k >= end || b[k] == '\n') && fe > fstart && b[fe - 1] == '\r')
            fe--;
        if (!add_field(c, nf++, vstart, fe - vstart, fe == fstart ? F_NULL : F_BUF, fstart - i))
            return SCAN_NOMEM;
        if (k >= end) {
            *raw_end = fe;
            *term_end = k;
            break;
        }
        if (b[k] == d) {
            p = k + 1;
            continue;
        }
        *raw_end = fe;
        *term_end = k + 1;
        break;
    }
done:
    *nf_out = nf;
    *nl_out = nl;
    return SCAN_DONE;
}

static void check_record(ns_csv *c)
{
    ns_csv_record *r = &c->rec;

    if (c->opt.check_utf8) {
        size_t ok = ns__utf8_valid_prefix((const unsigned char *)r->raw, r->raw_len);
        if (ok < r->raw_len) {
            int fno = 0;
            for (size_t k = 0; k < r->nfields; k++)
                if (c->flds[k].raw_off <= ok)
                    fno = (int)k;
            char msg[128];
            snprintf(msg, sizeof(msg), "invalid UTF-8: byte 0x%02X at byte %zu of the record",
                     (unsigned)(unsigned char)r->raw[ok], ok + 1);
            set_error(c, NS_CODE_ENCODING, fno, msg);
        }
    }
    if (c->opt.expect && r->nfields != c->opt.expect) {
        char msg[128];
        snprintf(msg, sizeof(msg), "expected %zu fields, found %zu", c->opt.expect, r->nfields);
        set_error(c, NS_CODE_FIELD_COUNT, -1, msg);
    }
}

ns_status ns__csv_next(ns_csv *c, const ns_csv_record **rec, ns_error *err)
{
    ns_status st;

    if (!c->bom_done) {
        while (c->end - c->start < 3 && !c->eof)
            if ((st = fill(c, err)) != NS_OK)
                return st;
        if (c->end - c->start >= 3 && memcmp(c->buf + c->start, "\xEF\xBB\xBF", 3) == 0)
            c->start += 3;
        c->bom_done = true;
    }
    for (;;) {
        if (c->start >= c->end) {
            if (c->eof) {
                *rec = NULL;
                return NS_OK;
            }
            if ((st = fill(c, err)) != NS_OK)
                return st;
            continue;
        }
        /* Blank lines are not records. */
        char ch = c->buf[c->start];
        if (ch == '\n') {
            c->start++;
            c->line++;
            continue;
        }
        if (ch == '\r') {
            if (c->start + 1 >= c->end && !c->eof) {
                if ((st = fill(c, err)) != NS_OK)
                    return st;
                continue;
            }
            if (c->start + 1 >= c->end) {
                c->start++;
                continue;
            }
            if (c->buf[c->start + 1] == '\n') {
                c->start += 2;
                c->line++;
                continue;
            }
        }
        size_t nf = 0, raw_end = 0, term_end = 0;
        int64_t nl = 0;
        int r = scan(c, &nf, &raw_end, &term_end, &nl);
        if (r == SCAN_NOMEM)
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        if (r == SCAN_MORE) {
            if ((st = fill(c, err)) != NS_OK)
                return st;
            continue;
        }
        ns_csv_record *o = &c->rec;
        for (size_t k = 0; k < nf; k++) {
            field *f = &c->flds[k];
            c->vals[k].len = f->len;
            c->vals[k].ptr = f->kind == F_NULL      ? NULL
                             : f->kind == F_SCRATCH ? c->scratch.data + f->off
                                                    : c->buf + f->off;
        }
        o->line = c->line;
        o->offset = c->base + (int64_t)c->start;
        o->end = c->base + (int64_t)term_end;
        o->raw = c->buf + c->start;
        o->raw_len = raw_end - c->start;
        o->nfields = nf;
        o->fields = c->vals;
        check_record(c);
        /* A record ending at end of input has no terminator to count. */
        bool terminated = term_end > raw_end;
        c->line += nl + (terminated ? 1 : 0);
        c->start = term_end;
        *rec = o;
        return NS_OK;
    }
}
