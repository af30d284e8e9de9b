# yeastar-partner: build, test, demo. `make test` and `make demo` are the README's two commands.
# LUA_VERSION is 5.1, 5.2, 5.3, 5.4 or luajit (Debian's luajit2, OpenResty's fork). Given only
# an interpreter (LuaRocks passes LUA=/usr/bin/lua5.1), the runtime is the interpreter's.
ifdef LUA
LUA_VERSION ?= $(shell $(LUA) -e 'io.write(jit and "luajit" or _VERSION:match("%d+%.%d+"))')
endif
LUA_VERSION ?= 5.4
ifeq ($(LUA_VERSION),luajit)
LUA         ?= luajit
LUA_PC       = luajit
LUA_ABI      = 5.1
else
LUA         ?= lua$(LUA_VERSION)
LUA_PC       = lua$(LUA_VERSION)
LUA_ABI      = $(LUA_VERSION)
endif
PKG_CONFIG  ?= pkg-config
CC          ?= cc

LUA_CFLAGS  ?= $(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null || echo -I/usr/include/$(LUA_PC))
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
             $(LUA_CFLAGS) $(CURL_CFLAGS) -I$(BUILD)/gen -Isrc
LDFLAGS ?=
# A Lua C module never links liblua: the interpreter that loads it provides the API.
LIBFLAG ?= -shared

# Specs tagged for one family of runtimes: #integers asserts Lua's integer subtype (5.3+),
# #doubles the ID rules where every number is a double (5.1, 5.2, LuaJIT), #lua54 5.4 syntax.
ifeq ($(LUA_VERSION),5.4)
SKIP_TAGS = doubles
SKIP_TAGS_WHY = \#doubles (5.4 has integers)
else ifeq ($(LUA_VERSION),5.3)
SKIP_TAGS = doubles,lua54
SKIP_TAGS_WHY = \#doubles (5.3 has integers), \#lua54 (<close> is 5.4 syntax)
else
SKIP_TAGS = integers,lua54
SKIP_TAGS_WHY = \#integers (every number is a double here), \#lua54 (<close> is 5.4 syntax)
endif
BUSTED = busted --lua=$(LUA)

