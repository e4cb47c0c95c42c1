#!/usr/bin/env bash
# The merge job of the CI matrix: one manifest list over the digests the runners pushed, pushed
# under its tag. The job needs none of the images: the list refers to them in the registry, and
# the push only writes the list (every blob and manifest is there already).
#
#   merge.sh REPO:TAG DIGESTS_DIR
#
# DIGESTS_DIR holds one file per platform with its digest (what build-by-digest.sh writes);
# the platforms are read from the images' configs. Prints the list's digest last.
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 REPO:TAG DIGESTS_DIR" >&2
  exit 2
fi
list=$1 dir=$2
manifold=${MANIFOLD:-manifold}
# The repository is the list's name without its tag (a `:` after the last `/`).
last=${list##*/}
if [[ $last != *:* ]]; then
  echo "merge.sh: give the list a tag: REPO:TAG" >&2
  exit 2
fi
repo=${list%:*}
sources=()
for f in "$dir"/*; do
  [[ -f $f && $f != *.json ]] || continue
  sources+=("$repo@$(<"$f")")
done
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "merge.sh: no digests in $dir" >&2
  exit 1
fi
"$manifold" manifest create "$list" "${sources[@]}" >/dev/null
"$manifold" manifest inspect --verbose "$list" >&2
"$manifold" manifest push "$list"
