//! Published ports: docker's `-p [IP:][HOST:]CONTAINER[/tcp|udp]` syntax (ranges included) and
//! `-P`, the host ports they get (a free one when none is named; one already in use is an error
//! naming it, checked before the container is made), how `ps` and `port` show them, and the
//! request that makes the container's forwarder listen on them.
//!
//! The forwarder is the container's slirp4netns (see `network`): its API socket takes an
//! `add_hostfwd` per port once the namespace is configured, and slirp4netns then listens on the
//! host port and connects each accepted connection (or relays each datagram) to the container's
//! address. Nothing else is involved — no iptables, no proxy process per port, no root: the
//! same mechanism works for a rootless manifold (host ports below
//! `net.ipv4.ip_unprivileged_port_start` then need that sysctl lowered). slirp4netns forwards
//! IPv4 only, so IPv6 host addresses are refused.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The name of slirp4netns's API socket in the container's directory.
pub const API_SOCKET: &str = "slirp4netns.sock";
/// How long slirp4netns may take to answer one API request.
const API_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container port with its protocol: `80/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerPort {
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for ContainerPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

impl ContainerPort {
    /// `80`, `80/tcp`, `53/udp` (`port`'s argument, an image's EXPOSE key).
    pub fn parse(s: &str) -> Result<ContainerPort, PortError> {
        let (port, proto) = match s.split_once('/') {
            Some((p, proto)) => (p, proto),
            None => (s, "tcp"),
        };
        let proto = Proto::parse(proto)
            .ok_or_else(|| PortError::invalid(s, PortSyntax::UnknownProto(proto.to_string())))?;
        let port = parse_port(port).map_err(|why| PortError::invalid(s, why))?;
        Ok(ContainerPort { port, proto })
    }
}

/// One port as asked for, before it has a host port: a `-p` item (a range gives several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub host_ip: Ipv4Addr,
    /// None: any free port; a range of one or more ports to choose from.
    pub host_ports: Option<(u16, u16)>,
    pub container: ContainerPort,
}

/// A published port: the host address slirp4netns listens on and the container port it
/// forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PublishedPort {
    pub fn container(&self) -> ContainerPort {
        ContainerPort {
            port: self.container_port,
            proto: self.proto,
        }
    }

    /// `0.0.0.0:8080` (what `port CONTAINER 80` prints).
    pub fn host_address(&self) -> String {
        format!("{}:{}", self.host_ip, self.host_port)
    }
}

impl fmt::Display for PublishedPort {
    /// docker's `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.proto
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid port specification `{spec}`: {why}")]
    Invalid { spec: String, why: PortSyntax },
    #[error("the host port {0} is already in use")]
    InUse(String, #[source] io::Error),
    #[error("the host port {0} is published twice")]
    Duplicate(String),
    #[error("no free host port in {0}")]
    NoneFree(String),
    #[error("cannot find a free host port for {0}")]
    Allocate(String, #[source] io::Error),
    #[error("cannot listen on the host port {0}")]
    Bind(String, #[source] io::Error),
    #[error("`slirp4netns` refused to forward the host port {address}: {message}")]
    Refused { address: String, message: String },
    #[error("cannot ask `slirp4netns` to forward the host port {address}")]
    Api {
        address: String,
        #[source]
        source: io::Error,
    },
}

/// What is wrong in a `-p` value or a container port (the hint is `PortError::Invalid`'s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSyntax {
    #[error("unknown protocol `{0}` (tcp or udp)")]
    UnknownProto(String),
    #[error("`{0}` is not a port number (1-65535)")]
    NotAPort(String),
    #[error("`{0}` is an empty range")]
    EmptyRange(String),
    #[error("IPv6 host addresses are not supported (slirp4netns forwards IPv4 only)")]
    Ipv6,
    #[error("expected [IP:][HOST:]CONTAINER[/PROTO]")]
    Shape,
    #[error("`{0}` is not an IPv4 address")]
    NotIpv4(String),
    #[error("the host and container port ranges differ in size")]
    RangeSizes,
}

impl PortError {
    fn invalid(spec: &str, why: PortSyntax) -> PortError {
        PortError::Invalid {
            spec: spec.to_string(),
            why,
        }
    }
}

impl crate::hint::Hint for PortError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PortError::Invalid { .. } => {
                "ports look like `-p 8080:80`, `-p 127.0.0.1:8080:80/udp`, `-p 80` (any free host port) or `-p 8000-8010:80-90`".into()
            }
            PortError::InUse(..) | PortError::Duplicate(_) | PortError::Refused { .. } => {
                "choose another host port, or leave it out (`-p 80`) for a free one".into()
            }
            PortError::Bind(_, e) if e.kind() == io::ErrorKind::PermissionDenied => {
                "as a plain user, ports below `net.ipv4.ip_unprivileged_port_start` (1024) need that sysctl lowered; or choose a higher port".into()
            }
            PortError::Bind(_, e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                "give an address of this machine (`-p 127.0.0.1:8080:80`), or none for all".into()
            }
            _ => return None,
        })
    }
}

