//! Forwarding signals to the runtime processes while manifold waits for them (the runtime
//! forwards them to the container).
//!
//! A signal sent by a process (`kill`, `docker stop`-style tools, CI runners) is forwarded.
//! One the kernel generated for the terminal (Ctrl-C, hang-up) is not: it went to the whole
//! foreground process group, the runtime included, and forwarding it would deliver it twice.
//! The handlers are signal-hook's, which tells the two apart by the sender in the siginfo.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use rustix::process::{Pid, Signal, kill_process};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::{Handle, SignalsInfo};
use signal_hook::low_level::siginfo::Cause;

/// The signals forwarded.
pub const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// True while no forwarder is installed: the forwarded signals then do what they did before the
/// first one was (signal-hook keeps its handler installed once it has been: this makes it act
/// as the default action).
fn idle() -> &'static Arc<AtomicBool> {
    static IDLE: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    IDLE.get_or_init(|| Arc::new(AtomicBool::new(true)))
}

fn default_when_idle() -> io::Result<()> {
    static REGISTERED: OnceLock<Result<(), io::ErrorKind>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            FORWARDED.iter().try_for_each(|sig| {
                signal_hook::flag::register_conditional_default(*sig, Arc::clone(idle()))
                    .map(drop)
                    .map_err(|e| e.kind())
            })
        })
        .map_err(io::Error::from)
}

/// Installed while containers run; the signals act as before once it is dropped.
pub struct Forwarder {
    targets: Arc<Mutex<Vec<i32>>>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    pub fn install() -> io::Result<Forwarder> {
        default_when_idle()?;
        let mut signals = SignalsInfo::<WithOrigin>::new(FORWARDED)?;
        idle().store(false, Ordering::SeqCst);
        let handle = signals.handle();
        let targets: Arc<Mutex<Vec<i32>>> = Arc::default();
        let t = Arc::clone(&targets);
        let thread = std::thread::spawn(move || {
            for origin in signals.forever() {
                if !matches!(origin.cause, Cause::Sent(_)) {
                    continue;
                }
                let Some(sig) = Signal::from_named_raw(origin.signal) else {
                    continue;
                };
                for pid in t.lock().unwrap().iter() {
                    // A child we started and have not reaped yet; one that has exited is fine.
                    if let Some(pid) = Pid::from_raw(*pid) {
                        let _ = kill_process(pid, sig);
                    }
                }
            }
        });
        Ok(Forwarder {
            targets,
            handle,
            thread: Some(thread),
        })
    }

    pub fn add(&self, pid: u32) {
        self.targets.lock().unwrap().push(pid as i32);
    }

    pub fn remove(&self, pid: u32) {
        self.targets.lock().unwrap().retain(|p| *p != pid as i32);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        idle().store(true, Ordering::SeqCst);
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_signal_a_process_sends_reaches_the_targets() {
        let forwarder = Forwarder::install().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        forwarder.add(child.id());
        // Sent by a process (this one): forwarded, and SIGUSR1 ends `sleep`.
        kill_process(rustix::process::getpid(), Signal::USR1).unwrap();
        let status = child.wait().unwrap();
        forwarder.remove(child.id());
        drop(forwarder);
        assert_eq!(status.signal(), Some(libc::SIGUSR1), "{status:?}");
    }
}
