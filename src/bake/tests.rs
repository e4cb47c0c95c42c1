use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::builder::report::NoReport;
use crate::builder::run::RunError;
use crate::builder::{BuildError, BuildReporter, StepError};
use crate::content::BoxError;
use crate::oci::{Descriptor, media_type};
use crate::reference::Reference;

const FILE: &str = r#"
variables:
  VERSION: "dev"
  REGISTRY: registry.example.com
  DEBUG: false
targets:
  api:
    context: ./api
    platforms: [linux/amd64, "linux/arm64"]
    args: { GO_VERSION: "1.23", RETRIES: 3 }
    labels: { org.opencontainers.image.version: "${VERSION}" }
    tags: ["${REGISTRY}/api:${VERSION}", "${REGISTRY}/api:latest"]
    target: runtime
  web:
    dockerfile: web.Dockerfile
    platforms: [armhf]
    args: { DEBUG: "${DEBUG}", LITERAL: "$${VERSION} costs $5" }
    tags: ["${REGISTRY}/web:${VERSION}"]
  tools: {}
groups:
  default: [api, web]
  all: [default, tools]
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parsed() -> BakeFile {
    parse("manifold.yaml", FILE, &no_env).unwrap()
}

fn err(text: &str) -> String {
    parse("manifold.yaml", text, &no_env)
        .unwrap_err()
        .to_string()
}

#[test]
fn variables_defaults_and_the_environment() {
    let f = parsed();
    let api = &f.targets["api"];
    assert_eq!(api.context, "./api");
    assert_eq!(api.dockerfile, "Dockerfile");
    assert_eq!(api.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(api.args["GO_VERSION"], "1.23");
    assert_eq!(api.args["RETRIES"], "3");
    assert_eq!(api.labels["org.opencontainers.image.version"], "dev");
    assert_eq!(
        api.tags,
        [
            "registry.example.com/api:dev",
            "registry.example.com/api:latest"
        ]
    );
    assert_eq!(api.target.as_deref(), Some("runtime"));
    let web = &f.targets["web"];
    assert_eq!(web.platforms, ["armhf"]);
    assert_eq!(web.args["DEBUG"], "false");
    assert_eq!(web.args["LITERAL"], "${VERSION} costs $5");
    assert_eq!(f.targets["tools"].context, ".");

    let env = |name: &str| (name == "VERSION").then(|| "1.2.3".to_string());
    let f = parse("manifold.yaml", FILE, &env).unwrap();
    assert_eq!(f.targets["api"].tags[0], "registry.example.com/api:1.2.3");
    assert_eq!(f.variables["VERSION"], "1.2.3");
    assert_eq!(f.variables["REGISTRY"], "registry.example.com");
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_line() {
    let e = err("targets:\n  api:\n    contxt: .\n");
    assert!(
        e.starts_with("manifold.yaml:3:5: `targets.api`: unknown field `contxt`, expected one of"),
        "{e}"
    );
    let e = err("targets: {}\nvariable: {}\n");
    assert!(
        e.starts_with("manifold.yaml:2:1: unknown field `variable`, expected one of `variables`, `targets`, `groups`"),
        "{e}"
    );
    let e = err("targets:\n  api:\n    platforms:\n      - linux/amd64\n      - linux/nonsense\n");
    assert_eq!(
        e,
        "manifold.yaml:5:9: `targets.api.platforms[1]`: unknown platform `linux/nonsense` (`manifold platforms` lists the known ones)"
    );
    let e = err("targets:\n  api:\n    tags: [\"Registry/API:1\"]\n");
    assert!(
        e.starts_with(
            "manifold.yaml:3:12: `targets.api.tags[0]`: invalid reference `Registry/API:1`"
        ),
        "{e}"
    );
    let e = err("targets:\n  api:\n    tags: [\"x:${NOPE}\"]\n");
    assert_eq!(
        e,
        "manifold.yaml:3:12: `targets.api.tags[0]`: unknown variable `NOPE` (declare it under `variables`)"
    );
    let e = err("targets:\n  api:\n    args:\n      GO: 1.20\n");
    assert!(
        e.starts_with(
            "manifold.yaml:4:11: `targets.api.args.GO`: the number 1.2 is ambiguous here"
        ),
        "{e}"
    );
    let e = err("targets:\n  api: {}\ngroups:\n  default: [api, ghost]\n");
    assert_eq!(
        e,
        "manifold.yaml:4:18: `groups.default[1]`: unknown target or group `ghost`"
    );
    let e = err("targets:\n  api: {}\ngroups:\n  api: [api]\n");
    assert!(e.contains("`api` is both a target and a group"), "{e}");
    let e = err("variables:\n  1BAD: x\ntargets: {}\n");
    assert!(
        e.starts_with("manifold.yaml:2:3: `variables`: invalid variable name `1BAD`"),
        "{e}"
    );
    let e = err("targets:\n  api:\n    platforms: linux/amd64\n");
    assert!(
        e.starts_with("manifold.yaml:3:16: `targets.api.platforms`: invalid type"),
        "{e}"
    );
    let e = err("targets: [\n");
    assert!(e.starts_with("manifold.yaml:"), "{e}");
    let e = err("- a\n- b\n");
    assert_eq!(
        e,
        "manifold.yaml:1:1: a bake file is a mapping with `variables`, `targets` and `groups`"
    );
}

#[test]
fn selection_by_name_group_default_or_all() {
    let f = parsed();
    let s = select(&f, &[]).unwrap();
    assert_eq!(s.targets, ["api", "web"]);
    assert_eq!(s.groups["default"], ["api", "web"]);
    let s = select(&f, &["all".into()]).unwrap();
    assert_eq!(s.targets, ["api", "web", "tools"]);
    let s = select(&f, &["tools".into(), "api".into(), "tools".into()]).unwrap();
    assert_eq!(s.targets, ["tools", "api"]);
    assert!(s.groups.is_empty());
    assert_eq!(
        select(&f, &["nope".into()]).unwrap_err().to_string(),
        "no target or group `nope` in the bake file"
    );
    // Without a default group: every target.
    let f2 = parse("f", "targets:\n  b: {}\n  a: {}\n", &no_env).unwrap();
    assert_eq!(select(&f2, &[]).unwrap().targets, ["a", "b"]);
    let cyclic = parse(
        "f",
        "targets:\n  t: {}\ngroups:\n  a: [b]\n  b: [t, a]\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(
        select(&cyclic, &["a".into()]).unwrap_err().to_string(),
        "group `a → b → a` includes itself"
    );
    let empty = parse("f", "", &no_env).unwrap();
    assert!(matches!(select(&empty, &[]), Err(BakeError::Empty)));
}

#[test]
fn set_overrides_keys_of_matching_targets() {
    let mut f = parsed();
    apply_set(&mut f, "api.platforms=linux/s390x, linux/arm/v6").unwrap();
    apply_set(&mut f, "*.args.GO_VERSION=1.22").unwrap();
    apply_set(&mut f, "web.tags=example.test/web:1").unwrap();
    apply_set(&mut f, "w*.labels.team=web").unwrap();
    apply_set(&mut f, "api.target=").unwrap();
    apply_set(&mut f, "tools.context=tools").unwrap();
    apply_set(&mut f, "tools.dockerfile=Containerfile").unwrap();
    apply_set(&mut f, "tools.entitlements=network.host").unwrap();
    assert_eq!(f.targets["tools"].entitlements, ["network.host"]);
    assert_eq!(f.targets["api"].platforms, ["linux/s390x", "linux/arm/v6"]);
    assert_eq!(f.targets["api"].target, None);
    for t in ["api", "web", "tools"] {
        assert_eq!(f.targets[t].args["GO_VERSION"], "1.22");
    }
    assert_eq!(f.targets["web"].tags, ["example.test/web:1"]);
    assert_eq!(f.targets["web"].labels["team"], "web");
    assert_eq!(f.targets["tools"].dockerfile, "Containerfile");
    for (set, message) in [
        (
            "api.color=red",
            "`--set api.color=red`: unknown key `color` (one of context, dockerfile, target, platforms, tags, entitlements, secrets, ssh, args.NAME, labels.NAME)",
        ),
        (
            "nope.context=.",
            "`--set nope.context=.`: no target matches `nope`",
        ),
        ("api", "`--set api`: expected `TARGET.KEY=VALUE`"),
        (
            "api.platforms=linux/nonsense",
            "`--set api.platforms=linux/nonsense`: unknown platform `linux/nonsense` (`manifold platforms` lists the known ones)",
        ),
        (
            "api.tags=x@sha256:abc",
            "`--set api.tags=x@sha256:abc`: invalid reference `x@sha256:abc`: bad digest",
        ),
        (
            "api.entitlements=security.insecure",
            "`--set api.entitlements=security.insecure`: unknown entitlement `security.insecure`: manifold knows `network.host`",
        ),
        (
            "api.secrets=id=a,bogus=b",
            "`--set api.secrets=id=a,bogus=b`: invalid --secret `id=a,bogus=b`: unknown key `bogus`: expected id, type, src or env",
        ),
    ] {
        assert_eq!(apply_set(&mut f, set).unwrap_err().to_string(), message);
    }
    apply_set(&mut f, "api.secrets=id=npm,src=./npmrc").unwrap();
    assert_eq!(f.targets["api"].secrets, ["id=npm,src=./npmrc"]);
}

#[test]
fn print_shows_the_resolved_targets_as_json() {
    let f = parsed();
    let s = select(&f, &[]).unwrap();
    assert_eq!(
        print(&f, &s),
        json!({
            "group": {"default": {"targets": ["api", "web"]}},
            "target": {
                "api": {
                    "context": "./api",
                    "dockerfile": "Dockerfile",
                    "platforms": ["linux/amd64", "linux/arm64"],
                    "args": {"GO_VERSION": "1.23", "RETRIES": "3"},
                    "labels": {"org.opencontainers.image.version": "dev"},
                    "tags": ["registry.example.com/api:dev", "registry.example.com/api:latest"],
                    "target": "runtime"
                },
                "web": {
                    "context": ".",
                    "dockerfile": "web.Dockerfile",
                    "platforms": ["armhf"],
                    "args": {"DEBUG": "false", "LITERAL": "${VERSION} costs $5"},
                    "tags": ["registry.example.com/web:dev"]
                }
            }
        })
    );
    let s = select(&f, &["tools".into()]).unwrap();
    assert_eq!(
        print(&f, &s),
        json!({"target": {"tools": {"context": ".", "dockerfile": "Dockerfile"}}})
    );
}

#[test]
fn requests_resolve_paths_and_need_tags_to_push() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("api")).unwrap();
    let f = parsed();
    let s = select(&f, &["api".into(), "tools".into()]).unwrap();
    let r = requests(&f, &s, dir.path(), false).unwrap();
    assert_eq!(r[0].context, dir.path().join("./api"));
    assert_eq!(r[0].dockerfile, dir.path().join("./api/Dockerfile"));
    assert_eq!(r[0].platforms.len(), 2);
    assert_eq!(r[0].tags[0].to_string(), "registry.example.com/api:dev");
    assert_eq!(
        requests(&f, &s, dir.path(), true).unwrap_err().to_string(),
        "target `tools` has no tags to push to"
    );
    let s = select(&f, &["web".into()]).unwrap();
    assert!(requests(&f, &s, &dir.path().join("nowhere"), false).is_err());
}

