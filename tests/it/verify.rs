//! `verify`: the busybox images match their platforms; a deliberately mislabelled one does not.

use serde_json::Value;

use crate::harness::{BUSYBOX_ARCHES, TestRoot};
use crate::local::{import, multiarch};

#[test]
fn every_busybox_platform_verifies() {
    let root = TestRoot::new();
    multiarch(&root, "multi:all", BUSYBOX_ARCHES, &[]);
    let out = root
        .manifold()
        .args(["verify", "multi:all"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    for (_, platform) in BUSYBOX_ARCHES {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("{platform}:")))
            .unwrap_or_else(|| panic!("no line for {platform}: {err}"));
        assert!(line.contains("0 contradict"), "{line}");
        assert!(line.contains("entrypoint /bin/busybox"), "{line}");
    }
    let json = root
        .manifold()
        .args([
            "verify",
            "--format",
            "json",
            "--platform",
            "linux/s390x",
            "multi:all",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let reports: Vec<Value> = String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["platform"], "linux/s390x");
    assert_eq!(reports[0]["expected"], "ELF64 MSB s390");
    assert!(reports[0]["checked"].as_u64().unwrap() >= 1);
}

/// The "arm64" image that ships x86_64 binaries.
#[test]
fn a_mislabelled_image_fails() {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/arm64", "liar:arm64");
    let out = root
        .manifold()
        .args(["verify", "liar:arm64"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let table = String::from_utf8(out.stdout).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["PLATFORM", "FILE", "FOUND", "EXPECTED"]);
    let row = lines.next().unwrap();
    assert!(row.starts_with("linux/arm64"), "{row}");
    assert!(row.contains("/bin/busybox (entrypoint)"), "{row}");
    assert!(
        row.contains("ELF64 LSB x86-64") && row.contains("ELF64 LSB AArch64"),
        "{row}"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("linux/arm64: 1 ELF files checked, 1 contradict the platform"),
        "{err}"
    );
    // The right label passes.
    import(&root, "amd64", "linux/amd64", "honest:amd64");
    root.manifold()
        .args(["verify", "honest:amd64"])
        .assert()
        .success();
    // A platform the image does not have.
    root.manifold()
        .args(["verify", "--platform", "linux/s390x", "honest:amd64"])
        .assert()
        .code(125);
}
