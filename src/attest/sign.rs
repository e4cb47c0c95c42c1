//! cosign's signature format, so that `cosign verify --key` reads what `manifold sign` writes
//! and the other way round.
//!
//! A signature is a layer of media type `application/vnd.dev.cosign.simplesigning.v1+json`
//! whose content is the simple-signing payload
//! (`{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},"optional":null}`)
//! and whose annotation `dev.cosignproject.cosign/signature` is the base64 DER ECDSA signature
//! of that payload (SHA-256). It is stored twice, as cosign does in its two modes: in an image
//! manifest under the tag `sha256-<hex>.sig` (every signature of the subject, one layer each;
//! config `application/vnd.oci.image.config.v1+json`), and as an OCI 1.1 referrer (artifact
//! type `application/vnd.dev.cosign.artifact.sig.v1+json`, `subject` = the signed manifest).

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::AttestError;
use super::keys::{PrivateKey, PublicKey};
use super::manifest::{self, Found, Kind, Medium, subject_of};
use crate::content::{NoLocations, PutReferrers, Sink};
use crate::oci::{self, Descriptor, Digest, Document, Manifest, Parsed, media_type};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::referrers_tag;

/// The layer annotation holding the signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign payload.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// A payload larger than this is no signature payload.
const MAX_PAYLOAD: u64 = 1 << 20;

/// Where signatures are written: a medium that takes blobs, documents and referrers.
pub trait Target: Medium + Sink + PutReferrers {}
impl<T: Medium + Sink + PutReferrers> Target for T {}

/// Put a small blob unless the medium has it.
fn put_small<M: Target>(medium: &M, desc: &Descriptor, bytes: &[u8]) -> Result<(), AttestError> {
    if medium.try_reuse(desc, &NoLocations)?.is_none() {
        medium.put_blob(desc, &mut &bytes[..], &NoLocations)?;
    }
    Ok(())
}

/// The `docker-reference` cosign writes: the repository with its registry, as
/// go-containerregistry names it (Docker Hub is `index.docker.io`).
pub fn docker_reference(r: &Reference) -> String {
    let registry = match r.registry() {
        "docker.io" => "index.docker.io",
        other => other,
    };
    format!("{registry}/{}", r.repository())
}

/// The simple-signing payload for the manifest `digest` of `docker_reference`, byte for byte
/// as cosign writes it (fields in its order, no whitespace, `optional` null).
pub fn payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    serde_json::to_vec(&v).expect("JSON serialises")
}

/// The manifest `digest` a payload signs, when it is a cosign payload.
fn signed_digest(payload: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    if v["critical"]["type"] != SIGNATURE_TYPE {
        return None;
    }
    v["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .map(str::to_string)
}

/// The config cosign's signature manifests carry (go-containerregistry's for an image of
/// these layers: empty platform, zero times, the layers as diff IDs).
fn config(layers: &[Descriptor]) -> Vec<u8> {
    let zero = "0001-01-01T00:00:00Z";
    let v = json!({
        "architecture": "",
        "created": zero,
        "history": layers.iter().map(|_| json!({"created": zero})).collect::<Vec<_>>(),
        "os": "",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
        },
        "config": {},
    });
    serde_json::to_vec(&v).expect("JSON serialises")
}

/// A blob small enough to hold in memory, checked against its descriptor.
pub fn read_small_blob(
    medium: &dyn Medium,
    desc: &Descriptor,
    limit: u64,
) -> Result<Vec<u8>, AttestError> {
    if desc.size > limit {
        return Err(AttestError::TooLarge {
            what: desc.digest.to_string(),
            size: desc.size,
            limit,
        });
    }
    let mut bytes = Vec::new();
    medium
        .open_blob(desc, &NoLocations)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(crate::content::ContentError::Io)?;
    crate::content::verify(&format!("blob {}", desc.digest), desc, &bytes)?;
    Ok(bytes)
}

/// The image `root` and, for an index, each platform's manifest: what is signed and checked.
pub fn subjects(
    medium: &dyn Medium,
    root: &Descriptor,
) -> Result<Vec<(Descriptor, Option<Platform>)>, AttestError> {
    let bytes = crate::content::fetch_verified(medium, root)?;
    let mut out = vec![(subject_of(root), None)];
    if let Document::Index(index) = oci::parse_document(&root.media_type, bytes)?.value {
        for d in index.images().filter(|d| d.is_manifest()) {
            out.push((subject_of(d), d.platform.clone()));
        }
    }
    Ok(out)
}

/// One signed manifest.
#[derive(Debug, Clone)]
pub struct Signed {
    pub digest: Digest,
    pub platform: Option<Platform>,
    /// cosign's tag it was written under (None: the medium keeps no such tags).
    pub tag: Option<String>,
    /// False when this key's signature was already there.
    pub added: bool,
}

/// Sign the image `root` of `repository` in `medium` with `key`: the index (or lone manifest)
/// and, when `recursive`, each platform's manifest.
pub fn sign<M: Target>(
    medium: &M,
    repository: &Reference,
    root: &Descriptor,
    key: &PrivateKey,
    recursive: bool,
) -> Result<Vec<Signed>, AttestError> {
    let mut targets = subjects(medium, root)?;
    if !recursive {
        targets.truncate(1);
    }
    let identity = docker_reference(repository);
    let mut out = Vec::new();
    for (subject, platform) in targets {
        let payload = payload(&identity, &subject.digest);
        let mut layer = Descriptor::of(media_type::COSIGN_SIMPLE_SIGNING, &payload);
        layer.set_annotation(ANNOTATION_SIGNATURE, STANDARD.encode(key.sign(&payload)));
        put_small(medium, &layer, &payload)?;

        // cosign's tag: every signature of the subject, this one added once.
        let tag = format!("{}.sig", referrers_tag(&subject.digest));
        let mut layers = Vec::new();
        for (t, desc) in medium.attached_tags(&subject.digest)? {
            if t == tag {
                let bytes = crate::content::fetch_verified(medium, &subject_of(&desc))?;
                layers = oci::parse_manifest(bytes)?.value.layers;
            }
        }
        let added = !layers.contains(&layer);
        if added {
            layers.push(layer.clone());
        }
        let config_bytes = config(&layers);
        let config_desc = Descriptor::of(media_type::OCI_CONFIG, &config_bytes);
        put_small(medium, &config_desc, &config_bytes)?;
        let tagged = Parsed::from_value(Manifest::new_oci(config_desc, layers));
        let tagged_desc = tagged.descriptor(media_type::OCI_MANIFEST);
        let kept_tag = medium.put_attached_tag(&tag, &tagged_desc, &tagged.bytes)?;

        // The OCI 1.1 form: this signature alone, naming its subject.
        let one = config(std::slice::from_ref(&layer));
        let one_desc = Descriptor::of(media_type::COSIGN_SIGNATURE_ARTIFACT, &one);
        put_small(medium, &one_desc, &one)?;
        let mut m = Manifest::new_oci(one_desc, vec![layer]);
        m.artifact_type = Some(media_type::COSIGN_SIGNATURE_ARTIFACT.into());
        m.subject = Some(subject.clone());
        let m = Parsed::from_value(m);
        let mut listed = m.descriptor(media_type::OCI_MANIFEST);
        listed.artifact_type = Some(media_type::COSIGN_SIGNATURE_ARTIFACT.into());
        PutReferrers::put_referrer(medium, &subject.digest, &listed, &m.bytes)?;

        out.push(Signed {
            digest: subject.digest,
            platform,
            tag: kept_tag.then_some(tag),
            added,
        });
    }
    Ok(out)
}

/// How one manifest's signatures fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A signature by the key over a payload naming this manifest.
    Verified,
    /// No signature at all.
    Unsigned,
    /// Signatures, none valid for this key and manifest: why.
    Invalid(String),
}

/// One checked manifest.
#[derive(Debug, Clone)]
pub struct Check {
    pub digest: Digest,
    /// None for the index (or a lone manifest) itself.
    pub platform: Option<Platform>,
    pub outcome: Outcome,
    /// How many signatures were looked at.
    pub signatures: usize,
}

/// Check the signatures of the image `root` and of each of its platforms with `key`.
pub fn verify(
    medium: &dyn Medium,
    root: &Descriptor,
    key: &PublicKey,
) -> Result<Vec<Check>, AttestError> {
    let found = manifest::find(medium, root)?;
    let mut out = Vec::new();
    for (subject, platform) in subjects(medium, root)? {
        let sigs: Vec<&Found> = found
            .iter()
            .filter(|f| f.kind == Kind::Signature && f.subject == subject.digest)
            .collect();
        let mut outcome = Outcome::Unsigned;
        for f in &sigs {
            let payload = read_small_blob(medium, &f.layer, MAX_PAYLOAD)?;
            let der = f
                .layer
                .annotation(ANNOTATION_SIGNATURE)
                .and_then(|s| STANDARD.decode(s).ok())
                .unwrap_or_default();
            if !key.verify(&payload, &der) {
                outcome = Outcome::Invalid("no signature is by this key".into());
                continue;
            }
            if signed_digest(&payload).as_deref() != Some(&subject.digest.to_string()) {
                outcome = Outcome::Invalid(
                    "the signature by this key is of another manifest (its payload names another digest)"
                        .into(),
                );
                continue;
            }
            outcome = Outcome::Verified;
            break;
        }
        out.push(Check {
            digest: subject.digest,
            platform,
            outcome,
            signatures: sigs.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_cosigns_byte_for_byte() {
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let p = payload("127.0.0.1:5000/app", &d);
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/app"}},"image":{{"docker-manifest-digest":"sha256:{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
                "a".repeat(64)
            )
        );
        assert_eq!(signed_digest(&p).as_deref(), Some(d.to_string().as_str()));
        let hub = Reference::parse("busybox:1").unwrap();
        assert_eq!(docker_reference(&hub), "index.docker.io/library/busybox");
    }
}
