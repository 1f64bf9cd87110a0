#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with a GPU and no network: build, every
# CUDA test, compute-sanitizer, a bitwise-repeat training run, the GPU benchmarks, the kernel
# benchmarks (bench/kernels.cpp, beside PyTorch's bench/peer/kernels_torch.py); a short
# report.
#
#   scripts/gpu-check.sh OUTDIR [--deps DIR] [--jobs N] [--quick]
#
#   --deps DIR   header-only dependencies (DIR/include/{eigen3,fmt,doctest,nlohmann,CLI}) for a
#                machine without apt; default: .deps when it exists, else the system's
#   --quick      skip compute-sanitizer and the benchmarks' PyTorch peers
#
# Writes OUTDIR/report.md (a table), OUTDIR/results.json (commit, gpu, cuda_tests_pass,
# sanitizer_errors, bitwise_repeat, benchmark figures, `kernels`: the kernel benchmarks against
# PyTorch, see bench/peer/kernels_torch.py --merge) and OUTDIR/logs.tar.gz (each stage's log,
# with both kernel benchmarks' JSON lines). cuDNN and NCCL are looked for in the CUDA install
# and in the nvidia-* Python wheels (PyTorch's). MPI is off. Exit status 0 only if the tests
# pass, the sanitizer finds nothing and the repeated run is bitwise identical.
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
logs=$out/logs  # packed into OUTDIR/logs.tar.gz at the end
rm -rf "$logs" && mkdir -p "$logs"
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
if cmake "${cmake_args[@]}" > "$logs/configure.log" 2>&1 &&
   ninja -C $build -j "$jobs" test_cuda mnemo bench_cuda kernels > "$logs/build.log" 2>&1; then
  build_ok=true
fi
tail -3 "$logs/build.log" 2>/dev/null || tail -20 "$logs/configure.log"

# ---- CUDA tests ----
tests_ok=false
cases_line=""
if $build_ok; then
  stage "CUDA tests"
  if $build/tests/test_cuda > "$logs/tests.log" 2>&1; then tests_ok=true; fi
  grep -E "^\[doctest\] (test cases|assertions)" "$logs/tests.log"
  cases_line=$(grep -E "^\[doctest\] test cases" "$logs/tests.log" | head -1)
  $tests_ok || grep -E "ERROR|error:|CHECK|REQUIRE" "$logs/tests.log" | head -30
fi

# ---- compute-sanitizer: memcheck over every CUDA test, racecheck over the op tests (the
# kernels that share memory between threads). The allocation-error test is left out: it
# provokes a cudaMalloc failure on purpose, which the sanitizer would count. ----
sanitizer_errors=-1
if $build_ok && [[ $quick == 0 ]] && command -v compute-sanitizer > /dev/null; then
  stage "compute-sanitizer memcheck"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 0 --print-limit 20 \
    $build/tests/test_cuda --test-case-exclude="*allocation errors*" > "$logs/memcheck.log" 2>&1
  stage "compute-sanitizer racecheck"
  # racecheck is slow (the whole suite takes over 3 minutes under it): the tests of the kernels
  # that share memory between threads (block reductions, scans, CUB sorts).
  racecheck_cases="cuda: softmax and log_softmax along the last dim*,cuda: cross_entropy forward*"
  racecheck_cases+=",cuda: rms_norm_backward*,cuda: layer_norm_backward*,cuda: long reductions*"
  racecheck_cases+=",cuda: cumsum*,cuda: index_add*,cuda: attention forward and backward match*"
  racecheck_cases+=",cuda: multinomial equals*,cuda: scan and scan_backward*"
  racecheck_cases+=",cuda: flash attention matches*,cuda: fast scan*,cuda: fast rms_norm*"
  racecheck_cases+=",cuda: fast cross_entropy forward*"
  timeout 240 compute-sanitizer --tool racecheck --error-exitcode 0 --print-limit 20 \
    $build/tests/test_cuda --test-case="$racecheck_cases" > "$logs/racecheck.log" 2>&1
  # memcheck ends with "ERROR SUMMARY: N errors", racecheck with "RACECHECK SUMMARY: H
  # hazards displayed (N errors, W warnings)"; a run cut short by the timeout has neither and
  # counts as one error.
  sanitizer_errors=0
  for log in "$logs/memcheck.log" "$logs/racecheck.log"; do
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
      --steps 3 --device cuda --out "$out/$run" >> "$logs/repeat.log" 2>&1
  done
  a=$(find "$out/runA" -name model.safetensors | sort | tail -1)
  b=$(find "$out/runB" -name model.safetensors | sort | tail -1)
  if [[ -n $a && -n $b ]] && cmp -s "$a" "$b"; then bitwise=true; fi
  echo "weights after 3 steps identical: $bitwise ($a vs $b)"
  # Generation from the GPU run's checkpoint (KV cache, sampling on the device).
  if $build/mnemo sample --checkpoint "$out/runA" --prompt "The " --max-tokens 40 --device cuda \
       > "$logs/sample.log" 2>&1; then
    echo "sample: $(head -c 200 "$logs/sample.log" | tr '\n' ' ')"
  else
    echo "sample: FAILED ($(tail -1 "$logs/sample.log"))"
  fi
  cp "$out/runA/metrics.jsonl" "$logs/repeat_metrics.jsonl" 2>/dev/null
  rm -rf "$out/runA" "$out/runB"
