//! The typed layer: every Dockerfile instruction as an owned value with its line and source
//! text, flags checked, words not yet expanded (expansion needs the build's variables, which
//! is the planner's business).

use parse_dockerfile as pd;
use serde::Serialize;

use super::syntax::{self, DockerfileError, SourceMap};

/// Exec form (a JSON array, run as it is) or shell form (run by the SHELL, `/bin/sh -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

impl CommandForm {
    /// The argv the image config gets: exec form as is, shell form through `shell`.
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut v = shell.to_vec();
                v.push(s.clone());
                v
            }
        }
    }
}

/// A here-document (`<<EOF … EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word (`EOF`), which COPY uses as the file name.
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted: no expansion in the body.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Path(String),
    Heredoc(Heredoc),
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyArgs {
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub exclude: Vec<String>,
    pub sources: Vec<CopySource>,
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub command: CommandForm,
    pub heredocs: Vec<Heredoc>,
    /// `--network=default|none|host`.
    pub network: Option<Network>,
    /// `--mount=…` (words not yet expanded).
    pub mounts: Vec<RunMount>,
}

/// `RUN --network=…`. `host` needs the `network.host` entitlement (`build --allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Default => "default",
            Network::None => "none",
            Network::Host => "host",
        }
    }
}

/// The kinds of `RUN --mount=type=…` BuildKit knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A directory of the context or of another stage (BuildKit's default type).
    #[default]
    Bind,
    /// A directory kept across builds, by id.
    Cache,
    /// An empty directory in memory.
    Tmpfs,
    /// A secret given to the build (`--secret`), as a file or an environment variable.
    Secret,
    /// The SSH agent given to the build (`--ssh`).
    Ssh,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Cache => "cache",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Secret => "secret",
            MountKind::Ssh => "ssh",
        }
    }
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `RUN --mount=…`, BuildKit's CSV of `key=value` (or a bare `ro`, `rw`, `required`),
/// values not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunMount {
    pub kind: MountKind,
    pub target: Option<String>,
    pub source: Option<String>,
    /// A stage or image (bind, cache).
    pub from: Option<String>,
    /// A cache's or secret's id.
    pub id: Option<String>,
    /// None: the kind's default (bind, secret and ssh read-only; cache and tmpfs writable).
    pub read_only: Option<bool>,
    pub sharing: Option<Sharing>,
    /// A secret or ssh mount whose source must exist.
    pub required: bool,
    /// A tmpfs's size limit.
    pub size: Option<String>,
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// A secret as this environment variable.
    pub env: Option<String>,
}

/// Why a `--mount` value is refused (BuildKit's `parseMount` checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("--mount field `{0}` must be a key=value pair")]
    NotKeyValue(String),
    #[error("--mount {key}={value}: expected true or false")]
    NotBool { key: String, value: String },
    #[error("unsupported mount type `{0}`: expected bind, cache, tmpfs, secret or ssh")]
    Kind(String),
    #[error("unsupported sharing value `{0}`: expected shared, private or locked")]
    Sharing(String),
    #[error("unknown --mount option `{0}`")]
    UnknownKey(String),
    #[error("--mount {key} is not allowed for type={}", .kind.as_str())]
    NotForKind { key: &'static str, kind: MountKind },
    #[error("a secret mount cannot have a from")]
    SecretFrom,
    #[error("a secret mount needs an id, a source or a target")]
    SecretNothing,
    #[error("a secret mount cannot have both a source and an id")]
    SecretSourceAndId,
    #[error("RUN --mount=type={} needs a target", .0.as_str())]
    NoTarget(MountKind),
}

