# x86-64: write(1, msg, len); exit(0) — Linux x86-64 syscall numbers 1 and 60.
        .include "elf64.inc"
        .text
        elf64_header 1, 62, 0
msg:    .ascii  "manifold binfmt test: x86_64\n"
        .equ    len, . - msg
        .balign 4
_start: mov     $1, %eax
        mov     $1, %edi
        lea     msg(%rip), %rsi
        mov     $len, %edx
        syscall
        mov     $60, %eax
        xor     %edi, %edi
        syscall
end:
