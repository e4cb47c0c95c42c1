//! What `ps`, `rm`, `commit`, `prune` and `rmi` share about containers.

use crate::runtime::sys::RealSyscalls;
use crate::runtime::{Containers, OciRuntime, Reconciled};
use crate::store::Store;

/// The store's containers, after cleaning what killed manifold processes left (records of
/// containers that stopped meanwhile, their runtime state and mounts; ephemeral containers of
/// killed builds). A failure to clean is a warning: listing must still work (as a user who may
/// not unmount, say).
pub fn reconciled(store: &Store) -> anyhow::Result<Containers> {
    Ok(reconcile(store)?.0)
}

/// [`reconciled`], and what it cleaned.
pub fn reconcile(store: &Store) -> anyhow::Result<(Containers, Reconciled)> {
    let containers = Containers::open(store.root())?;
    let root = store.root().to_path_buf();
    let done = containers
        .reconcile(&RealSyscalls, store, |name| {
            OciRuntime::find(name, &root).ok()
        })
        .unwrap_or_else(|e| {
            eprintln!("warning: cannot clean up after stopped containers: {e}");
            Reconciled::default()
        });
    Ok((containers, done))
}
