#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader of outside bytes (the targets of tests/fuzz):
# safetensors, token shards, tokenizers (and the BPE round trip), run configs and --set
# overrides, ExplicitLM bank files.
#
# Builds build-fuzz/ with clang, libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer
# (-DMNEMO_FUZZ=ON; clang is installed if missing), then runs each target for SECONDS from a
# copy of its seed corpus (tests/data/fuzz/TARGET: real files the project writes, and the
# inputs of crashes found before). Inputs that crash go to build-fuzz/findings/TARGET/; each
# one becomes a regression input under tests/data/fuzz/TARGET/ (ctest replays them) and a fix.
# One line per target: executions, seconds, findings. Exit 1 if any target found something.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (SECONDS default 60; TARGET default all)
# CI does not run this: ctest runs the same targets with a mutation driver for a few seconds
# each (tests/fuzz/replay_main.cpp).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(safetensors token_shard tokenizer run_config bank_file)
build=$root/build-fuzz
jobs=${MNEMO_JOBS:-$(nproc)}

"$root/scripts/install-deps.sh" clang libclang-rt-14-dev || exit 1
# -O0: the whole tree builds in a fraction of -O1's time on a 2-core machine (the CPU
# kernels dominate), and the readers being fuzzed are not the hot loops.
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -g1" -DMNEMO_FUZZ=ON -DMNEMO_SANITIZE=address,undefined \
    -DMNEMO_CUDA=OFF -DMNEMO_MPI=OFF -DMNEMO_BUILD_BENCH=OFF || exit 1
fi
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/fuzz_}" || exit 1

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
found=0
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target findings=$build/findings/$target
  mkdir -p "$corpus" "$findings"
  cp -n "$root/tests/data/fuzz/$target"/* "$corpus/" 2> /dev/null
  log=$build/findings/$target.log
  (cd "$findings" && "$build/tests/fuzz_$target" -max_total_time="$seconds" -timeout=10 \
     -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 "$corpus" > "$log" 2>&1)
  code=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  crashes=$(find "$findings" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
                 -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  echo "fuzz_$target: ${runs:-?} executions in $seconds s, $crashes findings (exit $code; log $log)"
  if [[ $code -ne 0 || $crashes -gt 0 ]]; then
    found=1
    grep -m1 -E "ERROR|fuzz: " "$log"
  fi
done
exit $found
