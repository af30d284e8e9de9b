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
      -- LuaLS definitions into the rock's folder, <tree>/lib/luarocks/rocks-*/yeastar-partner/*/
      TYPES_DIR = "$(PREFIX)/types",
   },
   -- The command-line tool and the examples as commands. LuaRocks copies these after `make
   -- install`, whatever the build type, and puts a wrapper in the tree's bin/ that runs this
   -- rock's Lua on the script (a file that Lua can load, shebang line and all).
   install = {
      bin = {
         ["yeastar-partner"] = "bin/yeastar-partner",
         ["yeastar-renew-remote-management"] = "examples/renew_remote_management.lua",
         ["yeastar-ensure-auto-renewal"] = "examples/ensure_auto_renewal.lua",
         ["yeastar-renewal-info"] = "examples/renewal_info.lua",
      },
   },
}
