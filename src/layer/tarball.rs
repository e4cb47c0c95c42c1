//! The one writer of the tar streams manifold produces: build layers (COPY, ADD, WORKDIR), the
//! diffs of RUN steps and `commit`, and saved image archives.
//!
//! Every header is made fresh from what the caller says, never copied from a source: entry
//! type, permission bits (setuid, setgid and sticky included), numeric owner, mtime (clamped to
//! SOURCE_DATE_EPOCH when the style has an epoch), size and device numbers; no user or group
//! names, no atime or ctime. A path or link target longer than a header holds goes into a GNU
//! long-name entry; xattrs go into PAX records. A file's data is exactly the size its header
//! says, whatever the file does meanwhile. The order of the entries is the caller's:
//! [`path_order`] is the one built layers are sorted by.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::Path;

/// The header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gnu,
    Ustar,
}

/// How a stream's headers are written. The styles differ where the tools before manifold's
/// writers differed, and layer digests depend on every byte: they are kept as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub format: Format,
    /// Directories named with a trailing `/` (as docker and BuildKit write them).
    pub dir_slash: bool,
    /// SOURCE_DATE_EPOCH: no mtime later than it.
    pub epoch: Option<u64>,
}

impl Style {
    /// Build layers (COPY, ADD, WORKDIR).
    pub fn layer(epoch: Option<u64>) -> Style {
        Style {
            format: Format::Gnu,
            dir_slash: true,
            epoch,
        }
    }

    /// Container diffs (RUN steps, `commit`): directories without the trailing `/`, as the
    /// first diff writer named them (changing it would change every RUN layer's digest).
    pub fn diff(epoch: Option<u64>) -> Style {
        Style {
            format: Format::Gnu,
            dir_slash: false,
            epoch,
        }
    }

    /// Image archives (`save`): ustar headers, as `docker save` writes them.
    pub fn archive() -> Style {
        Style {
            format: Format::Ustar,
            dir_slash: true,
            epoch: None,
        }
    }
}

/// What a header says of an entry besides its path and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits; only the low 12 are written.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Meta {
    /// Owned by root, mtime 0.
    pub const fn mode(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }
}

/// A device node's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Char,
    Block,
}

/// Why a file entry failed: its source, or the stream it went to (a full disk, say).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Read(io::Error),
    #[error(transparent)]
    Write(io::Error),
}

impl From<FileError> for io::Error {
    fn from(e: FileError) -> io::Error {
        match e {
            FileError::Read(e) | FileError::Write(e) => e,
        }
    }
}

