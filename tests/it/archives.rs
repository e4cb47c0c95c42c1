//! save / load / import against the peers: what manifold writes skopeo and oci-image-tool read,
//! what skopeo and umoci write manifold loads, digests survive round trips, and bad input leaves
//! the store byte-for-byte as it was.

use std::path::PathBuf;
use std::process::Command as Process;

use predicates::prelude::*;
use serde_json::Value;

use crate::harness::{TestRoot, busybox_rootfs, require, tree_hash};
use crate::local::{import, multiarch};

fn run(cmd: &mut Process) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn inspect(root: &TestRoot, image: &str) -> Value {
    let out = root
        .manifold()
        .args(["inspect", image])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice::<Value>(&out).unwrap()[0].clone()
}

fn tmpfile(root: &TestRoot, name: &str) -> PathBuf {
    root.scratch("files").join(name)
}

/// `manifold --root …` as a plain process, to run several at once.
fn manifold_process(root: &TestRoot) -> Process {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_manifold"));
    cmd.env_remove("MANIFOLD_ROOT")
        .arg("--root")
        .arg(root.path())
        .args(["--progress", "none"]);
    cmd
}

#[test]
fn docker_archive_round_trip_keeps_the_image_id() {
    let root = TestRoot::new();
    import(&root, "arm64", "linux/arm64", "demo/busybox:arm64");
    let before = inspect(&root, "demo/busybox:arm64");
    let archive = tmpfile(&root, "d.tar");
    root.manifold()
        .args(["save", "-o"])
        .arg(&archive)
        .arg("demo/busybox:arm64")
        .assert()
        .success();

    let other = TestRoot::new();
    other
        .manifold()
        .args(["load", "-i"])
        .arg(&archive)
        .assert()
        .success()
        .stdout("Loaded image: demo/busybox:arm64\n");
    let after = inspect(&other, "demo/busybox:arm64");
    // docker's image ID is the config digest: it survives; the layer is stored uncompressed.
    assert_eq!(before["ConfigDigest"], after["ConfigDigest"]);
    assert_eq!(before["RootFS"], after["RootFS"]);
    assert_eq!(after["Platform"], "linux/arm64/v8");
    std::fs::remove_file(archive).ok();
}

#[test]
fn oci_archive_round_trip_keeps_every_digest_of_a_multi_platform_image() {
    let root = TestRoot::new();
    let index = multiarch(
        &root,
        "demo/multi:1",
        &[("amd64", "linux/amd64"), ("arm64", "linux/arm64")],
        &[],
    );
    let archive = tmpfile(&root, "o.tar");
    root.manifold()
        .args(["save", "--format", "oci", "-o"])
        .arg(&archive)
        .arg("demo/multi:1")
        .assert()
        .success();
    let other = TestRoot::new();
    other
        .manifold()
        .args(["load", "-i"])
        .arg(&archive)
        .assert()
        .success();
    assert_eq!(inspect(&other, "demo/multi:1")["Id"], index);
    assert_eq!(
        tree_hash(&root.path().join("images/blobs")),
        tree_hash(&other.path().join("images/blobs"))
    );
    std::fs::remove_file(archive).ok();
}