fn parse_bool(key: &str, v: &str) -> Result<bool, MountError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(MountError::NotBool {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

/// One `--mount` value, checked as BuildKit's `parseMount` checks it.
fn run_mount(spec: &str) -> Result<RunMount, MountError> {
    let mut m = RunMount::default();
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(v) = value else {
            match key.as_str() {
                "ro" | "readonly" => m.read_only = Some(true),
                "rw" | "readwrite" => m.read_only = Some(false),
                "required" => m.required = true,
                _ => return Err(MountError::NotKeyValue(field.to_string())),
            }
            continue;
        };
        match key.as_str() {
            "type" => {
                m.kind = match v.to_ascii_lowercase().as_str() {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    "secret" => MountKind::Secret,
                    "ssh" => MountKind::Ssh,
                    _ => return Err(MountError::Kind(v)),
                }
            }
            "from" => m.from = Some(v),
            "source" | "src" => m.source = Some(v),
            "target" | "dst" | "destination" => m.target = Some(v),
            "ro" | "readonly" => m.read_only = Some(parse_bool(&key, &v)?),
            "rw" | "readwrite" => m.read_only = Some(!parse_bool(&key, &v)?),
            "required" => m.required = parse_bool(&key, &v)?,
            "size" => m.size = Some(v),
            "id" => m.id = Some(v),
            "sharing" => {
                m.sharing = Some(match v.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(MountError::Sharing(v)),
                })
            }
            "mode" => m.mode = Some(v),
            "uid" => m.uid = Some(v),
            "gid" => m.gid = Some(v),
            "env" => m.env = Some(v),
            _ => return Err(MountError::UnknownKey(key)),
        }
    }
    let kind = m.kind;
    let file_info = matches!(kind, MountKind::Secret | MountKind::Ssh | MountKind::Cache);
    for (key, set, allowed) in [
        ("mode", m.mode.is_some(), file_info),
        ("uid", m.uid.is_some(), file_info),
        ("gid", m.gid.is_some(), file_info),
        (
            "required",
            m.required,
            matches!(kind, MountKind::Secret | MountKind::Ssh),
        ),
        ("size", m.size.is_some(), kind == MountKind::Tmpfs),
        ("sharing", m.sharing.is_some(), kind == MountKind::Cache),
    ] {
        if set && !allowed {
            return Err(MountError::NotForKind { key, kind });
        }
    }
    if kind == MountKind::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretFrom);
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::SecretNothing);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SecretSourceAndId);
        }
    }
    if m.target.is_none() && !matches!(kind, MountKind::Secret | MountKind::Ssh) {
        return Err(MountError::NoTarget(kind));
    }
    Ok(m)
}

/// HEALTHCHECK's flags, as written (the planner checks the durations).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthcheckOptions {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    Cmd {
        command: CommandForm,
        options: HealthcheckOptions,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From {
        image: String,
        platform: Option<String>,
        name: Option<String>,
    },
    Run(RunArgs),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    /// Raw `KEY=VALUE` pairs (quotes still in), in order.
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Copy(CopyArgs),
    Add(CopyArgs),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    Stopsignal(String),
    Onbuild {
        trigger: Box<Located>,
    },
    Maintainer(String),
}

impl Instruction {
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From { .. } => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Onbuild { .. } => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    /// The instruction as written, continuations and all (ONBUILD keeps its trigger as this).
    pub text: String,
    pub instruction: Instruction,
}

/// A parsed Dockerfile: its escape character and instructions.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub map: SourceMap,
    pub escape: char,
    pub instructions: Vec<Located>,
}

/// Parse a Dockerfile's text (`name` is how errors call the file).
pub fn parse(name: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
    let map = SourceMap::new(name, text);
    let (source, entrypoints) = syntax::parseable(&map);
    let parsed = syntax::parse(&map, &source)?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let starts: Vec<usize> = parsed.instructions.iter().map(start_of).collect();
    let mut instructions = Vec::with_capacity(parsed.instructions.len());
    for (i, ins) in parsed.instructions.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(map.text.len());
        instructions.push(convert(&map, escape, &entrypoints, ins, next)?);
    }
    drop(parsed);
    drop(source);
    Ok(Dockerfile {
        escape,
        instructions,
        map,
    })
}

/// Parse one instruction outside a Dockerfile: an ONBUILD trigger from an image config.
pub fn parse_trigger(trigger: &str) -> Result<Located, DockerfileError> {
    // The parser wants a FROM first; the trigger is then on line 2.
    let text = format!("FROM scratch\n{trigger}\n");
    let df = parse("ONBUILD trigger", &text).map_err(|mut e| {
        e.line = 0;
        e.message = format!("`{trigger}`: {}", e.message);
        e
    })?;
    let mut ins = df.instructions.into_iter().skip(1);
    match (ins.next(), ins.next()) {
        (Some(mut l), None) => {
            l.line = 0;
            Ok(l)
        }
        _ => Err(DockerfileError {
            file: "ONBUILD trigger".into(),
            line: 0,
            message: format!("`{trigger}` is not one instruction"),
            cause: None,
        }),
    }
}

