/*
 * lua_bounded.h - string and table functions that charge their work to a
 * processor's instruction budget (lua_bounded.c).
 */
#ifndef NS_LUA_BOUNDED_H
#define NS_LUA_BOUNDED_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

/* What the functions charge: `steps` of work done (or about to be) in C.
 * charge() raises a Lua error (it does not return) once the budget is
 * spent. */
typedef struct ns_lua_meter ns_lua_meter;
struct ns_lua_meter {
    void (*charge)(lua_State *L, ns_lua_meter *m, int64_t steps);
};

/*
 * Replaces string.find, match, gmatch, gsub (a metered matcher with Lua
 * 5.4's semantics, a linear plain find) and table.move in the state's
 * string and table libraries, which must be open. `m` must outlive
 * the state.
 */
void ns__lua_bound(lua_State *L, ns_lua_meter *m);

#endif
