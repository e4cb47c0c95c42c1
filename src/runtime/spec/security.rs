//! What a container may do to the kernel: its capability set, its seccomp profile,
//! no-new-privileges and `--privileged`, resolved from docker's flags (`--cap-add`,
//! `--cap-drop`, `--security-opt`, `--privileged`) against the host's kernel.
//!
//! The default is podman's capability set (docker's without NET_RAW, MKNOD and AUDIT_WRITE)
//! and docker's seccomp profile.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use oci_spec::runtime::Capability;

use super::seccomp::{Profile, SeccompError};

/// Every capability of linux/capability.h, at its number.
const CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// podman's default capabilities (containers/common `DefaultCapabilities`): docker's 14 less
/// NET_RAW (packet sockets: sniffing and spoofing on the network the container is in), MKNOD and
/// AUDIT_WRITE.
pub const DEFAULT_CAPABILITIES: [Capability; 11] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::NetBindService,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown capability `{0}`")]
    UnknownCapability(String),
    #[error(
        "capability `{0}` is not available here: the kernel does not support it, or manifold itself runs without it"
    )]
    UnavailableCapability(String),
    #[error("invalid `--security-opt` `{0}`")]
    InvalidOption(String),
    #[error(
        "`--security-opt {0}` is not supported: manifold applies no AppArmor or SELinux policy"
    )]
    UnsupportedOption(String),
    #[error("invalid value `{value}` for `no-new-privileges`: expected true or false")]
    InvalidBool { value: String },
    #[error("cannot read the seccomp profile {path}")]
    ReadProfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid seccomp profile {path}")]
    Profile {
        path: PathBuf,
        #[source]
        source: SeccompError,
    },
}

impl crate::hint::Hint for SecurityError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            SecurityError::UnknownCapability(_) => {
                "capabilities are named as in capabilities(7), with or without `CAP_` (`NET_RAW`, `cap_sys_admin`), or `ALL`".into()
            }
            SecurityError::UnavailableCapability(_) => {
                "leave it out; `grep CapBnd /proc/self/status` shows what manifold's own process may pass on".into()
            }
            SecurityError::InvalidOption(_) | SecurityError::UnsupportedOption(_) => {
                "manifold knows `--security-opt seccomp=unconfined|builtin|FILE` and `--security-opt no-new-privileges[=true|false]`".into()
            }
            SecurityError::InvalidBool { .. } => {
                "write `no-new-privileges`, `no-new-privileges=true` or `no-new-privileges=false`".into()
            }
            SecurityError::ReadProfile { .. } | SecurityError::Profile { .. } => {
                "give a profile in docker's seccomp JSON format, or `seccomp=unconfined` to run without one".into()
            }
        })
    }
}

/// A set of capabilities, as the kernel's bit mask (what /proc/PID/status shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    pub fn from_mask(mask: u64) -> CapSet {
        CapSet(mask & ((1u64 << CAPABILITIES.len()) - 1))
    }

    pub fn mask(self) -> u64 {
        self.0
    }

    /// The capabilities numbered 0 to `last` (the kernel's `cap_last_cap`).
    pub fn up_to(last: u8) -> CapSet {
        let n = (last as usize + 1).min(CAPABILITIES.len());
        CapSet((1u64 << n) - 1)
    }

    pub fn of(caps: &[Capability]) -> CapSet {
        let mut set = CapSet::EMPTY;
        for c in caps {
            set.insert(*c);
        }
        set
    }

    pub fn contains(self, cap: Capability) -> bool {
        self.0 & bit(cap) != 0
    }

    pub fn insert(&mut self, cap: Capability) {
        self.0 |= bit(cap);
    }

    pub fn remove(&mut self, cap: Capability) {
        self.0 &= !bit(cap);
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        CAPABILITIES
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, c)| c)
    }

    /// `CAP_…` names, in number order.
    pub fn names(self) -> Vec<String> {
        self.iter().map(cap_name).collect()
    }

    /// Whether the set holds the capability a seccomp profile names (`CAP_SYS_ADMIN`); a name
    /// this build does not know is never held.
    pub fn contains_name(self, name: &str) -> bool {
        self.iter().any(|c| cap_name(c) == name)
    }

    pub fn to_oci(self) -> oci_spec::runtime::Capabilities {
        self.iter().collect()
    }
}

fn bit(cap: Capability) -> u64 {
    let n = CAPABILITIES
        .iter()
        .position(|c| *c == cap)
        .expect("every capability is in the table");
    1 << n
}

