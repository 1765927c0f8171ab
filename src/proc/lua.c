/*
 * lua.c - the `lua` processor: a Lua 5.4 script's process(item) sees each
 * item as a table of column -> string (nil for NULL) and returns the item to
 * write, nil to filter it, or raises an error to reject it.
 *
 * The state is sandboxed: base (without dofile/loadfile; load() takes text
 * only), string, table, math, utf8 and coroutine; no os, io, package/require
 * or debug. A count hook bounds the instructions of each call (a runaway
 * loop rejects its item, not the job) and the allocator bounds the script's
 * memory. Globals live across items, so a script may keep state; what it
 * keeps in the global table `state` is saved with every committed chunk
 * (as JSON in the checkpoint) and given back on a restart, before open().
 */
#include "proc/lua_bounded.h"
#include "proc/proc.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hook runs every HOOK_EVERY instructions. */
#define HOOK_EVERY 1000

typedef struct lua_proc {
    ns_proc base;
    lua_State *L;
    size_t mem, mem_limit;
    int64_t limit, ticks;
    int64_t steps;      /* work done in C (patterns, table.move), not yet a tick */
    ns_lua_meter meter; /* how lua_bounded.c charges that work */
    int process_ref;    /* the process function */
    int colset_ref;     /* output column name -> its index + 1 */
    int outnames_ref;   /* output column i + 1 -> its name */
    int meta_ref;       /* the items' metatable */
    int params_ref;     /* the table open(params) receives */
    char **out;         /* output column names */
    long *out_in;       /* input field of each output column, -1 when none */
    size_t nout, nin;
} lua_proc;

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lua_proc *p = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        p->mem -= old;
        return NULL;
    }
    if (nsize > old && p->mem + (nsize - old) > p->mem_limit)
        return NULL;
    void *q = realloc(ptr, nsize);
    if (q)
        p->mem = p->mem - old + nsize;
    return q;
}

static lua_proc *self(lua_State *L)
{
    return *(lua_proc **)lua_getextraspace(L);
}

static void count_hook(lua_State *L, lua_Debug *ar);

/*
 * The budget is spent. From now on every instruction of this thread raises
 * again (the hook every instruction), so a script cannot catch the error
 * with pcall and carry on: whatever it does next raises, up to our pcall.
 * call() puts the hook back for the next item.
 */
static void exhausted(lua_State *L)
{
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    lua_proc *p = self(L);
    if (++p->ticks <= p->limit / HOOK_EVERY)
        return;
    exhausted(L);
    /* Name the line the script was running (level 0: the hooked function);
     * lua_error, not luaL_error, which would add a position of its own. */
    if (lua_getstack(L, 0, ar) && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        lua_pushfstring(L, "%s:%d: instruction limit of %I exceeded (a loop that never ends?)",
                        ar->short_src, ar->currentline, (lua_Integer)p->limit);
    else
        lua_pushfstring(L, "instruction limit of %I exceeded (a loop that never ends?)",
                        (lua_Integer)p->limit);
    lua_error(L);
}

/* Work done in C by a bounded string or table function (lua_bounded.c):
 * HOOK_EVERY steps cost what HOOK_EVERY instructions cost. */
static void meter_charge(lua_State *L, ns_lua_meter *m, int64_t steps)
{
    lua_proc *p = (lua_proc *)(void *)((char *)m - offsetof(lua_proc, meter));
    p->steps += steps;
    p->ticks += p->steps / HOOK_EVERY;
    p->steps %= HOOK_EVERY;
    if (p->ticks <= p->limit / HOOK_EVERY)
        return;
    exhausted(L);
    luaL_where(L, 1); /* the script's line that called the function */
    lua_pushfstring(L,
                    "instruction limit of %I exceeded in a string or table function (a "
                    "pattern that backtracks too much?)",
                    (lua_Integer)p->limit);
    lua_concat(L, 2);
    lua_error(L);
}

/* setmetatable() refuses finalizers: Lua runs __gc with hooks off, so a
 * finalizer's loop could never be stopped (nor could SIGTERM or `stop`
 * reach the run). Lua marks an object for finalization only when its
 * metatable has __gc at this call, so checking here is enough. */
static int safe_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc finalizers are not allowed in a processor (they would run "
                                 "outside the instruction limit)");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/*
 * xpcall() whose message handler is never run once the budget is spent.
 * When the count hook raises the budget error, Lua calls the message
 * handler from inside the hook, with hooks off: a handler that loops would
 * never be stopped. So the handler is wrapped, and the wrapper hands the
 * error on untouched when the budget is gone. (Errors raised by the script
 * itself run the handler as usual, with hooks on.)
 */
static int guarded_handler(lua_State *L)
{
    lua_proc *p = self(L);
    if (p->ticks > p->limit / HOOK_EVERY)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int finish_xpcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int safe_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1); /* the first result */
    lua_pushvalue(L, 1);   /* the function */
    lua_rotate(L, 3, 2);   /* below its arguments */
    return finish_xpcall(L, lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_xpcall), 2);
}

