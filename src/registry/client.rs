//! The entry point: settings shared by every registry (insecure list, CA directories, retry
//! policy, verbose log, mirrors) and one transport per registry host, created on first use — so
//! what a registry was found to refuse is remembered by every worker for the rest of the run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::credentials::Credentials;
use super::error::RegistryError;
use super::http::InsecureRegistries;
use super::medium::Repository;
use super::mirrors::{Mirrors, PullSource};
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
    /// Where fallbacks for a registry's quirks are said, once each (the CLI: stderr).
    pub notice: Option<Log>,
    /// Mirrors read from for pulls.
    pub mirrors: Mirrors,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            cert_dirs: default_cert_dirs(),
            retry: RetryPolicy::default(),
            log: None,
            notice: None,
            mirrors: Mirrors::default(),
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
        let mut insecure = options.insecure_registries.clone();
        insecure.extend(options.mirrors.insecure_hosts());
        Client {
            insecure: InsecureRegistries::new(insecure),
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
            notice: self.options.notice.clone(),
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

    /// What a pull of `reference` reads from: its mirrors first (registries.conf,
    /// `--registry-mirror`), then the registry itself. Pushes use `repository`, never mirrors.
    pub fn pull_source(&self, reference: &Reference) -> Result<PullSource, RegistryError> {
        let mut endpoints = Vec::new();
        for e in self.options.mirrors.endpoints(reference)? {
            endpoints.push((
                Repository::new(self.transport(&e.registry)?, &e.repository),
                e.mirror,
            ));
        }
        Ok(PullSource::new(endpoints))
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
