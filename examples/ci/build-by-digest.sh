#!/usr/bin/env bash
# One runner's part of the CI matrix: build one platform natively, push it by digest only (no
# tag: the merge job names the result), and record the digest for the merge job.
#
#   build-by-digest.sh REPO PLATFORM CONTEXT DIGESTS_DIR
#
# Writes DIGESTS_DIR/<platform with / as ->, holding `sha256:…`, and the build's metadata next
# to it (<…>.json). The store is $MANIFOLD_ROOT (each runner has its own); $MANIFOLD is the
# binary [default: manifold].
set -euo pipefail
if [[ $# -ne 4 ]]; then
  echo "usage: $0 REPO PLATFORM CONTEXT DIGESTS_DIR" >&2
  exit 2
fi
repo=$1 platform=$2 context=$3 out=$4
manifold=${MANIFOLD:-manifold}
name=${platform//\//-}
mkdir -p "$out"
# `--push-by-digest` prints the digest on stdout; the metadata file has it as JSON too.
digest=$("$manifold" build --platform "$platform" --push-by-digest "$repo" \
  --metadata-file "$out/$name.json" "$context" | tail -n 1)
if [[ $digest != sha256:* ]]; then
  echo "build-by-digest.sh: no digest from the build (got \`$digest\`)" >&2
  exit 1
fi
printf '%s\n' "$digest" >"$out/$name"
echo "$platform: $repo@$digest"
