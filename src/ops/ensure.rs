//! `ensure_local`: what an image's users need of it — its config and layers, for the platforms
//! they act on — made present in the store. The store is used when it holds the image whole;
//! else what is missing is fetched: the image itself (pulled and tagged, as docker's `run`
//! does), the platforms a sparse index lacks, or the layers of a manifest the store holds
//! without them (what `manifest create` keeps of a list's children). Missing parts are read
//! from the registry repositories the store knows them to live in, then from the one the
//! image's name names.

use super::{Ops, OpsError, Result, location_of};
use crate::content::{self, Platforms};
use crate::oci::{ANNOTATION_REF_NAME, Descriptor, Document};
use crate::reference::Reference;
use crate::store::{Resolved, StoreError, Transaction};

/// An image made local.
#[derive(Debug, Clone)]
pub struct Local {
    /// The image as the user named it.
    pub name: String,
    /// What the name resolved to (an index or a manifest), without the store's tag annotation.
    pub descriptor: Descriptor,
    /// The tag it was found or pulled under (None when named by digest or image ID).
    pub reference: Option<Reference>,
    /// The image manifests selected (a lone manifest: the image itself), each whole in the
    /// store: manifest, config and layers.
    pub manifests: Vec<Descriptor>,
}

impl Ops<'_> {
    /// Make `image` (a reference, digest or image ID prefix) local for `platforms`, fetching
    /// what the store lacks in `txn`; see the module's documentation. A single-platform image
    /// must be of each platform `Platforms::Each` names. Attestations the store lacks are
    /// fetched when the whole image is asked for (`Platforms::All`), else along with the image
    /// they describe when that is fetched.
    pub fn ensure_local(
        &self,
        txn: &Transaction,
        image: &str,
        platforms: &Platforms,
    ) -> Result<Local> {
        let found = match txn.lookup(image) {
            Ok(found) => found,
            Err(StoreError::ImageNotFound(_)) => {
                let reference = self.pullable(image)?;
                self.progress().notice(&format!(
                    "Unable to find image '{}' locally: pulling",
                    reference.familiar()
                ));
                let pulled = self.pull(txn, &reference, platforms)?;
                self.progress()
                    .notice(&format!("Digest: {}", pulled.root.digest));
                Resolved {
                    descriptor: pulled.root,
                    reference: Some(reference),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let mut descriptor = found.descriptor;
        descriptor.remove_annotation(ANNOTATION_REF_NAME);
        // Where missing parts are read from, besides where the store knows them to live: the
        // repository the name names (by tag, or by digest).
        let home = found.reference.clone().or_else(|| {
            Reference::parse(image)
                .ok()
                .filter(|r| r.digest().is_some())
        });
        let manifests = if descriptor.is_index() {
            self.complete_index(txn, image, &descriptor, home.as_ref(), platforms)?
        } else {
            self.complete_manifest(txn, image, &descriptor, home.as_ref(), platforms)?;
            vec![descriptor.clone()]
        };
        Ok(Local {
            name: image.to_string(),
            descriptor,
            reference: found.reference,
            manifests,
        })
    }

    /// The reference to pull for a name the store does not have.
    fn pullable(&self, image: &str) -> Result<Reference> {
        let not_found = || OpsError::NotFound(image.to_string());
        let reference = Reference::parse(image).map_err(|_| not_found())?;
        if reference.digest().is_none() && looks_like_id(image) {
            // An image ID prefix that matches nothing: not a repository to pull.
            return Err(not_found());
        }
        if self.client.is_none() {
            return Err(OpsError::NotLocal(image.to_string()));
        }
        Ok(reference)
    }

    fn complete_manifest(
        &self,
        txn: &Transaction,
        image: &str,
        desc: &Descriptor,
        home: Option<&Reference>,
        platforms: &Platforms,
    ) -> Result<()> {
        if !txn.is_whole(desc) {
            self.fill(txn, image, desc, "its layers", home)?;
        }
        let manifest = txn.read_manifest(&desc.digest)?.value;
        let actual = txn.read_config(&manifest.config.digest)?.value.platform();
        if let Some(wanted) = platforms.unmet(&actual) {
            return Err(OpsError::WrongPlatform {
                image: image.to_string(),
                actual: actual.to_string(),
                wanted: wanted.platform().to_string(),
            });
        }
        Ok(())
    }

    /// Complete what `platforms` selects of the index `desc`; returns the image manifests.
    fn complete_index(
        &self,
        txn: &Transaction,
        image: &str,
        desc: &Descriptor,
        home: Option<&Reference>,
        platforms: &Platforms,
    ) -> Result<Vec<Descriptor>> {
        let index = match txn.read_document(desc)?.value {
            Document::Index(index) => index,
            Document::Manifest(_) => unreachable!("an index descriptor"),
        };
        let selected = platforms.select(image, &index)?;
        let whole = matches!(platforms, Platforms::All);
        let missing: Vec<&Descriptor> = selected
            .iter()
            .copied()
            .filter(|d| !txn.is_whole(d))
            .collect();
        let (required, optional): (Vec<&Descriptor>, Vec<&Descriptor>) = missing
            .into_iter()
            .partition(|d| whole || !d.is_attestation());
        for child in &required {
            self.fill(txn, image, child, &what(child), home)?;
        }
        if !required.is_empty() {
            // Going to the registry anyway: the attestations of what was fetched come along,
            // though nothing needs them.
            for child in optional {
                let _ = self.fill(txn, image, child, &what(child), home);
            }
        }
        Ok(selected
            .into_iter()
            .filter(|d| d.is_manifest() && !d.is_attestation())
            .cloned()
            .collect())
    }

    /// Fetch what the store lacks of `desc` (a manifest and its blobs, or an index and what it
    /// lists) from the first repository that has it: those the store knows it to live in, then
    /// `home`'s.
    fn fill(
        &self,
        txn: &Transaction,
        image: &str,
        desc: &Descriptor,
        what: &str,
        home: Option<&Reference>,
    ) -> Result<()> {
        let mut from = txn.blob_locations(&desc.digest);
        if let Some(h) = home.map(location_of)
            && !from.contains(&h)
        {
            from.push(h);
        }
        if self.client.is_none() {
            return Err(OpsError::NotLocal(image.to_string()));
        }
        if from.is_empty() {
            return Err(OpsError::Incomplete {
                image: image.to_string(),
                what: what.to_string(),
                digest: desc.digest.clone(),
            });
        }
        self.progress().notice(&format!(
            "Unable to find image '{image}' ({what}) locally: pulling"
        ));
        // Read as a pull reads (mirrors first), by digest.
        self.try_locations(&desc.digest, &from, |location| {
            let by_digest = Reference::parse(&format!("{location}@{}", desc.digest))?;
            let source = self.pull_source(&by_digest)?;
            content::copy(&source, txn, image, desc, &Platforms::All, &[], &self.env())?;
            Ok(())
        })?;
        Ok(())
    }
}

/// How a missing child is named in messages.
fn what(child: &Descriptor) -> String {
    if child.is_attestation() {
        return "an attestation".into();
    }
    match &child.platform {
        Some(p) => format!("the image for `{p}`"),
        None => format!("its child {}", child.digest),
    }
}

/// 12 to 64 lower-case hex digits: what `images` shows as IMAGE ID.
fn looks_like_id(s: &str) -> bool {
    (12..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
