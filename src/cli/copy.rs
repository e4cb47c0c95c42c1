//! `manifold copy [--platform P]... [--all-platforms] SRC DEST`: registry → registry, streamed
//! (never through the store), every platform by default; blobs already in the destination
//! registry's other repositories are mounted.

use super::Settings;
use super::args::CopyArgs;
use super::output::outln;
use super::remote;
use crate::content::Platforms;
use crate::ops::Ops;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;

pub fn run(args: CopyArgs, settings: &Settings) -> anyhow::Result<()> {
    let src_ref = Reference::parse(&args.source)?;
    let dest_ref = Reference::parse(&args.destination)?;
    let wanted = args
        .platform
        .iter()
        .map(|p| Platform::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let platforms = match wanted.as_slice() {
        [] => Platforms::All,
        ps => Platforms::Each(ps.iter().map(Platform::matcher).collect()),
    };
    // The store is only where blobs are known to live (for mounts); no image goes through it.
    let store = settings.store()?;
    let client = remote::client(settings)?;
    let progress = settings.progress(args.quiet);
    let ops = Ops::new(&store, Some(&client), &progress)
        .with_options(remote::copy_options(&args.transfer));
    progress.message(&format!(
        "Copying {} to {}",
        src_ref.familiar(),
        dest_ref.familiar()
    ));
    let copied = ops.copy(&src_ref, &dest_ref, &platforms)?;
    if copied.referrers > 0 {
        progress.message(&format!(
            "Copied {} attestation and signature manifests",
            copied.referrers
        ));
    }
    progress.message(&format!(
        "Copied {} as {}",
        copied.root.digest,
        dest_ref.familiar()
    ));
    outln!("{}", copied.root.digest)?;
    Ok(())
}
