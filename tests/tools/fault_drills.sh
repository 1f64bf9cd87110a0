#!/usr/bin/env bash
# Fault drills for `mnemo train`: whatever happens to the process, the run directory keeps a
# `latest` that loads, and --resume continues the run as if nothing had happened.
#
#   kill       SIGKILL at random moments (data preparation, a step, a checkpoint being
#              written) of a run that checkpoints every step, ROUNDS times. After each kill
#              RUN/latest, when there is one, must load (`mnemo eval`); the next round goes on
#              with --resume. At the end the run is finished without kills and its per-step
#              losses must equal an uninterrupted run's, bit for bit.
#   full disk  the next checkpoint written past a file-size limit (ulimit -f): the command
#              fails naming the file, `latest` is still the previous checkpoint and loads, and
#              no partial checkpoint directory is left.
#   bad --out  a run directory below a regular file: exit 2, one line naming it.
#   moved      the run directory renamed away mid-run (as `mv` or a clean-up would), and a
#              regular file put in its place (a directory it can no longer write): the run
#              ends non-zero with one line naming a path in it, never a crash; the renamed
#              directory's latest loads. Renamed away alone, the run re-creates the directory
#              with its next checkpoint and finishes (both latests load), or, renamed while a
#              checkpoint was being written into it, ends as with the file.
#
# usage: fault_drills.sh MNEMO CONFIG CORPUS WORKDIR [ROUNDS] [SEED]
set -euo pipefail

mnemo=$1 config=$2 corpus=$3 work=$4 rounds=${5:-20}
RANDOM=${6:-1}  # the kills' moments
steps=60
base=(--config "$config" --set "data.path=$corpus" --set train.checkpoint_interval=1
      --set train.eval_interval=0 --threads 1)
common=("${base[@]}" --steps "$steps")

fail() { echo "fault drill: $*" >&2; exit 1; }
step_losses() { jq -c 'select(has("loss")) | [.step, .loss]' "$1/metrics.jsonl"; }
loads() { "$mnemo" eval --checkpoint "$1" --text "$corpus" --seq 16 --threads 1 > /dev/null; }

rm -rf "$work" && mkdir -p "$work"
pid=
trap '[ -z "$pid" ] || kill -KILL "$pid" 2> /dev/null || true' EXIT  # no run outlives the drill

# The uninterrupted run.
"$mnemo" train "${common[@]}" --out "$work/reference" > /dev/null 2>&1 || fail "reference run failed"
[ "$(step_losses "$work/reference" | wc -l)" = "$steps" ] || fail "reference run: not $steps steps"

# ---- kill ----
run=$work/killed
kills=0
seen=()  # latest after each kill
latest_step() { if [ -L "$run/latest" ]; then readlink "$run/latest" | sed 's/^step-0*//'; else echo 0; fi; }
# Until the metrics line of step $2 is written or process $1 ends.
wait_for_step() {
  while kill -0 "$1" 2> /dev/null; do
    grep -qs "\"step\":$2," "$run/metrics.jsonl" && return
    sleep 0.005
  done
}
for ((round = 0; round < rounds; ++round)); do
  "$mnemo" train "${common[@]}" --out "$run" --resume > "$work/round.log" 2>&1 &
  pid=$!
  if ((round % 3 == 0)); then
    # Anywhere in the first second: start-up, data preparation, the first steps.
    sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
  else
    # A few steps on from the last checkpoint, then 0-30 ms into what follows it (the next
    # step, or the checkpoint being written: one per step).
    target=$(($(latest_step) + 1 + RANDOM % 6))
    ((target <= steps)) || target=$steps
    wait_for_step "$pid" "$target"
    sleep "0.0$(printf '%02d' $((RANDOM % 30)))"
  fi
  if kill -KILL "$pid" 2> /dev/null; then kills=$((kills + 1)); fi
  { wait "$pid" || true; } 2> /dev/null  # not bash's "Killed" notice
  if [ -e "$run/latest" ]; then
    loads "$run" || fail "kill round $round: $run/latest does not load ($(readlink "$run/latest"))"
    seen+=("$(readlink "$run/latest")")
  else
    seen+=(none)
  fi
  [ -L "$run/latest" ] && [ "$(readlink "$run/latest")" = "step-$(printf '%08d' $steps)" ] && break
