/* client.h: the client object (yeastar.partner.Client): options, credentials, tokens, and the
 * call path every endpoint method goes through (token, send, classify, retry, log). */
#ifndef YP_CLIENT_H
#define YP_CLIENT_H

#include "compat.h"

#define YP_CLIENT_MT "yeastar.partner.Client"

/* partner.new{...} */
int yp_client_new(lua_State *L);
/* Creates the client metatable; its __index is the methods table left on the stack. */
void yp_client_register(lua_State *L);

#endif
