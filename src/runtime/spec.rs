//! The OCI runtime bundle's config.json (oci-spec's `Spec`), from the image config and the
//! run options, with docker's defaults: its capability set, masked and read-only paths, the
//! /proc /dev /dev/pts /dev/shm /dev/mqueue /sys mounts, and /etc/hosts, /etc/hostname and
//! /etc/resolv.conf bind-mounted from the bundle. Pure: the caller passes in what it read from
//! the system (rlimits, terminal size).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::network::Namespace;
use super::user::ExecUser;

/// Docker's default capabilities (moby's `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

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

pub fn build(input: &SpecInput) -> Spec {
    let caps: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
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
        .no_new_privileges(false);
    if let (true, Some((rows, cols))) = (input.terminal, input.console_size) {
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(rows as u64)
            .width(cols as u64)
            .build()
            .expect("a valid console size");
        process = process.console_size(size);
    }
    let process = process.build().expect("a valid process");

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
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
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
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .expect("a valid device rule"),
        ])
        .build()
        .expect("valid resources");
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .resources(resources)
        .cgroups_path(&input.cgroups_path)
        .build()
        .expect("a valid linux section");

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
        }
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
        let mut caps: Vec<String> = p["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        caps.sort();
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&"CAP_NET_BIND_SERVICE".to_string()));
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
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
