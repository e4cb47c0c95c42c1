//! Container networking: the modes (`host`, `none`, and the default: a private network namespace
//! with outbound access), the namespace manifold makes for the private network, the forwarder
//! that connects it to the outside (slirp4netns), and the /etc/hosts and /etc/resolv.conf each
//! mode gives the container.
//!
//! The private network is podman's rootless one: a network namespace of its own holding
//! loopback and a tap device whose far end is slirp4netns, a user-mode TCP/IP stack on the host
//! side that turns the container's connections into ordinary sockets of the host. No bridge, no
//! iptables, no veth: it works the same as root and rootless. The container sees only `lo` and
//! `tap0`; the host's interfaces, its abstract unix sockets (they belong to a network
//! namespace) and its loopback stay out of reach: slirp4netns runs with
//! `--disable-host-loopback`, so the gateway address does not lead to the host's 127.0.0.1.
//!
//! Why slirp4netns (Debian bookworm: 1.2.0) and not pasta (bookworm: passt 0.0~git20230309),
//! from what the installed binaries do: slirp4netns ends when a descriptor manifold holds is
//! closed (`--exit-fd`), so the forwarder cannot outlive manifold, even SIGKILLed, nor the
//! container; it reports readiness on a descriptor (`--ready-fd`: no polling); its DNS forwarder
//! (10.0.2.3) reaches whatever resolver the host uses, loopback ones (systemd-resolved's
//! 127.0.0.53) included; it confines itself (`--enable-sandbox` drops to CAP_NET_BIND_SERVICE in
//! an empty root, `--enable-seccomp`), which matters for a packet parser running as root. That
//! pasta, by default (`-T auto`), connects the namespace's 127.0.0.1:PORT to a service on the
//! host's 127.0.0.1:PORT (the very leak to close), gives the namespace a copy of the host's
//! interface name and address, has no exit descriptor, and as root drops to `nobody` before it
//! opens the namespace (a `/proc/PID/ns/net` target fails; only a bind-mounted one works).
//!
//! The forwarder is started for one container and stopped with it ([`ContainerNetwork`]).
//! Published ports (`-p HOST:CTR`, see `ports`) belong to the same forwarder: slirp4netns takes
//! them through its API socket (`--api-socket`, `add_hostfwd`) once it is ready, in
//! [`ContainerNetwork::wait_ready`]; it then listens on the host ports itself, so they go when
//! it goes.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::{self, API_SOCKET, PortError, PublishedPort};
use super::service::SocketPath;

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// A network namespace of its own with outbound access through slirp4netns (the default;
    /// docker's and podman's `bridge`).
    #[serde(rename = "slirp4netns", alias = "bridge")]
    Private,
    /// The host's network namespace.
    #[serde(rename = "host")]
    Host,
    /// A network namespace of its own with only loopback.
    #[serde(rename = "none")]
    None,
}

impl Network {
    /// A RUN step's `--network=` (BuildKit's values): `default` is the private network.
    pub fn from_build_flag(value: &str) -> Option<Network> {
        match value {
            "default" | "" => Some(Network::Private),
            "none" => Some(Network::None),
            "host" => Some(Network::Host),
            _ => None,
        }
    }
}

/// Which network namespace the runtime puts the container in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// The host's (no network namespace in the spec).
    Host,
    /// A new one the runtime makes (loopback only).
    New,
    /// One that exists, by path.
    Join(PathBuf),
}

