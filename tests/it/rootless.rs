//! Rootless mode and builds in unprivileged containers (issue 12, items 1 and 2), for real: a
//! plain user made by the test (with subordinate ids added by `usermod --add-subuids`, or
//! none) pulls from a local registry, runs native and arm64 containers, builds two platforms
//! with RUN steps that chown files and pushes them, commits, and empties its store; root then
//! checks the owners in the pushed layers. A build runs as root inside a Docker container
//! started without `--privileged` (Docker's default capabilities and seccomp profile), from an
//! image made of manifold's binary, its libraries, proot and busybox, and pushes to the host's
//! registry.
//!
//! /etc/subuid and /etc/subgid get only the ranges these tests add (above useradd's own
//! allocation range, so never one another user has), and lose them when the test ends, failed
//! or not.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use crate::binfmt::BinfmtLease;
use crate::harness::{
    self, COMMAND_TIMEOUT, OtherUser, TestRoot, admin, busybox_rootfs, busybox_tree,
    manifold_snapshot, skip_unless,
};
use crate::registry_harness::{Auth, TestRegistry, import, multi_arch};

/// What a user's login session would put on PATH (runc lives in /usr/sbin).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Distributions let every user open /dev/net/tun and /dev/fuse (udev's default rules: mode
/// 0666); a machine without udev (a container, some VMs) leaves them 0600, root's alone.
/// Rootless slirp4netns and fuse-overlayfs open them: made as udev makes them.
fn udev_default_modes() {
    for dev in ["/dev/net/tun", "/dev/fuse"] {
        if let Ok(m) = fs::metadata(dev)
            && m.permissions().mode() & 0o777 != 0o666
        {
            fs::set_permissions(dev, fs::Permissions::from_mode(0o666)).unwrap();
        }
    }
}

/// Subordinate ids given to a test user, taken back when dropped.
struct SubIds {
    user: String,
    start: u32,
    count: u32,
}

/// Ranges are picked above useradd's allocation range (SUB_UID_MAX, 600100000), one test at a
/// time, where neither file has a line.
static PICK: Mutex<()> = Mutex::new(());

impl SubIds {
    const COUNT: u32 = 65536;

    fn add(user: &str) -> SubIds {
        let _one = PICK.lock().unwrap_or_else(|e| e.into_inner());
        let taken: Vec<(u64, u64)> = ["/etc/subuid", "/etc/subgid"]
            .iter()
            .flat_map(|f| {
                fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
            })
            .collect();
        let start = (0u64..1000)
            .map(|k| 700_000_000 + k * Self::COUNT as u64)
            .find(|s| {
                taken
                    .iter()
                    .all(|(a, n)| s + Self::COUNT as u64 <= *a || a + n <= *s)
            })
            .expect("a free range of subordinate ids") as u32;
        let range = format!("{start}-{}", start + Self::COUNT - 1);
        let out = admin(
            "usermod",
            &["--add-subuids", &range, "--add-subgids", &range, user],
        );
        assert!(
            out.status.success(),
            "usermod --add-subuids: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SubIds {
            user: user.to_string(),
            start,
            count: Self::COUNT,
        }
    }

    fn lines_of(user: &str) -> usize {
        ["/etc/subuid", "/etc/subgid"]
            .iter()
            .map(|f| {
                fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.split(':').next() == Some(user))
                    .count()
            })
            .sum()
    }
}

impl Drop for SubIds {
    fn drop(&mut self) {
        let range = format!("{}-{}", self.start, self.start + self.count - 1);
        admin(
            "usermod",
            &["--del-subuids", &range, "--del-subgids", &range, &self.user],
        );
    }
}

/// A plain user for one test, with a directory of its own: `store` (its `--root`), `run`
/// (its XDG_RUNTIME_DIR), and scratch space. Root removes the directory afterwards (the user
/// could not: the store holds files owned by its subordinate ids).
struct Rootless {
    // Dropped in this order: the directory, the ranges, the user.
    dir: tempfile::TempDir,
    subids: Option<SubIds>,
    user: OtherUser,
}

impl Rootless {
    fn new(name: &str, with_subids: bool) -> Rootless {
        let user =
            OtherUser::create_with(name, &["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
        assert_eq!(SubIds::lines_of(name), 0, "useradd gave {name} no ranges");
        let subids = with_subids.then(|| SubIds::add(name));
        let dir = tempfile::Builder::new()
            .prefix("manifold-rootless-")
            .tempdir()
            .unwrap();
        for d in [
            dir.path().to_path_buf(),
            dir.path().join("run"),
            dir.path().join("ctx"),
        ] {
            fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(user.uid), Some(user.gid)).unwrap();
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        }
        Rootless { dir, subids, user }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    /// A file root writes where the user reads it.
    fn give(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.ctx().join(name);
        fs::write(&p, bytes).unwrap();
        std::os::unix::fs::chown(&p, Some(self.user.uid), Some(self.user.gid)).unwrap();
        p
    }

    /// `manifold --root STORE --progress none ARGS` as the user, with a session's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_manifold"));
        c.env_clear()
            .env("PATH", PATH)
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("NO_COLOR", "1")
            .env("COLUMNS", harness::COLUMNS)
            .uid(self.user.uid)
            .gid(self.user.gid)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .arg("--root")
            .arg(self.store())
            .args(["--progress", "none"])
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output(self.command(args))
    }

    /// Stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "manifold {args:?} as {} failed: {}",
            self.user.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The user's own `sh -c SCRIPT` in its directory.
    fn sh(&self, script: &str) -> (bool, String) {
        self.user
            .sh(&format!("cd '{}' && {script}", self.dir.path().display()))
    }
}

/// The snapshot settings for a user's output: its ids and ranges as placeholders.
fn user_settings(u: &Rootless) -> insta::Settings {
    let mut settings = harness::insta_settings();
    if let Some(ids) = &u.subids {
        settings.add_filter(
            &format!("{}-{}", ids.start, ids.start + ids.count - 1),
            "[SUBIDS]",
        );
    }
    settings.add_filter(r"0→\d+\b", "0→[USER]");
    settings
}

fn output(cmd: Command) -> Output {
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(COMMAND_TIMEOUT);
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `(path, uid, gid)` of a layer's entry.
type Entry = (String, u64, u64);

/// The entries of a gzip layer blob.
fn layer_entries(blob: &Path) -> Vec<Entry> {
    let gz = flate2::read::GzDecoder::new(fs::File::open(blob).unwrap());
    let mut archive = tar::Archive::new(gz);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            e.read_to_end(&mut Vec::new()).unwrap();
            (path, h.uid().unwrap_or(0), h.gid().unwrap_or(0))
        })
        .collect()
}

