//! Managed emulators (issue 12, item 3): `binfmt test` runs a tiny program of each registered
//! handler's architecture through the real kernel and names what is broken; the known-bad QEMU
//! versions are warned about in `binfmt ls`, `platforms`, `run` and `build`; the files
//! `binfmt install --persist` writes recreate the same handlers when systemd-binfmt replays them
//! after a reboot; `platforms` says whether this user (root, or a plain user made by the test)
//! can run each platform now. Every test holds the binfmt lease and leaves the handlers as found.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::binfmt::{BinfmtLease, json_lines, registered, uninstall};
use crate::harness::OtherUser;
use crate::harness::{TestRoot, busybox_tree, require, skip_unless};
use manifold::binfmt::{Handler, MiscFs, ProcMisc, Registration};

const SYSTEMD_BINFMT: &str = "/lib/systemd/systemd-binfmt";

fn handler(target: &str) -> &'static Handler {
    Handler::all().iter().find(|h| h.target == target).unwrap()
}

/// The handlers this machine does not run natively: what `binfmt install` registers.
fn foreign() -> Vec<&'static Handler> {
    Handler::all()
        .iter()
        .filter(|h| !h.is_host_family())
        .collect()
}

fn misc() -> ProcMisc {
    let m = ProcMisc::default();
    if !m.is_mounted() {
        m.mount().unwrap();
    }
    m
}

/// Register `target`'s handler by hand (as another tool or an old install would have).
fn register_by_hand(target: &str, interpreter: &Path, flags: &str) {
    let h = handler(target);
    if let Some(r) = registered(&h.name) {
        misc().write(&r.name, "-1").unwrap();
    }
    misc()
        .register(&h.register_line(interpreter, flags))
        .unwrap();
}

fn copy_executable(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
}

fn row<'a>(rows: &'a [Value], key: &str, value: &str) -> &'a Value {
    rows.iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key} {value}: {rows:?}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn is_version(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.split('.').count() == 3 && s.starts_with(|c: char| c.is_ascii_digit()))
}

/// Redact QEMU versions (`7.2.22`) on top of the harness's filters.
fn settings(root: &TestRoot) -> insta::Settings {
    let mut s = root.insta_settings();
    s.add_filter(r"\b\d+\.\d+\.\d+\b", "[VERSION]");
    s
}

/// The cross assemblers `qemu/test-programs/assemble.sh` uses (scripts/deps.sh installs them).
const ASSEMBLERS: &[&str] = &[
    "as",
    "aarch64-linux-gnu-as",
    "arm-linux-gnueabihf-as",
    "powerpc64le-linux-gnu-as",
    "s390x-linux-gnu-as",
    "riscv64-linux-gnu-as",
    "mips64el-linux-gnuabi64-as",
];

