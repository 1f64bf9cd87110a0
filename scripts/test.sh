#!/usr/bin/env bash
# Everything CI checks, from a fresh clone: install what is missing, check that every path the
# docs and comments name exists (scripts/check-doc-paths.sh), configure, build, run every test
# through ctest; then the CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer
# in a second build tree. Exit status 0 only if all of it passed.
#
#   build/        Release, CUDA AUTO (on when the toolkit is at /usr/local/cuda), benchmarks
#                 built (not run)
#   build-asan/   -DMNEMO_SANITIZE=address,undefined, CPU only, no benchmarks (Debug, -O0)
#
# Idempotent: a configured tree is not configured again (ninja re-runs CMake by itself when
# a CMakeLists.txt changed), and a second run only rebuilds what changed.
# Environment: MNEMO_JOBS (default: all cores), MNEMO_SKIP_ASAN=1 to skip the second tree.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=${MNEMO_JOBS:-$(nproc)}
start=$SECONDS
failures=()

section() { printf '\n==== %s ====\n' "$*"; }

# configure DIR ARGS...: runs cmake only for a tree that has never been configured.
configure() {
  local dir=$1
  shift
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    echo "$dir: already configured (ninja re-runs CMake if a CMakeLists.txt changed)"
    return 0
  fi
  cmake -S "$root" -B "$dir" -G Ninja "$@"
}

# build_and_test NAME DIR CONFIGURE_ARGS...: configure, build, ctest; records failures.
build_and_test() {
  local name=$1 dir=$2
  shift 2
  local t0=$SECONDS
  section "$name: configure ($dir)"
  if ! configure "$dir" "$@"; then
    failures+=("$name: configure")
    return
  fi
  section "$name: build ($jobs jobs)"
  if ! cmake --build "$dir" -j "$jobs"; then
    failures+=("$name: build")
    return
  fi
  section "$name: test"
  if ! ctest --test-dir "$dir" --output-on-failure -j "$jobs"; then
    failures+=("$name: tests")
  fi
  echo "$name: $((SECONDS - t0)) s"
}

# Tests that start several ranks with mpirun must also pass --oversubscribe (CI has 2 cores);
# these let Open MPI run as root, which CI containers are.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# ctest runs a test per core, each with its OpenMP threads: GNU OpenMP's idle threads spin
# ~300k iterations after every parallel region, stealing the cores the other tests need (the
# mnemo command sets the same for itself: train/cli/main.cpp). Measured on the 2-core machine:
# the release tests take 63 s instead of 94, the sanitizer tests' summed time drops by a fifth.
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}

section "dependencies"
if ! "$root/scripts/install-deps.sh"; then
  echo "test.sh: installing dependencies failed" >&2
  exit 1
fi

section "paths named in docs and comments"
if ! "$root/scripts/check-doc-paths.sh"; then
  failures+=("docs: stale paths (scripts/check-doc-paths.sh)")
fi

build_and_test "release" build -DCMAKE_BUILD_TYPE=Release -DMNEMO_CUDA=AUTO

if [[ "${MNEMO_SKIP_ASAN:-0}" != 1 ]]; then
  # Sanitizer reports abort the test that triggered them (-fno-sanitize-recover=all in CMake).
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # Debug keeps assert() on; -g1 puts line numbers in every report. -O0, not the usual -O1:
  # measured on the 2-core machine, the whole sanitizer tree builds in 4.5 CPU-minutes at -O0
  # (core/cpu/elementwise.cpp alone takes 5 at -O1) and its tests run in 48 s instead of 23.
  build_and_test "asan+ubsan" build-asan -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -g1" \
    -DMNEMO_SANITIZE=address,undefined -DMNEMO_CUDA=OFF -DMNEMO_BUILD_BENCH=OFF
fi

section "summary ($((SECONDS - start)) s)"
if [[ ${#failures[@]} -gt 0 ]]; then
  printf 'FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "all passed"
