//! Manifests and indexes: fetched with every media type we read in `Accept` (schema1 too, so
//! that it is reported clearly rather than converted), pushed as the exact local bytes.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header;

use super::error::RegistryError;
use super::http::MANIFEST_LIMIT;
use super::medium::Repository;
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
        Ok(())
    }
}
