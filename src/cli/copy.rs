//! `manifold copy [--platform P]... [--all-platforms] SRC DEST`: registry → registry, streamed
//! (never through the store), every platform by default; blobs already in the destination
//! registry's other repositories are mounted.

use super::Settings;
use super::args::CopyArgs;
use super::output::outln;
use super::remote;
use crate::content::{self, Platforms, Sink, Source, WithDocument};
use crate::oci::{self, Descriptor, Digest, Document};
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
    let client = remote::client(settings)?;
    // The source is read as a pull is (its mirrors first); the destination never is.
    let src = client.pull_source(&src_ref)?;
    let dest = client.repository(&dest_ref)?;
    let progress = settings.progress(args.quiet);
    progress.message(&format!(
        "Copying {} to {}",
        src_ref.familiar(),
        dest_ref.familiar()
    ));
    let root = Source::resolve(&src, &src_ref)?;
    let mut subset = None;
    if !wanted.is_empty() {
        let bytes = content::fetch_verified(&src, &root)?;
        if let Document::Index(index) = oci::parse_document(&root.media_type, bytes)?.value {
            let platforms = Platforms::Each(wanted.iter().map(Platform::matcher).collect());
            let mut keep: Vec<&Descriptor> =
                content::select_children(&src_ref, &index, &platforms)?;
            let kept: Vec<Digest> = keep.iter().map(|d| d.digest.clone()).collect();
            keep.extend(index.manifests.iter().filter(|d| {
                d.is_attestation()
                    && d.annotation(oci::ANNOTATION_DOCKER_REFERENCE_DIGEST)
                        .and_then(|s| Digest::parse(s).ok())
                        .is_some_and(|s| kept.contains(&s))
            }));
            if keep.len() < index.manifests.len() {
                subset = Some(content::subset_index(&root.media_type, &index, &keep));
            }
        }
    }
    let subset = subset.map(|(desc, bytes)| WithDocument {
        inner: &src,
        root: desc,
        bytes,
    });
    let (root, source): (Descriptor, &dyn Source) = match &subset {
        Some(s) => (s.root.clone(), s),
        None => (root, &src),
    };
    content::copy_with(
        source,
        &dest,
        &src_ref,
        &root,
        &Platforms::All,
        &progress,
        &remote::copy_options(&args.transfer),
    )?;
    // Signatures and attestations (referrers, their fallback tags, cosign's tags) go along.
    let subjects = content::image_subjects(source, &root)?;
    let carried = content::copy_referrers(&client.repository(&src_ref)?, &dest, &subjects)?;
    if carried > 0 {
        progress.message(&format!(
            "Copied {carried} attestation and signature manifests"
        ));
    }
    Sink::tag(&dest, &dest_ref, &root)?;
    progress.message(&format!(
        "Copied {} as {}",
        root.digest,
        dest_ref.familiar()
    ));
    outln!("{}", root.digest)?;
    Ok(())
}
