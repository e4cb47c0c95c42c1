//! SLSA v1 provenance (`https://slsa.dev/provenance/v1`) of one platform's image: what was
//! asked for (external parameters: the Dockerfile, target, platform, build args, labels, the
//! IDs of secrets and SSH agents — never their values), what was used (resolved
//! dependencies: the Dockerfile and context by digest, every base and `COPY --from` image by
//! manifest digest, every ADD URL by content), who built it and when; in `max` mode, the steps
//! too.
//!
//! Values that must never be recorded (secrets) are given in `Input::never_recorded`: each
//! is scrubbed from the serialised statement wherever it would appear (a build arg that holds
//! the same value, a URL that embeds it).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::statement::{SLSA_PROVENANCE_V1, Statement};
use crate::oci::Digest;

/// The build type this provenance describes (SLSA's `buildType`).
pub const BUILD_TYPE: &str = "https://github.com/manifold/manifold/build/dockerfile@v1";
/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// How much is recorded (BuildKit's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Parameters and dependencies.
    #[default]
    Min,
    /// Also the build steps.
    Max,
}

/// A provenance mode other than `min` and `max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provenance mode `{0}`: use `min` or `max`")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Mode, UnknownMode> {
        match s {
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(UnknownMode(other.to_string())),
        }
    }
}

/// Something the build used, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// `pkg:docker/busybox@1?platform=linux%2Famd64`, a URL, or a file's name.
    pub uri: String,
    pub digest: Digest,
    /// A short name for people (`Dockerfile`, `context`, the image as written).
    pub name: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// One executed instruction (max mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub stage: String,
    pub platform: String,
    /// The Dockerfile line.
    pub line: usize,
    /// As the user wrote it (build args and secrets not expanded).
    pub instruction: String,
}

/// What one platform's provenance says.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The subject's name (the image's purl, or `_`).
    pub name: String,
    /// The platform's image manifest.
    pub subject: Option<Digest>,
    pub mode: Mode,
    /// The Dockerfile's path as given, and its content's digest.
    pub dockerfile: Option<(String, Digest)>,
    /// The context (`.` or a path, `-` for a tarball) and the digest of what the build saw of it.
    pub context: Option<(String, Digest)>,
    pub target: Option<String>,
    pub platform: String,
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// IDs of secrets and SSH agents offered to the build (never their values).
    pub secrets: Vec<String>,
    pub ssh: Vec<String>,
    /// Values that must never appear in the statement: scrubbed wherever they would.
    pub never_recorded: Vec<String>,
    pub dependencies: Vec<Dependency>,
    pub steps: Vec<Step>,
    pub builder_platform: String,
    pub source_date_epoch: Option<u64>,
    pub invocation_id: String,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
}

fn digest_map(d: &Digest) -> Value {
    json!({ d.algorithm().name(): d.hex() })
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The provenance predicate of `input`.
pub fn predicate(input: &Input) -> Value {
    let mut request = Map::new();
    request.insert("frontend".into(), json!("dockerfile"));
    request.insert("platform".into(), json!(input.platform));
    if let Some(t) = &input.target {
        request.insert("target".into(), json!(t));
    }
    request.insert("args".into(), json!(input.args));
    if !input.labels.is_empty() {
        request.insert("labels".into(), json!(input.labels));
    }
    if !input.secrets.is_empty() {
        let ids: Vec<Value> = input.secrets.iter().map(|id| json!({"id": id})).collect();
        request.insert("secrets".into(), Value::Array(ids));
    }
    if !input.ssh.is_empty() {
        let ids: Vec<Value> = input.ssh.iter().map(|id| json!({"id": id})).collect();
        request.insert("ssh".into(), Value::Array(ids));
    }
    let mut external = Map::new();
    if let Some((path, digest)) = &input.dockerfile {
        external.insert(
            "configSource".into(),
            json!({"path": path, "digest": digest_map(digest)}),
        );
    }
    if let Some((uri, _)) = &input.context {
        external.insert("context".into(), json!(uri));
    }
    external.insert("request".into(), Value::Object(request));

    let mut resolved = Vec::new();
    if let Some((path, digest)) = &input.dockerfile {
        resolved.push(json!({"uri": path, "name": "Dockerfile", "digest": digest_map(digest)}));
    }
    if let Some((uri, digest)) = &input.context {
        resolved.push(json!({"uri": uri, "name": "context", "digest": digest_map(digest)}));
    }
    for d in &input.dependencies {
        let mut v = json!({"uri": d.uri, "digest": digest_map(&d.digest)});
        if let Some(n) = &d.name {
            v["name"] = json!(n);
        }
        if !d.annotations.is_empty() {
            v["annotations"] = json!(d.annotations);
        }
        resolved.push(v);
    }

    let mut internal = Map::new();
    internal.insert("builderPlatform".into(), json!(input.builder_platform));
    if let Some(e) = input.source_date_epoch {
        internal.insert("sourceDateEpoch".into(), json!(e));
    }
    if input.mode == Mode::Max {
        let steps: Vec<Value> = input
            .steps
            .iter()
            .map(|s| {
                json!({
                    "stage": s.stage,
                    "platform": s.platform,
                    "line": s.line,
                    "instruction": s.instruction,
                })
            })
            .collect();
        internal.insert("buildConfig".into(), json!({"steps": steps}));
    }

    let mut metadata = Map::new();
    metadata.insert("invocationId".into(), json!(input.invocation_id));
    if let Some(t) = &input.started {
        metadata.insert("startedOn".into(), json!(rfc3339(t)));
    }
    if let Some(t) = &input.finished {
        metadata.insert("finishedOn".into(), json!(rfc3339(t)));
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": internal,
            "resolvedDependencies": resolved,
        },
        "runDetails": {
            "builder": {
                "id": super::BUILDER_ID,
                "version": { "manifold": super::VERSION },
            },
            "metadata": metadata,
        },
    })
}

