#!/usr/bin/env bash
# A fault drill for data-parallel training: one rank of `mpirun -np 2 mnemo train` SIGKILLed
# in the middle of a run must end the whole job within LIMIT seconds (no rank left waiting in
# a collective), and RUN/latest must still load.
#
# usage: rank_kill_drill.sh MPIRUN MNEMO CONFIG CORPUS WORKDIR [LIMIT]
#   MPIRUN: the launcher with its flags up to the rank count, e.g. "mpirun --oversubscribe -np"
set -euo pipefail

read -r -a mpirun <<< "$1"
mnemo=$2 config=$3 corpus=$4 work=$5 limit=${6:-30}
fail() { echo "rank kill drill: $*" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work"
run=$work/run
"${mpirun[@]}" 2 "$mnemo" train --config "$config" --set "data.path=$corpus" --steps 100000 \
  --set train.checkpoint_interval=5 --set train.eval_interval=0 --threads 1 --out "$run" \
  > "$work/job.log" 2>&1 &
job=$!
# Whatever happens to this script, the job does not outlive it.
cleanup() {
  kill -KILL "$job" 2> /dev/null || true
  pkill -KILL -f -- "--out $run\$" 2> /dev/null || true
}
trap cleanup EXIT
for ((i = 0; i < 600; ++i)); do
  [ -L "$run/latest" ] && break
  kill -0 "$job" 2> /dev/null || fail "the job ended before its first checkpoint: $(tail -n 3 "$work/job.log")"
  sleep 0.1
done
[ -L "$run/latest" ] || fail "no checkpoint after 60 s"
sleep 0.3  # into the next steps

# The ranks are the mnemo processes of this run other than the launcher.
mapfile -t ranks < <(pgrep -f "train --config $config.*--out $run" | grep -vx "$job" || true)
[ "${#ranks[@]}" -ge 2 ] || fail "expected 2 ranks, found ${#ranks[@]} (${ranks[*]:-})"
victim=${ranks[-1]}
start=$SECONDS
kill -KILL "$victim"
for ((i = 0; i < limit * 10; ++i)); do
  kill -0 "$job" 2> /dev/null || break
  sleep 0.1
done
if kill -0 "$job" 2> /dev/null; then
  kill -KILL "$job" "${ranks[@]}" 2> /dev/null || true
  fail "the job still ran $limit s after rank pid $victim was killed"
fi
set +e
wait "$job"
code=$?
set -e
[ "$code" != 0 ] || fail "the job exited 0 after losing a rank"
"$mnemo" eval --checkpoint "$run" --text "$corpus" --seq 16 --threads 1 > /dev/null ||
  fail "latest ($(readlink "$run/latest")) does not load"
echo "rank kill: the job ended $((SECONDS - start)) s after one rank was SIGKILLed (exit $code);" \
  "latest ($(readlink "$run/latest")) loads"
