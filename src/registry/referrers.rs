//! Manifests that name a `subject` (signatures, attestations, SBOMs), pushed so that they can be
//! found from their subject: through the OCI 1.1 referrers API where the registry has one (it
//! answers the push with `OCI-Subject`), else through the referrers tag schema of the
//! distribution spec — an OCI index tagged `sha256-<hex>` (the subject's digest) listing them,
//! which we update. A registry that refuses `subject` or `artifactType` in a document (said
//! once, remembered for the run) stores it without them, listed in that tag all the same.

use reqwest::Method;
use reqwest::header;

use super::error::RegistryError;
use super::http::MANIFEST_LIMIT;
use super::manifests::refuses_document;
use super::medium::{Repository, content_error};
use super::quirks::Quirk;
use super::transport::Request;
use crate::content::{self, ContentError};
use crate::oci::{self, Descriptor, Digest, OciError, media_type};

/// The referrers tag of `subject`: `<algorithm>-<hex>`, at most 128 characters.
pub fn referrers_tag(subject: &Digest) -> String {
    let tag = format!("{}-{}", subject.algorithm().name(), subject.hex());
    tag.chars().take(128).collect()
}

/// How a referrer was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// What was stored, as its subject's referrers list it (`artifactType`, annotations). Its
    /// digest differs from the document pushed when the registry refused `subject`.
    pub descriptor: Descriptor,
    /// Listed in the referrers tag (the registry has no referrers API, or refused `subject`).
    pub tagged: bool,
}

impl Repository {
    /// Push a manifest or index that names a `subject` (its `desc` and exact `bytes`), so that
    /// `referrers(subject)` finds it here.
    pub fn put_referrer(&self, desc: &Descriptor, bytes: &[u8]) -> Result<Referrer, RegistryError> {
        let document: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| OciError::Json {
                what: "referrer".into(),
                source,
            })?;
        let subject: Descriptor = document
            .get("subject")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .ok_or_else(|| OciError::Invalid("the referrer has no valid `subject`".into()))?;
        let mut listed = desc.clone();
        listed.platform = None;
        listed.artifact_type = document
            .get("artifactType")
            .or_else(|| document.get("config").and_then(|c| c.get("mediaType")))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        listed.annotations = document
            .get("annotations")
            .cloned()
            .and_then(|a| serde_json::from_value(a).ok());
        let quirks = self.transport.quirks();
        if !quirks.subject_refused() {
            match self.put_manifest_answer(&desc.digest.to_string(), desc, bytes) {
                Ok(headers) if headers.contains_key("oci-subject") => {
                    return Ok(Referrer {
                        descriptor: listed,
                        tagged: false,
                    });
                }
                Ok(_) => {
                    self.add_to_referrers_tag(&subject.digest, &listed)?;
                    return Ok(Referrer {
                        descriptor: listed,
                        tagged: true,
                    });
                }
                Err(e) if refuses_document(&e) => {
                    let stripped = self.put_stripped(desc, &document).map_err(|_| e)?;
                    quirks.note(Quirk::SubjectRefused);
                    return self.list_stripped(&subject.digest, listed, stripped);
                }
                Err(e) => return Err(e),
            }
        }
        let stripped = self.put_stripped(desc, &document)?;
        self.list_stripped(&subject.digest, listed, stripped)
    }

    /// The document without `subject` and `artifactType`, pushed by its own digest.
    fn put_stripped(
        &self,
        desc: &Descriptor,
        document: &serde_json::Value,
    ) -> Result<Descriptor, RegistryError> {
        let mut stripped = document.clone();
        if let Some(o) = stripped.as_object_mut() {
            o.remove("subject");
            o.remove("artifactType");
        }
        let bytes = serde_json::to_vec(&stripped).expect("JSON values always serialise");
        let stored = Descriptor::of(desc.media_type.clone(), &bytes);
        self.put_manifest_bytes(&stored.digest.to_string(), &stored, &bytes)?;
        Ok(stored)
    }

    fn list_stripped(
        &self,
        subject: &Digest,
        mut listed: Descriptor,
        stored: Descriptor,
    ) -> Result<Referrer, RegistryError> {
        listed.digest = stored.digest;
        listed.size = stored.size;
        self.add_to_referrers_tag(subject, &listed)?;
        Ok(Referrer {
            descriptor: listed,
            tagged: true,
        })
    }

    /// Add `entry` to the referrers tag of `subject` (created when absent; an entry already
    /// there is not added twice).
    pub(crate) fn add_to_referrers_tag(
        &self,
        subject: &Digest,
        entry: &Descriptor,
    ) -> Result<(), RegistryError> {
        let tag = referrers_tag(subject);
        let mut index = self.referrers_tag_index(subject)?;
        if index.manifests.iter().any(|d| d.digest == entry.digest) {
            return Ok(());
        }
        index.manifests.push(entry.clone());
        let bytes = serde_json::to_vec(&index).expect("OCI documents always serialise");
        let desc = Descriptor::of(media_type::OCI_INDEX, &bytes);
        self.put_manifest_bytes(&tag, &desc, &bytes)?;
        self.transport.log(&format!(
            "listed {} in the referrers tag `{tag}` of `{}`",
            entry.digest, self.name
        ));
        Ok(())
    }

    /// The index the referrers tag of `subject` holds (an empty one when there is none).
    fn referrers_tag_index(&self, subject: &Digest) -> Result<oci::Index, RegistryError> {
        let tag = referrers_tag(subject);
        match self.get_manifest(&tag, None) {
            Ok((d, bytes)) if d.media_type == media_type::OCI_INDEX => {
                Ok(oci::parse_index(bytes)?.value)
            }
            Ok((d, _)) => Err(RegistryError::ReferrersTag {
                registry: self.transport.registry().to_string(),
                tag,
                what: format!("a `{}`", d.media_type),
            }),
            Err(e) if e.is_not_found() => Ok(oci::Index::new_oci(Vec::new())),
            Err(e) => Err(e),
        }
    }

    /// The referrers of `subject`: from the registry's referrers API, else from its referrers
    /// tag.
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, RegistryError> {
        let scopes = self.scopes_for_read();
        let req = Request::new(
            Method::GET,
            format!("/v2/{}/referrers/{subject}", self.name),
            &scopes,
        )
        .header(header::ACCEPT, media_type::OCI_INDEX)
        .repository(&self.name);
        match self.transport.send(&req) {
            Ok(resp) => {
                let bytes = self.transport.read_body(
                    resp,
                    MANIFEST_LIMIT,
                    &format!("the referrers of `{subject}`"),
                )?;
                Ok(oci::parse_index(bytes)?.value.manifests)
            }
            // No such API here (distribution 2 answers 404 for the unknown path).
            Err(RegistryError::Status(s)) if matches!(s.status, 400 | 404 | 405) => {
                Ok(self.referrers_tag_index(subject)?.manifests)
            }
            Err(e) => Err(e),
        }
    }
}

