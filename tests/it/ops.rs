//! The operations layer and the store's write transactions, end to end: an image whose layers
//! the store lacks is completed from its registry by whatever needs them (build, run, save,
//! push, verify), and a `prune` can never come between a build's blobs and its tag.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::TestRoot;
use crate::local::import;

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
