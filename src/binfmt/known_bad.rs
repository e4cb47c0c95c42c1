//! QEMU releases known to break programs in containers: qemu/known-bad.yaml, embedded at build
//! time, and the lookup of an emulator's version in it.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// One row of qemu/known-bad.yaml.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KnownBad {
    pub id: String,
    /// The affected upstream releases (`>=5.1.0, <6.0.0`).
    pub versions: String,
    /// QEMU target names; empty: every architecture.
    #[serde(default)]
    pub architectures: Vec<String>,
    pub symptom: String,
    pub fix: String,
    pub sources: Vec<String>,
    #[serde(skip)]
    req: Option<semver::VersionReq>,
}

const TABLE: &str = include_str!("../../qemu/known-bad.yaml");

static ROWS: LazyLock<Vec<KnownBad>> = LazyLock::new(|| {
    let mut rows: Vec<KnownBad> =
        serde_yaml::from_str(TABLE).unwrap_or_else(|e| panic!("qemu/known-bad.yaml: {e}"));
    for r in &mut rows {
        r.req = Some(semver::VersionReq::parse(&r.versions).unwrap_or_else(|e| {
            panic!(
                "qemu/known-bad.yaml: {}: versions `{}`: {e}",
                r.id, r.versions
            )
        }));
    }
    rows
});

impl KnownBad {
    pub fn all() -> &'static [KnownBad] {
        &ROWS
    }

    /// The rows that `version` (as `--version` prints it) of the emulator for `target` falls in.
    pub fn matching(target: &str, version: &str) -> Vec<&'static KnownBad> {
        let Some(v) = parse_version(version) else {
            return Vec::new();
        };
        KnownBad::all()
            .iter()
            .filter(|r| r.architectures.is_empty() || r.architectures.iter().any(|a| a == target))
            .filter(|r| r.req.as_ref().is_some_and(|q| q.matches(&v)))
            .collect()
    }

    /// The warning shown for an emulator of this version: one line, with the fix and a source.
    pub fn warning(&self, emulator: &str, version: &str) -> String {
        format!(
            "{emulator} is QEMU {version}, known to {}: {} (see {})",
            self.symptom,
            self.fix,
            self.sources
                .first()
                .map_or("qemu/known-bad.yaml", String::as_str)
        )
    }
}

/// `7.2.22` from `7.2.22`, `9.2.0 (v9.2.0)`, `8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)` or `10.0`.
fn parse_version(s: &str) -> Option<semver::Version> {
    let numeric: String = s
        .trim()
        .trim_start_matches('v')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some(semver::Version::new(major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::Handler;

    #[test]
    fn the_table_parses_and_names_real_architectures() {
        assert!(KnownBad::all().len() >= 5);
        for r in KnownBad::all() {
            assert!(!r.sources.is_empty(), "{}: no source", r.id);
            for s in &r.sources {
                assert!(s.starts_with("https://"), "{}: {s}", r.id);
            }
            for a in &r.architectures {
                assert!(
                    Handler::all().iter().any(|h| &h.target == a),
                    "{}: unknown architecture {a}",
                    r.id
                );
            }
            assert!(
                !r.symptom.ends_with('.') && !r.fix.ends_with('.'),
                "{}",
                r.id
            );
        }
    }

    #[test]
    fn versions_as_emulators_print_them() {
        let v = |s| parse_version(s).map(|v| v.to_string());
        assert_eq!(v("7.2.22").as_deref(), Some("7.2.22"));
        assert_eq!(v("9.2.0 (v9.2.0)").as_deref(), Some("9.2.0"));
        assert_eq!(v("v8.1.5").as_deref(), Some("8.1.5"));
        assert_eq!(v("10.0").as_deref(), Some("10.0.0"));
        assert_eq!(v("unknown"), None);
    }

    #[test]
    fn matches_by_version_and_architecture() {
        let ids = |t, v| {
            KnownBad::matching(t, v)
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("aarch64", "9.2.0"), ["libc-bin-segfault-9.2"]);
        assert_eq!(ids("aarch64", "9.2.1"), ["libc-bin-segfault-9.2"]);
        assert!(ids("aarch64", "9.2.2").is_empty());
        // The 9.2 row is arm64's; 7.0.0 is bad everywhere.
        assert!(ids("riscv64", "9.2.0").is_empty());
        assert_eq!(ids("riscv64", "7.0.0"), ["brk-randomisation-7.0"]);
        assert_eq!(
            ids("aarch64", "5.1.0"),
            ["no-semtimedop", "init-guest-space-rewrite"]
        );
        // This machine's Debian 7.2 and today's releases are not in the table.
        assert!(ids("aarch64", "7.2.22").is_empty());
        assert!(ids("aarch64", "10.1.3").is_empty());
        assert!(ids("aarch64", "garbage").is_empty());
    }

    #[test]
    fn the_warning_carries_the_fix_and_a_source() {
        let r = KnownBad::matching("aarch64", "9.2.0")[0];
        let w = r.warning("qemu-aarch64", "9.2.0");
        assert!(
            w.starts_with("qemu-aarch64 is QEMU 9.2.0, known to crash ldconfig"),
            "{w}"
        );
        assert!(w.contains("upgrade QEMU to 9.2.2 or later"), "{w}");
        assert!(
            w.ends_with("(see https://github.com/tonistiigi/binfmt/issues/240)"),
            "{w}"
        );
    }
}
