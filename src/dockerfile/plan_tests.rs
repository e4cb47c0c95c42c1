use super::*;
use crate::dockerfile::instructions::{MountKind, Network, parse};
use crate::oci::RunConfig;

/// Base images by name: busybox (Env PATH, Cmd sh), trig (ONBUILD triggers), entry (Cmd set).
struct Fake;

impl Resolver for Fake {
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, ResolveError> {
        let mut c = ImageConfig::default();
        c.set_platform(platform);
        let rc = c.run_config_mut();
        match reference {
            "busybox" | "busybox:latest" => {
                rc.env = Some(vec!["PATH=/bin".into(), "FROM_BASE=yes".into()]);
                rc.cmd = Some(vec!["sh".into()]);
            }
            "trig" => {
                rc.on_build = Some(vec!["ENV TRIGGERED=1".into(), "COPY . /app/".into()]);
            }
            "entry" => {
                rc.entrypoint = Some(vec!["/entry.sh".into()]);
                rc.cmd = Some(vec!["serve".into()]);
            }
            _ => return Err(format!("no image `{reference}` in the store").into()),
        }
        Ok(c)
    }
}

fn p(s: &str) -> Platform {
    Platform::parse(s).unwrap()
}

fn opts() -> PlanOptions {
    PlanOptions {
        build_platform: Some(p("linux/amd64")),
        ..Default::default()
    }
}

fn plan_for(text: &str, platform: &str, opts: &PlanOptions) -> Result<Plan, DockerfileError> {
    let df = parse("Dockerfile", text)?;
    plan(&df, &p(platform), opts, &Fake)
}

fn rc(stage: &StagePlan) -> &RunConfig {
    stage.config.config.as_ref().unwrap()
}

fn env(stage: &StagePlan, key: &str) -> Option<String> {
    rc(stage)
        .env
        .as_ref()?
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string))
}

#[test]
fn automatic_platform_args() {
    let text = "\
FROM --platform=$BUILDPLATFORM busybox AS gen
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH
ENV T=$TARGETPLATFORM O=$TARGETOS A=$TARGETARCH V=$TARGETVARIANT B=$BUILDPLATFORM BA=$BUILDARCH
FROM busybox
ARG TARGETARCH
COPY --from=gen /x /x-$TARGETARCH
";
    let plan = plan_for(text, "linux/arm/v7", &opts()).unwrap();
    let generator = plan.stage(0);
    assert_eq!(
        generator.platform,
        p("linux/amd64"),
        "the BUILDPLATFORM stage"
    );
    assert_eq!(env(generator, "T").unwrap(), "linux/arm/v7");
    assert_eq!(env(generator, "O").unwrap(), "linux");
    assert_eq!(env(generator, "A").unwrap(), "arm");
    assert_eq!(env(generator, "V").unwrap(), "v7");
    assert_eq!(env(generator, "B").unwrap(), "linux/amd64");
    assert_eq!(env(generator, "BA").unwrap(), "amd64");
    let last = plan.stage(1);
    assert_eq!(last.platform, p("linux/arm/v7"));
    assert_eq!(last.config.architecture, "arm");
    assert_eq!(last.config.variant.as_deref(), Some("v7"));
    let Op::Copy(c) = &last.steps[0].op else {
        panic!()
    };
    assert_eq!(c.dest, "/x-arm");
    assert_eq!(c.from, CopyFrom::Stage(0));
}

#[test]
fn arm64_has_no_variant_in_the_platform_args() {
    let text = "ARG TARGETARCH\nFROM scratch AS x-$TARGETARCH\nARG TARGETPLATFORM TARGETVARIANT\nENV P=$TARGETPLATFORM V=$TARGETVARIANT\n";
    let plan = plan_for(text, "linux/arm64", &opts()).unwrap();
    assert_eq!(env(plan.stage(0), "P").unwrap(), "linux/arm64");
    assert_eq!(env(plan.stage(0), "V").unwrap(), "");
}

#[test]
fn platform_args_are_not_visible_in_a_stage_without_arg() {
    let plan = plan_for("FROM busybox\nENV A=x$TARGETARCH\n", "linux/arm64", &opts()).unwrap();
    assert_eq!(env(plan.stage(0), "A").unwrap(), "x");
    // but FROM sees them (global scope)
    let plan = plan_for(
        "FROM busybox AS b-arm64\nFROM b-$TARGETARCH\n",
        "linux/arm64",
        &opts(),
    )
    .unwrap();
    assert_eq!(plan.stage(1).base, Base::Stage(0));
}

