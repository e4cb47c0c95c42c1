# 32-bit MIPS (o32 ABI), little-endian: write(1, msg, len); exit(0) — syscalls 4004 and 4001,
# number in v0. bal leaves the address after its delay slot in ra.
        .include "elf32.inc"
        .set    noreorder
        .text
        elf32_header 1, 8, 0x00001000   /* EF_MIPS_ABI_O32 */
msg:    .ascii  "manifold binfmt test: mipsel\n"
        .equ    len, . - msg
        .balign 4
_start: bal     1f
        nop
1:      addiu   $5, $31, msg - 1b
        li      $4, 1
        li      $6, len
        li      $2, 4004
        syscall
        li      $4, 0
        li      $2, 4001
        syscall
end:
