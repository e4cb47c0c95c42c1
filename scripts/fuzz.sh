#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo-fuzz, nightly toolchain). Installs cargo-fuzz from crates.io
# when it is missing.
#
#   scripts/fuzz.sh ci                  every target briefly over its committed corpus (test.sh)
#   scripts/fuzz.sh run TARGET [SECS]   fuzz one target (default 600 s); new inputs go to
#                                       fuzz/work/TARGET, crashes to fuzz/artifacts/TARGET
#   scripts/fuzz.sh cmin TARGET         minimise fuzz/work/TARGET + fuzz/corpus/TARGET into
#                                       fuzz/corpus/TARGET (what is committed), within the
#                                       target's size budget (fuzz/trim.py; needs python3)
#   scripts/fuzz.sh list                the targets
#
# Extra arguments after `--` go to libFuzzer (`scripts/fuzz.sh run dockerfile 3600 -- -jobs=2`).
# The same inputs replay on stable in `cargo test` (tests/it/fuzz.rs), without this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

targets=(reference platform dockerfile oci_json archive_load layer_extract dockerignore bake www_authenticate)

# libFuzzer options per target: inputs larger than the seeds only slow the search down.
max_len() {
  case $1 in
    archive_load | layer_extract) echo 65536 ;;
    dockerfile | bake) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

# The committed corpus's size budget per target, in bytes (a few hundred KB in all).
budget() {
  case $1 in
    archive_load) echo 49152 ;;
    layer_extract | oci_json | dockerfile) echo 32768 ;;
    bake) echo 24576 ;;
    *) echo 16384 ;;
  esac
}

ensure_cargo_fuzz() {
  if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    return 1
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
  fi
}

# run TARGET SECONDS RUNS [libFuzzer args...]: new inputs into a work folder, never into the
# committed corpus.
fuzz_run() {
  local target=$1 seconds=$2 runs=$3
  shift 3
  local work=work/$target
  local -a inputs=("corpus/$target")
  [[ -d regressions/$target ]] && inputs+=("regressions/$target")
  mkdir -p "$work" "corpus/$target" "artifacts/$target"
  cargo +nightly fuzz run --debug-assertions "$target" "$work" "${inputs[@]}" -- \
    -max_len="$(max_len "$target")" -timeout=30 -rss_limit_mb=2048 \
    -max_total_time="$seconds" -runs="$runs" -print_final_stats=1 "$@"
}

cmd=${1:-}
shift || true
extra=()
for ((i = 1; i <= $#; i++)); do
  if [[ ${!i} == -- ]]; then
    extra=("${@:i+1}")
    set -- "${@:1:i-1}"
    break
  fi
done

case $cmd in
  ci)
    ensure_cargo_fuzz
    cargo +nightly fuzz build --debug-assertions
    start=$SECONDS
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    for t in "${targets[@]}"; do
      # A short run: the whole corpus, then mutations for at most 12 s.
      if ! fuzz_run "$t" 12 50000 "${extra[@]}" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz.sh: FAILED: $t (the input is in fuzz/artifacts/$t)" >&2
        exit 1
      fi
      echo "fuzz.sh: $t: $(grep -m1 -oE '^Done [0-9]+ runs in [0-9]+ second\(s\)' "$log" || echo 'no summary')"
    done
    rm -rf work
    echo "fuzz.sh: ${#targets[@]} targets in $((SECONDS - start)) s"
    ;;
  run)
    target=${1:?usage: fuzz.sh run TARGET [SECONDS]}
    ensure_cargo_fuzz
    fuzz_run "$target" "${2:-600}" -1 "${extra[@]}"
    ;;
  cmin)
    target=${1:?usage: fuzz.sh cmin TARGET}
    ensure_cargo_fuzz
    mkdir -p "work/$target" "corpus/$target"
    # cmin minimises one folder in place: the work folder's finds join the corpus first.
    cp -rn "work/$target"/. "corpus/$target/"
    cargo +nightly fuzz cmin --debug-assertions "$target" "corpus/$target" -- \
      -max_len="$(max_len "$target")" -timeout=30 -rss_limit_mb=2048
    # Then the budget: each file's edge coverage from a merge's control file, and a greedy cover.
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    mkdir "$scratch/out"
    cargo +nightly fuzz run --debug-assertions "$target" "$scratch/out" "corpus/$target" -- \
      -merge=1 -use_counters=0 -merge_control_file="$scratch/control" \
      -max_len="$(max_len "$target")" -timeout=30 -rss_limit_mb=2048
    python3 trim.py "$scratch/control" "corpus/$target" "$(budget "$target")"
    echo "fuzz.sh: corpus/$target: $(find "corpus/$target" -type f | wc -l) files, $(find "corpus/$target" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }') bytes"
    ;;
  list)
    printf '%s\n' "${targets[@]}"
    ;;
  *)
    echo "usage: scripts/fuzz.sh ci | run TARGET [SECS] | cmin TARGET | list" >&2
    exit 2
    ;;
esac
