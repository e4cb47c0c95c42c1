//! `binfmt ls|install|uninstall` and `platforms` against the machine's real binfmt_misc, and
//! the lease every test that touches binfmt_misc holds.
//!
//! binfmt_misc is global to the machine. Tests that register or remove handlers hold the lease
//! exclusively; tests that run emulated programs hold it shared. The first holder in this process
//! takes a file lock (`/tmp/manifold-binfmt-tests.lock`, so other test processes — other
//! worktrees — wait) and records the handlers and whether binfmt_misc was mounted; the last one
//! restores exactly that.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;

use crate::harness::{TestRoot, skip_unless};
use manifold::binfmt::{Handler, MiscFs, ProcMisc, Registration};

const LOCK_FILE: &str = "/tmp/manifold-binfmt-tests.lock";

static ACCESS: RwLock<()> = RwLock::new(());
static STATE: Mutex<Option<Saved>> = Mutex::new(None);

struct Saved {
    holders: usize,
    _lock: File,
    mounted: bool,
    registrations: Vec<Registration>,
}

/// Held while a test uses binfmt_misc; see the module doc.
pub struct BinfmtLease {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

impl BinfmtLease {
    /// For tests that run emulated programs (which may register handlers on demand).
    pub fn shared() -> BinfmtLease {
        let guard = ACCESS.read().unwrap_or_else(|e| e.into_inner());
        enter();
        BinfmtLease {
            _shared: Some(guard),
            _exclusive: None,
        }
    }

