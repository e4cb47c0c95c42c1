//! `build --cache-to/--cache-from` against the real registry (and OCI layout directories): two
//! runners building different platforms into one ref at once, a fresh runner rebuilding from it
//! without running a step or moving a layer byte, a changed COPY source, caches that cannot be
//! read, max-size, records of another format.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{TestRoot, skip_unless};
use crate::registry_harness::{Auth, Fault, FaultProxy, Rule, TestRegistry, free_port, import};

const EPOCH: &str = "1700000000";

/// A registry holding `base:1`, the busybox fixtures for linux/amd64 and linux/arm64.
fn registry_with_base() -> TestRegistry {
    let registry = TestRegistry::start(Auth::Anonymous);
    let seed = TestRoot::new();
    let host = registry.host();
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let r = format!("{host}/base:{arch}");
        import(&seed, arch, &r);
        ok(&seed, &["push", &r]);
        children.push(r);
    }
    let list = format!("{host}/base:1");
    let mut args = vec!["manifest", "create", list.as_str()];
    args.extend(children.iter().map(String::as_str));
    ok(&seed, &args);
    ok(&seed, &["manifest", "push", &list]);
    registry
}

fn ok(root: &TestRoot, args: &[&str]) -> String {
    let out = root.manifold().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "manifold {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The project: two RUN steps that say they ran, around a COPY of `b.txt`.
fn project(root: &TestRoot, name: &str, registry: &str, b: &str) -> PathBuf {
    let dir = root.scratch(name);
    fs::write(dir.join("a.txt"), "a\n").unwrap();
    fs::write(dir.join("b.txt"), b).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {registry}/base:1\n\
             COPY a.txt /a.txt\n\
             RUN echo ran-first-$(uname -m) > /first.txt && R=RAN && echo $R-FIRST\n\
             ENV GREETING=hello\n\
             COPY b.txt /b.txt\n\
             RUN cat /a.txt /b.txt > /both.txt && R=RAN && echo $R-SECOND\n"
        ),
    )
    .unwrap();
    dir
}

fn build(root: &TestRoot, args: &[&str], ctx: &Path) -> std::process::Command {
    build_with(root, &[], args, ctx)
}

