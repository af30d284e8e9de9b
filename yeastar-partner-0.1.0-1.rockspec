package = "yeastar-partner"
version = "0.1.0-1"
source = {
   url = "git+https://git.example.com/yeastar-partner.git",
   tag = "v0.1.0",
}
description = {
   summary = "Yeastar Partner Portal OpenAPI client for Lua, written in C",
   detailed = [[
Automates subscription renewals against the Yeastar Partner Portal: one method per endpoint,
exact 64-bit IDs, token lifecycle, retries that never send an order twice, concurrent fleet jobs.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1, < 5.5",
}
external_dependencies = {
   CURL = { library = "curl" },
}
build = {
   type = "make",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      LUA = "$(LUA)",
      LUA_CFLAGS = "-I$(LUA_INCDIR)",
      CURL_LIBDIR = "$(CURL_LIBDIR)",
   },
   install_variables = {
      LUA = "$(LUA)", -- the Makefile derives the runtime (and so the build folder) from it
      LUA_LIBDIR = "$(LIBDIR)",
   },
}
