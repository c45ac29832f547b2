# Fuzzing (issue 4): included from the Makefile (`include test/fuzz/fuzz.mk`, best at its end).
#
#   make fuzz [FUZZ_SECONDS=60]   each target for FUZZ_SECONDS, then one summary line per target
#   make fuzz-smoke               each target for 10 s; ends each target with "fuzz_NAME: N passed, N failed"
#
# Both exit non-zero when a target finds a crash, a hang or a leak; the input is saved under
# build/fuzz/artifacts/NAME/ (reproduce: build/fuzz/NAME FILE). The fuzzers work on a copy of the
# committed seeds in build/fuzz/corpus/NAME, which keeps what they find between runs; the committed
# corpus in test/fuzz/corpus is never written. Seeds are regenerated with test/fuzz/seeds.sh.

# The Makefile's own values; these only matter if this file is included before they are set.
BUILD              ?= build
LIB_DEPS           ?= csrc/shared_memory_kv.c csrc/shared_memory_kv.h csrc/layout.h
# Wherever this file is included, it must not become the default goal.
FUZZ_SAVED_GOAL    := $(.DEFAULT_GOAL)

FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_CC            := clang
FUZZ_DIR           := $(BUILD)/fuzz
FUZZ_TARGETS       := fuzz_ops fuzz_open
FUZZ_BINS          := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))
FUZZ_FLAGS         := -std=c11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
                      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
# The library maps its segment through the targets' guarded mmap (see test/fuzz/fuzz_common.h), so
# an access past the mapping faults at once instead of landing in a neighbouring mapping; and reads
# the clock through the targets' kv_fuzz_clock_gettime, whose wall clock an input may move forward
# (entries then expire in the middle of a sequence).
FUZZ_LIB_DEFS      := -Dmmap=kv_fuzz_mmap -Dmunmap=kv_fuzz_munmap -Dclock_gettime=kv_fuzz_clock_gettime

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-clang

# Debian's clang, when missing (the package brings libFuzzer's runtime). Order-only below, so it
# never forces a rebuild.
fuzz-clang:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || apt-get install -y clang || \
		{ apt-get update && apt-get install -y clang; }

$(FUZZ_DIR)/shared_memory_kv.o: $(LIB_DEPS) | fuzz-clang
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(FUZZ_LIB_DEFS) -c -o $@ csrc/shared_memory_kv.c

$(FUZZ_DIR)/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz_common.h $(FUZZ_DIR)/shared_memory_kv.o | fuzz-clang
	$(FUZZ_CC) $(FUZZ_FLAGS) -Icsrc -o $@ $< $(FUZZ_DIR)/shared_memory_kv.o -lpthread

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@test/fuzz/run.sh $(FUZZ_SECONDS) full $(FUZZ_DIR) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@test/fuzz/run.sh $(FUZZ_SMOKE_SECONDS) smoke $(FUZZ_DIR) $(FUZZ_TARGETS)

.DEFAULT_GOAL := $(FUZZ_SAVED_GOAL)
