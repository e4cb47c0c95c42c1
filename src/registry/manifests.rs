//! Manifests and indexes: fetched with every media type we read in `Accept` (schema1 too, so
//! that it is reported clearly rather than converted), pushed as the exact local bytes.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{self, HeaderMap};

use super::error::RegistryError;
use super::http::MANIFEST_LIMIT;
use super::medium::Repository;
use super::quirks::Quirk;
use super::transport::Request;
use crate::oci::{self, Descriptor, Digest, media_type};

pub const ACCEPT: &str = concat!(
    "application/vnd.oci.image.index.v1+json, ",
    "application/vnd.docker.distribution.manifest.list.v2+json, ",
    "application/vnd.oci.image.manifest.v1+json, ",
    "application/vnd.docker.distribution.manifest.v2+json, ",
    "application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, ",
    "application/vnd.docker.distribution.manifest.v1+json;q=0.5"
);

impl Repository {
    fn manifest_path(&self, reference: &str) -> String {
        format!("/v2/{}/manifests/{reference}", self.name)
    }

    /// GET a manifest by tag or digest: its descriptor (digest computed from the bytes, and
    /// checked against the one asked for) and its exact bytes.
    pub fn get_manifest(
        &self,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<(Descriptor, Vec<u8>), RegistryError> {
        let scopes = self.scopes_for_read();
        let req = Request::new(Method::GET, self.manifest_path(reference), &scopes)
            .header(header::ACCEPT, ACCEPT)
            .repository(&self.name);
        let resp = self.transport.send(&req).map_err(|e| {
            if e.is_not_found() {
                RegistryError::NotFound {
                    registry: self.transport.registry().to_string(),
                    what: format!("{}:{reference}", self.name).replace(":sha256:", "@sha256:"),
                }
            } else {
                e
            }
        })?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        let bytes = self.transport.read_body(
            resp,
            MANIFEST_LIMIT,
            &format!("the manifest `{}:{reference}`", self.name),
        )?;
        let media_type = match content_type.as_deref() {
            Some(mt)
                if media_type::is_index(mt)
                    || media_type::is_manifest(mt)
                    || media_type::is_schema1(mt) =>
            {
                mt.to_string()
            }
            // application/json, text/plain, none: the document says what it is.
            _ => oci::sniff_media_type(&bytes)?,
        };
        if media_type::is_schema1(&media_type) {
            return Err(oci::OciError::Schema1(media_type).into());
        }
        let digest = match expected.or(header_digest.as_ref()) {
            Some(d) => d.compute_like(&bytes),
            None => Digest::sha256_of(&bytes),
        };
        if let Some(want) = expected
            && &digest != want
        {
            return Err(self.protocol(
                reference,
                &format!("its content hashes to {digest}, not to the digest asked for"),
            ));
        }
        if expected.is_none()
            && let Some(h) = &header_digest
            && h != &digest
        {
            return Err(self.protocol(
                reference,
                &format!("its content hashes to {digest}, not to its Docker-Content-Digest {h}"),
            ));
        }
        let len = bytes.len() as u64;
        Ok((Descriptor::new(media_type, digest, len), bytes))
    }

    fn protocol(&self, reference: &str, why: &str) -> RegistryError {
        RegistryError::Protocol {
            registry: self.transport.registry().to_string(),
            what: format!("the manifest `{}:{reference}`", self.name),
            why: why.to_string(),
        }
    }

    pub fn manifest_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let scopes = self.scopes_for_read();
        let req = Request::new(
            Method::HEAD,
            self.manifest_path(&digest.to_string()),
            &scopes,
        )
        .header(header::ACCEPT, ACCEPT)
        .repository(&self.name);
        match self.transport.send(&req) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// PUT `bytes` under `reference` (a digest or a tag) with the descriptor's media type.
    pub fn put_manifest_bytes(
        &self,
        reference: &str,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        self.put_manifest_answer(reference, desc, bytes).map(|_| ())
    }

    /// PUT, returning the registry's answer headers (`OCI-Subject` says it indexed a referrer).
    pub(super) fn put_manifest_answer(
        &self,
        reference: &str,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<HeaderMap, RegistryError> {
        let scopes = self.scopes_for_write();
        let req = Request::new(Method::PUT, self.manifest_path(reference), &scopes)
            .header(header::CONTENT_TYPE, &desc.media_type)
            .body(Bytes::copy_from_slice(bytes))
            .repository(&self.name);
        let resp = self.transport.send(&req)?;
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
            && d.algorithm() == desc.digest.algorithm()
            && d != desc.digest
        {
            return Err(self.protocol(
                reference,
                &format!("the registry stored it as {d}, not as {}", desc.digest),
            ));
        }
        Ok(resp.headers().clone())
    }

    /// Before any blob of a push moves: an OCI index holding Docker schema2 manifests, which
    /// some registries refuse (Quay), is offered to the registry at once. Refused as a
    /// document, the push stops here with nothing uploaded (said once, and refused directly
    /// for the rest of the run); refused for its missing children (distribution checks them),
    /// the push goes on. A registry that stores it at once already holds its children, or does
    /// not check them.
    pub fn check_index(&self, desc: &Descriptor, bytes: &[u8]) -> Result<(), RegistryError> {
        if desc.media_type != media_type::OCI_INDEX {
            return Ok(());
        }
        let index = oci::parse_index(bytes.to_vec())?.value;
        let children = index
            .manifests
            .iter()
            .filter(|d| {
                d.media_type == media_type::DOCKER_MANIFEST
                    || d.media_type == media_type::DOCKER_MANIFEST_LIST
            })
            .count();
        if children == 0 {
            return Ok(());
        }
        let quirks = self.transport.quirks();
        let refused = |cause| RegistryError::MixedIndexRefused {
            registry: self.transport.registry().to_string(),
            digest: desc.digest.clone(),
            children,
            cause,
        };
        if quirks.mixed_index_refused() {
            return Err(refused(None));
        }
        match self.put_manifest_bytes(&desc.digest.to_string(), desc, bytes) {
            Err(e) if refuses_document(&e) => {
                quirks.note(Quirk::MixedIndexRefused);
                Err(refused(Some(Box::new(e))))
            }
            _ => Ok(()),
        }
    }
}

/// Whether a manifest PUT was refused for what the document is (its media types, its fields),
/// rather than for something missing (children, blobs) or access.
pub(super) fn refuses_document(e: &RegistryError) -> bool {
    let RegistryError::Status(s) = e else {
        return false;
    };
    let missing = ["MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "MANIFEST_UNKNOWN"];
    if s.errors.iter().any(|e| missing.contains(&e.code.as_str())) {
        return false;
    }
    matches!(s.status, 400 | 415 | 422)
        && s.errors
            .iter()
            .all(|e| matches!(e.code.as_str(), "MANIFEST_INVALID" | "UNSUPPORTED"))
}
