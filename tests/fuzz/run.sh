#!/bin/sh
# tests/fuzz/run.sh - build the libFuzzer targets with clang and run each.
#
#   tests/fuzz/run.sh [SECONDS [TARGET...]]   (default 30 s, every target)
#   make fuzz [FUZZ_SECONDS=N]                the same from the top level
#
# Builds common/*.c with -fsanitize=fuzzer-no-link,address,undefined into
# /tmp/postern-fuzz (override with FUZZ_BUILD) and runs each
# tests/fuzz/fuzz_*.c target (or the TARGETs named, e.g. fuzz_smtp) for
# SECONDS, starting from a copy of the seed corpus tests/fuzz/corpus/TARGET/.
# UBSan findings are fatal (-fno-sanitize-recover), like ASan's.  Every
# target runs even when an earlier one found something; the exit status is
# non-zero when any did, and the crashing input is left as
# $FUZZ_BUILD/TARGET-crash-* (turn it into a unit regression test).
# SECONDS=0 only builds.  FUZZ_NICE=1 runs the fuzzers under nice(1).
# ASan's quarantine is cut to 64 MB (default 256 MB): with the 1 GB RSS
# limit, a quarantine full of freed chunks plus allocator fragmentation
# reached the limit in fuzz_maps (about 115 KB freed per regexp: input)
# without any leak; 64 MB still holds many inputs' worth of freed memory,
# so use-after-free within and across nearby inputs is still caught.
# ASAN_OPTIONS from the environment are added after (and win).
set -eu
secs=${1:-30}
[ $# -gt 0 ] && shift
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_BUILD:-/tmp/postern-fuzz}
mkdir -p "$out"
command -v clang >/dev/null 2>&1 || {
    echo "run.sh: clang is needed for fuzzing (apt-get install clang)" >&2
    exit 1
}
flags="-g -O1 -std=gnu11 -D_GNU_SOURCE -I$top/common -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
objs=""
for src in "$top"/common/*.c; do
    obj="$out/$(basename "$src" .c).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find "$top/common" \( -name '*.h' -o -name '*.def' \) -newer "$obj" | head -1)" ]; then
        clang $flags -c "$src" -o "$obj"
    fi
    objs="$objs $obj"
done
if [ $# -gt 0 ]; then
    targets=""
    for t in "$@"; do targets="$targets $top/tests/fuzz/${t%.c}.c"; done
else
    targets=$(ls "$top"/tests/fuzz/fuzz_*.c)
fi
for target in $targets; do
    name=$(basename "$target" .c)
    clang $flags -fsanitize=fuzzer "$target" $objs -o "$out/$name" \
        $(pkg-config --libs openssl libsasl2 2>/dev/null) -ldb -lresolv
done
[ "$secs" = 0 ] && exit 0
nice=""
[ "${FUZZ_NICE:-0}" = 1 ] && nice="nice -n 19"
failed=""
for target in $targets; do
    name=$(basename "$target" .c)
    corpus="$out/corpus-$name"
    mkdir -p "$corpus"
    [ -d "$top/tests/fuzz/corpus/$name" ] && cp "$top/tests/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null || true
    echo "== $name for ${secs}s"
    ASAN_OPTIONS="quarantine_size_mb=64${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        $nice "$out/$name" -max_total_time="$secs" -max_len=4096 -timeout=10 \
        -rss_limit_mb=1024 -artifact_prefix="$out/$name-" "$corpus" || failed="$failed $name"
done
if [ -n "$failed" ]; then
    echo "run.sh: findings in:$failed (inputs in $out)" >&2
    exit 1
fi
echo "run.sh: no findings"
