//! `manifold kill [-s SIGNAL] CONTAINER...`: send a signal (SIGKILL by default) to each
//! container's first process. A container killed by SIGTERM exits with 143, by SIGKILL with 137
//! (a process that handles the signal decides for itself).

use clap::Args;

use super::Settings;
use crate::runtime::OciRuntime;
use crate::runtime::service::{self, parse_signal};

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal: a name (`TERM`, `SIGHUP`) or a number
    #[arg(short, long, default_value = "KILL", value_name = "SIGNAL")]
    pub signal: String,
    /// Containers to signal: names or IDs
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn run(args: KillArgs, settings: &Settings) -> anyhow::Result<()> {
    let signal = parse_signal(&args.signal)?;
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    super::containers::each(&args.containers, "signalled", |key| {
        let record = containers.find(key)?;
        let oci = OciRuntime::find(&record.runtime, store.root())?;
        Ok(service::kill(&oci, &record, signal)?)
    })
}
