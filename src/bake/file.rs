//! The bake file: YAML read in two passes. The first reads it loosely, for the variables'
//! defaults and the names of targets and groups; the second reads it strictly into typed
//! values, substituting `${NAME}` and checking every value as it is read — so that an unknown
//! key, an unknown variable, a bad platform or tag, or a group naming nothing is reported with
//! its key and line.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::BakeError;
use crate::builder::cache_remote::{CacheFrom, CacheTo};
use crate::dockerfile::plan::Entitlement;
use crate::platform::Platform;
use crate::reference::Reference;

/// A bake file with every variable substituted and every value checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BakeFile {
    /// The variables' values (the environment's where set, else the defaults).
    #[serde(skip)]
    pub variables: BTreeMap<String, String>,
    pub targets: BTreeMap<String, Target>,
    pub groups: BTreeMap<String, Vec<String>>,
}

/// One target: what `manifold build` is given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// The build context, relative to the bake file's directory.
    pub context: String,
    /// The Dockerfile, relative to the context.
    pub dockerfile: String,
    /// As written, checked; empty for the host's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The stage to build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the target's build may do beyond the default (`network.host`), as buildx's
    /// `entitlements`: granted only by `manifold bake --allow`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    /// `--cache-from` specs (buildx's CSV form, checked).
    #[serde(rename = "cache-from", skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// `--cache-to` specs (buildx's CSV form, checked).
    #[serde(rename = "cache-to", skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    /// buildx's `secret` specs (`id=ID,src=FILE`, `id=ID,env=VARIABLE`): where each secret
    /// comes from, never its value; a relative file is relative to the bake file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// `--ssh` specs (`default`, `ID=SOCKET_OR_KEY`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<String>,
}

pub const DEFAULT_CONTEXT: &str = ".";
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

// --- the strict pass: typed values that check themselves ---------------------------------------

/// What the strict pass checks against, set for the duration of one parse.
struct Context {
    variables: BTreeMap<String, String>,
    targets: BTreeSet<String>,
    groups: BTreeSet<String>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

fn with_context<R>(f: impl FnOnce(&Context) -> R) -> R {
    CONTEXT.with(|c| f(c.borrow().as_ref().expect("a bake file is being parsed")))
}

/// What is wrong with one value of a bake file or of a `--set` (serde adds the line and key).
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("unterminated `${{` in `{0}`")]
    Unterminated(String),
    #[error("invalid variable name `{name}` in `{text}`")]
    BadReference { name: String, text: String },
    #[error("unknown variable `{0}` (declare it under `variables`)")]
    UnknownVariable(String),
    #[error(transparent)]
    Platform(#[from] crate::platform::PlatformError),
    #[error("unknown platform `{0}` (`manifold platforms` lists the known ones)")]
    UnknownPlatform(String),
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("a tag cannot name a digest: `{0}`")]
    TagWithDigest(String),
    #[error(transparent)]
    Entitlement(#[from] crate::dockerfile::plan::UnknownEntitlement),
    #[error(transparent)]
    Cache(#[from] crate::builder::cache_remote::SpecError),
    #[error(transparent)]
    Secret(#[from] crate::builder::secrets::SecretError),
    #[error("invalid variable name `{0}` (letters, digits and `_`, not starting with a digit)")]
    VariableName(String),
    #[error("invalid target name `{0}` (letters, digits, `_`, `-` and `.`)")]
    TargetName(String),
    #[error("invalid group name `{0}` (letters, digits, `_`, `-` and `.`)")]
    GroupName(String),
    #[error("`{0}` is both a target and a group")]
    TargetAndGroup(String),
    #[error("unknown target or group `{0}`")]
    UnknownMember(String),
    #[error("invalid key `{0}`")]
    Key(String),
    /// `--set` without `TARGET.KEY=VALUE`'s shape.
    #[error("expected `TARGET.KEY=VALUE`")]
    SetShape,
    #[error("invalid target pattern `{pattern}`: {error}")]
    Pattern {
        pattern: String,
        error: glob::PatternError,
    },
    #[error("no target matches `{0}`")]
    NoMatch(String),
    #[error("unknown key `{0}` (one of {keys})", keys = super::plan::SET_KEYS)]
    UnknownKey(String),
}

/// Replace `${NAME}` with the variable's value; `$${` is a literal `${`.
pub fn substitute(s: &str, variables: &BTreeMap<String, String>) -> Result<String, ValueError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| ValueError::Unterminated(s.to_string()))?;
            let name = &tail[..end];
            if !valid_variable(name) {
                return Err(ValueError::BadReference {
                    name: name.to_string(),
                    text: s.to_string(),
                });
            }
            let value = variables
                .get(name)
                .ok_or_else(|| ValueError::UnknownVariable(name.to_string()))?;
            out.push_str(value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Reads a scalar as text — strings, integers and booleans — and checks it with `F` while the
/// deserializer still knows where the value is, so that the error carries its line and key.
/// Floats are refused: YAML reads `1.20` as the number 1.2, which is never what a version meant.
struct Checked<F>(F);

impl<F: FnOnce(String) -> Result<String, ValueError>> Visitor<'_> for Checked<F> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Err(E::custom(format!(
            "the number {v} is ambiguous here: write it in quotes (`\"1.20\"` for 1.20)"
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom("a value is missing"))
    }
}

fn checked<'de, D: Deserializer<'de>>(
    d: D,
    check: impl FnOnce(String) -> Result<String, ValueError>,
) -> Result<String, D::Error> {
    d.deserialize_any(Checked(check))
}

fn substituted(raw: String) -> Result<String, ValueError> {
    with_context(|c| substitute(&raw, &c.variables))
}

/// A scalar as it is written (variables' defaults).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, Ok).map(Scalar)
    }
}

/// A string with the variables substituted.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, substituted).map(Text)
    }
}

/// A platform (a known one: a typo is not a new architecture).
struct PlatformText(String);

impl<'de> Deserialize<'de> for PlatformText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| check_platform(&substituted(s)?)).map(PlatformText)
    }
}

pub fn check_platform(text: &str) -> Result<String, ValueError> {
    let p = Platform::parse(text.trim())?;
    if !p.is_known() {
        return Err(ValueError::UnknownPlatform(text.to_string()));
    }
    Ok(text.trim().to_string())
}

/// A tag to give the image: a reference without digest.
struct TagText(String);

impl<'de> Deserialize<'de> for TagText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| check_tag(&substituted(s)?)).map(TagText)
    }
}

pub fn check_tag(text: &str) -> Result<String, ValueError> {
    let r = Reference::parse(text)?;
    if r.digest().is_some() {
        return Err(ValueError::TagWithDigest(text.to_string()));
    }
    Ok(text.to_string())
}

/// An entitlement a target asks for.
struct EntitlementText(String);

impl<'de> Deserialize<'de> for EntitlementText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| check_entitlement(&substituted(s)?)).map(EntitlementText)
    }
}

pub fn check_entitlement(text: &str) -> Result<String, ValueError> {
    Ok(text.trim().parse::<Entitlement>()?.to_string())
}

/// A `cache-from` (`TO` false) or `cache-to` entry: buildx's CSV string
/// (`type=registry,ref=…`) or a mapping of the same keys; kept as the CSV string.
struct CacheSpec<const TO: bool>(String);

/// Check a cache spec; the error names the bad key.
pub fn check_cache_spec(text: &str, to: bool) -> Result<String, ValueError> {
    if to {
        CacheTo::parse(text)?;
    } else {
        CacheFrom::parse(text)?;
    }
    Ok(text.trim().to_string())
}

