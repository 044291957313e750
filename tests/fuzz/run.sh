#!/bin/sh
# tests/fuzz/run.sh - build the libFuzzer targets with clang and run each.
#
#   tests/fuzz/run.sh [SECONDS]     (default 60 per target)
#
# Builds common/*.c with -fsanitize=fuzzer,address,undefined into
# /tmp/postern-fuzz (override with FUZZ_BUILD) and runs every
# tests/fuzz/fuzz_*.c target for SECONDS, with a seed corpus from
# tests/fuzz/corpus/TARGET/ when present.  Exits non-zero on a crash.
set -eu
secs=${1:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_BUILD:-/tmp/postern-fuzz}
mkdir -p "$out"
flags="-g -O1 -std=gnu11 -D_GNU_SOURCE -I$top/common -fsanitize=fuzzer-no-link,address,undefined"
objs=""
for src in "$top"/common/*.c; do
    obj="$out/$(basename "$src" .c).o"
    clang $flags -c "$src" -o "$obj"
    objs="$objs $obj"
done
for target in "$top"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$target" .c)
    clang $flags -fsanitize=fuzzer "$target" $objs -o "$out/$name" \
        $(pkg-config --libs openssl libsasl2 2>/dev/null) -ldb -lresolv
    corpus="$out/corpus-$name"
    mkdir -p "$corpus"
    [ -d "$top/tests/fuzz/corpus/$name" ] && cp "$top/tests/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null || true
    echo "== $name for ${secs}s"
    "$out/$name" -max_total_time="$secs" -max_len=4096 -artifact_prefix="$out/$name-" "$corpus"
done
