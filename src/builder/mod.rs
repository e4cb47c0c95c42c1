//! The builder: executes the plans the Dockerfile frontend (`crate::dockerfile`) makes, one per
//! platform, with a content-addressed step cache. `exec` walks the stages; COPY/ADD go through
//! `context`, `copy` and `fetch`; RUN through a `run::Runner` (`runner`: the runtime, QEMU for
//! foreign platforms); `layer` and `tree` write and index layers; `cache` keeps step records.

pub mod cache;
pub mod context;
pub mod copy;
pub mod exec;
pub mod fetch;
pub mod layer;
pub mod run;
pub mod runner;
pub mod tree;

pub use crate::dockerfile::DockerfileError;

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    /// A step failed: where, and why.
    #[error("{file}:{line}: [{platform}] {instruction}: {message}")]
    Step {
        file: String,
        line: usize,
        platform: String,
        instruction: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Other(String),
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
