//! A stage's filesystem as its layers describe it, without unpacking them: each layer's entry
//! list (read once, then kept in the cache as `trees/<blob>.json`), merged with the OCI
//! whiteout rules. COPY asks it whether a destination is a directory, COPY --from takes files
//! out of it, and --chown/USER names are looked up in its /etc/passwd and /etc/group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// One layer's entries, filled in by whichever worker reads that layer.
type LayerSlot = std::sync::Mutex<Option<Result<Vec<TreeEntry>, TreeError>>>;

use serde::{Deserialize, Serialize};

use super::cache::Cache;
use super::layer::{self, Content};
use crate::hint::Hint;
use crate::layer::LayerError;
use crate::layer::merged::{self, Merged};
use crate::oci::{Descriptor, Digest};
use crate::passwd;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    #[serde(rename = "d")]
    Dir,
    #[serde(rename = "f")]
    File,
    #[serde(rename = "l")]
    Symlink,
    #[serde(rename = "h")]
    Hardlink,
    #[serde(rename = "o")]
    Other,
}

/// One entry of a layer, as stored in `trees/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "p")]
    pub path: String,
    #[serde(rename = "k")]
    pub kind: EntryKind,
    #[serde(rename = "m")]
    pub mode: u32,
    #[serde(rename = "u")]
    pub uid: u64,
    #[serde(rename = "g")]
    pub gid: u64,
    #[serde(rename = "s", default)]
    pub size: u64,
    #[serde(rename = "t", default)]
    pub mtime: u64,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot read layer {digest}")]
    Read {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hint for TreeError {
    fn hint(&self) -> Option<String> {
        match self {
            TreeError::Store(e) => e.hint(),
            TreeError::Read { .. } => None,
        }
    }
}

fn normalize(p: &str) -> String {
    crate::lexical::relative(p)
}

impl merged::Node for TreeEntry {
    fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    fn symlink(&self) -> Option<&str> {
        match self.kind {
            EntryKind::Symlink => self.link.as_deref(),
            _ => None,
        }
    }
}

/// A layer blob's uncompressed stream (its compression sniffed: a cache may hold layers of any
/// media type).
fn open_layer(store: &Store, layer: &Descriptor) -> Result<Box<dyn Read>, TreeError> {
    let read_err = |source: io::Error| TreeError::Read {
        digest: layer.digest.clone(),
        source,
    };
    let f = store.open_blob(&layer.digest)?;
    match crate::layer::compression::sniffed(f).map_err(read_err)? {
        Some((r, _)) => Ok(r),
        None => Err(read_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the input is empty",
        ))),
    }
}

/// A layer reader's error as the tree's.
fn layer_err(digest: &Digest) -> impl Fn(LayerError) -> TreeError + '_ {
    move |e| TreeError::Read {
        digest: digest.clone(),
        source: match e {
            LayerError::Corrupt(e) => e,
            // The layer's error itself, so that its cause stays in the chain.
            e @ LayerError::Entry { .. } => io::Error::new(io::ErrorKind::InvalidData, e),
            e => io::Error::other(e),
        },
    }
}

/// The entry list of one layer blob (cached).
pub fn layer_entries(
    store: &Store,
    cache: &Cache,
    layer: &Descriptor,
) -> Result<Vec<TreeEntry>, TreeError> {
    if let Some(bytes) = cache.read_tree(&layer.digest)
        && let Ok(v) = serde_json::from_slice(&bytes)
    {
        return Ok(v);
    }
    let mut out = Vec::new();
    merged::read_entries(open_layer(store, layer)?, |path, e| {
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink,
            _ => EntryKind::Other,
        };
        let link = match kind {
            EntryKind::Symlink => e
                .link_name()
                .map_err(LayerError::Corrupt)?
                .map(|l| l.to_string_lossy().into_owned()),
            EntryKind::Hardlink => merged::link_target(e).map_err(LayerError::Corrupt)?,
            _ => None,
        };
        let h = e.header();
        out.push(TreeEntry {
            path,
            kind,
            mode: h.mode().unwrap_or(0o644),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            size: h.size().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
            link,
        });
        Ok(())
    })
    .map_err(layer_err(&layer.digest))?;
    let bytes = serde_json::to_vec(&out).expect("entries serialise");
    cache.write_tree(&layer.digest, &bytes)?;
    Ok(out)
}

