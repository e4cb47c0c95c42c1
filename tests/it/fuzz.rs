//! The fuzz targets' committed inputs, replayed on the stable toolchain: every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the entry point its
//! target calls (`manifold::fuzzing`), which checks the target's properties. The nightly part
//! (a short `cargo fuzz run` per target) is in scripts/test.sh.

use std::path::Path;

use manifold::fuzzing::TARGETS;

use crate::harness::REPO;

/// Feeds every input of `target` to its entry point; a panic names the file.
fn replay(target: &str) {
    let run = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target `{target}` in manifold::fuzzing::TARGETS"));
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let dir = Path::new(REPO).join("fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.expect("list").path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let data = std::fs::read(file).expect("read input");
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                panic!("fuzz target `{target}` fails on {}", file.display());
            }
            count += 1;
        }
    }
    assert!(count > 0, "fuzz target `{target}` has no committed input");
}

#[test]
fn corpus_covers_every_target() {
    for (target, _) in TARGETS {
        let dir = Path::new(REPO).join("fuzz/corpus").join(target);
        assert!(dir.is_dir(), "no corpus for fuzz target `{target}`");
        let manifest = std::fs::read_to_string(Path::new(REPO).join("fuzz/Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no target `{target}`"
        );
    }
}

#[test]
fn replay_reference() {
    replay("reference");
}

#[test]
fn replay_platform() {
    replay("platform");
}

#[test]
fn replay_dockerfile() {
    replay("dockerfile");
}

#[test]
fn replay_oci_json() {
    replay("oci_json");
}

#[test]
fn replay_archive_load() {
    replay("archive_load");
}

#[test]
fn replay_layer_extract() {
    replay("layer_extract");
}

#[test]
fn replay_dockerignore() {
    replay("dockerignore");
}

#[test]
fn replay_bake() {
    replay("bake");
}

#[test]
fn replay_www_authenticate() {
    replay("www_authenticate");
}
