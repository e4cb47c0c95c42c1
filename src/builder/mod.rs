//! The builder: executes the plans the Dockerfile frontend (`crate::dockerfile`) makes, one per
//! platform, with a content-addressed step cache. `session` is what `build` and `bake` call (the
//! runner, SOURCE_DATE_EPOCH, the options); `exec` walks the stages; COPY/ADD go through
//! `context`, `copy` and `fetch`; RUN through a `run::Runner` (`runner`: the runtime, QEMU for
//! foreign platforms); `layer` and `tree` write and index layers; `cache` keeps step records;
//! `report` is what a build tells its user, as typed events.
//!
//! Every failure keeps its cause: a step fails with a [`StepError`] whose source is the
//! registry's, store's, runtime's or layer's own error, so that the CLI finds what the user can
//! do about it (log in, free some space) in the chain.

pub mod cache;
pub mod context;
pub mod copy;
pub mod exec;
pub mod fetch;
pub mod layer;
pub mod mounts;
pub mod report;
pub mod run;
pub mod runner;
pub mod secrets;
pub mod session;
pub mod tree;

pub use crate::dockerfile::DockerfileError;
pub use report::{BuildEvent, BuildReporter, Emulation, StepInfo};
pub use session::{Builder, Request};

use std::path::PathBuf;
use std::sync::Arc;

use crate::hint::Hint;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading or planning the Dockerfile failed (its line, and a cause when there is one).
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    /// A step failed: where (the source says why).
    #[error("{file}:{line}: [{platform}] {instruction}")]
    Step {
        file: String,
        line: usize,
        platform: String,
        instruction: String,
        #[source]
        source: Box<StepError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create a temporary directory in {}", dir.display())]
    Temp {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the Dockerfile {}", path.display())]
    ReadDockerfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Context(#[from] context::ContextError),
    #[error("SOURCE_DATE_EPOCH=`{0}` is not a number of seconds")]
    Epoch(String),
    /// A `--secret` or `--ssh` that cannot be used (a file that cannot be read, no agent).
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("cancelled: another stage failed")]
    Cancelled,
    /// The same failure seen from another stage or platform that waited for it.
    #[error(transparent)]
    Shared(Arc<BuildError>),
}

impl BuildError {
    /// The first error of a chain of shared ones.
    pub fn root(&self) -> &BuildError {
        match self {
            BuildError::Shared(e) => e.root(),
            e => e,
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The base image or a `COPY --from` image.
    #[error(transparent)]
    Image(#[from] Box<ImageError>),
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// An ADD URL.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// `--chown` or the USER of a WORKDIR.
    #[error(transparent)]
    Owner(#[from] tree::OwnerError),
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create a temporary directory")]
    Temp(#[source] std::io::Error),
}

impl Hint for BuildError {
    fn hint(&self) -> Option<String> {
        match self {
            BuildError::Epoch(_) => {
                Some("SOURCE_DATE_EPOCH is a number of seconds since 1970".into())
            }
            BuildError::Store(e) => e.hint(),
            BuildError::Secret(e) => e.hint(),
            BuildError::Shared(e) => e.hint(),
            _ => None,
        }
    }
}

impl Hint for StepError {
    fn hint(&self) -> Option<String> {
        match self {
            StepError::Copy(e) => e.hint(),
            StepError::Run(e) => e.hint(),
            StepError::Tree(e) => e.hint(),
            StepError::Layer(e) => e.hint(),
            StepError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// Why a base image (or a `COPY --from` image) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("`{reference}` is not in the store")]
    NotInStore { reference: String },
    #[error("cannot read `{reference}` from the store")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error("`{reference}` has no image for {platform} (it has {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("`{reference}` is an image for {actual}, not {platform}")]
    WrongPlatform {
        reference: String,
        actual: String,
        platform: String,
    },
    #[error("layer {layer} of `{reference}` is missing from the store")]
    MissingLayer {
        reference: String,
        layer: crate::oci::Digest,
    },
    #[error("`{reference}` is not a valid image reference")]
    Reference {
        reference: String,
        #[source]
        source: ReferenceError,
    },
    #[error("`{reference}` is not in the store, and its registry cannot be used")]
    Registry {
        reference: String,
        #[source]
        source: RegistryError,
    },
    #[error("`{reference}` is not in the store, and cannot be pulled for {platform}")]
    Pull {
        reference: String,
        platform: String,
        #[source]
        source: crate::ops::OpsError,
    },
}
