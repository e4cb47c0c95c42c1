//! A static probe the network tests copy into containers (busybox has no unix-socket client):
//! `netprobe tcp ADDR:PORT` and `netprobe abstract NAME` try to connect and print
//! `connected: <first line the server sent>` (exit 0) or `failed: <error>` (exit 1).

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
        _ => {
            eprintln!("usage: netprobe tcp ADDR:PORT | netprobe abstract NAME");
            std::process::exit(2)
        }
    }
}
