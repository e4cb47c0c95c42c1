//! Hostile archives, documents and layers (issue 9, items 6, 8, 9, 12 and 15): every input is
//! made here, by test code. `load` keeps its memory bounded whatever the archive's shape, walks
//! each document of a DAG once and refuses deep nesting, stages blobs without holding their
//! descriptors or the gc lock, writes all its tags at once (or none), checks compressed layers'
//! diff IDs, and names a full disk as such; ambiguous documents (CVE-2021-41190) are refused by
//! load, pull, copy and manifest create; `.wh..` / `.wh...` whiteouts are refused.

use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use predicates::prelude::*;
use serde_json::{Value, json};

use crate::harness::{TestRoot, busybox_rootfs, skip_unless, stderr_of, tree_hash};
use crate::local::import;
use crate::registry_harness::{Auth, TestRegistry};

// --- crafted input -----------------------------------------------------------------------------

fn sha(bytes: &[u8]) -> String {
    manifold::oci::Digest::sha256_of(bytes).to_string()
}

fn hex(bytes: &[u8]) -> String {
    sha(bytes)["sha256:".len()..].to_string()
}

fn header(name: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // Written by hand: `set_path` refuses names such as `.wh..`'s neighbours `..`.
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    h
}

/// A tar archive of `files` (names written as they are).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        out.extend_from_slice(header(name, data.len() as u64).as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// The files of a docker-archive holding one image: each layer is (blob, diff ID).
fn docker_files(layers: &[(Vec<u8>, String)], tags: &[String]) -> Vec<(String, Vec<u8>)> {
    let diff_ids: Vec<String> = layers.iter().map(|(_, d)| d.clone()).collect();
    let config = config_for(&diff_ids);
    let mut files = vec![(format!("{}.json", hex(&config)), config.clone())];
    let mut paths = Vec::new();
    for (blob, _) in layers {
        let path = format!("{}/layer.tar", hex(blob));
        paths.push(path.clone());
        files.push((path, blob.clone()));
    }
    let manifest = json!([{
        "Config": format!("{}.json", hex(&config)),
        "RepoTags": tags,
        "Layers": paths,
    }]);
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    files
}

fn docker_archive(layers: &[(Vec<u8>, String)], tags: &[String]) -> Vec<u8> {
    let files = docker_files(layers, tags);
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    tar_of(&refs)
}

/// An uncompressed one-file layer and its diff ID.
fn plain_layer(name: &str, data: &[u8]) -> (Vec<u8>, String) {
    let t = tar_of(&[(name, data)]);
    let d = sha(&t);
    (t, d)
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn index_doc(children: &[Value], note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": children,
        "annotations": {"note": note},
    }))
    .unwrap()
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha(bytes), "size": bytes.len()})
}

/// An OCI archive of `blobs` whose index.json lists `top`.
fn oci_archive(blobs: &[Vec<u8>], top: &[Value]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    for b in blobs {
        files.push((format!("blobs/sha256/{}", hex(b)), b.clone()));
    }
    let index = json!({"schemaVersion": 2, "manifests": top});
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    tar_of(&refs)
}

