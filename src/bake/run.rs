//! Building the chosen targets: every target at once (one store, so one build cache), then —
//! only when all of them succeeded — pushing their tags. What builds and what pushes are small
//! traits, so that the order of things is tested without a build or a registry; what happens
//! is reported as typed events ([`BakeEvent`], and each target's [`BuildEvent`]s), rendered by
//! the CLI.
//!
//! [`BuildEvent`]: crate::builder::BuildEvent

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::BakeError;
use super::file::BakeFile;
use super::plan::Selection;
use crate::builder::cache_remote::{CacheFrom, CacheTo};
use crate::builder::secrets::{SecretSpec, SshSpec};
use crate::builder::{BuildError, BuildReporter};
use crate::content::BoxError;
use crate::dockerfile::plan::Entitlement;
use crate::oci::{Descriptor, Digest};
use crate::platform::Platform;
use crate::reference::Reference;

/// One target, as the build is asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRequest {
    pub name: String,
    /// The context directory, resolved against the bake file's directory.
    pub context: PathBuf,
    /// The Dockerfile, resolved against the context.
    pub dockerfile: PathBuf,
    /// Empty for the host's platform.
    pub platforms: Vec<Platform>,
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<Reference>,
    pub target: Option<String>,
    /// The entitlements the target asks for (its build gets them once `--allow` grants them).
    pub allow: BTreeSet<Entitlement>,
    pub cache_from: Vec<CacheFrom>,
    pub cache_to: Vec<CacheTo>,
    /// Where its secrets and agents come from (files relative to the bake file).
    pub secrets: Vec<SecretSpec>,
    pub ssh: Vec<SshSpec>,
}

/// What a target built: the image (index or manifest) in the store.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub descriptor: Descriptor,
    pub tags: Vec<Reference>,
}

/// Builds one target into the store and tags it with its tags.
pub trait TargetBuilder: Sync {
    fn build(
        &self,
        request: &BuildRequest,
        reporter: &dyn BuildReporter,
    ) -> Result<Descriptor, BuildError>;
}

