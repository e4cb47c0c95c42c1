#!/usr/bin/env bash
# Installs the Debian packages that the tests, the demo and the benchmarks use, and checks that
# cargo is reachable. Idempotent and quiet: when everything is installed it does nothing (no
# `apt-get update`). Needs root only when something is missing. Debian bookworm.
#
# Source it (`. scripts/deps.sh`) to also get ~/.cargo/env into the calling shell.
set -euo pipefail

packages=(
  # peer tools the tests compare manifold against, or use to build and check fixtures
  skopeo umoci oci-image-tool
  # the default OCI runtime and the emulators that `manifold run --platform` registers
  runc qemu-user-static
  # the default network of run and RUN (a private namespace with outbound access); `ip netns`
  # for the network tests' own namespaces
  slirp4netns iproute2
  # qemu/test-programs/assemble.sh: the cross assemblers of `binfmt test`'s programs (a test
  # reassembles them and compares)
  binutils binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf binutils-powerpc64le-linux-gnu
  binutils-s390x-linux-gnu binutils-riscv64-linux-gnu binutils-mips64el-linux-gnuabi64
  # systemd-binfmt: a test replays `binfmt install --persist`'s files with it, as at boot
  systemd
  # build --ssh: ssh-agent and ssh-add (manifold starts an agent for key files; the ssh tests
  # make keys with ssh-keygen and run ssh-add inside a step)
  openssh-client
  # a throwaway registry for push/pull tests (tests start their own on a free port)
  docker-registry
  # scripts/fixtures.sh: apt-get download of busybox-static for foreign architectures
  debian-archive-keyring ca-certificates file tar gzip zstd xz-utils util-linux
  # bench/ (/usr/bin/time for peak RSS), registry health checks
  time curl
  # scripts/test.sh lints the shell scripts
  shellcheck
  # tests/it/sec_registry.rs: a network namespace of the test's own (`ip addr add` on its lo)
  iproute2
  # chattr: tests make a file immutable to make a container's removal fail
  e2fsprogs
  # `manifold top` runs the host's ps
  procps
)

deps_missing() {
  local p status
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || printf '%s\n' "$p"
  done
}

# A subshell, so that its EXIT trap (removing our policy-rc.d) stays local even when sourced.
deps_install() (
  local -a missing
  mapfile -t missing < <(deps_missing)
  ((${#missing[@]} == 0)) && return 0

  if ((EUID != 0)); then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "deps.sh: run as root (or: sudo apt-get install --no-install-recommends ${missing[*]})" >&2
    return 1
  fi

  # Keep maintainer scripts from starting services (docker-registry ships one listening on
  # :5000): the tests start their own registry on a free port with a temporary config. An
  # existing policy-rc.d (docker images have one) is left alone.
  local policy=/usr/sbin/policy-rc.d ours='' log rc=0
  log=$(mktemp)
  trap 'rm -f "$log"; [[ -z $ours ]] || rm -f "$policy"' EXIT
  if [[ ! -e $policy ]]; then
    ours=1
    printf '#!/bin/sh\n# written by manifold scripts/deps.sh for the duration of an install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
  fi

  {
    apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1 || rc=$?
  if ((rc != 0)); then
    cat "$log" >&2
    echo "deps.sh: failed to install: ${missing[*]} (apt-get exit $rc; output above)" >&2
    return 1
  fi

  local -a still
  mapfile -t still < <(deps_missing)
  if ((${#still[@]} != 0)); then
    echo "deps.sh: still not installed after apt-get install: ${still[*]}" >&2
    return 1
  fi
)

deps_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -f ${CARGO_HOME:-$HOME/.cargo}/env ]]; then
    # shellcheck disable=SC1091
    . "${CARGO_HOME:-$HOME/.cargo}/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "deps.sh: cargo not found on PATH nor in ${CARGO_HOME:-$HOME/.cargo}/env (install Rust with rustup)" >&2
    return 1
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  deps_install
  deps_cargo
else
  # sourced: install, then leave cargo on the caller's PATH
  deps_install || return
  deps_cargo || return
fi
