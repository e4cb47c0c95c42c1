use std::io::Write;

use super::*;
use crate::oci::{ImageConfig, Index, Manifest, Parsed, media_type};
use crate::reference::Reference;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    (dir, s)
}

/// A one-layer image for `platform`; returns the manifest descriptor.
fn image(store: &Store, platform: &str, layer: &[u8]) -> Descriptor {
    let layer_digest = store.begin().unwrap().put_bytes(layer).unwrap();
    let mut config = ImageConfig::default();
    config.set_platform(&platform.parse().unwrap());
    config.rootfs.diff_ids.push(layer_digest.clone());
    let config = Parsed::from_value(config);
    store.begin().unwrap().put_bytes(&config.bytes).unwrap();
    let manifest = Manifest::new_oci(
        config.descriptor(media_type::OCI_CONFIG),
        vec![Descriptor::new(
            media_type::OCI_LAYER,
            layer_digest,
            layer.len() as u64,
        )],
    );
    let manifest = Parsed::from_value(manifest);
    store.begin().unwrap().put_bytes(&manifest.bytes).unwrap();
    manifest.descriptor(media_type::OCI_MANIFEST)
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn a_new_store_is_an_empty_oci_layout() {
    let (dir, _s) = store();
    let layout = dir.path().join("images");
    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: Index =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert!(index.manifests.is_empty());
    // Opening again changes nothing.
    Store::open(dir.path()).unwrap();
}

#[test]
fn blobs_are_verified_before_they_become_visible() {
    let (_d, s) = store();
    let good = Descriptor::of(media_type::OCI_LAYER, b"hello");
    s.begin()
        .unwrap()
        .write_blob(&mut &b"hello"[..], Some(&good))
        .unwrap();
    assert!(s.has_blob(&good.digest));

    let wrong = Descriptor::of(media_type::OCI_LAYER, b"other");
    let err = s
        .begin()
        .unwrap()
        .write_blob(&mut &b"tampered"[..], Some(&wrong))
        .unwrap_err();
    assert!(err.to_string().contains("has 8 bytes"), "{err}");
    let same_size = Descriptor::of(media_type::OCI_LAYER, b"abcde");
    let err = s
        .begin()
        .unwrap()
        .write_blob(&mut &b"hello"[..], Some(&same_size))
        .unwrap_err();
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    assert!(!s.has_blob(&wrong.digest));
    assert!(!s.has_blob(&same_size.digest));
    // No temp file is left behind by a failed write.
    assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn a_dropped_writer_leaves_nothing() {
    let (_d, s) = store();
    let mut w = s.begin().unwrap().blob_writer().unwrap();
    w.write_all(b"partial").unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn tags_are_full_references_and_moving_one_keeps_the_old_image_dangling() {
    let (_d, s) = store();
    let a = image(&s, "linux/amd64", b"a");
    let b = image(&s, "linux/amd64", b"b");
    s.begin().unwrap().tag(&reference("busybox"), &a).unwrap();
    let entries = s.entries().unwrap();
    assert_eq!(
        entries[0]
            .descriptor
            .annotation(crate::oci::ANNOTATION_REF_NAME),
        Some("docker.io/library/busybox:latest")
    );
    s.begin()
        .unwrap()
        .tag(&reference("busybox:latest"), &b)
        .unwrap();
    let entries = s.entries().unwrap();
    assert_eq!(entries.len(), 2);
    let dangling: Vec<_> = entries.iter().filter(|e| e.reference.is_none()).collect();
    assert_eq!(dangling.len(), 1);
    assert_eq!(dangling[0].descriptor.digest, a.digest);
    assert_eq!(s.resolve(&reference("busybox")).unwrap().digest, b.digest);
    // Tagging the dangling image again makes it un-dangling.
    s.begin().unwrap().tag(&reference("old"), &a).unwrap();
    assert!(s.entries().unwrap().iter().all(|e| e.reference.is_some()));
}

#[test]
fn lookup_by_reference_digest_and_id_prefix() {
    let (_d, s) = store();
    let a = image(&s, "linux/amd64", b"a");
    s.begin().unwrap().tag(&reference("x/y:1"), &a).unwrap();
    assert_eq!(s.lookup("x/y:1").unwrap().descriptor.digest, a.digest);
    assert_eq!(
        s.lookup(a.digest.short()).unwrap().descriptor.digest,
        a.digest
    );
    assert_eq!(
        s.lookup(&a.digest.to_string()).unwrap().descriptor.digest,
        a.digest
    );
    assert_eq!(
        s.lookup(&format!("x/y@{}", a.digest))
            .unwrap()
            .descriptor
            .digest,
        a.digest
    );
    assert!(matches!(
        s.lookup("x/y:2"),
        Err(StoreError::ImageNotFound(_))
    ));
    assert!(matches!(
        s.lookup("Bad:Name!"),
        Err(StoreError::Reference(_))
    ));
}

#[test]
fn gc_keeps_what_tags_reach_and_removes_the_rest() {
    let (_d, s) = store();
    let a = image(&s, "linux/amd64", b"a");
    let b = image(&s, "linux/arm64", b"b");
    s.begin().unwrap().tag(&reference("a"), &a).unwrap();
    let stray = s.begin().unwrap().put_bytes(b"stray").unwrap();
    let report = s.gc().unwrap();
    // b's manifest, config and layer plus the stray blob.
    assert_eq!(report.blobs_removed, 4);
    assert!(s.has_blob(&a.digest));
    assert!(!s.has_blob(&b.digest));
    assert!(!s.has_blob(&stray));
    s.untag(&reference("a")).unwrap();
    s.gc().unwrap();
    assert!(!s.has_blob(&a.digest));
}

#[test]
fn sparse_indexes_are_allowed_and_reported() {
    let (_d, s) = store();
    let amd = image(&s, "linux/amd64", b"a");
    let mut amd_entry = amd.clone();
    amd_entry.platform = Some("linux/amd64".parse().unwrap());
    let mut arm_entry = Descriptor::of(media_type::OCI_MANIFEST, b"absent manifest");
    arm_entry.platform = Some("linux/arm64".parse().unwrap());
    let index = Parsed::from_value(Index::new_oci(vec![amd_entry, arm_entry]));
    s.begin().unwrap().put_bytes(&index.bytes).unwrap();
    let idesc = index.descriptor(media_type::OCI_INDEX);
    s.begin().unwrap().tag(&reference("multi"), &idesc).unwrap();
    let summary = s.summarize(&idesc).unwrap();
    assert!(summary.is_sparse());
    assert_eq!(summary.platforms_label(), "linux/amd64 (1/2 present)");
    let amd64: crate::platform::Platform = "linux/amd64".parse().unwrap();
    assert_eq!(
        s.platform_manifest(&idesc, Some(&amd64)).unwrap().digest,
        amd.digest
    );
    let arm64: crate::platform::Platform = "linux/arm64".parse().unwrap();
    let err = s.platform_manifest(&idesc, Some(&arm64)).unwrap_err();
    assert!(err.to_string().contains("linux/amd64"), "{err}");
    // gc keeps the present child of a sparse index.
    s.gc().unwrap();
    assert!(s.has_blob(&amd.digest));
}

#[test]
fn concurrent_tagging_loses_no_update() {
    let (_d, s) = store();
    let imgs: Vec<_> = (0..8)
        .map(|i| image(&s, "linux/amd64", format!("layer{i}").as_bytes()))
        .collect();
    std::thread::scope(|scope| {
        for (i, d) in imgs.iter().enumerate() {
            let s = s.clone();
            scope.spawn(move || {
                s.begin()
                    .unwrap()
                    .tag(&reference(&format!("img:{i}")), d)
                    .unwrap();
            });
        }
    });
    assert_eq!(s.entries().unwrap().len(), 8);
}

#[test]
fn leases_keep_untagged_blobs_from_gc() {
    let (_dir, s) = store();
    let desc = image(&s, "linux/amd64", b"leased layer");
    s.begin()
        .unwrap()
        .tag(&reference("leased:1"), &desc)
        .unwrap();
    let manifest = s.read_manifest(&desc.digest).unwrap().value;
    let mut digests = vec![desc.digest.clone(), manifest.config.digest.clone()];
    digests.extend(manifest.layers.iter().map(|l| l.digest.clone()));
    s.begin()
        .unwrap()
        .add_lease("container-1", digests.clone())
        .unwrap();
    assert_eq!(s.leases_of(&desc.digest).unwrap().len(), 1);
    s.untag(&reference("leased:1")).unwrap();
    s.remove_image(&desc.digest).unwrap();
    assert_eq!(s.gc().unwrap().blobs_removed, 0);
    for d in &digests {
        assert!(s.has_blob(d), "{d} was collected");
    }
    s.remove_lease("container-1").unwrap();
    s.remove_lease("container-1").unwrap();
    assert!(s.leases().unwrap().is_empty());
    assert_eq!(s.gc().unwrap().blobs_removed, 3);
}

#[test]
fn tag_all_is_the_same_as_tagging_one_by_one() {
    let (_d1, one) = store();
    let (_d2, all) = store();
    let mut ops = Vec::new();
    for s in [&one, &all] {
        let a = image(s, "linux/amd64", b"a");
        let b = image(s, "linux/amd64", b"b");
        let c = image(s, "linux/amd64", b"c");
        s.begin().unwrap().tag(&reference("keep:1"), &a).unwrap();
        s.begin().unwrap().tag(&reference("moved:1"), &c).unwrap();
        s.begin().unwrap().add_untagged(&b).unwrap();
        ops = vec![
            (Some(reference("moved:1")), a.clone()), // c is left dangling
            (None, b.clone()),                       // already held: nothing
            (Some(reference("new:1")), b.clone()),   // b's untagged entry goes
            (Some(reference("new:1")), b.clone()),   // the same again: no duplicate
            (None, c.clone()),                       // still dangling once
            (Some(reference("again:1")), c.clone()), // c's untagged entry goes
        ];
    }
    for (r, d) in &ops {
        match r {
            Some(r) => one.begin().unwrap().tag(r, d).unwrap(),
            None => one.begin().unwrap().add_untagged(d).unwrap(),
        }
    }
    all.begin().unwrap().tag_all(&ops).unwrap();
    let listing = |s: &Store| -> Vec<(Option<String>, Digest)> {
        s.entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.reference.map(|r| r.to_string()), e.descriptor.digest))
            .collect()
    };
    assert_eq!(listing(&one), listing(&all));
    assert_eq!(listing(&all).len(), 4, "{:?}", listing(&all));
}

#[test]
fn tag_all_refuses_a_missing_blob_and_writes_nothing() {
    let (_d, s) = store();
    let a = image(&s, "linux/amd64", b"a");
    let missing = Descriptor::of(media_type::OCI_MANIFEST, b"not stored");
    let err = s
        .begin()
        .unwrap()
        .tag_all(&[
            (Some(reference("a:1")), a),
            (Some(reference("b:1")), missing),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::BlobNotFound(_)), "{err}");
    assert!(s.entries().unwrap().is_empty());
}