fn write(root: &TestRoot, name: &str, bytes: &[u8]) -> PathBuf {
    let p = root.scratch("files").join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// `root.redact`, plus the random names of staging directories and temp files.
fn redact(root: &TestRoot, s: &str) -> String {
    let s = root.redact(s);
    let s = regex::Regex::new(r"staging-[A-Za-z0-9]+")
        .unwrap()
        .replace_all(&s, "staging-[RANDOM]");
    regex::Regex::new(r"blob-[A-Za-z0-9]+")
        .unwrap()
        .replace_all(&s, "blob-[RANDOM]")
        .into_owned()
}

/// The tags index.json holds.
fn tag_count(root: &TestRoot) -> usize {
    let index: Value =
        serde_json::from_slice(&fs::read(root.path().join("images/index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"].is_string())
        .count()
}

// --- running manifold as a measured child ------------------------------------------------------

fn manifold_command(root: &TestRoot) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_manifold"));
    cmd.env_remove("MANIFOLD_ROOT")
        .env("DOCKER_CONFIG", root.docker_config())
        .env("NO_COLOR", "1")
        .arg("--root")
        .arg(root.path())
        .args(["--progress", "none"]);
    cmd
}

struct Finished {
    /// None when killed by a signal.
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    /// The child's peak resident set in KiB.
    peak_rss_kib: i64,
    cpu: Duration,
}

/// Wait for `child` (see `harness::wait_measured`), killing it after `limit`.
fn wait_measured(mut child: Child, stderr: &Path, limit: Duration) -> Finished {
    use std::os::unix::process::ExitStatusExt as _;
    let measured = crate::harness::wait_measured(&mut child, limit);
    Finished {
        code: measured.status.code(),
        signal: measured.status.signal(),
        stderr: fs::read_to_string(stderr).unwrap_or_default(),
        peak_rss_kib: measured.peak_rss_kib as i64,
        cpu: measured.cpu,
    }
}

/// `manifold load -i archive`, measured.
fn load_measured(root: &TestRoot, archive: &Path) -> Finished {
    let stderr = root.scratch("logs").join("load.stderr");
    let child = manifold_command(root)
        .args(["load", "-q", "-i"])
        .arg(archive)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let done = wait_measured(child, &stderr, Duration::from_secs(900));
    eprintln!(
        "load {}: exit {:?} signal {:?}, peak RSS {} MiB, CPU {:?}",
        archive.display(),
        done.code,
        done.signal,
        done.peak_rss_kib / 1024,
        done.cpu
    );
    done
}

// --- item 6: memory and the index DAG ------------------------------------------------------------

/// 1,500 entries of 4 MiB of zeros (6 GiB once unpacked, a few MB as gzip) beside a small valid
/// image: the entries used to be kept in memory until the end (6.2 GB).
#[test]
fn many_large_entries_load_in_bounded_memory() {
    let root = TestRoot::new();
    let path = root.scratch("files").join("entries.tar.gz");
    {
        let mut out = std::io::BufWriter::new(fs::File::create(&path).unwrap());
        // Concatenated gzip members (what `load` reads, like gzip itself): the 4 MiB body is
        // compressed once and written 1,500 times.
        let body = gzip(&vec![0u8; 4 << 20]);
        for i in 0..1500 {
            out.write_all(&gzip(header(&format!("junk/{i:05}"), 4 << 20).as_bytes()))
                .unwrap();
            out.write_all(&body).unwrap();
        }
        let image = docker_archive(&[plain_layer("hello", b"hi\n")], &["demo/bounded:1".into()]);
        out.write_all(&gzip(&image)).unwrap();
    }
    let done = load_measured(&root, &path);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.peak_rss_kib < 256 * 1024,
        "peak RSS {} MiB",
        done.peak_rss_kib / 1024
    );
    assert_eq!(tag_count(&root), 1);
    // Nothing of the staging is left behind.
    assert_eq!(fs::read_dir(root.path().join("tmp-v1")).unwrap().count(), 0);
}

/// index.json lists 100 indexes, each listing the same 100 of the next level, four levels deep:
/// 10^8 paths through 400 documents. Each document is checked once.
#[test]
fn a_wide_index_dag_loads_each_document_once() {
    let root = TestRoot::new();
    let mut blobs = Vec::new();
    let mut level: Vec<Value> = (0..100)
        .map(|i| {
            let doc = index_doc(&[], &format!("leaf {i}"));
            let d = descriptor(INDEX, &doc);
            blobs.push(doc);
            d
        })
        .collect();
    for l in 0..3 {
        level = (0..100)
            .map(|i| {
                let doc = index_doc(&level, &format!("{l}-{i}"));
                let d = descriptor(INDEX, &doc);
                blobs.push(doc);
                d
            })
            .collect();
    }
    let top: Vec<Value> = level
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut d = d.clone();
            d["annotations"] =
                json!({"org.opencontainers.image.ref.name": format!("demo/dag:{i}")});
            d
        })
        .collect();
    let path = write(&root, "wide.tar", &oci_archive(&blobs, &top));
    let done = load_measured(&root, &path);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(tag_count(&root), 100);
    assert!(done.peak_rss_kib < 256 * 1024);
    // Every document of the DAG is in the store, and gc's walk (the same one) keeps them.
    root.manifold().args(["prune", "-f"]).assert().success();
    for b in &blobs {
        assert!(
            root.path()
                .join("images/blobs/sha256")
                .join(hex(b))
                .is_file()
        );
    }
}

