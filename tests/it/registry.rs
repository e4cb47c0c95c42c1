//! pull, push, copy, login, logout, tags and search against the real distribution registry
//! (anonymous, htpasswd Basic and token auth), faults from a proxy in front of it, and interop
//! with skopeo both ways.

use std::time::{Duration, Instant};

use crate::harness::{TestRoot, fails, ok, run, skip_unless, stderr_of, stdout_of};
use crate::registry_harness::{
    ALL_AUTH, Auth, Fault, FaultProxy, PASSWORD, Rule, TestRegistry, USER, When,
    assert_store_valid, big_image, import, layout, multi_arch, skopeo_copy, skopeo_raw_digest,
};

/// The layer digests of the single-platform image `reference` in `root`.
pub fn layers(root: &TestRoot, reference: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(root, &["inspect", "--raw", reference])).expect("a manifest");
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn blob_in_store(root: &TestRoot, digest: &str) -> bool {
    root.path()
        .join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

#[test]
fn push_pull_tags_search_in_every_auth_mode() {
    skip_unless!("docker-registry");
    for auth in ALL_AUTH {
        let registry = TestRegistry::start(auth);
        let host = registry.host();
        let a = TestRoot::new();
        let image = format!("{host}/team/busybox:1");
        let digest = import(&a, "amd64", &image);
        registry.login(&a);
        if auth != Auth::Anonymous {
            let config = std::fs::read_to_string(a.docker_config().join("config.json")).unwrap();
            assert!(config.contains(&host), "{auth:?}: {config}");
            assert!(
                !config.contains(PASSWORD) || auth == Auth::Basic,
                "{config}"
            );
        }
        let pushed = ok(&a, &["push", &image]);
        assert_eq!(pushed.trim(), digest, "{auth:?}");
        ok(&a, &["push", &image, &format!("{host}/team/busybox:2")]);

        let b = TestRoot::new();
        if auth != Auth::Anonymous {
            // Without credentials the registry refuses, with a hint to log in.
            let err = fails(&b, &["pull", &image]);
            assert!(err.contains("requires authentication"), "{auth:?}: {err}");
            assert!(
                err.contains(&format!("hint: log in with `manifold login {host}`")),
                "{err}"
            );
        }
        registry.login(&b);
        let out = ok(&b, &["pull", "-q", &image]);
        assert_eq!(out.trim(), digest, "{auth:?}");
        assert_store_valid(b.path());
        let images = ok(&b, &["images", "--no-trunc"]);
        assert!(
            images.contains(&digest.replace("sha256:", "")) || images.contains(&digest),
            "{images}"
        );

        let tags = ok(&b, &["tags", &format!("{host}/team/busybox")]);
        assert_eq!(tags, "1\n2\n", "{auth:?}");
        let found = ok(&b, &["search", &format!("{host}/busy")]);
        assert!(
            found.contains(&format!("{host}/team/busybox")),
            "{auth:?}: {found}"
        );
        let none = ok(&b, &["search", &format!("{host}/nothing-like-this")]);
        assert_eq!(none, "NAME\n");

        if auth != Auth::Anonymous {
            let out = run(&b, &["logout", &host]);
            assert!(out.status.success());
            assert!(
                stderr_of(&out).contains("Removed login credentials"),
                "{}",
                stderr_of(&out)
            );
            fails(&b, &["tags", &format!("{host}/team/busybox")]);
        }
    }
}

#[test]
fn login_checks_credentials_before_storing_them_and_never_shows_them() {
    skip_unless!("docker-registry");
    for auth in [Auth::Basic, Auth::Token] {
        let registry = TestRegistry::start(auth);
        let root = TestRoot::new();
        let out = root
            .manifold()
            .args([
                "-v",
                "login",
                "-u",
                USER,
                "--password-stdin",
                &registry.host(),
            ])
            .write_stdin("not-the-password\n")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{auth:?}");
        let err = stderr_of(&out);
        assert!(err.contains("refused the credentials"), "{auth:?}: {err}");
        assert!(!err.contains("not-the-password"), "{err}");
        assert!(!root.docker_config().join("config.json").exists());

        let out = root
            .manifold()
            .args([
                "-v",
                "login",
                "-u",
                USER,
                "--password-stdin",
                &registry.host(),
            ])
            .write_stdin(format!("{PASSWORD}\n"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("Login Succeeded"));
        import(&root, "amd64", &format!("{}/x/y:1", registry.host()));
        let out = run(
            &root,
            &["-v", "push", &format!("{}/x/y:1", registry.host())],
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
        let all = format!("{}{}", stderr_of(&out), stdout_of(&out));
        assert!(all.contains("registry: "), "-v shows requests: {all}");
        assert!(!all.contains(PASSWORD), "{all}");
        assert!(!all.contains("Bearer ") && !all.contains("Basic "), "{all}");
        if auth == Auth::Token {
            // The token server gave a refresh token for the password; that is what is stored
            // and what later requests use (the OAuth2 POST).
            let config = std::fs::read_to_string(root.docker_config().join("config.json")).unwrap();
            assert!(config.contains("identitytoken"), "{config}");
            assert!(!config.contains(PASSWORD), "{config}");
            let requests = registry.issuer.as_ref().unwrap().requests();
            assert!(
                requests
                    .iter()
                    .any(|r| r.method == "POST" && r.who == "refresh:alice"),
                "{requests:?}"
            );
            assert!(!all.contains("refresh-"), "{all}");
        }
    }
}

#[test]
fn anonymous_tokens_and_a_new_token_for_a_missing_scope() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Token);
    let host = registry.host();
    let owner = TestRoot::new();
    registry.login(&owner);
    import(&owner, "amd64", &format!("{host}/public/bb:1"));
    ok(&owner, &["push", &format!("{host}/public/bb:1")]);
    // Anonymous: the issuer grants pull on public/ only.
    let anon = TestRoot::new();
    ok(&anon, &["pull", &format!("{host}/public/bb:1")]);
    let requests = registry.issuer.as_ref().unwrap().requests();
    assert!(
        requests
            .iter()
            .any(|r| r.who == "anonymous" && r.scopes == ["repository:public/bb:pull"]),
        "{requests:?}"
    );
    let err = fails(
        &anon,
        &[
            "push",
            &format!("{host}/public/bb:1"),
            &format!("{host}/private/bb:1"),
        ],
    );
    assert!(err.contains(&host), "{err}");

    // Cross-repository mount: the token asks for pull on the source repository too.
    ok(
        &owner,
        &[
            "push",
            &format!("{host}/public/bb:1"),
            &format!("{host}/other/bb:1"),
        ],
    );
    let requests = registry.issuer.as_ref().unwrap().requests();
    assert!(
        requests.iter().any(|r| r
            .scopes
            .contains(&"repository:other/bb:pull,push".to_string())
            && r.scopes.contains(&"repository:public/bb:pull".to_string())),
        "{requests:?}"
    );
}

#[test]
fn multi_platform_pull_keeps_the_index_and_fetches_one_platform() {
    skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let src = TestRoot::new();
    let image = format!("{host}/multi/busybox:1");
    let index = multi_arch(&src, &["amd64", "arm64", "armhf"], &image);
    skopeo_copy(
        &registry,
        &["--all", "--preserve-digests"],
        &format!("oci:{}:{image}", layout(&src).display()),
        &format!("docker://{image}"),
    );
    assert_eq!(skopeo_raw_digest(&registry, &image), index);

    // The host's platform by default (linux/amd64 here), then another by --platform.
    let root = TestRoot::new();
    assert_eq!(ok(&root, &["pull", "-q", &image]).trim(), index);
    let listing = ok(&root, &["images"]);
    assert!(listing.contains("(1/3 present)"), "{listing}");
    assert_eq!(
        ok(&root, &["pull", "-q", "--platform", "linux/arm64", &image]).trim(),
        index
    );
    assert!(ok(&root, &["images"]).contains("(2/3 present)"));

    // A subset is pushed as a new index of the platforms asked for.
    let subset = ok(
        &root,
        &[
            "push",
            "--platform",
            "linux/arm64",
            &image,
            &format!("{host}/multi/arm:1"),
        ],
    );
    assert_ne!(subset.trim(), index);
    let raw = ok(
        &root,
        &[
            "pull",
            "--all-platforms",
            "-q",
            &format!("{host}/multi/arm:1"),
        ],
    );
    assert_eq!(raw.trim(), subset.trim());
    let v: serde_json::Value = serde_json::from_str(&ok(
        &root,
        &["inspect", "--raw", &format!("{host}/multi/arm:1")],
    ))
    .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["platform"]["architecture"], "arm64");

    // The sparse index is pushed whole, with its digest: the platform the store lacks is
    // fetched from the registry the image is named after first.
    assert!(ok(&root, &["images"]).contains("(2/3 present)"));
    assert_eq!(
        ok(&root, &["push", &image, &format!("{host}/multi/copy:1")]).trim(),
        index
    );
    assert_eq!(
        skopeo_raw_digest(&registry, &format!("{host}/multi/copy:1")),
        index
    );
    assert!(!ok(&root, &["images"]).contains("present"));

    // All platforms: the whole index pushes back with its digest.
    let all = TestRoot::new();
    assert_eq!(
        ok(&all, &["pull", "-q", "--all-platforms", &image]).trim(),
        index
    );
    assert!(!ok(&all, &["images"]).contains("present"));
    assert_eq!(
        ok(&all, &["push", &image, &format!("{host}/multi/again:1")]).trim(),
        index
    );

    // A platform the index lacks: a clear error listing what it has.
    let err = fails(
        &TestRoot::new(),
        &["pull", "--platform", "linux/s390x", &image],
    );
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn interop_with_skopeo_both_ways() {
    skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Basic);
    let host = registry.host();
    // skopeo pushes, manifold pulls: the same digest.
    let src = TestRoot::new();
    let by_skopeo = format!("{host}/interop/skopeo:1");
    let digest = import(&src, "arm64", &by_skopeo);
    skopeo_copy(
        &registry,
        &["--preserve-digests"],
        &format!("oci:{}:{by_skopeo}", layout(&src).display()),
        &format!("docker://{by_skopeo}"),
    );
    let root = TestRoot::new();
    registry.login(&root);
    assert_eq!(ok(&root, &["pull", "-q", &by_skopeo]).trim(), digest);

    // manifold pushes, skopeo pulls: the same digest, and skopeo verifies the blobs.
    let by_manifold = format!("{host}/interop/manifold:1");
    let digest2 = import(&root, "armhf", &by_manifold);
    ok(&root, &["push", &by_manifold]);
    assert_eq!(skopeo_raw_digest(&registry, &by_manifold), digest2);
    let dir = root.scratch("skopeo-out");
    skopeo_copy(
        &registry,
        &["--preserve-digests"],
        &format!("docker://{by_manifold}"),
        &format!("oci:{}:x", dir.display()),
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest2.as_str());
}

