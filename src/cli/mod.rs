//! The command line: clap definitions (parsing only, no side effects), resolved once into
//! `Settings`, then one module per command. Messages and progress go to stderr; only data a
//! script would pipe goes to stdout.

mod args;
mod errors;
mod output;
mod progress;
mod settings;

mod completions;
mod history;
mod images;
mod import;
mod inspect;
mod load;
mod prune;
mod rmi;
mod save;
mod tag;

mod bake;
mod copy;
mod login;
mod logout;
mod manifest;
mod pull;
mod push;
mod remote;
mod search;
mod tags;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command};
pub use settings::Settings;

/// Exit status when manifold itself fails (docker's convention).
pub const EXIT_MANIFOLD_FAILED: u8 = 125;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::resolve(&cli.global) {
        Ok(s) => s,
        Err(e) => return errors::report(&e),
    };
    match run(cli.command, &settings) {
        Ok(code) => code,
        Err(e) => errors::report(&e),
    }
}

fn run(command: Command, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Images(a) => images::run(a, settings),
        Command::Tag(a) => tag::run(a, settings),
        Command::Rmi(a) => rmi::run(a, settings),
        Command::Prune(a) => prune::run(a, settings),
        Command::Inspect(a) => inspect::run(a, settings),
        Command::History(a) => history::run(a, settings),
        Command::Save(a) => save::run(a, settings),
        Command::Load(a) => load::run(a, settings),
        Command::Import(a) => import::run(a, settings),
        Command::Completions(a) => completions::run(a),
        Command::Pull(a) => pull::run(a, settings),
        Command::Push(a) => push::run(a, settings),
        Command::Copy(a) => copy::run(a, settings),
        Command::Login(a) => login::run(a, settings),
        Command::Logout(a) => logout::run(a),
        Command::Tags(a) => tags::run(a, settings),
        Command::Search(a) => search::run(a, settings),
        Command::Manifest(a) => manifest::run(a, settings),
        Command::Bake(a) => bake::run(a, settings),
    }?;
    Ok(ExitCode::SUCCESS)
}
