//! `manifold stop [-t SECONDS] CONTAINER...`: the container's stop signal (`--stop-signal`, the
//! image's STOPSIGNAL, else SIGTERM), then SIGKILL once the time is up (`-t`, the container's
//! `--stop-timeout`, else 10 seconds). A container that is not running is left as it is.

use std::time::Duration;

use clap::Args;

use super::Settings;
use crate::runtime::service::{self, DEFAULT_STOP_TIMEOUT};
use crate::runtime::{Containers, OciRuntime, Status};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub time: StopTime,
    /// Containers to stop: names or IDs
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `-t`, shared by `stop` and `restart`.
#[derive(Debug, Args)]
pub struct StopTime {
    /// Seconds to wait before SIGKILL [default: the container's --stop-timeout, else 10]
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    pub time: Option<u64>,
}

pub fn run(args: StopArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    super::containers::each(&args.containers, "stopped", |key| {
        stop(&store, &containers, key, args.time.time)
    })
}

/// Stop one container (`stop`, `restart`).
pub(super) fn stop(
    store: &Store,
    containers: &Containers,
    key: &str,
    time: Option<u64>,
) -> anyhow::Result<()> {
    let record = containers.find(key)?;
    if record.status != Status::Running {
        return Ok(());
    }
    let oci = OciRuntime::find(&record.runtime, store.root())?;
    let timeout = time
        .or(record.service.stop_timeout)
        .map_or(DEFAULT_STOP_TIMEOUT, Duration::from_secs);
    service::stop(containers, &oci, &record, timeout)?;
    // Without a monitor, nobody else brings its record in line.
    super::containers::reconcile(store)?;
    Ok(())
}
