/*
 * test_lua_patterns.c - the metered string functions (src/proc/lua_bounded.c)
 * against Lua's own: the same calls on a stock Lua 5.4 state and on one
 * whose string.find/match/gmatch/gsub and table.move/concat/sort are
 * replaced must give the same results and the same errors, for hand-picked
 * cases and for thousands of random patterns. And the budget stops what
 * Lua's own would run for minutes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "proc/lua_bounded.h"

typedef struct meter {
    ns_lua_meter base;
    int64_t used, limit;
} meter;

static void charge(lua_State *L, ns_lua_meter *m, int64_t steps)
{
    meter *me = (meter *)m;
    me->used += steps;
    if (me->used > me->limit)
        luaL_error(L, "budget spent");
}

/* Serialises every value a call returned, so two states can be compared. */
static const char ser_lua[] =
    "function ser(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    if type(v) == 'table' then\n"
    "      local parts = {}\n"
    "      for k = 1, #v do parts[#parts + 1] = ser(v[k]) end\n"
    "      out[#out + 1] = '{' .. table.concat(parts, ',') .. '}'\n"
    "    else\n"
    "      out[#out + 1] = type(v) .. ':' .. tostring(v)\n"
    "    end\n"
    "  end\n"
    "  return table.concat(out, ' ')\n"
    "end\n"
    "function all(s, p, i)\n"
    "  local r = {}\n"
    "  for a, b, c in string.gmatch(s, p, i) do r[#r + 1] = {a, b, c} end\n"
    "  return r\n"
    "end\n"
    "repl = {a = 'A', ['1'] = 'one', x = false, b = {}}\n"
    "function fn(a, b) if a == 'b' then return nil end\n"
    "  return '<' .. tostring(a) .. tostring(b) .. '>' end\n";

static lua_State *state(meter *m)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    if (m)
        ns__lua_bound(L, &m->base);
    assert_int_equal(luaL_dostring(L, ser_lua), LUA_OK);
    return L;
}

/* Runs `expr` (a Lua expression) in L; its serialised values, or "error:
 * message". */
