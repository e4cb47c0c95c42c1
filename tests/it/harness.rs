//! Shared helpers for the integration tests: the busybox fixtures, a throwaway store root with a
//! `manifold` command bound to it (and `ok`/`fails` around it), tree hashes ("the store is byte-for-byte as
//! it was"), skips that CI turns into failures, a second user, redaction for snapshots and
//! `manifold_snapshot!`.
#![allow(dead_code, unused_macros)]

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
use sha2::{Digest as _, Sha256};

/// The repository (the crate's manifest directory).
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Set (to anything but `0` or empty) in CI: a missing prerequisite fails the test instead of
/// skipping it.
pub const REQUIRE_ALL_ENV: &str = "MANIFOLD_TEST_REQUIRE_ALL";

/// Every command the tests run is killed after this long, so a hang fails instead of stalling CI.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Debian architectures of the busybox fixtures and their OCI platforms (as in
/// `target/fixtures/busybox/platforms.txt`, written by scripts/fixtures.sh).
pub const BUSYBOX_ARCHES: &[(&str, &str)] = &[
    ("amd64", "linux/amd64"),
    ("arm64", "linux/arm64"),
    ("armhf", "linux/arm/v7"),
    ("armel", "linux/arm/v5"),
    ("i386", "linux/386"),
    ("mips64el", "linux/mips64le"),
    ("ppc64el", "linux/ppc64le"),
    ("s390x", "linux/s390x"),
    ("riscv64", "linux/riscv64"),
];

// --- measuring a child --------------------------------------------------------------------------

/// What a measured child used.
pub struct Measured {
    pub status: std::process::ExitStatus,
    /// The child's own peak resident set in KiB: its VmHWM, sampled while it runs. wait4's
    /// ru_maxrss cannot be used: a child spawned with vfork (what std does) starts its exec from
    /// this test process's memory map, and the kernel keeps that map's high-water mark as the
    /// child's, so a busy test binary made a 40 MiB `manifold` report 400 MiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU time of the child alone (from wait4).
    pub cpu: Duration,
}

/// The VmHWM of /proc/PID/status in KiB (None once the process has exited).
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Wait for `child`, sampling its peak memory every few milliseconds; it is killed after
/// `limit` (a hang guard, not a performance bound) and the test fails.
pub fn wait_measured(child: &mut std::process::Child, limit: Duration) -> Measured {
    use std::os::unix::process::ExitStatusExt as _;
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + limit;
    let mut peak = 0;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        // SAFETY: waits for our own child, not reaped yet, with pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", io::Error::last_os_error());
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the measured command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Measured {
        status: std::process::ExitStatus::from_raw(status),
        peak_rss_kib: peak,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    }
}

// --- fixtures ----------------------------------------------------------------------------------

/// `target/fixtures`, built by scripts/fixtures.sh on first use in this process (the script is
/// cached and safe to run from several test binaries at once).
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(REPO).join("target").join("fixtures");
        let script = Path::new(REPO).join("scripts").join("fixtures.sh");
        let out = StdCommand::new("bash")
            .arg(&script)
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        dir
    })
}

/// The busybox root filesystem of Debian architecture `debarch` as a tarball; `compression` is
/// `"tar"`, `"tar.gz"` or `"tar.zst"`.
pub fn busybox_rootfs(debarch: &str, compression: &str) -> PathBuf {
    assert!(
        matches!(compression, "tar" | "tar.gz" | "tar.zst"),
        "compression must be \"tar\", \"tar.gz\" or \"tar.zst\", not {compression:?}"
    );
    assert!(
        BUSYBOX_ARCHES.iter().any(|(a, _)| *a == debarch),
        "no busybox fixture for Debian architecture {debarch:?}"
    );
    let path = fixtures()
        .join("busybox")
        .join(debarch)
        .join(format!("rootfs.{compression}"));
    assert!(path.is_file(), "fixture {} is missing", path.display());
    path
}

/// The unpacked busybox tree of `debarch` (what extracting `rootfs.tar` gives, modes included).
pub fn busybox_tree(debarch: &str) -> PathBuf {
    busybox_rootfs(debarch, "tar").with_file_name("rootfs")
}