/* load() for text chunks only: compiled bytecode could break the sandbox. */
static int safe_load(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=(load)");
    int env = !lua_isnone(L, 4) ? 4 : 0;
    if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

/* print() writes to standard error, prefixed, so it never mixes with data. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    fputs("lua:", stderr);
    for (int i = 1; i <= n; i++) {
        fputc(i == 1 ? ' ' : '\t', stderr);
        fputs(luaL_tolstring(L, i, NULL), stderr);
        lua_pop(L, 1);
    }
    fputc('\n', stderr);
    return 0;
}

static void sandbox(lua_State *L, ns_lua_meter *m)
{
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},
                                    {LUA_STRLIBNAME, luaopen_string},
                                    {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_MATHLIBNAME, luaopen_math},
                                    {LUA_UTF8LIBNAME, luaopen_utf8},
                                    {LUA_COLIBNAME, luaopen_coroutine},
                                    {NULL, NULL}};
    for (const luaL_Reg *l = libs; l->name; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    ns__lua_bound(L, m);
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
    lua_pushcfunction(L, safe_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");
    lua_pushcfunction(L, safe_setmetatable);
    lua_setglobal(L, "setmetatable");
    lua_pushcfunction(L, safe_xpcall);
    lua_setglobal(L, "xpcall");
}

/* The error object on top of the stack as a message (popped). */
static const char *error_text(lua_State *L, char *buf, size_t len)
{
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (m)
        snprintf(buf, len, "%s", m);
    else
        snprintf(buf, len, "(error object is a %s value)", luaL_typename(L, -1));
    lua_pop(L, 1);
    return buf;
}

/*
 * Items. process() gets a real table whose fields are loaded on first use:
 * the record's bytes are copied once into a userdata hung on the table (at
 * the light key &item_key), and __index turns a field into a Lua string only
 * when the script reads it, caching it in the table. A script that touches
 * two fields of ten makes two strings, not ten; one that returns the item
 * untouched makes none (the bytes go straight to the writer). A bit per
 * field says it was loaded or assigned, so a field set to nil is NULL and
 * not the value read. pairs() loads every field first.
 */
static char item_key;

typedef struct idata {
    size_t n;
    /* then: uint64_t loaded[(n + 63) / 64]; int64_t len[n] (-1: NULL);
     * size_t off[n]; the bytes */
} idata;

static uint64_t *id_loaded(idata *d)
{
    return (uint64_t *)(void *)(d + 1);
}

static int64_t *id_len(idata *d)
{
    return (int64_t *)(void *)(id_loaded(d) + (d->n + 63) / 64);
}

static size_t *id_off(idata *d)
{
    return (size_t *)(void *)(id_len(d) + d->n);
}

static char *id_bytes(idata *d)
{
    return (char *)(id_off(d) + d->n);
}

static bool id_is_loaded(idata *d, size_t i)
{
    return (id_loaded(d)[i / 64] >> (i % 64)) & 1;
}

static void id_set_loaded(idata *d, size_t i)
{
    id_loaded(d)[i / 64] |= 1ULL << (i % 64);
}

/* The size of an idata of n fields holding `bytes` bytes. */
static size_t id_size(size_t n, size_t bytes)
{
    return sizeof(idata) + (n + 63) / 64 * sizeof(uint64_t) +
           n * (sizeof(int64_t) + sizeof(size_t)) + bytes + 1;
}

/* The item data of the table at `idx`, or NULL when it is not an item. A
 * script can see the hidden key (next() is raw) and move the userdata from
 * one table to another, but it cannot make one: only items' own idata
 * exist. The size is checked all the same. */
static idata *item_data(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return NULL;
    lua_rawgetp(L, idx, &item_key);
    idata *d = lua_type(L, -1) == LUA_TUSERDATA ? lua_touserdata(L, -1) : NULL;
    size_t size = d ? lua_rawlen(L, -1) : 0;
    lua_pop(L, 1);
    if (!d || size < sizeof(idata) || d->n > size || id_size(d->n, 0) > size)
        return NULL;
    size_t bytes = d->n ? id_off(d)[d->n - 1] : 0;
    if (d->n && id_len(d)[d->n - 1] > 0)
        bytes += (size_t)id_len(d)[d->n - 1];
    return id_size(d->n, bytes) == size ? d : NULL;
}

/* Input field `i` of an item as a Lua string, cached in the table at 1. */
static int load_field(lua_State *L, idata *d, size_t i, int key)
{
    id_set_loaded(d, i);
    if (id_len(d)[i] < 0)
        return 0;
    lua_pushlstring(L, id_bytes(d) + id_off(d)[i], (size_t)id_len(d)[i]);
    lua_pushvalue(L, key);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* item[k] for a field not in the table: load it. Upvalue 1: input name ->
 * index + 1. */
static int item_index(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    lua_pushvalue(L, 2);
    lua_Integer i = lua_rawget(L, lua_upvalueindex(1)) == LUA_TNUMBER ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    idata *d = i > 0 ? item_data(L, 1) : NULL;
    if (!d || (size_t)i > d->n || id_is_loaded(d, (size_t)i - 1))
        return 0;
    return load_field(L, d, (size_t)i - 1, 2);
}

/* item[k] = v for a field not in the table: only output columns may be set
 * (a misspelt column fails at the line that sets it). Upvalues: output name
 * -> index + 1, input name -> index + 1. */
static int item_newindex(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    if (lua_type(L, 2) != LUA_TSTRING || lua_rawget(L, lua_upvalueindex(1)) != LUA_TNUMBER)
        return luaL_error(L,
                          "item has no column '%s' (declare new output columns in "
                          "processor.columns)",
                          luaL_tolstring(L, 2, NULL));
    lua_pushvalue(L, 2);
    lua_Integer i = lua_rawget(L, lua_upvalueindex(2)) == LUA_TNUMBER ? lua_tointeger(L, -1) : 0;
    idata *d = i > 0 ? item_data(L, 1) : NULL;
    if (d && (size_t)i <= d->n)
        id_set_loaded(d, (size_t)i - 1); /* assigned: the read value is gone */
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

/* next() over an item, without its hidden key. */
static int item_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    while (lua_next(L, 1)) {
        if (lua_touserdata(L, -2) != &item_key)
            return 2;
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    return 1;
}

/* pairs(item): every field loaded, then item_next. Upvalue 1: input field
 * index + 1 -> name. */
static int item_pairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    idata *d = item_data(L, 1);
    for (size_t i = 0; d && i < d->n; i++) {
        if (id_is_loaded(d, i))
            continue;
        lua_rawgeti(L, lua_upvalueindex(1), (lua_Integer)i + 1);
        lua_pop(L, load_field(L, d, i, lua_gettop(L)) + 1);
    }
    lua_pushcfunction(L, item_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* The message handler: an error object that is not a string gets the
 * script's line it was raised at (its __tostring is not called: it could
 * loop, and this runs outside the budget's reach). */
static int on_error(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER)
        return 1;
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: (error object is a %s value)", ar.short_src, ar.currentline,
                            luaL_typename(L, 1));
            return 1;
        }
    }
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

/* Calls the function below `nargs` arguments with the instruction budget. */
static int call(lua_proc *p, int nargs, int nres)
{
    lua_State *L = p->L;
    int base = lua_gettop(L) - nargs; /* the function */
    p->ticks = p->steps = 0;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_pushcfunction(L, on_error);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    return rc;
}

/* Calls the global hook `name` (open, close) when the script defines it. */
static ns_status hook(lua_proc *p, const char *name, int nargs, ns_error *err)
{
    lua_State *L = p->L;
    char msg[512];
    if (lua_getglobal(L, name) != LUA_TFUNCTION) {
        lua_pop(L, 1 + nargs);
        return NS_OK;
    }
    lua_insert(L, -1 - nargs);
    if (call(p, nargs, 0) != LUA_OK)
        return ns__err(err, NS_EINVAL, NULL, "processor %s(): %s", name,
                       error_text(L, msg, sizeof(msg)));
    return NS_OK;
}

/* processor: {lua: CODE | file: PATH, columns: [...], instructions: N} */
typedef struct lua_cfg {
    ns_text code;         /* the script, inline (lua:) or from a file beside the job */
    ns_names columns;     /* the output columns, when they differ from the input's */
    int64_t instructions; /* per call */
} lua_cfg;

static const ns_key lua_keys[] = {
    {.name = "lua",
     .type = NS_KEY_TEXT,
     .offset = offsetof(lua_cfg, code),
     .flags = NS_KEY_REQUIRED,
     .hint = "the script"},
    {.name = "file", .type = NS_KEY_FILE, .offset = offsetof(lua_cfg, code), .hint = "a .lua file"},
    {.name = "columns", .type = NS_KEY_NAMES, .offset = offsetof(lua_cfg, columns)},
    {.name = "instructions",
     .type = NS_KEY_INT,
     .offset = offsetof(lua_cfg, instructions),
     .def = "10000000",
     .min = 1000,
     .max = INT64_MAX / 2},
    {0}};

/* A script with a syntax error is refused when the job file is loaded
 * (validate, run: exit 2), naming its chunk and line. */
static ns_status lua_check(void *cfg, ns_key_ctx *ctx)
{
    lua_cfg *c = cfg;
    lua_State *L = luaL_newstate();
    ns_status st = NS_OK;
    if (!L)
        return ns__key_fail(ctx, NULL, "out of memory");
    if (luaL_loadbufferx(L, c->code.text, c->code.len, c->code.origin, "t") != LUA_OK)
        st = ns__key_fail(ctx, ns__key_given(ctx, "lua") ? "lua" : "file", "%s",
                          lua_tostring(L, -1));
    lua_close(L);
    return st;
}

static ns_status lp_open(ns_proc *base, const void *pcfg, const ns_proc_args *args, ns_error *err)
{
    const lua_cfg *lc = pcfg;
    lua_proc *p = (lua_proc *)base;
    char msg[512];
    /* What the script is given, in the words of the code below. */
    const struct {
        const char *code;
        size_t code_len;
        const char *chunkname;
        const char *const *columns, *const *out_columns, *const *param_names, *const *param_values;
        size_t ncolumns, nout, nparams;
    } c = {lc->code.text,
           lc->code.len,
           lc->code.origin,
           args->columns,
           (const char *const *)lc->columns.v,
           args->param_names,
           args->param_values,
           args->ncolumns,
           lc->columns.n,
           args->nparams},
      *cfg = &c;

    p->mem_limit = args->memory_limit > 0 ? (size_t)args->memory_limit : (size_t)256 << 20;
    p->limit = lc->instructions > 0 ? lc->instructions : 10000000;
    p->nin = cfg->ncolumns;
    p->process_ref = p->colset_ref = p->outnames_ref = p->meta_ref = p->params_ref = LUA_NOREF;
    if (!(p->L = lua_newstate(l_alloc, p)))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    lua_State *L = p->L;
    *(lua_proc **)lua_getextraspace(L) = p;
    lua_gc(L, LUA_GCGEN, 0, 0); /* items are short-lived garbage */
    p->meter.charge = meter_charge;
    sandbox(L, &p->meter);
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_newtable(L);
    lua_setglobal(L, "state");

    if (luaL_loadbufferx(L, cfg->code, cfg->code_len, cfg->chunkname, "t") != LUA_OK ||
        call(p, 0, 0) != LUA_OK)
        return ns__err(err, NS_ECONFIG, NULL, "processor: %s", error_text(L, msg, sizeof(msg)));
    if (lua_getglobal(L, "process") != LUA_TFUNCTION)
        return ns__err(err, NS_ECONFIG, NULL,
                       "processor: the script defines no function process(item) (%s)",
                       cfg->chunkname + 1);
    p->process_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* Field names as Lua strings, made once: input index -> name, input
     * name -> index, output name -> index, output index -> name. */
    const char *const *out = cfg->out_columns ? cfg->out_columns : cfg->columns;
    p->nout = cfg->out_columns ? cfg->nout : cfg->ncolumns;
    if (!(p->out = calloc(p->nout ? p->nout : 1, sizeof(*p->out))) ||
        !(p->out_in = calloc(p->nout ? p->nout : 1, sizeof(*p->out_in))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    lua_createtable(L, (int)cfg->ncolumns, 0);
    lua_createtable(L, 0, (int)cfg->ncolumns);
    for (size_t i = 0; i < cfg->ncolumns; i++) {
        lua_pushstring(L, cfg->columns[i]);
        lua_rawseti(L, -3, (lua_Integer)i + 1);
        lua_pushinteger(L, (lua_Integer)i + 1);
        lua_setfield(L, -2, cfg->columns[i]);
    }
    lua_createtable(L, 0, (int)p->nout);
    lua_createtable(L, (int)p->nout, 0);
    for (size_t i = 0; i < p->nout; i++) {
        if (!(p->out[i] = ns__strdup(out[i])))
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        p->out_in[i] = -1;
        for (size_t j = 0; j < cfg->ncolumns; j++)
            if (strcmp(out[i], cfg->columns[j]) == 0)
                p->out_in[i] = (long)j;
        lua_pushinteger(L, (lua_Integer)i + 1);
        lua_setfield(L, -3, out[i]);
        lua_pushstring(L, out[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    /* stack: innames, inidx, colset, outnames */
    p->outnames_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    p->colset_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 3); /* innames, inidx, colset, meta */
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, item_index, 1);
    lua_setfield(L, -2, "__index");
    lua_insert(L, -2); /* innames, inidx, meta, colset */
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, item_newindex, 2);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, item_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    /* getmetatable(item) gives this string, not the metamethods, and
     * setmetatable(item, ...) is refused. */
    lua_pushliteral(L, "nightshift item");
    lua_setfield(L, -2, "__metatable");
    p->meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 2);

    lua_createtable(L, 0, (int)cfg->nparams);
    for (size_t i = 0; i < cfg->nparams; i++) {
        lua_pushstring(L, cfg->param_values[i]);
        lua_setfield(L, -2, cfg->param_names[i]);
    }
    p->params_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return NS_OK;
}

/* ------------------------------------------------ state across restarts */

/* Deep enough for any sensible state; deeper is most likely a cycle. */
#define STATE_DEPTH 64

typedef struct to_json {
    char path[256]; /* where the conversion is: "state.a.b[3]" */
    char why[400];
} to_json;

/* The Lua value at the top of the stack as JSON; NULL with j->why set. */
static json_t *lua_json(lua_State *L, to_json *j, int depth)
{
    switch (lua_type(L, -1)) {
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, -1));
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1))
            return json_integer((json_int_t)lua_tointeger(L, -1));
        if (!isfinite(lua_tonumber(L, -1))) {
            snprintf(j->why, sizeof(j->why), "%s is not a finite number", j->path);
            return NULL;
        }
        return json_real(lua_tonumber(L, -1));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        json_t *v = json_stringn(s, len);
        if (!v)
            snprintf(j->why, sizeof(j->why), "%s is a string that is not valid UTF-8", j->path);
        return v;
    }
    case LUA_TTABLE:
        break;
    default:
        snprintf(j->why, sizeof(j->why),
                 "%s is a %s; only strings, numbers, booleans and tables of them can be saved",
                 j->path, luaL_typename(L, -1));
        return NULL;
    }
    if (depth >= STATE_DEPTH || !lua_checkstack(L, 4)) {
        snprintf(j->why, sizeof(j->why), "%s nests deeper than %d tables (a cycle?)", j->path,
                 STATE_DEPTH);
        return NULL;
    }
    /* A list (keys 1..n) becomes an array; string keys an object. */
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1), nlist = 0, nnames = 0, nother = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING)
            nnames++;
        else if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 && lua_tointeger(L, -2) <= n)
            nlist++;
        else
            nother++;
        lua_pop(L, 1);
    }
    bool list = nlist > 0;
    if (nother || (nlist && nlist != n)) {
        snprintf(j->why, sizeof(j->why),
                 "%s has keys that are neither names nor 1..n; only lists and tables with "
                 "string keys can be saved",
                 j->path);
        return NULL;
    }
    if (nlist && nnames) {
        snprintf(j->why, sizeof(j->why), "%s mixes list items and named keys", j->path);
        return NULL;
    }
    json_t *out = list ? json_array() : json_object();
    size_t plen = strlen(j->path);
    if (!out)
        return NULL;
    if (list) {
        for (lua_Integer i = 1; i <= n; i++) {
            snprintf(j->path + plen, sizeof(j->path) - plen, "[%lld]", (long long)i);
            lua_rawgeti(L, -1, i);
            json_t *v = lua_json(L, j, depth + 1);
            lua_pop(L, 1);
            if (!v || json_array_append_new(out, v) != 0)
                goto fail;
        }
    } else {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen); /* a string: no conversion */
            snprintf(j->path + plen, sizeof(j->path) - plen, ".%s", k);
            json_t *v = lua_json(L, j, depth + 1);
            lua_pop(L, 1);
            if (!v || json_object_setn_new(out, k, klen, v) != 0) {
                lua_pop(L, 1);
                goto fail;
            }
        }
    }
    j->path[plen] = '\0';
    return out;