fn parse_port(s: &str) -> Result<u16, PortSyntax> {
    match s.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(PortSyntax::NotAPort(s.to_string())),
    }
}

fn parse_range(s: &str) -> Result<(u16, u16), PortSyntax> {
    match s.split_once('-') {
        None => parse_port(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (parse_port(a)?, parse_port(b)?);
            if b < a {
                return Err(PortSyntax::EmptyRange(s.to_string()));
            }
            Ok((a, b))
        }
    }
}

/// One `-p` value, as docker reads it: `[IP:][HOST:]CONTAINER[/PROTO]`, where HOST and
/// CONTAINER may be ranges (`8000-8010:80-90`: pairwise; `8000-8010:80`: one free port of the
/// range), HOST may be empty (`127.0.0.1::80`: any free port), and IP is IPv4.
pub fn parse(spec: &str) -> Result<Vec<PortRequest>, PortError> {
    let bad = |why: PortSyntax| PortError::invalid(spec, why);
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((rest, proto)) => (
            rest,
            Proto::parse(proto).ok_or_else(|| bad(PortSyntax::UnknownProto(proto.to_string())))?,
        ),
        None => (spec, Proto::Tcp),
    };
    if rest.starts_with('[') || rest.matches(':').count() > 2 {
        return Err(bad(PortSyntax::Ipv6));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts[..] {
        [c] => (None, None, c),
        [h, c] => (None, Some(h), c),
        [ip, h, c] => (Some(ip), Some(h), c),
        _ => return Err(bad(PortSyntax::Shape)),
    };
    let host_ip = match ip {
        None | Some("") => Ipv4Addr::UNSPECIFIED,
        Some(ip) => ip
            .parse::<Ipv4Addr>()
            .map_err(|_| bad(PortSyntax::NotIpv4(ip.to_string())))?,
    };
    let container = parse_range(container).map_err(bad)?;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(parse_range(h).map_err(bad)?),
    };
    let size = |r: (u16, u16)| usize::from(r.1 - r.0) + 1;
    match host {
        Some(h) if size(h) != size(container) && size(container) != 1 => {
            return Err(bad(PortSyntax::RangeSizes));
        }
        _ => {}
    }
    Ok((container.0..=container.1)
        .enumerate()
        .map(|(i, port)| PortRequest {
            host_ip,
            host_ports: host.map(|h| {
                if size(h) == size(container) {
                    let p = h.0 + i as u16;
                    (p, p)
                } else {
                    h
                }
            }),
            container: ContainerPort { port, proto },
        })
        .collect())
}

