//! What an image in the store amounts to, for listings: its platforms (present or not), size
//! and creation time, gathered from the documents and configs.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{Result, Store};
use crate::content::ContentError;
use crate::oci::{Descriptor, Digest, Document};
use crate::platform::Platform;

/// One platform's image within a (possibly sparse) index, or the single image of a manifest.
#[derive(Debug, Clone)]
pub struct PlatformEntry {
    /// From the index entry, or for a lone manifest from its config.
    pub platform: Option<Platform>,
    pub descriptor: Descriptor,
    /// Whether its manifest, config and layers are all in the store.
    pub present: bool,
    pub created: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub descriptor: Descriptor,
    /// Image entries only: attestations are never listed as platforms.
    pub platforms: Vec<PlatformEntry>,
    /// Bytes of every distinct blob of the image held in the store.
    pub size: u64,
    /// The newest creation time among the present platforms.
    pub created: Option<DateTime<Utc>>,
}

impl ImageSummary {
    pub fn is_index(&self) -> bool {
        self.descriptor.is_index()
    }

    /// An index some of whose platforms are not in the store.
    pub fn is_sparse(&self) -> bool {
        self.platforms.iter().any(|p| !p.present)
    }

    /// `linux/amd64,linux/arm64` — with `(2/5 present)` appended for a sparse index.
    pub fn platforms_label(&self) -> String {
        let present: Vec<String> = self
            .platforms
            .iter()
            .filter(|p| p.present)
            .map(|p| {
                p.platform
                    .as_ref()
                    .map_or_else(|| "unknown".to_string(), ToString::to_string)
            })
            .collect();
        let mut label = if present.is_empty() {
            "-".to_string()
        } else {
            present.join(",")
        };
        if self.is_sparse() {
            label.push_str(&format!(
                " ({}/{} present)",
                present.len(),
                self.platforms.len()
            ));
        }
        label
    }
}

pub fn parse_created(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Store {
    pub fn summarize(&self, desc: &Descriptor) -> Result<ImageSummary> {
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut size = 0;
        let mut count = |d: &Digest, store: &Store| {
            if seen.insert(d.clone()) {
                size += store.blob_size(d).unwrap_or(0);
            }
        };
        count(&desc.digest, self);
        let mut platforms = Vec::new();
        match self.read_document(desc)?.value {
            Document::Index(index) => {
                for child in index.manifests.iter().filter(|c| c.is_manifest()) {
                    let (present, created, blobs) = self.manifest_state(&child.digest);
                    for b in &blobs {
                        count(b, self);
                    }
                    if child.is_attestation() {
                        continue;
                    }
                    platforms.push(PlatformEntry {
                        platform: child.platform.clone(),
                        descriptor: child.clone(),
                        present,
                        created,
                    });
                }
            }
            Document::Manifest(m) => {
                let (present, created, blobs) = self.manifest_state(&desc.digest);
                for b in &blobs {
                    count(b, self);
                }
                let platform = self
                    .read_config(&m.config.digest)
                    .ok()
                    .map(|c| c.value.platform());
                platforms.push(PlatformEntry {
                    platform,
                    descriptor: desc.clone(),
                    present,
                    created,
                });
            }
        }
        let created = platforms.iter().filter_map(|p| p.created).max();
        Ok(ImageSummary {
            descriptor: desc.clone(),
            platforms,
            size,
            created,
        })
    }

    /// Whether a manifest and all its blobs are present, its config's creation time, and the
    /// blobs it has in the store (manifest included).
    fn manifest_state(&self, digest: &Digest) -> (bool, Option<DateTime<Utc>>, Vec<Digest>) {
        let Ok(m) = self.read_manifest(digest) else {
            return (false, None, Vec::new());
        };
        let mut blobs = vec![digest.clone()];
        let mut present = true;
        for d in std::iter::once(&m.value.config).chain(&m.value.layers) {
            if self.has_blob(&d.digest) {
                blobs.push(d.digest.clone());
            } else {
                present = false;
            }
        }
        let created = self
            .read_config(&m.value.config.digest)
            .ok()
            .and_then(|c| parse_created(c.value.created.as_deref()));
        (present, created, blobs)
    }
}

impl Store {
    /// Whether the image manifest `digest`, its config and all its layers are in the store (an
    /// index's child that was pulled, not one it merely lists).
    pub fn is_complete(&self, digest: &Digest) -> bool {
        self.read_manifest(digest).is_ok_and(|m| {
            std::iter::once(&m.value.config)
                .chain(&m.value.layers)
                .all(|b| self.has_blob(&b.digest))
        })
    }

    /// Whether `desc` is whole in the store: the document, everything it lists (for an index,
    /// however deep) and, for each manifest, its config and layers; another blob: itself.
    pub fn is_whole(&self, desc: &Descriptor) -> bool {
        crate::content::walk(
            std::slice::from_ref(desc),
            &mut HashSet::new(),
            |d, _| {
                if !self.has_blob(&d.digest) {
                    return Err(super::StoreError::BlobNotFound(d.digest.clone()));
                }
                if !(d.is_index() || d.is_manifest()) {
                    return Ok((Vec::new(), ()));
                }
                match self.read_document(d)?.value {
                    Document::Index(index) => Ok((index.manifests, ())),
                    Document::Manifest(m) => match std::iter::once(&m.config)
                        .chain(&m.layers)
                        .find(|b| !self.has_blob(&b.digest))
                    {
                        Some(missing) => {
                            Err(super::StoreError::BlobNotFound(missing.digest.clone()))
                        }
                        None => Ok((Vec::new(), ())),
                    },
                }
            },
            |_, ()| Ok(()),
        )
        .is_ok()
    }

    /// The image manifest to use for `desc`: itself when it is one; for an index, the best
    /// present child for `platform` (the host's when None). Errors list what the index holds.
    pub fn platform_manifest(
        &self,
        desc: &Descriptor,
        platform: Option<&Platform>,
    ) -> Result<Descriptor> {
        if desc.is_manifest() {
            return Ok(desc.clone());
        }
        let index = self.read_index(&desc.digest)?.value;
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let present: Vec<&Descriptor> = index
            .images()
            .filter(|c| c.is_manifest() && c.platform.is_some() && self.has_blob(&c.digest))
            .collect();
        let matcher = wanted.matcher();
        matcher
            .best(present.iter().filter_map(|c| c.platform.as_ref()))
            .map(|i| present[i].clone())
            .ok_or_else(|| {
                ContentError::NoMatchingPlatform {
                    reference: desc.digest.to_string(),
                    wanted: wanted.to_string(),
                    available: present.iter().filter_map(|c| c.platform.clone()).collect(),
                }
                .into()
            })
    }
}
