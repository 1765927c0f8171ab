/*
 * lua.c - the `lua` processor: a Lua 5.4 script's process(item) sees each
 * item as a table of column -> string (nil for NULL) and returns the item to
 * write, nil to filter it, or raises an error to reject it.
 *
 * The state is sandboxed: base (without dofile/loadfile; load() takes text
 * only), string, table, math, utf8 and coroutine; no os, io, package/require
 * or debug. A count hook bounds the instructions of each call (a runaway
 * loop rejects its item, not the job) and the allocator bounds the script's
 * memory. Globals live across items, so a script may keep state; it is not
 * kept across a restart.
 */
#include "proc/proc.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
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
    int process_ref; /* the process function */
    int names_ref;   /* input field i + 1 -> its name */
    int colset_ref;  /* output column name -> its index + 1 */
    int outnames_ref; /* output column i + 1 -> its name */
    int meta_ref;     /* the items' metatable */
    char **out;      /* output column names */
    size_t nout, nin;
    char *chunkname;
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

static void count_hook(lua_State *L, lua_Debug *ar)
{
    lua_proc *p = self(L);
    if (++p->ticks <= p->limit / HOOK_EVERY)
        return;
    /* Name the line the script was running (level 0: the hooked function). */
    if (lua_getstack(L, 0, ar) && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        luaL_error(L, "%s:%d: instruction limit of %I exceeded (a loop that never ends?)",
                   ar->short_src, ar->currentline, (lua_Integer)p->limit);
    luaL_error(L, "instruction limit of %I exceeded (a loop that never ends?)",
               (lua_Integer)p->limit);
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

static void sandbox(lua_State *L)
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
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");
    lua_pushcfunction(L, safe_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");
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

/* item[k] = v for a field the item lacks: only output columns may be added. */
static int item_newindex(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_type(L, 2) != LUA_TSTRING || lua_rawget(L, lua_upvalueindex(1)) != LUA_TNUMBER)
        return luaL_error(L,
                          "item has no column '%s' (declare new output columns in "
                          "processor.columns)",
                          luaL_tolstring(L, 2, NULL));
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

/* Calls the function below `nargs` arguments with the instruction budget. */
static int call(lua_proc *p, int nargs, int nres)
{
    p->ticks = 0;
    return lua_pcall(p->L, nargs, nres, 0);
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

static ns_status lp_open(ns_proc *base, const ns_proc_cfg *cfg, ns_error *err)
{
    lua_proc *p = (lua_proc *)base;
    char msg[512];

    p->mem_limit = cfg->memory_limit > 0 ? (size_t)cfg->memory_limit : (size_t)256 << 20;
    p->limit = cfg->instruction_limit > 0 ? cfg->instruction_limit : 10000000;
    p->nin = cfg->ncolumns;
    p->process_ref = p->names_ref = p->colset_ref = p->outnames_ref = p->meta_ref = LUA_NOREF;
    if (!(p->chunkname = ns__strdup(cfg->chunkname)) || !(p->L = lua_newstate(l_alloc, p)))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    lua_State *L = p->L;
    *(lua_proc **)lua_getextraspace(L) = p;
    lua_gc(L, LUA_GCGEN, 0, 0); /* items are short-lived garbage */
    sandbox(L);
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);

    if (luaL_loadbufferx(L, cfg->code, cfg->code_len, cfg->chunkname, "t") != LUA_OK ||
        call(p, 0, 0) != LUA_OK)
        return ns__err(err, NS_ECONFIG, NULL, "processor: %s", error_text(L, msg, sizeof(msg)));
    if (lua_getglobal(L, "process") != LUA_TFUNCTION)
        return ns__err(err, NS_ECONFIG, NULL,
                       "processor: the script defines no function process(item) (%s)",
                       cfg->chunkname + 1);
    p->process_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* Field names as Lua strings, made once. */
    lua_createtable(L, (int)cfg->ncolumns, 0);
    for (size_t i = 0; i < cfg->ncolumns; i++) {
        lua_pushstring(L, cfg->columns[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    p->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    const char *const *out = cfg->out_columns ? cfg->out_columns : cfg->columns;
    p->nout = cfg->out_columns ? cfg->nout : cfg->ncolumns;
    if (!(p->out = calloc(p->nout ? p->nout : 1, sizeof(*p->out))))
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    lua_createtable(L, 0, (int)p->nout);
    for (size_t i = 0; i < p->nout; i++) {
        if (!(p->out[i] = ns__strdup(out[i])))
            return ns__err(err, NS_ENOMEM, NULL, "out of memory");
        lua_pushinteger(L, (lua_Integer)i + 1);
        lua_setfield(L, -2, out[i]);
    }
    lua_pushvalue(L, -1);
    p->colset_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* Items refuse a new field that is not an output column, at the line
     * that sets it (a misspelt column would otherwise vanish). */
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_pushcclosure(L, item_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    p->meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, (int)p->nout, 0);
    for (size_t i = 0; i < p->nout; i++) {
        lua_pushstring(L, out[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    p->outnames_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, (int)cfg->nparams);
    for (size_t i = 0; i < cfg->nparams; i++) {
        lua_pushstring(L, cfg->param_values[i]);
        lua_setfield(L, -2, cfg->param_names[i]);
    }
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

/* Converts the value at the top of the stack for field `name` into the
 * arena (nil: NULL). False, with msg, for a value that cannot be written. */
static bool to_value(lua_State *L, const char *name, ns_value *v, ns_arena *a, char *msg,
                     size_t msglen)
{
    const char *s;
    size_t len;
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        v->ptr = NULL;
        v->len = 0;
        return true;
    case LUA_TSTRING:
    case LUA_TNUMBER:
        s = lua_tolstring(L, -1, &len); /* a copy on the stack: converting it is harmless */
        break;
    case LUA_TBOOLEAN:
        s = lua_toboolean(L, -1) ? "true" : "false";
        len = strlen(s);
        break;
    default:
        snprintf(msg, msglen, "process() returned a %s value for field '%s'", luaL_typename(L, -1),
                 name);
        return false;
    }
    v->ptr = ns__arena_strndup(a, s, len);
    v->len = len;
    if (!v->ptr)
        snprintf(msg, msglen, "out of memory");
    return v->ptr != NULL;
}

static ns_status lp_process(ns_proc *base, ns_item *it, ns_arena *a, ns_proc_result *res,
                            ns_error *err)
{
    lua_proc *p = (lua_proc *)base;
    lua_State *L = p->L;
    char msg[600];
    int top = lua_gettop(L);

    /* The item: a table of field -> string, NULL fields absent, with the
     * metatable that refuses new fields that are not output columns. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->names_ref);
    lua_createtable(L, 0, (int)p->nin);
    for (size_t i = 0; i < p->nin && i < it->nfields; i++) {
        if (!it->fields[i].ptr)
            continue;
        lua_rawgeti(L, -2, (lua_Integer)i + 1);
        lua_pushlstring(L, it->fields[i].ptr, it->fields[i].len);
        lua_rawset(L, -3);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->meta_ref);
    lua_setmetatable(L, -2);
    lua_replace(L, -2); /* item (in the names' slot) */
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->process_ref);
    lua_pushvalue(L, -2); /* item, process, item */
    int rc = call(p, 1, 1);
    if (rc != LUA_OK) {
        if (rc == LUA_ERRMEM)
            snprintf(msg, sizeof(msg), "not enough memory (the script may use %zu MiB)",
                     p->mem_limit >> 20);
        else
            error_text(L, msg, sizeof(msg));
        goto rejected;
    }
    if (lua_isnil(L, -1)) {
        lua_settop(L, top);
        *res = NS_PROC_FILTER;
        return NS_OK;
    }
    if (!lua_istable(L, -1)) {
        snprintf(msg, sizeof(msg), "process() must return a table or nil, not a %s value",
                 luaL_typename(L, -1));
        goto rejected;
    }

    ns_value *vals = ns__arena_alloc(a, (p->nout ? p->nout : 1) * sizeof(*vals));
    if (!vals) {
        lua_settop(L, top);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }
    msg[0] = '\0';
    if (lua_rawequal(L, -1, -2)) {
        /* The item itself: its metatable kept out fields that are not
         * output columns, so each output column is simply looked up. */
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->outnames_ref);
        for (size_t i = 0; i < p->nout && !msg[0]; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            lua_rawget(L, -3);
            to_value(L, p->out[i], &vals[i], a, msg, sizeof(msg));
            lua_pop(L, 1);
        }
    } else {
        /* A table of the script's own: every key must be an output column. */
        memset(vals, 0, (p->nout ? p->nout : 1) * sizeof(*vals));
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->colset_ref);
        int colset = lua_gettop(L), tbl = colset - 1;
        lua_pushnil(L);
        while (!msg[0] && lua_next(L, tbl)) {
            lua_Integer at = 0;
            if (lua_type(L, -2) == LUA_TSTRING) {
                lua_pushvalue(L, -2);
                at = lua_rawget(L, colset) == LUA_TNUMBER ? lua_tointeger(L, -1) : 0;
                lua_pop(L, 1);
            }
            if (at < 1 || (size_t)at > p->nout) {
                lua_pushvalue(L, -2);
                snprintf(msg, sizeof(msg),
                         "process() returned field '%s', which is not an output column "
                         "(declare it in processor.columns)",
                         luaL_tolstring(L, -1, NULL));
                break;
            }
            to_value(L, p->out[at - 1], &vals[at - 1], a, msg, sizeof(msg));
            lua_pop(L, 1);
        }
    }
    if (msg[0])
        goto rejected;
    lua_settop(L, top);
    it->fields = vals;
    it->nfields = p->nout;
    *res = NS_PROC_WRITE;
    return NS_OK;
rejected:
    lua_settop(L, top);
    reject(it, a, msg);
    *res = NS_PROC_REJECT;
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
    free(p->chunkname);
}

const ns_proc_vt ns__proc_lua = {
    .name = "lua",
    .version = 1,
    .instance_size = sizeof(lua_proc),
    .open = lp_open,
    .columns = lp_columns,
    .process = lp_process,
    .finish = lp_finish,
    .close = lp_close,
};

ns_status ns__lua_check(const char *code, size_t len, const char *chunkname, char *msg,
                        size_t msglen)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(msg, msglen, "out of memory");
        return NS_ENOMEM;
    }
    ns_status st = NS_OK;
    if (luaL_loadbufferx(L, code, len, chunkname, "t") != LUA_OK) {
        snprintf(msg, msglen, "%s", lua_tostring(L, -1));
        st = NS_ECONFIG;
    }
    lua_close(L);
    return st;
}

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
