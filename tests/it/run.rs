//! `run`, `ps`, `rm`, `commit` with real runc, real overlayfs and real QEMU, as root: every
//! busybox platform, exit codes, environment, working directory, user, bind mounts, a terminal
//! through a pty, signals, whiteouts, commit round trips, matrix runs, hostile layers, many
//! layers, and what a killed manifold leaves behind.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

use crate::binfmt::BinfmtLease;
use crate::harness::{BUSYBOX_ARCHES, TestRoot, manifold, skip_unless, stderr_of, tree_hash};
use crate::local::{import, multiarch};
use manifold::oci::{Descriptor, Digest, Manifest, Parsed, media_type};
use manifold::reference::Reference;
use manifold::store::Store;

// --- helpers -----------------------------------------------------------------------------------

/// Raw tar entries, so tests can write what well-behaved tools refuse (`../`, absolute paths).
#[derive(Default)]
pub struct RawTar(Vec<u8>);

impl RawTar {
    pub fn entry(&mut self, kind: u8, name: &str, link: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        {
            let b = h.as_mut_bytes();
            b[..name.len()].copy_from_slice(name.as_bytes());
            b[157..157 + link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_000_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0
            .extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
        self
    }
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(b'0', name, "", data, 0o644)
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(b'5', name, "", &[], 0o755)
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'2', name, target, &[], 0o777)
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'1', name, target, &[], 0o644)
    }
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

/// A new image `name`: the single-platform image `base` plus uncompressed tar layers on top.
pub fn with_layers(root: &TestRoot, base: &str, layers: &[Vec<u8>], name: &str) {
    let store = Store::open(root.path()).unwrap().begin().unwrap();
    let base = store.resolve(&Reference::parse(base).unwrap()).unwrap();
    let manifest = store.read_manifest(&base.digest).unwrap().value;
    let mut config = store.read_config(&manifest.config.digest).unwrap().value;
    let mut new = Manifest { ..manifest.clone() };
    for l in layers {
        let digest = store.put_bytes(l).unwrap();
        config.rootfs.diff_ids.push(digest.clone());
        new.layers.push(Descriptor::new(
            media_type::OCI_LAYER,
            digest,
            l.len() as u64,
        ));
    }
    let config = Parsed::from_value(config);
    store.put_bytes(&config.bytes).unwrap();
    new.config = config.descriptor(media_type::OCI_CONFIG);
    let new = Parsed::from_value(new);
    store.put_bytes(&new.bytes).unwrap();
    let mut desc = new.descriptor(media_type::OCI_MANIFEST);
    desc.platform = base.platform.clone();
    store.tag(&Reference::parse(name).unwrap(), &desc).unwrap();
}

pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// busybox for the host, as `busybox:latest`.
pub fn host_busybox(root: &TestRoot) {
    #[cfg(target_arch = "x86_64")]
    import(root, "amd64", "linux/amd64", "busybox:latest");
    #[cfg(target_arch = "aarch64")]
    import(root, "arm64", "linux/arm64", "busybox:latest");
}

