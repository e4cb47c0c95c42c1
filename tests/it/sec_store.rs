//! The store keeps other local users out (issue 9, items 1 and 16): as root, with a second,
//! unprivileged user made by the test, nothing a container wrote (a setuid-root program), no
//! container's environment, no blob, no cache mount and no lock of the store can be reached; a
//! store made by an earlier version (0755 directories, 0644 files) is repaired when opened; a
//! cache mount still has the mode, uid and gid asked for inside the container; docker's
//! config directory is created 0700 and a symlinked config.json is written through.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{TestRoot, skip_unless};
use crate::local::import;
use crate::registry_harness::{Auth, PASSWORD, TestRegistry, USER};

// --- a second user -----------------------------------------------------------------------------

/// A local user made for one test and removed when dropped (also when the test fails).
pub(crate) struct OtherUser {
    name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Run a user administration command, retrying while another process holds /etc/passwd's lock
/// (tests of other modules add and remove users at the same time).
fn admin(program: &str, args: &[&str]) -> Output {
    let mut last = None;
    for _ in 0..100 {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if out.status.success() {
            return out;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(100));
    }
    last.unwrap()
}

fn id_of(name: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    assert!(out.status.success(), "id {flag} {name}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl OtherUser {
    fn create(n: u32) -> OtherUser {
        OtherUser::named(&format!("mfsec-store-{n}"))
    }

    /// A user called `name` (unique to the test: `mfsec-<piece>-<n>`).
    pub(crate) fn named(name: &str) -> OtherUser {
        let name = name.to_string();
        // A leftover of a run that was killed before its guard could remove it.
        if Command::new("id")
            .arg(&name)
            .output()
            .unwrap()
            .status
            .success()
        {
            admin("userdel", &[&name]);
        }
        let out = admin(
            "useradd",
            &[
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ],
        );
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OtherUser {
            uid: id_of(&name, "-u"),
            gid: id_of(&name, "-g"),
            name,
        }
    }

    /// A command run as this user (no supplementary groups), environment cleared.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::null());
        c
    }

    /// What `sh -c SCRIPT` said and whether it succeeded, as this user.
    fn sh(&self, script: &str) -> (bool, String) {
        let out = self
            .command("/bin/sh")
            .args(["-c", script])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Assert that this user cannot read `path`, and that it is the permissions that stop them.
    fn cannot_read(&self, path: &Path) {
        assert!(path.is_file(), "{} exists (as root)", path.display());
        let (ok, text) = self.sh(&format!("cat '{}' >/dev/null", path.display()));
        assert!(!ok, "{} could read {}", self.name, path.display());
        assert!(text.contains("Permission denied"), "{text}");
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        admin("userdel", &[&self.name]);
    }
}

/// A store root the second user could reach if its own modes allowed it: the test's temporary
/// directory (0700 as made) is opened to everyone.
fn reachable_root() -> TestRoot {
    let root = TestRoot::new();
    let parent = root.path().parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    root
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// The one container directory of a store.
fn container_dir(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(root.join("containers-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// The host directory of the one cache mount of a store.
fn cache_mount_dir(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(root.join("cache-v1/mounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

const SECRET: &str = "mfsec-hunter2";

/// A store with busybox, a stopped container started with `-e SECRET=…` that left a setuid-root
/// copy of busybox in its /tmp, and a build whose RUN used a cache mount asked with mode 0777,
/// uid 1234 and gid 2345 (the image `test/cached:1` holds what the step saw of it in /seen).
fn populated(root: &TestRoot) {
    import(root, "amd64", "linux/amd64", "test/busybox:latest");
    root.manifold()
        .args(["run", "--name", "setuid", "-e"])
        .arg(format!("SECRET={SECRET}"))
        .args([
            "test/busybox:latest",
            "sh",
            "-c",
            "busybox cp /bin/busybox /tmp/sh && busybox chmod 4755 /tmp/sh",
        ])
        .assert()
        .success();
    let ctx = root.scratch("cache-ctx");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM test/busybox:latest\n\
         RUN --mount=type=cache,target=/c,id=shared,mode=0777,uid=1234,gid=2345 \\\n    \
         ls -ldn /c > /seen && touch /c/from-build\n",
    )
    .unwrap();
    root.manifold()
        .args(["build", "-t", "test/cached:1"])
        .arg(&ctx)
        .assert()
        .success();
}

// --- item 1: the store ------------------------------------------------------------------------

#[test]
fn another_user_reaches_nothing_in_the_store() {
    skip_unless!("root", "runc", "useradd");
    let root = reachable_root();
    populated(&root);
    let user = OtherUser::create(1);
    let store = root.path();
    // The user reaches where the store is: what stops them below is the store's modes.
    let (ok, text) = user.sh(&format!(
        "ls '{}' >/dev/null",
        store.parent().unwrap().display()
    ));
    assert!(ok, "the user can list the store's parent: {text}");

    // (1) the setuid-root program the container wrote in its /tmp
    let planted = container_dir(store).join("upper/tmp/sh");
    let meta = fs::metadata(&planted).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o4755, 0),
        "the container left a setuid-root program"
    );
    let err = user
        .command(&planted)
        .args(["-c", "true"])
        .status()
        .expect_err("the user must not be able to run the container's setuid program");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");

    // (2) the container's config.json, which holds its environment
    let config = container_dir(store).join("config.json");
    assert!(fs::read_to_string(&config).unwrap().contains(SECRET));
    user.cannot_read(&config);
    user.cannot_read(&container_dir(store).join("container.json"));

    // (3) a blob of a stored image
    let blob = fs::read_dir(store.join("images/blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    user.cannot_read(&blob);

    // (4) the host side of a cache mount made with mode=0777: no poisoning
    let mount = cache_mount_dir(store);
    assert_eq!(
        mode(&mount),
        0o777,
        "the mode asked for is the directory's own"
    );
    let poison = mount.join("poison");
    let (ok, text) = user.sh(&format!("echo x > '{}'", poison.display()));
    assert!(!ok && text.contains("Permission denied"), "{text}");
    assert!(!poison.exists());

    // and no lock of the store can be held by the user to stall manifold
    user.cannot_read(&store.join("locks-v1/index.lock"));

    // The modes that do it.
    assert_eq!(mode(store), 0o700);
    for dir in [
        "images",
        "images/blobs/sha256",
        "containers-v1",
        "cache-v1",
        "cache-v1/mounts",
        "tmp-v1",
        "locks-v1",
        "leases-v1",
    ] {
        assert_eq!(mode(&store.join(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(&container_dir(store)), 0o700);
    for file in [config, blob, store.join("images/index.json")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn a_cache_mount_keeps_its_mode_and_owner_inside_the_container() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    populated(&root);
    let out = root
        .manifold()
        .args(["run", "--rm", "test/cached:1", "cat", "/seen"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(
        (fields[0], fields[2], fields[3]),
        ("drwxrwxrwx", "1234", "2345"),
        "{seen}"
    );
    // The host directory is the one the container used, behind a private parent.
    let mount = cache_mount_dir(root.path());
    assert!(mount.join("from-build").is_file());
    let meta = fs::metadata(&mount).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345));
    assert_eq!(mode(&root.path().join("cache-v1/mounts")), 0o700);
}

/// Give a store the modes an earlier version made: directories 0755, the store's files 0644.
/// What a container sees (below a container's directory, a cache mount) and what was already
/// 0700 then (snapshots, runc's state) is left as it is.
fn make_old_style(store: &Path) {
    let chmod = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rel = dir.strip_prefix(store).unwrap().to_path_buf();
        if rel.starts_with("snapshots-v1") || rel.starts_with("runtime-v1") {
            continue;
        }
        chmod(&dir, 0o755);
        let container = rel.parent() == Some(Path::new("containers-v1"));
        let mounts = rel == Path::new("cache-v1/mounts");
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if t.is_dir() && !container && !mounts {
                stack.push(e.path());
            } else if t.is_file()
                && !(container && ["hosts", "hostname", "resolv.conf"].contains(&&*name))
            {
                chmod(&e.path(), 0o644);
            }
        }
    }
}

/// Every path of the store another user could reach, walking from the root as they would
/// (a directory is entered only when others may search it).
fn reachable_by_others(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if mode(&dir) & 0o001 == 0 {
            continue;
        }
        out.push(dir.clone());
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn opening_an_old_store_repairs_its_modes() {
    skip_unless!("root", "runc", "useradd");
    let root = reachable_root();
    populated(&root);
    let store = root.path();
    let cdir = container_dir(store);
    let mount = cache_mount_dir(store);
    // What the container sees, which the repair must leave as it is.
    let theirs = [
        mount.clone(),
        cdir.join("upper"),
        cdir.join("upper/tmp"),
        cdir.join("upper/tmp/sh"),
        cdir.join("hosts"),
    ];
    let modes_before: Vec<u32> = theirs.iter().map(|p| mode(p)).collect();
    make_old_style(store);
    assert_eq!(mode(store), 0o755);
    assert_eq!(mode(&cdir.join("config.json")), 0o644);
    assert!(
        reachable_by_others(store).contains(&cdir.join("upper/tmp/sh")),
        "the old-style store hands out the setuid program"
    );
    let user = OtherUser::create(2);
    let (ok, _) = user.sh(&format!("cat '{}'", cdir.join("config.json").display()));
    assert!(ok, "before the repair the user reads the secret");

    // Any command opens the store: the root, the layout, locks and leases.
    root.manifold().arg("images").assert().success();
    assert_eq!(mode(store), 0o700);
    assert_eq!(reachable_by_others(store), Vec::<PathBuf>::new());
    for p in [
        "images",
        "images/blobs",
        "images/blobs/sha256",
        "locks-v1",
        "leases-v1",
    ] {
        assert_eq!(mode(&store.join(p)), 0o700, "{p}");
    }
    for p in [
        "images/index.json",
        "images/oci-layout",
        "locks-v1/index.lock",
    ] {
        assert_eq!(mode(&store.join(p)), 0o600, "{p}");
    }
    for blob in fs::read_dir(store.join("images/blobs/sha256")).unwrap() {
        let blob = blob.unwrap().path();
        assert_eq!(mode(&blob), 0o600, "{}", blob.display());
    }
    // The containers' own, when containers are looked at.
    root.manifold().args(["ps", "-a"]).assert().success();
    assert_eq!(mode(&store.join("containers-v1")), 0o700);
    assert_eq!(mode(&cdir), 0o700);
    assert_eq!(mode(&cdir.join("config.json")), 0o600);
    assert_eq!(mode(&cdir.join("container.json")), 0o600);
    // The build cache's, at the next build.
    let ctx = root.scratch("cache-ctx");
    root.manifold()
        .args(["build", "-t", "test/cached:1"])
        .arg(&ctx)
        .assert()
        .success();
    for p in [
        "cache-v1",
        "cache-v1/steps",
        "cache-v1/trees",
        "cache-v1/mounts",
    ] {
        assert_eq!(mode(&store.join(p)), 0o700, "{p}");
    }
    for step in fs::read_dir(store.join("cache-v1/steps")).unwrap() {
        let step = step.unwrap().path();
        assert_eq!(mode(&step), 0o600, "{}", step.display());
    }
    // What the containers see is theirs and unchanged.
    let modes_after: Vec<u32> = theirs.iter().map(|p| mode(p)).collect();
    assert_eq!(modes_after, modes_before, "{theirs:?}");
    assert_eq!(mode(&mount), 0o777);

    let err = user
        .command(cdir.join("upper/tmp/sh"))
        .status()
        .expect_err("after the repair the setuid program is out of reach");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    user.cannot_read(&cdir.join("config.json"));
}

#[test]
fn a_root_that_holds_other_files_is_refused_and_left_alone() {
    let root = TestRoot::new();
    let home = root.scratch("home");
    fs::write(home.join(".profile"), "# someone's\n").unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_manifold"))
        .env_remove("MANIFOLD_ROOT")
        .env("DOCKER_CONFIG", root.docker_config())
        .arg("--root")
        .arg(&home)
        .arg("images")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    root.insta_settings().bind(|| {
        insta::assert_snapshot!(stderr, @r"
        error: cannot open the store at [SCRATCH]/home
          caused by: `[SCRATCH]/home` is not empty and is not a manifold store; manifold makes a store's root private (mode 0700) and will not take this one over
        hint: give `--root` a new or empty directory, or one that holds a manifold store
        ");
    });
    assert_eq!(mode(&home), 0o755, "its mode is left");
    let names: Vec<String> = fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [".profile"], "nothing was created in it");

    // An empty directory made for the store is the store's to close.
    let empty = root.scratch("empty");
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o755)).unwrap();
    assert_cmd::Command::new(env!("CARGO_BIN_EXE_manifold"))
        .env_remove("MANIFOLD_ROOT")
        .env("DOCKER_CONFIG", root.docker_config())
        .arg("--root")
        .arg(&empty)
        .arg("images")
        .assert()
        .success();
    assert_eq!(mode(&empty), 0o700);
}

// --- item 16: docker's config.json ------------------------------------------------------------

fn login(root: &TestRoot, registry: &TestRegistry, docker_config: &Path) {
    root.manifold()
        .env("DOCKER_CONFIG", docker_config)
        .args(["login", "-u", USER, "--password-stdin", &registry.host()])
        .write_stdin(format!("{PASSWORD}\n"))
        .assert()
        .success();
}

#[test]
fn login_makes_a_private_config_directory_and_writes_through_a_symlink() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Basic);
    let root = TestRoot::new();
    let host = registry.host();

    // A config directory that does not exist yet is made 0700, the file 0600.
    let fresh = root.scratch("fresh").join("docker");
    login(&root, &registry, &fresh);
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("config.json")), 0o600);

    // A config.json that links to a file kept elsewhere stays a link; the file gets the
    // credentials and stays 0600.
    let dots = root.scratch("dotfiles");
    let real = dots.join("docker-config.json");
    fs::write(&real, "{\"psFormat\": \"table {{.ID}}\"}\n").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
    let linked = root.scratch("linked");
    std::os::unix::fs::symlink(&real, linked.join("config.json")).unwrap();
    login(&root, &registry, &linked);
    let link = linked.join("config.json");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_link(&link).unwrap(), real);
    let text = fs::read_to_string(&real).unwrap();
    assert!(text.contains(&host) && text.contains("psFormat"), "{text}");
    assert_eq!(mode(&real), 0o600);

    // logout writes through it too.
    root.manifold()
        .env("DOCKER_CONFIG", &linked)
        .args(["logout", &host])
        .assert()
        .success();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let text = fs::read_to_string(&real).unwrap();
    assert!(!text.contains(&host) && text.contains("psFormat"), "{text}");
    assert_eq!(mode(&real), 0o600);
}
