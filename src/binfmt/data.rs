//! The handler table: qemu/*.yaml, embedded at build time and parsed once.

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
