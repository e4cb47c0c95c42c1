//! The handler table: qemu/*.yaml, embedded at build time and parsed once; and the tiny
//! program of each architecture that `binfmt test` runs (qemu/test-programs/).

use std::sync::LazyLock;

use serde::Deserialize;

use super::Handler;
use crate::platform::Platform;

/// Every file in qemu/, by QEMU target name (a unit test checks the directory matches).
pub(super) const FILES: &[(&str, &str)] = &[
    ("aarch64", include_str!("../../qemu/aarch64.yaml")),
    ("arm", include_str!("../../qemu/arm.yaml")),
    ("armeb", include_str!("../../qemu/armeb.yaml")),
    ("i386", include_str!("../../qemu/i386.yaml")),
    ("x86_64", include_str!("../../qemu/x86_64.yaml")),
    ("ppc64le", include_str!("../../qemu/ppc64le.yaml")),
    ("ppc64", include_str!("../../qemu/ppc64.yaml")),
    ("s390x", include_str!("../../qemu/s390x.yaml")),
    ("riscv64", include_str!("../../qemu/riscv64.yaml")),
    ("mips64el", include_str!("../../qemu/mips64el.yaml")),
    ("mips64", include_str!("../../qemu/mips64.yaml")),
    ("mipsel", include_str!("../../qemu/mipsel.yaml")),
    ("loongarch64", include_str!("../../qemu/loongarch64.yaml")),
];

/// Each architecture's test program: a static ELF file of a few hundred bytes that writes
/// [`test_output`] with the write system call and exits 0. Assembled from
/// qemu/test-programs/<target>.s by qemu/test-programs/assemble.sh (a test checks the bytes).
pub(super) const TEST_PROGRAMS: &[(&str, &[u8])] = &[
    (
        "aarch64",
        include_bytes!("../../qemu/test-programs/aarch64.bin"),
    ),
    ("arm", include_bytes!("../../qemu/test-programs/arm.bin")),
    (
        "armeb",
        include_bytes!("../../qemu/test-programs/armeb.bin"),
    ),
    ("i386", include_bytes!("../../qemu/test-programs/i386.bin")),
    (
        "x86_64",
        include_bytes!("../../qemu/test-programs/x86_64.bin"),
    ),
    (
        "ppc64le",
        include_bytes!("../../qemu/test-programs/ppc64le.bin"),
    ),
    (
        "ppc64",
        include_bytes!("../../qemu/test-programs/ppc64.bin"),
    ),
    (
        "s390x",
        include_bytes!("../../qemu/test-programs/s390x.bin"),
    ),
    (
        "riscv64",
        include_bytes!("../../qemu/test-programs/riscv64.bin"),
    ),
    (
        "mips64el",
        include_bytes!("../../qemu/test-programs/mips64el.bin"),
    ),
    (
        "mips64",
        include_bytes!("../../qemu/test-programs/mips64.bin"),
    ),
    (
        "mipsel",
        include_bytes!("../../qemu/test-programs/mipsel.bin"),
    ),
    (
        "loongarch64",
        include_bytes!("../../qemu/test-programs/loongarch64.bin"),
    ),
];

/// What the test program of `target` prints.
pub(super) fn test_output(target: &str) -> String {
    format!("manifold binfmt test: {target}\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandler {
    name: String,
    emulator: String,
    family: String,
    platforms: Vec<String>,
    magic: String,
    mask: String,
}

pub(super) static HANDLERS: LazyLock<Vec<Handler>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(target, yaml)| {
            let raw: RawHandler =
                serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("qemu/{target}.yaml: {e}"));
            let magic =
                unescape(&raw.magic).unwrap_or_else(|e| panic!("qemu/{target}.yaml: magic: {e}"));
            let mask =
                unescape(&raw.mask).unwrap_or_else(|e| panic!("qemu/{target}.yaml: mask: {e}"));
            assert_eq!(
                magic.len(),
                mask.len(),
                "qemu/{target}.yaml: magic and mask differ in length"
            );
            Handler {
                target: target.to_string(),
                name: raw.name,
                emulator: raw.emulator,
                family: raw.family,
                platforms: raw
                    .platforms
                    .iter()
                    .map(|p| {
                        Platform::parse(p)
                            .unwrap_or_else(|e| panic!("qemu/{target}.yaml: platforms: {e}"))
                    })
                    .collect(),
                magic,
                mask,
                magic_text: raw.magic,
                mask_text: raw.mask,
            }
        })
        .collect()
});

/// `\x7fELF\x02` → bytes: `\xNN` escapes and plain ASCII, as binfmt_misc's register file reads.
pub(super) fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                if bytes.get(i + 1) != Some(&b'x') {
                    return Err(format!("unsupported escape at byte {i} (only \\xNN)"));
                }
                let hex = s
                    .get(i + 2..i + 4)
                    .ok_or_else(|| format!("truncated escape at byte {i}"))?;
                out.push(
                    u8::from_str_radix(hex, 16)
                        .map_err(|_| format!("invalid escape `\\x{hex}` at byte {i}"))?,
                );
                i += 4;
            }
            b':' => return Err("`:` separates register fields; escape it as \\x3a".into()),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}