/// The entry list of a layer from its unpacked snapshot (overlayfs form: a 0/0 character
/// device is a whiteout, `trusted.overlay.opaque=y` an opaque directory): a directory walk
/// instead of decompressing the blob.
pub fn snapshot_entries(dir: &Path) -> io::Result<Vec<TreeEntry>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(base: &Path, rel: &str, out: &mut Vec<TreeEntry>) -> io::Result<()> {
        let here = if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        };
        let mut names: Vec<_> = fs::read_dir(&here)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let full = base.join(&path);
            let m = fs::symlink_metadata(&full)?;
            let ft = m.file_type();
            let mut e = TreeEntry {
                path: path.clone(),
                kind: EntryKind::Other,
                mode: m.mode() & 0o7777,
                uid: m.uid() as u64,
                gid: m.gid() as u64,
                size: 0,
                mtime: m.mtime().max(0) as u64,
                link: None,
            };
            if ft.is_char_device() && m.rdev() == 0 {
                e.path = if rel.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{rel}/.wh.{name}")
                };
                e.kind = EntryKind::File;
                out.push(e);
                continue;
            }
            if ft.is_dir() {
                e.kind = EntryKind::Dir;
                out.push(e);
                let mut buf = [0u8; 8];
                if let Ok(n) = rustix::fs::lgetxattr(&full, "trusted.overlay.opaque", &mut buf)
                    && &buf[..n] == b"y"
                {
                    out.push(TreeEntry {
                        path: format!("{path}/.wh..wh..opq"),
                        kind: EntryKind::File,
                        mode: 0,
                        uid: 0,
                        gid: 0,
                        size: 0,
                        mtime: 0,
                        link: None,
                    });
                }
                walk(base, &path, out)?;
                continue;
            }
            if ft.is_symlink() {
                e.kind = EntryKind::Symlink;
                e.link = Some(fs::read_link(&full)?.to_string_lossy().into_owned());
            } else if ft.is_file() {
                e.kind = EntryKind::File;
                e.size = m.len();
            }
            out.push(e);
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

/// The merged view of a stack of layers (the rules are [`Merged`]'s).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    layers: Vec<Descriptor>,
    merged: Merged<TreeEntry>,
}

impl Tree {
    pub fn load(store: &Store, cache: &Cache, layers: &[Descriptor]) -> Result<Tree, TreeError> {
        Tree::load_with(store, cache, layers, &[])
    }

