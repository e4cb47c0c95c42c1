//! The meaning layer: a parsed Dockerfile, build args and one target platform become a plan —
//! the stages the target needs, each with its base, its steps (every word expanded) and the image
//! config it ends with. No I/O: base image configs come from a [`Resolver`] the caller gives.
//!
//! As in BuildKit: global ARGs (before the first FROM) and the automatic platform args expand
//! FROM; inside a stage only declared ARGs are visible and ENV wins over ARG; a stage
//! `FROM --platform=$BUILDPLATFORM` is planned for the build platform while `TARGETARCH` & co.
//! keep naming the target; only stages reachable from the target are planned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::dockerignore::Ignore;
use super::expand::{ExpandError, Layered, Lexer, Lookup, Vars};
use super::instructions::{
    self, CommandForm, CopyArgs, CopySource, Dockerfile, Healthcheck, Instruction, Located,
    MountKind, Network, RunArgs, Sharing,
};
use super::syntax::{self, DockerfileError};
use crate::oci::ImageConfig;
use crate::platform::Platform;

/// The automatic platform args, in BuildKit's order.
pub const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Build args every RUN may use without an ARG (docker's predefined proxy args).
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];

/// Why a [`Resolver`] has no config for an image: kept whole as the cause of the Dockerfile
/// error, so that what the user can do about it (log in to the registry, say) reaches them.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

/// Where base image configs come from (the store, a registry, or a test's table).
pub trait Resolver {
    /// The config of image `reference` for `platform`.
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, ResolveError>;

    /// The same without fetching anything: asked first when the name is a near miss of a
    /// stage name (a typo is far likelier than an image by that name, and a pull can take long
    /// to fail).
    fn local_image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, ResolveError> {
        self.image_config(reference, platform)
    }
}

/// What a build may do only when the user allows it (BuildKit's entitlements, buildx's
/// `--allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entitlement {
    /// `RUN --network=host`: the step shares the host's network.
    NetworkHost,
}

impl Entitlement {
    pub const ALL: &[Entitlement] = &[Entitlement::NetworkHost];

    pub fn as_str(self) -> &'static str {
        match self {
            Entitlement::NetworkHost => "network.host",
        }
    }
}

impl std::fmt::Display for Entitlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Entitlement {
    type Err = UnknownEntitlement;

