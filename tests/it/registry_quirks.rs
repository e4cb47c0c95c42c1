//! Publishing that adapts to the registry: a quirk proxy in front of the real registry imitates
//! what GAR (chunked PATCH refused), ECR (PATCH answered 201), Harbor (mounts refused, or
//! answered with an upload session), Quay (Docker schema2 inside an OCI index refused), a
//! registry refusing `subject`, and Docker Hub (429 with RateLimit headers) do; each push moves
//! layers over 16 MiB (streamed in one request, chunked where that is refused) and is checked
//! by pulling it back from the plain registry. Also: registry mirrors (registries.conf and `--registry-mirror`), client
//! certificates from certs.d, and fast failures for a closed port or a name that never
//! resolves.

use std::process::Output;

use manifold::oci::{self, Descriptor, media_type};
use manifold::reference::Reference;
use manifold::registry::{Client, ClientOptions};
use manifold::store::Store;

use crate::harness::{TestRoot, skip_unless};
use crate::registry_harness::{
    Auth, Fault, FaultProxy, Rule, Seen, TestRegistry, When, assert_store_valid, free_port, import,
    stderr_of, stdout_of,
};

fn run(root: &TestRoot, args: &[&str]) -> Output {
    root.manifold().args(args).output().unwrap()
}

fn ok(root: &TestRoot, args: &[&str]) -> String {
    let out = run(root, args);
    assert!(
        out.status.success(),
        "manifold {args:?} failed:\n{}",
        stderr_of(&out)
    );
    stdout_of(&out)
}

fn fails(root: &TestRoot, args: &[&str]) -> String {
    let out = run(root, args);
    assert_eq!(
        out.status.code(),
        Some(125),
        "manifold {args:?} should fail with 125:\nstdout: {}\nstderr: {}",
        stdout_of(&out),
        stderr_of(&out)
    );
    stderr_of(&out)
}

/// The root's redactions, and ports of 127.0.0.1 as `[PORT]`.
fn redact(root: &TestRoot, s: &str) -> String {
    let s = root.redact(s);
    regex::Regex::new(r"127\.0\.0\.1:\d+")
        .unwrap()
        .replace_all(&s, "127.0.0.1:[PORT]")
        .into_owned()
}

/// How many lines of `text` contain `needle`.
fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// A tar of one `size`-byte incompressible file, different for each `seed`.
fn big_tar(root: &TestRoot, seed: u64, size: usize) -> std::path::PathBuf {
    let path = root.scratch("big").join(format!("big-{seed}.tar"));
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "blob.bin", &data[..])
        .unwrap();
    builder.finish().unwrap();
    path
}

/// A two-platform image `reference` whose two layers are each 20 MiB (over one upload chunk):
/// one push moves both at once, so a quirk is met by parallel workers. Returns the index
/// digest.
fn two_big_layers(root: &TestRoot, reference: &str) -> String {
    let mut children = Vec::new();
    for (i, platform) in ["linux/amd64", "linux/arm64"].iter().enumerate() {
        let tar = big_tar(root, i as u64 + 1, 20 << 20);
        let child = format!("example.test/tmp/big:{i}");
        let out = root
            .manifold()
            .args(["import", "--platform", platform])
            .arg(&tar)
            .arg(&child)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let store = Store::open(root.path()).unwrap();
        let r = Reference::parse(&child).unwrap();
        let mut d: Descriptor = store.resolve(&r).unwrap();
        d.remove_annotation(oci::ANNOTATION_REF_NAME);
        d.platform = Some(platform.parse().unwrap());
        children.push(d);
        store.untag(&r).unwrap();
    }
    let store = Store::open(root.path()).unwrap();
    let txn = store.begin().unwrap();
    let bytes = serde_json::to_vec(&oci::Index::new_oci(children)).unwrap();
    txn.put_bytes(&bytes).unwrap();
    let desc = Descriptor::of(media_type::OCI_INDEX, &bytes);
    txn.tag(&Reference::parse(reference).unwrap(), &desc)
        .unwrap();
    desc.digest.to_string()
}

/// Pull `image` (every platform) into a new root from the plain registry: its digest, and the
/// store checked blob by blob.
fn pull_back(image: &str) -> String {
    let check = TestRoot::new();
    let digest = ok(&check, &["pull", "--all-platforms", "-q", image]);
    assert_store_valid(check.path());
    digest.trim().to_string()
}

