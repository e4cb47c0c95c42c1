#!/usr/bin/env bash
# Builds the test fixtures: a tiny busybox root filesystem per architecture, from Debian's
# busybox-static packages, as plain, gzip and zstd tarballs.
#
#   scripts/fixtures.sh [DIR]          DIR defaults to target/fixtures in the repository
#
# Output, per Debian architecture A:
#   DIR/busybox/A/rootfs.tar           deterministic (sorted, uid/gid 0, mtime 0, ustar)
#   DIR/busybox/A/rootfs.tar.gz        gzip -n
#   DIR/busybox/A/rootfs.tar.zst       zstd
#   DIR/busybox/A/rootfs/              the same tree unpacked (modes as in the tarball)
#   DIR/busybox/platforms.txt          lines `debarch platform`
#   DIR/debs/                          the .debs: busybox-static for each architecture, and
#                                      netbase (all), base-files (amd64, arm64): with
#                                      busybox-static, the packages of the SBOM test image
#                                      (tests/it/attest.rs builds it with dpkg-deb -x)
#
# Debian architecture -> OCI platform (also in platforms.txt):
#   amd64    linux/amd64
#   arm64    linux/arm64
#   armhf    linux/arm/v7
#   armel    linux/arm/v5      Debian's armel targets ARMv5TE (containerd would say arm/v6)
#   i386     linux/386
#   mips64el linux/mips64le
#   ppc64el  linux/ppc64le
#   s390x    linux/s390x
#   riscv64  linux/riscv64     from trixie: bookworm has no riscv64 port
#
# Everything is cached: a second run is a silent no-op. Several processes may run it at once
# (cargo test runs test binaries in parallel): the work happens under flock(DIR/.lock).
# Downloads use a private apt configuration under DIR/apt, so the system's apt state and
# dpkg's architecture list are never touched, and root is not needed.
set -euo pipefail

# Bump when the layout or content of the fixtures changes: stale fixtures are then rebuilt.
FIXTURE_VERSION=1

arches=(amd64 arm64 armhf armel i386 mips64el ppc64el s390x riscv64)
declare -A platform=(
  [amd64]=linux/amd64 [arm64]=linux/arm64 [armhf]=linux/arm/v7 [armel]=linux/arm/v5
  [i386]=linux/386 [mips64el]=linux/mips64le [ppc64el]=linux/ppc64le [s390x]=linux/s390x
  [riscv64]=linux/riscv64
)
applets=(sh echo uname true false ls cat env id pwd sleep test)
# Small real Debian packages for the SBOM test image: package:architecture of their .deb.
sbom_debs=(netbase:all base-files:amd64 base-files:arm64)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

die() {
  echo "fixtures.sh: $*" >&2
  exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/target/fixtures}

# True when every fixture of this FIXTURE_VERSION is in place. Builtins only: it runs on every
# cargo test start.
complete() {
  local a stamp p f found
  [[ -f $dir/busybox/platforms.txt ]] || return 1
  for p in "${sbom_debs[@]}"; do
    found=
    for f in "$dir"/debs/"${p%%:*}"_*_"${p##*:}".deb; do [[ -f $f ]] && found=1; done
    [[ -n $found ]] || return 1
  done
  for a in "${arches[@]}"; do
    [[ -f $dir/busybox/$a/.done ]] || return 1
    read -r stamp <"$dir/busybox/$a/.done" || return 1
    [[ $stamp == "v$FIXTURE_VERSION" ]] || return 1
  done
}

complete && exit 0

mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)
exec 9>"$dir/.lock"
flock 9 || die "cannot lock $dir/.lock"
complete && exit 0 # another process built them while we waited

for tool in apt-get dpkg-deb tar gzip zstd; do
  command -v "$tool" >/dev/null || die "\`$tool\` not found (run scripts/deps.sh)"
done

work=''
cleanup() { [[ -z $work ]] || rm -rf "$work"; }
trap cleanup EXIT
work=$(mktemp -d "$dir/.work.XXXXXX")

# --- download ------------------------------------------------------------------------------

# The first plain Debian archive URI in the system's apt sources, in the order apt reads them
# (sources.list, then sources.list.d/ by name), skipping security and disabled entries.
archive_uri() {
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [[ -f $f ]] || continue
    case $f in
      */sources.list | *.list)
        uri=$(awk '$1 == "deb" {
            i = 2
            if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if ($i !~ /security/ && $(i + 1) !~ /-security$/) { print $i; exit }
          }' "$f")
        ;;
      *.sources)
        uri=$(awk '
          function flush() {
            if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && uri != "" &&
                uri !~ /security/ && suites !~ /-security/) { print uri; found = 1; exit }
            types = ""; uri = ""; suites = ""; enabled = ""
          }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          {
            key = tolower($1); sub(/:$/, "", key)
            if (key == "types") { $1 = ""; types = $0 }
            else if (key == "uris") { uri = $2 }
            else if (key == "suites") { $1 = ""; suites = $0 }
            else if (key == "enabled") { enabled = tolower($2) }
          }
          END { if (!found) flush() }' "$f")
        ;;
      *) continue ;;
    esac
    if [[ -n $uri ]]; then
      printf '%s\n' "${uri%/}"
      return 0
    fi
  done
  printf '%s\n' http://deb.debian.org/debian
}

deb_for() { # prints the downloaded busybox-static .deb of architecture $1, if any
  deb_of busybox-static "$1"
}

