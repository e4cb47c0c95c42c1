//! What this machine is: the architecture manifold was compiled for, refined by what the CPU
//! reports (the x86-64 micro-architecture level, the 32-bit ARM revision).

use super::Platform;
use super::data::ALIASES;

pub(super) fn detect() -> Platform {
    let arch = ALIASES.arch(std_arch_as_go(), variant().as_deref());
    Platform {
        architecture: arch.architecture,
        os: "linux".to_string(),
        os_version: None,
        os_features: None,
        variant: arch.variant,
    }
}

/// Rust's `ARCH` in Go's spelling where the aliases cannot tell: Rust names big- and
/// little-endian targets alike.
fn std_arch_as_go() -> &'static str {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        "mips64" | "mips64r6" if little => "mips64le",
        "mips64" | "mips64r6" => "mips64",
        "mips" | "mips32r6" if little => "mipsle",
        "mips" | "mips32r6" => "mips",
        "riscv32" => "riscv",
        other => other,
    }
}

#[cfg(target_arch = "x86_64")]
fn variant() -> Option<String> {
    Some(format!("v{}", x86_64_level()))
}

#[cfg(target_arch = "arm")]
fn variant() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| arm_variant(&text))
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "arm")))]
fn variant() -> Option<String> {
    None
}

/// The x86-64 psABI micro-architecture level (1 to 4) that this CPU and OS support.
#[cfg(target_arch = "x86_64")]
pub(super) fn x86_64_level() -> u8 {
    use std::arch::is_x86_feature_detected as has;
    let v2 = has!("cmpxchg16b")
        && has_lahf_sahf()
        && has!("popcnt")
        && has!("sse3")
        && has!("sse4.1")
        && has!("sse4.2")
        && has!("ssse3");
    // `avx` is only reported when the OS saves the AVX state (OSXSAVE and XCR0), as v3 requires.
    let v3 = v2
        && has!("avx")
        && has!("avx2")
        && has!("bmi1")
        && has!("bmi2")
        && has!("f16c")
        && has!("fma")
        && has!("lzcnt")
        && has!("movbe")
        && has!("xsave");
    let v4 = v3
        && has!("avx512f")
        && has!("avx512bw")
        && has!("avx512cd")
        && has!("avx512dq")
        && has!("avx512vl");
    match (v2, v3, v4) {
        (_, _, true) => 4,
        (_, true, _) => 3,
        (true, _, _) => 2,
        _ => 1,
    }
}

/// LAHF/SAHF in 64-bit mode (CPUID 0x80000001 ECX bit 0), which `is_x86_feature_detected!`
/// does not report on stable Rust.
#[cfg(target_arch = "x86_64")]
fn has_lahf_sahf() -> bool {
    use std::arch::x86_64::{__cpuid, __get_cpuid_max};
    __get_cpuid_max(0x8000_0000).0 >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & 1 == 1
}

/// The ARM revision from `/proc/cpuinfo`'s `CPU architecture` line, as containerd reads it.
#[cfg_attr(not(target_arch = "arm"), allow(dead_code))]
fn arm_variant(cpuinfo: &str) -> Option<String> {
    let value = cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "CPU architecture").then(|| value.trim())
    })?;
    // Kernels print a bare number (`7`) or one with a suffix (`6TEJ`).
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    match digits.parse::<u8>().ok()? {
        n @ 5..=8 => Some(format!("v{n}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_linux_on_the_compiled_architecture() {
        let host = detect();
        assert_eq!(host.os, "linux");
        assert_eq!(host, host.normalized(), "host() is already normalised");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(host.architecture, "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(
            (host.architecture.as_str(), host.variant.as_deref()),
            ("arm64", Some("v8"))
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn host_variant_agrees_with_cpuid() {
        use std::arch::is_x86_feature_detected as has;
        let host = detect();
        let level = x86_64_level();
        let want = (level > 1).then(|| format!("v{level}"));
        assert_eq!(host.variant, want);
        // Spot-check each level against one feature it needs and one it lacks.
        if level >= 2 {
            assert!(has!("sse4.2") && has!("popcnt"));
        }
        if level >= 3 {
            assert!(has!("avx2") && has!("fma"));
        } else if level == 2 {
            assert!(
                !(has!("avx2")
                    && has!("avx")
                    && has!("bmi1")
                    && has!("bmi2")
                    && has!("f16c")
                    && has!("fma")
                    && has!("lzcnt")
                    && has!("movbe")
                    && has!("xsave"))
            );
        }
        if level == 4 {
            assert!(has!("avx512f") && has!("avx512vl"));
        } else if level == 3 {
            assert!(
                !(has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512cd")
                    && has!("avx512dq")
                    && has!("avx512vl"))
            );
        }
    }

    #[test]
    fn arm_variant_from_cpuinfo() {
        let pi = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant(pi).as_deref(), Some("v7"));
        assert_eq!(arm_variant("CPU architecture: 8\n").as_deref(), Some("v8"));
        assert_eq!(
            arm_variant("CPU architecture: 6TEJ\n").as_deref(),
            Some("v6")
        );
        assert_eq!(arm_variant("model name: x\n"), None);
        assert_eq!(arm_variant("CPU architecture: AArch64\n"), None);
    }
}
