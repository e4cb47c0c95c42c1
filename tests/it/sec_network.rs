//! Issue 9, items 2 and 11. The default network of `run` and of RUN steps is a namespace of its
//! own: only `lo` and `tap0`, no way to services on the host's 127.0.0.1 or to its abstract unix
//! sockets, outbound access through slirp4netns — proved inside network namespaces the tests
//! make (a veth pair, a server and a DNS responder on a private address), never the real
//! outside; `--network host` is still the host's; no forwarder outlives its container. And an
//! image whose /etc/passwd is a FIFO runs instead of hanging.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::binfmt::BinfmtLease;
use crate::harness::{COMMAND_TIMEOUT, REPO, TestRoot, skip_unless};
use crate::local::multiarch;
use crate::run::{RawTar, host_busybox, stdout_of, with_layers};

// --- helpers -----------------------------------------------------------------------------------

/// tests/probes/netprobe.rs as a static binary (busybox has no client for abstract unix
/// sockets), built with the toolchain's rustc once per content of the source.
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let src = Path::new(REPO).join("tests/probes/netprobe.rs");
        let hash = hex::encode(Sha256::digest(fs::read(&src).unwrap()));
        let dir = Path::new(REPO).join("target/test-probes");
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join(format!("netprobe-{}", &hash[..16]));
        if out.is_file() {
            return out;
        }
        // Next to cargo when cargo runs the tests (rustup puts both there), else on PATH.
        let rustc = std::env::var_os("RUSTC")
            .map(PathBuf::from)
            .or_else(|| {
                let cargo = PathBuf::from(std::env::var_os("CARGO")?);
                let rustc = cargo.with_file_name("rustc");
                rustc.is_file().then_some(rustc)
            })
            .unwrap_or_else(|| "rustc".into());
        let tmp = dir.join(format!("netprobe.tmp-{}", std::process::id()));
        let res = Command::new(&rustc)
            .args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "target-feature=+crt-static",
            ])
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.display()));
        assert!(
            res.status.success(),
            "cannot build the probe:\n{}",
            String::from_utf8_lossy(&res.stderr)
        );
        fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// `-v PROBE:/probe:ro`.
fn probe_volume() -> String {
    format!("{}:/probe:ro", probe().display())
}

/// Prints the container's interfaces, sorted, on one line.
const IFACES: &str =
    "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '; echo";

/// The interfaces of the namespace this test runs in, as [`IFACES`] prints them.
fn own_interfaces() -> String {
    let text = fs::read_to_string("/proc/net/dev").unwrap();
    let mut names: Vec<&str> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    names.sort();
    names.iter().map(|n| format!("{n} ")).collect::<String>()
}

/// Accept connections until `stop`, answering each with `reply` (after reading what the
/// client sent first, if anything, within a moment): nonblocking accepts, so the loop sees
/// `stop` in time.
fn serve<S: Read + Write + Send + 'static>(
    mut accept: impl FnMut() -> io::Result<S> + Send + 'static,
    reply: &'static [u8],
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    set_timeout: fn(&S),
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match accept() {
                Ok(mut s) => {
                    hits.fetch_add(1, Ordering::SeqCst);
                    set_timeout(&s);
                    let mut request = [0u8; 4096];
                    let _ = s.read(&mut request);
                    let _ = s.write_all(reply);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
    })
}

