#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with a GPU and no network (the device
# machine of ../shared/GPU.md): build, every CUDA test, compute-sanitizer, a bitwise-repeat
# training run, the GPU benchmarks; a short report.
#
#   scripts/gpu-check.sh OUTDIR [--deps DIR] [--jobs N] [--quick]
#
#   --deps DIR   header-only dependencies (DIR/include/{eigen3,fmt,doctest,nlohmann,CLI}) for a
#                machine without apt; default: .deps when it exists, else the system's
#   --quick      skip compute-sanitizer and the benchmarks' PyTorch peer
#
# Writes OUTDIR/report.md (a table), OUTDIR/results.json (commit, gpu, cuda_tests_pass,
# sanitizer_errors, bitwise_repeat, benchmark figures) and the logs of each stage
# (OUTDIR/*.log). cuDNN and NCCL are looked for in the CUDA install and in the nvidia-* Python
# wheels (PyTorch's). MPI is off. Exit status 0 only if the tests pass, the sanitizer finds
# nothing and the repeated run is bitwise identical.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=""
deps=""
jobs=$(nproc)
quick=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --deps) deps=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) if [[ -z $out ]]; then out=$1; shift; else echo "gpu-check: unexpected argument $1" >&2; exit 2; fi ;;
  esac
done
[[ -n $out ]] || { echo "usage: scripts/gpu-check.sh OUTDIR [--deps DIR] [--jobs N] [--quick]" >&2; exit 2; }
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$root"
[[ -z $deps && -d .deps/include ]] && deps=$root/.deps
start=$SECONDS
export PATH=/usr/local/cuda/bin:$PATH
stage() { printf '\n==== %s (%ds) ====\n' "$*" $((SECONDS - start)); }

commit=${MNEMO_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}  # MNEMO_COMMIT: where .git did not travel
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
wheels=$(python3 -c "import nvidia, os; print(nvidia.__path__[0])" 2>/dev/null || true)

# ---- build ----
stage "configure and build (jobs $jobs, sm_${cap:-90})"
build=build-gpu
cmake_args=(-S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMNEMO_CUDA=ON -DMNEMO_MPI=OFF
            -DMNEMO_CUDA_ARCHS="${cap:-90}" -DMNEMO_NVIDIA_WHEELS="$wheels")
[[ -n $deps ]] && cmake_args+=(-DMNEMO_DEPS_DIR="$deps")
build_ok=false
if cmake "${cmake_args[@]}" > "$out/configure.log" 2>&1 &&
   ninja -C $build -j "$jobs" test_cuda mnemo bench_cuda > "$out/build.log" 2>&1; then
  build_ok=true
fi
tail -3 "$out/build.log" 2>/dev/null || tail -20 "$out/configure.log"

# ---- CUDA tests ----
tests_ok=false
cases_line=""
if $build_ok; then
  stage "CUDA tests"
  if $build/tests/test_cuda > "$out/tests.log" 2>&1; then tests_ok=true; fi
  grep -E "^\[doctest\] (test cases|assertions)" "$out/tests.log"
  cases_line=$(grep -E "^\[doctest\] test cases" "$out/tests.log" | head -1)
  $tests_ok || grep -E "ERROR|error:|CHECK|REQUIRE" "$out/tests.log" | head -30
fi

# ---- compute-sanitizer: memcheck over every CUDA test, racecheck over the op tests (the
# kernels that share memory between threads). The allocation-error test is left out: it
# provokes a cudaMalloc failure on purpose, which the sanitizer would count. ----
sanitizer_errors=-1
if $build_ok && [[ $quick == 0 ]] && command -v compute-sanitizer > /dev/null; then
  stage "compute-sanitizer memcheck"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 0 --print-limit 20 \
    $build/tests/test_cuda --test-case-exclude="*allocation errors*" > "$out/memcheck.log" 2>&1
  stage "compute-sanitizer racecheck"
  timeout 240 compute-sanitizer --tool racecheck --error-exitcode 0 --print-limit 20 \
    $build/tests/test_cuda --test-case-exclude="*allocation errors*,*Llama*,*training step*" \
    > "$out/racecheck.log" 2>&1
  # memcheck ends with "ERROR SUMMARY: N errors", racecheck with "RACECHECK SUMMARY: H
  # hazards displayed (N errors, W warnings)"; a run cut short by the timeout has neither and
  # counts as one error.
  sanitizer_errors=0
  for log in "$out/memcheck.log" "$out/racecheck.log"; do
    n=$( (grep -oE "ERROR SUMMARY: [0-9]+" "$log" | awk '{print $3}';
          grep -oE "RACECHECK SUMMARY: .*\(([0-9]+) errors" "$log" | grep -oE "[0-9]+ errors" |
            awk '{print $1}') | tail -1)
    sanitizer_errors=$((sanitizer_errors + ${n:-1}))
    echo "$(basename "$log"): ${n:-no summary (timed out?)} errors; $(grep -E '^\[doctest\] test cases' "$log")"
  done
