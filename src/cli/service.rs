//! `run`'s flags for service containers (`-d`, `-p`, `-P`, resource limits, stop settings, log
//! options), checked before anything is made, and what they become for one image: the
//! `Service` a container records.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::errors::user_error;
use crate::oci::ImageConfig;
use crate::runtime::health::Healthcheck;
use crate::runtime::logs::LogOptions;
use crate::runtime::ports::{self, PortRequest};
use crate::runtime::resources::Resources;
use crate::runtime::service::{Service, parse_signal};
use crate::runtime::{Network, RuntimeError};

// Not a doc comment: a flattened struct's doc becomes the `about` of the command.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct ServiceArgs {
    /// Run the container in the background under a monitor of its own; print its ID
    #[arg(short, long)]
    pub detach: bool,
    /// Publish a container port on the host: `8080:80`, `127.0.0.1:8080:80/udp`, `80` (a free
    /// host port), `8000-8010:80-90`; repeatable
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:][HOST:]CONTAINER[/PROTO]"
    )]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs, each on a free host port
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Memory limit (`512m`, `1g`)
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit, in CPUs (`1.5`)
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Most processes the container may have (0 or -1: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Signal `stop` sends first [default: the image's STOPSIGNAL, else SIGTERM]
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits for the container before SIGKILL [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Log option of a detached container: `max-size=SIZE` (`-1`: unbounded; default 10m),
    /// `max-file=N` (default 3)
    #[arg(long = "log-opt", value_name = "OPT")]
    pub log_opts: Vec<String>,
}

/// The flags, checked: what does not depend on the image.
#[derive(Debug, Clone)]
pub struct Checked {
    pub ports: Vec<PortRequest>,
    pub resources: Resources,
    pub log: LogOptions,
}

/// docker's words when ports meet the host network.
pub const HOST_NETWORK_PORTS: &str =
    "WARNING: Published ports are discarded when using host network mode";

impl ServiceArgs {
    /// Every flag's syntax, and that the machine can apply the limits: a bad value changes
    /// nothing.
    pub fn check(&self, network: Network) -> anyhow::Result<Checked> {
        let mut ports = Vec::new();
        for p in &self.publish {
            ports.extend(ports::parse(p).map_err(RuntimeError::from)?);
        }
        if network == Network::None && (!ports.is_empty() || self.publish_all) {
            return Err(user_error(
                "port publishing needs a network: `--network none` has none",
                Some("drop `-p`/`-P`, or use the default network (`--network bridge`)"),
            ));
        }
        if let Some(s) = &self.stop_signal {
            parse_signal(s)?;
        }
        let resources = Resources::parse(
            self.memory.as_deref(),
            self.cpus.as_deref(),
            self.pids_limit,
        )
        .map_err(RuntimeError::from)?;
        resources.check().map_err(RuntimeError::from)?;
        let log = LogOptions::parse(&self.log_opts).map_err(RuntimeError::from)?;
        Ok(Checked {
            ports,
            resources,
            log,
        })
    }

    pub fn publishes(&self) -> bool {
        !self.publish.is_empty() || self.publish_all
    }

    /// What a container of the image `config` records; its ports get their host ports here
    /// (an error naming one already in use).
    pub fn service_for(
        &self,
        checked: &Checked,
        config: &ImageConfig,
        network: Network,
        interactive: bool,
    ) -> anyhow::Result<Service> {
        let exposed = ports::exposed(config);
        let mut requests = checked.ports.clone();
        if self.publish_all {
            requests.extend(ports::publish_all(&exposed));
        }
        let published = match network {
            Network::Private => ports::allocate(&requests).map_err(RuntimeError::from)?,
            // Discarded, with docker's warning (printed once, by `run`).
            Network::Host | Network::None => Vec::new(),
        };
        let rc = config.config.as_ref();
        let stop_signal = self.stop_signal.clone().or_else(|| {
            rc.and_then(|c| c.stop_signal.clone())
                .filter(|s| !s.is_empty())
        });
        if let Some(s) = &stop_signal {
            parse_signal(s)?;
        }
        Ok(Service {
            logged: self.detach,
            ports: published,
            exposed,
            stop_signal,
            stop_timeout: self.stop_timeout,
            healthcheck: Healthcheck::from_config(rc.and_then(|c| c.healthcheck.as_ref())),
            health: None,
            log: Some(checked.log),
            interactive: interactive && self.detach,
            resources: checked.resources,
        })
    }
}