/// `key=value` pairs as one CSV line (quoted where a field needs it).
fn csv_line(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let field = format!("{k}={v}");
            if field.contains(',') || field.contains('"') {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

struct CacheSpecVisitor<const TO: bool>;

impl<'de, const TO: bool> Visitor<'de> for CacheSpecVisitor<TO> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a cache spec: `type=registry,ref=REF` or a mapping of the same keys")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        let text = substituted(v.to_string()).map_err(E::custom)?;
        check_cache_spec(&text, TO).map_err(E::custom)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut pairs = Vec::new();
        while let Some(k) = map.next_key::<Key>()? {
            let v: Text = map.next_value()?;
            pairs.push((k.0, v.0));
        }
        let line = csv_line(&pairs);
        check_cache_spec(&line, TO).map_err(de::Error::custom)
    }
}

impl<'de, const TO: bool> Deserialize<'de> for CacheSpec<TO> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CacheSpecVisitor::<TO>).map(CacheSpec)
    }
}

/// A `--secret` spec.
struct SecretText(String);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| check_secret(&substituted(s)?)).map(SecretText)
    }
}

pub fn check_secret(text: &str) -> Result<String, ValueError> {
    text.parse::<crate::builder::secrets::SecretSpec>()?;
    Ok(text.to_string())
}

/// An `--ssh` spec.
struct SshText(String);

impl<'de> Deserialize<'de> for SshText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| check_ssh(&substituted(s)?)).map(SshText)
    }
}

pub fn check_ssh(text: &str) -> Result<String, ValueError> {
    text.parse::<crate::builder::secrets::SshSpec>()?;
    Ok(text.to_string())
}

/// A key of `variables`.
struct VariableName(String);

impl<'de> Deserialize<'de> for VariableName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |name| {
            if valid_variable(&name) {
                Ok(name)
            } else {
                Err(ValueError::VariableName(name))
            }
        })
        .map(VariableName)
    }
}

/// A target's name (a key of `targets`).
struct TargetName(String);

impl<'de> Deserialize<'de> for TargetName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |name| {
            if valid_name(&name) {
                Ok(name)
            } else {
                Err(ValueError::TargetName(name))
            }
        })
        .map(TargetName)
    }
}

/// A group's name (a key of `groups`): not also a target's.
struct GroupName(String);

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |name| {
            if !valid_name(&name) {
                Err(ValueError::GroupName(name))
            } else if with_context(|c| c.targets.contains(&name)) {
                Err(ValueError::TargetAndGroup(name))
            } else {
                Ok(name)
            }
        })
        .map(GroupName)
    }
}

/// A member of a group: a target or another group.
struct Member(String);

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |name| {
            if with_context(|c| c.targets.contains(&name) || c.groups.contains(&name)) {
                Ok(name)
            } else {
                Err(ValueError::UnknownMember(name))
            }
        })
        .map(Member)
    }
}

/// A key of `args` or `labels`.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |key| {
            if key.is_empty() || key.contains('=') || key.chars().any(char::is_whitespace) {
                Err(ValueError::Key(key))
            } else {
                Ok(key)
            }
        })
        .map(Key)
    }
}

macro_rules! ord_by_string {
    ($($t:ty),*) => {$(
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool { self.0 == other.0 }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> { Some(self.cmp(other)) }
        }
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering { self.0.cmp(&other.0) }
        }
    )*};
}
ord_by_string!(TargetName, GroupName, VariableName, Key);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Checked in the loose pass; read here so that they are not an unknown key.
    #[serde(default)]
    #[allow(dead_code)]
    variables: Option<BTreeMap<String, Option<Scalar>>>,
    #[serde(default)]
    targets: BTreeMap<TargetName, RawTarget>,
    #[serde(default)]
    groups: BTreeMap<GroupName, Vec<Member>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    context: Option<Text>,
    dockerfile: Option<Text>,
    #[serde(default)]
    platforms: Vec<PlatformText>,
    #[serde(default)]
    args: BTreeMap<Key, Text>,
    #[serde(default)]
    labels: BTreeMap<Key, Text>,
    #[serde(default)]
    tags: Vec<TagText>,
    target: Option<Text>,
    #[serde(default)]
    entitlements: Vec<EntitlementText>,
    #[serde(default, rename = "cache-from")]
    cache_from: Vec<CacheSpec<false>>,
    #[serde(default, rename = "cache-to")]
    cache_to: Vec<CacheSpec<true>>,
    #[serde(default)]
    secrets: Vec<SecretText>,
    #[serde(default)]
    ssh: Vec<SshText>,
}

