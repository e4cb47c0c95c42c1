#!/usr/bin/env bash
# Build benchmark: manifold build vs `buildah bud --runtime runc --layers` on the same
# Dockerfile and base images, runs alternating (manifold, buildah, manifold, ...).
#
#   bench/build.sh [RUNS] [--large]   RUNS defaults to 5; BENCH_DIR keeps the work files
#
# Measured (wall time, median of RUNS):
#   cold   a two-platform (linux/amd64 + linux/arm64) build of a 3-step Dockerfile (COPY, RUN,
#          ENV) on a busybox base, with empty caches (a fresh store / buildah storage holding
#          only the base images; their import is not timed)
#   warm   the same build again: a no-op rebuild from the cache
#   large  (--large) a 5-step Dockerfile (COPY, RUN, COPY, RUN, ENV) for linux/amd64 on a
#          ~1 GB, 5-layer image of this machine's /usr (as bench/registry.sh makes it), cold,
#          then warm; both tools have the base unpacked before the timed build (buildah at
#          `pull`, manifold by one `run` of the base)
# Run as root (RUN needs containers; the arm64 RUN runs under QEMU through binfmt_misc).
set -euo pipefail

runs=5
large=false
for a in "$@"; do
  case $a in
    --large) large=true ;;
    *) runs=$a ;;
  esac
done
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /tmp/manifold-bench-build.XXXXXX)}
mkdir -p "$work"
cleanup() { [[ -n ${BENCH_DIR:-} ]] || rm -rf "$work"; }
trap cleanup EXIT

for tool in buildah skopeo runc umoci; do
  command -v "$tool" >/dev/null || {
    echo "build.sh: \`$tool\` not found (apt-get install buildah skopeo runc umoci)" >&2
    exit 1
  }
done
[[ $(id -u) == 0 ]] || { echo "build.sh: run it as root" >&2; exit 1; }

echo "==> building manifold (release) and the fixtures" >&2
(cd "$repo" && cargo build --release -q && bash scripts/fixtures.sh)
manifold=$repo/target/release/manifold
fixtures=$repo/target/fixtures/busybox

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

# The base images as one OCI layout both tools read: busybox:amd64, busybox:arm64.
base=$work/base
if [[ ! -f $base/index.json ]]; then
  "$manifold" --root "$work/seed" --progress none import --platform linux/amd64 -c 'CMD ["sh"]' \
    "$fixtures/amd64/rootfs.tar.gz" bench/busybox:amd64 >/dev/null
  "$manifold" --root "$work/seed" --progress none import --platform linux/arm64 -c 'CMD ["sh"]' \
    "$fixtures/arm64/rootfs.tar.gz" bench/busybox:arm64 >/dev/null
  for arch in amd64 arm64; do
    skopeo --insecure-policy copy -q "oci:$work/seed/images:docker.io/bench/busybox:$arch" "oci:$base:busybox-$arch"
  done
fi

ctx=$work/ctx
mkdir -p "$ctx"
head -c 200000 /dev/urandom | base64 >"$ctx/app.txt"
cat >"$ctx/Dockerfile" <<'EOF'
ARG BASE
ARG TARGETARCH
FROM ${BASE}:${TARGETARCH}
COPY app.txt /app/app.txt
RUN wc -c /app/app.txt > /app/size.txt
ENV APP=/app
EOF

# fresh_manifold DIR: a store holding only the base images.
fresh_manifold() {
  rm -rf "$1"
  mkdir -p "$1/images"
  for arch in amd64 arm64; do
    skopeo --insecure-policy copy -q "oci:$base:busybox-$arch" "oci:$1/images:docker.io/bench/busybox:$arch"
  done
  "$manifold" --root "$1" --progress none images -q >/dev/null # let manifold create its directories
}
# fresh_buildah DIR: buildah storage holding only the base images.
fresh_buildah() {
  rm -rf "$1"
  local arch id
  for arch in amd64 arm64; do
    id=$(buildah --root "$1/root" --runroot "$1/run" --storage-driver overlay pull -q "oci:$base:busybox-$arch")
    buildah --root "$1/root" --runroot "$1/run" --storage-driver overlay tag "$id" "localhost/busybox:$arch"
  done
}
m_build() { "$manifold" --root "$1" --progress none build -q --platform linux/amd64,linux/arm64 --build-arg BASE=bench/busybox -t bench/app:1 "$ctx" >/dev/null; }
b_build() {
  buildah --root "$1/root" --runroot "$1/run" --storage-driver overlay bud -q --runtime runc --layers \
    --platform linux/amd64,linux/arm64 --build-arg BASE=localhost/busybox --manifest "bench-$2" "$ctx" >/dev/null
}

declare -a m_cold b_cold m_warm b_warm
for run in $(seq "$runs"); do
  echo "==> run $run/$runs" >&2
  fresh_manifold "$work/m"
  t0=$(now); m_build "$work/m"; t1=$(now)
  m_cold+=("$(elapsed "$t0" "$t1")")
  fresh_buildah "$work/b"
  t0=$(now); b_build "$work/b" "$run-cold"; t1=$(now)
  b_cold+=("$(elapsed "$t0" "$t1")")
  t0=$(now); m_build "$work/m"; t1=$(now)
  m_warm+=("$(elapsed "$t0" "$t1")")
  t0=$(now); b_build "$work/b" "$run-warm"; t1=$(now)
  b_warm+=("$(elapsed "$t0" "$t1")")