#[test]
fn args_precedence_and_scope() {
    let text = "\
ARG BASE=busybox
ARG GLOBAL=g
FROM $BASE
ARG GLOBAL
ARG A=default B=b
ARG FROM_BASE=arg
ENV E1=$A E2=$GLOBAL E3=$B E4=$FROM_BASE E5=${UNDECLARED:-none}
";
    let mut o = opts();
    o.build_args.insert("A".into(), "cli".into());
    o.build_args.insert("UNUSED".into(), "x".into());
    o.build_args.insert("UNDECLARED".into(), "y".into());
    let plan = plan_for(text, "linux/amd64", &o).unwrap();
    let s = plan.stage(0);
    assert_eq!(s.base, Base::Image("busybox".into()));
    assert_eq!(env(s, "E1").unwrap(), "cli", "build arg wins over default");
    assert_eq!(
        env(s, "E2").unwrap(),
        "g",
        "global value inherited by ARG without default"
    );
    assert_eq!(env(s, "E3").unwrap(), "b");
    assert_eq!(env(s, "E4").unwrap(), "yes", "ENV wins over ARG");
    assert_eq!(
        env(s, "E5").unwrap(),
        "none",
        "undeclared build args are invisible"
    );
    assert_eq!(plan.unused_args, vec!["UNDECLARED", "UNUSED"]);
}