fail:
    json_decref(out);
    if (!j->why[0])
        snprintf(j->why, sizeof(j->why), "%s: out of memory or a name that is not UTF-8", j->path);
    return NULL;
}

static ns_status lp_save(ns_proc *base, json_t **out, ns_error *err)
{
    lua_proc *p = (lua_proc *)base;
    lua_State *L = p->L;
    to_json j = {"state", ""};
    *out = NULL;
    int t = lua_getglobal(L, "state");
    if (t == LUA_TNIL || (t == LUA_TTABLE && (lua_pushnil(L), lua_next(L, -2) == 0))) {
        lua_pop(L, 1); /* nothing to keep */
        return NS_OK;
    }
    if (t == LUA_TTABLE)
        lua_pop(L, 2); /* the first key and value */
    json_t *v = t == LUA_TTABLE ? lua_json(L, &j, 0) : NULL;
    lua_pop(L, 1);
    if (t != LUA_TTABLE)
        snprintf(j.why, sizeof(j.why), "state is a %s, not a table", lua_typename(L, t));
    if (!v)
        return ns__err(err, NS_EINVAL, NULL, "processor: cannot save the state: %s", j.why);
    *out = v; /* its size is checked with the whole checkpoint (make_context) */
    return NS_OK;
}

/* Pushes JSON as Lua (run under pcall: it allocates). */
static void json_lua(lua_State *L, json_t *v)
{
    luaL_checkstack(L, 4, "state nests too deep");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *e;
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach(v, k, e)
        {
            lua_pushstring(L, k);
            json_lua(L, e);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(v), 0);
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_lua(L, json_array_get(v, i));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        lua_pushboolean(L, json_is_true(v));
        break;
    default:
        lua_pushnil(L);
    }
}

