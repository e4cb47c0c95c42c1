//! Manifest lists assembled from existing images — create, annotate, inspect, push, remove.
//!
//! ```text
//! platform  a child's platform from its config, checked against what an index lists
//! list      create (flattening indexes, attestations kept with their subjects) and annotate
//! push      list → registry: local children pushed, remote ones mounted or copied, then the list
//! inspect   what a list (local or remote) holds: platforms, sizes, layers
//! ```
//!
//! A list lives in the store like any tagged image, sparse: the store holds the list, and of each
//! child its manifest and config (a few KB, what inspect and annotate read), never the layers of
//! a child that came from a registry. Where such a child lives is remembered with the store's
//! blob locations, so that `push` can mount or copy it from there.

mod inspect;
mod list;
mod platform;
mod push;

pub use inspect::{Inspected, inspect};
pub use list::{Annotation, CreateOptions, Created, ListFormat, annotate, create, remove};
pub use platform::{PlatformKey, reconcile};
pub use push::{Pushed, push};

use crate::content::ContentError;
use crate::hint::Hint;
use crate::oci::{Digest, OciError};
use crate::ops::OpsError;
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest list `{0}` already exists")]
    ListExists(String),
    #[error("`{0}` is not a manifest list")]
    NotAList(String),
    #[error("a manifest list is named by a tag, not by a digest: `{0}`")]
    DigestName(String),
    #[error("`{first}` and `{second}` are both `{platform}`")]
    DuplicatePlatform {
        platform: String,
        first: String,
        second: String,
    },
    #[error("`{source_name}` is listed as `{listed}` but its config declares `{config}`")]
    Contradiction {
        source_name: String,
        listed: String,
        config: String,
    },
    #[error("`{0}` declares no platform in its config (`os` and `architecture` are empty)")]
    NoPlatform(String),
    #[error(
        "`{source_name}` is an OCI image manifest (`{media_type}`), and a Docker manifest list can only list Docker schema2 manifests: converting it would change its digest"
    )]
    DockerFormatOci {
        source_name: String,
        media_type: String,
    },
    #[error(
        "`{0}` carries attestation manifests, which are OCI manifests a Docker manifest list cannot list"
    )]
    DockerFormatAttestation(String),
    #[error("`{source_name}` is not an image: its config has media type `{media_type}`")]
    NotAnImage {
        source_name: String,
        media_type: String,
    },
    #[error("`{source_name}` lists `{digest}` of unsupported media type `{media_type}`")]
    UnsupportedEntry {
        source_name: String,
        digest: Digest,
        media_type: String,
    },
    #[error("`{list}` has no entry for `{reference}`")]
    NoSuchEntry { list: String, reference: String },
    #[error("`{0}` is an attestation manifest, not a platform of the list")]
    AnnotateAttestation(String),
    #[error("`{0}` has no name to push to")]
    NoDestination(String),
    #[error("`{list}` is `{actual}`, not the digest the destination `{destination}` names")]
    DestinationDigest {
        list: String,
        actual: Digest,
        destination: String,
    },
    #[error(
        "`{digest}` ({what}) of `{list}` is not in the store, and no registry is known to hold it"
    )]
    ChildUnavailable {
        list: String,
        digest: Digest,
        what: String,
    },
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl Hint for ManifestError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ManifestError::ListExists(list) => format!(
                "add to it with `manifold manifest create --amend {list} ...`, or remove it with `manifold manifest rm {list}`"
            ),
            ManifestError::NotAList(_) => {
                "`manifold push`, `manifold inspect` and `manifold rmi` act on single images".into()
            }
            ManifestError::DigestName(_) => "name the list with a tag: `registry/name:tag`".into(),
            ManifestError::DuplicatePlatform { .. } => {
                "list one image per platform; `--amend` replaces a platform the list already has".into()
            }
            ManifestError::Contradiction { .. } => {
                "the config is what runs: fix the image, or list it under the platform its config declares".into()
            }
            ManifestError::NoPlatform(_) => {
                "add it with a platform: `manifold manifest annotate --os OS --arch ARCH LIST IMAGE` after listing it from an index that names one".into()
            }
            ManifestError::DockerFormatOci { .. } => {
                "create an OCI index (drop `--format docker`), or push the image as Docker schema2 first (`skopeo copy --format v2s2`)".into()
            }
            ManifestError::DockerFormatAttestation(_) => {
                "create an OCI index (drop `--format docker`)".into()
            }
            ManifestError::NoSuchEntry { list, .. } => {
                format!("`manifold manifest inspect --verbose {list}` shows its entries")
            }
            ManifestError::NoDestination(_) | ManifestError::DestinationDigest { .. } => {
                "give a destination by tag: `manifold manifest push LIST REGISTRY/NAME:TAG`".into()
            }
            ManifestError::ChildUnavailable { .. } => {
                "create the list again from the image's registry reference (`REGISTRY/NAME@DIGEST`)".into()
            }
            ManifestError::Store(e) => return e.hint(),
            ManifestError::Content(e) => return e.hint(),
            ManifestError::Registry(e) => return e.hint(),
            ManifestError::Oci(e) => return e.hint(),
            ManifestError::Reference(e) => return e.hint(),
            ManifestError::Platform(e) => return e.hint(),
            ManifestError::Ops(e) => return e.hint(),
            _ => return None,
        })
    }
}

pub type Result<T, E = ManifestError> = std::result::Result<T, E>;
