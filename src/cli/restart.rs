//! `manifold restart [-t SECONDS] CONTAINER...`: `stop`, then `start`.

use clap::Args;

use super::Settings;

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub time: super::stop::StopTime,
    /// Containers to restart: names or IDs
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn run(args: RestartArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    super::containers::each(&args.containers, "restarted", |key| {
        super::stop::stop(&store, &containers, key, args.time.time)?;
        super::start::start(settings, &containers, key)
    })
}
