//! A container's root: overlayfs over the image's snapshots, with an upper and a work
//! directory of its own.
//!
//! Mount method, in order: the new mount API with one `lowerdir+` per layer (Linux 6.8+: no
//! length limit at all); else mount(2) with the classic option string when it fits in a page;
//! else mount(2) from a directory of short symlinks (`0`, `1`, …) to the layers, with relative
//! lowerdir paths resolved in a thread whose working directory is that directory (docker's
//! overlay2 does the same with its `l/` directory). overlayfs stacks at most 500 layers.
//!
//! In a user namespace (rootless, Linux 5.11+) the overlay is mounted with `userxattr`: its
//! metadata (opaque directories) lives in `user.overlay.*`, since `trusted.*` cannot be set
//! there; redirects and metacopy are then off by the kernel's own rule (asking for them with
//! `redirect_dir=off` is refused as a conflict, so the options are left out). Whiteouts stay
//! 0/0 character devices, which a user namespace may create since Linux 5.8.

use std::io;
use std::path::{Path, PathBuf};

use super::sys::{OverlayConfig, Syscalls};

/// overlayfs's limit on lower layers (OVL_MAX_STACK).
pub const MAX_LAYERS: usize = 500;

/// Options that keep the upper directory a plain diff of whole files: no redirects for renamed
/// directories, no metadata-only copy-ups, no inode index (commit reads the upper directory).
const OPTIONS: [(&str, &str); 3] = [
    ("index", "off"),
    ("redirect_dir", "off"),
    ("metacopy", "off"),
];

/// `volatile` (Linux 5.10+): no syncs of the upper filesystem. Without it, unmounting syncs the
/// whole upper filesystem (an ext4 journal commit: tens of milliseconds, most of `run --rm`'s
/// own cost). An upper directory is never mounted again, and one a crash left unsynced is only
/// ever read by `commit`, so nothing relies on those syncs. Kernels without it: mounted without.
const VOLATILE: &str = "volatile";

#[derive(Debug, Clone)]
pub struct Overlay {
    /// The image's layers, top-most first (overlayfs's order).
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// Where the short symlinks go when the option string is too long.
    pub links_dir: PathBuf,
    /// Mounted in a user namespace: metadata in `user.overlay.*`.
    pub userxattr: bool,
}

/// How the container's root was made (reported with `-v`, asserted by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Kernel overlayfs, new mount API.
    Fsconfig,
    /// Kernel overlayfs, mount(2) with an option string.
    Legacy,
    /// Kernel overlayfs, mount(2) through short links to the layers.
    ShortLinks,
    /// fuse-overlayfs (rootless, where the kernel refuses overlayfs in a user namespace).
    FuseOverlayfs,
    /// No overlay: the layers applied in a plain directory (see `rootfs`).
    Copy,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Fsconfig => "overlayfs (new mount API)",
            Method::Legacy => "overlayfs (mount options)",
            Method::ShortLinks => "overlayfs (mount options through short links)",
            Method::FuseOverlayfs => "fuse-overlayfs",
            Method::Copy => "a copy of the image's layers (no overlay)",
        })
    }
}

/// `\`, `:` and `,` would split the option string: escape them as overlayfs reads them.
fn escape(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The options besides the directories: with `userxattr`, index only (see the module doc).
fn options(userxattr: bool) -> &'static [(&'static str, &'static str)] {
    if userxattr { &OPTIONS[..1] } else { &OPTIONS }
}

fn option_string(
    lowers: &[String],
    upper: &Path,
    work: &Path,
    userxattr: bool,
    volatile: bool,
) -> String {
    let mut s = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        escape(upper),
        escape(work)
    );
    for (k, v) in options(userxattr) {
        s.push_str(&format!(",{k}={v}"));
    }
    if userxattr {
        s.push_str(",userxattr");
    }
    if volatile {
        s.push_str(&format!(",{VOLATILE}"));
    }
    s
}

/// mount(2) with `volatile`, again without it when the kernel does not know it.
fn legacy(sys: &dyn Syscalls, data: &str, target: &Path, cwd: Option<&Path>) -> io::Result<()> {
    match sys.mount_overlay_legacy(data, target, cwd) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let without = data.trim_end_matches(&format!(",{VOLATILE}"));
            sys.mount_overlay_legacy(without, target, cwd)
        }
        other => other,
    }
}

