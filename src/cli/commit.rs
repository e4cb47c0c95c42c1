//! `manifold commit [-c INSTR]... [-m MSG] [-a AUTHOR] CONTAINER [REF]`: a container's changes
//! as a new image (one more layer on top of its image, OCI whiteouts for what it deleted);
//! prints the new image's digest.

use clap::Args;

use super::Settings;
use super::output::outln;
use crate::reference::Reference;
use crate::runtime::OciRuntime;
use crate::runtime::commit::{CommitOptions, commit};

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message (recorded in history)
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author (recorded in the config and history)
    #[arg(short, long)]
    pub author: Option<String>,
    /// Do not pause a running container while its changes are read
    #[arg(long = "no-pause")]
    pub no_pause: bool,
    /// The container: name or ID
    pub container: String,
    /// Name of the new image
    pub reference: Option<String>,
}

pub fn run(args: CommitArgs, settings: &Settings) -> anyhow::Result<()> {
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    let record = containers.find(&args.container)?;
    // The container's runtime pauses it while it runs; a stopped one needs none.
    let oci = OciRuntime::find(&record.runtime, store.root()).ok();
    let done = commit(
        &store,
        &containers,
        oci.as_ref(),
        &record,
        &CommitOptions {
            changes: args.changes,
            message: args.message,
            author: args.author,
            reference,
            pause: !args.no_pause,
        },
    )?;
    outln!("{}", done.descriptor.digest)?;
    Ok(())
}