fn blob(store: &Path, digest: &str) -> PathBuf {
    store
        .join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The last layer (the RUN step's, or the commit's) of each platform of `raw` (an index, or a
/// manifest for `platform`), read from `store`'s blobs: platform → entries.
fn top_layers(store: &Path, raw: &str, platform: &str) -> Vec<(String, Vec<Entry>)> {
    let doc: serde_json::Value = serde_json::from_str(raw).unwrap();
    let manifests: Vec<(String, String)> = match doc["manifests"].as_array() {
        Some(list) => list
            .iter()
            .filter(|m| m["platform"]["architecture"] != "unknown")
            .map(|m| {
                (
                    format!(
                        "{}/{}",
                        m["platform"]["os"].as_str().unwrap(),
                        m["platform"]["architecture"].as_str().unwrap()
                    ),
                    m["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        None => vec![(platform.to_string(), String::new())],
    };
    manifests
        .into_iter()
        .map(|(p, digest)| {
            let manifest: serde_json::Value = if digest.is_empty() {
                doc.clone()
            } else {
                serde_json::from_slice(&fs::read(blob(store, &digest)).unwrap()).unwrap()
            };
            let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
                .as_str()
                .unwrap()
                .to_string();
            (p, layer_entries(&blob(store, &top)))
        })
        .collect()
}

fn owner_of(entries: &[Entry], path: &str) -> (u64, u64) {
    entries
        .iter()
        .find(|e| e.0 == path)
        .map(|e| (e.1, e.2))
        .unwrap_or_else(|| panic!("{path} is not in the layer: {entries:?}"))
}

/// A tarball: the busybox fixture of `debarch` plus `/owned`, owned by 1000:1000.
fn busybox_with_an_owned_file(debarch: &str) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut base = tar::Archive::new(fs::File::open(busybox_rootfs(debarch, "tar")).unwrap());
    for e in base.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        if let Some(target) = e.link_name().unwrap() {
            let target = target.into_owned();
            out.append_link(&mut h, &path, target).unwrap();
        } else {
            out.append_data(&mut h, &path, &mut e).unwrap();
        }
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_size(2);
    h.set_entry_type(tar::EntryType::Regular);
    out.append_data(&mut h, "owned", &b"x\n"[..]).unwrap();
    out.into_inner().unwrap()
}

// --- item 1: rootless ------------------------------------------------------------------------

/// Pull, run (native, arm64, every network), build two platforms with RUN steps that chown,
/// push, commit, ps/rm, and empty the store — as a plain user with subordinate ids. Root then
/// finds in the pushed RUN layers the owners the steps gave, not the host's subordinate ids.
#[test]
fn a_plain_user_pulls_runs_builds_pushes_and_commits() {
    skip_unless!(
        "root",
        "runc",
        "slirp4netns",
        "newuidmap",
        "docker-registry"
    );
    skip_unless!("qemu-aarch64-static");
    udev_default_modes();
    let _binfmt = BinfmtLease::shared();
    let host = TestRoot::new();
    host.manifold()
        .args(["binfmt", "install", "linux/arm64"])
        .assert()
        .success();
    let registry = TestRegistry::start(Auth::Anonymous);
    let base = format!("{}/rootless/busybox:1", registry.host());
    multi_arch(&host, &["amd64", "arm64"], &base);
    host.manifold().args(["push", &base]).assert().success();

    let u = Rootless::new("mfrl-subids", true);
    let ids = u.subids.as_ref().unwrap();
    u.ok(&["pull", "-q", &base]);

    // Root of the container is the user; the image's root-owned files stay root's.
    let out = u.run(&[
        "-v",
        "run",
        "--rm",
        &base,
        "sh",
        "-c",
        "id -u; wc -l < /proc/self/uid_map; stat -c %u:%g /bin/busybox; ip -o -4 addr show tap0 | grep -o 10.0.2.100",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0\n2\n0:0\n10.0.2.100\n"
    );
    let mapping = format!(
        "in a user namespace (uids 0→{uid}, 1-65536→{start}-{end}, gids 0→{gid}, 1-65536→{start}-{end})",
        uid = u.user.uid,
        gid = u.user.gid,
        start = ids.start,
        end = ids.start + 65535
    );
    assert!(
        stderr(&out).contains(&format!(
            "root filesystem: overlayfs (new mount API), {mapping}"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        u.dir.path().join("run/manifold/runtime-v1/runc").is_dir(),
        "runc keeps its state under XDG_RUNTIME_DIR"
    );
    for network in ["host", "none"] {
        assert_eq!(
            u.ok(&["run", "--rm", "--network", network, &base, "id", "-u"]),
            "0\n"
        );
    }
    assert_eq!(
        u.ok(&[
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            &base,
            "uname",
            "-m"
        ]),
        "aarch64\n"
    );
    // Another user of the image, a volume of the user's (owned by the namespace's root).
    let data = u.give("volume-file", b"v\n");
    let volume = format!("{}:/data/file:ro", data.display());
    assert_eq!(
        u.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            "1000:1000",
            "-v",
            &volume,
            &base,
            "sh",
            "-c",
            "id -u; id -g; cat /data/file; stat -c %u /data/file",
        ]),
        "1000\n1000\nv\n0\n"
    );

    // A two-platform build whose RUN steps chown, pushed.
    u.give(
        "Dockerfile",
        format!(
            "FROM {base}\n\
             RUN mkdir /app && echo hi > /app/owned && chown -R 1000:2000 /app \
             && uname -m > /arch && rm /bin/ls\n"
        )
        .as_bytes(),
    );
    let app = format!("{}/rootless/app:1", registry.host());
    let ctx = u.ctx().display().to_string();
    u.ok(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        &app,
        "--push",
        &ctx,
    ]);

    // Root's view of what was pushed.
    host.manifold()
        .args(["pull", "--all-platforms", "-q", &app])
        .assert()
        .success();
    let raw = host
        .manifold()
        .args(["inspect", "--raw", &app])
        .output()
        .unwrap();
    let layers = top_layers(host.path(), &String::from_utf8_lossy(&raw.stdout), "");
    assert_eq!(
        layers.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    for (platform, entries) in &layers {
        assert_eq!(owner_of(entries, "app"), (1000, 2000), "{platform}");
        assert_eq!(owner_of(entries, "app/owned"), (1000, 2000), "{platform}");
        assert_eq!(owner_of(entries, "arch"), (0, 0), "{platform}");
        assert!(
            entries.iter().any(|e| e.0 == "bin/.wh.ls"),
            "{platform}: {entries:?}"
        );
        assert!(
            entries.iter().all(|e| e.1 < 65536 && e.2 < 65536),
            "{platform}: no host subordinate id leaks into the layer: {entries:?}"
        );
    }
    for (platform, arch) in [("linux/amd64", "x86_64\n"), ("linux/arm64", "aarch64\n")] {
        host.manifold()
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--platform",
                platform,
                &app,
            ])
            .args(["cat", "/arch"])
            .assert()
            .success()
            .stdout(arch);
    }

    // commit, ps, rm.
    u.ok(&[
        "run",
        "--name",
        "kept",
        "--network",
        "none",
        &base,
        "sh",
        "-c",
        "echo x > /c && chown 123:456 /c",
    ]);
    assert!(u.ok(&["ps", "-a"]).contains("kept"));
    u.ok(&["commit", "kept", "local/committed:1"]);
    let raw = u.ok(&["inspect", "--raw", "local/committed:1"]);
    let entries = &top_layers(&u.store(), &raw, "linux/amd64")[0].1;
    assert_eq!(owner_of(entries, "c"), (123, 456));
    u.ok(&["rm", "kept"]);
    assert!(!u.ok(&["ps", "-a"]).contains("kept"));

    // The store holds files of the user's subordinate ids (the app's layers, unpacked to run
    // it): only its namespace removes them.
    let snapshots = || {
        fs::read_dir(u.store().join("snapshots-v1"))
            .unwrap()
            .count()
    };
    u.ok(&["run", "--rm", "--network", "none", &app, "true"]);
    assert!(snapshots() >= 2);
    // `prune -a` removes them (from the namespace), and a run brings them back.
    u.ok(&["prune", "-a", "-f"]);
    assert_eq!(snapshots(), 0);
    u.ok(&["run", "--rm", "--network", "none", &app, "true"]);
    let (removed, said) = u.sh("rm -rf store");
    assert!(!removed, "{said}");
    assert!(said.contains("Permission denied"), "{said}");
    u.ok(&["system", "reset", "--force"]);
    let (removed, said) = u.sh("rm -rf store");
    assert!(removed, "{said}");
    assert!(!u.store().exists());
    drop(u);
    assert_eq!(
        SubIds::lines_of("mfrl-subids"),
        0,
        "the ranges went with the user"
    );
}

/// Without subordinate ids: a warning that says what a single-id namespace limits, files of
/// other owners unpacked as root, and chown in RUN failing — then the store removed.
#[test]
fn a_user_without_subordinate_ids_gets_a_single_id_and_is_told() {
    skip_unless!("root", "runc");
    let u = Rootless::new("mfrl-single", false);
    let tarball = u.give("owned.tar", &busybox_with_an_owned_file("amd64"));
    u.ok(&["import", &tarball.display().to_string(), "local/owned:1"]);

    let mut run = assert_cmd::Command::from_std(u.command(&[
        "run",
        "--rm",
        "--network",
        "none",
        "local/owned:1",
        "sh",
        "-c",
        "stat -c %u:%g /owned; wc -l < /proc/self/uid_map",
    ]));
    let out = manifold_snapshot!(user_settings(&u), run.timeout(COMMAND_TIMEOUT), @r"
    success: true
    exit_code: 0
    ----- stdout -----
    0:0
    1

    ----- stderr -----
    warning: `mfrl-single` has no subordinate ids in /etc/subuid and /etc/subgid: containers get a single-id user namespace (root in them is you, and no other user exists): `chown` to another owner and RUN or `-u` as another user fail, and files of other owners in layers are unpacked as root
    hint: `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 mfrl-single` gives it 65536 ids (pick a range no other user has), then `manifold system reset` (the store's files follow the mapping)
    ");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0:0\n1\n",
        "1000:1000 squashed to root, in a namespace of one id"
    );

    u.give(
        "Dockerfile",
        b"FROM local/owned:1\nRUN echo made > /made\nRUN chown 1000 /made\n",
    );
    let ctx = u.ctx().display().to_string();
    let out = u.run(&["build", "-t", "local/chowned:1", &ctx]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("RUN chown 1000 /made"), "{said}");
    assert!(said.contains("did not complete successfully"), "{said}");

    u.ok(&["system", "reset", "--force"]);
    let (removed, said) = u.sh("rm -rf store");
    assert!(removed, "{said}");
}

/// Where the kernel's overlayfs is not to be had: fuse-overlayfs, then copies, each said with
/// `-v`, each keeping the owners and deletions a container made through commit.
#[test]
fn without_a_kernel_overlay_fuse_overlayfs_then_copies() {
    skip_unless!("root", "runc", "newuidmap", "fuse-overlayfs");
    udev_default_modes();
    let u = Rootless::new("mfrl-fallback", true);
    let tarball = u.give(
        "bb.tar.gz",
        &fs::read(busybox_rootfs("amd64", "tar.gz")).unwrap(),
    );
    u.ok(&["import", &tarball.display().to_string(), "local/bb:1"]);
    for (choice, said) in [
        (
            "fuse-overlayfs",
            "root filesystem: fuse-overlayfs, in a user namespace",
        ),
        (
            "copy",
            "root filesystem: a copy of the image's layers (no overlay), in a user namespace",
        ),
    ] {
        let name = format!("c-{choice}");
        let mut cmd = u.command(&[
            "-v",
            "run",
            "--name",
            &name,
            "--network",
            "none",
            "local/bb:1",
            "sh",
            "-c",
            "mkdir /d && echo x > /d/f && chown -R 1000:2000 /d && rm /bin/ls",
        ]);
        cmd.env("MANIFOLD_ROOTFS", choice);
        let out = output(cmd);
        assert!(out.status.success(), "{choice}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{choice}: {}", stderr(&out));
        let image = format!("local/{choice}:1");
        u.ok(&["commit", &name, &image]);
        let raw = u.ok(&["inspect", "--raw", &image]);
        let entries = &top_layers(&u.store(), &raw, "linux/amd64")[0].1;
        assert_eq!(owner_of(entries, "d/f"), (1000, 2000), "{choice}");
        assert!(
            entries.iter().any(|e| e.0 == "bin/.wh.ls"),
            "{choice}: {entries:?}"
        );
        assert!(
            !entries
                .iter()
                .any(|e| e.0.starts_with("proc") || e.0.starts_with("sys")),
            "{choice}: what the runtime mounted on is not a change: {entries:?}"
        );
        assert_eq!(
            entries.iter().filter(|e| e.0 == "d/.wh..wh..opq").count(),
            usize::from(choice == "fuse-overlayfs"),
            "{choice}: one opaque marker for a directory fuse-overlayfs made: {entries:?}"
        );
        assert_eq!(
            u.ok(&[
                "run",
                "--rm",
                "--network",
                "none",
                &image,
                "sh",
                "-c",
                "stat -c %u:%g /d/f"
            ]),
            "1000:2000\n"
        );
    }
    u.ok(&["system", "reset", "--force"]);
}

/// Handlers root registered are used as they are, also where this process cannot see
/// binfmt_misc; a platform no handler serves names the one-time root command.
#[test]
fn emulation_uses_what_root_registered() {
    skip_unless!(
        "root",
        "runc",
        "newuidmap",
        "qemu-aarch64-static",
        "unshare",
        "setpriv"
    );
    let _binfmt = BinfmtLease::exclusive();
    let host = TestRoot::new();
    host.manifold()
        .args(["binfmt", "install", "linux/arm64"])
        .assert()
        .success();
    host.manifold()
        .args(["binfmt", "uninstall", "linux/s390x"])
        .assert()
        .success();
    let u = Rootless::new("mfrl-emulation", true);
    for (arch, name) in [("arm64", "local/arm64:1"), ("s390x", "local/s390x:1")] {
        let tarball = u.give(
            &format!("{arch}.tar.gz"),
            &fs::read(busybox_rootfs(arch, "tar.gz")).unwrap(),
        );
        u.ok(&[
            "import",
            "--platform",
            harness::platform_of(arch),
            &tarball.display().to_string(),
            name,
        ]);
    }
    let run_arm64 = [
        "run",
        "--rm",
        "--network",
        "none",
        "local/arm64:1",
        "uname",
        "-m",
    ];
    assert_eq!(u.ok(&run_arm64), "aarch64\n");

    // binfmt_misc unmounted in the user's view (the host keeps it): found by running.
    let inner = u.command(&run_arm64);
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "umount /proc/sys/fs/binfmt_misc && test ! -e /proc/sys/fs/binfmt_misc/register \
             && exec setpriv --reuid \"$U\" --regid \"$G\" --clear-groups -- \"$@\"",
        )
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_clear()
        .env("PATH", PATH)
        .env("U", u.user.uid.to_string())
        .env("G", u.user.gid.to_string())
        .env("XDG_RUNTIME_DIR", u.dir.path().join("run"))
        .current_dir(u.dir.path())
        .stdin(Stdio::null());
    let out = output(wrapped);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "aarch64\n");

    let mut run = assert_cmd::Command::from_std(u.command(&[
        "run",
        "--rm",
        "--network",
        "none",
        "local/s390x:1",
        "true",
    ]));
    manifold_snapshot!(user_settings(&u), run.timeout(COMMAND_TIMEOUT), @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: cannot run linux/s390x programs here
      caused by: running linux/s390x programs needs the QEMU handler `qemu-s390x`, and registering it needs root: binfmt_misc handlers are registered for the whole machine
    hint: `sudo manifold binfmt install --persist linux/s390x`, then run again
    ");
    u.ok(&["system", "reset", "--force"]);
}

/// One store, one ownership convention: root is refused a store a user's namespace unpacked,
/// with both named and the way out.
#[test]
fn a_store_keeps_the_ownership_convention_it_was_made_with() {
    skip_unless!("root", "runc", "newuidmap");
    let u = Rootless::new("mfrl-store", true);
    let tarball = u.give(
        "bb.tar.gz",
        &fs::read(busybox_rootfs("amd64", "tar.gz")).unwrap(),
    );
    u.ok(&["import", &tarball.display().to_string(), "local/bb:1"]);
    u.ok(&["run", "--rm", "--network", "none", "local/bb:1", "true"]);
    // A manifold that `manifold unshare` runs is in the namespace, and uses the store as it.
    let nested = u.ok(&[
        "unshare",
        env!("CARGO_BIN_EXE_manifold"),
        "run",
        "--rm",
        "--network",
        "none",
        "local/bb:1",
        "sh",
        "-c",
        "id -u; wc -l < /proc/self/uid_map",
    ]);
    assert_eq!(nested, "0\n2\n");
    manifold_snapshot!(
        user_settings(&u),
        harness::manifold()
            .arg("--root")
            .arg(u.store())
            .args(["run", "--rm", "--network", "none", "local/bb:1", "true"]),
        @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: the store at [TMP]/store was unpacked by a user namespace (uids 0→[USER], 1-65536→[SUBIDS], gids 0→[USER], 1-65536→[SUBIDS]), and this process runs as root (host ids)
    hint: use the store as the user who made it, or give `--root` another directory; `manifold system reset`, run by the store's own user, empties it
    "
    );
    u.ok(&["system", "reset", "--force"]);
}

// --- item 2: builds without a container --------------------------------------------------------

const ISOLATION_DOCKERFILE: &str = "\
ARG TARGETARCH
FROM local/bb:${TARGETARCH}
RUN if test -r /proc/self/status; then echo proc=yes; else echo proc=no; fi; \
    mkdir /app && echo hi > /app/owned && chown -R 1000:2000 /app && uname -m > /arch && rm -rf /root
";

/// `--isolation proot` and `chroot` on the host (as root): the layers are the same changes a
/// container would have made; proot gives /proc, chroot does not; `--network=none` is refused.
#[test]
fn isolation_proot_and_chroot_build_without_a_container() {
    skip_unless!("root", "proot");
    let root = TestRoot::new();
    import(&root, "amd64", "local/bb:amd64");
    let ctx = root.scratch("ctx");
    fs::write(ctx.join("Dockerfile"), ISOLATION_DOCKERFILE).unwrap();
    for (isolation, proc) in [("proot", "proc=yes"), ("chroot", "proc=no")] {
        let image = format!("local/{isolation}:1");
        let out = root
            .manifold()
            .args([
                "build",
                "--no-cache",
                "--isolation",
                isolation,
                "-t",
                &image,
            ])
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(out.status.success(), "{isolation}: {}", stderr(&out));
        let said = stderr(&out);
        assert!(
            said.lines().any(|l| l.ends_with(&format!(" {proc}"))),
            "{isolation}: {said}"
        );
        let raw = root
            .manifold()
            .args(["inspect", "--raw", &image])
            .output()
            .unwrap();
        let entries = &top_layers(
            root.path(),
            &String::from_utf8_lossy(&raw.stdout),
            "linux/amd64",
        )[0]
        .1;
        assert_eq!(owner_of(entries, "app/owned"), (1000, 2000), "{isolation}");
        assert!(
            entries.iter().any(|e| e.0 == ".wh.root"),
            "{isolation}: {entries:?}"
        );
        assert!(
            !entries
                .iter()
                .any(|e| e.0.starts_with("proc") || e.0.starts_with("dev")),
            "{isolation}: {entries:?}"
        );
    }
    fs::write(
        ctx.join("Dockerfile"),
        "FROM local/bb:amd64\nRUN --network=none true\n",
    )
    .unwrap();
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold()
            .args(["build", "-q", "--isolation", "proot"])
            .arg(&ctx),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: Dockerfile:2: [linux/amd64 stage-0] RUN --network=none true
      caused by: RUN --network=none needs a network namespace, which `--isolation proot` cannot make
    "
    );
    fs::write(
        ctx.join("Dockerfile"),
        "FROM local/bb:amd64\nRUN --mount=type=cache,target=/cache true\n",
    )
    .unwrap();
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold()
            .args(["build", "-q", "--isolation", "chroot"])
            .arg(&ctx),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: Dockerfile:2: [linux/amd64 stage-0] RUN --mount=type=cache,target=/cache true
      caused by: cannot run the step
      caused by: `--isolation chroot` cannot bind anything into the root (RUN --mount)
    hint: use `--isolation proot`, which binds them
    "
    );
}

/// What root is told by `system reset` without `--force`, `unshare`, and a bad
/// `MANIFOLD_ROOTFS`.
#[test]
fn messages_of_reset_unshare_and_rootfs_choices() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    import(&root, "amd64", "local/bb:1");
    manifold_snapshot!(root.insta_settings(), root.manifold().args(["system", "reset"]), @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: `system reset` removes every image, container and snapshot in [ROOT], and asks first
    hint: add `--force` to remove them without asking
    ");
    assert!(root.path().join("images").is_dir(), "nothing removed");
    manifold_snapshot!(root.insta_settings(), root.manifold().args(["unshare", "true"]), @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: `manifold unshare` is for rootless mode: root needs no user namespace
    hint: run the command itself
    ");
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold()
            .env("MANIFOLD_ROOTFS", "tmpfs")
            .args(["run", "--rm", "--network", "none", "local/bb:1", "true"]),
        @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: MANIFOLD_ROOTFS=`tmpfs` is not a way to make a container's root
    hint: MANIFOLD_ROOTFS takes `overlayfs`, `fuse-overlayfs` or `copy` (or nothing: the first that works)
    "
    );
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold().args(["system", "reset", "--force"]),
        @r"
    success: true
    exit_code: 0
    ----- stdout -----

    ----- stderr -----
    Removed 0 containers and 43 files (3.012MB) from [ROOT]
    "
    );
    assert_eq!(
        fs::read_dir(root.path()).unwrap().count(),
        0,
        "the store is empty"
    );
}

/// A Docker image removed when dropped.
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new(DOCKER).args(["rmi", "-f", &self.0]).output();
    }
}

