//! Resource limits (`--memory`, `--cpus`, `--pids-limit`): docker's values, whether this machine
//! lets them be applied, and what the runtime is told (`linux.resources` of the bundle: runc
//! writes them into the container's cgroup).
//!
//! Whether they can be applied is decided before anything is made, from the cgroup filesystem:
//! on cgroup v2 (`/sys/fs/cgroup` is cgroup2) the controller must be enabled there; on cgroup v1
//! or the hybrid layout (`/sys/fs/cgroup` a tmpfs of v1 hierarchies, cgroup2 beside them in
//! `unified/` without controllers — runc then uses v1) a hierarchy with the controller must be
//! mounted. As root that is enough. A user who is not root can only use what a cgroup v2
//! hierarchy delegates to them (systemd's `Delegate=`): v1 hierarchies are never delegated, and
//! a v2 controller counts only when the user's own cgroup tree has it. Otherwise the flag is an
//! error saying which controller is missing and why, never silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The period of `--cpus` (docker's: 100 ms).
pub const CPU_PERIOD: u64 = 100_000;
/// docker's smallest `--memory`.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What the flags asked for; all unset by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Microseconds of CPU per [`CPU_PERIOD`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("invalid `{flag}` value `{value}`: {why}")]
    Invalid {
        flag: &'static str,
        value: String,
        why: BadLimit,
    },
    #[error("`{flag}` cannot be applied: {why}")]
    Unavailable {
        flag: &'static str,
        why: CgroupUnavailable,
        rootless: bool,
    },
}

/// What is wrong with a limit's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLimit {
    #[error("expected a size such as 512m or 1g")]
    NotASize,
    #[error("the smallest limit is 6m")]
    MemoryTooSmall,
    #[error("expected a number of CPUs such as 1.5")]
    NotCpus,
    #[error("this machine has {online} CPUs: the range is 0.01 to {online}")]
    TooManyCpus { online: usize },
    #[error("the smallest value is 0.01")]
    TooFewCpus,
}

/// Why a cgroup controller cannot be set by this user (the hint is `ResourceError`'s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupUnavailable {
    #[error("the cgroup `{controller}` controller is not mounted (cgroup v1)")]
    V1NotMounted { controller: String },
    #[error("cgroup v1 cannot be delegated to a user, and manifold runs as user {uid}, not root")]
    V1NotRoot { uid: u32 },
    #[error("the cgroup v2 hierarchy does not enable the `{controller}` controller")]
    V2NotEnabled { controller: String },
    #[error("no cgroup is delegated to user {uid} (rootless without delegation)")]
    NoDelegation { uid: u32 },
    #[error(
        "the `{controller}` controller is not delegated to user {uid} (rootless without delegation of it)"
    )]
    NotDelegated { controller: String, uid: u32 },
}

impl crate::hint::Hint for ResourceError {
    fn hint(&self) -> Option<String> {
        match self {
            ResourceError::Unavailable { rootless: true, .. } => Some(
                "run as root, or on cgroup v2 in a cgroup systemd delegates to you \
                 (`systemd-run --user --scope -p Delegate=yes manifold run …`); \
                 or leave the limit out"
                    .into(),
            ),
            ResourceError::Unavailable { .. } => {
                Some("mount the controller's cgroup hierarchy, or leave the limit out".into())
            }
            ResourceError::Invalid { .. } => None,
        }
    }
}

/// docker's sizes: a number with an optional unit b, k, m, g, t (powers of 1024, any case, an
/// optional trailing `b`): `512m`, `1g`, `1.5g`, `1048576`.
pub fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let n: f64 = number.parse().ok()?;
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let v = n * scale as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

