/*
 * check.c - a conservative client-side reading of a table's CHECK
 * constraints, so that a row that may violate one is held out of the
 * chunk's COPY and tried on its own (copy.c), instead of failing
 * a COPY of thousands of rows and being isolated by re-sending them.
 *
 * The text is pg_get_constraintdef()'s, which prints one regular form:
 * "CHECK ((points >= 0))", "CHECK ((status = ANY (ARRAY['a'::text,
 * 'b'::text])))". Understood: a column of the input (or length() /
 * char_length() of one) compared with a constant (=, <>, <, <=, >, >=),
 * = ANY / <> ALL of an ARRAY of constants, IS [NOT] NULL, AND, OR, NOT;
 * two text values compared by = or <> (a text column, lower() or upper()
 * of one: "lower(email) = email"), where lower() and upper() are read only
 * when the columns' collation and the database's ctype map ASCII letters
 * the plain way (libc, C, POSIX, C.*, en_*: not Turkish i, say), and only
 * for ASCII values: a value with another byte is in doubt (held).
 * Numbers compare exactly (integers and decimals as decimal text, floats as
 * the double both sides parse to); text compares by bytes, and only for
 * = and <> (an order depends on the collation); a date column compares
 * with date constants ('2030-01-01'::date) and CURRENT_DATE (the server's,
 * read at open: a load that runs past midnight may hold a row that then
 * loads, or fail a COPY that is then isolated, never more) as YYYY-MM-DD
 * text, the only form the client's type check lets through; anything else,
 * such as a timestamp, a function or an operator it does not know, makes
 * the whole constraint not understood, and the server alone checks it.
 *
 * Evaluation is three-valued with doubt: the set of results a row may have
 * ({true, false, null}); a row is held when false is in it. So a wrong
 * guess costs a row tried on its own; the server decides every row.
 */
#include "db/pg/pg.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { R_TRUE = 1, R_FALSE = 2, R_NULL = 4, R_ANY = 7 };
enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

typedef enum {
    N_OR,
    N_AND,
    N_NOT,
    N_CMP,    /* value op constant(s): a, (op, lits) */
    N_ISNULL, /* a IS NULL (neg: IS NOT NULL) */
    N_COLUMN, /* value: field */
    N_LENGTH, /* value: length(field) */
    N_LOWER,  /* value: lower(field), a text column (ASCII values only, see `casing`) */
    N_UPPER,  /* value: upper(field) */
    N_CMP2,   /* text value = or <> text value: a op b */
    N_CONST,  /* value: a literal */
    N_ARRAY   /* value: ARRAY[literals] */
} nkind;

typedef struct cknode {
    nkind kind;
    int op;
    bool neg;     /* N_ISNULL: IS NOT NULL; N_CMP with ALL */
    bool any;     /* N_CMP: = ANY / <> ALL over lits */
    size_t field; /* N_COLUMN, N_LENGTH */
    char **lits;  /* N_CONST (1), N_ARRAY, N_CMP: the constants, unquoted */
    size_t nlits;
    /* N_CMP, made once when parsed, not per row: each constant's length
     * (trailing spaces cut for char(n)), its double (NaN when none), and
     * whether the column is char(n) */
    size_t *lens;
    double *dbl;
    bool bpchar;
    bool text; /* N_CONST, N_ARRAY: quoted string literals */
    bool date; /* N_CONST, N_ARRAY: dates, as YYYY-MM-DD */
    struct cknode *a, *b;
} cknode;

struct ns_pg_check {
    char *name;
    cknode *root;
};

/* ------------------------------------------------------------- parsing */

typedef struct parser {
    const char *p;
    const char *today; /* CURRENT_DATE as YYYY-MM-DD, or NULL */
    bool casing;       /* lower()/upper() of ASCII text are the plain ASCII mapping here */
    const pcol *cols;
    size_t ncols;
    int depth;
    bool bad; /* not understood */
} parser;

#define MAX_DEPTH 64

static void skip(parser *ps)
{
    while (*ps->p == ' ')
        ps->p++;
}