struct FakeBuilder {
    fail: Vec<&'static str>,
    built: Mutex<Vec<String>>,
}

impl TargetBuilder for FakeBuilder {
    fn build(
        &self,
        request: &BuildRequest,
        _: &dyn BuildReporter,
    ) -> Result<Descriptor, BuildError> {
        self.built.lock().unwrap().push(request.name.clone());
        if self.fail.contains(&request.name.as_str()) {
            return Err(BuildError::Step {
                file: "Dockerfile".into(),
                line: 2,
                platform: "linux/amd64 stage-0".into(),
                instruction: "RUN false".into(),
                source: Box::new(StepError::Run(RunError::Exit {
                    argv: "/bin/sh -c false".into(),
                    code: 1,
                })),
            });
        }
        Ok(Descriptor::of(
            media_type::OCI_INDEX,
            request.name.as_bytes(),
        ))
    }
}

#[derive(Default)]
struct FakePublisher {
    pushed: Mutex<Vec<String>>,
}

impl Publisher for FakePublisher {
    fn push(&self, _: &Descriptor, tag: &Reference) -> Result<(), BoxError> {
        self.pushed.lock().unwrap().push(tag.familiar());
        Ok(())
    }
}

fn request(name: &str, tags: &[&str]) -> BuildRequest {
    BuildRequest {
        name: name.into(),
        context: ".".into(),
        dockerfile: "Dockerfile".into(),
        platforms: Vec::new(),
        args: BTreeMap::new(),
        labels: BTreeMap::new(),
        tags: tags.iter().map(|t| Reference::parse(t).unwrap()).collect(),
        target: None,
        allow: Default::default(),
        secrets: Vec::new(),
        ssh: Vec::new(),
    }
}

