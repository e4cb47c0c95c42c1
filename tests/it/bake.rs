//! `manifold bake`: the example in examples/bake resolved and printed, variables from the
//! environment, groups, `--set`, and errors that name the key and line.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{REPO, TestRoot};
use crate::registry_harness::{stderr_of, stdout_of};

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
