# 32-bit ARM (EABI, big-endian, BE32: instructions stored big-endian too): write(1, msg, len); exit(0) — syscalls 4 and 1, number in r7.
        .include "elf32.inc"
        .text
        elf32_header 2, 40, 0x05000000  /* EF_ARM_EABI_VER5: the EABI syscall convention */
msg:    .ascii  "manifold binfmt test: armeb\n"
        .equ    len, . - msg
        .balign 4
        .arm
_start: mov     r0, #1
        adr     r1, msg
        mov     r2, #len
        mov     r7, #4
        svc     #0
        mov     r0, #0
        mov     r7, #1
        svc     #0
end:
