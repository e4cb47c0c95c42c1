#!/usr/bin/env bash
# Registry benchmark: manifold vs skopeo on a ~1 GB, 5-layer image built from this machine's
# /usr with umoci, against local docker-registry instances on 127.0.0.1. Runs alternate
# (manifold, skopeo, manifold, ...) so that both see the same machine state.
#
#   bench/registry.sh [RUNS]        RUNS defaults to 3; BENCH_DIR keeps the work files
#
# Measured (wall time, median of RUNS):
#   pull   manifold pull REF                       vs skopeo copy docker://REF oci:DIR:x
#   push   manifold push REF (to an empty registry) vs skopeo copy oci:DIR:bench docker://REF
#   copy   manifold copy A/REF B/REF                vs skopeo copy docker://A/REF docker://B/REF
#   rss    peak RSS of manifold pull (/usr/bin/time -f %M)
# Push and copy go to a new, empty registry each run, so nothing is skipped or mounted.
set -euo pipefail

runs=${1:-3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /tmp/manifold-bench.XXXXXX)}
mkdir -p "$work"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n ${BENCH_DIR:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

for tool in docker-registry skopeo umoci /usr/bin/time curl; do
  command -v "$tool" >/dev/null || { echo "registry.sh: \`$tool\` not found (run scripts/deps.sh)" >&2; exit 1; }
done

echo "==> building manifold (release)" >&2
(cd "$repo" && cargo build --release -q)
manifold=$repo/target/release/manifold

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_registry NAME: starts a registry with storage under $work/NAME; its port in $port.
port=
start_registry() {
  local name=$1 dir=$work/$1
  port=$(free_port)
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port, secret: bench}
EOF
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  pids+=("$!")
  local i
  for i in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break
    sleep 0.1
    [[ $i == 100 ]] && { echo "registry.sh: registry $name did not start" >&2; exit 1; }
  done
}

stop_registries() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# --- the image -------------------------------------------------------------------------------

layout=$work/layout
if [[ ! -f $layout/index.json ]]; then
  echo "==> building the image from /usr with umoci (once; BENCH_DIR keeps it)" >&2
  candidates=(usr/bin usr/share "usr/lib/$(uname -m)-linux-gnu" usr/include usr/libexec usr/sbin usr/lib/python3)
  layers=()
  for c in "${candidates[@]}"; do
    [[ -d /$c ]] && layers+=("$c")
    ((${#layers[@]} == 5)) && break
  done
  umoci init --layout "$layout"
  umoci new --image "$layout:bench"
  for l in "${layers[@]}"; do
    echo "    layer /$l ($(du -sh "/$l" 2>/dev/null | cut -f1))" >&2
    umoci insert --rootless --image "$layout:bench" "/$l" "/$l" >/dev/null
  done
fi

start_registry src
src=127.0.0.1:$port/bench/image:1
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://$src"
size=$(du -sb "$work/src/data" | cut -f1)
echo "==> image pushed to $src ($((size / 1000000)) MB in the registry)" >&2

# --- timing helpers --------------------------------------------------------------------------

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -a m_pull s_pull m_push s_push m_copy s_copy rss
for run in $(seq "$runs"); do
  echo "==> run $run/$runs" >&2
  # pull
  rm -rf "$work/mroot" "$work/soci"
  t0=$(now)
  /usr/bin/time -f %M -o "$work/rss" "$manifold" --root "$work/mroot" --progress none pull -q "$src" >/dev/null
  t1=$(now)
  m_pull+=("$(elapsed "$t0" "$t1")")
  rss+=("$(cat "$work/rss")")
  t0=$(now)
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$src" "oci:$work/soci:x"
  t1=$(now)
  s_pull+=("$(elapsed "$t0" "$t1")")

  # push (each to a new, empty registry)
  start_registry "push-m-$run"
  t0=$(now)
  "$manifold" --root "$work/mroot" --progress none push "$src" "127.0.0.1:$port/bench/pushed:1" >/dev/null
  t1=$(now)
  m_push+=("$(elapsed "$t0" "$t1")")
  start_registry "push-s-$run"
  t0=$(now)
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://127.0.0.1:$port/bench/pushed:1"
  t1=$(now)
  s_push+=("$(elapsed "$t0" "$t1")")

  # copy (registry to a new, empty registry)
  start_registry "copy-m-$run"
  t0=$(now)
  "$manifold" --progress none copy "$src" "127.0.0.1:$port/bench/copied:1" >/dev/null
  t1=$(now)
  m_copy+=("$(elapsed "$t0" "$t1")")
  start_registry "copy-s-$run"
  t0=$(now)
  skopeo --insecure-policy copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$src" "docker://127.0.0.1:$port/bench/copied:1"
  t1=$(now)
  s_copy+=("$(elapsed "$t0" "$t1")")

  # keep only the source registry running
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
  rm -rf "$work"/push-* "$work"/copy-*
done
stop_registries

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
mp=$(median "${m_pull[@]}") sp=$(median "${s_pull[@]}")
mu=$(median "${m_push[@]}") su=$(median "${s_push[@]}")
mc=$(median "${m_copy[@]}") sc=$(median "${s_copy[@]}")
peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
cat <<EOF
image: $((size / 1000000)) MB in 5 layers (from /usr), $runs alternating runs, medians; $(nproc) cores
| operation | manifold | skopeo | ratio | runs (manifold / skopeo) |
|---|---|---|---|---|
| pull | ${mp} s | ${sp} s | $(ratio "$mp" "$sp") | ${m_pull[*]} / ${s_pull[*]} |
| push | ${mu} s | ${su} s | $(ratio "$mu" "$su") | ${m_push[*]} / ${s_push[*]} |
| copy | ${mc} s | ${sc} s | $(ratio "$mc" "$sc") | ${m_copy[*]} / ${s_copy[*]} |
peak RSS of manifold pull: $((peak / 1024)) MB (max of $runs runs: ${rss[*]} kB)
EOF