#[test]
fn binfmt_test_help() {
    let root = TestRoot::new();
    let out = root
        .manifold()
        .env("COLUMNS", "100")
        .args(["binfmt", "test", "--help"])
        .assert()
        .success()
        .get_output()
        .clone();
    insta::assert_snapshot!("binfmt_test_help", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_embedded_test_programs_are_what_their_sources_assemble_to() {
    for a in ASSEMBLERS {
        skip_unless!(a);
    }
    let root = TestRoot::new();
    let out = root.scratch("assembled");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu/test-programs/assemble.sh");
    let run = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    for h in Handler::all() {
        let assembled = fs::read(out.join(format!("{}.bin", h.target))).unwrap();
        assert!(
            assembled == h.test_program(),
            "{}: qemu/test-programs/{0}.bin is not what {0}.s assembles to; run {} qemu/test-programs",
            h.target,
            script.display()
        );
    }
}

#[test]
fn binfmt_test_runs_every_handler_and_names_what_is_broken() {
    skip_unless!("root");
    for h in foreign() {
        skip_unless!(&format!("{}-static", h.emulator));
    }
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    root.manifold()
        .args(["binfmt", "install"])
        .assert()
        .success();

    // Deliberately broken: an emulator registered without F whose file was removed since (an
    // upgrade that renamed it), a dynamically linked "emulator" without F, and one with F
    // whose file was removed, which keeps working: the kernel holds what it opened.
    let dir = root.scratch("emulators");
    let riscv = dir.join("qemu-riscv64-static");
    copy_executable(Path::new("/usr/bin/qemu-riscv64-static"), &riscv);
    register_by_hand("riscv64", &riscv, "");
    fs::remove_file(&riscv).unwrap();
    let dynamic = dir.join("qemu-ppc64le");
    copy_executable(Path::new("/bin/true"), &dynamic);
    register_by_hand("ppc64le", &dynamic, "");
    let arm = dir.join("qemu-arm-static");
    copy_executable(Path::new("/usr/bin/qemu-arm-static"), &arm);
    register_by_hand("arm", &arm, "F");
    fs::remove_file(&arm).unwrap();

    let out = root
        .manifold()
        .args(["binfmt", "test", "--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let rows = json_lines(&out.stdout);
    // Every registered handler, each once.
    let tested: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["handler"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = foreign().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(tested, expected);
    assert_eq!(rows.len(), expected.len());

    let riscv_row = row(&rows, "handler", "qemu-riscv64");
    assert_eq!(riscv_row["result"], "fails");
    assert_eq!(riscv_row["reason"], "emulator missing");
    assert!(
        riscv_row["fix"]
            .as_str()
            .unwrap()
            .contains("`sudo manifold binfmt install --force linux/riscv64`"),
        "{riscv_row}"
    );
    let ppc = row(&rows, "handler", "qemu-ppc64le");
    assert_eq!(ppc["reason"], "dynamic emulator without the F flag");
    assert!(
        ppc["detail"].as_str().unwrap().contains("ld-linux"),
        "{ppc}"
    );
    let arm_row = row(&rows, "handler", "qemu-arm");
    assert_eq!(arm_row["result"], "works", "{arm_row}");
    assert!(
        arm_row["note"].as_str().unwrap().contains("gone from disk"),
        "{arm_row}"
    );
    // Its version came from the emulator the kernel holds (QEMU_VERSION), not from a file.
    assert!(is_version(&arm_row["version"]), "{arm_row}");
    for r in &rows {
        if !["qemu-riscv64", "qemu-ppc64le"].contains(&r["handler"].as_str().unwrap()) {
            assert_eq!(r["result"], "works", "{r}");
            assert!(is_version(&r["version"]), "{r}");
        }
        assert_eq!(r["isolation"], "empty-root", "{r}");
        assert_eq!(r["known_bad"], serde_json::json!([]), "{r}");
    }
    assert!(stderr(&out).contains("error: 2 of"), "{}", stderr(&out));

    // What a user reads: a table on stdout, the fixes on stderr.
    let out = root
        .manifold()
        .args([
            "binfmt",
            "test",
            "linux/amd64",
            "linux/arm64",
            "linux/riscv64",
            "linux/ppc64le",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    settings(&root).bind(|| {
        insta::assert_snapshot!(
            "binfmt_test_table",
            format!(
                "{}--- stderr\n{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            )
        );
    });

    // The fixes it gives work.
    root.manifold()
        .args([
            "binfmt",
            "install",
            "--force",
            "linux/riscv64",
            "linux/ppc64le",
        ])
        .assert()
        .success();
    let out = root
        .manifold()
        .args(["binfmt", "test", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    for r in json_lines(&out.stdout) {
        assert_eq!(r["result"], "works", "{r}");
    }

    // Named platforms are tested whether registered or not; a native one runs natively.
    uninstall(&root, "linux/s390x");
    let out = root
        .manifold()
        .args(["binfmt", "test", "--format", "json", "linux/s390x"])
        .arg(manifold::platform::Platform::host().to_string())
        .assert()
        .code(1)
        .get_output()
        .clone();
    let rows = json_lines(&out.stdout);
    assert_eq!(rows[0]["reason"], "exec format error", "{rows:?}");
    assert!(
        rows[0]["fix"]
            .as_str()
            .unwrap()
            .starts_with("`sudo manifold binfmt install linux/s390x --persist`")
    );
    assert_eq!(rows[1]["result"], "native", "{rows:?}");
}

#[test]
fn persisted_handlers_come_back_after_a_reboot_equivalent() {
    skip_unless!(
        "root",
        "qemu-aarch64-static",
        "qemu-s390x-static",
        "qemu-riscv64-static"
    );
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    let etc = root.scratch("binfmt.d");
    let clear = || {
        let m = misc();
        for r in m.registrations().unwrap() {
            m.write(&r.name, "-1").unwrap();
        }
        assert_eq!(m.registrations().unwrap(), Vec::<Registration>::new());
    };
    clear();
    root.manifold()
        .env("MANIFOLD_BINFMT_D", &etc)
        .args(["binfmt", "install", "--persist"])
        .assert()
        .success();
    let live = misc().registrations().unwrap();
    assert!(live.len() >= 3, "{live:?}");

    // One file per handler: a comment, then exactly the line that recreates the live entry.
    let mut files: Vec<PathBuf> = fs::read_dir(&etc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), live.len());
    for r in &live {
        let text = fs::read_to_string(etc.join(format!("{}.conf", r.name))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("# Written by `manifold binfmt install --persist`"));
        assert_eq!(lines[1], r.register_line());
    }

    // The reboot: nothing registered; the platforms no longer run.
    clear();
    root.manifold()
        .args(["binfmt", "test", "linux/arm64"])
        .assert()
        .code(1)
        .stdout(predicates::str::contains("fails: exec format error"));

    // Boot, as systemd-binfmt does it: each line that is not a comment written to `register`,
    // by hand first, then by systemd-binfmt itself where it is installed.
    for f in &files {
        for line in fs::read_to_string(f).unwrap().lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            misc().register(line).unwrap();
        }
    }
    assert_eq!(misc().registrations().unwrap(), live);
    if require(SYSTEMD_BINFMT) {
        clear();
        let out = Command::new(SYSTEMD_BINFMT).args(&files).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(misc().registrations().unwrap(), live);
    }
    let out = root
        .manifold()
        .args(["binfmt", "test", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), live.len());
    for r in rows {
        assert_eq!(r["result"], "works", "{r}");
    }
}

/// The rows of `platforms --format json` for the platforms this test arranged, what a user
/// needs to know about each.
fn platform_rows(out: &[u8]) -> Vec<Value> {
    json_lines(out)
        .into_iter()
        .filter(|r| {
            [
                "linux/amd64",
                "linux/arm64",
                "linux/riscv64",
                "linux/ppc64le",
                "linux/mips64",
            ]
            .contains(&r["platform"].as_str().unwrap())
        })
        .map(|r| {
            serde_json::json!({
                "platform": r["platform"],
                "status": r["status"],
                "this_user": r["this_user"],
                "hint": r["hint"],
            })
        })
        .collect()
}

#[test]
fn platforms_says_whether_this_user_can_run_each_platform() {
    skip_unless!(
        "root",
        "useradd",
        "qemu-aarch64-static",
        "qemu-riscv64-static",
        "qemu-mips64-static"
    );
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    // arm64: registered with F; every user runs it.
    root.manifold()
        .args(["binfmt", "install", "linux/arm64"])
        .assert()
        .success();
    // riscv64: no F, and the emulator is where only root may execute it.
    let private = root.scratch("private");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let riscv = private.join("qemu-riscv64-static");
    copy_executable(Path::new("/usr/bin/qemu-riscv64-static"), &riscv);
    register_by_hand("riscv64", &riscv, "");
    // ppc64le: no F, the emulator file gone.
    register_by_hand("ppc64le", &root.scratch("gone").join("qemu-ppc64le"), "");
    // mips64: not registered.
    uninstall(&root, "linux/mips64");

    let as_root = root
        .manifold()
        .args(["platforms", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();

    // A plain user: the binary copied where they can run it, a store root they cannot reach
    // (`platforms` needs none).
    let user = OtherUser::create("mfsec-binfmt-1");
    let bin_dir = root.scratch("bin");
    let bin = bin_dir.join("manifold");
    copy_executable(Path::new(env!("CARGO_BIN_EXE_manifold")), &bin);
    for dir in bin.ancestors().skip(1).take(3) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let as_user = user
        .command(&bin)
        .args([
            "--root",
            "/nonexistent/manifold",
            "platforms",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(as_user.status.success(), "{}", stderr(&as_user));

    settings(&root).bind(|| {
        insta::assert_json_snapshot!("platforms_as_root", platform_rows(&as_root.stdout));
        insta::assert_json_snapshot!("platforms_as_a_plain_user", platform_rows(&as_user.stdout));
    });
    let user_rows = platform_rows(&as_user.stdout);
    assert_eq!(
        row(&user_rows, "platform", "linux/arm64")["this_user"],
        "runs"
    );
    assert_eq!(
        row(&user_rows, "platform", "linux/riscv64")["this_user"],
        "broken"
    );

    // The table has the column too.
    let table = user
        .command(&bin)
        .args(["--root", "/nonexistent/manifold", "platforms"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("PLATFORM") && header.contains("THIS USER"),
        "{header}"
    );

    // And `binfmt test` as that user: the kernel runs the program for them too.
    let out = user
        .command(&bin)
        .args([
            "--root",
            "/nonexistent/manifold",
            "binfmt",
            "test",
            "--format",
            "json",
            "linux/arm64",
            "linux/ppc64le",
        ])
        .output()
        .unwrap();
    let rows = json_lines(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(rows[0]["result"], "works", "{rows:?}");
    assert!(
        ["user-namespace", "host"].contains(&rows[0]["isolation"].as_str().unwrap()),
        "{rows:?}"
    );
    assert_eq!(rows[1]["reason"], "emulator missing", "{rows:?}");
}

/// A working "emulator" that claims a known-bad version: a script run by a static busybox that
/// answers `--version` itself and hands everything else to the real QEMU. Containers reach it
/// through a bind mount of its directory at the same path.
fn stub_emulator(root: &TestRoot, version: &str) -> PathBuf {
    let dir = root.scratch("stub");
    copy_executable(
        &busybox_tree("amd64").join("bin/busybox"),
        &dir.join("busybox"),
    );
    copy_executable(Path::new("/usr/bin/qemu-aarch64-static"), &dir.join("qemu"));
    let stub = dir.join("qemu-aarch64");
    fs::write(
        &stub,
        format!(
            "#!{dir}/busybox sh\n\
             if [ \"$1\" = --version ]; then echo 'qemu-aarch64 version {version} (stub)'; exit 0; fi\n\
             exec {dir}/qemu \"$@\"\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    for d in dir.ancestors().skip(1).take(2) {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    stub
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn known_bad_versions_are_warned_about_not_refused() {
    skip_unless!("root", "runc", "qemu-aarch64-static");
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    let stub = stub_emulator(&root, "9.2.0");
    // F only: without P, the script hands QEMU a plain `program args...`.
    register_by_hand("aarch64", &stub, "F");
    let warning = "warning: qemu-aarch64 is QEMU 9.2.0, known to crash ldconfig";

    let out = root
        .manifold()
        .args(["binfmt", "ls", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let rows = json_lines(&out.stdout);
    let arm = row(&rows, "handler", "qemu-aarch64");
    assert_eq!(arm["version"], "9.2.0");
    assert_eq!(
        arm["known_bad"],
        serde_json::json!(["libc-bin-segfault-9.2"])
    );
    assert_eq!(count(&stderr(&out), warning), 1, "{}", stderr(&out));
    // The others are this machine's QEMU, which the table does not list.
    for r in rows.iter().filter(|r| r["handler"] != "qemu-aarch64") {
        assert_eq!(r["known_bad"], serde_json::json!([]), "{r}");
    }

    let out = root
        .manifold()
        .args(["platforms", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let rows = json_lines(&out.stdout);
    assert_eq!(
        row(&rows, "platform", "linux/arm64")["known_bad"],
        serde_json::json!(["libc-bin-segfault-9.2"])
    );
    // Once, although two platforms (arm64/v8 and v9) are served by it.
    assert_eq!(count(&stderr(&out), warning), 1, "{}", stderr(&out));
    let table = root
        .manifold()
        .arg("platforms")
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&table.stdout).contains("9.2.0 (known bad)"));

    // A run goes on, after one warning with the fix.
    let image = "knownbad:1";
    crate::local::import(&root, "arm64", "linux/arm64", image);
    let bind = format!("{0}:{0}:ro", stub.parent().unwrap().display());
    let out = root
        .manifold()
        .args([
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            "-v",
            &bind,
            image,
        ])
        .args(["uname", "-m"])
        .assert()
        .success()
        .stdout("aarch64\n")
        .get_output()
        .clone();
    let err = stderr(&out);
    assert_eq!(count(&err, warning), 1, "{err}");
    assert!(err.contains("upgrade QEMU to 9.2.2 or later"), "{err}");

    // A build warns before it starts, once for all its steps.
    let ctx = root.scratch("ctx");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {image}\nRUN true\nRUN true\n"),
    )
    .unwrap();
    let out = root
        .manifold()
        .args(["build", "--platform", "linux/arm64"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(count(&stderr(&out), warning), 1, "{}", stderr(&out));
}
