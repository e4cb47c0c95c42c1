#!/usr/bin/env bash
# Remote build cache benchmark (issue 11): a fresh store rebuilding an unchanged two-platform
# project from a registry cache, against a cold build, against pulling the final image, and
# against `buildah bud --layers --cache-from/--cache-to` (Debian's buildah 1.28), all through a
# local docker-registry on 127.0.0.1. Within a run every variant is measured once, one after the
# other, each with its own empty store (or buildah storage) and its own repositories, so none
# reuses another's blobs.
#
#   bench/cache.sh [RUNS] [--large]   RUNS defaults to 3; BENCH_DIR keeps the work files
#
# Measured (wall time, median of RUNS), linux/amd64 + linux/arm64 (arm64's RUN under QEMU):
#   cold          manifold build --push, no cache
#   cold+export   the same with --cache-to type=registry,ref=…,mode=max
#   pull          manifold pull --all-platforms of the image cold+export pushed
#   cached+push   manifold build --cache-from type=registry,ref=… --push (the CI path: layers
#                 are mounted, never downloaded)
#   cached        manifold build --cache-from type=registry,ref=… (no push: the image is made
#                 whole in the store)
#   buildah cold+export  buildah bud --layers --cache-to REPO
#   buildah cached       buildah bud --layers --cache-from REPO (fresh storage)
# The project is examples/hello (the demo's multi-stage project) on the demo busybox base,
# with its heredoc RUN written as one line (buildah 1.28 has no heredocs). --large adds the same
# project on a ~1 GB two-platform base (5 layers of this machine's /usr, shared by both
# platforms, and the platform's busybox), run ceil(RUNS/2) times, then RUNS alternating pairs of
# `build --no-cache --push` with and without --cache-to on a store that holds the base already
# (what exporting adds, without the base's unpacking, whose time varies by seconds). Every
# measurement starts after `sync`; cold and cold+export alternate which goes first.
# Run as root (RUN needs containers; arm64 runs under QEMU through binfmt_misc).
set -euo pipefail

runs=3
large=false
for a in "$@"; do
  case $a in
    --large) large=true ;;
    *) runs=$a ;;
  esac
done
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /tmp/manifold-bench-cache.XXXXXX)}
mkdir -p "$work"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n ${BENCH_DIR:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

for tool in docker-registry buildah skopeo umoci runc curl python3; do
  command -v "$tool" >/dev/null || {
    echo "cache.sh: \`$tool\` not found (apt-get install docker-registry buildah skopeo umoci runc curl)" >&2
    exit 1
  }
done
[[ $(id -u) == 0 ]] || { echo "cache.sh: run it as root" >&2; exit 1; }

if [[ -z ${MANIFOLD:-} ]]; then
  echo "==> building manifold (release) and the fixtures" >&2
  (cd "$repo" && cargo build --release -q && bash scripts/fixtures.sh >/dev/null)
fi
# MANIFOLD=path: a binary already built (to try the script out with a debug build)
manifold=${MANIFOLD:-$repo/target/release/manifold}
fixtures=$repo/target/fixtures/busybox

now() { date +%s.%N; }
# Every measurement starts with the disk's writeback done, as in registry.sh.
start() { sync; now; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry/data}, delete: {enabled: true}}
http: {addr: $reg, secret: bench}
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
pids+=("$!")
for i in $(seq 100); do
  curl -fs "http://$reg/v2/" >/dev/null && break
  sleep 0.1
  [[ $i == 100 ]] && { echo "cache.sh: the registry did not start" >&2; exit 1; }
done

m() { "$manifold" --root "$1" --progress none "${@:2}"; }
bh() { local d=$1; shift; buildah --root "$d/root" --runroot "$d/run" --storage-driver overlay "$@"; }

echo "==> the demo busybox base, linux/amd64 + linux/arm64, at $reg/demo/busybox:1" >&2
m "$work/seed" build -q --platform linux/amd64,linux/arm64 -t "$reg/demo/busybox:1" --push \
  -f "$repo/examples/busybox/Dockerfile" "$fixtures" >/dev/null

# The project: examples/hello with its heredoc RUN on one line.
ctx=$work/hello
mkdir -p "$ctx"
cp "$repo/examples/hello/hello.sh" "$ctx/"
python3 - "$repo/examples/hello/Dockerfile" "$ctx/Dockerfile" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
heredoc = re.compile(r"RUN <<EOT\n(.*?)\nEOT\n", re.S)
def one_line(m):
    lines = [l for l in m.group(1).splitlines() if l.strip() and not l.lstrip().startswith("#")]
    return "RUN " + " && ".join(l for l in lines if l != "set -e") + "\n"
out = heredoc.sub(one_line, text)
assert "<<" not in out
open(sys.argv[2], "w").write(out)
EOF

platforms=linux/amd64,linux/arm64
# buildah 1.28 does not set BUILDPLATFORM itself
host=linux/$(case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)
declare -A times
record() { times[$1]+="$2 "; }