/// `CAP_NET_RAW`.
pub fn cap_name(cap: Capability) -> String {
    format!("CAP_{cap}")
}

/// A capability as docker's flags take it: any case, with or without `CAP_`.
pub fn parse_capability(name: &str) -> Result<Capability, SecurityError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .into_iter()
        .find(|c| c.to_string() == bare)
        .ok_or_else(|| SecurityError::UnknownCapability(name.to_string()))
}

/// What manifold needs to know about the host to confine a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The architecture as libseccomp names it (`amd64`, `arm64`, `ppc64le`…): what the
    /// `arches` of a seccomp rule are matched against.
    pub arch: &'static str,
    /// (version, major revision) of the running kernel.
    pub kernel: (u32, u32),
    /// The capabilities a container can be given: those the kernel knows
    /// (`/proc/sys/kernel/cap_last_cap`) and manifold's own process holds in its bounding set
    /// (less when manifold itself runs in a container).
    pub capabilities: CapSet,
}

impl Host {
    /// This machine (read once per process).
    pub fn current() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(|| {
            let release = rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned();
            let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(CAPABILITIES.len() as u8 - 1);
            let bounding = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("CapBnd:"))
                        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                })
                .map_or(CapSet::up_to(last_cap), CapSet::from_mask);
            Host {
                arch: native_arch(),
                kernel: kernel_version(&release).unwrap_or((0, 0)),
                capabilities: CapSet::from_mask(CapSet::up_to(last_cap).mask() & bounding.mask()),
            }
        })
    }
}

/// libseccomp's name of the host's architecture (moby's `goToNative`, from the platform's
/// Go name).
fn native_arch() -> &'static str {
    match crate::platform::Platform::host().architecture.as_str() {
        "386" => "x86",
        "amd64" => "amd64",
        "arm" => "arm",
        "arm64" => "arm64",
        "loong64" => "loong64",
        "mips" => "mips",
        "mipsle" => "mipsel",
        "mips64" => "mips64",
        "mips64le" => "mipsel64",
        "ppc" => "ppc",
        "ppc64" => "ppc64",
        "ppc64le" => "ppc64le",
        "riscv64" => "riscv64",
        "s390" => "s390",
        "s390x" => "s390x",
        _ => "unknown",
    }
}

/// `6.1.0-18-amd64` → (6, 1).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let version = parts.next()?.parse().ok()?;
    let major = parts.next()?.parse().ok()?;
    Some((version, major))
}

/// The seccomp filter a container runs under.
#[derive(Debug, Clone, PartialEq)]
pub enum Seccomp {
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile in docker's format, converted for the container's capabilities when its
    /// bundle is written.
    Profile(Arc<Profile>),
}

/// The confinement of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    /// The bounding set; also the effective and permitted sets (as runc and docker give them:
    /// for a non-root user, exec clears them).
    pub capabilities: CapSet,
    pub seccomp: Seccomp,
    pub no_new_privileges: bool,
    /// `--privileged`: every capability, no seccomp filter, no masked or read-only paths,
    /// /sys writable, every device allowed by the device cgroup.
    pub privileged: bool,
}

impl Default for Security {
    fn default() -> Security {
        Security {
            capabilities: CapSet::of(&DEFAULT_CAPABILITIES),
            seccomp: Seccomp::Profile(Profile::builtin()),
            no_new_privileges: false,
            privileged: false,
        }
    }
}