/// [`build`] with global flags (`-v`) before the command.
fn build_with(
    root: &TestRoot,
    global: &[&str],
    args: &[&str],
    ctx: &Path,
) -> std::process::Command {
    let mut cmd = root.manifold_std();
    cmd.args(global)
        .arg("build")
        .args(args)
        .arg(ctx)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run_ok(mut cmd: std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

/// The manifest digest of each platform in a `--metadata-file`.
fn platform_digests(meta: &Path) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(&fs::read(meta).unwrap()).unwrap();
    v["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap().to_string(),
                p["manifest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The cache's config, read as a peer reads it.
fn skopeo_cache_config(registry: &TestRegistry, r: &str) -> Value {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw", "--config"])
        .arg(format!("docker://{}/{r}", registry.host()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn record_platforms(config: &Value) -> Vec<String> {
    config["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["platform"].as_str().unwrap().to_string())
        .collect()
}

/// The layer digests of every image under `root` in a store.
fn layers_of(store_root: &Path, root: &str) -> Vec<String> {
    use manifold::oci::Descriptor;
    use manifold::reference::Reference;
    use manifold::store::Store;
    let store = Store::open(store_root).unwrap();
    let desc: Descriptor = store.resolve(&Reference::parse(root).unwrap()).unwrap();
    let mut manifests = Vec::new();
    if desc.is_index() {
        manifests.extend(store.read_index(&desc.digest).unwrap().value.manifests);
    } else {
        manifests.push(desc);
    }
    manifests
        .iter()
        .flat_map(|m| store.read_manifest(&m.digest).unwrap().value.layers)
        .map(|l| l.digest.to_string())
        .collect()
}

#[test]
fn two_runners_one_ref_then_a_fresh_runner_runs_nothing_and_moves_no_layer() {
    skip_unless!("root", "runc", "skopeo", "docker-registry");
    // linux/arm64's RUN goes through QEMU: hold binfmt_misc against the binfmt tests.
    let _binfmt = crate::binfmt::BinfmtLease::shared();
    let registry = registry_with_base();
    let host = registry.host();
    let cache = format!("type=registry,ref={host}/cache:main");
    let (a, b, c) = (TestRoot::new(), TestRoot::new(), TestRoot::new());
    let ctx = project(&a, "ctx", &host, "b\n");
    let (meta_a, meta_b, meta_c) = (
        a.scratch("m").join("a.json"),
        b.scratch("m").join("b.json"),
        c.scratch("m").join("c.json"),
    );

    // Two runners, one platform each, exporting to the same ref at the same time.
    let mut first = build(
        &a,
        &["--platform", "linux/amd64", "--cache-to", &cache],
        &ctx,
    );
    first.arg("--metadata-file").arg(&meta_a);
    let mut second = build(
        &b,
        &["--platform", "linux/arm64", "--cache-to", &cache],
        &ctx,
    );
    second.arg("--metadata-file").arg(&meta_b);
    let started = (first.spawn().unwrap(), second.spawn().unwrap());
    let (out_a, out_b) = (
        started.0.wait_with_output().unwrap(),
        started.1.wait_with_output().unwrap(),
    );
    assert!(out_a.status.success(), "{}", stderr(&out_a));
    assert!(out_b.status.success(), "{}", stderr(&out_b));
    for out in [&out_a, &out_b] {
        let log = stderr(out);
        assert!(
            log.contains("RAN-FIRST") && log.contains("RAN-SECOND"),
            "{log}"
        );
        assert!(log.contains("exported build cache to"), "{log}");
    }

    // Both platforms' records are in the ref, as skopeo reads it.
    let config = skopeo_cache_config(&registry, "cache:main");
    let platforms = record_platforms(&config);
    for p in ["linux/amd64", "linux/arm64/v8"] {
        assert_eq!(
            platforms.iter().filter(|q| *q == p).count(),
            4,
            "the four layer steps of {p} (with SOURCE_DATE_EPOCH, the ENV needs no record): {config:#}"
        );
    }

    // A fresh runner, through a proxy that sees every request, rebuilds both platforms and
    // pushes: no step runs, the digests are the two runners', and no layer moves.
    let proxy = FaultProxy::start(registry.port());
    let via = proxy.host();
    let ctx_c = project(&c, "ctx", &via, "b\n");
    let mut third = build(
        &c,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--cache-from",
            &format!("type=registry,ref={via}/cache:main"),
            "-t",
            &format!("{via}/app:fresh"),
            "--push",
        ],
        &ctx_c,
    );
    third.arg("--metadata-file").arg(&meta_c);
    let log = run_ok(third);
    assert!(
        !log.contains("RAN-FIRST") && !log.contains("RAN-SECOND"),
        "a RUN ran again: {log}"
    );
    assert!(log.contains("(8 of 8 steps cached)"), "{log}");
    let mut expected = platform_digests(&meta_a);
    expected.extend(platform_digests(&meta_b));
    assert_eq!(platform_digests(&meta_c), expected);

    let layers = layers_of(c.path(), &format!("{via}/app:fresh"));
    assert_eq!(
        layers.len(),
        2 * 5,
        "busybox + four layer steps, per platform"
    );
    let seen = proxy.seen();
    for l in &layers {
        assert!(
            !seen
                .iter()
                .any(|s| s.method == "GET" && s.target.contains(&format!("/blobs/{l}"))),
            "layer {l} was downloaded"
        );
        assert!(
            seen.iter().any(|s| s.method == "POST"
                && s.target.replace("%3A", ":").contains(&format!("mount={l}"))),
            "layer {l} was not mounted: {seen:#?}"
        );
    }
    let uploaded: usize = seen
        .iter()
        .filter(|s| matches!(s.method.as_str(), "PUT" | "PATCH") && s.target.contains("/blobs/"))
        .map(|s| s.length)
        .sum();
    // Two image configs (and nothing else) go up: far less than one busybox layer.
    assert!(uploaded < 20_000, "{uploaded} bytes uploaded: {seen:#?}");
    // Nothing but the two configs and manifests, and the index, is in the fresh store.
    let blobs = fs::read_dir(c.path().join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 5);
}

#[test]
fn a_changed_copy_source_reruns_only_the_steps_after_it() {
    skip_unless!("root", "runc", "docker-registry");
    let registry = registry_with_base();
    let host = registry.host();
    let cache = format!("type=registry,ref={host}/cache:main");
    let (a, d) = (TestRoot::new(), TestRoot::new());
    run_ok(build(
        &a,
        &["--platform", "linux/amd64", "--cache-to", &cache],
        &project(&a, "ctx", &host, "b\n"),
    ));
    let ctx = project(&d, "ctx", &host, "changed\n");
    let log = run_ok(build(
        &d,
        &[
            "--platform",
            "linux/amd64",
            "--cache-from",
            &cache,
            "-t",
            "example.test/changed:1",
        ],
        &ctx,
    ));
    assert!(!log.contains("RAN-FIRST"), "{log}");
    assert!(log.contains("RAN-SECOND"), "{log}");
    assert!(log.contains("(2 of 4 steps cached)"), "{log}");
    // The image is whole in the store: the second RUN read the layers below it.
    let out = d
        .manifold()
        .args([
            "run",
            "--rm",
            "example.test/changed:1",
            "cat",
            "/both.txt",
            "/first.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a\nchanged\nran-first-x86_64\n",
        "{}",
        stderr(&out)
    );
}

/// A project that needs no registry: busybox copied in from the fixtures.
fn scratch_project(root: &TestRoot, name: &str, extra: &str) -> PathBuf {
    let dir = root.scratch(name);
    fs::copy(
        crate::harness::busybox_tree("amd64").join("bin/busybox"),
        dir.join("busybox"),
    )
    .unwrap();
    fs::write(dir.join("extra.txt"), extra).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"R=RAN; /bin/busybox echo $R-STEP > /ran.txt; /bin/busybox echo $R-STEP\"]\n\
         COPY extra.txt /extra.txt\n",
    )
    .unwrap();
    dir
}

#[test]
fn local_cache_round_trip() {
    skip_unless!("root", "runc", "skopeo");
    let (a, b) = (TestRoot::new(), TestRoot::new());
    let dir = a.scratch("cache");
    let to = format!("type=local,dest={}", dir.display());
    let from = format!("type=local,src={}", dir.display());
    let first = run_ok(build(
        &a,
        &["--cache-to", &to, "-t", "example.test/local:1"],
        &scratch_project(&a, "ctx", "x"),
    ));
    assert!(first.contains("RAN-STEP"), "{first}");
    // A peer reads the layout.
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--config"])
        .arg(format!("oci:{}:latest", dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["format"], 1);
    assert_eq!(config["records"].as_array().unwrap().len(), 3);
    let second = run_ok(build(
        &b,
        &["--cache-from", &from, "-t", "example.test/local:1"],
        &scratch_project(&b, "ctx", "x"),
    ));
    assert!(!second.contains("RAN-STEP"), "{second}");
    assert!(second.contains("(3 of 3 steps cached)"), "{second}");
    // The image is whole (its layers came from the directory).
    let out = b
        .manifold()
        .args([
            "run",
            "--rm",
            "example.test/local:1",
            "/bin/busybox",
            "cat",
            "/ran.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "RAN-STEP\n",
        "{}",
        stderr(&out)
    );
    // Exporting again merges: the layout keeps one manifest, and no blob nothing names.
    run_ok(build(
        &b,
        &["--cache-from", &from, "--cache-to", &to],
        &scratch_project(&b, "ctx2", "y"),
    ));
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let blobs = fs::read_dir(dir.join("blobs/sha256")).unwrap().count();
    // manifest, config, busybox, the RUN's layer, two extra.txt layers
    assert_eq!(blobs, 6);
}

#[test]
fn caches_that_cannot_be_read_only_warn() {
    skip_unless!("root", "runc", "docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let root = TestRoot::new();
    // Garbage: an ordinary image where a cache is expected.
    let image = format!("{host}/garbage:1");
    import(&root, "amd64", &image);
    ok(&root, &["push", &image]);
    let closed = format!("127.0.0.1:{}", free_port());
    let ctx = scratch_project(&root, "ctx", "x");
    let out = build(
        &root,
        &[
            "--cache-from",
            &format!("type=registry,ref={host}/missing:1"),
            "--cache-from",
            &format!("{closed}/cache:1"),
            "--cache-from",
            &format!("type=registry,ref={image}"),
            "--cache-from",
            &format!("type=local,src={}", root.scratch("empty").display()),
        ],
        &ctx,
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(|l| root.redact(&l.replace(&host, "[REGISTRY]").replace(&closed, "[CLOSED]")))
        .collect();
    insta::assert_snapshot!(warnings.join("\n"), @"
    warning: cannot read the build cache `[REGISTRY]/missing:1`: `[REGISTRY]/missing:1` not found; building without it
    warning: cannot read the build cache `[CLOSED]/cache:1`: cannot reach `[CLOSED]`: connection refused: error sending request for url (http://[CLOSED]/v2/): client error (Connect): tcp connect error: Connection refused (os error 111); building without it
    warning: build cache `[REGISTRY]/garbage:1` ignored: its config is `application/vnd.oci.image.config.v1+json`, not a manifold build cache
    warning: cannot read the build cache `[SCRATCH]/empty:latest`: `[SCRATCH]/empty:latest` not found; building without it
    ");
}

#[test]
fn a_cache_that_cannot_be_written_fails_the_build_unless_told_otherwise() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    let closed = format!("127.0.0.1:{}", free_port());
    let ctx = scratch_project(&root, "ctx", "x");
    let to = format!("type=registry,ref={closed}/cache:1");
    let out = build(&root, &["--cache-to", &to], &ctx).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let text = root.redact(&stderr(&out).replace(&closed, "[CLOSED]"));
    let error: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .collect();
    insta::assert_snapshot!(error.join("\n"), @"
    error: cannot export the build cache to `[CLOSED]/cache:1`
      caused by: cannot reach `[CLOSED]`: connection refused
      caused by: error sending request for url (http://[CLOSED]/v2/)
      caused by: client error (Connect)
      caused by: tcp connect error
      caused by: Connection refused (os error 111)
    hint: add `,ignore-error=true` to `--cache-to` to let the build succeed when its cache cannot be written
    ");
    let out = build(
        &root,
        &["--cache-to", &format!("{to},ignore-error=true")],
        &ctx,
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = root.redact(&stderr(&out).replace(&closed, "[CLOSED]"));
    let warning: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    insta::assert_snapshot!(warning.join("\n"), @"warning: cannot export the build cache to `[CLOSED]/cache:1`: cannot reach `[CLOSED]`: connection refused: error sending request for url (http://[CLOSED]/v2/): client error (Connect): tcp connect error: Connection refused (os error 111) (ignore-error=true)");
}

#[test]
fn bad_cache_specs_are_refused_naming_the_key() {
    let root = TestRoot::new();
    let ctx = root.scratch("ctx");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    for spec in [
        ["--cache-to", "type=registry,ref=r.example/a:b,mood=max"],
        ["--cache-from", "type=gha"],
        ["--cache-to", "type=local"],
    ] {
        let out = root
            .manifold()
            .arg("build")
            .args(spec)
            .arg(&ctx)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125));
        insta::assert_snapshot!(root.redact(&stderr(&out)));
    }
    // Nothing was written to the store.
    assert!(!root.path().join("cache-v1").exists());
}

#[test]
fn max_size_keeps_the_newest_records() {
    skip_unless!("root", "runc", "docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let root = TestRoot::new();
    let big: String = (0..200_000u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
        .collect();
    let to = format!("type=registry,ref={host}/cache:trim");
    run_ok(build(
        &root,
        &["--cache-to", &to],
        &scratch_project(&root, "big", &big),
    ));
    let before = skopeo_cache_config(&registry, "cache:trim");
    let records = before["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    let total: u64 = records.iter().map(|r| r["size"].as_u64().unwrap()).sum();
    let big_key = records
        .iter()
        .max_by_key(|r| r["size"].as_u64().unwrap())
        .map(|r| r["key"].clone())
        .unwrap();
    // A second project shares busybox and the RUN (their records are refreshed) and adds a
    // small layer; the first one's big text layer, now the oldest record, no longer fits.
    let second = scratch_project(&root, "small", "small");
    let limit = format!("{to},max-size={}", total - 50_000);
    let log = run_ok(build(&root, &["--cache-to", &limit], &second));
    assert!(
        log.contains("3 records (3 of this build, 1 dropped by max-size)"),
        "{log}"
    );
    let after = skopeo_cache_config(&registry, "cache:trim");
    let records = after["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{after:#}");
    assert!(!records.iter().any(|r| r["key"] == big_key), "{after:#}");
    let kept: u64 = records.iter().map(|r| r["size"].as_u64().unwrap()).sum();
    assert!(kept <= total - 50_000);
    // The manifest no longer lists the dropped layer.
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{host}/cache:trim"))
        .output()
        .unwrap();
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.manifold.cache.config.v1+json"
    );
}

/// The local cache at `from` rewritten with `edit` applied to its config (a new blob, the
/// manifest and index.json pointing at it).
fn rewrite_local_cache(dir: &Path, edit: impl FnOnce(&mut Value)) {
    use manifold::oci::{Descriptor, Digest, media_type};
    let blobs = dir.join("blobs/sha256");
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&fs::read(blobs.join(&manifest_digest[7..])).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: Value =
        serde_json::from_slice(&fs::read(blobs.join(&config_digest[7..])).unwrap()).unwrap();
    edit(&mut config);
    let bytes = serde_json::to_vec(&config).unwrap();
    let d = Digest::sha256_of(&bytes);
    fs::write(blobs.join(d.hex()), &bytes).unwrap();
    manifest["config"]["digest"] = Value::String(d.to_string());
    manifest["config"]["size"] = Value::from(bytes.len());
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let m = Descriptor::of(media_type::OCI_MANIFEST, &bytes);
    fs::write(blobs.join(m.digest.hex()), &bytes).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type::OCI_MANIFEST,
            "digest": m.digest.to_string(),
            "size": m.size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn records_of_another_format_are_ignored_never_misused() {
    skip_unless!("root", "runc");
    let (a, b) = (TestRoot::new(), TestRoot::new());
    let dir = a.scratch("cache");
    let first = run_ok(build(
        &a,
        &["--cache-to", &format!("type=local,dest={}", dir.display())],
        &scratch_project(&a, "ctx", "x"),
    ));
    assert!(first.contains("RAN-STEP"), "{first}");
    // The same keys, said to be of a format this manifold does not know, with layers that are
    // not what the keys made: used, they would give a wrong image.
    rewrite_local_cache(&dir, |c| {
        c["format"] = Value::from(2);
        c["writer"] = Value::from("manifold 9.9.9");
        for r in c["records"].as_array_mut().unwrap() {
            r["layer"]["diff_id"] = Value::from(format!("sha256:{}", "0".repeat(64)));
        }
    });
    let from = format!("type=local,src={}", dir.display());
    let ctx = scratch_project(&b, "ctx", "x");
    let quiet = run_ok(build(&b, &["--cache-from", &from], &ctx));
    assert!(quiet.contains("RAN-STEP"), "{quiet}");
    assert!(!quiet.contains("ignored"), "said only with -v: {quiet}");
    // With -v, the note says why.
    let mut verbose = b.manifold_std();
    verbose
        .args(["-v", "build", "--no-cache", "--cache-from", &from])
        .arg(&ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let log = run_ok(verbose);
    let note: Vec<String> = log
        .lines()
        .filter(|l| l.contains("ignored"))
        .map(|l| b.redact(&l.replace(&dir.display().to_string(), "[CACHE]")))
        .collect();
    insta::assert_snapshot!(note.join("\n"), @"build cache `[CACHE]:latest` ignored: it was written in cache format 2 (manifold 9.9.9); this manifold reads format 1");
}

#[test]
fn bake_exports_and_imports_per_target() {
    skip_unless!("root", "runc");
    let (a, b) = (TestRoot::new(), TestRoot::new());
    let dir = a.scratch("cache");
    for (root, key, value) in [
        (&a, "cache-to", format!("type=local,dest={}", dir.display())),
        (
            &b,
            "cache-from",
            format!("type=local,src={}", dir.display()),
        ),
    ] {
        let ctx = scratch_project(root, "ctx", "x");
        let file = ctx.join("manifold.yaml");
        fs::write(
            &file,
            format!("targets:\n  app:\n    tags: [example.test/app:1]\n    {key}: [\"{value}\"]\n"),
        )
        .unwrap();
        let out = root
            .manifold()
            .args(["bake", "-f"])
            .arg(&file)
            .timeout(Duration::from_secs(300))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let log = stderr(&out);
        if key == "cache-to" {
            assert!(
                log.contains("RAN-STEP") && log.contains("exported build cache"),
                "{log}"
            );
        } else {
            assert!(!log.contains("RAN-STEP"), "{log}");
            assert!(log.contains("importing build cache"), "{log}");
        }
    }
}

/// Two stages: `tools` (a RUN) feeds the final stage (a COPY --from and a RUN).
fn two_stage_project(root: &TestRoot, name: &str) -> PathBuf {
    let dir = root.scratch(name);
    fs::copy(
        crate::harness::busybox_tree("amd64").join("bin/busybox"),
        dir.join("busybox"),
    )
    .unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch AS tools\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"R=RAN; /bin/busybox echo tools > /tools.txt; /bin/busybox echo $R-TOOLS\"]\n\
         FROM scratch\n\
         COPY busybox /usr/bin/busybox\n\
         COPY --from=tools /tools.txt /tools.txt\n\
         RUN [\"/usr/bin/busybox\", \"sh\", \"-c\", \"R=RAN; /usr/bin/busybox cp /tools.txt /app.txt; /usr/bin/busybox echo $R-APP\"]\n",
    )
    .unwrap();
    dir
}

fn local_records(dir: &Path) -> usize {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--config"])
        .arg(format!("oci:{}:latest", dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    config["records"].as_array().unwrap().len()
}

#[test]
fn mode_min_exports_the_final_stage_max_every_stage_and_all_sources_are_consulted() {
    skip_unless!("root", "runc", "skopeo");
    let a = TestRoot::new();
    let (min, max, tools) = (a.scratch("min"), a.scratch("max"), a.scratch("tools"));
    let ctx = two_stage_project(&a, "ctx");
    let log = run_ok(build(
        &a,
        &[
            "--cache-to",
            &format!("type=local,dest={}", min.display()),
            "--cache-to",
            &format!("type=local,dest={},mode=max", max.display()),
        ],
        &ctx,
    ));
    assert!(
        log.contains("RAN-TOOLS") && log.contains("RAN-APP"),
        "{log}"
    );
    // min: the final stage's three steps; max: the tools stage's two as well.
    assert_eq!(local_records(&min), 3);
    assert_eq!(local_records(&max), 5);
    // The tools stage alone, from the local cache, exported as a final stage of its own.
    let log = run_ok(build(
        &a,
        &[
            "--target",
            "tools",
            "--cache-to",
            &format!("type=local,dest={}", tools.display()),
        ],
        &ctx,
    ));
    assert!(!log.contains("RAN-TOOLS"), "{log}");
    assert_eq!(local_records(&tools), 2);

    let from = |d: &Path| format!("type=local,src={}", d.display());
    // max holds everything.
    let b = TestRoot::new();
    let log = run_ok(build(
        &b,
        &["--cache-from", &from(&max)],
        &two_stage_project(&b, "ctx"),
    ));
    assert!(!log.contains("RAN-"), "{log}");
    assert!(log.contains("(5 of 5 steps cached)"), "{log}");
    // min lacks the tools stage: its two steps run again, the final stage's do not (the COPY
    // --from key is the content copied, which is the same).
    let c = TestRoot::new();
    let log = run_ok(build(
        &c,
        &["--cache-from", &from(&min)],
        &two_stage_project(&c, "ctx"),
    ));
    assert!(
        log.contains("RAN-TOOLS") && !log.contains("RAN-APP"),
        "{log}"
    );
    assert!(log.contains("(3 of 5 steps cached)"), "{log}");
    // Two sources, each with part of the records: both are consulted.
    let d = TestRoot::new();
    let log = run_ok(build(
        &d,
        &["--cache-from", &from(&min), "--cache-from", &from(&tools)],
        &two_stage_project(&d, "ctx"),
    ));
    assert!(!log.contains("RAN-"), "{log}");
    assert!(log.contains("(5 of 5 steps cached)"), "{log}");
}

#[test]
fn a_writer_that_raced_another_merges_again_and_keeps_both() {
    skip_unless!("root", "runc", "docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let a = TestRoot::new();
    run_ok(build(
        &a,
        &[
            "--cache-to",
            &format!("type=registry,ref={host}/cache:main"),
        ],
        &scratch_project(&a, "ctx", "x"),
    ));
    // The second writer reads the ref as it was before the first one wrote (its read answered
    // "nothing there"), so its compare finds the first writer's manifest in the way.
    let proxy = FaultProxy::start(registry.port());
    proxy.add(Rule::new(
        "GET",
        "/v2/cache/manifests/main",
        1,
        Fault::Refuse(404, "MANIFEST_UNKNOWN"),
    ));
    let b = TestRoot::new();
    let mut cmd = b.manifold_std();
    cmd.args(["-v", "build", "--cache-to"])
        .arg(format!("type=registry,ref={}/cache:main", proxy.host()))
        .arg(scratch_project(&b, "ctx", "y"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let log = run_ok(cmd);
    assert_eq!(proxy.pending(), 0);
    assert!(
        log.contains("changed while this build merged into it (attempt 1): merging again"),
        "{log}"
    );
    assert!(log.contains("4 records (3 of this build"), "{log}");
    // Both writers' records are there: busybox and the RUN (shared), and each extra.txt.
    let config = skopeo_cache_config(&registry, "cache:main");
    assert_eq!(config["records"].as_array().unwrap().len(), 4, "{config:#}");
}

#[test]
fn a_cache_the_runner_may_not_read_only_warns() {
    skip_unless!("root", "runc", "docker-registry");
    let registry = TestRegistry::start(Auth::Basic);
    let host = registry.host();
    let root = TestRoot::new();
    let out = build(
        &root,
        &["--cache-from", &format!("type=registry,ref={host}/cache:1")],
        &scratch_project(&root, "ctx", "x"),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(|l| l.replace(&host, "[REGISTRY]"))
        .collect();
    insta::assert_snapshot!(warnings.join("\n"), @"warning: cannot read the build cache `[REGISTRY]/cache:1`: `[REGISTRY]` requires authentication: `[REGISTRY]` answered 401 Unauthorized to GET /v2/cache/manifests/1: UNAUTHORIZED (authentication required); building without it");
}

#[test]
fn a_bind_mount_of_a_stage_from_the_cache_fetches_its_layers() {
    skip_unless!("root", "runc", "skopeo");
    let dockerfile = "FROM scratch AS tools\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"R=RAN; /bin/busybox echo tools > /tools.txt; /bin/busybox echo $R-TOOLS\"]\n\
         FROM scratch\n\
         ARG V=1\n\
         COPY busybox /usr/bin/busybox\n\
         RUN --mount=type=bind,from=tools,target=/t [\"/usr/bin/busybox\", \"sh\", \"-c\", \"R=RAN; /usr/bin/busybox cat /t/tools.txt > /app.txt; /usr/bin/busybox echo $R-APP-$V\"]\n";
    let project = |root: &TestRoot| {
        let dir = two_stage_project(root, "ctx");
        fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
        dir
    };
    let a = TestRoot::new();
    let dir = a.scratch("cache");
    let log = run_ok(build(
        &a,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", dir.display()),
        ],
        &project(&a),
    ));
    assert!(
        log.contains("RAN-TOOLS") && log.contains("RAN-APP-1"),
        "{log}"
    );
    // A fresh store: the tools stage is all cache hits (its layers not fetched), then the
    // changed RUN binds it, so they are fetched.
    let b = TestRoot::new();
    let log = run_ok(build(
        &b,
        &[
            "--cache-from",
            &format!("type=local,src={}", dir.display()),
            "--build-arg",
            "V=2",
            "-t",
            "example.test/bind:1",
        ],
        &project(&b),
    ));
    assert!(
        !log.contains("RAN-TOOLS") && log.contains("RAN-APP-2"),
        "{log}"
    );
    let out = b
        .manifold()
        .args([
            "run",
            "--rm",
            "example.test/bind:1",
            "/usr/bin/busybox",
            "cat",
            "/app.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tools\n",
        "{}",
        stderr(&out)
    );
}

/// `mode=max` to a registry: each layer goes up while the later steps run (here, before the
/// slow last step is done), the export counts them as uploaded, and the image's push mounts
/// them from the cache repository. `mode=min` sends nothing ahead (it may not export a step).
#[test]
fn a_max_export_sends_layers_ahead_and_the_push_mounts_them() {
    skip_unless!("root", "runc", "docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let root = TestRoot::new();
    let ctx = scratch_project(&root, "ctx", "x");
    let dockerfile = fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("{dockerfile}RUN [\"/bin/busybox\", \"sleep\", \"2\"]\n"),
    )
    .unwrap();
    let cache_put = format!("PUT http://{host}/v2/cache/blobs/uploads/");
    let before_last_step = |log: &str| {
        let end = log
            .find("writing image")
            .expect("the build's end is logged");
        log[..end].matches(&cache_put).count()
    };
    let verbose = |args: &[&str]| run_ok(build_with(&root, &["-v"], args, &ctx));
    let log = verbose(&[
        "--push",
        "-t",
        &format!("{host}/app:1"),
        "--cache-to",
        &format!("type=registry,ref={host}/cache:max,mode=max"),
    ]);
    // The three layers (COPY, RUN, COPY; the sleep makes none) went up during the build.
    assert_eq!(before_last_step(&log), 3, "{log}");
    assert!(
        log.contains("4 records (4 of this build), 4 blobs uploaded"),
        "{log}"
    );
    // The push uploads the image's config only; every layer is mounted.
    let app_put = format!("PUT http://{host}/v2/app/blobs/uploads/");
    assert_eq!(log.matches(&app_put).count(), 1, "{log}");
    let mounted = format!("POST http://{host}/v2/app/blobs/uploads/ -> 201 Created");
    assert_eq!(log.matches(&mounted).count(), 3, "{log}");
    // A blob with a place to mount from is mounted without asking first: the config alone
    // (new, nowhere else) is asked about.
    let asked = format!("HEAD http://{host}/v2/app/blobs/");
    assert_eq!(log.matches(&asked).count(), 1, "{log}");
    // The image has no attestations: the registry is not asked for referrers.
    assert!(!log.contains("/referrers/"), "{log}");
    // mode=min: nothing ahead (the same steps, from the store's cache this time).
    let log = verbose(&[
        "--cache-to",
        &format!("type=registry,ref={host}/cache:min,mode=min"),
    ]);
    assert_eq!(before_last_step(&log), 0, "{log}");
    assert!(log.contains("exported build cache to"), "{log}");
}
