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

/// Replace `${NAME}` with the variable's value; `$${` is a literal `${`.
pub fn substitute(s: &str, variables: &BTreeMap<String, String>) -> Result<String, String> {
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
                .ok_or_else(|| format!("unterminated `${{` in `{s}`"))?;
            let name = &tail[..end];
            if !valid_variable(name) {
                return Err(format!("invalid variable name `{name}` in `{s}`"));
            }
            let value = variables.get(name).ok_or_else(|| {
                format!("unknown variable `{name}` (declare it under `variables`)")
            })?;
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

impl<F: FnOnce(String) -> Result<String, String>> Visitor<'_> for Checked<F> {
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
    check: impl FnOnce(String) -> Result<String, String>,
) -> Result<String, D::Error> {
    d.deserialize_any(Checked(check))
}

fn substituted(raw: String) -> Result<String, String> {
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

pub fn check_platform(text: &str) -> Result<String, String> {
    let p = Platform::parse(text.trim()).map_err(|e| e.to_string())?;
    if !p.is_known() {
        return Err(format!(
            "unknown platform `{text}` (`manifold platforms` lists the known ones)"
        ));
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

pub fn check_tag(text: &str) -> Result<String, String> {
    let r = Reference::parse(text).map_err(|e| e.to_string())?;
    if r.digest().is_some() {
        return Err(format!("a tag cannot name a digest: `{text}`"));
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

pub fn check_entitlement(text: &str) -> Result<String, String> {
    text.trim()
        .parse::<Entitlement>()
        .map(|e| e.to_string())
        .map_err(|e| e.to_string())
}

/// A `--secret` spec.
struct SecretText(String);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| check_secret(&substituted(s)?)).map(SecretText)
    }
}

pub fn check_secret(text: &str) -> Result<String, String> {
    text.parse::<crate::builder::secrets::SecretSpec>()
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// An `--ssh` spec.
struct SshText(String);

impl<'de> Deserialize<'de> for SshText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| check_ssh(&substituted(s)?)).map(SshText)
    }
}

pub fn check_ssh(text: &str) -> Result<String, String> {
    text.parse::<crate::builder::secrets::SshSpec>()
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// A key of `variables`.
struct VariableName(String);

impl<'de> Deserialize<'de> for VariableName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |name| {
            if valid_variable(&name) {
                Ok(name)
            } else {
                Err(format!(
                    "invalid variable name `{name}` (letters, digits and `_`, not starting with a digit)"
                ))
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
                Err(format!(
                    "invalid target name `{name}` (letters, digits, `_`, `-` and `.`)"
                ))
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
                Err(format!(
                    "invalid group name `{name}` (letters, digits, `_`, `-` and `.`)"
                ))
            } else if with_context(|c| c.targets.contains(&name)) {
                Err(format!("`{name}` is both a target and a group"))
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
                Err(format!("unknown target or group `{name}`"))
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
                Err(format!("invalid key `{key}`"))
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
