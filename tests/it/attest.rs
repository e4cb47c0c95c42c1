//! Attestations and signatures (issue 13 items 1–2) against the real registry: a two-platform
//! build with provenance and an SBOM pushed as referrers (the index lists only the platforms),
//! buildx's inline form, cosign-format signatures checked with openssl and `verify --key`, and
//! `copy` keeping all of them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use manifold::oci::{Descriptor, Index, Parsed, media_type};
use manifold::reference::Reference;
use manifold::store::Store;
use serde_json::Value;

use crate::harness::{TestRoot, busybox_tree, fails, fixtures, ok, run, stderr_of};
use crate::registry_harness::{Auth, TestRegistry};

const PLATFORMS: [(&str, &str); 2] = [("amd64", "linux/amd64"), ("arm64", "linux/arm64")];

fn sh(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn deb(package: &str, arch: &str) -> PathBuf {
    let dir = fixtures().join("debs");
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("{package}_")) && n.ends_with(&format!("_{arch}.deb"))
        })
        .unwrap_or_else(|| panic!("no {package} {arch} .deb in {}", dir.display()))
}

/// A Debian-based test image `name` for linux/amd64 and linux/arm64: busybox with netbase,
/// base-files and busybox-static unpacked by `dpkg-deb -x` and listed in a dpkg status file.
/// Returns the index's digest and each platform's manifest digest.
fn debian_image(root: &TestRoot, name: &str) -> (String, Vec<String>) {
    let mut children = Vec::new();
    for (arch, platform) in PLATFORMS {
        let tree = root.scratch(&format!("debian-{arch}"));
        sh(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", busybox_tree(arch).display()))
            .arg(&tree));
        let mut status = String::new();
        for (package, deb_arch) in [
            ("netbase", "all"),
            ("base-files", arch),
            ("busybox-static", arch),
        ] {
            let file = deb(package, deb_arch);
            sh(Command::new("dpkg-deb").arg("-x").arg(&file).arg(&tree));
            let fields = sh(Command::new("dpkg-deb").arg("-f").arg(&file).args([
                "Package",
                "Version",
                "Architecture",
                "Maintainer",
            ]));
            let fields = String::from_utf8(fields).unwrap();
            let (first, rest) = fields.split_once('\n').unwrap();
            status.push_str(&format!("{first}\nStatus: install ok installed\n{rest}\n"));
        }
        fs::create_dir_all(tree.join("var/lib/dpkg")).unwrap();
        fs::write(tree.join("var/lib/dpkg/status"), status).unwrap();
        let tarball = root.scratch("tarballs").join(format!("debian-{arch}.tar"));
        sh(Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&tarball)
            .arg("."));
        let tmp = format!("tmp/debian-{arch}:1");
        ok(
            root,
            &[
                "import",
                "--platform",
                platform,
                tarball.to_str().unwrap(),
                &tmp,
            ],
        );
        let store = Store::open(root.path()).unwrap();
        let r = Reference::parse(&tmp).unwrap();
        let mut d: Descriptor = store.resolve(&r).unwrap();
        d.annotations = None;
        d.platform = Some(platform.parse().unwrap());
        children.push(d);
        store.untag(&r).unwrap();
    }
    let store = Store::open(root.path()).unwrap();
    let index = Parsed::from_value(Index::new_oci(children.clone()));
    let desc = index.descriptor(media_type::OCI_INDEX);
    let txn = store.begin().unwrap();
    txn.put_bytes(&index.bytes).unwrap();
    txn.tag(&Reference::parse(name).unwrap(), &desc).unwrap();
    (
        desc.digest.to_string(),
        children.iter().map(|c| c.digest.to_string()).collect(),
    )
}

fn context(root: &TestRoot, dockerfile: &str) -> PathBuf {
    let dir = root.scratch("context");
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    fs::write(dir.join("hello"), "hello\n").unwrap();
    dir
}

/// A manifest (or index) of `repo` in `registry`, by tag or digest, as JSON.
fn manifest(registry: &TestRegistry, repo: &str, reference: &str) -> Value {
    let out = sh(Command::new("curl").args([
        "-sf",
        "-H",
        "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
        &format!("http://{}/v2/{repo}/manifests/{reference}", registry.host()),
    ]));
    serde_json::from_slice(&out).unwrap()
}

fn blob(registry: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    sh(Command::new("curl").args([
        "-sfL",
        &format!("http://{}/v2/{repo}/blobs/{digest}", registry.host()),
    ]))
}

