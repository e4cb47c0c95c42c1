//! What `ps`, `rm`, `commit`, `prune` and `rmi` share about containers.

use crate::runtime::sys::RealSyscalls;
use crate::runtime::{Containers, OciRuntime};
use crate::store::Store;

/// The store's containers, after cleaning what killed manifold processes left (records of
/// containers that stopped meanwhile, their runtime state and mounts). A failure to clean is a
/// warning: listing must still work (as a user who may not unmount, say).
pub fn reconciled(store: &Store) -> anyhow::Result<Containers> {
    let containers = Containers::open(store.root())?;
    let root = store.root().to_path_buf();
    if let Err(e) = containers.reconcile(&RealSyscalls, store, |name| {
        OciRuntime::find(name, &root).ok()
    }) {
        eprintln!("warning: cannot clean up after stopped containers: {e}");
    }
    Ok(containers)
}
