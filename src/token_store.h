/* token_store.h: the file-backed token store offered as partner.file_token_store(path).
 * The client itself only sees a {load = fn, save = fn} table; this is one such table. */
#ifndef YP_TOKEN_STORE_H
#define YP_TOKEN_STORE_H

#include "compat.h"

int yp_file_token_store(lua_State *L);

#endif
