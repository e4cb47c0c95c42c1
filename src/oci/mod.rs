//! The OCI (and Docker schema2) data model: digests, media types, descriptors, image manifests,
//! indexes and image configs.
//!
//! Raw bytes stay next to parsed values (`Parsed<T>`): a manifest that was fetched or loaded is
//! never re-serialised, so its digest is preserved. Unknown JSON fields are kept (`extra`) so that
//! documents we write after editing lose nothing the producer put there.

pub mod changes;
pub mod config;
pub mod digest;
pub mod media_type;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use config::{History, ImageConfig, RootFs, RunConfig};
pub use digest::{
    Algorithm, Digest, DigestError, Hasher, HashingReader, HashingWriter, OffloadHasher,
};

use crate::platform::Platform;

/// The annotation that names a tag in an OCI image layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation BuildKit puts on attestation manifests (value `attestation-manifest`).
pub const ANNOTATION_DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The annotation that points an attestation manifest at its subject.
pub const ANNOTATION_DOCKER_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{what}` is not valid JSON")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported media type `{0}`")]
    UnsupportedMediaType(String),
    #[error(
        "Docker schema1 manifests (`{0}`) are not supported: the image must be re-pushed with a current client"
    )]
    Schema1(String),
    /// A document that is both kinds at once (CVE-2021-41190): refused, as containerd does,
    /// since two readers could see two different images in it.
    #[error("ambiguous document: its media type is `{media_type}` but it {why}")]
    Ambiguous { media_type: String, why: String },
    #[error("indexes are nested more than {limit} deep (at {digest})")]
    TooDeep { limit: usize, digest: Digest },
    #[error("{0}")]
    Invalid(String),
}

impl crate::hint::Hint for OciError {
    fn hint(&self) -> Option<String> {
        match self {
            OciError::Schema1(_) => Some(
                "re-push the image with a current docker, podman or skopeo (they convert it to schema2)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// How deep indexes may nest below the document a walk starts from. Real images nest one or
/// two levels; a chain of thousands is an attack on whoever walks it.
pub const MAX_INDEX_DEPTH: usize = 32;

/// Manifests and indexes larger than this are refused before they are read into memory: the
/// limit containerd and distribution put on manifests.
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: None,
            urls: None,
            artifact_type: None,
            extra: Default::default(),
        }
    }

    /// The descriptor of `bytes` with the given media type.
    pub fn of(media_type: impl Into<String>, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }

    pub fn set_annotation(&mut self, key: &str, value: impl Into<String>) {
        self.annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.into());
    }

    pub fn remove_annotation(&mut self, key: &str) {
        if let Some(a) = self.annotations.as_mut() {
            a.remove(key);
            if a.is_empty() {
                self.annotations = None;
            }
        }
    }

    /// An attestation (provenance, SBOM) manifest rather than a runnable image: never selected
    /// for a platform and never listed as one.
    pub fn is_attestation(&self) -> bool {
        self.annotation(ANNOTATION_DOCKER_REFERENCE_TYPE).is_some()
            || self.platform.as_ref().is_some_and(Platform::is_unknown)
    }

    /// The image an attestation manifest describes (BuildKit's `vnd.docker.reference.digest`).
    pub fn attestation_subject(&self) -> Option<Digest> {
        if !self.is_attestation() {
            return None;
        }
        Digest::parse(self.annotation(ANNOTATION_DOCKER_REFERENCE_DIGEST)?).ok()
    }

    pub fn is_index(&self) -> bool {
        media_type::is_index(&self.media_type)
    }

    pub fn is_manifest(&self) -> bool {
        media_type::is_manifest(&self.media_type)
    }
}

/// An image manifest (OCI or Docker schema2: the same JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    /// An OCI image manifest of `config` and `layers`, nothing else set.
    pub fn new_oci(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: None,
            extra: Default::default(),
        }
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Index {
    pub fn new_oci(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: None,
            extra: Default::default(),
        }
    }

    /// The entries that are runnable images (attestations left out).
    pub fn images(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter().filter(|d| !d.is_attestation())
    }

    /// The best entry for `matcher`, never an attestation and never an entry without platform.
    pub fn select(&self, matcher: &crate::platform::Matcher) -> Option<&Descriptor> {
        let candidates: Vec<&Descriptor> = self
            .images()
            .filter(|d| d.platform.is_some() && d.is_manifest())
            .collect();
        let best = matcher.best(candidates.iter().filter_map(|d| d.platform.as_ref()))?;
        candidates.get(best).copied()
    }
}

/// Either kind of document a tag can point at.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Box<Manifest>),
    Index(Box<Index>),
}

/// A parsed document with the exact bytes it came from.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub bytes: Vec<u8>,
    pub value: T,
}

impl<T: Serialize> Parsed<T> {
    /// Serialise a value we created ourselves (pretty printing is not used: compact JSON, as
    /// registries and peers write it).
    pub fn from_value(value: T) -> Parsed<T> {
        let bytes = serde_json::to_vec(&value).expect("OCI documents always serialise");
        Parsed { bytes, value }
    }
}

impl<T> Parsed<T> {
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.bytes)
    }
    pub fn descriptor(&self, media_type: &str) -> Descriptor {
        Descriptor::of(media_type, &self.bytes)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, OciError> {
    serde_json::from_slice(bytes).map_err(|source| OciError::Json {
        what: what.to_string(),
        source,
    })
}

/// The media type a manifest document declares, or failing that, its shape (an index has
/// `manifests`, an image manifest has `config`).
pub fn sniff_media_type(bytes: &[u8]) -> Result<String, OciError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        schema_version: Option<u32>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe = parse_json("manifest", bytes)?;
    if let Some(mt) = probe.media_type {
        return Ok(mt);
    }
    if probe.schema_version == Some(1) {
        return Err(OciError::Schema1(media_type::DOCKER_SCHEMA1.to_string()));
    }
    match (probe.manifests, probe.config) {
        (Some(_), _) => Ok(media_type::OCI_INDEX.to_string()),
        (None, Some(_)) => Ok(media_type::OCI_MANIFEST.to_string()),
        _ => Err(OciError::Invalid(
            "the document is neither an image manifest nor an index".into(),
        )),
    }
}

/// Whether a field is present at all (`null` included), without reading its value.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Present, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// containerd's rule against ambiguous documents (CVE-2021-41190): a document read as an image
/// manifest must have no `manifests` field and must not declare an index media type; one read
/// as an index must have no `config` or `layers` and must not declare a manifest media type.
/// Every parse of a manifest or index goes through here, so pull, load, copy and manifest
/// create all refuse the same documents.
fn check_kind(media_type: &str, index: bool, bytes: &[u8]) -> Result<(), OciError> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default, rename = "mediaType")]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Present,
        #[serde(default)]
        config: Present,
        #[serde(default)]
        layers: Present,
    }
    let what = if index {
        "image index"
    } else {
        "image manifest"
    };
    let shape: Shape = parse_json(what, bytes)?;
    let declared = shape.media_type.as_deref().unwrap_or("");
    let why = if index {
        if media_type::is_manifest(declared) {
            Some(format!("declares `{declared}`"))
        } else if shape.config.0 {
            Some("has a `config`, which only an image manifest has".into())
        } else if shape.layers.0 {
            Some("has `layers`, which only an image manifest has".into())
        } else {
            None
        }
    } else if media_type::is_index(declared) {
        Some(format!("declares `{declared}`"))
    } else if shape.manifests.0 {
        Some("has `manifests`, which only an index has".into())
    } else {
        None
    };
    match why {
        Some(why) => Err(OciError::Ambiguous {
            media_type: media_type.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// Parse a manifest or index of the given media type, keeping its bytes.
pub fn parse_document(media_type: &str, bytes: Vec<u8>) -> Result<Parsed<Document>, OciError> {
    let value = if media_type::is_index(media_type) {
        check_kind(media_type, true, &bytes)?;
        Document::Index(Box::new(parse_json("image index", &bytes)?))
    } else if media_type::is_manifest(media_type) {
        check_kind(media_type, false, &bytes)?;
        Document::Manifest(Box::new(parse_json("image manifest", &bytes)?))
    } else if media_type::is_schema1(media_type) {
        return Err(OciError::Schema1(media_type.to_string()));
    } else {
        return Err(OciError::UnsupportedMediaType(media_type.to_string()));
    };
    Ok(Parsed { bytes, value })
}

pub fn parse_manifest(bytes: Vec<u8>) -> Result<Parsed<Manifest>, OciError> {
    check_kind(media_type::OCI_MANIFEST, false, &bytes)?;
    let value = parse_json("image manifest", &bytes)?;
    Ok(Parsed { bytes, value })
}

pub fn parse_index(bytes: Vec<u8>) -> Result<Parsed<Index>, OciError> {
    check_kind(media_type::OCI_INDEX, true, &bytes)?;
    let value = parse_json("image index", &bytes)?;
    Ok(Parsed { bytes, value })
}

pub fn parse_config(bytes: Vec<u8>) -> Result<Parsed<ImageConfig>, OciError> {
    let value = parse_json("image config", &bytes)?;
    Ok(Parsed { bytes, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips_unknown_fields() {
        let json = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"platform":{"architecture":"arm64","os":"linux","variant":"v8"},"x-extra":1}"#;
        let d: Descriptor = serde_json::from_str(json).unwrap();
        assert_eq!(d.platform.as_ref().unwrap().architecture, "arm64");
        assert_eq!(d.extra["x-extra"], 1);
        let back = serde_json::to_string(&d).unwrap();
        assert!(back.contains("\"x-extra\":1"));
    }

    #[test]
    fn attestations_are_never_selected() {
        let mut att = Descriptor::of(media_type::OCI_MANIFEST, b"a");
        att.platform = Some("unknown/unknown".parse().unwrap());
        att.set_annotation(ANNOTATION_DOCKER_REFERENCE_TYPE, "attestation-manifest");
        let mut arm = Descriptor::of(media_type::OCI_MANIFEST, b"b");
        arm.platform = Some("linux/arm64".parse().unwrap());
        let index = Index::new_oci(vec![att.clone(), arm.clone()]);
        assert_eq!(index.images().count(), 1);
        let host: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(index.select(&host.matcher()), Some(&arm));
        let s390x: Platform = "linux/s390x".parse().unwrap();
        assert_eq!(index.select(&s390x.matcher()), None);
    }

    #[test]
    fn sniffs_documents_without_media_type() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            media_type::OCI_INDEX
        );
        assert!(matches!(
            sniff_media_type(br#"{"schemaVersion":1,"fsLayers":[]}"#),
            Err(OciError::Schema1(_))
        ));
        assert!(matches!(
            sniff_media_type(b"not json"),
            Err(OciError::Json { .. })
        ));
    }

    #[test]
    fn ambiguous_documents_are_refused_as_containerd_does() {
        let config = r#"{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#;
        let refused = |mt: &str, doc: String, why: &str| {
            let err = parse_document(mt, doc.clone().into_bytes()).unwrap_err();
            assert!(matches!(err, OciError::Ambiguous { .. }), "{doc}: {err}");
            assert!(err.to_string().contains(why), "{doc}: {err}");
        };
        // An index with an image's layers (and config): CVE-2021-41190.
        refused(
            media_type::OCI_INDEX,
            format!(r#"{{"schemaVersion":2,"manifests":[],"layers":[],"config":{config}}}"#),
            "has a `config`",
        );
        refused(
            media_type::DOCKER_MANIFEST_LIST,
            r#"{"schemaVersion":2,"manifests":[],"layers":null}"#.into(),
            "has `layers`",
        );
        refused(
            media_type::OCI_INDEX,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
                media_type::OCI_MANIFEST
            ),
            "declares `application/vnd.oci.image.manifest.v1+json`",
        );
        // A manifest with an index's manifests, even empty, or declaring an index type.
        refused(
            media_type::OCI_MANIFEST,
            format!(r#"{{"schemaVersion":2,"config":{config},"layers":[],"manifests":[]}}"#),
            "has `manifests`",
        );
        refused(
            media_type::DOCKER_MANIFEST,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{config},"layers":[]}}"#,
                media_type::OCI_INDEX
            ),
            "declares `application/vnd.oci.image.index.v1+json`",
        );
        assert!(matches!(
            parse_manifest(
                format!(r#"{{"schemaVersion":2,"config":{config},"manifests":[]}}"#).into_bytes()
            ),
            Err(OciError::Ambiguous { .. })
        ));
        assert!(matches!(
            parse_index(br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#.to_vec()),
            Err(OciError::Ambiguous { .. })
        ));
        // What containerd accepts, we accept: the other schema's media type of the same kind,
        // and unknown fields.
        parse_document(
            media_type::OCI_MANIFEST,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{config},"layers":[],"x":1}}"#,
                media_type::DOCKER_MANIFEST
            )
            .into_bytes(),
        )
        .unwrap();
        parse_document(
            media_type::DOCKER_MANIFEST_LIST,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
                media_type::OCI_INDEX
            )
            .into_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn parsed_keeps_exact_bytes() {
        let bytes = br#"{ "schemaVersion": 2, "manifests": [] }"#.to_vec();
        let p = parse_document(media_type::OCI_INDEX, bytes.clone()).unwrap();
        assert_eq!(p.bytes, bytes);
        assert_eq!(p.digest(), Digest::sha256_of(&bytes));
        assert!(matches!(
            parse_document("text/plain", bytes),
            Err(OciError::UnsupportedMediaType(_))
        ));
    }
}
