#!/usr/bin/env bash
# Starts Debian's dockerd (docker.io) when no daemon answers on /var/run/docker.sock, for the
# tests that build inside an unprivileged container (tests/it/rootless.rs). Idempotent: a daemon
# that answers is left alone. Needs root. Uses /usr/bin/docker, Debian's client of the same
# version as the daemon (a newer client elsewhere on PATH may not negotiate with it).
#
# The daemon gets its own data root (/var/lib/manifold-tests-docker, so a host's own docker data
# is never touched) and no bridge or iptables rules: the tests run their containers with
# `--network host`. Its log goes to /var/log/manifold-tests-dockerd.log.
set -euo pipefail

client=/usr/bin/docker
daemon=/usr/sbin/dockerd
data_root=${MANIFOLD_TEST_DOCKER_ROOT:-/var/lib/manifold-tests-docker}
log=/var/log/manifold-tests-dockerd.log

answers() { "$client" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

if answers; then
  exit 0
fi
if ((EUID != 0)); then
  echo "dockerd.sh: no docker daemon answers, and starting one needs root" >&2
  exit 1
fi
if [[ ! -x $daemon || ! -x $client ]]; then
  echo "dockerd.sh: $daemon or $client missing (scripts/deps.sh installs docker.io)" >&2
  exit 1
fi

# A daemon may be starting already (another test process got here first): wait for it before
# starting a second one, which would fail on the pid file anyway.
if ! pgrep -x dockerd >/dev/null; then
  mkdir -p "$data_root"
  setsid "$daemon" --data-root "$data_root" --iptables=false --ip6tables=false --bridge=none \
    >>"$log" 2>&1 </dev/null &
fi
for _ in $(seq 1 120); do
  if answers; then
    exit 0
  fi
  sleep 0.5
done
echo "dockerd.sh: dockerd did not answer within 60 s; the end of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
