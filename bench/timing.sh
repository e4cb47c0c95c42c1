# shellcheck shell=bash
# Timing helpers of bench/run.sh and bench/rootless.sh, sourced by them: they define `die` and
# `$work` (where a command's output is kept).
# shellcheck disable=SC2154

# timed OUT CMD...: run CMD (output to $work/cmd.log), append its wall time in seconds to OUT.
timed() {
  local out=$1 start end
  shift
  start=$EPOCHREALTIME
  if ! "$@" >"$work/cmd.log" 2>&1; then
    cat "$work/cmd.log" >&2
    die "\`$*\` failed (output above)"
  fi
  end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }' >>"$out"
}

median() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%.4f\n", v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { # ratio A B TARGET LABEL
  awk -v a="$1" -v b="$2" -v t="$3" -v l="$4" 'BEGIN {
    r = a / b
    printf "ratio %s: %.2f (target <= %.2f): %s\n", l, r, t, (r <= t ? "met" : "NOT met")
  }'
}
