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

use super::dockerignore::{Ignore, glob_match, has_wildcards};
use crate::oci::{Algorithm, Digest, HashingWriter};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("`{0}` not found in the build context")]
    NotFound(String),
    #[error("`{0}` is excluded by .dockerignore")]
    Ignored(String),
    #[error("no file in the build context matches `{0}`")]
    NoMatch(String),
    #[error("`{0}` points outside the build context or loops")]
    BadLink(String),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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
        let (reader, _) = crate::archive::decompressed(input).map_err(|e| ContextError::Io {
            what: "read the context tarball from",
            path: PathBuf::from("stdin"),
            source: io::Error::other(e.to_string()),
        })?;
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

    /// Follow symlinks of `rel` (every component) inside the context root.
    fn resolve(&self, rel: &str) -> Result<String, ContextError> {
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = rel
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let cur = done.join("/");
            if let Some(m) = self.stat(&cur)?
                && m.file_type().is_symlink()
            {
                hops += 1;
                if hops > 40 {
                    return Err(ContextError::BadLink(rel.to_string()));
                }
                let target = fs::read_link(self.host_path(&cur))
                    .map_err(io_err("read the link", &self.host_path(&cur)))?;
                let target = target.to_string_lossy().into_owned();
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                for t in target.split('/').filter(|c| !c.is_empty()).rev() {
                    todo.push(t.to_string());
                }
            }
        }
        Ok(done.join("/"))
    }

    /// The paths a COPY/ADD source names (a path or a wildcard pattern), symlinks of the
    /// named path followed, sorted.
    pub fn sources(&self, src: &str) -> Result<Vec<Item>, ContextError> {
        let cleaned = super::plan::clean_path(src);
        let rel = cleaned.trim_start_matches('/').to_string();
        if !has_wildcards(&rel) {
            if !rel.is_empty() && self.ignore.excludes(&rel) {
                return Err(ContextError::Ignored(src.to_string()));
            }
            let resolved = self.resolve(&rel)?;
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
        let components: Vec<&str> = rel.split('/').collect();
        self.glob("", &components, &mut out)?;
        if out.is_empty() {
            return Err(ContextError::NoMatch(src.to_string()));
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        out.dedup_by(|a, b| a.rel == b.rel);
        Ok(out)
    }

    fn glob(&self, dir: &str, rest: &[&str], out: &mut Vec<Item>) -> Result<(), ContextError> {
        let Some((first, tail)) = rest.split_first() else {
            return Ok(());
        };
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        if *first == "**" {
            // zero directories, then one more level of `**`
            self.glob(dir, tail, out)?;
            for (name, m) in self.list(dir)? {
                if m.is_dir() {
                    self.glob(&join(&name), rest, out)?;
                }
            }
            return Ok(());
        }
        for (name, _) in self.list(dir)? {
            if !glob_match(first, &name) {
                continue;
            }
            let rel = join(&name);
            if self.ignore.excludes(&rel) {
                continue;
            }
            if tail.is_empty() {
                let resolved = self.resolve(&rel)?;
                if let Ok(meta) = fs::metadata(self.host_path(&resolved)) {
                    out.push(Item {
                        rel: resolved,
                        meta,
                    });
                }
            } else if fs::metadata(self.host_path(&rel)).is_ok_and(|m| m.is_dir()) {
                self.glob(&rel, tail, out)?;
            }
        }
        Ok(())
    }

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
    /// something under it is re-included (`!`).
    pub fn walk(&self, dir: &str) -> Result<Vec<Item>, ContextError> {
        let mut out = Vec::new();
        self.walk_into(dir, "", &mut out)?;
        Ok(out)
    }

    fn walk_into(&self, base: &str, sub: &str, out: &mut Vec<Item>) -> Result<(), ContextError> {
        let here = join(base, sub);
        for (name, meta) in self.list(&here)? {
            let rel_in_ctx = join(&here, &name);
            let rel = join(sub, &name);
            let excluded = self.ignore.excludes(&rel_in_ctx);
            if meta.is_dir() {
                if excluded && !self.ignore.may_reinclude_under(&rel_in_ctx) {
                    continue;
                }
                let at = out.len();
                out.push(Item {
                    rel: rel.clone(),
                    meta,
                });
                let before = out.len();
                self.walk_into(base, &rel, out)?;
                if excluded && out.len() == before {
                    out.remove(at);
                }
            } else if !excluded {
                out.push(Item { rel, meta });
            }
        }
        Ok(())
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
    candidates.push(root.join(".dockerignore"));
    for c in candidates {
        match fs::read_to_string(&c) {
            Ok(text) => {
                return Ignore::parse(&text).map_err(|e| ContextError::Io {
                    what: "parse",
                    path: c.clone(),
                    source: io::Error::other(e.to_string()),
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
