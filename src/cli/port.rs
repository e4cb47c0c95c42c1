//! `manifold port CONTAINER [PORT[/PROTO]]`: a running container's published ports
//! (`80/tcp -> 0.0.0.0:8080`), or the host addresses of one of them.

use clap::Args;

use super::Settings;
use super::errors::user_error;
use super::output::outln;
use crate::runtime::ports::ContainerPort;
use crate::runtime::{RuntimeError, Status};

#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container: name, ID or ID prefix
    pub container: String,
    /// Only this container port (`80`, `53/udp`)
    #[arg(value_name = "PORT[/PROTO]")]
    pub port: Option<String>,
}

pub fn run(args: PortArgs, settings: &Settings) -> anyhow::Result<()> {
    let wanted = args
        .port
        .as_deref()
        .map(ContainerPort::parse)
        .transpose()
        .map_err(RuntimeError::from)?;
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    let record = containers.find(&args.container)?;
    let mut ports = if record.status == Status::Running {
        record.service.ports.clone()
    } else {
        Vec::new()
    };
    ports.sort_by_key(|p| (p.container(), p.host_ip, p.host_port));
    match wanted {
        None => {
            for p in &ports {
                outln!("{} -> {}", p.container(), p.host_address())?;
            }
        }
        Some(w) => {
            let matching: Vec<_> = ports.iter().filter(|p| p.container() == w).collect();
            if matching.is_empty() {
                return Err(user_error(
                    format!("no public port `{w}` published for `{}`", args.container),
                    None,
                ));
            }
            for p in matching {
                outln!("{}", p.host_address())?;
            }
        }
    }
    Ok(())
}
