//! Deterministic layer tarballs for COPY, ADD and WORKDIR: entries sorted by path, headers
//! normalised (numeric owners only, no user/group names, no atime/ctime, mtimes clamped to
//! SOURCE_DATE_EPOCH), compressed with gzip or zstd (OCI media types) and written straight into
//! the store while the diff ID (the digest of the uncompressed tar) is computed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::oci::{Algorithm, Descriptor, Digest, HashingWriter, media_type};
use crate::store::{Store, StoreError};

/// Layer compression of build output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        }
    }

    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

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

/// A layer written to the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Write `entries` as a layer blob. Later entries for the same path replace earlier ones.
pub fn write(
    store: &Store,
    mut entries: Vec<Entry>,
    compression: Compression,
    epoch: Option<u64>,
) -> Result<LayerInfo, StoreError> {
    // Keep the last entry for each path, then sort by path bytes (a parent sorts before its
    // children because `/` follows nothing that a parent's name can end with).
    let mut seen = std::collections::HashSet::new();
    entries.reverse();
    entries.retain(|e| seen.insert(e.path.clone()));
    entries.sort_by(|a, b| sort_key(&a.path).cmp(&sort_key(&b.path)));
    let blob = store.blob_writer()?;
    let io_err = |e: io::Error| StoreError::Io {
        what: "cannot write a layer in",
        path: store.tmp_dir().to_path_buf(),
        source: e,
    };
    let (blob, diff_id) = match compression {
        Compression::Gzip => {
            let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::new(6));
            let (gz, diff_id) = write_tar(gz, &entries, epoch).map_err(io_err)?;
            (gz.finish().map_err(io_err)?, diff_id)
        }
        Compression::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(blob, 3).map_err(io_err)?;
            z.include_checksum(false).map_err(io_err)?;
            let (z, diff_id) = write_tar(z, &entries, epoch).map_err(io_err)?;
            (z.finish().map_err(io_err)?, diff_id)
        }
    };
    let (digest, size) = blob.commit(store, None)?;
    Ok(LayerInfo {
        descriptor: Descriptor::new(compression.media_type(), digest, size),
        diff_id,
    })
}

fn sort_key(p: &str) -> Vec<&[u8]> {
    p.split('/').map(str::as_bytes).collect()
}

fn write_tar<W: Write>(out: W, entries: &[Entry], epoch: Option<u64>) -> io::Result<(W, Digest)> {
    let hashing = HashingWriter::new(out, Algorithm::Sha256);
    let mut tar = tar::Builder::new(hashing);
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(epoch.map_or(e.mtime, |ep| e.mtime.min(ep)));
        match &e.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{}/", e.path), io::empty())?;
            }
            Kind::File(Content::Bytes(b)) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(b.len() as u64);
                tar.append_data(&mut h, &e.path, &b[..])?;
            }
            Kind::File(Content::Path(p)) => {
                let f = File::open(p)?;
                let len = f.metadata()?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(len);
                // A file that changes while read must not corrupt the archive: take exactly
                // `len` bytes.
                let mut r = f.take(len);
                let mut counted = CountingReader {
                    inner: &mut r,
                    n: 0,
                };
                tar.append_data(&mut h, &e.path, &mut counted)?;
                if counted.n != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} shrank while it was read", p.display()),
                    ));
                }
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, &e.path, target)?;
            }
            Kind::Hardlink(target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                tar.append_link(&mut h, &e.path, target)?;
            }
        }
    }
    let hashing = tar.into_inner()?;
    let (out, digest, _) = hashing.finish();
    Ok((out, digest))
}

struct CountingReader<'a, R> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (r, _) = crate::archive::decompressed(f).unwrap();
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
        let store = Store::open(dir.path()).unwrap();
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

    #[test]
    fn zstd_has_the_oci_media_type_and_the_same_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let g = write(&store, entries(), Compression::Gzip, None).unwrap();
        let z = write(&store, entries(), Compression::Zstd, None).unwrap();
        assert_eq!(z.descriptor.media_type, media_type::OCI_LAYER_ZSTD);
        assert_eq!(g.diff_id, z.diff_id);
        assert_ne!(g.descriptor.digest, z.descriptor.digest);
        assert_eq!(listing(&store, &z).len(), 5);
    }
}