/* Consumes `word` (a keyword or a punctuation string) when it comes next. */
static bool eat(parser *ps, const char *word)
{
    skip(ps);
    size_t n = strlen(word);
    if (strncmp(ps->p, word, n) != 0)
        return false;
    if (isalpha((unsigned char)word[0]) && (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_'))
        return false;
    ps->p += n;
    return true;
}

static cknode *node(parser *ps, nkind k)
{
    cknode *n = calloc(1, sizeof(*n));
    if (!n)
        ps->bad = true;
    else
        n->kind = k;
    return n;
}

static void free_node(cknode *n)
{
    if (!n)
        return;
    free_node(n->a);
    free_node(n->b);
    for (size_t i = 0; i < n->nlits; i++)
        free(n->lits[i]);
    free(n->lits);
    free(n->lens);
    free(n->dbl);
    free(n);
}

static bool add_lit(cknode *n, const char *s, size_t len)
{
    char **l = realloc(n->lits, (n->nlits + 1) * sizeof(*l));
    if (!l)
        return false;
    n->lits = l;
    if (!(l[n->nlits] = malloc(len + 1)))
        return false;
    memcpy(l[n->nlits], s, len);
    l[n->nlits++][len] = '\0';
    return true;
}

/* A type name after "::": words, "(n[,m])", "[]". Returns whether it is a
 * type the value keeps its meaning under (text-like or numeric). */
static void type_name(parser *ps, bool *textlike, bool *numeric, bool *date)
{
    skip(ps);
    const char *t = ps->p;
    while (isalpha((unsigned char)*ps->p) || *ps->p == ' ' || *ps->p == '_' ||
           isdigit((unsigned char)*ps->p)) {
        if (*ps->p == ' ' && !isalpha((unsigned char)ps->p[1]))
            break;
        /* a following keyword ends the type: "::text AND x" */
        if (*ps->p == ' ' && (strncmp(ps->p + 1, "AND", 3) == 0 ||
                              strncmp(ps->p + 1, "OR", 2) == 0 || strncmp(ps->p + 1, "IS", 2) == 0))
            break;
        ps->p++;
    }
    size_t n = (size_t)(ps->p - t);
    if (*ps->p == '(') {
        while (*ps->p && *ps->p != ')')
            ps->p++;
        if (*ps->p == ')')
            ps->p++;
    }
    bool array = false;
    if (strncmp(ps->p, "[]", 2) == 0) {
        ps->p += 2;
        array = true;
    }
#define IS(s) (n == strlen(s) && strncmp(t, s, n) == 0)
    *textlike = IS("text") || IS("character varying") || IS("bpchar") || IS("character");
    *numeric = IS("integer") || IS("bigint") || IS("smallint") || IS("numeric") ||
               IS("double precision") || IS("real");
    *date = IS("date") && !array;
#undef IS
    if (!*textlike && !*numeric && !*date)
        ps->bad = true;
}

static cknode *parse_or(parser *ps);

/* A text column that is not char(n) (whose comparisons ignore trailing
 * spaces): what lower(), upper() and a comparison of two values take. */
static bool text_column(const parser *ps, const cknode *n)
{
    const pcol *c = &ps->cols[n->field];
    const char *decl = c->ct.decl;
    return n->kind == N_COLUMN && c->ct.kind == NS_CT_TEXT &&
           strncmp(decl, "character(", 10) != 0 && strcmp(decl, "character") != 0 &&
           strcmp(decl, "bpchar") != 0;
}

/* A string literal: '...' with '' for a quote. */
static bool string_lit(parser *ps, cknode *n)
{
    ns_buf b = {0};
    ps->p++; /* the opening quote */
    for (;;) {
        if (!*ps->p) {
            ns__buf_free(&b);
            return false;
        }
        if (*ps->p == '\'') {
            if (ps->p[1] != '\'')
                break;
            ps->p++;
        }
        ns__buf_putc(&b, *ps->p++);
    }
    ps->p++;
    bool ok = !b.failed && add_lit(n, b.data ? b.data : "", b.len);
    ns__buf_free(&b);
    return ok;
}

/* A value: a column, length(column), a literal, ARRAY[...], ( ... ), with
 * any casts the printer adds. */
static cknode *parse_term(parser *ps)
{
    cknode *n = NULL;
    skip(ps);
    if (++ps->depth > MAX_DEPTH) {
        ps->bad = true;
        return NULL;
    }
    if (*ps->p == '(') {
        ps->p++;
        n = parse_or(ps);
        if (!eat(ps, ")"))
            ps->bad = true;
    } else if (eat(ps, "ARRAY")) {
        if (!eat(ps, "[") || !(n = node(ps, N_ARRAY)))
            goto bad;
        do {
            cknode *e = parse_term(ps);
            if (!e || e->kind != N_CONST || (n->nlits && e->text != n->text)) {
                free_node(e);
                goto bad;
            }
            if (n->nlits && e->date != n->date) {
                free_node(e);
                goto bad;
            }
            n->text = e->text;
            n->date = e->date;
            bool ok = add_lit(n, e->lits[0], strlen(e->lits[0]));
            free_node(e);
            if (!ok)
                goto bad;
        } while (eat(ps, ","));
        if (!eat(ps, "]"))
            goto bad;
    } else if (*ps->p == '\'') {
        if (!(n = node(ps, N_CONST)) || !string_lit(ps, n))
            goto bad;
        n->text = true;
    } else if (isdigit((unsigned char)*ps->p)) {
        const char *s = ps->p;
        while (isdigit((unsigned char)*ps->p) || *ps->p == '.')
            ps->p++;
        if (*ps->p == 'e' || *ps->p == 'E' || !(n = node(ps, N_CONST)) ||
            !add_lit(n, s, (size_t)(ps->p - s)))
            goto bad;
    } else if (isalpha((unsigned char)*ps->p) || *ps->p == '_' || *ps->p == '"') {
        char name[128];
        size_t k = 0;
        if (*ps->p == '"') {
            for (ps->p++; *ps->p && !(*ps->p == '"' && ps->p[1] != '"'); ps->p++) {
                if (*ps->p == '"')
                    ps->p++;
                if (k + 1 < sizeof(name))
                    name[k++] = *ps->p;
            }
            if (*ps->p != '"')
                goto bad;
            ps->p++;
        } else {
            while (isalnum((unsigned char)*ps->p) || *ps->p == '_')
                if (k + 1 < sizeof(name))
                    name[k++] = *ps->p++;
                else
                    goto bad;
        }
        name[k] = '\0';
        bool quoted = ps->p[-1] == '"';
        skip(ps);
        if (!quoted && strcmp(name, "CURRENT_DATE") == 0) {
            if (!ps->today || !(n = node(ps, N_CONST)) || !add_lit(n, ps->today, strlen(ps->today)))
                goto bad;
            n->date = true;
        } else if (*ps->p == '(') { /* length(x), char_length(x), lower(x), upper(x) */
            bool len = strcmp(name, "length") == 0 || strcmp(name, "char_length") == 0;
            bool lower = strcmp(name, "lower") == 0, upper = strcmp(name, "upper") == 0;
            if (quoted || (!len && !((lower || upper) && ps->casing)))
                goto bad;
            ps->p++;
            cknode *arg = parse_term(ps);
            if (!arg || arg->kind != N_COLUMN || !eat(ps, ")") ||
                ((lower || upper) && !text_column(ps, arg))) {
                free_node(arg);
                goto bad;
            }
            arg->kind = len ? N_LENGTH : lower ? N_LOWER : N_UPPER;
            n = arg;
        } else {
            size_t j = 0;
            while (j < ps->ncols && strcmp(ps->cols[j].name, name) != 0)
                j++;
            /* Not an input column (its value is a default the client does
             * not know), or a keyword this reading does not take. */
            if (j == ps->ncols || !(n = node(ps, N_COLUMN)))
                goto bad;
            n->field = j;
        }
    } else {
        goto bad;
    }
    /* Casts keep the value only between text types, or between numbers. */
    while (n && !ps->bad && eat(ps, "::")) {
        bool textlike, numeric, date;
        type_name(ps, &textlike, &numeric, &date);
        if (n->kind == N_COLUMN) {
            ns_ckind k = ps->cols[n->field].ct.kind;
            bool col_num = k == NS_CT_INT || k == NS_CT_NUMERIC || k == NS_CT_REAL;
            if ((textlike && k != NS_CT_TEXT) || (numeric && !col_num) || (date && k != NS_CT_DATE))
                ps->bad = true;
        } else if (n->kind == N_CONST || n->kind == N_ARRAY) {
            /* '-5'::integer is the number -5; 5::text is not understood;
             * '2030-01-01'::date is a date when printed as ISO */
            if (n->date) {
                ps->bad |= !date;
            } else if (date) {
                for (size_t i = 0; i < n->nlits; i++)
                    ps->bad |= !n->text || !ns__valid_date(n->lits[i], strlen(n->lits[i]));
                n->text = false;
                n->date = true;
            } else if (numeric) {
                n->text = false;
            } else if (!n->text) {
                ps->bad = true;
            }
        } else if (n->kind == N_LENGTH && !numeric) {
            ps->bad = true;
        }
    }
    ps->depth--;
    return n;
bad:
    free_node(n);
    ps->bad = true;
    ps->depth--;
    return NULL;
}

static int cmp_op(parser *ps)
{
    static const struct {
        const char *s;
        int op;
    } ops[] = {{"<>", OP_NE}, {"<=", OP_LE}, {">=", OP_GE},
               {"=", OP_EQ},  {"<", OP_LT},  {">", OP_GT}};
    skip(ps);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strncmp(ps->p, ops[i].s, strlen(ops[i].s)) == 0) {
            ps->p += strlen(ops[i].s);
            return ops[i].op;
        }
    return -1;
}

static bool is_value(const cknode *n)
{
    return n && (n->kind == N_COLUMN || n->kind == N_LENGTH);
}

/* A text value two of which may be compared: a text column, lower() or
 * upper() of one. */
static bool is_text_value(const parser *ps, const cknode *n)
{
    return n && (n->kind == N_LOWER || n->kind == N_UPPER || text_column(ps, n));
}

/* A value compared, or tested for NULL; or a parenthesized condition. */
static cknode *parse_pred(parser *ps)
{
    cknode *a = parse_term(ps), *n = NULL;
    if (!a || ps->bad)
        goto bad;
    if (eat(ps, "IS")) {
        bool neg = eat(ps, "NOT");
        if (!eat(ps, "NULL") || a->kind != N_COLUMN || !(n = node(ps, N_ISNULL)))
            goto bad;
        n->neg = neg;
        n->a = a;
        return n;
    }
    const char *save = ps->p;
    int op = cmp_op(ps);
    if (op < 0) {
        ps->p = save;
        return a; /* a condition in parentheses, or a bare value (refused by the caller) */
    }
    bool any = eat(ps, "ANY"), all = !any && eat(ps, "ALL");
    cknode *b = parse_term(ps);
    if (!b || ps->bad) {
        free_node(b);
        goto bad;
    }
    /* Two text values, = or <> (by bytes: no order, which is the
     * collation's): lower(email) = email. */
    if (!any && !all && is_text_value(ps, a) && is_text_value(ps, b)) {
        if ((op != OP_EQ && op != OP_NE) || !(n = node(ps, N_CMP2))) {
            free_node(b);
            goto bad;
        }
        n->op = op;
        n->a = a;
        n->b = b;
        return n;
    }
    if (a->kind == N_LOWER || a->kind == N_UPPER || b->kind == N_LOWER || b->kind == N_UPPER) {
        free_node(b); /* lower(x) with a constant: not read (yet) */
        goto bad;
    }
    if (!is_value(a) && is_value(b) && !any && !all) { /* 0 < x: x > 0 */
        cknode *t = a;
        a = b;
        b = t;
        static const int flip[] = {OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE};
        op = flip[op];
    }
    bool want_array = any || all;
    if (!is_value(a) || (want_array ? b->kind != N_ARRAY : b->kind != N_CONST) ||
        (any && op != OP_EQ) || (all && op != OP_NE) || !(n = node(ps, N_CMP))) {
        free_node(b);
        goto bad;
    }
    const pcol *c = &ps->cols[a->field];
    bool date = a->kind == N_COLUMN && c->ct.kind == NS_CT_DATE;
    bool num = !date && (a->kind == N_LENGTH || c->ct.kind != NS_CT_TEXT);
    /* Dates compare with dates; text by bytes for = and <> only; numbers
     * need a number. */
    if (date != b->date || (!date && num == b->text) ||
        (!num && !date && op != OP_EQ && op != OP_NE) ||
        (num && c->ct.kind != NS_CT_INT && c->ct.kind != NS_CT_NUMERIC &&
         c->ct.kind != NS_CT_REAL && a->kind != N_LENGTH)) {
        free_node(b);
        free_node(n);
        goto bad;
    }
    n->op = op;
    n->any = want_array;
    n->a = a;
    n->lits = b->lits;
    n->nlits = b->nlits;
    b->lits = NULL;
    b->nlits = 0;
    free_node(b);
    const char *decl = c->ct.decl;
    n->bpchar = strncmp(decl, "character(", 10) == 0 || strcmp(decl, "character") == 0 ||
                strcmp(decl, "bpchar") == 0;
    n->lens = calloc(n->nlits ? n->nlits : 1, sizeof(*n->lens));
    n->dbl = calloc(n->nlits ? n->nlits : 1, sizeof(*n->dbl));
    if (!n->lens || !n->dbl) {
        free_node(n);
        ps->bad = true;
        return NULL;
    }
    for (size_t i = 0; i < n->nlits; i++) {
        char *end;
        size_t len = strlen(n->lits[i]);
        while (n->bpchar && len && n->lits[i][len - 1] == ' ')
            len--;
        n->lens[i] = len;
        n->dbl[i] = strtod(n->lits[i], &end);
        if (*end || end == n->lits[i])
            n->dbl[i] = NAN;
    }
    return n;
bad:
    free_node(a);
    ps->bad = true;
    return NULL;
}

static cknode *parse_unary(parser *ps)
{
    if (++ps->depth > MAX_DEPTH) {
        ps->bad = true;
        return NULL;
    }
    cknode *n;
    if (eat(ps, "NOT")) {
        cknode *a = parse_unary(ps);
        if (!a || !(n = node(ps, N_NOT))) {
            free_node(a);
            ps->bad = true;
            n = NULL;
        } else {
            n->a = a;
        }
    } else {
        n = parse_pred(ps);
    }
    ps->depth--;
    return n;
}

static cknode *parse_bin(parser *ps, bool is_or)
{
    cknode *a = is_or ? parse_bin(ps, false) : parse_unary(ps);
    while (a && !ps->bad && eat(ps, is_or ? "OR" : "AND")) {
        cknode *b = is_or ? parse_bin(ps, false) : parse_unary(ps), *n;
        if (!b || !(n = node(ps, is_or ? N_OR : N_AND))) {
            free_node(a);
            free_node(b);
            ps->bad = true;
            return NULL;
        }
        n->a = a;
        n->b = b;
        a = n;
    }
    return a;
}

static cknode *parse_or(parser *ps)
{
    return parse_bin(ps, true);
}

static bool is_condition(const cknode *n)
{
    if (!n)
        return false;
    switch (n->kind) {
    case N_OR:
    case N_AND:
        return is_condition(n->a) && is_condition(n->b);
    case N_NOT:
        return is_condition(n->a);
    case N_CMP:
    case N_CMP2:
    case N_ISNULL:
        return true;
    default:
        return false;
    }
}

ns_pg_check *ns__pg_check_parse(const char *name, const char *def, const pcol *cols, size_t ncols,
                                const char *today, bool casing)
{
    parser ps = {.p = def, .today = today, .cols = cols, .ncols = ncols, .casing = casing};
    if (!eat(&ps, "CHECK"))
        return NULL;
    cknode *root = parse_or(&ps);
    skip(&ps);
    /* "NOT VALID" still checks new rows; anything else after is not understood. */
    if (ps.bad || !is_condition(root) || (*ps.p && strcmp(ps.p, "NOT VALID") != 0)) {
        free_node(root);
        return NULL;
    }
    ns_pg_check *c = calloc(1, sizeof(*c));
    if (!c || !(c->name = ns__strdup(name))) {
        free(c);
        free_node(root);
        return NULL;
    }
    c->root = root;
    return c;
}

void ns__pg_check_free(ns_pg_check *c)
{
    if (!c)
        return;
    free_node(c->root);
    free(c->name);
    free(c);
}

/* ---------------------------------------------------------- evaluation */

/* A plain decimal ("-012.50", " 3 "): sign, integer digits without leading
 * zeros, fraction digits without trailing zeros. False when it is not one. */
typedef struct dec {
    bool neg;
    const char *ip, *fp;
    size_t il, fl;
} dec;

static bool dec_read(const char *p, size_t n, dec *d)
{
    const char *e = p + n;
    while (p < e && *p == ' ')
        p++;
    while (e > p && e[-1] == ' ')
        e--;
    d->neg = p < e && *p == '-';
    if (p < e && (*p == '-' || *p == '+'))
        p++;
    const char *start = p;
    while (p < e && *p == '0')
        p++;
    d->ip = p;
    while (p < e && isdigit((unsigned char)*p))
        p++;
    d->il = (size_t)(p - d->ip);
    d->fp = p;
    d->fl = 0;
    if (p < e && *p == '.') {
        d->fp = ++p;
        while (p < e && isdigit((unsigned char)*p))
            p++;
        d->fl = (size_t)(p - d->fp);
        while (d->fl && d->fp[d->fl - 1] == '0')
            d->fl--;
    }
    bool digits = false;
    for (const char *q = start; q < p; q++)
        digits |= isdigit((unsigned char)*q) != 0;
    if (p != e || !digits)
        return false;
    if (!d->il && !d->fl)
        d->neg = false; /* -0 is 0 */
    return true;
}

/* Compares two plain decimals: -1, 0, 1; 2 when either is not one. */
static int decimal_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    dec x, y;
    if (!dec_read(a, an, &x) || !dec_read(b, bn, &y))
        return 2;
    if (x.neg != y.neg)
        return x.neg ? -1 : 1;
    int c;
    if (x.il != y.il) {
        c = x.il < y.il ? -1 : 1;
    } else if ((c = memcmp(x.ip, y.ip, x.il)) == 0) {
        size_t m = x.fl < y.fl ? x.fl : y.fl;
        if ((c = memcmp(x.fp, y.fp, m)) == 0)
            c = x.fl == y.fl ? 0 : x.fl < y.fl ? -1 : 1;
    }
    c = c < 0 ? -1 : c > 0;
    return x.neg ? -c : c;
}

