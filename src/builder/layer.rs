//! Deterministic layer tarballs for COPY, ADD and WORKDIR: entries sorted by path, written by
//! the one tar writer (`layer::tarball`: numeric owners, mtimes clamped to SOURCE_DATE_EPOCH),
//! compressed with gzip or zstd (OCI media types) and written straight into the store while the
//! diff ID (the digest of the uncompressed tar) is computed. The members of
//! a local archive ADD unpacks are streamed from the archive into the layer, never held in
//! memory.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::hint::Hint;
use crate::layer::Compression;
use crate::layer::tarball::{FileError, Meta, Style, TarWriter, path_order};
use crate::oci::{Algorithm, Descriptor, Digest, HashingWriter};
use crate::store::{StoreError, Transaction};

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A file on the host (the build context, or a file taken out of another layer).
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Content),
    Symlink(String),
    /// A hard link to another path of the same layer.
    Hardlink(String),
}

/// One entry of a layer. `path` is relative (`usr/bin/x`), without trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

/// ADD of a local tar archive (plain, gzip or zstd): its members go into the layer under
/// `into`, after the step's other entries, in the archive's own order; a member replaces an
/// earlier one of the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpack {
    pub archive: PathBuf,
    /// Where the members go, relative to the layer root (empty for the root).
    pub into: String,
    /// `--chown`: the owner of every member (else the archive's).
    pub owner: Option<(u64, u64)>,
    /// `--chmod`: the mode of every member (else the archive's).
    pub chmod: Option<u32>,
}

/// What a COPY or ADD puts in its layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub entries: Vec<Entry>,
    pub unpacks: Vec<Unpack>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot unpack `{}`: {cause}", archive.display())]
    Archive { archive: PathBuf, cause: io::Error },
}

impl Hint for LayerError {
    fn hint(&self) -> Option<String> {
        match self {
            LayerError::Store(e) => e.hint(),
            LayerError::Archive { .. } => None,
        }
    }
}

/// What tar may read between two members (the header, GNU long names, pax records, sparse
/// maps): the tar crate keeps those in memory, so a "long name" of gigabytes must fail instead.
const BETWEEN_MEMBERS: u64 = 1 << 20;

/// The longest member path an archive may have (Linux's PATH_MAX).
const MAX_MEMBER_PATH: usize = 4096;

/// A layer written to the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Write `entries` as a layer blob. Later entries for the same path replace earlier ones.
pub fn write(
    store: &Transaction,
    entries: Vec<Entry>,
    compression: Compression,
    epoch: Option<u64>,
) -> Result<LayerInfo, StoreError> {
    let contents = Contents {
        entries,
        unpacks: Vec::new(),
    };
    write_contents(store, contents, compression, epoch).map_err(|e| match e {
        LayerError::Store(e) => e,
        LayerError::Archive { .. } => unreachable!("no archive to unpack"),
    })
}

/// Write `contents` as a layer blob: the entries (later ones for the same path replacing
/// earlier ones), then the members of each archive.
pub fn write_contents(
    store: &Transaction,
    contents: Contents,
    compression: Compression,
    epoch: Option<u64>,
) -> Result<LayerInfo, LayerError> {
    let Contents {
        mut entries,
        unpacks,
    } = contents;
    // Keep the last entry for each path, then sort (a parent before its children).
    let mut seen = std::collections::HashSet::new();
    entries.reverse();
    entries.retain(|e| seen.insert(e.path.clone()));
    entries.sort_by(|a, b| path_order(&a.path, &b.path));
    let blob = store.blob_writer()?;
    let io_err = |e: io::Error| StoreError::Io {
        what: "cannot write a layer in",
        path: store.tmp_dir().to_path_buf(),
        source: e,
    };
    let tar_err = |e: TarError| match e {
        TarError::Out(e) => LayerError::Store(io_err(e)),
        TarError::Archive(archive, cause) => LayerError::Archive { archive, cause },
    };
    let encoder = compression.writer(blob).map_err(io_err)?;
    let (encoder, diff_id) = write_tar(encoder, &entries, &unpacks, epoch).map_err(tar_err)?;
    let blob = encoder.finish().map_err(io_err)?;
    let (digest, size) = blob.commit(store, None)?;
    Ok(LayerInfo {
        descriptor: Descriptor::new(compression.media_type(), digest, size),
        diff_id,
    })
}

/// Why writing the tar stopped: the output failed, or an archive to unpack is unreadable.
enum TarError {
    Out(io::Error),
    Archive(PathBuf, io::Error),
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> TarError {
        TarError::Out(e)
    }
}

