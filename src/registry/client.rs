//! The entry point: settings shared by every registry (insecure list, CA directories, retry
//! policy, verbose log) and one transport per registry host, created on first use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::credentials::Credentials;
use super::error::RegistryError;
use super::http::InsecureRegistries;
use super::medium::Repository;
use super::tags;
use super::transport::{Log, RetryPolicy, Transport, TransportOptions};
use crate::reference::Reference;

/// docker's and podman's per-registry CA directories. `MANIFOLD_CERTS_DIRS` (colon separated)
/// replaces them, for tests and unusual setups.
pub fn default_cert_dirs() -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os("MANIFOLD_CERTS_DIRS") {
        return std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ]
}

#[derive(Clone)]
pub struct ClientOptions {
    /// `host[:port]` entries allowed plain HTTP and unverified TLS (a bare host: any port).
    pub insecure_registries: Vec<String>,
    pub cert_dirs: Vec<PathBuf>,
    pub retry: RetryPolicy,
    pub log: Option<Log>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            cert_dirs: default_cert_dirs(),
            retry: RetryPolicy::default(),
            log: None,
        }
    }
}

pub struct Client {
    options: ClientOptions,
    insecure: InsecureRegistries,
    transports: Mutex<HashMap<String, Arc<Transport>>>,
}

impl Client {
    pub fn new(options: ClientOptions) -> Client {
        Client {
            insecure: InsecureRegistries::new(options.insecure_registries.clone()),
            options,
            transports: Mutex::new(HashMap::new()),
        }
    }

    fn transport_options(&self) -> TransportOptions {
        TransportOptions {
            insecure_registries: self.insecure.clone(),
            cert_dirs: self.options.cert_dirs.clone(),
            retry: self.options.retry.clone(),
            log: self.options.log.clone(),
            credentials: None,
        }
    }

    /// The shared transport of a registry (`host[:port]`).
    pub fn transport(&self, registry: &str) -> Result<Arc<Transport>, RegistryError> {
        let mut map = self.transports.lock().unwrap();
        if let Some(t) = map.get(registry) {
            return Ok(t.clone());
        }
        let t = Arc::new(Transport::new(registry, self.transport_options())?);
        map.insert(registry.to_string(), t.clone());
        Ok(t)
    }

    /// The repository a reference names.
    pub fn repository(&self, reference: &Reference) -> Result<Repository, RegistryError> {
        Ok(Repository::new(
            self.transport(reference.registry())?,
            reference.repository(),
        ))
    }

    /// Check `credentials` against `registry`; returns what to store (an identity token when
    /// the token server gave one in exchange for the password).
    pub fn login(
        &self,
        registry: &str,
        credentials: Credentials,
    ) -> Result<Credentials, RegistryError> {
        let mut options = self.transport_options();
        options.credentials = Some(credentials);
        Transport::new(registry, options)?.verify_login()
    }

    /// Every repository of a registry (its `_catalog`).
    pub fn catalog(&self, registry: &str) -> Result<Vec<String>, RegistryError> {
        tags::catalog(&*self.transport(registry)?)
    }
}