#[test]
fn copy_between_repositories_and_registries_preserves_digests() {
    skip_unless!("docker-registry", "skopeo");
    let one = TestRegistry::start(Auth::Anonymous);
    let two = TestRegistry::start(Auth::Basic);
    let root = TestRoot::new();
    let image = format!("{}/src/multi:1", one.host());
    let index = multi_arch(&root, &["amd64", "arm64"], &image);
    ok(&root, &["push", &image]);

    // Same registry: blobs are mounted, not uploaded.
    let out = root
        .manifold()
        .args([
            "--progress",
            "plain",
            "copy",
            &image,
            &format!("{}/dst/multi:1", one.host()),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), index);
    assert!(stderr_of(&out).contains(": mounted"), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains(": done"), "{}", stderr_of(&out));

    // Another registry (with auth): streamed across, all platforms, same digest.
    two.login(&root);
    let dest = format!("{}/promoted/multi:1", two.host());
    assert_eq!(ok(&root, &["copy", &image, &dest]).trim(), index);
    assert_eq!(skopeo_raw_digest(&two, &dest), index);

    // Only some platforms: a new index of that subset.
    let sub = ok(
        &root,
        &[
            "copy",
            "--platform",
            "linux/arm64",
            &image,
            &format!("{}/promoted/arm:1", two.host()),
        ],
    );
    assert_ne!(sub.trim(), index);
    let check = TestRoot::new();
    two.login(&check);
    assert_eq!(
        ok(
            &check,
            &[
                "pull",
                "-q",
                "--platform",
                "linux/arm64",
                &format!("{}/promoted/arm:1", two.host())
            ]
        )
        .trim(),
        sub.trim()
    );
    // Nothing went through the store.
    assert!(ok(&root, &["images", "-q"]).lines().count() == 1);
}

