//! Dockerfile instructions applied to an image config, as `import -c` and `commit -c` take
//! them: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL.

use super::ImageConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("empty change: expected a Dockerfile instruction such as `CMD [\"sh\"]`")]
    Empty,
    #[error(
        "`{0}` cannot be applied as a change: supported are CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL"
    )]
    Unsupported(String),
    #[error("`{instruction}` needs an argument")]
    MissingArgument { instruction: String },
    #[error("invalid change `{change}`: {why}")]
    Invalid { change: String, why: ChangeSyntax },
}

/// What is wrong in a change's arguments (and in an EXPOSE port spec, which the Dockerfile
/// builder reads the same way).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeSyntax {
    #[error("not a JSON array of strings: {0}")]
    NotJsonArray(String),
    #[error("unknown protocol `{0}` (tcp, udp or sctp)")]
    UnknownProtocol(String),
    #[error("invalid port `{0}`")]
    InvalidPort(String),
    #[error("invalid port range `{0}`")]
    InvalidPortRange(String),
    #[error("expected KEY=VALUE or KEY VALUE")]
    ExpectedPair,
    #[error("`{0}` has an empty key")]
    EmptyKey(String),
    #[error("`{0}` is not KEY=VALUE")]
    NotPair(String),
    #[error("a trailing backslash")]
    TrailingBackslash,
    #[error("an unterminated double quote")]
    UnterminatedDouble,
    #[error("an unterminated single quote")]
    UnterminatedSingle,
}

/// Apply one instruction (`CMD ["sh"]`, `ENV A=1 B="x y"`, `EXPOSE 80/tcp`, …) to `config`.
pub fn apply(config: &mut ImageConfig, change: &str) -> Result<(), ChangeError> {
    let change = change.trim();
    if change.is_empty() {
        return Err(ChangeError::Empty);
    }
    let (keyword, rest) = match change.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (change, ""),
    };
    let keyword = keyword.to_ascii_uppercase();
    if rest.is_empty() {
        return Err(ChangeError::MissingArgument {
            instruction: keyword,
        });
    }
    let invalid = |why: ChangeSyntax| ChangeError::Invalid {
        change: change.to_string(),
        why,
    };
    // Edit a copy, so that a failing change leaves the config as it was.
    let mut run_config = config.config.clone().unwrap_or_default();
    let rc = &mut run_config;
    match keyword.as_str() {
        "CMD" => rc.cmd = Some(command(rest).map_err(invalid)?),
        "ENTRYPOINT" => rc.entrypoint = Some(command(rest).map_err(invalid)?),
        "ENV" => {
            for (k, v) in pairs(rest).map_err(invalid)? {
                rc.set_env(&k, &v);
            }
        }
        "LABEL" => {
            let labels = rc.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs(rest).map_err(invalid)? {
                labels.insert(k, v);
            }
        }
        "WORKDIR" => {
            let dir = words(rest).map_err(invalid)?.join(" ");
            rc.working_dir = Some(if dir.starts_with('/') {
                dir
            } else {
                let base = rc.working_dir.clone().unwrap_or_else(|| "/".into());
                format!("{}/{dir}", base.trim_end_matches('/'))
            });
        }
        "USER" => rc.user = Some(rest.to_string()),
        "EXPOSE" => {
            let ports = rc.exposed_ports.get_or_insert_with(Default::default);
            for p in words(rest).map_err(invalid)? {
                for port in expose(&p).map_err(invalid)? {
                    ports.insert(port, serde_json::json!({}));
                }
            }
        }
        "VOLUME" => {
            let list = if rest.starts_with('[') {
                json_array(rest).map_err(invalid)?
            } else {
                words(rest).map_err(invalid)?
            };
            let volumes = rc.volumes.get_or_insert_with(Default::default);
            for v in list {
                volumes.insert(v, serde_json::json!({}));
            }
        }
        "STOPSIGNAL" => rc.stop_signal = Some(rest.to_string()),
        _ => return Err(ChangeError::Unsupported(keyword)),
    }
    config.config = Some(run_config);
    Ok(())
}

/// Exec form (a JSON array) or shell form (`/bin/sh -c`).
fn command(rest: &str) -> Result<Vec<String>, ChangeSyntax> {
    if rest.starts_with('[') {
        json_array(rest)
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
    }
}

