#!/usr/bin/env bash
# Installs the Debian packages mnemo builds with, if any are missing, and any packages named
# as arguments (scripts/fuzz.sh: install-deps.sh clang libclang-rt-14-dev).
#
# Idempotent and fast: it asks dpkg what is installed and does nothing more when every
# package is there (no apt-get update, no network). Otherwise it runs apt-get update and a
# non-interactive install of just the missing ones, through sudo when not root.
# The CUDA Toolkit is not a Debian package here: when it is at /usr/local/cuda the build
# picks it up, otherwise the build is CPU-only (see README.md).
set -euo pipefail

packages=(
  build-essential cmake ninja-build   # compiler, build system
  libeigen3-dev                       # CPU matrix products
  libfmt-dev                          # formatting
  doctest-dev                         # tests
  nlohmann-json3-dev                  # configs, checkpoints' metadata
  libcli11-dev                        # the mnemo command line
  libopenmpi-dev openmpi-bin          # data-parallel training across processes
  fortunes                            # the default training corpus (plain-text fortunes)
  libfaiss-dev                        # approximate kNN search (Memorizing Transformer memory)
  jq                                  # JSON lines of the benchmarks (scripts/memory-table.sh)
  procps                              # pgrep/pkill for the fault drills (tests/tools)
)
packages+=("$@")

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing ${missing[*]} and apt-get is not available;" \
       "install them by hand or configure with -DMNEMO_DEPS_DIR (see README.md)" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
