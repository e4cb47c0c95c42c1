//! The command line: clap definitions (parsing only, no side effects), resolved once into
//! `Settings`, then one module per command. Messages and progress go to stderr; only data a
//! script would pipe goes to stdout.

mod args;
mod errors;
mod help;
mod output;
mod progress;
mod rootless;
mod settings;

mod attest;
mod binfmt;
mod build;
mod commit;
mod completions;
mod containers;
mod exec;
mod history;
mod images;
mod import;
mod inspect;
mod kill;
mod load;
mod logs;
mod monitor;
mod platforms;
mod port;
mod prune;
mod ps;
mod restart;
mod rm;
mod rmi;
mod run;
mod save;
mod select;
mod service;
mod start;
mod stop;
mod system;
mod tag;
mod top;
mod verify;
mod wait;

mod bake;
mod copy;
mod login;
mod logout;
mod manifest;
mod pull;
mod push;
mod remote;
mod search;
mod sign;
mod tags;

use std::process::ExitCode;

pub use args::{Cli, Command};
pub use help::command;
pub use settings::Settings;

/// Exit status when manifold itself fails (docker's convention).
pub const EXIT_MANIFOLD_FAILED: u8 = 125;

pub fn main() -> ExitCode {
    let cli = help::parse();
    let mut settings = match Settings::resolve(&cli.global) {
        Ok(s) => s,
        Err(e) => return errors::report(&e),
    };
    // Before anything starts a thread: entering a user namespace needs a single thread.
    settings.privilege = rootless::start(&cli.command, &settings.root);
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
        Command::Run(a) => return run::run(*a, settings),
        Command::Ps(a) => ps::run(a, settings),
        Command::Logs(a) => logs::run(a, settings),
        Command::Exec(a) => return exec::run(a, settings),
        Command::Start(a) => return start::run(a, settings),
        Command::Stop(a) => stop::run(a, settings),
        Command::Restart(a) => restart::run(a, settings),
        Command::Kill(a) => kill::run(a, settings),
        Command::Wait(a) => wait::run(a, settings),
        Command::Port(a) => port::run(a, settings),
        Command::Top(a) => top::run(a, settings),
        Command::Monitor(a) => return monitor::run(a, settings),
        Command::Rm(a) => rm::run(a, settings),
        Command::Commit(a) => commit::run(a, settings),
        Command::Binfmt(a) => return binfmt::run(a, settings),
        Command::Platforms(a) => platforms::run(a, settings),
        Command::Verify(a) => return verify::run(a, settings),
        Command::Sign(a) => sign::run(a, settings),
        Command::Completions(a) => completions::run(a),
        Command::Pull(a) => pull::run(a, settings),
        Command::Push(a) => push::run(a, settings),
        Command::Copy(a) => copy::run(a, settings),
        Command::Login(a) => login::run(a, settings),
        Command::Logout(a) => logout::run(a),
        Command::Tags(a) => tags::run(a, settings),
        Command::Search(a) => search::run(a, settings),
        Command::Build(a) => build::run(*a, settings),
        Command::Manifest(a) => manifest::run(a, settings),
        Command::Bake(a) => bake::run(a, settings),
        Command::System(a) => system::run(a, settings),
        Command::Unshare(a) => return system::unshare(a, settings),
    }?;
    Ok(ExitCode::SUCCESS)
}
