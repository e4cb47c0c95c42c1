//! Attestation manifests, in the two forms BuildKit writes them, and finding an image's
//! attestations and signatures again.
//!
//! - Referrer form (the default): an image manifest with `artifactType`
//!   `application/vnd.docker.attestation.manifest.v1+json`, the empty config, one
//!   `application/vnd.in-toto+json` layer per statement (annotated with its predicate type) and
//!   `subject` = the platform's manifest. The image index lists exactly the platforms.
//! - Inline form (`--attest-format=index`, buildx's): the same layers under an `unknown/unknown`
//!   image config, no subject, listed in the image index itself with the annotations
//!   `vnd.docker.reference.type=attestation-manifest` and `vnd.docker.reference.digest`.

use std::collections::BTreeMap;

use super::AttestError;
use super::sign::{self, ANNOTATION_SIGNATURE};
use super::statement::{
    ANNOTATION_PREDICATE_TYPE, SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02, SPDX_DOCUMENT, Statement,
};
use crate::content::{Referrers, Source};
use crate::oci::{
    self, ANNOTATION_DOCKER_REFERENCE_DIGEST, ANNOTATION_DOCKER_REFERENCE_TYPE, Descriptor, Digest,
    Document, Manifest, Parsed, media_type,
};
use crate::platform::Platform;
use crate::store::Transaction;

/// Where images and their referrers can be read from: the store or a registry repository.
pub trait Medium: Source + Referrers {}
impl<T: Source + Referrers> Medium for T {}

/// The value of `vnd.docker.reference.type` on inline attestation manifests.
pub const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";

/// How attestations are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    /// OCI 1.1 referrers: the index lists exactly the platforms.
    #[default]
    Referrers,
    /// buildx's inline form: `unknown/unknown` entries in the index.
    Index,
}

/// The OCI empty descriptor's content (`{}`), the config of artifact manifests.
pub const EMPTY_JSON: &[u8] = b"{}";

fn empty_config() -> Descriptor {
    Descriptor::of(media_type::OCI_EMPTY, EMPTY_JSON)
}

/// `subject` as a referrer names it: media type, digest and size only.
pub fn subject_of(desc: &Descriptor) -> Descriptor {
    Descriptor::new(desc.media_type.clone(), desc.digest.clone(), desc.size)
}

fn statement_layer(s: &Statement) -> Descriptor {
    let mut d = Descriptor::of(media_type::IN_TOTO, &s.bytes);
    d.set_annotation(ANNOTATION_PREDICATE_TYPE, s.predicate_type.clone());
    d
}

/// Write the attestation manifest of `statements` about the platform manifest `subject` to the
/// store. Referrer form: listed among the subject's referrers, None returned. Inline form: the
/// descriptor to list in the image index is returned.
pub fn store_attestations(
    store: &Transaction,
    subject: &Descriptor,
    statements: &[Statement],
    form: Form,
) -> Result<Option<Descriptor>, AttestError> {
    let mut layers = Vec::new();
    for s in statements {
        store.put_bytes(&s.bytes)?;
        layers.push(statement_layer(s));
    }
    match form {
        Form::Referrers => {
            store.put_bytes(EMPTY_JSON)?;
            let mut m = Manifest::new_oci(empty_config(), layers);
            m.artifact_type = Some(media_type::DOCKER_ATTESTATION_MANIFEST.into());
            m.subject = Some(subject_of(subject));
            let m = Parsed::from_value(m);
            store.put_bytes(&m.bytes)?;
            let mut listed = m.descriptor(media_type::OCI_MANIFEST);
            listed.artifact_type = Some(media_type::DOCKER_ATTESTATION_MANIFEST.into());
            store.add_referrer(&subject.digest, &listed)?;
            Ok(None)
        }
        Form::Index => {
            let config = serde_json::json!({
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
                },
            });
            let config = serde_json::to_vec(&config).expect("JSON serialises");
            store.put_bytes(&config)?;
            let m = Parsed::from_value(Manifest::new_oci(
                Descriptor::of(media_type::OCI_CONFIG, &config),
                layers,
            ));
            store.put_bytes(&m.bytes)?;
            let mut d = m.descriptor(media_type::OCI_MANIFEST);
            d.platform = Some(Platform::parse("unknown/unknown").expect("a platform"));
            d.set_annotation(ANNOTATION_DOCKER_REFERENCE_TYPE, REFERENCE_TYPE_ATTESTATION);
            d.set_annotation(
                ANNOTATION_DOCKER_REFERENCE_DIGEST,
                subject.digest.to_string(),
            );
            Ok(Some(d))
        }
    }
}