# one_run CASE BASE CTX RUN: every variant once.
one_run() {
  local case=$1 base=$2 ctx=$3 r=$4 t0 t1 d
  local cache=$reg/$case-cache-$r/app:cache bcache=$reg/$case-bcache-$r/app
  local build=(build -q --platform "$platforms" --build-arg "BASE=$base")
  d=$work/s
  # cold and cold+export in turn, the first of them alternating between runs (the second of
  # two builds in a row meets more of the first's writeback and registry state).
  local order=(cold export)
  ((r % 2)) || order=(export cold)
  for variant in "${order[@]}"; do
    rm -rf "$d"
    if [[ $variant == cold ]]; then
      t0=$(start); m "$d" "${build[@]}" -t "$reg/$case-cold-$r/app:1" --push "$ctx" >/dev/null; t1=$(now)
      record "$case cold" "$(elapsed "$t0" "$t1")"
    else
      t0=$(start)
      m "$d" "${build[@]}" -t "$reg/$case-exp-$r/app:1" --push \
        --cache-to "type=registry,ref=$cache,mode=max" "$ctx" >/dev/null
      t1=$(now)
      record "$case cold+export" "$(elapsed "$t0" "$t1")"
    fi
  done
  rm -rf "$d"
  t0=$(start); m "$d" pull -q --all-platforms "$reg/$case-exp-$r/app:1" >/dev/null; t1=$(now)
  record "$case pull" "$(elapsed "$t0" "$t1")"
  rm -rf "$d"
  t0=$(start)
  m "$d" "${build[@]}" -t "$reg/$case-re-$r/app:1" --push --cache-from "type=registry,ref=$cache" \
    "$ctx" >/dev/null
  t1=$(now)
  record "$case cached+push" "$(elapsed "$t0" "$t1")"
  rm -rf "$d"
  t0=$(start)
  m "$d" "${build[@]}" -t "bench/$case:1" --cache-from "type=registry,ref=$cache" "$ctx" >/dev/null
  t1=$(now)
  record "$case cached" "$(elapsed "$t0" "$t1")"
  rm -rf "$d"
  d=$work/b
  rm -rf "$d"
  t0=$(start)
  bh "$d" bud -q --runtime runc --layers --tls-verify=false --platform "$platforms" \
    --build-arg "BASE=$base" --build-arg "BUILDPLATFORM=$host" --cache-to "$bcache" --manifest "bench-$case-$r" "$ctx" >/dev/null
  t1=$(now)
  record "$case buildah cold+export" "$(elapsed "$t0" "$t1")"
  rm -rf "$d"
  t0=$(start)
  bh "$d" bud --runtime runc --layers --tls-verify=false --platform "$platforms" \
    --build-arg "BASE=$base" --build-arg "BUILDPLATFORM=$host" --cache-from "$bcache" \
    --manifest "bench-$case-$r" "$ctx" >"$work/buildah-cached.log" 2>&1
  t1=$(now)
  record "$case buildah cached" "$(elapsed "$t0" "$t1")"
  echo "    buildah's cached rebuild: $(grep -c 'Using cache' "$work/buildah-cached.log") steps from its cache" >&2
  rm -rf "$d"
}

for r in $(seq "$runs"); do
  echo "==> demo run $r/$runs" >&2
  one_run demo "$reg/demo/busybox:1" "$ctx" "$r"
done