#[test]
fn save_to_stdout_and_load_from_stdin_with_compression() {
    let root = TestRoot::new();
    import(&root, "s390x", "linux/s390x", "demo/s:1");
    import(&root, "i386", "linux/386", "demo/i:1");
    let tar = root
        .manifold()
        .args(["save", "demo/s:1", "demo/i:1"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let other = TestRoot::new();
    let out = other
        .manifold()
        .arg("load")
        .write_stdin(gz)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("demo/s:1") && out.contains("demo/i:1"),
        "{out}"
    );
    assert_eq!(inspect(&other, "demo/i:1")["Architecture"], "386");
}

#[test]
fn docker_archive_of_a_multi_platform_image_needs_a_platform() {
    let root = TestRoot::new();
    multiarch(
        &root,
        "demo/multi:1",
        &[("amd64", "linux/amd64"), ("armhf", "linux/arm/v7")],
        &[],
    );
    let archive = tmpfile(&root, "m.tar");
    root.manifold()
        .args(["save", "-o"])
        .arg(&archive)
        .arg("demo/multi:1")
        .assert()
        .code(125)
        .stderr(
            predicate::str::contains("multi-platform").and(predicate::str::contains("--platform")),
        );
    assert!(!archive.exists(), "a failed save leaves no file");
    root.manifold()
        .args(["save", "--platform", "linux/arm/v7", "-o"])
        .arg(&archive)
        .arg("demo/multi:1")
        .assert()
        .success();
    let other = TestRoot::new();
    other
        .manifold()
        .args(["load", "-i"])
        .arg(&archive)
        .assert()
        .success();
    assert_eq!(inspect(&other, "demo/multi:1")["Variant"], "v7");
    std::fs::remove_file(archive).ok();
}

#[test]
fn the_store_is_an_oci_layout_peers_read() {
    if !require("skopeo") || !require("oci-image-tool") {
        return;
    }
    let root = TestRoot::new();
    import(&root, "arm64", "linux/arm64", "demo/busybox:arm64");
    multiarch(
        &root,
        "demo/multi:1",
        &[("amd64", "linux/amd64"), ("ppc64el", "linux/ppc64le")],
        &[],
    );
    let layout = root.path().join("images");
    let out = run(Process::new("skopeo").arg("inspect").arg(format!(
        "oci:{}:docker.io/demo/busybox:arm64",
        layout.display()
    )));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Architecture"], "arm64");
    let raw = run(Process::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:docker.io/demo/multi:1", layout.display())));
    assert!(raw.contains("ppc64le"), "{raw}");
    let out = run(Process::new("oci-image-tool")
        .args(["validate", "--type", "image"])
        .arg(&layout));
    assert!(
        out.contains("Validation succeeded") || out.is_empty(),
        "{out}"
    );
}

#[test]
fn skopeo_reads_what_manifold_saves() {
    if !require("skopeo") {
        return;
    }
    let root = TestRoot::new();
    import(&root, "ppc64el", "linux/ppc64le", "demo/p:1");
    let d = tmpfile(&root, "d.tar");
    let o = tmpfile(&root, "o.tar");
    root.manifold()
        .args(["save", "-o"])
        .arg(&d)
        .arg("demo/p:1")
        .assert()
        .success();
    root.manifold()
        .args(["save", "--format", "oci", "-o"])
        .arg(&o)
        .arg("demo/p:1")
        .assert()
        .success();
    let v: Value = serde_json::from_str(&run(Process::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", d.display()))))
    .unwrap();
    assert_eq!(v["Architecture"], "ppc64le");
    let v: Value = serde_json::from_str(&run(Process::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}:docker.io/demo/p:1", o.display()))))
    .unwrap();
    assert_eq!(v["Architecture"], "ppc64le");
    // And skopeo can copy the docker-archive out completely (it checks layer digests).
    let dir = tmpfile(&root, "copied");
    run(Process::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", d.display()))
        .arg(format!("oci:{}:x", dir.display())));
    for f in [d, o] {
        std::fs::remove_file(f).ok();
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn manifold_loads_what_skopeo_and_umoci_write() {
    if !require("skopeo") || !require("umoci") {
        return;
    }
    let root = TestRoot::new();
    import(&root, "mips64el", "linux/mips64le", "demo/m:1");
    let layout = root.path().join("images");
    let src = format!("oci:{}:docker.io/demo/m:1", layout.display());

    // skopeo → docker-archive
    let d = tmpfile(&root, "skopeo-d.tar");
    run(Process::new("skopeo").arg("copy").arg(&src).arg(format!(
        "docker-archive:{}:skopeo/dockerarchive:1",
        d.display()
    )));
    // skopeo → OCI archive
    let o = tmpfile(&root, "skopeo-o.tar");
    run(Process::new("skopeo")
        .arg("copy")
        .arg(&src)
        .arg(format!("oci-archive:{}:skopeo/ociarchive:1", o.display())));
    // umoci → an OCI layout, tarred
    let u = tmpfile(&root, "umoci");
    run(Process::new("umoci").args(["init", "--layout"]).arg(&u));
    run(Process::new("umoci")
        .args(["new", "--image"])
        .arg(format!("{}:latest", u.display())));
    let ut = tmpfile(&root, "umoci.tar");
    run(Process::new("tar")
        .arg("-cf")
        .arg(&ut)
        .arg("-C")
        .arg(&u)
        .arg("."));

    let other = TestRoot::new();
    for f in [&d, &o, &ut] {
        other
            .manifold()
            .args(["load", "-i"])
            .arg(f)
            .assert()
            .success();
    }
    assert_eq!(
        inspect(&other, "skopeo/dockerarchive:1")["Architecture"],
        "mips64le"
    );
    let v = inspect(&other, "skopeo/ociarchive:1");
    assert_eq!(v["Architecture"], "mips64le");
    // skopeo's OCI archive keeps manifold's manifest digest.
    assert_eq!(v["Id"], inspect(&root, "demo/m:1")["Id"]);
    // umoci's image is named only `latest`: loaded untagged.
    let dangling = other
        .manifold()
        .args(["images", "-q", "--filter", "dangling=true"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(dangling).unwrap().lines().count(), 1);
    for f in [d, o, ut] {
        std::fs::remove_file(f).ok();
    }
    std::fs::remove_dir_all(u).ok();
}

/// A tar archive of `files`.
fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn bad_archives_are_refused_and_leave_the_store_untouched() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/keep:1");
    let good = tmpfile(&root, "good.tar");
    root.manifold()
        .args(["save", "--format", "oci", "-o"])
        .arg(&good)
        .arg("demo/keep:1")
        .assert()
        .success();
    let bytes = std::fs::read(&good).unwrap();
    let before = tree_hash(root.path());

    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let zeros = "0000000000000000000000000000000000000000000000000000000000000000";
    let not_json = b"{ not json".to_vec();
    let nj = manifold::oci::Digest::sha256_of(&not_json);
    let nj_path = format!("blobs/sha256/{}", nj.hex());
    let index_of = |media_type: &str| {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media_type}","digest":"{nj}","size":{}}}]}}"#,
            not_json.len()
        )
    };
    let manifest_index = index_of("application/vnd.oci.image.manifest.v1+json");
    let unknown_index = index_of("application/x-unknown");
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{zeros}"]}}}}"#
    );
    let layer_tar = tar_bytes(&[("hi", b"hi")]);
    let gz = std::fs::read(busybox_rootfs("amd64", "tar.gz")).unwrap();

    // (what, the command, its input, what the error says)
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            "load",
            b"this is not an archive at all, just some words\n".repeat(20),
            "not a tar archive",
        ),
        ("empty", "load", Vec::new(), "empty"),
        (
            "truncated",
            "load",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated or corrupt",
        ),
        (
            "gzip garbage",
            "load",
            vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7],
            "not a tar archive",
        ),
        (
            "a blob whose bytes do not match its name",
            "load",
            tar_bytes(&[
                ("oci-layout", layout),
                (&format!("blobs/sha256/{zeros}"), b"fake layer"),
                ("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
            ]),
            "does not match its digest",
        ),
        (
            "a manifest that is not JSON",
            "load",
            tar_bytes(&[
                (&nj_path, &not_json),
                ("index.json", manifest_index.as_bytes()),
            ]),
            "is not valid JSON",
        ),
        (
            "a manifest of an unknown media type",
            "load",
            tar_bytes(&[
                (&nj_path, &not_json),
                ("index.json", unknown_index.as_bytes()),
            ]),
            "unsupported media type `application/x-unknown`",
        ),
        (
            "a docker-archive whose layer does not match the config's diff ID",
            "load",
            tar_bytes(&[
                ("c.json", config.as_bytes()),
                ("l/layer.tar", &layer_tar),
                (
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":["bad/image:1"],"Layers":["l/layer.tar"]}]"#,
                ),
            ]),
            "diff ID",
        ),
        (
            "a docker-archive naming a file it does not hold",
            "load",
            tar_bytes(&[
                ("c.json", config.as_bytes()),
                (
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["missing/layer.tar"]}]"#,
                ),
            ]),
            "missing/layer.tar",
        ),
        (
            "import of garbage",
            "import",
            b"garbage!".repeat(200),
            "not a tar archive",
        ),
        (
            "import of a truncated tarball",
            "import",
            gz[..gz.len() / 2].to_vec(),
            "truncated or corrupt",
        ),
    ];
    let f = tmpfile(&root, "bad.tar");
    for (what, command, data, message) in cases {
        std::fs::write(&f, data).unwrap();
        let mut cmd = root.manifold();
        match command {
            "load" => cmd.args(["load", "-i"]).arg(&f),
            _ => cmd.arg("import").arg(&f).arg("x:1"),
        };
        cmd.assert()
            .code(125)
            .stderr(predicate::str::contains(message).name(what));
        assert_eq!(tree_hash(root.path()), before, "{what} changed the store");
    }
    for p in [good, f] {
        std::fs::remove_file(p).ok();
    }
}

