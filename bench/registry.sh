#!/usr/bin/env bash
# Registry benchmark: manifold vs skopeo and vs the physical floor (curl) on a ~1 GB, 5-layer
# image built from this machine's /usr with umoci, against local docker-registry instances on
# 127.0.0.1; and manifold through a registry's quirks (bench/quirk_proxy.py) against the plain
# path. Within a run every variant is measured once, one after the other, so all see the same
# machine state.
#
#   bench/registry.sh [RUNS]        RUNS defaults to 3; BENCH_DIR keeps the work files;
#                                   MANIFOLD=BINARY measures that binary instead of building
#   bench/registry.sh RUNS --focused   only the pull/floor and plain/refusing-proxy pairs,
#                                   back to back, RUNS rounds (see below)
#
# Measured (wall time, median of RUNS):
#   pull   manifold pull REF                       vs skopeo copy docker://REF oci:DIR:x
#   push   manifold push REF (to an empty registry) vs skopeo copy oci:DIR:bench docker://REF
#   copy   manifold copy A/REF B/REF                vs skopeo copy docker://A/REF docker://B/REF
#   rss    peak RSS of manifold pull (/usr/bin/time -f %M)
#   floor  the same transfers by curl, every blob at once: GETs to files (pull); POST + one
#          `curl -T FILE` PUT per blob (push, monolithic uploads); `curl URL | curl -T -` per
#          blob (copy); then the manifest
#   quirks manifold push and copy through quirk_proxy.py: `plain` (the proxy alone) vs `noput`
#          (a blob in a PUT refused: every large blob goes in PATCH chunks after the refusal)
# Push and copy go to a new, empty registry each run, so nothing is skipped or mounted.
set -euo pipefail

runs=${1:-3}
# `--focused`: instead, RUNS rounds of the two comparisons with the tightest goals, each pair
# measured back to back in alternating order: pull vs the floor, push through the plain vs the
# refusing proxy (a run-to-run spread of ±30 % on this machine swamps a 10 % goal measured once
# per run among other transfers). The second of a pair is often the slower (a push re-reads the
# blobs the pull wrote around the page cache; the first of a pair reads them from disk): with
# an even number of rounds each order comes up equally, and the geometric mean of the rounds'
# ratios cancels the position.
focused=false
[[ ${2:-} == --focused ]] && focused=true
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

for tool in docker-registry skopeo umoci /usr/bin/time curl python3; do
  command -v "$tool" >/dev/null || { echo "registry.sh: \`$tool\` not found (run scripts/deps.sh)" >&2; exit 1; }
done

if [[ -n ${MANIFOLD:-} ]]; then
  manifold=$MANIFOLD
else
  echo "==> building manifold (release)" >&2
  (cd "$repo" && cargo build --release -q)
  manifold=$repo/target/release/manifold
fi

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

