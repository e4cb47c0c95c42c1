//! Base images without their layers: when steps may come from an imported cache, a base the
//! store lacks is resolved to its manifest and config only (what the plan and the step keys
//! need); its layers are fetched when a step that runs reads them, and a push to the same
//! registry mounts them from the base's repository.

use std::io::Read;

use super::RemoteCache;
use crate::builder::ImageError;
use crate::content::{self, ContentError, NoLocations, Source};
use crate::oci::{self, Descriptor, Digest, ImageConfig, Manifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::Client;
use crate::store::Store;

/// A base image's config can be large (a long history), never this large.
const MAX_CONFIG: u64 = 64 << 20;

impl RemoteCache<'_> {
    /// `reference`'s image for `platform`: the digest the reference resolves to, its manifest's
    /// descriptor (with the platform), the
    /// manifest and the config, read from the registry; its layers recorded as living there.
    pub fn resolve_base(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
    ) -> Result<(Digest, Descriptor, Manifest, ImageConfig), Box<ImageError>> {
        let r = Reference::parse(reference).map_err(|source| ImageError::Reference {
            reference: reference.to_string(),
            source,
        })?;
        let client: &Client = self.client.ok_or_else(|| ImageError::NotInStore {
            reference: reference.to_string(),
        })?;
        let source = client
            .pull_source(&r)
            .map_err(|source| ImageError::Registry {
                reference: reference.to_string(),
                source,
            })?;
        let pull_err = |source: ContentError| ImageError::Pull {
            reference: reference.to_string(),
            platform: platform.to_string(),
            source: source.into(),
        };
        // What the reference names (an index, or the manifest itself; for provenance), read
        // once for all the build's platforms.
        let known = self.tops.lock().expect("tops").get(reference).cloned();
        let (mut desc, index_bytes) = match known {
            Some(top) => top,
            None => {
                let desc = source.resolve(&r).map_err(pull_err)?;
                let bytes = if desc.is_index() {
                    Some(content::fetch_verified(&source, &desc).map_err(pull_err)?)
                } else {
                    None
                };
                let top = (desc, bytes);
                self.tops
                    .lock()
                    .expect("tops")
                    .insert(reference.to_string(), top.clone());
                top
            }
        };
        let top = desc.digest.clone();
        if let Some(bytes) = index_bytes {
            let index = oci::parse_index(bytes)
                .map_err(|e| pull_err(e.into()))?
                .value;
            desc = index.select(&platform.matcher()).cloned().ok_or_else(|| {
                ImageError::NoPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: index
                        .images()
                        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
        }
        let bytes = content::fetch_verified(&source, &desc).map_err(pull_err)?;
        let manifest = oci::parse_manifest(bytes)
            .map_err(|e| pull_err(e.into()))?
            .value;
        let c = &manifest.config;
        if c.size > MAX_CONFIG {
            return Err(pull_err(ContentError::SizeMismatch {
                what: format!("config {} (more than {MAX_CONFIG} bytes)", c.digest),
                expected: MAX_CONFIG,
                actual: c.size,
            })
            .into());
        }
        let mut bytes = Vec::new();
        source
            .open_blob(c, &NoLocations)
            .map_err(pull_err)?
            .take(MAX_CONFIG)
            .read_to_end(&mut bytes)
            .map_err(|e| pull_err(ContentError::Io(e)))?;
        content::verify(&format!("config {}", c.digest), c, &bytes).map_err(pull_err)?;
        let config = oci::parse_config(bytes)
            .map_err(|e| pull_err(e.into()))?
            .value;
        let actual = config.platform();
        if !platform.matcher().matches(&actual) {
            return Err(ImageError::WrongPlatform {
                reference: reference.to_string(),
                actual: actual.to_string(),
                platform: platform.to_string(),
            }
            .into());
        }
        self.note_base(store, &r, &manifest.layers);
        if desc.platform.is_none() {
            desc.platform = Some(actual);
        }
        Ok((top, desc, manifest, config))
    }
}
