use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::testutil::require_root;

/// Raw tar building, so tests can write what well-behaved builders refuse (`../`, absolute
/// paths).
#[derive(Default)]
pub(crate) struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    fn header(&mut self, kind: u8, name: &str, link: &str, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        {
            let b = h.as_mut_bytes();
            b[..name.len()].copy_from_slice(name.as_bytes());
            b[157..157 + link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        h
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let rest = 3 + k.len() + v.len();
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend(format!("{len} {k}=").into_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = self.header(b'x', "pax", "", data.len() as u64, 0o644);
        h.set_cksum();
        self.push(&h, &data);
        self
    }

    fn push(&mut self, h: &tar::Header, data: &[u8]) {
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = self.header(b'0', name, "", data.len() as u64, mode);
        h.set_cksum();
        self.push(&h, data);
        self
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = self.header(b'0', name, "", data.len() as u64, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.push(&h, data);
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let mut h = self.header(b'5', name, "", 0, mode);
        h.set_cksum();
        self.push(&h, &[]);
        self
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = self.header(b'2', name, target, 0, 0o777);
        h.set_cksum();
        self.push(&h, &[]);
        self
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = self.header(b'1', name, target, 0, 0o644);
        h.set_cksum();
        self.push(&h, &[]);
        self
    }

    pub fn device(&mut self, kind: u8, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = self.header(kind, name, "", 0, 0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.push(&h, &[]);
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

fn unpack_plain(tar: &[u8], dest: &Path) -> Result<ExtractReport, LayerError> {
    unpack(tar, Compression::None, dest, None)
}

#[test]
fn chain_ids_follow_the_spec() {
    let a = Digest::sha256_of(b"a");
    let b = Digest::sha256_of(b"b");
    let c = Digest::sha256_of(b"c");
    let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
    assert_eq!(ids[0], a);
    let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
    assert_eq!(ids[1], ab);
    assert_eq!(ids[2], Digest::sha256_of(format!("{ab} {c}").as_bytes()));
    assert!(chain_ids(&[]).is_empty());
}

#[test]
fn unpacks_metadata_links_and_whiteouts() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("fs");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.dir("./", 0o755)
        .dir("bin/", 0o755)
        .file_owned("bin/su", b"setuid", 0o4755, 0, 0)
        .file_owned("home/user/file", b"mine", 0o640, 1000, 1001)
        .symlink("bin/sh", "busybox")
        .file("bin/busybox", b"#!", 0o755)
        .hardlink("bin/ln", "bin/busybox")
        .pax(&[
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("mtime", b"1234567890.5"),
        ])
        .file("xattr", b"x", 0o644)
        .device(b'6', "fifo", 0, 0)
        .device(b'3', "dev/sda", 8, 0)
        .device(b'4', "dev/loop0", 7, 0)
        .file(".wh.gone", b"", 0o644)
        .dir("opaque/", 0o755)
        .file("opaque/.wh..wh..opq", b"", 0o644)
        .file("opaque/kept", b"k", 0o644)
        .file(".wh..wh.plnk", b"", 0o644);
    let report = unpack_plain(&t.finish(), &dest).unwrap();
    assert_eq!(report.whiteouts, 1);
    assert_eq!(report.opaque_dirs, 1);
    assert_eq!(report.refused_devices.len(), 2, "{report:?}");

    let meta = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
    assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(
        (meta("home/user/file").uid(), meta("home/user/file").gid()),
        (1000, 1001)
    );
    assert_eq!(meta("home/user/file").mode() & 0o777, 0o640);
    assert_eq!(
        fs::read_link(dest.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(meta("bin/ln").ino(), meta("bin/busybox").ino());
    assert_eq!(meta("bin/busybox").mtime(), 1_000_000_000);
    assert_eq!(
        meta("bin").mtime(),
        1_000_000_000,
        "directory times are set last"
    );
    assert_eq!(meta("xattr").mtime(), 1_234_567_890);
    assert_eq!(meta("xattr").mtime_nsec(), 500_000_000);
    let xattr = |p: &str, name: &str| {
        let mut buf = [0u8; 64];
        rustix::fs::lgetxattr(dest.join(p), name, &mut buf[..])
            .ok()
            .map(|n| buf[..n].to_vec())
    };
    assert_eq!(xattr("xattr", "user.note").as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        xattr("xattr", "trusted.overlay.redirect"),
        None,
        "overlay xattrs are dropped"
    );
    assert!(meta("fifo").file_type().is_fifo());
    assert!(!dest.join("dev/sda").exists() && !dest.join("dev/loop0").exists());
    let gone = meta("gone");
    assert!(
        gone.file_type().is_char_device() && gone.rdev() == 0,
        "whiteout"
    );
    assert_eq!(
        xattr("opaque", "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dest.join(".wh..wh.plnk").exists() && !dest.join("opaque/.wh..wh..opq").exists());
    assert_eq!(meta("").mode() & 0o7777, 0o755);
}

#[test]
fn later_entries_replace_earlier_ones() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut t = RawTar::default();
    t.dir("a/", 0o755)
        .file("a/inside", b"1", 0o644)
        .file("a", b"now a file", 0o644)
        .file("b", b"old", 0o644)
        .symlink("b", "a")
        .dir("c/", 0o700)
        .dir("c/", 0o755);
    unpack_plain(&t.finish(), tmp.path()).unwrap();
    assert_eq!(fs::read(tmp.path().join("a")).unwrap(), b"now a file");
    assert_eq!(fs::read_link(tmp.path().join("b")).unwrap(), Path::new("a"));
    assert_eq!(
        fs::metadata(tmp.path().join("c"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
}

/// The hostile layers the issue lists: nothing outside the destination is touched, and what
/// cannot be contained fails with an error naming the entry.
#[test]
fn hostile_layers_stay_inside() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("secret"), "host file\n").unwrap();
    let host_abs = host.to_str().unwrap().trim_start_matches('/').to_string();

    // `../` entries and absolute paths land inside.
    let dest = tmp.path().join("fs1");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.file("../../../escaped", b"x", 0o644).file(
        &format!("/{host_abs}/secret"),
        b"overwritten",
        0o644,
    );
    unpack_plain(&t.finish(), &dest).unwrap();
    assert!(dest.join("escaped").is_file());
    assert!(!tmp.path().join("escaped").exists());
    assert_eq!(
        fs::read_to_string(host.join("secret")).unwrap(),
        "host file\n"
    );
    assert_eq!(
        fs::read(dest.join(&host_abs).join("secret")).unwrap(),
        b"overwritten"
    );

    // An absolute symlink to a host directory, then a file written through it: contained.
    let dest = tmp.path().join("fs2");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.symlink("evil", &format!("/{host_abs}"))
        .file("evil/secret", b"through the link", 0o644)
        .file("evil/new", b"new", 0o644);
    unpack_plain(&t.finish(), &dest).unwrap();
    assert_eq!(
        fs::read_to_string(host.join("secret")).unwrap(),
        "host file\n"
    );
    assert!(!host.join("new").exists());
    assert_eq!(fs::read(dest.join(&host_abs).join("new")).unwrap(), b"new");

    // A symlink to /etc (absent from the layer) then a file through it: created in the layer's
    // own /etc, never the host's.
    let dest = tmp.path().join("fs3");
    fs::create_dir(&dest).unwrap();
    let passwd_before = fs::read("/etc/passwd").unwrap();
    let mut t = RawTar::default();
    t.symlink("etc-link", "/etc")
        .file("etc-link/passwd", b"pwned", 0o644);
    unpack_plain(&t.finish(), &dest).unwrap();
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd_before);
    assert_eq!(fs::read(dest.join("etc/passwd")).unwrap(), b"pwned");

    // A self-referencing `etc -> /etc`: resolution loops, and the entry fails clearly.
    let dest = tmp.path().join("fs4");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.symlink("etc", "/etc").file("etc/passwd", b"pwned", 0o644);
    let err = unpack_plain(&t.finish(), &dest).unwrap_err();
    assert!(err.to_string().contains("etc/passwd"), "{err}");
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd_before);

    // A hardlink to a host file: refused (the target is not in the layer).
    let dest = tmp.path().join("fs5");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.hardlink("stolen", &format!("/{host_abs}/secret"));
    let err = crate::testutil::chain(&unpack_plain(&t.finish(), &dest).unwrap_err());
    assert!(err.contains("not in the layer"), "{err}");
    let mut t = RawTar::default();
    t.hardlink("stolen", "../../../../etc/passwd");
    assert!(unpack_plain(&t.finish(), &dest).is_err());
    assert_eq!(fs::metadata(host.join("secret")).unwrap().nlink(), 1);
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), 1);

    // A hardlink through a symlink that points out: resolved inside, so refused.
    let dest = tmp.path().join("fs6");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.symlink("out", &format!("/{host_abs}"))
        .hardlink("stolen", "out/secret");
    assert!(unpack_plain(&t.finish(), &dest).is_err());
    assert_eq!(fs::metadata(host.join("secret")).unwrap().nlink(), 1);

    // A symlink loop, then a file through it.
    let dest = tmp.path().join("fs7");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", b"x", 0o644);
    let err = unpack_plain(&t.finish(), &dest).unwrap_err();
    assert!(err.to_string().contains("a/x"), "{err}");

    // A relative symlink climbing out.
    let dest = tmp.path().join("fs8");
    fs::create_dir(&dest).unwrap();
    let mut t = RawTar::default();
    t.symlink("up", "../../../../../../../../..").file(
        &format!("up/{host_abs}/secret"),
        b"overwritten",
        0o644,
    );
    unpack_plain(&t.finish(), &dest).unwrap();
    assert_eq!(
        fs::read_to_string(host.join("secret")).unwrap(),
        "host file\n"
    );
    assert_eq!(
        fs::read(dest.join(&host_abs).join("secret")).unwrap(),
        b"overwritten"
    );
}

#[test]
fn diff_ids_are_checked() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut t = RawTar::default();
    t.file("a", b"a", 0o644);
    let bytes = t.finish();
    let right = Digest::sha256_of(&bytes);
    let d1 = tmp.path().join("1");
    fs::create_dir(&d1).unwrap();
    unpack(&bytes[..], Compression::None, &d1, Some(&right)).unwrap();
    let d2 = tmp.path().join("2");
    fs::create_dir(&d2).unwrap();
    let wrong = Digest::sha256_of(b"other");
    assert!(matches!(
        unpack(&bytes[..], Compression::None, &d2, Some(&wrong)),
        Err(LayerError::DiffIdMismatch { .. })
    ));
    // gzip and zstd streams decompress to the same diff ID.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    let gz = gz.finish().unwrap();
    let d3 = tmp.path().join("3");
    fs::create_dir(&d3).unwrap();
    unpack(&gz[..], Compression::Gzip, &d3, Some(&right)).unwrap();
    let zst = zstd::encode_all(&bytes[..], 3).unwrap();
    let d4 = tmp.path().join("4");
    fs::create_dir(&d4).unwrap();
    unpack(&zst[..], Compression::Zstd, &d4, Some(&right)).unwrap();
}

/// An overlay upper directory → a layer → unpacked again gives the same tree (whiteouts and
/// opaque directories in overlayfs's form on both ends).
#[test]
fn diff_round_trips() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("etc/opaque")).unwrap();
    fs::write(upper.join("etc/new.conf"), "conf\n").unwrap();
    fs::set_permissions(
        upper.join("etc/new.conf"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::chown(upper.join("etc/new.conf"), Some(1000), Some(1000)).unwrap();
    fs::write(upper.join("etc/opaque/only"), "only\n").unwrap();
    for (path, name, value) in [
        ("etc/opaque", OVERLAY_OPAQUE, &b"y"[..]),
        ("etc/new.conf", "user.k", b"v"),
        ("etc/new.conf", "trusted.overlay.origin", b"junk"),
    ] {
        rustix::fs::setxattr(
            upper.join(path),
            name,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("etc/deleted"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    symlink("new.conf", upper.join("etc/link")).unwrap();
    symlink("/etc/shadow", upper.join("abs-link")).unwrap();
    fs::write(upper.join("big"), vec![7u8; 3 << 20]).unwrap();
    fs::hard_link(upper.join("big"), upper.join("big2")).unwrap();

    let (diff_id, report, bytes) =
        write_layer_diff(&upper, Vec::new(), Compression::Gzip, None).unwrap();
    assert_eq!(report.whiteouts, 1);
    assert_eq!(report.opaque_dirs, 1);

    // The OCI form inside the tarball.
    let names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"etc/.wh.deleted".to_string()), "{names:?}");
    assert!(
        names.contains(&"etc/opaque/.wh..wh..opq".to_string()),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), sorted.len());

    let back = tmp.path().join("back");
    fs::create_dir(&back).unwrap();
    unpack(&bytes[..], Compression::Gzip, &back, Some(&diff_id)).unwrap();
    let meta = |p: &str| fs::symlink_metadata(back.join(p)).unwrap();
    assert_eq!(fs::read(back.join("etc/new.conf")).unwrap(), b"conf\n");
    assert_eq!(
        (
            meta("etc/new.conf").uid(),
            meta("etc/new.conf").mode() & 0o777
        ),
        (1000, 0o600)
    );
    assert!(meta("etc/deleted").file_type().is_char_device());
    assert_eq!(
        fs::read_link(back.join("abs-link")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_eq!(meta("big").ino(), meta("big2").ino());
    assert_eq!(fs::read(back.join("big")).unwrap().len(), 3 << 20);
    let mut buf = [0u8; 8];
    assert_eq!(
        rustix::fs::getxattr(back.join("etc/opaque"), OVERLAY_OPAQUE, &mut buf[..]).unwrap(),
        1
    );
    assert!(
        rustix::fs::getxattr(
            back.join("etc/new.conf"),
            "trusted.overlay.origin",
            &mut buf[..]
        )
        .is_err()
    );
    assert_eq!(
        rustix::fs::getxattr(back.join("etc/new.conf"), "user.k", &mut buf[..]).unwrap(),
        1
    );

    // Deterministic: the same tree gives the same diff.
    let (again, _, _) = write_layer_diff(&upper, Vec::new(), Compression::Gzip, None).unwrap();
    assert_eq!(again, diff_id);
}

const OVERLAY_OPAQUE: &str = extract::OVERLAY_OPAQUE_XATTR;

/// What RUN steps did before the one tar writer: the unclamped diff read back and written again
/// with mtimes clamped (which lost the PAX xattr records).
fn clamp_by_rewrite(raw: &[u8], epoch: u64) -> Vec<u8> {
    let mut archive = tar::Archive::new(raw);
    let mut b = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut h = entry.header().clone();
        if h.mtime().unwrap_or(0) > epoch {
            h.set_mtime(epoch);
        }
        let path = entry.path().unwrap().into_owned();
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name().unwrap().unwrap().into_owned();
                b.append_link(&mut h, &path, target).unwrap();
            }
            _ => b.append_data(&mut h, &path, &mut entry).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn clamped_diffs_are_the_bytes_run_steps_wrote_and_keep_xattrs() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    let long = "l".repeat(120);
    fs::create_dir_all(upper.join(format!("d/{long}"))).unwrap();
    fs::write(upper.join("d/f"), "data\n").unwrap();
    fs::write(upper.join(format!("d/{long}/file")), "x").unwrap();
    fs::hard_link(upper.join("d/f"), upper.join("d/h")).unwrap();
    symlink(format!("{long}/file"), upper.join("d/s")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("d/gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    let (_, raw) = write_diff(&upper, Vec::new(), None).unwrap();
    let epoch = 1_000;
    let (_, clamped) = write_diff(&upper, Vec::new(), Some(epoch)).unwrap();
    assert_ne!(raw, clamped);
    assert_eq!(clamped, clamp_by_rewrite(&raw, epoch));

    // An xattr (a file capability, say) stays in a clamped diff; the rewrite dropped it.
    rustix::fs::setxattr(
        upper.join("d/f"),
        "trusted.manifold-test",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let (_, clamped) = write_diff(&upper, Vec::new(), Some(epoch)).unwrap();
    let mut archive = tar::Archive::new(&clamped[..]);
    let mut found = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= epoch);
        if let Some(x) = e.pax_extensions().unwrap() {
            for x in x {
                let x = x.unwrap();
                found.push((x.key().unwrap().to_string(), x.value_bytes().to_vec()));
            }
        }
    }
    assert_eq!(
        found,
        vec![(
            "SCHILY.xattr.trusted.manifold-test".to_string(),
            b"kept".to_vec()
        )]
    );
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused_and_touch_nothing() {
    use super::extract::{Whiteout, whiteout};
    assert_eq!(whiteout(b".wh.."), Some(Whiteout::Invalid));
    assert_eq!(whiteout(b".wh..."), Some(Whiteout::Invalid));
    assert_eq!(whiteout(b".wh...."), Some(Whiteout::Remove(b"...")));
    assert_eq!(whiteout(b".wh..wh..opq"), Some(Whiteout::Opaque));
    assert_eq!(whiteout(b".wh..wh.plnk"), Some(Whiteout::Ignore));
    assert_eq!(whiteout(b".wh."), Some(Whiteout::Ignore));
    assert_eq!(whiteout(b".wh.gone"), Some(Whiteout::Remove(b"gone")));
    assert_eq!(whiteout(b"plain"), None);

    for (entry, path) in [
        (".wh...", ".wh..."),
        (".wh..", ".wh.."),
        ("sub/.wh..", "sub/.wh.."),
        ("sub/.wh...", "sub/.wh..."),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        // What sits beside the destination, and what the destination already holds.
        let beside = tmp.path().join("beside");
        fs::create_dir(&beside).unwrap();
        fs::write(beside.join("keep"), "host file\n").unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir_all(dest.join("sub/inner")).unwrap();
        fs::write(dest.join("sub/inner/file"), "x").unwrap();
        let mut t = RawTar::default();
        t.file(entry, b"", 0o644);
        let err = unpack_plain(&t.finish(), &dest).unwrap_err();
        let msg = crate::testutil::chain(&err);
        assert!(
            msg.contains(&format!("entry `{path}`")) && msg.contains("must name an entry"),
            "{entry}: {msg}"
        );
        assert_eq!(
            fs::read_to_string(beside.join("keep")).unwrap(),
            "host file\n",
            "{entry} reached beside the destination"
        );
        assert!(dest.join("sub/inner/file").is_file(), "{entry}");
    }
}
