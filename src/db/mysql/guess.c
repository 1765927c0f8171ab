/*
 * guess.c - which rows of a chunk the server will likely refuse for what
 * only it knows, so that the writer sends them alone (table.c) rather than
 * let them fail a bulk statement, whose rows would then be sent twice.
 *
 * - A unique key (primary or unique index, all its columns in the input)
 *   seen earlier in this load: a Bloom filter per index, of fixed size
 *   (memory does not grow with the input), keys folded to lower case (a
 *   case-insensitive collation makes 'A' and 'a' collide; a false guess
 *   only costs a single-row INSERT).
 * - CHECK constraints and single-column foreign keys: once the server has
 *   refused a row for one (warning 4025 or 1452), every later chunk is
 *   first passed through one query that evaluates them all on the server:
 *   the chunk's values as a JSON array read by JSON_TABLE with the
 *   table's column types, `WHERE NOT (check) OR NOT EXISTS (parent)`. A
 *   clean load never pays for it. If the query cannot run (a CHECK naming
 *   a column the input lacks), the guess is off and the isolation does the
 *   work.
 * The server decides every row either way: a guess is never a reject.
 */
#include "db/mysql/mysql.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define BLOOM_BITS (64u << 20) /* 8 MiB an index: ~1e-5 false positives at 1M keys */

typedef struct uindex {
    size_t *cols; /* input field of each column */
    size_t ncols;
    uint64_t *bits;
} uindex;

struct ns_my_guess {
    MYSQL *m;
    size_t ncols;
    uindex *idx;
    size_t nidx;
    /* [0]: the CHECKs, armed by warning 4025; [1]: the foreign keys, by
     * 1452 (a foreign key costs a lookup a row, which a CHECK does not: each
     * is paid for only once its kind has refused a row). */
    struct filter {
        char *sql;  /* the JSON_TABLE query, NULL when there is nothing to check */
        bool *used; /* the input fields it reads (the others are not sent) */
        bool armed, broken;
    } f[2];
    ns_buf json, key;
};

static ns_status oom(ns_error *err)
{
    return ns__err(err, NS_ENOMEM, NULL, "out of memory");
}

static size_t field_of(const char *const *cols, size_t n, const char *name)
{
    for (size_t j = 0; j < n; j++)
        if (strcasecmp(cols[j], name) == 0)
            return j;
    return n;
}

/* Rows of a query on the catalog, fn(arg, values) for each. */
static ns_status each(MYSQL *m, const char *sql, const char *const *p, size_t np,
                      void (*fn)(void *arg, const char *const *v), void *arg, ns_error *err,
                      const char *where)
{
    ns_my_stmt *s = NULL;
    ns_status st = ns__my_run(m, sql, strlen(sql), p, np, &s, err, where, "read the table's keys");
    for (bool eof = false; st == NS_OK;) {
        const char *const *v;
        if ((st = ns__my_fetch(s, &v, &eof, err)) != NS_OK || eof)
            break;
        fn(arg, v);
    }
    ns__my_close(s);
    return st;
}

typedef struct reading {
    ns_my_guess *g;
    const char *const *cols;
    ns_buf where[2]; /* the filters' conditions */
    char last[200];  /* index being read */
    bool skip;       /* it has a column the input lacks */
    bool failed;
} reading;

static void index_col(void *arg, const char *const *v)
{
    reading *r = arg;
    ns_my_guess *g = r->g;
    if (!v[0] || !v[1])
        return;
    size_t j = field_of(r->cols, g->ncols, v[1]);
    if (strcmp(v[0], r->last) != 0) { /* a new index */
        snprintf(r->last, sizeof(r->last), "%s", v[0]);
        uindex *u = realloc(g->idx, (g->nidx + 1) * sizeof(*u));
        if (!u) {
            r->failed = true;
            return;
        }
        g->idx = u;
        g->idx[g->nidx++] = (uindex){0};
        r->skip = false;
    }
    uindex *u = &g->idx[g->nidx - 1];
    if (r->skip)
        return;
    if (j == g->ncols) { /* not all in the input: no guess for it */
        r->skip = true;
        free(u->cols);
        u->cols = NULL;
        u->ncols = 0;
        return;
    }
    size_t *c = realloc(u->cols, (u->ncols + 1) * sizeof(*c));
    if (!c) {
        r->failed = true;
        return;
    }
    u->cols = c;
    u->cols[u->ncols++] = j;
}

