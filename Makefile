# shmkv. `make test` and `make server` do all the set-up a fresh machine needs (Node.js with npm,
# make and a C compiler): they install the pinned bun from npm, the packages, and build the library.

BUN_VERSION := 1.4.5
TOOLS       := .tools
BUN         := $(CURDIR)/$(TOOLS)/node_modules/.bin/bun
# `bun run` scripts call a bare `bun`: the pinned one comes first on PATH.
export PATH := $(CURDIR)/$(TOOLS)/node_modules/.bin:$(PATH)
BUILD       := build
LIB         := $(BUILD)/libshared_memory_kv.so
FAULT_LIB   := $(BUILD)/libshared_memory_kv_fault.so

CC        ?= gcc
CFLAGS    := -std=c11 -O2 -g -Wall -Wextra -Werror -fPIC -fvisibility=hidden
LIB_SRC   := csrc/shared_memory_kv.c
LIB_DEPS  := $(LIB_SRC) csrc/shared_memory_kv.h csrc/layout.h
SAN_FLAGS := -std=c11 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined -fno-omit-frame-pointer
C_TESTS   := $(patsubst test/c/%.c,$(BUILD)/test/%,$(wildcard test/c/test_*.c))
C_TOOLS   := $(BUILD)/kvtool $(BUILD)/kvtool_fault

.PHONY: all libso tools test test-c test-bun test-python python-codes server typecheck clean deps bench soak redis-server bench-replication

all: libso

libso: $(LIB)

$(LIB): $(LIB_DEPS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -shared -o $@ $(LIB_SRC)

# The same library with KV_FAULT_POINT support: a writer can be made to die at a chosen point.
$(FAULT_LIB): $(LIB_DEPS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -DKV_FAULT_INJECTION -shared -o $@ $(LIB_SRC)

# kvtool: a small C client of the library, used by the tests as "another process written in C".
$(BUILD)/kvtool: test/c/kvtool.c test/c/checksum.h $(LIB_DEPS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -Icsrc -o $@ test/c/kvtool.c $(LIB_SRC)

$(BUILD)/kvtool_fault: test/c/kvtool.c test/c/checksum.h $(LIB_DEPS)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -DKV_FAULT_INJECTION -Icsrc -o $@ test/c/kvtool.c $(LIB_SRC)

# C unit tests: the library compiled in, under AddressSanitizer and UndefinedBehaviorSanitizer.
$(BUILD)/test/%: test/c/%.c test/c/check.h test/c/checksum.h $(LIB_DEPS)
	@mkdir -p $(BUILD)/test
	$(CC) $(SAN_FLAGS) -Icsrc -o $@ $< $(LIB_SRC) -lm -lpthread

tools: $(LIB) $(FAULT_LIB) $(C_TOOLS)

$(BUN):
	npm install --no-save --no-audit --no-fund --prefix $(TOOLS) bun@$(BUN_VERSION)

node_modules/.installed: package.json bun.lock $(BUN)
	$(BUN) install --frozen-lockfile
	@touch $@

deps: $(BUN) node_modules/.installed

test-c: $(C_TESTS) tools
	@set -e; for t in $(C_TESTS); do $$t; done

# The replication tests run a real redis-server (Debian's), installed when missing, as root like CI.
redis-server:
	@command -v redis-server >/dev/null || apt-get install -y redis-server || \
		{ apt-get update && apt-get install -y redis-server; }

test-bun: deps tools redis-server
	$(BUN) test --timeout 60000

# The Python client (python/shmkv): its unittest suite, ending with "python: N passed, N failed".
# Debian's python3 is installed when missing (the standard library is all it needs).
test-python: deps tools
	@command -v python3 >/dev/null || apt-get install -y python3 || { apt-get update && apt-get install -y python3; }
	python3 python/tests/run.py

# Its error codes, generated from src/errors.ts (python/tests/test_codes.py fails when they drift).
python-codes: deps
	$(BUN) python/gen-codes.ts > python/shmkv/_codes.py

test: typecheck test-c test-bun fuzz-smoke test-python

typecheck: deps
	$(BUN) x tsc --noEmit

server: deps $(LIB)
	$(BUN) run server

# One executable with the C library and the API documentation's script inside: build/shmkv.
.PHONY: compile
compile: deps $(LIB)
	$(BUN) build --compile src/shmkv.ts --outfile $(BUILD)/shmkv

# The soak under faults (a 15 s variant runs inside `make test`). SOAK_SECONDS, default 120.
SOAK_SECONDS ?= 120
soak: deps tools
	$(BUN) test/soak/soak.ts --seconds $(SOAK_SECONDS)

# Benchmarks: never part of `make test`. BENCH_RUNS (default 3) and BENCH_SECONDS (default 1).
$(BUILD)/bench_c: bench/bench_c.c $(LIB_DEPS)
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -Icsrc -o $@ bench/bench_c.c $(LIB_SRC)

# The compiled binary too: the HTTP section times its start and reports its size.
bench: deps $(LIB) $(BUILD)/bench_c $(BUILD)/kvtool compile
	$(BUN) bench/run.ts

# Replication through Redis (Redis on loopback): its own target, not part of `make bench`.
bench-replication: deps $(LIB) redis-server
	$(BUN) bench/replication.ts

clean:
	rm -rf $(BUILD)

include test/fuzz/fuzz.mk
