# 64-bit PowerPC, big-endian (ELFv2): write(1, msg, len); exit(0) — sc with syscalls 4 and 1,
# number in r0. bcl 20,31 puts the address of the next instruction in LR.
        .include "elf64.inc"
        .text
        elf64_header 2, 21, 2           /* e_flags 2: ELFv2 ABI (e_entry is code, no descriptor) */
msg:    .ascii  "manifold binfmt test: ppc64\n"
        .equ    len, . - msg
        .balign 4
_start: bcl     20, 31, 1f
1:      mflr    4
        addi    4, 4, msg - 1b
        li      3, 1
        li      5, len
        li      0, 4
        sc
        li      3, 0
        li      0, 1
        sc
end:
