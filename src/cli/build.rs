//! `manifold build [-f FILE] [-t REF]... [--platform P,...] [--build-arg K=V]... [--target S]
//! [--label K=V]... [--no-cache] [--push] [--push-by-digest REPO] [-o type=oci|docker,dest=F]
//! [--compression gzip|zstd] [--metadata-file F] [-q] CONTEXT`.
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
use super::progress::CliProgress;
use super::remote;
use crate::archive::{SaveFormat, save};
use crate::binfmt::{Binfmt, EmulatorSearch};
use crate::build::context::{self, Context};
use crate::build::exec::{self, Output};
use crate::build::layer::Compression;
use crate::build::plan::PlanOptions;
use crate::build::run::{Runner, Unavailable};
use crate::build::runner::{IsolatedRunner, RuntimeRunner};
use crate::build::{BuildError, instructions};
use crate::content::{self, Platforms, Sink};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::runtime::isolation::Isolation;
use crate::store::{Resolved, Store};

/// The build's log: step lines on stderr unless `-q`; transfers through the CLI progress.
struct BuildLog {
    quiet: bool,
    inner: CliProgress,
}

impl Progress for BuildLog {
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
        if !self.quiet {
            eprintln!("{text}");
        }
    }
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
        let is_archive = crate::archive::sniff_compression(&head)
            != crate::oci::media_type::LayerCompression::None
            || crate::archive::looks_like_tar(&head[..head.len().min(512)]);
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

/// SOURCE_DATE_EPOCH from the build args, else the environment; when set, it is passed on as
/// a build arg (normalised) and every timestamp is clamped to it. Shared with `bake`.
pub(super) fn source_date_epoch(
    build_args: &mut BTreeMap<String, String>,
) -> anyhow::Result<Option<u64>> {
    let epoch_text = build_args.get("SOURCE_DATE_EPOCH").cloned().or_else(|| {
        std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .filter(|s| !s.is_empty())
    });
    let epoch = epoch_text
        .map(|s| {
            s.trim().parse::<u64>().map_err(|_| {
                user_error(
                    format!("SOURCE_DATE_EPOCH=`{s}` is not a number of seconds"),
                    None,
                )
            })
        })
        .transpose()?;
    if let Some(e) = epoch {
        build_args.insert("SOURCE_DATE_EPOCH".into(), e.to_string());
    }
    Ok(epoch)
}

