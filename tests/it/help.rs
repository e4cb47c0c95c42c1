//! Every command's `--help`, pinned (issue 10, defect 4). The commands come from clap's tree
//! (`manifold::cli::command()`), so a new command or subcommand gets a snapshot of its own: the
//! test fails naming it until the snapshot is accepted (`cargo insta review`), and fails naming
//! a snapshot left behind by a command that is gone.

use std::collections::BTreeSet;
use std::path::Path;

use crate::harness::{self, manifold_snapshot};

/// Every command path under `manifold` (`[]`, `["images"]`, `["manifest", "create"]`, …),
/// without the `help` subcommands clap adds (their help is clap's own).
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            path.push(sub.get_name().to_string());
            walk(sub, path, out);
            path.pop();
        }
    }
    let mut cmd = manifold::cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, &mut Vec::new(), &mut out);
    out
}

/// The snapshot of `manifold PATH... --help`: `manifold`, `manifold_images`,
/// `manifold_manifest_create`, ….
fn snapshot_name(path: &[String]) -> String {
    std::iter::once("manifold")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("_")
}

#[test]
fn help_of_every_command() {
    let paths = command_paths();
    assert!(paths.len() > 30, "{paths:?}");
    let mut failed = Vec::new();
    for path in &paths {
        let name = snapshot_name(path);
        let result = std::panic::catch_unwind(|| {
            let mut settings = harness::insta_settings();
            settings
                .set_description(format!("manifold {} --help", path.join(" ")).replace("  ", " "));
            let output = manifold_snapshot!(
                settings,
                harness::manifold().args(path).arg("--help"),
                &name
            );
            assert!(output.status.success(), "`{name} --help` failed");
        });
        if result.is_err() {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "the help of these commands changed or is new (review with `cargo insta review`): {failed:?}"
    );

    // no snapshot is left from a command that is gone
    let expected: BTreeSet<String> = paths
        .iter()
        .map(|p| format!("it__help__{}.snap", snapshot_name(p)))
        .collect();
    let dir = Path::new(harness::REPO).join("tests/it/snapshots");
    let stale: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("it__help__manifold") && f.ends_with(".snap"))
        .filter(|f| !expected.contains(f))
        .collect();
    assert!(
        stale.is_empty(),
        "snapshots of commands that no longer exist: {stale:?}"
    );
}

/// `-h` is the short form: one line per option, where `--help` gives some options paragraphs.
#[test]
fn short_help() {
    let mut settings = harness::insta_settings();
    settings.set_description("manifold run -h");
    manifold_snapshot!(
        settings,
        harness::manifold().args(["run", "-h"]),
        "short_help_run"
    );
    // the top level has no long help: both are the same
    let short = harness::manifold().arg("-h").output().unwrap();
    let long = harness::manifold().arg("--help").output().unwrap();
    assert!(short.status.success());
    assert_eq!(short.stdout, long.stdout);
}

/// `manifold help` and `manifold help COMMAND` print what `--help` prints.
#[test]
fn help_subcommand_prints_the_same_help() {
    for path in [&[][..], &["images"][..], &["manifest", "create"][..]] {
        let by_flag = harness::manifold()
            .args(path)
            .arg("--help")
            .output()
            .unwrap();
        let by_command = harness::manifold().arg("help").args(path).output().unwrap();
        assert!(by_command.status.success(), "{path:?}");
        assert_eq!(
            String::from_utf8_lossy(&by_command.stdout),
            String::from_utf8_lossy(&by_flag.stdout),
            "{path:?}"
        );
    }
}

/// Help is wrapped to `COLUMNS` when there is no terminal, and never wider than 100 columns:
/// the snapshots above do not depend on who runs them.
#[test]
fn help_wraps_to_columns_and_no_wider_than_100() {
    let widest = |columns: &str| {
        let out = harness::manifold()
            .env("COLUMNS", columns)
            .args(["build", "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.chars().count())
            .max()
            .unwrap()
    };
    assert!(widest("60") <= 60, "{}", widest("60"));
    assert!(widest("80") <= 80);
    assert!(widest("80") > 60);
    assert!(widest("250") <= 100);
    assert_eq!(widest("250"), widest(harness::COLUMNS));
}
