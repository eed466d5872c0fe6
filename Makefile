# probed: see README.md. `make` builds build/probed; `make test` installs what is
# missing, builds, and runs unit + integration tests, then again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then a valgrind scenario.

CC ?= gcc
PREFIX ?= /usr/local
PKGS := libcurl libmicrohttpd libcjson libcares libnghttp2
OPT ?= -O2
SANITIZER ?=

ifeq ($(SANITIZER),)
BUILD ?= build
SANFLAGS :=
else
BUILD ?= build-san
SANFLAGS := -fsanitize=$(SANITIZER) -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)

CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) -Iinclude $(PKG_CFLAGS) $(SANFLAGS) -MMD -MP
LDLIBS += $(PKG_LIBS) -lcrypto -lm
LDFLAGS += $(SANFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c)) $(wildcard probes/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/daemon/main.o
UNIT_SRC := $(wildcard tests/unit/check_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/%)

# keep objects (they are intermediate for the test binaries)
.SECONDARY:

.PHONY: all run test check integration sanitize valgrind noopt install clean deps lint bench chaos
.PHONY: image image-test
all: $(BUILD)/probed

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libprobed.a: $(LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/probed: $(MAIN_OBJ) $(BUILD)/libprobed.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The daemon with the test hooks of daemon/loop.c (SIGUSR2 spins the loop thread): only
# the integration tests run it; build/probed never has them.
$(BUILD)/tests/loop-hooks.o: daemon/loop.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -DPROBED_TEST_HOOKS -c -o $@ $<

$(BUILD)/tests/probed-hooks: $(MAIN_OBJ) $(BUILD)/tests/loop-hooks.o $(BUILD)/libprobed.a
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/check_%: $(BUILD)/tests/unit/check_%.o $(BUILD)/libprobed.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/tools/%.o
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

-include tests/fuzz/fuzz.mk

deps:
	@sh deploy/deps.sh

run: deps
	$(MAKE) all
	./$(BUILD)/probed

# Unit tests only (Check, fork mode).
check: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-1} $$t; done

# The Go gRPC health client of tests/integration/test_grpc_health.py, built offline from
# Debian's golang-google-grpc-dev in GOPATH mode (grpc-go's own grpc_health_v1 client).
$(BUILD)/tests/grpc_health: tests/tools/grpc_health.go
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GO      $@")
	$(Q)GO111MODULE=off GOPATH=/usr/share/gocode go build -o $@ $<

# Integration tests: the real daemon against real targets, queried with curl.
integration: $(BUILD)/probed $(TOOL_BIN) $(BUILD)/tests/probed-hooks $(BUILD)/tests/grpc_health
	@BUILD=$(BUILD) sh tests/integration/run.sh

sanitize:
	PROBED_TIMEOUT_SCALE=3 $(MAKE) SANITIZER=address,undefined OPT=-O1 check integration CK_TIMEOUT_MULTIPLIER=4

valgrind: $(BUILD)/probed $(TOOL_BIN)
	@BUILD=$(BUILD) sh tests/integration/valgrind.sh

test: deps
	$(MAKE) all
	$(MAKE) check
	$(MAKE) integration
	$(MAKE) image-test
	$(MAKE) sanitize
	$(MAKE) fuzz-replay
	$(MAKE) valgrind
	@echo "make test: all suites passed"

# The chaos test for as long as asked (make test runs a 20 s form).
CHAOS_SECONDS ?= 60
chaos: $(BUILD)/probed $(TOOL_BIN)
	PROBED=$(BUILD)/probed TOOLS=$(BUILD)/tests CHAOS_SECONDS=$(CHAOS_SECONDS) /usr/bin/python3 tests/chaos.py

# The container images from deploy/Dockerfile: $(IMAGE):latest (FROM scratch) and
# $(IMAGE):exec (debian:12-slim), with podman or docker; base images made with
# debootstrap when no registry answers, cached in $(BUILD)/image.
IMAGE ?= probed
image:
	@sh deploy/image.sh $(BUILD)/image $(IMAGE)

# The images run by podman: alone, in a pod beside an app, the manifests under
# `podman kube play` (tests/image/run.sh; skipped unless root).
image-test: $(BUILD)/tests/target
	@BUILD=$(BUILD) IMAGE=$(IMAGE) sh tests/image/run.sh

# Benchmarks against peers (nginx, HAProxy, blackbox_exporter, curl); not part of test.
bench: all
	BUILD=$(BUILD) sh tests/bench/bench.sh

noopt:
	$(MAKE) OPT=-O0

lint:
	clang-format --dry-run --Werror daemon/*.c probes/*.c include/*.h tests/unit/*.c

install: $(BUILD)/probed
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/probed $(DESTDIR)$(PREFIX)/bin/probed
	install -d $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0644 docs/probed.8 $(DESTDIR)$(PREFIX)/share/man/man8/probed.8
	install -d $(DESTDIR)$(PREFIX)/share/doc/probed/examples
	install -m 0644 deploy/examples/*.json $(DESTDIR)$(PREFIX)/share/doc/probed/examples/

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
