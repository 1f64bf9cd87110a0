#!/usr/bin/env bash
# The data-parallel path against plain training, on the CPU (the data-parallel overhead):
#   plain     one process, T threads                       (mnemo bench train)
#   dp1       the same under `mpirun -np 1`: the data-parallel code path with one rank
#   dp_ranks  `mpirun -np T`, one thread per rank: T ranks x 1 thread vs 1 rank x T threads
# Each is `mnemo bench train` (the trainer's step: exact gradients, bucketed all_reduce),
# run in turns ROUNDS times so all three see the same load; prints one JSON line with the
# medians of tokens/s and the ratios dp1/plain (goal: overhead <= 2%) and dp_ranks/plain.
#
#   bench/data_parallel.sh [BUILD_DIR] [CONFIG] [ROUNDS] [THREADS]
#   defaults: build configs/demo.json 5 2
set -euo pipefail
build=${1:-build}
config=${2:-configs/demo.json}
rounds=${3:-5}
threads=${4:-2}
mnemo=$build/mnemo
[ -x "$mnemo" ] || { echo "data_parallel.sh: $mnemo not found (build first)" >&2; exit 2; }
command -v mpirun > /dev/null || { echo "data_parallel.sh: mpirun not found" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe --bind-to none)
args=(bench train --config "$config" --steps 10 --warmup 2)
rate() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["tokens_per_s"])'; }
plain=() dp1=() dpn=()
for ((i = 0; i < rounds; ++i)); do
  plain+=("$("$mnemo" "${args[@]}" --threads "$threads" 2> /dev/null | rate)")
  dp1+=("$("${mpi[@]}" -np 1 "$mnemo" "${args[@]}" --threads "$threads" 2> /dev/null | rate)")
  dpn+=("$("${mpi[@]}" -np "$threads" "$mnemo" "${args[@]}" --threads 1 2> /dev/null | rate)")
done
python3 - "$threads" "$(cat /proc/loadavg | cut -d' ' -f1)" "${plain[*]}" "${dp1[*]}" "${dpn[*]}" <<'PY'
import json, statistics, sys
threads, load = int(sys.argv[1]), float(sys.argv[2])
plain, dp1, dpn = ([float(x) for x in a.split()] for a in sys.argv[3:6])
m = statistics.median
print(json.dumps({"bench": "data_parallel", "threads": threads, "load_average_1min": load,
                  "plain_tokens_per_s": m(plain), "dp1_tokens_per_s": m(dp1),
                  "ranks_x1_tokens_per_s": m(dpn), "dp1_over_plain": m(dp1) / m(plain),
                  "ranks_x1_over_plain": m(dpn) / m(plain),
                  "runs": {"plain": plain, "dp1": dp1, "ranks_x1": dpn}}))
PY