fn write_tar<W: Write>(
    out: W,
    entries: &[Entry],
    unpacks: &[Unpack],
    epoch: Option<u64>,
) -> Result<(W, Digest), TarError> {
    let hashing = HashingWriter::new(out, Algorithm::Sha256);
    let mut tar = TarWriter::new(hashing, Style::layer(epoch));
    write_entries(&mut tar, entries)?;
    for u in unpacks {
        unpack(&mut tar, u)?;
    }
    let hashing = tar.finish()?;
    let (out, digest, _) = hashing.finish();
    Ok((out, digest))
}

fn write_entries<W: Write>(tar: &mut TarWriter<W>, entries: &[Entry]) -> io::Result<()> {
    for e in entries {
        let meta = Meta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
        };
        match &e.kind {
            Kind::Dir => tar.dir(&e.path, &meta)?,
            Kind::File(Content::Bytes(b)) => {
                tar.file(&e.path, &meta, b.len() as u64, &b[..])?;
            }
            Kind::File(Content::Path(p)) => {
                let f = File::open(p)?;
                let len = f.metadata()?.len();
                if tar.file(&e.path, &meta, len, f)? != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} shrank while it was read", p.display()),
                    ));
                }
            }
            Kind::Symlink(target) => tar.symlink(&e.path, &meta, target)?,
            Kind::Hardlink(target) => tar.hardlink(&e.path, &meta, target)?,
        }
    }
    Ok(())
}

/// A reader that fails once `left` bytes are read; the caller moves the limit.
struct Capped<R> {
    inner: R,
    left: Rc<Cell<u64>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(io::Error::other(format!(
                "a member's header (long name, pax records) is larger than {BETWEEN_MEMBERS} bytes"
            )));
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..take])?;
        self.left.set(left - n as u64);
        Ok(n)
    }
}

type Member<'a> = tar::Entry<'a, Capped<Box<dyn Read>>>;

