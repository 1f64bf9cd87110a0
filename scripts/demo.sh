#!/usr/bin/env bash
# The demo — mnemo's main job in one command: install what is missing, build the `mnemo` tool
# (Release, in build/, the tree scripts/test.sh uses too), train a small Llama-style language
# model (configs/demo.json: 4 layers, hidden 128, byte-level BPE with 512 ids) on the fortunes
# corpus for about 5 minutes on a 2-core CPU, and print a few samples from it.
#
# The run is left in runs/demo: latest/ (config.json + model.safetensors load in HF
# transformers as a LlamaForCausalLM), metrics.jsonl, loss.svg. Extra arguments go to
# `mnemo train` (e.g. --steps 200, --set lr=0.002). A previous runs/demo is replaced.
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

run=runs/demo
echo "==== mnemo train --config configs/demo.json --out $run ===="
rm -rf "$run"
build/mnemo train --config configs/demo.json --out "$run" "$@"

echo "==== samples ===="
for prompt in "The " "A man" "Love is" "You will"; do
  echo "---- prompt: \"$prompt\" (temperature 0.8, top-k 40) ----"
  build/mnemo sample --checkpoint "$run" --prompt "$prompt" --max-tokens 60 \
    --temperature 0.8 --top-k 40 --seed 1
done
echo "---- greedy, prompt: \"The \" ----"
build/mnemo sample --checkpoint "$run" --prompt "The " --max-tokens 60 --temperature 0

echo "==== done: $run (latest/, metrics.jsonl, loss.svg) ===="
tail -n 1 "$run/metrics.jsonl"
