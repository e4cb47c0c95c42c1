//! `manifold completions bash|zsh|fish|…`: the shell completion script on stdout.

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs};
use super::output::write_stdout;

pub fn run(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    // clap_complete panics when its writer fails: render first, then write to stdout.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "manifold", &mut script);
    Ok(write_stdout(&script)?)
}