#[test]
fn push_remembers_where_blobs_live_and_mounts_them() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let a = TestRoot::new();
    import(&a, "amd64", &format!("{host}/first/bb:1"));
    ok(&a, &["push", &format!("{host}/first/bb:1")]);
    // Pulled elsewhere, the store remembers `first/bb`; pushing to another repository mounts.
    let b = TestRoot::new();
    ok(&b, &["pull", &format!("{host}/first/bb:1")]);
    let locations = b.path().join("meta-v1/blob-locations/sha256");
    assert!(std::fs::read_dir(&locations).unwrap().count() >= 2);
    // Pushed once, every blob is mounted from `first/bb`; pushed again, everything exists.
    for outcome in [": mounted", ": exists"] {
        let out = b
            .manifold()
            .args([
                "--progress",
                "plain",
                "push",
                &format!("{host}/first/bb:1"),
                &format!("{host}/second/bb:1"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert_eq!(err.matches(outcome).count(), 2, "{err}");
    }
}

#[test]
fn progress_plain_prints_one_line_per_layer_event_and_quiet_only_the_digest() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let image = format!("{}/p/bb:1", registry.host());
    let root = TestRoot::new();
    let digest = import(&root, "amd64", &image);
    ok(&root, &["push", &image]);
    let fresh = TestRoot::new();
    let out = fresh
        .manifold()
        .args(["--progress", "plain", "pull", &image])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    let layer = &layers(&root, &image)[0];
    let short = &layer["sha256:".len().."sha256:".len() + 12];
    assert!(err.contains(&format!("{short}: started")), "{err}");
    assert!(err.contains(&format!("{short}: done")), "{err}");
    assert!(err.contains(&format!("Digest: {digest}")), "{err}");
    let again = TestRoot::new();
    let out = again
        .manifold()
        .args(["--progress", "plain", "pull", "-q", &image])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out).trim(), digest);
    assert_eq!(stderr_of(&out), "");
}

