//! `manifold build`: Dockerfiles for one or several platforms, checked through `inspect`,
//! skopeo and the layers themselves; the cache, .dockerignore, stages, args, heredocs,
//! ONBUILD, reproducibility, outputs and the failure cases.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{TestRoot, require, tree_hash};
use crate::local::{context, root_with_busybox};
use crate::registry_harness::{Auth, TestRegistry};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn build(root: &TestRoot, args: &[&str], ctx: &Path) -> Run {
    let out = root
        .manifold()
        .arg("build")
        .args(args)
        .arg(ctx)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn build_ok(root: &TestRoot, args: &[&str], ctx: &Path) -> Run {
    let r = build(root, args, ctx);
    assert!(r.ok, "build failed:\n{}", r.stderr);
    r
}

fn inspect(root: &TestRoot, image: &str, platform: &str) -> Value {
    let out = root
        .manifold()
        .args(["inspect", "--platform", platform, image])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    match v {
        Value::Array(mut a) => a.remove(0),
        v => v,
    }
}

fn config_of(root: &TestRoot, image: &str, platform: &str) -> Value {
    let v = inspect(root, image, platform);
    v.get("Config")
        .or_else(|| v.get("config"))
        .cloned()
        .unwrap_or_else(|| panic!("no config in {v:#}"))
}

fn skopeo_config(root: &TestRoot, reference: &str, arch: &str) -> Value {
    let out = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            "--override-arch",
            arch,
            "--override-os",
            "linux",
        ])
        .arg(format!("oci:{}/images:{reference}", root.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn index_json(root: &TestRoot) -> String {
    fs::read_to_string(root.path().join("images/index.json")).unwrap()
}

/// The files of every layer of `image` for `platform`, as `path` lines (`tar t` style).
fn layer_files(root: &TestRoot, reference: &str, arch: &str) -> Vec<Vec<String>> {
    crate::local::layer_entries(root, reference, arch)
        .into_iter()
        .map(|layer| {
            layer
                .into_iter()
                .map(|(p, content)| match content {
                    Some(c) => format!("{p}={}", c.trim_end()),
                    None => p,
                })
                .collect()
        })
        .collect()
}

const EVERYTHING: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=test/busybox:latest
FROM --platform=$BUILDPLATFORM $BASE AS gen
ARG TARGETARCH
COPY <<EOF /gen/info
built for $TARGETARCH
EOF

FROM ${BASE} AS final
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM
ARG VERSION=0.0
MAINTAINER someone@example.com
ENV APP_HOME=/srv/app \
    VERSION=${VERSION} PLATFORM=$TARGETPLATFORM ARCH=$TARGETARCH
LABEL org.opencontainers.image.version="$VERSION" "com.example.arch"=$TARGETARCH
WORKDIR $APP_HOME
COPY --chmod=755 app/ bin/
COPY --from=gen /gen/info ./
COPY --from=test/busybox:latest /bin/busybox /opt/busybox-copy
ADD bundle.tar ./bundle/
COPY --chown=1000:1000 config.json /etc/app/
RUN echo "ran on $(uname -m) as $(id -u) for $ARCH" > /ran.txt && chown 1000 /ran.txt && rm -rf /tmp
RUN <<EOT
echo "heredoc for $ARCH" > /heredoc.txt
EOT
EXPOSE 8080 53/udp
VOLUME ["/data"]
USER 1000:1000
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["/bin/true"]
SHELL ["/bin/sh", "-e", "-c"]
ONBUILD COPY . /onbuild/
ENTRYPOINT ["/srv/app/bin/start"]
CMD ["--serve"]
"#;

fn everything_context(root: &TestRoot) -> PathBuf {
    let ctx = context(
        root,
        "everything",
        &[
            ("Dockerfile", EVERYTHING),
            ("app/start", "#!/bin/sh\necho started\n"),
            ("app/lib/helper.sh", "helper\n"),
            ("config.json", "{}\n"),
            ("notes.tmp", "not in the image\n"),
            (".dockerignore", "*.tmp\n"),
        ],
    );
    // a tar archive for ADD to extract
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, "inside/file.txt", &b"inner\n"[..])
        .unwrap();
    fs::write(ctx.join("bundle.tar"), b.into_inner().unwrap()).unwrap();
    ctx
}

#[test]
fn every_instruction_two_platforms() {
    if !(require("skopeo") && require("root") && require("runc")) {
        return;
    }
    // RUN and run for linux/arm64 go through QEMU: hold binfmt_misc against the binfmt tests.
    let _binfmt = crate::binfmt::BinfmtLease::shared();
    let root = root_with_busybox();
    let ctx = everything_context(&root);
    let r = build_ok(
        &root,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--build-arg",
            "VERSION=1.2",
            "--label",
            "from.cli=yes",
            "-t",
            "test/everything:1",
        ],
        &ctx,
    );
    // the BUILDPLATFORM stage is the same for both targets only up to TARGETARCH: its heredoc
    // differs, so it runs once per target (two lines), never more
    let gen_lines = r.stderr.lines().filter(|l| l.contains(" gen 1/1]")).count();
    assert_eq!(gen_lines, 2, "{}", r.stderr);

    for (arch, platform) in [("amd64", "linux/amd64"), ("arm64", "linux/arm64")] {
        let c = skopeo_config(&root, "docker.io/test/everything:1", arch);
        assert_eq!(c["architecture"], arch);
        assert_eq!(c["os"], "linux");
        if arch == "arm64" {
            assert_eq!(c["variant"], "v8");
        }
        let cfg = &c["config"];
        let env: Vec<&str> = cfg["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
        assert!(env.contains(&"VERSION=1.2"), "{env:?}");
        assert!(
            env.contains(&format!("PLATFORM={platform}").as_str()),
            "{env:?}"
        );
        assert!(env.contains(&format!("ARCH={arch}").as_str()), "{env:?}");
        assert_eq!(cfg["Entrypoint"], serde_json::json!(["/srv/app/bin/start"]));
        assert_eq!(cfg["Cmd"], serde_json::json!(["--serve"]));
        assert_eq!(cfg["User"], "1000:1000");
        assert_eq!(cfg["WorkingDir"], "/srv/app");
        assert_eq!(cfg["StopSignal"], "SIGINT");
        assert_eq!(cfg["Labels"]["org.opencontainers.image.version"], "1.2");
        assert_eq!(cfg["Labels"]["com.example.arch"], arch);
        assert_eq!(cfg["Labels"]["from.cli"], "yes");
        assert!(cfg["ExposedPorts"].get("8080/tcp").is_some());
        assert!(cfg["ExposedPorts"].get("53/udp").is_some());
        assert!(cfg["Volumes"].get("/data").is_some());
        let history: Vec<&str> = c["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["created_by"].as_str())
            .collect();
        assert!(
            history
                .iter()
                .any(|h| h.starts_with("COPY --chmod=755 app/ /srv/app/bin/")),
            "{history:?}"
        );
        assert!(
            history
                .iter()
                .any(|h| h.starts_with("ONBUILD COPY . /onbuild/")),
            "{history:?}"
        );
        assert_eq!(c["author"], "someone@example.com");

        // manifold inspect shows docker's fields skopeo's config type drops
        let mc = config_of(&root, "test/everything:1", platform);
        let text = mc.to_string();
        assert!(text.contains("\"Healthcheck\""), "{text}");
        assert!(text.contains("30000000000"), "{text}");
        assert!(
            text.contains("\"OnBuild\":[\"COPY . /onbuild/\"]"),
            "{text}"
        );
        assert!(
            text.contains("\"Shell\":[\"/bin/sh\",\"-e\",\"-c\"]"),
            "{text}"
        );

        let layers = layer_files(&root, "docker.io/test/everything:1", arch);
        let added: Vec<String> = layers[1..].iter().flatten().cloned().collect();
        assert!(
            added.contains(&"srv/app/bin/start=#!/bin/sh\necho started".to_string()),
            "{added:?}"
        );
        assert!(
            added.contains(&"srv/app/bin/lib/helper.sh=helper".to_string()),
            "{added:?}"
        );
        assert!(
            added.contains(&format!("srv/app/info=built for {arch}")),
            "{added:?}"
        );
        assert!(
            added.contains(&"srv/app/bundle/inside/file.txt=inner".to_string()),
            "{added:?}"
        );
        assert!(
            added.iter().any(|p| p.starts_with("opt/busybox-copy=")),
            "{added:?}"
        );
        assert!(
            added.iter().any(|p| p.starts_with("etc/app/config.json=")),
            "{added:?}"
        );
        assert!(
            !added.iter().any(|p| p.contains("notes.tmp")),
            "ignored by .dockerignore: {added:?}"
        );
        let machine = if arch == "amd64" { "x86_64" } else { "aarch64" };
        assert!(
            added.contains(&format!("ran.txt=ran on {machine} as 0 for {arch}")),
            "{added:?}"
        );
        assert!(
            added.contains(&format!("heredoc.txt=heredoc for {arch}")),
            "{added:?}"
        );
        assert!(
            added.contains(&".wh.tmp=".to_string()),
            "RUN's deletions are whiteouts: {added:?}"
        );

        // and the image runs, on either platform
        let out = root
            .manifold()
            .args([
                "run",
                "--rm",
                "--platform",
                platform,
                "--entrypoint",
                "cat",
                "test/everything:1",
                "/ran.txt",
                "/srv/app/info",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("ran on {machine}")), "{stdout}");
        assert!(stdout.contains(&format!("built for {arch}")), "{stdout}");
    }
}

#[test]
fn failing_run_shows_its_output_and_moves_no_tag() {
    if !(require("root") && require("runc")) {
        return;
    }
    // RUN and run for linux/arm64 go through QEMU: hold binfmt_misc against the binfmt tests.
    let _binfmt = crate::binfmt::BinfmtLease::shared();
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "run-fail",
        &[(
            "Dockerfile",
            "FROM test/busybox:latest\nRUN echo visible output && exit 3\n",
        )],
    );
    let before = index_json(&root);
    let r = build(
        &root,
        &["--platform", "linux/arm64", "-t", "test/runfail:1"],
        &ctx,
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("visible output"), "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    assert!(r.stderr.contains("exit code: 3"), "{}", r.stderr);
    assert_eq!(index_json(&root), before);
    // the cache holds nothing for the failed step: it runs again
    let again = build(&root, &["--platform", "linux/arm64"], &ctx);
    assert!(!again.stderr.contains("CACHED"), "{}", again.stderr);
}

#[test]
fn cache_hits_and_misses_by_content() {
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "cache",
        &[
            (
                "Dockerfile",
                "FROM test/busybox:latest\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nCMD [\"cat\", \"/a.txt\"]\n",
            ),
            ("a.txt", "one\n"),
            ("b.txt", "two\n"),
        ],
    );
    let first = build_ok(&root, &["-q", "-t", "test/cache:1"], &ctx);
    let second = build_ok(&root, &["-t", "test/cache:1"], &ctx);
    assert_eq!(
        second.stderr.matches("CACHED").count(),
        2,
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("(2 of 2 steps cached)"),
        "{}",
        second.stderr
    );
    let id1 = first.stdout.trim().to_string();
    assert!(
        second.stderr.contains(&id1),
        "a fully cached rebuild is the same image:\n{}",
        second.stderr
    );

    // an mtime change alone: still cached
    let f = fs::File::options()
        .write(true)
        .open(ctx.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    drop(f);
    let third = build_ok(&root, &["-t", "test/cache:1"], &ctx);
    assert_eq!(
        third.stderr.matches("CACHED").count(),
        2,
        "{}",
        third.stderr
    );

    // a content change: that step and the ones after it run again
    fs::write(ctx.join("a.txt"), "ONE\n").unwrap();
    let fourth = build_ok(&root, &["-q", "-t", "test/cache:1"], &ctx);
    assert_ne!(fourth.stdout.trim(), id1);
    let log = build_ok(&root, &["--no-cache", "-t", "test/cache:2"], &ctx);
    assert_eq!(log.stderr.matches("CACHED").count(), 0, "{}", log.stderr);

    // the cache survives garbage collection
    root.manifold()
        .args(["rmi", "test/cache:1", "test/cache:2"])
        .assert()
        .success();
    root.manifold().args(["prune", "-f"]).assert().success();
    let after_prune = build_ok(&root, &["-t", "test/cache:1"], &ctx);
    assert_eq!(
        after_prune.stderr.matches("CACHED").count(),
        2,
        "{}",
        after_prune.stderr
    );
}

#[test]
fn dockerignore_with_exceptions_and_double_star() {
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "ignore",
        &[
            ("Dockerfile", "FROM test/busybox:latest\nCOPY . /ctx/\n"),
            (
                ".dockerignore",
                "**/*.log\nsecret/\n!secret/public.pem\nDockerfile\n",
            ),
            ("keep.txt", "k"),
            ("deep/dir/x.log", "l"),
            ("deep/dir/y.txt", "y"),
            ("secret/private.key", "p"),
            ("secret/public.pem", "c"),
        ],
    );
    build_ok(
        &root,
        &["--platform", "linux/amd64", "-t", "test/ignore:1"],
        &ctx,
    );
    let files: Vec<String> = layer_files(&root, "docker.io/test/ignore:1", "amd64")[1..]
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert!(files.contains(&"ctx/keep.txt=k".to_string()), "{files:?}");
    assert!(
        files.contains(&"ctx/deep/dir/y.txt=y".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"ctx/secret/public.pem=c".to_string()),
        "{files:?}"
    );
    let names: Vec<&str> = files.iter().map(|f| f.split('=').next().unwrap()).collect();
    assert!(
        !names
            .iter()
            .any(|f| f.ends_with(".log") || f.contains("private") || *f == "ctx/Dockerfile"),
        "{names:?}"
    );
}

#[test]
fn target_stages_args_and_heredocs() {
    let root = root_with_busybox();
    let dockerfile = r#"ARG GREETING=hello
FROM test/busybox:latest AS base
ARG GREETING
ARG TARGETARCH
COPY <<EOF /greeting
$GREETING from $TARGETARCH
EOF
COPY <<'EOF' /literal
$GREETING stays
EOF

FROM base AS test
COPY --from=base /greeting /copied

FROM scratch AS never
COPY missing-file /nowhere
"#;
    let ctx = context(&root, "target", &[("Dockerfile", dockerfile)]);
    // the default target is the last stage, whose source is missing
    let r = build(&root, &["--platform", "linux/arm64"], &ctx);
    assert!(!r.ok);
    assert!(r.stderr.contains("Dockerfile:16"), "{}", r.stderr);
    // --target test never plans `never`
    build_ok(
        &root,
        &[
            "--platform",
            "linux/arm64",
            "--target",
            "test",
            "--build-arg",
            "GREETING=hi",
            "-t",
            "test/target:1",
        ],
        &ctx,
    );
    let files: Vec<String> = layer_files(&root, "docker.io/test/target:1", "arm64")
        .into_iter()
        .flatten()
        .collect();
    assert!(
        files.contains(&"greeting=hi from arm64".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"copied=hi from arm64".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"literal=$GREETING stays".to_string()),
        "{files:?}"
    );
    let r = build(&root, &["--target", "tset"], &ctx);
    assert!(!r.ok);
    assert!(r.stderr.contains("did you mean `test`?"), "{}", r.stderr);
}

#[test]
fn onbuild_triggers_fire_in_the_child() {
    let root = root_with_busybox();
    let parent = context(
        &root,
        "parent",
        &[(
            "Dockerfile",
            "FROM test/busybox:latest\nONBUILD COPY marker.txt /from-trigger\nONBUILD ENV TRIGGERED=yes\n",
        )],
    );
    build_ok(
        &root,
        &["--platform", "linux/amd64", "-t", "test/parent:1"],
        &parent,
    );
    let child = context(
        &root,
        "child",
        &[
            ("Dockerfile", "FROM test/parent:1\nCMD [\"true\"]\n"),
            ("marker.txt", "m"),
        ],
    );
    build_ok(
        &root,
        &["--platform", "linux/amd64", "-t", "test/child:1"],
        &child,
    );
    let cfg = config_of(&root, "test/child:1", "linux/amd64").to_string();
    assert!(cfg.contains("TRIGGERED=yes"), "{cfg}");
    assert!(
        !cfg.contains("OnBuild"),
        "triggers do not pass to grandchildren: {cfg}"
    );
    let files: Vec<String> = layer_files(&root, "docker.io/test/child:1", "amd64")
        .into_iter()
        .flatten()
        .collect();
    assert!(files.contains(&"from-trigger=m".to_string()), "{files:?}");
}

#[test]
fn buildplatform_stage_is_built_once_for_two_targets() {
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "shared",
        &[
            (
                "Dockerfile",
                "FROM --platform=$BUILDPLATFORM test/busybox:latest AS tools\nCOPY tool.sh /tool.sh\nFROM test/busybox:latest\nCOPY --from=tools /tool.sh /usr/bin/tool\n",
            ),
            ("tool.sh", "echo tool\n"),
        ],
    );
    let r = build_ok(
        &root,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--no-cache",
            "-t",
            "test/shared:1",
        ],
        &ctx,
    );
    let tool_steps = r
        .stderr
        .lines()
        .filter(|l| l.contains("COPY tool.sh"))
        .count();
    assert_eq!(tool_steps, 1, "the tools stage runs once:\n{}", r.stderr);
    let final_steps = r
        .stderr
        .lines()
        .filter(|l| l.contains("COPY --from=tools"))
        .count();
    assert_eq!(final_steps, 2, "{}", r.stderr);
}