/// What runs RUN steps (`--isolation`): runc through the runtime (as root or rootless), proot
/// or chroot in a plain directory, or — `auto` — runc where a container can be made, else proot
/// (chroot without it), said on stderr; a runner that says why RUN cannot work otherwise.
/// Create it before any other thread starts: it moves the process into a mount namespace of
/// its own. Shared with `bake`.
pub(super) fn runner(
    store: &Store,
    settings: &Settings,
    isolation: IsolationArg,
    quiet: bool,
) -> Box<dyn Runner> {
    let why = |e: &anyhow::Error| {
        let mut why = format!("{e:#}");
        if let Some(h) = super::errors::hint_for(e) {
            why.push_str(&format!(" (hint: {h})"));
        }
        why
    };
    let isolated = |kind: Isolation| -> Box<dyn Runner> {
        match IsolatedRunner::new(kind) {
            Ok(r) => Box::new(r),
            Err(e) => Box::new(Unavailable(format!(
                "RUN cannot work here: {}",
                why(&anyhow::Error::new(e))
            ))),
        }
    };
    let oci = || -> anyhow::Result<RuntimeRunner> {
        settings.privilege.require()?;
        Ok(RuntimeRunner::new(store, "runc")?)
    };
    match isolation {
        IsolationArg::Proot => isolated(Isolation::Proot),
        IsolationArg::Chroot => isolated(Isolation::Chroot),
        IsolationArg::Oci => match oci() {
            Ok(r) => Box::new(r),
            Err(e) => Box::new(Unavailable(format!("RUN cannot work here: {}", why(&e)))),
        },
        IsolationArg::Auto => match oci() {
            Ok(r) => Box::new(r),
            // Root where no container can be made (an unprivileged build container): no
            // namespaces, so no isolation beyond the container's own.
            Err(e) if crate::runtime::is_root() => {
                let kind = if crate::runtime::find_program("proot").is_some() {
                    Isolation::Proot
                } else {
                    Isolation::Chroot
                };
                if !quiet {
                    eprintln!(
                        "note: no container can be made here ({}): RUN steps run under {kind}",
                        why(&e)
                    );
                    if kind == Isolation::Chroot {
                        eprintln!(
                            "warning: proot is not installed: RUN steps see no /proc, /dev or /sys (install proot for them)"
                        );
                    }
                }
                isolated(kind)
            }
            Err(e) => Box::new(Unavailable(format!("RUN cannot work here: {}", why(&e)))),
        },
    }
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
    if platforms.is_empty() {
        platforms.push(Platform::host_target());
    }
    let mut seen = Vec::new();
    platforms.retain(|p| {
        let s = p.to_string();
        let new = !seen.contains(&s);
        seen.push(s);
        new
    });
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
    let build_args = key_values(&args.build_args, "--build-arg", true)?;
    let labels = key_values(&args.labels, "--label", false)?;
    let mut build_args = build_args;
    let epoch = source_date_epoch(&mut build_args)?;

    let store = settings.store()?;
    let (context, name, text) = load_inputs(&args, &store)?;
    let dockerfile = instructions::parse(&name, &text)?;
    let log = BuildLog {
        quiet: args.quiet,
        inner: settings.progress(args.quiet),
    };
    // The runner first: it moves the process into a mount namespace of its own, which only
    // works while it has one thread (the registry client starts another).
    let runner = runner(&store, settings, args.isolation, args.quiet);
    super::binfmt::warn_known_bad(&Binfmt::system(EmulatorSearch::from_env(None)), &platforms);
    let client = remote::client(settings);
    let options = exec::Options {
        store: &store,
        dockerfile: &dockerfile,
        context: &context,
        platforms,
        plan: PlanOptions {
            target: args.target.clone(),
            build_args,
            build_platform: None,
            labels,
        },
        no_cache: args.no_cache,
        compression,
        epoch,
        client: Some(&client),
        runner: runner.as_ref(),
        progress: &log,
    };
    let out = exec::build(&options).map_err(|e| match e.root() {
        BuildError::Shared(_) => anyhow::anyhow!("{e}"),
        _ => anyhow::Error::new(e),
    })?;
    finish(
        &args,
        settings,
        &store,
        &out,
        &tags,
        push_repo.as_ref(),
        &outputs,
        &log,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &BuildArgs,
    settings: &Settings,
    store: &Store,
    out: &Output,
    tags: &[Reference],
    push_repo: Option<&Reference>,
    outputs: &[OutputSpec],
    log: &BuildLog,
) -> anyhow::Result<()> {
    log.message(&format!(
        "writing image {} ({} of {} steps cached)",
        out.root.digest,
        out.steps_cached,
        out.steps_cached + out.steps_run
    ));
    if tags.is_empty() {
        store.add_untagged(&out.root)?;
    }
    for t in tags {
        store.tag(t, &out.root)?;
        log.message(&format!("naming to {}", t.familiar()));
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
        log.message(&format!("exported to {}", o.dest.display()));
    }
    let mut pushed = Vec::new();
    if args.push || push_repo.is_some() {
        let client = remote::client(settings);
        let options = remote::copy_options(&args.transfer);
        let mut targets: Vec<(Reference, bool)> = Vec::new();
        if args.push {
            targets.extend(tags.iter().map(|t| (t.clone(), true)));
        }
        if let Some(r) = push_repo {
            targets.push((r.with_digest(out.root.digest.clone()), false));
        }
        for (dest, tag) in targets {
            log.message(&format!("pushing {}", dest.familiar()));
            let repo = client.repository(&dest)?;
            content::copy_with(
                store,
                &repo,
                &dest,
                &out.root,
                &Platforms::All,
                &log.inner,
                &options,
            )?;
            if tag {
                Sink::tag(&repo, &dest, &out.root)?;
            }
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
