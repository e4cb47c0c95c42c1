#!/usr/bin/env bash
# Issue 4's performance targets for `manifold run`, three measurements (run as root):
#
#   bench/run.sh [--runs N] [startup|unpack|emulation|service]...      (default: all four)
#
# startup    `manifold run --rm busybox true` on an imported image against `runc run` of an
#            equivalent prepared bundle (the same config.json manifold wrote, over a plain copy of
#            the root filesystem), alternating, N runs each (default 20). Target: ≤ 1.5×.
# unpack     the first `run` of a ~1 GB image of 5 layers (built once from this machine's /usr
#            with GNU tar and umoci into target/bench/run-image/, loaded as an OCI archive), snapshots
#            removed before each run, against `umoci unpack` of the same image, alternating, N/5
#            runs each (at least 2). Target: ≤ 0.5× umoci.
# emulation  `manifold run --rm --platform linux/arm64 busybox true` (QEMU through binfmt_misc)
#            against the same for linux/amd64 (native), and QEMU's own start-up (busybox true run
#            by qemu-aarch64-static directly, against the amd64 busybox natively). Expectation:
#            the difference is QEMU's start-up. binfmt_misc is restored as found.
# service    issue 14: `manifold run -d -p 127.0.0.1:PORT:80` of busybox httpd (a monitor, the
#            private network, slirp4netns forwarding the port) until the first HTTP answer on
#            the published port, against the same server run in the foreground with
#            `--network host` until its first answer, alternating, N/2 runs each (at least 3).
#            Target: ≤ 1.2×. The client is curl every 10 ms, the same for both.
#
# Timing: bash's $EPOCHREALTIME around each command, page cache warm, one untimed warm-up of each.
# Prints each run, the medians and the ratios; copy the summary into bench/RESULTS.md. The
# binary is target/release/manifold (rebuilt), or $MANIFOLD_BIN.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=20
parts=()
while (($# > 0)); do
  case $1 in
    --runs)
      runs=${2:?--runs needs a number}
      shift 2
      ;;
    startup | unpack | emulation | service)
      parts+=("$1")
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -E/{/^set -E/d;s/^# \{0,1\}//;p}' "$0"
      exit 0
      ;;
    *)
      echo "run.sh: unknown argument \`$1\` (see --help)" >&2
      exit 2
      ;;
  esac