/// The image `root` (an index, or one manifest) with `attestations` listed after its
/// platforms, written to the store: an index (a single manifest gets one around it, as buildx
/// does).
pub fn with_inline(
    store: &Transaction,
    root: &Descriptor,
    attestations: Vec<Descriptor>,
) -> Result<Descriptor, AttestError> {
    let mut index = if root.is_index() {
        store.read_index(&root.digest)?.value
    } else {
        oci::Index::new_oci(vec![root.clone()])
    };
    index.manifests.extend(attestations);
    let index = Parsed::from_value(index);
    store.put_bytes(&index.bytes)?;
    Ok(index.descriptor(media_type::OCI_INDEX))
}

/// What an attestation or signature is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Provenance,
    Sbom,
    Signature,
    /// Another in-toto predicate.
    Other,
}

impl Kind {
    pub fn of_predicate(predicate_type: &str) -> Kind {
        match predicate_type {
            SLSA_PROVENANCE_V1 | SLSA_PROVENANCE_V02 => Kind::Provenance,
            SPDX_DOCUMENT => Kind::Sbom,
            p if p.starts_with("https://cyclonedx.org/bom") => Kind::Sbom,
            _ => Kind::Other,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Provenance => "provenance",
            Kind::Sbom => "sbom",
            Kind::Signature => "signature",
            Kind::Other => "other",
        }
    }
}

/// One attestation statement or signature of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    /// The in-toto predicate type (None for a signature).
    pub predicate_type: Option<String>,
    /// The platform of the subject (None: the index itself).
    pub platform: Option<Platform>,
    pub subject: Digest,
    /// The manifest holding it.
    pub manifest: Digest,
    /// The statement (or signed payload) itself.
    pub layer: Descriptor,
    /// Where it was found: `referrer`, `index` (inline) or `tag` (cosign's `.sig`).
    pub form: &'static str,
}

/// Every attestation and signature of the image `root` (and, for an index, of each platform)
/// that `medium` holds: referrers, cosign's `.sig` tags, inline attestation manifests.
pub fn find(medium: &dyn Medium, root: &Descriptor) -> Result<Vec<Found>, AttestError> {
    let bytes = crate::content::fetch_verified(medium, root)?;
    let mut subjects: Vec<(Digest, Option<Platform>)> = vec![(root.digest.clone(), None)];
    let mut inline = Vec::new();
    if let Document::Index(index) = oci::parse_document(&root.media_type, bytes)?.value {
        for d in &index.manifests {
            if d.annotation(ANNOTATION_DOCKER_REFERENCE_TYPE) == Some(REFERENCE_TYPE_ATTESTATION) {
                inline.push(d.clone());
            } else if !d.is_attestation() {
                subjects.push((d.digest.clone(), d.platform.clone()));
            }
        }
    }
    let platform_of = |digest: &Digest| -> Option<Platform> {
        subjects
            .iter()
            .find(|(d, _)| d == digest)
            .and_then(|(_, p)| p.clone())
    };
    let mut out = Vec::new();
    for d in &inline {
        let Some(subject) = d
            .annotation(ANNOTATION_DOCKER_REFERENCE_DIGEST)
            .and_then(|s| Digest::parse(s).ok())
        else {
            continue;
        };
        let m = read_manifest(medium, d)?;
        rows(&mut out, &m, d, &subject, platform_of(&subject), "index");
    }
    for (subject, platform) in &subjects {
        for listed in medium.referrers(subject)? {
            if !listed.is_manifest() {
                continue;
            }
            let m = read_manifest(medium, &listed)?;
            rows(&mut out, &m, &listed, subject, platform.clone(), "referrer");
        }
        for (tag, desc) in medium.attached_tags(subject)? {
            if !tag.ends_with(".sig") || !desc.is_manifest() {
                continue;
            }
            let m = read_manifest(medium, &desc)?;
            rows(&mut out, &m, &desc, subject, platform.clone(), "tag");
        }
    }
    // A signature stored both under the tag and as a referrer is one signature.
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert((f.subject.clone(), f.layer.digest.clone(), f.kind.clone())));
    Ok(out)
}