/// The private network's addresses: slirp4netns's defaults (`--cidr` 10.0.2.0/24).
pub const GUEST_ADDRESS: &str = "10.0.2.100";
/// The DNS forwarder inside the private network.
pub const DNS_ADDRESS: &str = "10.0.2.3";
/// The name of the container's interface towards the forwarder.
pub const TAP_NAME: &str = "tap0";
/// podman's MTU for slirp4netns: fewer, larger packets through the user-mode stack.
const MTU: u32 = 65520;
/// How long slirp4netns may take to configure the namespace before manifold gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("`slirp4netns` not found on PATH: the container's private network needs it")]
    ForwarderNotFound,
    #[error("cannot create a network namespace for the container")]
    Namespace(#[source] io::Error),
    #[error("cannot start `slirp4netns`")]
    Start(#[source] io::Error),
    #[error("`slirp4netns` failed to set up the container's network: {0}")]
    Failed(String),
    #[error("`slirp4netns` did not set up the container's network within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl crate::hint::Hint for NetworkError {
    fn hint(&self) -> Option<String> {
        match self {
            NetworkError::ForwarderNotFound => Some(
                "install slirp4netns (Debian, Ubuntu: `apt-get install slirp4netns`), or choose \
                 `--network none` (no network) or `--network host` (the host's network)"
                    .into(),
            ),
            NetworkError::Namespace(_) => {
                Some("inside a container, run manifold privileged, or use `--network host`".into())
            }
            NetworkError::Port(e) => crate::hint::Hint::hint(e),
            _ => None,
        }
    }
}

/// A container's network while the container lives: for the private network, the namespace
/// manifold made and the forwarder attached to it. Dropping it stops the forwarder.
#[derive(Debug)]
pub struct ContainerNetwork {
    mode: Network,
    private: Option<Private>,
}

#[derive(Debug)]
struct Private {
    /// Keeps the namespace alive until the runtime has joined it; the runtime opens it by
    /// `/proc/<manifold>/fd/<n>`.
    netns: OwnedFd,
    forwarder: Child,
    /// The write end of slirp4netns's `--exit-fd`: when it closes (manifold finished or was
    /// killed), slirp4netns exits.
    _exit: OwnedFd,
    /// Where slirp4netns says it has configured the namespace; None once it has.
    ready: Option<OwnedFd>,
    log: PathBuf,
    /// Forwarded once the namespace is configured, through slirp4netns's API socket in `dir`.
    ports: Vec<PublishedPort>,
    dir: PathBuf,
}

impl ContainerNetwork {
    /// Set up `mode`'s network: for the private network, make the namespace and start
    /// slirp4netns on it (its stderr goes to `log`), which configures it while the caller
    /// prepares the rest of the container; [`ContainerNetwork::wait_ready`] before starting it.
    /// `ports` are published then, through an API socket slirp4netns makes in `dir` (the
    /// container's directory).
    pub fn start(
        mode: Network,
        log: &Path,
        ports: &[PublishedPort],
        dir: &Path,
    ) -> Result<ContainerNetwork, NetworkError> {
        let private = match mode {
            Network::Private => Some(start_private(log, ports, dir)?),
            Network::Host | Network::None => None,
        };
        Ok(ContainerNetwork { mode, private })
    }

    /// Where the runtime puts the container.
    pub fn namespace(&self) -> Namespace {
        match (&self.private, self.mode) {
            (Some(p), _) => Namespace::Join(fd_path(&p.netns)),
            (None, Network::Host) => Namespace::Host,
            (None, _) => Namespace::New,
        }
    }

    /// Return once the namespace is configured (at once for host and none); an error when the
    /// forwarder failed.
    pub fn wait_ready(&mut self) -> Result<(), NetworkError> {
        let Some(p) = self.private.as_mut() else {
            return Ok(());
        };
        let Some(ready) = p.ready.take() else {
            return Ok(());
        };
        let published = match wait_ready(&ready) {
            Ok(()) => publish(&p.dir, &p.ports),
            Err(e) => Err(e.unwrap_or_else(|| NetworkError::Failed(last_line(&p.log)))),
        };
        if published.is_err() {
            self.stop();
        }
        published
    }

    /// Signal the forwarder to go (the container has exited); [`ContainerNetwork::stop`] reaps
    /// it. Its exit takes a few milliseconds (the kernel tears its tap device down), which the
    /// caller can spend on its own cleanup.
    pub fn kill(&mut self) {
        if let Some(p) = self.private.as_mut() {
            let _ = p.forwarder.kill();
        }
    }

    /// Stop the forwarder and reap it: no process, not even a zombie, is left.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.private.take() {
            let _ = p.forwarder.kill();
            let _ = p.forwarder.wait();
        }
    }
}

impl Drop for ContainerNetwork {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The container's /etc/hosts: the host's with the host network (when it has one), else
/// localhost and the container's own name (at its address in the private network).
pub fn hosts(mode: Network, hostname: &str, host_hosts: Option<&str>) -> String {
    if let (Network::Host, Some(h)) = (mode, host_hosts)
        && !h.is_empty()
    {
        return h.to_string();
    }
    let own = match mode {
        Network::Private => GUEST_ADDRESS,
        _ => "127.0.1.1",
    };
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{hostname}\n")
}

/// The container's /etc/resolv.conf: the host's, except that in the private network the name
/// server is slirp4netns's forwarder (the host's servers may be on its loopback, out of reach),
/// keeping the host's search domains and options.
pub fn resolv_conf(mode: Network, host_resolv: &str) -> String {
    match mode {
        Network::Private => {
            let mut out: String = host_resolv
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    l.starts_with("search") || l.starts_with("domain") || l.starts_with("options")
                })
                .map(|l| format!("{l}\n"))
                .collect();
            out.push_str(&format!("nameserver {DNS_ADDRESS}\n"));
            out
        }
        Network::Host | Network::None => host_resolv.to_string(),
    }
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

