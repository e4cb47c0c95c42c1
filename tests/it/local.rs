//! The local image commands: import, images, tag, rmi, prune, inspect, history, completions,
//! and the CLI's habits (help, errors, exit codes).

use std::fs;
use std::io::Read as _;
use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

use crate::harness::{TestRoot, busybox_rootfs};
use manifold::oci::{Descriptor, Index, Parsed, media_type};
use manifold::reference::Reference;
use manifold::store::Store;

/// Import busybox for `debarch` as `reference` with `platform`; returns the printed digest.
pub fn import(root: &TestRoot, debarch: &str, platform: &str, reference: &str) -> String {
    let out = root
        .manifold()
        .args(["import", "--platform", platform, "-c", r#"CMD ["sh"]"#])
        .arg(busybox_rootfs(debarch, "tar.gz"))
        .arg(reference)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).unwrap().trim().to_string()
}

/// A root with `test/busybox:latest` for linux/amd64 and linux/arm64.
pub fn root_with_busybox() -> TestRoot {
    let root = TestRoot::new();
    multiarch(
        &root,
        "test/busybox:latest",
        &[("amd64", "linux/amd64"), ("arm64", "linux/arm64")],
        &[],
    );
    root
}

/// A context directory with `files` (path, content).
pub fn context(root: &TestRoot, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.scratch(name);
    for (p, content) in files {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

/// A multi-platform image `name` over busybox imports for each (debarch, platform); returns the
/// index digest. `absent` platforms are listed in the index but their blobs are removed
/// (a sparse index).
pub fn multiarch(root: &TestRoot, name: &str, arches: &[(&str, &str)], absent: &[&str]) -> String {
    let mut children = Vec::new();
    for (debarch, platform) in arches {
        let tmp = format!("tmp/{debarch}:latest");
        import(root, debarch, platform, &tmp);
        let store = Store::open(root.path()).unwrap();
        let mut d: Descriptor = store.resolve(&Reference::parse(&tmp).unwrap()).unwrap();
        d.annotations = None;
        d.platform = Some(platform.parse().unwrap());
        children.push(d);
    }
    let store = Store::open(root.path()).unwrap();
    let index = Parsed::from_value(Index::new_oci(children.clone()));
    let desc = index.descriptor(media_type::OCI_INDEX);
    {
        let txn = store.begin().unwrap();
        txn.put_bytes(&index.bytes).unwrap();
        txn.tag(&Reference::parse(name).unwrap(), &desc).unwrap();
    }
    for (debarch, _) in arches {
        store
            .untag(&Reference::parse(&format!("tmp/{debarch}:latest")).unwrap())
            .unwrap();
    }
    store.gc().unwrap();
    for (child, (_, platform)) in children.iter().zip(arches) {
        if absent.contains(platform) {
            std::fs::remove_file(store.blob_path(&child.digest)).unwrap();
        }
    }
    desc.digest.to_string()
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn every_command_has_help() {
    let root = TestRoot::new();
    for cmd in [
        "images",
        "tag",
        "rmi",
        "prune",
        "inspect",
        "history",
        "save",
        "load",
        "import",
        "completions",
    ] {
        root.manifold()
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: manifold"));
    }
}

#[test]
fn completions_for_each_shell() {
    let root = TestRoot::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef manifold"),
        ("fish", "complete -c manifold"),
    ] {
        root.manifold()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains(marker));
    }
}

#[test]
fn import_records_platform_and_changes() {
    let root = TestRoot::new();
    let out = root
        .manifold()
        .args([
            "import",
            "--platform",
            "linux/arm/v7",
            "-c",
            r#"ENTRYPOINT ["/bin/sh", "-c"]"#,
            "-c",
            "CMD echo hi",
            "-c",
            r#"ENV A=1 B="two words""#,
            "-c",
            "WORKDIR /srv",
            "-c",
            "USER nobody",
            "-c",
            "LABEL org.example=yes",
            "-c",
            "EXPOSE 8080",
            "-m",
            "first",
        ])
        .arg(busybox_rootfs("armhf", "tar.zst"))
        .arg("demo/busybox:armv7")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let digest = String::from_utf8(out).unwrap();
    assert!(digest.trim().starts_with("sha256:"), "{digest}");

    let v: Value = serde_json::from_str(&stdout(
        root.manifold().args(["inspect", "demo/busybox:armv7"]),
    ))
    .unwrap();
    let img = &v[0];
    assert_eq!(img["Id"], digest.trim());
    assert_eq!(img["Architecture"], "arm");
    assert_eq!(img["Variant"], "v7");
    assert_eq!(img["Platform"], "linux/arm/v7");
    let c = &img["Config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(c["Env"], serde_json::json!(["A=1", "B=two words"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Labels"]["org.example"], "yes");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some());
    assert_eq!(
        img["Manifest"]["layers"][0]["mediaType"],
        media_type::OCI_LAYER_ZSTD
    );

    let history = stdout(
        root.manifold()
            .args(["history", "--no-trunc", "demo/busybox:armv7"]),
    );
    assert!(history.contains("first"), "{history}");
    assert!(history.starts_with("IMAGE"), "{history}");
}