/// The OCI platform (`linux/arm/v7`) of a Debian architecture (`armhf`).
pub fn platform_of(debarch: &str) -> &'static str {
    BUSYBOX_ARCHES
        .iter()
        .find(|(a, _)| *a == debarch)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no platform known for Debian architecture {debarch:?}"))
}

// --- a store root and the command ----------------------------------------------------------

/// A temporary directory holding a store root for `manifold --root` (which manifold itself
/// creates: `path()` does not exist before the first command) and an empty `DOCKER_CONFIG`, so
/// no test sees the host's images or credentials. Removed on drop.
pub struct TestRoot {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Default for TestRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRoot {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("manifold-it-")
            .tempdir()
            .expect("create a temporary directory");
        fs::create_dir(dir.path().join("docker")).expect("create DOCKER_CONFIG directory");
        let root = dir.path().join("root");
        Self { dir, root }
    }

    /// The store root passed as `--root`.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A scratch directory next to the root (for files a test writes), created on demand.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        fs::create_dir_all(&p).expect("create scratch directory");
        p
    }

    /// Where this root's manifold reads registries.conf (absent unless a test writes it).
    pub fn registries_conf(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }

    /// The `DOCKER_CONFIG` directory the commands use (empty unless a test writes to it).
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    /// [`manifold`] with `--root <root> --progress none` and this root's `DOCKER_CONFIG`.
    pub fn manifold(&self) -> assert_cmd::Command {
        self.manifold_wrapped(&[])
    }

    /// [`manifold`](Self::manifold) started by `wrapper` (a program and its arguments, to which
    /// the manifold command line is appended), e.g. to run it in namespaces of its own.
    pub fn manifold_wrapped(&self, wrapper: &[&std::ffi::OsStr]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.manifold_std_wrapped(wrapper));
        cmd.timeout(COMMAND_TIMEOUT);
        cmd
    }

    /// [`TestRoot::manifold`] as a `std::process::Command`, for a test that wires stdout itself
    /// (and then bounds the wait itself).
    pub fn manifold_std(&self) -> StdCommand {
        self.manifold_std_wrapped(&[])
    }

    /// [`manifold_wrapped`](Self::manifold_wrapped) as a plain `std` command.
    pub fn manifold_std_wrapped(&self, wrapper: &[&std::ffi::OsStr]) -> StdCommand {
        let mut cmd = manifold_std_wrapped(wrapper);
        // The machine's /etc/containers/registries.conf never applies to a test.
        cmd.env("MANIFOLD_REGISTRIES_CONF", self.registries_conf())
            .env("DOCKER_CONFIG", self.docker_config())
            .arg("--root")
            .arg(&self.root)
            .args(["--progress", "none"]);
        cmd
    }

    /// [`redact`], plus this root's exact path as `[ROOT]` and its scratch directory as
    /// `[SCRATCH]` (whatever the temporary directory is called).
    pub fn redact(&self, s: &str) -> String {
        let s = s.replace(&self.root.display().to_string(), "[ROOT]");
        let s = s.replace(
            &self.dir.path().join("scratch").display().to_string(),
            "[SCRATCH]",
        );
        redact(&s)
    }

    /// [`insta_settings`] with this root's paths first.
    pub fn insta_settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(&regex::escape(&self.root.display().to_string()), "[ROOT]");
        settings.add_filter(
            &regex::escape(&self.dir.path().join("scratch").display().to_string()),
            "[SCRATCH]",
        );
        for (pattern, replacement) in filters() {
            settings.add_filter(pattern, *replacement);
        }
        settings
    }
}

/// `manifold ARGS` in `root`, to its end.
pub fn run(root: &TestRoot, args: &[&str]) -> std::process::Output {
    root.manifold().args(args).output().unwrap()
}

/// `manifold ARGS` in `root`, which must succeed; its stdout.
pub fn ok(root: &TestRoot, args: &[&str]) -> String {
    let out = run(root, args);
    assert!(
        out.status.success(),
        "manifold {args:?} failed:\n{}",
        stderr_of(&out)
    );
    stdout_of(&out)
}

