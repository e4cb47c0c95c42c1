#!/usr/bin/env bash
# Issue 12's performance targets for rootless mode (run it as root: it makes the plain user):
#
#   bench/rootless.sh [--runs N] [run|build|service]...      (default: all three)
#
# run    `manifold run --rm busybox true` as a plain user (rootless: user namespace with
#        subordinate ids, overlayfs with userxattr, runc --rootless, the default private network)
#        against the same as root, alternating, N runs each (default 20). Target: ≤ 1.5×.
# build  the demo build (scripts/demo.sh: examples/hello for linux/amd64, arm64, arm/v7, ppc64le
#        and s390x, RUN under QEMU for the foreign ones) with --no-cache, rootless against root,
#        alternating, N/4 runs each (at least 3), each on a store holding the demo base
#        (examples/busybox, built once per store, not timed). Target: ≤ 1.3×.
# service issue 14 rootless: `run -d -p 127.0.0.1:PORT:80` of busybox httpd (the monitor, the
#        forwarder, the published port) until its first HTTP answer, rootless against root,
#        alternating, N/2 runs each (at least 3); the container removed after each. No target of
#        its own (bench/run.sh compares it with a foreground server).
#
# The user (mfbench-rootless) gets 65536 subordinate ids for the run and loses them with the
# user at the end, whatever happens. binfmt_misc handlers the build needs are registered as root
# (the one-time step a rootless user relies on) and binfmt_misc is left as found.
#
# Timing: bash's $EPOCHREALTIME around each command, page cache warm, one untimed warm-up of
# each. Prints each run, the medians and the ratios; copy the summary into bench/RESULTS.md. The
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
    run | build | service)
      parts+=("$1")
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -E/{/^set -E/d;s/^# \{0,1\}//;p}' "$0"
      exit 0
      ;;
    *)
      echo "rootless.sh: unknown argument \`$1\` (see --help)" >&2
      exit 2
      ;;
  esac
