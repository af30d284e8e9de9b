/* token_store.c: partner.file_token_store(path), a ready token store for cron jobs. The file
 * is written atomically (a temp file of its own per writer, then rename), only ever mode 0600. */
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "token_store.h"

#define MAX_TOKEN_FILE 65536

static int push_errno(lua_State *L, const char *what) {
  lua_pushnil(L);
  lua_pushfstring(L, "token store: cannot %s: %s", what, strerror(errno));
  return 2;
}

/* load() -> table | nil[, message] */
static int store_load(lua_State *L) {
  const char *path = lua_tostring(L, lua_upvalueindex(1));
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : push_errno(L, "open the token file");
  char buf[MAX_TOKEN_FILE];
  ssize_t n, got = 0;
  while ((n = read(fd, buf + got, sizeof buf - (size_t)got)) > 0) got += n;
  close(fd);
  if (n < 0) return push_errno(L, "read the token file");
  char err[120];
  if (!json_decode(L, buf, (size_t)got, 8, err, sizeof err) || !lua_istable(L, -1)) {
    lua_pushnil(L);
    lua_pushstring(L, "token store: the token file is not a JSON object");
    return 2;
  }
  return 1;
}

/* save(table) -> true | nil, message */
static int store_save(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *path = lua_tostring(L, lua_upvalueindex(1));
  json_buf *b = json_buf_push(L);
  json_encode_value(L, 1, b, 8, "token store");
  /* A name of its own per writer: several cron jobs may save at once, and a shared temp name
   * would let one truncate or rename away another's file. mkstemp opens it 0600, O_EXCL. */
  char *tmp = (char *)yp_newuserdata(L, strlen(path) + 12);
  strcpy(tmp, path);
  strcat(tmp, ".tmp.XXXXXX");
  int fd = mkstemp(tmp);
  if (fd < 0) return push_errno(L, "create the token file");
  size_t done = 0;
  while (done < b->len) {
    ssize_t n = write(fd, b->data + done, b->len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    done += (size_t)n;
  }
  int ok = done == b->len && fchmod(fd, 0600) == 0 && fsync(fd) == 0;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    int saved = errno;
    unlink(tmp);
    errno = saved;
    return push_errno(L, "write the token file");
  }
  lua_pushboolean(L, 1);
  return 1;
}

int yp_file_token_store(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "path");
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, store_load, 1);
  lua_setfield(L, -2, "load");
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, store_save, 1);
  lua_setfield(L, -2, "save");
  return 1;
}
