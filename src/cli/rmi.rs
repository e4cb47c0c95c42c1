//! `manifold rmi [-f] IMAGE...`: untag; an image no tag names any more is deleted, and its
//! blobs freed. Like docker, every argument is tried and the command fails if any failed.

use super::Settings;
use super::args::RmiArgs;
use super::errors::user_error;
use super::output::outln;
use crate::reference::Reference;
use crate::store::{Store, StoreError};

pub fn run(args: RmiArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let mut failed = 0;
    for image in &args.images {
        if let Err(e) = remove(&store, image, args.force)
            && super::errors::report_item(&e)
        {
            failed += 1;
        }
    }
    store.gc()?;
    let _ = crate::runtime::prune_snapshots(&store);
    if failed > 0 {
        return Err(user_error(
            format!(
                "{failed} of {} images could not be removed",
                args.images.len()
            ),
            None,
        ));
    }
    Ok(())
}

fn remove(store: &Store, input: &str, force: bool) -> anyhow::Result<()> {
    let found = store.lookup(input)?;
    let digest = found.descriptor.digest.clone();
    let holders: Vec<_> = store
        .entries()?
        .into_iter()
        .filter(|e| e.descriptor.digest == digest)
        .collect();
    if holders.is_empty() {
        return Err(user_error(
            format!(
                "`{input}` is one platform of a multi-platform image and cannot be removed on its own"
            ),
            Some("remove the multi-platform image that lists it"),
        ));
    }
    let tags: Vec<Reference> = holders.iter().filter_map(|e| e.reference.clone()).collect();
    // docker's rule: an image a container (running or not) was made from is removed only with
    // -f, and then only its name goes: the container keeps its blobs through its lease.
    let users = store.leases_of(&digest)?;
    if !users.is_empty() && !force {
        let ids: Vec<&str> = users
            .iter()
            .map(|l| &l.name[..l.name.len().min(12)])
            .collect();
        return Err(user_error(
            format!(
                "image `{input}` is used by {} container(s): {}",
                ids.len(),
                ids.join(", ")
            ),
            Some(
                "remove the containers first (`manifold rm`), or untag anyway with `manifold rmi -f`",
            ),
        ));
    }
    match &found.reference {
        // Named by a tag: untag; delete only when that was the last name.
        Some(reference) => {
            store.untag(reference)?;
            outln!("Untagged: {}", reference.familiar())?;
            if tags.len() == 1 {
                store.remove_image(&digest)?;
                outln!("Deleted: {digest}")?;
            }
        }
        // Named by ID or digest: the image itself goes, with every tag when forced.
        None => {
            if tags.len() > 1 && !force {
                return Err(StoreError::InUse {
                    digest,
                    count: tags.len(),
                    tags: tags
                        .iter()
                        .map(Reference::familiar)
                        .collect::<Vec<_>>()
                        .join(", "),
                }
                .into());
            }
            for t in &tags {
                outln!("Untagged: {}", t.familiar())?;
            }
            store.remove_image(&digest)?;
            outln!("Deleted: {digest}")?;
        }
    }
    Ok(())
}
