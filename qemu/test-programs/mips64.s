# MIPS64 (n64 ABI), big-endian: write(1, msg, len); exit(0) — syscalls 5001 and 5058,
# number in v0. bal leaves the address after its delay slot in ra.
        .include "elf64.inc"
        .set    noreorder
        .text
        elf64_header 2, 8, 0x20000000   /* EF_MIPS_ARCH_3: nothing newer is used */
msg:    .ascii  "manifold binfmt test: mips64\n"
        .equ    len, . - msg
        .balign 4
_start: bal     1f
        nop
1:      daddiu  $5, $31, msg - 1b
        li      $4, 1
        li      $6, len
        li      $2, 5001
        syscall
        li      $4, 0
        li      $2, 5058
        syscall
end:
