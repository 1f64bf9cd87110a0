#!/usr/bin/env bash
# Checks scripts/memory-table.sh without training anything (the ctest tests memory_table_*).
#
#   tests/tools/check_memory_table.sh collect ROOT OUT
#       --collect on the made-up results of tests/data/memory_table: the table's rows (mean and
#       worst seed, lower-is-better metrics, MemGen's fields read from "details", a cut-short
#       file left out, "not measured"), the markers' block replaced in a doc and a README, the
#       chart written as an SVG.
#   tests/tools/check_memory_table.sh run ROOT OUT
#       the running path with a stand-in for mnemo (MNEMO=...) that prints one JSON line: each
#       seed's line lands in its own file with the command added, a second call runs nothing
#       (resume), a failing command makes the script exit 1 and leaves no file.
#
# Exit 0 when all holds, 1 naming what does not, 77 (skipped) without jq.
# shellcheck disable=SC2016  # the backquotes in the expected rows are Markdown's
set -euo pipefail

mode=$1 root=$2 out=$3
command -v jq >/dev/null || {
  echo "jq is not installed (scripts/install-deps.sh): skipped"
  exit 77
}
rm -rf -- "$out" && mkdir -p -- "$out"
table=$root/scripts/memory-table.sh

fail() {
  echo "FAIL: $*"
  exit 1
}
# has FILE LINE: FILE holds LINE as a whole line.
has() {
  grep -qxF -- "$2" "$1" || {
    echo "---- $1:" && cat -- "$1"
    fail "$1 lacks the line: $2"
  }
}

if [[ "$mode" == collect ]]; then
  printf 'before\n<!-- memory-table:begin -->\nstale\n<!-- memory-table:end -->\nafter\n' >"$out/doc.md"
  cp -- "$out/doc.md" "$out/readme.md"
  "$table" --collect --results "$root/tests/data/memory_table" --doc "$out/doc.md" \
    --readme "$out/readme.md" --svg "$out/chart.svg" >"$out/stdout.md" 2>"$out/stderr.txt" ||
    fail "memory-table.sh --collect exited $?: $(cat "$out/stderr.txt")"
  cat "$out/stdout.md"
  # Seeds 0.9, 0.8, 0.2 against 0.05, 0.06, 0.07: mean and lowest.
  row='| recall | memorizing | exact_match | 0.633 (worst 0.200) | 0.060 (worst 0.050) | 3 seeds: 0, 1, 2 |'
  has "$out/doc.md" "$row 2500 | \`mnemo memory-bench recall --mechanism memorizing --seed S\` |"
  has "$out/readme.md" "$row"
  # Bits per byte: the worst seed is the highest; two step counts are both named.
  has "$out/doc.md" '| longdoc | titans | bits_per_byte (lower is better) | 3.200 (worst 3.400) | 3.250 (worst 3.300) | 2 seeds: 0, 1 | 200, 20 | `mnemo memory-bench longdoc --mechanism titans --seed S` |'
  # MemGen: figures and insertions from "details", the frozen reasoner's given as an object.
  has "$out/doc.md" '| memgen | memgen weaver (3.5 insertions per sequence) | exact_match | 0.420 | 0.220 | 1 seed: 0 | 100 | `mnemo memory-bench memgen --seed S` |'
  has "$out/doc.md" '| memgen | memgen trigger (2.0 insertions per sequence) | exact_match | 0.400 | 0.220 | 1 seed: 0 | 100 | `mnemo memory-bench memgen --seed S` |'
  # The cut-short line is left out, with a word on stderr; cells without runs say so.
  grep -q 'facts.explicit.seed0.json has no' "$out/stderr.txt" || fail "no warning about the cut-short file"
  has "$out/readme.md" '| facts | explicit | exact_match | not measured | | |'
  has "$out/readme.md" '| copy-far (gap 2) | titans | token_accuracy | not measured | | |'
  # The block between the markers is replaced, the rest kept; the table is also printed.
  ! grep -q stale "$out/doc.md" "$out/readme.md" || fail "the old block is still there"
  has "$out/doc.md" before && has "$out/doc.md" after
  has "$out/stdout.md" "$row 2500 | \`mnemo memory-bench recall --mechanism memorizing --seed S\` |"
  # The chart: one SVG document, a group per cell, the worst-seed marks.
  head -n 1 "$out/chart.svg" | grep -q '^<svg xmlns="http://www.w3.org/2000/svg"' || fail "chart.svg does not start an SVG"
  [[ "$(tail -n 1 "$out/chart.svg")" == "</svg>" ]] || fail "chart.svg does not end the SVG"
  grep -q 'font-weight="bold">memorizing<' "$out/chart.svg" || fail "no memorizing group in the chart"
  grep -q '>trigger<' "$out/chart.svg" || fail "no memgen trigger group in the chart"
  grep -q 'bits per byte (lower is better)' "$out/chart.svg" || fail "no bits-per-byte panel"
  grep -q '<title>mean 0.633, worst 0.200</title>' "$out/chart.svg" || fail "no recall bar"
  grep -q '<title>mean 3.200, worst 3.400</title>' "$out/chart.svg" || fail "no longdoc bar"
  if command -v xmllint >/dev/null; then xmllint --noout "$out/chart.svg" || fail "chart.svg is not well-formed XML"; fi
  echo "memory-table --collect: as expected"
elif [[ "$mode" == run ]]; then
  # A stand-in for mnemo: progress on stderr, one JSON line with the seed it was given.
  cat >"$out/mnemo" <<EOF
#!/usr/bin/env bash
echo "\$*" >>"$out/calls"
[[ " \$* " == *" recall "* ]] && { echo "stand-in: recall fails" >&2; exit 1; }
seed=\$(sed -n 's/.*--seed \([0-9]*\).*/\1/p' <<<"\$*")
echo "memory-bench: step 1/1" >&2
echo '{"task":"copy-far","mechanism":"memformer","metric":"token_accuracy","higher_is_better":true,"memory":0.5,"baseline":0.0625,"steps":1,"seed":'"\$seed"'}'
EOF
  chmod +x "$out/mnemo"
  args=(--seeds "0 1" --results "$out/results" --logs "$out/logs" --steps 1)
  MNEMO=$out/mnemo "$table" --only copy-far:memformer "${args[@]}" >"$out/first.txt" 2>&1 ||
    fail "the first run exited $?: $(cat "$out/first.txt")"
  for seed in 0 1; do
    file=$out/results/copy-far.memformer.seed$seed.json
    [[ $(wc -l <"$file") == 1 ]] || fail "$file does not hold one line"
    [[ "$(jq -r .command "$file")" == "mnemo memory-bench copy-far --gap 2 --mechanism memformer --seed $seed --steps 1" ]] ||
      fail "$file: command $(jq -r .command "$file")"
    grep -q 'step 1/1' "$out/logs/copy-far.memformer.seed$seed.log" || fail "no log for seed $seed"
  done
  has "$out/first.txt" '| copy-far (gap 2) | memformer | token_accuracy | 0.500 (worst 0.500) | 0.062 (worst 0.062) | 2 seeds: 0, 1 | 1 | `mnemo memory-bench copy-far --gap 2 --mechanism memformer --seed S` |'
  grep -q '<svg' "$out/results/memory-table.svg" || fail "no chart in the results folder"
  # Again: both seeds are there, nothing runs.
  MNEMO=$out/mnemo "$table" --only copy-far:memformer "${args[@]}" >"$out/second.txt" 2>&1 ||
    fail "the second run exited $?"
  [[ $(wc -l <"$out/calls") == 2 ]] || fail "the second run ran mnemo again: $(cat "$out/calls")"
  # A failing command: exit 1, no file, the table still written.
  status=0
  MNEMO=$out/mnemo "$table" --only recall:titans "${args[@]}" >"$out/third.txt" 2>&1 || status=$?
  [[ $status == 1 ]] || fail "a failing run exited $status, not 1: $(cat "$out/third.txt")"
  [[ ! -e "$out/results/recall.titans.seed0.json" ]] || fail "a failed run left a results file"
  grep -q 'stand-in: recall fails' "$out/third.txt" || fail "the failed run's log end is not shown"
  # Extra arguments into the repository's results are refused (were they not, the stand-in
  # fails on recall and leaves no file there).
  status=0
  MNEMO=$out/mnemo "$table" --only recall:titans --seeds 5 --logs "$out/logs" --steps 1 >"$out/fourth.txt" 2>&1 || status=$?
  if [[ $status != 2 ]] || ! grep -q 'results DIR of their own' "$out/fourth.txt"; then
    fail "extra arguments into the default results folder were not refused ($status)"
  fi
  echo "memory-table runs: as expected"
else
  fail "unknown mode '$mode' (collect or run)"
fi