fi

# ---- the same short training run twice: weights must be bitwise identical ----
bitwise=false
if $build_ok; then
  stage "bitwise repeat of a training run"
  rm -rf "$out/runA" "$out/runB"
  for run in runA runB; do
    $build/mnemo train --config configs/demo.json --set data.path=tests/data/tiny_corpus.txt \
      --set train.batch_size=8 --set train.seq_len=128 --set train.eval_interval=0 \
      --steps 3 --device cuda --out "$out/$run" >> "$out/repeat.log" 2>&1
  done
  a=$(find "$out/runA" -name model.safetensors | sort | tail -1)
  b=$(find "$out/runB" -name model.safetensors | sort | tail -1)
  if [[ -n $a && -n $b ]] && cmp -s "$a" "$b"; then bitwise=true; fi
  echo "weights after 3 steps identical: $bitwise ($a vs $b)"
  cp "$out/runA/metrics.jsonl" "$out/repeat_metrics.jsonl" 2>/dev/null
  rm -rf "$out/runA" "$out/runB"
fi

# ---- benchmarks: kernels and a training step, PyTorch on the same GPU as the peer ----
bench_ops="{}"
bench_train="{}"
bench_peer="{}"
if $build_ok; then
  stage "benchmarks"
  bench_ops=$($build/bench/bench_cuda 2> "$out/bench_cuda.log" | tail -1)
  # configs/gpu-bench.json: a 30M-parameter Llama, 16 x 512 tokens a step.
  bench_train=$($build/mnemo bench train --config configs/gpu-bench.json --device cuda \
                 --steps 20 2> "$out/bench_train.log" | tail -1)
  if [[ $quick == 0 ]]; then
    bench_peer=$(python3 bench/peer/llama_torch.py --config configs/gpu-bench.json --device cuda \
                   --batch 16 --seq 512 --steps 20 --threads 4 2> "$out/bench_peer.log" | tail -1)
  fi
  echo "ops:   $bench_ops"
  echo "train: $bench_train"
  echo "peer:  $bench_peer"
fi

# ---- report ----
stage "report"
python3 - "$out" <<PY
import json, sys
out = sys.argv[1]
def parse(text):
    try:
        return json.loads(text)
    except Exception:
        return {"unparsed": text}
train, peer = parse('''$bench_train'''), parse('''$bench_peer''')
ratio = None
if isinstance(train.get("tokens_per_s"), (int, float)) and isinstance(peer.get("tokens_per_s"), (int, float)):
    ratio = round(train["tokens_per_s"] / peer["tokens_per_s"], 3)
results = {
    "commit": "$commit", "gpu": "$gpu", "build_ok": "$build_ok" == "true",
    "cuda_tests_pass": "$tests_ok" == "true", "cuda_tests": "$cases_line",
    "sanitizer_errors": int("$sanitizer_errors"), "bitwise_repeat": "$bitwise" == "true",
    "bench_ops": parse('''$bench_ops'''), "bench_train": train, "bench_train_peer": peer,
    "train_tokens_per_s_vs_pytorch": ratio, "seconds": $SECONDS - $start,
}
json.dump(results, open(f"{out}/results.json", "w"), indent=2)
rows = [("commit", results["commit"]), ("gpu", results["gpu"]),
        ("CUDA tests pass", results["cuda_tests_pass"]), ("", results["cuda_tests"]),
        ("compute-sanitizer errors (memcheck)", results["sanitizer_errors"]),
        ("bitwise-identical repeated training run", results["bitwise_repeat"]),
        ("train tokens/s (mnemo)", train.get("tokens_per_s")),
        ("train tokens/s (PyTorch eager, same GPU)", peer.get("tokens_per_s")),
        ("mnemo / PyTorch", ratio)]
for k, v in results["bench_ops"].items() if isinstance(results["bench_ops"], dict) else []:
    rows.append((k, v))
rows.append(("seconds", results["seconds"]))
with open(f"{out}/report.md", "w") as f:
    f.write("# mnemo GPU check\n\n| what | result |\n| --- | --- |\n")
    for k, v in rows:
        f.write(f"| {k} | {v} |\n")
print(open(f"{out}/report.md").read())
PY
$tests_ok && $bitwise && [[ $sanitizer_errors -le 0 ]]
