#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run): Debian packages, format, lints, fixtures,
# build, tests. Run it as root: tests that need root (mounts, runc, binfmt_misc) or a peer tool
# skip themselves otherwise, except under CI=true, where MANIFOLD_TEST_REQUIRE_ALL=1 makes every
# such skip a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT

step() { printf '==> %s\n' "$*"; }
fail() {
  echo "test.sh: FAILED: $*" >&2
  exit 1
}

step "dependencies (scripts/deps.sh)"
# sourced, so that cargo from ~/.cargo/env is on PATH below
. scripts/deps.sh || fail "scripts/deps.sh"

if [[ ${CI:-} == true ]]; then
  export MANIFOLD_TEST_REQUIRE_ALL=1
fi

step "cargo fmt --check"
cargo fmt --check || fail "cargo fmt --check (run \`cargo fmt\`)"

step "shellcheck"
shellcheck scripts/*.sh bench/*.sh examples/ci/*.sh .ci/run || fail "shellcheck"

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -q -- -D warnings || fail "cargo clippy"

step "fixtures (scripts/fixtures.sh)"
bash scripts/fixtures.sh || fail "scripts/fixtures.sh"

step "cargo build --all-targets"
cargo build --all-targets -q || fail "cargo build"

step "cargo test"
rc=0
cargo test --all-targets 2>&1 | tee "$test_log" || rc=$?
if ((rc == 0)); then
  # --all-targets leaves the documentation examples out
  cargo test --doc 2>&1 | tee -a "$test_log" || rc=$?
fi

# One closing line over every test binary (cargo prints a `test result:` line per binary).
read -r passed failed ignored < <(awk '
  /^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) ~ /^passed/) p += $i
      if ($(i + 1) ~ /^failed/) f += $i
      if ($(i + 1) ~ /^ignored/) g += $i
    }
  }
  END { printf "%d %d %d\n", p, f, g }' "$test_log")
if ((rc != 0)); then
  echo "test.sh: FAILED: cargo test (exit $rc)" >&2
  echo "tests: $passed passed, $failed failed, $ignored skipped"
  exit "$rc"
fi

# The committed fuzz corpora were replayed on stable by `cargo test` (tests/it/fuzz.rs); with a
# nightly toolchain each target also runs briefly under libFuzzer.
step "fuzz targets, briefly (scripts/fuzz.sh ci)"
if cargo +nightly --version >/dev/null 2>&1; then
  bash scripts/fuzz.sh ci || fail "scripts/fuzz.sh ci"
else
  echo "skipped: no nightly toolchain"
fi
echo "tests: $passed passed, $failed failed, $ignored skipped"
