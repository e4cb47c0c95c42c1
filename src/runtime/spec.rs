//! The OCI runtime bundle's config.json (oci-spec's `Spec`), from the image config and the
//! run options, with docker's defaults: masked and read-only paths, the /proc /dev /dev/pts
//! /dev/shm /dev/mqueue /sys mounts, and /etc/hosts, /etc/hostname and /etc/resolv.conf
//! bind-mounted from the bundle; the confinement (capabilities, seccomp, no-new-privileges,
//! `--privileged`) from [`security`] and [`seccomp`]. Pure: the caller passes in what it read
//! from the system (rlimits, terminal size, the host's kernel).

pub mod seccomp;
pub mod security;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

pub use self::security::{CapSet, Host, Seccomp, Security, SecurityFlags};
use super::network::Namespace;
use super::resources::Resources;
use super::user::ExecUser;

/// Docker's masked paths (moby's `oci/defaults.go`).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A `-v SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ExecUser,
    pub terminal: bool,
    /// (rows, columns) of the terminal, with `terminal`.
    pub console_size: Option<(u16, u16)>,
    pub hostname: String,
    pub read_only: bool,
    /// The network namespace (see `network::ContainerNetwork::namespace`).
    pub network: Namespace,
    pub binds: Vec<Bind>,
    /// Bundle files bind-mounted over /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub hosts: PathBuf,
    pub hostname_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// RLIMIT_NOFILE (soft, hard): the caller's own, never above its hard limit.
    pub nofile: (u64, u64),
    pub cgroups_path: String,
    pub annotations: HashMap<String, String>,
    /// `--memory`, `--cpus`, `--pids-limit`.
    pub resources: Resources,
    pub security: Security,
    pub host: Host,
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(kind)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("a valid mount")
}

fn bind(dest: &str, source: &std::path::Path, read_only: bool) -> Mount {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if read_only {
        options.push("ro".into());
    }
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .expect("a valid bind mount")
}

/// The seccomp filter of a process with bounding set `caps` (a container's first process, or
/// one exec'd into it): `None` when unconfined or privileged.
pub fn seccomp_filter(
    security: &Security,
    caps: CapSet,
    host: &Host,
) -> Option<oci_spec::runtime::LinuxSeccomp> {
    match &security.seccomp {
        _ if security.privileged => None,
        Seccomp::Unconfined => None,
        Seccomp::Profile(p) => p.to_oci(caps, host),
    }
}

pub fn build(input: &SpecInput) -> Spec {
    let security = &input.security;
    let caps = security.capabilities.to_oci();
    // Inheritable and ambient stay empty: with them a non-root user would keep capabilities
    // across exec (CVE-2022-24769). Effective and permitted are the bounding set, as runc and
    // docker give them; for a non-root user, exec clears them.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .expect("valid capabilities");
    let mut user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid);
    if !input.user.additional_gids.is_empty() {
        user = user.additional_gids(input.user.additional_gids.clone());
    }
    let mut process = ProcessBuilder::default()
        .terminal(input.terminal)
        .user(user.build().expect("a valid user"))
        .args(input.args.clone())
        .env(input.env.clone())
        .cwd(&input.cwd)
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(input.nofile.0.min(input.nofile.1))
                .hard(input.nofile.1)
                .build()
                .expect("a valid rlimit"),
        ])
        .no_new_privileges(security.no_new_privileges);
    if let (true, Some((rows, cols))) = (input.terminal, input.console_size) {
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(rows as u64)
            .width(cols as u64)
            .build()
            .expect("a valid console size");
        process = process.console_size(size);
    }
    let process = process.build().expect("a valid process");

    let (sys_options, cgroup_options): (&[&str], &[&str]) = if security.privileged {
        (
            &["nosuid", "noexec", "nodev", "rw"],
            &["nosuid", "noexec", "nodev", "relatime", "rw"],
        )
    } else {
        (
            &["nosuid", "noexec", "nodev", "ro"],
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount("/sys", "sysfs", "sysfs", sys_options),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup_options),
    ];
    mounts.push(bind("/etc/hosts", &input.hosts, false));
    mounts.push(bind("/etc/hostname", &input.hostname_file, false));
    mounts.push(bind("/etc/resolv.conf", &input.resolv_conf, false));
    for b in &input.binds {
        mounts.push(bind(&b.destination, &b.source, b.read_only));
    }

    let mut namespaces = vec![
        (LinuxNamespaceType::Pid, None),
        (LinuxNamespaceType::Ipc, None),
        (LinuxNamespaceType::Uts, None),
        (LinuxNamespaceType::Mount, None),
    ];
    match &input.network {
        Namespace::Host => {}
        Namespace::New => namespaces.push((LinuxNamespaceType::Network, None)),
        Namespace::Join(path) => {
            namespaces.push((LinuxNamespaceType::Network, Some(path.clone())));
        }
    }
    let namespaces: Vec<_> = namespaces
        .into_iter()
        .map(|(t, path)| {
            let mut ns = LinuxNamespaceBuilder::default().typ(t);
            if let Some(p) = path {
                ns = ns.path(p);
            }
            ns.build().expect("a valid namespace")
        })
        .collect();
    let resources = input
        .resources
        .apply(LinuxResourcesBuilder::default())
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(security.privileged)
                .access("rwm")
                .build()
                .expect("a valid device rule"),
        ])
        .build()
        .expect("valid resources");
    let (masked, readonly): (&[&str], &[&str]) = if security.privileged {
        (&[], &[])
    } else {
        (&MASKED_PATHS, &READONLY_PATHS)
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(readonly.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .resources(resources)
        .cgroups_path(&input.cgroups_path);
    if let Some(filter) = seccomp_filter(security, security.capabilities, &input.host) {
        linux = linux.seccomp(filter);
    }
    let linux = linux.build().expect("a valid linux section");

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(input.read_only)
                .build()
                .expect("a valid root"),
        )
        .hostname(&input.hostname)
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .expect("a valid spec");
    if !input.annotations.is_empty() {
        spec.set_annotations(Some(input.annotations.clone()));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SpecInput {
        SpecInput {
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/work".into(),
            user: ExecUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10],
                home: "/home/app".into(),
                name: Some("app".into()),
            },
            terminal: true,
            console_size: Some((24, 80)),
            hostname: "box".into(),
            read_only: true,
            network: Namespace::New,
            binds: vec![Bind {
                source: "/host/data".into(),
                destination: "/data".into(),
                read_only: true,
            }],
            hosts: "/b/hosts".into(),
            hostname_file: "/b/hostname".into(),
            resolv_conf: "/b/resolv.conf".into(),
            nofile: (1024, 4096),
            cgroups_path: "/manifold/abc".into(),
            annotations: HashMap::new(),
            resources: Resources::default(),
            security: Security::default(),
            host: Host {
                arch: "amd64",
                kernel: (6, 1),
                capabilities: CapSet::up_to(40),
            },
        }
    }

    fn names(v: &serde_json::Value) -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn docker_defaults_in_the_json() {
        let spec = build(&input());
        let json: serde_json::Value = serde_json::to_value(&spec).unwrap();
        let p = &json["process"];
        assert_eq!(p["args"], serde_json::json!(["sh", "-c", "true"]));
        assert_eq!(p["cwd"], "/work");
        assert_eq!(p["terminal"], true);
        assert_eq!(
            p["consoleSize"],
            serde_json::json!({"height": 24, "width": 80})
        );
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["user"]["additionalGids"], serde_json::json!([10]));
        // podman's set: docker's less NET_RAW, MKNOD, AUDIT_WRITE.
        let caps = names(&p["capabilities"]["bounding"]);
        assert_eq!(
            caps,
            [
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_SETFCAP",
                "CAP_SETGID",
                "CAP_SETPCAP",
                "CAP_SETUID",
                "CAP_SYS_CHROOT"
            ]
        );
        assert_eq!(names(&p["capabilities"]["effective"]), caps);
        assert_eq!(names(&p["capabilities"]["permitted"]), caps);
        // Nothing a non-root user could keep across exec (CVE-2022-24769).
        assert_eq!(p["capabilities"]["inheritable"], serde_json::json!([]));
        assert_eq!(p["capabilities"]["ambient"], serde_json::json!([]));
        assert_eq!(p["noNewPrivileges"], false);
        let seccomp = &json["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            seccomp["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(p["rlimits"][0]["hard"], 4096);
        assert_eq!(
            json["root"],
            serde_json::json!({"path": "rootfs", "readonly": true})
        );
        assert_eq!(json["hostname"], "box");
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/sys",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/data",
        ] {
            assert!(dests.contains(&d), "{d} missing from {dests:?}");
        }
        let data = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert_eq!(
            data["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
        let ns: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid") && ns.contains(&"mount"));
        assert!(!ns.contains(&"user"));
        assert_eq!(json["linux"]["maskedPaths"].as_array().unwrap().len(), 11);
        assert!(
            json["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .contains(&"/proc/sys".into())
        );
        assert_eq!(json["linux"]["cgroupsPath"], "/manifold/abc");
    }

    #[test]
    fn host_network_shares_the_namespace_and_soft_never_exceeds_hard() {
        let mut i = input();
        i.network = Namespace::Host;
        i.nofile = (1 << 30, 20000);
        i.terminal = false;
        let json = serde_json::to_value(build(&i)).unwrap();
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
        assert_eq!(json["process"]["rlimits"][0]["soft"], 20000);
        assert_eq!(json["process"]["rlimits"][0]["hard"], 20000);
        assert!(json["process"].get("consoleSize").is_none());
    }

    #[test]
    fn added_capabilities_reach_the_seccomp_filter() {
        let mut i = input();
        i.security = Security::from_flags(
            &SecurityFlags {
                cap_add: vec!["sys_admin".into()],
                cap_drop: vec!["CAP_CHOWN".into()],
                options: vec!["no-new-privileges".into()],
                ..Default::default()
            },
            &i.host,
        )
        .unwrap();
        let json = serde_json::to_value(build(&i)).unwrap();
        let bounding = names(&json["process"]["capabilities"]["bounding"]);
        assert!(bounding.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!bounding.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(json["process"]["noNewPrivileges"], true);
        let allows_mount = json["linux"]["seccomp"]["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["names"].as_array().unwrap().contains(&"mount".into()));
        assert!(allows_mount);
    }

    #[test]
    fn unconfined_and_privileged() {
        let mut i = input();
        i.security.seccomp = Seccomp::Unconfined;
        let json = serde_json::to_value(build(&i)).unwrap();
        assert!(json["linux"].get("seccomp").is_none());
        assert_eq!(json["linux"]["maskedPaths"].as_array().unwrap().len(), 11);

        let mut i = input();
        i.security = Security::from_flags(
            &SecurityFlags {
                privileged: true,
                ..Default::default()
            },
            &i.host,
        )
        .unwrap();
        let json = serde_json::to_value(build(&i)).unwrap();
        assert_eq!(
            json["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            41
        );
        assert!(json["linux"].get("seccomp").is_none());
        assert_eq!(json["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(json["linux"]["readonlyPaths"], serde_json::json!([]));
        assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], true);
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().contains(&"rw".into()));
    }

    #[test]
    fn a_private_network_joins_the_namespace_manifold_made() {
        let mut i = input();
        i.network = Namespace::Join("/proc/42/fd/7".into());
        let json = serde_json::to_value(build(&i)).unwrap();
        let net: Vec<&serde_json::Value> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0]["path"], "/proc/42/fd/7");
    }
}
