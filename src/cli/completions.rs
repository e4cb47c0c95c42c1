//! `manifold completions bash|zsh|fish|…`: the shell completion script on stdout.

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "manifold", &mut std::io::stdout());
    Ok(())
}
