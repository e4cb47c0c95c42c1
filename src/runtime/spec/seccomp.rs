//! Seccomp profiles in docker's format — the built-in default (`seccomp/default.yaml`, docker's
//! policy) or a user's JSON file — and their conversion into the bundle's `LinuxSeccomp` for one
//! container: rules kept or dropped by the container's capabilities and the host's architecture
//! and kernel, the filter's architectures taken from the host's `archMap` entry.

use std::sync::{Arc, OnceLock};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::security::{CapSet, Host, kernel_version};

const BUILTIN: &str = include_str!("../../../seccomp/default.yaml");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("both `architectures` and `archMap` are given: use one")]
    BothArchitectureLists,
    #[error("a rule names its system calls with both `name` and `names`: use one")]
    NameAndNames,
    #[error("a rule names no system call")]
    NoNames,
    #[error("invalid `minKernel` `{0}`: expected `<version>.<major>`, e.g. `4.8`")]
    MinKernel(String),
    #[error("the profile has rules but no `defaultAction`")]
    NoDefaultAction,
}

/// docker's profile format: the OCI `LinuxSeccomp` plus `archMap` and conditional rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    default_action: Option<LinuxSeccompAction>,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchEntry>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Option<Vec<String>>,
    /// The old single-name form.
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

impl Condition {
    fn caps(&self) -> &[String] {
        self.caps.as_deref().unwrap_or_default()
    }

    fn arches(&self) -> &[String] {
        self.arches.as_deref().unwrap_or_default()
    }

    fn min_kernel(&self) -> Option<(u32, u32)> {
        self.min_kernel
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| kernel_version(k).expect("checked when the profile was read"))
    }
}

impl Rule {
    fn names(&self) -> Vec<String> {
        match (&self.name, &self.names) {
            (Some(n), _) => vec![n.clone()],
            (None, Some(names)) => names.clone(),
            (None, None) => Vec::new(),
        }
    }

    /// docker's rule: every `includes` condition holds and no `excludes` condition does.
    fn applies(&self, caps: CapSet, host: &Host) -> bool {
        if let Some(ex) = &self.excludes {
            if ex.arches().iter().any(|a| a == host.arch) {
                return false;
            }
            if ex.caps().iter().any(|c| caps.contains_name(c)) {
                return false;
            }
            if ex.min_kernel().is_some_and(|k| host.kernel >= k) {
                return false;
            }
        }
        if let Some(inc) = &self.includes {
            if !inc.arches().is_empty() && !inc.arches().iter().any(|a| a == host.arch) {
                return false;
            }
            if !inc.caps().iter().all(|c| caps.contains_name(c)) {
                return false;
            }
            if inc.min_kernel().is_some_and(|k| host.kernel < k) {
                return false;
            }
        }
        true
    }
}

impl Profile {
    /// docker's default policy, parsed once per process.
    pub fn builtin() -> Arc<Profile> {
        static BUILTIN_PROFILE: OnceLock<Arc<Profile>> = OnceLock::new();
        BUILTIN_PROFILE
            .get_or_init(|| {
                let profile: Profile =
                    serde_yaml::from_str(BUILTIN).expect("seccomp/default.yaml is a valid profile");
                Arc::new(
                    profile
                        .checked()
                        .expect("seccomp/default.yaml is consistent"),
                )
            })
            .clone()
    }

    /// A profile in docker's JSON format (`--security-opt seccomp=FILE`).
    pub fn from_json(text: &str) -> Result<Profile, SeccompError> {
        let profile: Profile = serde_json::from_str(text)?;
        profile.checked()
    }

