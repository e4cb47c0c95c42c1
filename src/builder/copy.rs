//! COPY and ADD as layer entries, with docker's rules: a source directory's contents (not the
//! directory) are copied; a destination ending in `/`, an existing directory or several
//! sources make the destination a directory; missing parents are created; owners are 0:0
//! unless `--chown`, modes are kept unless `--chmod`; ADD extracts local tar archives (their
//! members streamed into the layer, see [`Unpack`]) and downloads URLs (mode 0600, as docker
//! does).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::cache::KeyBuilder;
use super::context::{Context, ContextError, mtime};
use super::fetch::FetchError;
use super::layer::{Content, Contents, Entry, Kind, Unpack};
use super::tree::{EntryKind, Tree, TreeError};
use crate::dockerfile::dockerignore::{Glob, Ignore, IgnoreError, has_wildcards};
use crate::dockerfile::plan::{CopyOp, CopySrc};
use crate::hint::Hint;
use crate::oci::Digest;
use crate::store::Store;

/// Why COPY or ADD failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("--exclude: {0}")]
    Exclude(IgnoreError),
    #[error("{0}")]
    Pattern(IgnoreError),
    #[error("no file matches `{0}`")]
    NoMatch(String),
    #[error("`{0}` not found")]
    NotFound(String),
    #[error("`{0}` is not a regular file or directory")]
    NotFile(String),
    #[error("cannot read `/{0}` from its layer")]
    MissingFromLayer(String),
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// An ADD URL's body.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl Hint for CopyError {
    fn hint(&self) -> Option<String> {
        match self {
            CopyError::Tree(e) => e.hint(),
            _ => None,
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CopyError + 'a {
    move |source| CopyError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where COPY reads from: the context, or another stage's or image's filesystem.
pub enum Source<'a> {
    Context(&'a Context),
    Tree(&'a Tree),
}

/// One thing to put in the layer, relative to where the source lands.
#[derive(Debug, Clone)]
struct Item {
    /// Relative to the destination directory; empty for "the destination itself".
    rel: String,
    kind: ItemKind,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
}

#[derive(Debug, Clone)]
enum ItemKind {
    Dir,
    File(Content),
    /// A file inside a stage or image, taken out of its layer when the layer is written.
    TreeFile(String),
    Symlink(String),
    /// A local tar archive ADD unpacks into the destination.
    Archive(std::path::PathBuf),
}

/// A source resolved: either a single file (copied to dest or dest/name) or a directory's
/// contents (copied into dest).
struct Resolved {
    name: String,
    is_dir: bool,
    items: Vec<Item>,
}

/// The part of a COPY's cache key that depends on the context: every file's path, type, mode,
/// link target and content digest (never mtimes).
pub fn context_key(op: &CopyOp, ctx: &Context) -> Result<Digest, CopyError> {
    let mut k = KeyBuilder::new("copy-context");
    let exclude = Ignore::from_patterns(&op.exclude).map_err(CopyError::Exclude)?;
    for src in &op.sources {
        match src {
            CopySrc::Path(p) => {
                // An archive ADD extracts is keyed by the archive's own content (read once,
                // by the hash), not by extracting it.
                for r in resolve_context(ctx, p, &exclude, false)? {
                    k.add_str(&r.name).add(&[u8::from(r.is_dir)]);
                    for it in &r.items {
                        k.add_str(&it.rel).add(&it.mode.to_le_bytes());
                        match &it.kind {
                            ItemKind::Dir => {
                                k.add_str("d");
                            }
                            ItemKind::Symlink(t) => {
                                k.add_str("l").add_str(t);
                            }
                            ItemKind::File(Content::Path(p)) => {
                                let rel = p
                                    .strip_prefix(ctx.root())
                                    .map(|r| r.to_string_lossy().into_owned())
                                    .unwrap_or_default();
                                let d = ctx.file_digest(&rel)?;
                                k.add_str("f").add_str(&d.to_string());
                            }
                            ItemKind::File(Content::Bytes(b)) => {
                                k.add_str("b").add(b);
                            }
                            ItemKind::TreeFile(_) | ItemKind::Archive(_) => {
                                unreachable!("context items, archives not probed")
                            }
                        }
                    }
                }
            }
            CopySrc::Url(u) => {
                // The content's digest is the executor's to add (it fetches the URL).
                k.add_str("url").add_str(u);
            }
            CopySrc::Inline { name, content } => {
                k.add_str("inline").add_str(name).add_str(content);
            }
        }
    }
    Ok(k.finish())
}

fn resolve_context(
    ctx: &Context,
    src: &str,
    exclude: &Ignore,
    add: bool,
) -> Result<Vec<Resolved>, CopyError> {
    let found = ctx.sources(src)?;
    let mut out = Vec::new();
    for f in found {
        if !exclude.is_empty() && exclude.excludes(&f.rel) {
            continue;
        }
        let name = f.rel.rsplit('/').next().unwrap_or("").to_string();
        if f.meta.is_dir() {
            let mut items = Vec::new();
            items.push(Item {
                rel: String::new(),
                kind: ItemKind::Dir,
                mode: f.meta.mode() & 0o7777,
                mtime: mtime(&f.meta),
                uid: 0,
                gid: 0,
            });
            for w in ctx.walk(&f.rel)? {
                let full = if f.rel.is_empty() {
                    w.rel.clone()
                } else {
                    format!("{}/{}", f.rel, w.rel)
                };
                if !exclude.is_empty() && exclude.excludes(&w.rel) {
                    continue;
                }
                let ft = w.meta.file_type();
                let kind = if ft.is_dir() {
                    ItemKind::Dir
                } else if ft.is_symlink() {
                    let host = ctx.host_path(&full);
                    let t = fs::read_link(&host).map_err(io_err("read the link", &host))?;
                    ItemKind::Symlink(t.to_string_lossy().into_owned())
                } else if ft.is_file() {
                    ItemKind::File(Content::Path(ctx.host_path(&full)))
                } else {
                    continue;
                };
                items.push(Item {
                    rel: w.rel.clone(),
                    kind,
                    mode: w.meta.mode() & 0o7777,
                    mtime: mtime(&w.meta),
                    uid: 0,
                    gid: 0,
                });
            }
            out.push(Resolved {
                name,
                is_dir: true,
                items,
            });
        } else if f.meta.is_file() {
            let path = ctx.host_path(&f.rel);
            if add && is_tar_archive(&path)? {
                out.push(Resolved {
                    name,
                    is_dir: true,
                    items: vec![Item {
                        rel: String::new(),
                        kind: ItemKind::Archive(path),
                        mode: 0,
                        mtime: 0,
                        uid: 0,
                        gid: 0,
                    }],
                });
                continue;
            }
            out.push(Resolved {
                name,
                is_dir: false,
                items: vec![Item {
                    rel: String::new(),
                    kind: ItemKind::File(Content::Path(path)),
                    mode: f.meta.mode() & 0o7777,
                    mtime: mtime(&f.meta),
                    uid: 0,
                    gid: 0,
                }],
            });
        }
    }
    Ok(out)
}

/// Whether ADD unpacks the file: a tar archive, plain, gzip or zstd (only its first block is
/// read here; the members are streamed when the layer is written).
fn is_tar_archive(path: &Path) -> Result<bool, CopyError> {
    let mut f = fs::File::open(path).map_err(io_err("open", path))?;
    let mut head = [0u8; 4];
    let n = f.read(&mut head).map_err(io_err("read", path))?;
    f.rewind().map_err(io_err("read", path))?;
    if n == 0 {
        return Ok(false);
    }
    let Ok(Some((mut r, _))) = crate::layer::compression::sniffed(f) else {
        return Ok(false);
    };
    let mut block = vec![0u8; 512];
    Ok(r.read_exact(&mut block).is_ok() && crate::layer::tarball::looks_like_tar(&block))
}

fn resolve_tree(tree: &Tree, src: &str, exclude: &Ignore) -> Result<Vec<Resolved>, CopyError> {
    let norm = crate::lexical::relative(src);
    let rel = norm.as_str();
    let matched: Vec<String> = if has_wildcards(rel) {
        let glob = Glob::new(rel).map_err(CopyError::Pattern)?;
        let m: Vec<String> = tree
            .paths()
            .filter(|p| glob.matches(p))
            .map(str::to_string)
            .collect();
        if m.is_empty() {
            return Err(CopyError::NoMatch(src.to_string()));
        }
        m
    } else {
        vec![rel.to_string()]
    };
    let mut out = Vec::new();
    for m in matched {
        if !exclude.is_empty() && exclude.excludes(&m) {
            continue;
        }
        let resolved = tree.resolve(&m, true);
        let name = m.rsplit('/').next().unwrap_or("").to_string();
        if resolved.is_empty() || tree.is_dir(&resolved) {
            let mut items = Vec::new();
            let (mode, mt) = tree
                .get(&resolved)
                .map_or((0o755, 0), |e| (e.mode & 0o7777, e.mtime));
            items.push(Item {
                rel: String::new(),
                kind: ItemKind::Dir,
                mode,
                mtime: mt,
                uid: 0,
                gid: 0,
            });
            let prefix = if resolved.is_empty() {
                String::new()
            } else {
                format!("{resolved}/")
            };
            for e in tree.under(&resolved) {
                let sub = e.path[prefix.len()..].to_string();
                if !exclude.is_empty() && exclude.excludes(&sub) {
                    continue;
                }
                let kind = match e.kind {
                    EntryKind::Dir => ItemKind::Dir,
                    EntryKind::File | EntryKind::Hardlink => ItemKind::TreeFile(e.path.clone()),
                    EntryKind::Symlink => ItemKind::Symlink(e.link.clone().unwrap_or_default()),
                    EntryKind::Other => continue,
                };
                items.push(Item {
                    rel: sub,
                    kind,
                    mode: e.mode & 0o7777,
                    mtime: e.mtime,
                    uid: 0,
                    gid: 0,
                });
            }
            out.push(Resolved {
                name,
                is_dir: true,
                items,
            });
        } else {
            let e = tree
                .get(&resolved)
                .ok_or_else(|| CopyError::NotFound(src.to_string()))?;
            let kind = match e.kind {
                EntryKind::File | EntryKind::Hardlink => ItemKind::TreeFile(e.path.clone()),
                _ => return Err(CopyError::NotFile(src.to_string())),
            };
            out.push(Resolved {
                name,
                is_dir: false,
                items: vec![Item {
                    rel: String::new(),
                    kind,
                    mode: e.mode & 0o7777,
                    mtime: e.mtime,
                    uid: 0,
                    gid: 0,
                }],
            });
        }
    }
    Ok(out)
}

/// What COPY/ADD needs from the executor besides the op.
pub struct CopyEnv<'a> {
    pub store: &'a Store,
    /// The stage's filesystem before the step.
    pub dest_tree: &'a Tree,
    pub owner: Option<(u64, u64)>,
    /// For directories COPY creates and downloads.
    pub now: u64,
    /// Scratch space that lives until the layer is written.
    pub tmp: &'a Path,
    /// The downloaded body of an ADD URL (the executor fetched it for the step's cache key).
    pub download: &'a dyn Fn(&str) -> Result<std::path::PathBuf, FetchError>,
}

/// What a COPY/ADD puts in its layer.
pub fn entries(op: &CopyOp, source: &Source<'_>, env: &CopyEnv<'_>) -> Result<Contents, CopyError> {
    let exclude = Ignore::from_patterns(&op.exclude).map_err(CopyError::Exclude)?;
    let mut resolved: Vec<Resolved> = Vec::new();
    for src in &op.sources {
        match src {
            CopySrc::Path(p) => match source {
                Source::Context(ctx) => resolved.extend(resolve_context(ctx, p, &exclude, op.add)?),
                Source::Tree(t) => resolved.extend(resolve_tree(t, p, &exclude)?),
            },
            CopySrc::Inline { name, content } => resolved.push(Resolved {
                name: name.clone(),
                is_dir: false,
                items: vec![Item {
                    rel: String::new(),
                    kind: ItemKind::File(Content::Bytes(content.clone().into_bytes())),
                    mode: 0o644,
                    mtime: env.now,
                    uid: 0,
                    gid: 0,
                }],
            }),
            CopySrc::Url(u) => {
                let file = (env.download)(u)?;
                let name = url_file_name(u);
                resolved.push(Resolved {
                    name,
                    is_dir: false,
                    items: vec![Item {
                        rel: String::new(),
                        kind: ItemKind::File(Content::Path(file)),
                        mode: 0o600,
                        mtime: env.now,
                        uid: 0,
                        gid: 0,
                    }],
                });
            }
        }
    }
    let dest_tree = env.dest_tree;
    let dest_rel = op.dest.trim_start_matches('/').trim_end_matches('/');
    let resolved_dest = dest_tree.resolve(dest_rel, true);
    let dest_is_dir = op.dest.ends_with('/')
        || op.dest == "/"
        || resolved.len() > 1
        || resolved.iter().any(|r| r.is_dir)
        || dest_tree.is_dir(dest_rel);
    // The directory things land in, symlinks of the image resolved.
    let base_dir = if dest_is_dir {
        resolved_dest.clone()
    } else {
        let parent = dest_rel.rsplit_once('/').map_or("", |(p, _)| p);
        dest_tree.resolve(parent, true)
    };
    let file_name = dest_rel.rsplit('/').next().unwrap_or("").to_string();

    let mut out: Vec<Entry> = Vec::new();
    let mut made_dirs: BTreeSet<String> = BTreeSet::new();
    let (uid, gid) = env.owner.unwrap_or((0, 0));
    // Missing parents of the destination directory: root-owned above it, the owner's at it.
    let mut ensure_dir = |path: &str, out: &mut Vec<Entry>, owned: bool| {
        let mut acc = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            if made_dirs.contains(&acc) || dest_tree.exists(&acc) {
                continue;
            }
            made_dirs.insert(acc.clone());
            let mine = owned && acc == path;
            out.push(Entry {
                path: acc.clone(),
                kind: Kind::Dir,
                mode: 0o755,
                uid: if mine { uid } else { 0 },
                gid: if mine { gid } else { 0 },
                mtime: env.now,
            });
        }
    };
    ensure_dir(&base_dir, &mut out, true);

    let mut tree_files: Vec<(usize, String)> = Vec::new();
    let mut unpacks = Vec::new();
    for r in &resolved {
        for it in &r.items {
            if let ItemKind::Archive(archive) = &it.kind {
                unpacks.push(Unpack {
                    archive: archive.clone(),
                    into: base_dir.clone(),
                    owner: env.owner,
                    chmod: op.chmod,
                });
                continue;
            }
            let target = if r.is_dir {
                join(&base_dir, &it.rel)
            } else if dest_is_dir {
                join(&base_dir, &r.name)
            } else {
                join(&base_dir, &file_name)
            };
            if target.is_empty() {
                continue; // the root directory itself
            }
            let mode = op.chmod.unwrap_or(it.mode);
            let (u, g) = if env.owner.is_some() {
                (uid, gid)
            } else {
                (it.uid, it.gid)
            };
            let kind = match &it.kind {
                ItemKind::Dir => {
                    if it.rel.is_empty() && dest_tree.is_dir(&target) {
                        // Copying into an existing directory leaves its metadata alone.
                        continue;
                    }
                    if !made_dirs.insert(target.clone()) {
                        // Created above as a parent: the source directory's metadata wins.
                        out.retain(|e| e.path != target);
                    }
                    Kind::Dir
                }
                ItemKind::File(c) => Kind::File(c.clone()),
                ItemKind::Symlink(t) => Kind::Symlink(t.clone()),
                ItemKind::TreeFile(p) => {
                    tree_files.push((out.len(), p.clone()));
                    Kind::File(Content::Bytes(Vec::new()))
                }
                ItemKind::Archive(_) => unreachable!("unpacked above"),
            };
            out.push(Entry {
                path: target,
                kind,
                mode,
                uid: u,
                gid: g,
                mtime: it.mtime,
            });
        }
    }
    if !tree_files.is_empty() {
        let Source::Tree(tree) = source else {
            unreachable!("tree files come from trees")
        };
        let wanted: Vec<String> = tree_files.iter().map(|(_, p)| p.clone()).collect();
        let got = tree.extract(env.store, &wanted, env.tmp)?;
        for (i, p) in tree_files {
            let f = got
                .get(&p)
                .ok_or_else(|| CopyError::MissingFromLayer(p.clone()))?;
            out[i].kind = Kind::File(Content::Path(f.clone()));
        }
    }
    Ok(Contents {
        entries: out,
        unpacks,
    })
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn url_file_name(u: &str) -> String {
    let path = u.split(['?', '#']).next().unwrap_or(u);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    after_host
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("index.html")
        .to_string()
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
