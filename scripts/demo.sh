#!/usr/bin/env bash
# The demo: one busybox image per platform imported into a throwaway store, then listed and
# inspected the way a docker user would.
#
# Later issues grow this into the full story: a multi-arch `manifold build` of examples/ into
# one image index, and `manifold run --platform` of each architecture under QEMU emulation.
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

# Debian architecture, OCI platform, tag
images=(
  "amd64 linux/amd64 amd64"
  "arm64 linux/arm64 arm64"
  "armhf linux/arm/v7 armv7"
  "ppc64el linux/ppc64le ppc64le"
  "s390x linux/s390x s390x"
)

section "import one busybox root filesystem per platform"
for entry in "${images[@]}"; do
  read -r debarch platform tag <<<"$entry"
  manifold import --platform "$platform" -c 'CMD ["sh"]' \
    "target/fixtures/busybox/$debarch/rootfs.tar.gz" "demo/busybox:$tag"
done

section "images"
manifold images

section "inspect demo/busybox:arm64"
manifold inspect demo/busybox:arm64

section "history demo/busybox:arm64"
manifold history demo/busybox:arm64

section "done"
