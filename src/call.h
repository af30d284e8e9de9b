/* call.h: the call core as Lua objects (client:_call, call:next/feed), so that a driver written in
 * Lua can yield between the core's steps, where a C loop could not (OpenResty's cosockets). */
#ifndef YP_CALL_H
#define YP_CALL_H

#include "compat.h"

/* Adds the internal client methods (_call, _token_call, ...) to the methods table on top. */
void yp_call_register(lua_State *L);

#endif