// --- faults ------------------------------------------------------------------------------------

struct Faulty {
    registry: TestRegistry,
    proxy: FaultProxy,
    image: String,
    digest: String,
    layer: String,
}

/// An image pushed to a registry directly, and a proxy in front of that registry.
fn faulty() -> Faulty {
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let direct = format!("{}/f/bb:1", registry.host());
    let digest = import(&root, "amd64", &direct);
    ok(&root, &["push", &direct]);
    let layer = layers(&root, &direct).remove(0);
    Faulty {
        image: format!("{}/f/bb:1", proxy.host()),
        registry,
        proxy,
        digest,
        layer,
    }
}

#[test]
fn pull_survives_5xx_429_resets_and_truncation() {
    skip_unless!("docker-registry");
    let f = faulty();
    let cases: Vec<(&str, Vec<Rule>)> = vec![
        (
            "500 on the manifest",
            vec![Rule::new(
                "GET",
                "/manifests/",
                2,
                Fault::Status(500, vec![]),
            )],
        ),
        (
            "503 on the layer",
            vec![Rule::new("GET", &f.layer, 2, Fault::Status(503, vec![]))],
        ),
        (
            "429 with Retry-After",
            vec![Rule::new(
                "GET",
                &f.layer,
                1,
                Fault::Status(429, vec![("Retry-After".into(), "1".into())]),
            )],
        ),
        (
            "reset in the middle of the layer",
            vec![Rule::new("GET", &f.layer, 2, Fault::ResetAfter(200_000))],
        ),
        (
            "truncated layer",
            vec![Rule::new("GET", &f.layer, 1, Fault::TruncateAfter(300_000))],
        ),
        (
            "500 on the token-less ping",
            vec![Rule::new("GET", "/v2/", 1, Fault::Status(502, vec![]))],
        ),
    ];
    for (name, rules) in cases {
        f.proxy.clear();
        for r in rules {
            f.proxy.add(r);
        }
        let root = TestRoot::new();
        let started = Instant::now();
        let out = run(&root, &["pull", "-q", &f.image]);
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        assert_eq!(stdout_of(&out).trim(), f.digest, "{name}");
        assert_eq!(f.proxy.pending(), 0, "{name}: the fault was not hit");
        assert_store_valid(root.path());
        let seen = f.proxy.seen();
        match name {
            "429 with Retry-After" => {
                // Retry-After: 1 was honoured (the retry came no sooner).
                assert!(started.elapsed() >= Duration::from_secs(1), "{name}");
            }
            "reset in the middle of the layer" | "truncated layer" => {
                let resumed = seen
                    .iter()
                    .filter(|s| s.target.contains(&f.layer))
                    .filter_map(|s| s.range.clone())
                    .collect::<Vec<_>>();
                assert!(!resumed.is_empty(), "{name}: no Range request in {seen:?}");
                assert!(resumed.iter().all(|r| r != "bytes=0-"), "{resumed:?}");
            }
            _ => {}
        }
    }
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_an_error_and_never_stored() {
    skip_unless!("docker-registry");
    let f = faulty();
    f.proxy.add(Rule::new("GET", &f.layer, 10, Fault::Corrupt));
    let root = TestRoot::new();
    let err = fails(&root, &["pull", &f.image]);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains(&f.layer), "{err}");
    assert!(!blob_in_store(&root, &f.layer));
    assert_store_valid(root.path());
    assert!(!ok(&root, &["images", "-q"]).contains(&f.digest[7..19]));
    // A persistent 500 ends in a clear error too, after bounded retries.
    f.proxy.clear();
    f.proxy
        .add(Rule::new("GET", &f.layer, 100, Fault::Status(500, vec![])));
    let err = fails(&TestRoot::new(), &["pull", &f.image]);
    assert!(err.contains("500"), "{err}");
    let tries = f
        .proxy
        .seen()
        .iter()
        .filter(|s| s.target.contains(&f.layer))
        .count();
    assert!((2..=20).contains(&tries), "bounded retries, got {tries}");
}

