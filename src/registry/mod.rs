//! A client of the OCI distribution spec (and Docker's registry API) of our own, on blocking
//! reqwest (its async client only for bodies streamed in one request): ping and authentication
//! (anonymous, Basic, Bearer tokens with scopes, identity tokens), credentials from docker's
//! config.json, manifests as exact bytes, blobs (resumable downloads; streamed, monolithic and
//! resumable chunked uploads; cross-repository mounts), tags and the catalog with pagination,
//! typed errors carrying the registry's codes with a retryable judgement. A repository is a
//! `content::Source` and `content::Sink`.
//!
//! ```text
//! client       settings shared by all registries, one transport per host
//! transport    HTTP client (TLS, CA files, plain HTTP where allowed), ping, auth, retries
//! auth         challenges, tokens and their cache
//! credentials  docker config.json: read (docker_credential), write (login/logout)
//! error        status errors with registry codes, retryable judgement
//! http         where credentials may go (origins, redirects), loopback hosts, body limits
//! manifests    GET/HEAD/PUT of manifests and indexes
//! blobs        HEAD/GET (Range resume), uploads (streamed in one request, chunked), mounts
//! stream       request bodies streamed in large pieces: the async client on its own runtime
//! referrers    manifests with `subject`: the referrers API, else the `sha256-<hex>` tag
//! tags         tags/list and _catalog, paginated
//! medium       Repository: Source + Sink
//! quirks       what a registry refuses (mounts, chunks, subjects...), found once per run
//! mirrors      registries.conf and --registry-mirror: where pulls read from
//! ```

pub(crate) mod auth;
mod blobs;
mod client;
pub mod credentials;
mod error;
mod http;
mod manifests;
mod medium;
mod mirrors;
mod quirks;
mod referrers;
mod stream;
mod tags;
mod transport;

pub use auth::{AuthError, Challenge};
pub use blobs::CHUNK_SIZE;
pub use client::{Client, ClientOptions, default_cert_dirs};
pub use credentials::{Credentials, CredentialsError};
pub use error::{ConnectCause, RateLimit, RegistryError, ServerError, StatusError};
pub use http::is_loopback;
pub use medium::{Repository, content_error};
pub use mirrors::{Endpoint, Mirrors, MirrorsError, PullSource, default_registries_conf};
pub use referrers::{COSIGN_TAG_SUFFIXES, Referrer, referrers_tag};
pub use transport::{Log, RetryPolicy, Transport, api_host};
