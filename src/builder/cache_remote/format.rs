//! The cache artifact: an OCI image manifest (not an index: ECR refuses cache indexes) whose
//! config, of manifold's own media type, holds the step records, and whose layers are the
//! layer blobs those records name — ordinary content every registry stores and `skopeo
//! inspect --raw` / `--config` reads.
//!
//! A record is a step key (the local cache's: `cache::KeyBuilder`) and what the step left: its
//! layer (descriptor and diff ID) or none, the `created` of its history entry, its size, and
//! when it was last exported (its age, for `max-size`). A config of another format version, or
//! of keys made another way, is ignored whole: a key is only ever looked up among records whose
//! keys were made as ours are.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::builder::layer::LayerInfo;
use crate::oci::{self, Descriptor, Digest, Manifest, Parsed, media_type};

/// The config's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.manifold.cache.config.v1+json";
/// The manifest's `artifactType`, for tools that list artifacts by kind.
pub const ARTIFACT_TYPE: &str = "application/vnd.manifold.cache.v1";
/// The version of the config document; a reader ignores a config of any other.
pub const FORMAT: u32 = 1;
/// How step keys are made (`cache::KeyBuilder` and what the executor puts in it). Changed
/// whenever a key's meaning changes, so that no record is misused across versions.
pub const KEYS: &str = "manifold-step-keys-1";
/// The largest config read (about a million records).
pub const MAX_CONFIG: u64 = 256 << 20;

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub key: Digest,
    /// The platform of the step's stage (informational: the key holds it already).
    #[serde(default)]
    pub platform: String,
    /// The layer the step made, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerInfo>,
    /// The `created` of the step's history entry.
    pub created: String,
    /// When the record was last exported (RFC 3339): its age.
    pub exported: String,
    /// The layer's size in bytes (0 without one).
    #[serde(default)]
    pub size: u64,
}

/// The config document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub format: u32,
    pub keys: String,
    /// Who wrote it (`manifold 0.1.0`), for people.
    #[serde(default)]
    pub writer: String,
    pub records: Vec<RemoteRecord>,
}

/// Why a config is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("its config is `{0}`, not a manifold build cache")]
    NotACache(String),
    #[error(
        "it was written in cache format {found} ({writer}); this manifold reads format {FORMAT}"
    )]
    Format { found: u32, writer: String },
    #[error("its keys are `{found}` ({writer}); this manifold makes `{KEYS}`")]
    Keys { found: String, writer: String },
    #[error("its config is not valid: {0}")]
    Invalid(String),
}

pub fn writer() -> String {
    format!("manifold {}", env!("CARGO_PKG_VERSION"))
}

impl CacheConfig {
    pub fn new(records: Vec<RemoteRecord>) -> CacheConfig {
        CacheConfig {
            format: FORMAT,
            keys: KEYS.to_string(),
            writer: writer(),
            records,
        }
    }

    /// Read a config; one of another format or key scheme is `Unusable`, never half-read.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<CacheConfig, Unusable> {
        if media_type != CONFIG_MEDIA_TYPE {
            return Err(Unusable::NotACache(media_type.to_string()));
        }
        #[derive(Deserialize)]
        struct Head {
            format: u32,
            #[serde(default)]
            keys: String,
            #[serde(default)]
            writer: String,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| Unusable::Invalid(e.to_string()))?;
        if head.format != FORMAT {
            return Err(Unusable::Format {
                found: head.format,
                writer: head.writer,
            });
        }
        if head.keys != KEYS {
            return Err(Unusable::Keys {
                found: head.keys,
                writer: head.writer,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| Unusable::Invalid(e.to_string()))
    }

    /// The config and the manifest that carries it, as stored (exact bytes).
    pub fn documents(&self) -> Documents {
        let config = serde_json::to_vec(self).expect("cache configs serialise");
        let config_desc = Descriptor::of(CONFIG_MEDIA_TYPE, &config);
        // Each blob once, in a stable order: the same records make the same manifest.
        let mut seen = HashSet::new();
        let mut layers: Vec<Descriptor> = self
            .records
            .iter()
            .filter_map(|r| r.layer.as_ref())
            .filter(|l| seen.insert(l.descriptor.digest.clone()))
            .map(|l| bare(&l.descriptor))
            .collect();
        layers.sort_by_key(|a| a.digest.to_string());
        let manifest = Parsed::from_value(Manifest {
            artifact_type: Some(ARTIFACT_TYPE.to_string()),
            ..Manifest::new_oci(config_desc.clone(), layers)
        });
        Documents {
            manifest: manifest.descriptor(media_type::OCI_MANIFEST),
            manifest_bytes: manifest.bytes,
            config: config_desc,
            config_bytes: config,
        }
    }

    /// The keys of the records, for "are ours all in there".
    pub fn keys(&self) -> HashSet<&Digest> {
        self.records.iter().map(|r| &r.key).collect()
    }
}

/// A layer's descriptor as a manifest lists it: media type, digest, size.
fn bare(d: &Descriptor) -> Descriptor {
    Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size)
}