/// cosign's tag suffixes for what it attaches to a subject: signatures, attestations, SBOMs.
pub const COSIGN_TAG_SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];

impl content::Referrers for Repository {
    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, ContentError> {
        Repository::referrers(self, subject).map_err(content_error)
    }

    fn attached_tags(&self, subject: &Digest) -> Result<Vec<(String, Descriptor)>, ContentError> {
        let mut out = Vec::new();
        for suffix in COSIGN_TAG_SUFFIXES {
            let tag = format!("{}{suffix}", referrers_tag(subject));
            match self.get_manifest(&tag, None) {
                Ok((desc, _)) => out.push((tag, desc)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(content_error(e)),
            }
        }
        Ok(out)
    }
}

impl content::PutReferrers for Repository {
    fn put_referrer(
        &self,
        subject: &Digest,
        listed: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), ContentError> {
        let plain = Descriptor::new(
            listed.media_type.clone(),
            listed.digest.clone(),
            listed.size,
        );
        let named = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("subject").cloned())
            .is_some();
        if named {
            Repository::put_referrer(self, &plain, bytes).map_err(content_error)?;
        } else {
            // Stored without its subject where it came from: listed in the fallback tag here.
            self.put_manifest_bytes(&plain.digest.to_string(), &plain, bytes)
                .map_err(content_error)?;
            self.add_to_referrers_tag(subject, listed)
                .map_err(content_error)?;
        }
        Ok(())
    }

    fn put_attached_tag(
        &self,
        tag: &str,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<bool, ContentError> {
        self.put_manifest_bytes(tag, desc, bytes)
            .map_err(content_error)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_schema_is_algorithm_dash_hex() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
        assert!(crate::reference::is_valid_tag(&referrers_tag(&d)));
    }
}