done
((${#parts[@]} > 0)) || parts=(startup unpack emulation service)
[[ $runs =~ ^[1-9][0-9]*$ ]] || {
  echo "run.sh: --runs wants a positive number, not \`$runs\`" >&2
  exit 2
}

die() {
  echo "run.sh: $*" >&2
  exit 1
}
trap 'echo "run.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
((EUID == 0)) || die "run it as root: containers need mounts and namespaces"

bash scripts/deps.sh || die "scripts/deps.sh failed"
# shellcheck disable=SC1091
command -v cargo >/dev/null || . "${CARGO_HOME:-$HOME/.cargo}/env"
bash scripts/fixtures.sh || die "scripts/fixtures.sh failed"

bin=${MANIFOLD_BIN:-}
if [[ -z $bin ]]; then
  cargo build --release -q || die "cargo build --release failed"
  bin=$PWD/target/release/manifold
fi
[[ -x $bin ]] || die "no manifold binary at $bin"

bench=$PWD/target/bench
fixtures=$PWD/target/fixtures/busybox
mkdir -p "$bench"
work=$(mktemp -d "$bench/.run.XXXXXX")
root=$work/root
m() { "$bin" --root "$root" --progress none "$@"; }

cleanup() {
  # Containers a failed run left, then the work directory.
  m ps -a -q 2>/dev/null | while read -r id; do m rm -f "$id" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# timed, median, ratio (run from the repository's root, as this script is)
. bench/timing.sh

m import --platform linux/amd64 -c 'CMD ["sh"]' "$fixtures/amd64/rootfs.tar.gz" busybox:amd64 >/dev/null
m import --platform linux/arm64 -c 'CMD ["sh"]' "$fixtures/arm64/rootfs.tar.gz" busybox:arm64 >/dev/null

# --- startup -----------------------------------------------------------------------------------

startup() {
  echo "== startup: manifold run --rm busybox true vs runc run of a prepared bundle"
  # The bundle: the config.json manifold writes (kept container), over a plain copy of the tree.
  m run --name bundle-source busybox:amd64 true >/dev/null
  local id cdir bundle=$work/bundle state=$work/runc i
  id=$(m ps -a -q --no-trunc)
  cdir=$root/containers-v1/$id
  mkdir -p "$bundle"
  cp -a "$fixtures/amd64/rootfs" "$bundle/rootfs"
  sed -e 's/"args":\[[^]]*\]/"args":["true"]/' -e 's#"cgroupsPath":"[^"]*"#"cgroupsPath":"/manifold-bench"#' \
    "$cdir/config.json" >"$bundle/config.json"
  grep -q '"args":\["true"\]' "$bundle/config.json" || die "could not rewrite the bundle's args"

  : >"$work/startup-manifold"
  : >"$work/startup-runc"
  m run --rm busybox:amd64 true
  runc --root "$state" run --bundle "$bundle" bench-warm >/dev/null
  printf '%-4s %-14s %s\n' run 'manifold (s)' 'runc (s)'
  for ((i = 1; i <= runs; i++)); do
    timed "$work/startup-manifold" m run --rm busybox:amd64 true
    timed "$work/startup-runc" runc --root "$state" run --bundle "$bundle" "bench-$i"
    printf '%-4d %-14s %s\n' "$i" "$(tail -n 1 "$work/startup-manifold")" "$(tail -n 1 "$work/startup-runc")"
  done
  local a b
  a=$(median "$work/startup-manifold")
  b=$(median "$work/startup-runc")
  printf 'median manifold run --rm true: %s s\nmedian runc run:               %s s\n' "$a" "$b"
  ratio "$a" "$b" 1.5 "manifold/runc"
  m rm bundle-source >/dev/null
}

# --- unpack ------------------------------------------------------------------------------------

image=$bench/run-image
layer_budget=$((200 * 1024 * 1024)) # bytes of file content per layer: ~1 GB in 5 layers

# stage_layer BUDGET STAGE SRC [find args]: copy files of SRC (sorted) into STAGE until BUDGET
# bytes of content; hardlinked copies cost nothing.
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

build_image() {
  local oci=$work/oci i=0 src
  umoci init --layout "$oci" || die "umoci init failed"
  umoci new --image "$oci:bench" || die "umoci new failed"
  umoci config --image "$oci:bench" --os linux --architecture amd64 --config.cmd /bin/sh ||
    die "umoci config failed"
  # The layers are made by GNU tar and added by `umoci raw add-layer`: umoci 0.4.7's own
  # `insert` writes truncated tar streams for some trees here (/usr/include: the last entry and
  # the end-of-archive blocks are missing; GNU tar and manifold refuse such a layer, umoci's
  # unpack does not notice).
  for src in /usr/lib/x86_64-linux-gnu /usr/share /usr/bin /usr/lib /usr/include; do
    i=$((i + 1))
    local -a extra=()
    [[ $src == /usr/lib ]] && extra=(-path /usr/lib/x86_64-linux-gnu -prune -o)
    stage_layer "$layer_budget" "$work/layer$i" "$src" "${extra[@]}"
    tar -C "$work/layer$i" --numeric-owner -cf "$work/layer$i.tar" usr ||
      die "tar of layer $i failed"
    umoci raw add-layer --image "$oci:bench" --history.created_by "bench layer $i: $src" \
      "$work/layer$i.tar" || die "umoci raw add-layer of layer $i failed"
    rm -rf "$work/layer$i" "$work/layer$i.list" "$work/layer$i.tar"
  done
  # busybox as /bin, so the image runs `true`.
  tar -C "$fixtures/amd64/rootfs" --numeric-owner -cf "$work/bin.tar" bin
  umoci raw add-layer --image "$oci:bench" "$work/bin.tar" || die "umoci raw add-layer of /bin failed"
  # Every layer must be a whole tar archive.
  local blob
  for blob in "$oci"/blobs/sha256/*; do
    gzip -t "$blob" 2>/dev/null || continue
    gzip -dc "$blob" | tar -tf - >/dev/null 2>&1 || die "a broken layer: $blob"
  done
  rm -rf "$image"
  mv "$oci" "$image"
}

unpack() {
  echo "== unpack: first run of a ~1 GB 5-layer image vs umoci unpack"
  if [[ ! -f $image/index.json ]]; then
    echo "building $image (once) ..." >&2
    build_image
  fi
  tar -C "$image" -cf "$work/image.tar" .
  # umoci names it `bench`, not a full reference: load keeps it untagged; tag it by ID.
  local id name=bench/run:latest n i
  id=$(m load -i "$work/image.tar" | grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1)
  [[ -n $id ]] || die "manifold load printed no image ID"
  m tag "$id" "$name"
  n=$((runs / 5))
  ((n >= 2)) || n=2
  local size layers
  size=$(du -sb "$image/blobs" | cut -f1)
  layers=$(m inspect "$name" | grep -c '"application/vnd.oci.image.layer' || true)
  printf 'image: %s (%d MiB of blobs, %d layers), %d runs each after a warm-up\n' \
    "${image#"$PWD"/}" $((size / 1024 / 1024)) "$layers" "$n"
  cat "$image"/blobs/sha256/* >/dev/null # page cache warm for both
  : >"$work/unpack-manifold"
  : >"$work/unpack-umoci"
  first_run() {
    rm -rf "$root/snapshots-v1"
    timed "$1" m run --rm "$name" true
  }
  umoci_unpack() {
    rm -rf "$work/umoci-bundle"
    timed "$1" umoci unpack --image "$image:bench" "$work/umoci-bundle"
  }
  first_run /dev/null
  umoci_unpack /dev/null
  printf '%-4s %-14s %s\n' run 'manifold (s)' 'umoci (s)'
  for ((i = 1; i <= n; i++)); do
    first_run "$work/unpack-manifold"
    umoci_unpack "$work/unpack-umoci"
    printf '%-4d %-14s %s\n' "$i" "$(tail -n 1 "$work/unpack-manifold")" "$(tail -n 1 "$work/unpack-umoci")"
  done
  rm -rf "$work/umoci-bundle"
  local a b
  a=$(median "$work/unpack-manifold")
  b=$(median "$work/unpack-umoci")
  printf 'median manifold first run: %s s\nmedian umoci unpack:       %s s\n' "$a" "$b"
  ratio "$a" "$b" 0.5 "manifold/umoci"
}

# --- emulation ---------------------------------------------------------------------------------

emulation() {
  echo "== emulation: arm64 true under QEMU vs amd64 true natively"
  # Serialise with the tests that touch binfmt_misc, and leave it as found.
  exec 8>/tmp/manifold-binfmt-tests.lock
  flock 8
  local was_mounted='' was_registered='' i
  [[ -f /proc/sys/fs/binfmt_misc/register ]] && was_mounted=1
  [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] && was_registered=1
  m run --rm --platform linux/arm64 busybox:arm64 true
  m run --rm busybox:amd64 true
  : >"$work/emu-arm64"
  : >"$work/emu-amd64"
  : >"$work/qemu-only"
  : >"$work/native-only"
  printf '%-4s %-16s %-16s %-16s %s\n' run 'arm64 run (s)' 'amd64 run (s)' 'qemu true (s)' 'native true (s)'
  for ((i = 1; i <= runs; i++)); do
    timed "$work/emu-arm64" m run --rm --platform linux/arm64 busybox:arm64 true
    timed "$work/emu-amd64" m run --rm busybox:amd64 true
    timed "$work/qemu-only" qemu-aarch64-static "$fixtures/arm64/rootfs/bin/busybox" true
    timed "$work/native-only" "$fixtures/amd64/rootfs/bin/busybox" true
    printf '%-4d %-16s %-16s %-16s %s\n' "$i" "$(tail -n 1 "$work/emu-arm64")" "$(tail -n 1 "$work/emu-amd64")" \
      "$(tail -n 1 "$work/qemu-only")" "$(tail -n 1 "$work/native-only")"
  done
  if [[ -z $was_registered ]]; then
    m binfmt uninstall linux/arm64 >/dev/null 2>&1 || true
  fi
  if [[ -z $was_mounted && -f /proc/sys/fs/binfmt_misc/register ]]; then
    if [[ -z $(find /proc/sys/fs/binfmt_misc -mindepth 1 -maxdepth 1 ! -name register ! -name status) ]]; then
      umount /proc/sys/fs/binfmt_misc || true
    fi
  fi
  flock -u 8
  local a b q n
  a=$(median "$work/emu-arm64")
  b=$(median "$work/emu-amd64")
  q=$(median "$work/qemu-only")
  n=$(median "$work/native-only")
  printf 'median run arm64 (emulated): %s s\nmedian run amd64 (native):   %s s\n' "$a" "$b"
  printf 'median busybox true under qemu-aarch64-static: %s s, natively: %s s\n' "$q" "$n"
  awk -v a="$a" -v b="$b" -v q="$q" -v n="$n" 'BEGIN {
    printf "emulation adds %.4f s to a run; QEMU alone adds %.4f s to a start\n", a - b, q - n
  }'
}

# --- service -----------------------------------------------------------------------------------

# free_port: a TCP port in 20000-59999 nothing listens on (ss, from iproute2).
free_port() {
  local port tries=0
  while :; do
    port=$((20000 + RANDOM % 40000))
    [[ -z $(ss -Hltn "sport = :$port") ]] && break
    tries=$((tries + 1))
    ((tries < 100)) || die "no free port found"
  done
  echo "$port"
}

# first_answer PORT: GET /passwd on 127.0.0.1:PORT until the server answers, every 10 ms (at
# most ~60 s). The pause keeps the client from taking the CPU the start needs.
first_answer() {
  local tries=0
  until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/passwd"; do
    tries=$((tries + 1))
    ((tries < 5000)) || die "nothing answered on 127.0.0.1:$1"
    sleep 0.01
  done
}

# since START OUT: append the seconds from START ($EPOCHREALTIME then) to now to OUT.
since() {
  awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.4f\n", e - s }' >>"$2"
}

# detached OUT: run -d -p to the first answer on the published port.
detached() {
  local port start
  port=$(free_port)
  start=$EPOCHREALTIME
  m run -d --rm --name bench-svc -p "127.0.0.1:$port:80" busybox:amd64 \
    busybox httpd -f -p 80 -h /etc >/dev/null
  first_answer "$port"
  since "$start" "$1"
  m rm -f bench-svc >/dev/null
}

# foreground OUT: the same server in the foreground on the host network, to its first answer.
foreground() {
  local port start pid
  port=$(free_port)
  start=$EPOCHREALTIME
  m run --rm --name bench-fg --network host busybox:amd64 \
    busybox httpd -f -p "$port" -h /etc >/dev/null 2>&1 &
  pid=$!
  first_answer "$port"
  since "$start" "$1"
  m kill bench-fg >/dev/null
  wait "$pid" || true
}

service() {
  echo "== service: run -d -p to the first HTTP answer vs the same server in the foreground on the host network"
  command -v curl >/dev/null || die "curl is needed (scripts/deps.sh installs it)"
  command -v slirp4netns >/dev/null || die "slirp4netns is needed (scripts/deps.sh installs it)"
  local n i
  n=$((runs / 2))
  ((n >= 3)) || n=3
  detached /dev/null
  foreground /dev/null
  : >"$work/svc-detached"
  : >"$work/svc-foreground"
  printf '%-4s %-18s %s\n' run 'run -d -p (s)' 'foreground host (s)'
  for ((i = 1; i <= n; i++)); do
    detached "$work/svc-detached"
    foreground "$work/svc-foreground"
    printf '%-4d %-18s %s\n' "$i" "$(tail -n 1 "$work/svc-detached")" "$(tail -n 1 "$work/svc-foreground")"
  done
  local a b
  a=$(median "$work/svc-detached")
  b=$(median "$work/svc-foreground")
  printf 'median run -d -p to the first answer:        %s s\nmedian foreground --network host, the same: %s s\n' "$a" "$b"
  ratio "$a" "$b" 1.2 "detached/foreground"
}

for p in "${parts[@]}"; do
  "$p"
done
