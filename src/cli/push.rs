//! `manifold push [--platform P]... IMAGE [DEST]`: store → registry, children first, then the
//! index, then the tag; the local bytes exactly, so digests are preserved. What the store lacks
//! of the image (platforms of a sparse index, layers of a list's children) is fetched first;
//! `--platform` pushes a subset of a multi-platform image as a new index.

use super::Settings;
use super::args::PushArgs;
use super::errors::user_error;
use super::output::outln;
use super::remote;
use crate::content::Platforms;
use crate::ops::Ops;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;

pub fn run(args: PushArgs, settings: &Settings) -> anyhow::Result<()> {
    let wanted = args
        .platform
        .iter()
        .map(|p| Platform::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let platforms = match wanted.as_slice() {
        [] => Platforms::All,
        ps => Platforms::of(ps),
    };
    let destination = args
        .destination
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let store = settings.store()?;
    let client = remote::client(settings)?;
    let progress = settings.progress(args.quiet);
    let ops = Ops::new(&store, Some(&client), &progress)
        .with_options(remote::copy_options(&args.transfer));
    // Keeps gc from removing blobs while they are fetched and read.
    let txn = store.begin()?;
    let image = ops.ensure_local(&txn, &args.image, &platforms)?;
    let destination = match (destination, &image.reference) {
        (Some(d), _) => d,
        (None, Some(r)) => r.clone(),
        (None, None) => {
            return Err(user_error(
                format!("`{}` has no name to push to", args.image),
                Some("give a destination: `manifold push IMAGE REGISTRY/NAME:TAG`"),
            ));
        }
    };
    progress.message(&format!("Pushing {}", destination.familiar()));
    let pushed = ops.push(
        &txn,
        &image.name,
        &image.descriptor,
        &destination,
        &platforms,
    )?;
    if pushed.referrers > 0 {
        progress.message(&format!(
            "Pushed {} attestation and signature manifests",
            pushed.referrers
        ));
    }
    progress.message(&format!(
        "{}: digest: {} size: {}",
        destination.tag().unwrap_or("latest"),
        pushed.root.digest,
        pushed.root.size
    ));
    outln!("{}", pushed.root.digest)?;
    Ok(())
}