/// Debian's client, of the daemon's version (another client on PATH may be newer).
const DOCKER: &str = "/usr/bin/docker";

/// The image the CI job runs: busybox, manifold's binary and its shared libraries (as `ldd`
/// lists them), proot and its libraries, and the build context — made with manifold itself
/// (`import` a root filesystem tarball, `save` it) and given to `docker load`.
fn ci_image(host: &TestRoot, name: &str) -> DockerImage {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", busybox_tree("amd64")).unwrap();
    let mut add = |inside: &str, from: &Path, mode: u32| {
        let bytes = fs::read(from).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(bytes.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, inside.trim_start_matches('/'), &bytes[..])
            .unwrap();
    };
    let manifold = Path::new(env!("CARGO_BIN_EXE_manifold"));
    let proot = harness::find_program("proot").unwrap();
    add("/usr/local/bin/manifold", manifold, 0o755);
    add("/usr/bin/proot", &proot, 0o755);
    let mut libs = std::collections::BTreeSet::new();
    for program in [manifold, proot.as_path()] {
        let ldd = Command::new("ldd").arg(program).output().unwrap();
        libs.extend(
            String::from_utf8_lossy(&ldd.stdout)
                .split_whitespace()
                .filter(|w| w.starts_with('/'))
                .map(str::to_string),
        );
    }
    for lib in &libs {
        add(lib, Path::new(lib), 0o755);
    }
    for arch in ["amd64", "arm64"] {
        add(
            &format!("/ctx/{arch}.tar.gz"),
            &busybox_rootfs(arch, "tar.gz"),
            0o644,
        );
    }
    let dockerfile = host.scratch("ci").join("Dockerfile");
    fs::write(&dockerfile, ISOLATION_DOCKERFILE).unwrap();
    add("/ctx/Dockerfile", &dockerfile, 0o644);
    let rootfs = host.scratch("ci").join("rootfs.tar");
    fs::write(&rootfs, tar.into_inner().unwrap()).unwrap();
    host.manifold()
        .arg("import")
        .arg(&rootfs)
        .arg(name)
        .assert()
        .success();
    let archive = host.scratch("ci").join("image.tar");
    host.manifold()
        .args(["save", "-o"])
        .arg(&archive)
        .arg(name)
        .assert()
        .success();
    let load = Command::new(DOCKER)
        .args(["load", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(load.status.success(), "docker load: {}", stderr(&load));
    DockerImage(name.to_string())
}

/// `manifold build --platform linux/amd64,linux/arm64 --push` as root inside a Docker container
/// without `--privileged` (default capabilities, default seccomp: no mount, no namespaces),
/// emulating arm64 with the emulator of the host's handler; the pushed index is checked from
/// the host (skopeo and manifold): platforms, owners in the RUN layers, and it runs.
#[test]
fn a_build_inside_an_unprivileged_docker_container_pushes_both_platforms() {
    skip_unless!(
        "root",
        DOCKER,
        "/usr/sbin/dockerd",
        "proot",
        "docker-registry",
        "skopeo"
    );
    skip_unless!("qemu-aarch64-static");
    let started = Command::new("bash")
        .arg(Path::new(harness::REPO).join("scripts/dockerd.sh"))
        .output()
        .unwrap();
    assert!(started.status.success(), "dockerd.sh: {}", stderr(&started));
    let version = Command::new(DOCKER)
        .args([
            "version",
            "--format",
            "{{.Client.APIVersion}} {{.Server.APIVersion}}",
        ])
        .output()
        .unwrap();
    assert!(
        version.status.success(),
        "client and daemon talk: {}",
        stderr(&version)
    );

    let _binfmt = BinfmtLease::shared();
    let host = TestRoot::new();
    host.manifold()
        .args(["binfmt", "install", "linux/arm64"])
        .assert()
        .success();
    let registry = TestRegistry::start(Auth::Anonymous);
    let name = format!("manifold-it-rootless:{}", std::process::id());
    let _image = ci_image(&host, &name);
    let app = format!("{}/ci/app:1", registry.host());
    let script = format!(
        "manifold import --platform linux/amd64 /ctx/amd64.tar.gz local/bb:amd64 >/dev/null \
         && manifold import --platform linux/arm64 /ctx/arm64.tar.gz local/bb:arm64 >/dev/null \
         && manifold build --platform linux/amd64,linux/arm64 -t {app} --push /ctx"
    );
    let mut docker = Command::new(DOCKER);
    docker
        .args([
            "run",
            "--rm",
            "--network",
            "host",
            &name,
            "/bin/sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null());
    let out = output(docker);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("RUN steps run under proot"), "{said}");
    let printed: Vec<&str> = said.lines().filter(|l| l.ends_with(" proc=yes")).collect();
    assert_eq!(printed.len(), 2, "both platforms see /proc: {said}");

    let skopeo = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{app}"))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "{}", stderr(&skopeo));
    let index: serde_json::Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    host.manifold()
        .args(["pull", "--all-platforms", "-q", &app])
        .assert()
        .success();
    let raw = host
        .manifold()
        .args(["inspect", "--raw", &app])
        .output()
        .unwrap();
    for (platform, entries) in top_layers(host.path(), &String::from_utf8_lossy(&raw.stdout), "") {
        assert_eq!(owner_of(&entries, "app/owned"), (1000, 2000), "{platform}");
        assert!(
            entries.iter().any(|e| e.0 == ".wh.root"),
            "{platform}: {entries:?}"
        );
    }
    for (platform, arch) in [("linux/amd64", "x86_64\n"), ("linux/arm64", "aarch64\n")] {
        host.manifold()
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--platform",
                platform,
                &app,
            ])
            .args(["cat", "/arch"])
            .assert()
            .success()
            .stdout(arch);
    }
}

/// The containers a plain user started, removed (killed first) when the test ends, failed or
/// not: no monitor, forwarder or runc process of the user outlives it.
struct UserContainers<'a>(&'a Rootless);

