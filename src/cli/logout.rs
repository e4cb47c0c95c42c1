//! `manifold logout [REGISTRY]`: forget a registry's credentials (config.json and helpers).

use super::args::LogoutArgs;
use crate::registry::credentials;

pub fn run(args: LogoutArgs) -> anyhow::Result<()> {
    let registry = super::login::registry_name(args.registry.as_deref())?;
    if credentials::erase(&registry)? {
        eprintln!("Removed login credentials for `{registry}`");
    } else {
        eprintln!("Not logged in to `{registry}`");
    }
    Ok(())
}