    fn checked(self) -> Result<Profile, SeccompError> {
        if self.architectures.as_ref().is_some_and(|a| !a.is_empty())
            && self.arch_map.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err(SeccompError::BothArchitectureLists);
        }
        let rules = self.syscalls.as_deref().unwrap_or_default();
        if self.default_action.is_none() && !rules.is_empty() {
            return Err(SeccompError::NoDefaultAction);
        }
        for rule in rules {
            if rule.name.is_some() && rule.names.as_ref().is_some_and(|n| !n.is_empty()) {
                return Err(SeccompError::NameAndNames);
            }
            if rule.names().is_empty() {
                return Err(SeccompError::NoNames);
            }
            for cond in [&rule.includes, &rule.excludes].into_iter().flatten() {
                if let Some(k) = cond.min_kernel.as_deref().filter(|k| !k.is_empty())
                    && kernel_version(k).is_none()
                {
                    return Err(SeccompError::MinKernel(k.to_string()));
                }
            }
        }
        Ok(self)
    }

    /// The filter for a container with bounding set `caps` on `host`; `None` when the profile
    /// asks for none (no default action and no rules: docker's "disabled").
    pub fn to_oci(&self, caps: CapSet, host: &Host) -> Option<LinuxSeccomp> {
        let default_action = self.default_action?;
        let architectures: Vec<Arch> = match (&self.architectures, &self.arch_map) {
            (Some(a), _) if !a.is_empty() => a.clone(),
            (_, Some(map)) => {
                let native = host_arch(host.arch);
                map.iter()
                    .find(|e| Some(e.architecture) == native)
                    .map(|e| {
                        let mut v = vec![e.architecture];
                        v.extend(e.sub_architectures.iter().flatten().copied());
                        v
                    })
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .flatten()
            .filter(|r| r.applies(caps, host))
            .map(|r| {
                let mut b = LinuxSyscallBuilder::default()
                    .names(r.names())
                    .action(r.action);
                if let Some(e) = r.errno_ret {
                    b = b.errno_ret(e);
                }
                if let Some(args) = r.args.as_ref().filter(|a| !a.is_empty()) {
                    b = b.args(args.clone());
                }
                b.build().expect("a valid syscall rule")
            })
            .collect();
        let mut b = LinuxSeccompBuilder::default().default_action(default_action);
        if let Some(e) = self.default_errno_ret {
            b = b.default_errno_ret(e);
        }
        if !architectures.is_empty() {
            b = b.architectures(architectures);
        }
        if let Some(flags) = self.flags.as_ref().filter(|f| !f.is_empty()) {
            b = b.flags(flags.clone());
        }
        if !syscalls.is_empty() {
            b = b.syscalls(syscalls);
        }
        Some(b.build().expect("a valid seccomp section"))
    }
}

/// The seccomp architecture of a libseccomp architecture name (moby's `nativeToSeccomp`).
fn host_arch(native: &str) -> Option<Arch> {
    Some(match native {
        "x86" => Arch::ScmpArchX86,
        "amd64" => Arch::ScmpArchX86_64,
        "arm" => Arch::ScmpArchArm,
        "arm64" => Arch::ScmpArchAarch64,
        "loong64" => Arch::ScmpArchLoongarch64,
        "mips64" => Arch::ScmpArchMips64,
        "mips64n32" => Arch::ScmpArchMips64n32,
        "mipsel64" => Arch::ScmpArchMipsel64,
        "mipsel64n32" => Arch::ScmpArchMipsel64n32,
        "mipsel" => Arch::ScmpArchMipsel,
        "ppc" => Arch::ScmpArchPpc,
        "ppc64" => Arch::ScmpArchPpc64,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390" => Arch::ScmpArchS390,
        "s390x" => Arch::ScmpArchS390x,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{Capability, LinuxSeccompOperator};

    use super::super::security::DEFAULT_CAPABILITIES;
    use super::*;

    fn amd64() -> Host {
        Host {
            arch: "amd64",
            kernel: (6, 1),
            capabilities: CapSet::up_to(40),
        }
    }

    fn default_caps() -> CapSet {
        CapSet::of(&DEFAULT_CAPABILITIES)
    }

    /// The rules that allow `name` (or act on it otherwise), in order.
    fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn the_builtin_profile_is_dockers() {
        let p = Profile::builtin();
        let s = p.to_oci(default_caps(), &amd64()).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let allowed: Vec<&String> = s
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
            .flat_map(|r| r.names())
            .collect();
        // docker's plain allow list (361 calls), arch_prctl and modify_ldt (x86), chroot
        // (SYS_CHROOT), and ptrace & co. (kernel ≥ 4.8).
        assert_eq!(allowed.len(), 361 + 2 + 1 + 3);
        for yes in [
            "read",
            "execve",
            "clock_gettime64",
            "arch_prctl",
            "chroot",
            "ptrace",
        ] {
            assert!(allowed.iter().any(|n| *n == yes), "{yes}");
        }
        for no in [
            "keyctl",
            "add_key",
            "request_key",
            "mount",
            "unshare",
            "setns",
            "bpf",
            "userfaultfd",
            "io_uring_setup",
            "kexec_load",
            "reboot",
            "init_module",
            "open_by_handle_at",
            "riscv_flush_icache",
            "s390_runtime_instr",
            "set_tls",
        ] {
            assert!(!allowed.iter().any(|n| *n == no), "{no} is allowed");
        }
        // clone: only without namespace flags, first argument (not s390).
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.op()),
            (0, 0x7E02_0000, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        // clone3: ENOSYS so libc falls back to clone.
        let clone3 = rules_for(&s, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        // socket: every family but AF_ALG (38) and AF_VSOCK (40).
        let socket: Vec<(u64, LinuxSeccompOperator)> = rules_for(&s, "socket")
            .iter()
            .map(|r| {
                let a = r.args().as_ref().unwrap()[0];
                (a.value(), a.op())
            })
            .collect();
        assert_eq!(
            socket,
            [
                (38, LinuxSeccompOperator::ScmpCmpLt),
                (39, LinuxSeccompOperator::ScmpCmpEq),
                (40, LinuxSeccompOperator::ScmpCmpGt)
            ]
        );
        let personality: Vec<u64> = rules_for(&s, "personality")
            .iter()
            .map(|r| r.args().as_ref().unwrap()[0].value())
            .collect();
        assert_eq!(personality, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn capabilities_open_their_calls() {
        let p = Profile::builtin();
        let mut caps = default_caps();
        caps.insert(Capability::SysAdmin);
        caps.insert(Capability::SysPtrace);
        let s = p.to_oci(caps, &amd64()).unwrap();
        let plain = |name: &str| {
            rules_for(&s, name)
                .iter()
                .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
        };
        for yes in [
            "mount", "unshare", "setns", "clone", "clone3", "kcmp", "bpf",
        ] {
            assert!(plain(yes), "{yes} with SYS_ADMIN and SYS_PTRACE");
        }
        // The conditional clone and clone3 rules are gone with SYS_ADMIN.
        assert_eq!(rules_for(&s, "clone3").len(), 1);
        assert!(!plain("reboot"));
        // Without SYS_CHROOT, no chroot.
        let mut caps = default_caps();
        caps.remove(Capability::SysChroot);
        let s = p.to_oci(caps, &amd64()).unwrap();
        assert!(rules_for(&s, "chroot").is_empty());
    }

    #[test]
    fn architectures_and_kernels_pick_rules() {
        let p = Profile::builtin();
        let s390 = Host {
            arch: "s390x",
            ..amd64()
        };
        let s = p.to_oci(default_caps(), &s390).unwrap();
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchS390x, Arch::ScmpArchS390][..])
        );
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args().as_ref().unwrap()[0].index(), 1);
        assert!(!rules_for(&s, "s390_runtime_instr").is_empty());
        assert!(rules_for(&s, "arch_prctl").is_empty());
        let arm = Host {
            arch: "arm64",
            ..amd64()
        };
        let s = p.to_oci(default_caps(), &arm).unwrap();
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        assert!(!rules_for(&s, "set_tls").is_empty());
        // A host with no archMap entry: the runtime's native architecture only.
        let ppc = Host {
            arch: "ppc64le",
            ..amd64()
        };
        assert_eq!(
            p.to_oci(default_caps(), &ppc).unwrap().architectures(),
            &None
        );
        let old = Host {
            kernel: (4, 4),
            ..amd64()
        };
        let s = p.to_oci(default_caps(), &old).unwrap();
        assert!(rules_for(&s, "ptrace").is_empty());
    }

    #[test]
    fn user_profiles_in_dockers_json() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": null},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [],
                 "comment": "x", "includes": {}, "excludes": {"caps": ["CAP_FOWNER"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"minKernel": "99.1"}}
            ]
        }"#;
        let p = Profile::from_json(text).unwrap();
        let s = p.to_oci(default_caps(), &amd64()).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64][..])
        );
        let rules = s.syscalls().as_ref().unwrap();
        assert_eq!(
            rules.len(),
            1,
            "chmod is excluded by FOWNER, ptrace by the kernel"
        );
        assert_eq!(rules[0].names(), &["mkdir"]);
        assert_eq!(rules[0].errno_ret(), Some(13));
        // docker's "disabled" profile.
        assert!(
            Profile::from_json("{}")
                .unwrap()
                .to_oci(default_caps(), &amd64())
                .is_none()
        );
        for (bad, why) in [
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "unknown variant"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], "archMap": [{"architecture": "SCMP_ARCH_X86"}]}"#,
                "both",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}"#,
                "both `name` and `names`",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#,
                "no system call",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "four"}}]}"#,
                "minKernel",
            ),
            (
                r#"{"syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO"}]}"#,
                "defaultAction",
            ),
            (r#"{"defaultAction": "#, "EOF"),
        ] {
            let e = Profile::from_json(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