/// A cache artifact's two documents.
#[derive(Debug, Clone)]
pub struct Documents {
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: Descriptor,
    pub config_bytes: Vec<u8>,
}

/// `ours` merged into `theirs`: one record per key, ours replacing theirs (it is the newer).
pub fn merge(theirs: Vec<RemoteRecord>, ours: &[RemoteRecord]) -> Vec<RemoteRecord> {
    let mut by_key: BTreeMap<Digest, RemoteRecord> =
        theirs.into_iter().map(|r| (r.key.clone(), r)).collect();
    for r in ours {
        by_key.insert(r.key.clone(), r.clone());
    }
    by_key.into_values().collect()
}

/// The newest records whose layers (each blob counted once) fit in `max` bytes; records
/// without a layer cost nothing. Newest by `exported`, then by key, so every writer trims the
/// same way.
pub fn trim(mut records: Vec<RemoteRecord>, max: Option<u64>) -> (Vec<RemoteRecord>, usize) {
    let Some(max) = max else {
        return (records, 0);
    };
    records.sort_by(|a, b| {
        b.exported
            .cmp(&a.exported)
            .then_with(|| a.key.to_string().cmp(&b.key.to_string()))
    });
    let mut total = 0u64;
    let mut counted: HashSet<Digest> = HashSet::new();
    let mut kept = Vec::new();
    let mut dropped = 0;
    for r in records {
        let cost = match &r.layer {
            Some(l) if !counted.contains(&l.descriptor.digest) => l.descriptor.size,
            _ => 0,
        };
        if total + cost > max {
            dropped += 1;
            continue;
        }
        total += cost;
        if let Some(l) = &r.layer {
            counted.insert(l.descriptor.digest.clone());
        }
        kept.push(r);
    }
    kept.sort_by_key(|a| a.key.to_string());
    (kept, dropped)
}

/// Whether `cache` holds each of `ours` as we wrote it (a concurrent writer merged them in).
pub fn holds_all(cache: &CacheConfig, ours: &[RemoteRecord]) -> bool {
    let have: BTreeMap<&Digest, &RemoteRecord> =
        cache.records.iter().map(|r| (&r.key, r)).collect();
    ours.iter()
        .all(|o| have.get(&o.key).is_some_and(|h| h.layer == o.layer))
}

/// The digest a layer step's record keeps alive, as the local cache lists it.
pub fn blobs_of(layer: &Option<LayerInfo>) -> Vec<Digest> {
    layer.iter().map(|l| l.descriptor.digest.clone()).collect()
}

