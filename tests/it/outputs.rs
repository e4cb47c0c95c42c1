//! What the user sees when something goes wrong, pinned (issue 10, defect 4), and what happens
//! when stdout's reader goes away (defect 3): the command ends quietly with status 0, as
//! ripgrep does, while a broken pipe anywhere else is still an error.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use crate::harness::{
    self, COMMAND_TIMEOUT, OtherUser, TestRoot, manifold_snapshot, skip_unless, tree_hash,
};
use crate::local::import;

/// `root` with `busybox:1` (linux/amd64) imported.
fn root_with_busybox() -> TestRoot {
    let root = TestRoot::new();
    import(&root, "amd64", "linux/amd64", "demo/busybox:1");
    root
}

// --- error outputs ----------------------------------------------------------------------------

#[test]
fn bad_reference() {
    let root = root_with_busybox();
    let before = tree_hash(root.path());
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold().args(["tag", "demo/busybox:1", "demo/Busy:box"]),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid reference `demo/Busy:box`: repository name must be lowercase
    hint: references look like `name`, `name:tag`, `registry:port/name:tag` or `name@sha256:…`, in lower case
    ");
    manifold_snapshot!(root.insta_settings(), root.manifold().args(["inspect", "a//b"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid reference `a//b`: invalid repository component `` (lower-case letters and digits, separated by `.`, `_`, `__` or `-`)
    hint: references look like `name`, `name:tag`, `registry:port/name:tag` or `name@sha256:…`, in lower case
    ");
    assert_eq!(tree_hash(root.path()), before, "the store changed");
}

#[test]
fn bad_platform() {
    let root = root_with_busybox();
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold().args(["inspect", "--platform", "linux/arm64/v8/x", "demo/busybox:1"]),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid platform `linux/arm64/v8/x`: expected `os[(version+feature…)]/architecture[/variant]`
    hint: platforms look like `linux/arm64`, `linux/arm/v7`, `linux/amd64` or `arm64`
    ");
    manifold_snapshot!(
        root.insta_settings(),
        root.manifold().args(["pull", "--platform", "linux/ar@m", "127.0.0.1:9/x:1"]),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid platform `linux/ar@m`: invalid component `ar@m` (letters, digits, `_`, `.` and `-` only)
    hint: platforms look like `linux/arm64`, `linux/arm/v7`, `linux/amd64` or `arm64`
    ");
}

#[test]
fn image_not_found() {
    let root = root_with_busybox();
    let before = tree_hash(root.path());
    manifold_snapshot!(root.insta_settings(), root.manifold().args(["inspect", "demo/missing"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: no such image: `demo/missing`
    hint: `manifold images` lists the images in the store
    ");
    assert_eq!(tree_hash(root.path()), before, "the store changed");
    // (`rmi` creates the store's empty snapshot and container directories on its way)
    manifold_snapshot!(root.insta_settings(), root.manifold().args(["rmi", "demo/busybox:2"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: no such image: `demo/busybox:2`
    hint: `manifold images` lists the images in the store
    error: 1 of 1 images could not be removed
    ");
}

#[test]
fn unreachable_registry() {
    let root = TestRoot::new();
    // a port nothing listens on: bound, then released
    let port = crate::registry_harness::free_port();
    let mut settings = root.insta_settings();
    settings.add_filter(&format!(r"\b127\.0\.0\.1:{port}\b"), "127.0.0.1:[PORT]");
    manifold_snapshot!(
        settings,
        root.manifold().args(["pull", &format!("127.0.0.1:{port}/demo/busybox:1")]),
        @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: cannot reach `127.0.0.1:[PORT]`: connection refused
      caused by: error sending request for url (http://127.0.0.1:[PORT]/v2/)
      caused by: client error (Connect)
      caused by: tcp connect error
      caused by: Connection refused (os error 111)
    hint: is the registry running at `127.0.0.1:[PORT]`? nothing accepts connections there
    ");
}

#[test]
fn bad_dockerfile_line() {
    let root = TestRoot::new();
    let context = root.scratch("context");
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY . /\nRUNN echo hello\n",
    )
    .unwrap();
    manifold_snapshot!(root.insta_settings(), root.manifold().arg("build").arg(&context), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: Dockerfile:3: unknown instruction 'RUNN'
    ");
}

/// `binfmt install` as a plain user (one the test creates): a clear error, not a permission
/// failure half-way through.
#[test]
fn binfmt_install_not_root() {
    skip_unless!("root", "useradd");
    let user = OtherUser::create("mfsec-cli-help-1");
    // a copy of the binary the user can reach, wherever the repository is
    let dir = tempfile::Builder::new()
        .prefix("manifold-bin-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("manifold");
    fs::copy(env!("CARGO_BIN_EXE_manifold"), &binary).unwrap();
    let mut cmd = user.command(&binary);
    cmd.env("NO_COLOR", "1")
        .env("COLUMNS", harness::COLUMNS)
        .env("HOME", dir.path())
        .args(["binfmt", "install", "linux/arm64"]);
    let mut cmd = assert_cmd::Command::from_std(cmd);
    manifold_snapshot!(&mut cmd, @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: cannot register `qemu-aarch64`
      caused by: registering `qemu-aarch64` needs root: binfmt_misc handlers are registered for the whole machine
    hint: run it as root: `sudo manifold binfmt install linux/arm64/v8`
    error: 1 of 1 handlers could not be registered
    ");
}

#[test]
fn unknown_flag_command_and_missing_argument() {
    manifold_snapshot!(harness::manifold().args(["images", "--bogus"]), @"
    success: false
    exit_code: 2
    ----- stdout -----

    ----- stderr -----
    error: unexpected argument '--bogus' found

      tip: to pass '--bogus' as a value, use '-- --bogus'

    Usage: manifold images [OPTIONS] [REPOSITORY]

    For more information, try '--help'.
    ");
    manifold_snapshot!(harness::manifold().arg("imagez"), @"
    success: false
    exit_code: 2
    ----- stdout -----

    ----- stderr -----
    error: unrecognized subcommand 'imagez'

      tip: a similar subcommand exists: 'images'

    Usage: manifold [OPTIONS] <COMMAND>

    For more information, try '--help'.
    ");
    manifold_snapshot!(harness::manifold().arg("tag"), @"
    success: false
    exit_code: 2
    ----- stdout -----

    ----- stderr -----
    error: the following required arguments were not provided:
      <SOURCE>
      <TARGET>

    Usage: manifold tag <SOURCE> <TARGET>

    For more information, try '--help'.
    ");
}

/// `manifold` alone prints the help to stderr and fails, as docker does.
#[test]
fn no_command() {
    let out = harness::manifold().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let help = harness::manifold().arg("--help").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&help.stdout)
    );
}

// --- a closed stdout ---------------------------------------------------------------------------

/// Run `cmd` with stdout a pipe whose reader is already closed: every write to it fails with
/// EPIPE (Rust ignores SIGPIPE). Killed after [`COMMAND_TIMEOUT`].
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; pid is our child's.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{cmd:?} did not finish in {COMMAND_TIMEOUT:?}");
        }
    }
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let root = root_with_busybox();
    let scratch = root.scratch("out");
    let archive = scratch.join("busybox.tar");
    root.manifold()
        .args(["save", "-o"])
        .arg(&archive)
        .arg("demo/busybox:1")
        .assert()
        .success();
    let cases: &[&[&str]] = &[
        &["images"],
        &["images", "--format", "json"],
        &["images", "-q"],
        &["images", "--digests", "--no-trunc"],
        &["inspect", "demo/busybox:1"],
        &["inspect", "--raw", "demo/busybox:1"],
        &["history", "demo/busybox:1"],
        &["history", "--format", "json", "demo/busybox:1"],
        &["save", "demo/busybox:1"],
        &["save", "--format", "oci", "demo/busybox:1"],
        &["tag", "demo/busybox:1", "demo/busybox:2"],
        &["rmi", "demo/busybox:2"],
        &["manifest", "inspect", "demo/busybox:1"],
        &["platforms"],
        &["platforms", "--format", "json"],
        &["binfmt", "ls"],
        &["ps", "-a"],
        &["ps", "-a", "--format", "json"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["--help"],
        &["images", "--help"],
        &["help"],
        &["--version"],
    ];
    for args in cases {
        let out = with_closed_stdout(root.manifold_std().args(*args));
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).as_ref()
            ),
            (Some(0), ""),
            "manifold {}",
            args.join(" ")
        );
    }
    // a command that changes the store did its work before it printed, for every argument
    for tag in ["demo/busybox:3", "demo/busybox:4"] {
        root.manifold()
            .args(["tag", "demo/busybox:1", tag])
            .assert()
            .success();
    }
    let out =
        with_closed_stdout(
            root.manifold_std()
                .args(["rmi", "demo/busybox:3", "demo/busybox:4"]),
        );
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    for tag in ["demo/busybox:3", "demo/busybox:4"] {
        root.manifold().args(["inspect", tag]).assert().code(125);
    }
    let out = with_closed_stdout(root.manifold_std().arg("load").arg("-i").arg(&archive));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let out = with_closed_stdout(
        root.manifold_std()
            .args(["import", "--platform", "linux/amd64"])
            .arg(harness::busybox_rootfs("amd64", "tar"))
            .arg("demo/imported:1"),
    );
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    root.manifold()
        .args(["inspect", "demo/imported:1"])
        .assert()
        .success();
}

/// The registry commands too: what they were asked to do is done, the line they print is lost.
#[test]
fn a_closed_stdout_ends_registry_commands_quietly() {
    skip_unless!("docker-registry");
    use crate::registry_harness::{Auth, TestRegistry};
    let registry = TestRegistry::start(Auth::Anonymous);
    let host = registry.host();
    let root = root_with_busybox();
    let image = format!("{host}/demo/busybox:1");
    let copied = format!("{host}/demo/copied:1");
    let quiet = |args: &[&str]| {
        let out = with_closed_stdout(root.manifold_std().args(args));
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).as_ref()
            ),
            (Some(0), ""),
            "manifold {}",
            args.join(" ")
        );
    };
    quiet(&["push", "demo/busybox:1", &image]);
    quiet(&["copy", &image, &copied]);
    quiet(&["tags", &format!("{host}/demo/busybox")]);
    quiet(&["tags", "--format", "json", &format!("{host}/demo/busybox")]);
    quiet(&["search", &host]);
    quiet(&["pull", "-q", &copied]);
    quiet(&["manifest", "inspect", &copied]);
    let out = root
        .manifold()
        .args(["tags", &format!("{host}/demo/copied")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
}

/// A failure that is not stdout's is reported as usual when stdout is closed too.
#[test]
fn a_closed_stdout_does_not_hide_other_errors() {
    let root = root_with_busybox();
    let out = with_closed_stdout(root.manifold_std().args(["inspect", "demo/missing"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: no such image: `demo/missing`"),
        "{out:?}"
    );
    // stdout to a file on a full disk: an error, not a quiet exit
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = root
        .manifold_std()
        .args(["images"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "{out:?}"
    );
}

/// A registry that hangs up in the middle of an upload gives the client a broken pipe (or a
/// reset) of its own: that one is an error, whatever becomes of stdout.
#[test]
fn a_broken_pipe_to_a_registry_is_an_error() {
    skip_unless!("docker-registry");
    use crate::registry_harness::{Auth, Fault, FaultProxy, Rule, TestRegistry, big_image};
    let registry = TestRegistry::start(Auth::Anonymous);
    let proxy = FaultProxy::start(registry.port());
    let root = TestRoot::new();
    let image = format!("{}/big/blob:1", proxy.host());
    big_image(&root, &image);
    for method in ["PATCH", "PUT", "POST"] {
        proxy.add(Rule::new(
            method,
            "/blobs/uploads/",
            1000,
            Fault::ResetRequestAfter(1 << 20),
        ));
    }
    let out = with_closed_stdout(root.manifold_std().args(["push", &image]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    // (after the notice that large blobs go in resumable chunks once a stream broke off)
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
    assert!(
        proxy.seen().iter().any(|s| s.fault.is_some()),
        "the upload was cut: {:?}",
        proxy.seen()
    );
}