#[test]
fn reproducible_across_roots_with_source_date_epoch() {
    if !(require("root") && require("runc")) {
        return;
    }
    let a = root_with_busybox();
    let b = root_with_busybox();
    let ctx = context(
        &a,
        "repro",
        &[
            (
                "Dockerfile",
                "FROM test/busybox:latest\nWORKDIR /app\nCOPY . .\nRUN echo made > /app/made && touch /app/later\nENV X=1\n",
            ),
            ("f.txt", "same\n"),
        ],
    );
    let args = [
        "--platform",
        "linux/amd64,linux/arm64",
        "-q",
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
    ];
    let x = build_ok(&a, &args, &ctx);
    let y = build_ok(&b, &args, &ctx);
    assert_eq!(x.stdout.trim(), y.stdout.trim());
    // the environment variable works the same
    let out = b
        .manifold()
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-q",
            "--no-cache",
        ])
        .arg(&ctx)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), x.stdout.trim());
    let c = inspect(&a, x.stdout.trim(), "linux/amd64").to_string();
    assert!(c.contains("2023-11-14T22:13:20Z"), "{c}");
}

#[test]
fn zstd_layers_read_back_by_skopeo() {
    if !require("skopeo") {
        return;
    }
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "zstd",
        &[
            (
                "Dockerfile",
                "FROM test/busybox:latest\nCOPY z.txt /z.txt\n",
            ),
            ("z.txt", "zstd\n"),
        ],
    );
    build_ok(
        &root,
        &[
            "--platform",
            "linux/arm64",
            "--compression",
            "zstd",
            "-t",
            "test/zstd:1",
        ],
        &ctx,
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!(
            "oci:{}/images:docker.io/test/zstd:1",
            root.path().display()
        ))
        .output()
        .unwrap();
    let m: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        m["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let out = root.scratch("zstd-out");
    let st = std::process::Command::new("skopeo")
        .args(["copy", "--dest-decompress"])
        .arg(format!(
            "oci:{}/images:docker.io/test/zstd:1",
            root.path().display()
        ))
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // the decompressed zstd layer, as skopeo wrote it, is our tar
    let found = fs::read_dir(&out).unwrap().any(|e| {
        let p = e.unwrap().path();
        let Ok(f) = fs::File::open(&p) else {
            return false;
        };
        tar::Archive::new(f)
            .entries()
            .ok()
            .and_then(|mut es| es.next())
            .and_then(|e| e.ok())
            .is_some_and(|e| e.path().unwrap().to_string_lossy() == "z.txt")
    });
    assert!(
        found,
        "no decompressed layer with z.txt in {}",
        out.display()
    );
}

