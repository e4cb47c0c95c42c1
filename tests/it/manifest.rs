//! `manifold manifest create|annotate|inspect|push|rm` against the real distribution registry:
//! lists from per-architecture images pushed by skopeo, an index as a source (flattened, its
//! attestations kept with their subjects), Docker manifest lists, annotations, pushes that mount
//! across repositories and copy across registries, and the CI matrix flow with separate roots.

use serde_json::Value;

use crate::harness::{TestRoot, fails, ok, run, skip_unless, stderr_of, stdout_of};
use crate::registry_harness::{
    Auth, FaultProxy, TestRegistry, assert_store_valid, import, layout, multi_arch, skopeo_copy,
    skopeo_raw_digest,
};

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

/// The busybox image of `debarch`, imported into a throwaway root and pushed to `image` by
/// skopeo (with `args`, e.g. `--format v2s2`); returns the digest the registry has.
fn skopeo_push(registry: &TestRegistry, debarch: &str, image: &str, args: &[&str]) -> String {
    let src = TestRoot::new();
    import(&src, debarch, image);
    skopeo_copy(
        registry,
        args,
        &format!("oci:{}:{image}", layout(&src).display()),
        &format!("docker://{image}"),
    );
    skopeo_raw_digest(registry, image)
}

/// `(os, architecture, variant)` of each entry of an index, and the digests.
fn entries(index: &Value) -> Vec<(String, String, String, String)> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                s(&p["os"]),
                s(&p["architecture"]),
                s(&p["variant"]),
                s(&m["digest"]),
            )
        })
        .collect()
}

fn blob_in_store(root: &TestRoot, digest: &str) -> bool {
    root.path()
        .join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

/// Add a BuildKit-style attestation manifest (an in-toto statement, platform unknown/unknown)
/// for the `subject`-th entry of the index `reference` in `root`; returns its digest.
fn add_attestation(root: &TestRoot, reference: &str, subject: usize) -> String {
    use manifold::oci::{self, Descriptor, media_type};
    use manifold::platform::Platform;
    use manifold::reference::Reference;
    use manifold::store::Store;
    let store = Store::open(root.path()).unwrap().begin().unwrap();
    let r = Reference::parse(reference).unwrap();
    let desc = store.resolve(&r).unwrap();
    let mut index = store.read_index(&desc.digest).unwrap().value;
    let subject = index.manifests[subject].digest.clone();
    let statement = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[{{"digest":{{"sha256":"{}"}}}}],"predicate":{{}}}}"#,
        subject.hex()
    );
    let layer_digest = store.put_bytes(statement.as_bytes()).unwrap();
    let mut layer = Descriptor::new(
        "application/vnd.in-toto+json",
        layer_digest.clone(),
        statement.len() as u64,
    );
    layer.set_annotation("in-toto.io/predicate-type", "https://spdx.dev/Document");
    let config = format!(
        r#"{{"architecture":"unknown","os":"unknown","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let config_desc = Descriptor::new(
        media_type::OCI_CONFIG,
        store.put_bytes(config.as_bytes()).unwrap(),
        config.len() as u64,
    );
    let manifest = oci::Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.into()),
        artifact_type: None,
        config: config_desc,
        layers: vec![layer],
        subject: None,
        annotations: None,
        extra: Default::default(),
    };
    let bytes = serde_json::to_vec(&manifest).unwrap();
    store.put_bytes(&bytes).unwrap();
    let mut att = Descriptor::of(media_type::OCI_MANIFEST, &bytes);
    att.platform = Some(Platform::new("unknown", "unknown", None));
    att.set_annotation(oci::ANNOTATION_DOCKER_REFERENCE_DIGEST, subject.to_string());
    att.set_annotation(
        oci::ANNOTATION_DOCKER_REFERENCE_TYPE,
        "attestation-manifest",
    );
    index.manifests.push(att.clone());
    let bytes = serde_json::to_vec(&index).unwrap();
    store.put_bytes(&bytes).unwrap();
    store
        .tag(&r, &Descriptor::of(media_type::OCI_INDEX, &bytes))
        .unwrap();
    att.digest.to_string()
}

