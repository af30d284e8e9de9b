/* client.h: the client object (yeastar.partner.Client): options, credentials, lifecycle, and the
 * endpoint methods, which hand each call to a driver (core.h has the state and the decisions). */
#ifndef YP_CLIENT_H
#define YP_CLIENT_H

#include "compat.h"

/* partner.new{...} */
int yp_client_new(lua_State *L);
/* Creates the client metatable; its __index is the methods table left on the stack. */
void yp_client_register(lua_State *L);

#endif
