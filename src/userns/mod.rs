//! Rootless mode's user namespace: the one manifold enters at start when it is not root, for the
//! commands that unpack layers, mount overlays or run containers (podman's model: one user
//! namespace per invocation, in which manifold is root).
//!
//! The mapping is podman's: id 0 inside is the user, ids 1..=N are the user's subordinate ranges
//! from /etc/subuid and /etc/subgid (in order), written by the setuid helpers `newuidmap` and
//! `newgidmap` (Debian: `uidmap`). A user without ranges, or without the helpers, gets a
//! single-id mapping (0 → the user), which the process writes itself: then only root exists in
//! containers, `chown` to any other id fails, and files of other owners in layers are unpacked as
//! root (see [`Mapping::is_single`]).
//!
//! The namespace is entered the way util-linux's `unshare --map-auto` does it, without a
//! re-exec: a forked helper waits until the process has unshared, then runs `newuidmap` and
//! `newgidmap` on it. unshare(CLONE_NEWUSER) needs a single-threaded process, so [`enter`] runs
//! first thing, before any thread exists. A command that acts inside a running container
//! (`exec`, `top`) [`join`]s the namespace of the container's owner instead.

pub mod ids;

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub use ids::{IdMap, Mapping, SubIds};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("cannot create a user namespace")]
    Unshare(#[source] io::Error),
    #[error("cannot enter a user namespace from a process with {0} threads")]
    Threads(usize),
    #[error("`{program}` failed to map the subordinate ids: {message}")]
    Helper { program: String, message: String },
    #[error("cannot write the user namespace's {what}")]
    Map {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot {what}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl crate::hint::Hint for UsernsError {
    fn hint(&self) -> Option<String> {
        match self {
            UsernsError::Unshare(e) if e.raw_os_error() == Some(libc::EPERM) => Some(
                "the kernel refuses user namespaces to this process (inside a container, \
                 `sysctl kernel.unprivileged_userns_clone`, or an AppArmor/seccomp policy): run \
                 manifold as root, or build with `--isolation proot`"
                    .into(),
            ),
            UsernsError::Unshare(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                Some("`sysctl user.max_user_namespaces` is 0 or used up: raise it (as root)".into())
            }
            UsernsError::Helper { .. } => Some(
                "check the user's lines in /etc/subuid and /etc/subgid (`getsubids USER`), and \
                 that newuidmap and newgidmap are setuid root (`apt-get install --reinstall \
                 uidmap`)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Who manifold runs as, and the mapping its namespace will get.
#[derive(Debug, Clone)]
pub struct Plan {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub mapping: Mapping,
    /// Why the mapping is a single id, when it is (for the warning).
    pub single_because: Option<Single>,
    newuidmap: Option<PathBuf>,
    newgidmap: Option<PathBuf>,
}

/// Why a user gets a single-id mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Single {
    /// No lines for the user in /etc/subuid (uids) or /etc/subgid (gids).
    NoRanges { uids: bool, gids: bool },
    /// The setuid helpers are not installed.
    NoHelpers,
}

impl Plan {
    /// The current user's plan: ranges from /etc/subuid and /etc/subgid, helpers from PATH
    /// (then /usr/bin, where Debian puts them).
    pub fn current() -> Result<Plan, UsernsError> {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        // A uid without a passwd entry (a container's arbitrary uid) is matched by number.
        let user = user_name(uid).unwrap_or_else(|| uid.to_string());
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let subuid = SubIds::parse(&read("/etc/subuid"));
        let subgid = SubIds::parse(&read("/etc/subgid"));
        let find = |name: &str| {
            find_on_path(name).or_else(|| {
                let p = PathBuf::from("/usr/bin").join(name);
                p.is_file().then_some(p)
            })
        };
        Ok(Plan::new(
            user,
            uid,
            gid,
            &subuid,
            &subgid,
            find("newuidmap"),
            find("newgidmap"),
        ))
    }

    pub fn new(
        user: String,
        uid: u32,
        gid: u32,
        subuid: &SubIds,
        subgid: &SubIds,
        newuidmap: Option<PathBuf>,
        newgidmap: Option<PathBuf>,
    ) -> Plan {
        let uranges = subuid.ranges_of(&user, uid);
        let granges = subgid.ranges_of(&user, uid);
        let single_because = if uranges.is_empty() || granges.is_empty() {
            Some(Single::NoRanges {
                uids: uranges.is_empty(),
                gids: granges.is_empty(),
            })
        } else if newuidmap.is_none() || newgidmap.is_none() {
            Some(Single::NoHelpers)
        } else {
            None
        };
        let mapping = match single_because {
            Some(_) => Mapping::single(uid, gid),
            None => Mapping::with_ranges(uid, gid, &uranges, &granges),
        };
        Plan {
            user,
            uid,
            gid,
            mapping,
            single_because,
            newuidmap,
            newgidmap,
        }
    }

    /// The warning a single-id mapping deserves (what it limits, and the fix), or None.
    pub fn warning(&self) -> Option<(String, String)> {
        let user = &self.user;
        let limits = "containers get a single-id user namespace (root in them is you, and no \
                      other user exists): `chown` to another owner and RUN or `-u` as another \
                      user fail, and files of other owners in layers are unpacked as root";
        Some(match self.single_because.as_ref()? {
            Single::NoRanges { uids, gids } => {
                let files = match (uids, gids) {
                    (true, true) => "/etc/subuid and /etc/subgid",
                    (true, false) => "/etc/subuid",
                    _ => "/etc/subgid",
                };
                (
                    format!("`{user}` has no subordinate ids in {files}: {limits}"),
                    format!(
                        "`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 \
                         {user}` gives it 65536 ids (pick a range no other user has), then \
                         `manifold system reset` (the store's files follow the mapping)"
                    ),
                )
            }
            Single::NoHelpers => (
                format!("newuidmap and newgidmap are not installed: {limits}"),
                "`sudo apt-get install uidmap` (Debian, Ubuntu) installs them, then `manifold \
                 system reset` (the store's files follow the mapping)"
                    .into(),
            ),
        })
    }
}

static ENTERED: OnceLock<Mapping> = OnceLock::new();

/// The mapping of the user namespace manifold entered, None when it did not (root, or a
/// command that does not need one).
pub fn current() -> Option<&'static Mapping> {
    ENTERED.get()
}

/// The user's own uid on the host, inside manifold's namespace (where getuid says 0).
pub fn host_uid() -> u32 {
    match current() {
        Some(m) => m.host_uid(0).unwrap_or(0),
        None => rustix::process::getuid().as_raw(),
    }
}

/// What `manifold unshare` tells the commands it runs: they are in manifold's namespace.
pub const INHERITED_ENV: &str = "_MANIFOLD_USERNS";

/// A manifold started inside manifold's namespace (by `manifold unshare`) takes its mapping
/// as its own, so that it uses the store as the namespace's root does.
pub fn adopt() -> Option<&'static Mapping> {
    if let Some(m) = current() {
        return Some(m);
    }
    std::env::var_os(INHERITED_ENV)?;
    let read = |f: &str| std::fs::read_to_string(f).ok().map(|t| parse_map(&t));
    let (uids, gids) = (read("/proc/self/uid_map")?, read("/proc/self/gid_map")?);
    if uids.is_empty() || is_identity_map(&std::fs::read_to_string("/proc/self/uid_map").ok()?) {
        return None;
    }
    Some(ENTERED.get_or_init(|| Mapping { uids, gids }))
}

fn parse_map(text: &str) -> Vec<IdMap> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            match f.as_slice() {
                [inside, outside, count] => Some(IdMap {
                    inside: *inside,
                    outside: *outside,
                    count: *count,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Whether this process is root on the host: effective uid 0 in the initial user namespace
/// (not root in manifold's namespace, nor in a rootless container's).
pub fn is_host_root() -> bool {
    if !rustix::process::geteuid().is_root() || current().is_some() {
        return false;
    }
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| is_identity_map(&m))
        .unwrap_or(true)
}

/// A uid_map that maps every id to itself: the initial user namespace.
fn is_identity_map(text: &str) -> bool {
    let fields: Vec<&str> = text.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

/// Enter a new user namespace with `plan`'s mapping. Call it while the process has one thread.
pub fn enter(plan: &Plan) -> Result<&'static Mapping, UsernsError> {
    if let Some(m) = current() {
        return Ok(m);
    }
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if threads > 1 {
        return Err(UsernsError::Threads(threads));
    }
    match (&plan.single_because, &plan.newuidmap, &plan.newgidmap) {
        (None, Some(u), Some(g)) => enter_with_helpers(&plan.mapping, u, g)?,
        _ => enter_single(&plan.mapping)?,
    }
    Ok(ENTERED.get_or_init(|| plan.mapping.clone()))
}

/// Join the user namespace process `pid` is in (a container's monitor, or the manifold that
/// runs it in the foreground), taking its mapping as this process's own. A command that acts on
/// a running container joins its namespace: from a namespace of its own (a sibling) it could
/// neither enter the container's namespaces nor read its root, which belong to that one. Call
/// it while the process has one thread.
pub fn join(pid: u32) -> Result<&'static Mapping, UsernsError> {
    if let Some(m) = current() {
        return Ok(m);
    }
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if threads > 1 {
        return Err(UsernsError::Threads(threads));
    }
    let io = |what: &'static str| move |e: io::Error| UsernsError::Io { what, source: e };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map_err(io("open the container's user namespace"))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&ns),
        Some(rustix::thread::LinkNameSpaceType::User),
    )
    .map_err(|e| io("join the container's user namespace")(e.into()))?;
    let read = |f: &str| std::fs::read_to_string(f).map(|t| parse_map(&t));
    let uids = read("/proc/self/uid_map").map_err(io("read the uid map"))?;
    let gids = read("/proc/self/gid_map").map_err(io("read the gid map"))?;
    Ok(ENTERED.get_or_init(|| Mapping { uids, gids }))
}

fn unshare_user() -> Result<(), UsernsError> {
    // SAFETY: CLONE_NEWUSER in a single-threaded process changes only its credentials.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
        .map_err(|e| UsernsError::Unshare(e.into()))
}

fn enter_single(mapping: &Mapping) -> Result<(), UsernsError> {
    unshare_user()?;
    // An unprivileged process may map only its own ids, and its gid only once setgroups(2)
    // is denied.
    let write = |what: &'static str, file: &str, text: &str| {
        std::fs::write(file, text).map_err(|source| UsernsError::Map { what, source })
    };
    write("setgroups policy", "/proc/self/setgroups", "deny")?;
    write("uid map", "/proc/self/uid_map", &mapping.uid_map())?;
    write("gid map", "/proc/self/gid_map", &mapping.gid_map())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), UsernsError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| UsernsError::Io {
        what: "create a pipe",
        source: e.into(),
    })
}