/// The ports an image EXPOSEs (`80/tcp` keys of its config), in order; keys that are not ports
/// are skipped.
pub fn exposed(config: &crate::oci::ImageConfig) -> Vec<ContainerPort> {
    let mut out: Vec<ContainerPort> = config
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| ContainerPort::parse(k).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `-P`: every exposed port on a free host port of every address.
pub fn publish_all(exposed: &[ContainerPort]) -> Vec<PortRequest> {
    exposed
        .iter()
        .map(|c| PortRequest {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_ports: None,
            container: *c,
        })
        .collect()
}

/// Bind a host port: the socket is held while the other ports are chosen, so that no two get
/// the same one.
fn bind(ip: Ipv4Addr, port: u16, proto: Proto) -> io::Result<(OwnedFd, u16)> {
    let addr = SocketAddrV4::new(ip, port);
    Ok(match proto {
        Proto::Tcp => {
            let l = TcpListener::bind(addr)?;
            let port = l.local_addr()?.port();
            (l.into(), port)
        }
        Proto::Udp => {
            let s = UdpSocket::bind(addr)?;
            let port = s.local_addr()?.port();
            (s.into(), port)
        }
    })
}

/// Give each request a host port that nothing listens on: the one it names (an error naming it
/// when it is taken), else a free one. The check binds each port for a moment, as the forwarder
/// will; the ports are free again when this returns.
pub fn allocate(requests: &[PortRequest]) -> Result<Vec<PublishedPort>, PortError> {
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut out: Vec<PublishedPort> = Vec::new();
    for r in requests {
        let label = |port: u16| format!("{}:{port}/{}", r.host_ip, r.container.proto);
        let (sock, port) = match r.host_ports {
            Some((a, b)) if a == b => {
                let taken = out.iter().any(|p| {
                    p.host_port == a
                        && p.proto == r.container.proto
                        && (p.host_ip == r.host_ip
                            || p.host_ip.is_unspecified()
                            || r.host_ip.is_unspecified())
                });
                if taken {
                    return Err(PortError::Duplicate(label(a)));
                }
                bind(r.host_ip, a, r.container.proto).map_err(|e| match e.kind() {
                    io::ErrorKind::AddrInUse => PortError::InUse(label(a), e),
                    _ => PortError::Bind(label(a), e),
                })?
            }
            Some((a, b)) => (a..=b)
                .find_map(|p| bind(r.host_ip, p, r.container.proto).ok())
                .ok_or_else(|| {
                    PortError::NoneFree(format!("{}:{a}-{b}/{}", r.host_ip, r.container.proto))
                })?,
            None => bind(r.host_ip, 0, r.container.proto).map_err(|e| {
                PortError::Allocate(format!("{}/{}", r.host_ip, r.container.proto), e)
            })?,
        };
        held.push(sock);
        out.push(PublishedPort {
            host_ip: r.host_ip,
            host_port: port,
            container_port: r.container.port,
            proto: r.container.proto,
        });
    }
    drop(held);
    Ok(out)
}

/// Check that the ports a stopped container published are free again (before `start`).
pub fn check_free(ports: &[PublishedPort]) -> Result<(), PortError> {
    let requests: Vec<PortRequest> = ports
        .iter()
        .map(|p| PortRequest {
            host_ip: p.host_ip,
            host_ports: Some((p.host_port, p.host_port)),
            container: p.container(),
        })
        .collect();
    allocate(&requests).map(|_| ())
}

/// docker's PORTS column: published ports as `0.0.0.0:8080->80/tcp`, consecutive ones as
/// ranges (`0.0.0.0:8000-8002->80-82/tcp`), exposed ports nothing publishes as `443/tcp`.
pub fn display(published: &[PublishedPort], exposed: &[ContainerPort]) -> String {
    let mut ports = published.to_vec();
    ports.sort_by_key(|p| (p.host_ip, p.proto, p.container_port, p.host_port));
    let mut items: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let first = ports[i];
        let mut j = i;
        while j + 1 < ports.len() {
            let (a, b) = (ports[j], ports[j + 1]);
            if b.host_ip == a.host_ip
                && b.proto == a.proto
                && b.container_port == a.container_port.wrapping_add(1)
                && b.host_port == a.host_port.wrapping_add(1)
            {
                j += 1;
            } else {
                break;
            }
        }
        let last = ports[j];
        items.push(if i == j {
            first.to_string()
        } else {
            format!(
                "{}:{}-{}->{}-{}/{}",
                first.host_ip,
                first.host_port,
                last.host_port,
                first.container_port,
                last.container_port,
                first.proto
            )
        });
        i = j + 1;
    }
    let mut bare: Vec<ContainerPort> = exposed
        .iter()
        .filter(|c| !published.iter().any(|p| p.container() == **c))
        .copied()
        .collect();
    bare.sort();
    items.extend(bare.iter().map(ToString::to_string));
    items.join(", ")
}

