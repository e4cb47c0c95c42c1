//! `manifold build [-f FILE] [-t REF]... [--platform P,...] [--build-arg K=V]... [--target S]
//! [--label K=V]... [--no-cache] [--push] [--push-by-digest REPO] [-o type=oci|docker,dest=F]
//! [--compression gzip|zstd] [--metadata-file F] [-q] [--isolation MODE] CONTEXT`.
//!
//! The step log goes to stderr (docker's `#N [platform stage n/m] INSTRUCTION`, then `CACHED`
//! or `DONE`); tags are written only when every platform built, and pushes happen only then.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::Settings;
use super::args::{BuildArgs, IsolationArg};
use super::errors::user_error;
use super::output::outln;
use super::remote;
use crate::archive::{SaveFormat, save};
use crate::binfmt::{Binfmt, EmulatorSearch};
use crate::builder::cache_remote::{CacheEvent, CacheFrom, CacheTo, Unusable};
use crate::builder::context::{self, Context};
use crate::builder::exec::Output;
use crate::builder::run::Runner;
use crate::builder::secrets::{Secrets, SshAgents};
use crate::builder::session::{self, RunIsolation};
use crate::builder::{self, BuildEvent, BuildReporter};
use crate::dockerfile::instructions;
use crate::layer::Compression;
use crate::ops::Ops;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::runtime::isolation::Isolation;
use crate::store::{Resolved, Store, Transaction};

/// A build's events as docker's plain progress shows them, on stderr: `#N [platform stage
/// n/m] INSTRUCTION`, then its output, `CACHED`, `DONE 1.2s` or `ERROR: …`. For a bake target,
/// every line starts with `[target] ` and the target's end is the bake's to say.
pub(super) struct StepLog<'a> {
    pub target: Option<String>,
    /// `-q`: nothing but errors.
    pub quiet: bool,
    /// `-v`: also what the build cache ignored and retried.
    pub verbose: bool,
    pub transfers: &'a dyn Progress,
}

impl StepLog<'_> {
    /// A line of the command's own (naming, exporting, pushing).
    pub fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.target {
            Some(t) => eprintln!("[{t}] {text}"),
            None => eprintln!("{text}"),
        }
    }

    /// The time each platform's RUN steps spent under QEMU, and when that was most of the
    /// build, the way around it.
    fn emulation(&self, emulation: &builder::Emulation) {
        for p in &emulation.platforms {
            self.note(&format!(
                "emulation: {} ran {} RUN step{} under QEMU in {:.1}s ({}% of the time steps took)",
                p.platform,
                p.steps,
                if p.steps == 1 { "" } else { "s" },
                p.duration.as_secs_f64(),
                emulation.percent_of_steps(p.duration)
            ));
        }
        if emulation.dominates() {
            self.note(CROSS_COMPILE_HINT);
        }
    }
}

/// When emulation took most of a build: the cross-compilation path, which runs natively.
const CROSS_COMPILE_HINT: &str = "hint: most of the build ran under QEMU; a stage `FROM --platform=$BUILDPLATFORM` that compiles for `$TARGETARCH` runs natively, and the target's stage copies its result (README: \"Cross-compiling\")";

impl BuildReporter for StepLog<'_> {
    fn report(&self, event: &BuildEvent<'_>) {
        let text = match event {
            BuildEvent::UnusedArgs(names) => format!(
                "warning: build args not consumed by any ARG: {}",
                names.join(", ")
            ),
            BuildEvent::Pulling {
                reference,
                platform,
            } => format!("pulling {} for {platform}", reference.familiar()),
            BuildEvent::StepStarted(s) => format!(
                "#{} [{} {} {}/{}] {}",
                s.number, s.platform, s.stage, s.index, s.total, s.instruction
            ),
            BuildEvent::StepCached(s) => format!("#{} CACHED", s.number),
            BuildEvent::StepOutput { step, line } => format!("#{} {line}", step.number),
            BuildEvent::StepEmulated { step, emulator } => {
                format!(
                    "#{} EMULATED {} through {emulator}",
                    step.number, step.platform
                )
            }
            BuildEvent::StepFinished {
                step,
                duration,
                emulated,
            } => format!(
                "#{} DONE {:.1}s{}",
                step.number,
                duration.as_secs_f64(),
                if *emulated { " (emulated)" } else { "" }
            ),
            BuildEvent::StepFailed { step, error } => format!("#{} ERROR: {error}", step.number),
            BuildEvent::Cache(e) => match cache_line(e, self.verbose) {
                Some(line) => line,
                None => return,
            },
            BuildEvent::BuildFinished { .. } if self.target.is_some() => return,
            BuildEvent::BuildFinished {
                root,
                steps_run,
                steps_cached,
                emulation,
                ..
            } => {
                // A bake target's end is the bake's to say; what ran emulated is the target's.
                if self.target.is_none() {
                    self.note(&format!(
                        "writing image {} ({steps_cached} of {} steps cached)",
                        root.digest,
                        steps_cached + steps_run
                    ));
                }
                self.emulation(emulation);
                return;
            }
        };
        self.note(&text);
    }

    fn transfers(&self) -> &dyn Progress {
        self.transfers
    }
}

/// An error and its causes on one line, `: ` between them (for warnings, which go on).
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        // Transparent wrappers repeat their inner error.
        if !text.ends_with(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// The log line of a build cache event (None: not shown at this verbosity).
fn cache_line(e: &CacheEvent<'_>, verbose: bool) -> Option<String> {
    Some(match e {
        CacheEvent::Imported { location, records } => {
            format!("importing build cache from {location}: {records} records")
        }
        CacheEvent::ImportFailed { error, .. } => {
            format!("warning: {}; building without it", one_line(*error))
        }
        CacheEvent::Ignored { location, why } => {
            let line = format!("build cache `{location}` ignored: {why}");
            match why {
                Unusable::Format { .. } | Unusable::Keys { .. } if !verbose => return None,
                Unusable::Format { .. } | Unusable::Keys { .. } => line,
                _ => format!("warning: {line}"),
            }
        }
        CacheEvent::Exported { location, report } => {
            let c = &report.copy;
            format!(
                "exported build cache to {location}: {} records ({} of this build{}), {} blobs uploaded ({}), {} mounted, {} already there",
                report.records,
                report.ours,
                if report.dropped > 0 {
                    format!(", {} dropped by max-size", report.dropped)
                } else {
                    String::new()
                },
                c.blobs_copied,
                super::output::human_size(c.bytes_copied),
                c.blobs_mounted,
                c.blobs_skipped,
            )
        }
        CacheEvent::ExportFailed { error, .. } => {
            format!("warning: {} (ignore-error=true)", one_line(*error))
        }
        CacheEvent::Contended { location, attempt } if verbose => format!(
            "build cache `{location}` changed while this build merged into it (attempt {attempt}): merging again"
        ),
        CacheEvent::Contended { .. } => return None,
    })
}

/// What runs RUN steps for `build` and `bake` (see [`session::runner`]), `auto`'s choice of no
/// container told on stderr unless `quiet`. Call it before any other thread starts.
pub(super) fn runner(
    store: &Store,
    settings: &Settings,
    isolation: IsolationArg,
    quiet: bool,
) -> Box<dyn Runner> {
    let isolation = match isolation {
        IsolationArg::Auto => RunIsolation::Auto,
        IsolationArg::Oci => RunIsolation::Oci,
        IsolationArg::Proot => RunIsolation::Plain(Isolation::Proot),
        IsolationArg::Chroot => RunIsolation::Plain(Isolation::Chroot),
    };
    let (runner, fallback) = session::runner(store, isolation, settings.privilege.refused());
    if let Some(f) = fallback
        && !quiet
    {
        let because = anyhow::Error::from(f.because);
        let hint = because.chain().find_map(crate::hint::of);
        let mut why = format!("{because:#}");
        if let Some(h) = hint {
            why.push_str(&format!(" (hint: {h})"));
        }
        eprintln!(
            "note: no container can be made here ({why}): RUN steps run under {}",
            f.isolation
        );
        if f.isolation == Isolation::Chroot {
            eprintln!(
                "warning: proot is not installed: RUN steps see no /proc, /dev or /sys (install proot for them)"
            );
        }
    }
    runner
}

struct OutputSpec {
    format: SaveFormat,
    dest: PathBuf,
}

fn parse_output(spec: &str) -> anyhow::Result<OutputSpec> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", t)) => kind = Some(t.to_string()),
            Some(("dest", d)) => dest = Some(PathBuf::from(d)),
            _ => {
                return Err(user_error(
                    format!("invalid --output `{spec}`"),
                    Some("use `type=oci,dest=FILE` or `type=docker,dest=FILE`"),
                ));
            }
        }
    }
    let format = match kind.as_deref() {
        Some("oci") => SaveFormat::Oci,
        Some("docker") => SaveFormat::Docker,
        other => {
            return Err(user_error(
                format!("--output type `{}` is not supported", other.unwrap_or("")),
                Some("use `type=oci,dest=FILE` or `type=docker,dest=FILE`"),
            ));
        }
    };
    let dest = dest.ok_or_else(|| {
        user_error(
            format!("--output `{spec}` needs a dest"),
            Some("add `,dest=FILE`"),
        )
    })?;
    Ok(OutputSpec { format, dest })
}