#[test]
fn failures_leave_no_tag_moved() {
    let root = root_with_busybox();
    let good = context(
        &root,
        "fail-good",
        &[
            ("Dockerfile", "FROM test/busybox:latest\nCOPY a /a\n"),
            ("a", "a"),
        ],
    );
    build_ok(
        &root,
        &["--platform", "linux/amd64", "-t", "test/fail:1"],
        &good,
    );
    let before_index = index_json(&root);
    let before_all = tree_hash(&root.path().join("images"));

    let cases: &[(&str, &str, &str)] = &[
        (
            "FROM test/busybox:latest\nCOPY a /a\nBOGUS instruction\n",
            "Dockerfile:3",
            "unknown instruction",
        ),
        (
            "FROM test/busybox:latest AS build\nFROM scratch\nCOPY --from=biuld /a /a\n",
            "Dockerfile:3",
            "did you mean `build`?",
        ),
        (
            "FROM test/busybox:latest\nCOPY a /a\nCOPY does-not-exist /x\n",
            "Dockerfile:3",
            "not found",
        ),
        (
            // a near miss of a stage name is not pulled: the stage is suggested at once
            "FROM test/busybox:latest AS base\nFROM bsae\n",
            "Dockerfile:2",
            "did you mean the stage `base`?",
        ),
        (
            "FROM test/busybox:latest AS a\nCOPY nope /x\nFROM scratch\nCOPY --from=a /x /x\n",
            "Dockerfile:2",
            "not found",
        ),
    ];
    for (i, (dockerfile, location, message)) in cases.iter().enumerate() {
        let ctx = context(
            &root,
            &format!("fail-{i}"),
            &[("Dockerfile", dockerfile), ("a", "a")],
        );
        let r = build(
            &root,
            &["--platform", "linux/amd64", "-t", "test/fail:1"],
            &ctx,
        );
        assert!(!r.ok, "{dockerfile}");
        assert!(r.stderr.contains(location), "{dockerfile}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{dockerfile}: {}", r.stderr);
        assert_eq!(
            index_json(&root),
            before_index,
            "no tag moved: {dockerfile}"
        );
        let error = r
            .stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(
            i != 4 || !error.contains("COPY --from"),
            "the failing step itself is reported: {error}"
        );
        if i != 2 {
            assert_eq!(
                tree_hash(&root.path().join("images")),
                before_all,
                "{dockerfile}"
            );
        }
    }
}