#[test]
fn lists_from_per_arch_images_pushed_by_skopeo_are_sparse_and_mount_on_push() {
    skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    // manifold talks through a proxy that records every request; skopeo goes direct.
    let proxy = FaultProxy::start(registry.port());
    let (h, p) = (registry.host(), proxy.host());
    let amd64 = skopeo_push(&registry, "amd64", &format!("{h}/per-arch/amd64:1"), &[]);
    let arm64 = skopeo_push(&registry, "arm64", &format!("{h}/per-arch/arm64:1"), &[]);
    let armv7 = skopeo_push(&registry, "armhf", &format!("{h}/other/armv7:1"), &[]);

    let root = TestRoot::new();
    let list = format!("{p}/app:1");
    // By digest and by tag, from two repositories.
    let out = run(
        &root,
        &[
            "--progress",
            "plain",
            "manifest",
            "create",
            &list,
            &format!("{p}/per-arch/amd64@{amd64}"),
            &format!("{p}/per-arch/arm64:1"),
            &format!("{p}/other/armv7:1"),
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let digest = stdout_of(&out).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(
        stderr_of(&out).contains(&format!(
            "Created manifest list {p}/app:1: linux/amd64, linux/arm64/v8, linux/arm/v7"
        )),
        "{}",
        stderr_of(&out)
    );

    // The platforms come from the configs; OCI index by default.
    let index = json(&ok(&root, &["manifest", "inspect", &list]));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let e = entries(&index);
    let platforms: Vec<(&str, &str, &str)> = e
        .iter()
        .map(|(o, a, v, _)| (o.as_str(), a.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        platforms,
        [
            ("linux", "amd64", ""),
            ("linux", "arm64", "v8"),
            ("linux", "arm", "v7")
        ]
    );
    let digests: Vec<&str> = e.iter().map(|x| x.3.as_str()).collect();
    assert_eq!(digests, [&amd64, &arm64, &armv7]);

    // Sparse: the children's manifests and configs are in the store, never their layers.
    let verbose = json(&ok(&root, &["manifest", "inspect", "--verbose", &list]));
    assert_eq!(verbose["Local"], true);
    assert_eq!(verbose["Digest"], digest.as_str());
    let children = verbose["Manifests"].as_array().unwrap();
    assert_eq!(children.len(), 3);
    for (child, repo) in children
        .iter()
        .zip(["per-arch/amd64", "per-arch/arm64", "other/armv7"])
    {
        assert_eq!(child["Present"], false);
        assert_eq!(
            child["Reference"],
            format!("{p}/{repo}@{}", child["Digest"].as_str().unwrap()).as_str()
        );
        assert!(blob_in_store(&root, child["Digest"].as_str().unwrap()));
        assert!(blob_in_store(
            &root,
            child["Config"]["Digest"].as_str().unwrap()
        ));
        let layers = child["Layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert!(!blob_in_store(&root, layers[0]["Digest"].as_str().unwrap()));
        let sizes: u64 = layers.iter().map(|l| l["Size"].as_u64().unwrap()).sum();
        assert!(sizes > 500_000, "{child}");
        assert!(child["Size"].as_u64().unwrap() > sizes);
    }
    assert_eq!(children[2]["Platform"], "linux/arm/v7");
    let images = ok(&root, &["images"]);
    assert!(images.contains("(0/3 present)"), "{images}");
    assert_store_valid(root.path());

    // Pushed: every blob lives in another repository of the registry, so all are mounted and
    // none uploaded; the children go by digest, the list as stored, then the tag.
    let out = run(&root, &["--progress", "plain", "manifest", "push", &list]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "Pushed {p}/app:1: 0 blobs uploaded (0B), 6 mounted, 0 already there"
        )),
        "{err}"
    );
    let seen = proxy.seen();
    let mounts = seen
        .iter()
        .filter(|s| s.method == "POST" && s.target.contains("mount="))
        .count();
    let uploads = seen
        .iter()
        .filter(|s| {
            matches!(s.method.as_str(), "PUT" | "PATCH") && s.target.contains("/blobs/uploads/")
        })
        .count();
    let manifest_puts: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "PUT" && s.target.contains("/v2/app/manifests/"))
        .map(|s| s.target.rsplit('/').next().unwrap())
        .collect();
    assert_eq!((mounts, uploads), (6, 0), "{seen:?}");
    assert_eq!(
        manifest_puts,
        vec![
            amd64.as_str(),
            arm64.as_str(),
            armv7.as_str(),
            digest.as_str(),
            "1"
        ],
        "{seen:?}"
    );
    // Byte for byte: the registry's list has the digest create printed.
    assert_eq!(skopeo_raw_digest(&registry, &format!("{h}/app:1")), digest);

    // Inspected from the registry by another root, and pulled for one platform.
    let other = TestRoot::new();
    let remote = json(&ok(
        &other,
        &["manifest", "inspect", "--verbose", &format!("{h}/app:1")],
    ));
    assert_eq!(remote["Local"], false);
    assert_eq!(remote["Manifests"].as_array().unwrap().len(), 3);
    assert!(remote["Manifests"][0].get("Present").is_none());
    assert_eq!(
        remote["Manifests"][1]["Reference"],
        format!("{h}/app@{arm64}").as_str()
    );
    assert_eq!(
        ok(
            &other,
            &[
                "pull",
                "-q",
                "--platform",
                "linux/arm/v7",
                &format!("{h}/app:1")
            ]
        )
        .trim(),
        digest
    );
    // A remote single image: its platform from its config.
    let single = json(&ok(
        &other,
        &[
            "manifest",
            "inspect",
            "--verbose",
            &format!("{h}/per-arch/arm64:1"),
        ],
    ));
    assert_eq!(single["Manifests"][0]["Platform"], "linux/arm64/v8");
    assert_eq!(single["Digest"], arm64.as_str());
}

#[test]
fn an_index_source_is_flattened_and_keeps_attestations_with_their_subject() {
    skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let h = registry.host();
    let src = TestRoot::new();
    let multi = format!("{h}/src/multi:1");
    multi_arch(&src, &["amd64", "arm64"], &multi);
    let attestation = add_attestation(&src, &multi, 0);
    ok(&src, &["push", &multi]);
    let s390x = format!("{h}/src/s390x:1");
    import(&src, "s390x", &s390x);
    ok(&src, &["push", &s390x]);
    let subject = entries(&json(&ok(&src, &["manifest", "inspect", &multi])))[0]
        .3
        .clone();

    let root = TestRoot::new();
    let list = format!("{h}/flat:1");
    let digest = ok(&root, &["manifest", "create", &list, &multi, &s390x])
        .trim()
        .to_string();
    let index = json(&ok(&root, &["manifest", "inspect", &list]));
    let e = entries(&index);
    let platforms: Vec<&str> = e.iter().map(|x| x.1.as_str()).collect();
    // The platforms first, the attestation behind them, still pointing at its subject.
    assert_eq!(platforms, ["amd64", "arm64", "s390x", "unknown"]);
    let att = &index["manifests"][3];
    assert_eq!(att["digest"], attestation.as_str());
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        subject.as_str()
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    // Never listed as a platform.
    let verbose = json(&ok(&root, &["manifest", "inspect", "--verbose", &list]));
    let children = verbose["Manifests"].as_array().unwrap();
    assert_eq!(children.len(), 3);
    assert_eq!(
        children[0]["Attestations"][0]["Digest"],
        attestation.as_str()
    );
    assert!(children[1].get("Attestations").is_none());

    // Pushed within the registry: the attestation goes along.
    ok(&root, &["manifest", "push", &list]);
    assert_eq!(skopeo_raw_digest(&registry, &list), digest);
    assert_eq!(
        skopeo_raw_digest(&registry, &format!("{h}/flat@{attestation}")),
        attestation
    );

    // An index that lists its amd64 image as arm64: the config is what runs.
    let amd64_child = e[0].3.clone();
    let liar = {
        use manifold::oci::{self, Descriptor, media_type};
        use manifold::reference::Reference;
        use manifold::store::Store;
        let store = Store::open(src.path()).unwrap().begin().unwrap();
        let mut child = store
            .resolve(&Reference::parse(&format!("{h}/src/multi@{amd64_child}")).unwrap())
            .unwrap();
        child.platform = Some("linux/arm64".parse().unwrap());
        let bytes = serde_json::to_vec(&oci::Index::new_oci(vec![child])).unwrap();
        store.put_bytes(&bytes).unwrap();
        let r = Reference::parse("example.test/liar:1").unwrap();
        store
            .tag(&r, &Descriptor::of(media_type::OCI_INDEX, &bytes))
            .unwrap();
        r.to_string()
    };
    let err = fails(
        &src,
        &["manifest", "create", "example.test/liar-list:1", &liar],
    );
    assert!(
        err.contains(&format!(
            "error: `{liar} ({amd64_child})` is listed as `linux/arm64/v8` but its config declares `linux/amd64`"
        )),
        "{err}"
    );
    assert!(err.contains("hint: the config is what runs"), "{err}");
}

#[test]
fn duplicate_platforms_are_refused_and_amend_replaces_them() {
    let root = TestRoot::new();
    let a = "example.test/dup/a:1";
    let b = "example.test/dup/b:1";
    let c = "example.test/dup/c:1";
    import(&root, "amd64", a);
    // Another amd64 image (its own config, so its own digest).
    let out = root
        .manifold()
        .args([
            "import",
            "--platform",
            "linux/amd64",
            "-c",
            "CMD [\"true\"]",
        ])
        .arg(crate::harness::busybox_rootfs("amd64", "tar.gz"))
        .arg(b)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let b_digest = stdout_of(&out).trim().to_string();
    let c_digest = import(&root, "arm64", c);
    let list = "example.test/dup:1";
    let first = ok(&root, &["manifest", "create", list, a, c]);

    let err = fails(&root, &["manifest", "create", list, b]);
    assert!(
        err.contains("error: manifest list `example.test/dup:1` already exists"),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: add to it with `manifold manifest create --amend example.test/dup:1 ...`"
        ),
        "{err}"
    );
    let err = fails(&root, &["manifest", "create", "example.test/dup:2", a, b]);
    assert!(
        err.contains(&format!("error: `{a}` and `{b}` are both `linux/amd64`")),
        "{err}"
    );
    assert!(err.contains("hint: list one image per platform"), "{err}");
    assert!(!ok(&root, &["images"]).contains("dup:2"));

    // --amend: b replaces a, in its place; the old list does not linger as a dangling image.
    let amended = ok(&root, &["manifest", "create", "--amend", list, b]);
    assert_ne!(amended, first);
    let e = entries(&json(&ok(&root, &["manifest", "inspect", list])));
    let digests: Vec<&str> = e.iter().map(|x| x.3.as_str()).collect();
    assert_eq!(digests, [b_digest.as_str(), &c_digest]);
    let all = ok(&root, &["images", "--format", "json"]);
    assert_eq!(all.lines().count(), 4, "{all}");
    assert!(!all.contains("<none>"), "{all}");

    // rm: the list goes, its images stay; a single image is not a list.
    assert_eq!(
        ok(&root, &["manifest", "rm", list]).trim(),
        "Removed: example.test/dup:1"
    );
    assert_eq!(ok(&root, &["images", "-q"]).lines().count(), 3);
    let err = fails(&root, &["manifest", "rm", a]);
    assert!(
        err.contains(&format!("error: `{a}` is not a manifest list")),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    assert_store_valid(root.path());
}

#[test]
fn docker_lists_need_schema2_children() {
    skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let h = registry.host();
    let amd64 = skopeo_push(
        &registry,
        "amd64",
        &format!("{h}/v2s2/amd64:1"),
        &["--format", "v2s2"],
    );
    let arm64 = skopeo_push(
        &registry,
        "arm64",
        &format!("{h}/v2s2/arm64:1"),
        &["--format", "v2s2"],
    );
    let oci = skopeo_push(&registry, "arm64", &format!("{h}/oci/arm64:1"), &[]);
    assert_ne!(oci, arm64);

    let root = TestRoot::new();
    let list = format!("{h}/docker-list:1");
    let digest = ok(
        &root,
        &[
            "manifest",
            "create",
            "--format",
            "docker",
            &list,
            &format!("{h}/v2s2/amd64:1"),
            &format!("{h}/v2s2/arm64@{arm64}"),
        ],
    )
    .trim()
    .to_string();
    let index = json(&ok(&root, &["manifest", "inspect", &list]));
    assert_eq!(
        index["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    for m in index["manifests"].as_array().unwrap() {
        assert_eq!(
            m["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
    }
    assert_eq!(entries(&index)[0].3, amd64);
    ok(&root, &["manifest", "push", &list]);
    assert_eq!(skopeo_raw_digest(&registry, &list), digest);

    // An OCI child cannot go in a Docker list: said clearly, with what to do instead.
    let err = fails(
        &root,
        &[
            "manifest",
            "create",
            "--format",
            "docker",
            &format!("{h}/docker-list:2"),
            &format!("{h}/v2s2/amd64:1"),
            &format!("{h}/oci/arm64:1"),
        ],
    );
    assert!(
        err.contains(&format!(
            "error: `{h}/oci/arm64:1` is an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`), and a Docker manifest list can only list Docker schema2 manifests: converting it would change its digest"
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: create an OCI index (drop `--format docker`)"),
        "{err}"
    );
    // The same children as an OCI index are fine.
    ok(
        &root,
        &[
            "manifest",
            "create",
            &format!("{h}/docker-list:2"),
            &format!("{h}/v2s2/amd64:1"),
            &format!("{h}/oci/arm64:1"),
        ],
    );
}

#[test]
fn annotate_adds_detail_but_never_contradicts_the_config() {
    let root = TestRoot::new();
    let a = "example.test/ann/amd64:1";
    let c = "example.test/ann/arm64:1";
    let a_digest = import(&root, "amd64", a);
    import(&root, "arm64", c);
    let list = "example.test/ann:1";
    let created = ok(&root, &["manifest", "create", list, a, c]);

    // By tag: a variant and OS features the config does not state.
    let annotated = ok(
        &root,
        &[
            "manifest",
            "annotate",
            "--variant",
            "v2",
            "--os-features",
            "one,two",
            list,
            a,
        ],
    );
    assert_ne!(annotated, created);
    let index = json(&ok(&root, &["manifest", "inspect", list]));
    let p = &index["manifests"][0]["platform"];
    assert_eq!(p["architecture"], "amd64");
    assert_eq!(p["variant"], "v2");
    assert_eq!(p["os.features"], serde_json::json!(["one", "two"]));
    // By digest: remove the variant again.
    ok(
        &root,
        &[
            "manifest",
            "annotate",
            "--variant",
            "",
            list,
            &format!("example.test/ann/amd64@{a_digest}"),
        ],
    );
    let index = json(&ok(&root, &["manifest", "inspect", list]));
    assert!(index["manifests"][0]["platform"].get("variant").is_none());

    let err = fails(&root, &["manifest", "annotate", "--arch", "s390x", list, a]);
    assert!(
        err.contains(&format!(
            "error: `{a}` is listed as `linux(+one+two)/s390x` but its config declares `linux/amd64`"
        )),
        "{err}"
    );
    let err = fails(&root, &["manifest", "annotate", "--arch", "arm64", list, a]);
    assert!(
        err.contains("is listed as `linux(+one+two)/arm64` but its config declares `linux/amd64`"),
        "{err}"
    );
    let missing = format!("example.test/ann/x@sha256:{}", "0".repeat(64));
    let err = fails(
        &root,
        &["manifest", "annotate", "--os", "linux", list, &missing],
    );
    assert!(
        err.contains(&format!(
            "error: `example.test/ann:1` has no entry for `{missing}`"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: `manifold manifest inspect --verbose example.test/ann:1` shows its entries"
        ),
        "{err}"
    );
    // Nothing failed changed the list.
    assert_eq!(
        json(&ok(&root, &["manifest", "inspect", list]))["manifests"][0]["platform"]["architecture"],
        "amd64"
    );
}

#[test]
fn push_uploads_local_children_mounts_near_ones_and_copies_far_ones() {
    skip_unless!("docker-registry");
    let far = TestRegistry::start(Auth::Anonymous);
    let near = TestRegistry::start(Auth::Basic);
    let (f, n) = (far.host(), near.host());
    let src = TestRoot::new();
    near.login(&src);
    import(&src, "amd64", &format!("{f}/far/amd64:1"));
    ok(&src, &["push", &format!("{f}/far/amd64:1")]);
    import(&src, "arm64", &format!("{n}/near/arm64:1"));
    ok(&src, &["push", &format!("{n}/near/arm64:1")]);

    let root = TestRoot::new();
    near.login(&root);
    // Only in this store, never pushed.
    import(&root, "riscv64", "example.test/local/riscv64:1");
    let list = format!("{n}/mixed:1");
    let digest = ok(
        &root,
        &[
            "manifest",
            "create",
            &list,
            &format!("{f}/far/amd64:1"),
            &format!("{n}/near/arm64:1"),
            "example.test/local/riscv64:1",
        ],
    )
    .trim()
    .to_string();
    let out = run(
        &root,
        &["--progress", "plain", "manifest", "push", "--purge", &list],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    let err = stderr_of(&out);
    // amd64 streamed from the other registry and riscv64 from the store: 4 blobs uploaded;
    // arm64's 2 mounted from `near/arm64`.
    assert!(err.contains(": mounted"), "{err}");
    assert!(
        err.contains(&format!("Pushed {n}/mixed:1: 4 blobs uploaded (")),
        "{err}"
    );
    assert!(err.contains("), 2 mounted, 0 already there"), "{err}");
    // --purge: the list left the store; the local image stays.
    let images = ok(&root, &["images"]);
    assert!(!images.contains("mixed"), "{images}");
    assert!(images.contains("riscv64"), "{images}");

    // Everything is there: another root pulls every platform.
    let check = TestRoot::new();
    near.login(&check);
    assert_eq!(
        ok(&check, &["pull", "-q", "--all-platforms", &list]).trim(),
        digest
    );
    let images = ok(&check, &["images"]);
    assert!(
        images.contains("linux/amd64,linux/arm64/v8,linux/riscv64"),
        "{images}"
    );
    assert_store_valid(check.path());
}

/// The CI matrix flow of examples/ci, through its scripts as the workflows run them: each
/// runner (its own root) builds its platform and pushes it by digest (build-by-digest.sh); the
/// merge job (merge.sh), which has none of the images, creates the list from the digests and
/// pushes it.
#[test]
fn ci_matrix_flow_with_separate_roots() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let repo = format!("{}/ci/app", registry.host());
    let work = TestRoot::new();
    let digests_dir = work.scratch("digests");
    let context = work.scratch("context");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM example.test/base:1\nCOPY app.txt /app.txt\nCMD [\"cat\", \"/app.txt\"]\n",
    )
    .unwrap();
    std::fs::write(context.join("app.txt"), "the app\n").unwrap();
    let script = |name: &str| {
        std::path::Path::new(crate::harness::REPO)
            .join("examples/ci")
            .join(name)
    };
    let mut digests = Vec::new();
    for arch in ["amd64", "arm64"] {
        // A runner: its own store, with its platform's base image only.
        let runner = TestRoot::new();
        import(&runner, arch, "example.test/base:1");
        let platform = crate::harness::platform_of(arch);
        let out = std::process::Command::new("bash")
            .arg(script("build-by-digest.sh"))
            .args([repo.as_str(), platform])
            .arg(&context)
            .arg(&digests_dir)
            .env("MANIFOLD", env!("CARGO_BIN_EXE_manifold"))
            .env("MANIFOLD_ROOT", runner.path())
            .env("DOCKER_CONFIG", runner.docker_config())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let d = std::fs::read_to_string(digests_dir.join(platform.replace('/', "-")))
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(stdout_of(&out).trim(), format!("{platform}: {repo}@{d}"));
        // The metadata file says the same.
        let meta = json(
            &std::fs::read_to_string(
                digests_dir.join(format!("{}.json", platform.replace('/', "-"))),
            )
            .unwrap(),
        );
        assert_eq!(meta["containerimage.digest"], d.as_str());
        // Pushed by digest only: no tag.
        let tags = run(&runner, &["tags", &repo]);
        assert!(
            stdout_of(&tags).trim().is_empty(),
            "a runner tagged something"
        );
        digests.push(d);
    }
    let merge = TestRoot::new();
    let list = format!("{repo}:1.0");
    let out = std::process::Command::new("bash")
        .arg(script("merge.sh"))
        .arg(&list)
        .arg(&digests_dir)
        .env("MANIFOLD", env!("CARGO_BIN_EXE_manifold"))
        .env("MANIFOLD_ROOT", merge.path())
        .env("DOCKER_CONFIG", merge.docker_config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let digest = stdout_of(&out).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    // The list refers to what the runners pushed; no layer reached the merge job's store.
    let inspected = json(&ok(&merge, &["manifest", "inspect", "--verbose", &list]));
    let children = inspected["Manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    for (child, d) in children.iter().zip(&digests) {
        assert_eq!(child["Digest"], d.as_str());
        assert_eq!(child["Present"], false);
        assert!(!blob_in_store(
            &merge,
            child["Layers"][0]["Digest"].as_str().unwrap()
        ));
    }
    assert_eq!(children[1]["Platform"], "linux/arm64/v8");
    let check = TestRoot::new();
    assert_eq!(
        ok(&check, &["pull", "-q", "--all-platforms", &list]).trim(),
        digest
    );
    let index = json(&ok(&check, &["inspect", "--raw", &list]));
    let got: Vec<String> = entries(&index).into_iter().map(|e| e.3).collect();
    assert_eq!(got, digests);
}

/// The example workflows run the scripts the test above runs, on a native runner per platform.
#[test]
fn the_ci_examples_build_natively_then_merge() {
    let dir = std::path::Path::new(crate::harness::REPO).join("examples/ci");
    let read = |name: &str| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(dir.join(name)).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let gh = read("github-actions.yml");
    let matrix = gh["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap();
    let runners: Vec<(&str, &str)> = matrix
        .iter()
        .map(|m| {
            (
                m["platform"].as_str().unwrap(),
                m["runner"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runners,
        [
            ("linux/amd64", "ubuntu-24.04"),
            ("linux/arm64", "ubuntu-24.04-arm")
        ]
    );
    let steps = |job: &str| -> String { serde_yaml::to_string(&gh["jobs"][job]["steps"]).unwrap() };
    assert!(steps("build").contains("examples/ci/build-by-digest.sh"));
    assert!(steps("merge").contains("examples/ci/merge.sh"));
    assert_eq!(gh["jobs"]["merge"]["needs"], "build");

    let gl = read("gitlab-ci.yml");
    let platforms: Vec<&str> = gl["build"]["parallel"]["matrix"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["PLATFORM"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert!(
        serde_yaml::to_string(&gl["build"]["script"])
            .unwrap()
            .contains("examples/ci/build-by-digest.sh")
    );
    assert!(
        serde_yaml::to_string(&gl["merge"]["script"])
            .unwrap()
            .contains("examples/ci/merge.sh")
    );

    // The scripts themselves: the commands of the flow.
    let build = std::fs::read_to_string(dir.join("build-by-digest.sh")).unwrap();
    assert!(build.contains("build --platform \"$platform\" --push-by-digest \"$repo\""));
    assert!(build.contains("--metadata-file"));
    let merge = std::fs::read_to_string(dir.join("merge.sh")).unwrap();
    assert!(merge.contains("manifest create \"$list\""));
    assert!(merge.contains("manifest push \"$list\""));
}