fn read_manifest(medium: &dyn Medium, desc: &Descriptor) -> Result<Manifest, AttestError> {
    let plain = subject_of(desc);
    let bytes = crate::content::fetch_verified(medium, &plain)?;
    Ok(oci::parse_manifest(bytes)?.value)
}

fn rows(
    out: &mut Vec<Found>,
    m: &Manifest,
    desc: &Descriptor,
    subject: &Digest,
    platform: Option<Platform>,
    form: &'static str,
) {
    for layer in &m.layers {
        let (kind, predicate_type) = match layer.media_type.as_str() {
            media_type::IN_TOTO => {
                let p = layer
                    .annotation(ANNOTATION_PREDICATE_TYPE)
                    .unwrap_or("")
                    .to_string();
                (Kind::of_predicate(&p), Some(p))
            }
            media_type::COSIGN_SIMPLE_SIGNING
                if layer.annotation(ANNOTATION_SIGNATURE).is_some() =>
            {
                (Kind::Signature, None)
            }
            _ => continue,
        };
        out.push(Found {
            kind,
            predicate_type,
            platform: platform.clone(),
            subject: subject.clone(),
            manifest: desc.digest.clone(),
            layer: layer.clone(),
            form,
        });
    }
}

/// The largest statement or payload read.
pub const MAX_STATEMENT: u64 = 64 << 20;

/// The bytes of a found statement or signed payload, checked against its digest.
pub fn read(medium: &dyn Medium, found: &Found) -> Result<Vec<u8>, AttestError> {
    sign::read_small_blob(medium, &found.layer, MAX_STATEMENT)
}

/// Choose among `found` by what the user named: a digest (of the statement, its manifest or a
/// prefix of either, 7 hex digits at least), a kind (`provenance`, `sbom`, `signature`) or a
/// predicate type; narrowed to `platform` when given.
pub fn choose<'a>(
    image: &str,
    found: &'a [Found],
    wanted: &str,
    platform: Option<&Platform>,
) -> Result<&'a Found, AttestError> {
    let hex = wanted.strip_prefix("sha256:").unwrap_or(wanted);
    let by_digest = hex.len() >= 7 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let matches: Vec<&Found> = found
        .iter()
        .filter(|f| {
            if by_digest {
                f.layer.digest.hex().starts_with(hex) || f.manifest.hex().starts_with(hex)
            } else {
                f.kind.name() == wanted || f.predicate_type.as_deref() == Some(wanted)
            }
        })
        .filter(|f| match platform {
            None => true,
            Some(p) => f
                .platform
                .as_ref()
                .is_some_and(|fp| p.matcher().matches(fp) && fp.matcher().matches(p)),
        })
        .collect();
    let label = |f: &&Found| {
        f.platform
            .as_ref()
            .map_or("the index".to_string(), |p| p.to_string())
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(AttestError::NotFound {
            image: image.to_string(),
            wanted: wanted.to_string(),
            platforms: platform.map(|p| vec![p.to_string()]).unwrap_or_default(),
        }),
        many => {
            let mut platforms: Vec<String> = many.iter().map(label).collect();
            platforms.sort();
            platforms.dedup();
            Err(AttestError::Ambiguous {
                image: image.to_string(),
                wanted: wanted.to_string(),
                platforms,
            })
        }
    }
}

/// Count of each kind, for messages (`2 provenance, 2 sbom`).
pub fn summary(found: &[Found]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in found {
        *counts.entry(f.kind.name()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