# Each runtime gets its own folder, build/<LUA_VERSION>/yeastar/partner.so, holding all it needs
# (a .so built for one Lua does not load in another). 5.4, the default, keeps build/yeastar/
# and is also reachable as build/5.4/, so scripts can name every runtime's build the same way.
ifeq ($(LUA_VERSION),5.4)
BUILD   ?= build
else
BUILD   ?= build/$(LUA_VERSION)
endif
SRCS     = $(wildcard src/*.c)
OBJS     = $(SRCS:src/%.c=$(BUILD)/obj/%.o)
# The Lua parts (workflows, the cosocket driver) are embedded in the .so as generated headers.
EMBEDDED = $(patsubst src/%.lua,$(BUILD)/gen/%_lua.h,$(wildcard src/*.lua))
HDRS     = $(wildcard src/*.h) $(EMBEDDED)
.SECONDARY: $(EMBEDDED)
MODULE   = $(BUILD)/yeastar/partner.so

PREFIX  ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)
INSTALL_DIR = $(DESTDIR)$(LUA_LIBDIR)/yeastar

.PHONY: all install deps test demo demo-openresty nginx-module fake-portal memcheck check bench rock reference types clean
all: $(MODULE)

# The README's two commands. Each installs missing Debian packages first (as root).
demo: deps all
	tools/with-fake-portal.sh $(LUA) examples/demo.lua

# nginx runs LuaJIT: its specs (and demo-openresty) load build/luajit whatever runtime is tested.
nginx-module:
	@$(MAKE) --no-print-directory LUA_VERSION=luajit LUA=luajit build/luajit/yeastar/partner.so

demo-openresty: deps nginx-module
	tools/with-fake-portal.sh tools/demo-openresty.sh

test: deps all nginx-module
	@echo "busted on $(LUA) against $(MODULE); not applicable here: $(SKIP_TAGS_WHY)"
	$(BUSTED) --cpath=./$(BUILD)/?.so --exclude-tags=$(SKIP_TAGS)

deps:
	@tools/install-deps.sh

# The fake portal in the foreground (README: The fake portal). DEVICES=file.csv|file.json adds
# devices, PORT (default 8443) and FAKE_PORTAL_DIR (default build/fake-portal) move it, and
# PORTAL_ARGS passes more options (--verbose, --latency-ms 50). exec: make's child is the
# portal itself, so stopping make (it passes SIGTERM on) stops the portal instead of orphaning it.
fake-portal: deps
	exec python3 fakeportal/portal.py --state-dir "$${FAKE_PORTAL_DIR:-build/fake-portal}" \
		--port "$${PORT:-8443}" $(if $(DEVICES),--devices "$(DEVICES)") $(PORTAL_ARGS)

# The whole suite again against an ASan+UBSan build of the module (see NOTES on Lua + ASan).
# Children (the Python portal, curl) must not inherit the preloaded runtime. Specs tagged #rss
# measure resident memory, which ASan's quarantine keeps high by design: `make test` runs them.
# Specs tagged #nginx run nginx with the plain LuaJIT build; `make test` runs them too.
ASAN_RT = $(shell clang -print-file-name=libclang_rt.asan-x86_64.so)
SAN     = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_BUILD = build-asan/$(LUA_VERSION)
memcheck: deps
	$(MAKE) BUILD=$(ASAN_BUILD) CC=clang OPT="-O1 -g $(SAN)" \
		LIBFLAG="-shared -shared-libasan $(SAN) -Wl,-z,nodelete" $(ASAN_BUILD)/yeastar/partner.so
	YP_SANITIZED=1 LD_PRELOAD=$(ASAN_RT) \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp:print_suppressions=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(BUSTED) --cpath=./$(ASAN_BUILD)/?.so --exclude-tags=external,rss,nginx,$(SKIP_TAGS)

# Decoder conformance is part of the suite; `check` adds the time-boxed fuzzers.
check: test fuzz

# Every ratio of README "Benchmarks" against its reference, measured side by side in one run (a
# report: it fails only when the harness breaks). It runs on $(LUA) against $(MODULE), starts its
# own nginx (which loads build/luajit), and builds the raw C libcurl reference into build/bench/.
# BENCH_REPS (default 5) sets the alternating repetitions; BENCH_QUICK=1 is a smaller smoke run.
BENCH_RAW = build/bench/raw_curl
bench: deps all nginx-module $(BENCH_RAW)
	BENCH_CPATH=./$(BUILD)/?.so BENCH_RAW=$(BENCH_RAW) $(LUA) bench/bench.lua

$(BENCH_RAW): bench/raw_curl.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) $(OPT) $(CURL_CFLAGS) -o $@ $< $(CURL_LIBS)

# Derived from the endpoint table (src/endpoints.c): the README's method reference (between its
# markers) and the LuaLS definitions. spec/17-docs_spec.lua fails when either is out of date.
WITH_MODULE = $(LUA) -e 'package.cpath = "./$(BUILD)/?.so;" .. package.cpath'
reference: all
	$(WITH_MODULE) tools/gen-reference.lua README.md
types: all
	$(WITH_MODULE) tools/gen-luals.lua types/yeastar/partner.lua
# Where `install` puts the LuaLS definitions, for an editor's workspace.library.
TYPES_DIR ?= $(PREFIX)/share/yeastar-partner/types

# LuaRocks 3.8 knows LuaJIT only as its 5.1 with another interpreter and header folder.
ifeq ($(LUA_VERSION),luajit)
ROCK_VARS = LUA=$(shell command -v $(LUA)) LUA_INCDIR=$(patsubst -I%,%,$(LUA_CFLAGS))
endif
rock: deps
	luarocks --lua-version=$(LUA_ABI) make --tree build/rocktree yeastar-partner-*-1.rockspec $(ROCK_VARS)

$(BUILD)/gen/%_lua.h: src/%.lua tools/embed.lua
	@mkdir -p $(dir $@)
	$(LUA) tools/embed.lua yp_$*_lua < $< > $@

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJS) $(CURL_LIBS)
ifeq ($(BUILD),build)
	@mkdir -p build/5.4/yeastar && ln -sf ../../yeastar/partner.so build/5.4/yeastar/partner.so
endif

install: $(MODULE)
	install -d $(INSTALL_DIR)
	install -m 0755 $(MODULE) $(INSTALL_DIR)/partner.so
	install -d $(DESTDIR)$(TYPES_DIR)/yeastar
	install -m 0644 types/yeastar/partner.lua $(DESTDIR)$(TYPES_DIR)/yeastar/partner.lua

clean:
	rm -rf build build-*

-include fuzz/fuzz.mk