impl Drop for UserContainers<'_> {
    fn drop(&mut self) {
        let out = self.0.run(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.0.run(&["rm", "-f", id]);
        }
    }
}

/// Issue 14's checks as a plain user with subordinate ids: `run -d` under the monitor with a
/// published port answered over 127.0.0.1, `exec` in the container's user namespace, `logs`,
/// `stop` (SIGKILL after `-t`), `start` and `restart` publishing the same port again, `kill`
/// and `wait` with docker's statuses, `-d --rm`; an arm64 server under QEMU the same way.
#[test]
fn a_plain_user_serves_from_detached_containers() {
    skip_unless!("root", "runc", "slirp4netns", "newuidmap");
    skip_unless!("qemu-aarch64-static");
    udev_default_modes();
    let _binfmt = BinfmtLease::shared();
    let host = TestRoot::new();
    host.manifold()
        .args(["binfmt", "install", "linux/arm64"])
        .assert()
        .success();
    let u = Rootless::new("mfrl-services", true);
    for (debarch, platform) in [("amd64", "linux/amd64"), ("arm64", "linux/arm64")] {
        let tarball = u.give(
            &format!("bb-{debarch}.tar.gz"),
            &fs::read(busybox_rootfs(debarch, "tar.gz")).unwrap(),
        );
        u.ok(&[
            "import",
            "--platform",
            platform,
            &tarball.display().to_string(),
            &format!("local/bb:{debarch}"),
        ]);
    }
    let _containers = UserContainers(&u);
    const PAGE: &str = "served rootless\n";
    let serve = format!(
        "mkdir -p /www && echo '{}' > /www/index.html && exec httpd -f -vv -p 80 -h /www",
        PAGE.trim_end()
    );
    let id = u.ok(&[
        "run",
        "-d",
        "-p",
        "127.0.0.1::80",
        "--name",
        "web",
        "local/bb:amd64",
        "sh",
        "-c",
        &serve,
    ]);
    assert_eq!(
        id.trim().len(),
        64,
        "run -d prints the container's ID: {id:?}"
    );
    let port_of = |name: &str| -> u16 {
        let out = u.ok(&["port", name, "80/tcp"]);
        let addr = out.lines().next().expect("a published port");
        addr.rsplit_once(':').unwrap().1.parse().unwrap()
    };
    let port = port_of("web");
    assert_eq!(
        crate::services::get(port, "/index.html"),
        (200, PAGE.to_string())
    );
    // exec joins the container's user namespace: root in it, the user outside.
    assert_eq!(
        u.ok(&[
            "exec",
            "web",
            "sh",
            "-c",
            "id -u; wc -l < /proc/self/uid_map; head -c 3 /www/index.html"
        ]),
        "0\n2\nser"
    );
    // top lists the container's processes, with a delegated cgroup or without one.
    let top = u.ok(&["top", "web"]);
    assert_eq!(top.lines().count(), 2, "{top}");
    assert!(
        top.lines().nth(1).unwrap().contains("httpd -f -vv"),
        "{top}"
    );
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        let out = u.run(&["logs", "web"]);
        if stderr(&out).contains("url:/index.html") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request is not in the log: {}",
            stderr(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = |name: &str| -> String {
        u.ok(&["ps", "-a", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["Names"] == name)
            .map(|r| r["Status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| format!("{name} is not listed"))
    };
    assert!(status("web").starts_with("Up "), "{}", status("web"));

    // httpd as PID 1 ignores SIGTERM: SIGKILL after the timeout, and the port goes with it.
    assert_eq!(u.ok(&["stop", "-t", "1", "web"]), "web\n");
    assert!(
        status("web").starts_with("Exited (137) "),
        "{}",
        status("web")
    );
    assert!(
        crate::registry_harness::http_get(port, "/").is_err(),
        "the port went with the container"
    );
    // Started and restarted, it serves on the same host port (from the root it had).
    assert_eq!(u.ok(&["start", "web"]), "web\n");
    assert_eq!(
        crate::services::get(port, "/index.html"),
        (200, PAGE.to_string())
    );
    assert_eq!(u.ok(&["restart", "-t", "1", "web"]), "web\n");
    assert_eq!(
        crate::services::get(port, "/index.html"),
        (200, PAGE.to_string())
    );
    u.ok(&["kill", "web"]);
    assert_eq!(u.ok(&["wait", "web"]), "137\n");

    // An arm64 server under QEMU, through the handler root registered.
    u.ok(&[
        "run",
        "-d",
        "--platform",
        "linux/arm64",
        "-p",
        "127.0.0.1::80",
        "--name",
        "web-arm64",
        "local/bb:arm64",
        "sh",
        "-c",
        &serve,
    ]);
    let port = port_of("web-arm64");
    assert_eq!(
        crate::services::get(port, "/index.html"),
        (200, PAGE.to_string())
    );
    assert_eq!(u.ok(&["exec", "web-arm64", "uname", "-m"]), "aarch64\n");

    // Its monitor killed, the container runs on: exec still joins its namespace (through its
    // first process), stop still stops it.
    let id = u.ok(&[
        "run",
        "-d",
        "--name",
        "orphan",
        "local/bb:amd64",
        "sleep",
        "1000",
    ]);
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(
            u.store()
                .join("containers-v1")
                .join(id.trim())
                .join("container.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = record["owner"]["pid"].as_u64().unwrap() as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(monitor).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    while Path::new(&format!("/proc/{monitor}/exe")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor did not die"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(status("orphan").starts_with("Up "), "{}", status("orphan"));
    assert_eq!(u.ok(&["exec", "orphan", "id", "-u"]), "0\n");
    u.ok(&["stop", "-t", "1", "orphan"]);
    assert!(
        status("orphan").starts_with("Exited (unknown) "),
        "{}",
        status("orphan")
    );

    // -d --rm: the monitor removes it on exit, and wait still gets its status.
    u.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        "local/bb:amd64",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ]);
    assert_eq!(u.ok(&["wait", "brief"]), "3\n");
    assert!(
        status("brief").ends_with("is not listed"),
        "{}",
        status("brief")
    );

    u.ok(&["rm", "-f", "web", "web-arm64", "orphan"]);
    assert_eq!(u.ok(&["ps", "-a", "-q"]), "");
    u.ok(&["system", "reset", "--force"]);
}

/// A plain user's detached container runs the image's health checks (the monitor probes it in
/// the container's namespace), and `--memory` says why a cgroup limit cannot be applied where
/// nothing is delegated to the user (cgroup v1, or v2 without `Delegate=`), or applies it where
/// cgroup v2 delegates the controller.
#[test]
fn a_plain_user_gets_health_checks_and_limits_said() {
    skip_unless!("root", "runc", "slirp4netns", "newuidmap");
    udev_default_modes();
    let u = Rootless::new("mfrl-health", true);
    let tarball = u.give(
        "bb.tar.gz",
        &fs::read(busybox_rootfs("amd64", "tar.gz")).unwrap(),
    );
    u.ok(&[
        "import",
        "-c",
        r#"CMD ["sh"]"#,
        &tarball.display().to_string(),
        "local/bb:1",
    ]);
    let _containers = UserContainers(&u);
    u.give(
        "Dockerfile",
        b"FROM local/bb:1\nHEALTHCHECK --interval=1s --timeout=5s --retries=1 CMD test -f /tmp/ok\n",
    );
    let ctx = u.ctx().display().to_string();
    u.ok(&["build", "-q", "-t", "local/health:1", &ctx]);
    u.ok(&[
        "run",
        "-d",
        "--name",
        "doc",
        "local/health:1",
        "sleep",
        "1000",
    ]);
    let status = || -> String {
        u.ok(&["ps", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["Names"] == "doc")
            .map(|r| r["Status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let await_status = |want: &str| {
        let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
        while !status().ends_with(want) {
            assert!(
                std::time::Instant::now() < deadline,
                "never {want}: {}",
                status()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    await_status("(unhealthy)");
    u.ok(&["exec", "doc", "busybox", "touch", "/tmp/ok"]);
    await_status("(healthy)");
    u.ok(&["stop", "-t", "1", "doc"]);

    let out = u.run(&[
        "run",
        "-d",
        "-m",
        "64m",
        "--name",
        "limited",
        "local/bb:1",
        "sleep",
        "1000",
    ]);
    if out.status.success() {
        // Delegated: the limit is the container's.
        let limit = u.ok(&[
            "exec",
            "limited",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]);
        assert_eq!(limit.trim(), (64u64 << 20).to_string());
    } else {
        // Why, naming the user as the host knows it (not the namespace's root).
        let said = stderr(&out);
        assert!(said.contains("`--memory` cannot be applied"), "{said}");
        assert!(said.contains(&format!("user {}", u.user.uid)), "{said}");
        assert!(
            !u.ok(&["ps", "-a", "--format", "json"]).contains("limited"),
            "nothing is made"
        );
    }
    u.ok(&["system", "reset", "--force"]);
}