fn ps_json(root: &TestRoot) -> Vec<Value> {
    let out = root
        .manifold()
        .args(["ps", "-a", "--format", "json"])
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// --- tests -------------------------------------------------------------------------------------

/// `uname -m` under each of the nine busybox platforms of one multi-platform image.
#[test]
fn uname_under_every_busybox_platform() {
    skip_unless!("root", "runc", "qemu-aarch64-static");
    let _lease = BinfmtLease::shared();
    let root = TestRoot::new();
    multiarch(&root, "multi:all", BUSYBOX_ARCHES, &[]);
    let host_is_x86 = cfg!(target_arch = "x86_64");
    for (debarch, platform) in BUSYBOX_ARCHES {
        let want: &[&str] = match *debarch {
            "amd64" => &["x86_64"],
            "arm64" => &["aarch64"],
            "armhf" | "armel" => &["armv7l"],
            // A 32-bit x86 program on a 64-bit x86 kernel sees the kernel's machine (docker too).
            "i386" if host_is_x86 => &["x86_64"],
            "i386" => &["i686"],
            "mips64el" => &["mips64"],
            "ppc64el" => &["ppc64le"],
            "s390x" => &["s390x"],
            "riscv64" => &["riscv64"],
            other => panic!("{other}"),
        };
        let out = root
            .manifold()
            .args([
                "run",
                "--rm",
                "--platform",
                platform,
                "multi:all",
                "uname",
                "-m",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{platform}: {}", stderr_of(&out));
        let got = stdout_of(&out);
        assert!(
            want.contains(&got.trim()),
            "{platform}: uname -m said {got:?}, want {want:?}"
        );
    }
    // Nothing left: every container went with --rm.
    assert!(ps_json(&root).is_empty());
}

#[test]
fn exit_codes_like_docker() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let code = |args: &[&str]| {
        root.manifold()
            .args(["run", "--rm", "busybox"])
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(code(&["true"]).status.code(), Some(0));
    assert_eq!(code(&["false"]).status.code(), Some(1));
    assert_eq!(code(&["sh", "-c", "exit 7"]).status.code(), Some(7));
    // A process killed by a signal: 128 + 9 (PID 1 itself ignores signals from inside; the
    // signal test kills it from outside).
    assert_eq!(
        code(&["sh", "-c", "sh -c 'kill -9 $$'; exit $?"])
            .status
            .code(),
        Some(137)
    );
    let out = code(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr_of(&out).contains("executable file not found in $PATH"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(code(&["/no/such/file"]).status.code(), Some(127));
    let out = code(&["/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr_of(&out).contains("permission denied"));
    assert_eq!(code(&["/bin"]).status.code(), Some(126));
    // manifold's own failures: 125.
    // An image ID that matches nothing (names are pulled: see the registry test).
    let out = root
        .manifold()
        .args(["run", "--rm", "0123456789ab", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr_of(&out).contains("no such image"),
        "{}",
        stderr_of(&out)
    );
    let out = code(&["-u", "ghost", "true"]);
    let out = if out.status.code() == Some(125) {
        out
    } else {
        panic!("{}", stderr_of(&out))
    };
    assert!(stderr_of(&out).contains("unable to find user ghost"));
    let out = root
        .manifold()
        .args([
            "run",
            "--rm",
            "--platform",
            "linux/s390x",
            "busybox",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr_of(&out).contains("linux/amd64") || cfg!(not(target_arch = "x86_64")),
        "{}",
        stderr_of(&out)
    );
    // A file the kernel cannot execute: the runtime's own failure, mapped to 126.
    with_layers(
        &root,
        "busybox",
        &[RawTar::default()
            .entry(b'0', "bin/junk", "", b"not a program", 0o755)
            .finish()],
        "junk",
    );
    let out = root
        .manifold()
        .args(["run", "--rm", "junk", "/bin/junk"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("exec format error"),
        "{}",
        stderr_of(&out)
    );
    // Any OCI runtime with runc's command line: here a wrapper that logs and runs runc.
    let wrapper = root.scratch("runtime").join("my-runtime");
    let log = root.scratch("runtime").join("log");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec runc \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    root.manifold()
        .arg("run")
        .arg("--rm")
        .arg("--runtime")
        .arg(&wrapper)
        .args(["busybox", "echo", "via-wrapper"])
        .assert()
        .success()
        .stdout("via-wrapper\n");
    assert!(fs::read_to_string(&log).unwrap().contains(" run --bundle "));
    root.manifold()
        .args([
            "run",
            "--rm",
            "--runtime",
            "no-such-runtime",
            "busybox",
            "true",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "OCI runtime `no-such-runtime` not found",
        ));
    // Without --rm, failed starts stay listed with their status.
    root.manifold()
        .args(["run", "--name", "missing", "busybox", "nope"])
        .assert()
        .code(127);
    let ps = ps_json(&root);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["Names"], "missing");
    assert_eq!(ps[0]["ExitCode"], 127);
    root.manifold().args(["rm", "missing"]).assert().success();
}

#[test]
fn environment_workdir_and_user() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    #[cfg(target_arch = "x86_64")]
    let (arch, platform) = ("amd64", "linux/amd64");
    #[cfg(target_arch = "aarch64")]
    let (arch, platform) = ("arm64", "linux/arm64");
    root.manifold()
        .args(["import", "--platform", platform])
        .args([
            "-c",
            "ENV FROM_IMAGE=image OVERRIDDEN=image",
            "-c",
            "WORKDIR /srv/app",
            "-c",
            r#"CMD ["sh"]"#,
        ])
        .arg(crate::harness::busybox_rootfs(arch, "tar.gz"))
        .arg("envimg")
        .assert()
        .success();
    let env_file = root.scratch("env").join("list");
    fs::write(&env_file, "# comment\nFROM_FILE=file\n\nOVERRIDDEN=file\n").unwrap();
    let out = root
        .manifold()
        .env("PASSED_THROUGH", "host-value")
        .args(["run", "--rm", "--network", "host", "--env-file"])
        .arg(&env_file)
        .args(["-e", "OVERRIDDEN=flag", "-e", "PASSED_THROUGH", "-e", "UNSET_ON_HOST"])
        .args(["envimg", "sh", "-c", "echo $FROM_IMAGE $FROM_FILE $OVERRIDDEN $PASSED_THROUGH ${UNSET_ON_HOST-unset}; pwd; echo $HOME; cat /etc/hostname"])
        .assert()
        .success()
        .get_output()
        .clone();
    let lines: Vec<String> = stdout_of(&out).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "image file flag host-value unset");
    assert_eq!(lines[1], "/srv/app", "the image's WORKDIR, created");
    assert_eq!(lines[2], "/root");
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    assert_eq!(lines[3], hostname, "--network host keeps the host's name");

    root.manifold()
        .args([
            "run",
            "--rm",
            "-w",
            "/made/for/me",
            "-u",
            "nobody",
            "envimg",
            "sh",
            "-c",
            "pwd; id; echo $HOME",
        ])
        .assert()
        .success()
        .stdout("/made/for/me\nuid=65534(nobody) gid=65534(nogroup)\n/nonexistent\n");
    root.manifold()
        .args(["run", "--rm", "-u", "1234:5678", "envimg", "id"])
        .assert()
        .success()
        .stdout("uid=1234 gid=5678\n");
    root.manifold()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--hostname",
            "boxed",
            "envimg",
            "sh",
            "-c",
            "cat /etc/hostname; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '",
        ])
        .assert()
        .success()
        .stdout("boxed\nlo\n");
    root.manifold()
        .args(["run", "--rm", "-w", "relative", "envimg", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("absolute path"));
    root.manifold()
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            "envimg",
            "from",
            "entrypoint",
        ])
        .assert()
        .success()
        .stdout("from entrypoint\n");
}

/// `--root` relative to the working directory: the runtime is handed paths under it (the
/// bundle, /etc/hosts) from another directory, so the store makes it absolute first.
#[test]
fn a_relative_root_runs_containers() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let (parent, name) = (
        root.path().parent().unwrap(),
        root.path().file_name().unwrap(),
    );
    manifold()
        .current_dir(parent)
        .arg("--root")
        .arg(name)
        .args([
            "--progress",
            "none",
            "run",
            "--rm",
            "busybox",
            "cat",
            "/etc/hosts",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("localhost"));
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let rw = root.scratch("rw");
    let ro = root.scratch("ro");
    fs::write(ro.join("given"), "from the host\n").unwrap();
    let out = root
        .manifold()
        .arg("run")
        .arg("--rm")
        .arg("-v")
        .arg(format!("{}:/data", rw.display()))
        .arg("-v")
        .arg(format!("{}:/config:ro", ro.display()))
        .args([
            "busybox",
            "sh",
            "-c",
            "echo written > /data/out; cat /config/given; echo x > /config/nope || echo refused",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "from the host\nrefused\n");
    assert!(
        stderr_of(&out).contains("Read-only file system"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(fs::read_to_string(rw.join("out")).unwrap(), "written\n");
    assert!(!ro.join("nope").exists());
    // A missing source directory is created, as docker's -v does.
    let made = root.scratch("parent").join("made");
    root.manifold()
        .arg("run")
        .arg("--rm")
        .arg("-v")
        .arg(format!("{}:/m", made.display()))
        .args(["busybox", "true"])
        .assert()
        .success();
    assert!(made.is_dir());
    // --read-only: the root cannot be written, mounts still can.
    let out = root
        .manifold()
        .args(["run", "--rm", "--read-only"])
        .arg("-v")
        .arg(format!("{}:/data", rw.display()))
        .args([
            "busybox",
            "sh",
            "-c",
            "touch /nope || echo root-refused; echo ok > /data/ro-run",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out), "root-refused\n", "{}", stderr_of(&out));
    assert!(rw.join("ro-run").is_file());
    root.manifold()
        .args(["run", "--rm", "-v", "relative:/x", "busybox", "true"])
        .assert()
        .code(125);
}

/// `-t` gives a real terminal, driven through a pty; `-i` feeds it stdin.
#[test]
fn tty_through_a_pty() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let run_in_pty = |args: &[&str], input: &[u8]| -> (Option<i32>, String) {
        let master =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_manifold"));
        cmd.arg("--root")
            .arg(root.path())
            .args(["--progress", "none"])
            .args(args)
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        // A session of its own with the pty as controlling terminal, like a shell gives.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        // Only the child may hold the terminal's other end, or the master never reads EOF.
        drop(cmd);
        drop(slave);
        let mut master = fs::File::from(master);
        master.write_all(input).unwrap();
        let mut out = Vec::new();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
            out
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "manifold -t did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = reader.join().unwrap();
        (status.code(), String::from_utf8_lossy(&out).into_owned())
    };
    let (code, out) = run_in_pty(
        &[
            "run",
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo is-a-tty; echo TERM=$TERM",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("is-a-tty"), "{out}");
    assert!(out.contains("TERM=xterm"), "{out}");
    let (code, out) = run_in_pty(
        &["run", "--rm", "-it", "busybox", "sh"],
        b"echo hello-$((6*7))\nexit 3\n",
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("hello-42"), "{out}");
    // Without a terminal, -t is refused clearly.
    root.manifold()
        .args(["run", "--rm", "-t", "busybox", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("not a TTY"));
}

#[test]
fn signals_are_forwarded_to_the_container() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let mut child = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .arg("--root")
        .arg(root.path())
        .args(["--progress", "none", "run", "--rm", "busybox", "sh", "-c"])
        .arg("trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));

    // The container's init killed from outside: 128 + 9, as docker reports it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .arg("--root")
        .arg(root.path())
        .args([
            "--progress",
            "none",
            "run",
            "--name",
            "killed",
            "busybox",
            "sh",
            "-c",
            "echo ready; sleep 300",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let ps = ps_json(&root);
    let id = ps[0]["ID"].as_str().unwrap();
    let runc = Command::new("runc")
        .arg("--root")
        .arg(root.path().join("runtime-v1/runc"))
        .args(["kill", id, "KILL"])
        .status()
        .unwrap();
    assert!(runc.success());
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_eq!(ps_json(&root)[0]["ExitCode"], 137);
}

/// A file deleted in an upper layer is gone; an opaque directory hides what is below it.
#[test]
fn whiteouts_and_opaque_directories() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let layer1 = RawTar::default()
        .dir("data/")
        .file("data/a", b"a")
        .file("data/b", b"b")
        .dir("keep/")
        .file("keep/old", b"old")
        .finish();
    let layer2 = RawTar::default()
        .file("data/.wh.a", b"")
        .file("bin/.wh.cat", b"")
        .dir("keep/")
        .file("keep/.wh..wh..opq", b"")
        .file("keep/new", b"new")
        .finish();
    with_layers(&root, "busybox", &[layer1, layer2], "layered");
    root.manifold()
        .args([
            "run",
            "--rm",
            "layered",
            "sh",
            "-c",
            "ls /data; ls /keep; test -e /bin/cat || echo no-cat",
        ])
        .assert()
        .success()
        .stdout("b\nnew\nno-cat\n");
}

#[test]
fn commit_round_trip() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    root.manifold()
        .args(["run", "--name", "builder", "busybox", "sh", "-c"])
        .arg("echo data > /new-file; rm /bin/cat; mkdir -p /etc/conf.d && echo x > /etc/conf.d/x; chmod 4755 /new-file")
        .assert()
        .success();
    let ps = ps_json(&root);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["State"], "exited");
    assert_eq!(ps[0]["ExitCode"], 0);
    // The image cannot go while a container was made from it.
    root.manifold()
        .args(["rmi", "busybox"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("used by 1 container"));
    let digest = root
        .manifold()
        .args([
            "commit",
            "-c",
            "ENV COMMITTED=yes",
            "-c",
            r#"CMD ["sh", "-c", "test -e /bin/cat && echo cat-is-here || echo cat-is-gone"]"#,
            "-m",
            "made by a test",
            "builder",
            "committed:1",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let digest = String::from_utf8(digest).unwrap();
    assert!(Digest::parse(digest.trim()).is_ok(), "{digest}");
    root.manifold()
        .args(["run", "--rm", "committed:1"])
        .assert()
        .success()
        .stdout("cat-is-gone\n");
    root.manifold()
        .args([
            "run",
            "--rm",
            "committed:1",
            "sh",
            "-c",
            "echo $COMMITTED; ls -l /new-file | cut -c1-10; ls /etc/conf.d",
        ])
        .assert()
        .success()
        .stdout("yes\n-rwsr-xr-x\nx\n");
    let history = root
        .manifold()
        .args(["history", "--no-trunc", "committed:1"])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&history.get_output().stdout).contains("made by a test"));
    // The layer holds OCI whiteouts.
    let store = Store::open(root.path()).unwrap();
    let desc = store
        .resolve(&Reference::parse("committed:1").unwrap())
        .unwrap();
    let m = store.read_manifest(&desc.digest).unwrap().value;
    let top = m.layers.last().unwrap();
    assert_eq!(top.media_type, media_type::OCI_LAYER_GZIP);
    let names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(
        store.open_blob(&top.digest).unwrap(),
    ))
    .entries()
    .unwrap()
    .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
    .collect();
    assert!(names.contains(&"bin/.wh.cat".to_string()), "{names:?}");
    // -f untags, the container keeps its image's blobs.
    root.manifold()
        .args(["rmi", "-f", "busybox"])
        .assert()
        .success();
    root.manifold()
        .args(["prune", "-a", "-f"])
        .assert()
        .success();
    root.manifold()
        .args(["commit", "builder", "committed:2"])
        .assert()
        .success();
    root.manifold()
        .args(["rm", "builder"])
        .assert()
        .success()
        .stdout("builder\n");
    assert!(ps_json(&root).is_empty());
    root.manifold()
        .args([
            "run",
            "--rm",
            "committed:2",
            "sh",
            "-c",
            "read line < /new-file; echo $line",
        ])
        .assert()
        .success()
        .stdout("data\n");
}

#[test]
fn matrix_run_over_the_image_platforms() {
    skip_unless!("root", "runc", "qemu-aarch64-static", "qemu-s390x-static");
    let _lease = BinfmtLease::shared();
    let root = TestRoot::new();
    multiarch(
        &root,
        "multi:3",
        &[
            ("amd64", "linux/amd64"),
            ("arm64", "linux/arm64"),
            ("s390x", "linux/s390x"),
        ],
        &[],
    );
    let out = root
        .manifold()
        .args(["run", "--rm", "--platform", "all", "multi:3", "uname", "-m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut lines: Vec<String> = stdout_of(&out).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "[linux/amd64] x86_64",
            "[linux/arm64] aarch64",
            "[linux/s390x] s390x"
        ]
    );
    let err = stderr_of(&out);
    let summary: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("PLATFORM"))
        .collect();
    assert_eq!(summary.len(), 4, "{err}");
    assert!(summary[0].contains("EXIT") && summary[0].contains("TIME"));
    for (line, p) in summary[1..]
        .iter()
        .zip(["linux/amd64", "linux/arm64", "linux/s390x"])
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], p);
        assert_eq!(cols[1], "0");
        assert!(cols[2].ends_with('s'));
    }
    // A platform that fails makes the run fail; stderr is prefixed too.
    let out = root
        .manifold()
        .args([
            "run",
            "--rm",
            "--platform",
            "linux/amd64,linux/arm64",
            "multi:3",
            "sh",
            "-c",
        ])
        .arg("echo to-stderr >&2; test $(uname -m) = x86_64 || exit 3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("[linux/arm64] to-stderr") && err.contains("[linux/amd64] to-stderr"),
        "{err}"
    );
    let arm = err.lines().find(|l| l.starts_with("linux/arm64 ")).unwrap();
    assert_eq!(arm.split_whitespace().nth(1), Some("3"));
    // A platform the image lacks: a clear error listing what it has.
    let out = root
        .manifold()
        .args([
            "run",
            "--rm",
            "--platform",
            "linux/amd64,linux/riscv64",
            "multi:3",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(
        err.contains("linux/riscv64") && err.contains("linux/s390x"),
        "{err}"
    );
    root.manifold()
        .args(["run", "--platform", "all", "-t", "multi:3", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("matrix"));
}

/// The hostile layers: the host is untouched, and the run works contained or fails clearly.
#[test]
fn hostile_layers_stay_in_their_snapshot() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let host = root.scratch("host-target");
    fs::write(host.join("secret"), "host file\n").unwrap();
    let host_rel = host.to_str().unwrap().trim_start_matches('/').to_string();
    let etc_before = tree_hash(Path::new("/etc"));
    let host_before = tree_hash(&host);
    let scratch_parent = host.parent().unwrap().to_path_buf();
    let parent_before = tree_hash(&scratch_parent);

    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "dotdot",
            RawTar::default()
                .file("../../../../../../escaped", b"x")
                .file(&format!("../../../{host_rel}/secret"), b"overwritten")
                .finish(),
            None,
        ),
        (
            "abs-symlink",
            RawTar::default()
                .symlink("evil", &format!("/{host_rel}"))
                .file("evil/secret", b"through the link")
                .file("evil/planted", b"p")
                .finish(),
            None,
        ),
        (
            "etc-symlink",
            RawTar::default()
                .symlink("etc-link", "/etc")
                .file("etc-link/shadow-planted", b"p")
                .finish(),
            None,
        ),
        (
            "hardlink-host",
            RawTar::default()
                .hardlink("stolen", &format!("/{host_rel}/secret"))
                .finish(),
            Some("not in the layer"),
        ),
        (
            "hardlink-passwd",
            RawTar::default()
                .hardlink("passwd-copy", "../../../../etc/passwd")
                .finish(),
            Some("not in the layer"),
        ),
        (
            "symlink-loop",
            RawTar::default()
                .symlink("loop-a", "loop-b")
                .symlink("loop-b", "loop-a")
                .file("loop-a/x", b"x")
                .finish(),
            Some("loop-a/x"),
        ),
    ];
    for (name, layer, fails_with) in &cases {
        let image = format!("hostile:{name}");
        with_layers(&root, "busybox", std::slice::from_ref(layer), &image);
        let out = root
            .manifold()
            .args([
                "run",
                "--rm",
                &image,
                "sh",
                "-c",
                "cat /escaped /etc-link/shadow-planted /evil/planted 2>/dev/null; true",
            ])
            .output()
            .unwrap();
        match fails_with {
            None => assert!(out.status.success(), "{name}: {}", stderr_of(&out)),
            Some(text) => {
                assert_eq!(out.status.code(), Some(125), "{name}: {}", stderr_of(&out));
                let err = stderr_of(&out);
                assert!(
                    err.contains("cannot unpack layer") && err.contains(text),
                    "{name}: {err}"
                );
            }
        }
    }
    assert_eq!(tree_hash(Path::new("/etc")), etc_before, "/etc changed");
    assert_eq!(tree_hash(&host), host_before, "the host directory changed");
    assert_eq!(tree_hash(&scratch_parent), parent_before);
    assert!(!Path::new("/escaped").exists());
    // Contained: what the layers wrote is inside their own root.
    root.manifold()
        .args([
            "run",
            "--rm",
            "hostile:abs-symlink",
            "cat",
            &format!("/{host_rel}/secret"),
        ])
        .assert()
        .success()
        .stdout("through the link");
    root.manifold()
        .args(["run", "--rm", "hostile:dotdot", "cat", "/escaped"])
        .assert()
        .success()
        .stdout("x");
}

/// 150 layers: more than a mount option page holds with full paths.
#[test]
fn an_image_with_many_layers() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let layers: Vec<Vec<u8>> = (0..150)
        .map(|i| {
            RawTar::default()
                .file(&format!("layers/{i}"), i.to_string().as_bytes())
                .finish()
        })
        .collect();
    with_layers(&root, "busybox", &layers, "many");
    root.manifold()
        .args([
            "run",
            "--rm",
            "many",
            "sh",
            "-c",
            "ls /layers | wc -l; cat /layers/0 /layers/149",
        ])
        .assert()
        .success()
        .stdout("150\n0149");
}

/// The fallbacks to mount(2) — option string and short links — mount for real too.
#[test]
fn overlay_fallbacks_mount_for_real() {
    skip_unless!("root");
    use manifold::runtime::overlay::{Method, Overlay};
    use manifold::runtime::sys::{OverlayConfig, RealSyscalls, Syscalls};

    /// The kernel, minus the new mount API.
    struct OldKernel;
    impl Syscalls for OldKernel {
        fn private_mount_namespace(&self) -> std::io::Result<()> {
            RealSyscalls.private_mount_namespace()
        }
        fn mount_overlay_fsconfig(&self, _: &OverlayConfig) -> std::io::Result<()> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn mount_overlay_legacy(
            &self,
            data: &str,
            target: &Path,
            cwd: Option<&Path>,
        ) -> std::io::Result<()> {
            RealSyscalls.mount_overlay_legacy(data, target, cwd)
        }
        fn unmount(&self, target: &Path, detach: bool) -> std::io::Result<()> {
            RealSyscalls.unmount(target, detach)
        }
        fn page_size(&self) -> usize {
            RealSyscalls.page_size()
        }
        fn mountinfo(&self) -> std::io::Result<String> {
            RealSyscalls.mountinfo()
        }
    }

    let root = TestRoot::new();
    let dir = root.scratch("overlay");
    // This test thread gets a mount namespace of its own: nothing shows on the host.
    std::thread::spawn(move || {
        OldKernel.private_mount_namespace().unwrap();
        for (layers, want) in [(3, Method::Legacy), (120, Method::ShortLinks)] {
            let base = dir.join(format!("{layers}"));
            let lowers: Vec<_> = (0..layers)
                .map(|i| {
                    let d = base.join(format!("{i:064}"));
                    fs::create_dir_all(&d).unwrap();
                    fs::write(d.join(format!("f{i}")), format!("{i}")).unwrap();
                    fs::write(d.join("top"), format!("{i}")).unwrap();
                    d
                })
                .rev()
                .collect();
            let o = Overlay {
                lowers,
                upper: base.join("upper"),
                work: base.join("work"),
                target: base.join("merged"),
                links_dir: base.join("l"),
                userxattr: false,
            };
            for d in [&o.upper, &o.work, &o.target] {
                fs::create_dir_all(d).unwrap();
            }
            assert_eq!(o.mount(&OldKernel).unwrap(), want);
            let merged = &o.target;
            assert_eq!(fs::read_dir(merged).unwrap().count(), layers + 1);
            assert_eq!(
                fs::read_to_string(merged.join("top")).unwrap(),
                format!("{}", layers - 1)
            );
            assert_eq!(fs::read_to_string(merged.join("f0")).unwrap(), "0");
            // Lazily: a process another test thread is forking may hold a descriptor for an
            // instant (until its exec closes it).
            OldKernel.unmount(merged, true).unwrap();
        }
    })
    .join()
    .unwrap();
}

#[test]
fn ps_rm_and_what_a_killed_manifold_leaves() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    // Each container says it runs by creating a file in a bind-mounted directory.
    let ready = root.scratch("ready");
    let spawn = |name: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_manifold"));
        cmd.arg("--root")
            .arg(root.path())
            .args(["--progress", "none", "run", "--name", name, "-v"])
            .arg(format!("{}:/ready", ready.display()))
            .args(["busybox", "sh", "-c"])
            .arg(format!("touch /ready/{name}; exec sleep 300"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        cmd.spawn().unwrap()
    };
    let wait_running = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.join(name).exists() {
            assert!(Instant::now() < deadline, "{name} never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
        let ps = ps_json(&root);
        assert!(
            ps.iter()
                .any(|c| c["Names"] == name && c["State"] == "running"),
            "{ps:?}"
        );
    };
    let runc_state = root.path().join("runtime-v1/runc");

    // 1. Running containers are listed; rm refuses them without -f.
    let mut first = spawn("sleeper");
    wait_running("sleeper");
    let table = root
        .manifold()
        .arg("ps")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert!(
        table.contains("sleeper") && table.contains("Up "),
        "{table}"
    );
    root.manifold()
        .args(["rm", "sleeper"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is running").and(predicate::str::contains("rm -f")));

    // 2. manifold killed, the container lives on: still listed as running; rm -f ends it.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    first.wait().unwrap();
    assert_eq!(ps_json(&root)[0]["State"], "running");
    root.manifold()
        .args(["rm", "-f", "sleeper"])
        .assert()
        .success()
        .stdout("sleeper\n");
    assert!(ps_json(&root).is_empty());

    // 3. manifold and the runtime killed, then the container ends with no manifold around (the
    //    runtime runs it in a session of its own): the next ps finds it exited and cleans the
    //    runtime's state.
    let mut second = spawn("victim");
    wait_running("victim");
    let id = ps_json(&root)[0]["ID"].as_str().unwrap().to_string();
    assert!(runc_state.join(&id).exists());
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(second.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    second.wait().unwrap();
    assert_eq!(ps_json(&root)[0]["State"], "running");
    let killed = Command::new("runc")
        .arg("--root")
        .arg(&runc_state)
        .args(["kill", &id, "KILL"])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim = loop {
        let ps = ps_json(&root);
        if ps[0]["State"] == "exited" {
            break ps[0].clone();
        }
        assert!(Instant::now() < deadline, "{ps:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        victim["Status"]
            .as_str()
            .unwrap()
            .starts_with("Exited (unknown)"),
        "{victim}"
    );
    assert!(
        !runc_state.join(&id).exists(),
        "runc's state was left behind"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount was left on the host");
    root.manifold().args(["rm", "victim"]).assert().success();
    assert!(!root.path().join("containers-v1").join(&id).exists());
    // Snapshots of images that still exist are kept; prune leaves them too.
    root.manifold().args(["prune", "-f"]).assert().success();
    assert_eq!(
        fs::read_dir(root.path().join("snapshots-v1"))
            .unwrap()
            .count(),
        1
    );
    root.manifold().args(["rmi", "busybox"]).assert().success();
    assert_eq!(
        fs::read_dir(root.path().join("snapshots-v1"))
            .unwrap()
            .count(),
        0
    );
}

/// Rlimits in the bundle never exceed manifold's own hard limit.
#[test]
fn rlimits_follow_the_callers_limits() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_manifold"));
    cmd.arg("--root").arg(root.path()).args([
        "--progress",
        "none",
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 512,
                rlim_max: 2048,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "512\n2048\n");
}

/// `run` pulls what the store lacks, like docker: the image, then a platform a sparse index
/// lacks; `verify` too.
#[test]
fn run_pulls_a_missing_image_from_a_real_registry() {
    skip_unless!("root", "runc", "docker-registry", "qemu-aarch64-static");
    let _lease = BinfmtLease::shared();
    let registry =
        crate::registry_harness::TestRegistry::start(crate::registry_harness::Auth::Anonymous);
    let name = format!("{}/busybox:multi", registry.host());
    let publisher = TestRoot::new();
    multiarch(
        &publisher,
        &name,
        &[("amd64", "linux/amd64"), ("arm64", "linux/arm64")],
        &[],
    );
    publisher
        .manifold()
        .args(["push", &name])
        .assert()
        .success();

    let root = TestRoot::new();
    let out = root
        .manifold()
        .args([
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            &name,
            "uname",
            "-m",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "aarch64\n");
    assert!(
        stderr_of(&out).contains("Unable to find image"),
        "{}",
        stderr_of(&out)
    );
    // The index is kept whole, with only arm64's blobs: the host's platform is pulled next.
    #[cfg(target_arch = "x86_64")]
    {
        let out = root
            .manifold()
            .args(["run", "--rm", &name, "uname", "-m"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(stdout_of(&out), "x86_64\n");
        assert!(stderr_of(&out).contains("Unable to find image"));
        // Both are here now: no pull.
        let out = root
            .manifold()
            .args(["run", "--rm", &name, "true"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(!stderr_of(&out).contains("Unable to find image"));
    }
    let fresh = TestRoot::new();
    fresh.manifold().args(["verify", &name]).assert().success();
    // A name the registry does not have: the pull's error, 125.
    let out = fresh
        .manifold()
        .args([
            "run",
            "--rm",
            &format!("{}/nothing:here", registry.host()),
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr_of(&out).contains("pulling") && stderr_of(&out).contains("hint:"),
        "{}",
        stderr_of(&out)
    );
}