fn start_of(ins: &pd::Instruction<'_>) -> usize {
    use pd::Instruction as I;
    match ins {
        I::Add(i) => i.add.span.start,
        I::Arg(i) => i.arg.span.start,
        I::Cmd(i) => i.cmd.span.start,
        I::Copy(i) => i.copy.span.start,
        I::Entrypoint(i) => i.entrypoint.span.start,
        I::Env(i) => i.env.span.start,
        I::Expose(i) => i.expose.span.start,
        I::From(i) => i.from.span.start,
        I::Healthcheck(i) => i.healthcheck.span.start,
        I::Label(i) => i.label.span.start,
        I::Maintainer(i) => i.maintainer.span.start,
        I::Onbuild(i) => i.onbuild.span.start,
        I::Run(i) => i.run.span.start,
        I::Shell(i) => i.shell.span.start,
        I::Stopsignal(i) => i.stopsignal.span.start,
        I::User(i) => i.user.span.start,
        I::Volume(i) => i.volume.span.start,
        I::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

struct Flags<'a> {
    keyword: &'static str,
    line: usize,
    map: &'a SourceMap,
    values: Vec<(String, Option<String>)>,
}

impl<'a> Flags<'a> {
    fn new(
        map: &'a SourceMap,
        line: usize,
        keyword: &'static str,
        flags: &[pd::Flag<'_>],
        allowed: &[&str],
    ) -> Result<Flags<'a>, DockerfileError> {
        let mut values = Vec::new();
        for f in flags {
            let name = f.name.value.to_string();
            if !allowed.contains(&name.as_str()) {
                let hint = if allowed.is_empty() {
                    format!("{keyword} takes no flags")
                } else {
                    format!(
                        "{keyword} takes {}",
                        allowed
                            .iter()
                            .map(|a| format!("--{a}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(map.error(line, format!("unknown flag --{name} for {keyword}: {hint}")));
            }
            values.push((name, f.value.as_ref().map(|v| v.value.to_string())));
        }
        Ok(Flags {
            keyword,
            line,
            map,
            values,
        })
    }

    /// A flag that needs a value (the last one given wins, as in docker).
    fn value(&self, name: &str) -> Result<Option<String>, DockerfileError> {
        match self.values.iter().rev().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, Some(v))) => Ok(Some(v.clone())),
            Some((_, None)) => Err(self.map.error(
                self.line,
                format!(
                    "--{name} of {} needs a value (--{name}=VALUE)",
                    self.keyword
                ),
            )),
        }
    }

    fn all(&self, name: &str) -> Result<Vec<String>, DockerfileError> {
        let mut out = Vec::new();
        for (n, v) in &self.values {
            if n == name {
                match v {
                    Some(v) => out.push(v.clone()),
                    None => {
                        return Err(self.map.error(
                            self.line,
                            format!("--{name} of {} needs a value", self.keyword),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// A boolean flag: `--link`, `--link=true`, `--link=false`.
    fn bool(&self, name: &str) -> Result<bool, DockerfileError> {
        match self.values.iter().rev().find(|(n, _)| n == name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(v))) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(self.map.error(
                    self.line,
                    format!(
                        "--{name} of {} takes true or false, not `{v}`",
                        self.keyword
                    ),
                )),
            },
        }
    }
}

fn command(cmd: &pd::Command<'_>, escape: char) -> CommandForm {
    match cmd {
        pd::Command::Exec(v) => {
            CommandForm::Exec(v.value.iter().map(|s| s.value.to_string()).collect())
        }
        pd::Command::Shell(s) => CommandForm::Shell(syntax::join_continuations(s.value, escape)),
        _ => CommandForm::Shell(String::new()),
    }
}

fn heredoc(map: &SourceMap, h: &pd::HereDoc<'_>, name: String) -> Heredoc {
    let _ = map;
    Heredoc {
        name,
        content: h.value.to_string(),
        expand: h.expand,
    }
}

/// The delimiters of the here-documents opened on the first line of `text`, in order.
fn heredoc_names(text: &str) -> Vec<String> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"<<-?\s*(?:"([^"\s]+)"|'([^'\s]+)'|([A-Za-z0-9_.-]+))"#)
            .expect("heredoc regex")
    });
    let first = text.lines().next().unwrap_or("");
    RE.captures_iter(first)
        .filter_map(|c| {
            c.get(1)
                .or_else(|| c.get(2))
                .or_else(|| c.get(3))
                .map(|m| m.as_str().to_string())
        })
        .collect()
}

/// One instruction of the parser's tree as ours. `entrypoints`: where [`syntax::parseable`]
/// made an `ENTRYPOINT []` a CMD for the parser.
fn convert(
    map: &SourceMap,
    escape: char,
    entrypoints: &[usize],
    ins: &pd::Instruction<'_>,
    next: usize,
) -> Result<Located, DockerfileError> {
    use pd::Instruction as I;
    let start = start_of(ins);
    let line = map.line_of(start);
    let text = map.instruction_text(start, next).to_string();
    let s = |u: &pd::UnescapedString<'_>| u.value.to_string();
    let instruction = match ins {
        I::From(f) => {
            let flags = Flags::new(map, line, "FROM", &f.options, &["platform"])?;
            Instruction::From {
                image: s(&f.image),
                platform: flags.value("platform")?,
                name: f.as_.as_ref().map(|(_, n)| n.value.to_string()),
            }
        }
        I::Run(r) => {
            let flags = Flags::new(
                map,
                line,
                "RUN",
                &r.options,
                &["network", "mount", "security"],
            )?;
            let mut mounts = Vec::new();
            for spec in flags.all("mount")? {
                mounts.push(run_mount(&spec).map_err(|e| map.error(line, e.to_string()))?);
            }
            if let Some(sec) = flags.value("security")?
                && sec != "sandbox"
            {
                return Err(map.error(line, format!("RUN --security={sec} is not supported")));
            }
            let network = match flags.value("network")?.as_deref() {
                None => None,
                Some("default") => Some(Network::Default),
                Some("none") => Some(Network::None),
                Some("host") => Some(Network::Host),
                Some(n) => {
                    return Err(map.error(
                        line,
                        format!("RUN --network={n}: expected default, none or host"),
                    ));
                }
            };
            let names = heredoc_names(&text);
            let heredocs: Vec<Heredoc> = r
                .here_docs
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    heredoc(
                        map,
                        h,
                        names.get(i).cloned().unwrap_or_else(|| "EOF".into()),
                    )
                })
                .collect();
            let command = if heredocs.is_empty() {
                command(&r.arguments, escape)
            } else {
                // The crate drops the `<<EOF` words from the command line: take the first line
                // as written, after RUN and its flags.
                let first = text.lines().next().unwrap_or("");
                let mut rest = first[3..].trim_start();
                while rest.starts_with("--") {
                    rest = rest
                        .split_once(char::is_whitespace)
                        .map_or("", |(_, r)| r)
                        .trim_start();
                }
                CommandForm::Shell(rest.to_string())
            };
            Instruction::Run(RunArgs {
                command,
                heredocs,
                network,
                mounts,
            })
        }
        I::Cmd(c) if entrypoints.contains(&c.cmd.span.start) => {
            Instruction::Entrypoint(command(&c.arguments, escape))
        }
        I::Cmd(c) => Instruction::Cmd(command(&c.arguments, escape)),
        I::Entrypoint(c) => Instruction::Entrypoint(command(&c.arguments, escape)),
        I::Env(e) => Instruction::Env(name_values(map, line, "ENV", &e.arguments.value, escape)?),
        I::Label(l) => {
            Instruction::Label(name_values(map, line, "LABEL", &l.arguments.value, escape)?)
        }
        I::Arg(a) => {
            let words = split_words(&a.arguments.value, escape);
            if words.is_empty() {
                return Err(map.error(line, "ARG needs a name"));
            }
            let args = words
                .into_iter()
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w, None),
                })
                .collect::<Vec<_>>();
            for (k, _) in &args {
                if k.is_empty() {
                    return Err(map.error(line, "ARG names cannot be empty"));
                }
            }
            Instruction::Arg(args)
        }
        I::Expose(e) => Instruction::Expose(e.arguments.iter().map(s).collect()),
        I::Copy(c) => {
            let flags = Flags::new(
                map,
                line,
                "COPY",
                &c.options,
                &["from", "chown", "chmod", "link", "exclude", "parents"],
            )?;
            if flags.bool("parents")? {
                return Err(map.error(line, "COPY --parents is not supported"));
            }
            Instruction::Copy(CopyArgs {
                from: flags.value("from")?,
                chown: flags.value("chown")?,
                chmod: flags.value("chmod")?,
                link: flags.bool("link")?,
                exclude: flags.all("exclude")?,
                sources: sources(map, &c.src, &text),
                dest: s(&c.dest),
                ..Default::default()
            })
        }
        I::Add(c) => {
            let flags = Flags::new(
                map,
                line,
                "ADD",
                &c.options,
                &[
                    "chown",
                    "chmod",
                    "link",
                    "keep-git-dir",
                    "checksum",
                    "exclude",
                ],
            )?;
            Instruction::Add(CopyArgs {
                from: None,
                chown: flags.value("chown")?,
                chmod: flags.value("chmod")?,
                link: flags.bool("link")?,
                keep_git_dir: flags.bool("keep-git-dir")?,
                checksum: flags.value("checksum")?,
                exclude: flags.all("exclude")?,
                sources: sources(map, &c.src, &text),
                dest: s(&c.dest),
            })
        }
        I::Workdir(w) => Instruction::Workdir(s(&w.arguments)),
        I::User(u) => Instruction::User(s(&u.arguments)),
        I::Volume(v) => Instruction::Volume(match &v.arguments {
            pd::JsonOrStringArray::Json(a) => a.value.iter().map(s).collect(),
            pd::JsonOrStringArray::String(a) => a.iter().map(s).collect(),
        }),
        I::Healthcheck(h) => {
            let flags = Flags::new(
                map,
                line,
                "HEALTHCHECK",
                &h.options,
                &[
                    "interval",
                    "timeout",
                    "start-period",
                    "start-interval",
                    "retries",
                ],
            )?;
            match &h.arguments {
                pd::HealthcheckArguments::None { .. } => {
                    if !flags.values.is_empty() {
                        return Err(map.error(line, "HEALTHCHECK NONE takes no flags"));
                    }
                    Instruction::Healthcheck(Healthcheck::None)
                }
                pd::HealthcheckArguments::Cmd { arguments, .. } => {
                    Instruction::Healthcheck(Healthcheck::Cmd {
                        command: command(arguments, escape),
                        options: HealthcheckOptions {
                            interval: flags.value("interval")?,
                            timeout: flags.value("timeout")?,
                            start_period: flags.value("start-period")?,
                            start_interval: flags.value("start-interval")?,
                            retries: flags.value("retries")?,
                        },
                    })
                }
                _ => return Err(map.error(line, "HEALTHCHECK: expected CMD or NONE")),
            }
        }
        I::Shell(sh) => Instruction::Shell(sh.arguments.iter().map(s).collect()),
        I::Stopsignal(st) => Instruction::Stopsignal(s(&st.arguments)),
        I::Maintainer(m) => Instruction::Maintainer(s(&m.name)),
        I::Onbuild(o) => {
            let inner = convert(map, escape, entrypoints, &o.instruction, next)?;
            match inner.instruction {
                Instruction::From { .. }
                | Instruction::Maintainer(_)
                | Instruction::Onbuild { .. } => {
                    return Err(map.error(
                        line,
                        format!(
                            "{} is not allowed as an ONBUILD trigger",
                            inner.instruction.keyword()
                        ),
                    ));
                }
                _ => {}
            }
            Instruction::Onbuild {
                trigger: Box::new(inner),
            }
        }
        _ => return Err(map.error(line, "unsupported instruction")),
    };
    Ok(Located {
        line,
        text,
        instruction,
    })
}