#[test]
fn import_of_each_compression_gives_the_same_diff_id() {
    let root = TestRoot::new();
    let mut diff_ids = Vec::new();
    for (i, ext) in ["tar", "tar.gz", "tar.zst"].iter().enumerate() {
        let name = format!("c/x:{i}");
        root.manifold()
            .args(["import", "--platform", "linux/amd64"])
            .arg(busybox_rootfs("amd64", ext))
            .arg(&name)
            .assert()
            .success();
        let v: Value =
            serde_json::from_str(&stdout(root.manifold().args(["inspect", &name]))).unwrap();
        diff_ids.push(v[0]["RootFS"]["diff_ids"][0].clone());
    }
    assert_eq!(diff_ids[0], diff_ids[1]);
    assert_eq!(diff_ids[1], diff_ids[2]);
}

#[test]
fn import_from_stdin_without_a_name_is_dangling() {
    let root = TestRoot::new();
    let bytes = std::fs::read(busybox_rootfs("arm64", "tar")).unwrap();
    let digest = stdout(
        root.manifold()
            .args(["import", "--platform", "linux/arm64", "-"])
            .write_stdin(bytes),
    );
    let listing =
        stdout(
            root.manifold()
                .args(["images", "--filter", "dangling=true", "--no-trunc"]),
        );
    assert!(listing.contains(digest.trim()), "{listing}");
    assert!(listing.contains("<none>"), "{listing}");
    let none = stdout(
        root.manifold()
            .args(["images", "--filter", "dangling=false", "-q"]),
    );
    assert_eq!(none.trim(), "");
}