/// 15,000 indexes nested in each other used to overflow the stack (the process aborted).
#[test]
fn deeply_nested_indexes_are_refused_naming_the_limit() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/keep:1");
    let before = tree_hash(root.path());
    let mut blobs = vec![index_doc(&[], "bottom")];
    let mut d = descriptor(INDEX, &blobs[0]);
    for i in 0..15_000 {
        let doc = index_doc(&[d], &i.to_string());
        d = descriptor(INDEX, &doc);
        blobs.push(doc);
    }
    d["annotations"] = json!({"org.opencontainers.image.ref.name": "demo/deep:1"});
    let path = write(&root, "deep.tar", &oci_archive(&blobs, &[d]));
    let done = load_measured(&root, &path);
    assert_eq!(done.signal, None, "{}", done.stderr);
    assert_eq!(done.code, Some(125), "{}", done.stderr);
    insta::assert_snapshot!(redact(&root, &done.stderr), @r"
    error: cannot load [SCRATCH]/files/deep.tar
      caused by: indexes are nested more than 32 deep (at sha256:[DIGEST])
    ");
    assert_eq!(tree_hash(root.path()), before);
}

/// A GNU long name of 64 MiB (a few KB compressed) would be read whole by the tar reader.
#[test]
fn a_huge_tar_header_is_refused() {
    let root = TestRoot::new();
    let path = root.scratch("files").join("longname.tar.gz");
    {
        let mut gz = GzEncoder::new(fs::File::create(&path).unwrap(), Compression::best());
        let size = 64u64 << 20;
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(size);
        h.set_cksum();
        gz.write_all(h.as_bytes()).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&chunk).unwrap();
        }
        gz.write_all(header("x", 0).as_bytes()).unwrap();
        gz.write_all(&[0u8; 1024]).unwrap();
        gz.finish().unwrap();
    }
    let done = load_measured(&root, &path);
    assert_eq!(done.code, Some(125), "{}", done.stderr);
    assert!(done.peak_rss_kib < 256 * 1024);
    insta::assert_snapshot!(redact(&root, &done.stderr), @r"
    error: cannot load [SCRATCH]/files/longname.tar.gz
      caused by: a tar header (with its long names and PAX records) has 4194816 bytes, more than the 4 MiB allowed
    ");
}

