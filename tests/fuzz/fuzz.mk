# Fuzzing (docs/design.md, "Testing"). Included by the top-level Makefile, which provides LIB_SRC,
# PKG_CFLAGS, PKG_LIBS, BUILD and Q.
#
#   make fuzz-replay   gcc + ASan/UBSan replay binaries in $(BUILD)/fuzz/, then every
#                      file of tests/fuzz/corpus/<name>/ through its target (make test)
#   make fuzz          clang libFuzzer binaries in $(BUILD)/fuzz/libfuzzer/, each run for
#                      FUZZ_SECONDS (default 60) on its corpus; inputs that add coverage
#                      are merged into tests/fuzz/corpus/<name>/ and crashes are written
#                      there as crash-<sha1> (commit them as regressions once fixed)
#   make fuzz FUZZ_TARGETS=config FUZZ_SECONDS=600   one target, longer
#
# Both builds compile their own copy of the library objects, so the flags of the main
# build (SANITIZER, OPT) do not matter here.

FUZZ_TARGETS ?= config duration wsframe grpcwire httpresp grpcserver escape jsonptr
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_CORPUS := tests/fuzz/corpus
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 -Iinclude $(PKG_CFLAGS)
FUZZ_LIBS = $(PKG_LIBS) -lcrypto -lm
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# ---- replay: gcc, ASan + UBSan ------------------------------------------------------
FUZZ_GCC_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/gcc/%.o)
FUZZ_REPLAY_BIN := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/replay_%)

$(FUZZ_DIR)/gcc/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $< (fuzz replay)")
	$(Q)gcc $(FUZZ_CFLAGS_BASE) $(FUZZ_SAN) -MMD -MP -c -o $@ $<

$(FUZZ_DIR)/gcc/libprobed.a: $(FUZZ_GCC_LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/replay_%: $(FUZZ_DIR)/gcc/tests/fuzz/fuzz_%.o $(FUZZ_DIR)/gcc/tests/fuzz/replay_main.o $(FUZZ_DIR)/gcc/libprobed.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)gcc $(FUZZ_SAN) -o $@ $^ $(FUZZ_LIBS)

.PHONY: fuzz-replay fuzz fuzz-build fuzz-deps
fuzz-replay: $(FUZZ_REPLAY_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== fuzz replay $$t ($$(ls $(FUZZ_CORPUS)/$$t | wc -l) inputs)"; \
		$(FUZZ_ENV) $(FUZZ_DIR)/replay_$$t $(FUZZ_CORPUS)/$$t; \
	done

# ---- libFuzzer: clang ---------------------------------------------------------------
FUZZ_CLANG ?= clang
FUZZ_LF_DIR := $(FUZZ_DIR)/libfuzzer
FUZZ_LF_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_LF_DIR)/%.o)
FUZZ_LF_BIN := $(FUZZ_TARGETS:%=$(FUZZ_LF_DIR)/fuzz_%)

# libFuzzer ships in Debian's libclang-rt-14-dev, not in clang itself: install what is
# missing (as root), else say what to install.
fuzz-deps:
	@if ! command -v $(FUZZ_CLANG) >/dev/null 2>&1 || \
	    ! test -f "$$($(FUZZ_CLANG) -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null)"; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "fuzz: installing clang and libclang-rt-14-dev"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang libclang-rt-14-dev; \
		else \
			echo "fuzz: needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)" >&2; \
			exit 1; \
		fi; \
	fi

$(FUZZ_LF_DIR)/%.o: %.c | fuzz-deps
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CLANG   $< (libfuzzer)")
	$(Q)$(FUZZ_CLANG) $(FUZZ_CFLAGS_BASE) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_LF_DIR)/libprobed.a: $(FUZZ_LF_LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_LF_DIR)/fuzz_%: $(FUZZ_LF_DIR)/tests/fuzz/fuzz_%.o $(FUZZ_LF_DIR)/libprobed.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CLANG) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS)

fuzz-build: $(FUZZ_LF_BIN)

# Each target: fuzz into a scratch dir seeded from the corpus, then merge what adds
# coverage back into the corpus. A crash stops the run (non-zero exit) after the
# artifact has been written to the corpus dir.
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
		new=$(FUZZ_DIR)/new/$$t; rm -rf $$new; mkdir -p $$new; \
		dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		$(FUZZ_ENV) $(FUZZ_LF_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
			-rss_limit_mb=2048 -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 $$dict \
			-artifact_prefix=$(FUZZ_CORPUS)/$$t/ $$new $(FUZZ_CORPUS)/$$t \
			2>$(FUZZ_DIR)/$$t.log || { tail -n 60 $(FUZZ_DIR)/$$t.log; exit 1; }; \
		grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' $(FUZZ_DIR)/$$t.log || true; \
		$(FUZZ_ENV) $(FUZZ_LF_DIR)/fuzz_$$t -merge=1 -max_len=$(FUZZ_MAX_LEN) \
			$(FUZZ_CORPUS)/$$t $$new 2>>$(FUZZ_DIR)/$$t.log; \
		echo "   corpus $$t: $$(ls $(FUZZ_CORPUS)/$$t | wc -l) files"; \
	done