/// A tar stream being written.
pub struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    style: Style,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, style: Style) -> TarWriter<W> {
        TarWriter {
            tar: tar::Builder::new(out),
            style,
        }
    }

    fn header(&self, kind: tar::EntryType, meta: &Meta, size: u64) -> tar::Header {
        let mut h = match self.style.format {
            Format::Gnu => tar::Header::new_gnu(),
            Format::Ustar => tar::Header::new_ustar(),
        };
        h.set_entry_type(kind);
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(self.mtime(meta.mtime));
        h.set_size(size);
        h
    }

    fn mtime(&self, mtime: u64) -> u64 {
        self.style.epoch.map_or(mtime, |epoch| mtime.min(epoch))
    }

    pub fn dir(&mut self, path: impl AsRef<Path>, meta: &Meta) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, meta, 0);
        if self.style.dir_slash {
            let mut named = OsString::from(path.as_ref().as_os_str());
            named.push("/");
            self.tar.append_data(&mut h, named, io::empty())
        } else {
            self.tar.append_data(&mut h, path, io::empty())
        }
    }

    /// A regular file of `size` bytes read from `data`. Returns how many bytes `data` had, up to
    /// `size`: a source that ends early is padded with zeros so that the stream stays valid, and
    /// the caller decides whether that is an error.
    pub fn file(
        &mut self,
        path: impl AsRef<Path>,
        meta: &Meta,
        size: u64,
        data: impl Read,
    ) -> Result<u64, FileError> {
        let mut h = self.header(tar::EntryType::Regular, meta, size);
        let mut source = Exactly {
            inner: data,
            remaining: size,
            read: 0,
            failed: None,
        };
        let wrote = self.tar.append_data(&mut h, path, &mut source);
        if let Some(e) = source.failed {
            return Err(FileError::Read(e));
        }
        wrote.map_err(FileError::Write)?;
        Ok(source.read)
    }

    pub fn symlink(
        &mut self,
        path: impl AsRef<Path>,
        meta: &Meta,
        target: impl AsRef<Path>,
    ) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, meta, 0);
        self.tar.append_link(&mut h, path, target)
    }

    /// A hard link to `target`, an earlier entry of the same stream.
    pub fn hardlink(
        &mut self,
        path: impl AsRef<Path>,
        meta: &Meta,
        target: impl AsRef<Path>,
    ) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Link, meta, 0);
        self.tar.append_link(&mut h, path, target)
    }

    pub fn fifo(&mut self, path: impl AsRef<Path>, meta: &Meta) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Fifo, meta, 0);
        self.tar.append_data(&mut h, path, io::empty())
    }

    pub fn device(
        &mut self,
        path: impl AsRef<Path>,
        meta: &Meta,
        kind: Device,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        let kind = match kind {
            Device::Char => tar::EntryType::Char,
            Device::Block => tar::EntryType::Block,
        };
        let mut h = self.header(kind, meta, 0);
        h.set_device_major(major)?;
        h.set_device_minor(minor)?;
        self.tar.append_data(&mut h, path, io::empty())
    }

    /// An OCI whiteout or opaque marker (`.wh.NAME`, `.wh..wh..opq`): an empty regular file,
    /// mode 0644, whose owner fields are left blank as the first diff writer left them.
    pub fn whiteout(&mut self, path: impl AsRef<Path>, mtime: u64) -> io::Result<()> {
        let mut h = match self.style.format {
            Format::Gnu => tar::Header::new_gnu(),
            Format::Ustar => tar::Header::new_ustar(),
        };
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(self.mtime(mtime));
        h.set_size(0);
        self.tar.append_data(&mut h, path, io::empty())
    }

    /// Extended attributes of the next entry, as PAX records (`SCHILY.xattr.NAME`); none writes
    /// nothing.
    pub fn xattrs(&mut self, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let records: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// Ends the stream (the two zero blocks); returns the writer it went to.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

/// Exactly `remaining` bytes of `inner`: cut where it has more, zeros where it has less, and
/// its own failure kept apart from the output's.
struct Exactly<R> {
    inner: R,
    remaining: u64,
    read: u64,
    failed: Option<io::Error>,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(0) => {
                buf[..want].fill(0);
                want
            }
            Ok(n) => {
                self.read += n as u64;
                n
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let shown = io::Error::new(e.kind(), e.to_string());
                self.failed = Some(e);
                return Err(shown);
            }
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The order of a built layer's entries: by path component, so that a directory comes right
/// before what it holds (`a`, `a/x`, `a-b`; plain byte order would put `a-b` before `a/x`). A
/// walk of a directory tree in name order yields the same order.
pub fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/')
        .map(str::as_bytes)
        .cmp(b.split('/').map(str::as_bytes))
}

/// Whether a 512-byte block is a tar header (ustar, or old-style GNU/v7 with a valid checksum).
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    // v7 tar: verify the header checksum.
    let field = String::from_utf8_lossy(&block[148..156]);
    let Ok(stored) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    sum == stored
}