static void check_clause(void *arg, const char *const *v)
{
    reading *r = arg;
    if (v[0])
        ns__buf_printf(&r->where[0], "%sNOT (%s)", r->where[0].len ? " OR " : "", v[0]);
}

static void foreign_key(void *arg, const char *const *v)
{
    reading *r = arg;
    ns_buf *w = &r->where[1];
    /* column, referenced schema, table, column; one-column keys only */
    if (!v[0] || !v[1] || !v[2] || !v[3] || field_of(r->cols, r->g->ncols, v[0]) == r->g->ncols)
        return;
    ns__buf_printf(w, "%s(j.", w->len ? " OR " : "");
    ns__buf_quoted(w, v[0], '`');
    ns__buf_printf(w, " IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ");
    ns__buf_quoted(w, v[1], '`');
    ns__buf_putc(w, '.');
    ns__buf_quoted(w, v[2], '`');
    ns__buf_printf(w, " p WHERE p.");
    ns__buf_quoted(w, v[3], '`');
    ns__buf_printf(w, " = j.");
    ns__buf_quoted(w, v[0], '`');
    ns__buf_printf(w, "))");
}

/* SELECT j.ns_i FROM JSON_TABLE(?, '$[*]' COLUMNS (ns_i BIGINT PATH '$[0]',
 * `a` int(11) PATH '$[1]', ...)) AS j WHERE <cond>: the columns <cond>
 * names, with the table's types. */
static ns_status build_filter(struct filter *f, const char *cond, const char *const *cols,
                              const char *const *types, size_t ncols, ns_error *err)
{
    ns_buf q = {0};
    size_t at = 0;
    if (!(f->used = calloc(ncols ? ncols : 1, sizeof(*f->used))))
        return oom(err);
    ns__buf_printf(&q, "SELECT j.ns_i FROM JSON_TABLE(?, '$[*]' COLUMNS (ns_i BIGINT PATH '$[0]'");
    for (size_t j = 0; j < ncols; j++) {
        ns_buf name = {0};
        ns__buf_quoted(&name, cols[j], '`');
        bool named = !name.failed && strstr(cond, ns__buf_cstr(&name));
        ns__buf_free(&name);
        if (!named)
            continue;
        f->used[j] = true;
        const char *t = types[j] ? types[j] : "text";
        /* ENUM and SET are no JSON_TABLE types: their words as text */
        bool words = strncmp(t, "enum", 4) == 0 || strncmp(t, "set", 3) == 0;
        ns__buf_printf(&q, ", ");
        ns__buf_quoted(&q, cols[j], '`');
        ns__buf_printf(&q, " %s PATH '$[%zu]'", words ? "varchar(255)" : t, ++at);
    }
    ns__buf_printf(&q, ")) AS j WHERE %s", cond);
    f->sql = q.failed ? NULL : ns__strdup(ns__buf_cstr(&q));
    ns__buf_free(&q);
    return f->sql ? NS_OK : oom(err);
}

