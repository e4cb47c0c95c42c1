//! How failures reach the user: `error: …`, each cause on its own `caused by:` line, and a
//! `hint: …` line where the user can act. manifold's own failures exit 125; a write to a stdout
//! whose reader has gone ends quietly with 0.

use std::process::ExitCode;

use super::EXIT_MANIFOLD_FAILED;

/// An error raised by a command itself, with what the user can do about it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

/// A failure already reported on stderr (by a container's monitor): exit with its status
/// without another word.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct Reported(pub u8);

pub fn user_error(message: impl Into<String>, hint: Option<&str>) -> anyhow::Error {
    UserError {
        message: message.into(),
        hint: hint.map(str::to_string),
    }
    .into()
}

pub fn report(err: &anyhow::Error) -> ExitCode {
    // `manifold images | head -1`: the reader has all it wanted. Say nothing and succeed, as
    // ripgrep does, so a `pipefail` script does not fail on it.
    if super::output::stdout_closed(err) {
        return ExitCode::SUCCESS;
    }
    if let Some(Reported(code)) = err.downcast_ref() {
        return ExitCode::from(*code);
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = hint_for(err) {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(exit_code(err))
}

/// Report the failure of one item of a command that goes on with the next (`rm`, `rmi`,
/// `manifest rm`); whether it counts as a failure. A closed stdout does not: the item's work is
/// done, only its line is lost, and the command ends quietly like any other.
pub fn report_item(err: &anyhow::Error) -> bool {
    if super::output::stdout_closed(err) {
        return false;
    }
    report(err);
    true
}

/// docker's statuses for a failed `run`: 127 when the command is not found, 126 when it cannot
/// be executed; 125 for every other failure of manifold's.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(Reported(code)) = err.downcast_ref() {
        return *code;
    }
    err.chain()
        .find_map(|c| c.downcast_ref::<crate::runtime::RuntimeError>())
        .map_or(EXIT_MANIFOLD_FAILED, |e| e.exit_code())
}

/// The first hint along the chain, outermost first: a command's own error carries its hint, each
/// module's error type answers for its own cases (see `crate::hint`).
fn hint_for(err: &anyhow::Error) -> Option<String> {
    err.chain()
        .find_map(|cause| match cause.downcast_ref::<UserError>() {
            Some(user) => user.hint.clone(),
            None => crate::hint::of(cause),
        })
}