done
"$mnemo" train "${common[@]}" --out "$run" --resume > "$work/round.log" 2>&1 ||
  fail "the resumed run failed: $(tail -n 1 "$work/round.log")"
diff <(step_losses "$work/reference") <(step_losses "$run") > "$work/losses.diff" ||
  fail "after $kills kills the losses differ from the uninterrupted run's ($work/losses.diff)"
echo "kill: $kills SIGKILLs; latest after each: ${seen[*]#step-}; loaded every time; the $steps losses equal the uninterrupted run's"

# ---- full disk ----
before=$(readlink "$run/latest")
set +e
(ulimit -f 40 && exec "$mnemo" train --out "$run" --resume --steps $((steps + 2)) --threads 1) \
  > /dev/null 2> "$work/full.err"
code=$?
set -e
[ "$code" != 0 ] || fail "full disk: the run succeeded under a 40 KiB file-size limit"
tail -n 1 "$work/full.err" | grep -Eq "^mnemo: .*(safetensors|json).*(too large|File too large)" ||
  fail "full disk: the error does not name the file: $(tail -n 1 "$work/full.err")"
[ "$(readlink "$run/latest")" = "$before" ] || fail "full disk: latest moved to $(readlink "$run/latest")"
loads "$run" || fail "full disk: latest ($before) does not load"
leftover=$(find "$run" -maxdepth 1 -name '.tmp-*' | head -n 1)
[ -z "$leftover" ] || fail "full disk: a partial checkpoint was left: $leftover"
echo "full disk: exit $code, '$(tail -n 1 "$work/full.err" | cut -c1-100)...', latest still $before and loads"

# ---- bad --out ----
touch "$work/a_file"
set +e
"$mnemo" train "${common[@]}" --out "$work/a_file/run" > /dev/null 2> "$work/bad.err"
code=$?
set -e
[ "$code" = 2 ] || fail "bad --out: exit $code, not 2: $(cat "$work/bad.err")"
grep -q "a_file" "$work/bad.err" || fail "bad --out: the error does not name it: $(cat "$work/bad.err")"
echo "bad --out: exit 2, '$(tail -n 1 "$work/bad.err")'"

# ---- the run directory moved away mid-run ----
for kind in file_in_place vanished; do
  run=$work/moved_$kind
  "$mnemo" train "${base[@]}" --steps 400 --out "$run" > /dev/null 2> "$work/moved.err" &
  pid=$!
  wait_for_step "$pid" 20
  mv "$run" "$run.away"
  if [ "$kind" = file_in_place ]; then
    # Should the run re-create the directory first (its next checkpoint), clear it and retry.
    until { : > "$run"; } 2> /dev/null; do rm -rf "$run" 2> /dev/null || true; done
  fi
  set +e
  wait "$pid"
  code=$?
  set -e
  pid=
  ((code < 128)) || fail "moved ($kind): the run crashed (exit $code): $(tail -n 1 "$work/moved.err")"
  loads "$run.away" || fail "moved ($kind): the renamed directory's latest does not load"
  if [ "$kind" = vanished ] && [ "$code" = 0 ]; then
    loads "$run" || fail "moved ($kind): the re-created directory's latest does not load"
    echo "moved away: the run re-created its directory and finished; both latests load"
  else
    # A file in its place; or renamed while a checkpoint was being written into it.
    [ "$code" != 0 ] || fail "moved ($kind): the run succeeded with a file in place of its directory"
    tail -n 1 "$work/moved.err" | grep -q "^mnemo: .*$run" ||
      fail "moved ($kind): the error does not name the run: $(tail -n 1 "$work/moved.err")"
    echo "moved ($kind): exit $code, '$(tail -n 1 "$work/moved.err" | cut -c1-100)...'; the renamed latest loads"
  fi
done