#[test]
fn archives_stdin_contexts_and_add_url() {
    if !require("skopeo") {
        return;
    }
    let root = root_with_busybox();
    // a tiny HTTP server on loopback for ADD
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().take(4) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ndownload\n");
        }
    });
    let dockerfile = format!(
        "FROM test/busybox:latest\nADD http://127.0.0.1:{port}/files/remote.txt /dl/\nCOPY local /local\n"
    );
    let ctx = context(
        &root,
        "outputs",
        &[("Dockerfile", &dockerfile), ("local", "l")],
    );
    let oci = root.scratch("out").join("multi.tar");
    let docker = root.scratch("out").join("one.tar");
    build_ok(
        &root,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
        ],
        &ctx,
    );
    let st = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", oci.display()))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let index: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    build_ok(
        &root,
        &[
            "--platform",
            "linux/arm64",
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            "-t",
            "test/dl:1",
        ],
        &ctx,
    );
    let st = std::process::Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("docker-archive:{}", docker.display()))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let files: Vec<String> = layer_files(&root, "docker.io/test/dl:1", "arm64")
        .into_iter()
        .flatten()
        .collect();
    assert!(
        files.contains(&"dl/remote.txt=download".to_string()),
        "{files:?}"
    );
    let r = build(
        &root,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=docker,dest=/tmp/x.tar",
        ],
        &ctx,
    );
    assert!(!r.ok && r.stderr.contains("one platform"), "{}", r.stderr);

    // the context as a tarball on stdin, and the Dockerfile on stdin
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", "FROM test/busybox:latest\nCOPY f /f\n"),
        ("f", "from tar\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    root.manifold()
        .args([
            "build",
            "--platform",
            "linux/amd64",
            "-t",
            "test/stdin:1",
            "-",
        ])
        .write_stdin(b.into_inner().unwrap())
        .assert()
        .success();
    let files: Vec<String> = layer_files(&root, "docker.io/test/stdin:1", "amd64")
        .into_iter()
        .flatten()
        .collect();
    assert!(files.contains(&"f=from tar".to_string()), "{files:?}");
    let ctx = context(&root, "dash-f", &[("g", "g\n")]);
    root.manifold()
        .args([
            "build",
            "--platform",
            "linux/amd64",
            "-t",
            "test/stdin:2",
            "-f",
            "-",
        ])
        .arg(&ctx)
        .write_stdin("FROM test/busybox:latest\nCOPY g /g\n")
        .assert()
        .success();
}