/// `manifold ARGS` in `root`, which must fail as manifold itself fails (125); its stderr.
pub fn fails(root: &TestRoot, args: &[&str]) -> String {
    let out = run(root, args);
    assert_eq!(
        out.status.code(),
        Some(125),
        "manifold {args:?} should fail with 125:\nstdout: {}\nstderr: {}",
        stdout_of(&out),
        stderr_of(&out)
    );
    stderr_of(&out)
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The terminal width the tests give `manifold`. clap wraps help to the width of the terminal on
/// stdout, stderr or stdin, else to `COLUMNS`, else to 100 columns (and never wider than the
/// 100 `cli::command()` allows): the tests have no terminal, so `COLUMNS` decides.
pub const COLUMNS: &str = "100";

/// The `manifold` binary with nothing of the host's that changes what it prints: every
/// environment variable its flags read (clap's `env`) and the others it reads (`MANIFOLD_*`,
/// registry credentials) removed, no colours, a fixed width for help, and a timeout.
pub fn manifold() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::from_std(manifold_std());
    cmd.timeout(COMMAND_TIMEOUT);
    cmd
}

/// [`manifold`] as a `std::process::Command` (no timeout), for a test that wires stdout itself.
pub fn manifold_std() -> StdCommand {
    manifold_std_wrapped(&[])
}

/// [`manifold_std`] started by `wrapper` (a program and its arguments, to which the manifold
/// command line is appended).
pub fn manifold_std_wrapped(wrapper: &[&std::ffi::OsStr]) -> StdCommand {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = StdCommand::new(program);
            cmd.args(args).arg(env!("CARGO_BIN_EXE_manifold"));
            cmd
        }
        None => StdCommand::new(env!("CARGO_BIN_EXE_manifold")),
    };
    for var in flag_env_vars() {
        cmd.env_remove(var);
    }
    cmd.env_remove("MANIFOLD_ROOT")
        .env_remove("MANIFOLD_INSECURE_REGISTRIES")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("MANIFOLD_REGISTRY_MIRRORS")
        .env_remove("LINES")
        .env("COLUMNS", COLUMNS)
        .env("NO_COLOR", "1");
    cmd
}

/// The environment variables manifold's flags are read from, from its clap definitions.
fn flag_env_vars() -> &'static [std::ffi::OsString] {
    static VARS: OnceLock<Vec<std::ffi::OsString>> = OnceLock::new();
    VARS.get_or_init(|| {
        fn walk(cmd: &clap::Command, out: &mut Vec<std::ffi::OsString>) {
            out.extend(
                cmd.get_arguments()
                    .filter_map(|a| a.get_env())
                    .map(Into::into),
            );
            cmd.get_subcommands().for_each(|sub| walk(sub, out));
        }
        let mut vars = Vec::new();
        walk(&manifold::cli::command(), &mut vars);
        vars.sort();
        vars.dedup();
        vars
    })
}

// --- skips -------------------------------------------------------------------------------------

/// Whether a prerequisite is here: `"root"` (effective uid 0) or a program on `PATH` (`skopeo`,
/// `umoci`, `oci-image-tool`, `runc`, `docker-registry`, `qemu-aarch64-static`, ...). When it is
/// missing, prints a skip note and returns false, or panics when `MANIFOLD_TEST_REQUIRE_ALL` is
/// set (CI), so that nothing is silently skipped there.
pub fn require(what: &str) -> bool {
    let present = match what {
        // SAFETY: geteuid has no preconditions and cannot fail.
        "root" => (unsafe { libc::geteuid() }) == 0,
        program => find_program(program).is_some(),
    };
    if present {
        return true;
    }
    let needed = match what {
        "root" => "root privileges".to_string(),
        program => format!("`{program}` on PATH"),
    };
    if require_all() {
        panic!("this test needs {needed}, and {REQUIRE_ALL_ENV} forbids skipping it");
    }
    eprintln!("skipped: this test needs {needed} (scripts/deps.sh installs the tools)");
    false
}