#[test]
fn env_sees_the_values_before_the_instruction() {
    let plan = plan_for(
        "FROM scratch\nENV A=1\nENV A=2 B=$A\nENV C=${A}${B}\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap();
    let s = plan.stage(0);
    assert_eq!(env(s, "B").unwrap(), "1");
    assert_eq!(env(s, "C").unwrap(), "21");
}

#[test]
fn where_docker_expands_and_where_it_does_not() {
    let text = r#"FROM scratch
ENV V=val P=8080
LABEL l=$V "k-$V"="${V}2"
WORKDIR /w/$V
USER u$V
EXPOSE $P
VOLUME /v/$V
STOPSIGNAL SIG$V
RUN echo $V
CMD echo $V
ENTRYPOINT ["echo", "$V"]
HEALTHCHECK CMD echo $V
COPY a-$V b/
"#;
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let s = plan.stage(0);
    let r = rc(s);
    assert_eq!(r.labels.as_ref().unwrap()["l"], "val");
    assert_eq!(r.labels.as_ref().unwrap()["k-val"], "val2");
    assert_eq!(r.working_dir.as_deref(), Some("/w/val"));
    assert_eq!(r.user.as_deref(), Some("uval"));
    assert!(r.exposed_ports.as_ref().unwrap().contains_key("8080/tcp"));
    assert!(r.volumes.as_ref().unwrap().contains_key("/v/val"));
    assert_eq!(r.stop_signal.as_deref(), Some("SIGval"));
    assert_eq!(r.cmd.as_ref().unwrap(), &["/bin/sh", "-c", "echo $V"]);
    assert_eq!(r.entrypoint.as_ref().unwrap(), &["echo", "$V"]);
    assert_eq!(
        r.healthcheck.as_ref().unwrap()["Test"],
        serde_json::json!(["CMD-SHELL", "echo $V"])
    );
    let run = s
        .steps
        .iter()
        .find_map(|st| match &st.op {
            Op::Run(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(run.argv, vec!["/bin/sh", "-c", "echo $V"]);
    assert_eq!(run.workdir, "/w/val");
    assert_eq!(run.user.as_deref(), Some("uval"));
    assert!(run.env.contains(&"V=val".to_string()));
    let Op::Copy(c) = &s.steps.last().unwrap().op else {
        panic!()
    };
    assert_eq!(c.sources, vec![CopySrc::Path("a-val".into())]);
    assert_eq!(c.dest, "/w/val/b/");
}

#[test]
fn run_env_has_args_but_env_wins() {
    let text = "FROM busybox\nARG A=1 FROM_BASE=no\nRUN true\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let Op::Run(r) = &plan.stage(0).steps[0].op else {
        panic!()
    };
    assert!(r.env.contains(&"A=1".to_string()));
    assert!(r.env.contains(&"FROM_BASE=yes".to_string()));
    assert!(!r.env.contains(&"FROM_BASE=no".to_string()));
    assert_eq!(
        plan.stage(0).steps[0].created_by,
        "RUN |1 A=1 /bin/sh -c true # buildkit"
    );
}

#[test]
fn run_heredocs() {
    let text = "FROM busybox\nRUN <<EOF\necho one\nEOF\nRUN <<EOF\n#!/bin/sh\necho two\nEOF\nRUN <<EOF sh -x\necho three\nEOF\nSHELL [\"/bin/bash\", \"-ec\"]\nRUN echo four\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    type Script = Option<(String, String)>;
    let argvs: Vec<(Vec<String>, Script)> = plan
        .stage(0)
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::Run(r) => Some((r.argv.clone(), r.script.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(argvs[0].0, vec!["/bin/sh", "-c", "echo one\n"]);
    assert_eq!(argvs[1].0, vec!["/dev/pipes/EOF"]);
    assert_eq!(
        argvs[1].1,
        Some(("EOF".into(), "#!/bin/sh\necho two\n".into()))
    );
    assert_eq!(
        argvs[2].0,
        vec!["/bin/sh", "-c", "<<EOF sh -x\necho three\nEOF"]
    );
    assert_eq!(argvs[3].0, vec!["/bin/bash", "-ec", "echo four"]);
}

#[test]
fn copy_heredoc_expansion_follows_the_quoting() {
    let text = "FROM scratch\nARG N=x\nCOPY <<A <<\"B\" /d/\n$N \"q\"\nA\n$N\nB\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let Op::Copy(c) = &plan.stage(0).steps[0].op else {
        panic!()
    };
    assert_eq!(
        c.sources,
        vec![
            CopySrc::Inline {
                name: "A".into(),
                content: "x \"q\"\n".into()
            },
            CopySrc::Inline {
                name: "B".into(),
                content: "$N\n".into()
            }
        ]
    );
}

#[test]
fn only_reachable_stages_are_planned() {
    let text = "\
FROM busybox AS a
FROM busybox AS b
FROM scratch AS unused
FROM a AS c
COPY --from=b /x /x
FROM scratch AS last
";
    let mut o = opts();
    o.target = Some("C".into());
    let plan = plan_for(text, "linux/amd64", &o).unwrap();
    assert_eq!(plan.target, 3);
    assert_eq!(
        plan.stages.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 3]
    );
    assert_eq!(plan.stage(3).base, Base::Stage(0));
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    assert_eq!(plan.stages.keys().copied().collect::<Vec<_>>(), vec![4]);
}

#[test]
fn unknown_stages_suggest_the_closest_name() {
    let text = "FROM busybox AS build\nFROM scratch\nCOPY --from=buidl /x /x\n";
    let e = plan_for(text, "linux/amd64", &opts()).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(
        e.to_string().starts_with("Dockerfile:3: COPY --from=buidl"),
        "{e}"
    );
    assert!(e.message.contains("did you mean `build`?"), "{e}");
    let mut o = opts();
    o.target = Some("biuld".into());
    let e = plan_for("FROM busybox AS build\n", "linux/amd64", &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile: target stage `biuld` could not be found; did you mean `build`?"
    );
    let e = plan_for("FROM busybox AS build\nFROM buil\n", "linux/amd64", &opts()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("did you mean the stage `build`?"), "{e}");
}

#[test]
fn onbuild_triggers_run_after_from_and_are_cleared() {
    let text = "FROM trig\nONBUILD RUN echo mine\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let s = plan.stage(0);
    assert_eq!(env(s, "TRIGGERED").unwrap(), "1");
    assert!(matches!(s.steps[1].op, Op::Copy(_)));
    assert_eq!(rc(s).on_build.as_ref().unwrap(), &["RUN echo mine"]);
    // and a stage used as a base fires its own triggers
    let text = "FROM scratch AS base\nONBUILD ENV FIRED=yes\nFROM base\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    assert_eq!(env(plan.stage(1), "FIRED").unwrap(), "yes");
    assert_eq!(rc(plan.stage(1)).on_build, None);
}

#[test]
fn entrypoint_resets_an_inherited_cmd() {
    let plan = plan_for("FROM busybox\nENTRYPOINT [\"x\"]\n", "linux/amd64", &opts()).unwrap();
    assert_eq!(rc(plan.stage(0)).cmd, None);
    let plan = plan_for(
        "FROM busybox\nCMD [\"y\"]\nENTRYPOINT [\"x\"]\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap();
    assert_eq!(rc(plan.stage(0)).cmd.as_ref().unwrap(), &["y"]);
}

/// BuildKit: an empty exec form clears ENTRYPOINT or CMD (Go's omitempty then leaves it out of
/// the config), and `ENTRYPOINT []` takes an inherited CMD with it, as any ENTRYPOINT does.
#[test]
fn empty_entrypoint_and_cmd_clear_them() {
    let history = |plan: &Plan| -> Vec<String> {
        plan.stage(0)
            .steps
            .iter()
            .map(|s| s.created_by.clone())
            .collect()
    };
    // `entry` has Entrypoint ["/entry.sh"] and Cmd ["serve"]
    let plan = plan_for("FROM entry\nENTRYPOINT []\n", "linux/amd64", &opts()).unwrap();
    assert_eq!(rc(plan.stage(0)).entrypoint, None);
    assert_eq!(rc(plan.stage(0)).cmd, None, "the inherited CMD goes too");
    assert_eq!(history(&plan), ["ENTRYPOINT []"]);
    let plan = plan_for(
        "FROM entry\nCMD [\"sh\"]\nENTRYPOINT []\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap();
    assert_eq!(rc(plan.stage(0)).entrypoint, None);
    assert_eq!(
        rc(plan.stage(0)).cmd.as_deref(),
        Some(&["sh".to_string()][..])
    );
    let plan = plan_for("FROM entry\nCMD []\n", "linux/amd64", &opts()).unwrap();
    assert_eq!(rc(plan.stage(0)).cmd, None);
    assert_eq!(
        rc(plan.stage(0)).entrypoint.as_deref(),
        Some(&["/entry.sh".to_string()][..])
    );
    assert_eq!(history(&plan), ["CMD []"]);
    // cleared, then set again in a later stage
    let plan = plan_for(
        "FROM entry AS a\nENTRYPOINT []\nFROM a\nENTRYPOINT [\"x\"]\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap();
    assert_eq!(
        rc(plan.stage(1)).entrypoint.as_deref(),
        Some(&["x".to_string()][..])
    );
}

#[test]
fn host_network_needs_its_entitlement() {
    let text = "FROM busybox\nRUN true\nRUN --network=host wget x\n";
    let e = plan_for(text, "linux/amd64", &opts()).unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(
        e.to_string(),
        "Dockerfile:3: RUN --network=host is not allowed"
    );
    let cause = e.cause.as_ref().unwrap();
    assert_eq!(
        cause.downcast_ref::<EntitlementError>(),
        Some(&EntitlementError(Entitlement::NetworkHost))
    );
    let mut o = opts();
    o.allow.insert(Entitlement::NetworkHost);
    let plan = plan_for(text, "linux/amd64", &o).unwrap();
    let Op::Run(r) = &plan.stage(0).steps[1].op else {
        panic!()
    };
    assert_eq!(r.network, Network::Host);
    // an unreachable stage is not planned, so not checked either (as BuildKit)
    let text =
        "FROM busybox AS unused\nRUN --network=host x\nFROM busybox\nRUN --network=none true\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let Op::Run(r) = &plan.stage(1).steps[0].op else {
        panic!()
    };
    assert_eq!(r.network, Network::None);
    assert_eq!("network.host".parse(), Ok(Entitlement::NetworkHost));
    assert!("security.insecure".parse::<Entitlement>().is_err());
}

#[test]
fn every_mount_kind_is_planned_typed() {
    let text = "FROM busybox\nWORKDIR /w\nARG ID=pip\nRUN --mount=type=cache,target=cache,id=$ID,mode=0700,uid=5 \\\n  --mount=type=bind,from=busybox,source=/etc,target=/src \\\n  --mount=type=secret,id=tok,env=TOKEN \\\n  --mount=type=ssh true\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let Op::Run(r) = &plan.stage(0).steps[1].op else {
        panic!()
    };
    let kinds: Vec<MountKind> = r.mounts.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MountKind::Cache,
            MountKind::Bind,
            MountKind::Secret,
            MountKind::Ssh
        ]
    );
    let cache = &r.mounts[0];
    assert_eq!(
        (
            cache.target.as_str(),
            cache.id.as_str(),
            cache.mode,
            cache.uid
        ),
        ("/w/cache", "pip", 0o700, 5)
    );
    assert!(!cache.read_only);
    assert!(r.mounts[1].read_only, "bind mounts are read-only unless rw");
    assert_eq!(r.mounts[1].from, Some(CopyFrom::Image("busybox".into())));
    assert_eq!(r.mounts[2].env.as_deref(), Some("TOKEN"));
    // only an environment variable: no file
    assert_eq!(r.mounts[2].target, "");
    assert_eq!(
        (r.mounts[3].id.as_str(), r.mounts[3].target.as_str()),
        ("default", "/run/buildkit/ssh_agent.0")
    );
    assert_eq!(r.mounts[3].mode, 0o600);
    // a cache mount's part of the step's key is what it was before the other kinds existed
    assert_eq!(
        serde_json::to_value(cache).unwrap(),
        serde_json::json!({"kind": "cache", "target": "/w/cache", "id": "pip",
            "read_only": false, "mode": 0o700, "uid": 5, "gid": 0})
    );
    let e = plan_for(
        "FROM busybox\nRUN --mount=type=cache,target=/c,uid=x true\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap_err();
    assert!(e.message.contains("uid=x: not a number"), "{e}");
}

#[test]
fn secret_ssh_and_bind_mount_defaults_are_buildkits() {
    let text = "FROM busybox AS tools\nFROM busybox\nRUN --mount=type=secret,id=tok \\\n  --mount=type=secret,target=/etc/npmrc,env=NPMRC \\\n  --mount=type=ssh,id=git --mount=type=ssh,target=/a.sock \\\n  --mount=target=/t,from=tools,source=/bin \\\n  --mount=target=/ctx true\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let stage = plan.stage(1);
    let Op::Run(r) = &stage.steps[0].op else {
        panic!()
    };
    let m: Vec<(&str, &str, u32)> = r
        .mounts
        .iter()
        .map(|m| (m.id.as_str(), m.target.as_str(), m.mode))
        .collect();
    assert_eq!(
        m[..4],
        [
            ("tok", "/run/secrets/tok", 0o400),
            ("npmrc", "/etc/npmrc", 0o400),
            ("git", "/run/buildkit/ssh_agent.0", 0o600),
            ("default", "/a.sock", 0o600),
        ]
    );
    assert_eq!(r.mounts[4].from, Some(CopyFrom::Stage(0)));
    assert_eq!(r.mounts[5].from, None, "the context");
    assert!(stage.deps().contains(&0), "a bind's stage is built first");
    let e = plan_for(
        "FROM busybox\nRUN --mount=target=/x,from=nosuch true\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap_err();
    assert!(
        e.message
            .starts_with("RUN --mount from=nosuch: `nosuch` is neither a stage"),
        "{e}"
    );
}

#[test]
fn copy_exclude_patterns_are_checked_where_they_are_written() {
    let e = plan_for(
        "FROM scratch\nCOPY --exclude=*.md --exclude=[ . /app/\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(
        e.to_string(),
        "Dockerfile:2: COPY --exclude: invalid pattern `[`: a `[` is not closed"
    );
}

#[test]
fn copy_destinations() {
    let text = "FROM scratch\nWORKDIR /app\nCOPY a .\nCOPY a b\nCOPY a ../c/\nCOPY a b /abs/\n";
    let plan = plan_for(text, "linux/amd64", &opts()).unwrap();
    let dests: Vec<String> = plan
        .stage(0)
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::Copy(c) => Some(c.dest.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(dests, vec!["/app/", "/app/b", "/c/", "/abs/"]);
    let e = plan_for("FROM scratch\nCOPY a b /notdir\n", "linux/amd64", &opts()).unwrap_err();
    assert!(e.message.contains("must be a directory"), "{e}");
    let e = plan_for("FROM scratch\nCOPY http://x/y /\n", "linux/amd64", &opts()).unwrap_err();
    assert!(e.message.contains("use ADD"), "{e}");
    let plan = plan_for(
        "FROM scratch\nADD --chmod=640 http://127.0.0.1/y /z\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap();
    let Op::Copy(c) = &plan.stage(0).steps[0].op else {
        panic!()
    };
    assert_eq!(c.sources, vec![CopySrc::Url("http://127.0.0.1/y".into())]);
    assert_eq!(c.chmod, Some(0o640));
}

#[test]
fn healthcheck_and_labels_from_the_command_line() {
    let mut o = opts();
    o.labels.insert("org.example".into(), "cli".into());
    let plan = plan_for(
        "FROM scratch\nHEALTHCHECK --interval=1m30s --timeout=5s --retries=2 CMD [\"/bin/check\"]\n",
        "linux/amd64",
        &o,
    )
    .unwrap();
    let r = rc(plan.stage(0));
    assert_eq!(
        r.healthcheck.as_ref().unwrap(),
        &serde_json::json!({"Test": ["CMD", "/bin/check"], "Interval": 90_000_000_000i64, "Timeout": 5_000_000_000i64, "Retries": 2})
    );
    assert_eq!(r.labels.as_ref().unwrap()["org.example"], "cli");
    let e = plan_for(
        "FROM scratch\nHEALTHCHECK --interval=soon CMD x\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap_err();
    assert!(e.message.contains("not a duration"), "{e}");
}

#[test]
fn workdir_history_and_meta_steps() {
    let plan = plan_for(
        "FROM scratch\nWORKDIR a\nWORKDIR ../b/./c\nWORKDIR /\nMAINTAINER me\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap();
    let s = plan.stage(0);
    assert_eq!(
        s.steps[0].op,
        Op::Workdir {
            path: "/a".into(),
            user: None
        }
    );
    assert_eq!(s.steps[1].created_by, "WORKDIR /b/c");
    assert_eq!(s.steps[2].op, Op::Meta);
    assert_eq!(s.config.author.as_deref(), Some("me"));
}

#[test]
fn structural_errors() {
    let e = plan_for("ENV A=1\nFROM scratch\n", "linux/amd64", &opts()).unwrap_err();
    assert!(
        e.message.contains("ARG may come first") || e.message.contains("FROM"),
        "{e}"
    );
    let e = plan_for("ARG B\nFROM $B\n", "linux/amd64", &opts()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("should not be blank"), "{e}");
    let e = plan_for(
        "FROM scratch AS a\nCOPY --from=a /x /\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap_err();
    assert!(e.message.contains("own stage"), "{e}");
    let e = plan_for(
        "FROM --platform=linux/ble/x/y scratch\n",
        "linux/amd64",
        &opts(),
    )
    .unwrap_err();
    assert!(e.message.contains("--platform"), "{e}");
}

#[test]
fn helpers() {
    assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
    assert_eq!(clean_path("/.."), "/");
    assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
    assert_eq!(parse_duration("500ms"), Some(500_000_000));
    assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
    assert_eq!(parse_duration("x"), None);
    assert_eq!(closest("buidl", &["build", "test"]), Some("build"));
    assert_eq!(closest("zzzzz", &["build"]), None);
}

/// Counts what the planner asks: local lookups and lookups that may pull.
#[derive(Default)]
struct Counting {
    local: std::cell::Cell<usize>,
    remote: std::cell::Cell<usize>,
}

impl Resolver for Counting {
    fn image_config(&self, _: &str, _: &Platform) -> Result<ImageConfig, ResolveError> {
        self.remote.set(self.remote.get() + 1);
        Err("cannot pull".into())
    }
    fn local_image_config(&self, _: &str, _: &Platform) -> Result<ImageConfig, ResolveError> {
        self.local.set(self.local.get() + 1);
        Err("not in the store".into())
    }
}

#[test]
fn near_misses_of_stage_names_are_never_pulled() {
    let r = Counting::default();
    let df = parse(
        "Dockerfile",
        "FROM scratch AS build\nFROM scratch\nCOPY --from=buidl /a /a\n",
    )
    .unwrap();
    let e = plan(&df, &p("linux/amd64"), &opts(), &r).unwrap_err();
    assert!(e.message.contains("did you mean `build`?"), "{e}");
    assert_eq!((r.local.get(), r.remote.get()), (1, 0));
    let df = parse("Dockerfile", "FROM scratch AS build\nFROM alpine\n").unwrap();
    let e = plan(&df, &p("linux/amd64"), &opts(), &r).unwrap_err();
    assert_eq!(e.message, "cannot use the base image `alpine`");
    assert_eq!(
        e.cause.as_ref().map(ToString::to_string).as_deref(),
        Some("cannot pull"),
        "the resolver's error is the cause, not part of the message"
    );
    assert_eq!(
        (r.local.get(), r.remote.get()),
        (1, 1),
        "other names may be pulled"
    );
}

/// Plans `text` on a thread with a small stack: planning must not recurse per stage.
fn plan_on_small_stack(text: String, opts: PlanOptions) -> Result<Plan, DockerfileError> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || plan_for(&text, "linux/amd64", &opts))
        .unwrap()
        .join()
        .expect("planning does not overflow its stack")
}

fn assert_ordered(plan: &Plan) {
    let mut done = BTreeSet::new();
    for &i in &plan.order {
        for d in plan.stage(i).deps() {
            assert!(
                done.contains(&d),
                "stage {i} comes before stage {d} it uses"
            );
        }
        done.insert(i);
    }
    assert_eq!(done.len(), plan.stages.len());
}

#[test]
fn thousands_of_stages_plan_without_recursion() {
    // Each stage on the one before (FROM), the last one the target.
    let mut text = String::from("FROM scratch AS s0\n");
    for i in 1..2000 {
        text.push_str(&format!("FROM s{} AS s{i}\nUSER u{i}\n", i - 1));
    }
    let plan = plan_on_small_stack(text, opts()).unwrap();
    assert_eq!(plan.stages.len(), 2000);
    assert_ordered(&plan);
    assert_eq!(plan.stage(1999).base, Base::Stage(1998));
    assert_eq!(rc(plan.stage(1999)).user.as_deref(), Some("u1999"));

    // Each stage copying from the one after it, the first one the target: every stage is met
    // before the one it needs.
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!("FROM scratch AS s{i}\n"));
        if i < 1999 {
            text.push_str(&format!("COPY --from=s{} /f /f\n", i + 1));
        }
    }
    let o = PlanOptions {
        target: Some("s0".into()),
        ..opts()
    };
    let plan = plan_on_small_stack(text, o).unwrap();
    assert_eq!(plan.stages.len(), 2000);
    assert_ordered(&plan);
    assert_eq!(plan.order.first(), Some(&1999));
    assert_eq!(plan.order.last(), Some(&0));
}

#[test]
fn circular_copies_between_stages_are_refused() {
    let e = plan_for(
        "FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=c /x /x\nFROM scratch AS c\nCOPY --from=a /x /x\n",
        "linux/amd64",
        &PlanOptions {
            target: Some("a".into()),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(e.message.contains("circular dependency"), "{e}");
    assert_eq!(e.line, 1);
}

#[test]
fn thousands_of_env_arg_and_label_lines() {
    let mut text = String::from("FROM busybox\n");
    for i in 0..6000 {
        text.push_str(&format!(
            "ARG A{i}=a{i}\nENV E{i}=${{A{i}}}-e\nLABEL l{i}=$E{i}\n"
        ));
    }
    text.push_str("ENV E0=again\nRUN true\n");
    let plan = plan_for(&text, "linux/amd64", &opts()).unwrap();
    let s = plan.stage(0);
    let env_list = rc(s).env.clone().unwrap();
    // the base's two, 6,000 new ones, E0 set again moves to the end
    assert_eq!(env_list.len(), 6002);
    assert_eq!(env_list[0], "PATH=/bin");
    assert_eq!(env_list[2], "E1=a1-e");
    assert_eq!(env_list.last().unwrap(), "E0=again");
    assert_eq!(env(s, "E5999").unwrap(), "a5999-e");
    let labels = rc(s).labels.clone().unwrap();
    assert_eq!(labels.len(), 6000);
    assert_eq!(labels["l42"], "a42-e");
    let Op::Run(run) = &s.steps.last().unwrap().op else {
        panic!("the RUN step")
    };
    // the environment plus the 6,000 ARGs (none shadowed by an ENV of the same name)
    assert_eq!(run.env.len(), 6002 + 6000);
    assert_eq!(run.env[..6002], env_list[..]);
    assert_eq!(s.steps.len(), 6000 * 2 + 2);
}
