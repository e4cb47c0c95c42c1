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
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let uname = rustix::system::uname();
    let machine = uname.machine().to_string_lossy();
    arm_variant(&cpuinfo, &machine).map(str::to_string)
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

/// The ARM revision as containerd reads it (cpuinfo_linux.go): `/proc/cpuinfo`'s
/// `CPU architecture`, or failing that (QEMU's emulated cpuinfo has none) the machine `uname`
/// reports; None for a revision containerd calls unknown.
#[cfg_attr(not(target_arch = "arm"), allow(dead_code))]
fn arm_variant(cpuinfo: &str, machine: &str) -> Option<&'static str> {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let mut parts = line.split(':');
            let key = parts.next()?;
            let value = parts.next()?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    };
    let mut revision = match field("CPU architecture") {
        Some(value) => value.to_ascii_lowercase(),
        None => machine_revision(machine)?.to_string(),
    };
    // Raspberry Pi's ARMv6 kernels report 7.
    if revision == "7"
        && field("model name")
            .is_some_and(|m| m.to_ascii_lowercase().starts_with("armv6-compatible"))
    {
        revision = "6".to_string();
    }
    match revision.as_str() {
        "8" | "aarch64" => Some("v8"),
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => Some("v7"),
        "6" | "6tej" => Some("v6"),
        "5" | "5t" | "5te" | "5tej" => Some("v5"),
        "4" | "4t" => Some("v4"),
        "3" => Some("v3"),
        _ => None,
    }
}

/// containerd's `getCPUVariantFromArch`: the revision in a machine name (`armv7l` is 7), `unknown`
/// for an ARM name without one it knows, None for a name that is not ARM.
#[cfg_attr(not(target_arch = "arm"), allow(dead_code))]
fn machine_revision(machine: &str) -> Option<&'static str> {
    let machine = machine.to_ascii_lowercase();
    if machine == "aarch64" {
        return Some("8");
    }
    let rest = machine.strip_prefix("armv")?;
    Some(match rest.chars().next()? {
        '8' => "8",
        '7' => "7",
        '6' => "6",
        '5' => "5",
        '4' => "4",
        '3' => "3",
        _ => "unknown",
    })
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
        assert_eq!(arm_variant(pi, "armv7l"), Some("v7"));
        // containerd's table of what kernels print.
        let cases = [
            ("8", Some("v8")),
            ("AArch64", Some("v8")),
            ("7", Some("v7")),
            ("7M", Some("v7")),
            ("?(12)", Some("v7")),
            ("?(17)", Some("v7")),
            ("6", Some("v6")),
            ("6TEJ", Some("v6")),
            ("5", Some("v5")),
            ("5T", Some("v5")),
            ("5TE", Some("v5")),
            ("5TEJ", Some("v5")),
            ("4", Some("v4")),
            ("4T", Some("v4")),
            ("3", Some("v3")),
            ("9", None),
            ("?(18)", None),
        ];
        for (value, want) in cases {
            let cpuinfo = format!("processor: 0\nCPU architecture: {value}\n");
            assert_eq!(arm_variant(&cpuinfo, "armv7l"), want, "{value}");
        }
        // The field name is matched without regard to case.
        assert_eq!(arm_variant("Cpu Architecture: 5TE\n", ""), Some("v5"));
        // Raspberry Pi's ARMv6 kernel reports 7.
        let pi1 = "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant(pi1, "armv6l"), Some("v6"));
        // Without the field (QEMU user mode), the machine name tells.
        assert_eq!(arm_variant("model name: x\n", "armv7l"), Some("v7"));
        assert_eq!(arm_variant("", "armv6l"), Some("v6"));
        assert_eq!(arm_variant("", "x86_64"), None);
    }

    /// containerd's cpuinfo_linux_test.go `TestGetCPUVariantFromArch`: all 10 cases (its
    /// `unknown` and errors are what makes [`arm_variant`] answer None).
    #[test]
    fn revision_from_machine_name() {
        let cases = [
            ("aarch64", Some("8")),
            ("Armv8", Some("8")),
            ("armv7", Some("7")),
            ("armv6", Some("6")),
            ("armv5", Some("5")),
            ("armv4", Some("4")),
            ("armv3", Some("3")),
            ("armv9", Some("unknown")),
            ("armxxxx", None),
            ("armv", None),
        ];
        for (machine, want) in cases {
            assert_eq!(machine_revision(machine), want, "{machine}");
        }
    }
}