static int restore(lua_State *L)
{
    json_lua(L, lua_touserdata(L, 1));
    lua_setglobal(L, "state");
    return 0;
}

static ns_status lp_start(ns_proc *base, json_t *saved, ns_error *err)
{
    lua_proc *p = (lua_proc *)base;
    lua_State *L = p->L;
    char msg[512];
    if (saved) {
        lua_pushcfunction(L, restore);
        lua_pushlightuserdata(L, saved);
        if (call(p, 1, 0) != LUA_OK)
            return ns__err(err, NS_ENOMEM, NULL, "processor: cannot restore the state: %s",
                           error_text(L, msg, sizeof(msg)));
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->params_ref);
    return hook(p, "open", 1, err);
}

static const char *const *lp_columns(ns_proc *base, size_t *n)
{
    lua_proc *p = (lua_proc *)base;
    *n = p->nout;
    return (const char *const *)p->out;
}

static void reject(ns_item *it, ns_arena *a, const char *msg)
{
    it->code = "NS_PROCESS";
    it->column = NULL;
    it->message = ns__arena_strndup(a, msg, strlen(msg));
}

/* What one item's protected run works on. */
typedef struct item_run {
    lua_proc *p;
    const ns_item *it;
    ns_arena *a;
    ns_value *vals; /* the output fields */
    bool filtered, nomem;
} item_run;

/* Converts the value on top of the stack for output column i into r->vals
 * (raising a Lua error for a value that cannot be written). */
static void to_value(lua_State *L, item_run *r, size_t i)
{
    const char *s;
    size_t len;
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        r->vals[i] = (ns_value){0};
        return;
    case LUA_TSTRING:
    case LUA_TNUMBER:
        s = lua_tolstring(L, -1, &len); /* a copy on the stack: converting it is harmless */
        break;
    case LUA_TBOOLEAN:
        s = lua_toboolean(L, -1) ? "true" : "false";
        len = strlen(s);
        break;
    default:
        luaL_error(L, "process() returned a %s value for field '%s'", luaL_typename(L, -1),
                   r->p->out[i]);
        return;
    }
    if (!(r->vals[i].ptr = ns__arena_strndup(r->a, s, len))) {
        r->nomem = true;
        luaL_error(L, "out of memory");
    }
    r->vals[i].len = len;
}

/*
 * Builds the item, calls process() and turns what it returns into r->vals,
 * all under lua_pcall (lp_process): any error, the script's or a memory
 * error of Lua's, rejects the item instead of reaching Lua's panic handler.
 */
static int run_item(lua_State *L)
{
    item_run *r = lua_touserdata(L, 1);
    lua_proc *p = r->p;
    const ns_item *it = r->it;
    lua_settop(L, 0);

    /* The item: a table with the record's bytes hung on it (see idata). */
    size_t n = it->nfields < p->nin ? it->nfields : p->nin, bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += it->fields[i].len;
    lua_createtable(L, 0, 1);
    idata *d = lua_newuserdatauv(L, id_size(n, bytes), 0);
    d->n = n;
    memset(id_loaded(d), 0, (n + 63) / 64 * sizeof(uint64_t));
    char *b = id_bytes(d);
    for (size_t i = 0, at = 0; i < n; i++) {
        const ns_value *v = &it->fields[i];
        id_len(d)[i] = v->ptr ? (int64_t)v->len : -1;
        id_off(d)[i] = at;
        if (v->ptr)
            memcpy(b + at, v->ptr, v->len);
        at += v->len;
    }
    lua_rawsetp(L, 1, &item_key);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->meta_ref);
    lua_setmetatable(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, p->process_ref);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1); /* stack: item, result */
    if (lua_isnil(L, 2)) {
        r->filtered = true;
        return 0;
    }
    if (!lua_istable(L, 2))
        return luaL_error(L, "process() must return a table or nil, not a %s value",
                          luaL_typename(L, 2));
    r->vals = ns__arena_alloc(r->a, (p->nout ? p->nout : 1) * sizeof(*r->vals));
    if (!r->vals) {
        r->nomem = true;
        return luaL_error(L, "out of memory");
    }
    memset(r->vals, 0, (p->nout ? p->nout : 1) * sizeof(*r->vals));
    if ((d = item_data(L, 2)) != NULL) {
        /* An item (this one or a kept one): the fields it holds, else the
         * bytes it was read with, unless the script assigned or cleared
         * them. Its metatable kept out fields that are not columns. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->outnames_ref); /* 3 */
        const char *block = NULL;                           /* the item's bytes, copied once */
        for (size_t i = 0; i < p->nout; i++) {
            lua_rawgeti(L, 3, (lua_Integer)i + 1);
            if (lua_rawget(L, 2) != LUA_TNIL) {
                to_value(L, r, i);
            } else {
                long j = p->out_in[i];
                if (j >= 0 && (size_t)j < d->n && !id_is_loaded(d, (size_t)j) &&
                    id_len(d)[j] >= 0) {
                    if (!block) {
                        size_t total = id_off(d)[d->n - 1] +
                                       (size_t)(id_len(d)[d->n - 1] > 0 ? id_len(d)[d->n - 1] : 0);
                        if (!(block = ns__arena_strndup(r->a, id_bytes(d), total))) {
                            r->nomem = true;
                            return luaL_error(L, "out of memory");
                        }
                    }
                    r->vals[i].len = (size_t)id_len(d)[j];
                    r->vals[i].ptr = block + id_off(d)[j];
                }
            }
            lua_pop(L, 1);
        }
        return 0;
    }
    /* A table of the script's own: every key must be an output column. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->colset_ref); /* 3 */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_Integer at = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            lua_pushvalue(L, -2);
            at = lua_rawget(L, 3) == LUA_TNUMBER ? lua_tointeger(L, -1) : 0;
            lua_pop(L, 1);
        }
        if (at < 1 || (size_t)at > p->nout)
            return luaL_error(L,
                              "process() returned field '%s', which is not an output column "
                              "(declare it in processor.columns)",
                              luaL_tolstring(L, -2, NULL));
        to_value(L, r, (size_t)at - 1);
        lua_pop(L, 1);
    }
    return 0;
}

