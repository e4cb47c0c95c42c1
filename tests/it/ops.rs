//! The operations layer and the store's write transactions, end to end: an image whose layers
//! the store lacks is completed from its registry by whatever needs them (build, run, save,
//! push, verify), and a `prune` can never come between a build's blobs and its tag.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{TestRoot, skip_unless};
use crate::local::import;
use crate::registry_harness::{Auth, TestRegistry};

/// The host's architecture as Debian names it (the busybox fixtures), and its platform.
#[cfg(target_arch = "x86_64")]
const HOST: (&str, &str) = ("amd64", "linux/amd64");
#[cfg(target_arch = "aarch64")]
const HOST: (&str, &str) = ("arm64", "linux/arm64");
/// Another architecture, for the list's second platform.
#[cfg(target_arch = "x86_64")]
const OTHER: (&str, &str) = ("arm64", "linux/arm64");
#[cfg(target_arch = "aarch64")]
const OTHER: (&str, &str) = ("amd64", "linux/amd64");

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run `args` in `root`; its stdout, after checking it succeeded.
fn ok(root: &TestRoot, args: &[&str]) -> String {
    let out = root.manifold().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}:\n{}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Layer blobs (not documents, not configs) in `root`'s store.
fn layers_in(root: &TestRoot) -> usize {
    let blobs = root.path().join("images/blobs/sha256");
    fs::read_dir(blobs)
        .unwrap()
        .filter(|e| {
            let bytes = fs::read(e.as_ref().unwrap().path()).unwrap();
            // Layers are gzip here; documents and configs are JSON.
            bytes.starts_with(&[0x1f, 0x8b])
        })
        .count()
}

/// A registry holding the host's busybox and another architecture's as two single-platform
/// images, and the name of a fresh root's list of them made with `manifest create` (which keeps
/// the children's manifests and configs, never their layers).
struct Published {
    registry: TestRegistry,
    list: String,
    digest: String,
}

fn publish() -> Published {
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let publisher = TestRoot::new();
    for (debarch, platform) in [HOST, OTHER] {
        let name = format!("{host}/app:{debarch}");
        import(&publisher, debarch, platform, &name);
        ok(&publisher, &["push", &name]);
    }
    Published {
        list: format!("{host}/app:list"),
        registry,
        digest: String::new(),
    }
}

impl Published {
    /// A new root holding the list (and nothing of the children but manifests and configs).
    fn sparse_root(&mut self) -> TestRoot {
        let root = TestRoot::new();
        let host = self.registry.host();
        let digest = ok(
            &root,
            &[
                "manifest",
                "create",
                &self.list,
                &format!("{host}/app:{}", HOST.0),
                &format!("{host}/app:{}", OTHER.0),
            ],
        );
        self.digest = digest.trim().to_string();
        assert_eq!(layers_in(&root), 0, "manifest create stored layers");
        root
    }
}

#[test]
fn build_from_a_list_made_by_manifest_create_fetches_the_base_layers() {
    skip_unless!("docker-registry");
    let mut published = publish();
    let list = published.list.clone();
    let root = published.sparse_root();
    let ctx = root.scratch("ctx");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {list}\nCOPY a.txt /a.txt\n"),
    )
    .unwrap();
    fs::write(ctx.join("a.txt"), "a\n").unwrap();
    let out = root
        .manifold()
        .args(["build", "--platform", HOST.1, "-t", "test/on-list:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("Unable to find image '{list}'")),
        "{}",
        stderr_of(&out)
    );
    // The base's layer (the host platform's only) and the COPY's.
    assert_eq!(layers_in(&root), 2);
    // The list still names what it named, and nothing else was tagged.
    let raw: serde_json::Value =
        serde_json::from_str(&ok(&root, &["inspect", "--raw", &list])).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(ok(&root, &["images", "-q"]).lines().count(), 2);
}

