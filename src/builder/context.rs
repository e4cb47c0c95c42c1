//! The build context: a directory (or a tarball from stdin, unpacked into a temp directory
//! first), seen through `.dockerignore`. Nothing is copied or hashed up front: COPY asks for
//! the paths its sources name, and file contents are hashed when a cache key needs them, once
//! per build.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::dockerfile::dockerignore::{Glob, Ignore, IgnoreError, has_wildcards};
use crate::oci::{Algorithm, Digest, HashingWriter};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("`{0}` not found in the build context")]
    NotFound(String),
    #[error("`{0}` is excluded by .dockerignore")]
    Ignored(String),
    /// A path whose symlinks lead to something .dockerignore excludes.
    #[error("`{path}` leads through symlinks to `{target}`, which is excluded by .dockerignore")]
    IgnoredTarget { path: String, target: String },
    #[error("no file in the build context matches `{0}`")]
    NoMatch(String),
    #[error("`{0}` points outside the build context or loops")]
    BadLink(String),
    #[error("{0}")]
    Pattern(IgnoreError),
    #[error("{}", ignore_file(.path, .error))]
    IgnoreFile { path: PathBuf, error: IgnoreError },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `PATH:LINE: invalid pattern …`, as a compiler names a line.
fn ignore_file(path: &Path, e: &IgnoreError) -> String {
    match e.line {
        Some(l) => format!(
            "{}:{l}: invalid pattern `{}`: {}",
            path.display(),
            e.pattern,
            e.reason
        ),
        None => format!("{}: {e}", path.display()),
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ContextError + 'a {
    move |source| ContextError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    _tmp: Option<tempfile::TempDir>,
    hashes: Mutex<HashMap<String, Digest>>,
}

/// A path in the context with its (not followed) metadata.
#[derive(Debug, Clone)]
pub struct Item {
    /// Relative to the context root, `/`-separated; empty for the root itself.
    pub rel: String,
    pub meta: fs::Metadata,
}

impl Context {
    pub fn dir(root: &Path, ignore: Ignore) -> Context {
        Context {
            root: root.to_path_buf(),
            ignore,
            _tmp: None,
            hashes: Mutex::new(HashMap::new()),
        }
    }

    /// A context from a tar stream (plain, gzip or zstd), unpacked under `tmp_in`.
    pub fn from_tar(input: impl Read, tmp_in: &Path) -> Result<Context, ContextError> {
        let tmp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(tmp_in)
            .map_err(io_err("create a temp directory in", tmp_in))?;
        let read_err = |source| ContextError::Io {
            what: "read the context tarball from",
            path: PathBuf::from("stdin"),
            source,
        };
        let (reader, _) = crate::layer::compression::sniffed(input)
            .map_err(read_err)?
            .ok_or_else(|| read_err(io::Error::other("the input is empty")))?;
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive
            .unpack(tmp.path())
            .map_err(io_err("unpack the context tarball into", tmp.path()))?;
        let ignore = read_ignore(tmp.path(), None)?;
        Ok(Context {
            root: tmp.path().to_path_buf(),
            ignore,
            _tmp: Some(tmp),
            hashes: Mutex::new(HashMap::new()),
        })
    }

    /// An empty context (`docker build - < Dockerfile`).
    pub fn empty(tmp_in: &Path) -> Result<Context, ContextError> {
        let tmp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(tmp_in)
            .map_err(io_err("create a temp directory in", tmp_in))?;
        Ok(Context {
            root: tmp.path().to_path_buf(),
            ignore: Ignore::default(),
            _tmp: Some(tmp),
            hashes: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn set_ignore(&mut self, ignore: Ignore) {
        self.ignore = ignore;
    }

    pub fn host_path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn stat(&self, rel: &str) -> Result<Option<fs::Metadata>, ContextError> {
        let p = self.host_path(rel);
        match fs::symlink_metadata(&p) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &p)(e)),
        }
    }

    /// Follow the symlinks of `rel` (every component) inside the context as .dockerignore
    /// leaves it, as BuildKit resolves a source in the context it was sent: an absolute
    /// target starts again at the context root, `..` stops at it (a link never reaches a host
    /// file), and a path that lands on something excluded is refused (the link does not make
    /// the excluded file reachable). An excluded directory is passed through only on the way
    /// to something a `!` pattern re-includes.
    fn resolve(&self, rel: &str) -> Result<String, ContextError> {
        let r = crate::lexical::resolve(rel, true, |cur, last| {
            let meta = self.stat(cur)?;
            if self.ignore.excludes(cur) {
                let passable = !last
                    && meta.as_ref().is_some_and(|m| m.is_dir())
                    && self.ignore.may_reinclude_under(cur);
                if !passable {
                    return Err(if cur == rel.trim_matches('/') {
                        ContextError::Ignored(rel.to_string())
                    } else {
                        ContextError::IgnoredTarget {
                            path: rel.to_string(),
                            target: cur.to_string(),
                        }
                    });
                }
                return Ok(None);
            }
            match meta {
                Some(m) if m.file_type().is_symlink() => {
                    let host = self.host_path(cur);
                    let target = fs::read_link(&host).map_err(io_err("read the link", &host))?;
                    Ok(Some(target.to_string_lossy().into_owned()))
                }
                _ => Ok(None),
            }
        })?;
        if r.looped {
            return Err(ContextError::BadLink(rel.to_string()));
        }
        Ok(r.path)
    }

    /// The paths a COPY/ADD source names (a path or a wildcard pattern), symlinks of the
    /// named path followed, sorted. A wildcard matches only what .dockerignore leaves.
    pub fn sources(&self, src: &str) -> Result<Vec<Item>, ContextError> {
        let rel = crate::lexical::relative(src);
        if !has_wildcards(&rel) {
            if !rel.is_empty() && self.ignore.excludes(&rel) {
                return Err(ContextError::Ignored(src.to_string()));
            }
            let resolved = self.resolve(&rel).map_err(|e| match e {
                ContextError::IgnoredTarget { target, .. } => ContextError::IgnoredTarget {
                    path: src.to_string(),
                    target,
                },
                e => e,
            })?;
            let meta = fs::metadata(self.host_path(&resolved)).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => ContextError::NotFound(src.to_string()),
                _ => io_err("stat", &self.host_path(&resolved))(e),
            })?;
            return Ok(vec![Item {
                rel: resolved,
                meta,
            }]);
        }
        let mut out = Vec::new();
        let components = rel
            .split('/')
            .map(|c| Ok((c, Glob::new(c)?)))
            .collect::<Result<Vec<_>, IgnoreError>>()
            .map_err(ContextError::Pattern)?;
        self.glob(&components, &mut out)?;
        if out.is_empty() {
            return Err(ContextError::NoMatch(src.to_string()));
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        out.dedup_by(|a, b| a.rel == b.rel);
        Ok(out)
    }

    /// `rel` resolved, or None when it leads to nothing the context has (missing, excluded).
    fn resolve_existing(&self, rel: &str) -> Result<Option<(String, fs::Metadata)>, ContextError> {
        let resolved = match self.resolve(rel) {
            Ok(r) => r,
            Err(ContextError::Ignored(_) | ContextError::IgnoredTarget { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(self
            .stat(&resolved)?
            .filter(|m| !m.file_type().is_symlink())
            .map(|m| (resolved, m)))
    }

    /// The matches of a wildcard pattern, one component at a time. Every directory listed is
    /// a resolved path of the context (a symlinked directory is followed inside the context,
    /// never by the host), and the work is a list, not a recursion: a deep tree and `**`
    /// cannot exhaust the stack.
    fn glob(&self, components: &[(&str, Glob)], out: &mut Vec<Item>) -> Result<(), ContextError> {
        let join = |dir: &str, name: &str| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        let mut work: Vec<(String, usize)> = vec![(String::new(), 0)];
        let mut seen = std::collections::HashSet::new();
        while let Some((dir, at)) = work.pop() {
            let Some((first, pattern)) = components.get(at) else {
                continue;
            };
            // `**` and links can reach one state two ways; do each once.
            if !seen.insert((dir.clone(), at)) {
                continue;
            }
            let last = at + 1 == components.len();
            if *first == "**" {
                // zero directories, then one more level of `**`
                work.push((dir.clone(), at + 1));
                for (name, m) in self.list(&dir)? {
                    let rel = join(&dir, &name);
                    if m.is_dir() && !self.ignore.excludes(&rel) {
                        work.push((rel, at));
                    }
                }
                continue;
            }
            for (name, _) in self.list(&dir)? {
                if !pattern.matches(&name) {
                    continue;
                }
                let rel = join(&dir, &name);
                if self.ignore.excludes(&rel) {
                    continue;
                }
                let Some((resolved, meta)) = self.resolve_existing(&rel)? else {
                    continue;
                };
                if last {
                    out.push(Item {
                        rel: resolved,
                        meta,
                    });
                } else if meta.is_dir() {
                    work.push((resolved, at + 1));
                }
            }
        }
        Ok(())
    }

    /// The entries of the directory `dir` (a resolved path), sorted, with their own (not
    /// followed) metadata.
    fn list(&self, dir: &str) -> Result<Vec<(String, fs::Metadata)>, ContextError> {
        let p = self.host_path(dir);
        let mut v = Vec::new();
        for e in fs::read_dir(&p).map_err(io_err("list", &p))? {
            let e = e.map_err(io_err("list", &p))?;
            let m = e.metadata().map_err(io_err("stat", &e.path()))?;
            v.push((e.file_name().to_string_lossy().into_owned(), m));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// Everything under the directory `dir` that .dockerignore lets through, depth first and
    /// sorted; paths are relative to `dir`. A directory excluded itself still appears when
    /// something under it is re-included (`!`). Symlinks are listed, not followed. A list of
    /// work, not a recursion: a context thousands of directories deep is walked like another.
    pub fn walk(&self, dir: &str) -> Result<Vec<Item>, ContextError> {
        enum Work {
            List(String),
            Take(Item, bool),
            /// After a directory's contents: drop the directory if it is excluded and nothing
            /// under it came back.
            Close {
                at: usize,
                excluded: bool,
            },
        }
        let mut out = Vec::new();
        let mut work = vec![Work::List(String::new())];
        while let Some(w) = work.pop() {
            match w {
                Work::List(sub) => {
                    let here = join(dir, &sub);
                    let mut next = Vec::new();
                    for (name, meta) in self.list(&here)? {
                        let excluded = self.ignore.excludes(&join(&here, &name));
                        let rel = join(&sub, &name);
                        if meta.is_dir() {
                            if excluded && !self.ignore.may_reinclude_under(&join(&here, &name)) {
                                continue;
                            }
                            next.push(Work::Take(Item { rel, meta }, excluded));
                        } else if !excluded {
                            next.push(Work::Take(Item { rel, meta }, false));
                        }
                    }
                    work.extend(next.into_iter().rev());
                }
                Work::Take(item, excluded) => {
                    if item.meta.is_dir() {
                        work.push(Work::Close {
                            at: out.len(),
                            excluded,
                        });
                        work.push(Work::List(item.rel.clone()));
                    }
                    out.push(item);
                }
                Work::Close { at, excluded } => {
                    if excluded && out.len() == at + 1 {
                        out.pop();
                    }
                }
            }
        }
        Ok(out)
    }

    /// A digest of everything the build can see of the context (what .dockerignore lets
    /// through): each path with its kind, mode and content (a file's digest, a link's target),
    /// in walk order. The same tree gives the same digest wherever it lies; owners and times
    /// do not count. What provenance records as the context's digest.
    pub fn digest(&self) -> Result<Digest, ContextError> {
        use std::os::unix::fs::MetadataExt;
        let mut listing = String::new();
        for item in self.walk("")? {
            let kind = item.meta.file_type();
            let content = if kind.is_file() {
                self.file_digest(&item.rel)?.to_string()
            } else if kind.is_symlink() {
                let p = self.host_path(&item.rel);
                fs::read_link(&p)
                    .map_err(io_err("read the link", &p))?
                    .to_string_lossy()
                    .into_owned()
            } else {
                String::new()
            };
            let tag = if kind.is_dir() {
                'd'
            } else if kind.is_symlink() {
                'l'
            } else if kind.is_file() {
                'f'
            } else {
                'o'
            };
            listing.push_str(&format!(
                "{}\0{tag}\0{:o}\0{content}\n",
                item.rel,
                item.meta.mode() & 0o7777
            ));
        }
        Ok(Digest::sha256_of(listing.as_bytes()))
    }

    /// What .dockerignore hides under the directory `dir` (a resolved path): the top-most
    /// paths [`Context::walk`] leaves out, relative to the context root, sorted — so that a
    /// view of the directory without them shows exactly what `walk` lists.
    pub fn hidden(&self, dir: &str) -> Result<Vec<String>, ContextError> {
        if self.ignore.is_empty() {
            return Ok(Vec::new());
        }
        let kept: std::collections::HashSet<String> =
            self.walk(dir)?.into_iter().map(|i| i.rel).collect();
        let mut out = Vec::new();
        let mut work = vec![String::new()];
        while let Some(sub) = work.pop() {
            for (name, meta) in self.list(&join(dir, &sub))? {
                let rel = join(&sub, &name);
                if !kept.contains(&rel) {
                    out.push(join(dir, &rel));
                } else if meta.is_dir() {
                    work.push(rel);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The sha256 of a regular file's content (hashed once per build).
    pub fn file_digest(&self, rel: &str) -> Result<Digest, ContextError> {
        if let Some(d) = self.hashes.lock().expect("hash lock").get(rel) {
            return Ok(d.clone());
        }
        let p = self.host_path(rel);
        let mut f = fs::File::open(&p).map_err(io_err("open", &p))?;
        let mut w = HashingWriter::new(io::sink(), Algorithm::Sha256);
        io::copy(&mut f, &mut w).map_err(io_err("read", &p))?;
        let (_, d, _) = w.finish();
        self.hashes
            .lock()
            .expect("hash lock")
            .insert(rel.to_string(), d.clone());
        Ok(d)
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The ignore file for a build: `<Dockerfile>.dockerignore` next to the Dockerfile when there
/// is one (docker's per-Dockerfile ignore file), else `.dockerignore` in the context root.
pub fn read_ignore(root: &Path, dockerfile: Option<&Path>) -> Result<Ignore, ContextError> {
    let mut candidates = Vec::new();
    if let Some(df) = dockerfile
        && let Some(name) = df.file_name()
    {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        candidates.push(df.with_file_name(n));
    }
    // The context's own file: a symlink is followed inside the context, never to the host.
    let in_context = Context::dir(root, Ignore::default());
    candidates.push(in_context.host_path(&in_context.resolve(".dockerignore")?));
    for c in candidates {
        match fs::read_to_string(&c) {
            Ok(text) => {
                return Ignore::parse(&text).map_err(|error| ContextError::IgnoreFile {
                    path: c.clone(),
                    error,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &c)(e)),
        }
    }
    Ok(Ignore::default())
}

/// The mtime of a file in seconds (what COPY keeps).
pub fn mtime(meta: &fs::Metadata) -> u64 {
    meta.mtime().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ctx(ignore: &str) -> (tempfile::TempDir, Context) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("src/sub")).unwrap();
        fs::create_dir_all(r.join("secret/public")).unwrap();
        fs::write(r.join("a.txt"), "a").unwrap();
        fs::write(r.join("b.txt"), "b").unwrap();
        fs::write(r.join("src/main.c"), "main").unwrap();
        fs::write(r.join("src/sub/x.c"), "x").unwrap();
        fs::write(r.join("secret/key"), "k").unwrap();
        fs::write(r.join("secret/public/cert"), "c").unwrap();
        symlink("src/main.c", r.join("link")).unwrap();
        let c = Context::dir(r, Ignore::parse(ignore).unwrap());
        (d, c)
    }

    fn rels(items: &[Item]) -> Vec<&str> {
        items.iter().map(|i| i.rel.as_str()).collect()
    }

    #[test]
    fn plain_sources_and_links() {
        let (_d, c) = ctx("");
        assert_eq!(rels(&c.sources("a.txt").unwrap()), vec!["a.txt"]);
        assert_eq!(rels(&c.sources("/src/../a.txt").unwrap()), vec!["a.txt"]);
        assert_eq!(rels(&c.sources("link").unwrap()), vec!["src/main.c"]);
        assert_eq!(rels(&c.sources(".").unwrap()), vec![""]);
        assert!(matches!(c.sources("nope"), Err(ContextError::NotFound(_))));
    }

    #[test]
    fn wildcards() {
        let (_d, c) = ctx("");
        assert_eq!(rels(&c.sources("*.txt").unwrap()), vec!["a.txt", "b.txt"]);
        assert_eq!(rels(&c.sources("src/*.c").unwrap()), vec!["src/main.c"]);
        assert_eq!(
            rels(&c.sources("**/*.c").unwrap()),
            vec!["src/main.c", "src/sub/x.c"]
        );
        assert!(matches!(c.sources("*.none"), Err(ContextError::NoMatch(_))));
    }

    #[test]
    fn ignored_paths_are_invisible() {
        let (_d, c) = ctx("*.txt\n!b.txt\nsecret\n!secret/public\n");
        assert!(matches!(c.sources("a.txt"), Err(ContextError::Ignored(_))));
        assert_eq!(rels(&c.sources("*.txt").unwrap()), vec!["b.txt"]);
        let all = c.walk("").unwrap();
        assert_eq!(
            rels(&all),
            vec![
                "b.txt",
                "link",
                "secret",
                "secret/public",
                "secret/public/cert",
                "src",
                "src/main.c",
                "src/sub",
                "src/sub/x.c"
            ]
        );
        assert_eq!(
            rels(&c.walk("src").unwrap()),
            vec!["main.c", "sub", "sub/x.c"]
        );
    }

    /// Links in every shape toward an ignored directory and out of the context.
    fn linked_ctx(ignore: &str) -> (tempfile::TempDir, Context) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("secret/public")).unwrap();
        fs::create_dir_all(r.join("sub")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("secret/key"), "k").unwrap();
        fs::write(r.join("secret/public/cert"), "c").unwrap();
        fs::write(r.join("etc/hostname"), "context's own").unwrap();
        symlink("secret", r.join("alias")).unwrap();
        symlink("..", r.join("sub/up")).unwrap();
        symlink("alias", r.join("chain1")).unwrap();
        symlink("chain1", r.join("chain2")).unwrap();
        symlink("/secret", r.join("abs")).unwrap();
        symlink("secret/key", r.join("keylink")).unwrap();
        symlink("/etc", r.join("hostetc")).unwrap();
        symlink("../../../../../../../../etc", r.join("uphost")).unwrap();
        symlink("secret/public", r.join("pub")).unwrap();
        let c = Context::dir(r, Ignore::parse(ignore).unwrap());
        (d, c)
    }

    #[test]
    fn links_do_not_reach_ignored_files() {
        let (_d, c) = linked_ctx("secret\n");
        for src in [
            "alias/key",
            "sub/up/secret/key",
            "chain2/key",
            "abs/key",
            "keylink",
            "alias",
            "sub/up/sub/up/alias/public/cert",
        ] {
            match c.sources(src) {
                Err(ContextError::IgnoredTarget { path, target }) => {
                    assert_eq!(path, src);
                    assert!(target.starts_with("secret"), "{src}: {target}");
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        for pattern in [
            "alias/*",
            "sub/up/secret/*",
            "chain2/*",
            "*/key",
            "**/key",
            "key*",
        ] {
            assert!(
                matches!(c.sources(pattern), Err(ContextError::NoMatch(_))),
                "{pattern}"
            );
        }
        // COPY of the whole context: links stay links, the ignored directory stays out.
        let all = c.walk("").unwrap();
        assert!(all.iter().all(|i| !i.rel.starts_with("secret")));
        let alias = all.iter().find(|i| i.rel == "alias").unwrap();
        assert!(alias.meta.file_type().is_symlink());
    }

    #[test]
    fn links_reach_what_a_pattern_re_includes() {
        let (_d, c) = linked_ctx("secret\n!secret/public\n");
        assert_eq!(
            rels(&c.sources("pub/cert").unwrap()),
            vec!["secret/public/cert"]
        );
        assert_eq!(
            rels(&c.sources("alias/public/cert").unwrap()),
            vec!["secret/public/cert"]
        );
        assert_eq!(
            rels(&c.sources("pub/*").unwrap()),
            vec!["secret/public/cert"]
        );
        assert!(matches!(
            c.sources("alias/key"),
            Err(ContextError::IgnoredTarget { .. })
        ));
    }

    #[test]
    fn links_never_leave_the_context() {
        let (_d, c) = linked_ctx("");
        // An absolute target, or one climbing out, starts again at the context root.
        for src in [
            "hostetc/hostname",
            "uphost/hostname",
            "sub/up/uphost/hostname",
        ] {
            let found = c.sources(src).unwrap();
            assert_eq!(rels(&found), vec!["etc/hostname"], "{src}");
            assert_eq!(
                fs::read_to_string(c.host_path(&found[0].rel)).unwrap(),
                "context's own"
            );
        }
        assert!(matches!(
            c.sources("hostetc/passwd"),
            Err(ContextError::NotFound(_))
        ));
        // Wildcards list the context's directories only.
        assert_eq!(rels(&c.sources("hostetc/*").unwrap()), vec!["etc/hostname"]);
        assert_eq!(rels(&c.sources("uphost/*").unwrap()), vec!["etc/hostname"]);
        assert!(matches!(
            c.sources("hostetc/pass*"),
            Err(ContextError::NoMatch(_))
        ));
    }

    #[test]
    fn ignore_file_links_stay_in_the_context() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("patterns"), "a\n").unwrap();
        symlink("/patterns", d.path().join(".dockerignore")).unwrap();
        let i = read_ignore(d.path(), None).unwrap();
        assert!(
            i.excludes("a"),
            "the absolute link is read inside the context"
        );
    }

    #[test]
    fn deep_contexts_are_walked_without_recursion() {
        let d = tempfile::tempdir().unwrap();
        let mut p = d.path().to_path_buf();
        for _ in 0..1000 {
            p.push("d");
        }
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("f"), "deep").unwrap();
        let c = Context::dir(d.path(), Ignore::default());
        let (walked, found) = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || (c.walk("").unwrap().len(), c.sources("**/f").unwrap().len()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(walked, 1001);
        assert_eq!(found, 1);
    }

    #[test]
    fn digests_are_of_content() {
        let (d, c) = ctx("");
        let a = c.file_digest("a.txt").unwrap();
        assert_eq!(a, Digest::sha256_of(b"a"));
        fs::write(d.path().join("a.txt"), "changed").unwrap();
        // once per build: the second read is the memo
        assert_eq!(c.file_digest("a.txt").unwrap(), a);
    }

    #[test]
    fn ignore_file_next_to_the_dockerfile_wins() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".dockerignore"), "a\n").unwrap();
        fs::create_dir(d.path().join("build")).unwrap();
        fs::write(d.path().join("build/app.Dockerfile"), "FROM x\n").unwrap();
        fs::write(d.path().join("build/app.Dockerfile.dockerignore"), "b\n").unwrap();
        let i = read_ignore(d.path(), Some(&d.path().join("build/app.Dockerfile"))).unwrap();
        assert!(i.excludes("b") && !i.excludes("a"));
        let i = read_ignore(d.path(), Some(&d.path().join("Dockerfile"))).unwrap();
        assert!(i.excludes("a"));
    }

    #[test]
    fn tarball_contexts() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "dir/f", &b"hi"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, ".dockerignore", &b"dir\n"[..])
            .unwrap();
        let bytes = b.into_inner().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let c = Context::from_tar(&bytes[..], tmp.path()).unwrap();
        assert!(matches!(c.sources("dir/f"), Err(ContextError::Ignored(_))));
        assert!(c.root().join("dir/f").is_file());
    }
}