fn sources(map: &SourceMap, src: &[pd::Source<'_>], text: &str) -> Vec<CopySource> {
    let names = heredoc_names(text);
    let mut n = 0;
    src.iter()
        .map(|s| match s {
            pd::Source::Path(p) => CopySource::Path(p.value.to_string()),
            pd::Source::HereDoc(h) => {
                let name = names.get(n).cloned().unwrap_or_else(|| "EOF".into());
                n += 1;
                CopySource::Heredoc(heredoc(map, h, name))
            }
            _ => CopySource::Path(String::new()),
        })
        .collect()
}

/// Words split at whitespace outside quotes; quotes and escapes kept (BuildKit's parseWords).
pub fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            continue;
        }
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// `KEY=VALUE …` or the legacy `KEY VALUE` (ENV and LABEL).
fn name_values(
    map: &SourceMap,
    line: usize,
    keyword: &str,
    rest: &str,
    escape: char,
) -> Result<Vec<(String, String)>, DockerfileError> {
    let words = split_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(map.error(line, format!("{keyword} needs at least one argument")));
    };
    if !first.contains('=') {
        let rest = rest.trim();
        let Some((k, v)) = rest.split_once(char::is_whitespace) else {
            return Err(map.error(line, format!("{keyword} must have two arguments")));
        };
        return Ok(vec![(k.to_string(), v.trim_start().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(map.error(line, format!("{keyword} names cannot be empty"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(map.error(
                line,
                format!("syntax error - can't find = in `{w}`: must be of the form name=value"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Located {
        let df = parse("Dockerfile", &format!("FROM scratch\n{text}\n")).unwrap();
        df.instructions.into_iter().nth(1).unwrap()
    }

    #[test]
    fn from_with_platform_and_name() {
        let df = parse(
            "Dockerfile",
            "ARG B=x\nFROM --platform=$BUILDPLATFORM ${B} AS build\n",
        )
        .unwrap();
        assert_eq!(df.instructions.len(), 2);
        assert_eq!(df.instructions[1].line, 2);
        assert_eq!(
            df.instructions[1].instruction,
            Instruction::From {
                image: "${B}".into(),
                platform: Some("$BUILDPLATFORM".into()),
                name: Some("build".into())
            }
        );
    }

    #[test]
    fn run_forms() {
        assert_eq!(
            one("RUN echo a \\\n  b").instruction,
            Instruction::Run(RunArgs {
                command: CommandForm::Shell("echo a   b".into()),
                heredocs: vec![],
                network: None,
                mounts: vec![]
            })
        );
        assert_eq!(
            one(r#"RUN ["sh", "-c", "x"]"#).instruction,
            Instruction::Run(RunArgs {
                command: CommandForm::Exec(vec!["sh".into(), "-c".into(), "x".into()]),
                heredocs: vec![],
                network: None,
                mounts: vec![]
            })
        );
        let Instruction::Run(r) = one("RUN --network=none <<EOT bash\necho $X\nEOT").instruction
        else {
            panic!()
        };
        assert_eq!(r.command, CommandForm::Shell("<<EOT bash".into()));
        assert_eq!(r.network, Some(Network::None));
        assert_eq!(
            r.heredocs,
            vec![Heredoc {
                name: "EOT".into(),
                content: "echo $X\n".into(),
                expand: true
            }]
        );
    }

    #[test]
    fn unsupported_flags_name_the_line() {
        let e = parse("Dockerfile", "FROM a\nCOPY --foo=1 a b\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown flag --foo for COPY"), "{e}");
        let e = parse(
            "Dockerfile",
            "FROM a\n\nRUN --mount=type=nfs,target=/x true\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unsupported mount type `nfs`"), "{e}");
    }

    #[test]
    fn run_mounts() {
        let Instruction::Run(r) =
            one("RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked --mount=type=tmpfs,dst=/scratch,ro true").instruction
        else {
            panic!()
        };
        assert_eq!(
            r.mounts,
            vec![
                RunMount {
                    kind: MountKind::Cache,
                    target: Some("/root/.cache".into()),
                    id: Some("pip".into()),
                    sharing: Some(Sharing::Locked),
                    ..Default::default()
                },
                RunMount {
                    kind: MountKind::Tmpfs,
                    target: Some("/scratch".into()),
                    read_only: Some(true),
                    ..Default::default()
                }
            ]
        );
        // all five kinds parse typed (bind, secret and ssh are refused when a build runs them)
        let Instruction::Run(r) = one(
            "RUN --mount=target=/src,from=build,source=/out,rw \\\n --mount=type=secret,id=tok,env=TOKEN,required \\\n --mount=type=ssh,mode=0600 true",
        )
        .instruction
        else {
            panic!()
        };
        assert_eq!(
            r.mounts,
            vec![
                RunMount {
                    kind: MountKind::Bind,
                    target: Some("/src".into()),
                    from: Some("build".into()),
                    source: Some("/out".into()),
                    read_only: Some(false),
                    ..Default::default()
                },
                RunMount {
                    kind: MountKind::Secret,
                    id: Some("tok".into()),
                    env: Some("TOKEN".into()),
                    required: true,
                    ..Default::default()
                },
                RunMount {
                    kind: MountKind::Ssh,
                    mode: Some("0600".into()),
                    ..Default::default()
                }
            ]
        );
        for (spec, why) in [
            ("type=cache", "needs a target"),
            (
                "type=cache,target=/x,bogus=1",
                "unknown --mount option `bogus`",
            ),
            (
                "type=bind,target=/x,mode=0755",
                "mode is not allowed for type=bind",
            ),
            ("type=cache,target=/x,required", "required is not allowed"),
            ("type=cache,target=/x,size=1m", "size is not allowed"),
            (
                "type=tmpfs,target=/x,sharing=locked",
                "sharing is not allowed",
            ),
            (
                "type=cache,target=/x,sharing=all",
                "unsupported sharing value `all`",
            ),
            ("type=secret,target=/x,from=a", "cannot have a from"),
            ("type=secret", "needs an id, a source or a target"),
            ("type=secret,id=a,source=b", "both a source and an id"),
            ("type=cache,target=/x,ro=maybe", "expected true or false"),
            ("type=cache,target=/x,noequals", "must be a key=value pair"),
        ] {
            let e = parse("Dockerfile", &format!("FROM a\nRUN --mount={spec} true\n")).unwrap_err();
            assert!(e.message.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn empty_exec_forms_clear() {
        // the parser refuses `ENTRYPOINT []`; it is read as an empty ENTRYPOINT all the same
        let df = parse(
            "Dockerfile",
            "FROM a\nENTRYPOINT []\nCMD []\nentrypoint [ ]\nONBUILD ENTRYPOINT []\nRUN <<EOF\nENTRYPOINT []\nEOF\n",
        )
        .unwrap();
        let ins: Vec<&Instruction> = df.instructions.iter().map(|l| &l.instruction).collect();
        assert_eq!(ins[1], &Instruction::Entrypoint(CommandForm::Exec(vec![])));
        assert_eq!(df.instructions[1].text, "ENTRYPOINT []");
        assert_eq!(ins[2], &Instruction::Cmd(CommandForm::Exec(vec![])));
        assert_eq!(ins[3], &Instruction::Entrypoint(CommandForm::Exec(vec![])));
        let Instruction::Onbuild { trigger } = ins[4] else {
            panic!("{:?}", ins[4])
        };
        assert_eq!(
            trigger.instruction,
            Instruction::Entrypoint(CommandForm::Exec(vec![]))
        );
        let Instruction::Run(r) = ins[5] else {
            panic!()
        };
        assert_eq!(
            r.heredocs[0].content, "ENTRYPOINT []\n",
            "here-documents are data"
        );
        assert_eq!(df.instructions[5].line, 6);
        assert!(matches!(
            parse_trigger("ENTRYPOINT []").unwrap().instruction,
            Instruction::Entrypoint(CommandForm::Exec(ref v)) if v.is_empty()
        ));
        // other errors are still the parser's, on their line
        let e = parse("Dockerfile", "FROM a\nENTRYPOINT []\nNOPE x\n").unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn env_label_arg_pairs() {
        assert_eq!(
            one(r#"ENV A=1 B="two words" C=three\ four"#).instruction,
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), "three\\ four".into())
            ])
        );
        assert_eq!(
            one("ENV LEGACY some value").instruction,
            Instruction::Env(vec![("LEGACY".into(), "some value".into())])
        );
        assert_eq!(
            one(r#"LABEL "a b"=c"#).instruction,
            Instruction::Label(vec![("\"a b\"".into(), "c".into())])
        );
        assert_eq!(
            one("ARG A B=2").instruction,
            Instruction::Arg(vec![("A".into(), None), ("B".into(), Some("2".into()))])
        );
        let e = parse("Dockerfile", "FROM a\nENV A=1 B\n").unwrap_err();
        assert!(e.message.contains("can't find ="), "{e}");
    }

    #[test]
    fn copy_add_flags_and_heredocs() {
        let Instruction::Copy(c) =
            one("COPY --from=build --chown=1:2 --chmod=755 --link a b* /dst/").instruction
        else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.chown.as_deref(), Some("1:2"));
        assert_eq!(c.chmod.as_deref(), Some("755"));
        assert!(c.link);
        assert_eq!(
            c.sources,
            vec![CopySource::Path("a".into()), CopySource::Path("b*".into())]
        );
        assert_eq!(c.dest, "/dst/");
        let Instruction::Copy(c) = one("COPY <<one <<\"two\" /d/\n1\none\n2 $X\ntwo").instruction
        else {
            panic!()
        };
        assert_eq!(
            c.sources,
            vec![
                CopySource::Heredoc(Heredoc {
                    name: "one".into(),
                    content: "1\n".into(),
                    expand: true
                }),
                CopySource::Heredoc(Heredoc {
                    name: "two".into(),
                    content: "2 $X\n".into(),
                    expand: false
                })
            ]
        );
        let e = parse("Dockerfile", "FROM a\nADD --from=x a b\n").unwrap_err();
        assert!(e.message.contains("--from"), "{e}");
    }

    #[test]
    fn metadata_instructions() {
        assert_eq!(
            one("CMD echo hi").instruction,
            Instruction::Cmd(CommandForm::Shell("echo hi".into()))
        );
        assert_eq!(
            one(r#"ENTRYPOINT ["x", "y"]"#).instruction,
            Instruction::Entrypoint(CommandForm::Exec(vec!["x".into(), "y".into()]))
        );
        assert_eq!(
            one("VOLUME /a /b").instruction,
            Instruction::Volume(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(
            one(r#"VOLUME ["/c"]"#).instruction,
            Instruction::Volume(vec!["/c".into()])
        );
        assert_eq!(
            one("EXPOSE 80 53/udp").instruction,
            Instruction::Expose(vec!["80".into(), "53/udp".into()])
        );
        assert_eq!(
            one(r#"SHELL ["/bin/sh", "-ec"]"#).instruction,
            Instruction::Shell(vec!["/bin/sh".into(), "-ec".into()])
        );
        assert_eq!(one("USER 1:2").instruction, Instruction::User("1:2".into()));
        assert_eq!(
            one("WORKDIR /w").instruction,
            Instruction::Workdir("/w".into())
        );
        assert_eq!(
            one("STOPSIGNAL SIGINT").instruction,
            Instruction::Stopsignal("SIGINT".into())
        );
        assert_eq!(
            one("MAINTAINER me").instruction,
            Instruction::Maintainer("me".into())
        );
        let Instruction::Healthcheck(Healthcheck::Cmd { command, options }) =
            one("HEALTHCHECK --interval=5s --retries=3 CMD true").instruction
        else {
            panic!()
        };
        assert_eq!(command, CommandForm::Shell("true".into()));
        assert_eq!(options.interval.as_deref(), Some("5s"));
        assert_eq!(options.retries.as_deref(), Some("3"));
        assert_eq!(options.timeout, None);
        assert_eq!(
            one("HEALTHCHECK NONE").instruction,
            Instruction::Healthcheck(Healthcheck::None)
        );
    }

    #[test]
    fn onbuild_keeps_its_trigger_text() {
        let l = one("ONBUILD RUN echo a \\\n  b");
        let Instruction::Onbuild { trigger } = l.instruction else {
            panic!()
        };
        assert_eq!(trigger.text, "RUN echo a \\\n  b");
        assert!(matches!(trigger.instruction, Instruction::Run(_)));
        let e = parse("Dockerfile", "FROM a\nONBUILD FROM b\n").unwrap_err();
        assert_eq!(e.line, 2);
        let t = parse_trigger("COPY a /b").unwrap();
        assert!(matches!(t.instruction, Instruction::Copy(_)));
        assert!(parse_trigger("NOPE x").is_err());
    }

    #[test]
    fn escape_directive() {
        let df = parse("Dockerfile", "# escape=`\nFROM a\nRUN echo a `\n  b\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(
            df.instructions[1].instruction,
            Instruction::Run(RunArgs {
                command: CommandForm::Shell("echo a   b".into()),
                heredocs: vec![],
                network: None,
                mounts: vec![]
            })
        );
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            split_words(r#"a="x y" b='c d' e\ f"#, '\\'),
            vec![r#"a="x y""#, "b='c d'", r"e\ f"]
        );
    }
}