/// Call `f` for every member of `archive` a layer takes (directories, files, symlinks, hard
/// links), numbered in order, with its cleaned path. What `f` leaves of a member's data is read
/// here, so that tar itself only ever reads headers (under [`BETWEEN_MEMBERS`]).
fn each_member(
    archive: &Path,
    mut f: impl FnMut(u64, String, &mut Member<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let file = File::open(archive)?;
    let Some((reader, _)) = crate::layer::compression::sniffed(file)? else {
        return Err(io::Error::other("the input is empty"));
    };
    let left = Rc::new(Cell::new(0));
    let mut tar = tar::Archive::new(Capped {
        inner: reader,
        left: left.clone(),
    });
    let mut members = tar.entries()?;
    let mut n = 0;
    loop {
        left.set(BETWEEN_MEMBERS);
        let Some(member) = members.next() else {
            return Ok(());
        };
        left.set(u64::MAX);
        let mut member = member?;
        let path = member.path()?.to_string_lossy().into_owned();
        let rel = crate::lexical::relative(&path);
        if rel.len() > MAX_MEMBER_PATH {
            return Err(io::Error::other(format!(
                "a member's path is longer than {MAX_MEMBER_PATH} bytes"
            )));
        }
        let kept = matches!(
            member.header().entry_type(),
            tar::EntryType::Directory
                | tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::Symlink
                | tar::EntryType::Link
        );
        if kept && !rel.is_empty() {
            f(n, rel, &mut member)?;
            n += 1;
        }
        io::copy(&mut member, &mut io::sink())?;
    }
}

/// The members of `u.archive` into the layer: a first pass finds the last member of each path
/// (one small record per distinct path; never file contents), the second streams those.
fn unpack<W: Write>(tar: &mut TarWriter<W>, u: &Unpack) -> Result<(), TarError> {
    let in_archive = |e: io::Error| TarError::Archive(u.archive.clone(), e);
    let mut last: HashMap<String, u64> = HashMap::new();
    each_member(&u.archive, |n, rel, _| {
        last.insert(rel, n);
        Ok(())
    })
    .map_err(in_archive)?;
    let join = |rel: &str| {
        if u.into.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", u.into)
        }
    };
    // Output errors are told apart from the archive's: they are the store's.
    let mut out_err: Option<io::Error> = None;
    let mut write = |n: u64, rel: String, m: &mut Member<'_>| -> io::Result<()> {
        if last.get(&rel) != Some(&n) {
            return Ok(());
        }
        let src = m.header();
        let (uid, gid) = u
            .owner
            .unwrap_or((src.uid().unwrap_or(0), src.gid().unwrap_or(0)));
        let meta = Meta {
            mode: u.chmod.unwrap_or(src.mode().unwrap_or(0o644)),
            uid,
            gid,
            mtime: src.mtime().unwrap_or(0),
        };
        let path = join(&rel);
        let kind = src.entry_type();
        let link = m.link_name()?.map(|l| l.to_string_lossy().into_owned());
        let wrote = match kind {
            tar::EntryType::Directory => tar.dir(&path, &meta),
            tar::EntryType::Symlink => tar.symlink(&path, &meta, link.unwrap_or_default()),
            tar::EntryType::Link => {
                // A hard link names another member: it moves with the members.
                let target = crate::lexical::relative(&link.unwrap_or_default());
                tar.hardlink(&path, &meta, join(&target))
            }
            _ => {
                let size = m.size();
                match tar.file(&path, &meta, size, m) {
                    // The archive's own failure, not the output's.
                    Err(FileError::Read(e)) => return Err(e),
                    Err(FileError::Write(e)) => Err(e),
                    Ok(read) if read != size => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the archive is truncated",
                        ));
                    }
                    Ok(_) => Ok(()),
                }
            }
        };
        wrote.map_err(|e| {
            let shown = io::Error::new(e.kind(), e.to_string());
            out_err = Some(e);
            shown
        })
    };
    let r = each_member(&u.archive, &mut write);
    if let Some(e) = out_err {
        return Err(TarError::Out(e));
    }
    r.map_err(in_archive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn entries() -> Vec<Entry> {
        let e = |path: &str, kind: Kind| Entry {
            path: path.into(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        };
        vec![
            e("app/z", Kind::File(Content::Bytes(b"z".to_vec()))),
            e("app", Kind::Dir),
            e("app-b", Kind::Symlink("app".into())),
            e("app/a", Kind::File(Content::Bytes(b"a".to_vec()))),
            e("app/h", Kind::Hardlink("app/a".into())),
        ]
    }

    fn listing(store: &Store, info: &LayerInfo) -> Vec<(String, u64)> {
        let f = store.open_blob(&info.descriptor.digest).unwrap();
        let (r, _) = crate::layer::compression::sniffed(f).unwrap().unwrap();
        let mut a = tar::Archive::new(r);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn sorted_deterministic_and_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().begin().unwrap();
        let a = write(&store, entries(), Compression::Gzip, None).unwrap();
        let mut reversed = entries();
        reversed.reverse();
        let b = write(&store, reversed, Compression::Gzip, None).unwrap();
        assert_eq!(a, b, "same entries in any order give the same layer");
        let names: Vec<String> = listing(&store, &a).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["app/", "app/a", "app/h", "app/z", "app-b"]);
        let c = write(&store, entries(), Compression::Gzip, Some(1_000)).unwrap();
        assert_ne!(a.diff_id, c.diff_id);
        assert!(listing(&store, &c).iter().all(|(_, m)| *m == 1_000));
    }

    fn member(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o640);
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if path.len() <= 100 {
            // As written, even absolute or with `..` (the tar crate refuses to write those).
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        } else {
            b.append_data(&mut h, path, data).unwrap();
        }
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, path, target).unwrap();
    }

    fn zstd(raw: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(raw, 3).unwrap()
    }

    /// Every member of a layer: path, kind, mode, owner, link or content.
    fn members(store: &Store, info: &LayerInfo) -> Vec<String> {
        let f = store.open_blob(&info.descriptor.digest).unwrap();
        let (r, _) = crate::layer::compression::sniffed(f).unwrap().unwrap();
        let mut a = tar::Archive::new(r);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = String::new();
                e.read_to_string(&mut data).unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| format!(" -> {}", l.display()))
                    .unwrap_or_default();
                format!(
                    "{} {:?} {:o} {}:{}{link}{}",
                    e.path().unwrap().display(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    if data.is_empty() {
                        String::new()
                    } else {
                        format!(" {data:?}")
                    }
                )
            })
            .collect()
    }

    #[test]
    fn archive_members_are_streamed_after_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root"))
            .unwrap()
            .begin()
            .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, tar::EntryType::Directory, "./", b"");
        member(&mut b, tar::EntryType::Directory, "d/", b"");
        member(&mut b, tar::EntryType::Regular, "d/f", b"first");
        member(&mut b, tar::EntryType::Regular, "/abs/../x", b"x");
        link(&mut b, tar::EntryType::Symlink, "d/s", "/etc/passwd");
        link(&mut b, tar::EntryType::Link, "d/h", "./x");
        member(&mut b, tar::EntryType::Fifo, "fifo", b"");
        member(&mut b, tar::EntryType::Regular, "d/f", b"second");
        let archive = dir.path().join("a.tar.zst");
        std::fs::write(&archive, zstd(&b.into_inner().unwrap())).unwrap();
        let contents = Contents {
            entries: entries()[1..2].to_vec(),
            unpacks: vec![Unpack {
                archive: archive.clone(),
                into: "opt/app".into(),
                owner: None,
                chmod: None,
            }],
        };
        let info = write_contents(&store, contents.clone(), Compression::Gzip, None).unwrap();
        assert_eq!(
            members(&store, &info),
            vec![
                "app/ Directory 755 0:0",
                "opt/app/d/ Directory 640 7:8",
                "opt/app/x Regular 640 7:8 \"x\"",
                "opt/app/d/s Symlink 777 0:0 -> /etc/passwd",
                "opt/app/d/h Link 777 0:0 -> opt/app/x",
                "opt/app/d/f Regular 640 7:8 \"second\"",
            ],
            "the last member of a path wins; links move with the members"
        );
        let again = write_contents(&store, contents, Compression::Gzip, None).unwrap();
        assert_eq!(info, again, "deterministic");
        let owned = Contents {
            entries: vec![],
            unpacks: vec![Unpack {
                archive,
                into: String::new(),
                owner: Some((1, 2)),
                chmod: Some(0o600),
            }],
        };
        let info = write_contents(&store, owned, Compression::Zstd, Some(1_000)).unwrap();
        let listed = members(&store, &info);
        assert_eq!(listed[1], "x Regular 600 1:2 \"x\"");
        let f = store.open_blob(&info.descriptor.digest).unwrap();
        let (r, _) = crate::layer::compression::sniffed(f).unwrap().unwrap();
        let mut a = tar::Archive::new(r);
        let mtimes: Vec<u64> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().mtime().unwrap())
            .collect();
        assert!(mtimes.iter().all(|m| *m <= 1_000), "clamped: {mtimes:?}");
        assert!(mtimes.contains(&1_000));
    }

    fn unpack_error(raw: Vec<u8>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root"))
            .unwrap()
            .begin()
            .unwrap();
        let archive = dir.path().join("a.tar");
        std::fs::write(&archive, raw).unwrap();
        let contents = Contents {
            entries: vec![],
            unpacks: vec![Unpack {
                archive,
                into: String::new(),
                owner: None,
                chmod: None,
            }],
        };
        match write_contents(&store, contents, Compression::Gzip, None) {
            Err(e @ LayerError::Archive { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_archives_fail_without_reading_their_headers_into_memory() {
        // A GNU long name of 2 MiB: the tar crate would keep all of it.
        let mut b = tar::Builder::new(Vec::new());
        member(
            &mut b,
            tar::EntryType::GNULongName,
            "././@LongLink",
            &vec![b'a'; 2 << 20],
        );
        member(&mut b, tar::EntryType::Regular, "short", b"x");
        let e = unpack_error(b.into_inner().unwrap());
        assert!(e.contains("larger than 1048576 bytes"), "{e}");
        // A path longer than PATH_MAX.
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, tar::EntryType::Regular, &"d/".repeat(2100), b"x");
        let e = unpack_error(b.into_inner().unwrap());
        assert!(e.contains("longer than 4096 bytes"), "{e}");
        // Cut in the middle of a member's data.
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, tar::EntryType::Regular, "big", &[7u8; 4096]);
        let mut raw = b.into_inner().unwrap();
        raw.truncate(512 + 1000);
        let e = unpack_error(raw);
        assert!(e.contains("cannot unpack"), "{e}");
    }

    #[test]
    fn zstd_has_the_oci_media_type_and_the_same_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().begin().unwrap();
        let g = write(&store, entries(), Compression::Gzip, None).unwrap();
        let z = write(&store, entries(), Compression::Zstd, None).unwrap();
        assert_eq!(
            z.descriptor.media_type,
            crate::oci::media_type::OCI_LAYER_ZSTD
        );
        assert_eq!(g.diff_id, z.diff_id);
        assert_ne!(g.descriptor.digest, z.descriptor.digest);
        assert_eq!(listing(&store, &z).len(), 5);
    }
}