fi

# ---- benchmarks: kernels and a training step, PyTorch on the same GPU as the peer ----
bench_ops="{}"
bench_train="{}"
bench_peer="{}"
if $build_ok; then
  stage "benchmarks"
  bench_ops=$($build/bench/bench_cuda 2> "$logs/bench_cuda.log" | tail -1)
  # configs/gpu-bench.json: a 30M-parameter Llama, 16 x 512 tokens a step.
  bench_train=$($build/mnemo bench train --config configs/gpu-bench.json --device cuda \
                 --steps 20 2> "$logs/bench_train.log" | tail -1)
  if [[ $quick == 0 ]]; then
    bench_peer=$(python3 bench/peer/llama_torch.py --config configs/gpu-bench.json --device cuda \
                   --batch 16 --seq 512 --steps 20 --threads 4 2> "$logs/bench_peer.log" | tail -1)
  fi
  echo "ops:   $bench_ops"
  echo "train: $bench_train"
  echo "peer:  $bench_peer"
fi

# ---- kernel benchmarks: bench/kernels.cpp and its PyTorch peer on the same cases, merged
# into results.json's `kernels` object. Each run stops starting cases after --max-seconds and
# is killed by timeout after more; what it printed until then still counts. ----
echo "{}" > "$logs/kernels.json"
if $build_ok; then
  stage "kernel benchmarks"
  timeout 150 $build/bench/kernels --max-seconds 100 > "$logs/kernels.jsonl" 2> "$logs/kernels.log"
  peer_lines=""
  if [[ $quick == 0 ]]; then
    timeout 120 python3 bench/peer/kernels_torch.py --max-seconds 75 \
      > "$logs/kernels_torch.jsonl" 2> "$logs/kernels_torch.log"
    peer_lines=$logs/kernels_torch.jsonl
  fi
  python3 bench/peer/kernels_torch.py --merge "$logs/kernels.jsonl" $peer_lines \
    > "$logs/kernels.json" 2>> "$logs/kernels.log"
  echo "kernels: $(head -c 600 "$logs/kernels.json")"
fi

# ---- report ----
stage "report"
python3 - "$out" "$logs/kernels.json" <<PY
import json, sys
out = sys.argv[1]
def parse(text):
    try:
        return json.loads(text)
    except Exception:
        return {"unparsed": text}
train, peer = parse('''$bench_train'''), parse('''$bench_peer''')
try:  # bench/peer/kernels_torch.py --merge: read from its file (its strings may hold escapes)
    kernels = json.load(open(sys.argv[2]))
except Exception as e:
    kernels = {"unparsed": str(e)}
ratio = None
if isinstance(train.get("tokens_per_s"), (int, float)) and isinstance(peer.get("tokens_per_s"), (int, float)):
    ratio = round(train["tokens_per_s"] / peer["tokens_per_s"], 3)
results = {
    "commit": "$commit", "gpu": "$gpu", "build_ok": "$build_ok" == "true",
    "cuda_tests_pass": "$tests_ok" == "true", "cuda_tests": "$cases_line",
    "sanitizer_errors": int("$sanitizer_errors"), "bitwise_repeat": "$bitwise" == "true",
    "bench_ops": parse('''$bench_ops'''), "bench_train": train, "bench_train_peer": peer,
    "train_tokens_per_s_vs_pytorch": ratio, "kernels": kernels,
    "seconds": $SECONDS - $start,
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
for k, v in results["kernels"].items() if isinstance(results["kernels"], dict) else []:
    if k != "attention":  # the per-case table is in results.json
        rows.append((f"kernels: {k}", v))
rows.append(("seconds", results["seconds"]))
with open(f"{out}/report.md", "w") as f:
    f.write("# mnemo GPU check\n\n| what | result |\n| --- | --- |\n")
    for k, v in rows:
        f.write(f"| {k} | {v} |\n")
print(open(f"{out}/report.md").read())
PY
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
$tests_ok && $bitwise && [[ $sanitizer_errors -le 0 ]]