done
((${#parts[@]} > 0)) || parts=(run build service)
[[ $runs =~ ^[1-9][0-9]*$ ]] || {
  echo "rootless.sh: --runs wants a positive number, not \`$runs\`" >&2
  exit 2
}

die() {
  echo "rootless.sh: $*" >&2
  exit 1
}
trap 'echo "rootless.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
((EUID == 0)) || die "run it as root: it makes the plain user the rootless runs use"

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

# Rootless slirp4netns opens /dev/net/tun: as udev's default rules leave it on a distribution.
[[ -c /dev/net/tun ]] && chmod 0666 /dev/net/tun

user=mfbench-rootless
work=$(mktemp -d /tmp/manifold-bench-rootless.XXXXXX)
chmod 0755 "$work"
cleanup() {
  local code=$?
  rm -rf "$work"
  if id "$user" >/dev/null 2>&1; then
    userdel "$user" >/dev/null 2>&1 || true
  fi
  exit "$code"
}
trap cleanup EXIT

id "$user" >/dev/null 2>&1 && userdel "$user"
useradd --no-create-home --user-group --shell /usr/sbin/nologin -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
# Above useradd's own allocation range (SUB_UID_MAX 600100000): no other user's ids.
start=800000000
usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$user"
uid=$(id -u "$user")
gid=$(id -g "$user")
mkdir -p "$work/user" "$work/user/run" "$work/root"
chown -R "$uid:$gid" "$work/user"
chmod 0700 "$work/user" "$work/user/run"

m_root() { "$bin" --root "$work/root/store" --progress none "$@"; }
m_user() {
  setpriv --reuid "$uid" --regid "$gid" --clear-groups -- \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    XDG_RUNTIME_DIR="$work/user/run" HOME="$work/user" \
    "$bin" --root "$work/user/store" --progress none "$@"
}

# timed, median, ratio (run from the repository's root, as this script is)
. bench/timing.sh

fixtures=$PWD/target/fixtures/busybox
cp "$fixtures/amd64/rootfs.tar.gz" "$work/busybox.tar.gz"
chmod 0644 "$work/busybox.tar.gz"

run() {
  echo "== run --rm busybox true: rootless against root"
  m_root import -c 'CMD ["sh"]' "$work/busybox.tar.gz" busybox:1 >/dev/null
  m_user import -c 'CMD ["sh"]' "$work/busybox.tar.gz" busybox:1 >/dev/null
  m_root run --rm busybox:1 true
  m_user run --rm busybox:1 true
  : >"$work/run-user"
  : >"$work/run-root"
  printf '%-4s %-16s %s\n' run 'rootless (s)' 'root (s)'
  local i
  for ((i = 1; i <= runs; i++)); do
    timed "$work/run-user" m_user run --rm busybox:1 true
    timed "$work/run-root" m_root run --rm busybox:1 true
    printf '%-4d %-16s %s\n' "$i" "$(tail -n 1 "$work/run-user")" "$(tail -n 1 "$work/run-root")"
  done
  local a b
  a=$(median "$work/run-user")
  b=$(median "$work/run-root")
  printf 'median rootless run --rm true: %s s\nmedian root run --rm true:     %s s\n' "$a" "$b"
  ratio "$a" "$b" 1.5 "rootless/root"
}

build() {
  local platforms=linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x
  local n=$((runs / 4)) i p
  ((n >= 3)) || n=3
  echo "== the demo build (examples/hello, five platforms, --no-cache): rootless against root"
  # The handlers, registered once by root as a rootless user needs them; binfmt_misc is
  # serialised with the tests and left as found.
  exec 8>/tmp/manifold-binfmt-tests.lock
  flock 8
  local was_mounted='' added=() handler
  [[ -f /proc/sys/fs/binfmt_misc/register ]] && was_mounted=1
  for p in linux/arm64=qemu-aarch64 linux/arm/v7=qemu-arm linux/ppc64le=qemu-ppc64le linux/s390x=qemu-s390x; do
    handler=${p#*=}
    p=${p%=*}
    [[ -e /proc/sys/fs/binfmt_misc/$handler ]] || added+=("$p")
    m_root binfmt install "$p" >/dev/null
  done
  cp -r examples/hello "$work/hello"
  cp -r "$fixtures" "$work/fixtures"
  chmod -R a+rX "$work/hello" "$work/fixtures"
  for who in root user; do
    "m_$who" build --platform "$platforms" -t demo/busybox:1 -f examples/busybox/Dockerfile "$work/fixtures" >/dev/null 2>&1 ||
      die "building the demo base as $who failed"
    "m_$who" build --platform "$platforms" -t demo/hello:1 "$work/hello" >/dev/null 2>&1 ||
      die "the warm-up build as $who failed"
  done
  : >"$work/build-user"
  : >"$work/build-root"
  printf '%-4s %-16s %s\n' run 'rootless (s)' 'root (s)'
  for ((i = 1; i <= n; i++)); do
    timed "$work/build-user" m_user build --no-cache --platform "$platforms" -t demo/hello:1 "$work/hello"
    timed "$work/build-root" m_root build --no-cache --platform "$platforms" -t demo/hello:1 "$work/hello"
    printf '%-4d %-16s %s\n' "$i" "$(tail -n 1 "$work/build-user")" "$(tail -n 1 "$work/build-root")"
  done
  for p in ${added[@]+"${added[@]}"}; do
    m_root binfmt uninstall "$p" >/dev/null 2>&1 || true
  done
  if [[ -z $was_mounted && -f /proc/sys/fs/binfmt_misc/register ]]; then
    if [[ -z $(find /proc/sys/fs/binfmt_misc -mindepth 1 -maxdepth 1 ! -name register ! -name status) ]]; then
      umount /proc/sys/fs/binfmt_misc || true
    fi
  fi
  flock -u 8
  local a b
  a=$(median "$work/build-user")
  b=$(median "$work/build-root")
  printf 'median rootless demo build: %s s\nmedian root demo build:     %s s\n' "$a" "$b"
  ratio "$a" "$b" 1.3 "rootless/root"
}

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

# detached WHO OUT: WHO's run -d -p until the first answer on the published port (GET every
# 10 ms, at most ~60 s), appended to OUT; then the container goes.
detached() {
  local who=$1 out=$2 port start tries=0
  port=$(free_port)
  start=$EPOCHREALTIME
  "m_$who" run -d --name bench-svc -p "127.0.0.1:$port:80" busybox:1 \
    busybox httpd -f -p 80 -h /etc >/dev/null
  until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/passwd"; do
    tries=$((tries + 1))
    ((tries < 5000)) || die "nothing answered on 127.0.0.1:$port ($who)"
    sleep 0.01
  done
  awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.4f\n", e - s }' >>"$out"
  "m_$who" rm -f bench-svc >/dev/null
}

service() {
  echo "== service: run -d -p to the first HTTP answer, rootless against root"
  command -v curl >/dev/null || die "curl is needed (scripts/deps.sh installs it)"
  local n=$((runs / 2)) i who
  ((n >= 3)) || n=3
  for who in root user; do
    "m_$who" inspect busybox:1 >/dev/null 2>&1 ||
      "m_$who" import -c 'CMD ["sh"]' "$work/busybox.tar.gz" busybox:1 >/dev/null
    detached "$who" /dev/null
  done
  : >"$work/svc-user"
  : >"$work/svc-root"
  printf '%-4s %-16s %s\n' run 'rootless (s)' 'root (s)'
  for ((i = 1; i <= n; i++)); do
    detached user "$work/svc-user"
    detached root "$work/svc-root"
    printf '%-4d %-16s %s\n' "$i" "$(tail -n 1 "$work/svc-user")" "$(tail -n 1 "$work/svc-root")"
  done
  local a b
  a=$(median "$work/svc-user")
  b=$(median "$work/svc-root")
  printf 'median rootless run -d -p to the first answer: %s s\nmedian root run -d -p to the first answer:     %s s\n' "$a" "$b"
  awk -v a="$a" -v b="$b" 'BEGIN { printf "ratio rootless/root: %.2f\n", a / b }'
}

for p in "${parts[@]}"; do
  "$p"
done