fn key_values(
    list: &[String],
    what: &str,
    from_env: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env && !kv.is_empty() => {
                if let Ok(v) = std::env::var(kv) {
                    out.insert(kv.clone(), v);
                }
            }
            _ => {
                return Err(user_error(
                    format!("invalid {what} `{kv}`"),
                    Some("write it as KEY=VALUE"),
                ));
            }
        }
    }
    Ok(out)
}

/// The context and the Dockerfile's (name, text).
fn load_inputs(args: &BuildArgs, store: &Store) -> anyhow::Result<(Context, String, String)> {
    let file = args.file.as_deref();
    if args.context == "-" {
        if file == Some("-") {
            return Err(user_error(
                "the context and the Dockerfile cannot both come from stdin",
                None,
            ));
        }
        let mut stdin = BufReader::with_capacity(1 << 20, io::stdin().lock());
        let head = stdin.fill_buf()?.to_vec();
        let is_archive = Compression::sniff(&head) != Compression::None
            || crate::layer::tarball::looks_like_tar(&head[..head.len().min(512)]);
        if !is_archive {
            let mut text = String::new();
            stdin.read_to_string(&mut text)?;
            return Ok((Context::empty(store.tmp_dir())?, "Dockerfile".into(), text));
        }
        let mut ctx = Context::from_tar(stdin, store.tmp_dir())?;
        let name = file.unwrap_or("Dockerfile").to_string();
        let path = ctx.root().join(&name);
        let text = fs::read_to_string(&path).map_err(|e| {
            user_error(
                format!("cannot read `{name}` from the context tarball: {e}"),
                Some("put a Dockerfile at the tarball's root, or name it with -f"),
            )
        })?;
        ctx.set_ignore(context::read_ignore(ctx.root(), Some(&path))?);
        return Ok((ctx, name, text));
    }
    let root = Path::new(&args.context);
    if !root.is_dir() {
        return Err(user_error(
            format!("the build context `{}` is not a directory", args.context),
            Some("give a directory, or `-` to read a tarball from stdin"),
        ));
    }
    let (name, text, path) = match file {
        Some("-") => {
            let mut text = String::new();
            io::stdin().read_to_string(&mut text)?;
            ("Dockerfile".to_string(), text, None)
        }
        Some(f) => {
            let text = fs::read_to_string(f)
                .map_err(|e| user_error(format!("cannot read the Dockerfile `{f}`: {e}"), None))?;
            (f.to_string(), text, Some(PathBuf::from(f)))
        }
        None => {
            let p = root.join("Dockerfile");
            let text = fs::read_to_string(&p).map_err(|e| {
                user_error(
                    format!("cannot read `{}`: {e}", p.display()),
                    Some("name the Dockerfile with -f"),
                )
            })?;
            ("Dockerfile".to_string(), text, Some(p))
        }
    };
    let ignore = context::read_ignore(root, path.as_deref())?;
    Ok((Context::dir(root, ignore), name, text))
}

pub fn run(args: BuildArgs, settings: &Settings) -> anyhow::Result<()> {
    let compression = Compression::parse(&args.compression).ok_or_else(|| {
        user_error(
            format!("unknown compression `{}`", args.compression),
            Some("use gzip or zstd"),
        )
    })?;
    let mut platforms = Vec::new();
    for p in &args.platform {
        platforms.extend(Platform::parse_list(p)?);
    }
    let platforms = builder::session::platforms(platforms);
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = args
        .output
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for o in &outputs {
        if o.format == SaveFormat::Docker && platforms.len() > 1 {
            return Err(user_error(
                "a docker-archive holds one platform, and this build makes several",
                Some("use `--output type=oci,dest=FILE`, or build one --platform"),
            ));
        }
    }
    if args.push && tags.is_empty() {
        return Err(user_error(
            "--push needs a name to push to",
            Some("add `-t REGISTRY/NAME:TAG`"),
        ));
    }
    let push_repo = args
        .push_by_digest
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|s| CacheFrom::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|s| CacheTo::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let build_args = key_values(&args.build_args, "--build-arg", true)?;
    let labels = key_values(&args.labels, "--label", false)?;
    let wanted = super::attest::wanted(&args)?;
    let started = chrono::Utc::now();

    let store = settings.store()?;
    let (context, name, text) = load_inputs(&args, &store)?;
    let dockerfile = instructions::parse(&name, &text)?;
    let transfers = settings.progress(args.quiet);
    let log = StepLog {
        target: None,
        quiet: args.quiet,
        verbose: settings.verbose > 0,
        transfers: &transfers,
    };
    // The runner first: it moves the process into a mount namespace of its own, which only
    // works while it has one thread (the registry client starts another).
    let runner = runner(&store, settings, args.run.isolation, args.quiet);
    let secrets = Secrets::load(&args.secret)?;
    let ssh = SshAgents::load(&args.ssh)?;
    super::binfmt::warn_known_bad(&Binfmt::system(EmulatorSearch::from_env(None)), &platforms);
    let client = remote::client(settings)?;
    let builder = builder::Builder {
        store: &store,
        client: Some(&client),
        runner: runner.as_ref(),
        no_cache: args.no_cache,
        compression,
    };
    let request = builder::Request {
        dockerfile: &dockerfile,
        context: &context,
        platforms,
        target: args.target.clone(),
        build_args: build_args.clone(),
        labels: labels.clone(),
        allow: args.allow.iter().copied().collect(),
        cache_from,
        cache_to,
        lazy_output: (args.push || push_repo.is_some()) && outputs.is_empty(),
        secrets: &secrets,
        ssh: &ssh,
    };
    let ops = Ops::new(&store, Some(&client), &transfers)
        .with_options(remote::copy_options(&args.transfer));
    // One transaction from the first blob to the last tag and push: a `prune` meanwhile waits.
    let txn = store.begin()?;
    // Tagged and pushed while the build's cache is exported (`--cache-to`).
    builder.build_then(&txn, request, &log, |out| {
        let facts = super::attest::Facts {
            dockerfile: (&name, &text),
            context_name: &args.context,
            context: &context,
            target: args.target.as_deref(),
            build_args: &build_args,
            labels: &labels,
            name: tags.first(),
            started,
            secrets: &secrets,
        };
        let out = super::attest::attach(&txn, out, &wanted, &facts)?;
        finish(
            &args,
            &ops,
            &txn,
            &out,
            &tags,
            push_repo.as_ref(),
            &outputs,
            &log,
        )
    })
}

