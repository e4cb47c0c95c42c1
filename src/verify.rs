//! `verify`: does an image's content match the platform it declares? The ELF headers of its
//! entrypoint (or Cmd) and of the files under /bin, /sbin, /usr/bin, /usr/sbin and /lib*
//! (/usr/lib* too) are read from the layers as they are stored — nothing is unpacked, no root
//! needed — and every file whose class, byte order or machine contradicts the platform is
//! reported (the "arm64" image that ships x86_64 binaries).
//!
//! The expected identity comes from the binfmt handler table (the ELF bytes of the handler's
//! magic). Library files may also be of a platform the declared one runs natively (i386
//! libraries in an amd64 image, 32-bit ARM in an arm64 one); the entrypoint must be the
//! platform's own. Firmware and kernel modules are not looked at.

use std::io::Read;

use serde::Serialize;

use crate::binfmt::Handler;
use crate::elf;
use crate::hint::Hint;
use crate::layer::merged::{self, Merged};
use crate::layer::{self, Compression};
use crate::oci::{ImageConfig, Manifest};
use crate::platform::Platform;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no ELF machine is known for {0}: verify checks Linux platforms with a QEMU handler")]
    UnknownPlatform(String),
    #[error("layer {digest} has media type `{media_type}`, which verify cannot read")]
    UnsupportedLayer { digest: String, media_type: String },
    #[error("layer {digest}")]
    Layer {
        digest: String,
        #[source]
        source: layer::LayerError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hint for VerifyError {
    fn hint(&self) -> Option<String> {
        match self {
            VerifyError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// An ELF identity: (class, byte order, machine).
pub type Identity = (u8, u8, u16);

/// One file whose headers contradict the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Absolute path in the image.
    pub path: String,
    /// `ELF64 LSB x86-64`.
    pub found: String,
    pub expected: String,
    /// The image's entrypoint or Cmd binary (held to the platform's own identity).
    pub entrypoint: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub platform: String,
    pub expected: String,
    /// ELF files read.
    pub checked: usize,
    /// The entrypoint (or Cmd) binary checked, with the path it was found at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    pub mismatches: Vec<Finding>,
}

/// What verify keeps of a file: the start of it (an ELF header's worth) and its mode.
#[derive(Debug, Clone)]
struct FileHead {
    head: Vec<u8>,
    mode: u32,
}

type Node = merged::Entry<FileHead>;

/// The image's merged tree as far as verify needs it.
type Tree = Merged<Node>;

/// Read every layer into the merged tree (whiteouts applied).
fn merged_tree(store: &Store, manifest: &Manifest) -> Result<Tree, VerifyError> {
    let mut tree = Tree::new();
    for l in &manifest.layers {
        let compression = Compression::from_media_type(&l.media_type).ok_or_else(|| {
            VerifyError::UnsupportedLayer {
                digest: l.digest.to_string(),
                media_type: l.media_type.clone(),
            }
        })?;
        let wrap = |source| VerifyError::Layer {
            digest: l.digest.to_string(),
            source,
        };
        let blob = store.open_blob(&l.digest)?;
        let plain = compression
            .reader(blob)
            .map_err(|e| wrap(layer::LayerError::Decompress(e)))?;
        let entries = merged::layer_entries(plain, |_, entry| {
            let mut head = [0u8; elf::HEADER_LEN];
            let n = elf::read_up_to(
                &mut Read::take(&mut *entry, elf::HEADER_LEN as u64),
                &mut head,
            )?;
            Ok(FileHead {
                head: head[..n].to_vec(),
                mode: entry.header().mode().unwrap_or(0),
            })
        })
        .map_err(wrap)?;
        tree.push(entries);
    }
    Ok(tree)
}

/// Resolve a path in the merged tree, following symlinks (inside the image) and a hardlink to
/// the file it names; returns the final path and its node.
fn resolve<'a>(tree: &'a Tree, path: &str) -> Option<(String, &'a Node)> {
    match tree.lookup(path)? {
        // A tarball's hard link names an earlier file of the image, never another link.
        (found, Node::Hardlink(target)) => match tree.get(target)? {
            Node::Hardlink(_) => None,
            n => Some((found, n)),
        },
        found => Some(found),
    }
}

/// The identities a platform's files may have: its own, then those of the platforms it runs
/// natively (its fallbacks).
fn identities(platform: &Platform) -> Result<(Identity, Vec<Identity>), VerifyError> {
    let own = Handler::for_platform(platform)
        .ok_or_else(|| VerifyError::UnknownPlatform(platform.to_string()))?
        .elf_identity();
    let matcher = platform.matcher();
    let mut ok = vec![own];
    for k in Platform::known() {
        if matcher.matches(k.platform())
            && let Some(h) = Handler::for_platform(k.platform())
            && !ok.contains(&h.elf_identity())
        {
            ok.push(h.elf_identity());
        }
    }
    Ok((own, ok))
}

fn scanned(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or("");
    let in_dir = match first {
        "bin" | "sbin" => true,
        "usr" => {
            let second = path.split('/').nth(1).unwrap_or("");
            second == "bin" || second == "sbin" || second.starts_with("lib")
        }
        f => f.starts_with("lib"),
    };
    in_dir && !path.contains("/firmware/") && !path.contains("/modules/")
}

fn describe_identity(id: Identity) -> String {
    elf::describe(id.0, id.1, id.2)
}

/// Check one platform's image.
pub fn verify(
    store: &Store,
    manifest: &Manifest,
    config: &ImageConfig,
    platform: &Platform,
) -> Result<Report, VerifyError> {
    let (own, acceptable) = identities(platform)?;
    let tree = merged_tree(store, manifest)?;
    let mut report = Report {
        platform: platform.to_string(),
        expected: describe_identity(own),
        checked: 0,
        entrypoint: None,
        mismatches: Vec::new(),
    };
    let id_of = |n: &Node| -> Option<(Identity, u32)> {
        match n {
            Node::File(FileHead { head, mode }) => {
                elf::Header::parse(head).map(|h| ((h.class, h.data, h.machine), *mode))
            }
            _ => None,
        }
    };
    for (path, node) in tree.iter() {
        if !scanned(path) {
            continue;
        }
        let node = match node {
            Node::Hardlink(t) => match tree.get(t) {
                Some(n) => n,
                None => continue,
            },
            n => n,
        };
        let Some((id, mode)) = id_of(node) else {
            continue;
        };
        let in_bin = !path.split('/').any(|c| c.starts_with("lib"));
        if in_bin && mode & 0o111 == 0 {
            continue;
        }
        report.checked += 1;
        if !acceptable.contains(&id) {
            report.mismatches.push(Finding {
                path: format!("/{path}"),
                found: describe_identity(id),
                expected: report.expected.clone(),
                entrypoint: false,
            });
        }
    }

    // The entrypoint (or Cmd), and the interpreter of a script.
    if let Ok(args) = crate::runtime::run::command(config, None, &[]) {
        let rc = config.config.clone().unwrap_or_default();
        let workdir = rc.working_dir.clone().unwrap_or_else(|| "/".into());
        let path_env = rc
            .env
            .iter()
            .flatten()
            .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
            .unwrap_or_else(|| crate::runtime::run::DEFAULT_PATH.to_string());
        let candidates: Vec<String> = if args[0].contains('/') {
            vec![if args[0].starts_with('/') {
                args[0].clone()
            } else {
                format!("{workdir}/{}", args[0])
            }]
        } else {
            path_env
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| format!("{d}/{}", args[0]))
                .collect()
        };
        if let Some((found_path, node)) = candidates.iter().find_map(|c| resolve(&tree, c)) {
            let mut shown = format!("/{found_path}");
            let mut node = node;
            let mut at = found_path.clone();
            if let Node::File(FileHead { head, .. }) = node
                && head.starts_with(b"#!")
            {
                let line = String::from_utf8_lossy(&head[2..]);
                let interp = line.split_whitespace().next().unwrap_or("").to_string();
                if let Some((p, n)) = resolve(&tree, &interp) {
                    shown = format!("{shown} (script for /{p})");
                    node = n;
                    at = p;
                }
            }
            report.entrypoint = Some(shown);
            if let Some((id, _)) = id_of(node) {
                if !scanned(&at) {
                    report.checked += 1;
                }
                if id != own {
                    report.mismatches.retain(|f| f.path != format!("/{at}"));
                    report.mismatches.push(Finding {
                        path: format!("/{at}"),
                        found: describe_identity(id),
                        expected: report.expected.clone(),
                        entrypoint: true,
                    });
                }
            }
        }
    }
    report
        .mismatches
        .sort_by(|a, b| b.entrypoint.cmp(&a.entrypoint).then(a.path.cmp(&b.path)));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::synthetic;
    use crate::oci::{Descriptor, RunConfig, media_type};

    use crate::testutil::tar_of;

    fn image(
        store: &crate::store::Transaction,
        layers: &[Vec<u8>],
        cmd: &[&str],
    ) -> (Manifest, ImageConfig) {
        let descs = layers
            .iter()
            .map(|l| {
                Descriptor::new(
                    media_type::OCI_LAYER,
                    store.put_bytes(l).unwrap(),
                    l.len() as u64,
                )
            })
            .collect();
        let manifest = Manifest::new_oci(Descriptor::of(media_type::OCI_CONFIG, b"{}"), descs);
        let config = ImageConfig {
            config: Some(RunConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        (manifest, config)
    }

    #[test]
    fn finds_binaries_of_the_wrong_machine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().begin().unwrap();
        let arm64 = synthetic(elf::CLASS_64, elf::DATA_LSB, 183, None);
        let x86 = synthetic(elf::CLASS_64, elf::DATA_LSB, 62, None);
        let armhf = synthetic(elf::CLASS_32, elf::DATA_LSB, 40, None);
        let base = tar_of(&[
            ("bin/", None, None, 0o755),
            ("bin/busybox", Some(&arm64), None, 0o755),
            ("bin/sh", None, Some("busybox"), 0o777),
            ("bin/intruder", Some(&x86), None, 0o755),
            ("bin/not-exec", Some(&x86), None, 0o644),
            (
                "usr/lib/arm-linux-gnueabihf/libc.so.6",
                Some(&armhf),
                None,
                0o644,
            ),
            ("usr/lib/firmware/blob.elf", Some(&x86), None, 0o644),
            ("opt/x86-tool", Some(&x86), None, 0o755),
            ("bin/gone", Some(&x86), None, 0o755),
        ]);
        let upper = tar_of(&[("bin/.wh.gone", Some(b""), None, 0o644)]);
        let (m, c) = image(&store, &[base, upper], &["sh", "-c", "true"]);
        let arm64_platform = Platform::parse("linux/arm64").unwrap();
        let r = verify(&store, &m, &c, &arm64_platform).unwrap();
        assert_eq!(r.expected, "ELF64 LSB AArch64");
        assert_eq!(r.entrypoint.as_deref(), Some("/bin/busybox"));
        let paths: Vec<&str> = r.mismatches.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["/bin/intruder"], "{r:?}");
        assert_eq!(r.mismatches[0].found, "ELF64 LSB x86-64");
        assert_eq!(r.checked, 3);

        // The same content declared amd64: busybox (the entrypoint) and the ARM library
        // contradict it.
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let r = verify(&store, &m, &c, &amd64).unwrap();
        assert!(r.mismatches[0].entrypoint);
        assert_eq!(r.mismatches[0].path, "/bin/busybox");
        let paths: Vec<&str> = r.mismatches.iter().map(|f| f.path.as_str()).collect();
        assert!(
            paths.contains(&"/usr/lib/arm-linux-gnueabihf/libc.so.6"),
            "{paths:?}"
        );
        assert!(!paths.contains(&"/bin/intruder"));

        assert!(matches!(
            verify(&store, &m, &c, &Platform::parse("windows/amd64").unwrap()),
            Err(VerifyError::UnknownPlatform(_))
        ));
    }

    #[test]
    fn resolves_entrypoints_through_links_opaque_dirs_and_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().begin().unwrap();
        let arm64 = synthetic(elf::CLASS_64, elf::DATA_LSB, 183, None);
        let x86 = synthetic(elf::CLASS_64, elf::DATA_LSB, 62, None);
        let base = tar_of(&[
            ("usr/bin/real", Some(&x86), None, 0o755),
            ("bin", None, Some("usr/bin"), 0o777),
            ("app/old", Some(&x86), None, 0o755),
        ]);
        let upper = tar_of(&[
            ("app/", None, None, 0o755),
            ("app/.wh..wh..opq", Some(b""), None, 0o644),
            ("app/run.sh", Some(b"#!/bin/real -e\n"), None, 0o755),
        ]);
        let (m, c) = image(&store, &[base, upper], &["/app/run.sh"]);
        let r = verify(&store, &m, &c, &Platform::parse("linux/arm64").unwrap()).unwrap();
        assert_eq!(
            r.entrypoint.as_deref(),
            Some("/app/run.sh (script for /usr/bin/real)")
        );
        assert!(
            r.mismatches
                .iter()
                .any(|f| f.entrypoint && f.path == "/usr/bin/real")
        );
        // /app/old was hidden by the opaque directory.
        let tree = merged_tree(&store, &m).unwrap();
        assert!(tree.get("app/old").is_none());
        let _ = arm64;
    }
}