    /// For tests that register, change or remove handlers.
    pub fn exclusive() -> BinfmtLease {
        let guard = ACCESS.write().unwrap_or_else(|e| e.into_inner());
        enter();
        BinfmtLease {
            _shared: None,
            _exclusive: Some(guard),
        }
    }
}

fn enter() {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = state.as_mut() {
        s.holders += 1;
        return;
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .expect("open the binfmt test lock");
    lock.lock().expect("lock the binfmt test lock");
    let misc = ProcMisc::default();
    *state = Some(Saved {
        holders: 1,
        _lock: lock,
        mounted: misc.is_mounted(),
        registrations: misc.registrations().expect("read binfmt_misc"),
    });
}

impl Drop for BinfmtLease {
    fn drop(&mut self) {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        let s = state.as_mut().expect("a lease is held");
        s.holders -= 1;
        if s.holders == 0 {
            let saved = state.take().expect("state");
            restore(&saved);
            // The file lock goes with `saved`.
        }
    }
}

/// Put binfmt_misc back as it was found: handlers added removed, handlers changed or removed
/// re-registered, and unmounted when it was not mounted.
fn restore(saved: &Saved) {
    let misc = ProcMisc::default();
    if misc.is_mounted() {
        let now = misc.registrations().unwrap_or_default();
        for r in &now {
            let before = saved.registrations.iter().find(|b| b.name == r.name);
            if before != Some(r) {
                let _ = misc.write(&r.name, "-1");
            }
        }
        for b in &saved.registrations {
            if !now.contains(b) {
                misc.register(&b.register_line())
                    .unwrap_or_else(|e| panic!("cannot restore binfmt handler {}: {e}", b.name));
                if !b.enabled {
                    let _ = misc.write(&b.name, "0");
                }
            }
        }
        if !saved.mounted {
            let _ = rustix::mount::unmount(misc.dir(), rustix::mount::UnmountFlags::empty());
        }
    }
    let after = if ProcMisc::default().is_mounted() {
        ProcMisc::default().registrations().unwrap_or_default()
    } else {
        Vec::new()
    };
    // Not an assertion: this runs in Drop, possibly while a failed test unwinds, and a process
    // that ignores the lock may have changed binfmt_misc meanwhile.
    if after != saved.registrations {
        eprintln!(
            "warning: binfmt_misc differs from what the tests found: {:?} now, {:?} before",
            after.iter().map(|r| &r.name).collect::<Vec<_>>(),
            saved
                .registrations
                .iter()
                .map(|r| &r.name)
                .collect::<Vec<_>>()
        );
    }
}

fn handler(target: &str) -> &'static Handler {
    Handler::all().iter().find(|h| h.target == target).unwrap()
}

/// The registration named `name`, if any.
pub fn registered(name: &str) -> Option<Registration> {
    let misc = ProcMisc::default();
    if !misc.is_mounted() {
        return None;
    }
    misc.read(name)
        .unwrap()
        .map(|text| Registration::parse(name, &text))
}

pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub fn uninstall(root: &TestRoot, what: &str) {
    root.manifold()
        .args(["binfmt", "uninstall", what])
        .assert()
        .success();
}

#[test]
fn ls_lists_every_handler() {
    skip_unless!("root");
    let _lease = BinfmtLease::shared();
    let root = TestRoot::new();
    let out = root
        .manifold()
        .args(["binfmt", "ls", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows = json_lines(&out);
    assert_eq!(rows.len(), Handler::all().len());
    for name in [
        "qemu-aarch64",
        "qemu-riscv64",
        "qemu-s390x",
        "qemu-loongarch64",
        "qemu-x86_64",
    ] {
        assert!(rows.iter().any(|r| r["handler"] == name), "{name}");
    }
    #[cfg(target_arch = "x86_64")]
    {
        let x86 = rows.iter().find(|r| r["handler"] == "qemu-x86_64").unwrap();
        assert_eq!(x86["status"], "native");
        let arm = rows
            .iter()
            .find(|r| r["handler"] == "qemu-aarch64")
            .unwrap();
        assert_eq!(arm["native"], false);
        assert_eq!(arm["platforms"][0], "linux/arm64/v8");
    }
    let table = root
        .manifold()
        .args(["binfmt", "ls"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    assert!(table.starts_with("HANDLER"), "{table}");
    assert!(table.contains("qemu-aarch64"));
}

#[test]
fn install_is_idempotent_and_uninstall_removes_only_what_it_names() {
    skip_unless!("root", "qemu-aarch64-static", "qemu-s390x-static");
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    let etc = root.scratch("binfmt.d");
    uninstall(&root, "linux/arm64");
    uninstall(&root, "linux/s390x");
    assert_eq!(registered("qemu-aarch64"), None);

    let out = root
        .manifold()
        .env("MANIFOLD_BINFMT_D", &etc)
        .args(["binfmt", "install", "--persist", "linux/arm64", "s390x"])
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("qemu-aarch64: registered"), "{out}");
    let r = registered("qemu-aarch64").expect("registered");
    assert!(r.enabled);
    assert!(r.interpreter.ends_with("qemu-aarch64-static"), "{r:?}");
    for flag in ['F', 'P', 'C'] {
        assert!(r.flags.contains(flag), "{r:?}");
    }
    assert_eq!(r.magic, handler("aarch64").magic);
    let persisted = fs::read_to_string(etc.join("qemu-aarch64.conf")).unwrap();
    assert!(persisted.contains(&r.register_line()), "{persisted}");
    assert!(etc.join("qemu-s390x.conf").is_file());

    // Again: nothing changes.
    let out = root
        .manifold()
        .args(["binfmt", "install", "linux/arm64"])
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("already registered"));
    assert_eq!(registered("qemu-aarch64"), Some(r));

    // The host's own family is skipped, and says so.
    #[cfg(target_arch = "x86_64")]
    {
        let out = root
            .manifold()
            .args(["binfmt", "install", "linux/amd64"])
            .assert()
            .success();
        assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("natively"));
        assert_eq!(registered("qemu-x86_64"), None);
    }

    // Uninstall removes only what it names.
    root.manifold()
        .env("MANIFOLD_BINFMT_D", &etc)
        .args(["binfmt", "uninstall", "arm64"])
        .assert()
        .success();
    assert_eq!(registered("qemu-aarch64"), None);
    assert!(!etc.join("qemu-aarch64.conf").exists());
    assert!(registered("qemu-s390x").is_some());
    assert!(etc.join("qemu-s390x.conf").is_file());
    let rows = json_lines(
        &root
            .manifold()
            .args(["binfmt", "ls", "--format", "json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let s390x = rows.iter().find(|r| r["handler"] == "qemu-s390x").unwrap();
    assert_eq!(s390x["status"], "registered");
    assert_eq!(s390x["works_in_containers"], true);
    assert!(
        s390x["version"]
            .as_str()
            .is_some_and(|v| v.starts_with(char::is_numeric))
    );
    let arm = rows
        .iter()
        .find(|r| r["handler"] == "qemu-aarch64")
        .unwrap();
    assert_eq!(arm["status"], "not registered");
}

#[test]
fn a_handler_without_f_is_replaced_only_with_force() {
    skip_unless!("root", "runc", "qemu-riscv64-static");
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    uninstall(&root, "linux/riscv64");
    let misc = ProcMisc::default();
    if !misc.is_mounted() {
        misc.mount().unwrap();
    }
    let h = handler("riscv64");
    let line = h.register_line(Path::new("/usr/bin/qemu-riscv64-static"), "");
    misc.register(&line).unwrap();

    let image = "riscv:1";
    crate::local::import(&root, "riscv64", "linux/riscv64", image);
    let out = root
        .manifold()
        .args(["run", "--rm", image, "uname", "-m"])
        .assert()
        .code(125)
        .get_output()
        .stderr
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("without the F flag"), "{out}");
    assert!(
        out.contains("hint: `sudo manifold binfmt install --force linux/riscv64`"),
        "{out}"
    );
    root.manifold()
        .args(["binfmt", "install", "linux/riscv64"])
        .assert()
        .code(125)
        .stderr(predicates::str::contains("--force"));
    assert_eq!(registered("qemu-riscv64").unwrap().flags, "");

    let out = root
        .manifold()
        .args(["binfmt", "install", "--force", "linux/riscv64"])
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains("replaced"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(registered("qemu-riscv64").unwrap().works_in_containers());
    root.manifold()
        .args(["run", "--rm", image, "uname", "-m"])
        .assert()
        .success()
        .stdout("riscv64\n");
}

#[test]
fn install_refuses_a_dynamically_linked_emulator_and_needs_root() {
    skip_unless!("root", "setpriv");
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    uninstall(&root, "linux/ppc64le");
    // A dynamically linked "emulator" alone on PATH.
    let dir = root.scratch("dynamic");
    fs::copy("/bin/true", dir.join("qemu-ppc64le")).unwrap();
    let out = root
        .manifold()
        .env("PATH", &dir)
        .env_remove("MANIFOLD_QEMU_DIR")
        .args(["binfmt", "install", "linux/ppc64le"])
        .assert()
        .code(125)
        .get_output()
        .stderr
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("dynamically linked"), "{out}");
    assert!(
        out.contains("hint:") && out.contains("qemu-user-static"),
        "{out}"
    );
    assert_eq!(registered("qemu-ppc64le"), None);

    // Not root: a clear error, before anything is touched.
    let bin = root.scratch("bin").join("manifold");
    fs::copy(env!("CARGO_BIN_EXE_manifold"), &bin).unwrap();
    let scratch_parent: PathBuf = bin.ancestors().nth(3).unwrap().to_path_buf();
    let _ = std::process::Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&scratch_parent)
        .status();
    // (`run` as a plain user is rootless mode: tests/it/rootless.rs.)
    let out = assert_cmd::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["--root", "/nonexistent/manifold"])
        .args(["binfmt", "install", "linux/ppc64le"])
        .assert()
        .code(125)
        .get_output()
        .stderr
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("needs root"), "{out}");
    assert!(out.contains("hint:") && out.contains("sudo"), "{out}");
    assert_eq!(registered("qemu-ppc64le"), None);
}

#[test]
fn platforms_reports_native_emulated_installable_and_unavailable() {
    skip_unless!("root", "qemu-aarch64-static", "qemu-mips64-static");
    let _lease = BinfmtLease::exclusive();
    let root = TestRoot::new();
    root.manifold()
        .args(["binfmt", "install", "linux/arm64"])
        .assert()
        .success();
    uninstall(&root, "linux/mips64");
    let rows = |path: Option<&Path>| -> Vec<Value> {
        let mut cmd = root.manifold();
        cmd.args(["platforms", "--format", "json"]);
        if let Some(p) = path {
            cmd.env("PATH", p).env_remove("MANIFOLD_QEMU_DIR");
        }
        json_lines(&cmd.assert().success().get_output().stdout)
    };
    let all = rows(None);
    let get = |rows: &[Value], p: &str| rows.iter().find(|r| r["platform"] == p).unwrap().clone();
    assert_eq!(all.len(), manifold::platform::Platform::known().len());
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(get(&all, "linux/amd64")["status"], "native");
        assert_eq!(get(&all, "linux/386")["status"], "native");
    }
    let arm = get(&all, "linux/arm64");
    assert_eq!(arm["status"], "emulated");
    assert!(
        arm["emulator"]
            .as_str()
            .unwrap()
            .ends_with("qemu-aarch64-static")
    );
    assert!(arm["flags"].as_str().unwrap().contains('F'));
    assert!(arm["version"].as_str().is_some());
    let mips = get(&all, "linux/mips64");
    assert_eq!(mips["status"], "installable");
    assert_eq!(
        mips["hint"],
        "`sudo manifold binfmt install linux/mips64 --persist`"
    );
    assert_eq!(mips["this_user"], "not registered");
    assert_eq!(arm["this_user"], "runs");
    // No emulator anywhere: unavailable, and what to install.
    let empty = root.scratch("empty-path");
    let none = rows(Some(&empty));
    let mips = get(&none, "linux/mips64");
    assert_eq!(mips["status"], "unavailable");
    assert!(mips["hint"].as_str().unwrap().contains("qemu-user-static"));
    // Registered handlers work without the emulator on PATH (F: the kernel holds it open).
    assert_eq!(get(&none, "linux/arm64")["status"], "emulated");
    let table = String::from_utf8(
        root.manifold()
            .arg("platforms")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert!(table.starts_with("PLATFORM"), "{table}");
}