static ns_status lp_process(ns_proc *base, ns_item *it, ns_arena *a, ns_proc_result *res,
                            ns_error *err)
{
    lua_proc *p = (lua_proc *)base;
    lua_State *L = p->L;
    item_run r = {.p = p, .it = it, .a = a};
    char msg[600];

    lua_pushcfunction(L, run_item);
    lua_pushlightuserdata(L, &r);
    int rc = call(p, 1, 0);
    if (r.nomem) {
        lua_pop(L, 1);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    if (rc != LUA_OK) {
        if (rc == LUA_ERRMEM) {
            lua_pop(L, 1);
            snprintf(msg, sizeof(msg), "not enough memory (the script may use %zu MiB)",
                     p->mem_limit >> 20);
        } else {
            error_text(L, msg, sizeof(msg));
        }
        reject(it, a, msg);
        *res = NS_PROC_REJECT;
        return NS_OK;
    }
    if (r.filtered) {
        *res = NS_PROC_FILTER;
        return NS_OK;
    }
    it->fields = r.vals;
    it->nfields = p->nout;
    *res = NS_PROC_WRITE;
    return NS_OK;
}

static ns_status lp_finish(ns_proc *base, ns_error *err)
{
    lua_proc *p = (lua_proc *)base;
    return hook(p, "close", 0, err);
}

static void lp_close(ns_proc *base)
{
    lua_proc *p = (lua_proc *)base;
    if (p->L)
        lua_close(p->L);
    for (size_t i = 0; p->out && i < p->nout; i++)
        free(p->out[i]);
    free(p->out);
    free(p->out_in);
}

const ns_proc_vt ns__proc_lua = {
    .name = "lua",
    .version = NS_PROC_VERSION,
    .instance_size = sizeof(lua_proc),
    .open = lp_open,
    .start = lp_start,
    .save = lp_save,
    .columns = lp_columns,
    .process = lp_process,
    .finish = lp_finish,
    .close = lp_close,
};

ns_status ns__proc_new(const ns_proc_vt *vt, ns_proc **out, ns_error *err)
{
    ns_proc *p = calloc(1, vt->instance_size);
    if (!p)
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    p->vt = vt;
    *out = p;
    return NS_OK;
}

void ns__proc_free(ns_proc *p)
{
    if (!p)
        return;
    p->vt->close(p);
    free(p);
}

const ns_plugin ns__plugin_lua = {NS_PLUGIN_PROCESSOR, "lua",     NS_PLUGIN_VERSION, lua_keys,
                                  sizeof(lua_cfg),     lua_check, &ns__proc_lua};
