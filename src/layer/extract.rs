//! Unpacking one layer tarball into a directory, safely and in overlayfs's form.
//!
//! Every path is resolved under the destination with openat2(RESOLVE_IN_ROOT) and every entry
//! is created with an `*at` call on a plain name, so `../` entries, absolute or relative
//! symlinks, hardlinks to host files and symlink loops are contained or refused: nothing outside
//! the destination is ever read, written or linked. Device nodes are refused (skipped and
//! reported); FIFOs are kept. OCI whiteouts become overlayfs whiteouts (`.wh.NAME` → a 0/0
//! character device `NAME`; `.wh..wh..opq` → `trusted.overlay.opaque=y` on its directory, or
//! `user.overlay.opaque=y` for overlays mounted with `userxattr` in a user namespace, where
//! `trusted.*` cannot be set), or, for a plain directory that layers are applied to one after
//! the other ([`Whiteouts::Apply`]), delete what they hide. Ownership, modes (setuid included),
//! xattrs and times are kept (or every owner squashed to root, for a user namespace that maps
//! one id); overlayfs's own xattrs from the archive are dropped (an image must not forge
//! overlayfs's metadata), and `trusted.*` ones where the process may not set them.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::LayerError;
use super::inroot::{self, InRoot};
use super::walk::remove_all_at;
use crate::space::{NoSpace, is_out_of_space};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The opaque marker of overlayfs mounted with `userxattr` (Linux 5.11+, user namespaces).
pub const USER_OVERLAY_OPAQUE_XATTR: &str = "user.overlay.opaque";
/// The opaque marker fuse-overlayfs writes in an upper directory.
pub const FUSE_OVERLAY_OPAQUE_XATTR: &str = "user.fuseoverlayfs.opaque";

/// The xattr namespaces that belong to overlayfs (kernel, `userxattr`, fuse-overlayfs): never
/// taken from an image, never written into one.
pub const OVERLAY_XATTR_PREFIXES: [&str; 3] =
    ["trusted.overlay.", "user.overlay.", "user.fuseoverlayfs."];

/// Whether an xattr is overlayfs's own metadata.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    OVERLAY_XATTR_PREFIXES
        .iter()
        .any(|p| name.starts_with(p.as_bytes()))
}

/// Whether an xattr marks an opaque directory, whichever overlay wrote it.
pub fn is_opaque_marker(name: &[u8], value: &[u8]) -> bool {
    value == b"y"
        && [
            OVERLAY_OPAQUE_XATTR,
            USER_OVERLAY_OPAQUE_XATTR,
            FUSE_OVERLAY_OPAQUE_XATTR,
        ]
        .iter()
        .any(|m| m.as_bytes() == name)
}

/// Whether the directory at `path` carries an opaque marker (any overlay's).
pub fn is_opaque_dir(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    [
        OVERLAY_OPAQUE_XATTR,
        USER_OVERLAY_OPAQUE_XATTR,
        FUSE_OVERLAY_OPAQUE_XATTR,
    ]
    .iter()
    .any(|name| rustix::fs::lgetxattr(path, *name, &mut buf).is_ok_and(|n| &buf[..n] == b"y"))
}

/// What OCI whiteouts become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// overlayfs's form, for a lower directory: 0/0 character devices, and the opaque marker
    /// in the given xattr.
    Overlay { opaque_xattr: &'static str },
    /// Applied to what earlier layers unpacked into the same directory: a whiteout deletes its
    /// path, an opaque marker what earlier layers put in its directory.
    Apply,
}

/// Who owns what is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// As the archive says.
    Keep,
    /// Everything owned by the process (root in a user namespace that maps a single id, where
    /// no other owner exists).
    Squash,
}

/// How an archive is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    pub whiteouts: Whiteouts,
    pub owners: Owners,
}

impl Default for ExtractOptions {
    /// overlayfs's form with `trusted.overlay.opaque`, owners kept: a snapshot unpacked as root.
    fn default() -> ExtractOptions {
        ExtractOptions {
            whiteouts: Whiteouts::Overlay {
                opaque_xattr: OVERLAY_OPAQUE_XATTR,
            },
            owners: Owners::Keep,
        }
    }
}