fn json_array(rest: &str) -> Result<Vec<String>, ChangeSyntax> {
    serde_json::from_str(rest).map_err(|e| ChangeSyntax::NotJsonArray(e.to_string()))
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, `80/udp`, `8000/tcp` … (EXPOSE's port specs,
/// shared with the Dockerfile builder).
pub fn expose(spec: &str) -> Result<Vec<String>, ChangeSyntax> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(ChangeSyntax::UnknownProtocol(proto));
    }
    let num = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ChangeSyntax::InvalidPort(s.to_string()))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(ports)?, num(ports)?),
    };
    if lo > hi {
        return Err(ChangeSyntax::InvalidPortRange(ports.to_string()));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// `K=V K2="a b"` (or the legacy `K rest of line`) → pairs.
fn pairs(rest: &str) -> Result<Vec<(String, String)>, ChangeSyntax> {
    let ws = words(rest)?;
    if !ws.first().is_some_and(|w| w.contains('=')) {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or(ChangeSyntax::ExpectedPair)?;
        return Ok(vec![(k.to_string(), words(v.trim())?.join(" "))]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(ChangeSyntax::EmptyKey(w.clone())),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(ChangeSyntax::NotPair(w.clone())),
        })
        .collect()
}

/// Split on whitespace, honouring single and double quotes and backslash escapes.
fn words(s: &str) -> Result<Vec<String>, ChangeSyntax> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next().ok_or(ChangeSyntax::TrailingBackslash)?);
                in_word = true;
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next().ok_or(ChangeSyntax::UnterminatedDouble)? {
                        '"' => break,
                        '\\' => cur.push(chars.next().ok_or(ChangeSyntax::TrailingBackslash)?),
                        c => cur.push(c),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next().ok_or(ChangeSyntax::UnterminatedSingle)? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> ImageConfig {
        let mut c = ImageConfig::default();
        for ch in changes {
            apply(&mut c, ch).unwrap();
        }
        c
    }

    #[test]
    fn exec_and_shell_forms() {
        let c = applied(&[r#"CMD ["sh", "-c", "echo hi"]"#, "ENTRYPOINT echo hello"]);
        let rc = c.config.unwrap();
        assert_eq!(rc.cmd.unwrap(), vec!["sh", "-c", "echo hi"]);
        assert_eq!(rc.entrypoint.unwrap(), vec!["/bin/sh", "-c", "echo hello"]);
    }

    #[test]
    fn env_labels_workdir_user_expose() {
        let c = applied(&[
            r#"ENV A=1 B="two words""#,
            "env LEGACY some value",
            r#"LABEL org.example.a=x "b c"=d"#,
            "WORKDIR /app",
            "WORKDIR sub",
            "USER 1000:1000",
            "EXPOSE 80 53/udp 8000-8001",
        ]);
        let rc = c.config.unwrap();
        assert_eq!(
            rc.env.unwrap(),
            vec!["A=1", "B=two words", "LEGACY=some value"]
        );
        let labels = rc.labels.unwrap();
        assert_eq!(labels["org.example.a"], "x");
        assert_eq!(labels["b c"], "d");
        assert_eq!(rc.working_dir.unwrap(), "/app/sub");
        assert_eq!(rc.user.unwrap(), "1000:1000");
        let ports: Vec<_> = rc.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    }

    #[test]
    fn bad_changes_are_named() {
        let mut c = ImageConfig::default();
        assert_eq!(
            apply(&mut c, "RUN make"),
            Err(ChangeError::Unsupported("RUN".into()))
        );
        assert!(matches!(
            apply(&mut c, "CMD"),
            Err(ChangeError::MissingArgument { .. })
        ));
        assert!(matches!(
            apply(&mut c, "CMD [sh"),
            Err(ChangeError::Invalid { .. })
        ));
        assert!(matches!(
            apply(&mut c, "EXPOSE 99999"),
            Err(ChangeError::Invalid { .. })
        ));
        assert!(matches!(
            apply(&mut c, "EXPOSE 80/xyz"),
            Err(ChangeError::Invalid { .. })
        ));
        assert!(matches!(
            apply(&mut c, r#"ENV A="x"#),
            Err(ChangeError::Invalid { .. })
        ));
        assert_eq!(apply(&mut c, "  "), Err(ChangeError::Empty));
        assert_eq!(c, ImageConfig::default());
    }
}