    fn from_str(s: &str) -> Result<Entitlement, UnknownEntitlement> {
        Entitlement::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEntitlement(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entitlement `{0}`: manifold knows `network.host`")]
pub struct UnknownEntitlement(pub String);

/// A step needs an entitlement the build was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the `{0}` entitlement was not granted to this build")]
pub struct EntitlementError(pub Entitlement);

impl crate::hint::Hint for EntitlementError {
    fn hint(&self) -> Option<String> {
        Some(format!(
            "`manifold build --allow {0}` grants it (for `manifold bake`: list it under the target's `entitlements` and pass `--allow {0}`)",
            self.0
        ))
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--target`: a stage name (or index); the last stage when None.
    pub target: Option<String>,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// The platform the build runs on (BUILDPLATFORM).
    pub build_platform: Option<Platform>,
    /// `--label K=V`, set on the target stage's image.
    pub labels: BTreeMap<String, String>,
    /// `--allow`: what steps may do beyond the default.
    pub allow: BTreeSet<Entitlement>,
}

/// The plan for one target platform.
#[derive(Debug, Clone)]
pub struct Plan {
    pub platform: Platform,
    /// Reachable stages by their index in the Dockerfile.
    pub stages: BTreeMap<usize, StagePlan>,
    /// The indexes of `stages`, each after the stages it uses.
    pub order: Vec<usize>,
    pub target: usize,
    /// `--build-arg`s no ARG consumed (docker warns about them).
    pub unused_args: Vec<String>,
}

impl Plan {
    pub fn stage(&self, index: usize) -> &StagePlan {
        &self.stages[&index]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Base {
    Scratch,
    Image(String),
    Stage(usize),
}

#[derive(Debug, Clone)]
pub struct StagePlan {
    pub index: usize,
    pub name: Option<String>,
    pub line: usize,
    /// The platform this stage's filesystem is for (`--platform`, else the target).
    pub platform: Platform,
    pub base: Base,
    pub steps: Vec<Step>,
    /// The image config after the last step. `rootfs` and `history` are left to the executor,
    /// which appends to the base's.
    pub config: ImageConfig,
}

impl StagePlan {
    /// The stages this one uses: its base and those it copies from.
    pub fn deps(&self) -> BTreeSet<usize> {
        let mut deps = BTreeSet::new();
        if let Base::Stage(j) = self.base {
            deps.insert(j);
        }
        for s in &self.steps {
            match &s.op {
                Op::Copy(CopyOp {
                    from: CopyFrom::Stage(j),
                    ..
                }) => {
                    deps.insert(*j);
                }
                Op::Run(r) => deps.extend(r.mounts.iter().filter_map(|m| match m.from {
                    Some(CopyFrom::Stage(j)) => Some(j),
                    _ => None,
                })),
                _ => {}
            }
        }
        deps
    }

    /// `stage-1` or the stage's name, for messages.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 0 for an ONBUILD trigger of the base image.
    pub line: usize,
    /// The instruction as the user wrote it, on one line (progress output).
    pub text: String,
    /// The history entry's `created_by`.
    pub created_by: String,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Op {
    /// Changes only the config: an empty-layer history entry.
    Meta,
    /// WORKDIR: the directory is created (owned by `user`) when the stage lacks it.
    Workdir {
        path: String,
        user: Option<String>,
    },
    Copy(CopyOp),
    Run(RunOp),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CopyFrom {
    Context,
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CopySrc {
    /// A path (or wildcard pattern) in the context, stage or image.
    Path(String),
    /// ADD of a URL.
    Url(String),
    /// A here-document: a file called `name` with `content`.
    Inline { name: String, content: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyOp {
    pub add: bool,
    pub from: CopyFrom,
    pub sources: Vec<CopySrc>,
    /// Absolute; a trailing `/` says "a directory".
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    pub exclude: Vec<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOp {
    pub argv: Vec<String>,
    /// The process environment: the config's Env and the ARGs in scope.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: String,
    pub network: Network,
    /// A here-document with a `#!` line, run as a file (name, content).
    pub script: Option<(String, String)>,
    /// `--mount=…`: what is mounted for the step only (never part of the layer; a bind
    /// mount's content is part of the step's cache key, a secret's value never is).
    pub mounts: Vec<MountOp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountOp {
    pub kind: MountKind,
    /// Absolute. A secret's default is `/run/secrets/ID` (empty when it is only an environment
    /// variable), an ssh agent's `/run/buildkit/ssh_agent.N` (N: its place among the step's
    /// ssh mounts).
    pub target: String,
    /// The cache's, secret's or ssh agent's name (a cache's default: the target; a secret's:
    /// the target's file name; an agent's: `default`).
    pub id: String,
    pub read_only: bool,
    /// Mode and owner of a new cache directory (0755), a secret's file (0400) or an agent's
    /// socket (0600).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    // The rest only for the kinds that use them: left out of the step's cache key when unset,
    // so the keys of cache and tmpfs mounts stay what they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A bind's or cache's `from=`: a stage (planned first) or an image; None: the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<CopyFrom>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Sharing>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// Plan the build of `df` for `platform`.
pub fn plan(
    df: &Dockerfile,
    platform: &Platform,
    opts: &PlanOptions,
    resolver: &dyn Resolver,
) -> Result<Plan, DockerfileError> {
    let mut p = Planner::new(df, platform, opts, resolver)?;
    let target = p.target()?;
    p.plan_stages(target)?;
    let mut unused: Vec<String> = opts
        .build_args
        .keys()
        .filter(|k| !p.used_args.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
        .filter(|k| k.as_str() != "SOURCE_DATE_EPOCH")
        .cloned()
        .collect();
    unused.sort();
    let mut stages = BTreeMap::new();
    for (i, s) in p.stages.into_iter().enumerate() {
        if let Some(s) = s {
            stages.insert(i, s);
        }
    }
    if let Some(labels) = (!opts.labels.is_empty()).then_some(&opts.labels) {
        let cfg = &mut stages.get_mut(&target).expect("target planned").config;
        let l = cfg
            .run_config_mut()
            .labels
            .get_or_insert_with(Default::default);
        for (k, v) in labels {
            l.insert(k.clone(), v.clone());
        }
    }
    Ok(Plan {
        platform: platform.clone(),
        stages,
        order: p.order,
        target,
        unused_args: unused,
    })
}

/// The Dockerfile's stage names (None for unnamed ones), in order.
pub fn stage_names(df: &Dockerfile) -> Vec<Option<String>> {
    df.instructions
        .iter()
        .filter_map(|l| match &l.instruction {
            Instruction::From { name, .. } => Some(name.as_ref().map(|n| n.to_ascii_lowercase())),
            _ => None,
        })
        .collect()
}

struct StageSrc<'a> {
    name: Option<String>,
    line: usize,
    image: &'a str,
    platform: Option<&'a str>,
    instructions: Vec<&'a Located>,
}

struct Planner<'a> {
    df: &'a Dockerfile,
    lexer: Lexer,
    opts: &'a PlanOptions,
    resolver: &'a dyn Resolver,
    target_platform: Platform,
    automatic: Vars,
    /// Global (meta) args with their values; declared ones without value are absent.
    global: Vars,
    global_declared: BTreeSet<String>,
    sources: Vec<StageSrc<'a>>,
    stages: Vec<Option<StagePlan>>,
    /// Planned stages in the order they were finished (each after those it uses).
    order: Vec<usize>,
    in_progress: Vec<bool>,
    used_args: BTreeSet<String>,
}

/// Why planning a stage stopped.
enum Halt {
    /// It uses stage N, which is not planned yet.
    Need(usize),
    Error(DockerfileError),
}

impl From<DockerfileError> for Halt {
    fn from(e: DockerfileError) -> Halt {
        Halt::Error(e)
    }
}

fn platform_vars(prefix: &str, p: &Platform, vars: &mut Vars) {
    // BuildKit's normalisation: arm64's default variant v8 is not spelt out.
    let mut p = p.clone();
    if p.architecture == "arm64" && p.variant.as_deref() == Some("v8") {
        p.variant = None;
    }
    vars.set(&format!("{prefix}PLATFORM"), &p.to_string());
    vars.set(&format!("{prefix}OS"), &p.os);
    vars.set(&format!("{prefix}ARCH"), &p.architecture);
    vars.set(
        &format!("{prefix}VARIANT"),
        p.variant.as_deref().unwrap_or(""),
    );
}

impl<'a> Planner<'a> {
    fn new(
        df: &'a Dockerfile,
        platform: &Platform,
        opts: &'a PlanOptions,
        resolver: &'a dyn Resolver,
    ) -> Result<Planner<'a>, DockerfileError> {
        let build_platform = opts
            .build_platform
            .clone()
            .unwrap_or_else(Platform::host_target);
        let mut automatic = Vars::new();
        platform_vars("TARGET", platform, &mut automatic);
        platform_vars("BUILD", &build_platform, &mut automatic);
        let lexer = Lexer::new(df.escape);
        let mut p = Planner {
            df,
            lexer,
            opts,
            resolver,
            target_platform: platform.clone(),
            automatic: automatic.clone(),
            global: automatic,
            global_declared: BTreeSet::new(),
            sources: Vec::new(),
            stages: Vec::new(),
            order: Vec::new(),
            in_progress: Vec::new(),
            used_args: BTreeSet::new(),
        };
        for l in &df.instructions {
            match &l.instruction {
                Instruction::From {
                    image,
                    platform,
                    name,
                } => p.sources.push(StageSrc {
                    name: name.as_ref().map(|n| n.to_ascii_lowercase()),
                    line: l.line,
                    image,
                    platform: platform.as_deref(),
                    instructions: Vec::new(),
                }),
                Instruction::Arg(args) if p.sources.is_empty() => {
                    for (k, default) in args {
                        p.global_declared.insert(k.clone());
                        let value = match p.opts.build_args.get(k) {
                            Some(v) => {
                                p.used_args.insert(k.clone());
                                Some(v.clone())
                            }
                            None => match default {
                                Some(d) => Some(p.word(l.line, d, &p.global)?),
                                None => p.automatic.get(k).map(str::to_string),
                            },
                        };
                        match value {
                            Some(v) => p.global.set(k, &v),
                            None => p.global.remove(k),
                        }
                    }
                }
                _ if p.sources.is_empty() => {
                    return Err(df.map.error(
                        l.line,
                        format!(
                            "{} before the first FROM: only ARG may come first",
                            l.instruction.keyword()
                        ),
                    ));
                }
                _ => p.sources.last_mut().expect("a stage").instructions.push(l),
            }
        }
        if p.sources.is_empty() {
            return Err(df.map.error(0, "the Dockerfile has no FROM instruction"));
        }
        p.stages = (0..p.sources.len()).map(|_| None).collect();
        p.in_progress = vec![false; p.sources.len()];
        Ok(p)
    }

    fn err(&self, line: usize, message: impl Into<String>) -> DockerfileError {
        self.df.map.error(line, message)
    }

    fn halt(&self, line: usize, message: impl Into<String>) -> Halt {
        Halt::Error(self.err(line, message))
    }

    fn word(&self, line: usize, w: &str, vars: &dyn Lookup) -> Result<String, DockerfileError> {
        self.lexer
            .word(w, vars)
            .map_err(|e| self.expand_err(line, w, e))
    }

    fn expand_err(&self, line: usize, w: &str, e: ExpandError) -> DockerfileError {
        self.err(line, format!("cannot expand `{w}`: {e}"))
    }

    fn names(&self) -> Vec<&str> {
        self.sources
            .iter()
            .filter_map(|s| s.name.as_deref())
            .collect()
    }

    fn target(&self) -> Result<usize, DockerfileError> {
        match &self.opts.target {
            None => Ok(self.sources.len() - 1),
            Some(t) => {
                let lower = t.to_ascii_lowercase();
                if let Some(i) = self.find_stage(&lower, self.sources.len()) {
                    return Ok(i);
                }
                let mut msg = format!("target stage `{t}` could not be found");
                if let Some(s) = closest(&lower, &self.names()) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                }
                Err(self.err(0, msg))
            }
        }
    }

    /// A stage by name or index among the first `before` stages.
    fn find_stage(&self, name: &str, before: usize) -> Option<usize> {
        if let Ok(i) = name.parse::<usize>() {
            return (i < before).then_some(i);
        }
        self.sources[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(name))
    }

    /// Plan `target` and the stages it uses. Iterative, so that a chain of thousands of
    /// stages (`FROM s1 AS s2`, …) cannot exhaust the stack: a stage that meets a stage not
    /// planned yet stops, that stage is planned first, and the stage starts over (planning has
    /// no side effects beyond memoised lookups).
    fn plan_stages(&mut self, target: usize) -> Result<(), DockerfileError> {
        let mut stack = vec![target];
        while let Some(&i) = stack.last() {
            if self.stages[i].is_some() {
                stack.pop();
                continue;
            }
            self.in_progress[i] = true;
            match self.plan_stage(i) {
                Ok(plan) => {
                    self.in_progress[i] = false;
                    self.stages[i] = Some(plan);
                    self.order.push(i);
                    stack.pop();
                }
                Err(Halt::Need(j)) if self.in_progress[j] => {
                    return Err(self.err(
                        self.sources[j].line,
                        "circular dependency between stages (a COPY --from leads back here)",
                    ));
                }
                Err(Halt::Need(j)) => stack.push(j),
                Err(Halt::Error(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// The plan of stage `j`, or a request to plan it first.
    fn planned(&self, j: usize) -> Result<&StagePlan, Halt> {
        self.stages[j].as_ref().ok_or(Halt::Need(j))
    }

    fn plan_stage(&mut self, i: usize) -> Result<StagePlan, Halt> {
        let line = self.sources[i].line;
        let image = self.word(line, self.sources[i].image, &self.global)?;
        if image.is_empty() {
            return Err(self.halt(
                line,
                format!("base name ({}) should not be blank", self.sources[i].image),
            ));
        }
        let platform = match self.sources[i].platform {
            Some(p) => {
                let expanded = self.word(line, p, &self.global)?;
                Some(
                    Platform::parse(&expanded)
                        .map_err(|e| self.err(line, format!("FROM --platform={expanded}: {e}")))?,
                )
            }
            None => None,
        };
        let lower = image.to_ascii_lowercase();
        let (base, platform, mut config) = if let Some(j) = self.find_stage(&lower, i) {
            let b = self.planned(j)?;
            let platform = platform.unwrap_or_else(|| b.platform.clone());
            (Base::Stage(j), platform, b.config.clone())
        } else if lower == "scratch" {
            let platform = platform.unwrap_or_else(|| self.target_platform.clone());
            (Base::Scratch, platform, ImageConfig::default())
        } else {
            let platform = platform.unwrap_or_else(|| self.target_platform.clone());
            let near_stage = closest(&lower, &self.names()).is_some();
            let config = if near_stage {
                self.resolver.local_image_config(&image, &platform)
            } else {
                self.resolver.image_config(&image, &platform)
            }
            .map_err(|e| Halt::Error(self.unknown_base(line, &image, e)))?;
            (Base::Image(image.clone()), platform, config)
        };
        config.set_platform(&platform);
        config.rootfs = Default::default();
        config.history.clear();
        config.created = None;
        let triggers = config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
        let env = Vars::from_env_list(
            config
                .config
                .as_ref()
                .and_then(|c| c.env.as_deref())
                .unwrap_or_default(),
        );
        let mut st = StageState {
            config,
            env,
            env_set: false,
            args: Vars::new(),
            cmd_set: false,
            steps: Vec::new(),
            stage: i,
            platform: platform.clone(),
        };
        for t in triggers {
            let located = instructions::parse_trigger(&t).map_err(|e| {
                self.err(line, format!("ONBUILD trigger of `{image}`: {}", e.message))
            })?;
            let located = Located { line, ..located };
            self.dispatch(&mut st, &located).map_err(|h| match h {
                Halt::Error(mut e) => {
                    e.message = format!("ONBUILD trigger `{t}`: {}", e.message);
                    Halt::Error(e)
                }
                h => h,
            })?;
        }
        let instructions = self.sources[i].instructions.clone();
        for l in instructions {
            self.dispatch(&mut st, l)?;
        }
        if st.env_set {
            st.config.run_config_mut().env = Some(st.env.to_env_list());
        }
        Ok(StagePlan {
            index: i,
            name: self.sources[i].name.clone(),
            line,
            platform,
            base,
            steps: st.steps,
            config: st.config,
        })
    }

    fn unknown_base(&self, line: usize, image: &str, why: ResolveError) -> DockerfileError {
        let mut msg = format!("cannot use the base image `{image}`");
        if let Some(s) = closest(&image.to_ascii_lowercase(), &self.names()) {
            msg.push_str(&format!("; did you mean the stage `{s}`?"));
        }
        let mut e = self.err(line, msg);
        e.cause = Some(Arc::from(why));
        e
    }

    /// One instruction of a stage: what it does to the stage's state, and the step it adds
    /// (None for ARG, which BuildKit records no history for).
    fn dispatch(&mut self, st: &mut StageState, l: &Located) -> Result<(), Halt> {
        let line = l.line;
        let step = match &l.instruction {
            Instruction::From { .. } => unreachable!("stages are split at FROM"),
            Instruction::Arg(args) => {
                self.arg(st, line, args)?;
                None
            }
            Instruction::Env(pairs) => Some(self.env(st, line, pairs)?),
            Instruction::Label(pairs) => Some(self.label(st, line, pairs)?),
            Instruction::Expose(words) => Some(self.expose(st, line, words)?),
            Instruction::Workdir(w) => Some(self.workdir(st, line, w)?),
            Instruction::User(u) => Some(self.user(st, line, u)?),
            Instruction::Volume(vols) => Some(self.volume(st, line, vols)?),
            Instruction::Stopsignal(s) => Some(self.stopsignal(st, line, s)?),
            Instruction::Healthcheck(h) => Some(self.healthcheck(st, line, h)?),
            Instruction::Shell(sh) => Some(self.shell(st, line, sh)?),
            Instruction::Cmd(c) => Some(cmd(st, c)),
            Instruction::Entrypoint(c) => Some(entrypoint(st, c)),
            Instruction::Maintainer(m) => Some(maintainer(st, m)),
            Instruction::Onbuild { trigger } => Some(self.onbuild(st, trigger)),
            Instruction::Run(r) => Some(self.run(st, line, r)?),
            Instruction::Copy(c) => Some(self.copy(st, line, c, false)?),
            Instruction::Add(c) => Some(self.copy(st, line, c, true)?),
        };
        if let Some((created_by, op)) = step {
            st.steps.push(Step {
                line,
                text: one_line(&l.text, self.df.escape),
                created_by,
                op,
            });
        }
        Ok(())
    }

    fn arg(
        &mut self,
        st: &mut StageState,
        line: usize,
        args: &[(String, Option<String>)],
    ) -> Result<(), Halt> {
        for (k, default) in args {
            let value = if let Some(v) = self.opts.build_args.get(k) {
                self.used_args.insert(k.clone());
                Some(v.clone())
            } else if let Some(v) = self
                .automatic
                .get(k)
                .filter(|_| PLATFORM_ARGS.contains(&k.as_str()))
            {
                Some(v.to_string())
            } else if let Some(d) = default {
                Some(self.word(line, d, &st.vars())?)
            } else if self.global_declared.contains(k) {
                self.global.get(k).map(str::to_string)
            } else {
                None
            };
            match value {
                Some(v) => st.args.set(k, &v),
                None => st.args.remove(k),
            }
        }
        Ok(())
    }

    fn env(
        &self,
        st: &mut StageState,
        line: usize,
        pairs: &[(String, String)],
    ) -> Result<(String, Op), Halt> {
        // Every pair expands with the variables from before the instruction.
        let mut set = Vec::new();
        for (k, v) in pairs {
            let k = self.word(line, k, &st.vars())?;
            let v = self.word(line, v, &st.vars())?;
            if k.is_empty() {
                return Err(self.halt(line, "ENV names cannot be empty"));
            }
            set.push((k, v));
        }
        let mut shown = Vec::new();
        for (k, v) in set {
            st.env.set(&k, &v);
            shown.push(format!("{k}={v}"));
        }
        st.env_set = true;
        Ok((format!("ENV {}", shown.join(" ")), Op::Meta))
    }

    fn label(
        &self,
        st: &mut StageState,
        line: usize,
        pairs: &[(String, String)],
    ) -> Result<(String, Op), Halt> {
        let mut shown = Vec::new();
        for (k, v) in pairs {
            let k = self.word(line, k, &st.vars())?;
            let v = self.word(line, v, &st.vars())?;
            if k.is_empty() {
                return Err(self.halt(line, "LABEL names cannot be empty"));
            }
            st.config
                .run_config_mut()
                .labels
                .get_or_insert_with(Default::default)
                .insert(k.clone(), v.clone());
            shown.push(format!("{k}={v}"));
        }
        Ok((format!("LABEL {}", shown.join(" ")), Op::Meta))
    }

    fn expose(
        &self,
        st: &mut StageState,
        line: usize,
        words: &[String],
    ) -> Result<(String, Op), Halt> {
        let mut ports = Vec::new();
        for w in words {
            let expanded = self
                .lexer
                .words(w, &st.vars())
                .map_err(|e| self.expand_err(line, w, e))?;
            for spec in expanded {
                let list = crate::oci::changes::expose(&spec)
                    .map_err(|e| self.err(line, format!("EXPOSE {spec}: {e}")))?;
                ports.extend(list);
            }
        }
        let rc = st.config.run_config_mut();
        let map = rc.exposed_ports.get_or_insert_with(Default::default);
        for p in &ports {
            map.insert(p.clone(), serde_json::json!({}));
        }
        Ok((format!("EXPOSE {}", ports.join(" ")), Op::Meta))
    }

    fn workdir(&self, st: &mut StageState, line: usize, w: &str) -> Result<(String, Op), Halt> {
        let w = self.word(line, w, &st.vars())?;
        if w.is_empty() {
            return Err(self.halt(line, "WORKDIR cannot be empty"));
        }
        let path = clean_path(&if w.starts_with('/') {
            w
        } else {
            format!("{}/{w}", st.workdir())
        });
        st.config.run_config_mut().working_dir = Some(path.clone());
        let op = if path == "/" {
            Op::Meta
        } else {
            Op::Workdir {
                path: path.clone(),
                user: st.user(),
            }
        };
        Ok((format!("WORKDIR {path}"), op))
    }

    fn user(&self, st: &mut StageState, line: usize, u: &str) -> Result<(String, Op), Halt> {
        let u = self.word(line, u, &st.vars())?;
        st.config.run_config_mut().user = Some(u.clone());
        Ok((format!("USER {u}"), Op::Meta))
    }

    fn volume(
        &self,
        st: &mut StageState,
        line: usize,
        vols: &[String],
    ) -> Result<(String, Op), Halt> {
        let mut list = Vec::new();
        for v in vols {
            let v = self.word(line, v, &st.vars())?;
            if v.trim().is_empty() {
                return Err(self.halt(line, "VOLUME specified can not be an empty string"));
            }
            list.push(v);
        }
        let rc = st.config.run_config_mut();
        let map = rc.volumes.get_or_insert_with(Default::default);
        for v in &list {
            map.insert(v.clone(), serde_json::json!({}));
        }
        Ok((format!("VOLUME [{}]", list.join(" ")), Op::Meta))
    }

    fn stopsignal(&self, st: &mut StageState, line: usize, s: &str) -> Result<(String, Op), Halt> {
        let s = self.word(line, s, &st.vars())?;
        if s.is_empty() {
            return Err(self.halt(line, "STOPSIGNAL needs a signal"));
        }
        st.config.run_config_mut().stop_signal = Some(s.clone());
        Ok((format!("STOPSIGNAL {s}"), Op::Meta))
    }

    fn healthcheck(
        &self,
        st: &mut StageState,
        line: usize,
        h: &Healthcheck,
    ) -> Result<(String, Op), Halt> {
        let value = HealthConfig::new(h).map_err(|e| self.err(line, e.to_string()))?;
        let value = serde_json::to_value(value).expect("a health check serialises");
        st.config.run_config_mut().healthcheck = Some(value.clone());
        Ok((format!("HEALTHCHECK {value}"), Op::Meta))
    }

    fn shell(&self, st: &mut StageState, line: usize, sh: &[String]) -> Result<(String, Op), Halt> {
        if sh.is_empty() {
            return Err(self.halt(line, "SHELL needs at least one argument"));
        }
        st.config.run_config_mut().shell = Some(sh.to_vec());
        Ok((format!("SHELL {}", json(sh)), Op::Meta))
    }

    fn onbuild(&self, st: &mut StageState, trigger: &Located) -> (String, Op) {
        let t = syntax::join_continuations(&trigger.text, self.df.escape);
        st.config
            .run_config_mut()
            .on_build
            .get_or_insert_with(Vec::new)
            .push(t.clone());
        (format!("ONBUILD {t}"), Op::Meta)
    }

    fn run(&self, st: &mut StageState, line: usize, r: &RunArgs) -> Result<(String, Op), Halt> {
        let network = r.network.unwrap_or_default();
        if network == Network::Host && !self.opts.allow.contains(&Entitlement::NetworkHost) {
            return Err(Halt::Error(
                self.err(line, "RUN --network=host is not allowed")
                    .caused_by(EntitlementError(Entitlement::NetworkHost)),
            ));
        }
        let shell = st.shell();
        let mut script = None;
        let argv = match (&r.command, r.heredocs.as_slice()) {
            (CommandForm::Exec(_), [_, ..]) => {
                return Err(self.halt(line, "here-documents need the shell form of RUN"));
            }
            (c, []) => c.argv(&shell),
            (CommandForm::Shell(cmd), [only])
                if cmd.trim().starts_with("<<") && !cmd.trim().contains(char::is_whitespace) =>
            {
                if only.content.starts_with("#!") {
                    script = Some((only.name.clone(), only.content.clone()));
                    vec![format!("/dev/pipes/{}", only.name)]
                } else {
                    let mut v = shell.clone();
                    v.push(only.content.clone());
                    v
                }
            }
            (CommandForm::Shell(cmd), docs) => {
                let mut full = cmd.clone();
                for d in docs {
                    full.push('\n');
                    full.push_str(&d.content);
                    full.push_str(&d.name);
                }
                let mut v = shell.clone();
                v.push(full);
                v
            }
        };
        let mut env = st.env_list();
        let env_names = &st.env;
        let mut arg_list = Vec::new();
        for (k, v) in st.args.iter() {
            if !env_names.contains(k) {
                arg_list.push(format!("{k}={v}"));
            }
        }
        for k in PROXY_ARGS.iter().chain(["SOURCE_DATE_EPOCH"].iter()) {
            if let Some(v) = self.opts.build_args.get(*k)
                && !env_names.contains(k)
                && st.args.get(k).is_none()
            {
                env.push(format!("{k}={v}"));
            }
        }
        if !env_names.contains("PATH") {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        env.extend(arg_list.iter().cloned());
        let prefix = if arg_list.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", arg_list.len(), arg_list.join(" "))
        };
        let created_by = format!("RUN {prefix}{} # buildkit", argv.join(" "));
        let op = RunOp {
            argv,
            env,
            user: st.user(),
            workdir: st.workdir(),
            network,
            script,
            mounts: self.mounts(st, line, &r.mounts)?,
        };
        Ok((created_by, Op::Run(op)))
    }

    fn mounts(
        &self,
        st: &StageState,
        line: usize,
        mounts: &[instructions::RunMount],
    ) -> Result<Vec<MountOp>, Halt> {
        let vars = st.vars();
        let workdir = st.workdir();
        let mut out = Vec::new();
        let mut agents = 0;
        for m in mounts {
            let word = |w: &Option<String>| -> Result<Option<String>, DockerfileError> {
                w.as_ref().map(|w| self.word(line, w, &vars)).transpose()
            };
            let target = match word(&m.target)? {
                Some(t) => {
                    let t = clean_path(&if t.starts_with('/') {
                        t
                    } else {
                        format!("{workdir}/{t}")
                    });
                    if t == "/" {
                        return Err(self.halt(line, "RUN --mount cannot be mounted on /"));
                    }
                    t
                }
                None => String::new(),
            };
            let env = word(&m.env)?;
            // BuildKit's defaults (dockerfile2llb): a secret is named after its file and found
            // at /run/secrets/ID unless it is only an environment variable; agents are
            // numbered in the order they are mounted.
            let (id, target, default_mode) = match m.kind {
                MountKind::Secret => {
                    // `source=` is an older spelling of the id.
                    let id = match (word(&m.id)?, word(&m.source)?) {
                        (Some(id), _) | (None, Some(id)) => id,
                        (None, None) => target.rsplit('/').next().unwrap_or_default().to_string(),
                    };
                    let target = if target.is_empty() && env.is_none() {
                        format!("/run/secrets/{id}")
                    } else {
                        target
                    };
                    (id, target, 0o400)
                }
                MountKind::Ssh => {
                    let id = word(&m.id)?
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| "default".into());
                    let target = if target.is_empty() {
                        format!("/run/buildkit/ssh_agent.{agents}")
                    } else {
                        target
                    };
                    agents += 1;
                    (id, target, 0o600)
                }
                _ => (
                    word(&m.id)?.unwrap_or_else(|| target.clone()),
                    target,
                    0o755,
                ),
            };
            if m.kind == MountKind::Secret && id.is_empty() {
                return Err(self.halt(line, "RUN --mount=type=secret needs an id"));
            }
            let number = |what: &str, v: &Option<String>, radix: u32| match word(v)? {
                None => Ok(None),
                Some(v) => u32::from_str_radix(&v, radix)
                    .map(Some)
                    .map_err(|_| self.err(line, format!("RUN --mount {what}={v}: not a number"))),
            };
            let from = match &m.from {
                Some(f) if matches!(m.kind, MountKind::Bind | MountKind::Cache) => {
                    Some(self.copy_from(st, line, "RUN --mount from", f)?)
                }
                _ => None,
            };
            out.push(MountOp {
                kind: m.kind,
                target,
                id,
                read_only: m
                    .read_only
                    .unwrap_or(!matches!(m.kind, MountKind::Cache | MountKind::Tmpfs)),
                mode: number("mode", &m.mode, 8)?.unwrap_or(default_mode),
                uid: number("uid", &m.uid, 10)?.unwrap_or(0).into(),
                gid: number("gid", &m.gid, 10)?.unwrap_or(0).into(),
                source: word(&m.source)?,
                from,
                sharing: m.sharing,
                required: m.required,
                size: word(&m.size)?,
                env,
            });
        }
        Ok(out)
    }

    fn copy(
        &mut self,
        st: &mut StageState,
        line: usize,
        c: &CopyArgs,
        add: bool,
    ) -> Result<(String, Op), Halt> {
        let op = self.copy_op(st, line, c, add)?;
        let created_by = copy_history(if add { "ADD" } else { "COPY" }, &op, &self.sources);
        Ok((created_by, Op::Copy(op)))
    }

    /// Where `COPY --from=NAME` reads: a stage (by name or index, planned first), else an
    /// image.
    fn copy_from(
        &self,
        st: &StageState,
        line: usize,
        flag: &str,
        from: &str,
    ) -> Result<CopyFrom, Halt> {
        let f = self.word(line, from, &st.vars())?;
        let lower = f.to_ascii_lowercase();
        let stage = if let Ok(n) = lower.parse::<usize>() {
            if n >= self.sources.len() {
                return Err(self.halt(line, format!("{flag}={f}: there is no stage {n}")));
            }
            Some(n)
        } else {
            self.sources
                .iter()
                .position(|s| s.name.as_deref() == Some(&lower))
        };
        match stage {
            Some(j) if j == st.stage => {
                Err(self.halt(line, format!("{flag}={f} refers to its own stage")))
            }
            Some(j) => {
                self.planned(j)?;
                Ok(CopyFrom::Stage(j))
            }
            None => {
                let near = closest(&lower, &self.names());
                let found = if near.is_some() {
                    self.resolver.local_image_config(&f, &st.platform)
                } else {
                    self.resolver.image_config(&f, &st.platform)
                };
                if let Err(why) = found {
                    let mut msg = format!(
                        "{flag}={f}: `{f}` is neither a stage of this Dockerfile nor an image"
                    );
                    if let Some(s) = near {
                        msg.push_str(&format!("; did you mean `{s}`?"));
                    }
                    let mut e = self.err(line, msg);
                    e.cause = Some(Arc::from(why));
                    return Err(Halt::Error(e));
                }
                Ok(CopyFrom::Image(f))
            }
        }
    }

    fn copy_op(
        &mut self,
        st: &StageState,
        line: usize,
        c: &CopyArgs,
        add: bool,
    ) -> Result<CopyOp, Halt> {
        let keyword = if add { "ADD" } else { "COPY" };
        let from = match &c.from {
            None => CopyFrom::Context,
            Some(f) => self.copy_from(st, line, &format!("{keyword} --from"), f)?,
        };
        let vars = st.vars();
        let mut sources = Vec::new();
        for s in &c.sources {
            match s {
                CopySource::Path(p) => {
                    let p = self.word(line, p, &vars)?;
                    if p.is_empty() {
                        return Err(self.halt(line, format!("{keyword}: an empty source path")));
                    }
                    let is_url = p.starts_with("http://") || p.starts_with("https://");
                    if is_url && !add {
                        return Err(self.halt(line, "COPY cannot copy from a URL: use ADD"));
                    }
                    if p.starts_with("git@") || (is_url && p.ends_with(".git")) {
                        return Err(self.halt(
                            line,
                            format!("ADD of a git repository (`{p}`) is not supported"),
                        ));
                    }
                    sources.push(if is_url {
                        CopySrc::Url(p)
                    } else {
                        CopySrc::Path(p)
                    });
                }
                CopySource::Heredoc(h) => {
                    let content = if h.expand {
                        self.lexer
                            .expand_only(&h.content, &vars)
                            .map_err(|e| self.expand_err(line, &h.name, e))?
                    } else {
                        h.content.clone()
                    };
                    sources.push(CopySrc::Inline {
                        name: h.name.clone(),
                        content,
                    });
                }
            }
        }
        let dest = self.word(line, &c.dest, &vars)?;
        if dest.is_empty() {
            return Err(self.halt(line, format!("{keyword}: an empty destination")));
        }
        let dir_like = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || dest == "..";
        let abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{}/{dest}", st.workdir())
        };
        let mut dest = clean_path(&abs);
        if dir_like && dest != "/" {
            dest.push('/');
        }
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(self.halt(
                line,
                format!("when using {keyword} with more than one source file, the destination must be a directory and end with a /"),
            ));
        }
        let chown = match &c.chown {
            Some(o) => Some(self.word(line, o, &vars)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => {
                let m = self.word(line, m, &vars)?;
                Some(
                    u32::from_str_radix(&m, 8)
                        .ok()
                        .filter(|v| *v <= 0o7777)
                        .ok_or_else(|| {
                            self.err(
                                line,
                                format!("--chmod={m}: expected an octal mode such as 755"),
                            )
                        })?,
                )
            }
            None => None,
        };
        let mut exclude = Vec::new();
        for e in &c.exclude {
            exclude.push(self.word(line, e, &vars)?);
        }
        // Checked here, where the error can name the line; the builder compiles them again.
        Ignore::from_patterns(&exclude)
            .map_err(|e| self.err(line, format!("{keyword} --exclude: {e}")))?;
        Ok(CopyOp {
            add,
            from,
            sources,
            dest,
            chown,
            chmod,
            exclude,
            checksum: c.checksum.clone(),
            keep_git_dir: c.keep_git_dir,
        })
    }
}

fn cmd(st: &mut StageState, c: &CommandForm) -> (String, Op) {
    let argv = c.argv(&st.shell());
    // `CMD []` clears it (Go's omitempty leaves an empty list out of the config).
    st.config.run_config_mut().cmd = (!argv.is_empty()).then(|| argv.clone());
    st.cmd_set = true;
    (format!("CMD {}", json(&argv)), Op::Meta)
}

fn entrypoint(st: &mut StageState, c: &CommandForm) -> (String, Op) {
    let argv = c.argv(&st.shell());
    let cmd_set = st.cmd_set;
    let rc = st.config.run_config_mut();
    // `ENTRYPOINT []` clears it; either way a CMD not set in this stage goes with it.
    rc.entrypoint = (!argv.is_empty()).then(|| argv.clone());
    if !cmd_set {
        rc.cmd = None;
    }
    (format!("ENTRYPOINT {}", json(&argv)), Op::Meta)
}

fn maintainer(st: &mut StageState, m: &str) -> (String, Op) {
    st.config.author = Some(m.to_string());
    (format!("MAINTAINER {m}"), Op::Meta)
}

struct StageState {
    config: ImageConfig,
    /// The config's Env as variables (written back to the config once, at the end: keeping
    /// the list in step with every ENV would make thousands of ENV lines quadratic).
    env: Vars,
    /// Whether an ENV changed `env`.
    env_set: bool,
    /// Declared ARGs with values.
    args: Vars,
    cmd_set: bool,
    steps: Vec<Step>,
    stage: usize,
    platform: Platform,
}

impl StageState {
    /// What words expand with: ARGs, then ENV (which wins).
    fn vars(&self) -> Layered<'_> {
        Layered {
            over: &self.env,
            under: &self.args,
        }
    }

    /// The Env a process of the stage gets now.
    fn env_list(&self) -> Vec<String> {
        if self.env_set {
            self.env.to_env_list()
        } else {
            self.config
                .config
                .as_ref()
                .and_then(|c| c.env.clone())
                .unwrap_or_default()
        }
    }

    /// The USER steps run as, if one is set.
    fn user(&self) -> Option<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty())
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

fn copy_history(keyword: &str, op: &CopyOp, sources: &[StageSrc<'_>]) -> String {
    let mut parts = vec![keyword.to_string()];
    match &op.from {
        CopyFrom::Context => {}
        CopyFrom::Stage(j) => parts.push(format!(
            "--from={}",
            sources[*j].name.clone().unwrap_or_else(|| j.to_string())
        )),
        CopyFrom::Image(r) => parts.push(format!("--from={r}")),
    }
    if let Some(c) = &op.chown {
        parts.push(format!("--chown={c}"));
    }
    if let Some(m) = op.chmod {
        parts.push(format!("--chmod={m:o}"));
    }
    for s in &op.sources {
        parts.push(match s {
            CopySrc::Path(p) | CopySrc::Url(p) => p.clone(),
            CopySrc::Inline { name, .. } => format!("<<{name}"),
        });
    }
    parts.push(op.dest.clone());
    format!("{} # buildkit", parts.join(" "))
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

/// The instruction on one line, for progress output.
fn one_line(text: &str, escape: char) -> String {
    let joined = syntax::join_continuations(text, escape);
    let first = joined.lines().next().unwrap_or("");
    if joined.contains('\n') {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

/// `/a/./b/../c/` → `/a/c` (always absolute, no trailing slash but for `/`).
pub use crate::lexical::absolute as clean_path;

/// Go's duration syntax (`30s`, `1m30s`, `1.5h`, `500ms`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

/// HEALTHCHECK in the image config, as docker writes it (durations in nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealthConfig {
    test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<i64>,
}

/// Why HEALTHCHECK's flags are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthcheckError {
    #[error("HEALTHCHECK --{flag}={value}: not a duration such as 30s")]
    Duration { flag: &'static str, value: String },
    #[error("HEALTHCHECK --{flag}={value}: must be at least 1ms")]
    TooShort { flag: &'static str, value: String },
    #[error("HEALTHCHECK --retries={0}: expected a number")]
    Retries(String),
}

impl HealthConfig {
    fn new(h: &Healthcheck) -> Result<HealthConfig, HealthcheckError> {
        let (command, options) = match h {
            Healthcheck::None => {
                return Ok(HealthConfig {
                    test: vec!["NONE".into()],
                    interval: None,
                    timeout: None,
                    start_period: None,
                    start_interval: None,
                    retries: None,
                });
            }
            Healthcheck::Cmd { command, options } => (command, options),
        };
        let test: Vec<String> = match command {
            CommandForm::Exec(v) => std::iter::once("CMD".to_string())
                .chain(v.iter().cloned())
                .collect(),
            CommandForm::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
        };
        let duration =
            |flag: &'static str, v: &Option<String>| -> Result<Option<i64>, HealthcheckError> {
                let Some(v) = v else { return Ok(None) };
                let ns = parse_duration(v).ok_or_else(|| HealthcheckError::Duration {
                    flag,
                    value: v.clone(),
                })?;
                if ns != 0 && ns < 1_000_000 {
                    return Err(HealthcheckError::TooShort {
                        flag,
                        value: v.clone(),
                    });
                }
                Ok(Some(ns))
            };
        let retries = match &options.retries {
            None => None,
            Some(r) => Some(
                r.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| HealthcheckError::Retries(r.clone()))?,
            ),
        };
        Ok(HealthConfig {
            test,
            interval: duration("interval", &options.interval)?,
            timeout: duration("timeout", &options.timeout)?,
            start_period: duration("start-period", &options.start_period)?,
            start_interval: duration("start-interval", &options.start_interval)?,
            retries,
        })
    }
}

/// The name in `names` closest to `word` (at most a third of its letters wrong, at least one,
/// at most three; a transposition counts once: `buidl` → `build`), for "did you mean" hints.
pub fn closest<'n>(word: &str, names: &[&'n str]) -> Option<&'n str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    names
        .iter()
        .map(|n| (strsim::osa_distance(word, n), *n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