/// util-linux's way: a forked helper waits on a pipe until this process has unshared, then runs
/// newuidmap and newgidmap on it and reports their errors on another pipe.
fn enter_with_helpers(
    mapping: &Mapping,
    newuidmap: &std::path::Path,
    newgidmap: &std::path::Path,
) -> Result<(), UsernsError> {
    let pid = std::process::id().to_string();
    let mut uid_cmd = Command::new(newuidmap);
    uid_cmd.arg(&pid).args(mapping.uid_args());
    let mut gid_cmd = Command::new(newgidmap);
    gid_cmd.arg(&pid).args(mapping.gid_args());
    let (go_read, go_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    // SAFETY: the process has one thread (checked by `enter`), so the child is a complete copy
    // that may allocate and spawn; it never returns from this block (`_exit`).
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(UsernsError::Io {
            what: "fork the id-mapping helper",
            source: io::Error::last_os_error(),
        });
    }
    if child == 0 {
        drop(go_write);
        drop(err_read);
        let mut go = std::fs::File::from(go_read);
        let mut byte = [0u8; 1];
        let code = match go.read(&mut byte) {
            Ok(1) => {
                let mut report = std::fs::File::from(err_write);
                let mut code = 0;
                for (program, cmd) in [(newuidmap, &mut uid_cmd), (newgidmap, &mut gid_cmd)] {
                    match cmd.output() {
                        Ok(out) if out.status.success() => {}
                        Ok(out) => {
                            let _ = write!(
                                report,
                                "{}\0{}",
                                program.display(),
                                String::from_utf8_lossy(&out.stderr).trim()
                            );
                            code = 1;
                            break;
                        }
                        Err(e) => {
                            let _ = write!(report, "{}\0{e}", program.display());
                            code = 1;
                            break;
                        }
                    }
                }
                code
            }
            // The parent could not unshare: nothing to map.
            _ => 2,
        };
        // SAFETY: leaves the child without running the parent's destructors or atexit hooks.
        unsafe { libc::_exit(code) };
    }
    drop(go_read);
    drop(err_write);
    let unshared = unshare_user();
    // Tell the helper to go on, or (by closing the pipe) to give up.
    let mut go = std::fs::File::from(go_write);
    if unshared.is_ok() {
        let _ = go.write_all(b"x");
    }
    drop(go);
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    unshared?;
    let mut report = String::new();
    let _ = std::fs::File::from(err_read).read_to_string(&mut report);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let (program, message) = report
            .split_once('\0')
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .unwrap_or_else(|| ("newuidmap".into(), format!("exit status {status}")));
        return Err(UsernsError::Helper { program, message });
    }
    Ok(())
}

