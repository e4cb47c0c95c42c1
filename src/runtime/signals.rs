//! Forwarding signals to the runtime processes while manifold waits for them (the runtime
//! forwards them to the container).
//!
//! A signal sent by a process (`kill`, `docker stop`-style tools, CI runners) is forwarded.
//! One the kernel generated for the terminal (Ctrl-C, hang-up) is not: it went to the whole
//! foreground process group, the runtime included, and forwarding it would deliver it twice.

use std::io::{self, Read};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The signals forwarded.
pub const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO; only async-signal-safe calls.
    let code = unsafe { (*info).si_code };
    let from_process = u8::from(code <= 0);
    let msg = [sig as u8, from_process];
    let fd = PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe drops the signal, which is fine.
        unsafe { libc::write(fd, msg.as_ptr().cast(), 2) };
    }
}

/// Installed while containers run; restores the previous handlers when dropped.
pub struct Forwarder {
    targets: Arc<Mutex<Vec<i32>>>,
    old: Vec<(i32, libc::sigaction)>,
    write_fd: i32,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    pub fn install() -> io::Result<Forwarder> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (read_fd, write_fd) = (fds[0], fds[1]);
        PIPE.store(write_fd, Ordering::SeqCst);
        let targets: Arc<Mutex<Vec<i32>>> = Arc::default();
        let t = Arc::clone(&targets);
        // SAFETY: read_fd is ours and owned by the File from here on.
        let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_fd) };
        let thread = std::thread::spawn(move || {
            let mut msg = [0u8; 2];
            while reader.read_exact(&mut msg).is_ok() {
                let (sig, from_process) = (msg[0] as i32, msg[1] == 1);
                if !from_process {
                    continue;
                }
                for pid in t.lock().unwrap().iter() {
                    // SAFETY: kill(2) on a child we started and have not reaped yet.
                    unsafe { libc::kill(*pid, sig) };
                }
            }
        });
        let mut old = Vec::new();
        for sig in FORWARDED {
            // SAFETY: a zeroed sigaction is valid; we set the handler, flags and mask.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            // SAFETY: sigemptyset on our own struct; sigaction with valid pointers.
            let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
            unsafe {
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(sig, &action, &mut previous) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            old.push((sig, previous));
        }
        Ok(Forwarder {
            targets,
            old,
            write_fd,
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
        for (sig, previous) in &self.old {
            // SAFETY: restoring the action sigaction gave us.
            unsafe { libc::sigaction(*sig, previous, std::ptr::null_mut()) };
        }
        PIPE.store(-1, Ordering::SeqCst);
        // SAFETY: closing our write end ends the thread's read loop.
        unsafe { libc::close(self.write_fd) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
