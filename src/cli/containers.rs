//! What `ps`, `rm`, `commit`, `prune`, `rmi` and the service commands (`stop`, `start`, `kill`,
//! …) share about containers.

use super::errors::{self, user_error};
use super::output::outln;
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

/// Do `f` to each container named, printing each name as given once done (docker's habit for
/// `rm`, `stop`, `kill`, `start`…): every one is tried, and the command fails (after saying which
/// ones did) if any failed. `done` is the past participle in that message (`removed`).
pub fn each(
    keys: &[String],
    done: &str,
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for key in keys {
        let result = f(key).and_then(|()| Ok(outln!("{key}")?));
        if let Err(e) = result
            && errors::report_item(&e)
        {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(user_error(
            format!("{failed} of {} containers could not be {done}", keys.len()),
            None,
        ));
    }
    Ok(())
}
