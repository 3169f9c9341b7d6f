#!/usr/bin/env bash
# Build and run the fuzz harnesses of native/test/fuzz/.
#
#   bench/fuzz.sh build                 build the libFuzzer binaries (clang)
#   bench/fuzz.sh run [SECONDS] [NAME..] fuzz each harness for SECONDS (default
#                                       600), all in parallel, niced; prints
#                                       one summary line per harness
#   bench/fuzz.sh replay [NAME..]       run the saved corpus once (CI)
#   bench/fuzz.sh merge [NAME..]        minimise the working corpus of a run
#                                       into the saved corpus
#
# Harnesses: vhost_msg (vhost-user message handler, libFuzzer), vring
# (virtqueue walker + virtio-blk parser, libFuzzer), jsonrpc (the agent's
# JSON-RPC framing and parameter decoding, atheris).  The saved corpus is
# native/test/fuzz/corpus/<name>/; a run works on a copy in
# bench/out/fuzz/<name>/ so that the repository only gets what `merge`
# selects.  Crashes land in bench/out/fuzz/<name>/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
ALL=(vhost_msg vring jsonrpc)
BUILD=$ROOT/native/build-fuzz
OUT=${FUZZ_OUT:-$ROOT/bench/out/fuzz}
CORPUS=$ROOT/native/test/fuzz/corpus
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo "$ROOT/.venv/bin/python" || echo python3 )}
SAN='-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer'
LIBS=(-luring -lpthread -lm)
if [ -e /usr/include/rbd/librbd.h ]; then LIBS+=(-lrbd -lrados); fi
# A leak or an error in any thread is a finding; the engine's threads are
# stopped at exit so LeakSanitizer sees a quiet process.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

build() {
  command -v clang >/dev/null || { echo "clang missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
  make -s -C native -j2 CC=clang BUILD=build-fuzz SAN="$SAN" lib
  mkdir -p "$BUILD/fuzz"
  local h
  for h in vhost_msg vring; do
    clang -O1 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
      -Wno-missing-field-initializers -Werror \
      -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
      -Inative/include -Inative/lib -Inative/module/bdev/malloc \
      "native/test/fuzz/${h}_fuzz.c" "$BUILD/libsb.a" "${LIBS[@]}" \
      -o "$BUILD/fuzz/${h}_fuzz"
  done
}

names() { if [ $# -gt 0 ]; then echo "$@"; else echo "${ALL[@]}"; fi; }

# fuzz_cmd NAME ARGS...: the libFuzzer command line of one harness.
fuzz_cmd() {
  local h=$1; shift
  if [ "$h" = jsonrpc ]; then
    echo "$PY" "$ROOT/native/test/fuzz/jsonrpc_fuzz.py" "$@"
  else
    echo "$BUILD/fuzz/${h}_fuzz" "$@"
  fi
}


run() {
  local secs=${1:-600}; shift || true
  local h pids=()
  build
  for h in $(names "$@"); do
    mkdir -p "$OUT/$h/corpus"
    cp -n "$CORPUS/$h"/* "$OUT/$h/corpus/" 2>/dev/null || true
    # shellcheck disable=SC2046
    ( cd "$OUT/$h" && exec nice -n 10 $(fuzz_cmd "$h") \
        -max_total_time="$secs" -print_final_stats=1 -max_len=65536 -timeout=20 \
        -rss_limit_mb=4096 corpus >"$OUT/$h.log" 2>&1 ) &
    pids+=($!)
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  for h in $(names "$@"); do summary "$h"; done
  return $rc
}

summary() {
  local h=$1 log=$OUT/$1.log
  local execs secs cov crashes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
  crashes=$(find "$OUT/$h" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \) | wc -l)
  echo "$h: execs=${execs:-0} seconds=${secs:-?} cov=${cov:-?} corpus=$(find "$OUT/$h/corpus" -type f | wc -l) findings=$crashes"
}

replay() {
  local h
  for h in $(names "$@"); do
    # shellcheck disable=SC2046
    $(fuzz_cmd "$h") -runs=0 "$CORPUS/$h"
  done
}

merge() {
  local h f tmp
  for h in $(names "$@"); do
    tmp=$CORPUS/$h.new
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if [ "$h" = jsonrpc ]; then
      # atheris cannot -merge; its inputs are tiny, keep them all.
      cp "$CORPUS/$h"/* "$OUT/$h/corpus"/* "$tmp"/ 2>/dev/null || true
    else
      # shellcheck disable=SC2046
      $(fuzz_cmd "$h") -merge=1 -max_len=65536 "$tmp" "$CORPUS/$h" "$OUT/$h/corpus"
    fi
    # Named inputs (seed-*, regress-*) keep their names; drop hashed copies.
    for f in "$CORPUS/$h"/seed-* "$CORPUS/$h"/regress-*; do
      [ -e "$f" ] || continue
      rm -f "$tmp/$(sha1sum <"$f" | cut -d' ' -f1)"
      cp "$f" "$tmp/"
    done
    rm -rf "${CORPUS:?}/$h"
    mv "$tmp" "$CORPUS/$h"
    du -sh "$CORPUS/$h"
  done
}

cmd=${1:-run}; shift || true
case "$cmd" in
  build) build ;;
  run) run "$@" ;;
  replay) replay "$@" ;;
  merge) merge "$@" ;;
  summary) for h in $(names "$@"); do summary "$h"; done ;;
  *) echo "usage: $0 build|run [SECONDS] [NAME..]|replay [NAME..]|merge [NAME..]" >&2; exit 2 ;;
esac
