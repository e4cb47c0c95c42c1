//! What the registry commands share: the registry client built from the settings (verbose
//! request lines on stderr), and copy options.

use std::sync::Arc;

use super::Settings;
use super::args::TransferArgs;
use crate::content::CopyOptions;
use crate::registry::{Client, ClientOptions, Mirrors, default_registries_conf};

/// The registry client of a run: requests logged with `-v`, fallbacks for registries' quirks
/// said on stderr, mirrors from `--registry-mirror` and registries.conf.
pub fn client(settings: &Settings) -> anyhow::Result<Client> {
    let log: Option<crate::registry::Log> = (settings.verbose > 0).then(|| {
        let log: crate::registry::Log = Arc::new(|line: &str| eprintln!("registry: {line}"));
        log
    });
    Ok(Client::new(ClientOptions {
        log,
        ..client_options(settings)?
    }))
}

/// The client's options without the verbose log.
pub fn client_options(settings: &Settings) -> anyhow::Result<ClientOptions> {
    let mut mirrors = Mirrors::load(&default_registries_conf())?;
    mirrors.add_docker_mirrors(&settings.registry_mirrors)?;
    let notice: crate::registry::Log = Arc::new(|line: &str| eprintln!("{line}"));
    Ok(ClientOptions {
        insecure_registries: settings.insecure_registries.clone(),
        notice: Some(notice),
        mirrors,
        ..ClientOptions::default()
    })
}

pub fn copy_options(transfer: &TransferArgs) -> CopyOptions {
    CopyOptions {
        concurrency: transfer.concurrency.into(),
        ..CopyOptions::default()
    }
}
