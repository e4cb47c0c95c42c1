//! `manifold rm [-f] CONTAINER...`: remove containers (their upper directory, records, runtime
//! state and the hold on their image). A running one needs `-f`, which kills it first. Every
//! argument is tried; the command fails if any failed.

use std::time::{Duration, Instant};

use clap::Args;

use super::Settings;
use crate::runtime::sys::RealSyscalls;
use crate::runtime::{Containers, OciRuntime, RuntimeError, Status};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Containers to remove: names or IDs
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn run(args: RmArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    super::containers::each(&args.containers, "removed", |key| {
        remove(&store, &containers, key, args.force)
    })
}

fn remove(store: &Store, containers: &Containers, key: &str, force: bool) -> anyhow::Result<()> {
    let record = containers.find(key)?;
    let runtime = OciRuntime::find(&record.runtime, store.root()).ok();
    if record.status == Status::Running {
        if !force {
            return Err(RuntimeError::Running {
                id: record.short_id().to_string(),
            }
            .into());
        }
        if let Some(rt) = &runtime {
            let _ = rt.kill(&record.id, "KILL");
        }
        // The manifold that runs it records the exit (and removes it with --rm); wait for that,
        // then take what is left.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match containers.find(&record.id) {
                Ok(r) if r.status == Status::Running && r.owner.is_some_and(|o| o.is_alive()) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(_) => break,
                Err(RuntimeError::NoSuchContainer(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    match containers.remove(&RealSyscalls, runtime.as_ref(), store, &record.id) {
        Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let _ = crate::runtime::prune_snapshots(store);
    Ok(())
}