fn blob_uploads(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.target.contains("/blobs/uploads/") && s.method != "POST")
        .collect()
}

// --- uploads ---------------------------------------------------------------------------------

#[test]
fn gar_like_registry_refusing_chunks_gets_each_blob_in_one_streamed_put() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    // GAR: a PATCH with Content-Range is refused; everything else works.
    proxy.add(
        Rule::new(
            "PATCH",
            "/blobs/uploads/",
            100,
            Fault::Refuse(400, "UNSUPPORTED"),
        )
        .when(When::Header("content-range")),
    );
    let root = TestRoot::new();
    let image = format!("{}/gar/app:1", proxy.host());
    let digest = two_big_layers(&root, &image);
    let out = run(&root, &["push", &image]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    // Large blobs are streamed in one PUT from the start: no chunk is sent, so none is refused
    // and there is nothing to say.
    insta::assert_snapshot!(redact(&root, &stderr_of(&out)), @"");
    let seen = proxy.seen();
    assert!(
        !seen.iter().any(|s| s.method == "PATCH"),
        "no PATCH: {seen:#?}"
    );
    // Each big layer went in one PUT carrying all of it.
    let whole_puts = blob_uploads(&seen)
        .iter()
        .filter(|s| s.method == "PUT" && s.length > 20 << 20)
        .count();
    assert_eq!(whole_puts, 2, "{seen:#?}");
    assert_eq!(pull_back(&format!("{}/gar/app:1", registry.host())), digest);
}

#[test]
fn a_registry_refusing_chunks_and_blobs_in_a_put_takes_one_patch_each() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    proxy.add(
        Rule::new(
            "PATCH",
            "/blobs/uploads/",
            100,
            Fault::Refuse(400, "UNSUPPORTED"),
        )
        .when(When::Header("content-range")),
    );
    proxy.add(
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            100,
            Fault::Refuse(405, "UNSUPPORTED"),
        )
        .when(When::Body),
    );
    let root = TestRoot::new();
    let image = format!("{}/patch-only/app:1", proxy.host());
    let digest = two_big_layers(&root, &image);
    let out = run(&root, &["push", &image]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    // The PUT refusal (found by the probe) sends large blobs in one PATCH each; chunks are
    // never tried.
    let mut said: Vec<String> = redact(&root, &stderr_of(&out))
        .lines()
        .map(str::to_string)
        .collect();
    said.sort();
    insta::assert_snapshot!(said.join("\n"), @"registry `127.0.0.1:[PORT]` refuses blobs in one PUT: uploading them by PATCH");
    let seen = proxy.seen();
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "PATCH" && s.content_range.is_some()),
        "{seen:#?}"
    );
    let whole_patches = blob_uploads(&seen)
        .iter()
        .filter(|s| s.method == "PATCH" && s.content_range.is_none() && s.length > 20 << 20)
        .count();
    assert_eq!(whole_patches, 2, "{seen:#?}");
    assert_eq!(
        pull_back(&format!("{}/patch-only/app:1", registry.host())),
        digest
    );
}