/// Parse a cache manifest (exact bytes).
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, Unusable> {
    oci::parse_manifest(bytes.to_vec())
        .map(|p| p.value)
        .map_err(|e| Unusable::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, blob: Option<(&str, u64)>, exported: &str) -> RemoteRecord {
        RemoteRecord {
            key: Digest::sha256_of(key.as_bytes()),
            platform: "linux/amd64".into(),
            layer: blob.map(|(b, size)| LayerInfo {
                descriptor: Descriptor::new(
                    media_type::OCI_LAYER_GZIP,
                    Digest::sha256_of(b.as_bytes()),
                    size,
                ),
                diff_id: Digest::sha256_of(format!("diff {b}").as_bytes()),
            }),
            created: "2024-01-01T00:00:00Z".into(),
            exported: exported.into(),
            size: blob.map_or(0, |b| b.1),
        }
    }

    #[test]
    fn round_trip_and_versions() {
        let c = CacheConfig::new(vec![record("a", Some(("x", 10)), "2024-01-01T00:00:00Z")]);
        let docs = c.documents();
        assert_eq!(
            CacheConfig::parse(CONFIG_MEDIA_TYPE, &docs.config_bytes).unwrap(),
            c
        );
        let m = parse_manifest(&docs.manifest_bytes).unwrap();
        assert_eq!(m.config.media_type, CONFIG_MEDIA_TYPE);
        assert_eq!(m.layers.len(), 1);
        let mut other = c.clone();
        other.format = 2;
        let bytes = serde_json::to_vec(&other).unwrap();
        assert!(matches!(
            CacheConfig::parse(CONFIG_MEDIA_TYPE, &bytes),
            Err(Unusable::Format { found: 2, .. })
        ));
        let mut other = c.clone();
        other.keys = "manifold-step-keys-0".into();
        let bytes = serde_json::to_vec(&other).unwrap();
        assert!(matches!(
            CacheConfig::parse(CONFIG_MEDIA_TYPE, &bytes),
            Err(Unusable::Keys { .. })
        ));
        assert!(matches!(
            CacheConfig::parse(media_type::OCI_CONFIG, &docs.config_bytes),
            Err(Unusable::NotACache(_))
        ));
        assert!(matches!(
            CacheConfig::parse(CONFIG_MEDIA_TYPE, b"garbage"),
            Err(Unusable::Invalid(_))
        ));
    }

    #[test]
    fn merge_keeps_both_and_prefers_ours() {
        let theirs = vec![
            record("a", Some(("x", 10)), "2024-01-01T00:00:00Z"),
            record("b", None, "2024-01-01T00:00:00Z"),
        ];
        let ours = vec![
            record("a", Some(("y", 10)), "2024-02-01T00:00:00Z"),
            record("c", Some(("z", 5)), "2024-02-01T00:00:00Z"),
        ];
        let merged = merge(theirs, &ours);
        assert_eq!(merged.len(), 3);
        let a = merged.iter().find(|r| r.key == ours[0].key).unwrap();
        assert_eq!(a, &ours[0]);
        assert!(holds_all(&CacheConfig::new(merged.clone()), &ours));
        assert!(!holds_all(&CacheConfig::new(merged[..1].to_vec()), &ours));
    }

    #[test]
    fn trim_keeps_the_newest_within_the_size() {
        let records = vec![
            record("old", Some(("o", 60)), "2024-01-01T00:00:00Z"),
            record("new", Some(("n", 60)), "2024-03-01T00:00:00Z"),
            record("mid", Some(("n", 60)), "2024-02-01T00:00:00Z"),
            record("meta", None, "2023-01-01T00:00:00Z"),
        ];
        let (kept, dropped) = trim(records.clone(), Some(100));
        let names: HashSet<Digest> = kept.iter().map(|r| r.key.clone()).collect();
        // `mid` shares `new`'s blob, counted once; `old` does not fit; `meta` costs nothing.
        assert_eq!(dropped, 1);
        assert!(names.contains(&Digest::sha256_of(b"new")));
        assert!(names.contains(&Digest::sha256_of(b"mid")));
        assert!(names.contains(&Digest::sha256_of(b"meta")));
        assert_eq!(trim(records.clone(), None).0.len(), 4);
        assert_eq!(trim(records, Some(0)).0.len(), 1);
    }

    #[test]
    fn documents_are_stable() {
        let a = CacheConfig::new(vec![
            record("a", Some(("x", 1)), "t"),
            record("b", Some(("x", 1)), "t"),
        ]);
        let d1 = a.documents();
        let d2 = a.clone().documents();
        assert_eq!(d1.manifest.digest, d2.manifest.digest);
        assert_eq!(parse_manifest(&d1.manifest_bytes).unwrap().layers.len(), 1);
    }
}