static bool op_holds(int op, int c)
{
    switch (op) {
    case OP_EQ:
        return c == 0;
    case OP_NE:
        return c != 0;
    case OP_LT:
        return c < 0;
    case OP_LE:
        return c <= 0;
    case OP_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

/* Characters of UTF-8 text. */
static size_t chars(const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)p[i] & 0xc0) != 0x80;
    return k;
}

/* The comparison of one value (b: as the type check read it) with
 * constant i: R_TRUE, R_FALSE, or R_ANY when it cannot tell. */
static int compare(const cknode *n, const pcol *c, const ns_value *v, const ns_bound *b, size_t i)
{
    const char *p = b->kind == NS_B_TEXT ? b->p : v->ptr, *lit = n->lits[i];
    size_t len = b->kind == NS_B_TEXT ? b->len : v->len;
    while (n->bpchar && len && p[len - 1] == ' ') /* char(n) ignores trailing spaces */
        len--;
    if (n->a->kind == N_LENGTH) {
        char num[32];
        int k = snprintf(num, sizeof(num), "%zu", chars(p, len));
        int r = decimal_cmp(num, (size_t)k, lit, n->lens[i]);
        return r == 2 ? R_ANY : op_holds(n->op, r) ? R_TRUE : R_FALSE;
    }
    if (c->ct.kind == NS_CT_DATE) { /* YYYY-MM-DD both: text order is time order */
        if (v->len != 10 || n->lens[i] != 10)
            return R_ANY;
        return op_holds(n->op, memcmp(v->ptr, lit, 10)) ? R_TRUE : R_FALSE;
    }
    if (c->ct.kind == NS_CT_TEXT) {
        bool eq = n->lens[i] == len && memcmp(lit, p, len) == 0;
        return (n->op == OP_EQ) == eq ? R_TRUE : R_FALSE;
    }
    if (c->ct.kind == NS_CT_REAL) {
        /* PostgreSQL reads a double with strtod too: both sides are the
         * same doubles. NaN and infinities are left to the server. */
        double x = b->d, y = n->dbl[i];
        if (b->kind != NS_B_REAL || !isfinite(x) || !isfinite(y))
            return R_ANY;
        return op_holds(n->op, x < y ? -1 : x > y ? 1 : 0) ? R_TRUE : R_FALSE;
    }
    int r = decimal_cmp(p, len, lit, n->lens[i]);
    return r == 2 ? R_ANY : op_holds(n->op, r) ? R_TRUE : R_FALSE;
}

/* A text value's bytes: the field as the type check read it, and how
 * lower() / upper() map them (0: as it is). False when it is NULL. */
static bool text_of(const cknode *n, const ns_bound *bounds, const ns_item *it, const char **p,
                    size_t *len, int *map)
{
    const ns_value *v = &it->fields[n->field];
    const ns_bound *b = &bounds[n->field];
    if (!v->ptr)
        return false;
    *p = b->kind == NS_B_TEXT ? b->p : v->ptr;
    *len = b->kind == NS_B_TEXT ? b->len : v->len;
    *map = n->kind == N_LOWER ? 1 : n->kind == N_UPPER ? 2 : 0;
    return true;
}

/* Two text values compared by bytes, lower()/upper() applied to ASCII:
 * R_TRUE, R_FALSE; R_ANY for a non-ASCII byte under a case mapping (the
 * locale's rules, the server's to apply). */
static int compare_texts(const cknode *n, const ns_bound *bounds, const ns_item *it)
{
    const char *p, *q;
    size_t pl, ql;
    int pm, qm;
    if (!text_of(n->a, bounds, it, &p, &pl, &pm) || !text_of(n->b, bounds, it, &q, &ql, &qm))
        return R_NULL;
    bool eq = pl == ql, doubt = false;
    for (size_t i = 0; i < pl || i < ql; i++) {
        unsigned char x = i < pl ? (unsigned char)p[i] : 0, y = i < ql ? (unsigned char)q[i] : 0;
        doubt |= (x >= 0x80 && pm) || (y >= 0x80 && qm);
        if (pm == 1 && x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        else if (pm == 2 && x >= 'a' && x <= 'z')
            x = (unsigned char)(x - 'a' + 'A');
        if (qm == 1 && y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        else if (qm == 2 && y >= 'a' && y <= 'z')
            y = (unsigned char)(y - 'a' + 'A');
        eq &= x == y;
    }
    if (doubt)
        return R_TRUE | R_FALSE;
    return (n->op == OP_EQ) == eq ? R_TRUE : R_FALSE;
}

static int eval(const cknode *n, const pcol *cols, const ns_bound *bounds, const ns_item *it)
{
    int a, b, r = 0;
    switch (n->kind) {
    case N_NOT:
        a = eval(n->a, cols, bounds, it);
        return (a & R_TRUE ? R_FALSE : 0) | (a & R_FALSE ? R_TRUE : 0) | (a & R_NULL);
    case N_AND:
    case N_OR:
        a = eval(n->a, cols, bounds, it);
        b = eval(n->b, cols, bounds, it);
        for (int x = 1; x <= 4; x <<= 1)
            for (int y = 1; y <= 4; y <<= 1) {
                if (!(a & x) || !(b & y))
                    continue;
                bool t = n->kind == N_AND ? x == R_TRUE && y == R_TRUE : x == R_TRUE || y == R_TRUE;
                bool f =
                    n->kind == N_AND ? x == R_FALSE || y == R_FALSE : x == R_FALSE && y == R_FALSE;
                r |= t ? R_TRUE : f ? R_FALSE : R_NULL;
            }
        return r;
    case N_ISNULL: {
        bool null = !it->fields[n->a->field].ptr;
        return null != n->neg ? R_TRUE : R_FALSE;
    }
    case N_CMP2:
        return compare_texts(n, bounds, it);
    case N_CMP: {
        const ns_value *v = &it->fields[n->a->field];
        if (!v->ptr)
            return R_NULL;
        const pcol *c = &cols[n->a->field];
        const ns_bound *bd = &bounds[n->a->field];
        if (!n->any)
            return n->nlits == 1 ? compare(n, c, v, bd, 0) : R_ANY;
        /* = ANY is true when one is surely equal, false when all surely
         * differ; <> ALL is false when one is surely equal, true when all
         * surely differ; in doubt, either. */
        bool one = false, all = true;
        int sure = n->op == OP_EQ ? R_TRUE : R_FALSE; /* "this one is equal" */
        for (size_t i = 0; i < n->nlits; i++) {
            int one_r = compare(n, c, v, bd, i);
            one |= one_r == sure;
            all &= one_r == (R_TRUE | R_FALSE | R_NULL) - R_NULL - sure;
        }
        if (one)
            return n->op == OP_EQ ? R_TRUE : R_FALSE;
        if (all)
            return n->op == OP_EQ ? R_FALSE : R_TRUE;
        return R_TRUE | R_FALSE;
    }
    default:
        return R_ANY;
    }
}

bool ns__pg_check_may_fail(const ns_pg_check *c, const pcol *cols, const ns_bound *bounds,
                           const ns_item *it)
{
    return (eval(c->root, cols, bounds, it) & R_FALSE) != 0;
}