/// docker's security flags as given.
#[derive(Debug, Clone, Default)]
pub struct SecurityFlags {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--security-opt` values.
    pub options: Vec<String>,
}

impl Security {
    /// docker's rules: `--cap-add ALL` is every capability but those dropped, `--cap-drop ALL`
    /// keeps only those added, otherwise drops apply to the default set and adds on top;
    /// `--privileged` gives everything whatever the other flags say (they are still checked).
    pub fn from_flags(flags: &SecurityFlags, host: &Host) -> Result<Security, SecurityError> {
        let mut security = Security::default();
        let parse = |names: &[String]| -> Result<(bool, CapSet), SecurityError> {
            let mut all = false;
            let mut set = CapSet::EMPTY;
            for name in names {
                if name.trim().eq_ignore_ascii_case("ALL") {
                    all = true;
                    continue;
                }
                let cap = parse_capability(name)?;
                if !host.capabilities.contains(cap) {
                    return Err(SecurityError::UnavailableCapability(cap_name(cap)));
                }
                set.insert(cap);
            }
            Ok((all, set))
        };
        let (add_all, add) = parse(&flags.cap_add)?;
        let (drop_all, drop) = parse(&flags.cap_drop)?;
        let mut caps = if add_all {
            host.capabilities
        } else if drop_all {
            CapSet::EMPTY
        } else {
            security.capabilities
        };
        for c in drop.iter() {
            caps.remove(c);
        }
        if !add_all {
            for c in add.iter() {
                caps.insert(c);
            }
        }
        security.capabilities = caps;

        for opt in &flags.options {
            let (key, value) = match opt.split_once('=').or_else(|| opt.split_once(':')) {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("no-new-privileges", None) => security.no_new_privileges = true,
                ("no-new-privileges", Some(v)) => {
                    security.no_new_privileges = match v.to_ascii_lowercase().as_str() {
                        "true" | "1" | "t" => true,
                        "false" | "0" | "f" => false,
                        _ => {
                            return Err(SecurityError::InvalidBool {
                                value: v.to_string(),
                            });
                        }
                    }
                }
                ("seccomp", Some("unconfined")) => security.seccomp = Seccomp::Unconfined,
                ("seccomp", Some("builtin")) => {
                    security.seccomp = Seccomp::Profile(Profile::builtin())
                }
                ("seccomp", Some(file)) if !file.is_empty() => {
                    let path = PathBuf::from(file);
                    let text = std::fs::read_to_string(&path).map_err(|source| {
                        SecurityError::ReadProfile {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let profile = Profile::from_json(&text)
                        .map_err(|source| SecurityError::Profile { path, source })?;
                    security.seccomp = Seccomp::Profile(Arc::new(profile));
                }
                // What manifold never applies is already unconfined.
                ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
                ("apparmor" | "label", Some(_)) => {
                    return Err(SecurityError::UnsupportedOption(opt.clone()));
                }
                _ => return Err(SecurityError::InvalidOption(opt.clone())),
            }
        }

        if flags.privileged {
            security.privileged = true;
            security.capabilities = host.capabilities;
        }
        Ok(security)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            arch: "amd64",
            kernel: (6, 1),
            capabilities: CapSet::up_to(40),
        }
    }

    fn flags(add: &[&str], drop: &[&str], privileged: bool, opts: &[&str]) -> SecurityFlags {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        SecurityFlags {
            cap_add: v(add),
            cap_drop: v(drop),
            privileged,
            options: v(opts),
        }
    }

    #[test]
    fn the_table_matches_the_kernel_numbers() {
        // Spot checks against linux/capability.h.
        assert_eq!(bit(Capability::Chown), 1 << 0);
        assert_eq!(bit(Capability::NetRaw), 1 << 13);
        assert_eq!(bit(Capability::SysAdmin), 1 << 21);
        assert_eq!(bit(Capability::Mknod), 1 << 27);
        assert_eq!(bit(Capability::AuditWrite), 1 << 29);
        assert_eq!(bit(Capability::Setfcap), 1 << 31);
        assert_eq!(bit(Capability::CheckpointRestore), 1 << 40);
        // docker's 14, as runc showed them in CapBnd before this change.
        let docker = CapSet::of(&DEFAULT_CAPABILITIES[..]).mask()
            | bit(Capability::NetRaw)
            | bit(Capability::Mknod)
            | bit(Capability::AuditWrite);
        assert_eq!(docker, 0xa80425fb);
        assert_eq!(CapSet::of(&DEFAULT_CAPABILITIES).mask(), 0x800405fb);
        assert_eq!(CapSet::up_to(40).iter().count(), 41);
        assert_eq!(CapSet::up_to(37).mask(), (1 << 38) - 1);
    }

    #[test]
    fn names_any_case_with_or_without_cap() {
        for n in ["NET_RAW", "net_raw", "CAP_NET_RAW", "cap_Net_Raw"] {
            assert_eq!(parse_capability(n).unwrap(), Capability::NetRaw, "{n}");
        }
        assert!(matches!(
            parse_capability("NET_WIZARD"),
            Err(SecurityError::UnknownCapability(n)) if n == "NET_WIZARD"
        ));
        assert_eq!(
            CapSet::of(&[Capability::SysAdmin, Capability::Chown]).names(),
            ["CAP_CHOWN", "CAP_SYS_ADMIN"]
        );
        assert!(CapSet::of(&[Capability::SysAdmin]).contains_name("CAP_SYS_ADMIN"));
        assert!(!CapSet::of(&[Capability::SysAdmin]).contains_name("CAP_FUTURE"));
    }

    #[test]
    fn add_and_drop_like_docker() {
        let h = host();
        let caps = |f: SecurityFlags| Security::from_flags(&f, &h).unwrap().capabilities;
        let default = CapSet::of(&DEFAULT_CAPABILITIES);
        assert_eq!(caps(flags(&[], &[], false, &[])), default);
        let c = caps(flags(&["net_raw"], &["CAP_CHOWN"], false, &[]));
        assert!(c.contains(Capability::NetRaw) && !c.contains(Capability::Chown));
        assert_eq!(caps(flags(&[], &["ALL"], false, &[])), CapSet::EMPTY);
        assert_eq!(
            caps(flags(&["KILL"], &["all"], false, &[])),
            CapSet::of(&[Capability::Kill])
        );
        let c = caps(flags(&["ALL"], &["SYS_ADMIN"], false, &[]));
        assert_eq!(c, {
            let mut all = CapSet::up_to(40);
            all.remove(Capability::SysAdmin);
            all
        });
        let p = Security::from_flags(&flags(&[], &["ALL"], true, &[]), &h).unwrap();
        assert!(p.privileged);
        assert_eq!(p.capabilities, CapSet::up_to(40));
        // A capability newer than the kernel, or one manifold itself lacks.
        let old = Host {
            capabilities: CapSet::up_to(37),
            ..h
        };
        let e = Security::from_flags(&flags(&["BPF"], &[], false, &[]), &old).unwrap_err();
        assert!(matches!(e, SecurityError::UnavailableCapability(n) if n == "CAP_BPF"));
        assert_eq!(
            Security::from_flags(&flags(&["ALL"], &[], true, &[]), &old)
                .unwrap()
                .capabilities,
            CapSet::up_to(37)
        );
        let e = Security::from_flags(&flags(&[], &["NOPE"], false, &[]), &h).unwrap_err();
        assert!(matches!(e, SecurityError::UnknownCapability(n) if n == "NOPE"));
    }

    #[test]
    fn security_options() {
        let h = host();
        let sec = |opts: &[&str]| Security::from_flags(&flags(&[], &[], false, opts), &h);
        assert!(!sec(&[]).unwrap().no_new_privileges);
        assert!(sec(&["no-new-privileges"]).unwrap().no_new_privileges);
        assert!(sec(&["no-new-privileges=true"]).unwrap().no_new_privileges);
        assert!(sec(&["no-new-privileges:true"]).unwrap().no_new_privileges);
        assert!(
            !sec(&["no-new-privileges", "no-new-privileges=false"])
                .unwrap()
                .no_new_privileges
        );
        assert!(matches!(
            sec(&["no-new-privileges=maybe"]),
            Err(SecurityError::InvalidBool { .. })
        ));
        assert_eq!(
            sec(&["seccomp=unconfined"]).unwrap().seccomp,
            Seccomp::Unconfined
        );
        assert_eq!(
            sec(&["seccomp=unconfined", "seccomp=builtin"])
                .unwrap()
                .seccomp,
            Seccomp::Profile(Profile::builtin())
        );
        assert!(sec(&["apparmor=unconfined", "label=disable"]).is_ok());
        assert!(matches!(
            sec(&["apparmor=docker-default"]),
            Err(SecurityError::UnsupportedOption(_))
        ));
        for bad in ["seccomp", "seccomp=", "nonsense", "systempaths=unconfined"] {
            assert!(
                matches!(sec(&[bad]), Err(SecurityError::InvalidOption(_))),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = sec(&[&format!("seccomp={}", missing.display())]).unwrap_err();
        assert!(matches!(e, SecurityError::ReadProfile { .. }));
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, "{\"defaultAction\": \"SCMP_ACT_MAYBE\"}").unwrap();
        let e = sec(&[&format!("seccomp={}", junk.display())]).unwrap_err();
        assert!(matches!(e, SecurityError::Profile { .. }));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("4.8"), Some((4, 8)));
        assert_eq!(kernel_version("3.12-rc5"), Some((3, 12)));
        assert_eq!(kernel_version("junk"), None);
        assert!(Host::current().kernel >= (3, 0));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Host::current().arch, "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(Host::current().arch, "arm64");
    }
}
