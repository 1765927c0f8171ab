/*
 * fuzz_lua.c - libFuzzer harness for the Lua processor's item interface and
 * its metered pattern matcher.
 *
 * The first byte picks a mode:
 * - even: the input is decoded into a process(item) of random statements
 *   over the item and random values: its fields read and assigned with any
 *   key, pairs() and its iterator called with any arguments, next() and
 *   rawset() moving the hidden key and data, items kept across calls and
 *   reused, metatables asked for and set, patterns run on fields. Each
 *   statement runs under pcall, so one error does not end the script. Any
 *   outcome is fine (written, filtered, rejected) except a crash, a leak or
 *   a sanitizer report.
 * - odd: the input is a pattern, a subject and a replacement, run through
 *   find, match, gmatch and gsub of a stock Lua state and of one with the
 *   metered functions: the results must be the same (abort otherwise).
 */
#include "proc/lua_bounded.h"
#include "proc/proc.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

typedef struct reader {
    const unsigned char *p;
    size_t n;
} reader;

static unsigned byte(reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

/* A Lua string literal of up to 8 input bytes, every byte escaped. */
static void literal(ns_buf *b, reader *r)
{
    unsigned len = byte(r) % 9;
    ns__buf_putc(b, '"');
    for (unsigned i = 0; i < len; i++)
        ns__buf_printf(b, "\\%03u", byte(r));
    ns__buf_putc(b, '"');
}

static void value(ns_buf *b, reader *r)
{
    static const char *const fixed[] = {"nil",
                                        "true",
                                        "false",
                                        "0",
                                        "-1",
                                        "1.5",
                                        "math.maxinteger",
                                        "0/0",
                                        "\"a\"",
                                        "\"b\"",
                                        "\"c\"",
                                        "\"zz\"",
                                        "\"\"",
                                        "item",
                                        "K",
                                        "{}",
                                        "{a = 1, b = {}}",
                                        "tostring",
                                        "pairs(item)",
                                        "next",
                                        "(next(item))",
                                        "select(2, next(item))",
                                        "setmetatable({}, {__index = item})",
                                        "coroutine.create(tostring)",
                                        "string.rep('x', 100)",
                                        "tostring(item)"};
    unsigned k = byte(r) % (sizeof(fixed) / sizeof(fixed[0]) + 1);
    if (k == sizeof(fixed) / sizeof(fixed[0]))
        literal(b, r);
    else
        ns__buf_printf(b, "%s", fixed[k]);
}

static void statement(ns_buf *b, reader *r)
{
    ns__buf_printf(b, "  pcall(function() ");
    switch (byte(r) % 17) {
    case 0:
        ns__buf_printf(b, "local _ = item[");
        value(b, r);
        ns__buf_printf(b, "]");
        break;
    case 1:
        ns__buf_printf(b, "item[");
        value(b, r);
        ns__buf_printf(b, "] = ");
        value(b, r);
        break;
    case 2:
        ns__buf_printf(b, "local f = pairs(item) f(");
        value(b, r);
        ns__buf_printf(b, ", ");
        value(b, r);
        ns__buf_printf(b, ")");
        break;
    case 3:
        ns__buf_printf(b, "next(item, ");
        value(b, r);
        ns__buf_printf(b, ")");
        break;
    case 4:
        ns__buf_printf(b, "rawset(item, ");
        value(b, r);
        ns__buf_printf(b, ", ");
        value(b, r);
        ns__buf_printf(b, ")");
        break;
    case 5:
        ns__buf_printf(b, "K = item");
        break;
    case 6:
        ns__buf_printf(b, "for k, v in pairs(");
        value(b, r);
        ns__buf_printf(b, ") do local _ = item[k] end");
        break;
    case 7:
        ns__buf_printf(b, "local k, v = next(item) while k ~= nil and type(k) ~= 'userdata' do k, "
                          "v = next(item, k) end rawset(");
        value(b, r);
        ns__buf_printf(b, ", k, v)");
        break;
    case 8:
        ns__buf_printf(b, "local m = getmetatable(item) local _ = m.__index");
        break;
    case 9:
        ns__buf_printf(b, "setmetatable(");
        value(b, r);
        ns__buf_printf(b, ", ");
        value(b, r);
        ns__buf_printf(b, ")");
        break;
    case 10:
        ns__buf_printf(b, "string.find(tostring(item.a), ");
        literal(b, r);
        ns__buf_printf(b, ")");
        break;
    case 11:
        ns__buf_printf(b, "string.gsub(tostring(item.b), ");
        literal(b, r);
        ns__buf_printf(b, ", ");
        value(b, r);
        ns__buf_printf(b, ")");
        break;
    case 12:
        ns__buf_printf(b, "collectgarbage()");
        break;
    case 13:
        ns__buf_printf(b, "(K or item)[");
        value(b, r);
        ns__buf_printf(b, "] = ");
        value(b, r);
        break;
    case 14:
        ns__buf_printf(b, "for k, v in next, item, ");
        value(b, r);
        ns__buf_printf(b, " do end");
        break;
    case 15:
        ns__buf_printf(b, "state[");
        value(b, r);
        ns__buf_printf(b, "] = ");
        value(b, r);
        break;
    default:
        ns__buf_printf(b, "table.move({1, 2, 3}, 1, 3, 2, ");
        value(b, r);
        ns__buf_printf(b, ")");
    }
    ns__buf_printf(b, " end)\n");
}

/* Where a key of the Lua processor's configuration is (its key table). */
static void *lua_key(void *cfg, const char *name)
{
    for (const ns_key *k = ns__plugin_lua.keys; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return (char *)cfg + k->offset;
    abort();
}

static void run_items(reader *r)
{
    ns_buf code = {0};
    ns__buf_printf(&code, "function process(item)\n");
    unsigned n = byte(r) % 12;
    for (unsigned i = 0; i < n; i++)
        statement(&code, r);
    ns__buf_printf(&code, "  return ");
    if (byte(r) % 2)
        value(&code, r);
    else
        ns__buf_printf(&code, "item");
    ns__buf_printf(&code, "\nend\n");

    static const char *const cols[] = {"a", "b", "c"};
    void *cfg = calloc(1, ns__plugin_lua.cfg_size);
    if (!cfg)
        abort();
    ns_text *text = lua_key(cfg, "lua");
    text->text = (char *)ns__buf_cstr(&code);
    text->len = code.len;
    text->origin = (char *)"=fuzz";
    *(int64_t *)lua_key(cfg, "instructions") = 100000;
    ns_proc_args args = {.columns = cols, .ncolumns = 3, .memory_limit = 16 << 20};
    ns_proc *p = NULL;
    ns_error err = {0};
    ns_arena arena;
    ns__arena_init(&arena, 1 << 16);
    if (ns__proc_new(&ns__proc_lua, &p, &err) == NS_OK &&
        p->vt->open(p, cfg, &args, &err) == NS_OK && p->vt->start(p, NULL, &err) == NS_OK) {
        ns_value f[3] = {{"1", 1}, {NULL, 0}, {"xyz", 3}};
        for (int i = 0; i < 3; i++) {
            ns_item it = {.line = i + 2, .raw = "1,,xyz", .raw_len = 6, .fields = f, .nfields = 3};
            ns_proc_result res;
            if (p->vt->process(p, &it, &arena, &res, &err) != NS_OK)
                break;
            if (res == NS_PROC_WRITE)
                for (size_t k = 0; k < it.nfields; k++)
                    if (it.fields[k].ptr && it.fields[k].len > (1u << 24))
                        abort();
            ns__arena_reset(&arena);
        }
        json_t *saved = NULL;
        if (p->vt->save(p, &saved, &err) == NS_OK)
            json_decref(saved);
    }
    ns__proc_free(p);
    ns__arena_free(&arena);
    free(cfg);
    ns__buf_free(&code);
}

typedef struct meter {
    ns_lua_meter base;
    long long used;
} meter;

static void charge(lua_State *L, ns_lua_meter *m, int64_t steps)
{
    if ((((meter *)m)->used += steps) > 20000000)
        luaL_error(L, "budget spent");
}

/* Every result of `expr` over the globals S, P, R, as one string. */
static void eval(lua_State *L, const char *expr, ns_buf *out)
{
    char code[512];
    snprintf(code, sizeof(code),
             "local r = table.pack(pcall(function() return %s end)) "
             "local o = {} for i = 1, r.n do o[i] = type(r[i]) .. ':' .. tostring(r[i]) end "
             "return table.concat(o, ' ')",
             expr);
    out->len = 0;
    if (luaL_dostring(L, code) != LUA_OK) {
        ns__buf_printf(out, "harness: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return;
    }
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    /* Errors from C say "bad argument #k to 'name'": only how Lua found
     * the name differs between the two states. */
    const char *bad = strstr(s, "bad argument #");
    ns__buf_append(out, s, bad ? (size_t)(bad - s) + 15 : n);
    lua_pop(L, 1);
}

static void compare(reader *r)
{
    meter m = {{charge}, 0};
    lua_State *stock = luaL_newstate(), *ours = luaL_newstate();
    luaL_openlibs(stock);
    luaL_openlibs(ours);
    ns__lua_bound(ours, &m.base);
    const char *names[] = {"P", "S", "R"};
    for (int k = 0; k < 3; k++) {
        unsigned len = byte(r) % 24;
        char buf[24];
        for (unsigned i = 0; i < len; i++)
            buf[i] = (char)byte(r);
        lua_pushlstring(stock, buf, len);
        lua_setglobal(stock, names[k]);
        lua_pushlstring(ours, buf, len);
        lua_setglobal(ours, names[k]);
    }
    int init = (int)(byte(r) % 9) - 4;
    char exprs[6][128];
    snprintf(exprs[0], sizeof(exprs[0]), "string.find(S, P, %d)", init);
    snprintf(exprs[1], sizeof(exprs[1]), "string.match(S, P, %d)", init);
    snprintf(exprs[2], sizeof(exprs[2]), "string.gsub(S, P, R, %d)", init + 5);
    snprintf(exprs[3], sizeof(exprs[3]),
             "(function() local t = {} for a, b in string.gmatch(S, P, %d) do t[#t + 1] = "
             "tostring(a) .. tostring(b) end return table.concat(t, '|') end)()",
             init);
    snprintf(exprs[4], sizeof(exprs[4]), "string.find(S, P, %d, true)", init);
    snprintf(exprs[5], sizeof(exprs[5]), "string.gsub(S, P, {a = 'A', [''] = 1}, 3)");
    ns_buf a = {0}, b = {0};
    for (int i = 0; i < 6; i++) {
        m.used = 0;
        eval(ours, exprs[i], &b);
        if (m.used > 20000000)
            continue; /* spent: stock Lua could run for minutes */
        eval(stock, exprs[i], &a);
        if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
            fprintf(stderr, "%s\n  lua:  %.*s\n  ours: %.*s\n", exprs[i], (int)a.len, a.data,
                    (int)b.len, b.data);
            abort();
        }
    }
    ns__buf_free(&a);
    ns__buf_free(&b);
    lua_close(stock);
    lua_close(ours);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    reader r = {data, size};
    if (byte(&r) % 2 == 0)
        run_items(&r);
    else
        compare(&r);
    return 0;
}
