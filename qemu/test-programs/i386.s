# i386: write(1, msg, len); exit(0) — int 0x80 with syscalls 4 and 1. No PC-relative data
# addressing in 32-bit x86: call/pop finds where the code was loaded.
        .include "elf32.inc"
        .text
        elf32_header 1, 3, 0
msg:    .ascii  "manifold binfmt test: i386\n"
        .equ    len, . - msg
        .balign 4
_start: call    1f
1:      pop     %ecx
        lea     (msg - 1b)(%ecx), %ecx
        mov     $4, %eax
        mov     $1, %ebx
        mov     $len, %edx
        int     $0x80
        mov     $1, %eax
        xor     %ebx, %ebx
        int     $0x80
end:
