#!/usr/bin/env bash
# Issue 2's performance target: `manifold load` of a ~400 MB docker-archive takes at most 1.2x
# the time of `tar -xf` of the same archive.
#
#   bench/load.sh [--runs N] [--tar-only]
#
# Builds once (cached in target/bench/) a realistic multi-layer image from this machine's /usr:
# four layers of ~100 MB each (shared libraries, /usr/share's many small files, executables, the
# rest of /usr/lib), made with umoci into an OCI layout and turned into a docker-archive by
# skopeo. Then, with the page cache warm and after one untimed warm-up of each, it alternates N
# (default 5) runs of `tar -xf load.tar -C <fresh dir>` and
# `manifold --root <fresh root> load -i load.tar`, and prints each run, the medians (wall time and
# peak RSS) and the ratio. Nothing is recorded automatically: copy the summary into
# bench/RESULTS.md.
#
# The manifold binary is target/release/manifold (`cargo build --release` first), or $MANIFOLD_BIN.
# --tar-only times the tar baseline alone (no manifold needed).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
tar_only=''
while (($# > 0)); do
  case $1 in
    --runs)
      runs=${2:?--runs needs a number}
      shift 2
      ;;
    --tar-only)
      tar_only=1
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
      exit 0
      ;;
    *)
      echo "load.sh: unknown argument \`$1\` (see --help)" >&2
      exit 2
      ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || {
  echo "load.sh: --runs wants a positive number, not \`$runs\`" >&2
  exit 2
}

die() {
  echo "load.sh: $*" >&2
  exit 1
}
trap 'echo "load.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

bash scripts/deps.sh || die "scripts/deps.sh failed"
# shellcheck disable=SC1091
command -v cargo >/dev/null || . "${CARGO_HOME:-$HOME/.cargo}/env"

