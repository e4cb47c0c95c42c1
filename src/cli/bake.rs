//! `manifold bake [-f FILE] [--push] [--set TARGET.KEY=VALUE]... [--print] [--no-cache] [TARGET|GROUP...]`:
//! the targets of a bake file, built at once into one store (one build cache), pushed only when
//! every one of them built. The file's meaning is in `crate::bake`.

use std::path::PathBuf;

use clap::Args;

use super::Settings;
use super::args::TransferArgs;
use super::build::StepLog;
use super::output::outln;
use super::remote;
use crate::bake::{self, BakeError, BakeEvent, BakeReporter, Publisher};
use crate::builder::{self, BuildReporter, run};
use crate::content::{BoxError, Platforms};
use crate::layer::Compression;
use crate::oci::Descriptor;
use crate::ops::Ops;
use crate::progress::Progress;
use crate::reference::Reference;

#[derive(Debug, Args)]
pub struct BakeArgs {
    /// The bake file
    #[arg(short, long, value_name = "FILE", default_value = "manifold.yaml")]
    pub file: PathBuf,
    /// Push every target's tags once all targets are built
    #[arg(long)]
    pub push: bool,
    /// Override a target's key: TARGET.KEY=VALUE (TARGET may be a glob such as `*`; KEY is
    /// context, dockerfile, target, platforms, tags, entitlements, secrets, ssh, args.NAME or
    /// labels.NAME)
    #[arg(long, value_name = "TARGET.KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the resolved targets as JSON instead of building
    #[arg(long)]
    pub print: bool,
    /// Run every step of every target, whatever the cache holds
    #[arg(long)]
    pub no_cache: bool,
    /// Grant an entitlement the targets ask for (`entitlements:` in the file): `network.host`
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<crate::dockerfile::plan::Entitlement>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Targets or groups to build [default: the `default` group, else every target]
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

pub fn run(args: BakeArgs, settings: &Settings) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).map_err(|source| BakeError::Read {
        path: args.file.clone(),
        source,
    })?;
    let name = args.file.display().to_string();
    let mut file = bake::parse(&name, &text, &|v| std::env::var(v).ok())?;
    for set in &args.set {
        bake::apply_set(&mut file, set)?;
    }
    let selection = bake::select(&file, &args.targets)?;
    if args.print {
        return super::output::print_json(&bake::print(&file, &selection));
    }
    let base = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let requests = bake::requests(&file, &selection, &base, args.push)?;
    bake::check_entitlements(&requests, &args.allow.iter().copied().collect())?;
    let store = settings.store()?;
    // Before any thread starts (see `run::default_runner`); one runner for every target.
    let runner = run::default_runner(&store);
    let binfmt = crate::binfmt::Binfmt::system(crate::binfmt::EmulatorSearch::from_env(None));
    for r in &requests {
        super::binfmt::warn_known_bad(&binfmt, &builder::session::platforms(r.platforms.clone()));
    }
    // The build log goes to stderr whatever the progress mode, as `manifold build`'s does.
    let bars = settings.progress(false);
    let log = BakeLog { bars: &bars };
    let client = remote::client(settings)?;
    let target_builder = bake::StoreBuilder {
        builder: builder::Builder {
            store: &store,
            client: Some(&client),
            runner: runner.as_ref(),
            no_cache: args.no_cache,
            compression: Compression::Gzip,
        },
    };
    let publisher = RegistryPublisher {
        ops: Ops::new(&store, Some(&client), &bars)
            .with_options(remote::copy_options(&args.transfer)),
    };
    let publisher: Option<&dyn Publisher> = args.push.then_some(&publisher as _);
    match bake::execute(&requests, &target_builder, publisher, &log) {
        Ok(built) => {
            for b in built {
                outln!("{} {}", b.name, b.descriptor.digest)?;
            }
            Ok(())
        }
        Err(mut errors) => {
            let summary = errors.pop().expect("at least one error");
            for e in errors {
                super::errors::report(&anyhow::Error::from(e));
            }
            Err(summary.into())
        }
    }
}

/// A bake's events on stderr, each line with its target's name in front (targets build side
/// by side); transfers through the progress display.
struct BakeLog<'a> {
    bars: &'a dyn Progress,
}

impl BakeReporter for BakeLog<'_> {
    fn report(&self, event: &BakeEvent<'_>) {
        match event {
            BakeEvent::Building { target } => eprintln!("[{target}] building"),
            BakeEvent::Built { target, digest } => eprintln!("[{target}] built {digest}"),
            BakeEvent::Failed { target } => eprintln!("[{target}] failed"),
            BakeEvent::Pushing { target, tag } => {
                eprintln!("[{target}] pushing {}", tag.familiar())
            }
        }
    }

    fn target(&self, name: &str) -> Box<dyn BuildReporter + '_> {
        Box::new(StepLog {
            target: Some(name.to_string()),
            quiet: false,
            transfers: self.bars,
        })
    }
}

/// Pushes a built image from the store, as `manifold push` does.
struct RegistryPublisher<'a> {
    ops: Ops<'a>,
}

impl Publisher for RegistryPublisher<'_> {
    fn push(&self, descriptor: &Descriptor, tag: &Reference) -> Result<(), BoxError> {
        let txn = self.ops.store().begin()?;
        self.ops
            .push(&txn, &tag.familiar(), descriptor, tag, &Platforms::All)?;
        Ok(())
    }
}