done
mc=$(median "${m_cold[@]}"); bc=$(median "${b_cold[@]}")
mw=$(median "${m_warm[@]}"); bw=$(median "${b_warm[@]}")
echo
echo "| case | buildah median | manifold median | ratio | target |"
echo "|---|---|---|---|---|"
echo "| cold, amd64+arm64, 3 steps | ${bc} s | ${mc} s | $(ratio "$mc" "$bc") | ≤ 0.8 |"
echo "| warm no-op rebuild | ${bw} s | ${mw} s | $(ratio "$mw" "$bw") | ≤ 0.5 |"
echo "runs: manifold cold ${m_cold[*]}; buildah cold ${b_cold[*]}; manifold warm ${m_warm[*]}; buildah warm ${b_warm[*]}" >&2

$large || exit 0

# --- the large case ------------------------------------------------------------------------
layout=$work/layout
if [[ ! -f $layout/index.json ]]; then
  echo "==> building the ~1 GB image from /usr with umoci (once; BENCH_DIR keeps it)" >&2
  candidates=(usr/bin usr/share "usr/lib/$(uname -m)-linux-gnu" usr/include usr/libexec usr/sbin usr/lib/python3)
  layers=()
  for c in "${candidates[@]}"; do
    [[ -d /$c ]] && layers+=("$c")
    ((${#layers[@]} == 5)) && break
  done
  umoci init --layout "$layout"
  umoci new --image "$layout:bench"
  umoci config --image "$layout:bench" --architecture amd64 --os linux
  # GNU tar makes the layers (umoci insert cut one of them short on this machine)
  for l in "${layers[@]}" busybox; do
    if [[ $l == busybox ]]; then
      # busybox for the RUN steps' shell
      tar -C "$fixtures/amd64/rootfs" -cf "$work/layer.tar" bin
    else
      tar -C / -cf "$work/layer.tar" "$l" 2>/dev/null || true
    fi
    umoci raw add-layer --image "$layout:bench" "$work/layer.tar"
  done
  rm -f "$work/layer.tar"
fi
lctx=$work/lctx
mkdir -p "$lctx"
head -c 2000000 /dev/urandom >"$lctx/data.bin"
cp "$ctx/app.txt" "$lctx/app.txt"
cat >"$lctx/Dockerfile" <<'EOF'
ARG BASE
FROM ${BASE}
COPY data.bin /data/data.bin
RUN /bin/sh -c 'wc -c /data/data.bin > /data/size.txt'
COPY app.txt /data/app.txt
RUN /bin/sh -c 'cat /data/size.txt > /data/copy.txt'
ENV DATA=/data
EOF
declare -a ml_cold bl_cold ml_warm bl_warm
lruns=$(((runs + 1) / 2))
for run in $(seq "$lruns"); do
  echo "==> large run $run/$lruns" >&2
  rm -rf "$work/ml"
  mkdir -p "$work/ml/images"
  skopeo --insecure-policy copy -q "oci:$layout:bench" "oci:$work/ml/images:docker.io/bench/large:1"
  # Unpack the base into snapshots first (not timed), as `buildah pull` does into its storage.
  "$manifold" --root "$work/ml" --progress none run --rm bench/large:1 /bin/true
  t0=$(now)
  "$manifold" --root "$work/ml" --progress none build -q --platform linux/amd64 --build-arg BASE=bench/large:1 -t bench/l:1 "$lctx" >/dev/null
  t1=$(now)
  ml_cold+=("$(elapsed "$t0" "$t1")")
  rm -rf "$work/bl"
  id=$(buildah --root "$work/bl/root" --runroot "$work/bl/run" --storage-driver overlay pull -q "oci:$layout:bench")
  buildah --root "$work/bl/root" --runroot "$work/bl/run" --storage-driver overlay tag "$id" localhost/large:1
  t0=$(now)
  buildah --root "$work/bl/root" --runroot "$work/bl/run" --storage-driver overlay bud -q --runtime runc --layers \
    --platform linux/amd64 --build-arg BASE=localhost/large:1 -t localhost/l:1 "$lctx" >/dev/null
  t1=$(now)
  bl_cold+=("$(elapsed "$t0" "$t1")")
  t0=$(now)
  "$manifold" --root "$work/ml" --progress none build -q --platform linux/amd64 --build-arg BASE=bench/large:1 -t bench/l:1 "$lctx" >/dev/null
  t1=$(now)
  ml_warm+=("$(elapsed "$t0" "$t1")")
  t0=$(now)
  buildah --root "$work/bl/root" --runroot "$work/bl/run" --storage-driver overlay bud -q --runtime runc --layers \
    --platform linux/amd64 --build-arg BASE=localhost/large:1 -t localhost/l:1 "$lctx" >/dev/null
  t1=$(now)
  bl_warm+=("$(elapsed "$t0" "$t1")")
done
mlc=$(median "${ml_cold[@]}"); blc=$(median "${bl_cold[@]}")
mlw=$(median "${ml_warm[@]}"); blw=$(median "${bl_warm[@]}")
echo "| large (~1 GB base), 5 steps, cold | ${blc} s | ${mlc} s | $(ratio "$mlc" "$blc") | (recorded) |"
echo "| large, warm no-op rebuild | ${blw} s | ${mlw} s | $(ratio "$mlw" "$blw") | (recorded) |"
echo "large runs: manifold cold ${ml_cold[*]}; buildah cold ${bl_cold[*]}; manifold warm ${ml_warm[*]}; buildah warm ${bl_warm[*]}" >&2