deb_of() { # prints the downloaded .deb of package $1, architecture $2, if any
  local f
  for f in "$dir"/debs/"$1"_*_"$2".deb; do
    [[ -f $f ]] && printf '%s\n' "$f"
  done | tail -n 1
}

download() {
  local a uri apt=$dir/apt log=$work/apt.log
  local -a want=() bookworm_arches=()
  for a in "${arches[@]}"; do
    [[ -n $(deb_for "$a") ]] || want+=("busybox-static:$a")
    [[ $a == riscv64 ]] || bookworm_arches+=("$a")
  done
  local p
  for p in "${sbom_debs[@]}"; do
    [[ -n $(deb_of "${p%%:*}" "${p##*:}") ]] || want+=("$p")
  done
  ((${#want[@]} > 0)) || return 0

  [[ -r $keyring ]] || die "$keyring missing (run scripts/deps.sh: package debian-archive-keyring)"
  uri=$(archive_uri)
  rm -rf "$apt"
  mkdir -p "$apt"/lists/partial "$apt"/cache/archives/partial "$apt"/sources.list.d \
    "$apt"/preferences.d "$dir"/debs
  : >"$apt/status"
  cat >"$apt/sources.list" <<EOF
deb [arch=$(IFS=,; printf '%s' "${bookworm_arches[*]}") signed-by=$keyring] $uri bookworm main
deb [arch=riscv64 signed-by=$keyring] $uri trixie main
EOF
  # Read after the system's configuration (-c), so proxies and the like still apply, while
  # everything stateful points here and the system's update hooks are dropped.
  cat >"$apt/apt.conf" <<EOF
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.list.d";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$apt/preferences.d";
APT::Architecture "amd64";
#clear APT::Architectures;
APT::Architectures { $(printf '"%s"; ' "${arches[@]}")};
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
EOF
  if ! apt-get -c "$apt/apt.conf" -q --error-on=any update >"$log" 2>&1; then
    cat "$log" >&2
    die "apt-get update with the private configuration $apt/apt.conf failed (output above)"
  fi
  mkdir "$work/debs"
  if ! (cd "$work/debs" && apt-get -c "$apt/apt.conf" -q download "${want[@]}") >"$log" 2>&1; then
    cat "$log" >&2
    die "apt-get download ${want[*]} failed (output above; sources: $apt/sources.list)"
  fi
  mv "$work"/debs/*.deb "$dir/debs/"
  # The package lists are ~160 MB and only needed for this one download.
  rm -rf "$apt/lists"
  for a in "${arches[@]}"; do
    [[ -n $(deb_for "$a") ]] || die "apt-get download produced no busybox-static .deb for $a"
  done
  for p in "${sbom_debs[@]}"; do
    [[ -n $(deb_of "${p%%:*}" "${p##*:}") ]] || die "apt-get download produced no .deb for $p"
  done
}

# --- root filesystems ----------------------------------------------------------------------

build_arch() {
  local a=$1 deb src x out=$dir/busybox/$1 stage=$work/$1/rootfs
  deb=$(deb_for "$a")
  mkdir -p "$work/$a/deb"
  dpkg-deb -x "$deb" "$work/$a/deb" || die "dpkg-deb -x $deb failed"
  src=
  for x in "$work/$a/deb/bin/busybox" "$work/$a/deb/usr/bin/busybox"; do
    [[ -f $x ]] && src=$x
  done
  [[ -n $src ]] || die "no busybox binary in $deb (looked in /bin and /usr/bin)"

  mkdir -p "$stage"/{bin,dev,etc,proc,root,sys,tmp}
  cp "$src" "$stage/bin/busybox"
  for x in "${applets[@]}"; do ln -s busybox "$stage/bin/$x"; done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
    >"$stage/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$stage/etc/group"
  chmod 0755 "$stage" "$stage"/{bin,dev,etc,proc,sys} "$stage/bin/busybox"
  chmod 0644 "$stage/etc/passwd" "$stage/etc/group"
  chmod 0700 "$stage/root"
  chmod 1777 "$stage/tmp"

  tar --create --file="$work/$a/rootfs.tar" --directory="$stage" --format=ustar --sort=name \
    --owner=0 --group=0 --numeric-owner --mtime=@0 --no-acls --no-xattrs --no-selinux \
    bin dev etc proc root sys tmp || die "tar of the $a rootfs failed"
  gzip -n -9 -c "$work/$a/rootfs.tar" >"$work/$a/rootfs.tar.gz" || die "gzip failed"
  zstd -q -19 -c "$work/$a/rootfs.tar" >"$work/$a/rootfs.tar.zst" || die "zstd failed"

  rm -rf "$out"
  mkdir -p "$out"
  mv "$work/$a"/rootfs.tar "$work/$a"/rootfs.tar.gz "$work/$a"/rootfs.tar.zst "$stage" "$out/"
  printf 'v%s\n%s\n' "$FIXTURE_VERSION" "${deb##*/}" >"$out/.done.tmp"
  mv "$out/.done.tmp" "$out/.done"
}

download
mkdir -p "$dir/busybox"
for a in "${arches[@]}"; do
  printf '%s %s\n' "$a" "${platform[$a]}"
done >"$work/platforms.txt"
mv "$work/platforms.txt" "$dir/busybox/platforms.txt"
for a in "${arches[@]}"; do
  if [[ -f $dir/busybox/$a/.done ]]; then
    read -r stamp <"$dir/busybox/$a/.done" || stamp=
    [[ $stamp == "v$FIXTURE_VERSION" ]] && continue
  fi
  build_arch "$a"
done