/// What an entry's name means as an OCI whiteout; every reader of layers (extraction, build's
/// trees, verify) asks here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `.wh..wh..opq`: the directory hides what lower layers have in it.
    Opaque,
    /// `.wh.NAME`: NAME, an entry of the same directory, is removed.
    Remove(&'a [u8]),
    /// `.wh..wh.*` other than the opaque marker, and a bare `.wh.`: aufs bookkeeping, nothing to
    /// do.
    Ignore,
    /// `.wh..` and `.wh...`: they would remove the directory itself or its parent, never an
    /// entry of the directory. Refused (see [`bad_whiteout`]).
    Invalid,
}

/// None when `name` (one path component) is no whiteout.
pub fn whiteout(name: &[u8]) -> Option<Whiteout<'_>> {
    if name == OPAQUE_WHITEOUT.as_bytes() {
        return Some(Whiteout::Opaque);
    }
    let hidden = name.strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    Some(match hidden {
        b"." | b".." => Whiteout::Invalid,
        b"" => Whiteout::Ignore,
        h if h.starts_with(WHITEOUT_PREFIX.as_bytes()) => Whiteout::Ignore,
        h => Whiteout::Remove(h),
    })
}

/// The error for a [`Whiteout::Invalid`] entry.
pub fn bad_whiteout() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a whiteout must name an entry of its directory, not `.` or `..`",
    )
}

/// What an extraction did besides the plain entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    pub entries: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Device nodes (other than overlay whiteouts) that were refused.
    pub refused_devices: Vec<String>,
    /// Entries of kinds a layer has no business holding (sockets, unknown types): skipped.
    pub skipped: Vec<String>,
}

struct Times {
    path: Vec<OsString>,
    mtime: Timespec,
}

/// The extraction of one archive into `dest` (an existing, empty directory).
pub struct Extractor {
    root: InRoot,
    options: ExtractOptions,
    /// With [`Whiteouts::Apply`]: the paths this archive created, which its own opaque markers
    /// leave alone.
    created: HashSet<Vec<OsString>>,
    /// The last parent directory opened, by its components: tarballs list a directory's
    /// files together, so most entries reuse it.
    cached_parent: Option<(Vec<OsString>, OwnedFd)>,
    dir_times: Vec<Times>,
    buffer: Vec<u8>,
    report: ExtractReport,
}

