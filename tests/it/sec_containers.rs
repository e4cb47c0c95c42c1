//! Issue 9, containers: trees of any depth made by a container (commit, `rm`, `run --rm`,
//! `prune`, also with 1,024 open files), a removal that fails keeps its record for the next
//! `rm`/`prune`, a killed build's step container is reconciled by `prune`, and a full disk is
//! reported as one (unpacking, commit, pull) — plus `prune`'s report of temp files.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{COMMAND_TIMEOUT, TestRoot, busybox_rootfs, skip_unless};
use crate::local::import;
use crate::registry_harness::{self, Auth, TestRegistry};

/// A busybox `sh -c` script making a chain `$1` directories deep, /tmp/t/a/a/…/a: chunks of
/// 500 levels, each made by one `mkdir -p`, with the chain so far moved to the bottom of the
/// new chunk (a rename costs nothing, whatever the depth).
const DEEP_TREE: &str = r#"n=$1; cd /tmp && mkdir t || exit 1
while [ $n -gt 0 ]; do
  k=$n; [ $k -gt 500 ] && k=500
  p=a; i=1; while [ $i -lt $k ]; do p=$p/a; i=$((i+1)); done
  mkdir -p c/$p || exit 1
  if [ -d t/a ]; then mv t/a c/$p/ || exit 1; fi
  mv c/a t/a && rmdir c || exit 1
  n=$((n-k))
done"#;

/// A tmpfs mounted on a store root (created), unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs on {}", path.display());
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `manifold` with a soft limit of `nofile` open files (the hard limit left as it is: raising
/// it needs CAP_SYS_RESOURCE).
fn with_nofile(root: &TestRoot, nofile: u64) -> assert_cmd::Command {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let hard = getrlimit(Resource::Nofile).maximum;
    let mut cmd = root.manifold_std();
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(nofile),
                    maximum: hard,
                },
            )
            .map_err(std::io::Error::from)
        });
    }
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(COMMAND_TIMEOUT);
    cmd
}

