//! Issue 14: service containers with real runc, slirp4netns and QEMU — `run -d` under a
//! monitor, published ports answered over 127.0.0.1, `exec`, `logs`, `stop`/`start`/`restart`/
//! `kill`/`wait` with docker's states and exit statuses, `--rm`, a killed monitor, health
//! checks, resource limits, and the errors, pinned by snapshots. The servers are busybox's
//! `httpd` from the fixtures.

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binfmt::BinfmtLease;
use crate::harness::{TestRoot, manifold_snapshot, skip_unless};
use crate::local::import;
use crate::registry_harness::http_get;
use crate::run::{RawTar, host_busybox, stdout_of, with_layers};

/// How long a test waits for a state it expects (a server answering, a health state).
const PATIENCE: Duration = Duration::from_secs(60);

/// The page the test servers serve.
const PAGE: &str = "hello from manifold\n";

/// A store root whose containers are all removed (killed first) when the test ends, passing or
/// not: no monitor, forwarder or mount outlives a test.
struct Services {
    root: TestRoot,
}

impl Services {
    fn new() -> Services {
        Services {
            root: TestRoot::new(),
        }
    }

    fn manifold(&self) -> assert_cmd::Command {
        self.root.manifold()
    }

    /// Run manifold, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.manifold().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "`manifold {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_of(&out)
    }

    /// `ps -a --format json`.
    fn ps(&self) -> Vec<Value> {
        self.ok(&["ps", "-a", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The `ps` row of the container `name`.
    fn row(&self, name: &str) -> Option<Value> {
        self.ps().into_iter().find(|r| r["Names"] == name)
    }

    fn status(&self, name: &str) -> String {
        self.row(name)
            .map(|r| r["Status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| format!("{name} is not listed"))
    }

    /// Poll `ps` until the status of `name` satisfies `want` (at most [`PATIENCE`]).
    fn await_status(&self, name: &str, what: &str, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.status(name);
            if want(&status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never got {what}: its status is `{status}`"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host busybox (or `debarch`'s) with `/www/index.html`, as `name`.
    fn httpd_image(&self, debarch: &str, platform: &str, name: &str) {
        let base = format!("base/{debarch}:latest");
        import(&self.root, debarch, platform, &base);
        let www = RawTar::default()
            .dir("www/")
            .file("www/index.html", PAGE.as_bytes())
            .finish();
        with_layers(&self.root, &base, &[www], name);
    }

    /// insta settings for this root, with host ports and table padding made stable.
    fn settings(&self) -> insta::Settings {
        let mut s = self.root.insta_settings();
        // Host ports (not those in the examples of hints: `127.0.0.1:8080:80`).
        s.add_filter(r"(127\.0\.0\.1|0\.0\.0\.0):\d{2,5}(/|->|\s)", "$1:[PORT]$2");
        // Columns are padded to their widest cell, which redaction changes.
        s.add_filter(r"(\S) {3,}", "$1   ");
        s
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let Ok(out) = self.root.manifold().args(["ps", "-a", "-q"]).output() else {
            return;
        };
        for id in stdout_of(&out).split_whitespace() {
            let _ = self.root.manifold().args(["rm", "-f", id]).output();
        }
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on 127.0.0.1:`port` until the server answers (at most [`PATIENCE`]).
fn get(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match http_get(port, path) {
            Ok(answer) => return answer,
            Err(e) => assert!(
                Instant::now() < deadline,
                "nothing answered on 127.0.0.1:{port}: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host port `port CONTAINER SPEC` prints.
fn host_port(svc: &Services, container: &str, spec: &str) -> u16 {
    let out = svc.ok(&["port", container, spec]);
    let addr = out.lines().next().expect("a published port");
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The record of a container, as manifold keeps it.
fn record(svc: &Services, name: &str) -> Value {
    let id = svc.row(name).unwrap()["ID"].as_str().unwrap().to_string();
    let path = svc
        .root
        .path()
        .join("containers-v1")
        .join(id)
        .join("container.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

// --- tests -------------------------------------------------------------------------------------

/// The check of the issue: an arm64 busybox httpd under QEMU, started with `-d -p`, answers an
/// HTTP GET on the published port; `exec uname -m` runs arm64 code; `logs` has the request.
#[test]
fn an_emulated_server_answers_on_its_published_port() {
    skip_unless!("root", "runc", "slirp4netns", "qemu-aarch64-static");
    let _lease = BinfmtLease::shared();
    let svc = Services::new();
    svc.httpd_image("arm64", "linux/arm64", "httpd:arm64");
    let id = svc.ok(&[
        "run",
        "-d",
        "--platform",
        "linux/arm64",
        "-p",
        "127.0.0.1::80",
        "--name",
        "web",
        "httpd:arm64",
        "busybox",
        "httpd",
        "-f",
        "-vv",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(
        id.trim().len() == 64 && id.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "run -d prints the container's ID: {id:?}"
    );
    let port = host_port(&svc, "web", "80/tcp");
    let (status, body) = get(port, "/index.html");
    assert_eq!((status, body.as_str()), (200, PAGE));
    assert_eq!(svc.ok(&["exec", "web", "uname", "-m"]), "aarch64\n");
    // What httpd -vv says of the request goes to stderr, kept apart from stdout.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = svc.manifold().args(["logs", "web"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if err.contains("url:/index.html") {
            assert!(stdout_of(&out).is_empty(), "{}", stdout_of(&out));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request is not in the log: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    manifold_snapshot!(svc.settings(), svc.manifold().args(["ps"]), @r#"
    success: true
    exit_code: 0
    ----- stdout -----
    CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   PLATFORM   NAMES
    [ID]   httpd:arm64   "busybox httpd -f -v…"   [AGO]   Up [DURATION]   127.0.0.1:[PORT]->80/tcp   linux/arm64   web

    ----- stderr -----
    "#);
    manifold_snapshot!(svc.settings(), svc.manifold().args(["port", "web"]), @"
    success: true
    exit_code: 0
    ----- stdout -----
    80/tcp -> 127.0.0.1:[PORT]

    ----- stderr -----
    ");
    // Restarted, it is emulated and published again (on the same host port).
    svc.ok(&["restart", "-t", "1", "web"]);
    assert_eq!(get(port, "/index.html"), (200, PAGE.to_string()));
    // PID 1 (QEMU running httpd) ignores SIGTERM: SIGKILL after the timeout.
    svc.ok(&["stop", "-t", "1", "web"]);
    assert!(
        svc.status("web").starts_with("Exited (137)"),
        "{}",
        svc.status("web")
    );
    assert!(
        http_get(port, "/").is_err(),
        "the port went with the container"
    );
}

/// Two containers publish the same container port on two host ports, each answering for
/// itself; a host port in use is refused, naming it, and nothing is made; `-P` publishes the
/// EXPOSEd port on a free one.
#[test]
fn ports_side_by_side_busy_ones_refused() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    #[cfg(target_arch = "x86_64")]
    svc.httpd_image("amd64", "linux/amd64", "httpd:host");
    #[cfg(target_arch = "aarch64")]
    svc.httpd_image("arm64", "linux/arm64", "httpd:host");
    let serve_own_name = "echo $HOSTNAME > /www/index.html; exec busybox httpd -f -p 80 -h /www";
    let (p1, p2) = (free_port(), free_port());
    assert_ne!(p1, p2);
    for (name, port) in [("one", p1), ("two", p2)] {
        svc.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "httpd:host",
            "sh",
            "-c",
            serve_own_name,
        ]);
    }
    for (name, port) in [("one", p1), ("two", p2)] {
        let id = svc.row(name).unwrap()["ID"].as_str().unwrap()[..12].to_string();
        let (status, body) = get(port, "/index.html");
        assert_eq!(
            (status, body.trim()),
            (200, id.as_str()),
            "{name} on {port}"
        );
    }
    manifold_snapshot!(svc.settings(), svc.manifold().args(["ps"]), @r#"
    success: true
    exit_code: 0
    ----- stdout -----
    CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   PLATFORM   NAMES
    [ID]   httpd:host   "sh -c echo $HOSTNAM…"   [AGO]   Up [DURATION]   127.0.0.1:[PORT]->80/tcp   linux/amd64   two
    [ID]   httpd:host   "sh -c echo $HOSTNAM…"   [AGO]   Up [DURATION]   127.0.0.1:[PORT]->80/tcp   linux/amd64   one

    ----- stderr -----
    "#);

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().port();
    let before = svc.ps().len();
    // A restart publishes the port again (a new forwarder for the new namespace).
    svc.ok(&["restart", "-t", "1", "one"]);
    let id = svc.row("one").unwrap()["ID"].as_str().unwrap()[..12].to_string();
    assert_eq!(get(p1, "/index.html"), (200, format!("{id}\n")));

    // Checked before anything is made: a port another program listens on, and one another
    // container publishes.
    for (port, name) in [(taken, "busy_port"), (p1, "port_of_another_container")] {
        let mut cmd = svc.manifold();
        cmd.args([
            "run",
            "-d",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "httpd:host",
            "true",
        ]);
        let out = manifold_snapshot!(svc.settings(), &mut cmd, name);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}/tcp")),
            "the error names the port"
        );
    }
    assert_eq!(svc.ps().len(), before, "a refused run makes no container");
    drop(busy);

    // A foreground run publishes too; `stop` reaches it without a monitor (its manifold records
    // the exit and ends with the container's status).
    let p3 = free_port();
    let mut fg = svc
        .root
        .manifold_std()
        .args([
            "run",
            "--rm",
            "--name",
            "fg",
            "-p",
            &format!("127.0.0.1:{p3}:80"),
        ])
        .args([
            "httpd:host",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(get(p3, "/index.html"), (200, PAGE.to_string()));
    assert_eq!(svc.ok(&["stop", "-t", "1", "fg"]), "fg\n");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = fg.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the foreground run did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(137));
    assert!(svc.row("fg").is_none(), "--rm removed it");

    // -P: the image's EXPOSE 80 on a free host port of every address.
    let exposed = "exposed:1";
    let out = svc
        .manifold()
        .args(["commit", "-c", "EXPOSE 80", "one", exposed])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    svc.ok(&[
        "run", "-d", "-P", "--name", "three", exposed, "busybox", "httpd", "-f", "-p", "80", "-h",
        "/www",
    ]);
    let row = svc.row("three").unwrap();
    let ports = row["Ports"].as_str().unwrap();
    assert!(
        ports.starts_with("0.0.0.0:") && ports.ends_with("->80/tcp"),
        "{ports}"
    );
    let port = host_port(&svc, "three", "80");
    assert_eq!(get(port, "/index.html").0, 200);
}

/// stop, start, restart, kill and wait, with docker's states and statuses: SIGTERM handled
/// (143), SIGKILL (137), a stop the process ignores (SIGKILL after `-t`: 137), the image's
/// STOPSIGNAL, and what each command says of a container that is not running.
#[test]
fn stop_start_restart_kill_wait() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    // A shell as PID 1 ignores signals it has no handler for: this one has one for TERM and
    // for USR1, exiting with 128 + the signal's number as a process killed by it would.
    let script =
        "trap 'exit 143' TERM; trap 'exit 138' USR1; echo started; while true; do sleep 0.1; done";
    svc.ok(&["run", "-d", "--name", "svc", "busybox", "sh", "-c", script]);
    assert!(
        svc.status("svc").starts_with("Up "),
        "{}",
        svc.status("svc")
    );
    svc.ok(&["kill", "-s", "TERM", "svc"]);
    assert_eq!(svc.ok(&["wait", "svc"]), "143\n");
    assert!(
        svc.status("svc").starts_with("Exited (143) "),
        "{}",
        svc.status("svc")
    );

    assert_eq!(svc.ok(&["start", "svc"]), "svc\n");
    assert!(
        svc.status("svc").starts_with("Up "),
        "{}",
        svc.status("svc")
    );
    assert_eq!(svc.ok(&["restart", "-t", "5", "svc"]), "svc\n");
    assert!(
        svc.status("svc").starts_with("Up "),
        "{}",
        svc.status("svc")
    );
    svc.ok(&["kill", "svc"]);
    assert_eq!(svc.ok(&["wait", "svc"]), "137\n");
    // Each start wrote to the same log.
    let deadline = Instant::now() + PATIENCE;
    while svc.ok(&["logs", "svc"]) != "started\nstarted\nstarted\n" {
        assert!(Instant::now() < deadline, "{}", svc.ok(&["logs", "svc"]));
        std::thread::sleep(Duration::from_millis(100));
    }

    // A process that ignores the stop signal: SIGKILL once the time is up.
    svc.ok(&[
        "run", "-d", "--name", "stubborn", "busybox", "sleep", "1000",
    ]);
    assert_eq!(svc.ok(&["stop", "-t", "1", "stubborn"]), "stubborn\n");
    assert!(svc.status("stubborn").starts_with("Exited (137) "));
    // Stopping what is stopped is fine; signalling it is not.
    assert_eq!(svc.ok(&["stop", "stubborn"]), "stubborn\n");
    manifold_snapshot!(svc.settings(), svc.manifold().args(["kill", "stubborn"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: container [ID] is not running
    hint: `manifold start` starts it
    error: 1 of 1 containers could not be signalled
    ");
    manifold_snapshot!(svc.settings(), svc.manifold().args(["exec", "stubborn", "true"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: container [ID] is not running
    hint: `manifold start` starts it
    ");
    manifold_snapshot!(svc.settings(), svc.manifold().args(["kill", "-s", "BOGUS", "stubborn"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid signal `BOGUS`
    hint: signals look like `TERM`, `SIGKILL`, `HUP` or a number such as `9`
    ");
    assert_eq!(svc.ok(&["wait", "stubborn", "svc"]), "137\n137\n");

    // The image's STOPSIGNAL is what `stop` sends first.
    let out = svc
        .manifold()
        .args(["commit", "-c", "STOPSIGNAL SIGUSR1", "svc", "usr1:1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    svc.ok(&["run", "-d", "--name", "usr1", "usr1:1", "sh", "-c", script]);
    svc.ok(&["stop", "-t", "30", "usr1"]);
    assert!(
        svc.status("usr1").starts_with("Exited (138) "),
        "{}",
        svc.status("usr1")
    );
    manifold_snapshot!(svc.settings(), svc.manifold().args(["ps", "-a"]), @r#"
    success: true
    exit_code: 0
    ----- stdout -----
    CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   PLATFORM   NAMES
    [ID]   usr1:1   "sh -c trap 'exit 14…"   [AGO]   Exited (138) [AGO]   linux/amd64   usr1
    [ID]   busybox   "sleep 1000"   [AGO]   Exited (137) [AGO]   linux/amd64   stubborn
    [ID]   busybox   "sh -c trap 'exit 14…"   [AGO]   Exited (137) [AGO]   linux/amd64   svc

    ----- stderr -----
    "#);
}

/// `--rm` with `-d`: the monitor removes the container when it exits; `wait` still gets its
/// status (from the monitor, after the removal).
#[test]
fn detached_rm_removes_on_exit() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    svc.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        "busybox",
        "sh",
        "-c",
        "sleep 3; exit 3",
    ]);
    assert!(svc.row("brief").is_some());
    assert_eq!(svc.ok(&["wait", "brief"]), "3\n");
    assert!(svc.row("brief").is_none(), "{:?}", svc.ps());
    svc.ok(&[
        "run", "-d", "--rm", "--name", "killed", "busybox", "sleep", "1000",
    ]);
    svc.ok(&["kill", "killed"]);
    // The monitor removes it; ps shows it gone once it has.
    let deadline = Instant::now() + PATIENCE;
    while svc.row("killed").is_some() {
        assert!(Instant::now() < deadline, "{:?}", svc.ps());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(svc.ps().is_empty());
    let leftovers = std::fs::read_dir(svc.root.path().join("containers-v1"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "nothing is left of the containers");
}

/// A monitor killed with SIGKILL: the container lives on (podman's behaviour with conmon gone)
/// and `ps` shows it up; `stop` still stops it, after which `ps` reconciles it as
/// `Exited (unknown)`; `start` runs it under a new monitor.
#[test]
fn a_killed_monitor_is_reconciled() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    svc.ok(&["run", "-d", "--name", "orphan", "busybox", "sleep", "1000"]);
    let monitor = record(&svc, "orphan")["owner"]["pid"].as_u64().unwrap() as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(monitor).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while std::path::Path::new(&format!("/proc/{monitor}/exe")).exists() {
        assert!(Instant::now() < deadline, "the monitor did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        svc.status("orphan").starts_with("Up "),
        "{}",
        svc.status("orphan")
    );
    // It runs: `start` leaves it as it is.
    let started = record(&svc, "orphan")["started"].clone();
    assert_eq!(svc.ok(&["start", "orphan"]), "orphan\n");
    assert_eq!(record(&svc, "orphan")["started"], started);
    svc.ok(&["stop", "-t", "1", "orphan"]);
    assert!(
        svc.status("orphan").starts_with("Exited (unknown) "),
        "{}",
        svc.status("orphan")
    );
    manifold_snapshot!(svc.settings(), svc.manifold().args(["wait", "orphan"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: the exit status of container [ID] is unknown: its monitor was gone when it exited
    ");
    svc.ok(&["start", "orphan"]);
    assert!(
        svc.status("orphan").starts_with("Up "),
        "{}",
        svc.status("orphan")
    );
    svc.ok(&["kill", "orphan"]);
    assert_eq!(svc.ok(&["wait", "orphan"]), "137\n");
}

/// `run -d` from a terminal that then goes away (script(1) gives it one and hangs it up when the
/// command ends): the monitor has no controlling terminal and is in a session of its own, so the
/// hang-up does not reach it and the container stays up.
#[test]
fn the_monitor_outlives_its_terminal() {
    skip_unless!("root", "runc", "slirp4netns", "script");
    let svc = Services::new();
    host_busybox(&svc.root);
    let line = format!(
        "{} --root {} --progress none run -d --name hup busybox sleep 1000",
        env!("CARGO_BIN_EXE_manifold"),
        svc.root.path().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout_of(&out));
    let monitor = record(&svc, "hup")["owner"]["pid"].as_u64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // Fields 6 (session) and 7 (controlling terminal) of proc(5).
    let (session, tty) = (fields[3], fields[4]);
    assert_eq!(tty, "0", "the monitor has no controlling terminal");
    assert_ne!(
        session,
        monitor.to_string(),
        "nor can it get one: not a session leader"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        svc.status("hup").starts_with("Up "),
        "{}",
        svc.status("hup")
    );
    assert!(std::path::Path::new(&format!("/proc/{monitor}")).exists());
}

/// A HEALTHCHECK run by the monitor: `starting` while it fails in the start period, `healthy`
/// once it passes, `unhealthy` after `retries` failures; `ps` shows each.
#[test]
fn health_states_from_the_image() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    let ctx = svc.root.scratch("health");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=1s --timeout=5s --start-period=300s --retries=1 CMD test -f /tmp/ok\n",
    )
    .unwrap();
    let out = svc
        .manifold()
        .args(["build", "-q", "-t", "health:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    svc.ok(&["run", "-d", "--name", "doc", "health:1", "sleep", "1000"]);
    // Failing in the start period: still starting, whatever the number of probes.
    assert!(
        svc.status("doc").ends_with("(health: starting)"),
        "{}",
        svc.status("doc")
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        svc.status("doc").ends_with("(health: starting)"),
        "{}",
        svc.status("doc")
    );
    svc.ok(&["exec", "doc", "busybox", "touch", "/tmp/ok"]);
    svc.await_status("doc", "healthy", |s| s.ends_with("(healthy)"));
    manifold_snapshot!(svc.settings(), svc.manifold().args(["ps"]), @r#"
    success: true
    exit_code: 0
    ----- stdout -----
    CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   PLATFORM   NAMES
    [ID]   health:1   "sleep 1000"   [AGO]   Up [DURATION] (healthy)   linux/amd64   doc

    ----- stderr -----
    "#);
    svc.ok(&["exec", "doc", "busybox", "rm", "/tmp/ok"]);
    svc.await_status("doc", "unhealthy", |s| s.ends_with("(unhealthy)"));
    let health = &record(&svc, "doc")["service"]["health"];
    assert_eq!(health["status"], "unhealthy");
    assert_ne!(
        health["log"].as_array().unwrap().last().unwrap()["exit_code"],
        0
    );
    svc.ok(&["stop", "-t", "1", "doc"]);
    assert!(
        svc.status("doc").starts_with("Exited (137) "),
        "{}",
        svc.status("doc")
    );
}

/// `--memory`, `--cpus`, `--pids-limit` reach the container's cgroup (read from inside, cgroup
/// v1 or v2); bad values are refused before anything is made.
#[test]
fn resource_limits_reach_the_cgroup() {
    skip_unless!("root", "runc");
    let svc = Services::new();
    host_busybox(&svc.root);
    let read = "if [ -f /sys/fs/cgroup/memory.max ]; then \
        cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max; \
        else cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu*/cpu.cfs_quota_us \
        /sys/fs/cgroup/pids/pids.max; fi";
    let out = svc.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        read,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], (64 << 20).to_string());
    assert!(lines[1] == "50000" || lines[1] == "50000 100000", "{out}");
    assert_eq!(lines[2], "50");
    // Without the flags: no limit.
    let out = svc.ok(&["run", "--rm", "busybox", "sh", "-c", read]);
    assert!(!out.contains(&(64u64 << 20).to_string()), "{out}");
    for args in [
        &["--memory", "1m"][..],
        &["--memory", "lots"],
        &["--cpus=-1"],
        &["--cpus", "0"],
        &["--log-opt", "max-size=big"],
        &["--stop-signal", "SIGNOPE"],
    ] {
        let mut cmd = svc.manifold();
        cmd.args(["run", "-d", "--rm"])
            .args(args)
            .args(["busybox", "true"]);
        let name =
            format!("refused{}", args.join("_")).replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        manifold_snapshot!(svc.settings(), &mut cmd, name);
    }
    assert!(svc.ps().is_empty());
}

/// `logs`: docker's json-file lines, stdout and stderr apart, `--tail`, `-t`, `--since`,
/// `--until`, `-f` until the container exits, bounded files with `--log-opt`; a container run
/// in the foreground has none.
#[test]
fn logs_like_docker() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2; printf partial",
    ]);
    assert_eq!(svc.ok(&["wait", "talk"]), "0\n");
    let out = svc.manifold().args(["logs", "talk"]).output().unwrap();
    assert_eq!(stdout_of(&out), "out1\nout2\npartial");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err1\n");
    let id = svc.row("talk").unwrap()["ID"].as_str().unwrap().to_string();
    let file = svc
        .root
        .path()
        .join("containers-v1")
        .join(&id)
        .join("json.log");
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for l in &lines {
        let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["log", "stream", "time"]);
        chrono::DateTime::parse_from_rfc3339(l["time"].as_str().unwrap()).unwrap();
    }
    // The two streams are read side by side: only each one's own order is kept.
    let of = |stream: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l["stream"] == stream)
            .map(|l| l["log"].as_str().unwrap())
            .collect()
    };
    assert_eq!(of("stdout"), ["out1\n", "out2\n", "partial"]);
    assert_eq!(of("stderr"), ["err1\n"]);
    // The last line of the log, whichever stream it is from.
    let tail = svc
        .manifold()
        .args(["logs", "-n", "1", "talk"])
        .output()
        .unwrap();
    let last = lines.last().unwrap();
    let (on, off) = match last["stream"].as_str().unwrap() {
        "stdout" => (
            stdout_of(&tail),
            String::from_utf8_lossy(&tail.stderr).into_owned(),
        ),
        _ => (
            String::from_utf8_lossy(&tail.stderr).into_owned(),
            stdout_of(&tail),
        ),
    };
    assert_eq!(
        (on.as_str(), off.as_str()),
        (last["log"].as_str().unwrap(), "")
    );
    let stamped = svc.ok(&["logs", "-t", "talk"]);
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z out1$").unwrap();
    assert!(re.is_match(stamped.lines().next().unwrap()), "{stamped}");
    assert_eq!(
        svc.ok(&["logs", "--since", "2099-01-01T00:00:00Z", "talk"]),
        ""
    );
    assert_eq!(svc.ok(&["logs", "--until", "2000-01-01", "talk"]), "");
    assert_eq!(
        svc.ok(&["logs", "--since", "1h", "talk"]),
        "out1\nout2\npartial"
    );

    // -f follows until the container exits.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "busybox",
        "sh",
        "-c",
        "echo a; sleep 2; echo b",
    ]);
    assert_eq!(svc.ok(&["logs", "-f", "slow"]), "a\nb\n");

    // Bounded: at most max-file files of about max-size each.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
    ]);
    assert_eq!(svc.ok(&["wait", "chatty"]), "0\n");
    let id = svc.row("chatty").unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = svc.root.path().join("containers-v1").join(&id);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("json.log"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() <= 2048, "{f}");
    }
    let all = svc.ok(&["logs", "chatty"]);
    assert!(all.ends_with("line 299\n"), "{all}");
    assert!(
        !all.contains("line 0\n"),
        "the oldest lines went with the rotation"
    );

    assert_eq!(
        svc.ok(&["run", "--name", "fg", "busybox", "echo", "hi"]),
        "hi\n"
    );
    manifold_snapshot!(svc.settings(), svc.manifold().args(["logs", "fg"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: container [ID] has no log: it ran in the foreground, its output went to the terminal
    hint: `manifold run -d` keeps a container's output for `manifold logs`
    ");
    // Started again, it runs under a monitor: now it has a log.
    assert_eq!(svc.ok(&["start", "-a", "fg"]), "hi\n");
    assert_eq!(svc.ok(&["logs", "fg"]), "hi\n");
    manifold_snapshot!(svc.settings(), svc.manifold().args(["logs", "--since", "yesterday", "talk"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid time `yesterday`
    hint: times look like `[TIMESTAMP]`, `2024-05-01`, `1714557600` (Unix time) or `10m` (ago)
    ");
}

/// `exec`: docker's statuses, environment, working directory, user, detached commands, the
/// container's confinement; `top` lists the container's processes.
#[test]
fn exec_and_top_like_docker() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--security-opt",
        "no-new-privileges",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sleep",
        "1000",
    ]);
    let code = |args: &[&str]| {
        svc.manifold()
            .arg("exec")
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(code(&["box", "true"]), Some(0));
    assert_eq!(code(&["box", "sh", "-c", "exit 3"]), Some(3));
    assert_eq!(code(&["box", "/etc/passwd"]), Some(126));
    manifold_snapshot!(svc.settings(), svc.manifold().args(["exec", "box", "nosuch"]), @r#"
    success: false
    exit_code: 127
    ----- stdout -----

    ----- stderr -----
    error: exec: "nosuch": executable file not found in $PATH
    "#);
    assert_eq!(
        svc.ok(&[
            "exec",
            "-e",
            "EXTRA=2",
            "-w",
            "/tmp",
            "box",
            "sh",
            "-c",
            "echo $FROM_RUN $EXTRA $(pwd)"
        ]),
        "1 2 /tmp\n"
    );
    let id = svc.ok(&["exec", "-u", "nobody", "box", "id"]);
    assert!(
        id.starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{id}"
    );
    // The same capabilities, seccomp filter and no-new-privileges as the container's process.
    let confinement = |pid: &str| {
        let status = svc.ok(&["exec", "box", "cat", &format!("/proc/{pid}/status")]);
        status
            .lines()
            .filter(|l| {
                [
                    "CapBnd",
                    "CapEff",
                    "CapPrm",
                    "NoNewPrivs",
                    "Seccomp:",
                    "Seccomp_filters",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let first = confinement("1");
    assert!(
        first.contains("NoNewPrivs:\t1") && first.contains("Seccomp:\t2"),
        "{first}"
    );
    assert_eq!(confinement("self"), first);
    // -d: the command runs on after exec returns.
    svc.ok(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "echo done > /tmp/detached; exec sleep 999",
    ]);
    let deadline = Instant::now() + PATIENCE;
    while code(&["box", "test", "-f", "/tmp/detached"]) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the detached command did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let top = svc.ok(&["top", "box"]);
    let header = top.lines().next().unwrap();
    assert!(header.split_whitespace().any(|h| h == "PID"), "{top}");
    assert!(
        top.contains("sleep 1000") && top.contains("sleep 999"),
        "{top}"
    );
    let custom = svc.ok(&["top", "box", "-o", "pid,comm"]);
    assert!(
        custom.starts_with("    PID COMMAND") || custom.contains("PID"),
        "{custom}"
    );
    manifold_snapshot!(svc.settings(), svc.manifold().args(["top", "box", "-o", "comm"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: `ps -o comm` printed no PID column
    hint: give ps options whose output has a PID column, such as `-ef` or `aux`
    ");
}

/// `-d -i` keeps the container's stdin open; `start -a -i` sends ours to it and exits with its
/// status; `-d -t` gives it a terminal (the monitor holds its other side).
#[test]
fn attach_to_stdin_and_terminal() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    for (name, flags) in [("piped", "-di"), ("terminal", "-dit")] {
        svc.ok(&["run", flags, "--name", name, "busybox", "sh"]);
        let mut child = svc
            .root
            .manifold_std()
            .args(["start", "-a", "-i", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo from-stdin; exit 7\n")
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "start -a -i did not end");
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            status.code(),
            Some(7),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout_of(&out).contains("from-stdin"),
            "{name}: {}",
            stdout_of(&out)
        );
    }
    let tty = svc.ok(&["logs", "terminal"]);
    assert!(
        tty.contains("from-stdin\r\n"),
        "a terminal's lines end with CR LF: {tty:?}"
    );
}

/// What the new commands and flags refuse, and docker's warning for ports on the host network.
#[test]
fn service_errors() {
    skip_unless!("root", "runc", "slirp4netns");
    let svc = Services::new();
    host_busybox(&svc.root);
    let s = svc.settings();
    manifold_snapshot!(s, svc.manifold().args(["run", "-d", "-p", "80:http", "busybox", "true"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid port specification `80:http`: `http` is not a port number (1-65535)
    hint: ports look like `-p 8080:80`, `-p 127.0.0.1:8080:80/udp`, `-p 80` (any free host port) or `-p 8000-8010:80-90`
    ");
    manifold_snapshot!(s, svc.manifold().args(["run", "-d", "-p", "[::1]:8080:80", "busybox", "true"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid port specification `[::1]:8080:80`: IPv6 host addresses are not supported (slirp4netns forwards IPv4 only)
    hint: ports look like `-p 8080:80`, `-p 127.0.0.1:8080:80/udp`, `-p 80` (any free host port) or `-p 8000-8010:80-90`
    ");
    // An address of no interface here (TEST-NET-1): binding fails at once, nothing is sent.
    manifold_snapshot!(s, svc.manifold().args(["run", "-d", "-p", "192.0.2.1:8080:80", "busybox", "true"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: cannot listen on the host port 192.0.2.1:8080/tcp
      caused by: Cannot assign requested address (os error 99)
    hint: give an address of this machine (`-p 127.0.0.1:8080:80`), or none for all
    ");
    manifold_snapshot!(s, svc.manifold().args(["run", "-d", "-p", "80", "--network", "none", "busybox", "true"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: port publishing needs a network: `--network none` has none
    hint: drop `-p`/`-P`, or use the default network (`--network bridge`)
    ");
    manifold_snapshot!(s, svc.manifold().args(["run", "-d", "--platform", "all", "busybox", "true"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: a matrix run (several platforms) cannot be detached or publish ports
    hint: run one platform at a time with `-d` or `-p`
    ");
    manifold_snapshot!(s, svc.manifold().args(["run", "--rm", "-p", "80", "--network", "host", "busybox", "true"]), @"
    success: true
    exit_code: 0
    ----- stdout -----

    ----- stderr -----
    WARNING: Published ports are discarded when using host network mode
    ");
    manifold_snapshot!(s, svc.manifold().args(["run", "-d", "busybox", "no-such-command"]), @r#"
    success: false
    exit_code: 127
    ----- stdout -----

    ----- stderr -----
    error: exec: "no-such-command": executable file not found in $PATH
    "#);
    manifold_snapshot!(s, svc.manifold().args(["start", "-a", "x", "y"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: you cannot start and attach multiple containers at once
    hint: start them without `-a`, then follow each with `manifold logs -f`
    ");
    manifold_snapshot!(s, svc.manifold().args(["wait", "nothing"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: no such container: nothing
    hint: `manifold ps -a` lists the containers
    ");
    manifold_snapshot!(s, svc.manifold().args(["logs", "--tail", "some", "nothing"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: invalid `--tail` value `some`: expected a number of lines or `all`
    ");
    svc.ok(&["run", "-d", "--name", "quiet", "busybox", "sleep", "1000"]);
    manifold_snapshot!(s, svc.manifold().args(["port", "quiet"]), @"
    success: true
    exit_code: 0
    ----- stdout -----

    ----- stderr -----
    ");
    manifold_snapshot!(s, svc.manifold().args(["port", "quiet", "80"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: no public port `80/tcp` published for `quiet`
    ");
    manifold_snapshot!(s, svc.manifold().args(["run", "-d", "--name", "quiet", "busybox", "true"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: the container name `quiet` is already in use by container [ID]
    hint: remove that container (`manifold rm NAME`) or choose another `--name`
    ");
}