/// What a bake does, target by target.
#[derive(Debug, Clone, Copy)]
pub enum BakeEvent<'a> {
    Building { target: &'a str },
    Built { target: &'a str, digest: &'a Digest },
    Failed { target: &'a str },
    Pushing { target: &'a str, tag: &'a Reference },
}

pub trait BakeReporter: Sync {
    fn report(&self, event: &BakeEvent<'_>);

    /// Where the events of one target's build go (the targets build side by side).
    fn target(&self, name: &str) -> Box<dyn BuildReporter + '_>;
}

/// Pushes a built image from the store to a tag in a registry.
pub trait Publisher: Sync {
    fn push(&self, descriptor: &Descriptor, tag: &Reference) -> Result<(), BoxError>;
}

/// The build requests of the selected targets, in order. Contexts must be directories; with
/// `push`, every target needs a tag.
pub fn requests(
    file: &BakeFile,
    selection: &Selection,
    base: &Path,
    push: bool,
) -> Result<Vec<BuildRequest>, BakeError> {
    let mut out = Vec::new();
    for name in &selection.targets {
        let t = &file.targets[name];
        // `a/./b` as `a/b`: these paths appear in messages.
        let context: PathBuf = base.join(&t.context).components().collect();
        if !context.is_dir() {
            return Err(BakeError::NoContext {
                target: name.clone(),
                path: context,
            });
        }
        if push && t.tags.is_empty() {
            return Err(BakeError::NoTags(name.clone()));
        }
        let set = |why: super::file::ValueError| BakeError::Set {
            set: name.clone(),
            why,
        };
        out.push(BuildRequest {
            name: name.clone(),
            dockerfile: context.join(&t.dockerfile),
            context,
            platforms: t
                .platforms
                .iter()
                .map(|p| Platform::parse(p).map_err(|e| set(e.into())))
                .collect::<Result<_, _>>()?,
            args: t.args.clone(),
            labels: t.labels.clone(),
            tags: t
                .tags
                .iter()
                .map(|r| Reference::parse(r).map_err(|e| set(e.into())))
                .collect::<Result<_, _>>()?,
            target: t.target.clone(),
            allow: t
                .entitlements
                .iter()
                .map(|e| {
                    e.parse()
                        .map_err(|e: crate::dockerfile::plan::UnknownEntitlement| set(e.into()))
                })
                .collect::<Result<_, _>>()?,
            cache_from: t
                .cache_from
                .iter()
                .map(|s| CacheFrom::parse(s).map_err(|e| set(e.into())))
                .collect::<Result<_, _>>()?,
            cache_to: t
                .cache_to
                .iter()
                .map(|s| CacheTo::parse(s).map_err(|e| set(e.into())))
                .collect::<Result<_, _>>()?,
            secrets: t
                .secrets
                .iter()
                .map(|v| {
                    v.parse::<SecretSpec>()
                        .map(|s| s.relative_to(base))
                        .map_err(|e| set(e.into()))
                })
                .collect::<Result<_, _>>()?,
            ssh: t
                .ssh
                .iter()
                .map(|v| {
                    v.parse::<SshSpec>()
                        .map(|s| s.relative_to(base))
                        .map_err(|e| set(e.into()))
                })
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

/// Refuse, before anything builds, targets that ask for entitlements `granted` (`--allow`)
/// does not hold — buildx's rule: a bake file alone cannot give its builds more power.
pub fn check_entitlements(
    requests: &[BuildRequest],
    granted: &BTreeSet<Entitlement>,
) -> Result<(), BakeError> {
    for e in Entitlement::ALL {
        if granted.contains(e) {
            continue;
        }
        let targets: Vec<String> = requests
            .iter()
            .filter(|r| r.allow.contains(e))
            .map(|r| format!("`{}`", r.name))
            .collect();
        if !targets.is_empty() {
            return Err(BakeError::NotGranted {
                entitlement: *e,
                targets: targets.join(", "),
            });
        }
    }
    Ok(())
}

/// Build every request concurrently; then, with a publisher and only if every build
/// succeeded, push each target's tags. On failure the errors come back one per failed target,
/// the last one summing them up.
pub fn execute(
    requests: &[BuildRequest],
    builder: &dyn TargetBuilder,
    publisher: Option<&dyn Publisher>,
    reporter: &dyn BakeReporter,
) -> Result<Vec<Built>, Vec<BakeError>> {
    let results: Mutex<Vec<Option<Result<Descriptor, BuildError>>>> =
        Mutex::new(requests.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for (i, request) in requests.iter().enumerate() {
            let results = &results;
            scope.spawn(move || {
                let target = request.name.as_str();
                reporter.report(&BakeEvent::Building { target });
                let r = builder.build(request, reporter.target(target).as_ref());
                reporter.report(&match &r {
                    Ok(d) => BakeEvent::Built {
                        target,
                        digest: &d.digest,
                    },
                    Err(_) => BakeEvent::Failed { target },
                });
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    let mut built = Vec::new();
    let mut errors = Vec::new();
    for (request, result) in requests.iter().zip(results.into_inner().unwrap()) {
        match result.expect("every build reports") {
            Ok(descriptor) => built.push(Built {
                name: request.name.clone(),
                descriptor,
                tags: request.tags.clone(),
            }),
            Err(source) => errors.push(BakeError::TargetFailed {
                target: request.name.clone(),
                source,
            }),
        }
    }
    if !errors.is_empty() {
        let names = errors
            .iter()
            .map(|e| match e {
                BakeError::TargetFailed { target, .. } => format!("`{target}`"),
                _ => unreachable!("only target failures so far"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        errors.push(BakeError::Failed {
            failed: errors.len(),
            total: requests.len(),
            names,
        });
        return Err(errors);
    }
    if let Some(publisher) = publisher {
        for b in &built {
            for tag in &b.tags {
                reporter.report(&BakeEvent::Pushing {
                    target: &b.name,
                    tag,
                });
                publisher.push(&b.descriptor, tag).map_err(|source| {
                    vec![BakeError::Push {
                        target: b.name.clone(),
                        tag: tag.familiar(),
                        source,
                    }]
                })?;
            }
        }
    }
    Ok(built)
}