bench=$PWD/target/bench
archive=$bench/load.tar
mkdir -p "$bench"
work=$(mktemp -d "$bench/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the archive -------------------------------------------------------------------------------

layer_budget=$((95 * 1024 * 1024)) # bytes of file content per layer: ~400 MB in all

# Copies files from $3 (sorted by path; extra `find` arguments: $4...) into the staging tree
# $2, keeping paths, modes, symlinks and hardlinks, until $1 bytes of content are reached. A
# file that would overshoot the budget is skipped (a smaller one later may fit); hardlinked
# copies cost nothing, as in a tar.
stage_layer() {
  local budget=$1 stage=$2 src=$3
  shift 3
  mkdir -p "$stage"
  find "$src" "$@" \( -type f -o -type l \) -printf '%s\t%D:%i\t%p\n' 2>/dev/null |
    LC_ALL=C sort -t $'\t' -k3 |
    awk -F'\t' -v budget="$budget" '
      seen[$2] { print substr($3, 2); next }
      total + $1 <= budget { total += $1; seen[$2] = 1; print substr($3, 2) }' \
      >"$stage.list"
  [[ -s $stage.list ]] || die "nothing to put in a layer from $src"
  tar -C / -cf - --no-recursion -T "$stage.list" | tar -C "$stage" -xf - ||
    die "copying files from $src into $stage failed"
}

build_archive() {
  local oci=$work/oci rootless=() i=0 src
  ((EUID == 0)) || rootless=(--rootless)
  umoci init --layout "$oci" || die "umoci init failed"
  umoci new --image "$oci:load" || die "umoci new failed"
  umoci config --image "$oci:load" --os linux --architecture amd64 \
    --config.cmd /bin/sh || die "umoci config failed"
  # Each layer holds files from one part of /usr, inserted under /usr: libraries (large
  # files), /usr/share (many small ones), executables, then the rest of /usr/lib.
  for src in /usr/lib/x86_64-linux-gnu /usr/share /usr/bin /usr/lib; do
    i=$((i + 1))
    local -a extra=()
    [[ $src == /usr/lib ]] && extra=(-path /usr/lib/x86_64-linux-gnu -prune -o)
    stage_layer "$layer_budget" "$work/layer$i" "$src" "${extra[@]}"
    umoci insert "${rootless[@]}" --image "$oci:load" --history.created_by "bench layer $i: $src" \
      "$work/layer$i/usr" /usr >/dev/null || die "umoci insert of layer $i failed"
    rm -rf "$work/layer$i"
  done
  rm -f "$work/load.tar"
  skopeo --insecure-policy copy -q "oci:$oci:load" "docker-archive:$work/load.tar:bench/load:latest" ||
    die "skopeo copy to docker-archive failed"
  mv "$work/load.tar" "$archive"
}

if [[ ! -s $archive ]]; then
  echo "building $archive (once) ..." >&2
  build_archive
fi

# --- timing ------------------------------------------------------------------------------------

bin=${MANIFOLD_BIN:-}
if [[ -z $tar_only && -z $bin ]]; then
  # always rebuild: a stale binary would measure old code
  cargo build --release -q || die "cargo build --release failed"
  bin=$PWD/target/release/manifold
fi
[[ -n $tar_only || -x $bin ]] || die "no manifold binary at $bin"

# time_one OUT CMD...: runs CMD with stdout and stderr to $work/cmd.log and appends
# "seconds,peak-RSS-KiB" to OUT. Fails loudly with the command's output.
time_one() {
  local out=$1
  shift
  sync
  if ! /usr/bin/time -f '%e,%M' -o "$work/time" "$@" >"$work/cmd.log" 2>&1; then
    cat "$work/cmd.log" >&2
    die "\`$*\` failed (output above)"
  fi
  tail -n 1 "$work/time" >>"$out"
}

run_tar() {
  local d
  d=$(mktemp -d "$bench/.tar.XXXXXX")
  time_one "$1" tar -xf "$archive" -C "$d"
  rm -rf "$d"
}

run_manifold() {
  local r
  r=$(mktemp -d "$bench/.root.XXXXXX")
  time_one "$1" "$bin" --root "$r" --progress none load -i "$archive"
  rm -rf "$r"
}

median() { # column $2 (1 = seconds, 2 = KiB) of the CSV $1
  cut -d, -f"$2" "$1" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

cat "$archive" >/dev/null # page cache warm for both
: >"$work/tar.csv"
: >"$work/manifold.csv"
run_tar /dev/null
[[ -n $tar_only ]] || run_manifold /dev/null

size_mb=$(($(stat -c %s "$archive") / 1024 / 1024))
layers=$(tar -xOf "$archive" manifest.json | grep -o '[0-9a-f]\{64\}\(/layer\)\{0,1\}\.tar"' | wc -l)
printf 'archive: %s (%d MiB, %d layers), %d runs each after a warm-up\n' \
  "${archive#"$PWD"/}" "$size_mb" "$layers" "$runs"
printf '%-4s %-22s %s\n' run 'tar -xf (s, KiB)' 'manifold load (s, KiB)'
for ((i = 1; i <= runs; i++)); do
  run_tar "$work/tar.csv"
  [[ -n $tar_only ]] || run_manifold "$work/manifold.csv"
  printf '%-4d %-22s %s\n' "$i" "$(tail -n 1 "$work/tar.csv")" \
    "$(tail -n 1 "$work/manifold.csv" 2>/dev/null || true)"
done

tar_s=$(median "$work/tar.csv" 1)
tar_kb=$(median "$work/tar.csv" 2)
printf 'median tar -xf:        %s s, peak RSS %s KiB\n' "$tar_s" "$tar_kb"
if [[ -n $tar_only ]]; then
  exit 0
fi
m_s=$(median "$work/manifold.csv" 1)
m_kb=$(median "$work/manifold.csv" 2)
printf 'median manifold load:  %s s, peak RSS %s KiB\n' "$m_s" "$m_kb"
awk -v m="$m_s" -v t="$tar_s" 'BEGIN {
  if (t <= 0) { print "ratio: n/a (tar took no measurable time)"; exit }
  r = m / t
  printf "ratio manifold/tar: %.2f (target <= 1.20): %s\n", r, (r <= 1.2 ? "met" : "NOT met")
}'