#[test]
fn ecr_like_patch_answered_201_is_accepted() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    proxy.add(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        100,
        Fault::RewriteStatus(201),
    ));
    // Blobs in a PUT refused too, so that large ones go in one PATCH each (streamed in one
    // PUT, no PATCH would be acknowledged).
    proxy.add(
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            100,
            Fault::Refuse(405, "UNSUPPORTED"),
        )
        .when(When::Body),
    );
    let root = TestRoot::new();
    let image = format!("{}/ecr/app:1", proxy.host());
    let digest = two_big_layers(&root, &image);
    let out = run(&root, &["push", &image]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut said: Vec<String> = redact(&root, &stderr_of(&out))
        .lines()
        .map(str::to_string)
        .collect();
    said.sort();
    insta::assert_snapshot!(said.join("\n"), @r"
    registry `127.0.0.1:[PORT]` acknowledges upload chunks with 201 instead of 202: accepted
    registry `127.0.0.1:[PORT]` refuses blobs in one PUT: uploading them by PATCH
    ");
    // One PATCH carrying each 20 MiB layer, answered 201, then the PUT closing its session.
    let patches = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PATCH" && s.length > 20 << 20)
        .count();
    assert_eq!(patches, 2);
    assert_eq!(pull_back(&format!("{}/ecr/app:1", registry.host())), digest);
}

// --- mounts ----------------------------------------------------------------------------------

/// `image` pushed through `proxy` to `first`, then to `second` with `rule` in force; returns the
/// second push's output and what the proxy saw during it.
fn push_twice(
    proxy: &FaultProxy,
    root: &TestRoot,
    image: &str,
    second: &str,
    rule: Rule,
) -> (Output, Vec<Seen>) {
    ok(root, &["push", image]);
    proxy.clear();
    proxy.add(rule);
    let out = run(root, &["push", image, second]);
    (out, proxy.seen())
}

#[test]
fn harbor_like_mount_refused_with_401_uploads_and_asks_no_more() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let image = format!("{}/harbor/one:1", proxy.host());
    let digest = two_big_layers(&root, &image);
    let second = format!("{}/harbor/two:1", proxy.host());
    let (out, seen) = push_twice(
        &proxy,
        &root,
        &image,
        &second,
        Rule::new("POST", "mount=", 100, Fault::Status(401, vec![])),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    insta::assert_snapshot!(redact(&root, &stderr_of(&out)), @"registry `127.0.0.1:[PORT]` refuses cross-repository mounts: uploading blobs instead");
    let mounts = seen.iter().filter(|s| s.target.contains("mount=")).count();
    // The first refusal is remembered (parallel workers may each have asked once).
    assert!(
        (1..=4).contains(&mounts),
        "4 blobs, mounts asked {mounts} times: {seen:#?}"
    );
    assert!(
        blob_uploads(&seen).len() >= 4,
        "every blob uploaded: {seen:#?}"
    );
    assert_eq!(
        pull_back(&format!("{}/harbor/two:1", registry.host())),
        digest
    );
}

#[test]
fn a_mount_answered_with_an_upload_session_uploads_into_it() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let image = format!("{}/session/one:1", proxy.host());
    let digest = two_big_layers(&root, &image);
    let second = format!("{}/session/two:1", proxy.host());
    // The registry ignores the mount and opens an upload session (202), as Harbor does for a
    // project it will not read from.
    let (out, seen) = push_twice(
        &proxy,
        &root,
        &image,
        &second,
        Rule::new("POST", "mount=", 100, Fault::DropQuery),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    insta::assert_snapshot!(redact(&root, &stderr_of(&out)), @"registry `127.0.0.1:[PORT]` answered a cross-repository mount with an upload session: uploading into it");
    let posts: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.method == "POST" && s.target.contains("/blobs/uploads/"))
        .collect();
    // Besides one mount per blob, one session per push for the probe of large blobs in a PUT
    // (its 1-byte PUT): no other session was opened.
    let probes = seen
        .iter()
        .filter(|s| s.method == "PUT" && s.target.contains("/blobs/uploads/") && s.length == 1)
        .count();
    let posts: Vec<&Seen> = posts
        .into_iter()
        .filter(|s| s.target.contains("mount="))
        .collect();
    assert_eq!(posts.len(), 4, "one mount per blob: {seen:#?}");
    assert!(
        probes <= 2 && seen.iter().filter(|s| s.method == "POST").count() == 4 + probes,
        "no session other than the mounts' and the probes' was opened: {seen:#?}"
    );
    assert_eq!(
        pull_back(&format!("{}/session/two:1", registry.host())),
        digest
    );
}

// --- documents -------------------------------------------------------------------------------