/// `if !require(what) { return; }`, for the top of a test.
macro_rules! skip_unless {
    ($($what:expr),+ $(,)?) => {
        $(
            if !$crate::harness::require($what) {
                return;
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use skip_unless;

fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The first executable called `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

// --- a second user -----------------------------------------------------------------------------

/// A local user made for one test and removed when dropped (also when the test fails).
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Run a user administration command, retrying while another process holds /etc/passwd's lock
/// (tests of other modules add and remove users at the same time).
fn admin(program: &str, args: &[&str]) -> std::process::Output {
    let mut last = None;
    for _ in 0..100 {
        let out = StdCommand::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if out.status.success() {
            return out;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(100));
    }
    last.unwrap()
}

fn id_of(name: &str, flag: &str) -> u32 {
    let out = StdCommand::new("id").args([flag, name]).output().unwrap();
    assert!(out.status.success(), "id {flag} {name}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl OtherUser {
    /// Creates user `name` (unique to the test, such as `mfsec-<piece>-<n>`), with a group of
    /// its own, no home and no login shell. Guard with `skip_unless!("root", "useradd")`.
    pub fn create(name: &str) -> OtherUser {
        let name = name.to_string();
        // A leftover of a run that was killed before its guard could remove it.
        if StdCommand::new("id")
            .arg(&name)
            .output()
            .unwrap()
            .status
            .success()
        {
            admin("userdel", &[&name]);
        }
        let out = admin(
            "useradd",
            &[
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ],
        );
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OtherUser {
            uid: id_of(&name, "-u"),
            gid: id_of(&name, "-g"),
            name,
        }
    }

    /// A command run as this user (no supplementary groups), environment cleared.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> StdCommand {
        let mut c = StdCommand::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::null());
        c
    }

    /// What `sh -c SCRIPT` said and whether it succeeded, as this user.
    pub fn sh(&self, script: &str) -> (bool, String) {
        let out = self
            .command("/bin/sh")
            .args(["-c", script])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Assert that this user cannot read `path`, and that it is the permissions that stop them.
    pub fn cannot_read(&self, path: &Path) {
        assert!(path.is_file(), "{} exists (as root)", path.display());
        let (ok, text) = self.sh(&format!("cat '{}' >/dev/null", path.display()));
        assert!(!ok, "{} could read {}", self.name, path.display());
        assert!(text.contains("Permission denied"), "{text}");
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        admin("userdel", &[&self.name]);
    }
}

// --- tree hashes -------------------------------------------------------------------------------

/// A hash of everything under `dir` that a store promises to keep: every path, its file type,
/// permission bits (with setuid/setgid/sticky), symlink targets, device numbers and file
/// contents. Ownership and timestamps are left out. A missing `dir` has a hash of its own.
/// Compare [`tree_listing`]s when two hashes differ: they say what changed.
pub fn tree_hash(dir: &Path) -> String {
    hex::encode(Sha256::digest(tree_listing(dir).as_bytes()))
}

/// The readable form behind [`tree_hash`]: one line per entry, sorted by name within each
/// directory, `.` (the directory itself) first. A line is the path (escaped: `\t`, `\n`, `\\`,
/// `\xNN`), a tab, then `d MODE`, `f MODE SIZE sha256:HEX`, `l -> TARGET` or
/// `p|s|c|b MODE rdev=N`; MODE is octal with the setuid, setgid and sticky bits.
pub fn tree_listing(dir: &Path) -> String {
    let mut out = String::new();
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => out.push_str("(absent)\n"),
        Err(e) => panic!("tree_listing: cannot stat {}: {e}", dir.display()),
        Ok(_) => walk(dir, Path::new("."), &mut out),
    }
    out
}

fn walk(base: &Path, rel: &Path, out: &mut String) {
    let path = if rel == Path::new(".") {
        base.to_path_buf()
    } else {
        base.join(rel)
    };
    let meta = fs::symlink_metadata(&path)
        .unwrap_or_else(|e| panic!("tree_listing: cannot stat {}: {e}", path.display()));
    let ft = meta.file_type();
    let mode = meta.mode() & 0o7777;
    let name = escape(rel.as_os_str().as_bytes());
    if ft.is_symlink() {
        let target = fs::read_link(&path)
            .unwrap_or_else(|e| panic!("tree_listing: cannot read link {}: {e}", path.display()));
        let _ = writeln!(
            out,
            "{name}\tl -> {}",
            escape(target.as_os_str().as_bytes())
        );
    } else if ft.is_file() {
        let mut file = fs::File::open(&path)
            .unwrap_or_else(|e| panic!("tree_listing: cannot open {}: {e}", path.display()));
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher)
            .unwrap_or_else(|e| panic!("tree_listing: cannot read {}: {e}", path.display()));
        let _ = writeln!(
            out,
            "{name}\tf {mode:04o} {} sha256:{}",
            meta.len(),
            hex::encode(hasher.finalize())
        );
    } else if ft.is_dir() {
        let _ = writeln!(out, "{name}\td {mode:04o}");
        let mut children: Vec<_> = fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("tree_listing: cannot list {}: {e}", path.display()))
            .map(|e| e.expect("read_dir entry").file_name())
            .collect();
        children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for child in children {
            let child_rel = if rel == Path::new(".") {
                PathBuf::from(&child)
            } else {
                rel.join(&child)
            };
            walk(base, &child_rel, out);
        }
    } else {
        let kind = if ft.is_fifo() {
            "p"
        } else if ft.is_socket() {
            "s"
        } else if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            "?"
        };
        let _ = writeln!(out, "{name}\t{kind} {mode:04o} rdev={:#x}", meta.rdev());
    }
}

/// Bytes as text that is unambiguous on one line: printable ASCII as is (tab, newline, `\` and
/// non-ASCII escaped).
fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// --- redaction ---------------------------------------------------------------------------------

/// `(regex, replacement)` pairs, applied in order, for output that changes from run to run:
/// the repository and temporary paths, digests and short IDs, timestamps, "N seconds ago" and
/// durations. The same list feeds [`redact`] and [`insta_settings`].
pub fn filters() -> &'static [(String, &'static str)] {
    static FILTERS: OnceLock<Vec<(String, &'static str)>> = OnceLock::new();
    FILTERS.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let tmp = regex::escape(tmp.to_string_lossy().trim_end_matches('/'));
        let repo = regex::escape(REPO.trim_end_matches('/'));
        let unit = r"(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)";
        vec![
            // paths: a TestRoot's root, other temporary directories, the repository
            (format!(r"{tmp}/manifold-it-[A-Za-z0-9]+/root\b"), "[ROOT]"),
            (format!(r"{tmp}/manifold-it-[A-Za-z0-9]+/scratch\b"), "[SCRATCH]"),
            (format!(r"{tmp}/(?:manifold-[a-z]+-|\.tmp)[A-Za-z0-9]+"), "[TMP]"),
            (repo, "[REPO]"),
            // digests, then the hex that is left: whole digests, then 12-character short IDs
            (r"sha256:[0-9a-f]{64}\b".into(), "sha256:[DIGEST]"),
            (r"sha512:[0-9a-f]{128}\b".into(), "sha512:[DIGEST]"),
            (r"\b[0-9a-f]{64}\b".into(), "[DIGEST]"),
            (r"\b[0-9a-f]{12}\b".into(), "[ID]"),
            // RFC 3339 and Go-style timestamps
            (
                r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|\s?[+-]\d{2}:?\d{2})?(?:\s[A-Z]{3,5}\b)?"
                    .into(),
                "[TIMESTAMP]",
            ),
            // docker's human durations ("About a minute ago", "Up 3 seconds", "2 hours ago")
            (
                format!(r"\b(?:Less than a second|About an? (?:minute|hour)|an? {unit}|\d+ {unit}) ago\b"),
                "[AGO]",
            ),
            (
                format!(r"\bUp (?:Less than a second|About an? (?:minute|hour)|\d+ {unit})"),
                "Up [DURATION]",
            ),
            // timings: 1.2s, 350ms, 1m2.5s, 3.4 seconds
            (r"\b(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?(?:ns|µs|us|ms|s)\b".into(), "[DURATION]"),
            (r"\b\d+(?:\.\d+)? (?:seconds|secs|milliseconds|ms)\b".into(), "[DURATION]"),
        ]
    })
}

fn compiled() -> &'static [(Regex, &'static str)] {
    static COMPILED: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        filters()
            .iter()
            .map(|(p, r)| (Regex::new(p).expect("valid redaction regex"), *r))
            .collect()
    })
}

/// `s` with everything in [`filters`] replaced by placeholders (`sha256:[DIGEST]`, `[ID]`,
/// `[ROOT]`, `[TMP]`, `[REPO]`, `[TIMESTAMP]`, `[AGO]`, `[DURATION]`).
pub fn redact(s: &str) -> String {
    compiled()
        .iter()
        .fold(s.to_string(), |acc, (re, replacement)| {
            re.replace_all(&acc, regex::NoExpand(replacement))
                .into_owned()
        })
}

/// insta settings with the [`filters`]: `harness::insta_settings().bind(|| assert_snapshot!(…))`.
/// Prefer [`TestRoot::insta_settings`] when a root is involved.
pub fn insta_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in filters() {
        settings.add_filter(pattern, *replacement);
    }
    settings
}

// --- snapshots of whole commands --------------------------------------------------------------

/// What a command did, as one text for a snapshot (uv's format): whether it succeeded, its exit
/// status, then its stdout and its stderr.
pub fn run_and_format(cmd: &mut assert_cmd::Command) -> (String, std::process::Output) {
    let output = cmd.output().expect("run the command");
    let status = match output.status.code() {
        Some(code) => format!("exit_code: {code}"),
        None => format!("terminated: {}", output.status),
    };
    let text = format!(
        "success: {}\n{status}\n----- stdout -----\n{}\n----- stderr -----\n{}",
        output.status.success(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    (text, output)
}

/// uv's `uv_snapshot!` for manifold: run a command (an `assert_cmd::Command`, usually from
/// [`manifold`] or [`TestRoot::manifold`]) and snapshot its exit status, stdout and stderr with
/// the [`filters`]. Returns the `Output` for further checks.
///
/// - `manifold_snapshot!(cmd, @"…")`: inline, with the [`filters`];
/// - `manifold_snapshot!(settings, cmd, @"…")`: inline, with these insta settings (such as
///   [`TestRoot::insta_settings`], or more filters added to [`insta_settings`]);
/// - `manifold_snapshot!(settings, cmd, name)`: in `snapshots/<module>__<name>.snap`.
macro_rules! manifold_snapshot {
    ($cmd:expr, @$snapshot:literal) => {{
        $crate::harness::manifold_snapshot!($crate::harness::insta_settings(), $cmd, @$snapshot)
    }};
    ($settings:expr, $cmd:expr, @$snapshot:literal) => {{
        let (snapshot, output) = $crate::harness::run_and_format($cmd);
        $settings.bind(|| ::insta::assert_snapshot!(snapshot, @$snapshot));
        output
    }};
    ($settings:expr, $cmd:expr, $name:expr) => {{
        let (snapshot, output) = $crate::harness::run_and_format($cmd);
        let name = $name;
        let name: &str = ::std::convert::AsRef::as_ref(&name);
        $settings.bind(|| ::insta::assert_snapshot!(name, snapshot));
        output
    }};
}
#[allow(unused_imports)]
pub(crate) use manifold_snapshot;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn sample(dir: &Path) {
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::write(dir.join("a/b/file"), b"hello").unwrap();
        fs::write(dir.join("a/empty"), b"").unwrap();
        fs::write(dir.join("a.c"), b"x").unwrap();
        symlink("b/file", dir.join("a/link")).unwrap();
        fs::set_permissions(dir.join("a/b/file"), fs::Permissions::from_mode(0o640)).unwrap();
    }

    #[test]
    fn tree_hash_same_tree_same_hash_whatever_the_order_of_creation() {
        let x = tempfile::tempdir().unwrap();
        let y = tempfile::tempdir().unwrap();
        sample(x.path());
        // the same tree, built in a different order
        fs::write(y.path().join("a.c"), b"x").unwrap();
        fs::create_dir(y.path().join("a")).unwrap();
        symlink("b/file", y.path().join("a/link")).unwrap();
        fs::write(y.path().join("a/empty"), b"").unwrap();
        fs::create_dir(y.path().join("a/b")).unwrap();
        fs::write(y.path().join("a/b/file"), b"hello").unwrap();
        fs::set_permissions(y.path().join("a/b/file"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(y.path(), fs::metadata(x.path()).unwrap().permissions()).unwrap();
        assert_eq!(tree_listing(x.path()), tree_listing(y.path()));
        assert_eq!(tree_hash(x.path()), tree_hash(y.path()));
        assert_eq!(tree_hash(x.path()).len(), 64);
    }

    #[test]
    fn tree_hash_sees_every_kind_of_change() {
        type Change = fn(&Path);
        let changes: &[(&str, Change)] = &[
            ("content", |d| {
                fs::write(d.join("a/b/file"), b"hellO").unwrap()
            }),
            ("mode", |d| {
                fs::set_permissions(d.join("a/b/file"), fs::Permissions::from_mode(0o644)).unwrap()
            }),
            ("sticky bit", |d| {
                fs::set_permissions(d.join("a/b"), fs::Permissions::from_mode(0o1755)).unwrap()
            }),
            ("symlink target", |d| {
                fs::remove_file(d.join("a/link")).unwrap();
                symlink("b/other", d.join("a/link")).unwrap();
            }),
            ("symlink replaced by file", |d| {
                fs::remove_file(d.join("a/link")).unwrap();
                fs::write(d.join("a/link"), b"b/file").unwrap();
            }),
            ("rename", |d| {
                fs::rename(d.join("a/empty"), d.join("a/empty2")).unwrap()
            }),
            ("new empty file", |d| {
                fs::write(d.join("a/new"), b"").unwrap()
            }),
            ("new empty dir", |d| {
                fs::create_dir(d.join("a/b/c")).unwrap()
            }),
            ("removed file", |d| fs::remove_file(d.join("a.c")).unwrap()),
        ];
        let base = tempfile::tempdir().unwrap();
        sample(base.path());
        let before = tree_hash(base.path());
        for (what, change) in changes {
            let d = tempfile::tempdir().unwrap();
            sample(d.path());
            fs::set_permissions(d.path(), fs::metadata(base.path()).unwrap().permissions())
                .unwrap();
            assert_eq!(tree_hash(d.path()), before, "copy differs before `{what}`");
            change(d.path());
            assert_ne!(
                tree_hash(d.path()),
                before,
                "tree_hash missed a change: {what}"
            );
        }
    }

    #[test]
    fn tree_hash_ignores_timestamps_and_knows_absence() {
        let d = tempfile::tempdir().unwrap();
        sample(d.path());
        let before = tree_hash(d.path());
        let f = fs::File::options()
            .write(true)
            .open(d.path().join("a/b/file"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(tree_hash(d.path()), before);

        let gone = d.path().join("nothing-here");
        assert_eq!(tree_listing(&gone), "(absent)\n");
        let empty = d.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert_ne!(tree_hash(&gone), tree_hash(&empty));
    }

    #[test]
    fn tree_listing_is_readable_and_escapes_odd_names() {
        let d = tempfile::tempdir().unwrap();
        sample(d.path());
        fs::write(d.path().join("new\nline"), b"").unwrap();
        let listing = tree_listing(d.path());
        let lines: Vec<&str> = listing.lines().collect();
        assert!(lines[0].starts_with(".\td "), "{listing}");
        assert!(lines.contains(&"a/link\tl -> b/file"), "{listing}");
        assert!(
            lines.contains(&"a/b/file\tf 0640 5 sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            "{listing}"
        );
        assert!(lines[7].starts_with("new\\nline\tf "), "{listing}");
        assert_eq!(lines.len(), 8, "{listing}");
    }

    #[test]
    fn redact_digests_and_short_ids() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(
            redact(&format!("Digest: {digest}")),
            "Digest: sha256:[DIGEST]"
        );
        assert_eq!(
            redact(&format!("blobs/sha256/{}", "ab".repeat(32))),
            "blobs/sha256/[DIGEST]"
        );
        assert_eq!(
            redact("demo/busybox   arm64   3f2a9c1b0d4e   1.9MB"),
            "demo/busybox   arm64   [ID]   1.9MB"
        );
        assert_eq!(redact("sha256:3f2a9c1b0d4e"), "sha256:[ID]");
        // neither longer nor shorter hex runs, nor words, are IDs
        assert_eq!(
            redact("3f2a9c1b0d4e5 3f2a9c1b0d4 linux/ppc64le"),
            "3f2a9c1b0d4e5 3f2a9c1b0d4 linux/ppc64le"
        );
    }

    #[test]
    fn redact_paths() {
        let root = TestRoot::new();
        let text = format!(
            "error: cannot open `{}/images/index.json`",
            root.path().display()
        );
        assert_eq!(
            redact(&text),
            "error: cannot open `[ROOT]/images/index.json`"
        );
        assert_eq!(
            root.redact(&text),
            "error: cannot open `[ROOT]/images/index.json`"
        );
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            redact(&format!("{}/x.tar", other.path().display())),
            "[TMP]/x.tar"
        );
        assert_eq!(
            redact(&format!("{REPO}/target/fixtures/busybox/arm64/rootfs.tar")),
            "[REPO]/target/fixtures/busybox/arm64/rootfs.tar"
        );
    }

    #[test]
    fn redact_times() {
        assert_eq!(
            redact(r#""created": "2024-05-01T12:34:56.123456789Z","#),
            r#""created": "[TIMESTAMP]","#
        );
        assert_eq!(redact("2024-05-01 12:34:56 +0000 UTC"), "[TIMESTAMP]");
        assert_eq!(redact("1970-01-01T00:00:00+02:00"), "[TIMESTAMP]");
        for ago in [
            "3 seconds ago",
            "Less than a second ago",
            "About a minute ago",
            "2 hours ago",
            "an hour ago",
        ] {
            assert_eq!(
                redact(&format!("CREATED {ago}.")),
                "CREATED [AGO].",
                "{ago}"
            );
        }
        assert_eq!(redact("Up 5 minutes"), "Up [DURATION]");
        assert_eq!(
            redact("pulled in 1.25s (took 350ms, 1m2.5s)"),
            "pulled in [DURATION] (took [DURATION], [DURATION])"
        );
        assert_eq!(redact("done in 3.4 seconds"), "done in [DURATION]");
        // things that merely look close are kept
        assert_eq!(
            redact("linux/s390x 12 layers 1.9MB k3s"),
            "linux/s390x 12 layers 1.9MB k3s"
        );
    }

    #[test]
    fn insta_settings_apply_the_same_filters() {
        let root = TestRoot::new();
        let text = format!(
            "{}/blobs/sha256:{} 2 minutes ago",
            root.path().display(),
            "f".repeat(64)
        );
        root.insta_settings().bind(|| {
            insta::assert_snapshot!(text, @"[ROOT]/blobs/sha256:[DIGEST] [AGO]");
        });
        assert_eq!(root.redact(&text), "[ROOT]/blobs/sha256:[DIGEST] [AGO]");
    }

    #[test]
    fn require_knows_programs_and_root() {
        assert!(find_program("sh").is_some());
        assert!(find_program("definitely-not-a-program-manifold").is_none());
        if !require_all() {
            assert!(!require("definitely-not-a-program-manifold"));
        }
        assert!(require("sh"));
    }

    #[test]
    fn fixtures_are_built_for_every_architecture() {
        let listed = fs::read_to_string(fixtures().join("busybox/platforms.txt")).unwrap();
        let expected: String = BUSYBOX_ARCHES
            .iter()
            .map(|(a, p)| format!("{a} {p}\n"))
            .collect();
        assert_eq!(listed, expected);
        for (arch, _) in BUSYBOX_ARCHES {
            for compression in ["tar", "tar.gz", "tar.zst"] {
                assert!(
                    fs::metadata(busybox_rootfs(arch, compression))
                        .unwrap()
                        .len()
                        > 100_000
                );
            }
            let tree = busybox_tree(arch);
            let busybox = fs::symlink_metadata(tree.join("bin/busybox")).unwrap();
            assert!(busybox.is_file() && busybox.mode() & 0o7777 == 0o755);
            assert_eq!(
                fs::read_link(tree.join("bin/sh")).unwrap(),
                Path::new("busybox")
            );
            assert_eq!(
                fs::metadata(tree.join("tmp")).unwrap().mode() & 0o7777,
                0o1777
            );
        }
        assert_eq!(platform_of("armhf"), "linux/arm/v7");
    }

    #[test]
    fn busybox_table_matches_fixtures_script() {
        // the platforms table above must agree with scripts/fixtures.sh (no download needed)
        let script = fs::read_to_string(Path::new(REPO).join("scripts/fixtures.sh")).unwrap();
        for (arch, platform) in BUSYBOX_ARCHES {
            assert!(
                script.contains(&format!("[{arch}]={platform}")),
                "scripts/fixtures.sh does not map {arch} to {platform}"
            );
        }
    }
}