/// A TCP server on the host's 127.0.0.1 and a server on an abstract unix socket, each
/// answering `host-secret` and counting who connected.
struct HostServices {
    port: u16,
    name: String,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl HostServices {
    fn start(tag: &str) -> HostServices {
        use std::os::linux::net::SocketAddrExt;
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let port = tcp.local_addr().unwrap().port();
        let name = format!("manifold-sec-network-{}-{tag}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let unix = UnixListener::bind_addr(&addr).unwrap();
        unix.set_nonblocking(true).unwrap();
        let threads = vec![
            serve(
                move || tcp.accept().map(|(s, _)| s),
                b"host-secret\n",
                hits.clone(),
                stop.clone(),
                |s| {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                },
            ),
            serve(
                move || unix.accept().map(|(s, _)| s),
                b"host-secret\n",
                hits.clone(),
                stop.clone(),
                |s| {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                },
            ),
        ];
        HostServices {
            port,
            name,
            hits,
            stop,
            threads,
        }
    }

    /// A shell line trying both services (and the gateway, which slirp4netns would map to the
    /// host's loopback without `--disable-host-loopback`), one result line each.
    fn probes(&self, probe: &str) -> String {
        format!(
            "{probe} tcp 127.0.0.1:{port}; {probe} tcp 10.0.2.2:{port}; {probe} abstract {name}",
            port = self.port,
            name = self.name
        )
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HostServices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The private address of the "outside" in [`Outside`].
const OUTSIDE: &str = "10.213.0.2";

/// An outside world of the test's own: network namespaces `client` (where manifold runs) and
/// `server`, joined by a veth pair (10.213.0.1 ↔ 10.213.0.2); in `server` a TCP server that
/// answers like a web server; on `client`'s loopback a DNS responder that resolves every name
/// to 10.213.0.2, named by the resolv.conf manifold (and so slirp4netns) sees. Removed on drop,
/// also when the test fails.
struct Outside {
    client: String,
    server: String,
    /// Holds the resolv.conf bind-mounted over /etc/resolv.conf for manifold.
    dir: tempfile::TempDir,
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Outside {
    fn new(tag: &str) -> Outside {
        let id = format!("{}{tag}", std::process::id());
        let mut o = Outside {
            client: format!("mfsn-{id}-c"),
            server: format!("mfsn-{id}-s"),
            dir: tempfile::tempdir().unwrap(),
            port: 0,
            hits: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let (c, s) = (o.client.clone(), o.server.clone());
        let (veth_c, veth_s) = (format!("mfc{id}"), format!("mfs{id}"));
        ip(&["netns", "add", &c]);
        ip(&["netns", "add", &s]);
        ip(&[
            "link", "add", &veth_c, "netns", &c, "type", "veth", "peer", "name", &veth_s, "netns",
            &s,
        ]);
        for (ns, dev, addr) in [
            (&c, &veth_c, "10.213.0.1/24"),
            (&s, &veth_s, "10.213.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // The resolver the host (the client namespace) uses is on its loopback, like
        // systemd-resolved's 127.0.0.53: slirp4netns's DNS forwarder still reaches it.
        fs::write(o.dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        let tcp = in_netns(&s, || TcpListener::bind((OUTSIDE, 0)).unwrap());
        tcp.set_nonblocking(true).unwrap();
        o.port = tcp.local_addr().unwrap().port();
        let dns = in_netns(&c, || UdpSocket::bind((Ipv4Addr::LOCALHOST, 53)).unwrap());
        dns.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = o.stop.clone();
        o.threads.push(serve(
            move || tcp.accept().map(|(s, _)| s),
            b"HTTP/1.0 200 OK\r\nContent-Length: 14\r\n\r\noutside-hello\n",
            o.hits.clone(),
            o.stop.clone(),
            |s| {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
            },
        ));
        o.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut buf = [0u8; 512];
                if let Ok((n, from)) = dns.recv_from(&mut buf)
                    && let Some(answer) = dns_answer(&buf[..n])
                {
                    let _ = dns.send_to(&answer, from);
                }
            }
        }));
        o
    }

    /// `manifold` inside `client`, seeing the outside's resolver in /etc/resolv.conf (in a
    /// mount namespace of its own; not `ip netns exec`, whose fresh /sys has no cgroup mount).
    fn manifold(&self, root: &TestRoot) -> assert_cmd::Command {
        use std::ffi::CString;
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let netns = fs::File::open(Path::new("/run/netns").join(&self.client)).unwrap();
        let resolv =
            CString::new(self.dir.path().join("resolv.conf").as_os_str().as_bytes()).unwrap();
        let mut cmd = root.manifold_std();
        // SAFETY: only system calls (no allocation) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let ok = libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) == 0
                    && libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_SLAVE,
                        std::ptr::null(),
                    ) == 0
                    && libc::mount(
                        resolv.as_ptr(),
                        c"/etc/resolv.conf".as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) == 0;
                if ok {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        let mut cmd = assert_cmd::Command::from_std(cmd);
        cmd.timeout(COMMAND_TIMEOUT);
        cmd
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// What `make` returns, made on a thread inside the network namespace `name`: a socket belongs
/// to the namespace it was made in, whichever thread uses it later.
fn in_netns<T: Send + 'static>(name: &str, make: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = fs::File::open(Path::new("/run/netns").join(name)).unwrap();
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        make()
    })
    .join()
    .unwrap()
}

/// A DNS response to `query`: every A question answered with [`OUTSIDE`], others with no data.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + *query.get(end)? as usize;
    }
    let question_end = end + 5;
    let qtype = u16::from_be_bytes([*query.get(end + 1)?, *query.get(end + 2)?]);
    let a = qtype == 1;
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, a as u8, 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    if a {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&OUTSIDE.parse::<Ipv4Addr>().unwrap().octets());
    }
    Some(out)
}

/// The forwarders started by the manifold process `pid` that are still alive (zombies are
/// dead): slirp4netns processes given a namespace under `/proc/<pid>/fd/`.
fn forwarders_of(pid: u32) -> Vec<u32> {
    let marker = format!("/proc/{pid}/fd/");
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{p}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args[0].ends_with("slirp4netns") || !args.iter().any(|a| a.starts_with(&marker)) {
            continue;
        }
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        if !matches!(state, Some('Z') | None) {
            out.push(p);
        }
    }
    out
}