impl Resources {
    /// From the flags' values, checked as docker checks them.
    pub fn parse(
        memory: Option<&str>,
        cpus: Option<&str>,
        pids_limit: Option<i64>,
    ) -> Result<Resources, ResourceError> {
        let mut out = Resources::default();
        if let Some(m) = memory {
            let bad = |why: BadLimit| ResourceError::Invalid {
                flag: "--memory",
                value: m.to_string(),
                why,
            };
            let bytes = parse_size(m).ok_or_else(|| bad(BadLimit::NotASize))?;
            if bytes < MIN_MEMORY {
                return Err(bad(BadLimit::MemoryTooSmall));
            }
            out.memory = Some(bytes);
        }
        if let Some(c) = cpus {
            let bad = |why: BadLimit| ResourceError::Invalid {
                flag: "--cpus",
                value: c.to_string(),
                why,
            };
            let n: f64 = c
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite() && *n > 0.0)
                .ok_or_else(|| bad(BadLimit::NotCpus))?;
            let online = std::thread::available_parallelism().map_or(1, |n| n.get());
            if n > online as f64 {
                return Err(bad(BadLimit::TooManyCpus { online }));
            }
            let quota = (n * CPU_PERIOD as f64).round() as u64;
            if quota < 1000 {
                return Err(bad(BadLimit::TooFewCpus));
            }
            out.cpu_quota = Some(quota);
        }
        // docker: 0 and negative values mean no limit.
        out.pids_limit = pids_limit.filter(|n| *n > 0).map(|n| n as u64);
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }

    /// The controllers these limits need, with the flag that needs each.
    fn controllers(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.memory.is_some() {
            out.push(("--memory", "memory"));
        }
        if self.cpu_quota.is_some() {
            out.push(("--cpus", "cpu"));
        }
        if self.pids_limit.is_some() {
            out.push(("--pids-limit", "pids"));
        }
        out
    }

    /// An error naming the first limit this machine (for this user) cannot apply.
    pub fn check(&self) -> Result<(), ResourceError> {
        if self.is_empty() {
            return Ok(());
        }
        let layout = Layout::detect(Path::new(CGROUP_ROOT));
        // Root in manifold's user namespace is the user outside it (rootless).
        let root = super::is_root() && crate::userns::current().is_none();
        let uid = crate::userns::host_uid();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for (flag, controller) in self.controllers() {
            if let Err(why) = layout.usable(controller, root, uid, &own) {
                return Err(ResourceError::Unavailable {
                    flag,
                    why,
                    rootless: !root,
                });
            }
        }
        Ok(())
    }

    /// The bundle's `linux.resources` additions.
    pub fn apply(
        &self,
        mut builder: oci_spec::runtime::LinuxResourcesBuilder,
    ) -> oci_spec::runtime::LinuxResourcesBuilder {
        use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder};
        if let Some(m) = self.memory {
            builder = builder.memory(
                LinuxMemoryBuilder::default()
                    .limit(m as i64)
                    .build()
                    .expect("a valid memory limit"),
            );
        }
        if let Some(q) = self.cpu_quota {
            builder = builder.cpu(
                LinuxCpuBuilder::default()
                    .quota(q as i64)
                    .period(CPU_PERIOD)
                    .build()
                    .expect("a valid CPU limit"),
            );
        }
        if let Some(p) = self.pids_limit {
            builder = builder.pids(
                LinuxPidsBuilder::default()
                    .limit(p as i64)
                    .build()
                    .expect("a valid pids limit"),
            );
        }
        builder
    }
}

/// How the cgroup filesystem is laid out (what runc decides from the same facts).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// cgroup2 at the root: the controllers it enables.
    V2 {
        root: PathBuf,
        controllers: Vec<String>,
    },
    /// v1 hierarchies (legacy, or hybrid with an empty cgroup2 beside them): the controllers
    /// mounted, with their mount points.
    V1 { hierarchies: Vec<(String, PathBuf)> },
}

