//! The Dockerfile frontend and the builder against the real thing: `ENTRYPOINT []` over a base
//! with an entrypoint, the registry's login hint reaching the user through a failed build and a
//! failed bake target, `RUN --network=host` only with `--allow network.host`, malformed
//! `.dockerignore` patterns named with their line.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::harness::{TestRoot, manifold_snapshot};
use crate::local::{context, root_with_busybox};
use crate::registry_harness::{Auth, TestRegistry, import, stderr_of, stdout_of};

fn build(root: &TestRoot, args: &[&str], ctx: &Path) -> std::process::Output {
    root.manifold()
        .arg("build")
        .args(args)
        .arg(ctx)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn build_ok(root: &TestRoot, args: &[&str], ctx: &Path) -> std::process::Output {
    let out = build(root, args, ctx);
    assert!(out.status.success(), "build failed:\n{}", stderr_of(&out));
    out
}

fn config_of(root: &TestRoot, image: &str) -> Value {
    let out = root
        .manifold()
        .args(["inspect", "--platform", "linux/amd64", image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = match v {
        Value::Array(mut a) => a.remove(0),
        v => v,
    };
    v.get("Config")
        .or_else(|| v.get("config"))
        .cloned()
        .unwrap_or_else(|| panic!("no config in {v:#}"))
}

/// What `manifold run` of `image` (with `args` after it) prints.
fn run_output(root: &TestRoot, image: &str, args: &[&str]) -> String {
    let out = root
        .manifold()
        .args(["run", "--rm", "--platform", "linux/amd64", image])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    stdout_of(&out)
}

/// Defect 5: `ENTRYPOINT []` and `CMD []` were refused; BuildKit reads an empty exec form as
/// clearing the instruction (and `ENTRYPOINT []` takes the inherited CMD with it).
#[test]
fn empty_entrypoint_and_cmd_clear_the_base_image_s() {
    let root = root_with_busybox();
    let p = ["--platform", "linux/amd64"];
    let base = context(
        &root,
        "entry-base",
        &[(
            "Dockerfile",
            "FROM test/busybox:latest\nENTRYPOINT [\"/bin/echo\", \"from-base\"]\nCMD [\"default-cmd\"]\n",
        )],
    );
    build_ok(&root, &[&p[..], &["-t", "test/entry:1"]].concat(), &base);
    assert_eq!(
        run_output(&root, "test/entry:1", &[]),
        "from-base default-cmd\n"
    );

    let cleared = context(
        &root,
        "entry-cleared",
        &[("Dockerfile", "FROM test/entry:1\nENTRYPOINT []\n")],
    );
    build_ok(
        &root,
        &[&p[..], &["-t", "test/cleared:1"]].concat(),
        &cleared,
    );
    let config = config_of(&root, "test/cleared:1");
    assert!(
        config.get("Entrypoint").is_none_or(Value::is_null),
        "{config:#}"
    );
    assert!(config.get("Cmd").is_none_or(Value::is_null), "{config:#}");
    assert_eq!(
        run_output(&root, "test/cleared:1", &["/bin/echo", "hi"]),
        "hi\n"
    );

    let no_cmd = context(
        &root,
        "cmd-cleared",
        &[("Dockerfile", "FROM test/entry:1\nCMD []\n")],
    );
    build_ok(&root, &[&p[..], &["-t", "test/nocmd:1"]].concat(), &no_cmd);
    let config = config_of(&root, "test/nocmd:1");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/bin/echo", "from-base"])
    );
    assert!(config.get("Cmd").is_none_or(Value::is_null), "{config:#}");
    assert_eq!(run_output(&root, "test/nocmd:1", &[]), "from-base\n");
}

/// A registry that wants a login, holding `private/base:1` (pushed by another root, which
/// logged in); the returned root has no credentials.
fn private_registry() -> (TestRegistry, TestRoot, String) {
    let registry = TestRegistry::start(Auth::Basic);
    let publisher = TestRoot::new();
    let image = format!("{}/private/base:1", registry.host());
    import(&publisher, "amd64", &image);
    registry.login(&publisher);
    let out = publisher
        .manifold()
        .args(["push", &image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    (registry, TestRoot::new(), image)
}

fn port_filter(root: &TestRoot, registry: &TestRegistry) -> insta::Settings {
    let mut settings = root.insta_settings();
    settings.add_filter(
        &format!(r"\b127\.0\.0\.1:{}\b", registry.port()),
        "127.0.0.1:[PORT]",
    );
    settings
}

/// Defect 6: the registry's error (and so the hint to log in) reached the user as a string
/// inside the build error, without the hint.
#[test]
fn a_private_base_image_says_to_log_in() {
    let (registry, root, image) = private_registry();
    let ctx = context(
        &root,
        "private",
        &[("Dockerfile", &format!("FROM {image}\nRUN true\n"))],
    );
    let settings = port_filter(&root, &registry);
    manifold_snapshot!(
        settings,
        root.manifold()
            .args(["build", "--platform", "linux/amd64"])
            .arg(&ctx),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    pulling 127.0.0.1:[PORT]/private/base:1 for linux/amd64
    error: Dockerfile:1: cannot use the base image `127.0.0.1:[PORT]/private/base:1`
      caused by: `127.0.0.1:[PORT]/private/base:1` is not in the store, and cannot be pulled for linux/amd64
      caused by: `127.0.0.1:[PORT]` requires authentication
      caused by: `127.0.0.1:[PORT]` answered 401 Unauthorized to GET /v2/private/base/manifests/1: UNAUTHORIZED (authentication required)
    hint: log in with `manifold login 127.0.0.1:[PORT]`
    "
    );
    // Logged in, the same build pulls it.
    registry.login(&root);
    build_ok(&root, &["--platform", "linux/amd64"], &ctx);
}

/// The same through bake: each failed target's error keeps its chain and hint.
#[test]
fn a_private_base_image_in_a_bake_target_says_to_log_in() {
    let (registry, root, image) = private_registry();
    let dir = context(
        &root,
        "bake-private",
        &[
            ("app/Dockerfile", &format!("FROM {image}\nRUN true\n")),
            (
                "manifold.yaml",
                "targets:\n  app:\n    context: app\n    platforms: [linux/amd64]\n",
            ),
        ],
    );
    let settings = port_filter(&root, &registry);
    manifold_snapshot!(
        settings,
        root.manifold()
            .current_dir(&dir)
            .args(["bake", "-f", "manifold.yaml"]),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    [app] building
    [app] pulling 127.0.0.1:[PORT]/private/base:1 for linux/amd64
    [app] failed
    error: target `app` failed
      caused by: ./app/Dockerfile:1: cannot use the base image `127.0.0.1:[PORT]/private/base:1`
      caused by: `127.0.0.1:[PORT]/private/base:1` is not in the store, and cannot be pulled for linux/amd64
      caused by: `127.0.0.1:[PORT]` requires authentication
      caused by: `127.0.0.1:[PORT]` answered 401 Unauthorized to GET /v2/private/base/manifests/1: UNAUTHORIZED (authentication required)
    hint: log in with `manifold login 127.0.0.1:[PORT]`
    error: 1 of 1 targets failed (`app`); nothing was pushed
    "
    );
}

/// BuildKit's `network.host` entitlement: `RUN --network=host` only with `--allow
/// network.host`, and then the step sees the host's interfaces.
#[test]
fn host_network_needs_allow_network_host() {
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "host-net",
        &[(
            "Dockerfile",
            "FROM test/busybox:latest\nRUN --network=host cat /proc/net/dev\n",
        )],
    );
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold()
            .args(["build", "--platform", "linux/amd64"])
            .arg(&ctx),
        @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: Dockerfile:2: RUN --network=host is not allowed
      caused by: the `network.host` entitlement was not granted to this build
    hint: `manifold build --allow network.host` grants it (for `manifold bake`: list it under the target's `entitlements` and pass `--allow network.host`)
    "
    );
    let out = build_ok(
        &root,
        &["--platform", "linux/amd64", "--allow", "network.host"],
        &ctx,
    );
    let interfaces = |text: &str| -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(name, _)| name.rsplit(' ').next().unwrap_or("").to_string())
            .filter(|n| !n.is_empty() && !n.contains('|'))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    let step_lines: String = stderr_of(&out)
        .lines()
        .filter(|l| l.starts_with('#') && l.contains(':') && !l.contains('['))
        .map(|l| format!("{}\n", l.split_once(' ').map_or("", |(_, r)| r)))
        .collect();
    assert_eq!(interfaces(&step_lines), host, "{}", stderr_of(&out));

    let out = root
        .manifold()
        .args(["build", "--allow", "security.insecure"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("unknown entitlement `security.insecure`"),
        "{}",
        stderr_of(&out)
    );
}

/// A bake target asks for an entitlement in the file; only `bake --allow` grants it, and
/// nothing builds until it is.
#[test]
fn bake_entitlements_need_allow() {
    let root = root_with_busybox();
    let dir = context(
        &root,
        "bake-host",
        &[
            (
                "app/Dockerfile",
                "FROM test/busybox:latest\nRUN --network=host true\n",
            ),
            (
                "other/Dockerfile",
                "FROM test/busybox:latest\nRUN --network=host true\n",
            ),
            (
                "manifold.yaml",
                "targets:\n  app:\n    context: app\n    platforms: [linux/amd64]\n    entitlements: [network.host]\n  other:\n    context: other\n    platforms: [linux/amd64]\n",
            ),
        ],
    );
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold().current_dir(&dir).args(["bake", "app"]),
        @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: the `network.host` entitlement is asked for by `app` and was not granted
    hint: pass `--allow network.host` to grant it
    "
    );
    let out = root
        .manifold()
        .current_dir(&dir)
        .args(["bake", "--allow", "network.host", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).starts_with("app sha256:"),
        "{}",
        stdout_of(&out)
    );
    // `--allow` grants what a target asks for, nothing more: `other` does not ask.
    let out = root
        .manifold()
        .current_dir(&dir)
        .args(["bake", "--allow", "network.host", "other"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("RUN --network=host is not allowed"),
        "{}",
        stderr_of(&out)
    );
}

/// moby/patternmatcher refuses malformed patterns; the build names the file, line and pattern
/// and leaves the store as it was.
#[test]
fn malformed_dockerignore_patterns_are_errors() {
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "bad-ignore",
        &[
            ("Dockerfile", "FROM test/busybox:latest\nCOPY . /app/\n"),
            (".dockerignore", "# generated\n*.log\nsrc/[a-b-c]/x\n"),
        ],
    );
    let before = crate::harness::tree_hash(&root.path().join("images"));
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold()
            .args(["build", "--platform", "linux/amd64"])
            .arg(&ctx),
        @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: [SCRATCH]/bad-ignore/.dockerignore:3: invalid pattern `src/[a-b-c]/x`: a `-` or `]` inside `[…]` must be escaped (`\-`, `\]`)
    "
    );
    assert_eq!(
        crate::harness::tree_hash(&root.path().join("images")),
        before
    );
}