# start_proxy UPSTREAM_PORT MODE: a quirk proxy in front of a registry; its port in $pport.
pport=
start_proxy() {
  local out=$work/proxy-$1-$2.port
  python3 "$repo/bench/quirk_proxy.py" "$1" "$2" >"$out" &
  pids+=("$!")
  local i
  for i in $(seq 100); do
    [[ -s $out ]] && break
    sleep 0.05
  done
  pport=$(head -1 "$out")
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
src_host=127.0.0.1:$port
src=$src_host/bench/image:1
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://$src"
size=$(du -sb "$work/src/data" | cut -f1)
echo "==> image pushed to $src ($((size / 1000000)) MB in the registry)" >&2

# --- timing helpers --------------------------------------------------------------------------

now() { date +%s.%N; }
# Every measurement starts with the disk's writeback done (what earlier transfers left dirty
# would otherwise slow whichever comes next), so the order within a run matters less.
start() { sync; now; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# --- the floor: curl, every blob at once --------------------------------------------------------

manifest_digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")
manifest_file=$layout/blobs/sha256/${manifest_digest#sha256:}
manifest_type=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("mediaType", "application/vnd.oci.image.manifest.v1+json"))' "$manifest_file")
mapfile -t blobs < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
for d in [m["config"]] + m["layers"]:
    print(d["digest"])' "$manifest_file")

# upload_url HOST REPO: a new upload session's location, ready for `digest=`.
upload_url() {
  local loc
  loc=$(curl -sf -X POST -D - -o /dev/null "http://$1/v2/$2/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location" {print $2}')
  [[ $loc == /* ]] && loc=http://$1$loc
  if [[ $loc == *\?* ]]; then echo "$loc&"; else echo "$loc?"; fi
}

put_manifest() { # HOST REPO TAG
  curl -sf -X PUT -H "Content-Type: $manifest_type" --data-binary "@$manifest_file" "http://$1/v2/$2/manifests/$3" >/dev/null
}

# wait_all PID...: every one of them, failing if one did (a bare `wait` would also wait for the
# registries running in the background).
wait_all() {
  local p rc=0
  for p in "$@"; do wait "$p" || rc=1; done
  return $rc
}

floor_pull() { # SRC_HOST DIR
  local d jobs=()
  mkdir -p "$2"
  curl -sf -o "$2/manifest" -H "Accept: $manifest_type" "http://$1/v2/bench/image/manifests/1"
  for d in "${blobs[@]}"; do
    curl -sf -o "$2/${d#sha256:}" "http://$1/v2/bench/image/blobs/$d" &
    jobs+=("$!")
  done
  wait_all "${jobs[@]}"
}

floor_push() { # DEST_HOST
  local d jobs=()
  for d in "${blobs[@]}"; do
    (curl -sf -T "$layout/blobs/sha256/${d#sha256:}" "$(upload_url "$1" bench/pushed)digest=$d" >/dev/null) &
    jobs+=("$!")
  done
  wait_all "${jobs[@]}"
  put_manifest "$1" bench/pushed 1
}

floor_copy() { # SRC_HOST DEST_HOST
  local d jobs=()
  for d in "${blobs[@]}"; do
    (curl -sf "http://$1/v2/bench/image/blobs/$d" | curl -sf -T - "$(upload_url "$2" bench/copied)digest=$d" >/dev/null) &
    jobs+=("$!")
  done
  wait_all "${jobs[@]}"
  put_manifest "$2" bench/copied 1
}

# quirk_push MODE RUN: the image pushed through a new quirk proxy of MODE in front of a new,
# empty registry: its wall time in $took, its peak RSS in $work/rss; through `noput`, the
# fallback must have been taken.
took=
quirk_push() {
  local t0 t1
  start_registry "quirk-push-$1-$2"
  start_proxy "$port" "$1"
  t0=$(start)
  /usr/bin/time -f %M -o "$work/rss" "$manifold" --root "$work/mroot" --progress none push "$src" "127.0.0.1:$pport/bench/pushed:1" >/dev/null 2>"$work/quirk.err"
  t1=$(now)
  took=$(elapsed "$t0" "$t1")
  [[ $1 == plain ]] || grep -q "refuses blobs in one PUT" "$work/quirk.err" || { echo "registry.sh: no fallback through the noput proxy" >&2; cat "$work/quirk.err" >&2; exit 1; }
}

if $focused; then
  declare -a focus_m focus_f focus_plain focus_noput
  paired() { python3 -c '
import statistics, sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:3])
rs = [x / y for x, y in zip(a, b)]
print("%.2f / %.2f s = %.2f; per round %s (median %.2f, geometric mean %.2f)" % (statistics.median(a), statistics.median(b), statistics.median(a) / statistics.median(b), " ".join("%.2f" % r for r in rs), statistics.median(rs), statistics.geometric_mean(rs)))' "$1" "$2"; }
  for run in $(seq "$runs"); do
    echo "==> focused round $run/$runs" >&2
    order=(manifold floor)
    ((run % 2)) || order=(floor manifold)
    for who in "${order[@]}"; do
      rm -rf "$work/mroot" "$work/floor-pull"
      t0=$(start)
      if [[ $who == manifold ]]; then
        "$manifold" --root "$work/mroot" --progress none pull -q "$src" >/dev/null
        t1=$(now); focus_m+=("$(elapsed "$t0" "$t1")")
      else
        floor_pull "$src_host" "$work/floor-pull"
        t1=$(now); focus_f+=("$(elapsed "$t0" "$t1")")
      fi
    done
    modes=(plain noput)
    ((run % 2)) || modes=(noput plain)
    for mode in "${modes[@]}"; do
      quirk_push "$mode" "$run"
      if [[ $mode == plain ]]; then focus_plain+=("$took"); else focus_noput+=("$took"); fi
    done
    for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=("${pids[0]}")
    rm -rf "$work"/quirk-* "$work/floor-pull"
  done
  stop_registries
  echo "focused, $runs rounds, each pair back to back in alternating order ($(nproc) cores):"
  echo "pull / floor: $(paired "${focus_m[*]}" "${focus_f[*]}") (goal ≤ 1.1)"
  echo "push, refusing PUT / plain proxy: $(paired "${focus_noput[*]}" "${focus_plain[*]}") (goal ≤ 1.1)"
  exit 0
fi

declare -a m_pull s_pull m_push s_push m_copy s_copy rss f_pull f_pull_durable f_push f_copy
declare -a q_push_plain q_push_noput q_copy_plain q_copy_noput q_rss
for run in $(seq "$runs"); do
  echo "==> run $run/$runs" >&2
  # pull
  rm -rf "$work/mroot" "$work/soci"
  t0=$(start)
  /usr/bin/time -f %M -o "$work/rss" "$manifold" --root "$work/mroot" --progress none pull -q "$src" >/dev/null
  t1=$(now)
  m_pull+=("$(elapsed "$t0" "$t1")")
  rss+=("$(cat "$work/rss")")
  t0=$(start)
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$src" "oci:$work/soci:x"
  t1=$(now)
  s_pull+=("$(elapsed "$t0" "$t1")")

  # push (each to a new, empty registry)
  start_registry "push-m-$run"
  t0=$(start)
  "$manifold" --root "$work/mroot" --progress none push "$src" "127.0.0.1:$port/bench/pushed:1" >/dev/null
  t1=$(now)
  m_push+=("$(elapsed "$t0" "$t1")")
  start_registry "push-s-$run"
  t0=$(start)
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://127.0.0.1:$port/bench/pushed:1"
  t1=$(now)
  s_push+=("$(elapsed "$t0" "$t1")")

  # copy (registry to a new, empty registry)
  start_registry "copy-m-$run"
  t0=$(start)
  "$manifold" --progress none copy "$src" "127.0.0.1:$port/bench/copied:1" >/dev/null
  t1=$(now)
  m_copy+=("$(elapsed "$t0" "$t1")")
  start_registry "copy-s-$run"
  t0=$(start)
  skopeo --insecure-policy copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$src" "docker://127.0.0.1:$port/bench/copied:1"
  t1=$(now)
  s_copy+=("$(elapsed "$t0" "$t1")")

  # the floor
  rm -rf "$work/floor-pull"
  t0=$(start)
  floor_pull "$src_host" "$work/floor-pull"
  t1=$(now)
  f_pull+=("$(elapsed "$t0" "$t1")")
  # The same files made durable, as manifold makes each blob before it names it.
  sync "$work/floor-pull"/*
  t2=$(now)
  f_pull_durable+=("$(elapsed "$t0" "$t2")")
  start_registry "floor-push-$run"
  t0=$(start)
  floor_push "127.0.0.1:$port"
  t1=$(now)
  f_push+=("$(elapsed "$t0" "$t1")")
  "$manifold" --progress none pull -q "127.0.0.1:$port/bench/pushed:1" --root "$work/floor-check" >/dev/null
  start_registry "floor-copy-$run"
  t0=$(start)
  floor_copy "$src_host" "127.0.0.1:$port"
  t1=$(now)
  f_copy+=("$(elapsed "$t0" "$t1")")
  "$manifold" --progress none pull -q "127.0.0.1:$port/bench/copied:1" --root "$work/floor-check" >/dev/null
  rm -rf "$work/floor-pull" "$work/floor-check"

  # through the quirk proxy: the proxy alone, then refusing blobs in a PUT
  # The order alternates between runs: the second of two transfers in a row pays for more.
  modes=(plain noput)
  ((run % 2)) || modes=(noput plain)
  for mode in "${modes[@]}"; do
    quirk_push "$mode" "$run"
    if [[ $mode == plain ]]; then q_push_plain+=("$took"); else q_push_noput+=("$took"); q_rss+=("$(cat "$work/rss")"); fi
    start_registry "quirk-copy-$mode-$run"
    start_proxy "$port" "$mode"
    t0=$(start)
    "$manifold" --progress none copy "$src" "127.0.0.1:$pport/bench/copied:1" >/dev/null 2>"$work/quirk.err"
    t1=$(now)
    if [[ $mode == plain ]]; then q_copy_plain+=("$(elapsed "$t0" "$t1")"); else q_copy_noput+=("$(elapsed "$t0" "$t1")"); fi
    [[ $mode == plain ]] || grep -q "refuses blobs in one PUT" "$work/quirk.err" || { echo "registry.sh: no fallback through the noput proxy" >&2; cat "$work/quirk.err" >&2; exit 1; }
  done

  # keep only the source registry running
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
  rm -rf "$work"/push-* "$work"/copy-* "$work"/floor-* "$work"/quirk-*
done
stop_registries

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
mp=$(median "${m_pull[@]}") sp=$(median "${s_pull[@]}")
mu=$(median "${m_push[@]}") su=$(median "${s_push[@]}")
mc=$(median "${m_copy[@]}") sc=$(median "${s_copy[@]}")
fp=$(median "${f_pull[@]}") fpd=$(median "${f_pull_durable[@]}") fu=$(median "${f_push[@]}") fc=$(median "${f_copy[@]}")
qpp=$(median "${q_push_plain[@]}") qpg=$(median "${q_push_noput[@]}")
qcp=$(median "${q_copy_plain[@]}") qcg=$(median "${q_copy_noput[@]}")
peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
cat <<EOF
image: $((size / 1000000)) MB in 5 layers (from /usr), $runs alternating runs, medians; $(nproc) cores
| operation | manifold | skopeo | ratio | runs (manifold / skopeo) |
|---|---|---|---|---|
| pull | ${mp} s | ${sp} s | $(ratio "$mp" "$sp") | ${m_pull[*]} / ${s_pull[*]} |
| push | ${mu} s | ${su} s | $(ratio "$mu" "$su") | ${m_push[*]} / ${s_push[*]} |
| copy | ${mc} s | ${sc} s | $(ratio "$mc" "$sc") | ${m_copy[*]} / ${s_copy[*]} |
peak RSS of manifold pull: $((peak / 1024)) MB (max of $runs runs: ${rss[*]} kB)

against the physical floor (curl, every blob at once):
| operation | manifold | floor | ratio | goal | runs (floor) |
|---|---|---|---|---|---|
| pull | ${mp} s | ${fp} s | $(ratio "$mp" "$fp") | ≤ 1.1 | ${f_pull[*]} |
| pull, floor made durable (fsync of each file after it) | ${mp} s | ${fpd} s | $(ratio "$mp" "$fpd") | | ${f_pull_durable[*]} |
| push | ${mu} s | ${fu} s | $(ratio "$mu" "$fu") | ≤ 1.1 | ${f_push[*]} |
| copy | ${mc} s | ${fc} s | $(ratio "$mc" "$fc") | ≤ 1.05 | ${f_copy[*]} |

through a quirk proxy (a blob in a PUT refused) vs the same proxy forwarding everything:
| operation | plain proxy | refusing PUT | ratio | goal | runs (plain / refusing) |
|---|---|---|---|---|---|
| push | ${qpp} s | ${qpg} s | $(ratio "$qpg" "$qpp") | ≤ 1.1 | ${q_push_plain[*]} / ${q_push_noput[*]} |
| copy | ${qcp} s | ${qcg} s | $(ratio "$qcg" "$qcp") | ≤ 1.1 | ${q_copy_plain[*]} / ${q_copy_noput[*]} |
peak RSS of manifold push refusing blobs in a PUT (large layers in chunks): $(($(printf '%s\n' "${q_rss[@]}" | sort -n | tail -1) / 1024)) MB (${q_rss[*]} kB)
EOF
