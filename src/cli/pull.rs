//! `manifold pull [--platform P | --all-platforms] [-a] [-q] REF`: registry → store. The whole
//! index is kept; only the chosen platform's blobs are fetched (the host's by default).

use super::Settings;
use super::args::PullArgs;
use super::errors::user_error;
use super::output::outln;
use super::remote;
use crate::content::Platforms;
use crate::ops::Ops;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;

pub fn run(args: PullArgs, settings: &Settings) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.reference)?;
    if args.all_tags && names_tag_or_digest(&args.reference) {
        return Err(user_error(
            format!(
                "`{}` names a tag or digest, but `--all-tags` pulls every tag",
                args.reference
            ),
            Some("give the repository alone, e.g. `manifold pull -a NAME`"),
        ));
    }
    let wanted = args.platform.as_deref().map(Platform::parse).transpose()?;
    let platforms = if args.all_platforms {
        Platforms::All
    } else {
        Platforms::of(wanted.as_slice())
    };
    let store = settings.store()?;
    let txn = store.begin()?;
    let client = remote::client(settings)?;
    let progress = settings.progress(args.quiet);
    let ops = Ops::new(&store, Some(&client), &progress)
        .with_options(remote::copy_options(&args.transfer));
    let references = if args.all_tags {
        let tags = ops.repository_of(&reference)?.list_tags()?;
        if tags.is_empty() {
            return Err(user_error(
                format!("`{}` has no tags", reference.familiar_name()),
                None,
            ));
        }
        tags.iter()
            .map(|t| reference.with_tag(t))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![reference]
    };
    for r in &references {
        progress.message(&format!("Pulling {}", r.familiar()));
        let pulled = ops.pull(&txn, r, &platforms)?;
        if args.quiet {
            outln!("{}", pulled.root.digest)?;
        } else {
            progress.message(&format!("Digest: {}", pulled.root.digest));
            let status = if pulled.report.blobs_copied == 0 {
                format!("Image is up to date for {}", r.familiar())
            } else {
                format!("Downloaded newer image for {}", r.familiar())
            };
            progress.message(&format!("Status: {status}"));
            outln!("{}", r.familiar())?;
        }
    }
    Ok(())
}

/// Whether the user typed a tag or digest (a `:` after the last `/`, or an `@`).
fn names_tag_or_digest(input: &str) -> bool {
    input.contains('@')
        || input
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tells_a_named_tag_from_a_port() {
        assert!(super::names_tag_or_digest("alpine:3"));
        assert!(super::names_tag_or_digest("x@sha256:abc"));
        assert!(!super::names_tag_or_digest("localhost:5000/alpine"));
        assert!(!super::names_tag_or_digest("alpine"));
    }
}