#[test]
fn push_and_push_by_digest() {
    if !require("docker-registry") || !require("skopeo") {
        return;
    }
    let root = root_with_busybox();
    let registry = TestRegistry::start(Auth::Anonymous);
    let ctx = context(
        &root,
        "push",
        &[
            ("Dockerfile", "FROM test/busybox:latest\nCOPY p /p\n"),
            ("p", "p"),
        ],
    );
    let name = format!("{}/demo/app:1", registry.host());
    let meta = root.scratch("meta").join("meta.json");
    let pushed = build_ok(
        &root,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &name,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
        &ctx,
    );
    let (status, body) = registry.get("/v2/demo/app/tags/list").unwrap();
    assert_eq!(status, 200, "{body}\n{}", pushed.stderr);
    assert!(body.contains("\"1\""), "{body}");
    let meta: Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    let digest = meta["containerimage.digest"].as_str().unwrap().to_string();

    let by_digest = build_ok(
        &root,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--push-by-digest",
            &format!("{}/demo/matrix", registry.host()),
        ],
        &ctx,
    );
    assert_eq!(by_digest.stdout.trim(), digest);
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/demo/matrix@{digest}", registry.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        manifold::oci::Digest::sha256_of(&out.stdout).to_string(),
        digest
    );
    let (_, tags) = registry.get("/v2/demo/matrix/tags/list").unwrap();
    assert!(!tags.contains("latest"), "{tags}");
}

