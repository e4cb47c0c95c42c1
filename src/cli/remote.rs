//! What the registry commands share: the registry client built from the settings (verbose
//! request lines on stderr), copy options, and the hints for registry failures.

use std::sync::Arc;

use super::Settings;
use super::args::TransferArgs;
use crate::content::{ContentError, CopyOptions};
use crate::registry::{AuthError, Client, ClientOptions, RegistryError};

pub fn client(settings: &Settings) -> Client {
    let log: Option<crate::registry::Log> = (settings.verbose > 0).then(|| {
        let log: crate::registry::Log = Arc::new(|line: &str| eprintln!("registry: {line}"));
        log
    });
    Client::new(ClientOptions {
        insecure_registries: settings.insecure_registries.clone(),
        log,
        ..ClientOptions::default()
    })
}

pub fn copy_options(transfer: &TransferArgs) -> CopyOptions {
    CopyOptions {
        concurrency: transfer.concurrency.into(),
        ..CopyOptions::default()
    }
}

/// The registry error inside an error chain's link, if it is one (a content error carries it
/// boxed).
fn registry_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a RegistryError> {
    if let Some(r) = cause.downcast_ref::<RegistryError>() {
        return Some(r);
    }
    match cause.downcast_ref::<ContentError>()? {
        ContentError::Backend(b) | ContentError::Transient(b) => b.downcast_ref::<RegistryError>(),
        _ => None,
    }
}

const SCHEMA1_HINT: &str =
    "re-push the image with a current docker, podman or skopeo (they convert it to schema2)";

/// What the user can do about a registry failure.
pub fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(ContentError::NoMatchingPlatform { .. }) = cause.downcast_ref::<ContentError>() {
        return Some(
            "choose one of its platforms with `--platform`, or take them all with `--all-platforms`"
                .into(),
        );
    }
    let schema1 = matches!(
        cause.downcast_ref::<ContentError>(),
        Some(ContentError::Oci(crate::oci::OciError::Schema1(_)))
    ) || matches!(
        cause.downcast_ref::<crate::oci::OciError>(),
        Some(crate::oci::OciError::Schema1(_))
    );
    if schema1 {
        return Some(SCHEMA1_HINT.into());
    }
    let e = registry_error(cause)?;
    Some(match e {
        RegistryError::Unauthorized {
            registry,
            anonymous: true,
            ..
        } => format!("log in with `manifold login {registry}`"),
        RegistryError::Unauthorized { registry, .. } => format!(
            "check the user name and password, then log in again with `manifold login {registry}`"
        ),
        RegistryError::Denied { .. } => {
            "check the repository name, and that your account may access it".into()
        }
        RegistryError::NotFound { .. } => {
            "check the name and tag; `manifold tags REGISTRY/NAME` lists a repository's tags".into()
        }
        RegistryError::Connect { registry, .. } if !crate::registry::is_loopback(registry) => {
            format!(
                "check that `{registry}` is up and its name is right; a registry that serves plain HTTP or a self-signed certificate needs `--insecure-registry {registry}` (or its CA in /etc/docker/certs.d/{registry}/ca.crt)"
            )
        }
        RegistryError::Connect { registry, .. } => {
            format!("check that a registry is listening at `{registry}`")
        }
        RegistryError::NotLoopback { registry, .. } => format!(
            "a `.localhost` name counts as this machine only when it resolves to loopback addresses alone; if you trust `{registry}` in plain HTTP, pass `--insecure-registry {registry}`"
        ),
        RegistryError::Auth(AuthError::InsecureRealm { host, .. }) => format!(
            "the token server should use HTTPS; if you trust the network to `{host}`, pass `--insecure-registry {host}`"
        ),
        RegistryError::CatalogUnsupported { .. } => {
            "search needs the registry's `/v2/_catalog`; `manifold tags REGISTRY/NAME` works for a known repository".into()
        }
        RegistryError::Oci(crate::oci::OciError::Schema1(_)) => SCHEMA1_HINT.into(),
        _ => return None,
    })
}