/// Each entry costs memory to remember until the archive's metadata says which are needed:
/// past the cap the archive is refused. Symlinks make it cheap to reach (nothing is staged).
#[test]
fn an_archive_with_too_many_entries_is_refused_naming_the_limit() {
    let root = TestRoot::new();
    let path = root.scratch("files").join("links.tar.gz");
    {
        let mut gz = GzEncoder::new(fs::File::create(&path).unwrap(), Compression::fast());
        for i in 0..60_000 {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_path(format!("links/{i:090}")).unwrap();
            h.set_link_name(format!("{i:095}")).unwrap();
            h.set_size(0);
            h.set_cksum();
            gz.write_all(h.as_bytes()).unwrap();
        }
        gz.write_all(&[0u8; 1024]).unwrap();
        gz.finish().unwrap();
    }
    let done = load_measured(&root, &path);
    assert_eq!(done.code, Some(125), "{}", done.stderr);
    assert!(done.peak_rss_kib < 256 * 1024);
    insta::assert_snapshot!(redact(&root, &done.stderr), @r"
    error: cannot load [SCRATCH]/files/links.tar.gz
      caused by: the archive has too many entries: remembering their names would take more than 32 MiB
    ");
}

// --- item 8: whiteouts of `.` and `..` ---------------------------------------------------------

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    skip_unless!("root");
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/keep:1");
    // A snapshot of busybox exists before the hostile layers are tried.
    root.manifold()
        .args(["run", "--rm", "--network", "none", "demo/keep:1", "true"])
        .assert()
        .success();
    let snapshots = root.path().join("snapshots-v1");
    let before = tree_hash(&snapshots);
    for (i, entry) in [".wh...", ".wh..", "etc/.wh..", "etc/.wh..."]
        .into_iter()
        .enumerate()
    {
        let layer = tar_of(&[("etc/keep", b"x"), (entry, b"")]);
        let d = sha(&layer);
        let image = format!("demo/wh:{i}");
        let path = write(
            &root,
            "wh.tar",
            &docker_archive(&[(layer, d)], std::slice::from_ref(&image)),
        );
        root.manifold()
            .args(["load", "-q", "-i"])
            .arg(&path)
            .assert()
            .success();
        let out = root
            .manifold()
            .args(["run", "--rm", "--network", "none", &image, "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{entry}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("entry `{entry}`"))
                && err.contains("a whiteout must name an entry of its directory"),
            "{entry}: {err}"
        );
        let out = root.manifold().args(["verify", &image]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{entry}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("a whiteout must name an entry of its directory"),
            "{entry}: {}",
            stderr_of(&out)
        );
        assert_eq!(
            tree_hash(&snapshots),
            before,
            "{entry} changed the snapshots"
        );
    }
    // The image's neighbour still runs.
    root.manifold()
        .args(["run", "--rm", "--network", "none", "demo/keep:1", "true"])
        .assert()
        .success();
}

// --- item 9: ambiguous documents -----------------------------------------------------------------

/// An image's config and layer, and documents over them that are both a manifest and an index.
struct Ambiguous {
    config: Vec<u8>,
    layer: Vec<u8>,
    /// A Docker manifest list that also carries `config` and `layers`.
    list: Vec<u8>,
    /// A Docker schema2 manifest that also carries `manifests`.
    manifest: Vec<u8>,
}

fn ambiguous() -> Ambiguous {
    let (layer, diff_id) = plain_layer("hello", b"hi\n");
    let config = config_for(&[diff_id]);
    let c = descriptor("application/vnd.docker.container.image.v1+json", &config);
    let l = descriptor("application/vnd.docker.image.rootfs.diff.tar", &layer);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [],
        "config": c,
        "layers": [l],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": c,
        "layers": [l],
        "manifests": [],
    }))
    .unwrap();
    Ambiguous {
        config,
        layer,
        list,
        manifest,
    }
}