#[test]
fn save_of_a_list_made_by_manifest_create_fetches_every_platform() {
    skip_unless!("docker-registry");
    let mut published = publish();
    let list = published.list.clone();
    let root = published.sparse_root();
    let archive = root.scratch("out").join("list.tar");
    let out = root
        .manifold()
        .args(["save", "--format", "oci", "-o"])
        .arg(&archive)
        .arg(&list)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(layers_in(&root), 2);
    // The archive is whole: it loads into an empty store with the list's digest.
    let fresh = TestRoot::new();
    ok(&fresh, &["load", "-i", archive.to_str().unwrap()]);
    let raw = fresh
        .manifold()
        .args(["inspect", "--raw", &list])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        manifold::oci::Digest::sha256_of(&raw).to_string(),
        published.digest
    );
    assert_eq!(layers_in(&fresh), 2);
}

#[test]
fn push_of_a_list_made_by_manifest_create_sends_it_whole() {
    skip_unless!("docker-registry");
    let mut published = publish();
    let list = published.list.clone();
    let root = published.sparse_root();
    let other = format!("{}/elsewhere/app:1", published.registry.host());
    assert_eq!(ok(&root, &["push", &list, &other]).trim(), published.digest);
    let check = TestRoot::new();
    assert_eq!(
        ok(&check, &["pull", "-q", "--all-platforms", &other]).trim(),
        published.digest
    );
    assert_eq!(layers_in(&check), 2);
}

#[test]
fn verify_of_a_list_made_by_manifest_create_reads_every_platform() {
    skip_unless!("docker-registry");
    let mut published = publish();
    let list = published.list.clone();
    let root = published.sparse_root();
    let out = ok(&root, &["verify", "--format", "json", &list]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(layers_in(&root), 2);
}

#[test]
fn run_on_a_list_made_by_manifest_create_fetches_the_layers_it_runs() {
    skip_unless!("root", "runc", "docker-registry");
    let mut published = publish();
    let list = published.list.clone();
    let root = published.sparse_root();
    let out = root
        .manifold()
        .args(["run", "--rm", "--platform", HOST.1, &list, "echo", "ran"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    // Only the platform it ran.
    assert_eq!(layers_in(&root), 1);
}

/// Wait (bounded) for `path` to appear while `child` runs; panics if the child ends first.
fn wait_for(path: &Path, child: &mut std::process::Child) {
    for _ in 0..6000 {
        if path.exists() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the build ended ({status}) before it paused:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

/// Whether a garbage collection could start now on `root` (its gc lock is free).
fn gc_could_run(root: &TestRoot) -> bool {
    let f = fs::File::open(root.path().join("locks-v1/gc.lock")).unwrap();
    match f.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn a_prune_between_a_builds_last_blob_and_its_tag_removes_nothing() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "test/base:1");
    let ctx = root.scratch("ctx");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM test/base:1\nCOPY a.txt /a.txt\n",
    )
    .unwrap();
    fs::write(ctx.join("a.txt"), "kept\n").unwrap();
    let pause = root.scratch("pause").join("before-tag");
    let mut build = root
        .manifold_std()
        .env("MANIFOLD_TEST_PAUSE_BEFORE_TAG", &pause)
        .args(["build", "--platform", "linux/amd64", "-t", "test/new:1"])
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&pause, &mut build);
    // Every blob of the new image is written, none is tagged yet: the build's transaction is
    // still open, so a collection cannot start.
    assert!(
        !gc_could_run(&root),
        "the build let go of the gc lock before tagging"
    );
    let prune = root
        .manifold_std()
        .args(["prune", "-f"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fs::remove_file(&pause).unwrap();
    let built = build.wait_with_output().unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let pruned = prune.wait_with_output().unwrap();
    assert!(pruned.status.success());
    // The prune ran after the tag: the image is whole.
    let out = root
        .manifold()
        .args(["save", "-o"])
        .arg(root.scratch("out").join("new.tar"))
        .arg("test/new:1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspected = root
        .manifold()
        .args(["inspect", "test/new:1"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&inspected).unwrap();
    let v = v.as_array().map_or(&v, |a| &a[0]);
    assert_eq!(v["RootFS"]["diff_ids"].as_array().unwrap().len(), 2, "{v}");
}
