//! How failures reach the user: `error: …`, each cause on its own `caused by:` line, and a
//! `hint: …` line where the user can act. manifold's own failures exit 125; a write to a stdout
//! whose reader has gone ends quietly with 0.

use std::process::ExitCode;

use super::EXIT_MANIFOLD_FAILED;
use crate::archive::ArchiveError;
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::store::StoreError;

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

fn hint_for(err: &anyhow::Error) -> Option<String> {
    // Module errors wrap each other transparently (`#[error(transparent)]`), which hides the
    // inner error from `chain()`: look through the wrappers by hand.
    for cause in err.chain() {
        if let Some(u) = cause.downcast_ref::<UserError>() {
            return u.hint.clone();
        }
        if let Some(e) = cause.downcast_ref::<crate::binfmt::BinfmtError>() {
            return e.hint();
        }
        if let Some(h) = cause
            .downcast_ref::<crate::attest::AttestError>()
            .and_then(crate::attest::AttestError::hint)
            .or_else(|| {
                cause
                    .downcast_ref::<crate::attest::KeyError>()
                    .and_then(crate::attest::KeyError::hint)
            })
        {
            return Some(h);
        }
        if let Some(e) = cause.downcast_ref::<crate::runtime::RuntimeError>()
            && let Some(h) = e.hint()
        {
            return Some(h);
        }
        // A full disk, whichever command was writing (the cause above it says where).
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(crate::space::is_out_of_space)
        {
            return Some(crate::space::NoSpace::HINT.into());
        }
        if let Some(h) = super::remote::hint(cause) {
            return Some(h);
        }
        if let Some(h) = super::manifest::hint(cause) {
            return Some(h);
        }
        if let Some(h) = super::bake::hint(cause) {
            return Some(h);
        }
        if let Some(h) = super::build::hint(cause) {
            return Some(h);
        }
        let store = cause
            .downcast_ref::<StoreError>()
            .or_else(|| match cause.downcast_ref::<ArchiveError>() {
                Some(ArchiveError::Store(s)) => Some(s),
                _ => None,
            })
            .or_else(
                || match cause.downcast_ref::<crate::runtime::RuntimeError>() {
                    Some(crate::runtime::RuntimeError::Store(s)) => Some(s),
                    _ => None,
                },
            );
        if let Some(hint) = store.and_then(store_hint) {
            return Some(hint.into());
        }
        let bad_reference = cause.downcast_ref::<ReferenceError>().is_some()
            || matches!(store, Some(StoreError::Reference(_)))
            || matches!(
                cause.downcast_ref::<ArchiveError>(),
                Some(ArchiveError::Reference(_))
            );
        if bad_reference {
            return Some(
                "references look like `name`, `name:tag`, `registry:port/name:tag` or `name@sha256:…`, in lower case"
                    .into(),
            );
        }
        if let Some(crate::content::ContentError::NoMatchingPlatform { .. }) = cause.downcast_ref()
        {
            return Some("choose one of the image's platforms with `--platform`".into());
        }
        if cause.downcast_ref::<PlatformError>().is_some() {
            return Some(
                "platforms look like `linux/arm64`, `linux/arm/v7`, `linux/amd64` or `arm64`"
                    .into(),
            );
        }
    }
    None
}

pub(super) fn store_hint(e: &StoreError) -> Option<&'static str> {
    match e {
        StoreError::ImageNotFound(_) => Some("`manifold images` lists the images in the store"),
        StoreError::Ambiguous { .. } => Some("`manifold images --no-trunc` shows full image IDs"),
        StoreError::InUse { .. } => Some("remove the tags one by one, or use `manifold rmi -f`"),
        StoreError::ForeignRoot { .. } => {
            Some("give `--root` a new or empty directory, or one that holds a manifold store")
        }
        StoreError::NoSpace(_) => Some(crate::space::NoSpace::HINT),
        _ => None,
    }
}
