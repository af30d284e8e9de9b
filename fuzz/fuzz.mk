# fuzz.mk: libFuzzer runs for the JSON codec, the request builder, the response classifier and the HTTP/1.1 framer; included by the main Makefile (`make fuzz`), or alone:
# `make -f fuzz/fuzz.mk fuzz FUZZ_SECONDS=20`. Writes only under build/fuzz/ (binary, corpus copy, crashes).
FUZZ_SECONDS     ?= 30
FUZZ_MAX_LEN     ?= 4096
FUZZ_CC          ?= clang
# The fuzzer is a program, not a module, so it links liblua itself; always the 5.4 build.
FUZZ_LUA_CFLAGS  ?= -I/usr/include/lua5.4
FUZZ_LUA_LIBS    ?= -llua5.4
FUZZ_DIR         ?= build/fuzz
FUZZ_CFLAGS      ?= -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                    -fno-sanitize-recover=all

# Included, keep the includer's default goal (or none yet, so its first target still wins);
# run alone (`make -f fuzz/fuzz.mk`), default to `fuzz`.
fuzz_saved_goal := $(.DEFAULT_GOAL)
fuzz_alone := $(filter 1,$(words $(MAKEFILE_LIST)))

.PHONY: fuzz fuzz-build
# Each target (decoder, request builder, response classifier, HTTP/1.1 framer) runs FUZZ_SECONDS on a scratch copy of its corpus.
fuzz: fuzz-build
	set -e; for t in json request response http1; do \
	  rm -rf $(FUZZ_DIR)/corpus-$$t; mkdir -p $(FUZZ_DIR)/corpus-$$t $(FUZZ_DIR)/crashes; \
	  cp fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus-$$t/; \
	  $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crashes/ $(FUZZ_DIR)/corpus-$$t; \
	done

fuzz-build: $(FUZZ_DIR)/fuzz_json $(FUZZ_DIR)/fuzz_request $(FUZZ_DIR)/fuzz_response $(FUZZ_DIR)/fuzz_http1

# The framer needs no Lua, but http1.c carries its Lua object too, so liblua is linked as for the others.
$(FUZZ_DIR)/fuzz_http1: fuzz/fuzz_http1.c src/http1.c src/http1.h src/transport.h src/compat.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc $(FUZZ_LUA_CFLAGS) fuzz/fuzz_http1.c src/http1.c $(FUZZ_LUA_LIBS) -lm -o $@

$(FUZZ_DIR)/fuzz_response: fuzz/fuzz_response.c src/classify.c src/errors.c src/endpoints.c src/json.c src/*.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc $(FUZZ_LUA_CFLAGS) fuzz/fuzz_response.c src/classify.c \
	    src/errors.c src/endpoints.c src/json.c $(FUZZ_LUA_LIBS) -lm -o $@

$(FUZZ_DIR)/fuzz_request: fuzz/fuzz_request.c src/request.c src/endpoints.c src/json.c src/*.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc $(FUZZ_LUA_CFLAGS) fuzz/fuzz_request.c src/request.c \
	    src/endpoints.c src/json.c $(FUZZ_LUA_LIBS) -lm -o $@

$(FUZZ_DIR)/fuzz_json: fuzz/fuzz_json.c src/json.c src/json.h src/compat.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc $(FUZZ_LUA_CFLAGS) fuzz/fuzz_json.c src/json.c $(FUZZ_LUA_LIBS) -lm -o $@

.DEFAULT_GOAL := $(if $(fuzz_alone),fuzz,$(fuzz_saved_goal))