impl Overlay {
    pub fn mount(&self, sys: &dyn Syscalls) -> io::Result<Method> {
        if self.lowers.is_empty() {
            return Err(io::Error::other(
                "an overlay needs at least one lower layer",
            ));
        }
        if self.lowers.len() > MAX_LAYERS {
            return Err(io::Error::other(format!(
                "the image has {} layers; overlayfs stacks at most {MAX_LAYERS}",
                self.lowers.len()
            )));
        }
        let config = OverlayConfig {
            lowers: self.lowers.clone(),
            upper: self.upper.clone(),
            work: self.work.clone(),
            options: options(self.userxattr)
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: vec![VOLATILE.to_string()],
            userxattr: self.userxattr,
            target: self.target.clone(),
        };
        match sys.mount_overlay_fsconfig(&config) {
            Ok(()) => return Ok(Method::Fsconfig),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
            Err(e) => return Err(e),
        }
        // The option string must fit in a page, its terminating NUL included.
        let limit = sys.page_size() - 1;
        let lowers: Vec<String> = self.lowers.iter().map(|p| escape(p)).collect();
        let data = option_string(&lowers, &self.upper, &self.work, self.userxattr, true);
        if data.len() <= limit {
            legacy(sys, &data, &self.target, None)?;
            return Ok(Method::Legacy);
        }
        std::fs::create_dir_all(&self.links_dir)?;
        let mut short = Vec::with_capacity(self.lowers.len());
        for (i, lower) in self.lowers.iter().enumerate() {
            let link = self.links_dir.join(i.to_string());
            match std::fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::os::unix::fs::symlink(lower, &link)?;
            short.push(i.to_string());
        }
        let data = option_string(&short, &self.upper, &self.work, self.userxattr, true);
        if data.len() > limit {
            return Err(io::Error::other(format!(
                "the overlay options for {} layers do not fit in a page even with short names",
                self.lowers.len()
            )));
        }
        legacy(sys, &data, &self.target, Some(&self.links_dir))?;
        Ok(Method::ShortLinks)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sys::fake::FakeSyscalls;
    use super::*;

    fn overlay(dir: &Path, layers: usize, name_len: usize) -> Overlay {
        Overlay {
            lowers: (0..layers)
                .map(|i| dir.join(format!("{i:0>name_len$}")).join("fs"))
                .collect(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("rootfs"),
            links_dir: dir.join("l"),
            userxattr: false,
        }
    }

    #[test]
    fn prefers_the_new_mount_api() {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSyscalls::new(true);
        let o = overlay(dir.path(), 200, 64);
        assert_eq!(o.mount(&sys).unwrap(), Method::Fsconfig);
        assert_eq!(sys.calls().len(), 1);
        assert!(sys.calls()[0].starts_with("fsconfig lowers=200 "));
    }

    #[test]
    fn falls_back_to_an_option_string_that_fits() {
        let sys = FakeSyscalls::new(false);
        let o = overlay(Path::new("/s"), 3, 1);
        assert_eq!(o.mount(&sys).unwrap(), Method::Legacy);
        assert_eq!(
            sys.calls(),
            vec![
                "mount overlay /s/rootfs cwd=None data=lowerdir=/s/0/fs:/s/1/fs:/s/2/fs,upperdir=/s/upper,workdir=/s/work,index=off,redirect_dir=off,metacopy=off,volatile"
            ]
        );
    }

    #[test]
    fn in_a_user_namespace_metadata_goes_to_user_xattrs() {
        let sys = FakeSyscalls::new(false);
        let mut o = overlay(Path::new("/s"), 2, 1);
        o.userxattr = true;
        assert_eq!(o.mount(&sys).unwrap(), Method::Legacy);
        assert_eq!(
            sys.calls(),
            vec![
                "mount overlay /s/rootfs cwd=None data=lowerdir=/s/0/fs:/s/1/fs,upperdir=/s/upper,workdir=/s/work,index=off,userxattr,volatile"
            ]
        );
        let sys = FakeSyscalls::new(true);
        o.mount(&sys).unwrap();
        assert!(sys.calls()[0].ends_with(" userxattr"), "{:?}", sys.calls());
    }

    #[test]
    fn escapes_separators_in_paths() {
        let sys = FakeSyscalls::new(false);
        let o = Overlay {
            lowers: vec![PathBuf::from("/a:b,c")],
            upper: PathBuf::from("/u,1"),
            work: PathBuf::from("/w"),
            target: PathBuf::from("/t"),
            links_dir: PathBuf::from("/l"),
            userxattr: false,
        };
        o.mount(&sys).unwrap();
        assert!(sys.calls()[0].contains(r"lowerdir=/a\:b\,c,upperdir=/u\,1,"));
    }

    /// 120 layers of 64-hex names are ~9 kB of options: beyond a page, so short links.
    #[test]
    fn many_layers_go_through_short_links() {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSyscalls::new(false);
        let o = overlay(dir.path(), 120, 64);
        assert_eq!(o.mount(&sys).unwrap(), Method::ShortLinks);
        let call = &sys.calls()[0];
        assert!(
            call.contains(&format!("cwd=Some({:?})", dir.path().join("l"))),
            "{call}"
        );
        assert!(call.contains("data=lowerdir=0:1:2:3:"), "{call}");
        assert!(call.len() < 4096 + 100);
        for i in [0, 119] {
            assert_eq!(
                std::fs::read_link(dir.path().join("l").join(i.to_string())).unwrap(),
                o.lowers[i]
            );
        }
        // Mounting again (a restarted container) replaces the links.
        o.mount(&sys).unwrap();
    }

    #[test]
    fn refuses_more_than_overlayfs_stacks() {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSyscalls::new(true);
        let err = overlay(dir.path(), MAX_LAYERS + 1, 3)
            .mount(&sys)
            .unwrap_err();
        assert!(err.to_string().contains("at most 500"), "{err}");
        assert!(sys.calls().is_empty());
    }
}
