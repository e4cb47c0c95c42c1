//! What `manifold build` and every `bake` target share, in one place: the RUN runner their
//! `--isolation` picks ([`runner`]), and a [`Builder`] (the store, the registry client, the RUN
//! runner, the cache and compression choices) that runs [`Request`]s — SOURCE_DATE_EPOCH
//! resolved, the host's platform when none is named, each platform once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::BuildError;
use super::cache_remote::{self, CacheEvent, CacheFrom, CacheTo, RemoteCache, ahead};
use super::context::{self, Context};
use super::exec::{self, Output};
use super::report::{BuildEvent, BuildReporter};
use super::run::{RunError, Runner, Unavailable};
use super::runner::{IsolatedRunner, RuntimeRunner};
use super::secrets::{Secrets, SshAgents};
use crate::dockerfile::instructions::{self, Dockerfile};
use crate::dockerfile::plan::{Entitlement, PlanOptions};
use crate::layer::Compression;
use crate::platform::Platform;
use crate::registry::Client;
use crate::runtime::isolation::Isolation;
use crate::store::{Store, Transaction};

/// How RUN steps run (`--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunIsolation {
    /// A container where one can be made, else proot (chroot without it).
    Auto,
    /// A container: runc over an overlay (as root, or rootless in manifold's user namespace).
    Oci,
    /// No container: a plain directory under proot or chroot (see `runtime::isolation`).
    Plain(Isolation),
}

/// RUN steps without a container, `auto`'s choice where none can be made: under what, and why.
#[derive(Debug)]
pub struct Fallback {
    pub isolation: Isolation,
    pub because: RunError,
}

/// What runs RUN steps: runc through the runtime, proot or chroot in a plain directory, or —
/// `auto` — runc where a container can be made, else (as root: an unprivileged build
/// container) proot, chroot without it, with the [`Fallback`] to tell; a runner that says why
/// RUN cannot work otherwise. `refused` is why this process cannot make containers (not root,
/// no user namespace), when it cannot. Create it before any other thread starts: runc's runner
/// moves the process into a mount namespace of its own.
pub fn runner(
    store: &Store,
    isolation: RunIsolation,
    refused: Option<Unavailable>,
) -> (Box<dyn Runner>, Option<Fallback>) {
    let isolated = |kind: Isolation| -> Box<dyn Runner> {
        match IsolatedRunner::new(kind) {
            Ok(r) => Box::new(r),
            Err(e) => Box::new(Unavailable::NoIsolation(kind, Arc::new(e))),
        }
    };
    let oci = || -> Result<RuntimeRunner, Unavailable> {
        if let Some(why) = refused {
            return Err(why);
        }
        RuntimeRunner::new(store, "runc").map_err(|e| Unavailable::NoRuntime(Arc::new(e)))
    };
    match isolation {
        RunIsolation::Plain(kind) => (isolated(kind), None),
        RunIsolation::Oci => match oci() {
            Ok(r) => (Box::new(r), None),
            Err(why) => (Box::new(why), None),
        },
        RunIsolation::Auto => match oci() {
            Ok(r) => (Box::new(r), None),
            // Root where no container can be made (an unprivileged build container): no
            // namespaces, so no isolation beyond the container's own.
            Err(why) if crate::runtime::is_root() => {
                let kind = if crate::runtime::find_program("proot").is_some() {
                    Isolation::Proot
                } else {
                    Isolation::Chroot
                };
                let fallback = Fallback {
                    isolation: kind,
                    because: why.error(),
                };
                (isolated(kind), Some(fallback))
            }
            Err(why) => (Box::new(why), None),
        },
    }
}

/// What stays the same across builds (one for a `build`, one for all of a bake's targets).
pub struct Builder<'a> {
    pub store: &'a Store,
    /// Pulls base images the store lacks; None: the store only.
    pub client: Option<&'a Client>,
    /// From [`runner`], made before any other thread started.
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
    /// Caches whose records are used after the store's (`--cache-from`).
    pub cache_from: Vec<CacheFrom>,
    /// Caches the steps used are written to (`--cache-to`).
    pub cache_to: Vec<CacheTo>,
    /// The images are only pushed: layers that came from a registry's cache stay there (a
    /// push to that registry mounts them) instead of being fetched into the store.
    pub lazy_output: bool,
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
        self.build_then(txn, request, reporter, Ok)
    }

    /// [`Builder::build`], then `then` on its output (tag it, push it) while the cache is
    /// exported (`--cache-to`) on another thread: the export's uploads and its compare-and-swap
    /// wait overlap the push instead of coming before it. An export that fails (and is not
    /// `ignore-error`) fails the whole, after `then` has run.
    pub fn build_then<T, E: From<BuildError>>(
        &self,
        txn: &Transaction,
        request: Request<'_>,
        reporter: &dyn BuildReporter,
        then: impl FnOnce(Output) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut build_args = request.build_args;
        let epoch = source_date_epoch(&mut build_args)?;
        let platforms = platforms(request.platforms);
        let cache_event = |e: CacheEvent<'_>| reporter.report(&BuildEvent::Cache(e));
        let remote = (!request.cache_from.is_empty() || !request.cache_to.is_empty())
            .then(|| RemoteCache::open(self.client, &request.cache_from, &cache_event));
        let options = exec::Options {
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
            remote: remote.as_ref(),
            secrets: request.secrets,
            ssh: request.ssh,
        };
        // The layers of `mode=max` registry exports go up while the build runs.
        let targets = ahead::targets(&request.cache_to);
        let out = std::thread::scope(|scope| {
            let uploader = match (self.client, &remote) {
                (Some(client), Some(remote)) if !targets.is_empty() => {
                    let layers = remote.ahead.open();
                    let store = txn.store();
                    Some(scope.spawn(move || ahead::upload(store, client, &targets, layers)))
                }
                _ => None,
            };
            let out = exec::build(&options);
            if let Some(remote) = &remote {
                remote.ahead.close();
                if let Some(u) = uploader {
                    remote
                        .ahead
                        .went(u.join().expect("the uploader does not panic"));
                }
            }
            out
        });
        let out = out?;
        let Some(remote) = &remote else {
            return then(out);
        };
        let manifests: Vec<_> = out.images.iter().map(|i| i.manifest.clone()).collect();
        remote
            .finish(txn, &manifests, request.lazy_output, reporter.transfers())
            .map_err(BuildError::from)?;
        let final_stages = out.final_stages.clone();
        let export = || -> Result<(), BuildError> {
            for to in &request.cache_to {
                let exported = cache_remote::export(
                    txn,
                    self.client,
                    remote,
                    to,
                    &final_stages,
                    reporter.transfers(),
                    &cache_event,
                );
                match exported {
                    Ok(report) => cache_event(CacheEvent::Exported {
                        location: &to.location,
                        report: &report,
                    }),
                    Err(error) if to.ignore_error => cache_event(CacheEvent::ExportFailed {
                        location: &to.location,
                        error: &error,
                    }),
                    Err(error) => return Err(error.into()),
                }
            }
            Ok(())
        };
        if request.cache_to.is_empty() {
            return then(out);
        }
        std::thread::scope(|scope| {
            let exporting = scope.spawn(export);
            let done = then(out);
            let exported = exporting.join().expect("the cache export does not panic");
            let done = done?;
            exported?;
            Ok(done)
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