#[test]
fn images_lists_like_docker_with_platforms() {
    let root = TestRoot::new();
    import(&root, "arm64", "linux/arm64", "demo/busybox:arm64");
    import(
        &root,
        "s390x",
        "linux/s390x",
        "registry.example.com:5000/team/busybox:s390x",
    );
    let table = stdout(root.manifold().args(["images"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in [
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "PLATFORMS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        table.contains("demo/busybox") && table.contains("linux/arm64/v8"),
        "{table}"
    );
    assert!(
        table.contains("registry.example.com:5000/team/busybox") && table.contains("linux/s390x"),
        "{table}"
    );

    let ids = stdout(root.manifold().args(["images", "-q"]));
    assert_eq!(ids.lines().count(), 2);
    assert!(ids.lines().all(|l| l.len() == 12), "{ids}");
    let full = stdout(root.manifold().args(["images", "-q", "--no-trunc"]));
    assert!(
        full.lines()
            .all(|l| l.starts_with("sha256:") && l.len() == 71),
        "{full}"
    );

    let digests = stdout(root.manifold().args(["images", "--digests"]));
    assert!(digests.lines().next().unwrap().contains("DIGEST"));

    let filtered = stdout(
        root.manifold()
            .args(["images", "--filter", "reference=demo/*"]),
    );
    assert!(
        filtered.contains("demo/busybox") && !filtered.contains("team/busybox"),
        "{filtered}"
    );
    let by_tag = stdout(root.manifold().args([
        "images",
        "--filter",
        "reference=registry.example.com:5000/*/*:s390x",
    ]));
    assert!(
        !by_tag.contains("demo/busybox") && by_tag.contains("team/busybox"),
        "{by_tag}"
    );

    let json = stdout(root.manifold().args(["images", "--format", "json"]));
    let rows: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    let arm = rows.iter().find(|r| r["Tag"] == "arm64").unwrap();
    assert_eq!(arm["Repository"], "demo/busybox");
    assert_eq!(arm["Platforms"], serde_json::json!(["linux/arm64/v8"]));
    assert!(arm["SizeBytes"].as_u64().unwrap() > 100_000);

    root.manifold()
        .args(["images", "--filter", "colour=blue"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("unknown filter `colour`"));
}

#[test]
fn multi_platform_images_sparse_listing_and_platform_selection() {
    let root = TestRoot::new();
    let index = multiarch(
        &root,
        "demo/multi:1",
        &[
            ("amd64", "linux/amd64"),
            ("arm64", "linux/arm64"),
            ("ppc64el", "linux/ppc64le"),
        ],
        &["linux/ppc64le"],
    );
    let table = stdout(root.manifold().args(["images"]));
    assert!(
        table.contains("linux/amd64,linux/arm64/v8 (2/3 present)"),
        "{table}"
    );
    let all = stdout(root.manifold().args(["images", "-a"]));
    assert_eq!(all.lines().count(), 1 + 1 + 2, "{all}");

    let v: Value =
        serde_json::from_str(&stdout(root.manifold().args(["inspect", "demo/multi:1"]))).unwrap();
    assert_eq!(v[0]["Id"], index);
    assert_eq!(v[0]["Sparse"], true);
    assert_eq!(v[0]["Platforms"].as_array().unwrap().len(), 3);

    let arm: Value = serde_json::from_str(&stdout(root.manifold().args([
        "inspect",
        "--platform",
        "linux/arm64",
        "demo/multi:1",
    ])))
    .unwrap();
    assert_eq!(arm[0]["Architecture"], "arm64");
    assert_eq!(arm[0]["Parent"], index);

    // --raw prints the stored bytes exactly.
    let raw = root
        .manifold()
        .args(["inspect", "--raw", "demo/multi:1"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let store = Store::open(root.path()).unwrap();
    let digest = manifold::oci::Digest::parse(&index).unwrap();
    assert_eq!(raw, store.read_blob(&digest).unwrap());

    root.manifold()
        .args(["inspect", "--platform", "linux/ppc64le", "demo/multi:1"])
        .assert()
        .code(125)
        .stderr(
            predicate::str::contains("linux/amd64").and(predicate::str::contains("linux/arm64")),
        );
    root.manifold()
        .args(["history", "--platform", "linux/s390x", "demo/multi:1"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "no image for platform `linux/s390x`",
        ));
    let h = stdout(
        root.manifold()
            .args(["history", "--platform", "linux/arm64", "demo/multi:1"]),
    );
    assert_eq!(h.lines().count(), 2, "{h}");
}

#[test]
fn tag_moves_and_rmi_untags_then_deletes() {
    let root = TestRoot::new();
    let a = import(&root, "amd64", "linux/amd64", "demo/a:1");
    root.manifold()
        .args(["tag", "demo/a:1", "demo/a:2"])
        .assert()
        .success();
    root.manifold()
        .args(["tag", &a[7..19], "other/name"])
        .assert()
        .success();
    let ids = stdout(root.manifold().args(["images", "-q"]));
    assert_eq!(ids.lines().count(), 1, "one image under three names: {ids}");
    let table = stdout(root.manifold().args(["images"]));
    assert_eq!(table.lines().count(), 4, "{table}");

    // By ID with several tags: refused without -f.
    root.manifold()
        .args(["rmi", &a[7..19]])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("used by 3 tags"));
    root.manifold()
        .args(["rmi", "demo/a:1"])
        .assert()
        .success()
        .stdout("Untagged: demo/a:1\n");
    root.manifold()
        .args(["rmi", "-f", &a[7..19]])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("Deleted: {a}")));
    assert_eq!(stdout(root.manifold().args(["images", "-q"])), "");
    // Blobs went with the last tag.
    let blobs = std::fs::read_dir(root.path().join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);

    root.manifold()
        .args(["rmi", "demo/a:404"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no such image: `demo/a:404`"))
        .stderr(predicate::str::contains("hint:"));
    root.manifold()
        .args([
            "tag",
            "demo/none",
            "x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ])
        .assert()
        .code(125);
}

#[test]
fn retagging_leaves_a_dangling_image_that_prune_removes() {
    let root = TestRoot::new();
    let old = import(&root, "amd64", "linux/amd64", "demo/p:latest");
    let new = import(&root, "i386", "linux/386", "demo/p:latest");
    assert_ne!(old, new);
    let dangling =
        stdout(
            root.manifold()
                .args(["images", "-q", "--no-trunc", "--filter", "dangling=true"]),
        );
    assert_eq!(dangling.trim(), old);

    // Without -f and with no confirmation on stdin, nothing happens.
    root.manifold()
        .args(["prune"])
        .write_stdin("n\n")
        .assert()
        .success();
    assert_eq!(
        stdout(root.manifold().args(["images", "-q"]))
            .lines()
            .count(),
        2
    );

    let out = stdout(root.manifold().args(["prune", "-f"]));
    assert!(out.contains(&format!("deleted: {old}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let left = stdout(root.manifold().args(["images", "-q", "--no-trunc"]));
    assert_eq!(left.trim(), new);

    let out = stdout(root.manifold().args(["prune", "-a"]).write_stdin("y\n"));
    assert!(out.contains("untagged: demo/p:latest"), "{out}");
    assert_eq!(stdout(root.manifold().args(["images", "-q"])), "");
    assert_eq!(
        std::fs::read_dir(root.path().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn errors_say_what_is_wrong_and_exit_125() {
    let root = TestRoot::new();
    root.manifold()
        .args(["inspect", "Upper/Case"])
        .assert()
        .code(125)
        .stderr(predicate::str::starts_with("error: "))
        .stderr(predicate::str::contains("hint: references look like"));
    root.manifold()
        .args(["import", "--platform", "linux/", "/dev/null"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("linux/"));
    root.manifold()
        .args(["import", "/nonexistent/rootfs.tar"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "cannot open /nonexistent/rootfs.tar",
        ));
    root.manifold()
        .args(["import", "-c", "RUN make", "/dev/null"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "`RUN` cannot be applied as a change",
        ));
}

/// The entries of every layer of the stored `reference` for `arch` (the platform's manifest of
/// an index, or the manifest itself), read through skopeo's view of the store: each entry's path
/// and, for a regular file, its content as text.
pub fn layer_entries(
    root: &TestRoot,
    reference: &str,
    arch: &str,
) -> Vec<Vec<(String, Option<String>)>> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}/images:{reference}", root.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: Value = serde_json::from_slice(&out.stdout).unwrap();
    let blobs = root.path().join("images/blobs/sha256");
    let manifest: Value = if raw.get("manifests").is_some() {
        let d = raw["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_slice(&fs::read(blobs.join(&d[7..])).unwrap()).unwrap()
    } else {
        raw
    };
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().unwrap();
            let f = fs::File::open(blobs.join(&d[7..])).unwrap();
            let (r, _) = manifold::archive::decompressed(f).unwrap();
            tar::Archive::new(r)
                .entries()
                .unwrap()
                .map(|e| {
                    let mut e = e.unwrap();
                    let path = e.path().unwrap().to_string_lossy().into_owned();
                    let content = e.header().entry_type().is_file().then(|| {
                        let mut content = String::new();
                        let _ = e.read_to_string(&mut content);
                        content
                    });
                    (path, content)
                })
                .collect()
        })
        .collect()
}