/// The name of user `uid` (the key of its lines in /etc/subuid and /etc/subgid).
fn user_name(uid: u32) -> Option<String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 << 10];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, both owned here and large enough (it
    // reports ERANGE otherwise, which is treated as "unknown").
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where a rootless user's runtime state goes: `$XDG_RUNTIME_DIR/manifold`, else (podman's
/// fallback) `/tmp/manifold-run-UID`, made private; the bool says whether it is the fallback.
pub fn runtime_dir(uid: u32) -> Result<(PathBuf, bool), UsernsError> {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Ok((PathBuf::from(d).join("manifold"), false));
    }
    let dir = std::env::temp_dir().join(format!("manifold-run-{uid}"));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(UsernsError::Io {
                what: "create the runtime directory",
                source,
            });
        }
    }
    // Someone else's directory of that name (made to catch our state) is refused.
    let st = rustix::fs::lstat(&dir).map_err(|e| UsernsError::Io {
        what: "check the runtime directory",
        source: e.into(),
    })?;
    let owner = st.st_uid;
    let mine = owner == rustix::process::geteuid().as_raw();
    if !mine || rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Err(UsernsError::Io {
            what: "use the runtime directory",
            source: io::Error::other(format!(
                "{} is not a directory of this user's (owner {owner})",
                dir.display()
            )),
        });
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        UsernsError::Io {
            what: "make the runtime directory private",
            source,
        }
    })?;
    Ok((dir, true))
}

#[cfg(test)]
mod tests;