ns_status ns__my_guess_open(MYSQL *m, const char *schema, const char *table,
                            const char *const *cols, const char *const *types, size_t ncols,
                            bool keys, ns_my_guess **out, ns_error *err, const char *where)
{
    ns_my_guess *g = calloc(1, sizeof(*g));
    reading r = {.g = g, .cols = cols};
    ns_status st = NS_OK;
    *out = NULL;
    if (!g)
        return oom(err);
    g->m = m;
    g->ncols = ncols;
    const char *p[2] = {table, schema};
    size_t np = schema ? 2 : 1;
    if (keys)
        st = each(m,
                  schema ? "SELECT index_name, column_name FROM information_schema.statistics"
                           " WHERE non_unique = 0 AND table_name = ? AND table_schema = ?"
                           " ORDER BY index_name, seq_in_index"
                         : "SELECT index_name, column_name FROM information_schema.statistics"
                           " WHERE non_unique = 0 AND table_name = ? AND table_schema = DATABASE()"
                           " ORDER BY index_name, seq_in_index",
                  p, np, index_col, &r, err, where);
    /* Indexes with a column the input lacks were emptied: drop them. */
    size_t k = 0;
    for (size_t i = 0; i < g->nidx; i++)
        if (g->idx[i].ncols)
            g->idx[k++] = g->idx[i];
    g->nidx = k;
    for (size_t i = 0; st == NS_OK && i < g->nidx; i++)
        if (!(g->idx[i].bits = calloc(BLOOM_BITS / 64, sizeof(uint64_t))))
            st = oom(err);
    if (st == NS_OK)
        st = each(m,
                  schema ? "SELECT check_clause FROM information_schema.check_constraints"
                           " WHERE table_name = ? AND constraint_schema = ?"
                         : "SELECT check_clause FROM information_schema.check_constraints"
                           " WHERE table_name = ? AND constraint_schema = DATABASE()",
                  p, np, check_clause, &r, err, where);
    if (st == NS_OK)
        st = each(m,
                  schema ? "SELECT k.column_name, k.referenced_table_schema,"
                           " k.referenced_table_name, k.referenced_column_name"
                           " FROM information_schema.key_column_usage k"
                           " WHERE k.referenced_table_name IS NOT NULL AND k.table_name = ?"
                           " AND k.table_schema = ? AND (SELECT count(*) FROM"
                           " information_schema.key_column_usage c WHERE"
                           " c.constraint_name = k.constraint_name AND c.table_name = k.table_name"
                           " AND c.table_schema = k.table_schema) = 1"
                         : "SELECT k.column_name, k.referenced_table_schema,"
                           " k.referenced_table_name, k.referenced_column_name"
                           " FROM information_schema.key_column_usage k"
                           " WHERE k.referenced_table_name IS NOT NULL AND k.table_name = ?"
                           " AND k.table_schema = DATABASE() AND (SELECT count(*) FROM"
                           " information_schema.key_column_usage c WHERE"
                           " c.constraint_name = k.constraint_name AND c.table_name = k.table_name"
                           " AND c.table_schema = k.table_schema) = 1",
                  p, np, foreign_key, &r, err, where);
    if (st == NS_OK && r.failed)
        st = oom(err);
    for (int f = 0; f < 2 && st == NS_OK; f++)
        if (r.where[f].len)
            st = build_filter(&g->f[f], ns__buf_cstr(&r.where[f]), cols, types, ncols, err);
    ns__buf_free(&r.where[0]);
    ns__buf_free(&r.where[1]);
    if (st != NS_OK) {
        ns__my_guess_free(g);
        return st;
    }
    *out = g;
    return NS_OK;
}

void ns__my_guess_free(ns_my_guess *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nidx; i++) {
        free(g->idx[i].cols);
        free(g->idx[i].bits);
    }
    free(g->idx);
    for (int k = 0; k < 2; k++) {
        free(g->f[k].sql);
        free(g->f[k].used);
    }
    ns__buf_free(&g->json);
    ns__buf_free(&g->key);
    free(g);
}