/// Waits (bounded) until `pid`'s forwarders are gone; they get SIGKILL or lose their exit
/// descriptor, and the kernel takes a moment to tear a tap device down.
fn assert_forwarders_gone(pid: u32, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = forwarders_of(pid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: forwarder(s) {left:?} of manifold {pid} still run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- run ---------------------------------------------------------------------------------------

/// (1) (2) (3) (5): what a default container sees and reaches, against `--network host`.
#[test]
fn the_default_network_is_a_namespace_of_its_own() {
    skip_unless!("root", "runc", "slirp4netns");
    let root = TestRoot::new();
    host_busybox(&root);
    let services = HostServices::start("run");
    let script = format!(
        "{IFACES}; {}; cat /etc/resolv.conf; hostname",
        services.probes("/probe")
    );

    for network in [None, Some("bridge"), Some("slirp4netns")] {
        let mut cmd = root.manifold();
        cmd.args(["run", "--rm", "-v", &probe_volume()]);
        if let Some(n) = network {
            cmd.args(["--network", n]);
        }
        let out = cmd.args(["busybox", "sh", "-c", &script]).output().unwrap();
        assert!(out.status.success(), "{network:?}: {out:?}");
        let text = stdout_of(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "lo tap0 ", "{network:?}: only its own interfaces");
        assert_eq!(
            lines[1], "failed: Connection refused (os error 111)",
            "{network:?}: 127.0.0.1 is the container's own loopback"
        );
        assert!(
            lines[2].starts_with("failed: "),
            "{network:?}: the gateway does not lead to the host's loopback: {}",
            lines[2]
        );
        assert_eq!(
            lines[3], "failed: Connection refused (os error 111)",
            "{network:?}: the host's abstract unix sockets are another namespace's"
        );
        assert_eq!(lines[4], "nameserver 10.0.2.3", "{network:?}: {text}");
        assert_eq!(lines.len(), 6, "{text}");
        assert_ne!(
            lines[5],
            rustix::system::uname().nodename().to_str().unwrap()
        );
    }
    assert_eq!(
        services.hits(),
        0,
        "no connection reached the host's services"
    );

    // --network host: the host's interfaces, services and resolv.conf, as asked.
    let out = root
        .manifold()
        .args(["run", "--rm", "--network", "host", "-v", &probe_volume()])
        .args(["busybox", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], own_interfaces());
    assert_eq!(lines[1], "connected: host-secret");
    assert_eq!(lines[3], "connected: host-secret");
    assert_eq!(services.hits(), 2);
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(text.contains(&host_resolv), "{text}");
}

/// The finding that opened item 2: a default container captured another process's registry
/// `Authorization` header with an AF_PACKET socket. In its own namespace the capture (where
/// the capabilities allow one at all) sees the container's own traffic, never the host's.
#[test]
fn the_default_network_captures_no_host_traffic() {
    skip_unless!("root", "runc", "slirp4netns");
    let root = TestRoot::new();
    host_busybox(&root);
    let services = HostServices::start("sniff");
    let marker = format!("Basic c2VjcmV0-{}", std::process::id());
    // Someone on the host talks to a service on its loopback while the containers listen.
    let stop = Arc::new(AtomicBool::new(false));
    let chatter = {
        let (stop, port, marker) = (stop.clone(), services.port, marker.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(mut s) = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                    let _ = write!(s, "GET /v2/ HTTP/1.1\r\nAuthorization: {marker}\r\n\r\n");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let sniff = |network: &str| {
        let out = root
            .manifold()
            .args(["run", "--rm", "--network", network, "-v", &probe_volume()])
            .args(["busybox", "sh", "-c", &format!("/probe sniff '{marker}' 3")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        stdout_of(&out)
    };
    let private = sniff("bridge");
    let host = sniff("host");
    stop.store(true, Ordering::SeqCst);
    chatter.join().unwrap();
    assert!(services.hits() > 0, "the host's traffic flowed");
    // Without CAP_NET_RAW no capture at all; with it, its own packets only.
    assert!(
        private.starts_with("denied: ") || private == "own: seen, marker: unseen\n",
        "{private}"
    );
    // The control: where capture is allowed, the host's network shows the host's traffic.
    assert!(
        host.starts_with("denied: ") || host == "own: seen, marker: seen\n",
        "{host}"
    );
}

/// (4): outbound access through the forwarder, by address and by name (its DNS forwarder),
/// natively and for an arm64 container under QEMU; `--network none` has none.
#[test]
fn the_default_network_reaches_out() {
    skip_unless!("root", "runc", "slirp4netns", "ip", "qemu-aarch64-static");
    let _binfmt = BinfmtLease::shared();
    let root = TestRoot::new();
    multiarch(
        &root,
        "multi:latest",
        &[("amd64", "linux/amd64"), ("arm64", "linux/arm64")],
        &[],
    );
    let outside = Outside::new("r");
    let addr = format!("{OUTSIDE}:{}", outside.port);

    let out = outside
        .manifold(&root)
        .args(["run", "--rm", "-v", &probe_volume(), "multi", "sh", "-c"])
        .arg(format!("/probe tcp {addr}"))
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out), "connected: HTTP/1.0 200 OK\n", "{out:?}");

    let url = format!("http://outside.test:{}/", outside.port);
    for platform in ["linux/amd64", "linux/arm64"] {
        let out = outside
            .manifold(&root)
            .args(["run", "--rm", "--platform", platform, "multi", "sh", "-c"])
            .arg(format!(
                "nslookup outside.test | grep -c {OUTSIDE}; wget -q -O - {url}"
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{platform}: {out:?}");
        assert_eq!(stdout_of(&out), "1\noutside-hello\n", "{platform}");
    }
    let hits = outside.hits();
    assert_eq!(hits, 3);

    let out = outside
        .manifold(&root)
        .args(["run", "--rm", "--network", "none", "-v", &probe_volume()])
        .args(["multi", "sh", "-c", &format!("/probe tcp {addr}")])
        .output()
        .unwrap();
    assert_eq!(
        stdout_of(&out),
        "failed: Network is unreachable (os error 101)\n",
        "{out:?}"
    );
    assert_eq!(outside.hits(), hits);
}

/// (7): the forwarder lives exactly as long as its container — whether the container exits,
/// is killed, or manifold itself is SIGKILLed (slirp4netns's exit descriptor closes).
#[test]
fn no_forwarder_outlives_its_container() {
    skip_unless!("root", "runc", "slirp4netns");
    let root = TestRoot::new();
    host_busybox(&root);
    let ready = root.scratch("ready");
    let spawn = |name: &str, script: &str| {
        Command::new(env!("CARGO_BIN_EXE_manifold"))
            .arg("--root")
            .arg(root.path())
            .args(["--progress", "none", "run", "--rm", "--name", name, "-v"])
            .arg(format!("{}:/ready", ready.display()))
            .args(["busybox", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let running = |name: &str, pid: u32| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.join(name).exists() {
            assert!(Instant::now() < deadline, "{name} never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(forwarders_of(pid).len(), 1, "{name}: its forwarder runs");
    };
    let sleeper = |name: &str| format!("touch /ready/{name}; exec sleep 300");
    // Whatever fails, no container of this test is left running.
    struct RemoveOnDrop<'a>(&'a TestRoot);
    impl Drop for RemoveOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .manifold()
                .args(["rm", "-f", "exits", "killed", "orphan"])
                .output();
        }
    }
    let _cleanup = RemoveOnDrop(&root);

    // The container exits.
    let mut m = spawn("exits", "touch /ready/exits; exec sleep 1");
    let pid = m.id();
    running("exits", pid);
    assert!(m.wait().unwrap().success());
    assert_forwarders_gone(pid, "after the container exited");

    // The container is killed from outside.
    let mut m = spawn("killed", &sleeper("killed"));
    let pid = m.id();
    running("killed", pid);
    let ps = root
        .manifold()
        .args(["ps", "--format", "json"])
        .output()
        .unwrap();
    let id = stdout_of(&ps)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|c| c["Names"] == "killed")
        .unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let runc_state = root.path().join("runtime-v1/runc");
    let killed = Command::new("runc")
        .arg("--root")
        .arg(&runc_state)
        .args(["kill", &id, "KILL"])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(
        m.wait().unwrap().code(),
        Some(137),
        "the container's status"
    );
    assert_forwarders_gone(pid, "after the container was killed");

    // manifold is SIGKILLed; the container lives on (until `rm -f`), its forwarder does not.
    let mut m = spawn("orphan", &sleeper("orphan"));
    let pid = m.id();
    running("orphan", pid);
    m.kill().unwrap();
    m.wait().unwrap();
    assert_forwarders_gone(pid, "after manifold was SIGKILLed");
    root.manifold()
        .args(["rm", "-f", "orphan"])
        .assert()
        .success();
}

// --- build -------------------------------------------------------------------------------------

/// (6): RUN steps get the same network as `run`: private by default (isolated, with outbound
/// access, natively and under QEMU), `--network=none` and `--network=host` as asked.
#[test]
fn run_steps_are_isolated_and_reach_out() {
    skip_unless!("root", "runc", "slirp4netns", "ip", "qemu-aarch64-static");
    let _binfmt = BinfmtLease::shared();
    let root = TestRoot::new();
    multiarch(
        &root,
        "test/multi:latest",
        &[("amd64", "linux/amd64"), ("arm64", "linux/arm64")],
        &[],
    );
    let services = HostServices::start("build");
    let ctx = root.scratch("ctx");
    fs::copy(probe(), ctx.join("netprobe")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM test/multi\n\
             COPY netprobe /probe\n\
             RUN ({IFACES}; {probes}; cat /etc/resolv.conf) > /default.txt 2>&1; true\n\
             RUN --network=none ({IFACES}) > /none.txt 2>&1; true\n\
             RUN --network=host ({IFACES}; {probes}) > /host.txt 2>&1; true\n",
            probes = services.probes("/probe")
        ),
    )
    .unwrap();
    let built = root
        .manifold()
        // The host network is an entitlement the build must be granted (BuildKit's rule).
        .args(["build", "--allow", "network.host", "-t", "isolated"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let cat = |file: &str| {
        let out = root
            .manifold()
            .args(["run", "--rm", "--network", "none", "isolated", "cat", file])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        stdout_of(&out)
    };
    let default = cat("/default.txt");
    let lines: Vec<&str> = default.lines().collect();
    assert_eq!(lines[0], "lo tap0 ", "{default}");
    assert!(
        lines[1..4].iter().all(|l| l.starts_with("failed: ")),
        "{default}"
    );
    assert_eq!(lines[4], "nameserver 10.0.2.3", "{default}");
    assert_eq!(cat("/none.txt"), "lo \n");
    let host = cat("/host.txt");
    let lines: Vec<&str> = host.lines().collect();
    assert_eq!(lines[0], own_interfaces(), "{host}");
    assert_eq!(lines[1], "connected: host-secret", "{host}");
    assert_eq!(lines[3], "connected: host-secret", "{host}");
    assert_eq!(
        services.hits(),
        2,
        "only the --network=host step reached them"
    );

    // Outbound, by name, for both platforms (arm64 under QEMU): the step fails without it.
    let outside = Outside::new("b");
    let ctx = root.scratch("ctx-out");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM test/multi\n\
             RUN wget -q -O /fetched http://outside.test:{}/ && uname -m >> /fetched\n",
            outside.port
        ),
    )
    .unwrap();
    let built = outside
        .manifold(&root)
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "fetched",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    assert_eq!(outside.hits(), 2);
    for (platform, machine) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let out = root
            .manifold()
            .args(["run", "--rm", "--network", "none", "--platform", platform])
            .args(["fetched", "cat", "/fetched"])
            .output()
            .unwrap();
        assert_eq!(
            stdout_of(&out),
            format!("outside-hello\n{machine}\n"),
            "{out:?}"
        );
    }
}

// --- what the user sees ------------------------------------------------------------------------

#[test]
fn network_flag_help_and_errors() {
    let root = TestRoot::new();
    let help = root.manifold().args(["run", "--help"]).output().unwrap();
    let help = stdout_of(&help);
    let start = help.find("      --network").unwrap();
    let end = start + help[start..].find("      --read-only").unwrap();
    let section: String = help[start..end]
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    insta::assert_snapshot!(section, @r"
    --network <NETWORK>
        The container's network: a private one with outbound access, the host's, or none

        Possible values:
        - bridge:      A network namespace of its own with outbound access through slirp4netns:
          the host's interfaces, loopback and abstract unix sockets are out of reach
        - slirp4netns: The same as `bridge` (podman's name for it)
        - host:        The host's network: the container sees the host's interfaces and reaches
          every service of the host, those on 127.0.0.1 and abstract unix sockets too
        - none:        Only a loopback interface

        [default: bridge]
    ");
    let out = root
        .manifold()
        .args(["run", "--network", "pasta", "busybox", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr), @r"
    error: invalid value 'pasta' for '--network <NETWORK>'
      [possible values: bridge, slirp4netns, host, none]

    For more information, try '--help'.
    ");
}

/// Without slirp4netns the default network fails with what to do, and leaves no container.
#[test]
fn the_default_network_without_slirp4netns() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    // A PATH with runc and nothing else.
    let bin = root.scratch("bin");
    let runc = crate::harness::find_program("runc").unwrap();
    std::os::unix::fs::symlink(&runc, bin.join("runc")).unwrap();
    let out = root
        .manifold()
        .env("PATH", &bin)
        .args(["run", "--rm", "busybox", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr), @r"
    error: `slirp4netns` not found on PATH: the container's private network needs it
    hint: install slirp4netns (Debian, Ubuntu: `apt-get install slirp4netns`), or choose `--network none` (no network) or `--network host` (the host's network)
    ");
    let ps = root.manifold().args(["ps", "-a", "-q"]).output().unwrap();
    assert_eq!(stdout_of(&ps), "");
    // The other modes need no forwarder.
    root.manifold()
        .env("PATH", &bin)
        .args(["run", "--rm", "--network", "none", "busybox", "true"])
        .assert()
        .success();
}

// --- item 11 -----------------------------------------------------------------------------------

/// The processes under `pid` (children first found, then theirs), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = vec![pid];
    let mut out = Vec::new();
    // Bounded: a process tree is no deeper than the number of processes.
    for _ in 0..64 {
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let status = fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let ppid = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|v| v.trim().parse::<u32>().ok());
            if ppid.is_some_and(|pp| parents.contains(&pp)) && !out.contains(&p) {
                found.push(p);
            }
        }
        if found.is_empty() {
            break;
        }
        out.extend(&found);
        parents = found;
    }
    out
}

/// `manifold ARGS` with its output in files; past `limit`, it and every process under it (the
/// runtime, the container's init, whichever blocks) are SIGKILLed and the status is None.
fn run_bounded(root: &TestRoot, args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let dir = root.scratch("bounded");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_manifold"))
        .arg("--root")
        .arg(root.path())
        .args(["--progress", "none"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            for p in descendants(child.id()) {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(p as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap();
    (status, read(&out), read(&err))
}

/// /etc/passwd and /etc/group as FIFOs: `run` used to block forever opening them (and runc
/// 1.1 would too); now they read as absent. The command is killed after a minute: a hang shows
/// as a kill, not as a slow pass.
#[test]
fn fifo_account_files_do_not_hang_run() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let layer = RawTar::default()
        .entry(b'6', "etc/passwd", "", &[], 0o644)
        .entry(b'6', "etc/group", "", &[], 0o644)
        .finish();
    with_layers(&root, "busybox", &[layer], "fifo:latest");
    let run = |args: &[&str]| {
        let all: Vec<&str> = ["run", "--rm", "--network", "none"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        let (status, out, err) = run_bounded(&root, &all, Duration::from_secs(60));
        let status = status.unwrap_or_else(|| {
            panic!("manifold hung on a FIFO /etc/passwd and was killed after a minute: {err}")
        });
        (status, out, err)
    };
    let (status, out, err) = run(&["fifo", "id"]);
    assert_eq!((status, out.as_str()), (0, "uid=0 gid=0\n"), "{err}");
    let (status, _, err) = run(&["-u", "nobody", "fifo", "id"]);
    assert_eq!(status, 125);
    insta::assert_snapshot!(err, @"error: unable to find user nobody: no matching entries in passwd file");
    // Numeric users need no entry (docker's rule).
    let (status, out, err) = run(&["-u", "1234:5678", "fifo", "id"]);
    assert_eq!((status, out.as_str()), (0, "uid=1234 gid=5678\n"), "{err}");
}
