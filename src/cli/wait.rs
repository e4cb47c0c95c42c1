//! `manifold wait CONTAINER...`: wait until each container has exited, and print its exit
//! status.

use clap::Args;

use super::Settings;
use super::errors::user_error;
use super::output::outln;
use crate::runtime::service::{self, Waited};
use crate::runtime::{OciRuntime, Status};

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Containers to wait for: names or IDs
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn run(args: WaitArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    for key in &args.containers {
        let record = containers.find(key)?;
        let code = match record.status {
            Status::Running | Status::Created => {
                let oci = OciRuntime::find(&record.runtime, store.root()).ok();
                match service::wait(&containers, oci.as_ref(), &record, None)? {
                    Waited::Exited(Some(code)) => Some(code),
                    _ => {
                        // Without a monitor: the record, brought in line.
                        super::containers::reconcile(&store)?;
                        containers.get(&record.id).ok().and_then(|r| r.exit_code)
                    }
                }
            }
            _ => record.exit_code,
        };
        let Some(code) = code else {
            return Err(user_error(
                format!(
                    "the exit status of container {} is unknown: its monitor was gone when it exited",
                    record.short_id()
                ),
                None,
            ));
        };
        outln!("{code}")?;
    }
    Ok(())
}