// --- parsing -----------------------------------------------------------------------------------

/// Where a YAML error is, as `file:line:column`, and what it says (with the key's path).
fn yaml_error(file: &str, e: &serde_yaml::Error) -> BakeError {
    let text = e.to_string();
    // The message ends with ` at line L column C`, which the location says better.
    let message = match text.rfind(" at line ") {
        Some(i) if e.location().is_some() => text[..i].to_string(),
        _ => text,
    };
    // `targets.api: unknown field …`: the key in backticks.
    let message = match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => {
            format!("`{path}`: {rest}")
        }
        _ => message,
    };
    BakeError::Syntax {
        file: file.to_string(),
        line: e.location().map_or(0, |l| l.line()),
        column: e.location().map_or(0, |l| l.column()),
        message,
    }
}

/// Parse a bake file. `env` gives the environment's value of a variable (it overrides the
/// default); `file` names it in messages.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BakeFile, BakeError> {
    // The loose pass: variables, and the names of targets and groups.
    let loose: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_error(file, &e))?;
    let loose = match loose {
        serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
        v => v,
    };
    if !loose.is_mapping() {
        return Err(BakeError::Syntax {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "a bake file is a mapping with `variables`, `targets` and `groups`".into(),
        });
    }
    let keys = |section: &str| -> BTreeSet<String> {
        loose
            .get(section)
            .and_then(|v| v.as_mapping())
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The variables first: everything else may use them. Other keys are ignored here.
    #[derive(Deserialize)]
    struct VariablesOnly {
        #[serde(default)]
        variables: BTreeMap<VariableName, Option<Scalar>>,
    }
    let declared: VariablesOnly = serde_yaml::from_str(text).map_err(|e| yaml_error(file, &e))?;
    let variables: BTreeMap<String, String> = declared
        .variables
        .into_iter()
        .map(|(name, default)| {
            let value = env(&name.0)
                .or_else(|| default.map(|d| d.0))
                .unwrap_or_default();
            (name.0, value)
        })
        .collect();
    let context = Context {
        variables: variables.clone(),
        targets: keys("targets"),
        groups: keys("groups"),
    };
    CONTEXT.with(|c| *c.borrow_mut() = Some(context));
    let strict = serde_yaml::from_str::<RawFile>(text);
    CONTEXT.with(|c| *c.borrow_mut() = None);
    let raw = strict.map_err(|e| yaml_error(file, &e))?;
    let targets = raw
        .targets
        .into_iter()
        .map(|(name, t)| {
            (
                name.0,
                Target {
                    context: t.context.map_or_else(|| DEFAULT_CONTEXT.into(), |c| c.0),
                    dockerfile: t
                        .dockerfile
                        .map_or_else(|| DEFAULT_DOCKERFILE.into(), |d| d.0),
                    platforms: t.platforms.into_iter().map(|p| p.0).collect(),
                    args: t.args.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
                    labels: t.labels.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
                    tags: t.tags.into_iter().map(|t| t.0).collect(),
                    target: t.target.map(|t| t.0).filter(|t| !t.is_empty()),
                    entitlements: t.entitlements.into_iter().map(|e| e.0).collect(),
                    cache_from: t.cache_from.into_iter().map(|c| c.0).collect(),
                    cache_to: t.cache_to.into_iter().map(|c| c.0).collect(),
                    secrets: t.secrets.into_iter().map(|s| s.0).collect(),
                    ssh: t.ssh.into_iter().map(|s| s.0).collect(),
                },
            )
        })
        .collect();
    let groups = raw
        .groups
        .into_iter()
        .map(|(name, members)| (name.0, members.into_iter().map(|m| m.0).collect()))
        .collect();
    Ok(BakeFile {
        variables,
        targets,
        groups,
    })
}