#[test]
fn load_refuses_ambiguous_documents() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/keep:1");
    let before = tree_hash(root.path());
    let a = ambiguous();
    let mut oci_index = serde_json::from_slice::<Value>(&a.list).unwrap();
    oci_index["mediaType"] = json!(INDEX);
    let oci_index = serde_json::to_vec(&oci_index).unwrap();
    for (name, doc, media_type) in [
        (
            "list",
            &a.list,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
        ("oci-index", &oci_index, INDEX),
        (
            "manifest",
            &a.manifest,
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let mut top = descriptor(media_type, doc);
        top["annotations"] = json!({"org.opencontainers.image.ref.name": "demo/ambiguous:1"});
        let blobs = [a.config.clone(), a.layer.clone(), doc.clone()];
        let path = write(&root, &format!("{name}.tar"), &oci_archive(&blobs, &[top]));
        let out = root
            .manifold()
            .args(["load", "-i"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{name}");
        let err = redact(&root, &stderr_of(&out));
        match name {
            "list" => insta::assert_snapshot!(err, @r"
            error: cannot load [SCRATCH]/files/list.tar
              caused by: ambiguous document: its media type is `application/vnd.docker.distribution.manifest.list.v2+json` but it has a `config`, which only an image manifest has
            "),
            "oci-index" => insta::assert_snapshot!(err, @r"
            error: cannot load [SCRATCH]/files/oci-index.tar
              caused by: ambiguous document: its media type is `application/vnd.oci.image.index.v1+json` but it has a `config`, which only an image manifest has
            "),
            _ => insta::assert_snapshot!(err, @r"
            error: cannot load [SCRATCH]/files/manifest.tar
              caused by: ambiguous document: its media type is `application/vnd.docker.distribution.manifest.v2+json` but it has `manifests`, which only an index has
            "),
        }
        assert_eq!(tree_hash(root.path()), before, "{name} changed the store");
    }
}

/// Push raw bytes to the real registry, which accepts both documents (distribution 2.8 checks
/// only the OCI media types); pull, copy and manifest create then refuse them.
#[test]
fn pull_copy_and_manifest_create_refuse_ambiguous_documents_from_a_registry() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let base = format!("http://{}/v2/ambiguous", registry.host());
    let http = reqwest::blocking::Client::new();
    let a = ambiguous();
    for blob in [&a.config, &a.layer] {
        let r = http.post(format!("{base}/blobs/uploads/")).send().unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("http://{}{location}", registry.host())
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = http
            .put(format!("{location}{sep}digest={}", sha(blob)))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
    }
    for (tag, doc, media_type) in [
        (
            "list",
            &a.list,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
        (
            "manifest",
            &a.manifest,
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let r = http
            .put(format!("{base}/manifests/{tag}"))
            .header("content-type", media_type)
            .body(doc.clone())
            .send()
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            201,
            "the registry refused {tag}: {}",
            r.text().unwrap()
        );
    }

    let root = TestRoot::new();
    let host = registry.host();
    for (tag, why) in [
        ("list", "has a `config`, which only an image manifest has"),
        ("manifest", "has `manifests`, which only an index has"),
    ] {
        let image = format!("{host}/ambiguous:{tag}");
        for args in [
            vec!["pull", "--all-platforms", image.as_str()],
            vec!["pull", image.as_str()],
            vec!["manifest", "create", "demo/list:1", image.as_str()],
        ] {
            root.manifold().args(&args).assert().code(125).stderr(
                predicate::str::contains("ambiguous document").and(predicate::str::contains(why)),
            );
        }
        root.manifold()
            .args(["copy", &image, &format!("{host}/copied:{tag}")])
            .assert()
            .code(125)
            .stderr(predicate::str::contains(why));
    }
    let out = root
        .manifold()
        .args(["pull", &format!("{host}/ambiguous:list")])
        .output()
        .unwrap();
    insta::assert_snapshot!(redact(&root, &stderr_of(&out)).replace(&host, "[REGISTRY]"), @"error: ambiguous document: its media type is `application/vnd.docker.distribution.manifest.list.v2+json` but it has a `config`, which only an image manifest has");
    assert_eq!(tag_count(&root), 0, "an ambiguous document was tagged");
    let (status, tags) = registry.get("/v2/copied/tags/list").unwrap();
    assert!(status == 404 || !tags.contains("list"), "{status} {tags}");
}

// --- item 12: descriptors, tags, the gc lock, diff IDs -----------------------------------------

/// 400 blobs under a soft limit of 256 open files: staged files used to stay open.
#[test]
fn many_blobs_load_under_a_low_open_file_limit() {
    let root = TestRoot::new();
    let layers: Vec<(Vec<u8>, String)> = (0..400)
        .map(|i| plain_layer(&format!("f{i}"), i.to_string().as_bytes()))
        .collect();
    let path = write(
        &root,
        "blobs.tar",
        &docker_archive(&layers, &["demo/blobs:1".into()]),
    );
    let stderr = root.scratch("logs").join("fd.stderr");
    let mut cmd = manifold_command(&root);
    cmd.args(["load", "-q", "-i"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec: lower the soft limit, leave
    // the hard one as it is.
    unsafe {
        cmd.pre_exec(|| {
            let mut l: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            l.rlim_cur = 256;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let done = wait_measured(cmd.spawn().unwrap(), &stderr, Duration::from_secs(600));
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let out = root
        .manifold()
        .args(["history", "demo/blobs:1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn many_tags(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("demo/many:{i}")).collect()
}

/// 8,000 tags were written one by one (each rewriting index.json: 113 s); now at once.
#[test]
fn eight_thousand_tags_are_written_at_once() {
    let root = TestRoot::new();
    let path = write(
        &root,
        "tags.tar",
        &docker_archive(&[plain_layer("hello", b"hi\n")], &many_tags(8000)),
    );
    let start = Instant::now();
    let done = load_measured(&root, &path);
    eprintln!(
        "8,000 tags loaded in {:?} (CPU {:?})",
        start.elapsed(),
        done.cpu
    );
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(tag_count(&root), 8000);
}

/// load promises all or nothing: killed while it commits, it leaves no partial set of tags.
#[test]
fn a_load_killed_while_it_commits_leaves_all_its_tags_or_none() {
    let root = TestRoot::new();
    root.manifold().arg("images").assert().success();
    let (layer, diff_id) = plain_layer("hello", b"killed\n");
    let layer_blob = root.path().join("images/blobs/sha256").join(hex(&layer));
    let path = write(
        &root,
        "tags.tar",
        &docker_archive(&[(layer, diff_id)], &many_tags(8000)),
    );
    let mut child = manifold_command(&root)
        .args(["load", "-q", "-i"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The layer becoming visible is the start of the commit: kill right then.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !layer_blob.exists() && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the load never committed");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().ok();
    child.wait().unwrap();
    let tags = tag_count(&root);
    assert!(
        tags == 0 || tags == 8000,
        "{tags} of 8,000 tags were written"
    );
    // The store is valid, and what the killed load left (its staging directory) goes at prune.
    root.manifold().args(["images", "-q"]).assert().success();
    root.manifold().args(["prune", "-f"]).assert().success();
    assert_eq!(fs::read_dir(root.path().join("tmp-v1")).unwrap().count(), 0);
}

/// Start `manifold ARGS` reading stdin, feed it `head`, and wait until it has a staging
/// directory (it has read that far and now waits on the pipe).
fn stalled(root: &TestRoot, args: &[&str], head: &[u8]) -> Child {
    let mut child = manifold_command(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(head).unwrap();
    child.stdin.as_mut().unwrap().flush().unwrap();
    let tmp = root.path().join("tmp-v1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !fs::read_dir(&tmp).is_ok_and(|mut d| {
        d.any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("staging-")
        })
    }) {
        assert!(child.try_wait().unwrap().is_none(), "{args:?} exited early");
        assert!(Instant::now() < deadline, "{args:?} never staged anything");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn finish(mut child: Child, rest: &[u8]) -> std::process::Output {
    child.stdin.as_mut().unwrap().write_all(rest).unwrap();
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// A load or import stalled on its input used to hold the gc lock: `rmi` and `prune` waited.
#[test]
fn rmi_and_prune_are_not_blocked_by_a_stalled_load_or_import() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/victim:1");
    import(&root, "arm64", "linux/arm64", "demo/victim:2");
    let archive = docker_archive(
        &[plain_layer("hello", b"stalled\n")],
        &["demo/loaded:1".into()],
    );
    let half = archive.len() / 2;
    let load = stalled(&root, &["load"], &archive[..half]);
    let rootfs = fs::read(busybox_rootfs("amd64", "tar.gz")).unwrap();
    let import_half = rootfs.len() / 2;
    let import = stalled(
        &root,
        &["import", "-", "demo/imported:1"],
        &rootfs[..import_half],
    );

    // Both hold a staging directory and wait on their pipes; rmi and prune (gc) go through.
    root.manifold()
        .args(["rmi", "demo/victim:1"])
        .assert()
        .success();
    root.manifold().args(["prune", "-f"]).assert().success();
    root.manifold()
        .args(["rmi", "demo/victim:2"])
        .assert()
        .success();

    // What they staged survived the collections: both finish.
    let out = finish(load, &archive[half..]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = finish(import, &rootfs[import_half..]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    root.manifold()
        .args(["history", "demo/loaded:1"])
        .assert()
        .success();
    root.manifold()
        .args(["history", "demo/imported:1"])
        .assert()
        .success();
}

/// A gzip layer whose config's diff ID is that of another content: `docker load` refuses it.
#[test]
fn a_compressed_layer_whose_diff_id_lies_is_refused() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/keep:1");
    let before = tree_hash(root.path());
    let real = tar_of(&[("hello", b"real\n")]);
    let claimed = sha(&tar_of(&[("hello", b"claimed\n")]));
    let path = write(
        &root,
        "liar.tar",
        &docker_archive(&[(gzip(&real), claimed)], &["demo/liar:1".into()]),
    );
    let out = root
        .manifold()
        .args(["load", "-i"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = redact(&root, &stderr_of(&out));
    let err = regex::Regex::new(r"`[0-9a-f]{64}/layer.tar`")
        .unwrap()
        .replace(&err, "`[DIGEST]/layer.tar`");
    insta::assert_snapshot!(err, @r"
    error: cannot load [SCRATCH]/files/liar.tar
      caused by: `[DIGEST]/layer.tar` in the archive is not valid: its uncompressed content hashes to sha256:[DIGEST], the config's diff ID is sha256:[DIGEST]
    ");
    assert_eq!(tree_hash(root.path()), before);

    // The same layer with its true diff ID loads.
    let path = write(
        &root,
        "honest.tar",
        &docker_archive(&[(gzip(&real), sha(&real))], &["demo/honest:1".into()]),
    );
    root.manifold()
        .args(["load", "-i"])
        .arg(&path)
        .assert()
        .success();
}

// --- item 15: a full disk ------------------------------------------------------------------------

/// A tmpfs mounted at `path`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", stderr_of(&out));
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Bytes that do not compress: a tmpfs holds what it is given.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_full_disk_is_named_as_such() {
    skip_unless!("root");
    let root = TestRoot::new();
    let _tmpfs = Tmpfs::mount(root.path(), "8m");
    // A store with its lock files, as any command that writes leaves it.
    root.manifold().args(["prune", "-f"]).assert().success();
    let before = tree_hash(root.path());
    let (layer, diff_id) = plain_layer("big", &noise(16 << 20));
    let path = write(
        &root,
        "big.tar",
        &docker_archive(&[(layer.clone(), diff_id)], &["demo/big:1".into()]),
    );
    let out = root
        .manifold()
        .args(["load", "-i"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    insta::assert_snapshot!(redact(&root, &stderr_of(&out)), @"
    error: cannot load [SCRATCH]/files/big.tar
      caused by: no space left on device in `[ROOT]/tmp-v1/staging-[RANDOM]` (the file system mounted on `[ROOT]` is full)
      caused by: No space left on device (os error 28)
    hint: free space on that file system (`manifold prune` removes unused images, snapshots and temp files), or give `--root` a directory on a larger one
    ");
    assert_eq!(tree_hash(root.path()), before);

    // import: the same.
    let rootfs = write(&root, "rootfs.tar", &layer);
    let out = root
        .manifold()
        .arg("import")
        .arg(&rootfs)
        .arg("demo/big:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(
        err.contains("no space left on device") && !err.contains("truncated or corrupt"),
        "{err}"
    );
    assert_eq!(tree_hash(root.path()), before);
    // Room enough once the tmpfs is bigger: the same archive loads.
    let out = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    root.manifold()
        .args(["load", "-i"])
        .arg(&path)
        .assert()
        .success();
}
