//! `manifold manifest create|annotate|inspect|push|rm`: manifest lists from existing images,
//! local or in registries. The work is in `crate::manifest`; this file parses, prints and hints.

use clap::{Args, Subcommand, ValueEnum};

use super::Settings;
use super::args::TransferArgs;
use super::output::outln;
use super::remote;
use crate::manifest::{self, Annotation, CreateOptions};
use crate::ops::Ops;
use crate::progress::Progress;
use crate::registry::Client;

#[derive(Debug, Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Create a manifest list from images (local or remote, by tag or digest)
    Create(CreateArgs),
    /// Change the platform a list gives one of its images
    Annotate(AnnotateArgs),
    /// Show a manifest list or image, local or remote (`--verbose`: each platform's size and layers)
    Inspect(InspectArgs),
    /// Push a manifest list and the images it lists
    Push(PushArgs),
    /// Remove manifest lists from the store
    Rm(RmArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum FormatArg {
    /// An OCI image index
    #[default]
    Oci,
    /// A Docker manifest list (Docker schema2 images only)
    Docker,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Add the images to an existing list; a platform it has is replaced
    #[arg(short, long)]
    pub amend: bool,
    /// The list's format [default: oci; an amended list keeps its own]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// The list's name (a tag)
    pub list: String,
    /// Images to list: an index is flattened into its platforms
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AnnotateArgs {
    /// Operating system
    #[arg(long)]
    pub os: Option<String>,
    /// Architecture
    #[arg(long)]
    pub arch: Option<String>,
    /// Architecture variant (`v7`, `v8`); empty to remove it
    #[arg(long)]
    pub variant: Option<String>,
    /// Operating system version (Windows: `10.0.17763.1234`)
    #[arg(long, value_name = "VERSION")]
    pub os_version: Option<String>,
    /// Operating system features, comma separated; empty to remove them
    #[arg(long, value_name = "FEATURES")]
    pub os_features: Option<String>,
    /// The list
    pub list: String,
    /// One of its images: a reference or digest
    pub image: String,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A list or image; the store's when it has it, else the registry's
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Remove the list from the store once pushed
    #[arg(long)]
    pub purge: bool,
    /// Print only the digest
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// The list in the store
    pub list: String,
    /// Where to push it [default: the list's own name]
    pub destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Lists in the store
    #[arg(required = true, value_name = "LIST")]
    pub lists: Vec<String>,
}

pub fn run(args: ManifestArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    match args.command {
        ManifestCommand::Create(a) => {
            let client = remote::client(settings)?;
            let progress = settings.progress(false);
            let ops = Ops::new(&store, Some(&client), &progress);
            let txn = store.begin()?;
            let options = CreateOptions {
                amend: a.amend,
                format: a.format.map(|f| match f {
                    FormatArg::Oci => manifest::ListFormat::Oci,
                    FormatArg::Docker => manifest::ListFormat::Docker,
                }),
            };
            let created = manifest::create(&ops, &txn, &a.list, &a.images, &options)?;
            report_list(settings, "Created", &created);
            outln!("{}", created.descriptor.digest)?;
        }
        ManifestCommand::Annotate(a) => {
            let client = remote::client(settings)?;
            let progress = settings.progress(false);
            let ops = Ops::new(&store, Some(&client), &progress);
            let txn = store.begin()?;
            let annotation = Annotation {
                os: a.os,
                architecture: a.arch,
                variant: a.variant,
                os_version: a.os_version,
                os_features: a.os_features.map(|f| {
                    f.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }),
            };
            let created = manifest::annotate(&ops, &txn, &a.list, &a.image, &annotation)?;
            report_list(settings, "Annotated", &created);
            outln!("{}", created.descriptor.digest)?;
        }
        ManifestCommand::Inspect(a) => {
            // `--verbose` asks for detail here; request lines need `-vv`.
            let client = quiet_client(settings)?;
            let progress = settings.progress(false);
            let ops = Ops::new(&store, Some(&client), &progress);
            let txn = store.begin()?;
            let verbose = settings.verbose > 0;
            let inspected = manifest::inspect(&ops, &txn, &a.image, verbose)?;
            if verbose {
                super::output::print_json(&inspected)?;
            } else {
                let value: serde_json::Value = serde_json::from_slice(&inspected.bytes)?;
                super::output::print_json(&value)?;
            }
        }
        ManifestCommand::Push(a) => {
            let client = remote::client(settings)?;
            let progress = settings.progress(a.quiet);
            let ops = Ops::new(&store, Some(&client), &progress)
                .with_options(remote::copy_options(&a.transfer));
            let pushed = {
                // Keeps gc from removing blobs while they are read.
                let txn = store.begin()?;
                manifest::push(&ops, &txn, &a.list, a.destination.as_deref())?
            };
            if a.purge
                && let Some(r) = &pushed.list
            {
                manifest::remove(&store.begin()?, &r.to_string())?;
                store.gc()?;
            }
            let r = &pushed.report;
            progress.message(&format!(
                "Pushed {}: {} blobs uploaded ({}), {} mounted, {} already there",
                pushed.destination.familiar(),
                r.blobs_copied,
                super::output::human_size(r.bytes_copied),
                r.blobs_mounted,
                r.blobs_skipped
            ));
            outln!("{}", pushed.descriptor.digest)?;
        }
        ManifestCommand::Rm(a) => {
            let mut failed = 0;
            let txn = store.begin()?;
            for list in &a.lists {
                let removed = manifest::remove(&txn, list)
                    .map_err(anyhow::Error::from)
                    .and_then(|r| Ok(outln!("Removed: {}", r.familiar())?));
                if let Err(e) = removed
                    && super::errors::report_item(&e)
                {
                    failed += 1;
                }
            }
            drop(txn);
            store.gc()?;
            if failed > 0 {
                return Err(super::errors::user_error(
                    format!("{failed} of {} lists could not be removed", a.lists.len()),
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// A registry client that logs requests only at `-vv` (one `-v` means detail for inspect).
fn quiet_client(settings: &Settings) -> anyhow::Result<Client> {
    if settings.verbose > 1 {
        return remote::client(settings);
    }
    Ok(Client::new(remote::client_options(settings)?))
}

fn report_list(settings: &Settings, verb: &str, created: &manifest::Created) {
    let progress = settings.progress(false);
    let platforms: Vec<String> = created.platforms.iter().map(ToString::to_string).collect();
    let mut line = format!(
        "{verb} manifest list {}: {}",
        created.reference.familiar(),
        platforms.join(", ")
    );
    if created.attestations > 0 {
        line.push_str(&format!(" (+{} attestations)", created.attestations));
    }
    progress.message(&line);
}
