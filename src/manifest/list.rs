//! Creating, amending, annotating and removing manifest lists in the store.
//!
//! A source is any image, local or in a registry, by tag or digest. A single-platform image
//! becomes one entry whose platform is read from its config; an index is flattened into its
//! platform entries, each checked against its config, its attestation manifests kept right
//! behind the entries (attached to their subjects by `vnd.docker.reference.digest`, never
//! listed as platforms).

use std::collections::HashMap;

use super::platform::{PlatformKey, contradicts, reconcile};
use super::{ManifestError, Result};
use crate::content::{BlobLocation, Sink};
use crate::oci::{self, ANNOTATION_REF_NAME, Descriptor, Digest, Document, Index, media_type};
use crate::ops::{Ops, location_of};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{Store, StoreError, Transaction};

/// What kind of document a list is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// An OCI image index (the default).
    Oci,
    /// A Docker manifest list: only Docker schema2 children.
    Docker,
}

impl ListFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            ListFormat::Oci => media_type::OCI_INDEX,
            ListFormat::Docker => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    fn of(media_type: &str) -> ListFormat {
        if media_type == media_type::DOCKER_MANIFEST_LIST {
            ListFormat::Docker
        } else {
            ListFormat::Oci
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Add to (and replace platforms of) an existing list instead of refusing it.
    pub amend: bool,
    /// The format; an amended list keeps its own unless this says otherwise.
    pub format: Option<ListFormat>,
}

/// A list written to the store.
#[derive(Debug, Clone)]
pub struct Created {
    pub reference: Reference,
    pub descriptor: Descriptor,
    /// The platforms it lists, in order.
    pub platforms: Vec<Platform>,
    /// Attestation manifests it carries.
    pub attestations: usize,
}

/// One platform entry being assembled, with where it came from.
#[derive(Debug, Clone)]
struct Entry {
    descriptor: Descriptor,
    /// What the user named (for messages).
    source: String,
    attestations: Vec<Descriptor>,
    /// Registry repositories holding it, remembered for `push` when the store lacks its layers.
    locations: Vec<BlobLocation>,
    /// Part of the list before this command (an amended list's entries).
    existing: bool,
}

impl Entry {
    /// New entries always have a platform; an existing one may lack it (a list made elsewhere).
    fn key(&self) -> PlatformKey {
        match &self.descriptor.platform {
            Some(p) => PlatformKey::of(p),
            None => PlatformKey::of(&Platform::new("", "", None)),
        }
    }
}

/// Create the list `name` from `sources`, or with `amend` add them to it.
pub fn create(
    ops: &Ops,
    txn: &Transaction,
    name: &str,
    sources: &[String],
    options: &CreateOptions,
) -> Result<Created> {
    let store = txn;
    let list = list_reference(name)?;
    let (mut entries, mut format, base) = match store.resolve(&list) {
        Ok(existing) if !options.amend => {
            let _ = existing;
            return Err(ManifestError::ListExists(list.familiar()));
        }
        Ok(existing) => {
            let index = read_list(store, &existing, name)?;
            let entries = existing_entries(&index, &list);
            (entries, ListFormat::of(&existing.media_type), Some(index))
        }
        Err(StoreError::ImageNotFound(_)) => (Vec::new(), ListFormat::Oci, None),
        Err(e) => return Err(e.into()),
    };
    if let Some(f) = options.format {
        format = f;
    }
    let mut added: HashMap<PlatformKey, usize> = HashMap::new();
    for input in sources {
        for entry in open_source(ops, txn, input)? {
            merge(&mut entries, &mut added, entry)?;
        }
    }
    check_format(&entries, format)?;
    for e in entries.iter().filter(|e| !e.existing) {
        store.add_blob_locations(&e.descriptor.digest, &e.locations)?;
        for a in &e.attestations {
            store.add_blob_locations(&a.digest, &e.locations)?;
        }
    }
    let mut index = base.unwrap_or_else(|| Index::new_oci(Vec::new()));
    index.media_type = Some(format.media_type().to_string());
    index.manifests = entries.iter().map(|e| e.descriptor.clone()).collect();
    index
        .manifests
        .extend(entries.iter().flat_map(|e| e.attestations.iter().cloned()));
    let descriptor = write_list(store, &list, &index, format)?;
    Ok(Created {
        reference: list,
        descriptor,
        platforms: platforms_of(&index),
        attestations: index
            .manifests
            .iter()
            .filter(|d| d.is_attestation())
            .count(),
    })
}

fn list_reference(name: &str) -> Result<Reference> {
    let list = Reference::parse(name)?;
    if list.digest().is_some() {
        return Err(ManifestError::DigestName(name.to_string()));
    }
    Ok(list)
}

fn platforms_of(index: &Index) -> Vec<Platform> {
    index.images().filter_map(|d| d.platform.clone()).collect()
}

/// The index a stored list is, or `NotAList`.
fn read_list(store: &Store, desc: &Descriptor, name: &str) -> Result<Index> {
    match store.read_document(desc)?.value {
        Document::Index(index) => Ok(*index),
        Document::Manifest(_) => Err(ManifestError::NotAList(name.to_string())),
    }
}

/// An existing list's platform entries, with their attestations.
fn existing_entries(index: &Index, list: &Reference) -> Vec<Entry> {
    let source = format!("{} (already listed)", list.familiar());
    let mut entries: Vec<Entry> = index
        .manifests
        .iter()
        .filter(|d| !d.is_attestation())
        .map(|d| Entry {
            descriptor: d.clone(),
            source: source.clone(),
            attestations: Vec::new(),
            locations: Vec::new(),
            existing: true,
        })
        .collect();
    attach(
        &mut entries,
        index
            .manifests
            .iter()
            .filter(|d| d.is_attestation())
            .cloned(),
    );
    entries
}

/// Attach attestations to the entries they point at; the others are dropped (an attestation
/// of nothing in the list would be listed for nothing).
fn attach(entries: &mut [Entry], attestations: impl IntoIterator<Item = Descriptor>) {
    for a in attestations {
        let subject = a.attestation_subject();
        if let Some(e) = entries
            .iter_mut()
            .find(|e| Some(&e.descriptor.digest) == subject.as_ref())
            && !e.attestations.iter().any(|x| x.digest == a.digest)
        {
            e.attestations.push(a);
        }
    }
}

/// Add `entry`: the same image twice is kept once; a platform given by two new sources is an
/// error naming both; a platform already in an amended list is replaced (with its
/// attestations), in place.
fn merge(
    entries: &mut Vec<Entry>,
    added: &mut HashMap<PlatformKey, usize>,
    entry: Entry,
) -> Result<()> {
    if entries
        .iter()
        .any(|e| e.descriptor.digest == entry.descriptor.digest)
    {
        return Ok(());
    }
    let key = entry.key();
    if let Some(&i) = added.get(&key) {
        return Err(ManifestError::DuplicatePlatform {
            platform: entry
                .descriptor
                .platform
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            first: entries[i].source.clone(),
            second: entry.source,
        });
    }
    match entries.iter().position(|e| e.existing && e.key() == key) {
        Some(i) => {
            entries[i] = entry;
            added.insert(key, i);
        }
        None => {
            added.insert(key, entries.len());
            entries.push(entry);
        }
    }
    Ok(())
}

/// A Docker manifest list holds Docker schema2 manifests only.
fn check_format(entries: &[Entry], format: ListFormat) -> Result<()> {
    if format != ListFormat::Docker {
        return Ok(());
    }
    for e in entries {
        if e.descriptor.media_type != media_type::DOCKER_MANIFEST {
            return Err(ManifestError::DockerFormatOci {
                source_name: e.source.clone(),
                media_type: e.descriptor.media_type.clone(),
            });
        }
        if !e.attestations.is_empty() {
            return Err(ManifestError::DockerFormatAttestation(e.source.clone()));
        }
    }
    Ok(())
}

/// Serialise `index`, store it and point `list` at it. The list it replaces goes when no
/// other tag names it (an amended list is the same list, not a dangling image).
fn write_list(
    store: &Transaction,
    list: &Reference,
    index: &Index,
    format: ListFormat,
) -> Result<Descriptor> {
    let bytes = serde_json::to_vec(index).expect("OCI documents always serialise");
    let descriptor = Descriptor::of(format.media_type(), &bytes);
    Sink::put_manifest(store, &descriptor, &bytes)?;
    let old = store.resolve(list).ok();
    store.tag(list, &descriptor)?;
    if let Some(old) = old.filter(|o| o.digest != descriptor.digest) {
        store.update_entries(|entries| {
            let named = entries
                .iter()
                .any(|e| e.digest == old.digest && e.annotation(ANNOTATION_REF_NAME).is_some());
            if !named {
                entries.retain(|e| e.digest != old.digest);
            }
            Ok(())
        })?;
    }
    Ok(descriptor)
}

/// What a source names, read from the store or its registry.
struct Opened {
    descriptor: Descriptor,
    bytes: Vec<u8>,
    /// Where to read what the store lacks.
    from: Vec<BlobLocation>,
}

fn open(ops: &Ops, txn: &Transaction, input: &str) -> Result<Opened> {
    let store = txn;
    let named = Reference::parse(input).ok();
    match store.lookup(input) {
        Ok(found) => {
            let mut descriptor = found.descriptor;
            descriptor.remove_annotation(ANNOTATION_REF_NAME);
            let bytes = store.read_blob(&descriptor.digest)?;
            // Children the store lacks (a pulled index is sparse) are read from the registry
            // the image is named after.
            let from = found
                .reference
                .or(named)
                .map(|r| vec![location_of(&r)])
                .unwrap_or_default();
            Ok(Opened {
                descriptor,
                bytes,
                from,
            })
        }
        Err(StoreError::ImageNotFound(_)) => {
            let reference = Reference::parse(input)?;
            let (descriptor, bytes) = ops.resolve_remote(&reference)?;
            Ok(Opened {
                descriptor,
                bytes,
                from: vec![location_of(&reference)],
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The platform entries a source contributes.
fn open_source(ops: &Ops, txn: &Transaction, input: &str) -> Result<Vec<Entry>> {
    let opened = open(ops, txn, input)?;
    let listed = opened.descriptor.platform.clone();
    let mut root = opened.descriptor.clone();
    root.platform = None;
    root.annotations = None;
    expand(
        ops,
        txn,
        input,
        &root,
        opened.bytes,
        &opened.from,
        listed.as_ref(),
        &mut Nesting::default(),
    )
}

/// Where `expand` is in a source's indexes: how deep, and which children it took already (a
/// DAG of indexes sharing children is flattened once per child, not once per path).
#[derive(Default)]
struct Nesting {
    depth: usize,
    seen: std::collections::HashSet<crate::oci::Digest>,
}

// The context (operations, transaction), the source and where the walk is, passed apart.
#[allow(clippy::too_many_arguments)]
fn expand(
    ops: &Ops,
    txn: &Transaction,
    input: &str,
    desc: &Descriptor,
    bytes: Vec<u8>,
    from: &[BlobLocation],
    listed: Option<&Platform>,
    nesting: &mut Nesting,
) -> Result<Vec<Entry>> {
    let nested = nesting.depth > 0;
    let store = txn;
    // An index's children are told apart by digest.
    let source = if !nested || input.contains(&desc.digest.to_string()) {
        input.to_string()
    } else {
        format!("{input} ({})", desc.digest)
    };
    match oci::parse_document(&desc.media_type, bytes.clone())?.value {
        Document::Manifest(m) => {
            if !media_type::is_config(&m.config.media_type) {
                return Err(ManifestError::NotAnImage {
                    source_name: source,
                    media_type: m.config.media_type.clone(),
                });
            }
            if !store.store().has_blob(&desc.digest) {
                Sink::put_manifest(store, desc, &bytes)?;
            }
            let config = ops.config(txn, &m.config, from, true)?.ok_or_else(|| {
                ManifestError::ChildUnavailable {
                    list: input.to_string(),
                    digest: m.config.digest.clone(),
                    what: "an image config".into(),
                }
            })?;
            let declared = config.value.platform();
            let platform = reconcile(listed, &declared)
                .map_err(|config| ManifestError::Contradiction {
                    source_name: source.clone(),
                    listed: listed.map(ToString::to_string).unwrap_or_default(),
                    config: config.to_string(),
                })?
                .ok_or_else(|| ManifestError::NoPlatform(source.clone()))?;
            let mut descriptor = desc.clone();
            descriptor.platform = Some(platform);
            let locations = if store.is_complete(&desc.digest) {
                Vec::new()
            } else {
                from.to_vec()
            };
            Ok(vec![Entry {
                descriptor,
                source,
                attestations: Vec::new(),
                locations,
                existing: false,
            }])
        }
        Document::Index(index) => {
            let mut entries = Vec::new();
            let mut attestations = Vec::new();
            for child in &index.manifests {
                if child.is_attestation() {
                    // Kept in the store like the other children's manifests, for push.
                    ops.document(txn, child, from, true)?;
                    attestations.push(child.clone());
                    continue;
                }
                if !nesting.seen.insert(child.digest.clone()) {
                    continue;
                }
                if !(child.is_manifest() || child.is_index()) {
                    return Err(ManifestError::UnsupportedEntry {
                        source_name: source,
                        digest: child.digest.clone(),
                        media_type: child.media_type.clone(),
                    });
                }
                let child_bytes = ops.document(txn, child, from, true)?.ok_or_else(|| {
                    ManifestError::ChildUnavailable {
                        list: input.to_string(),
                        digest: child.digest.clone(),
                        what: child
                            .platform
                            .as_ref()
                            .map_or("a child".into(), |p| format!("`{p}`")),
                    }
                })?;
                let mut bare = child.clone();
                bare.platform = None;
                bare.annotations = None;
                if child.is_index() && nesting.depth >= oci::MAX_INDEX_DEPTH {
                    return Err(oci::OciError::TooDeep {
                        limit: oci::MAX_INDEX_DEPTH,
                        digest: child.digest.clone(),
                    }
                    .into());
                }
                nesting.depth += 1;
                let expanded = expand(
                    ops,
                    txn,
                    input,
                    &bare,
                    child_bytes,
                    from,
                    child.platform.as_ref(),
                    nesting,
                );
                nesting.depth -= 1;
                let mut expanded = expanded?;
                // The index entry's annotations belong to the entry.
                if child.is_manifest()
                    && let Some(e) = expanded.first_mut()
                {
                    e.descriptor.annotations = child.annotations.clone();
                    e.descriptor.urls = child.urls.clone();
                }
                entries.extend(expanded);
            }
            attach(&mut entries, attestations);
            Ok(entries)
        }
    }
}

/// What `annotate` changes in an entry's platform; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Annotation {
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    pub os_version: Option<String>,
    pub os_features: Option<Vec<String>>,
}

impl Annotation {
    fn apply(&self, p: &mut Platform) {
        let set = |field: &mut Option<String>, value: &Option<String>| {
            if let Some(v) = value {
                *field = Some(v.clone()).filter(|v| !v.is_empty());
            }
        };
        if let Some(os) = &self.os {
            p.os = os.to_ascii_lowercase();
        }
        if let Some(arch) = &self.architecture {
            p.architecture = arch.to_ascii_lowercase();
        }
        set(&mut p.variant, &self.variant);
        set(&mut p.os_version, &self.os_version);
        if let Some(f) = &self.os_features {
            p.os_features = Some(f.clone()).filter(|f| !f.is_empty());
        }
    }
}

/// Change the platform the list `name` gives the image `image` (a reference or digest of one
/// of its entries). The new platform must not contradict the image's config, nor repeat
/// another entry's.
pub fn annotate(
    ops: &Ops,
    txn: &Transaction,
    name: &str,
    image: &str,
    annotation: &Annotation,
) -> Result<Created> {
    let store = txn;
    let found = store.lookup(name)?;
    let list = found
        .reference
        .clone()
        .ok_or_else(|| ManifestError::DigestName(name.to_string()))?;
    let mut index = read_list(store, &found.descriptor, name)?;
    let digest = entry_digest(ops, txn, image)?;
    let Some(pos) = index.manifests.iter().position(|d| d.digest == digest) else {
        return Err(ManifestError::NoSuchEntry {
            list: list.familiar(),
            reference: image.to_string(),
        });
    };
    let entry = index.manifests[pos].clone();
    if entry.is_attestation() {
        return Err(ManifestError::AnnotateAttestation(image.to_string()));
    }
    let mut platform = entry
        .platform
        .clone()
        .unwrap_or_else(|| Platform::new("", "", None));
    annotation.apply(&mut platform);
    if entry.is_manifest() {
        let mut from = store.blob_locations(&digest);
        from.push(location_of(&list));
        let bytes = ops.document(txn, &entry, &from, true)?.ok_or_else(|| {
            ManifestError::ChildUnavailable {
                list: list.familiar(),
                digest: digest.clone(),
                what: "its manifest".into(),
            }
        })?;
        let manifest = oci::parse_manifest(bytes)?.value;
        if let Some(config) = ops.config(txn, &manifest.config, &from, true)? {
            let declared = config.value.platform();
            if !declared.os.is_empty() && contradicts(&platform, &declared) {
                return Err(ManifestError::Contradiction {
                    source_name: image.to_string(),
                    listed: platform.to_string(),
                    config: declared.to_string(),
                });
            }
        }
    }
    let key = PlatformKey::of(&platform);
    if let Some(other) = index.images().find(|d| {
        d.digest != digest && d.platform.as_ref().map(PlatformKey::of) == Some(key.clone())
    }) {
        return Err(ManifestError::DuplicatePlatform {
            platform: platform.to_string(),
            first: other.digest.to_string(),
            second: image.to_string(),
        });
    }
    index.manifests[pos].platform = Some(platform);
    let format = ListFormat::of(&found.descriptor.media_type);
    let descriptor = write_list(store, &list, &index, format)?;
    Ok(Created {
        reference: list,
        descriptor,
        platforms: platforms_of(&index),
        attestations: index
            .manifests
            .iter()
            .filter(|d| d.is_attestation())
            .count(),
    })
}

/// The digest an entry is named by: a digest, a reference with one, or a tag resolved in the
/// store or else in its registry.
fn entry_digest(ops: &Ops, txn: &Transaction, image: &str) -> Result<Digest> {
    if let Ok(d) = Digest::parse(image) {
        return Ok(d);
    }
    let reference = Reference::parse(image)?;
    if let Some(d) = reference.digest() {
        return Ok(d.clone());
    }
    match txn.lookup(image) {
        Ok(found) => Ok(found.descriptor.digest),
        Err(StoreError::ImageNotFound(_)) => Ok(ops.resolve_remote(&reference)?.0.digest),
        Err(e) => Err(e.into()),
    }
}

/// Remove the list `name` from the store (its tag; the list itself when no other tag names
/// it). Blobs are freed by the store's garbage collection. Returns the list's reference.
pub fn remove(store: &Transaction, name: &str) -> Result<Reference> {
    let found = store.lookup(name)?;
    let Some(list) = found.reference else {
        return Err(ManifestError::DigestName(name.to_string()));
    };
    if !found.descriptor.is_index() {
        return Err(ManifestError::NotAList(name.to_string()));
    }
    let desc = store.untag(&list)?;
    store.update_entries(|entries| {
        let named = entries
            .iter()
            .any(|e| e.digest == desc.digest && e.annotation(ANNOTATION_REF_NAME).is_some());
        if !named {
            entries.retain(|e| e.digest != desc.digest);
        }
        Ok(())
    })?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::ANNOTATION_DOCKER_REFERENCE_DIGEST;

    fn entry(platform: &str, n: u8, existing: bool) -> Entry {
        let mut d = Descriptor::of(media_type::OCI_MANIFEST, &[n]);
        d.platform = Some(Platform::parse(platform).unwrap());
        Entry {
            descriptor: d,
            source: format!("src{n}"),
            attestations: Vec::new(),
            locations: Vec::new(),
            existing,
        }
    }

    #[test]
    fn duplicates_name_both_sources_and_amend_replaces_in_place() {
        let mut entries = Vec::new();
        let mut added = HashMap::new();
        merge(&mut entries, &mut added, entry("linux/amd64", 1, false)).unwrap();
        merge(&mut entries, &mut added, entry("linux/arm64", 2, false)).unwrap();
        // The same image again is no conflict.
        merge(&mut entries, &mut added, entry("linux/arm64", 2, false)).unwrap();
        assert_eq!(entries.len(), 2);
        let err = merge(&mut entries, &mut added, entry("linux/arm64/v8", 3, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`src2` and `src3` are both `linux/arm64/v8`"
        );

        let mut entries = vec![
            entry("linux/amd64", 1, true),
            entry("linux/arm64", 2, true),
            entry("linux/s390x", 3, true),
        ];
        entries[1]
            .attestations
            .push(Descriptor::of(media_type::OCI_MANIFEST, b"att"));
        let mut added = HashMap::new();
        merge(&mut entries, &mut added, entry("linux/arm64", 4, false)).unwrap();
        merge(&mut entries, &mut added, entry("linux/ppc64le", 5, false)).unwrap();
        let sources: Vec<&str> = entries.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(sources, ["src1", "src4", "src3", "src5"]);
        assert!(entries[1].attestations.is_empty());
        // Two new sources for the replaced platform are still a conflict.
        assert!(matches!(
            merge(&mut entries, &mut added, entry("linux/arm64", 6, false)),
            Err(ManifestError::DuplicatePlatform { .. })
        ));
    }

    #[test]
    fn attestations_attach_to_their_subject_or_go() {
        let mut entries = vec![
            entry("linux/amd64", 1, false),
            entry("linux/arm64", 2, false),
        ];
        let mut att = Descriptor::of(media_type::OCI_MANIFEST, b"a");
        att.platform = Some(Platform::new("unknown", "unknown", None));
        att.set_annotation(
            ANNOTATION_DOCKER_REFERENCE_DIGEST,
            entries[1].descriptor.digest.to_string(),
        );
        att.set_annotation(
            oci::ANNOTATION_DOCKER_REFERENCE_TYPE,
            "attestation-manifest",
        );
        let mut orphan = att.clone();
        orphan.digest = Digest::sha256_of(b"o");
        orphan.set_annotation(
            ANNOTATION_DOCKER_REFERENCE_DIGEST,
            Digest::sha256_of(b"nothing").to_string(),
        );
        attach(&mut entries, [att.clone(), orphan, att.clone()]);
        assert!(entries[0].attestations.is_empty());
        assert_eq!(entries[1].attestations, vec![att]);
    }

    #[test]
    fn docker_lists_take_schema2_children_only() {
        let mut docker = entry("linux/amd64", 1, false);
        docker.descriptor.media_type = media_type::DOCKER_MANIFEST.into();
        let oci = entry("linux/arm64", 2, false);
        assert!(check_format(&[docker.clone(), oci.clone()], ListFormat::Oci).is_ok());
        let err = check_format(&[docker.clone(), oci], ListFormat::Docker).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "`src2` is an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`), and a Docker manifest list"
            ),
            "{err}"
        );
        let mut with_att = docker.clone();
        with_att
            .attestations
            .push(Descriptor::of(media_type::OCI_MANIFEST, b"a"));
        assert!(matches!(
            check_format(&[with_att], ListFormat::Docker),
            Err(ManifestError::DockerFormatAttestation(_))
        ));
        assert!(check_format(&[docker], ListFormat::Docker).is_ok());
    }

    #[test]
    fn annotations_set_and_clear_fields() {
        let mut p = Platform::parse("linux/arm64").unwrap();
        Annotation {
            variant: Some("v8".into()),
            os_features: Some(vec!["sse4".into()]),
            ..Annotation::default()
        }
        .apply(&mut p);
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.os_features, Some(vec!["sse4".to_string()]));
        Annotation {
            variant: Some(String::new()),
            os_features: Some(Vec::new()),
            architecture: Some("ARM64".into()),
            ..Annotation::default()
        }
        .apply(&mut p);
        assert_eq!(p.variant, None);
        assert_eq!(p.os_features, None);
        assert_eq!(p.architecture, "arm64");
    }
}