fn tags(registry: &TestRegistry, repo: &str) -> Vec<String> {
    let (status, body) = registry.get(&format!("/v2/{repo}/tags/list")).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// How many rows of an `inspect --attestations` listing are of `kind`.
fn kinds(listing: &str, kind: &str) -> usize {
    listing
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(kind))
        .count()
}

fn statement(root: &TestRoot, image: &str, which: &str, platform: &str) -> Value {
    let out = ok(
        root,
        &[
            "inspect",
            "--attestation",
            which,
            "--platform",
            platform,
            image,
        ],
    );
    serde_json::from_str(&out).unwrap()
}

/// An ECDSA P-256 key pair made by openssl: (PKCS#8 private key, SPKI public key).
fn openssl_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sec1 = dir.join(format!("{name}.sec1.pem"));
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    sh(Command::new("openssl")
        .args([
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
        ])
        .arg(&sec1));
    sh(Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(&sec1)
        .arg("-out")
        .arg(&key));
    sh(Command::new("openssl")
        .args(["ec", "-pubout", "-in"])
        .arg(&sec1)
        .arg("-out")
        .arg(&public));
    (key, public)
}

#[test]
fn build_attests_each_platform_through_referrers_and_signatures_verify_and_travel() {
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let root = TestRoot::new();
    let (base_index, base_manifests) = debian_image(&root, "test/debian:1");
    let ctx = context(
        &root,
        "FROM test/debian:1\nARG GREETING\nCOPY hello /hello\n",
    );
    let image = format!("{host}/app:1");
    let out = root
        .manifold()
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--provenance=max",
            "--sbom",
        ])
        .args(["--build-arg", "GREETING=hi", "-t", &image, "--push"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    // The index lists exactly the two platforms.
    let index = manifest(&registry, "app", "1");
    let entries = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // distribution 2.8 has no referrers API: the fallback tags hold them.
    let all_tags = tags(&registry, "app");
    for m in entries {
        let digest = m["digest"].as_str().unwrap();
        let fallback = digest.replace(':', "-");
        assert!(
            all_tags.contains(&fallback),
            "{all_tags:?} lacks {fallback}"
        );
        let listed = manifest(&registry, "app", &fallback);
        let attestation = &listed["manifests"][0];
        assert_eq!(
            attestation["artifactType"],
            "application/vnd.docker.attestation.manifest.v1+json"
        );
        let am = manifest(&registry, "app", attestation["digest"].as_str().unwrap());
        assert_eq!(am["subject"]["digest"], *digest);
    }

    // Read back from another root, which has nothing: the registry's copy.
    let other = TestRoot::new();
    for (i, (arch, platform)) in PLATFORMS.iter().enumerate() {
        let subject = entries[i]["digest"].as_str().unwrap();
        let p = statement(&other, &image, "provenance", platform);
        assert_eq!(p["predicateType"], "https://slsa.dev/provenance/v1");
        assert_eq!(
            format!(
                "sha256:{}",
                p["subject"][0]["digest"]["sha256"].as_str().unwrap()
            ),
            subject
        );
        let deps = p["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let base = deps
            .iter()
            .find(|d| d["name"] == "test/debian:1")
            .expect("the base image");
        assert_eq!(
            format!("sha256:{}", base["digest"]["sha256"].as_str().unwrap()),
            base_manifests[i]
        );
        assert_eq!(base["annotations"]["index"], base_index);
        let params = &p["predicate"]["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(params["args"]["GREETING"], "hi");
        assert_eq!(params["platform"], *platform);
        let steps =
            &p["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["steps"];
        assert_eq!(steps.as_array().unwrap().len(), 1, "{steps}");
        assert_eq!(steps[0]["instruction"], "COPY hello /hello");

        let s = statement(&other, &image, "sbom", platform);
        assert_eq!(s["predicate"]["spdxVersion"], "SPDX-2.3");
        let names: Vec<&str> = s["predicate"]["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for want in ["netbase", "base-files", "busybox-static"] {
            assert!(names.contains(&want), "{arch}: {names:?} lacks {want}");
        }
    }
    let listing = ok(&other, &["inspect", "--attestations", &image]);
    assert_eq!(kinds(&listing, "provenance"), 2, "{listing}");
    assert_eq!(kinds(&listing, "sbom"), 2, "{listing}");

    // A list made of the built platforms keeps their attestations when pushed.
    let list = format!("{host}/list:1");
    ok(&root, &["manifest", "create", &list, &image]);
    ok(&root, &["manifest", "push", &list]);
    let listing = ok(&other, &["inspect", "--attestations", &list]);
    assert_eq!(kinds(&listing, "provenance"), 2, "{listing}");
    assert_eq!(kinds(&listing, "sbom"), 2, "{listing}");

    // Sign (recursively): openssl verifies each signature of cosign's `.sig` tags.
    let keys = root.scratch("keys");
    let (key, public) = openssl_keys(&keys, "release");
    let signed = ok(&root, &["sign", "--key", key.to_str().unwrap(), &image]);
    assert_eq!(signed.lines().count(), 3, "{signed}");
    for digest in signed.lines() {
        let tag = format!("{}.sig", digest.replace(':', "-"));
        let sig = manifest(&registry, "app", &tag);
        let layer = &sig["layers"][0];
        assert_eq!(
            layer["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
        let payload = blob(&registry, "app", layer["digest"].as_str().unwrap());
        let p: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(p["critical"]["image"]["docker-manifest-digest"], digest);
        assert_eq!(
            p["critical"]["identity"]["docker-reference"],
            format!("{host}/app")
        );
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                layer["annotations"]["dev.cosignproject.cosign/signature"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        fs::write(keys.join("payload"), &payload).unwrap();
        fs::write(keys.join("sig.der"), &der).unwrap();
        let v = sh(Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&public)
            .arg("-signature")
            .arg(keys.join("sig.der"))
            .arg(keys.join("payload")));
        assert_eq!(String::from_utf8_lossy(&v).trim(), "Verified OK");
    }
    ok(
        &other,
        &["verify", "--key", public.to_str().unwrap(), &image],
    );
    // Signing again adds nothing.
    ok(&root, &["sign", "--key", key.to_str().unwrap(), &image]);
    assert_eq!(
        manifest(
            &registry,
            "app",
            &format!("{}.sig", signed.lines().next().unwrap().replace(':', "-"))
        )["layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another key's signature does not count.
    let (_, stranger) = openssl_keys(&keys, "stranger");
    let out = run(
        &other,
        &["verify", "--key", stranger.to_str().unwrap(), &image],
    );
    assert_eq!(out.status.code(), Some(1));
    let said = stderr_of(&out);
    for p in ["index", "linux/amd64", "linux/arm64"] {
        assert!(
            said.contains(&format!("{p} (signature does not match)")),
            "{said}"
        );
    }

    // `copy` to another repository keeps attestations and signatures.
    let promoted = format!("{host}/promoted:1");
    ok(&root, &["copy", &image, &promoted]);
    ok(
        &other,
        &["verify", "--key", public.to_str().unwrap(), &promoted],
    );
    let listing = ok(&other, &["inspect", "--attestations", &promoted]);
    assert_eq!(kinds(&listing, "provenance"), 2, "{listing}");
    assert_eq!(kinds(&listing, "sbom"), 2, "{listing}");
    assert_eq!(kinds(&listing, "signature"), 3, "{listing}");

    // Only the index signed: each platform is named unsigned.
    let partial = format!("{host}/partial:1");
    ok(&root, &["push", "test/debian:1", &partial]);
    ok(
        &root,
        &[
            "sign",
            "--no-recursive",
            "--key",
            key.to_str().unwrap(),
            &partial,
        ],
    );
    let out = run(
        &other,
        &["verify", "--key", public.to_str().unwrap(), &partial],
    );
    assert_eq!(out.status.code(), Some(1));
    let said = stderr_of(&out);
    assert!(
        said.contains("linux/amd64 (unsigned), linux/arm64 (unsigned)"),
        "{said}"
    );
    assert!(!said.contains("index (unsigned)"), "{said}");

    // An unsigned image pushed under the signed tag fails.
    ok(&root, &["push", "test/debian:1", &image]);
    let out = run(
        &other,
        &["verify", "--key", public.to_str().unwrap(), &image],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("index (unsigned)"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn index_form_lists_attestations_as_unknown_entries_as_buildx_does() {
    let root = TestRoot::new();
    debian_image(&root, "test/debian:1");
    let ctx = context(&root, "FROM test/debian:1\nCOPY hello /hello\n");
    let out = root
        .manifold()
        .args([
            "build",
            "--platform",
            "linux/amd64",
            "--attest",
            "type=sbom",
            "--attest",
            "type=provenance,mode=min",
        ])
        .args(["--attest-format", "index", "-t", "test/app:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let raw = ok(&root, &["inspect", "--raw", "test/app:1"]);
    let index: Value = serde_json::from_str(&raw).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{raw}");
    assert_eq!(entries[1]["platform"]["architecture"], "unknown");
    assert_eq!(
        entries[1]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        entries[1]["annotations"]["vnd.docker.reference.digest"],
        entries[0]["digest"]
    );
    let listing = ok(&root, &["inspect", "--attestations", "test/app:1"]);
    let settings = root.insta_settings();
    settings.bind(|| insta::assert_snapshot!(listing));
}

#[test]
fn bad_attestation_flags_and_keys_are_clear_errors() {
    let root = TestRoot::new();
    let ctx = context(&root, "FROM scratch\nCOPY hello /hello\n");
    let c = ctx.to_str().unwrap();
    let e1 = fails(&root, &["build", "--provenance=most", c]);
    let e2 = fails(&root, &["build", "--attest", "type=vex", c]);
    let e3 = fails(&root, &["build", "--sbom=maybe", c]);
    let keys = root.scratch("keys");
    fs::write(keys.join("junk.pem"), "not a key").unwrap();
    let e4 = fails(
        &root,
        &[
            "sign",
            "--key",
            keys.join("junk.pem").to_str().unwrap(),
            "127.0.0.1:1/app:1",
        ],
    );
    let settings = root.insta_settings();
    settings.bind(|| insta::assert_snapshot!([e1, e2, e3, e4].join("---\n")));
    // Nothing was stored.
    assert_eq!(ok(&root, &["images", "-q"]), "");
}

#[test]
fn generated_keys_sign_in_cosigns_encrypted_form() {
    let registry = TestRegistry::start(Auth::Anonymous);
    let root = TestRoot::new();
    let image = format!("{}/busybox:1", registry.host());
    crate::registry_harness::import(&root, "amd64", &image);
    ok(&root, &["push", &image]);
    let keys = root.scratch("keys");
    let key = keys.join("cosign.key");
    let out = root
        .manifold()
        .env("COSIGN_PASSWORD", "correct horse")
        .args(["sign", "--generate-key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{text}"
    );
    // Without the password: a clear error, nothing signed.
    let said = fails(&root, &["sign", "--key", key.to_str().unwrap(), &image]);
    assert!(said.contains("COSIGN_PASSWORD"), "{said}");
    let out = root
        .manifold()
        .env("COSIGN_PASSWORD", "correct horse")
        .args(["sign", "--key"])
        .arg(&key)
        .arg(&image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let public = keys.join("cosign.pub");
    ok(
        &root,
        &["verify", "--key", public.to_str().unwrap(), &image],
    );
    // Both checks: the signatures, then the binaries (both pass here).
    let out = run(
        &root,
        &["verify", "--key", public.to_str().unwrap(), "--elf", &image],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = stderr_of(&out);
    assert!(said.contains("image sha256:"), "{said}");
    assert!(said.contains("signature verified"), "{said}");
    assert!(said.contains("ELF files checked, 0 contradict"), "{said}");
}

#[test]
fn provenance_names_secrets_by_id_and_never_holds_their_values() {
    let root = TestRoot::new();
    crate::registry_harness::import(&root, "amd64", "test/busybox:1");
    let ctx = context(
        &root,
        "FROM test/busybox:1\nARG TOKEN\nRUN --mount=type=secret,id=token test -s /run/secrets/token\nCOPY hello /hello\n",
    );
    let secret = root.scratch("secret").join("token");
    fs::write(&secret, "hunter2-s3cret\n").unwrap();
    let out = root
        .manifold()
        .args(["build", "--platform", "linux/amd64", "--provenance=max"])
        .arg("--secret")
        .arg(format!("id=token,src={}", secret.display()))
        // A careless build passes the secret as an argument too.
        .args(["--build-arg", "TOKEN=hunter2-s3cret", "-t", "test/secret:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = ok(
        &root,
        &["inspect", "--attestation", "provenance", "test/secret:1"],
    );
    assert!(!text.contains("hunter2"), "{text}");
    let p: Value = serde_json::from_str(&text).unwrap();
    let request = &p["predicate"]["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(request["secrets"][0]["id"], "token");
    assert_ne!(request["args"]["TOKEN"], "");
}