#[test]
fn quay_like_refusal_of_schema2_inside_an_oci_index_comes_before_any_blob_moves() {
    skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    // Two Docker schema2 images (skopeo converts), pulled back by manifold.
    let mut images = Vec::new();
    for arch in ["amd64", "arm64"] {
        let local = format!("{host}/quay/src:{arch}");
        import(&root, arch, &local);
        let out = std::process::Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--format",
                "v2s2",
                "--dest-tls-verify=false",
            ])
            .arg(format!(
                "oci:{}:{local}",
                crate::registry_harness::layout(&root).display()
            ))
            .arg(format!("docker://{host}/quay/v2s2:{arch}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        images.push(format!("{host}/quay/v2s2:{arch}"));
    }
    // An OCI index over them (manifest create's default format).
    let mixed = format!("{host}/quay/mixed:1");
    ok(
        &root,
        &["manifest", "create", &mixed, &images[0], &images[1]],
    );
    let store = Store::open(root.path()).unwrap();
    let index = store
        .read_index(
            &store
                .resolve(&Reference::parse(&mixed).unwrap())
                .unwrap()
                .digest,
        )
        .unwrap()
        .value;
    assert!(
        index
            .manifests
            .iter()
            .all(|d| d.media_type == media_type::DOCKER_MANIFEST)
    );
    drop(store);
    // Quay: refuses such an index as a document.
    proxy.add(
        Rule::new(
            "PUT",
            "/manifests/",
            100,
            Fault::Refuse(400, "MANIFEST_INVALID"),
        )
        .when(When::BodyContains(media_type::OCI_INDEX.into()))
        .when(When::BodyContains(media_type::DOCKER_MANIFEST.into())),
    );
    let through = format!("{}/quay/list:1", proxy.host());
    let err = fails(&root, &["manifest", "push", &mixed, &through]);
    insta::assert_snapshot!(redact(&root, &err), @"
    error: `127.0.0.1:[PORT]` refuses the OCI index `sha256:[DIGEST]`: it holds Docker schema2 manifests (2 of them)
      caused by: `127.0.0.1:[PORT]` answered 400 Bad Request to PUT /v2/quay/list/manifests/sha256:[DIGEST]: MANIFEST_INVALID (refused by the quirk proxy)
    hint: make the list a Docker manifest list (`manifold manifest create --format docker LIST IMAGE...`), or convert its images to OCI manifests (e.g. `skopeo copy --format oci`) and list those
    ");
    let seen = proxy.seen();
    assert!(
        seen.iter().all(|s| !s.target.contains("/blobs/")),
        "no blob moved: {seen:#?}"
    );
    // The same for copy, from the plain registry (which takes the index) through the proxy.
    ok(&root, &["manifest", "push", &mixed, &mixed]);
    proxy.clear();
    proxy.add(
        Rule::new(
            "PUT",
            "/manifests/",
            100,
            Fault::Refuse(400, "MANIFEST_INVALID"),
        )
        .when(When::BodyContains(media_type::OCI_INDEX.into()))
        .when(When::BodyContains(media_type::DOCKER_MANIFEST.into())),
    );
    let err = fails(
        &root,
        &["copy", &mixed, &format!("{}/quay/copied:1", proxy.host())],
    );
    assert!(err.contains("holds Docker schema2 manifests"), "{err}");
    assert!(
        proxy.seen().iter().all(|s| !s.target.contains("/blobs/")),
        "{:#?}",
        proxy.seen()
    );
    // A Docker manifest list of the same images goes through.
    let docker = format!("{host}/quay/docker-list:1");
    ok(
        &root,
        &[
            "manifest", "create", "--format", "docker", &docker, &images[0], &images[1],
        ],
    );
    ok(
        &root,
        &[
            "manifest",
            "push",
            &docker,
            &format!("{}/quay/list:2", proxy.host()),
        ],
    );
}

/// Push `bytes` as a blob of `repo` (through the library: what the attestation work will do).
fn put_blob(repo: &manifold::registry::Repository, media: &str, bytes: &[u8]) -> Descriptor {
    let desc = Descriptor::of(media, bytes);
    repo.upload_blob(&desc, &mut &bytes[..]).unwrap();
    desc
}

/// An artifact manifest of `artifact_type` about `subject` (its layer `payload`).
fn artifact(
    repo: &manifold::registry::Repository,
    subject: &Descriptor,
    artifact_type: &str,
    payload: &[u8],
) -> (Descriptor, Vec<u8>) {
    let empty = put_blob(repo, media_type::OCI_EMPTY, b"{}");
    let layer = put_blob(repo, "application/vnd.example.payload", payload);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty,
        "layers": [layer],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    (Descriptor::of(media_type::OCI_MANIFEST, &bytes), bytes)
}

#[test]
fn a_registry_refusing_subject_gets_the_referrers_fallback_tag() {
    skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let image = format!("{}/refs/app:1", registry.host());
    import(&root, "amd64", &image);
    let subject_digest = ok(&root, &["push", &image]).trim().to_string();
    proxy.add(
        Rule::new(
            "PUT",
            "/manifests/",
            100,
            Fault::Refuse(400, "MANIFEST_INVALID"),
        )
        .when(When::BodyContains("\"subject\"".into())),
    );
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let said = notices.clone();
    let client = Client::new(ClientOptions {
        notice: Some(std::sync::Arc::new(move |l: &str| {
            said.lock().unwrap().push(l.to_string())
        })),
        ..ClientOptions::default()
    });
    let through = Reference::parse(&format!("{}/refs/app:1", proxy.host())).unwrap();
    let repo = client.repository(&through).unwrap();
    let subject = repo.resolve_reference(&through).unwrap();
    assert_eq!(subject.digest.to_string(), subject_digest);
    let (sbom, sbom_bytes) = artifact(&repo, &subject, "application/spdx+json", b"sbom");
    let (sig, sig_bytes) = artifact(&repo, &subject, "application/vnd.example.sig", b"sig");
    let first = repo.put_referrer(&sbom, &sbom_bytes).unwrap();
    let second = repo.put_referrer(&sig, &sig_bytes).unwrap();
    assert!(first.tagged && second.tagged);
    // Stored without `subject`: another digest, listed with its artifact type.
    assert_ne!(first.descriptor.digest, sbom.digest);
    assert_eq!(
        first.descriptor.artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    assert_eq!(
        *notices.lock().unwrap(),
        vec![format!(
            "registry `{}` refuses `subject` and `artifactType` in manifests: listing referrers in the fallback tag `sha256-…`",
            proxy.host()
        )]
    );
    // Readable from the plain registry: by the library, and by skopeo under the tag.
    let plain = Reference::parse(&image).unwrap();
    let listed = Client::new(ClientOptions::default())
        .repository(&plain)
        .unwrap()
        .referrers(&subject.digest)
        .unwrap();
    assert_eq!(
        listed,
        vec![first.descriptor.clone(), second.descriptor.clone()]
    );
    let tag = manifold::registry::referrers_tag(&subject.digest);
    assert_eq!(tag, subject_digest.replace(':', "-"));
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/refs/app:{tag}", registry.host()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(index["mediaType"], media_type::OCI_INDEX);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        index["manifests"][1]["artifactType"],
        "application/vnd.example.sig"
    );
    // A registry that takes `subject` but has no referrers API (distribution 2.8): the document
    // as it is, listed in the tag all the same.
    let other = Reference::parse(&format!("{}/refs/other:1", registry.host())).unwrap();
    ok(&root, &["push", &image, &other.to_string()]);
    let repo = Client::new(ClientOptions::default())
        .repository(&other)
        .unwrap();
    let (att, att_bytes) = artifact(&repo, &subject, "application/vnd.in-toto+json", b"x");
    let stored = repo.put_referrer(&att, &att_bytes).unwrap();
    assert_eq!(stored.descriptor.digest, att.digest);
    assert!(stored.tagged);
    assert_eq!(
        repo.referrers(&subject.digest).unwrap(),
        vec![stored.descriptor]
    );
}

// --- rate limits -----------------------------------------------------------------------------

#[test]
fn rate_limits_show_with_v_and_in_the_error_when_a_429_ends_a_pull() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let image = format!("{}/hub/app:1", registry.host());
    let digest = two_big_layers(&root, &image);
    ok(&root, &["push", &image]);
    let through = format!("{}/hub/app:1", proxy.host());
    let limit = |remaining: &str| {
        vec![
            ("RateLimit-Limit".to_string(), "100;w=21600".to_string()),
            (
                "RateLimit-Remaining".to_string(),
                format!("{remaining};w=21600"),
            ),
        ]
    };
    proxy.add(Rule::new(
        "GET",
        "/manifests/",
        100,
        Fault::AddHeaders(limit("76")),
    ));
    let other = TestRoot::new();
    let out = run(&other, &["-v", "pull", "--all-platforms", &through]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("rate limit: 76 of 100 requests left per 6 h"),
        "{err}"
    );
    assert_eq!(pull_back(&image), digest);
    // Throttled: 429 with the headers (and Retry-After: 0, so the retries do not wait).
    proxy.clear();
    let mut headers = limit("0");
    headers.push(("Retry-After".into(), "0".into()));
    proxy.add(Rule::new(
        "GET",
        "/manifests/",
        100,
        Fault::Status(429, headers),
    ));
    let third = TestRoot::new();
    let err = fails(&third, &["pull", &through.replace(":1", ":2")]);
    insta::assert_snapshot!(redact(&third, &err), @"
    error: `127.0.0.1:[PORT]` answered 429 Too Many Requests to GET /v2/hub/app/manifests/2: TOOMANYREQUESTS (injected fault) (rate limit: 0 of 100 requests left per 6 h)
    hint: the registry limits pulls: wait for the window to pass, or log in (`manifold login 127.0.0.1:[PORT]`) for a higher limit
    ");
    // 429 is transient: retried, a bounded number of times.
    let tries = proxy
        .seen()
        .iter()
        .filter(|s| s.target.contains("/manifests/"))
        .count();
    assert_eq!(tries, 5, "{:#?}", proxy.seen());
}

// --- mirrors ---------------------------------------------------------------------------------

#[test]
fn registries_conf_mirrors_serve_pulls_and_fall_back_to_the_registry() {
    skip_unless!("docker-registry");
    let origin = TestRegistry::start(Auth::Anonymous);
    let watch = FaultProxy::start(origin.port());
    let mirror = TestRegistry::start(Auth::Anonymous);
    let root = TestRoot::new();
    let image = format!("{}/team/app:1", watch.host());
    let digest = two_big_layers(&root, &image);
    ok(&root, &["push", &image]);
    // The mirror keeps Docker Hub's layout under a path of its own.
    ok(
        &root,
        &[
            "push",
            &image,
            &format!("{}/cache/team/app:1", mirror.host()),
        ],
    );
    std::fs::write(
        root.registries_conf(),
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"{w}\"\nlocation = \"{w}\"\n\n[[registry.mirror]]\nlocation = \"{m}/cache\"\n",
            w = watch.host(),
            m = mirror.host()
        ),
    )
    .unwrap();
    watch.clear();
    let target = TestRoot::new();
    std::fs::copy(root.registries_conf(), target.registries_conf()).unwrap();
    let out = run(&target, &["-v", "pull", "--all-platforms", "-q", &image]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "served by mirror `{}/cache/team/app`",
            mirror.host()
        )),
        "{err}"
    );
    assert!(
        watch
            .seen()
            .iter()
            .all(|s| !s.target.contains("/team/app/")),
        "the registry itself was not asked: {:#?}",
        watch.seen()
    );
    assert_store_valid(target.path());
    // The mirror down: the registry itself serves, at once.
    let down = free_port();
    let conf = std::fs::read_to_string(root.registries_conf())
        .unwrap()
        .replace(&mirror.host(), &format!("127.0.0.1:{down}"));
    let again = TestRoot::new();
    std::fs::write(again.registries_conf(), conf).unwrap();
    let out = run(&again, &["-v", "pull", "--all-platforms", "-q", &image]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("mirror `127.0.0.1:{down}/cache/team/app` failed")),
        "{err}"
    );
    assert!(
        err.contains(&format!("served by registry `{}/team/app`", watch.host())),
        "{err}"
    );
    assert_store_valid(again.path());
    // Pushes never go to mirrors.
    watch.clear();
    ok(
        &again,
        &["push", &image, &format!("{}/team/pushed:1", watch.host())],
    );
    assert!(
        watch
            .seen()
            .iter()
            .any(|s| s.target.contains("/team/pushed/")),
        "{:#?}",
        watch.seen()
    );
    // A broken file is an error naming it.
    std::fs::write(again.registries_conf(), "[[registry]\n").unwrap();
    let err = fails(&again, &["pull", &image]);
    assert!(
        err.contains("cannot parse") && err.contains("registries.conf"),
        "{err}"
    );
}

