//! `manifold restart [-t SECONDS] CONTAINER...`: `stop`, then `start`.

use clap::Args;

use super::Settings;

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Seconds to wait before SIGKILL [default: the container's --stop-timeout, else 10]
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    pub time: Option<u64>,
    /// Containers to restart: names or IDs
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn run(args: RestartArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    super::containers::each(&args.containers, "restarted", |key| {
        super::stop::stop(&store, &containers, key, args.time)?;
        super::start::start(settings, &containers, key)
    })
}
