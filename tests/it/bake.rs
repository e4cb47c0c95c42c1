//! `manifold bake`: the example in examples/bake resolved and printed, variables from the
//! environment, groups, `--set`, errors that name the key and line; targets built together
//! against the real registry, pushed only when every one built.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{REPO, TestRoot};
use crate::registry_harness::{
    Auth, TestRegistry, multi_arch, skopeo_raw_digest, stderr_of, stdout_of,
};

fn example() -> PathBuf {
    Path::new(REPO).join("examples/bake/manifold.yaml")
}

fn print(root: &TestRoot, file: &Path, extra: &[&str]) -> Value {
    let out = root
        .manifold()
        .args(["bake", "--print", "-f"])
        .arg(file)
        .args(extra)
        .env_remove("VERSION")
        .env_remove("REGISTRY")
        .env_remove("BASE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    serde_json::from_str(&stdout_of(&out)).unwrap()
}

#[test]
fn the_example_resolves_with_variables_groups_and_set() {
    let root = TestRoot::new();
    let v = print(&root, &example(), &[]);
    assert_eq!(v["group"], json!({"default": {"targets": ["api", "web"]}}));
    let api = &v["target"]["api"];
    assert_eq!(api["context"], "./api");
    assert_eq!(api["dockerfile"], "Dockerfile");
    assert_eq!(api["target"], "runtime");
    assert_eq!(api["platforms"], json!(["linux/amd64", "linux/arm64"]));
    assert_eq!(api["tags"], json!(["localhost:5000/example/api:dev"]));
    assert_eq!(api["labels"]["org.opencontainers.image.version"], "dev");
    assert_eq!(
        v["target"]["web"]["tags"],
        json!(["localhost:5000/example/web:dev"])
    );
    // Every context and Dockerfile of the example exists.
    for t in ["api", "web"] {
        let target = &v["target"][t];
        let context = example()
            .parent()
            .unwrap()
            .join(target["context"].as_str().unwrap());
        assert!(
            context
                .join(target["dockerfile"].as_str().unwrap())
                .is_file(),
            "{t}"
        );
    }

    // The environment overrides a default; --set overrides the file; a target by name.
    let out = root
        .manifold()
        .args(["bake", "--print", "-f"])
        .arg(example())
        .args([
            "--set",
            "*.platforms=linux/riscv64",
            "--set",
            "web.args.EXTRA=1",
            "web",
        ])
        .env("VERSION", "1.2.3")
        .env("REGISTRY", "registry.example.com/team")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert!(v.get("group").is_none());
    assert_eq!(
        v["target"],
        json!({"web": {
            "context": "./web",
            "dockerfile": "Dockerfile",
            "platforms": ["linux/riscv64"],
            "args": {"BASE": "busybox:latest", "EXTRA": "1"},
            "labels": {
                "org.opencontainers.image.title": "web",
                "org.opencontainers.image.version": "1.2.3"
            },
            "tags": ["registry.example.com/team/web:1.2.3"]
        }})
    );
}

#[test]
fn bake_files_are_checked_key_by_key() {
    let root = TestRoot::new();
    let dir = root.scratch("bake");
    let file = dir.join("manifold.yaml");
    let cases: &[(&str, &str)] = &[
        (
            "targets:\n  api:\n    context: .\n    platfroms: [linux/amd64]\n",
            "error: [FILE]:4:5: `targets.api`: unknown field `platfroms`, expected one of `context`, `dockerfile`, `platforms`, `args`, `labels`, `tags`, `target`",
        ),
        (
            "variables:\n  V: \"1\"\ntargets:\n  api:\n    platforms: [linux/amd64, linux/arm46]\n",
            "error: [FILE]:5:30: `targets.api.platforms[1]`: unknown platform `linux/arm46` (`manifold platforms` lists the known ones)",
        ),
        (
            "targets:\n  api:\n    tags: [\"example.test/api:${VERSON}\"]\n",
            "error: [FILE]:3:12: `targets.api.tags[0]`: unknown variable `VERSON` (declare it under `variables`)",
        ),
        (
            "targets:\n  api: {}\ngroups:\n  default: [api, wbe]\n",
            "error: [FILE]:4:18: `groups.default[1]`: unknown target or group `wbe`",
        ),
        (
            "targets:\n  api:\n    args:\n      GO_VERSION: 1.20\n",
            "error: [FILE]:4:19: `targets.api.args.GO_VERSION`: the number 1.2 is ambiguous here: write it in quotes (`\"1.20\"` for 1.20)",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&file, text).unwrap();
        let out = root
            .manifold()
            .args(["bake", "--print", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{text}");
        let err = stderr_of(&out).replace(&file.display().to_string(), "[FILE]");
        assert!(err.starts_with(expected), "{text}\n{err}");
        assert!(stdout_of(&out).is_empty());
    }

    // A target that does not exist, a bad --set, a missing file: with what to do.
    std::fs::write(&file, "targets:\n  api: {}\n").unwrap();
    let out = root
        .manifold()
        .args(["bake", "--print", "-f"])
        .arg(&file)
        .arg("web")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(
        err.contains("error: no target or group `web` in the bake file"),
        "{err}"
    );
    assert!(
        err.contains("hint: `manifold bake --print` shows the file's targets and groups"),
        "{err}"
    );
    let out = root
        .manifold()
        .args(["bake", "--print", "--set", "api.colour=red", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        stderr_of(&out).contains("error: `--set api.colour=red`: unknown key `colour`"),
        "{}",
        stderr_of(&out)
    );
    let out = root
        .manifold()
        .current_dir(&dir)
        .args(["bake", "-f", "nothing.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr_of(&out).contains("error: cannot read the bake file nothing.yaml"),
        "{}",
        stderr_of(&out)
    );
    // --push needs tags.
    std::fs::create_dir_all(dir.join("api")).unwrap();
    std::fs::write(&file, "targets:\n  api:\n    context: api\n").unwrap();
    let out = root
        .manifold()
        .args(["bake", "--push", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(
        err.contains("error: target `api` has no tags to push to"),
        "{err}"
    );
    assert!(
        err.contains("hint: give it `tags` in the file, or `--set api.tags=REGISTRY/NAME:TAG`"),
        "{err}"
    );
}

/// A bake project in `dir`: targets `one` and `two` on a local base image, and `broken`,
/// whose COPY source does not exist.
fn project(dir: &Path) -> PathBuf {
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "manifold.yaml",
        r#"variables:
  REGISTRY: "example.test/bake"
  VERSION: "dev"
targets:
  one:
    context: one
    platforms: [linux/amd64, linux/arm64]
    args: { BASE: "example.test/base:1" }
    labels: { org.opencontainers.image.version: "${VERSION}" }
    tags: ["${REGISTRY}/one:${VERSION}"]
  two:
    context: two
    dockerfile: Containerfile
    platforms: [linux/amd64, linux/arm64]
    tags: ["${REGISTRY}/two:${VERSION}"]
    target: final
  broken:
    context: two
    dockerfile: Broken.Dockerfile
    tags: ["${REGISTRY}/broken:${VERSION}"]
groups:
  default: [one, two]
  everything: [default, broken]
"#,
    );
    write(
        "one/Dockerfile",
        "ARG BASE\nFROM ${BASE}\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n",
    );
    write("one/hello.txt", "hello from one\n");
    write(
        "two/Containerfile",
        "FROM example.test/base:1 AS first\nCOPY a.txt /a\n\nFROM example.test/base:1 AS final\nCOPY --from=first /a /b\nLABEL stage=final\n",
    );
    write("two/a.txt", "a\n");
    write(
        "two/Broken.Dockerfile",
        "FROM example.test/base:1\nCOPY missing.txt /missing.txt\n",
    );
    dir.join("manifold.yaml")
}

fn labels(root: &TestRoot, image: &str, platform: &str) -> Value {
    let out = root
        .manifold()
        .args(["inspect", "--platform", platform, image])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    v[0]["Config"]["Labels"].clone()
}

#[test]
fn targets_build_together_and_push_only_when_all_built() {
    crate::harness::skip_unless!("docker-registry", "skopeo");
    let registry = TestRegistry::start(Auth::Anonymous);
    let root = TestRoot::new();
    multi_arch(&root, &["amd64", "arm64"], "example.test/base:1");
    let file = project(&root.scratch("project"));
    let repo = format!("{}/bake", registry.host());
    let bake = |args: &[&str], version: &str| {
        root.manifold()
            .args(["--progress", "plain", "bake", "-f"])
            .arg(&file)
            .args(args)
            .env("REGISTRY", &repo)
            .env("VERSION", version)
            .output()
            .unwrap()
    };

    // The default group, pushed: both targets, each for two platforms.
    let out = bake(&["--push"], "1.0");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let built: Vec<(String, String)> = stdout_of(&out)
        .lines()
        .map(|l| {
            let (n, d) = l.split_once(' ').unwrap();
            (n.to_string(), d.to_string())
        })
        .collect();
    assert_eq!(
        built.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    let err = stderr_of(&out);
    assert!(
        err.contains("[one] building") && err.contains("[two] building"),
        "{err}"
    );
    for (name, digest) in &built {
        let tag = format!("{repo}/{name}:1.0");
        assert_eq!(&skopeo_raw_digest(&registry, &tag), digest, "{name}");
    }
    assert_eq!(
        labels(&root, &format!("{repo}/one:1.0"), "linux/arm64")["org.opencontainers.image.version"],
        "1.0"
    );
    // `target: final` built that stage.
    assert_eq!(
        labels(&root, &format!("{repo}/two:1.0"), "linux/amd64")["stage"],
        "final"
    );

    // One target fails: every target is tried, the others build, nothing is pushed.
    let out = bake(&["--push", "everything"], "2.0");
    assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("error: target `broken` failed"), "{err}");
    assert!(err.contains("missing.txt"), "{err}");
    assert!(
        err.contains("error: 1 of 3 targets failed (`broken`); nothing was pushed"),
        "{err}"
    );
    assert!(!err.contains("pushing"), "{err}");
    // They built (and share the cache with the first run), but 2.0 never reached the registry.
    assert!(err.contains("CACHED"), "{err}");
    let tags = |name: &str| {
        let out = TestRoot::new()
            .manifold()
            .args(["tags", &format!("{repo}/{name}")])
            .output()
            .unwrap();
        stdout_of(&out)
    };
    assert_eq!(tags("one"), "1.0\n");
    assert_eq!(tags("two"), "1.0\n");
    assert_eq!(tags("broken"), "");

    // --set narrows a target to one platform: a single-platform image.
    let out = bake(&["--set", "one.platforms=linux/arm64", "one"], "3.0");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let inspect = root
        .manifold()
        .args(["inspect", &format!("{repo}/one:3.0")])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&stdout_of(&inspect)).unwrap();
    assert_eq!(v[0]["Platform"], "linux/arm64/v8", "{v}");
}

/// examples/bake builds as it is (on a local base image): both targets, both platforms, the
/// api from its `runtime` stage.
#[test]
fn the_example_builds() {
    let root = TestRoot::new();
    multi_arch(&root, &["amd64", "arm64"], "example.test/base:1");
    let out = root
        .manifold()
        .args(["bake", "-f"])
        .arg(example())
        .env("BASE", "example.test/base:1")
        .env("VERSION", "0.1")
        .env("REGISTRY", "example.test/bake")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).lines().count(), 2, "{}", stdout_of(&out));
    for platform in ["linux/amd64", "linux/arm64"] {
        let api = labels(&root, "example.test/bake/api:0.1", platform);
        assert_eq!(api["org.opencontainers.image.title"], "api");
        let out = root
            .manifold()
            .args([
                "inspect",
                "--platform",
                platform,
                "example.test/bake/api:0.1",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
        let env: Vec<&str> = v[0]["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(env.contains(&"GREETING=hello from the api"), "{env:?}");
        assert!(
            env.iter()
                .any(|e| e.starts_with(&format!("PLATFORM={platform}"))),
            "{env:?}"
        );
        assert!(
            !env.iter().any(|e| e.starts_with("DEBUG=")),
            "the debug stage was built: {env:?}"
        );
        assert_eq!(
            labels(&root, "example.test/bake/web:0.1", platform)["org.opencontainers.image.version"],
            "0.1"
        );
    }
}

/// RUN steps of targets building side by side go through one runtime runner.
#[test]
fn run_steps_of_concurrent_targets() {
    crate::harness::skip_unless!("root", "runc");
    let root = TestRoot::new();
    crate::registry_harness::import(&root, "amd64", "example.test/base:1");
    let dir = root.scratch("run-project");
    for (name, command) in [("a", "echo a > /a.txt"), ("b", "echo b > /b.txt")] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(
            dir.join(name).join("Dockerfile"),
            format!("FROM example.test/base:1\nRUN {command}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("manifold.yaml"),
        "targets:\n  a: {context: a, platforms: [linux/amd64], tags: [example.test/a:1]}\n  b: {context: b, platforms: [linux/amd64], tags: [example.test/b:1]}\n",
    )
    .unwrap();
    let out = root
        .manifold()
        .current_dir(&dir)
        .arg("bake")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("[a] #1 [linux/amd64 stage-0 1/1] RUN echo a > /a.txt"),
        "{err}"
    );
    assert!(err.contains("[b] #1 DONE"), "{err}");
    // Each image has its RUN's layer on top of the base's.
    for name in ["a", "b"] {
        let out = root
            .manifold()
            .args(["inspect", "--raw", &format!("example.test/{name}:1")])
            .output()
            .unwrap();
        let m: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
        assert_eq!(m["layers"].as_array().unwrap().len(), 2, "{name}: {m}");
    }
}
