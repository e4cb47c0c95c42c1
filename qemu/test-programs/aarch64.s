# AArch64: write(1, msg, len); exit(0) — Linux generic syscall numbers 64 and 93, number in x8.
        .include "elf64.inc"
        .text
        elf64_header 1, 183, 0
msg:    .ascii  "manifold binfmt test: aarch64\n"
        .equ    len, . - msg
        .balign 4
_start: mov     x0, #1
        adr     x1, msg
        mov     x2, #len
        mov     x8, #64
        svc     #0
        mov     x0, #0
        mov     x8, #93
        svc     #0
end:
