//! The settings a command runs with, resolved once from the global flags and the environment.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use super::args::{GlobalArgs, ProgressMode};
use super::progress::CliProgress;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub progress: ProgressMode,
    pub verbose: u8,
}

impl Settings {
    pub fn resolve(args: &GlobalArgs) -> anyhow::Result<Settings> {
        let root = match &args.root {
            Some(r) if r.as_os_str().is_empty() => anyhow::bail!("`--root` is empty"),
            Some(r) => r.clone(),
            None => default_root()?,
        };
        let progress = match args.progress {
            ProgressMode::Auto if !std::io::stderr().is_terminal() => ProgressMode::None,
            p => p,
        };
        Ok(Settings {
            root,
            insecure_registries: args
                .insecure_registries
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            registry_mirrors: args
                .registry_mirrors
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            progress,
            verbose: args.verbose.saturating_add(args.verbose_short),
        })
    }

    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root)
            .with_context(|| format!("cannot open the store at {}", self.root.display()))
    }

    /// The progress reporter for this run (`quiet` silences it whatever the mode).
    pub fn progress(&self, quiet: bool) -> CliProgress {
        if quiet {
            return CliProgress::quiet();
        }
        CliProgress::new(self.progress)
    }
}

fn default_root() -> anyhow::Result<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/manifold"));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("manifold"));
    }
    let home = std::env::var_os("HOME")
        .context("neither `--root`, MANIFOLD_ROOT, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/manifold"))
}
