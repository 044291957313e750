# postern — top-level build.  Plain GNU make, parallel-safe.
#
#   make            build everything into build/
#   make check      install missing deps (as root), build, run unit + integration tests
#   make check-asan unit tests again under AddressSanitizer + UBSan (build-asan/)
#   make run        build, create ./run as an instance, start it in the foreground
#   make install    the system instance (PREFIX, DESTDIR; tools/install.sh), make uninstall
#   make fuzz       build the libFuzzer harnesses (clang) and run each for
#                   FUZZ_SECONDS (default 30); see tests/fuzz/run.sh
#   make torture    the long fault runs: random SIGKILLs under load for
#                   TORTURE_SECONDS (600), memory over 10,000 messages,
#                   LeakSanitizer/ASan over 2,000 messages (build-asan/), and
#                   every fuzz harness for TORTURE_FUZZ_SECONDS (600)
#
# Sources are discovered by directory, so adding a file needs no Makefile edit:
#   common/*.c              -> build/lib/libpostern.a
#   DAEMON/*.c              -> build/libexec/DAEMON   (master smtpd cleanup ...)
#   cli/PROG/*.c            -> build/bin/PROG          (postern sendmail postdrop)
#   tests/unit/*.c          -> build/tests/unit        (one Check runner)
#   tests/bench/*.c         -> build/bench/NAME        (load generator, sink)
#
#   make bench      run the benchmark scenarios (tests/bench/bench.py; doc/performance.md)
#                   SESSIONS=20 MESSAGES=3000 SIZE=4096 SCENARIOS=all BENCH_JSON=path
#                   SENDMAIL_MESSAGES=N (sequential sendmail runs; default MESSAGES)

BUILD    ?= build
CC       ?= cc
WERROR   ?=
SANITIZE ?=
OPT      ?= -O2 -g

PKGS      := openssl libsasl2 check
PKG_CFLAGS := $(shell pkg-config --cflags openssl libsasl2 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs openssl libsasl2 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

CFLAGS  ?=
CFLAGS  += $(OPT) -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wshadow \
           -Wstrict-prototypes -Wmissing-prototypes -D_GNU_SOURCE \
           -Icommon $(PKG_CFLAGS) $(WERROR) $(SANITIZE)
LDFLAGS += $(SANITIZE)
LIBS     = $(PKG_LIBS) -ldb -lresolv

DAEMONS  := master smtpd cleanup pickup qmgr smtp local showq
CLIPROGS := postern sendmail postdrop

# Only programs whose directory holds sources are built (pieces land one by one).
have_src = $(strip $(wildcard $(1)/*.c))
DAEMONS_BUILT  := $(foreach d,$(DAEMONS),$(if $(call have_src,$(d)),$(d)))
CLIPROGS_BUILT := $(foreach p,$(CLIPROGS),$(if $(call have_src,cli/$(p)),$(p)))

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIBPOSTERN := $(BUILD)/lib/libpostern.a

DAEMON_BINS := $(DAEMONS_BUILT:%=$(BUILD)/libexec/%)
CLI_BINS    := $(CLIPROGS_BUILT:%=$(BUILD)/bin/%)
CLI_LINKS   := $(if $(filter sendmail,$(CLIPROGS_BUILT)),$(BUILD)/bin/mailq $(BUILD)/bin/newaliases)

UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(BUILD)/tests/unit

BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

ALL_SRC := $(COMMON_SRC) $(foreach d,$(DAEMONS_BUILT),$(wildcard $(d)/*.c)) \
           $(foreach p,$(CLIPROGS_BUILT),$(wildcard cli/$(p)/*.c)) $(UNIT_SRC) $(BENCH_SRC)
DEPFILES := $(ALL_SRC:%.c=$(BUILD)/obj/%.d)

.PHONY: all deps check check-unit check-integration check-asan run clean install uninstall bench fuzz torture
all: $(DAEMON_BINS) $(CLI_BINS) $(CLI_LINKS) $(BENCH_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Wno-missing-prototypes $(CHECK_CFLAGS) -I$(BUILD)/gen -MMD -MP -c $< -o $@

$(LIBPOSTERN): $(COMMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

# Objects reached only through the pattern rules below are "intermediate"
# to make, which deleted them after each build: every later make recompiled
# and relinked everything.  Keep them.
.SECONDARY:

# Programs are linked to a temporary name and renamed into place, so a test
# suite running from the same build never executes a half-written binary
# (it failed with "Permission denied" while make relinked).
.SECONDEXPANSION:
# (No '%' inside these prerequisite lists: make would replace it with the stem
# before the second expansion; hence addprefix/basename, not patsubst.)
$(BUILD)/libexec/%: $$(addprefix $(BUILD)/obj/,$$(addsuffix .o,$$(basename $$(wildcard $$*/*.c)))) $(LIBPOSTERN)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@.tmp $(filter %.o,$^) $(LIBPOSTERN) $(LIBS)
	mv -f $@.tmp $@

$(BUILD)/bin/%: $$(addprefix $(BUILD)/obj/,$$(addsuffix .o,$$(basename $$(wildcard cli/$$*/*.c)))) $(LIBPOSTERN)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@.tmp $(filter %.o,$^) $(LIBPOSTERN) $(LIBS)
	mv -f $@.tmp $@

# The benchmark's own tools (two small programs, so `all` stays cheap);
# the smoke test in tests/integration/test_bench.py uses them.
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIBPOSTERN)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -pthread -o $@ $< $(LIBPOSTERN) $(LIBS)

$(BUILD)/bin/mailq $(BUILD)/bin/newaliases: $(BUILD)/bin/sendmail
	ln -sf sendmail $@

# The unit runner's suite list is generated from every "Suite *NAME_suite(void)"
# defined in tests/unit/*.c, so a new test file needs no registration.
$(BUILD)/gen/unit_suites.h: $(UNIT_SRC)
	@mkdir -p $(@D)
	sed -n 's/^Suite \*\([a-z0-9_]*_suite\)(void).*/SUITE(\1)/p' $(UNIT_SRC) > $@.tmp
	mv $@.tmp $@

$(BUILD)/obj/tests/unit/unit_main.o: $(BUILD)/gen/unit_suites.h

$(UNIT_BIN): $(UNIT_OBJ) $(LIBPOSTERN)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(LIBPOSTERN) $(CHECK_LIBS) $(LIBS)

# make install [PREFIX=/usr/local] [DESTDIR=] [CREATE_ACCOUNTS=yes]: the
# system instance (tools/install.sh has the layout).  PREFIX=/usr replaces
# the host's /usr/sbin/sendmail, /usr/bin/mailq and /usr/bin/newaliases.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc/postern
SPOOLDIR ?= /var/spool/postern
SYSTEMDDIR ?= /lib/systemd/system
INSTALL_ENV = BUILD=$(BUILD) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) SYSCONFDIR=$(SYSCONFDIR) \
	SPOOLDIR=$(SPOOLDIR) SYSTEMDDIR=$(SYSTEMDDIR) CREATE_ACCOUNTS=$(CREATE_ACCOUNTS) FORCE=$(FORCE)

install: all
	$(INSTALL_ENV) sh tools/install.sh install

uninstall:
	$(INSTALL_ENV) sh tools/install.sh uninstall

deps:
	@sh tools/install-deps.sh

check: deps
	$(MAKE) all $(UNIT_BIN)
	$(MAKE) check-unit
	$(MAKE) check-integration

check-unit: $(UNIT_BIN)
	cd tests/unit && CK_FORK=yes ../../$(UNIT_BIN)

check-integration: all
	/usr/bin/python3 tests/integration/run.py

check-asan: deps
	$(MAKE) BUILD=build-asan OPT="-O1 -g" SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer" build-asan/tests/unit
	cd tests/unit && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		CK_FORK=yes ../../build-asan/tests/unit

# Under two minutes with the defaults; see doc/performance.md.
SESSIONS   ?= 20
MESSAGES   ?= 3000
SIZE       ?= 4096
SCENARIOS  ?= all
SENDMAIL_MESSAGES ?= $(MESSAGES)
BENCH_JSON ?= $(BUILD)/bench-results.json
bench: all
	/usr/bin/python3 tests/bench/bench.py --build $(BUILD) --sessions $(SESSIONS) \
		--messages $(MESSAGES) --size $(SIZE) --scenarios $(SCENARIOS) \
		--sendmail-messages $(SENDMAIL_MESSAGES) --json $(BENCH_JSON)

run: deps all
	@sh tools/run-instance.sh

TORTURE_FUZZ_SECONDS ?= 600
ASAN_FLAGS := OPT="-O1 -g" SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer"
torture: deps all
	$(MAKE) BUILD=build-asan $(ASAN_FLAGS) all
	POSTERN_BUILD=$(abspath $(BUILD)) TORTURE_ASAN_BUILD=$(abspath build-asan) \
		/usr/bin/python3 tests/torture/torture.py
	$(MAKE) fuzz FUZZ_SECONDS=$(TORTURE_FUZZ_SECONDS)

FUZZ_SECONDS ?= 30
fuzz:
	@FUZZ=1 sh tools/install-deps.sh
	sh tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan

-include $(DEPFILES)
