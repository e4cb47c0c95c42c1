# s390x: write(1, msg, len); exit(0) — svc 4 and svc 1, arguments in r2-r4.
        .include "elf64.inc"
        .text
        elf64_header 2, 22, 0
        .balign 2
msg:    .ascii  "manifold binfmt test: s390x\n"
        .equ    len, . - msg
        .balign 4
_start: lghi    %r2, 1
        larl    %r3, msg
        lghi    %r4, len
        svc     4
        lghi    %r2, 0
        svc     1
end:
