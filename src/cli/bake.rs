//! `manifold bake [-f FILE] [--push] [--set TARGET.KEY=VALUE]... [--print] [--no-cache] [TARGET|GROUP...]`:
//! the targets of a bake file, built at once into one store (one build cache), pushed only when
//! every one of them built. The file's meaning is in `crate::manifest::bake`.

use std::path::PathBuf;

use clap::Args;

use super::Settings;
use super::args::TransferArgs;
use super::errors::user_error;
use super::output::outln;
use super::remote;
use crate::content::{self, BoxError, CopyOptions, Platforms, Sink};
use crate::manifest::bake::{self, BakeError, BuildRequest, Builder, Publisher};
use crate::oci::Descriptor;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::Client;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct BakeArgs {
    /// The bake file
    #[arg(short, long, value_name = "FILE", default_value = "manifold.yaml")]
    pub file: PathBuf,
    /// Push every target's tags once all targets are built
    #[arg(long)]
    pub push: bool,
    /// Override a target's key: TARGET.KEY=VALUE (TARGET may be a glob such as `*`; KEY is
    /// context, dockerfile, target, platforms, tags, args.NAME or labels.NAME)
    #[arg(long, value_name = "TARGET.KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the resolved targets as JSON instead of building
    #[arg(long)]
    pub print: bool,
    /// Run every step of every target, whatever the cache holds
    #[arg(long)]
    pub no_cache: bool,
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
    let store = settings.store()?;
    // Before any thread starts (see `build::runner`); one runner for every target.
    let runner = super::build::runner(&store, settings, super::args::IsolationArg::Auto, false);
    let bars = settings.progress(false);
    // The build log goes to stderr whatever the progress mode, as `manifold build`'s does.
    let progress = Log { bars: &bars };
    let builder = StoreBuilder {
        settings,
        store: &store,
        no_cache: args.no_cache,
        runner: runner.as_ref(),
        progress: &progress,
    };
    let client = remote::client(settings);
    let publisher = RegistryPublisher {
        store: &store,
        client: &client,
        options: remote::copy_options(&args.transfer),
        progress: &progress,
    };
    let publisher: Option<&dyn Publisher> = args.push.then_some(&publisher as _);
    match bake::execute(&requests, &builder, publisher, &progress) {
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

/// Builds a target with the build module into the store.
struct StoreBuilder<'a> {
    settings: &'a Settings,
    store: &'a Store,
    no_cache: bool,
    runner: &'a dyn crate::build::run::Runner,
    progress: &'a dyn Progress,
}

impl Builder for StoreBuilder<'_> {
    fn build(&self, request: &BuildRequest) -> Result<Descriptor, BoxError> {
        let progress = Prefixed {
            name: &request.name,
            inner: self.progress,
        };
        let how = How {
            no_cache: self.no_cache,
            runner: self.runner,
            progress: &progress,
        };
        build_target(self.settings, self.store, request, &how).map_err(|e| {
            // Keep the whole chain readable once boxed.
            let text = e
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            BoxError::from(text)
        })
    }
}

/// Transfers through the progress display, messages (the build log) always on stderr.
struct Log<'a> {
    bars: &'a dyn Progress,
}

impl Progress for Log<'_> {
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        self.bars.start(id, label, total)
    }
    fn advance(&self, id: &str, bytes: u64) {
        self.bars.advance(id, bytes)
    }
    fn finish(&self, id: &str, outcome: &str) {
        self.bars.finish(id, outcome)
    }
    fn message(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// A target's build log, each line prefixed with its name (targets build side by side).
struct Prefixed<'a> {
    name: &'a str,
    inner: &'a dyn Progress,
}

impl Progress for Prefixed<'_> {
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        self.inner.start(id, label, total)
    }
    fn advance(&self, id: &str, bytes: u64) {
        self.inner.advance(id, bytes)
    }
    fn finish(&self, id: &str, outcome: &str) {
        self.inner.finish(id, outcome)
    }
    fn message(&self, text: &str) {
        self.inner.message(&format!("[{}] {text}", self.name))
    }
}

/// The one place bake calls the build module: what `manifold build -f DOCKERFILE [--platform
/// …] [--build-arg …] [--label …] [--target …] [-t …] CONTEXT` does, into the shared store.
/// How every target is built.
struct How<'a> {
    no_cache: bool,
    runner: &'a dyn crate::build::run::Runner,
    progress: &'a dyn Progress,
}

fn build_target(
    settings: &Settings,
    store: &Store,
    request: &BuildRequest,
    how: &How,
) -> anyhow::Result<Descriptor> {
    use crate::build::{context, exec, instructions, layer, plan};
    let name = request.dockerfile.display().to_string();
    let text = std::fs::read_to_string(&request.dockerfile)
        .map_err(|e| user_error(format!("cannot read the Dockerfile {name}: {e}"), None))?;
    let ignore = context::read_ignore(&request.context, Some(&request.dockerfile))?;
    let context = context::Context::dir(&request.context, ignore);
    let dockerfile = instructions::parse(&name, &text)?;
    let platforms = if request.platforms.is_empty() {
        vec![crate::platform::Platform::host_target()]
    } else {
        request.platforms.clone()
    };
    super::binfmt::warn_known_bad(
        &crate::binfmt::Binfmt::system(crate::binfmt::EmulatorSearch::from_env(None)),
        &platforms,
    );
    let mut build_args = request.args.clone();
    let epoch = super::build::source_date_epoch(&mut build_args)?;
    let client = remote::client(settings);
    let options = exec::Options {
        store,
        dockerfile: &dockerfile,
        context: &context,
        platforms,
        plan: plan::PlanOptions {
            target: request.target.clone(),
            build_args,
            build_platform: None,
            labels: request.labels.clone(),
        },
        no_cache: how.no_cache,
        compression: layer::Compression::Gzip,
        epoch,
        client: Some(&client),
        runner: how.runner,
        progress: how.progress,
    };
    let out = exec::build(&options)?;
    if request.tags.is_empty() {
        store.add_untagged(&out.root)?;
    }
    for t in &request.tags {
        store.tag(t, &out.root)?;
    }
    Ok(out.root)
}

/// Pushes a built image from the store, as `manifold push` does.
struct RegistryPublisher<'a> {
    store: &'a Store,
    client: &'a Client,
    options: CopyOptions,
    progress: &'a dyn Progress,
}

impl Publisher for RegistryPublisher<'_> {
    fn push(&self, descriptor: &Descriptor, tag: &Reference) -> Result<(), BoxError> {
        let repo = self.client.repository(tag)?;
        let _guard = self.store.write_guard()?;
        content::copy_with(
            self.store,
            &repo,
            tag,
            descriptor,
            &Platforms::All,
            self.progress,
            &self.options,
        )?;
        Sink::tag(&repo, tag, descriptor)?;
        Ok(())
    }
}

/// What the user can do about a bake failure.
pub fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    Some(match cause.downcast_ref::<BakeError>()? {
        BakeError::Read { path, .. } => format!(
            "name the bake file with `-f FILE` (looked for {})",
            path.display()
        ),
        BakeError::UnknownTarget(_) | BakeError::Empty => {
            "`manifold bake --print` shows the file's targets and groups".into()
        }
        BakeError::NoTags(t) => format!(
            "give it `tags` in the file, or `--set {t}.tags=REGISTRY/NAME:TAG`"
        ),
        BakeError::Set { .. } => {
            "`--set TARGET.KEY=VALUE`, KEY one of context, dockerfile, target, platforms, tags, args.NAME, labels.NAME".into()
        }
        _ => return None,
    })
}
