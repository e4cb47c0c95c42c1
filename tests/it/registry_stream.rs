//! Large blobs uploaded in one streamed request (as `curl -T` does) between two real registries,
//! and the chunked upload where a registry refuses that form.

use crate::harness::{TestRoot, ok, run, skip_unless, stderr_of};
use crate::registry::layers;
use crate::registry_harness::{
    Auth, Fault, FaultProxy, Rule, Seen, TestRegistry, When, assert_store_valid, big_image,
};

/// A 20 MiB image pushed to a first registry, and a second registry behind a proxy (its rules
/// added by the test) to copy it to.
struct TwoRegistries {
    /// Where the image was made and pushed from.
    _root: TestRoot,
    source: String,
    layer: String,
    digest: String,
    _from: TestRegistry,
    to: TestRegistry,
    proxy: FaultProxy,
}

impl TwoRegistries {
    fn start() -> TwoRegistries {
        let from = TestRegistry::start(Auth::Anonymous);
        let to = TestRegistry::start(Auth::Anonymous);
        let proxy = FaultProxy::start(to.port());
        let root = TestRoot::new();
        let source = format!("{}/big/blob:1", from.host());
        let digest = big_image(&root, &source);
        ok(&root, &["push", &source]);
        let layer = layers(&root, &source).remove(0);
        TwoRegistries {
            _root: root,
            source,
            layer,
            digest,
            _from: from,
            to,
            proxy,
        }
    }

    /// Copy the image through the proxy to `repository`: manifold's stderr.
    fn copy(&self, repository: &str) -> String {
        // A new root: nothing of the image is local, every byte comes from the first registry.
        let copier = TestRoot::new();
        let dest = format!("{}/{repository}:1", self.proxy.host());
        let out = run(&copier, &["copy", &self.source, &dest]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        stderr_of(&out)
    }

    /// Pull `repository` back from the second registry itself: the digest is the source's and
    /// every blob checks out.
    fn assert_arrived(&self, repository: &str) {
        let check = TestRoot::new();
        let image = format!("{}/{repository}:1", self.to.host());
        assert_eq!(ok(&check, &["pull", "-q", &image]).trim(), self.digest);
        assert_store_valid(check.path());
    }

    /// The uploads of the layer the proxy saw (the PUT closing a session names its digest).
    fn layer_uploads(&self) -> Vec<Seen> {
        self.proxy
            .seen()
            .into_iter()
            .filter(|s| s.target.contains("/blobs/uploads/") && s.method != "POST")
            .filter(|s| {
                s.method == "PATCH" || s.target.contains(self.layer.trim_start_matches("sha256:"))
            })
            .collect()
    }
}

#[test]
fn a_large_blob_copied_between_registries_goes_in_one_streamed_put_and_arrives_intact() {
    skip_unless!("docker-registry");
    let t = TwoRegistries::start();
    let said = t.copy("big/streamed");
    assert_eq!(said, "", "nothing to say");
    let uploads = t.layer_uploads();
    // One request carrying the whole layer (over 20 MiB: twenty pieces and more), no chunks.
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    assert_eq!(uploads[0].method, "PUT");
    assert!(uploads[0].length > 20 << 20, "{uploads:#?}");
    assert!(uploads[0].content_range.is_none());
    t.assert_arrived("big/streamed");
}

#[test]
fn a_registry_refusing_blobs_in_a_put_gets_each_in_one_streamed_patch() {
    skip_unless!("docker-registry");
    let t = TwoRegistries::start();
    t.proxy.add(
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            100,
            Fault::Refuse(405, "UNSUPPORTED"),
        )
        .when(When::Body),
    );
    let said = t.copy("big/chunked");
    insta::assert_snapshot!(
        regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap().replace_all(&said, "127.0.0.1:[PORT]"),
        @"registry `127.0.0.1:[PORT]` refuses blobs in one PUT: uploading them by PATCH"
    );
    // Before the first large blob, a 1-byte probe PUT finds the refusal: the layer itself is
    // never streamed into it.
    let probes: Vec<Seen> = t
        .proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT" && s.target.contains("/blobs/uploads/") && s.length == 1)
        .collect();
    assert_eq!(probes.len(), 1, "{probes:#?}");
    assert!(probes[0].fault.is_some(), "{probes:#?}");
    let uploads = t.layer_uploads();
    // The layer in one PATCH (docker's form: no Content-Range, streamed) and the empty PUT
    // closing the session; nothing refused, no chunks.
    assert!(uploads.iter().all(|s| s.fault.is_none()), "{uploads:#?}");
    let patches: Vec<&Seen> = uploads.iter().filter(|s| s.method == "PATCH").collect();
    assert!(
        patches.iter().all(|s| s.content_range.is_none()),
        "{uploads:#?}"
    );
    let whole = patches.iter().filter(|s| s.length > 20 << 20).count();
    assert_eq!(whole, 1, "{uploads:#?}");
    let closing = uploads
        .iter()
        .filter(|s| s.method == "PUT" && s.fault.is_none())
        .collect::<Vec<_>>();
    assert_eq!(closing.len(), 1, "{uploads:#?}");
    assert_eq!(closing[0].length, 0);
    t.assert_arrived("big/chunked");
}