impl Layout {
    fn detect(root: &Path) -> Layout {
        let is_cgroup2 = rustix::fs::statfs(root)
            .map(|s| s.f_type as u64 == 0x6367_7270)
            .unwrap_or(false);
        if is_cgroup2 {
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            return Layout::V2 {
                root: root.to_path_buf(),
                controllers,
            };
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Layout::V1 {
            hierarchies: v1_hierarchies(&mountinfo),
        }
    }

    /// Ok when `controller` can be set by this user; else why not.
    fn usable(
        &self,
        controller: &str,
        root: bool,
        uid: u32,
        own: &str,
    ) -> Result<(), CgroupUnavailable> {
        let controller_name = || controller.to_string();
        match self {
            Layout::V1 { hierarchies } => {
                if !hierarchies.iter().any(|(c, _)| c == controller) {
                    return Err(CgroupUnavailable::V1NotMounted {
                        controller: controller_name(),
                    });
                }
                if !root {
                    return Err(CgroupUnavailable::V1NotRoot { uid });
                }
                Ok(())
            }
            Layout::V2 {
                root: dir,
                controllers,
            } => {
                if !controllers.iter().any(|c| c == controller) {
                    return Err(CgroupUnavailable::V2NotEnabled {
                        controller: controller_name(),
                    });
                }
                if root {
                    return Ok(());
                }
                // The user's part of the tree: the topmost cgroup on this process's path that
                // the user owns (where systemd delegated), whose children may use what it lists.
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let mut delegated = None;
                let mut dir_path = dir.clone();
                for part in path.split('/').filter(|p| !p.is_empty()) {
                    dir_path.push(part);
                    let owned = std::fs::metadata(&dir_path)
                        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
                        .unwrap_or(false);
                    if owned && delegated.is_none() {
                        delegated = Some(dir_path.clone());
                    }
                }
                let Some(top) = delegated else {
                    return Err(CgroupUnavailable::NoDelegation { uid });
                };
                let has = std::fs::read_to_string(top.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .any(|c| c == controller);
                if has {
                    Ok(())
                } else {
                    Err(CgroupUnavailable::NotDelegated {
                        controller: controller_name(),
                        uid,
                    })
                }
            }
        }
    }
}

/// cgroup v1's controllers (the other super options of a v1 mount are mount options).
const V1_CONTROLLERS: [&str; 14] = [
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The v1 hierarchies in a mountinfo text: each controller (from the super options) and where
/// it is mounted.
fn v1_hierarchies(mountinfo: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let options = r.nth(1).unwrap_or("");
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        for o in options.split(',').filter(|o| V1_CONTROLLERS.contains(o)) {
            out.push((o.to_string(), PathBuf::from(point)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_values() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("64mb"), Some(64 << 20));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1x"), None);
        let r = Resources::parse(Some("64m"), Some("0.5"), Some(20)).unwrap();
        assert_eq!(r.memory, Some(64 << 20));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.pids_limit, Some(20));
        assert!(Resources::parse(None, None, Some(-1)).unwrap().is_empty());
        assert!(Resources::parse(None, None, Some(0)).unwrap().is_empty());
        for (m, c) in [
            (Some("1m"), None),
            (Some("x"), None),
            (None, Some("0")),
            (None, Some("-1")),
            (None, Some("0.001")),
            (None, Some("100000")),
            (None, Some("many")),
        ] {
            assert!(Resources::parse(m, c, None).is_err(), "{m:?} {c:?}");
        }
        assert_eq!(
            Resources::parse(Some("1m"), None, None)
                .unwrap_err()
                .to_string(),
            "invalid `--memory` value `1m`: the smallest limit is 6m"
        );
    }

    #[test]
    fn the_spec_gets_the_limits() {
        let r = Resources::parse(Some("64m"), Some("1"), Some(10)).unwrap();
        let res = r
            .apply(oci_spec::runtime::LinuxResourcesBuilder::default())
            .build()
            .unwrap();
        let json = serde_json::to_value(&res).unwrap();
        assert_eq!(json["memory"]["limit"], 64 << 20);
        assert_eq!(json["cpu"]["quota"], 100_000);
        assert_eq!(json["cpu"]["period"], 100_000);
        assert_eq!(json["pids"]["limit"], 10);
    }

    #[test]
    fn what_each_layout_allows() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
        let h = v1_hierarchies(info);
        let names: Vec<&str> = h.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["memory", "cpu", "cpuacct"]);
        let v1 = Layout::V1 { hierarchies: h };
        assert!(v1.usable("memory", true, 0, "").is_ok());
        let e = v1.usable("pids", true, 0, "").unwrap_err().to_string();
        assert_eq!(e, "the cgroup `pids` controller is not mounted (cgroup v1)");
        let e = v1
            .usable("memory", false, 1000, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be delegated"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let user = dir.path().join("user.slice/user-1000.slice");
        std::fs::create_dir_all(&user).unwrap();
        let v2 = Layout::V2 {
            root: dir.path().to_path_buf(),
            controllers: vec!["memory".into(), "pids".into()],
        };
        assert!(v2.usable("memory", true, 0, "").is_ok());
        assert!(
            v2.usable("cpu", true, 0, "")
                .unwrap_err()
                .to_string()
                .contains("`cpu`")
        );
        // The tree belongs to whoever runs the test: delegated when it lists the controller.
        let own = "0::/user.slice/user-1000.slice\n";
        std::fs::write(dir.path().join("user.slice/cgroup.controllers"), "memory\n").unwrap();
        assert!(v2.usable("memory", false, uid, own).is_ok());
        let e = v2.usable("pids", false, uid, own).unwrap_err().to_string();
        assert!(e.contains("not delegated"), "{e}");
        let e = v2
            .usable("memory", false, uid + 1, own)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no cgroup is delegated"), "{e}");
    }
}