/// Records what a bake reports.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl BakeReporter for Recorder {
    fn report(&self, event: &BakeEvent<'_>) {
        let line = match event {
            BakeEvent::Building { target } => format!("building {target}"),
            BakeEvent::Built { target, .. } => format!("built {target}"),
            BakeEvent::Failed { target } => format!("failed {target}"),
            BakeEvent::Pushing { target, tag } => format!("pushing {target} {}", tag.familiar()),
        };
        self.events.lock().unwrap().push(line);
    }

    fn target(&self, _: &str) -> Box<dyn BuildReporter + '_> {
        Box::new(NoReport)
    }
}

#[test]
fn nothing_is_pushed_unless_every_target_built() {
    let requests = vec![
        request("api", &["example.test/api:1", "example.test/api:latest"]),
        request("web", &["example.test/web:1"]),
        request("worker", &["example.test/worker:1"]),
    ];
    let builder = FakeBuilder {
        fail: vec!["web", "worker"],
        built: Mutex::new(Vec::new()),
    };
    let publisher = FakePublisher::default();
    let recorder = Recorder::default();
    let errors = execute(&requests, &builder, Some(&publisher), &recorder).unwrap_err();
    // Every target was tried (they build at once), nothing pushed.
    assert_eq!(builder.built.lock().unwrap().len(), 3);
    assert!(publisher.pushed.lock().unwrap().is_empty());
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "target `web` failed",
            "target `worker` failed",
            "2 of 3 targets failed (`web`, `worker`); nothing was pushed"
        ]
    );
    // Each target's error keeps its cause (not flattened to a string).
    let cause = std::error::Error::source(&errors[0]).unwrap();
    assert!(matches!(
        cause.downcast_ref::<BuildError>(),
        Some(BuildError::Step { source, .. })
            if matches!(**source, StepError::Run(RunError::Exit { code: 1, .. }))
    ));
    let mut events = recorder.events.lock().unwrap().clone();
    events.sort();
    assert_eq!(
        events,
        [
            "building api",
            "building web",
            "building worker",
            "built api",
            "failed web",
            "failed worker"
        ]
    );

    let builder = FakeBuilder {
        fail: vec![],
        built: Mutex::new(Vec::new()),
    };
    let recorder = Recorder::default();
    let built = execute(&requests, &builder, Some(&publisher), &recorder).unwrap();
    assert_eq!(built.len(), 3);
    assert_eq!(
        *publisher.pushed.lock().unwrap(),
        [
            "example.test/api:1",
            "example.test/api:latest",
            "example.test/web:1",
            "example.test/worker:1"
        ]
    );
}
