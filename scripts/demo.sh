#!/usr/bin/env bash
# The demo: in a throwaway store, a multi-platform busybox base built from Debian's
# busybox-static packages, then a multi-stage project (examples/hello) built for linux/amd64,
# arm64, arm/v7, ppc64le and s390x in one command, and run on every platform (QEMU emulation
# through binfmt_misc for the foreign ones). Needs root (containers, binfmt_misc).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
trap 'echo "demo.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

section() { printf '\n=== %s\n' "$*"; }

bash scripts/deps.sh
# shellcheck disable=SC1091
command -v cargo >/dev/null || . "${CARGO_HOME:-$HOME/.cargo}/env"
bash scripts/fixtures.sh

section "build (cargo build --release)"
cargo build --release -q
manifold_bin=$PWD/target/release/manifold

# A fresh store, removed at the end: the demo never touches /var/lib/manifold.
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/manifold-demo.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
unset MANIFOLD_ROOT
# Shows each command as a user would type it (minus --root), then runs it.
manifold() {
  local arg shown=''
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then shown+=" $arg"; else shown+=" '$arg'"; fi
  done
  printf '$ manifold%s\n' "$shown"
  "$manifold_bin" --root "$ROOT" "$@"
}
echo "store: $ROOT (every command below runs with --root $ROOT)"

platforms=linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x

section "build a multi-platform busybox base from Debian's busybox-static (examples/busybox)"
manifold build --platform "$platforms" -t demo/busybox:1 \
  -f examples/busybox/Dockerfile target/fixtures/busybox

section "build the multi-stage demo app for five platforms (examples/hello)"
# The banner stage runs once on the build platform; the app stage's RUN runs under QEMU for the
# foreign platforms.
manifold build --platform "$platforms" -t demo/hello:1 examples/hello

section "run it on every platform (matrix run, emulated where not native)"
manifold run --rm --platform "$platforms" demo/hello:1

section "rebuild: every step comes from the cache"
manifold build --platform "$platforms" -t demo/hello:1 examples/hello 2>&1 | tail -n 3

section "images"
manifold images

section "inspect demo/hello:1 (arm64)"
manifold inspect --platform linux/arm64 demo/hello:1

section "history demo/hello:1 (arm64)"
manifold history --platform linux/arm64 demo/hello:1

section "done"
