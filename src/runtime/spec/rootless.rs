//! What a bundle changes when the OCI runtime runs inside manifold's user namespace (podman's
//! rootless rules, from what the kernel allows a user namespace):
//!
//! - no cgroups path and no resources: the user may not write the cgroups (runc's rootless
//!   cgroup manager leaves them alone then; manifold asks no limits anyway), so the device rule
//!   goes too — a user namespace cannot create device nodes, and runc bind-mounts the default
//!   ones from the host;
//! - `/sys` bind-mounted (read-only) instead of a new sysfs when the container shares the
//!   host's network namespace: sysfs may be mounted only by the owner of the network namespace,
//!   and the host's belongs to the initial user namespace;
//! - `/dev/pts` without `gid=5` when the namespace maps a single group (gid 5 does not exist
//!   there; the mount would be refused).

use std::path::Path;

use oci_spec::runtime::{Mount, MountBuilder, Spec};

/// What the namespace is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rootless {
    /// The namespace maps one id only.
    pub single_id: bool,
}

pub fn adjust(spec: &mut Spec, rootless: Rootless, host_network: bool) {
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(None);
        linux.set_resources(None);
    }
    let Some(mounts) = spec.mounts_mut() else {
        return;
    };
    for m in mounts.iter_mut() {
        let dest = m.destination().clone();
        if host_network && dest == Path::new("/sys") {
            *m = bind_sys(m);
        } else if rootless.single_id && dest == Path::new("/dev/pts") {
            let options: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.starts_with("gid="))
                .collect();
            m.set_options(Some(options));
        }
    }
}

/// The host's /sys, read-only unless the mount it replaces was writable (`--privileged`).
fn bind_sys(sysfs: &Mount) -> Mount {
    let writable = sysfs
        .options()
        .as_ref()
        .is_some_and(|o| o.iter().any(|x| x == "rw"));
    let mut options: Vec<String> = ["rbind", "nosuid", "noexec", "nodev"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    options.push(if writable { "rw" } else { "ro" }.into());
    MountBuilder::default()
        .destination("/sys")
        .typ("bind")
        .source("/sys")
        .options(options)
        .build()
        .expect("a valid bind mount")
}
