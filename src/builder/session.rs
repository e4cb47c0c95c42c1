//! What `manifold build` and every `bake` target share, in one place: a [`Builder`] (the store,
//! the registry client, the RUN runner, the cache and compression choices) runs [`Request`]s —
//! SOURCE_DATE_EPOCH resolved, the host's platform when none is named, each platform once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::BuildError;
use super::context::{self, Context};
use super::exec::{self, Output};
use super::report::BuildReporter;
use super::run::Runner;
use super::secrets::{Secrets, SshAgents};
use crate::dockerfile::instructions::{self, Dockerfile};
use crate::dockerfile::plan::{Entitlement, PlanOptions};
use crate::layer::Compression;
use crate::platform::Platform;
use crate::registry::Client;
use crate::store::{Store, Transaction};

/// What stays the same across builds (one for a `build`, one for all of a bake's targets).
pub struct Builder<'a> {
    pub store: &'a Store,
    /// Pulls base images the store lacks; None: the store only.
    pub client: Option<&'a Client>,
    /// From [`super::run::default_runner`], made before any other thread started.
    pub runner: &'a dyn Runner,
    /// Run every step, whatever the cache holds.
    pub no_cache: bool,
    pub compression: Compression,
}

/// One build: a Dockerfile and its context, for some platforms.
pub struct Request<'a> {
    pub dockerfile: &'a Dockerfile,
    pub context: &'a Context,
    /// Empty for the host's platform.
    pub platforms: Vec<Platform>,
    /// A stage (name or index); the last when None.
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub allow: BTreeSet<Entitlement>,
    /// Kept apart from the build args: never part of a key, a record, the history or the
    /// provenance.
    pub secrets: &'a Secrets,
    pub ssh: &'a SshAgents,
}

impl Builder<'_> {
    /// Build `request` in `txn` (a transaction of [`Builder::store`]); the images are written,
    /// not tagged: the caller tags them (or pushes them) in the same transaction, so that no
    /// collection runs between the last blob and the tag.
    pub fn build(
        &self,
        txn: &Transaction,
        request: Request<'_>,
        reporter: &dyn BuildReporter,
    ) -> Result<Output, BuildError> {
        let mut build_args = request.build_args;
        let epoch = source_date_epoch(&mut build_args)?;
        let platforms = platforms(request.platforms);
        exec::build(&exec::Options {
            store: txn,
            dockerfile: request.dockerfile,
            context: request.context,
            platforms,
            plan: PlanOptions {
                target: request.target,
                build_args,
                build_platform: None,
                labels: request.labels,
                allow: request.allow,
            },
            no_cache: self.no_cache,
            compression: self.compression,
            epoch,
            client: self.client,
            runner: self.runner,
            reporter,
            secrets: request.secrets,
            ssh: request.ssh,
        })
    }
}

/// The platforms a build makes: each one once, in order; the host's when none is named.
pub fn platforms(list: Vec<Platform>) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for p in list {
        if !out.iter().any(|q| q.to_string() == p.to_string()) {
            out.push(p);
        }
    }
    if out.is_empty() {
        out.push(Platform::host_target());
    }
    out
}

/// A context directory and a Dockerfile in it (or anywhere): the context seen through its
/// ignore file (`<Dockerfile>.dockerignore` first, else the context's `.dockerignore`), and the
/// Dockerfile parsed, its errors naming it `name`.
pub fn load_dir(
    root: &Path,
    dockerfile: &Path,
    name: &str,
) -> Result<(Context, Dockerfile), BuildError> {
    let text =
        std::fs::read_to_string(dockerfile).map_err(|source| BuildError::ReadDockerfile {
            path: dockerfile.to_path_buf(),
            source,
        })?;
    let ignore = context::read_ignore(root, Some(dockerfile))?;
    let parsed = instructions::parse(name, &text)?;
    Ok((Context::dir(root, ignore), parsed))
}

/// SOURCE_DATE_EPOCH from the build args, else the environment (as buildx passes it on); when
/// set, it is passed on as a build arg (normalised) and every timestamp is clamped to it.
pub fn source_date_epoch(
    build_args: &mut BTreeMap<String, String>,
) -> Result<Option<u64>, BuildError> {
    let text = build_args.get("SOURCE_DATE_EPOCH").cloned().or_else(|| {
        std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .filter(|s| !s.is_empty())
    });
    let Some(text) = text else {
        return Ok(None);
    };
    let epoch = text
        .trim()
        .parse::<u64>()
        .map_err(|_| BuildError::Epoch(text.clone()))?;
    build_args.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
    Ok(Some(epoch))
}
