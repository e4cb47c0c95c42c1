//! The merged view of a stack of layers, read from their tarballs without unpacking them: what a
//! container's root would hold, by path, under OCI's whiteout rules. The builder's trees (what
//! COPY --from, WORKDIR and --chown look up) and `verify` (which files an image holds) both keep
//! their entries here, so that the two never disagree about what an image contains.
//!
//! The rules (OCI image spec, "Whiteouts"): a layer's whiteouts apply to the layers below it
//! only, never to entries of their own layer, whatever their order in the tarball; `.wh.NAME`
//! removes NAME and everything under it; `.wh..wh..opq` removes everything below its directory;
//! an entry that is no directory replaces what a lower layer had at its path, children
//! included; `.wh..` and `.wh...` are refused when a layer is read ([`read_entries`]). A
//! directory no entry lists but that paths under it imply is a directory all the same.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::LayerError;
use super::extract::{Whiteout, bad_whiteout, whiteout};
use crate::lexical;

/// What the merged view needs to know of an entry.
pub trait Node {
    fn is_dir(&self) -> bool;
    /// The target, for a symlink.
    fn symlink(&self) -> Option<&str>;
}

/// Path (relative, cleaned) → (index of the layer that holds it, its entry).
#[derive(Debug, Clone)]
pub struct Merged<T> {
    layers: usize,
    entries: BTreeMap<String, (usize, T)>,
}

impl<T> Default for Merged<T> {
    fn default() -> Merged<T> {
        Merged {
            layers: 0,
            entries: BTreeMap::new(),
        }
    }
}

/// `dir/`, the prefix of what is under `dir` (everything for the root).
fn prefix(dir: &str) -> String {
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

impl<T: Node> Merged<T> {
    pub fn new() -> Merged<T> {
        Merged::default()
    }

    /// How many layers were pushed.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Add a layer on top: its entries (cleaned relative paths, whiteouts included) in any
    /// order.
    pub fn push(&mut self, entries: Vec<(String, T)>) {
        let idx = self.layers;
        self.layers += 1;
        for (path, _) in &entries {
            let (dir, name) = split(path);
            match whiteout(name.as_bytes()) {
                Some(Whiteout::Opaque) => self.remove_under(dir),
                Some(Whiteout::Remove(hidden)) => {
                    let hidden = String::from_utf8_lossy(hidden);
                    let gone = if dir.is_empty() {
                        hidden.into_owned()
                    } else {
                        format!("{dir}/{hidden}")
                    };
                    self.entries.remove(&gone);
                    self.remove_under(&gone);
                }
                // Refused when the layer is read; nothing to remove here.
                Some(Whiteout::Invalid | Whiteout::Ignore) | None => {}
            }
        }
        for (path, node) in entries {
            if whiteout(split(&path).1.as_bytes()).is_some() {
                continue;
            }
            if !node.is_dir() {
                self.remove_under(&path);
            }
            self.entries.insert(path, (idx, node));
        }
    }

    fn remove_under(&mut self, dir: &str) {
        let prefix = prefix(dir);
        let keys: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.entries.remove(&k);
        }
    }

    /// The entry at `path` (cleaned, relative; no symlinks followed).
    pub fn get(&self, path: &str) -> Option<&T> {
        self.entries.get(path).map(|(_, n)| n)
    }

    /// The entry at `path` with the index of the layer holding it.
    pub fn entry(&self, path: &str) -> Option<(usize, &T)> {
        self.entries.get(path).map(|(i, n)| (*i, n))
    }

    /// Whether entries lie under `dir` (a directory a layer implies without listing it).
    pub fn implied_dir(&self, dir: &str) -> bool {
        let prefix = prefix(dir);
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    /// Whether `path` (cleaned, no symlinks followed) is a directory: the root, a directory
    /// entry, or implied by what is under it.
    pub fn is_dir_at(&self, path: &str) -> bool {
        path.is_empty()
            || match self.get(path) {
                Some(n) => n.is_dir(),
                None => self.implied_dir(path),
            }
    }

    /// `path` with symlinks resolved inside the view (every component; the last only when
    /// `follow_last`); components that do not exist are kept as they are.
    pub fn resolve(&self, path: &str, follow_last: bool) -> lexical::Resolved {
        let r: Result<_, std::convert::Infallible> = lexical::resolve(path, follow_last, |p, _| {
            Ok(self.get(p).and_then(|n| n.symlink()).map(str::to_string))
        });
        r.unwrap_or_else(|never| match never {})
    }

    /// What `path` leads to with every symlink followed: its resolved path and entry; None when
    /// a component does not exist (neither listed nor implied), symlinks loop, or the path
    /// leads to a directory only implied.
    pub fn lookup(&self, path: &str) -> Option<(String, &T)> {
        let r = lexical::resolve(path, true, |p, _| match self.get(p) {
            Some(n) => Ok(n.symlink().map(str::to_string)),
            None if self.implied_dir(p) => Ok(None),
            None => Err(()),
        })
        .ok()?;
        if r.looped {
            return None;
        }
        let node = self.get(&r.path)?;
        Some((r.path, node))
    }

    /// Entries under the directory `dir` (not itself), in path order.
    pub fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a T)> + 'a {
        let prefix = prefix(dir);
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(k, (_, n))| (k.as_str(), n))
    }

    /// Every entry, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.entries.iter().map(|(k, (_, n))| (k.as_str(), n))
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// An entry of an image's merged tree; `F` is what its reader keeps of a regular file.
#[derive(Debug, Clone)]
pub enum Entry<F> {
    Dir,
    File(F),
    Symlink(String),
    Hardlink(String),
    Other,
}