#[test]
fn the_demo_examples_build_and_run() {
    if !(require("root") && require("runc")) {
        return;
    }
    // RUN and run for linux/arm64 go through QEMU: hold binfmt_misc against the binfmt tests.
    let _binfmt = crate::binfmt::BinfmtLease::shared();
    let root = TestRoot::new();
    let repo = Path::new(crate::harness::REPO);
    let fixtures = crate::harness::fixtures().join("busybox");
    let platforms = "linux/amd64,linux/arm64";
    root.manifold()
        .args([
            "build",
            "--platform",
            platforms,
            "-t",
            "demo/busybox:1",
            "-f",
        ])
        .arg(repo.join("examples/busybox/Dockerfile"))
        .arg(&fixtures)
        .assert()
        .success();
    let r = build_ok(
        &root,
        &["--platform", platforms, "-t", "demo/hello:1"],
        &repo.join("examples/hello"),
    );
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.contains(" banner 1/1] RUN"))
            .count(),
        1,
        "the banner stage runs once for both platforms:\n{}",
        r.stderr
    );
    let out = root
        .manifold()
        .args(["run", "--rm", "--platform", platforms, "demo/hello:1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[linux/arm64] running on aarch64 as uid 1000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[linux/amd64] image for linux/amd64"),
        "{stdout}"
    );
}

#[test]
fn run_cache_and_tmpfs_mounts() {
    if !(require("root") && require("runc")) {
        return;
    }
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "mounts",
        &[(
            "Dockerfile",
            "FROM test/busybox:latest\nRUN --mount=type=cache,target=/cache,id=counter --mount=type=tmpfs,target=/scratch \\\n    echo x >> /cache/count && wc -l < /cache/count > /seen && touch /scratch/junk\n",
        )],
    );
    for expected in ["1", "2"] {
        build_ok(
            &root,
            &[
                "--platform",
                "linux/arm64",
                "--no-cache",
                "-t",
                "test/mounts:1",
            ],
            &ctx,
        );
        let layers = layer_files(&root, "docker.io/test/mounts:1", "arm64");
        let last = layers.last().unwrap();
        assert_eq!(
            last,
            &vec![format!("seen={expected}")],
            "the cache persists, mounts stay out of the layer"
        );
    }
}