fn host_busybox(root: &TestRoot) {
    #[cfg(target_arch = "x86_64")]
    import(root, "amd64", "linux/amd64", "busybox:latest");
    #[cfg(target_arch = "aarch64")]
    import(root, "arm64", "linux/arm64", "busybox:latest");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ps_all(root: &TestRoot) -> Vec<Value> {
    let out = root
        .manifold()
        .args(["ps", "-a", "--format", "json"])
        .assert()
        .success();
    text(&out.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Nothing of any container is left: records, directories, leases, runtime state.
fn no_container_left(root: &TestRoot) {
    assert_eq!(ps_all(root), Vec::<Value>::new());
    assert_eq!(
        names_in(&root.path().join("containers-v1")),
        Vec::<String>::new()
    );
    assert_eq!(
        names_in(&root.path().join("leases-v1")),
        Vec::<String>::new()
    );
    assert_eq!(
        names_in(&root.path().join("runtime-v1/runc")),
        Vec::<String>::new()
    );
}

fn images(root: &TestRoot) -> String {
    text(
        &root
            .manifold()
            .args(["images", "-q", "--no-trunc"])
            .assert()
            .success()
            .get_output()
            .stdout,
    )
}

// --- depth -------------------------------------------------------------------------------------

/// Before: `commit` and `rm` overflowed the stack (a 7,544-deep tree was enough), and `rm` had
/// removed the record first: the container and its lease were orphaned for good.
#[test]
fn a_30000_deep_tree_is_refused_by_commit_and_removed_by_rm() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    // On a tmpfs: 30,000 directories on a busy disk take minutes, and the walk is the same.
    let _fs = Tmpfs::mount(root.path(), "1g");
    host_busybox(&root);
    let before = images(&root);
    root.manifold()
        .args(["run", "--name", "deep", "busybox", "sh", "-c", DEEP_TREE])
        .args(["deep", "30000"])
        .assert()
        .success();

    // Paths past 4,095 bytes make a layer nobody can unpack: refused, with the store as it was.
    let out = with_nofile(&root, 1024)
        .args(["commit", "deep", "deep:image"])
        .assert()
        .code(125);
    insta::assert_snapshot!(root.redact(&text(&out.get_output().stderr)), @r"
    error: cannot commit the changes in [ROOT]/containers-v1/[DIGEST]/upper
      caused by: `tmp/t/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/…` is 4097 bytes long: a layer's paths have at most 4095 bytes (what one system call resolves when it is unpacked)
    ");
    assert_eq!(images(&root), before);
    assert_eq!(names_in(&root.path().join("tmp-v1")), Vec::<String>::new());

    with_nofile(&root, 1024)
        .args(["rm", "deep"])
        .assert()
        .success()
        .stdout("deep\n");
    no_container_left(&root);
}

/// Before: with 1,024 open files, `run --rm` of a 2,000-deep tree failed its cleanup ("Too many
/// open files") after dropping the record, orphaning the container's directory and its lease.
#[test]
fn with_1024_open_files_deep_trees_are_committed_run_and_pruned() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    let _fs = Tmpfs::mount(root.path(), "1g");
    host_busybox(&root);
    with_nofile(&root, 1024)
        .args(["run", "--rm", "busybox", "sh", "-c", DEEP_TREE])
        .args(["deep", "2000"])
        .assert()
        .success();
    no_container_left(&root);

    // 1,500 levels fit in a layer: committed, unpacked into a snapshot, run, then pruned.
    with_nofile(&root, 1024)
        .args(["run", "--name", "d1500", "busybox", "sh", "-c", DEEP_TREE])
        .args(["deep", "1500"])
        .assert()
        .success();
    with_nofile(&root, 1024)
        .args(["commit", "d1500", "deep:1500"])
        .assert()
        .success();
    with_nofile(&root, 1024)
        .args(["rm", "d1500"])
        .assert()
        .success();
    let out = with_nofile(&root, 1024)
        .args(["run", "--rm", "deep:1500", "sh", "-c"])
        .arg("cd /tmp/t && n=0; while cd a 2>/dev/null; do n=$((n+1)); done; echo $n")
        .assert()
        .success();
    assert_eq!(text(&out.get_output().stdout), "1500\n");
    no_container_left(&root);
    let snapshots = root.path().join("snapshots-v1");
    assert_eq!(names_in(&snapshots).len(), 2, "busybox and the deep layer");
    with_nofile(&root, 1024)
        .args(["rmi", "deep:1500"])
        .assert()
        .success();
    with_nofile(&root, 1024)
        .args(["prune", "-f"])
        .assert()
        .success();
    assert_eq!(names_in(&snapshots).len(), 1, "busybox's");
}

// --- a removal that fails ----------------------------------------------------------------------

/// `chattr +i` on a file, undone on drop (so the test root can go, also when the test fails).
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chattr +i {}", path.display());
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn upper_of(root: &TestRoot, id: &str) -> PathBuf {
    root.path().join("containers-v1").join(id).join("upper")
}

/// Before: `rm` removed the record first; a failure half-way left a directory and a lease no
/// command would ever find again.
#[test]
fn a_failed_removal_keeps_the_record_and_rm_or_prune_finish_it() {
    skip_unless!("root", "runc", "chattr");
    let root = TestRoot::new();
    host_busybox(&root);

    // `rm` of a stopped container.
    root.manifold()
        .args(["run", "--name", "stuck", "busybox", "sh", "-c"])
        .arg("mkdir -p /tmp/in/deep && echo x > /tmp/in/deep/file")
        .assert()
        .success();
    let full_id = names_in(&root.path().join("containers-v1")).remove(0);
    let guard = Immutable::set(&upper_of(&root, &full_id).join("tmp/in/deep/file"));
    let out = root.manifold().args(["rm", "stuck"]).assert().code(125);
    insta::assert_snapshot!(root.redact(&text(&out.get_output().stderr)), @r"
    error: cannot remove container [ID]
      caused by: `[ROOT]/containers-v1/[DIGEST]/upper/tmp/in/deep/file`: Operation not permitted (os error 1)
    hint: it stays listed (`Dead` in `manifold ps -a`): once what stands in the way is gone, `manifold rm` or `manifold prune` finishes the removal
    error: 1 of 1 containers could not be removed
    ");
    let listed = ps_all(&root);
    assert_eq!(listed.len(), 1, "the record stays");
    assert_eq!(listed[0]["Names"], "stuck");
    assert_eq!(listed[0]["State"], "removing");
    assert_eq!(listed[0]["Status"], "Dead");
    assert_eq!(names_in(&root.path().join("leases-v1")).len(), 1);
    // Nothing to commit from a half-removed container.
    let out = root
        .manifold()
        .args(["commit", "stuck", "half:removed"])
        .assert()
        .code(125);
    assert!(text(&out.get_output().stderr).contains("is being removed"));
    // prune says what it could not remove, and fails.
    let out = root.manifold().args(["prune", "-f"]).assert().code(125);
    insta::assert_snapshot!(root.redact(&text(&out.get_output().stderr)), @r"
    error: cannot remove container [ID]
      caused by: `[ROOT]/containers-v1/[DIGEST]/upper/tmp/in/deep/file`: Operation not permitted (os error 1)
    hint: it stays listed (`Dead` in `manifold ps -a`): once what stands in the way is gone, `manifold rm` or `manifold prune` finishes the removal
    error: 1 containers could not be removed
    hint: remove what stands in the way (named above), then run `manifold prune` again
    ");
    drop(guard);
    root.manifold()
        .args(["rm", "stuck"])
        .assert()
        .success()
        .stdout("stuck\n");
    no_container_left(&root);

    // `run --rm` whose cleanup fails: the record stays (listed as Dead), prune finishes it.
    let sync = root.scratch("sync");
    let mut child = root
        .manifold_std()
        .args(["run", "--rm", "--name", "rm-me", "-v"])
        .arg(format!("{}:/sync", sync.display()))
        .args(["busybox", "sh", "-c"])
        .arg("echo x > /kept && touch /sync/ready && while [ ! -e /sync/go ]; do sleep 0.1; done")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sync.join("ready").exists() {
        assert!(Instant::now() < deadline, "the container never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let full_id = names_in(&root.path().join("containers-v1")).remove(0);
    let guard = Immutable::set(&upper_of(&root, &full_id).join("kept"));
    fs::write(sync.join("go"), "").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(125), "the cleanup failed");
    let listed = ps_all(&root);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["Names"], "rm-me");
    assert_eq!(listed[0]["Status"], "Dead");
    drop(guard);
    let out = root.manifold().args(["prune", "-f"]).assert().success();
    let stdout = text(&out.get_output().stdout);
    assert!(
        stdout.starts_with(&format!("Deleted Containers:\n{full_id}\n\n")),
        "{stdout}"
    );
    no_container_left(&root);
}

// --- a killed build ----------------------------------------------------------------------------

/// Before: a build killed during `RUN sleep 60` left its step container running, then listed as
/// exited for ever, with its lease (the step's image kept from garbage collection) and the
/// build's temp directory.
#[test]
fn prune_removes_what_a_killed_build_left() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let ctx = root.scratch("ctx");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 60\n").unwrap();
    let mut build = root
        .manifold_std()
        .args(["build", "-t", "never:built"])
        .arg(&ctx)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the step container to run (`runc list` under the root's runtime state).
    let state = root.path().join("runtime-v1/runc");
    let deadline = Instant::now() + Duration::from_secs(180);
    let step = loop {
        if let Some(id) = names_in(&state).into_iter().next() {
            break id;
        }
        assert!(
            build.try_wait().unwrap().is_none(),
            "the build ended before its RUN step ran"
        );
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    build.kill().unwrap();
    build.wait().unwrap();
    assert!(
        root.path()
            .join("leases-v1")
            .join(format!("{step}.json"))
            .exists(),
        "the step's lease"
    );
    assert!(
        !names_in(&root.path().join("tmp-v1")).is_empty(),
        "the build's temp directory"
    );

    let out = root.manifold().args(["prune", "-f"]).assert().success();
    let stdout = text(&out.get_output().stdout);
    assert!(
        stdout.starts_with(&format!("Deleted Containers:\n{step}\n\n")),
        "{stdout}"
    );
    assert!(stdout.contains("Deleted temp files: "), "{stdout}");
    no_container_left(&root);
    assert_eq!(names_in(&root.path().join("tmp-v1")), Vec::<String>::new());
    let runc = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(text(&runc.stdout), "", "the step's process is gone");
    assert_eq!(images(&root).lines().count(), 1, "busybox only");
}

// --- temp files --------------------------------------------------------------------------------

/// Before: prune removed temp files silently (and left what it could not remove uncounted).
#[test]
fn prune_reports_the_temp_files_it_freed() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "busybox:latest");
    // What killed processes leave: a blob half-written, a build's directory, an unpack.
    let tmp = root.path().join("tmp-v1");
    fs::write(tmp.join("blob-killed"), vec![7u8; 3000]).unwrap();
    fs::create_dir_all(tmp.join("build-killed/pipes")).unwrap();
    fs::write(tmp.join("build-killed/pipes/script"), vec![7u8; 1000]).unwrap();
    let snap = root
        .path()
        .join("snapshots-v1/.tmp-0123456789ab-xyz/fs/bin");
    fs::create_dir_all(&snap).unwrap();
    fs::write(snap.join("sh"), vec![7u8; 500]).unwrap();
    let out = root.manifold().args(["prune", "-f"]).assert().success();
    insta::assert_snapshot!(text(&out.get_output().stdout), @r"
    Deleted temp files: 3 (4.5kB)
    Total reclaimed space: 4.5kB
    ");
    assert_eq!(names_in(&tmp), Vec::<String>::new());
    assert_eq!(
        names_in(&root.path().join("snapshots-v1")),
        Vec::<String>::new()
    );
    // Nothing left: nothing reported.
    let out = root.manifold().args(["prune", "-f"]).assert().success();
    insta::assert_snapshot!(text(&out.get_output().stdout), @"Total reclaimed space: 0B");
}

// --- a full disk -------------------------------------------------------------------------------

/// The size of a tmpfs holding `bytes` and `extra_kib` more, in KiB.
fn kib(bytes: u64, extra_kib: u64) -> String {
    format!("{}k", bytes.div_ceil(1024) + extra_kib)
}

fn assert_no_space(err: &str, dir: &Path, mount: &Path) {
    let want = format!(
        "no space left on device in `{}` (the file system mounted on `{}` is full)",
        dir.display(),
        mount.display()
    );
    assert!(err.contains(&want), "{want}\nnot in:\n{err}");
    assert!(
        err.contains("hint: free space on that file system (`manifold prune` removes unused images, snapshots and temp files), or give `--root` a directory on a larger one"),
        "{err}"
    );
    assert!(!err.contains("malformed"), "{err}");
}

/// Before: "cannot unpack layer …: entry `bin/busybox`: No space left on device", with the hint
/// "the layer is malformed or hostile".
#[test]
fn a_full_disk_while_unpacking_says_so_and_where() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    let gz = fs::metadata(busybox_rootfs("amd64", "tar.gz"))
        .unwrap()
        .len();
    // Room for the blob, not for its files.
    let _fs = Tmpfs::mount(root.path(), &kib(gz, 512));
    host_busybox(&root);
    let out = root
        .manifold()
        .args(["run", "--rm", "busybox", "true"])
        .assert()
        .code(125);
    let err = text(&out.get_output().stderr);
    assert_no_space(&err, &root.path().join("snapshots-v1"), root.path());
    insta::assert_snapshot!(root.redact(&err), @r"
    error: cannot unpack layer sha256:[DIGEST]
      caused by: no space left on device in `[ROOT]/snapshots-v1` (the file system mounted on `[ROOT]` is full)
      caused by: No space left on device (os error 28)
    hint: free space on that file system (`manifold prune` removes unused images, snapshots and temp files), or give `--root` a directory on a larger one
    ");
    assert_eq!(
        names_in(&root.path().join("snapshots-v1")),
        Vec::<String>::new()
    );
    no_container_left(&root);
}

/// Before: commit said "cannot read the changes in …/upper: No space left on device".
#[test]
fn a_full_disk_while_committing_says_so_and_where() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    let _fs = Tmpfs::mount(root.path(), "16m");
    host_busybox(&root);
    let before = images(&root);
    // The container fills the file system (its own write fails; the container does not care).
    root.manifold()
        .args(["run", "--name", "filler", "busybox", "sh", "-c"])
        .arg("head -c 64000000 /dev/urandom > /fill; true")
        .assert()
        .success();
    let out = root
        .manifold()
        .args(["commit", "filler", "full:disk"])
        .assert()
        .code(125);
    let err = text(&out.get_output().stderr);
    assert_no_space(&err, &root.path().join("tmp-v1"), root.path());
    insta::assert_snapshot!(root.redact(&err), @r"
    error: cannot commit the changes in [ROOT]/containers-v1/[DIGEST]/upper
      caused by: no space left on device in `[ROOT]/tmp-v1` (the file system mounted on `[ROOT]` is full)
      caused by: No space left on device (os error 28)
    hint: free space on that file system (`manifold prune` removes unused images, snapshots and temp files), or give `--root` a directory on a larger one
    ");
    // Removing needs no space, and gives it back.
    root.manifold().args(["rm", "filler"]).assert().success();
    no_container_left(&root);
    assert_eq!(images(&root), before);
    assert_eq!(names_in(&root.path().join("tmp-v1")), Vec::<String>::new());
}

/// Before: `error: No space left on device (os error 28) at path "…/tmp-v1/blob-Xy12ab"`, no
/// hint.
#[test]
fn a_full_disk_while_pulling_says_so_and_where() {
    skip_unless!("root", "docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let source = TestRoot::new();
    let reference = format!("{}/sec/busybox:latest", registry.host());
    registry_harness::import(&source, "amd64", "sec/busybox:latest");
    source
        .manifold()
        .args(["push", "sec/busybox:latest", &reference])
        .assert()
        .success();

    let root = TestRoot::new();
    let _fs = Tmpfs::mount(root.path(), "600k");
    let out = root
        .manifold()
        .args(["pull", &reference])
        .assert()
        .code(125);
    let err = text(&out.get_output().stderr);
    assert_no_space(&err, &root.path().join("tmp-v1"), root.path());
    insta::assert_snapshot!(root.redact(&err), @r"
    error: no space left on device in `[ROOT]/tmp-v1` (the file system mounted on `[ROOT]` is full)
      caused by: No space left on device (os error 28)
    hint: free space on that file system (`manifold prune` removes unused images, snapshots and temp files), or give `--root` a directory on a larger one
    ");
    assert_eq!(images(&root), "");
    assert_eq!(names_in(&root.path().join("tmp-v1")), Vec::<String>::new());
}