#[test]
fn schema1_and_a_disabled_catalog_are_clear_errors() {
    skip_unless!("docker-registry");
    let f = faulty();
    f.proxy.add(Rule::new(
        "GET",
        "/manifests/old",
        1,
        Fault::Respond(
            200,
            vec![(
                "Content-Type".into(),
                "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
            )],
            br#"{"schemaVersion":1,"name":"f/bb","tag":"old","fsLayers":[]}"#.to_vec(),
        ),
    ));
    let err = fails(
        &TestRoot::new(),
        &["pull", &format!("{}/f/bb:old", f.proxy.host())],
    );
    assert!(err.contains("schema1"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    f.proxy.add(Rule::new(
        "GET",
        "/v2/_catalog",
        1,
        Fault::Status(404, vec![]),
    ));
    let err = fails(
        &TestRoot::new(),
        &["search", &format!("{}/bb", f.proxy.host())],
    );
    assert!(err.contains("does not offer a catalog"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    // Unknown tags: named in the error, with a hint.
    let err = fails(
        &TestRoot::new(),
        &["pull", &format!("{}/f/bb:nope", f.registry.host())],
    );
    assert!(err.contains("`f/bb:nope` not found"), "{err}");
}

#[test]
fn tags_and_catalog_follow_link_pagination() {
    skip_unless!("docker-registry");
    let f = faulty();
    let root = TestRoot::new();
    import(&root, "amd64", &format!("{}/f/bb:1", f.registry.host()));
    for t in ["2", "3", "4"] {
        ok(
            &root,
            &[
                "push",
                &format!("{}/f/bb:1", f.registry.host()),
                &format!("{}/f/bb:{t}", f.registry.host()),
            ],
        );
        ok(
            &root,
            &[
                "push",
                &format!("{}/f/bb:1", f.registry.host()),
                &format!("{}/g{t}/bb:1", f.registry.host()),
            ],
        );
    }
    assert_eq!(
        ok(&root, &["tags", &format!("{}/f/bb", f.registry.host())]),
        "1\n2\n3\n4\n"
    );
    // distribution 2.8 does not paginate tags: a first page with a Link header comes from the
    // proxy, the next page (the registry's answer) is followed.
    f.proxy.add(Rule::new(
        "GET",
        "/tags/list?n=",
        1,
        Fault::Respond(
            200,
            vec![
                ("Content-Type".into(), "application/json".into()),
                (
                    "Link".into(),
                    r#"</v2/f/bb/tags/list?last=b>; rel="next""#.into(),
                ),
            ],
            br#"{"name":"f/bb","tags":["a","b"]}"#.to_vec(),
        ),
    ));
    assert_eq!(
        ok(&root, &["tags", &format!("{}/f/bb", f.proxy.host())]),
        "1\n2\n3\n4\na\nb\n"
    );
    assert!(
        f.proxy
            .seen()
            .iter()
            .any(|s| s.target == "/v2/f/bb/tags/list?last=b")
    );
    // The catalog does paginate: one repository per page.
    *f.proxy.page.lock().unwrap() = Some(1);
    let found = ok(
        &root,
        &["search", "--limit", "2", &format!("{}/bb", f.proxy.host())],
    );
    assert_eq!(found.lines().count(), 3, "{found}");
    let all = ok(
        &root,
        &[
            "search",
            "--format",
            "json",
            &format!("{}/bb", f.proxy.host()),
        ],
    );
    assert_eq!(all.lines().count(), 4, "{all}");
    let pages = f
        .proxy
        .seen()
        .iter()
        .filter(|s| s.target.contains("/_catalog"))
        .count();
    assert!(pages >= 8, "one request per page: {pages}");
}

#[test]
fn push_resumes_chunked_uploads_and_retries_failures() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let image = format!("{}/big/blob:1", proxy.host());
    let digest = big_image(&root, &image);
    let layer = layers(&root, &image).remove(0);
    // The layer streamed in one PUT breaks off (it is sent again in chunks, which resume), the
    // first PATCH breaks off mid-request (the session is then lost: the blob starts over), the
    // next answers 503 (the chunk is resent from where the registry says it is), and the
    // manifest PUT answers 503 once: all recovered.
    proxy.add(
        Rule::new(
            "PUT",
            layer.trim_start_matches("sha256:"),
            1,
            Fault::ResetRequestAfter(4 << 20),
        )
        .when(When::Body),
    );
    proxy.add(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        1,
        Fault::ResetRequestAfter(4 << 20),
    ));
    proxy.add(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        1,
        Fault::Status(503, vec![]),
    ));
    proxy.add(Rule::new(
        "PUT",
        "/manifests/",
        1,
        Fault::Status(503, vec![]),
    ));
    let out = run(&root, &["push", &image]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    assert!(
        stderr_of(&out).contains("broke off: sending large blobs in resumable chunks"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(proxy.pending(), 0);
    let seen = proxy.seen();
    assert!(
        seen.iter().filter(|s| s.method == "PATCH").count() >= 3,
        "chunked: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.method == "GET" && s.target.contains("/blobs/uploads/")),
        "the upload status was asked to resume: {seen:?}"
    );
    let check = TestRoot::new();
    assert_eq!(
        ok(
            &check,
            &["pull", "-q", &format!("{}/big/blob:1", registry.host())]
        )
        .trim(),
        digest
    );
    assert_store_valid(check.path());
}

#[test]
fn a_pull_killed_halfway_completes_when_run_again() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let image = format!("{}/big/blob:1", registry.host());
    let digest = big_image(&root, &image);
    ok(&root, &["push", &image]);
    let layer = layers(&root, &image).remove(0);
    // Slow the layer down so the kill lands in the middle of it.
    proxy.add(Rule::new("GET", &layer, 1, Fault::Throttle(4 << 20)));
    let target = TestRoot::new();
    let via_proxy = format!("{}/big/blob:1", proxy.host());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_manifold"))
        .arg("--root")
        .arg(target.path())
        .args(["--progress", "none", "pull", &via_proxy])
        .env("DOCKER_CONFIG", target.docker_config())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let tmp = target.path().join("tmp-v1");
    // Wait until the layer is partly written.
    loop {
        let partial = std::fs::read_dir(&tmp)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
            })
            .unwrap_or(false);
        if partial {
            break;
        }
        assert!(Instant::now() < deadline, "the pull never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !blob_in_store(&target, &layer),
        "no partial blob is visible"
    );
    assert_store_valid(target.path());
    let out = run(&target, &["pull", "-q", &via_proxy]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).trim(), digest);
    assert!(blob_in_store(&target, &layer));
    assert_store_valid(target.path());
    // prune clears the leftover temp file of the killed run.
    ok(&target, &["prune", "-f"]);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

// --- TLS and reachability --------------------------------------------------------------------

#[test]
fn tls_registries_use_certs_d_or_insecure_registry() {
    skip_unless!("docker-registry");
    let registry = TestRegistry::start_tls();
    let host = registry.host();
    let root = TestRoot::new();
    import(&root, "amd64", &format!("{host}/tls/bb:1"));
    let certs = root.scratch("certs.d");
    // Unknown CA: refused (and not silently downgraded to HTTP).
    let out = root
        .manifold()
        .env("MANIFOLD_CERTS_DIRS", &certs)
        .args(["push", &format!("{host}/tls/bb:1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The CA in certs.d/HOST:PORT/ca.crt: verified and accepted.
    std::fs::create_dir_all(certs.join(&host)).unwrap();
    std::fs::write(
        certs.join(&host).join("ca.crt"),
        registry.ca_pem.as_ref().unwrap(),
    )
    .unwrap();
    let out = root
        .manifold()
        .env("MANIFOLD_CERTS_DIRS", &certs)
        .args(["-v", "push", &format!("{host}/tls/bb:1")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("https://{host}/v2/")),
        "{}",
        stderr_of(&out)
    );
    // --insecure-registry: TLS without verification.
    let other = TestRoot::new();
    let out = other
        .manifold()
        .env("MANIFOLD_CERTS_DIRS", other.scratch("empty"))
        .args([
            "--insecure-registry",
            &host,
            "pull",
            &format!("{host}/tls/bb:1"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn an_unreachable_registry_is_a_clear_error() {
    let root = TestRoot::new();
    let port = crate::registry_harness::free_port();
    let err = fails(
        &root,
        &["pull", &format!("127.0.0.1:{port}/nothing/here:1")],
    );
    assert!(
        err.contains(&format!("cannot reach `127.0.0.1:{port}`")),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    let err = fails(&root, &["pull", "-a", "127.0.0.1:1/x:1"]);
    assert!(err.contains("--all-tags"), "{err}");
}

#[test]
fn credentials_from_a_credential_helper() {
    skip_unless!("docker-registry");
    use std::os::unix::fs::PermissionsExt;
    let registry = TestRegistry::start(Auth::Basic);
    let host = registry.host();
    let root = TestRoot::new();
    // A docker-credential helper that keeps one secret in a file next to it.
    let bin = root.scratch("bin");
    let store = bin.join("secret.json");
    let helper = bin.join("docker-credential-mftest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nset -e\ncase \"$1\" in\n  store) cat > {s} ;;\n  get) read -r server || true; [ -f {s} ] || {{ echo 'credentials not found in native keychain'; exit 1; }}; cat {s} ;;\n  erase) rm -f {s} ;;\nesac\n",
            s = store.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        root.docker_config().join("config.json"),
        r#"{"credsStore":"mftest","detachKeys":"ctrl-x"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = root
        .manifold()
        .env("PATH", &path)
        .args(["login", "-u", USER, "--password-stdin", &host])
        .write_stdin(PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("docker-credential-mftest"),
        "{}",
        stderr_of(&out)
    );
    assert!(std::fs::read_to_string(&store).unwrap().contains(PASSWORD));
    let config = std::fs::read_to_string(root.docker_config().join("config.json")).unwrap();
    assert!(
        !config.contains(PASSWORD) && config.contains("detachKeys"),
        "{config}"
    );
    import(&root, "amd64", &format!("{host}/helper/bb:1"));
    let out = root
        .manifold()
        .env("PATH", &path)
        .args(["push", &format!("{host}/helper/bb:1")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = root
        .manifold()
        .env("PATH", &path)
        .args(["logout", &host])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!store.exists());
}