/// A new network namespace, held by a descriptor: a short-lived thread unshares its own
/// (the namespace is a per-thread attribute) and opens it, so no process of manifold's moves.
fn new_namespace() -> io::Result<OwnedFd> {
    std::thread::spawn(|| {
        // SAFETY: CLONE_NEWNET only changes this thread's network namespace; it shares no
        // memory or descriptor table state that other threads rely on.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .map_err(io::Error::from)?;
        rustix::fs::open(
            "/proc/thread-self/ns/net",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(io::Error::from)
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Ask slirp4netns to forward each port (refusals name the port).
fn publish(dir: &Path, ports: &[PublishedPort]) -> Result<(), NetworkError> {
    if ports.is_empty() {
        return Ok(());
    }
    let api = SocketPath::new(dir, API_SOCKET).map_err(NetworkError::Start)?;
    for p in ports {
        ports::add_hostfwd(&api.path, p)?;
    }
    Ok(())
}

fn start_private(log: &Path, ports: &[PublishedPort], dir: &Path) -> Result<Private, NetworkError> {
    let program = super::find_program("slirp4netns").ok_or(NetworkError::ForwarderNotFound)?;
    let netns = new_namespace().map_err(NetworkError::Namespace)?;
    // Both pipes are close-on-exec here, so no other child (the runtime, another container's
    // forwarder) inherits them; slirp4netns gets its ends as descriptors 3 and 4.
    let (exit_read, exit_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io_err)?;
    let (ready_read, ready_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io_err)?;
    let stderr = fs::File::create(log).map_err(NetworkError::Start)?;
    let mut cmd = Command::new(&program);
    cmd.args([
        "--configure",
        &format!("--mtu={MTU}"),
        "--disable-host-loopback",
        "--enable-sandbox",
        "--enable-seccomp",
        "--exit-fd=3",
        "--ready-fd=4",
        "--netns-type=path",
    ]);
    if !ports.is_empty() {
        // Named relative to its working directory: the container's directory may be too deep
        // for a socket address. One left by an earlier start would make the bind fail.
        let _ = fs::remove_file(dir.join(API_SOCKET));
        cmd.args(["--api-socket", API_SOCKET]).current_dir(dir);
    }
    cmd.arg(fd_path(&netns))
        .arg(TAP_NAME)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let (exit_fd, ready_fd) = (exit_read.as_raw_fd(), ready_write.as_raw_fd());
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            // dup2 onto a different number clears close-on-exec on the copy; 3 and 4 may be
            // taken by the other pipe end, so go through numbers above them first.
            let high_exit = libc::fcntl(exit_fd, libc::F_DUPFD_CLOEXEC, 10);
            let high_ready = libc::fcntl(ready_fd, libc::F_DUPFD_CLOEXEC, 10);
            if high_exit < 0
                || high_ready < 0
                || libc::dup2(high_exit, 3) < 0
                || libc::dup2(high_ready, 4) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let forwarder = cmd.spawn().map_err(NetworkError::Start)?;
    // Only slirp4netns may hold these, so that its exit shows as end-of-file on `ready`.
    drop(exit_read);
    drop(ready_write);
    Ok(Private {
        netns,
        forwarder,
        _exit: exit_write,
        ready: Some(ready_read),
        log: log.to_path_buf(),
        ports: ports.to_vec(),
        dir: dir.to_path_buf(),
    })
}

/// Ok when slirp4netns wrote to its ready descriptor; `Err(None)` when it exited first.
fn wait_ready(ready: &OwnedFd) -> Result<(), Option<NetworkError>> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(ready, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: READY_TIMEOUT.as_secs() as i64,
        tv_nsec: 0,
    };
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Err(Some(NetworkError::Timeout(READY_TIMEOUT))),
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return Err(None),
        }
    }
    let mut byte = [0u8; 1];
    match rustix::io::read(ready, &mut byte) {
        Ok(1) => Ok(()),
        _ => Err(None),
    }
}

fn last_line(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "it exited without saying why".into())
}

fn io_err(e: rustix::io::Errno) -> NetworkError {
    NetworkError::Start(io::Error::from(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_names() {
        for (mode, name) in [
            (Network::Private, "\"slirp4netns\""),
            (Network::Host, "\"host\""),
            (Network::None, "\"none\""),
        ] {
            assert_eq!(serde_json::to_string(&mode).unwrap(), name);
            assert_eq!(serde_json::from_str::<Network>(name).unwrap(), mode);
        }
        assert_eq!(
            serde_json::from_str::<Network>("\"bridge\"").unwrap(),
            Network::Private
        );
    }

    #[test]
    fn build_flags() {
        assert_eq!(Network::from_build_flag("default"), Some(Network::Private));
        assert_eq!(Network::from_build_flag("none"), Some(Network::None));
        assert_eq!(Network::from_build_flag("host"), Some(Network::Host));
        assert_eq!(Network::from_build_flag("bridge"), None);
    }

    #[test]
    fn etc_files_fit_the_mode() {
        let host = "nameserver 127.0.0.53\nsearch corp.example\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(Network::Private, host),
            "search corp.example\noptions edns0 trust-ad\nnameserver 10.0.2.3\n"
        );
        assert_eq!(resolv_conf(Network::Host, host), host);
        assert_eq!(resolv_conf(Network::Private, ""), "nameserver 10.0.2.3\n");
        let h = hosts(Network::Private, "box", Some("10.1.1.1 hosty\n"));
        assert!(h.ends_with("10.0.2.100\tbox\n"), "{h}");
        assert!(!h.contains("hosty"));
        assert_eq!(
            hosts(Network::Host, "box", Some("10.1.1.1 hosty\n")),
            "10.1.1.1 hosty\n"
        );
        assert!(hosts(Network::None, "box", None).ends_with("127.0.1.1\tbox\n"));
        assert!(hosts(Network::Host, "box", Some("")).contains("localhost"));
    }
}