/// Ask slirp4netns, through its API socket `api` (a path short enough for a socket address:
/// see `network`), to forward `port`.
pub fn add_hostfwd(api: &Path, port: &PublishedPort) -> Result<(), PortError> {
    let address = format!("{}/{}", port.host_address(), port.proto);
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": port.proto.as_str(),
            "host_addr": port.host_ip.to_string(),
            "host_port": port.host_port,
            "guest_port": port.container_port,
        }
    });
    let api_err = |source| PortError::Api {
        address: address.clone(),
        source,
    };
    let mut s = UnixStream::connect(api).map_err(api_err)?;
    s.set_read_timeout(Some(API_TIMEOUT)).map_err(api_err)?;
    s.write_all(request.to_string().as_bytes())
        .map_err(api_err)?;
    // One request per connection: slirp4netns answers once the request is complete.
    s.shutdown(std::net::Shutdown::Write).map_err(api_err)?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(api_err)?;
    let v: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| api_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    if v.get("return").is_some() {
        return Ok(());
    }
    let message = v["error"]["desc"]
        .as_str()
        .unwrap_or("no reason given")
        .to_string();
    Err(PortError::Refused { address, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hint::Hint;

    fn req(ip: [u8; 4], host: Option<(u16, u16)>, port: u16, proto: Proto) -> PortRequest {
        PortRequest {
            host_ip: Ipv4Addr::from(ip),
            host_ports: host,
            container: ContainerPort { port, proto },
        }
    }

    #[test]
    fn docker_syntax() {
        assert_eq!(parse("80").unwrap(), [req([0; 4], None, 80, Proto::Tcp)]);
        assert_eq!(
            parse("8080:80").unwrap(),
            [req([0; 4], Some((8080, 8080)), 80, Proto::Tcp)]
        );
        assert_eq!(
            parse("127.0.0.1:8080:80/udp").unwrap(),
            [req([127, 0, 0, 1], Some((8080, 8080)), 80, Proto::Udp)]
        );
        assert_eq!(
            parse("127.0.0.1::80").unwrap(),
            [req([127, 0, 0, 1], None, 80, Proto::Tcp)]
        );
        assert_eq!(
            parse("8000-8001:80-81/TCP").unwrap(),
            [
                req([0; 4], Some((8000, 8000)), 80, Proto::Tcp),
                req([0; 4], Some((8001, 8001)), 81, Proto::Tcp)
            ]
        );
        assert_eq!(
            parse("8000-8010:80").unwrap(),
            [req([0; 4], Some((8000, 8010)), 80, Proto::Tcp)]
        );
        assert_eq!(parse("80-82").unwrap().len(), 3);
        for bad in [
            "",
            "http",
            "0",
            "65536",
            "80/sctp",
            "1:2:3:4",
            "[::1]:8080:80",
            "::1:8080:80",
            "300.0.0.1:80:80",
            "8000-8002:80-81",
            "8080:80-81",
            "90-80",
            "a:80",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, PortError::Invalid { .. }), "{bad}: {e}");
        }
        assert_eq!(
            parse("[::1]:80:80").unwrap_err().to_string(),
            "invalid port specification `[::1]:80:80`: IPv6 host addresses are not supported (slirp4netns forwards IPv4 only)"
        );
        assert_eq!(
            ContainerPort::parse("53/udp").unwrap().to_string(),
            "53/udp"
        );
        assert_eq!(ContainerPort::parse("80").unwrap().to_string(), "80/tcp");
    }

    #[test]
    fn free_ports_busy_ports_and_duplicates() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let e = allocate(&[req([127, 0, 0, 1], Some((port, port)), 80, Proto::Tcp)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the host port 127.0.0.1:{port}/tcp is already in use")
        );
        // The same port number over UDP is another port.
        allocate(&[req([127, 0, 0, 1], Some((port, port)), 80, Proto::Udp)]).unwrap();
        let got = allocate(&[
            req([127, 0, 0, 1], None, 80, Proto::Tcp),
            req([127, 0, 0, 1], None, 80, Proto::Tcp),
        ])
        .unwrap();
        assert_ne!(got[0].host_port, got[1].host_port);
        assert!(got.iter().all(|p| p.host_port != 0));
        let free = got[0].host_port;
        assert!(matches!(
            allocate(&[
                req([0; 4], Some((free, free)), 80, Proto::Tcp),
                req([127, 0, 0, 1], Some((free, free)), 81, Proto::Tcp)
            ]),
            Err(PortError::Duplicate(_))
        ));
        // A range skips the busy port.
        let end = port.saturating_add(20);
        let got = allocate(&[req([127, 0, 0, 1], Some((port, end)), 80, Proto::Tcp)]).unwrap();
        assert!(
            got[0].host_port > port && got[0].host_port <= end,
            "{got:?}"
        );
        check_free(&[PublishedPort {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: port,
            container_port: 80,
            proto: Proto::Tcp,
        }])
        .unwrap_err();
    }

    /// What slirp4netns 1.2.0 answers when it cannot listen on the port, as seen from a real
    /// one (the refusal cannot be provoked once the port was checked free just before).
    #[test]
    fn the_forwarders_refusal_names_the_port() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let api = dir.path().join(API_SOCKET);
        let listener = UnixListener::bind(&api).unwrap();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for answer in [
                r#"{"return":{"id":1}}"#,
                r#"{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}"#,
            ] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = String::new();
                conn.read_to_string(&mut request).unwrap();
                requests.push(request);
                conn.write_all(answer.as_bytes()).unwrap();
            }
            requests
        });
        let port = PublishedPort {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: 8080,
            container_port: 80,
            proto: Proto::Udp,
        };
        add_hostfwd(&api, &port).unwrap();
        let e = add_hostfwd(&api, &port).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`slirp4netns` refused to forward the host port 127.0.0.1:8080/udp: bad request: add_hostfwd: slirp_add_hostfwd failed"
        );
        assert!(e.hint().unwrap().contains("another host port"));
        let requests = server.join().unwrap();
        let r: serde_json::Value = serde_json::from_str(&requests[0]).unwrap();
        assert_eq!(
            r,
            serde_json::json!({"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_addr": "127.0.0.1", "host_port": 8080, "guest_port": 80}})
        );
    }

    #[test]
    fn ps_column_like_docker() {
        let p = |host: u16, ctr: u16| PublishedPort {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: host,
            container_port: ctr,
            proto: Proto::Tcp,
        };
        let exposed = [
            ContainerPort::parse("80").unwrap(),
            ContainerPort::parse("443").unwrap(),
        ];
        assert_eq!(
            display(&[p(8080, 80)], &exposed),
            "0.0.0.0:8080->80/tcp, 443/tcp"
        );
        assert_eq!(
            display(&[p(8002, 82), p(8000, 80), p(8001, 81), p(9000, 90)], &[]),
            "0.0.0.0:8000-8002->80-82/tcp, 0.0.0.0:9000->90/tcp"
        );
        assert_eq!(display(&[], &[]), "");
    }
}
