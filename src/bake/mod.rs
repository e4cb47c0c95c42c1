//! Bake files (`manifold.yaml`): several build targets, built together and pushed together.
//!
//! ```yaml
//! variables:                 # ${NAME} in any string; the environment overrides the default
//!   VERSION: "dev"
//! targets:
//!   api:
//!     context: ./api         # relative to the bake file [default: .]
//!     dockerfile: Dockerfile # relative to the context [default: Dockerfile]
//!     platforms: [linux/amd64, linux/arm64]
//!     args: { GO_VERSION: "1.23" }
//!     labels: { org.opencontainers.image.version: "${VERSION}" }
//!     tags: ["registry.example.com/api:${VERSION}"]
//!     target: runtime        # a stage [default: the last]
//!     entitlements: [network.host]  # granted only by `manifold bake --allow network.host`
//! groups:
//!   default: [api]           # built when no target is named
//! ```
//!
//! ```text
//! file   parse: two passes, every error with its key and line
//! plan   choose targets (names, groups, `default`), `--set` overrides, `--print`
//! run    build the chosen targets concurrently, then push, only when all succeeded
//! build  how a target is built: the builder's session, into the store, tagged
//! ```

mod build;
pub mod file;
mod plan;
mod run;

use std::path::PathBuf;

pub use build::StoreBuilder;
pub use file::{BakeFile, Target, parse};
pub use plan::{Selection, apply_set, print, select};
pub use run::{
    BakeEvent, BakeReporter, BuildRequest, Built, Publisher, TargetBuilder, check_entitlements,
    execute, requests,
};

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error("{}", located(.file, *.line, *.column, .message))]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot read the bake file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no target or group `{0}` in the bake file")]
    UnknownTarget(String),
    #[error("group `{0}` includes itself")]
    Cycle(String),
    #[error("the bake file has no targets")]
    Empty,
    #[error("`--set {set}`: {why}")]
    Set { set: String, why: file::ValueError },
    #[error("target `{0}` has no tags to push to")]
    NoTags(String),
    #[error("target `{target}`: the context {} is not a directory", .path.display())]
    NoContext { target: String, path: PathBuf },
    #[error("target `{target}` failed")]
    TargetFailed {
        target: String,
        #[source]
        source: crate::builder::BuildError,
    },
    #[error("the `{entitlement}` entitlement is asked for by {targets} and was not granted")]
    NotGranted {
        entitlement: crate::dockerfile::plan::Entitlement,
        targets: String,
    },
    #[error("{failed} of {total} targets failed ({names}); nothing was pushed")]
    Failed {
        failed: usize,
        total: usize,
        names: String,
    },
    #[error("cannot push `{tag}` of target `{target}`")]
    Push {
        target: String,
        tag: String,
        #[source]
        source: crate::content::BoxError,
    },
}

impl crate::hint::Hint for BakeError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            BakeError::Read { path, .. } => format!(
                "name the bake file with `-f FILE` (looked for {})",
                path.display()
            ),
            BakeError::UnknownTarget(_) | BakeError::Empty => {
                "`manifold bake --print` shows the file's targets and groups".into()
            }
            BakeError::NoTags(t) => {
                format!("give it `tags` in the file, or `--set {t}.tags=REGISTRY/NAME:TAG`")
            }
            BakeError::Set { .. } => {
                format!("`--set TARGET.KEY=VALUE`, KEY one of {}", plan::SET_KEYS)
            }
            BakeError::NotGranted { entitlement, .. } => {
                format!("pass `--allow {entitlement}` to grant it")
            }
            _ => return None,
        })
    }
}

fn located(file: &str, line: usize, column: usize, message: &str) -> String {
    match (line, column) {
        (0, _) => format!("{file}: {message}"),
        (l, 0) => format!("{file}:{l}: {message}"),
        (l, c) => format!("{file}:{l}:{c}: {message}"),
    }
}

#[cfg(test)]
mod tests;
