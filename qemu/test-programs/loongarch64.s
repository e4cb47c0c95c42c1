# LoongArch64: write(1, msg, len); exit(0) — syscalls 64 and 93, number in a7 (r11).
# Debian has no LoongArch assembler yet, so the instructions are encoded here by hand, as data
# any assembler takes (little-endian words); the mnemonic is beside each.
        .include "elf64.inc"
        .text
        elf64_header 1, 258, 0x43       /* EF_LOONGARCH_OBJABI_V1 | EF_LOONGARCH_ABI_DOUBLE_FLOAT */
msg:    .ascii  "manifold binfmt test: loongarch64\n"
        .equ    len, . - msg
        .balign 4
        # addi.d rd, rj, si12 = 0x02c00000 | si12 << 10 | rj << 5 | rd
        # pcaddi rd, si20     = 0x18000000 | si20 << 5 | rd        (rd = pc + si20 * 4)
        # syscall code        = 0x002b0000 | code
        .equ    ZERO, 0
        .equ    A0, 4
        .equ    A1, 5
        .equ    A2, 6
        .equ    A7, 11
_start: .4byte  0x02c00000 | (1 << 10) | (ZERO << 5) | A0  /* addi.d  $a0, $zero, 1 */
1:      .4byte  0x18000000 | ((((msg - 1b) >> 2) & 0xfffff) << 5) | A1  /* pcaddi  $a1, msg */
        .4byte  0x02c00000 | (len << 10) | (ZERO << 5) | A2  /* addi.d  $a2, $zero, len */
        .4byte  0x02c00000 | (64 << 10) | (ZERO << 5) | A7  /* addi.d  $a7, $zero, 64 */
        .4byte  0x002b0000              /* syscall 0 */
        .4byte  0x02c00000 | (0 << 10) | (ZERO << 5) | A0  /* addi.d  $a0, $zero, 0 */
        .4byte  0x02c00000 | (93 << 10) | (ZERO << 5) | A7  /* addi.d  $a7, $zero, 93 */
        .4byte  0x002b0000              /* syscall 0 */
end:
