//! Moving images between media: pull (registry → store), push (store → registry), copy
//! (registry → registry). Each is one `content::copy` from a source to a sink that commits the
//! tags; a subset of a multi-platform image's platforms is sent as a new index of that subset.

use super::{Ops, OpsError, Result, config_bytes};
use crate::content::{self, CopyEnv, CopyReport, Platforms, Source, WithDocument, WithHome};
use crate::oci::{self, Descriptor, Document};
use crate::reference::Reference;
use crate::store::Transaction;

/// What `pull` brought.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// What the reference names (an index is kept whole, however few platforms were fetched).
    pub root: Descriptor,
    pub report: CopyReport,
}

/// What `push` sent.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// What the destination names now: the image, or the index of the subset pushed.
    pub root: Descriptor,
    pub report: CopyReport,
    /// Attestations and signatures carried along (referrers and cosign's tags).
    pub referrers: usize,
}

/// What `copy` sent.
pub type Copied = Pushed;

impl Ops<'_> {
    /// Pull `reference` into the store (in `txn`) and tag it: the whole index, the blobs of the
    /// platforms `platforms` selects. A single-platform image must be of each platform
    /// `Platforms::Each` names; that is checked before any layer moves.
    pub fn pull(
        &self,
        txn: &Transaction,
        reference: &Reference,
        platforms: &Platforms,
    ) -> Result<Pulled> {
        // Mirrors first, the registry itself last.
        let source = self.pull_source(reference)?;
        let root = Source::resolve(&source, reference)?;
        if root.is_manifest() && matches!(platforms, Platforms::Each(_)) {
            let manifest = oci::parse_manifest(content::fetch_verified(&source, &root)?)?;
            let config = &manifest.value.config;
            let config = if txn.has_blob(&config.digest) {
                txn.read_config(&config.digest)?
            } else {
                // From the endpoint serving the pull, not through the source: a blob the
                // source opened twice is read from the next endpoint.
                oci::parse_config(config_bytes(source.serving(), config)?)?
            };
            let actual = config.value.platform();
            if let Some(wanted) = platforms.unmet(&actual) {
                return Err(OpsError::WrongPlatform {
                    image: reference.familiar(),
                    actual: actual.to_string(),
                    wanted: wanted.platform().to_string(),
                });
            }
        }
        let report = content::copy(
            &source,
            txn,
            &reference.familiar(),
            &root,
            platforms,
            std::slice::from_ref(reference),
            &self.env(),
        )?;
        Ok(Pulled { root, report })
    }

    /// Push the stored image `root` (named `name`; made local with [`Ops::ensure_local`] for
    /// the same `platforms`) to `destination` and tag it there. `Platforms::All` pushes the image
    /// as it is; a selection of some of a multi-platform image's platforms pushes a new index of
    /// them (with their attestations the store holds). Blobs the registry has in another
    /// repository are mounted.
    pub fn push(
        &self,
        txn: &Transaction,
        name: &str,
        root: &Descriptor,
        destination: &Reference,
        platforms: &Platforms,
    ) -> Result<Pushed> {
        let store = txn.store();
        let subset = subset(store, name, root, platforms, |d| {
            !d.is_attestation() || store.is_whole(d)
        })?;
        let (root, source): (Descriptor, Box<dyn Source + '_>) = match subset {
            Some((desc, bytes)) => (
                desc.clone(),
                Box::new(WithDocument {
                    inner: store,
                    root: desc,
                    bytes,
                }),
            ),
            None => (root.clone(), Box::new(store.clone())),
        };
        check_destination(name, &root, destination)?;
        self.push_from(source.as_ref(), self.store, txn, name, &root, destination)
    }

    /// Push `root` as `source` has it (the store, or a view that also reads blobs from where
    /// else they live, `locations`: a build's layers left in a registry's cache) to
    /// `destination`, tag it there, and carry the attestations and signatures of its images
    /// the store holds.
    pub fn push_from(
        &self,
        source: &dyn Source,
        locations: &dyn content::BlobLocations,
        txn: &Transaction,
        name: &str,
        root: &Descriptor,
        destination: &Reference,
    ) -> Result<Pushed> {
        let store = txn.store();
        let repo = self.repository_of(destination)?;
        let report = content::copy(
            source,
            repo.as_ref(),
            name,
            root,
            &Platforms::All,
            std::slice::from_ref(destination),
            &CopyEnv {
                locations,
                progress: self.progress(),
                options: self.options(),
            },
        )?;
        let subjects = content::image_subjects(source, root)?;
        let referrers = content::copy_referrers(store, repo.as_ref(), &subjects, store)?;
        Ok(Pushed {
            root: root.clone(),
            report,
            referrers,
        })
    }

    /// Copy `source` to `destination` between registries (or repositories of one), streamed,
    /// never through the store: every platform with `Platforms::All`, else a new index of the
    /// selected ones with their attestations. Blobs are mounted where the destination's registry
    /// holds them (the source's repository included).
    pub fn copy(
        &self,
        source: &Reference,
        destination: &Reference,
        platforms: &Platforms,
    ) -> Result<Copied> {
        // The source is read as a pull is (its mirrors first); the destination never is.
        let src = self.pull_source(source)?;
        let dest = self.repository_of(destination)?;
        let root = Source::resolve(&src, source)?;
        let subset = subset(&src, &source.familiar(), &root, platforms, |_| true)?;
        let subset = subset.map(|(desc, bytes)| WithDocument {
            inner: &src,
            root: desc,
            bytes,
        });
        let (root, from): (Descriptor, &dyn Source) = match &subset {
            Some(s) => (s.root.clone(), s),
            None => (root, &src),
        };
        check_destination(&source.familiar(), &root, destination)?;
        let locations = WithHome {
            inner: self.store(),
            home: src.origin().here(),
        };
        let env = CopyEnv {
            locations: &locations,
            ..self.env()
        };
        let report = content::copy(
            from,
            dest.as_ref(),
            &source.familiar(),
            &root,
            &Platforms::All,
            std::slice::from_ref(destination),
            &env,
        )?;
        // Signatures and attestations (referrers, their fallback tags, cosign's tags) go along,
        // read from the source's own repository (a mirror keeps no referrers).
        let subjects = content::image_subjects(from, &root)?;
        let origin = self.repository_of(source)?;
        let referrers =
            content::copy_referrers(origin.as_ref(), dest.as_ref(), &subjects, &locations)?;
        Ok(Pushed {
            root,
            report,
            referrers,
        })
    }
}

/// A destination named by digest must name what is sent.
fn check_destination(image: &str, root: &Descriptor, destination: &Reference) -> Result<()> {
    match destination.digest() {
        Some(d) if d != &root.digest => Err(OpsError::DestinationDigest {
            image: image.to_string(),
            actual: root.digest.clone(),
            destination: destination.familiar(),
        }),
        _ => Ok(()),
    }
}

/// What to send of `root`: `None` for the image as it is; a new index (descriptor and bytes)
/// when `platforms` selects some of an index's children. `keep` says which of the selected
/// children may go (a pushed subset leaves out attestations the store lacks).
fn subset(
    source: &dyn Source,
    name: &str,
    root: &Descriptor,
    platforms: &Platforms,
    keep: impl Fn(&Descriptor) -> bool,
) -> Result<Option<(Descriptor, Vec<u8>)>> {
    if matches!(platforms, Platforms::All) || !root.is_index() {
        return Ok(None);
    }
    let bytes = content::fetch_verified(source, root)?;
    let Document::Index(index) = oci::parse_document(&root.media_type, bytes)?.value else {
        return Ok(None);
    };
    let selected: Vec<&Descriptor> = platforms
        .select(name, &index)?
        .into_iter()
        .filter(|d| keep(d))
        .collect();
    if selected.len() == index.manifests.len() {
        return Ok(None);
    }
    Ok(Some(content::subset_index(
        &root.media_type,
        &index,
        &selected,
    )))
}
