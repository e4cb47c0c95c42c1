//! `build`: Dockerfile → stages → a plan per platform → execution with a content-addressed
//! cache. Three layers that never mix, as in BuildKit's frontend: `syntax` (the
//! parse-dockerfile crate, lines, continuations), `instructions` (typed, flags checked) and
//! `plan` (expansion, stage graph, platforms; no I/O). The executor then runs the plan.

pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerignore;
pub mod exec;
pub mod expand;
pub mod fetch;
pub mod instructions;
pub mod layer;
pub mod plan;
pub mod run;
pub mod runner;
pub mod syntax;
pub mod tree;

pub use syntax::DockerfileError;

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
