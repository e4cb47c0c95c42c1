//! `manifold prune [-a] [-f]`: remove dangling images (with `-a`, every image no container
//! uses, and the build cache), then every blob nothing reaches, leftover temp files, and the snapshots no image or
//! container needs. Cleans first what killed manifold processes left behind.

use std::io::{BufRead, Write};

use super::Settings;
use super::args::PruneArgs;
use super::output::{human_size, outln};

pub fn run(args: PruneArgs, settings: &Settings) -> anyhow::Result<()> {
    if !args.force && !confirm(args.all)? {
        eprintln!("nothing removed (not confirmed; `-f` skips the question)");
        return Ok(());
    }
    let store = settings.store()?;
    super::containers::reconciled(&store)?;
    // Images containers were made from stay (their blobs would anyway, through the leases).
    let leased: std::collections::HashSet<_> = store
        .leases()?
        .into_iter()
        .flat_map(|l| l.digests)
        .collect();
    let before = store.entries()?;
    for entry in &before {
        if !args.all && entry.reference.is_some() {
            continue;
        }
        if leased.contains(&entry.descriptor.digest) {
            continue;
        }
        match &entry.reference {
            Some(r) => {
                store.untag(r)?;
                outln!("untagged: {}", r.familiar())?;
            }
            None => {
                store.remove_image(&entry.descriptor.digest)?;
            }
        }
    }
    let after: Vec<_> = store
        .entries()?
        .into_iter()
        .map(|e| e.descriptor.digest)
        .collect();
    let mut deleted: Vec<_> = before
        .iter()
        .map(|e| e.descriptor.digest.clone())
        .filter(|d| !after.contains(d))
        .collect();
    deleted.dedup();
    if args.all {
        // docker's `system prune -a` drops the build cache too.
        crate::build::cache::Cache::clear(&store)?;
    }
    let report = store.gc()?;
    let (_, snapshot_bytes) = crate::runtime::prune_snapshots(&store)?;
    if !deleted.is_empty() {
        outln!("Deleted Images:")?;
        for d in &deleted {
            outln!("deleted: {d}")?;
        }
        outln!()?;
    }
    outln!(
        "Total reclaimed space: {}",
        human_size(report.bytes_freed + snapshot_bytes)
    )?;
    Ok(())
}

fn confirm(all: bool) -> anyhow::Result<bool> {
    let what = if all {
        "all images"
    } else {
        "all dangling images"
    };
    eprint!(
        "WARNING! This will remove {what} and every unreferenced blob.\nAre you sure you want to continue? [y/N] "
    );
    std::io::stderr().flush()?;
    // Like docker, the answer is read from stdin even when it is not a terminal, so
    // `yes | manifold prune` works; end of input means no.
    let stdin = std::io::stdin();
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}