#[test]
fn registry_mirror_serves_docker_hub_pulls() {
    skip_unless!("docker-registry");
    let mirror = TestRegistry::start(Auth::Anonymous);
    let root = TestRoot::new();
    let local = format!("{}/library/mfquirks:1", mirror.host());
    let digest = import(&root, "amd64", &local);
    ok(&root, &["push", &local]);
    // Should the mirror fail, the fallback to Docker Hub goes to a closed local port (a proxy
    // that is not there), never out of this machine.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let target = TestRoot::new();
    let out = target
        .manifold()
        .env("HTTPS_PROXY", &nowhere)
        .env("HTTP_PROXY", &nowhere)
        .env("ALL_PROXY", &nowhere)
        .env_remove("NO_PROXY")
        .args([
            "-v",
            "--registry-mirror",
            &format!("http://{}", mirror.host()),
            "pull",
            "-q",
            "mfquirks:1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "`mfquirks:1` served by mirror `{}/library/mfquirks`",
            mirror.host()
        )),
        "{err}"
    );
    assert!(!err.contains("docker.io"), "{err}");
    ok(&target, &["inspect", "mfquirks:1"]);
}

// --- client certificates -----------------------------------------------------------------------

#[test]
fn client_certificates_from_certs_d() {
    skip_unless!("docker-registry");
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let client_ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["manifold-client".to_string()])
        .unwrap()
        .signed_by(&key, &client_ca, &ca_key)
        .unwrap();
    let registry = TestRegistry::start_tls_client_auth(&client_ca.pem());
    let host = registry.host();
    let root = TestRoot::new();
    let image = format!("{host}/mtls/app:1");
    let digest = import(&root, "amd64", &image);
    let certs = root.scratch("certs.d");
    std::fs::create_dir_all(certs.join(&host)).unwrap();
    std::fs::write(
        certs.join(&host).join("ca.crt"),
        registry.ca_pem.as_ref().unwrap(),
    )
    .unwrap();
    let push = |root: &TestRoot| {
        root.manifold()
            .env("MANIFOLD_CERTS_DIRS", &certs)
            .args(["push", &image])
            .output()
            .unwrap()
    };
    // Without a client certificate the registry refuses the handshake.
    let out = push(&root);
    assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains(&format!("cannot reach `{host}`")), "{err}");
    assert!(err.contains("client.cert"), "{err}");
    // docker's convention: certs.d/HOST:PORT/client.cert and client.key.
    std::fs::write(certs.join(&host).join("client.cert"), cert.pem()).unwrap();
    std::fs::write(certs.join(&host).join("client.key"), key.serialize_pem()).unwrap();
    let out = push(&root);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    let other = TestRoot::new();
    let out = other
        .manifold()
        .env("MANIFOLD_CERTS_DIRS", &certs)
        .args(["pull", "-q", &image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    // A certificate without its key is an error naming the missing file.
    std::fs::remove_file(certs.join(&host).join("client.key")).unwrap();
    let err = stderr_of(&push(&root));
    insta::assert_snapshot!(redact(&root, &err), @"
    error: cannot read the client certificate [SCRATCH]/certs.d/127.0.0.1:[PORT]/client.key
      caused by: No such file or directory (os error 2)
    hint: a client certificate is a PEM `NAME.cert` with its PEM key `NAME.key` (PKCS#8, RSA or EC) next to it
    ");
}

// --- fast failures -----------------------------------------------------------------------------

#[test]
fn a_closed_port_fails_at_once_without_retries() {
    let root = TestRoot::new();
    let port = free_port();
    let out = run(
        &root,
        &["-v", "pull", &format!("127.0.0.1:{port}/nothing/here:1")],
    );
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    // With `-v`, a retry would show as a line of its own.
    assert_eq!(lines_with(&err, "retrying"), 0, "no retries: {err}");
    insta::assert_snapshot!(redact(&root, &err), @"
    error: cannot reach `127.0.0.1:[PORT]`: connection refused
      caused by: error sending request for url (http://127.0.0.1:[PORT]/v2/)
      caused by: client error (Connect)
      caused by: tcp connect error
      caused by: Connection refused (os error 111)
    hint: is the registry running at `127.0.0.1:[PORT]`? nothing accepts connections there
    ");
}

#[test]
fn a_name_that_does_not_resolve_fails_at_once_with_a_hint_about_the_name() {
    let root = TestRoot::new();
    let out = run(&root, &["-v", "run", "registry.invalid/nothing/here:1"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert_eq!(lines_with(&err, "retrying"), 0, "no retries: {err}");
    insta::assert_snapshot!(redact(&root, &err), @"
    Unable to find image 'registry.invalid/nothing/here:1' locally: pulling
    error: cannot reach `registry.invalid`: its name does not resolve
      caused by: error sending request for url (https://registry.invalid/v2/)
      caused by: client error (Connect)
      caused by: dns error
      caused by: failed to lookup address information: Name or service not known
    hint: check the name `registry.invalid`: it does not resolve (a typo, or no DNS here)
    ");
}

#[test]
fn help_for_registry_mirror() {
    let root = TestRoot::new();
    let out = root.manifold().args(["pull", "--help"]).output().unwrap();
    let help = stdout_of(&out);
    let start = help
        .find("      --registry-mirror")
        .expect("--registry-mirror in the help");
    let end = help[start..]
        .find("      --progress")
        .expect("--progress after it");
    insta::assert_snapshot!(&help[start..start + end], @"
    --registry-mirror <URL>
        A mirror of Docker Hub to pull from first (docker's `registry-mirrors`); repeatable [env:
        MANIFOLD_REGISTRY_MIRRORS=]
    ");
}
