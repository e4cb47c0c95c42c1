//! `manifold push [--platform P]... IMAGE [DEST]`: store → registry, children first, then the
//! index, then the tag; the local bytes exactly, so digests are preserved. A multi-platform
//! image with platforms missing from the store is pushed only as a subset (`--platform`).

use std::collections::HashSet;

use super::Settings;
use super::args::PushArgs;
use super::errors::user_error;
use super::output::outln;
use super::remote;
use crate::content::{self, Platforms, Sink, Source, WithDocument};
use crate::oci::{self, Descriptor, Digest};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::Store;

pub fn run(args: PushArgs, settings: &Settings) -> anyhow::Result<()> {
    let platforms = args
        .platform
        .iter()
        .map(|p| Platform::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let store = settings.store()?;
    // Keeps gc from removing blobs while they are read.
    let _guard = store.write_guard()?;
    let found = store.lookup(&args.image)?;
    let destination = match (&args.destination, &found.reference) {
        (Some(d), _) => Reference::parse(d)?,
        (None, Some(r)) => r.clone(),
        (None, None) => {
            return Err(user_error(
                format!("`{}` has no name to push to", args.image),
                Some("give a destination: `manifold push IMAGE REGISTRY/NAME:TAG`"),
            ));
        }
    };
    let root = found.descriptor.clone();
    let subset = choose(&store, &args.image, &root, &platforms)?;
    let (root, source): (Descriptor, Box<dyn Source + '_>) = match subset {
        Some((desc, bytes)) => (
            desc.clone(),
            Box::new(WithDocument {
                inner: &store,
                root: desc,
                bytes,
            }),
        ),
        None => (root, Box::new(store.clone())),
    };
    if let Some(d) = destination.digest()
        && d != &root.digest
    {
        return Err(user_error(
            format!(
                "`{}` is {}, not the digest the destination names",
                args.image, root.digest
            ),
            Some("name the destination by tag"),
        ));
    }
    let client = remote::client(settings)?;
    let repo = client.repository(&destination)?;
    let progress = settings.progress(args.quiet);
    progress.message(&format!("Pushing {}", destination.familiar()));
    content::copy_with(
        source.as_ref(),
        &repo,
        &destination,
        &root,
        &Platforms::All,
        &progress,
        &remote::copy_options(&args.transfer),
    )?;
    // Signatures and attestations the store keeps of the image go along, before the tag.
    let subjects = content::image_subjects(source.as_ref(), &root)?;
    let carried = content::copy_referrers(&store, &repo, &subjects)?;
    if carried > 0 {
        progress.message(&format!(
            "Pushed {carried} attestation and signature manifests"
        ));
    }
    Sink::tag(&repo, &destination, &root)?;
    progress.message(&format!(
        "{}: digest: {} size: {}",
        destination.tag().unwrap_or("latest"),
        root.digest,
        root.size
    ));
    outln!("{}", root.digest)?;
    Ok(())
}

/// What to push of `root`: `None` for the image as it is; a new index when `--platform` names
/// a subset of a multi-platform image. A multi-platform image with platforms missing from the
/// store cannot be pushed whole.
fn choose(
    store: &Store,
    name: &str,
    root: &Descriptor,
    wanted: &[Platform],
) -> anyhow::Result<Option<(Descriptor, Vec<u8>)>> {
    if root.is_manifest() {
        if let Some(p) = wanted.first() {
            let m = store.read_manifest(&root.digest)?.value;
            let actual = store.read_config(&m.config.digest)?.value.platform();
            if wanted.len() > 1 || !p.matcher().matches(&actual) {
                return Err(user_error(
                    format!("`{name}` is a single-platform image for `{actual}`"),
                    Some("push it without `--platform`"),
                ));
            }
        }
        return Ok(None);
    }
    let index = store.read_index(&root.digest)?.value;
    let present = |d: &Descriptor| complete(store, d);
    if wanted.is_empty() {
        let missing: Vec<&Descriptor> = index.manifests.iter().filter(|d| !present(d)).collect();
        if missing.is_empty() {
            return Ok(None);
        }
        let images = index.images().count();
        let have = index.images().filter(|d| present(d)).count();
        return Err(user_error(
            format!(
                "`{name}` is a multi-platform image with {have} of its {images} platforms in the store{}",
                if have == images {
                    " (some attestations are missing)"
                } else {
                    ""
                }
            ),
            Some(&format!(
                "pull them all with `manifold pull --all-platforms {name}`, or push the present ones with `--platform`; a list made with `manifold manifest create` is pushed with `manifold manifest push {name}`"
            )),
        ));
    }
    let mut keep: Vec<&Descriptor> = Vec::new();
    for p in wanted {
        let candidates: Vec<&Descriptor> = index
            .images()
            .filter(|d| d.is_manifest() && d.platform.is_some() && present(d))
            .collect();
        let best = p
            .matcher()
            .best(candidates.iter().filter_map(|d| d.platform.as_ref()))
            .map(|i| candidates[i]);
        let Some(d) = best else {
            return Err(user_error(
                format!("`{name}` has no platform `{p}` in the store"),
                Some(&format!(
                    "pull it first with `manifold pull --platform {p} {name}`"
                )),
            ));
        };
        if !keep.iter().any(|k| k.digest == d.digest) {
            keep.push(d);
        }
    }
    let kept: HashSet<&Digest> = keep.iter().map(|d| &d.digest).collect();
    // Attestations of the kept platforms go along when the store has them.
    for d in index
        .manifests
        .iter()
        .filter(|d| d.is_attestation() && present(d))
    {
        if d.annotation(oci::ANNOTATION_DOCKER_REFERENCE_DIGEST)
            .and_then(|s| Digest::parse(s).ok())
            .is_some_and(|s| kept.contains(&s))
        {
            keep.push(d);
        }
    }
    if keep.len() == index.manifests.len() {
        return Ok(None);
    }
    Ok(Some(content::subset_index(&root.media_type, &index, &keep)))
}

/// Whether a child of an index is wholly in the store (its manifest, config and layers).
fn complete(store: &Store, desc: &Descriptor) -> bool {
    if !desc.is_manifest() {
        return store.has_blob(&desc.digest);
    }
    store.is_complete(&desc.digest)
}