#[test]
fn concurrent_imports_into_one_root_leave_a_consistent_store() {
    let root = TestRoot::new();
    let arches = [
        ("amd64", "linux/amd64"),
        ("arm64", "linux/arm64"),
        ("armhf", "linux/arm/v7"),
        ("ppc64el", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("i386", "linux/386"),
    ];
    let children: Vec<_> = arches
        .iter()
        .map(|(deb, platform)| {
            let mut cmd = manifold_process(&root);
            cmd.args(["import", "--platform", platform])
                .arg(busybox_rootfs(deb, "tar.gz"))
                .arg(format!("conc/{deb}:1"));
            cmd.spawn().unwrap()
        })
        .collect();
    // A concurrent prune must not delete blobs an import is about to tag.
    let mut prune = manifold_process(&root);
    prune.args(["prune", "-f"]);
    let prune = prune.spawn().unwrap();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert!(prune.wait_with_output().unwrap().status.success());
    let ids = root
        .manifold()
        .args(["images", "-q"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(ids).unwrap().lines().count(),
        arches.len()
    );
    for (deb, _) in arches {
        root.manifold()
            .args(["history", &format!("conc/{deb}:1")])
            .assert()
            .success();
    }
    if require("oci-image-tool") {
        run(Process::new("oci-image-tool")
            .args(["validate", "--type", "image"])
            .arg(root.path().join("images")));
    }
}

#[test]
fn an_import_killed_halfway_leaves_a_valid_store() {
    use std::io::Write;
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/keep:1");
    let before = inspect(&root, "demo/keep:1");
    let tarball = std::fs::read(busybox_rootfs("arm64", "tar")).unwrap();
    let mut child = manifold_process(&root)
        .args(["import", "--platform", "linux/arm64", "-", "demo/killed:1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tarball[..tarball.len() / 2]).unwrap();
    stdin.flush().unwrap();
    // Give it time to take in what was sent, then kill it before the input ends.
    let staged = root.path().join("tmp-v1");
    for _ in 0..200 {
        if std::fs::read_dir(&staged)
            .map(|d| d.count() > 0)
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    // Nothing of the killed import is visible; what was there still is.
    root.manifold()
        .args(["inspect", "demo/killed:1"])
        .assert()
        .code(125);
    assert_eq!(inspect(&root, "demo/keep:1"), before);
    if require("oci-image-tool") {
        run(Process::new("oci-image-tool")
            .args(["validate", "--type", "image"])
            .arg(root.path().join("images")));
    }
    // prune clears the leftover temp file.
    root.manifold().args(["prune", "-f"]).assert().success();
    assert_eq!(std::fs::read_dir(&staged).unwrap().count(), 0);
}
