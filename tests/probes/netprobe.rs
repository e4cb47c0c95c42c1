//! A static probe the network tests copy into containers (busybox has no unix-socket client
//! nor packet capture):
//! - `netprobe tcp ADDR:PORT` and `netprobe abstract NAME` try to connect and print
//!   `connected: <first line the server sent>` (exit 0) or `failed: <error>` (exit 1);
//! - `netprobe sniff MARKER SECONDS` captures every packet of the namespace (AF_PACKET) while it
//!   sends itself `own-<MARKER>` over its loopback, and prints `denied: <error>` when it may not
//!   capture, else `own: seen|unseen, marker: seen|unseen`.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

fn report(result: std::io::Result<Box<dyn Read>>) -> ! {
    match result {
        Ok(stream) => {
            let mut line = String::new();
            let _ = BufReader::new(stream).read_line(&mut line);
            println!("connected: {}", line.trim_end());
            std::process::exit(0)
        }
        Err(e) => {
            println!("failed: {e}");
            std::process::exit(1)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let timeout = Duration::from_secs(10);
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("tcp"), Some(addr)) => report((|| {
            let addr = addr
                .parse()
                .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
            let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            Ok(Box::new(s) as Box<dyn Read>)
        })()),
        (Some("abstract"), Some(name)) => report((|| {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
            s.set_read_timeout(Some(timeout))?;
            Ok(Box::new(s) as Box<dyn Read>)
        })()),
        (Some("sniff"), Some(marker)) => {
            let seconds = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
            sniff(marker, seconds)
        }
        _ => {
            eprintln!(
                "usage: netprobe tcp ADDR:PORT | netprobe abstract NAME | netprobe sniff MARKER SECONDS"
            );
            std::process::exit(2)
        }
    }
}

unsafe extern "C" {
    fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const u8, len: u32) -> i32;
    fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn sniff(marker: &str, seconds: u64) -> ! {
    const AF_PACKET: i32 = 17;
    const SOCK_RAW: i32 = 3;
    const ETH_P_ALL_BE: i32 = 0x0300;
    const SOL_SOCKET: i32 = 1;
    const SO_RCVTIMEO: i32 = 20;
    // SAFETY: plain system calls on a descriptor this function owns.
    let fd = unsafe { socket(AF_PACKET, SOCK_RAW, ETH_P_ALL_BE) };
    if fd < 0 {
        println!("denied: {}", std::io::Error::last_os_error());
        std::process::exit(0);
    }
    let timeout: [i64; 2] = [0, 100_000];
    // SAFETY: `timeout` is a struct timeval that outlives the call.
    unsafe { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout.as_ptr().cast(), 16) };
    let own = format!("own-{marker}");
    let own_bytes = own.clone().into_bytes();
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    // Traffic of its own on its loopback: proof that the capture works at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            drop(s);
        }
    });
    std::thread::spawn(move || {
        use std::io::Write;
        while std::time::Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let _ = s.write_all(own.as_bytes());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (mut own_seen, mut marker_seen) = (false, false);
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < deadline {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { recv(fd, buf.as_mut_ptr(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let packet = &buf[..n as usize];
        own_seen |= contains(packet, &own_bytes);
        // The marker alone, not inside `own-<marker>`.
        marker_seen |= contains(packet, marker.as_bytes()) && !contains(packet, &own_bytes);
    }
    let word = |b: bool| if b { "seen" } else { "unseen" };
    println!("own: {}, marker: {}", word(own_seen), word(marker_seen));
    std::process::exit(0)
}