static void eval(lua_State *L, const char *expr, char *out, size_t n)
{
    char code[4096];
    snprintf(code, sizeof(code), "return ser(%s)", expr);
    if (luaL_loadstring(L, code) != LUA_OK) {
        snprintf(out, n, "syntax: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return;
    }
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        /* The function names in argument errors differ only by how Lua
         * found the function: compare the rest. */
        const char *bad = m ? strstr(m, "bad argument #") : NULL;
        snprintf(out, n, "error: %s", bad ? bad + 16 : m ? m : "?");
        char *to = strstr(out, " to '");
        if (to && bad) {
            char *end = strchr(to + 5, '\'');
            if (end)
                memmove(to, end + 1, strlen(end + 1) + 1);
        }
        lua_pop(L, 1);
        return;
    }
    snprintf(out, n, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
}

static int mismatches;

static void same(lua_State *stock, lua_State *ours, const char *expr)
{
    char a[2048], b[2048];
    eval(stock, expr, a, sizeof(a));
    eval(ours, expr, b, sizeof(b));
    if (strcmp(a, b) != 0) {
        if (mismatches++ < 20)
            print_error("%s\n  lua:  %s\n  ours: %s\n", expr, a, b);
    }
}

static void test_hand_picked(void **unused)
{
    (void)unused;
    meter m = {{charge}, 0, INT64_MAX};
    lua_State *stock = state(NULL), *ours = state(&m);
    static const char *const cases[] = {
        /* clang-format off */
        "string.find('hello world', 'o w')",
        "string.find('hello world', 'o', 6)",
        "string.find('hello', 'l', -2)",
        "string.find('hello', 'l', -20)",
        "string.find('hello', '', 10)",
        "string.find('hello', '', 6)",
        "string.find('a.b', '.', 1, true)",
        "string.find('a+b', '+', 1, true)",
        "string.find('abc', '[b-')",
        "string.find('abc', '%')",
        "string.find('abc', '(')",
        "string.find('abc', ')')",
        "string.find('abc', '%1')",
        "string.find('abc', '(a)%2')",
        "string.find('abc', '%f')",
        "string.find('THE (quick) fox', '%f[%a]%a+')",
        "string.find('THE (quick) fox', '%b()')",
        "string.find('x', '%b')",
        "string.find('a\\0b', 'a%zb')",
        "string.find('a\\0b', '\\0')",
        "string.find('a\\0b', '[\\0]')",
        "string.match('key = value', '(%w+)%s*=%s*(%w+)')",
        "string.match('  trim  ', '^%s*(.-)%s*$')",
        "string.match('hello', '()ll()')",
        "string.match('hello', '^(h)(e)(l)(l)(o)$')",
        "string.match('aaa', 'a-b')",
        "string.match('aaab', 'a-b')",
        "string.match('aaab', 'a*')",
        "string.match('aaab', 'a+?')",
        "string.match('[]]', '[]]')",
        "string.match('a]', '[^]]')",
        "string.match('x-y', '[a%-z]+')",
        "string.match('2024-03-10', '(%d+)-(%d+)-(%d+)')",
        "string.match('abcabc', '(abc)%1')",
        "string.match('abc', '((a)(b))')",
        "string.match('abc', '(a(b)c')",
        "string.match('ab', '%A')",
        "string.match('1a', '%D%d')",
        "string.match('$', '$')",
        "string.match('a$', 'a$')",
        "string.match('a$b', 'a$b')",
        "string.match('^a', '^^a')",
        "string.match('hello', 'l', 0)",
        "string.match('hello', '.', 100)",
        "all('hello world from lua', '%a+')",
        "all('k1=v1, k2=v2', '(%w+)=(%w+)')",
        "all('abc', '')",
        "all('abc', 'x*')",
        "all('hello', 'l', 4)",
        "all('hello', '^h')",
        "all('hello', '()')",
        "all('one two', '%a+', -3)",
        "string.gsub('hello world', 'o', '0')",
        "string.gsub('hello world', '(o)', '[%1]')",
        "string.gsub('hello world', 'o', '%0%0')",
        "string.gsub('hello', '', '-')",
        "string.gsub('hello', 'l*', '-')",
        "string.gsub('hello', 'l', '%%')",
        "string.gsub('hello', 'l', '%2')",
        "string.gsub('hello', 'l', '%')",
        "string.gsub('hello', 'l', '%x')",
        "string.gsub('hello', '(l)(l)', '%2%1')",
        "string.gsub('hello', '()l', '%1')",
        "string.gsub('abc', '%w', repl)",
        "string.gsub('abxc', '%w', repl)",
        "string.gsub('1', '%w', repl)",
        "string.gsub('abc', '%w', fn)",
        "string.gsub('abc', '(%w)()', fn)",
        "string.gsub('abc', '%w', '%0', 2)",
        "string.gsub('abc', '%w', '%0', 0)",
        "string.gsub('abc', '%w', '%0', -1)",
        "string.gsub('abc', '^a', 'X')",
        "string.gsub('abc', '^b', 'X')",
        "string.gsub('abc', 'b', 12)",
        "string.gsub('abc', 'b', true)",
        "string.gsub('abc', '%w', function() return {} end)",
        "string.gsub('hello world', '%w+', '<%0>')",
        "string.gsub('abc', '.', {a = 1, b = 2.5})",
        "string.find(12345, 34)",
        "string.find('x', nil)",
        "string.gmatch(nil, 'x')",
        "string.rep('ab', 3, ','):gsub(',', ';')",
        "('x'):rep(10):find('x+$')",
        "string.match(string.rep('a', 300), string.rep('a?', 300) .. string.rep('a', 300))",
        "string.match(string.rep('(', 40), string.rep('%(', 40))",
        "string.match('abc', string.rep('(', 33) .. 'a' .. string.rep(')', 33))",
        "string.match('abc', string.rep('(', 32) .. 'a' .. string.rep(')', 32))",
        "string.find(string.rep('a', 250), string.rep('a?', 250))",
        "table.concat({1, 2, 3}, '-')",
        "table.concat({1, 2, 3}, '-', 2)",
        "table.concat({1, 2, 3}, '-', 2, 5)",
        "table.concat({}, '-', 1, 0)",
        "table.concat({1, {}, 3})",
        "table.concat(nil)",
        "table.move({1, 2, 3}, 1, 3, 2)",
        "table.move({1, 2, 3}, 2, 3, 1)",
        "table.move({1, 2, 3}, 1, 3, 1, {})",
        "table.move({1, 2, 3}, 1, 0, 1)",
        "table.move({1, 2, 3}, -1, math.maxinteger, 1)",
        "table.move({1, 2, 3}, 1, 3, math.maxinteger)",
        "table.move(nil, 1, 2, 1)",
        "table.move({}, 'x', 2, 1)",
        "(function() local t = {5, 2, 8, 1} table.sort(t) return t end)()",
        ("(function() local t = {5, 2, 8, 1} table.sort(t, function(a, b) return a > b end) "
         "  return t end)()"),
        "table.sort(nil)",
        /* clang-format on */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        same(stock, ours, cases[i]);
    lua_close(stock);
    lua_close(ours);
    assert_int_equal(mismatches, 0);
}

static uint64_t rng = 88172645463325252ULL;
static unsigned next(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void random_pattern(char *out, size_t n)
{
    static const char *const atoms[] = {
        "a",    "b",      ".",      "%a",   "%d",   "%s",    "%w",    "%p",  "%A",   "%S", "%b()",
        "%bab", "%f[%w]", "%f[%W]", "[ab]", "[^a]", "[a-c]", "[%d_]", "[]]", "[^]]", "(",  ")",
        "()",   "*",      "+",      "-",    "?",    "^",     "$",     "%1",  "%2",   "%",  "]",
        "[",    "%.",     "%%",     "1",    " ",    "x",     "%x",    "%l",  "%u",   "%c", "%g"};
    size_t len = 0;
    unsigned k = 1 + next(6);
    out[0] = '\0';
    for (unsigned i = 0; i < k; i++) {
        const char *a = atoms[next(sizeof(atoms) / sizeof(atoms[0]))];
        if (len + strlen(a) + 1 >= n)
            break;
        strcpy(out + len, a);
        len += strlen(a);
    }
}

static void random_subject(char *out, size_t n)
{
    static const char chars[] = "ab()1 _xAB.%]";
    unsigned k = next((unsigned)(n < 14 ? n : 14));
    for (unsigned i = 0; i < k; i++)
        out[i] = chars[next(sizeof(chars) - 1)];
    out[k] = '\0';
}

/* Lua string literal of s (patterns hold quotes and backslashes rarely). */
static void lit(char *out, size_t n, const char *s)
{
    size_t k = 0;
    out[k++] = '\'';
    for (; *s && k + 5 < n; s++) {
        if (*s == '\'' || *s == '\\')
            out[k++] = '\\';
        out[k++] = *s;
    }
    out[k++] = '\'';
    out[k] = '\0';
}

static void test_random(void **unused)
{
    (void)unused;
    meter m = {{charge}, 0, INT64_MAX};
    lua_State *stock = state(NULL), *ours = state(&m);
    static const char *const repls[] = {"'-'",  "'%0'", "'%1'", "'<%1%2>'", "'%%'",
                                        "repl", "fn",   "'%'",  "7"};
    for (int i = 0; i < 20000; i++) {
        char pat[64], sub[32], lp[160], ls[80], expr[512];
        random_pattern(pat, sizeof(pat));
        random_subject(sub, sizeof(sub));
        lit(lp, sizeof(lp), pat);
        lit(ls, sizeof(ls), sub);
        int init = (int)next(9) - 4;
        switch (next(5)) {
        case 0:
            snprintf(expr, sizeof(expr), "string.find(%s, %s, %d)", ls, lp, init);
            break;
        case 1:
            snprintf(expr, sizeof(expr), "string.match(%s, %s, %d)", ls, lp, init);
            break;
        case 2:
            snprintf(expr, sizeof(expr), "all(%s, %s, %d)", ls, lp, init);
            break;
        case 3:
            snprintf(expr, sizeof(expr), "string.gsub(%s, %s, %s, %d)", ls, lp,
                     repls[next(sizeof(repls) / sizeof(repls[0]))], (int)next(4) + 1);
            break;
        default:
            snprintf(expr, sizeof(expr), "string.find(%s, %s, %d, true)", ls, lp, init);
        }
        same(stock, ours, expr);
    }
    lua_close(stock);
    lua_close(ours);
    assert_int_equal(mismatches, 0);
}

/* What stock Lua runs for minutes stops once the budget is spent. */
static void test_budget(void **unused)
{
    (void)unused;
    static const char *const slow[] = {
        "string.find(string.rep('a', 3000), '.-.-.-b')",
        "string.match('a' .. string.rep(' ', 60000) .. 'x', '^(.-)%s*$')",
        "string.gsub(string.rep('a', 3000), '.-.-.-b', '')",
        "all(string.rep('a', 3000), '.-.-.-b')",
        "table.move({}, 1, 1e12, 2)",
    };
    for (size_t i = 0; i < sizeof(slow) / sizeof(slow[0]); i++) {
        meter m = {{charge}, 0, 1000000};
        lua_State *L = state(&m);
        char out[512];
        eval(L, slow[i], out, sizeof(out));
        if (!strstr(out, "budget spent"))
            fail_msg("%s: %s (used %lld)", slow[i], out, (long long)m.used);
        lua_close(L);
    }
    /* A plain find is linear (memmem), where Lua's own is quadratic. */
    {
        meter m = {{charge}, 0, 1000000};
        lua_State *L = state(&m);
        char out[512];
        eval(L, "string.find(string.rep('a', 1e7), string.rep('a', 1e4) .. 'b', 1, true)", out,
             sizeof(out));
        assert_string_equal(out, "nil:nil");
        lua_close(L);
    }
    /* And a fast one costs little. */
    meter m = {{charge}, 0, 1000000};
    lua_State *L = state(&m);
    char out[512];
    eval(L, "string.match('key = value', '(%w+)%s*=%s*(%w+)')", out, sizeof(out));
    assert_string_equal(out, "string:key string:value");
    assert_true(m.used < 100);
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_picked),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
