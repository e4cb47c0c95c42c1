#!/usr/bin/env bash
# Assembles the test programs of `manifold binfmt test`: qemu/test-programs/<arch>.s →
# OUTDIR/<arch>.bin, the whole ELF file being the assembled .text section (the headers are data
# in elf32.inc/elf64.inc, every address is PC-relative, no linker). manifold embeds the committed
# .bin files; a test runs this script and compares. Debian packages: binutils and
# binutils-{aarch64-linux-gnu,arm-linux-gnueabihf,powerpc64le-linux-gnu,s390x-linux-gnu,
# riscv64-linux-gnu,mips64el-linux-gnuabi64} (scripts/deps.sh installs them).
#
# Usage: assemble.sh OUTDIR [ARCH...]   (default: every architecture)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: assemble.sh OUTDIR [ARCH...]}
shift
mkdir -p "$out"

# The assembler (and its options) for each architecture. One cross assembler serves both byte
# orders of a family; LoongArch is hand-encoded data that the host assembler takes.
assembler() {
  case $1 in
    aarch64) echo "aarch64-linux-gnu-as" ;;
    arm) echo "arm-linux-gnueabihf-as -EL" ;;
    armeb) echo "arm-linux-gnueabihf-as -EB" ;;
    i386) echo "as --32" ;;
    x86_64) echo "as --64" ;;
    ppc64le) echo "powerpc64le-linux-gnu-as -a64 -mlittle" ;;
    ppc64) echo "powerpc64le-linux-gnu-as -a64 -mbig" ;;
    s390x) echo "s390x-linux-gnu-as" ;;
    riscv64) echo "riscv64-linux-gnu-as -march=rv64g -mno-relax" ;;
    mips64el) echo "mips64el-linux-gnuabi64-as -64 -EL" ;;
    mips64) echo "mips64el-linux-gnuabi64-as -64 -EB" ;;
    mipsel) echo "mips64el-linux-gnuabi64-as -32 -EL" ;;
    loongarch64) echo "as --64" ;;
    *) return 1 ;;
  esac
}

if (($# == 0)); then
  set -- aarch64 arm armeb i386 x86_64 ppc64le ppc64 s390x riscv64 mips64el mips64 mipsel loongarch64
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arch in "$@"; do
  cmd=$(assembler "$arch") || {
    echo "assemble.sh: unknown architecture $arch" >&2
    exit 2
  }
  read -r -a argv <<<"$cmd"
  if ! command -v "${argv[0]}" >/dev/null; then
    echo "assemble.sh: ${argv[0]} is not installed (needed for $arch)" >&2
    exit 3
  fi
  "${argv[@]}" -I "$here" -o "$tmp/$arch.o" "$here/$arch.s"
  # A relocation would mean an address the assembler left to a linker: the bytes would be wrong.
  if readelf -r "$tmp/$arch.o" | grep -q "^Relocation section"; then
    echo "assemble.sh: $arch.s needs relocations; make every address PC-relative" >&2
    readelf -r "$tmp/$arch.o" >&2
    exit 4
  fi
  "${argv[0]%as}objcopy" -O binary -j .text "$tmp/$arch.o" "$out/$arch.bin"
done