if $large; then
  layout=$work/layout
  echo "==> the ~1 GB two-platform base (once; BENCH_DIR keeps it)" >&2
  if [[ ! -f $layout/index.json ]]; then
    candidates=(usr/bin usr/share "usr/lib/$(uname -m)-linux-gnu" usr/include usr/libexec usr/sbin usr/lib/python3)
    layers=()
    for c in "${candidates[@]}"; do
      [[ -d /$c ]] && layers+=("$c")
      ((${#layers[@]} == 5)) && break
    done
    umoci init --layout "$layout"
    umoci new --image "$layout:amd64"
    umoci config --image "$layout:amd64" --architecture amd64 --os linux
    for l in "${layers[@]}"; do
      tar -C / -cf "$work/layer.tar" "$l" 2>/dev/null || true
      umoci raw add-layer --image "$layout:amd64" "$work/layer.tar"
    done
    # arm64: the same /usr layers (the blobs are shared), then each platform's busybox.
    python3 - "$layout" amd64 arm64 <<'EOF'
import hashlib, json, os, sys
layout, src, dst = sys.argv[1:]
blobs = os.path.join(layout, "blobs", "sha256")
def read(d): return json.load(open(os.path.join(blobs, d.split(":")[1])))
def write(obj):
    b = json.dumps(obj).encode()
    d = hashlib.sha256(b).hexdigest()
    open(os.path.join(blobs, d), "wb").write(b)
    return "sha256:" + d, len(b)
index = json.load(open(os.path.join(layout, "index.json")))
entry = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == src)
manifest = read(entry["digest"])
config = read(manifest["config"]["digest"])
config["architecture"] = dst
manifest["config"]["digest"], manifest["config"]["size"] = write(config)
digest, size = write(manifest)
index["manifests"].append({"mediaType": entry["mediaType"], "digest": digest, "size": size,
                           "annotations": {"org.opencontainers.image.ref.name": dst}})
json.dump(index, open(os.path.join(layout, "index.json"), "w"))
EOF
    for arch in amd64 arm64; do
      tar -C "$fixtures/$arch/rootfs" -cf "$work/layer.tar" bin
      umoci raw add-layer --image "$layout:$arch" "$work/layer.tar"
    done
    rm -f "$work/layer.tar"
  fi
  for arch in amd64 arm64; do
    skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:$arch" "docker://$reg/large/base:$arch"
  done
  m "$work/seed" manifest create "$reg/large/base:1" "$reg/large/base:amd64" "$reg/large/base:arm64" >/dev/null
  m "$work/seed" manifest push "$reg/large/base:1" >/dev/null
  lruns=$(((runs + 1) / 2))
  for r in $(seq "$lruns"); do
    echo "==> large run $r/$lruns" >&2
    one_run large "$reg/large/base:1" "$ctx" "$r"
  done
  # What exporting adds to a build on the large base where unpacking the base (11-19 s here,
  # varying by seconds between identical runs) does not drown it: the base already in the
  # store and unpacked, every step run again (--no-cache), RUNS alternating pairs.
  d=$work/warm
  rm -rf "$d"
  m "$d" build -q --platform "$platforms" --build-arg "BASE=$reg/large/base:1" -t warm:1 "$ctx" >/dev/null
  warm=(build -q --no-cache --platform "$platforms" --build-arg "BASE=$reg/large/base:1" --push)
  for r in $(seq "$runs"); do
    echo "==> large, base in the store: pair $r/$runs" >&2
    order=(cold export)
    ((r % 2)) || order=(export cold)
    for variant in "${order[@]}"; do
      if [[ $variant == cold ]]; then
        t0=$(start); m "$d" "${warm[@]}" -t "$reg/warm-cold-$r/app:1" "$ctx" >/dev/null; t1=$(now)
        record "warm cold" "$(elapsed "$t0" "$t1")"
      else
        t0=$(start)
        m "$d" "${warm[@]}" -t "$reg/warm-exp-$r/app:1" \
          --cache-to "type=registry,ref=$reg/warm-cache-$r/app:c,mode=max" "$ctx" >/dev/null
        t1=$(now)
        record "warm cold+export" "$(elapsed "$t0" "$t1")"
      fi
    done
  done
  rm -rf "$d"
fi

echo
echo "| case | runs (s) | median | ratio | goal |"
echo "|---|---|---|---|---|"
for case in demo large; do
  [[ -n ${times["$case cold"]:-} ]] || continue
  declare -A med=()
  for v in cold cold+export pull cached+push cached "buildah cold+export" "buildah cached"; do
    # shellcheck disable=SC2086
    med[$v]=$(median ${times["$case $v"]})
  done
  row() { echo "| $case: $1 | ${times["$case $2"]% } | ${med[$2]} s | $3 | $4 |"; }
  row "cold build + push" cold "" ""
  row "cold + --cache-to" cold+export "$(ratio "${med[cold+export]}" "${med[cold]}") × cold" "≤ 1.1"
  row "pull the final image" pull "" ""
  row "fresh store, cached rebuild + push" cached+push "$(ratio "${med[cached+push]}" "${med[pull]}") × pull" "≤ 1.5"
  row "fresh store, cached rebuild" cached "$(ratio "${med[cached]}" "${med[pull]}") × pull; $(ratio "${med[cached]}" "${med[buildah cached]}") × buildah" "≤ 1.5; ≤ 0.5"
  row "buildah cold + --cache-to" "buildah cold+export" "" ""
  row "buildah fresh storage, cached rebuild" "buildah cached" "" ""
done
# The same ratios run by run (each variant against the one measured in the same run), and
# their median: steadier than a ratio of medians when the machine's speed drifts over a run.
paired() { python3 -c '
import statistics, sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:3])
rs = [x / y for x, y in zip(a, b)]
print("%.2f (%s)" % (statistics.median(rs), " ".join("%.2f" % r for r in rs)))' "$1" "$2"; }
echo
for case in demo large; do
  [[ -n ${times["$case cold"]:-} ]] || continue
  echo "$case, per-run ratios, median (each run): cold+export / cold $(paired "${times["$case cold+export"]}" "${times["$case cold"]}");" \
    "cached+push / pull $(paired "${times["$case cached+push"]}" "${times["$case pull"]}");" \
    "cached / pull $(paired "${times["$case cached"]}" "${times["$case pull"]}")"
done
if [[ -n ${times["warm cold"]:-} ]]; then
  # shellcheck disable=SC2086
  wc=$(median ${times["warm cold"]}) we=$(median ${times["warm cold+export"]})
  echo "large, base in the store, --no-cache build + push: cold ${times["warm cold"]% }(median $wc s)," \
    "+ --cache-to ${times["warm cold+export"]% }(median $we s): $(ratio "$we" "$wc") × (goal ≤ 1.1);" \
    "per run $(paired "${times["warm cold+export"]}" "${times["warm cold"]}")"
fi
