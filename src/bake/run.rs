//! Building the chosen targets: every target at once (one store, so one build cache), then —
//! only when all of them succeeded — pushing their tags. What builds and what pushes are small
//! traits, so that the order of things is tested without a build or a registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::BakeError;
use super::file::BakeFile;
use super::plan::Selection;
use crate::content::BoxError;
use crate::oci::Descriptor;
use crate::platform::Platform;
use crate::progress::Progress;
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
}

/// What a target built: the image (index or manifest) in the store.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub descriptor: Descriptor,
    pub tags: Vec<Reference>,
}

/// Builds one target into the store and tags it with its tags.
pub trait Builder: Sync {
    fn build(&self, request: &BuildRequest) -> Result<Descriptor, BoxError>;
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
        let set = |why: String| BakeError::Set {
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
                .map(|p| Platform::parse(p).map_err(|e| set(e.to_string())))
                .collect::<Result<_, _>>()?,
            args: t.args.clone(),
            labels: t.labels.clone(),
            tags: t
                .tags
                .iter()
                .map(|r| Reference::parse(r).map_err(|e| set(e.to_string())))
                .collect::<Result<_, _>>()?,
            target: t.target.clone(),
        });
    }
    Ok(out)
}

/// Build every request concurrently; then, with a publisher and only if every build
/// succeeded, push each target's tags. On failure the errors come back one per failed target,
/// the last one summing them up.
pub fn execute(
    requests: &[BuildRequest],
    builder: &dyn Builder,
    publisher: Option<&dyn Publisher>,
    progress: &dyn Progress,
) -> Result<Vec<Built>, Vec<BakeError>> {
    let results: Mutex<Vec<Option<Result<Descriptor, BoxError>>>> =
        Mutex::new(requests.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for (i, request) in requests.iter().enumerate() {
            let results = &results;
            scope.spawn(move || {
                progress.message(&format!("[{}] building", request.name));
                let r = builder.build(request);
                match &r {
                    Ok(d) => progress.message(&format!("[{}] built {}", request.name, d.digest)),
                    Err(_) => progress.message(&format!("[{}] failed", request.name)),
                }
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
            Err(e) => errors.push(BakeError::TargetFailed(request.name.clone(), e)),
        }
    }
    if !errors.is_empty() {
        let names = errors
            .iter()
            .map(|e| match e {
                BakeError::TargetFailed(n, _) => format!("`{n}`"),
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
                progress.message(&format!("[{}] pushing {}", b.name, tag.familiar()));
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