bool ns__my_guess_seen(ns_my_guess *g, const ns_value *vals)
{
    bool seen = false;
    for (size_t i = 0; i < g->nidx; i++) {
        uindex *u = &g->idx[i];
        bool null = false;
        g->key.len = 0;
        for (size_t c = 0; c < u->ncols && !null; c++) {
            const ns_value *v = &vals[u->cols[c]];
            if (!v->ptr) {
                null = true; /* NULLs never collide */
                break;
            }
            for (size_t b = 0; b < v->len; b++)
                ns__buf_putc(&g->key, (char)tolower((unsigned char)v->ptr[b]));
            ns__buf_putc(&g->key, '\x1f');
        }
        if (null || g->key.failed)
            continue;
        uint64_t h = XXH3_64bits(g->key.data, g->key.len);
        uint64_t h2 = (h >> 32) | 1;
        bool all = true;
        for (int k = 0; k < 3; k++) {
            uint64_t bit = (h + (uint64_t)k * h2) % BLOOM_BITS;
            uint64_t mask = 1ull << (bit & 63);
            all &= (u->bits[bit >> 6] & mask) != 0;
            u->bits[bit >> 6] |= mask;
        }
        seen |= all;
    }
    return seen;
}

void ns__my_guess_arm(ns_my_guess *g, unsigned code)
{
    struct filter *f = !g ? NULL : code == 4025 ? &g->f[0] : code == 1452 ? &g->f[1] : NULL;
    if (f && f->sql && !f->broken)
        f->armed = true;
}

int ns__my_guess_armed(const ns_my_guess *g)
{
    int n = 0;
    for (int k = 0; g && k < 2; k++)
        n += g->f[k].armed && !g->f[k].broken;
    return n;
}

static void json_text(ns_buf *b, const char *p, size_t n)
{
    ns__buf_putc(b, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        ns__buf_append(b, p + start, i - start);
        ns__buf_printf(b, "\\u%04x", c);
        start = i + 1;
    }
    ns__buf_append(b, p + start, n - start);
    ns__buf_putc(b, '"');
}

static ns_status run_filter(ns_my_guess *g, struct filter *f, ns_item *items, const size_t *idx,
                            size_t n, ns_value (*value)(void *arg, size_t j, const ns_value *v),
                            void *arg, bool *doubt, ns_error *err, const char *where)
{
    ns_buf *b = &g->json;
    b->len = 0;
    ns__buf_putc(b, '[');
    for (size_t r = 0; r < n; r++) {
        if (doubt[r])
            continue;
        ns__buf_printf(b, "%s[%zu", b->len > 1 ? "," : "", r);
        for (size_t j = 0; j < g->ncols; j++) {
            if (!f->used[j])
                continue;
            ns_value v = value(arg, j, &items[idx[r]].fields[j]);
            ns__buf_putc(b, ',');
            if (v.ptr)
                json_text(b, v.ptr, v.len);
            else
                ns__buf_append(b, "null", 4);
        }
        ns__buf_putc(b, ']');
    }
    ns__buf_putc(b, ']');
    if (b->failed)
        return oom(err);
    const char *p[1] = {ns__buf_cstr(b)};
    ns_my_stmt *s = NULL;
    ns_error e = {0};
    ns_status st =
        ns__my_run(g->m, f->sql, strlen(f->sql), p, 1, &s, &e, where, "check the chunk's values");
    for (bool eof = false; st == NS_OK;) {
        const char *const *v;
        if ((st = ns__my_fetch(s, &v, &eof, &e)) != NS_OK || eof)
            break;
        size_t r = v[0] ? (size_t)strtoull(v[0], NULL, 10) : n;
        if (r < n)
            doubt[r] = true;
    }
    ns__my_close(s);
    if (st != NS_OK) {
        /* the connection's failure is the chunk's; any other: no guess */
        if (e.sub[0] == '0' && e.sub[1] == '8') {
            *err = e;
            return st;
        }
        f->broken = true;
    }
    return NS_OK;
}

ns_status ns__my_guess_filter(ns_my_guess *g, ns_item *items, const size_t *idx, size_t n,
                              ns_value (*value)(void *arg, size_t j, const ns_value *v), void *arg,
                              bool *doubt, ns_error *err, const char *where)
{
    ns_status st = NS_OK;
    for (int k = 0; g && k < 2 && st == NS_OK && n; k++)
        if (g->f[k].armed && !g->f[k].broken)
            st = run_filter(g, &g->f[k], items, idx, n, value, arg, doubt, err, where);
    return st;
}