/// The provenance statement of `input`, with every value of `never_recorded` scrubbed.
pub fn statement(input: &Input) -> Statement {
    let subject = input
        .subject
        .clone()
        .expect("a provenance statement has a subject");
    let mut s = Statement::new(&input.name, &subject, SLSA_PROVENANCE_V1, predicate(input));
    let mut text = String::from_utf8(s.bytes).expect("serde_json writes UTF-8");
    for secret in input.never_recorded.iter().filter(|v| !v.is_empty()) {
        // The JSON form of the value, without its quotes: what the document would contain.
        let encoded = serde_json::to_string(secret).expect("strings serialise");
        let inner = &encoded[1..encoded.len() - 1];
        text = text.replace(inner, REDACTED);
    }
    s.bytes = text.into_bytes();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            name: "pkg:docker/app@1?platform=linux%2Famd64".into(),
            subject: Some(Digest::sha256_of(b"manifest")),
            dockerfile: Some(("Dockerfile".into(), Digest::sha256_of(b"FROM x"))),
            context: Some((".".into(), Digest::sha256_of(b"ctx"))),
            platform: "linux/amd64".into(),
            args: BTreeMap::from([("VERSION".into(), "1.2".into())]),
            secrets: vec!["npm-token".into()],
            dependencies: vec![Dependency {
                uri: "pkg:docker/busybox@1?platform=linux%2Famd64".into(),
                digest: Digest::sha256_of(b"base"),
                name: Some("busybox:1".into()),
                annotations: BTreeMap::new(),
            }],
            steps: vec![Step {
                stage: "stage-0".into(),
                platform: "linux/amd64".into(),
                line: 2,
                instruction: "RUN --mount=type=secret,id=npm-token make".into(),
            }],
            builder_platform: "linux/amd64".into(),
            invocation_id: "x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn min_records_parameters_and_dependencies_max_the_steps_too() {
        let i = input();
        let v: Value = serde_json::from_slice(&statement(&i).bytes).unwrap();
        let p = &v["predicate"];
        assert_eq!(v["predicateType"], SLSA_PROVENANCE_V1);
        assert_eq!(
            v["subject"][0]["digest"]["sha256"],
            i.subject.unwrap().hex()
        );
        let deps = p["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(deps.len(), 3, "Dockerfile, context, base: {deps:?}");
        assert_eq!(
            deps[2]["digest"]["sha256"],
            Digest::sha256_of(b"base").hex()
        );
        let request = &p["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(request["args"]["VERSION"], "1.2");
        assert_eq!(request["secrets"][0]["id"], "npm-token");
        assert_eq!(p["runDetails"]["builder"]["id"], super::super::BUILDER_ID);
        assert!(p["buildDefinition"]["internalParameters"]["buildConfig"].is_null());
        let max = Input {
            mode: Mode::Max,
            ..input()
        };
        let v: Value = serde_json::from_slice(&statement(&max).bytes).unwrap();
        let steps =
            &v["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["steps"];
        assert_eq!(steps[0]["line"], 2);
    }

    #[test]
    fn values_that_must_never_be_recorded_are_scrubbed() {
        let mut i = input();
        i.args.insert("LEAK".into(), "s3cr\"et".into());
        i.never_recorded = vec!["s3cr\"et".into(), String::new()];
        let s = statement(&i);
        let text = String::from_utf8(s.bytes.clone()).unwrap();
        assert!(!text.contains("s3cr"), "{text}");
        let v: Value = serde_json::from_slice(&s.bytes).unwrap();
        assert_eq!(
            v["predicate"]["buildDefinition"]["externalParameters"]["request"]["args"]["LEAK"],
            REDACTED
        );
    }
}
