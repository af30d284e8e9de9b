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

.PHONY: all install deps test demo fake-portal memcheck check bench rock reference clean
all: $(MODULE)

# The README's two commands. Each installs missing Debian packages first (as root).
demo: deps all
	tools/with-fake-portal.sh $(LUA) examples/demo.lua

test: deps all
	busted

deps:
	@tools/install-deps.sh

fake-portal: deps
	python3 fakeportal/portal.py --state-dir build/fake-portal --port $${PORT:-8443}

# The whole suite again against an ASan+UBSan build of the module (see NOTES on Lua + ASan).
# Children (the Python portal, curl) must not inherit the preloaded runtime. Specs tagged #rss
# measure resident memory, which ASan's quarantine keeps high by design: `make test` runs them.
ASAN_RT = $(shell clang -print-file-name=libclang_rt.asan-x86_64.so)
SAN     = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
memcheck: deps
	$(MAKE) BUILD=build-asan CC=clang OPT="-O1 -g $(SAN)" \
		LIBFLAG="-shared -shared-libasan $(SAN) -Wl,-z,nodelete" build-asan/yeastar/partner.so
	YP_SANITIZED=1 LD_PRELOAD=$(ASAN_RT) \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		busted --cpath=./build-asan/?.so --exclude-tags=external,rss

# Decoder conformance is part of the suite; `check` adds the time-boxed fuzzers.
check: test fuzz

bench: deps all
	$(LUA) bench/fleet_bench.lua
	$(LUA) bench/json_bench.lua

# Prints the README's method reference, derived from the endpoint table.
reference: all
	@$(LUA) tools/gen-reference.lua

rock: deps
	luarocks --lua-version=$(LUA_VERSION) make --tree build/rocktree yeastar-partner-*-1.rockspec

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

-include fuzz/fuzz.mk
