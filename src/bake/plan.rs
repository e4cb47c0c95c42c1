//! Which targets to build (named targets and groups, the `default` group, else every target),
//! `--set TARGET.KEY=VALUE` overrides, and the resolved file as JSON for `--print`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::BakeError;
use super::file::{
    BakeFile, ValueError, check_cache_spec, check_entitlement, check_platform, check_secret,
    check_ssh, check_tag,
};

/// The targets to build, in order, and the groups that named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub targets: Vec<String>,
    /// Each group used, with every target it includes (nested groups expanded).
    pub groups: BTreeMap<String, Vec<String>>,
}

/// Choose targets: each of `names` is a target or a group; none means the `default` group, or
/// every target when there is none.
pub fn select(file: &BakeFile, names: &[String]) -> Result<Selection, BakeError> {
    if file.targets.is_empty() {
        return Err(BakeError::Empty);
    }
    let mut selection = Selection {
        targets: Vec::new(),
        groups: BTreeMap::new(),
    };
    let implicit = names.is_empty();
    let names: Vec<String> = if !implicit {
        names.to_vec()
    } else if file.groups.contains_key("default") {
        vec!["default".to_string()]
    } else {
        file.targets.keys().cloned().collect()
    };
    for name in &names {
        if file.targets.contains_key(name) {
            push_unique(&mut selection.targets, name);
        } else if file.groups.contains_key(name) {
            let mut expanded = Vec::new();
            expand(file, name, &mut Vec::new(), &mut expanded)?;
            for t in &expanded {
                push_unique(&mut selection.targets, t);
            }
            selection.groups.insert(name.clone(), expanded);
        } else {
            return Err(BakeError::UnknownTarget(name.clone()));
        }
    }
    Ok(selection)
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn expand(
    file: &BakeFile,
    group: &str,
    stack: &mut Vec<String>,
    out: &mut Vec<String>,
) -> Result<(), BakeError> {
    if stack.iter().any(|g| g == group) {
        stack.push(group.to_string());
        return Err(BakeError::Cycle(stack.join(" → ")));
    }
    stack.push(group.to_string());
    for member in &file.groups[group] {
        if file.targets.contains_key(member) {
            push_unique(out, member);
        } else {
            expand(file, member, stack, out)?;
        }
    }
    stack.pop();
    Ok(())
}

pub(super) const SET_KEYS: &str = "context, dockerfile, target, platforms, tags, entitlements, cache-from, cache-to, secrets, ssh, args.NAME, labels.NAME";

/// Apply `TARGET.KEY=VALUE` to the targets TARGET matches (a name or a glob such as `*`).
/// Lists (platforms, tags) are comma separated and replace the file's.
pub fn apply_set(file: &mut BakeFile, set: &str) -> Result<(), BakeError> {
    let err = |why: ValueError| BakeError::Set {
        set: set.to_string(),
        why,
    };
    let (lhs, value) = set
        .split_once('=')
        .ok_or_else(|| err(ValueError::SetShape))?;
    let (pattern, key) = lhs
        .split_once('.')
        .ok_or_else(|| err(ValueError::SetShape))?;
    let glob = glob::Pattern::new(pattern).map_err(|error| {
        err(ValueError::Pattern {
            pattern: pattern.to_string(),
            error,
        })
    })?;
    let names: Vec<String> = file
        .targets
        .keys()
        .filter(|n| glob.matches(n))
        .cloned()
        .collect();
    if names.is_empty() {
        return Err(err(ValueError::NoMatch(pattern.to_string())));
    }
    let list = |checker: fn(&str) -> Result<String, ValueError>| -> Result<Vec<String>, BakeError> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| checker(s).map_err(&err))
            .collect()
    };
    for name in names {
        let t = file.targets.get_mut(&name).expect("a matched target");
        match key {
            "context" => t.context = value.to_string(),
            "dockerfile" => t.dockerfile = value.to_string(),
            "target" => t.target = Some(value.to_string()).filter(|v| !v.is_empty()),
            "platforms" | "platform" => t.platforms = list(check_platform)?,
            "tags" | "tag" => t.tags = list(check_tag)?,
            "entitlements" => t.entitlements = list(check_entitlement)?,
            // One spec (its commas are its own), replacing the file's list.
            "cache-from" | "cache-to" => {
                let to = key == "cache-to";
                let specs = match value.trim() {
                    "" => Vec::new(),
                    v => vec![check_cache_spec(v, to).map_err(err)?],
                };
                if to {
                    t.cache_to = specs;
                } else {
                    t.cache_from = specs;
                }
            }
            // One spec each: their own commas are theirs.
            "secrets" | "secret" => t.secrets = vec![check_secret(value).map_err(&err)?],
            "ssh" => t.ssh = vec![check_ssh(value).map_err(&err)?],
            _ => match key.split_once('.') {
                Some(("args", k)) if !k.is_empty() => {
                    t.args.insert(k.to_string(), value.to_string());
                }
                Some(("labels", k)) if !k.is_empty() => {
                    t.labels.insert(k.to_string(), value.to_string());
                }
                _ => return Err(err(ValueError::UnknownKey(key.to_string()))),
            },
        }
    }
    Ok(())
}

/// The resolved file for `--print`: the groups used and the chosen targets, as buildx prints
/// them.
pub fn print(file: &BakeFile, selection: &Selection) -> Value {
    let groups: serde_json::Map<String, Value> = selection
        .groups
        .iter()
        .map(|(name, targets)| (name.clone(), json!({ "targets": targets })))
        .collect();
    let targets: serde_json::Map<String, Value> = selection
        .targets
        .iter()
        .map(|name| {
            (
                name.clone(),
                serde_json::to_value(&file.targets[name]).expect("targets serialise"),
            )
        })
        .collect();
    let mut out = serde_json::Map::new();
    if !groups.is_empty() {
        out.insert("group".into(), Value::Object(groups));
    }
    out.insert("target".into(), Value::Object(targets));
    Value::Object(out)
}
