//! Release trust: SLSA provenance and SPDX SBOMs of built images, and cosign signatures, all
//! attached to images as OCI 1.1 referrers (documents whose `subject` is the image) so that an
//! image index lists exactly its platforms.
//!
//! ```text
//! statement   in-toto statements (v1): the envelope of every attestation
//! provenance  the SLSA v1 provenance predicate of one platform's build
//! packages    package databases read from an image's files: dpkg, apk, rpm, os-release
//! sbom        the packages an image's layers hold (merged view), as an SPDX 2.3 document
//! manifest    attestation manifests: the referrer form and buildx's inline (index) form;
//!             finding an image's attestations and signatures again (store or registry)
//! keys        ECDSA P-256 keys: PKCS#8/SEC1 PEM, cosign's encrypted keys, generation
//! sign        cosign's simple signing: payloads, signature manifests, verification
//! ```
//!
//! Where they live: in the store, referrers are listed per subject (`Store::add_referrer`); in
//! a registry, through its referrers API or the `sha256-<hex>` fallback tag
//! (`Repository::put_referrer`); cosign's own `sha256-<hex>.sig` tag as well for signatures.
//! `content::copy_referrers` carries them along with their subjects.

pub mod keys;
pub mod manifest;
pub mod packages;
pub mod provenance;
pub mod sbom;
pub mod sign;
pub mod statement;

use std::path::PathBuf;

use crate::content::ContentError;
use crate::hint::Hint;
use crate::layer::LayerError;
use crate::oci::{Digest, OciError};
use crate::registry::RegistryError;
use crate::store::StoreError;

pub use keys::KeyError;
pub use manifest::{Found, Kind};

/// Who made an attestation: SLSA's `builder.id` and the SPDX creator.
pub const BUILDER_ID: &str = "https://github.com/manifold/manifold";
/// manifold's version, as attestations record it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("layer {digest}")]
    Layer {
        digest: Digest,
        #[source]
        source: LayerError,
    },
    #[error("layer {digest} has media type `{media_type}`, which the SBOM cannot read")]
    UnsupportedLayer { digest: Digest, media_type: String },
    #[error("cannot write a temporary file in {}", dir.display())]
    Temp {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the rpm database `/{path}` cannot be read")]
    Rpm {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("`{what}` in the image is {size} bytes: more than the {limit} bytes read of it")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("`{image}` has no attestation or signature `{wanted}`{}", platforms_note(.platforms))]
    NotFound {
        image: String,
        wanted: String,
        platforms: Vec<String>,
    },
    #[error("`{image}` has several attestations `{wanted}`, for {}", .platforms.join(", "))]
    Ambiguous {
        image: String,
        wanted: String,
        platforms: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
}

fn platforms_note(platforms: &[String]) -> String {
    if platforms.is_empty() {
        String::new()
    } else {
        format!(" for {}", platforms.join(", "))
    }
}

impl Hint for AttestError {
    fn hint(&self) -> Option<String> {
        match self {
            AttestError::NotFound { .. } => {
                Some("`manifold inspect --attestations IMAGE` lists what the image has".into())
            }
            AttestError::Ambiguous { .. } => {
                Some("choose one with `--platform`, or name it by digest".into())
            }
            AttestError::Key(e) => e.hint(),
            AttestError::Store(e) => e.hint(),
            AttestError::Content(e) => e.hint(),
            AttestError::Registry(e) => e.hint(),
            AttestError::Oci(e) => e.hint(),
            _ => None,
        }
    }
}
