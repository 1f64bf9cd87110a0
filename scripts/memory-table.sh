#!/usr/bin/env bash
# The summary table of the memory mechanisms: every mechanism against its baseline on every
# task where it applies, each cell over several seeds (their mean and their worst), written as
# a Markdown table and an SVG bar chart.
#
#   scripts/memory-table.sh [--seeds "0 1 2"] [--only TASK[:MECH]]... [--results DIR]
#                           [--logs LOGS] [--threads N] [--collect] [--doc FILE] [--readme FILE]
#                           [--svg FILE] [EXTRA...]
#
# The cells are the table `cells` below: one `mnemo memory-bench` command each (the seed
# added), the mechanism's figure and the baseline's read from its JSON line. MemGen's command
# reports several models in one line, so two cells read the same run (the weaver at every
# delimiter, and the weaver under its trigger, each against the frozen reasoner).
#
# Running: for each selected cell and each seed of --seeds, build/mnemo (or $MNEMO) runs the
# cell's command, and its JSON line, with the command added as "command", is appended to
# DIR/RUN.seedS.json (one file per run and seed; default DIR: docs/memory-table/results,
# which holds the runs measured so far, each with the "source" it came from). A run whose file
# already holds a line is skipped, so an interrupted table resumes where it stopped. Progress
# lines go to LOGS/RUN.seedS.log (--logs LOGS; default build/memory-table-logs). At the
# defaults a run takes up to ~10 minutes on a 2-core CPU, so the whole table (11 runs x 3
# seeds) takes hours: --only picks cells (`--only recall`, `--only copy-far:memformer`,
# repeated or comma-separated).
# Arguments the script does not know (`--steps 20`) go to every mnemo command; since they make
# the runs differ from the defaults, they need a --results DIR other than the default.
#
# Writing (also after --collect, which runs nothing): the last line of every DIR/RUN.seedS.json,
# every seed found (not only those of --seeds), summed up per cell: the mean and the worst seed
# of the mechanism and of the baseline; a cell with fewer than 3 seeds says how many it has, one
# with none says "not measured". The table is printed; with the default DIR it also goes
# between the markers <!-- memory-table:begin --> and <!-- memory-table:end --> of
# docs/memory-results.md (--doc FILE) and, without the steps and command columns, of README.md
# (--readme FILE), and the chart to docs/memory-table.svg (--svg FILE). With another DIR (a
# smoke run's) only the chart is written, to DIR/memory-table.svg, unless those options say
# where; '' skips one. Needs jq (scripts/install-deps.sh installs it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
default_results=$root/docs/memory-table/results

seeds="0 1 2"
only=()
results=$default_results
logs=$root/build/memory-table-logs
threads=""
collect=0
doc=default
readme=default
svg=default
extra=()

die() {
  echo "memory-table: $*" >&2
  exit 2
}

while (($# > 0)); do
  case "$1" in
    --seeds | --only | --results | --logs | --threads | --doc | --readme | --svg)
      (($# >= 2)) || die "$1 needs a value"
      case "$1" in
        --seeds) seeds=$2 ;;
        --only) IFS=', ' read -r -a picked <<<"$2" && only+=("${picked[@]}") ;;
        --results) results=$2 ;;
        --logs) logs=$2 ;;
        --threads) threads=$2 ;;
        --doc) doc=$2 ;;
        --readme) readme=$2 ;;
        --svg) svg=$2 ;;
      esac
      shift 2
      ;;
    --collect) collect=1 && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
    *) extra+=("$1") && shift ;;
  esac
done

command -v jq >/dev/null || die "needs jq (scripts/install-deps.sh installs it)"
[[ "$seeds" =~ ^[0-9]+([[:space:]]+[0-9]+)*[[:space:]]*$ ]] || die "--seeds must be numbers, got '$seeds'"
[[ -z "$threads" || "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive number"
results=$(realpath -m -- "$results")
# The repository's docs show the results kept in the repository; other results (a smoke
# run's) go to their own folder unless --doc, --readme or --svg say otherwise.
if [[ "$results" == "$default_results" ]]; then
  [[ "$doc" == default ]] && doc=$root/docs/memory-results.md
  [[ "$readme" == default ]] && readme=$root/README.md
  [[ "$svg" == default ]] && svg=$root/docs/memory-table.svg
else
  [[ "$doc" == default ]] && doc=""
  [[ "$readme" == default ]] && readme=""
  [[ "$svg" == default ]] && svg=$results/memory-table.svg
fi
if ((${#extra[@]} > 0 && collect == 0)) && [[ "$results" == "$default_results" ]]; then
  die "extra arguments (${extra[*]}) change the runs from the defaults: give them a --results DIR of their own"
fi

# ---- the cells: one line each, fields separated by '|':
#   id | run | task | mechanism | metric | higher is better | memory figure | baseline figure |
#   insertions figure | the command after `mnemo` (the script adds --seed S)
# A figure is a path into the JSON line (details.frozen); 'a|b' is not allowed inside a field,
# so alternatives are written a,b (the first one present counts); '-' for none.
cells() {
  sed -e '/^#/d' -e 's/ *| */|/g' <<'EOF'
recall:memorizing   | recall.memorizing   | recall           | memorizing     | exact_match    | true  | memory | baseline | - | memory-bench recall --mechanism memorizing
recall:memformer    | recall.memformer    | recall           | memformer      | exact_match    | true  | memory | baseline | - | memory-bench recall --mechanism memformer
recall:titans       | recall.titans       | recall           | titans         | exact_match    | true  | memory | baseline | - | memory-bench recall --mechanism titans
copy-far:memorizing | copy-far.memorizing | copy-far (gap 2) | memorizing     | token_accuracy | true  | memory | baseline | - | memory-bench copy-far --gap 2 --mechanism memorizing
copy-far:memformer  | copy-far.memformer  | copy-far (gap 2) | memformer      | token_accuracy | true  | memory | baseline | - | memory-bench copy-far --gap 2 --mechanism memformer
copy-far:titans     | copy-far.titans     | copy-far (gap 2) | titans         | token_accuracy | true  | memory | baseline | - | memory-bench copy-far --gap 2 --mechanism titans
longdoc:memorizing  | longdoc.memorizing  | longdoc          | memorizing     | bits_per_byte  | false | memory | baseline | - | memory-bench longdoc --mechanism memorizing
longdoc:memformer   | longdoc.memformer   | longdoc          | memformer      | bits_per_byte  | false | memory | baseline | - | memory-bench longdoc --mechanism memformer
longdoc:titans      | longdoc.titans      | longdoc          | titans         | bits_per_byte  | false | memory | baseline | - | memory-bench longdoc --mechanism titans
facts:explicit      | facts.explicit      | facts            | explicit       | exact_match    | true  | memory | baseline | - | memory-bench facts --mechanism explicit
memgen:weaver       | memgen              | memgen           | memgen weaver  | exact_match    | true  | details.weaver_delimiters,memory | details.frozen,baseline | details.insertions_weaver_delimiters | memory-bench memgen
memgen:trigger      | memgen              | memgen           | memgen trigger | exact_match    | true  | details.trigger | details.frozen,baseline | details.insertions_trigger | memory-bench memgen
EOF
}

# selected ID: whether --only picks the cell (TASK picks all of the task's cells).
selected() {
  ((${#only[@]} == 0)) && return 0
  local pick
  for pick in "${only[@]}"; do
    [[ "$pick" == "$1" || "$pick" == "${1%%:*}" ]] && return 0
  done
  return 1
}

for pick in "${only[@]}"; do
  cells | cut -d'|' -f1 | grep -qx -e "$pick" -e "$pick:.*" ||
    die "--only $pick names no cell (one of: $(cells | cut -d'|' -f1 | tr '\n' ' '))"
done

# ---- running
run_cells() {
  local mnemo=${MNEMO:-$root/build/mnemo}
  [[ -x "$mnemo" ]] || die "no mnemo at $mnemo: build it (README.md) or set MNEMO"
  mkdir -p -- "$results" "$logs"
  local failed=0 done_runs=" " id run command seed file cmd out
  while IFS='|' read -r id run _ _ _ _ _ _ _ command; do
    selected "$id" || continue
    [[ "$done_runs" == *" $run "* ]] && continue
    done_runs+="$run "
    for seed in $seeds; do
      file=$results/$run.seed$seed.json
      if [[ -s "$file" ]] && tail -n 1 -- "$file" | jq -e 'type == "object"' >/dev/null 2>&1; then
        echo "memory-table: $run seed $seed: already in $file"
        continue
      fi
      # shellcheck disable=SC2206
      cmd=(memory-bench ${command#memory-bench } --seed "$seed")
      [[ -n "$threads" ]] && cmd+=(--threads "$threads")
      cmd+=("${extra[@]}")
      echo "memory-table: mnemo ${cmd[*]} (log: $logs/$run.seed$seed.log)"
      if out=$("$mnemo" "${cmd[@]}" 2>"$logs/$run.seed$seed.log" | grep '^{' | tail -n 1) &&
        jq -e 'type == "object"' >/dev/null 2>&1 <<<"$out"; then
        jq -c --arg command "mnemo ${cmd[*]}" '. + {command: $command}' <<<"$out" >>"$file"
      else
        echo "memory-table: $run seed $seed failed (the end of its log follows)" >&2
        tail -n 5 -- "$logs/$run.seed$seed.log" >&2
        failed=1
      fi
    done
  done < <(cells)
  return "$failed"
}

# ---- collecting: one tab-separated line per cell:
#   id task mechanism metric higher seeds_n seeds mem_mean mem_worst base_mean base_worst
#   steps command insertions_mean
# (figures '-' where there is nothing; the worst seed is the lowest score, or the highest
# where lower is better).
figures_of() { # FILE MEM BASE INS: "seed mem base steps ins" of the file's last line
  local seed=${1##*.seed}
  tail -n 1 -- "$1" | jq -r --arg mem "$2" --arg base "$3" --arg ins "$4" --arg seed "${seed%.json}" '
    def at($p): try getpath($p | split(".")) catch null
      | if type == "object" then (.exact_match // .final_exact_match) else . end
      | if type == "number" then . else null end;
    def first_of($ps): . as $doc | [$ps | split(",")[] as $p | $doc | at($p)] | map(select(. != null)) | first;
    [.seed // ($seed | tonumber), first_of($mem), first_of($base), (.steps // "?"),
     (if $ins == "-" then "" else (first_of($ins) // "") end)]
    | if .[1] == null or .[2] == null then empty else @tsv end'
}

collect_cells() {
  local id run task mech metric higher mem base ins command file line rows
  while IFS='|' read -r id run task mech metric higher mem base ins command; do
    rows=""
    for file in "$results/$run".seed*.json; do
      [[ -e "$file" ]] || continue
      if line=$(figures_of "$file" "$mem" "$base" "$ins" 2>/dev/null) && [[ -n "$line" ]]; then
        rows+=$line$'\n'
      else
        echo "memory-table: $file has no $mem and $base figures for $id; left out" >&2
      fi
    done
    printf '%s' "$rows" | sort -n -k1,1 | awk -F'\t' -v OFS='\t' -v higher="$higher" \
      -v head="$id"$'\t'"$task"$'\t'"$mech"$'\t'"$metric"$'\t'"$higher" \
      -v command="mnemo $command --seed S" '
      function worse(a, b) { return higher == "true" ? a < b : a > b }
      {  # seed, memory, baseline, steps, insertions
        n++
        seeds = seeds (n > 1 ? ", " : "") $1
        mem_sum += $2; base_sum += $3
        if (n == 1 || worse($2, mem_worst)) mem_worst = $2
        if (n == 1 || worse($3, base_worst)) base_worst = $3
        if (index(", " steps ", ", ", " $4 ", ") == 0) steps = steps (steps == "" ? "" : ", ") $4
        if ($5 != "") { ins_sum += $5; ins_n++ }
      }
      END {
        if (n == 0) { print head, 0, "-", "-", "-", "-", "-", "-", command, "-"; exit }
        print head, n, seeds, mem_sum / n, mem_worst, base_sum / n, base_worst, steps, command,
              (ins_n ? ins_sum / ins_n : "-")
      }'
  done < <(cells)
}

# ---- writing
# The Markdown table from the collected lines on stdin; with "compact" no steps or command.
markdown_table() {
  awk -F'\t' -v compact="${1:-}" '
    function fig(mean, worst, n) {
      return n == 1 ? sprintf("%.3f", mean) : sprintf("%.3f (worst %.3f)", mean, worst)
    }
    BEGIN {
      printf "| task | mechanism | metric | mechanism: mean (worst) | baseline: mean (worst) | seeds |"
      print compact ? "" : " steps | command |"
      print compact ? "|---|---|---|---|---|---|" : "|---|---|---|---|---|---|---|---|"
    }
    {
      mech = $3 ($14 != "-" ? sprintf(" (%.1f insertions per sequence)", $14) : "")
      metric = $4 ($5 == "false" ? " (lower is better)" : "")
      if ($6 == 0) {
        printf "| %s | %s | %s | not measured | | |", $2, mech, metric
      } else {
        seeds = $6 " seed" ($6 == 1 ? "" : "s") ": " $7
        printf "| %s | %s | %s | %s | %s | %s |", $2, mech, metric, fig($8, $9, $6),
               fig($10, $11, $6), seeds
      }
      print compact ? "" : sprintf(" %s | `%s` |", $6 == 0 ? "" : $12, $13)
    }
    END {
      print ""
      print "Mean over the seeds listed; in parentheses the worst of them (the lowest score, the highest"
      print "for bits per byte). The baseline is the no-memory decoder of the same size that the same"
      print "command trains (for memgen: the frozen reasoner)."
    }'
}

# The SVG chart from the collected lines on stdin: one panel for the scores in [0, 1]
# (higher is better), one for bits per byte (lower is better); per cell the mechanism's and
# the baseline's mean as bars, the worst seed as a black line across each bar.
svg_chart() {
  awk -F'\t' '
    function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
    function floor(x) { return x == int(x) || x > 0 ? int(x) : int(x) - 1 }
    {
      line[++n] = $0; panel[n] = $5 == "true" ? 1 : 2; count[panel[n]]++
      if (panel[n] == 2 && $6 > 0)
        for (k = 8; k <= 11; k++) { if (!seen++ || $k > hi2) hi2 = $k; if (seen == 1 || $k < lo2) lo2 = $k }
    }
    END {
      gw = 104; left = 70; gap = 90; ptop = 110; ph = 240; bottom = 70
      # Scores span [0, 1]. Bits per byte: from the next 0.5 above the largest figure down by
      # whole bits to below the smallest one (the axis does not start at 0: it says so).
      lo[1] = 0; hi[1] = 1
      hi[2] = seen ? floor(hi2 * 2) / 2 + 0.5 : 4
      lo[2] = seen ? hi[2] - floor(hi[2] - lo2 + 0.1) - 1 : 0
      if (lo[2] < 0) lo[2] = 0
      x0[1] = left; x0[2] = left + count[1] * gw + (count[1] && count[2] ? gap : 0)
      width = x0[2] + count[2] * gw + 20; height = ptop + ph + bottom
      printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n", width, height, width, height
      printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height
      printf "<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Memory mechanisms against their baselines</text>\n", left
      printf "<text x=\"%d\" y=\"40\">bars: the mean over the seeds; black line: the worst seed; red: fewer than 3 seeds; written by scripts/memory-table.sh</text>\n", left
      ly = 52
      printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#3b6fb6\"/><text x=\"%d\" y=\"%d\">mechanism</text>\n", left, ly, left + 16, ly + 10
      printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#b5b5b5\"/><text x=\"%d\" y=\"%d\">baseline (no memory; memgen: the frozen reasoner)</text>\n", left + 100, ly, left + 116, ly + 10
      printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\" stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">worst seed</text>\n", left + 420, ly + 6, left + 436, ly + 6, left + 442, ly + 10
      for (p = 1; p <= 2; p++) {
        if (!count[p]) continue
        pw = count[p] * gw; base = ptop + ph
        title = p == 1 ? "exact match / token accuracy (higher is better)" : "bits per byte (lower is better)"
        if (p == 2 && lo[2] > 0) title = title sprintf(", axis from %.2f", lo[2])
        printf "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", x0[p] - 46, ptop + ph / 2, p == 1 ? "score" : "bits per byte"
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\">%s</text>\n", x0[p] + pw / 2, ptop - 20, title
        for (t = 0; t <= 4; t++) {
          v = lo[p] + (hi[p] - lo[p]) * t / 4; y = base - ph * t / 4
          printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x0[p], y, x0[p] + pw, y
          printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", x0[p] - 6, y + 4, v
        }
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0[p], ptop, x0[p], base
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0[p], base, x0[p] + pw, base
        g = 0
        for (i = 1; i <= n; i++) {
          if (panel[i] != p) continue
          split(line[i], f, "\t"); gx = x0[p] + g * gw; g++
          cx = gx + gw / 2
          printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", cx, base + 15, esc(f[2])
          mech = index(f[3], f[2] " ") == 1 ? substr(f[3], length(f[2]) + 2) : f[3]  # memgen weaver: weaver
          printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\">%s</text>\n", cx, base + 29, esc(mech)
          seeds = f[6] == 0 ? "not measured" : f[6] " seed" (f[6] == 1 ? "" : "s")
          printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%s</text>\n", cx, base + 43, f[6] < 3 ? "#b00000" : "#333333", seeds
          if (f[6] == 0) continue
          bar(cx - 36, 34, f[8], f[9], f[6], "#3b6fb6", lo[p], hi[p], base, ph)
          bar(cx + 2, 34, f[10], f[11], f[6], "#b5b5b5", lo[p], hi[p], base, ph)
        }
      }
      print "</svg>"
    }
    # One bar from the axis to `mean`, the worst seed a line across it, the mean above it.
    function bar(x, w, mean, worst, n, colour, lo, hi, base, ph,   y, yw) {
      y = base - ph * (mean - lo) / (hi - lo); yw = base - ph * (worst - lo) / (hi - lo)
      printf "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>mean %.3f, worst %.3f</title></rect>\n", x, y, w, base - y, colour, mean, worst
      if (n > 1) printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\" stroke-width=\"2\"/>\n", x - 3, yw, x + w + 3, yw
      printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\">%.2f</text>\n", x + w / 2, (y < yw ? y : yw) - 4, mean
    }'
}

# replace_block FILE CONTENT: CONTENT between FILE's memory-table markers.
replace_block() {
  local file=$1 content=$2
  if ! grep -q '^<!-- memory-table:begin' "$file" || ! grep -q '^<!-- memory-table:end' "$file"; then
    die "$file has no <!-- memory-table:begin --> ... <!-- memory-table:end --> markers"
  fi
  awk -v content="$content" '
    /^<!-- memory-table:end/ { skip = 0 }
    !skip { print }
    /^<!-- memory-table:begin/ { while ((getline l < content) > 0) print l; skip = 1 }
  ' "$file" >"$file.tmp"
  mv -- "$file.tmp" "$file"
}

status=0
if ((collect == 0)); then
  run_cells || status=1
fi
[[ -d "$results" ]] || die "no results in $results"

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
collect_cells >"$work/cells.tsv"
markdown_table <"$work/cells.tsv" >"$work/table.md"
markdown_table compact <"$work/cells.tsv" >"$work/compact.md"
cat "$work/table.md"
[[ -n "$doc" ]] && replace_block "$doc" "$work/table.md"
[[ -n "$readme" ]] && replace_block "$readme" "$work/compact.md"
if [[ -n "$svg" ]]; then
  svg_chart <"$work/cells.tsv" >"$work/chart.svg"
  mv -- "$work/chart.svg" "$svg"
fi
echo "memory-table: wrote ${doc:+$doc }${readme:+$readme }${svg}" >&2
exit "$status"