fn ioerr(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn display(comps: &[OsString]) -> String {
    inroot::join(comps).to_string_lossy().into_owned()
}

impl Extractor {
    pub fn new(dest: &Path) -> io::Result<Extractor> {
        Extractor::with_options(dest, ExtractOptions::default())
    }

    pub fn with_options(dest: &Path, options: ExtractOptions) -> io::Result<Extractor> {
        Ok(Extractor {
            root: InRoot::open(dest)?,
            options,
            created: HashSet::new(),
            cached_parent: None,
            dir_times: Vec::new(),
            buffer: vec![0u8; 1 << 20],
            report: ExtractReport::default(),
        })
    }

    /// Unpack every entry of the (uncompressed) tar stream; the stream is read to its end.
    pub fn extract<R: Read>(mut self, reader: R) -> Result<(ExtractReport, R), LayerError> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(LayerError::Corrupt)? {
            let mut entry = entry.map_err(LayerError::Corrupt)?;
            let path = entry.path_bytes().into_owned();
            let comps = inroot::clean(&path);
            self.entry(&mut entry, &comps).map_err(|source| {
                if is_out_of_space(&source) {
                    // Not the layer's fault: say so, and where.
                    let quota = source.kind() == io::ErrorKind::QuotaExceeded;
                    return NoSpace::at(self.root.path(), quota).into();
                }
                LayerError::Entry {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    source,
                }
            })?;
            self.report.entries += 1;
        }
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(LayerError::Corrupt)?;
        self.finish_times().map_err(|source| LayerError::Entry {
            path: "(directory times)".into(),
            source,
        })?;
        Ok((self.report, rest))
    }

    fn parent(&mut self, comps: &[OsString]) -> io::Result<OwnedFd> {
        if let Some((cached, fd)) = &self.cached_parent
            && cached.as_slice() == comps
        {
            return fd.try_clone();
        }
        let fd = self.root.create_dir_all(&inroot::join(comps))?;
        self.cached_parent = Some((comps.to_vec(), fd.try_clone()?));
        Ok(fd)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[OsString],
    ) -> io::Result<()> {
        let header = entry.header().clone();
        let kind = header.entry_type();
        let meta = Meta::of(entry)?;
        let Some((name, parent_comps)) = comps.split_last() else {
            // `./`: the root directory itself.
            if kind.is_dir() {
                let fd = self.root.open_at(
                    Path::new("."),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    Mode::empty(),
                )?;
                meta.apply_fd(&fd, self.options.owners)?;
                self.dir_times.push(Times {
                    path: Vec::new(),
                    mtime: meta.mtime,
                });
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();

        // OCI whiteouts.
        match whiteout(name_bytes) {
            None => {}
            Some(Whiteout::Invalid) => return Err(bad_whiteout()),
            Some(Whiteout::Ignore) => return Ok(()),
            Some(Whiteout::Opaque) => {
                let parent = self.parent(parent_comps)?;
                // The parent may be held by an O_PATH descriptor, which can neither carry an
                // xattr nor be listed.
                let dir = rustix::fs::openat(
                    &parent,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(ioerr)?;
                match self.options.whiteouts {
                    Whiteouts::Overlay { opaque_xattr } => {
                        rustix::fs::fsetxattr(
                            &dir,
                            opaque_xattr,
                            b"y",
                            rustix::fs::XattrFlags::empty(),
                        )
                        .map_err(ioerr)?;
                    }
                    Whiteouts::Apply => {
                        self.cached_parent = None;
                        self.clear_earlier(&dir, parent_comps)?;
                    }
                }
                self.report.opaque_dirs += 1;
                return Ok(());
            }
            Some(Whiteout::Remove(hidden)) => {
                let parent = self.parent(parent_comps)?;
                let hidden = OsStr::from_bytes(hidden);
                self.remove_existing(&parent, hidden, false)?;
                if let Whiteouts::Overlay { .. } = self.options.whiteouts {
                    rustix::fs::mknodat(
                        &parent,
                        hidden,
                        FileType::CharacterDevice,
                        Mode::empty(),
                        0,
                    )
                    .map_err(ioerr)?;
                }
                self.report.whiteouts += 1;
                return Ok(());
            }
        }
        if self.options.whiteouts == Whiteouts::Apply {
            self.created.insert(comps.to_vec());
        }
        let owners = self.options.owners;

        let parent = self.parent(parent_comps)?;
        match kind {
            tar::EntryType::Directory => {
                let kept = self.remove_existing(&parent, name, true)?;
                if !kept {
                    rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o700))
                        .map_err(ioerr)?;
                }
                let fd = rustix::fs::openat(
                    &parent,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(ioerr)?;
                meta.apply_fd(&fd, owners)?;
                self.dir_times.push(Times {
                    path: comps.to_vec(),
                    mtime: meta.mtime,
                });
                self.cached_parent = None;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.remove_existing(&parent, name, false)?;
                let fd = rustix::fs::openat(
                    &parent,
                    name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(ioerr)?;
                let mut file = File::from(fd);
                copy(entry, &mut file, &mut self.buffer)?;
                meta.apply_fd(file.as_fd(), owners)?;
                rustix::fs::futimens(&file, &meta.timestamps()).map_err(ioerr)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io::Error::other("symlink without a target"))?
                    .into_owned();
                self.remove_existing(&parent, name, false)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                    .map_err(ioerr)?;
                meta.chown_at(&parent, name, owners)?;
                meta.apply_xattrs_at(&parent, name)?;
                rustix::fs::utimensat(
                    &parent,
                    name.as_os_str(),
                    &meta.timestamps(),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(ioerr)?;
                self.cached_parent = None;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io::Error::other("hardlink without a target"))?
                    .into_owned();
                let target_comps = inroot::clean(&target);
                // The target must be something this layer already holds: resolved under the
                // root, never followed at its last component (a link to a symlink links the
                // symlink, as tar does).
                let source = self
                    .root
                    .open_at(
                        &inroot::join(&target_comps),
                        OFlags::PATH | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!(
                                "hardlink to `{}`, which is not in the layer: {e}",
                                String::from_utf8_lossy(&target)
                            ),
                        )
                    })?;
                let st = rustix::fs::fstat(&source).map_err(ioerr)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(io::Error::other(format!(
                        "hardlink to the directory `{}`",
                        String::from_utf8_lossy(&target)
                    )));
                }
                if target_comps.as_slice() == comps {
                    return Ok(()); // a link to itself: already there
                }
                self.remove_existing(&parent, name, false)?;
                rustix::fs::linkat(&source, "", &parent, name.as_os_str(), AtFlags::EMPTY_PATH)
                    .map_err(ioerr)?;
            }
            tar::EntryType::Fifo => {
                self.remove_existing(&parent, name, false)?;
                rustix::fs::mknodat(
                    &parent,
                    name.as_os_str(),
                    FileType::Fifo,
                    Mode::from_raw_mode(0o600),
                    0,
                )
                .map_err(ioerr)?;
                self.finish_node(&parent, name, &meta, owners)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if kind == tar::EntryType::Char && major == 0 && minor == 0 {
                    // Already in overlayfs's whiteout form (a raw upper directory's export).
                    self.remove_existing(&parent, name, false)?;
                    rustix::fs::mknodat(
                        &parent,
                        name.as_os_str(),
                        FileType::CharacterDevice,
                        Mode::empty(),
                        0,
                    )
                    .map_err(ioerr)?;
                    self.report.whiteouts += 1;
                } else {
                    self.report.refused_devices.push(format!(
                        "{} ({} {major}:{minor})",
                        display(comps),
                        if kind == tar::EntryType::Char {
                            "char"
                        } else {
                            "block"
                        }
                    ));
                }
            }
            other => {
                self.report.skipped.push(format!(
                    "{} (tar type {:?})",
                    display(comps),
                    other.as_byte() as char
                ));
            }
        }
        Ok(())
    }

    fn finish_node(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        owners: Owners,
    ) -> io::Result<()> {
        meta.chown_at(parent, name, owners)?;
        rustix::fs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(ioerr)?;
        rustix::fs::utimensat(parent, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(ioerr)
    }

    /// An opaque marker applied to a plain directory: remove what earlier archives put in the
    /// directory `comps` (held by `dir`), keeping what this archive created — and, in
    /// directories this archive created over earlier ones, again only its own entries.
    fn clear_earlier(&mut self, dir: &OwnedFd, comps: &[OsString]) -> io::Result<()> {
        for name in super::walk::list(dir)? {
            let mut child = comps.to_vec();
            child.push(name.clone());
            if !self.created.contains(&child) {
                remove_all_at(dir, &name)?;
                continue;
            }
            let st = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(ioerr)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = rustix::fs::openat(
                    dir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(ioerr)?;
                self.clear_earlier(&sub, &child)?;
            }
        }
        Ok(())
    }

    /// Make room for a new entry `name`: an existing directory is kept when the new entry is a
    /// directory too (returns true), anything else is removed (a directory with its contents).
    fn remove_existing(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        new_is_dir: bool,
    ) -> io::Result<bool> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(ioerr(e)),
            Ok(st) => {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if is_dir && new_is_dir {
                    return Ok(true);
                }
                self.cached_parent = None;
                if is_dir {
                    remove_all_at(parent, name)?;
                } else {
                    rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(ioerr)?;
                }
                Ok(false)
            }
        }
    }

    /// Directory times last: creating entries inside a directory changes its mtime.
    fn finish_times(&mut self) -> io::Result<()> {
        for t in self.dir_times.iter().rev() {
            let fd = match self.root.open_at(
                &inroot::join(&t.path),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Replaced by a later entry of another kind, or removed by a whiteout.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let ts = Timestamps {
                last_access: t.mtime,
                last_modification: t.mtime,
            };
            rustix::fs::futimens(&fd, &ts).map_err(ioerr)?;
        }
        Ok(())
    }
}