    /// Like [`Tree::load`], the layers read in parallel; a layer whose snapshot (by the chain
    /// ID of `diff_ids`) is unpacked already is listed from it instead of its blob.
    pub fn load_with(
        store: &Store,
        cache: &Cache,
        layers: &[Descriptor],
        diff_ids: &[Digest],
    ) -> Result<Tree, TreeError> {
        let chains = if diff_ids.len() == layers.len() {
            crate::layer::chain_ids(diff_ids)
        } else {
            Vec::new()
        };
        let snapshots = crate::runtime::Snapshots::open(store.root()).ok();
        let _lock = snapshots.as_ref().and_then(|s| s.shared().ok());
        let one = |i: usize| -> Result<Vec<TreeEntry>, TreeError> {
            let l = &layers[i];
            if cache.read_tree(&l.digest).is_none()
                && let (Some(s), Some(c)) = (&snapshots, chains.get(i))
                && s.exists(c)
                && let Ok(entries) = snapshot_entries(&s.fs_path(c))
            {
                let bytes = serde_json::to_vec(&entries).expect("entries serialise");
                cache.write_tree(&l.digest, &bytes)?;
                return Ok(entries);
            }
            layer_entries(store, cache, l)
        };
        let jobs = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<LayerSlot> = (0..layers.len())
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        std::thread::scope(|s| {
            for _ in 0..jobs.min(layers.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= layers.len() {
                            break;
                        }
                        *results[i].lock().expect("result") = Some(one(i));
                    }
                });
            }
        });
        let mut t = Tree::default();
        for (l, r) in layers.iter().zip(results) {
            let entries = r.into_inner().expect("result").expect("every layer done")?;
            t.push(l.clone(), entries);
        }
        Ok(t)
    }

    /// Add a layer on top.
    pub fn push(&mut self, layer: Descriptor, entries: Vec<TreeEntry>) {
        self.layers.push(layer);
        self.merged
            .push(entries.into_iter().map(|e| (e.path.clone(), e)).collect());
    }

    pub fn get(&self, path: &str) -> Option<&TreeEntry> {
        self.merged.get(&normalize(path))
    }

    /// `path` with symlinks resolved (every component; the last only when `follow_last`).
    /// Missing components are kept as they are.
    pub fn resolve(&self, path: &str, follow_last: bool) -> String {
        self.merged.resolve(&normalize(path), follow_last).path
    }

    /// Whether `path` (symlinks followed) is a directory.
    pub fn is_dir(&self, path: &str) -> bool {
        self.merged.is_dir_at(&self.resolve(path, true))
    }

    pub fn exists(&self, path: &str) -> bool {
        let p = self.resolve(path, true);
        self.merged.is_dir_at(&p) || self.merged.get(&p).is_some()
    }

    /// Entries under the directory `dir` (not itself), in path order.
    pub fn under(&self, dir: &str) -> Vec<&TreeEntry> {
        self.merged.under(&normalize(dir)).map(|(_, e)| e).collect()
    }

    /// Every path in the view (for wildcard sources).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.merged.paths()
    }

    /// Take the regular files `paths` out of the layers into files under `dir`: returns where
    /// each went. Hard links are read through their targets. Each layer is read at most once.
    pub fn extract(
        &self,
        store: &Store,
        paths: &[String],
        dir: &Path,
    ) -> Result<HashMap<String, PathBuf>, TreeError> {
        // layer index → paths wanted from it (hard links: the link's target, same layer)
        let mut wanted: BTreeMap<usize, HashSet<String>> = BTreeMap::new();
        let mut alias: HashMap<String, String> = HashMap::new();
        for p in paths {
            let Some((idx, e)) = self.merged.entry(p) else {
                continue;
            };
            let mut source = p.clone();
            if e.kind == EntryKind::Hardlink
                && let Some(t) = &e.link
            {
                source = t.clone();
            }
            alias.insert(p.clone(), source.clone());
            wanted.entry(idx).or_default().insert(source);
        }
        let mut found: HashMap<String, PathBuf> = HashMap::new();
        let mut n = 0usize;
        for (idx, want) in wanted {
            let layer = &self.layers[idx];
            let mut links: HashMap<String, String> = HashMap::new();
            merged::read_entries(open_layer(store, layer)?, |path, e| {
                let is_link = e.header().entry_type() == tar::EntryType::Link;
                if is_link && want.contains(&path) {
                    if let Some(t) = merged::link_target(e).map_err(LayerError::Corrupt)? {
                        links.insert(path, t);
                    }
                    return Ok(());
                }
                let wanted_here = want.contains(&path) || links.values().any(|t| t == &path);
                if !wanted_here || e.header().entry_type() != tar::EntryType::Regular {
                    return Ok(());
                }
                n += 1;
                let out = dir.join(format!("f{n}"));
                let write = |source| LayerError::Io {
                    what: format!("cannot write {}", out.display()),
                    source,
                };
                let mut file = fs::File::create(&out).map_err(write)?;
                io::copy(e, &mut file).map_err(write)?;
                found.insert(path, out);
                Ok(())
            })
            .map_err(layer_err(&layer.digest))?;
            for (link, target) in links {
                if let Some(p) = found.get(&target).cloned() {
                    found.insert(link, p);
                }
            }
        }
        let mut out = HashMap::new();
        for p in paths {
            if let Some(src) = alias.get(p)
                && let Some(f) = found.get(src)
            {
                out.insert(p.clone(), f.clone());
            }
        }
        Ok(out)
    }

    /// The bytes of a small regular file (/etc/passwd), or None.
    pub fn read_small(&self, store: &Store, path: &str, tmp: &Path) -> Option<Vec<u8>> {
        let p = self.resolve(path, true);
        let dir = tempfile::tempdir_in(tmp).ok()?;
        let got = self
            .extract(store, std::slice::from_ref(&p), dir.path())
            .ok()?;
        let mut f = fs::File::open(got.get(&p)?).ok()?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).ok()?;
        Some(v)
    }
}