impl<F> Node for Entry<F> {
    fn is_dir(&self) -> bool {
        matches!(self, Entry::Dir)
    }
    fn symlink(&self) -> Option<&str> {
        match self {
            Entry::Symlink(target) => Some(target),
            _ => None,
        }
    }
}

/// The entries of an uncompressed layer tarball as [`Entry`]s (whiteouts kept, for
/// [`Merged::push`]); `file` says what is kept of each regular file, given its path.
pub fn layer_entries<R: Read, F>(
    plain: R,
    mut file: impl FnMut(&str, &mut tar::Entry<'_, R>) -> io::Result<F>,
) -> Result<Vec<(String, Entry<F>)>, LayerError> {
    let mut entries = Vec::new();
    read_entries(plain, |path, entry| {
        let node = match entry.header().entry_type() {
            tar::EntryType::Directory => Entry::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Entry::File(file(&path, entry).map_err(LayerError::Corrupt)?)
            }
            tar::EntryType::Symlink => Entry::Symlink(
                entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => Entry::Hardlink(
                link_target(entry)
                    .map_err(LayerError::Corrupt)?
                    .unwrap_or_default(),
            ),
            _ => Entry::Other,
        };
        entries.push((path, node));
        Ok(())
    })?;
    Ok(entries)
}

/// Call `f` with each entry of an uncompressed layer tarball and its path, cleaned and relative
/// (the root's own entry is skipped); a whiteout of `.` or `..` is refused.
pub fn read_entries<R: Read>(
    plain: R,
    mut f: impl FnMut(String, &mut tar::Entry<'_, R>) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let mut archive = tar::Archive::new(plain);
    for entry in archive.entries().map_err(LayerError::Corrupt)? {
        let mut entry = entry.map_err(LayerError::Corrupt)?;
        let path = lexical::relative(&String::from_utf8_lossy(&entry.path_bytes()));
        if path.is_empty() {
            continue;
        }
        if whiteout(split(&path).1.as_bytes()) == Some(Whiteout::Invalid) {
            return Err(LayerError::Entry {
                path,
                source: bad_whiteout(),
            });
        }
        f(path, &mut entry)?;
    }
    Ok(())
}

/// A hard link's target as a merged view names it (cleaned, relative).
pub fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Option<String>> {
    Ok(entry
        .link_name_bytes()
        .map(|l| lexical::relative(&String::from_utf8_lossy(&l))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum N {
        Dir,
        File(u8),
        Link(&'static str),
    }

    impl Node for N {
        fn is_dir(&self) -> bool {
            *self == N::Dir
        }
        fn symlink(&self) -> Option<&str> {
            match self {
                N::Link(t) => Some(t),
                _ => None,
            }
        }
    }

    fn layer(entries: &[(&str, N)]) -> Vec<(String, N)> {
        entries
            .iter()
            .map(|(p, n)| (p.to_string(), n.clone()))
            .collect()
    }

    fn listing(m: &Merged<N>) -> Vec<String> {
        m.iter().map(|(p, n)| format!("{p} {n:?}")).collect()
    }

    #[test]
    fn whiteouts_apply_to_lower_layers_only() {
        let mut m = Merged::new();
        m.push(layer(&[
            ("a", N::Dir),
            ("a/1", N::File(0)),
            ("a/2", N::File(0)),
            ("b", N::Dir),
            ("b/x", N::File(0)),
            ("c", N::Dir),
            ("c/y", N::File(0)),
            ("d/deep/z", N::File(0)),
        ]));
        m.push(layer(&[
            // Listed before the whiteouts that would hide them: they stay (their own layer).
            ("b/new", N::File(1)),
            ("a/1", N::File(1)),
            ("a/.wh.1", N::File(1)),
            ("b/.wh..wh..opq", N::File(1)),
            ("c", N::File(1)),
            (".wh.d", N::File(1)),
            ("a/.wh..wh.plnk", N::File(1)),
        ]));
        assert_eq!(
            listing(&m),
            vec![
                "a Dir",
                "a/1 File(1)",
                "a/2 File(0)",
                "b Dir",
                "b/new File(1)",
                "c File(1)"
            ]
        );
        assert_eq!(m.entry("a/1").map(|(i, _)| i), Some(1));
        assert_eq!(m.layers(), 2);
        let mut m2 = Merged::new();
        m2.push(layer(&[("x/y", N::File(0))]));
        m2.push(layer(&[(".wh..wh..opq", N::File(1)), ("z", N::File(1))]));
        assert_eq!(listing(&m2), vec!["z File(1)"], "an opaque root hides all");
    }

    #[test]
    fn symlinks_and_implied_directories() {
        let mut m = Merged::new();
        m.push(layer(&[
            ("usr/lib/v1/libc.so", N::File(0)),
            ("lib", N::Link("usr/lib")),
            ("usr/lib/cur", N::Link("/usr/lib/v1")),
            ("loop", N::Link("loop")),
        ]));
        assert!(m.is_dir_at("usr/lib"), "implied by what is under it");
        assert!(m.is_dir_at(""));
        assert!(!m.is_dir_at("lib"));
        assert_eq!(m.resolve("lib/cur", true).path, "usr/lib/v1");
        assert_eq!(m.resolve("lib/cur", false).path, "usr/lib/cur");
        assert_eq!(m.resolve("lib/missing/x", true).path, "usr/lib/missing/x");
        assert_eq!(
            m.lookup("/lib/cur/libc.so"),
            Some(("usr/lib/v1/libc.so".to_string(), &N::File(0)))
        );
        assert_eq!(m.lookup("lib/missing"), None);
        assert_eq!(m.lookup("nothing/../lib/cur/libc.so"), None);
        assert_eq!(m.lookup("loop"), None);
        assert!(m.resolve("loop", true).looped);
        assert_eq!(m.lookup("usr/lib"), None, "implied, no entry");
        let under: Vec<&str> = m.under("usr/lib").map(|(p, _)| p).collect();
        assert_eq!(under, vec!["usr/lib/cur", "usr/lib/v1/libc.so"]);
    }

    /// A tarball of empty entries with their names as written (`..` included, which the tar
    /// crate refuses to write).
    fn raw_tar(names: &[(&str, tar::EntryType)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind) in names {
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_entry_type(*kind);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn reading_refuses_whiteouts_of_dot_and_dotdot() {
        for name in ["a/.wh..", ".wh...", "./a/../.wh.."] {
            let raw = raw_tar(&[(name, tar::EntryType::Regular)]);
            let e = read_entries(&raw[..], |_, _| Ok(())).unwrap_err();
            let e = crate::testutil::chain(&e);
            assert!(e.contains("must name an entry"), "{name}: {e}");
        }
        let raw = raw_tar(&[
            ("./", tar::EntryType::Directory),
            ("/x/../y/./z", tar::EntryType::Regular),
        ]);
        let mut seen = Vec::new();
        read_entries(&raw[..], |p, _| {
            seen.push(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec!["y/z"]);
    }
}