fn copy(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}

/// An entry's ownership, mode, time and xattrs (PAX records win over the ustar fields).
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let mut meta = Meta {
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            mtime: Timespec {
                tv_sec: h.mtime().unwrap_or(0) as i64,
                tv_nsec: 0,
            },
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let text = || std::str::from_utf8(value).ok();
                match key {
                    b"uid" => {
                        if let Some(v) = text().and_then(|t| t.parse().ok()) {
                            meta.uid = v;
                        }
                    }
                    b"gid" => {
                        if let Some(v) = text().and_then(|t| t.parse().ok()) {
                            meta.gid = v;
                        }
                    }
                    b"mtime" => {
                        if let Some(t) = text().and_then(parse_pax_time) {
                            meta.mtime = t;
                        }
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.")
                            && !is_overlay_xattr(name)
                        {
                            meta.xattrs
                                .push((OsStr::from_bytes(name).to_os_string(), value.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }

    /// A chown that fails with EINVAL names ids the user namespace does not map.
    fn unmapped(&self, e: rustix::io::Errno) -> io::Error {
        if e == rustix::io::Errno::INVAL {
            return io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "owner {}:{} is outside the ids this user namespace maps",
                    self.uid, self.gid
                ),
            );
        }
        ioerr(e)
    }

    fn chown_at(&self, parent: &OwnedFd, name: &OsStr, owners: Owners) -> io::Result<()> {
        if owners == Owners::Squash {
            return Ok(());
        }
        rustix::fs::chownat(
            parent,
            name,
            Some(rustix::fs::Uid::from_raw(self.uid)),
            Some(rustix::fs::Gid::from_raw(self.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.unmapped(e))
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs, on an open file.
    fn apply_fd(&self, fd: impl AsFd, owners: Owners) -> io::Result<()> {
        if owners == Owners::Keep {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(self.uid)),
                Some(rustix::fs::Gid::from_raw(self.gid)),
            )
            .map_err(|e| self.unmapped(e))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(self.mode)).map_err(ioerr)?;
        for (name, value) in &self.xattrs {
            match rustix::fs::fsetxattr(
                &fd,
                name.as_os_str(),
                value,
                rustix::fs::XattrFlags::empty(),
            ) {
                Ok(()) => {}
                Err(e) if xattr_unsupported(name, e) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot set xattr {}: {e}", name.to_string_lossy()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Xattrs of a symlink, through its directory's descriptor.
    fn apply_xattrs_at(&self, parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
        if self.xattrs.is_empty() {
            return Ok(());
        }
        let mut path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            rustix::fd::AsRawFd::as_raw_fd(parent)
        ));
        path.push(name);
        for (xname, value) in &self.xattrs {
            match rustix::fs::lsetxattr(
                &path,
                xname.as_os_str(),
                value,
                rustix::fs::XattrFlags::empty(),
            ) {
                Ok(()) => {}
                Err(e) if xattr_unsupported(xname, e) => {}
                // Only trusted.* and security.* xattrs may sit on a symlink.
                Err(rustix::io::Errno::PERM) => {}
                Err(e) => return Err(ioerr(e)),
            }
        }
        Ok(())
    }
}

/// Xattrs a filesystem may not take without the layer being wrong: SELinux labels on a host
/// without SELinux, any xattr on a filesystem without xattrs,
/// `trusted.*` ones where the process lacks CAP_SYS_ADMIN (a user namespace, an unprivileged
/// container).
fn xattr_unsupported(name: &OsStr, e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::NOTSUP
        || (name.as_bytes() == b"security.selinux"
            && matches!(e, rustix::io::Errno::INVAL | rustix::io::Errno::PERM))
        || (name.as_bytes().starts_with(b"trusted.") && e == rustix::io::Errno::PERM)
}

/// PAX times: `1700000000.123456789`, possibly negative.
fn parse_pax_time(s: &str) -> Option<Timespec> {
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let tv_sec: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let tv_nsec: i64 = digits.parse().ok()?;
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some(Timespec {
                tv_sec: 1_700_000_000,
                tv_nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time("12"),
            Some(Timespec {
                tv_sec: 12,
                tv_nsec: 0
            })
        );
        assert_eq!(parse_pax_time("x"), None);
    }
}