/// The tree entries of layer entries we wrote ourselves (no need to read the blob back).
pub fn entries_of(entries: &[layer::Entry]) -> Vec<TreeEntry> {
    entries
        .iter()
        .map(|e| {
            let (kind, link, size) = match &e.kind {
                layer::Kind::Dir => (EntryKind::Dir, None, 0),
                layer::Kind::File(Content::Bytes(b)) => (EntryKind::File, None, b.len() as u64),
                layer::Kind::File(Content::Path(p)) => (
                    EntryKind::File,
                    None,
                    fs::metadata(p).map(|m| m.len()).unwrap_or(0),
                ),
                layer::Kind::Symlink(t) => (EntryKind::Symlink, Some(t.clone()), 0),
                layer::Kind::Hardlink(t) => (EntryKind::Hardlink, Some(t.clone()), 0),
            };
            TreeEntry {
                path: e.path.clone(),
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size,
                mtime: e.mtime,
                link,
            }
        })
        .collect()
}

/// Why `--chown` or a WORKDIR's USER names no owner.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("cannot look up `{name}`: the image has no {file}")]
    NoFile { name: String, file: &'static str },
    #[error("no user or group `{name}` in {file}")]
    Unknown { name: String, file: &'static str },
}

/// `user[:group]` as numbers, names looked up in the tree's /etc/passwd and /etc/group. A user
/// without group gets the same number as GID (docker's rule for COPY --chown).
pub fn resolve_owner(
    spec: &str,
    tree: &Tree,
    store: &Store,
    tmp: &Path,
    primary_group: bool,
) -> Result<(u64, u64), OwnerError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |file: &'static str, name: &str| -> Result<String, OwnerError> {
        let text = tree
            .read_small(store, file, tmp)
            .ok_or_else(|| OwnerError::NoFile {
                name: name.to_string(),
                file,
            })?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    };
    let missing = |file: &'static str, name: &str| OwnerError::Unknown {
        name: name.to_string(),
        file,
    };
    let lookup_user = |name: &str| -> Result<(u64, Option<u64>), OwnerError> {
        if let Ok(n) = name.parse::<u64>() {
            return Ok((n, None));
        }
        let text = read("/etc/passwd", name)?;
        passwd::users(&text)
            .find(|u| u.name == name)
            .map(|u| (u64::from(u.uid), u.gid.map(u64::from)))
            .ok_or_else(|| missing("/etc/passwd", name))
    };
    let lookup_group = |name: &str| -> Result<u64, OwnerError> {
        if let Ok(n) = name.parse::<u64>() {
            return Ok(n);
        }
        let text = read("/etc/group", name)?;
        passwd::groups(&text)
            .find(|g| g.name == name)
            .map(|g| u64::from(g.gid))
            .ok_or_else(|| missing("/etc/group", name))
    };
    let (uid, primary) = lookup_user(user)?;
    let gid = match group {
        Some(g) if !g.is_empty() => lookup_group(g)?,
        _ if primary_group => primary.unwrap_or(uid),
        _ => uid,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: None,
        }
    }

    fn desc(n: u8) -> Descriptor {
        Descriptor::of("x", &[n])
    }

    #[test]
    fn whiteouts_and_replacements() {
        let mut t = Tree::default();
        t.push(
            desc(0),
            vec![
                e("a", EntryKind::Dir),
                e("a/1", EntryKind::File),
                e("a/2", EntryKind::File),
                e("b", EntryKind::Dir),
                e("b/x", EntryKind::File),
                e("c", EntryKind::Dir),
                e("c/y", EntryKind::File),
            ],
        );
        t.push(
            desc(1),
            vec![
                e("a/.wh.1", EntryKind::File),
                e("b/.wh..wh..opq", EntryKind::File),
                e("b/new", EntryKind::File),
                e("c", EntryKind::File),
            ],
        );
        let paths: Vec<&str> = t.paths().collect();
        assert_eq!(paths, vec!["a", "a/2", "b", "b/new", "c"]);
        assert!(t.is_dir("/a"));
        assert!(!t.is_dir("c"));
        assert!(t.is_dir("/"));
        assert_eq!(t.under("a").len(), 1);
    }

    #[test]
    fn layers_with_whiteouts_of_dot_or_dotdot_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().begin().unwrap();
        let cache = Cache::open(&store).unwrap();
        for name in ["a/.wh..", ".wh..."] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &[][..]).unwrap();
            let layer = b.into_inner().unwrap();
            let digest = store.put_bytes(&layer).unwrap();
            let d = Descriptor::new(
                crate::oci::media_type::OCI_LAYER,
                digest,
                layer.len() as u64,
            );
            let e = layer_entries(&store, &cache, &d).unwrap_err();
            let err = crate::testutil::chain(&e);
            assert!(
                err.contains(&format!("entry `{name}`")) && err.contains("must name an entry"),
                "{name}: {err}"
            );
        }
        // Ignored when met in an entry list all the same (a cache written before the rule).
        let mut t = Tree::default();
        t.push(
            desc(0),
            vec![e("a", EntryKind::Dir), e("a/x", EntryKind::File)],
        );
        t.push(
            desc(1),
            vec![e("a/.wh..", EntryKind::File), e(".wh...", EntryKind::File)],
        );
        assert_eq!(t.paths().collect::<Vec<_>>(), vec!["a", "a/x"]);
    }

    #[test]
    fn snapshots_list_like_their_layers() {
        if !crate::testutil::require_root() {
            return;
        }
        use rustix::fs::{FileType, Mode, mknodat};
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/opaque")).unwrap();
        fs::write(r.join("a/file"), b"xyz").unwrap();
        std::os::unix::fs::symlink("file", r.join("a/link")).unwrap();
        mknodat(
            rustix::fs::CWD,
            r.join("a/gone"),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
        rustix::fs::setxattr(
            r.join("a/opaque"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let entries = snapshot_entries(r).unwrap();
        let paths: Vec<(&str, EntryKind)> =
            entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert_eq!(
            paths,
            vec![
                ("a", EntryKind::Dir),
                ("a/file", EntryKind::File),
                ("a/.wh.gone", EntryKind::File),
                ("a/link", EntryKind::Symlink),
                ("a/opaque", EntryKind::Dir),
                ("a/opaque/.wh..wh..opq", EntryKind::File),
            ]
        );
        assert_eq!(entries[1].size, 3);
        assert_eq!(entries[3].link.as_deref(), Some("file"));
    }

    #[test]
    fn symlinks_resolve_in_the_tree() {
        let mut t = Tree::default();
        let mut link = e("lib", EntryKind::Symlink);
        link.link = Some("usr/lib".into());
        let mut abs = e("usr/lib/cur", EntryKind::Symlink);
        abs.link = Some("/usr/lib/v1".into());
        t.push(
            desc(0),
            vec![
                e("usr", EntryKind::Dir),
                e("usr/lib", EntryKind::Dir),
                e("usr/lib/v1", EntryKind::Dir),
                link,
                abs,
            ],
        );
        assert_eq!(t.resolve("/lib/x", true), "usr/lib/x");
        assert_eq!(t.resolve("/lib/cur", true), "usr/lib/v1");
        assert_eq!(t.resolve("/lib/cur", false), "usr/lib/cur");
        assert!(t.is_dir("/lib/cur"));
    }

    #[test]
    fn reads_layers_and_takes_files_out() {
        use crate::builder::layer::{Entry, Kind, write};
        use crate::layer::Compression;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().begin().unwrap();
        let cache = Cache::open(&store).unwrap();
        let le = |path: &str, kind: Kind| Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let entries = vec![
            le("etc", Kind::Dir),
            le(
                "etc/passwd",
                Kind::File(Content::Bytes(
                    b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n".to_vec(),
                )),
            ),
            le(
                "etc/group",
                Kind::File(Content::Bytes(b"root:x:0:\nstaff:x:50:\n".to_vec())),
            ),
            le("etc/pw", Kind::Hardlink("etc/passwd".into())),
        ];
        let info = write(&store, entries, Compression::Zstd, None).unwrap();
        let t = Tree::load(&store, &cache, std::slice::from_ref(&info.descriptor)).unwrap();
        assert!(cache.read_tree(&info.descriptor.digest).is_some());
        assert_eq!(t.get("etc/pw").unwrap().kind, EntryKind::Hardlink);
        let got = t.read_small(&store, "/etc/pw", dir.path()).unwrap();
        assert!(got.starts_with(b"root:"));
        assert_eq!(
            resolve_owner("app", &t, &store, dir.path(), false).unwrap(),
            (1000, 1000)
        );
        assert_eq!(
            resolve_owner("app", &t, &store, dir.path(), true).unwrap(),
            (1000, 1001)
        );
        assert_eq!(
            resolve_owner("app:staff", &t, &store, dir.path(), false).unwrap(),
            (1000, 50)
        );
        assert_eq!(
            resolve_owner("5:6", &t, &store, dir.path(), false).unwrap(),
            (5, 6)
        );
        assert!(resolve_owner("nobody", &t, &store, dir.path(), false).is_err());
    }
}