/// The paths of a stream's entries, in order (tests).
#[cfg(test)]
pub(crate) fn paths(bytes: &[u8]) -> Vec<String> {
    tar::Archive::new(bytes)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry of a stream as one line: path, type, mode, owner, mtime, link, data.
    pub(crate) fn listing(bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| format!(" -> {}", l.display()))
                    .unwrap_or_default();
                let xattrs: Vec<String> = e
                    .pax_extensions()
                    .unwrap()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        let x = x.unwrap();
                        format!(
                            " {}={}",
                            x.key().unwrap(),
                            String::from_utf8_lossy(x.value_bytes())
                        )
                    })
                    .collect();
                format!(
                    "{} {:?} {:o} {}:{} @{}{link}{}{}",
                    e.path().unwrap().display(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap_or(0),
                    h.gid().unwrap_or(0),
                    h.mtime().unwrap(),
                    if data.is_empty() {
                        String::new()
                    } else {
                        format!(" {:?}", String::from_utf8_lossy(&data))
                    },
                    xattrs.concat(),
                )
            })
            .collect()
    }

    fn sample(style: Style) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), style);
        let m = Meta {
            mode: 0o4755 | 0o100000,
            uid: 1000,
            gid: 50,
            mtime: 2_000,
        };
        w.dir("d", &m).unwrap();
        w.xattrs(&[("security.capability".into(), b"cap".to_vec())])
            .unwrap();
        assert_eq!(w.file("d/f", &m, 3, &b"abcdef"[..]).unwrap(), 3);
        assert_eq!(w.file("d/short", &m, 4, &b"ab"[..]).unwrap(), 2);
        w.symlink("d/s", &m, "/etc/passwd").unwrap();
        w.hardlink("d/h", &m, "d/f").unwrap();
        w.fifo("d/p", &m).unwrap();
        w.device("d/null", &m, Device::Char, 1, 3).unwrap();
        w.whiteout("d/.wh.gone", 3_000).unwrap();
        let long = format!("d/{}", "x".repeat(150));
        w.file(&long, &m, 0, io::empty()).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn headers_are_normalised_and_clamped() {
        let long = format!("d/{} Regular 4755 1000:50 @1000", "x".repeat(150));
        assert_eq!(
            listing(&sample(Style::layer(Some(1_000)))),
            vec![
                "d/ Directory 4755 1000:50 @1000",
                "d/f Regular 4755 1000:50 @1000 \"abc\" SCHILY.xattr.security.capability=cap",
                "d/short Regular 4755 1000:50 @1000 \"ab\\0\\0\"",
                "d/s Symlink 4755 1000:50 @1000 -> /etc/passwd",
                "d/h Link 4755 1000:50 @1000 -> d/f",
                "d/p Fifo 4755 1000:50 @1000",
                "d/null Char 4755 1000:50 @1000",
                "d/.wh.gone Regular 644 0:0 @1000",
                long.as_str(),
            ]
        );
        let diff = listing(&sample(Style::diff(None)));
        assert_eq!(diff[0], "d Directory 4755 1000:50 @2000");
        assert_eq!(diff[7], "d/.wh.gone Regular 644 0:0 @3000");
        // The same entries give the same bytes.
        assert_eq!(sample(Style::diff(None)), sample(Style::diff(None)));
    }

    /// The bytes of one header, pinned: they are part of every layer digest.
    #[test]
    fn header_bytes_are_what_the_former_writers_wrote() {
        // What builder/layer.rs wrote for a file.
        let mut old = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(1);
        h.set_gid(2);
        h.set_mtime(5);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        old.append_data(&mut h, "a/b", &b"x"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(5);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        old.append_data(&mut h, "a/", io::empty()).unwrap();
        // What layer/diff.rs wrote for a whiteout.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(5);
        h.set_size(0);
        old.append_data(&mut h, "a/.wh.x", io::empty()).unwrap();
        let old = old.into_inner().unwrap();

        let mut w = TarWriter::new(Vec::new(), Style::layer(None));
        let m = Meta {
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime: 5,
        };
        w.file("a/b", &m, 1, &b"x"[..]).unwrap();
        w.dir(
            "a",
            &Meta {
                mode: 0o755,
                mtime: 5,
                ..Meta::default()
            },
        )
        .unwrap();
        w.whiteout("a/.wh.x", 5).unwrap();
        assert_eq!(w.finish().unwrap(), old);

        // What archive/save.rs wrote.
        let mut old = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        old.append_data(&mut h, "manifest.json", &b"[]"[..])
            .unwrap();
        let mut w = TarWriter::new(Vec::new(), Style::archive());
        w.file("manifest.json", &Meta::mode(0o644), 2, &b"[]"[..])
            .unwrap();
        assert_eq!(w.finish().unwrap(), old.into_inner().unwrap());
    }

    #[test]
    fn a_failing_source_is_told_from_a_failing_output() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let mut w = TarWriter::new(Vec::new(), Style::layer(None));
        match w.file("f", &Meta::mode(0o644), 10, Broken) {
            Err(FileError::Read(e)) => assert_eq!(e.to_string(), "disk gone"),
            other => panic!("{other:?}"),
        }
        let mut small = [0u8; 100];
        let mut w = TarWriter::new(&mut small[..], Style::layer(None));
        assert!(matches!(
            w.file("f", &Meta::mode(0o644), 10, &[1u8; 10][..]),
            Err(FileError::Write(_))
        ));
    }

    #[test]
    fn layers_sort_by_component() {
        let mut paths = vec!["a-b", "a/x", "a", "a/x/y", "b", "a.c"];
        paths.sort_by(|a, b| path_order(a, b));
        assert_eq!(paths, vec!["a", "a/x", "a/x/y", "a-b", "a.c", "b"]);
    }
}