/// Set to a file name, the build creates that file once every blob is written and waits (a
/// minute at most) for it to be removed before it tags: a test's window to run `prune` between
/// a build's last blob and its tag.
const PAUSE_BEFORE_TAG: &str = "MANIFOLD_TEST_PAUSE_BEFORE_TAG";

fn pause_before_tagging() {
    let Some(path) = std::env::var_os(PAUSE_BEFORE_TAG).map(PathBuf::from) else {
        return;
    };
    if fs::write(&path, std::process::id().to_string()).is_err() {
        return;
    }
    for _ in 0..6000 {
        if !path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &BuildArgs,
    ops: &Ops<'_>,
    store: &Transaction,
    out: &Output,
    tags: &[Reference],
    push_repo: Option<&Reference>,
    outputs: &[OutputSpec],
    log: &StepLog,
) -> anyhow::Result<()> {
    pause_before_tagging();
    if tags.is_empty() {
        store.add_untagged(&out.root)?;
    }
    for t in tags {
        store.tag(t, &out.root)?;
        log.note(&format!("naming to {}", t.familiar()));
    }
    for o in outputs {
        let resolved = Resolved {
            descriptor: out.root.clone(),
            reference: tags.first().cloned(),
        };
        let file = fs::File::create(&o.dest)
            .map_err(|e| user_error(format!("cannot create `{}`: {e}", o.dest.display()), None))?;
        let platform = (o.format == SaveFormat::Docker).then(|| out.images[0].platform.clone());
        save(
            store,
            &[resolved],
            o.format,
            platform.as_ref(),
            io::BufWriter::new(file),
            &crate::progress::NoProgress,
        )?;
        log.note(&format!("exported to {}", o.dest.display()));
    }
    let mut pushed = Vec::new();
    if args.push || push_repo.is_some() {
        // By digest: pushed, not tagged.
        let mut targets: Vec<Reference> = Vec::new();
        if args.push {
            targets.extend(tags.iter().cloned());
        }
        if let Some(r) = push_repo {
            targets.push(r.with_digest(out.root.digest.clone()));
        }
        let name = tags
            .first()
            .map_or_else(|| out.root.digest.to_string(), Reference::familiar);
        for dest in targets {
            log.note(&format!("pushing {}", dest.familiar()));
            // Layers that came from a registry's build cache may be there only.
            crate::builder::cache_remote::push(ops, store, &name, &out.root, &dest)?;
            pushed.push(dest.familiar());
        }
        if push_repo.is_some() {
            outln!("{}", out.root.digest)?;
        }
    }
    if args.quiet && push_repo.is_none() {
        outln!("{}", out.root.digest)?;
    }
    if let Some(path) = &args.metadata_file {
        let meta = json!({
            "containerimage.digest": out.root.digest.to_string(),
            "containerimage.descriptor": out.root,
            "image.name": tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","),
            "pushed": pushed,
            "platforms": out.images.iter().map(|i| json!({
                "platform": i.platform.to_string(),
                "manifest": i.manifest.digest.to_string(),
                "config": i.config.to_string(),
            })).collect::<Vec<_>>(),
        });
        fs::write(path, serde_json::to_vec_pretty(&meta)?)
            .map_err(|e| user_error(format!("cannot write `{}`: {e}", path.display()), None))?;
    }
    Ok(())
}
