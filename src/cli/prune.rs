//! `manifold prune [-a] [-f]`: remove dangling images (with `-a`, every image no container
//! uses, and the build cache), then every blob nothing reaches, leftover temp files, and the
//! snapshots no image or container needs. Cleans first what killed manifold processes left
//! behind: containers of killed builds, `--rm` containers that stopped, removals that failed or
//! were cut short.

use std::io::{BufRead, Write};

use super::Settings;
use super::args::PruneArgs;
use super::errors::{self, user_error};
use super::output::{human_size, outln};
use crate::runtime::sys::RealSyscalls;

pub fn run(args: PruneArgs, settings: &Settings) -> anyhow::Result<()> {
    if !args.force && !confirm(args.all)? {
        eprintln!("nothing removed (not confirmed; `-f` skips the question)");
        return Ok(());
    }
    let store = settings.store()?;
    let (containers, reconciled) = super::containers::reconcile(&store)?;
    let finished = containers.finish_removals(&RealSyscalls, &store)?;
    let failures = finished.failed.len();
    for (_, e) in finished.failed {
        errors::report(&e.into());
    }

    let deleted_containers: Vec<String> = reconciled
        .removed
        .into_iter()
        .chain(finished.removed)
        .collect();
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
        crate::builder::cache::Cache::clear(&store)?;
    }
    let report = store.gc()?;
    let snapshots = crate::runtime::prune_snapshots(&store)?;
    if !deleted_containers.is_empty() {
        outln!("Deleted Containers:")?;
        for id in &deleted_containers {
            outln!("{id}")?;
        }
        outln!()?;
    }
    if !deleted.is_empty() {
        outln!("Deleted Images:")?;
        for d in &deleted {
            outln!("deleted: {d}")?;
        }
        outln!()?;
    }
    let temp_files = report.temp_files_removed + snapshots.temp_dirs;
    let temp_bytes = report.temp_bytes_freed + snapshots.temp_bytes;
    if temp_files > 0 {
        outln!(
            "Deleted temp files: {temp_files} ({})",
            human_size(temp_bytes)
        )?;
    }
    outln!(
        "Total reclaimed space: {}",
        human_size(report.bytes_freed + snapshots.bytes + temp_bytes)
    )?;
    if failures > 0 {
        return Err(user_error(
            format!("{failures} containers could not be removed"),
            Some("remove what stands in the way (named above), then run `manifold prune` again"),
        ));
    }
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
