# RISC-V 64: write(1, msg, len); exit(0) — ecall with syscalls 64 and 93, number in a7.
# norelax and norvc: every address is resolved here, and the code is plain 32-bit instructions.
        .include "elf64.inc"
        .option norelax
        .option norvc
        .text
        elf64_header 1, 243, 4          /* EF_RISCV_FLOAT_ABI_DOUBLE, as the distributions' lp64d */
msg:    .ascii  "manifold binfmt test: riscv64\n"
        .equ    len, . - msg
        .balign 4
_start: li      a0, 1
1:      auipc   a1, 0
        /* addi a1, a1, msg - 1b: as data, since the assembler takes only a constant there */
        .4byte  0x00058593 | (((msg - 1b) & 0xfff) << 20)
        li      a2, len
        li      a7, 64
        ecall
        li      a0, 0
        li      a7, 93
        ecall
end:
