//! What the registry commands share: the registry client built from the settings (verbose
//! request lines on stderr), copy options, and the hints for registry failures.

use std::sync::Arc;

use super::Settings;
use super::args::TransferArgs;
use crate::content::{ContentError, CopyOptions};
use crate::registry::{
    AuthError, Client, ClientOptions, ConnectCause, Mirrors, RegistryError, default_registries_conf,
};

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
        RegistryError::Connect {
            registry,
            cause: ConnectCause::Refused,
            ..
        } => format!("is the registry running at `{registry}`? nothing accepts connections there"),
        RegistryError::Connect {
            registry,
            cause: ConnectCause::Dns,
            ..
        } => format!(
            "check the name `{}`: it does not resolve (a typo, or no DNS here)",
            crate::registry::api_host(registry)
        ),
        RegistryError::Connect {
            registry,
            cause: ConnectCause::Tls,
            ..
        } => format!(
            "put the registry's CA in /etc/docker/certs.d/{registry}/ca.crt (and a client certificate it requires in client.cert and client.key there); a registry that serves plain HTTP or a certificate you do not check needs `--insecure-registry {registry}`"
        ),
        // A TLS 1.3 server that wants a client certificate closes the connection after the
        // handshake: that reaches us as a closed connection, not as a TLS error.
        RegistryError::Connect { registry, .. } if !crate::registry::is_loopback(registry) => {
            format!(
                "check that `{registry}` is up and reachable from here; a registry that serves plain HTTP or a self-signed certificate needs `--insecure-registry {registry}` (or its CA in /etc/docker/certs.d/{registry}/ca.crt), one that requires a client certificate needs it in client.cert and client.key there"
            )
        }
        RegistryError::Connect { registry, .. } => format!(
            "check that a registry is listening at `{registry}`; one that requires a client certificate needs it in /etc/docker/certs.d/{registry}/client.cert and client.key"
        ),
        RegistryError::ClientCertificate { .. } => {
            "a client certificate is a PEM `NAME.cert` with its PEM key `NAME.key` (PKCS#8, RSA or EC) next to it".into()
        }
        RegistryError::MixedIndexRefused { .. } => {
            "make the list a Docker manifest list (`manifold manifest create --format docker LIST IMAGE...`), or convert its images to OCI manifests (e.g. `skopeo copy --format oci`) and list those".into()
        }
        RegistryError::Status(s) if s.status == 429 => match &s.rate_limit {
            Some(_) => format!(
                "the registry limits pulls: wait for the window to pass, or log in (`manifold login {}`) for a higher limit",
                s.registry
            ),
            None => "the registry asks for fewer requests: try again later, or with a lower `--concurrency`".into(),
        },
        RegistryError::Mirrors(_) => {
            "fix the file, or point `MANIFOLD_REGISTRIES_CONF` at another; `--registry-mirror` takes a URL such as `https://mirror.example:5000`".into()
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
