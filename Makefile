# yeastar-partner: build, test, demo. `make test` and `make demo` are the README's two commands.
LUA_VERSION ?= 5.4
LUA         ?= lua$(LUA_VERSION)
PKG_CONFIG  ?= pkg-config
CC          ?= cc

LUA_CFLAGS  ?= $(shell $(PKG_CONFIG) --cflags lua$(LUA_VERSION) 2>/dev/null || echo -I/usr/include/lua$(LUA_VERSION))
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS   ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
# LuaRocks passes CURL_INCDIR/CURL_LIBDIR (see the rockspec).
ifdef CURL_INCDIR
CURL_CFLAGS += -I$(CURL_INCDIR)
endif
ifdef CURL_LIBDIR
CURL_LIBS := -L$(CURL_LIBDIR) $(CURL_LIBS)
endif

WARN     = -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Werror=return-type -Werror=implicit-function-declaration
OPT     ?= -O2 -g
CFLAGS  ?= $(OPT)
ALL_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) \
             $(LUA_CFLAGS) $(CURL_CFLAGS) -Ibuild/gen -Isrc
LDFLAGS ?=
# A Lua C module never links liblua: the interpreter that loads it provides the API.
LIBFLAG ?= -shared

BUILD   ?= build
SRCS     = $(wildcard src/*.c)
OBJS     = $(SRCS:src/%.c=$(BUILD)/obj/%.o)
HDRS     = $(wildcard src/*.h) build/gen/workflows_lua.h
MODULE   = $(BUILD)/yeastar/partner.so

PREFIX  ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
INSTALL_DIR = $(DESTDIR)$(LUA_LIBDIR)/yeastar

.PHONY: all install deps test demo fake-portal clean
all: $(MODULE)

build/gen/workflows_lua.h: src/workflows.lua tools/embed.lua
	@mkdir -p $(dir $@)
	$(LUA) tools/embed.lua yp_workflows_lua < src/workflows.lua > $@

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJS) $(CURL_LIBS)

install: $(MODULE)
	install -d $(INSTALL_DIR)
	install -m 0755 $(MODULE) $(INSTALL_DIR)/partner.so

clean:
	rm -rf build build-*
