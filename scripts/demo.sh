#!/usr/bin/env bash
# The demo: installs what is missing, builds the `mnemo` tool (Release, in build/, the tree
# scripts/test.sh uses too) and trains a small MLP on a generated spiral with the autograd,
# printing the loss as it falls. Arguments go to `mnemo demo-mlp` (try --help).
#
# Idempotent: a configured tree is not configured again and a built tool is not rebuilt, so
# a second run goes straight to the training.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "==== dependencies ===="
scripts/install-deps.sh

echo "==== build (build/, target mnemo) ===="
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMNEMO_CUDA=AUTO
fi
cmake --build build --target mnemo -j "${MNEMO_JOBS:-$(nproc)}"

echo "==== mnemo demo-mlp ===="
exec build/mnemo demo-mlp "$@"
