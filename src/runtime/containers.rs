//! Container records: what `ps`, `rm` and `commit` know about containers.
//!
//! ```text
//! <root>/containers-v1/<id>/container.json   the record (below)
//! <root>/containers-v1/<id>/upper/ work/      overlayfs's upper and work directories
//! <root>/containers-v1/<id>/rootfs/           the mount point
//! <root>/containers-v1/<id>/config.json …     the OCI bundle (config.json, hosts, hostname,
//!                                             resolv.conf, runtime.log)
//! ```
//!
//! A record names the manifold process that runs the container (pid and start time). When
//! that process is gone but the record says the container runs — manifold was killed — the next
//! `ps`, `rm` or `prune` asks the runtime, and when the container has stopped cleans what was
//! left (runtime state, mounts) and marks it exited. An ephemeral container (a build's RUN step)
//! lives only as long as that process: once it is gone, the same look kills and removes it.
//!
//! Removal marks the record `removing`, then removes the data, the lease and the record, in that
//! order: a removal that fails or is cut short leaves the record (`ps -a` lists it as `Dead`)
//! and the next `rm` or `prune` finishes it.
//!
//! `containers-v1/` and each container's directory are private (0700): what a container writes
//! (a setuid program in its /tmp) is nobody's to reach from the host. The record and
//! config.json (the environment given with `-e`) are 0600.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RuntimeError;
use super::network::Network;
use super::oci_runtime::{OciRuntime, RuntimeState};
use super::service::Service;
use super::sys::{Syscalls, mounts_under};
use crate::layer::walk;
use crate::oci::Digest;
use crate::platform::Platform;
use crate::store::{Store, private};

pub const CONTAINER_DIR: &str = "containers-v1";
const RECORD: &str = "container.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
    /// Being removed, or left half-removed by a removal that failed or was killed.
    Removing,
}

/// The manifold process that runs a container (pid reuse is told apart by the start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start_time: u64,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    /// It runs (a zombie does not: a detached monitor's parent may never reap it).
    pub fn is_alive(&self) -> bool {
        process_stat(self.pid)
            .is_some_and(|(state, start)| start == self.start_time && !matches!(state, 'Z' | 'X'))
    }
}

/// Field 22 of /proc/PID/stat: the start time in clock ticks since boot.
fn process_start_time(pid: u32) -> Option<u64> {
    process_stat(pid).map(|(_, start)| start)
}

/// Fields 3 (the state) and 22 (the start time) of /proc/PID/stat.
fn process_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's top-level digest (an index or a manifest).
    pub image_digest: Digest,
    /// The platform's image manifest and config.
    pub manifest: Digest,
    pub config: Digest,
    pub platform: Platform,
    /// Bottom layer first.
    pub chain_ids: Vec<Digest>,
    pub command: Vec<String>,
    pub created: DateTime<Utc>,
    pub runtime: String,
    pub network: Network,
    pub auto_remove: bool,
    /// Lives only as long as its owner (a build's RUN step): see the module's notes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    /// None while running, or when manifold was killed before it saw the exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Ports, health, log and stop settings (see `service`).
    #[serde(default, skip_serializing_if = "Service::is_default")]
    pub service: Service,
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// Whether the manifold process named as its owner still runs.
    pub fn owner_alive(&self) -> bool {
        self.owner.is_some_and(|o| o.is_alive())
    }
}

/// What [`Containers::reconcile`] cleaned.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Stopped meanwhile: released and marked exited.
    pub exited: Vec<String>,
    /// Removed: `--rm` containers that stopped, ephemeral ones whose owner is gone.
    pub removed: Vec<String>,
}

/// The container directory and the paths in it.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    pub dir: PathBuf,
}

impl ContainerDir {
    pub fn record(&self) -> PathBuf {
        self.dir.join(RECORD)
    }
    /// The OCI bundle's config.json.
    pub fn bundle_config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn links(&self) -> PathBuf {
        self.dir.join("l")
    }
    pub fn empty_lower(&self) -> PathBuf {
        self.dir.join("empty")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }
}

/// The container records of a store root.
pub struct Containers {
    dir: PathBuf,
    lock: PathBuf,
}

/// docker-style generated names: `adjective_scientist`.
const ADJECTIVES: [&str; 24] = [
    "agile", "bold", "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly",
    "keen", "lucid", "merry", "nimble", "plucky", "quiet", "rapid", "serene", "sharp", "swift",
    "tender", "vivid", "witty", "zealous",
];
const NAMES: [&str; 24] = [
    "allen",
    "babbage",
    "curie",
    "dijkstra",
    "euler",
    "fermat",
    "gauss",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "lamarr",
    "lovelace",
    "meitner",
    "noether",
    "pascal",
    "ramanujan",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "wiles",
    "wozniak",
    "yonath",
];

/// `N` bytes from the kernel's random source (container IDs and names, key material).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("getrandom failed: {e}"),
        }
    }
    buf
}

/// A new container ID: 64 hex digits, like docker's.
pub fn new_id() -> String {
    hex::encode(random_bytes::<32>())
}

/// Names: docker's rule, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Containers {
    pub fn open(root: &Path) -> Result<Containers, RuntimeError> {
        let dir = root.join(CONTAINER_DIR);
        private::create_dir(&dir).map_err(RuntimeError::io("create", &dir))?;
        let locks = root.join("locks-v1");
        private::create_dir(&locks).map_err(RuntimeError::io("create", &locks))?;
        let containers = Containers {
            dir,
            lock: locks.join("containers.lock"),
        };
        containers.repair()?;
        Ok(containers)
    }

    /// Make the containers of an earlier version private: each directory, its record and its
    /// bundle's config.json, then `containers-v1/` itself, whose private mode marks the work
    /// done (one `stat` on later opens).
    fn repair(&self) -> Result<(), RuntimeError> {
        if !private::needs_repair(&self.dir)? {
            return Ok(());
        }
        for e in fs::read_dir(&self.dir).map_err(RuntimeError::io("list", &self.dir))? {
            let e = e.map_err(RuntimeError::io("list", &self.dir))?;
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let cdir = ContainerDir { dir: e.path() };
            private::repair_file(&cdir.record())?;
            private::repair_file(&cdir.bundle_config())?;
            private::repair_dir(&cdir.dir, false)?;
        }
        private::repair_dir(&self.dir, false)?;
        Ok(())
    }

    pub fn dir_of(&self, id: &str) -> ContainerDir {
        ContainerDir {
            dir: self.dir.join(id),
        }
    }

    /// Exclusive lock over records: creation (unique names) and updates.
    fn locked(&self) -> Result<File, RuntimeError> {
        let f = private::open_lock(&self.lock).map_err(RuntimeError::io("open", &self.lock))?;
        f.lock().map_err(RuntimeError::io("lock", &self.lock))?;
        Ok(f)
    }

    /// Every record, oldest first. Directories without a readable record (being created or
    /// removed) are skipped.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, RuntimeError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(RuntimeError::io("list", &self.dir))? {
            let e = e.map_err(RuntimeError::io("list", &self.dir))?;
            let Ok(bytes) = fs::read(e.path().join(RECORD)) else {
                continue;
            };
            if let Ok(r) = serde_json::from_slice::<ContainerRecord>(&bytes) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// A container by name, full ID or unique ID prefix.
    pub fn find(&self, key: &str) -> Result<ContainerRecord, RuntimeError> {
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.name == key || r.id == key) {
            return Ok(r.clone());
        }
        let matches: Vec<&ContainerRecord> = all
            .iter()
            .filter(|r| !key.is_empty() && r.id.starts_with(key))
            .collect();
        match matches.len() {
            0 => Err(RuntimeError::NoSuchContainer(key.to_string())),
            1 => Ok(matches[0].clone()),
            n => Err(RuntimeError::AmbiguousContainer {
                key: key.to_string(),
                count: n,
            }),
        }
    }

    /// Create the directory and record of a new container, choosing a name when none is given.
    pub fn create(
        &self,
        mut record: ContainerRecord,
        name: Option<&str>,
    ) -> Result<ContainerRecord, RuntimeError> {
        let _lock = self.locked()?;
        let existing = self.list()?;
        let taken = |n: &str| existing.iter().any(|r| r.name == n);
        record.name = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(RuntimeError::InvalidName(n.to_string()));
                }
                if let Some(other) = existing.iter().find(|r| r.name == n) {
                    return Err(RuntimeError::NameInUse {
                        name: n.to_string(),
                        id: other.short_id().to_string(),
                    });
                }
                n.to_string()
            }
            None => {
                let r = random_bytes::<2>();
                let base = format!(
                    "{}_{}",
                    ADJECTIVES[r[0] as usize % ADJECTIVES.len()],
                    NAMES[r[1] as usize % NAMES.len()]
                );
                let mut n = base.clone();
                let mut i = 2;
                while taken(&n) {
                    n = format!("{base}{i}");
                    i += 1;
                }
                n
            }
        };
        let cdir = self.dir_of(&record.id);
        private::create_dir(&cdir.dir).map_err(RuntimeError::io("create", &cdir.dir))?;
        // Below the private directory, modes are the container's business.
        for d in [&cdir.upper(), &cdir.work(), &cdir.rootfs()] {
            fs::create_dir_all(d).map_err(RuntimeError::io("create", d))?;
        }
        write_record(&cdir, &record)?;
        Ok(record)
    }

    /// The record of the container `id` (a full ID).
    pub fn get(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        let cdir = self.dir_of(id);
        let bytes = fs::read(cdir.record()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RuntimeError::NoSuchContainer(id.to_string()),
            _ => RuntimeError::io("read", &cdir.record())(e),
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::io("parse", &cdir.record())(io::Error::other(e)))
    }

    /// Read-modify-write a record.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, RuntimeError> {
        let _lock = self.locked()?;
        let cdir = self.dir_of(id);
        let mut record = self.get(id)?;
        f(&mut record);
        write_record(&cdir, &record)?;
        Ok(record)
    }

    /// Unmount whatever is still mounted under a container's directory (in this mount
    /// namespace), and remove the runtime's state of it.
    pub fn release(
        &self,
        sys: &dyn Syscalls,
        runtime: Option<&OciRuntime>,
        id: &str,
    ) -> Result<(), RuntimeError> {
        if let Some(rt) = runtime {
            rt.delete(id).map_err(RuntimeError::io(
                "delete the runtime state of",
                Path::new(id),
            ))?;
        }
        let cdir = self.dir_of(id);
        let info = sys
            .mountinfo()
            .map_err(RuntimeError::io("read", Path::new("/proc/self/mountinfo")))?;
        for m in mounts_under(&info, &cdir.dir) {
            sys.unmount(&m, true)
                .map_err(RuntimeError::io("unmount", &m))?;
        }
        Ok(())
    }

    /// Remove a container that is not running: mounts, runtime state, files, its lease, and
    /// the record last (see the module's notes). Finishing a removal someone else began, or
    /// removing what is already gone, is not an error.
    pub fn remove(
        &self,
        sys: &dyn Syscalls,
        runtime: Option<&OciRuntime>,
        store: &Store,
        id: &str,
    ) -> Result<(), RuntimeError> {
        self.release(sys, runtime, id)?;
        let cdir = self.dir_of(id);
        // Best effort: the record stays until the end whatever its status says, and a full
        // disk (where this write fails) must not keep a container from being removed.
        let _ = self.update(id, |r| {
            r.status = Status::Removing;
            r.owner = Some(Owner::current());
        });
        let failed = |source| RuntimeError::Remove {
            id: id.get(..12).unwrap_or(id).to_string(),
            source,
        };
        walk::remove_contents(&cdir.dir, &[RECORD]).map_err(failed)?;
        store.remove_lease(id)?;
        match fs::remove_file(cdir.record()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io("remove", &cdir.record())(e)),
        }
        walk::remove_tree(&cdir.dir).map_err(failed)?;
        Ok(())
    }

    /// Finish what removals left: containers marked `removing` whose remover is gone (a
    /// removal failed or was killed), and container directories without a record (left by
    /// versions that removed the record first) with their leases.
    pub fn finish_removals(
        &self,
        sys: &dyn Syscalls,
        store: &Store,
    ) -> Result<Finished, RuntimeError> {
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for r in self.list()? {
            if r.status != Status::Removing || r.owner_alive() {
                continue;
            }
            match self.remove(sys, None, store, &r.id) {
                Ok(()) => removed.push(r.id),
                Err(e) => failed.push((r.id, e)),
            }
        }
        // Under the lock: a directory being created gets its record before the lock goes.
        let _lock = self.locked()?;
        for e in fs::read_dir(&self.dir).map_err(RuntimeError::io("list", &self.dir))? {
            let e = e.map_err(RuntimeError::io("list", &self.dir))?;
            let id = e.file_name().to_string_lossy().into_owned();
            let cdir = self.dir_of(&id);
            if !is_id(&id) || fs::symlink_metadata(cdir.record()).is_ok() {
                continue;
            }
            let done = self
                .release(sys, None, &id)
                .and_then(|()| {
                    walk::remove_tree(&cdir.dir).map_err(|source| RuntimeError::Remove {
                        id: id[..12].to_string(),
                        source,
                    })
                })
                .and_then(|_| Ok(store.remove_lease(&id)?));
            match done {
                Ok(()) => removed.push(id),
                Err(e) => failed.push((id, e)),
            }
        }
        Ok(Finished { removed, failed })
    }

    /// Bring records in line with reality after manifold processes were killed: a container
    /// whose manifold is gone and whose runtime reports it stopped (or does not know it) is
    /// released and marked exited — removed when it was started with `--rm`; an ephemeral one
    /// whose manifold is gone is killed and removed whatever it was doing.
    pub fn reconcile(
        &self,
        sys: &dyn Syscalls,
        store: &Store,
        runtime_for: impl Fn(&str) -> Option<OciRuntime>,
    ) -> Result<Reconciled, RuntimeError> {
        let mut done = Reconciled::default();
        for r in self.list()? {
            if r.owner_alive() {
                continue;
            }
            if r.ephemeral {
                // Nobody will read it again: `delete --force` kills what still runs.
                let rt = runtime_for(&r.runtime);
                self.remove(sys, rt.as_ref(), store, &r.id)?;
                done.removed.push(r.id.clone());
                continue;
            }
            if matches!(r.status, Status::Exited | Status::Removing) {
                continue;
            }
            let rt = runtime_for(&r.runtime);
            let state = match &rt {
                Some(rt) => rt.state(&r.id).unwrap_or(None),
                None => None,
            };
            if matches!(
                state,
                Some(RuntimeState::Running | RuntimeState::Paused | RuntimeState::Created)
            ) && r.owner.is_some()
            {
                // Its manifold is gone, the container lives on: the next look cleans it.
                continue;
            }
            self.release(sys, rt.as_ref(), &r.id)?;
            if r.auto_remove {
                self.remove(sys, None, store, &r.id)?;
                done.removed.push(r.id.clone());
            } else {
                self.update(&r.id, |r| {
                    r.status = Status::Exited;
                    r.owner = None;
                    r.finished.get_or_insert_with(Utc::now);
                })?;
                done.exited.push(r.id.clone());
            }
        }
        Ok(done)
    }
}

/// What [`Containers::finish_removals`] did.
#[derive(Debug, Default)]
pub struct Finished {
    /// The IDs removed.
    pub removed: Vec<String>,
    /// The containers that still cannot be removed, with why.
    pub failed: Vec<(String, RuntimeError)>,
}

/// Container IDs: 64 lower-case hex digits.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn write_record(cdir: &ContainerDir, record: &ContainerRecord) -> Result<(), RuntimeError> {
    use std::io::Write;
    let path = cdir.record();
    let mut tmp = private::temp_file(&cdir.dir, ".tmp")
        .map_err(RuntimeError::io("create a temp file in", &cdir.dir))?;
    // No fsync: a record is rewritten a few times per container, on the path whose start-up
    // time matters; the rename keeps it whole, and one lost in a crash only leaves a directory
    // that lists nothing.
    tmp.write_all(&serde_json::to_vec_pretty(record).expect("a record serialises"))
        .map_err(RuntimeError::io("write", &path))?;
    tmp.persist(&path)
        .map_err(|e| RuntimeError::io("rename into", &path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::sys::fake::FakeSyscalls;
    use super::*;

    fn record(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            name: String::new(),
            image: "busybox".into(),
            image_digest: Digest::sha256_of(b"i"),
            manifest: Digest::sha256_of(b"m"),
            config: Digest::sha256_of(b"c"),
            platform: Platform::host(),
            chain_ids: vec![],
            command: vec!["sh".into()],
            created: Utc::now(),
            runtime: "runc".into(),
            network: Network::Host,
            auto_remove: false,
            ephemeral: false,
            status: Status::Running,
            owner: None,
            started: None,
            finished: None,
            exit_code: None,
            service: Service::default(),
        }
    }

    #[test]
    fn names_ids_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let c = Containers::open(dir.path()).unwrap();
        let a = c.create(record(&new_id()), Some("web")).unwrap();
        assert_eq!(a.name, "web");
        assert!(matches!(
            c.create(record(&new_id()), Some("web")),
            Err(RuntimeError::NameInUse { .. })
        ));
        assert!(matches!(
            c.create(record(&new_id()), Some("-bad")),
            Err(RuntimeError::InvalidName(_))
        ));
        let b = c.create(record(&new_id()), None).unwrap();
        assert!(b.name.contains('_'), "{}", b.name);
        assert_eq!(c.find("web").unwrap().id, a.id);
        assert_eq!(c.find(&a.id[..12]).unwrap().id, a.id);
        assert_eq!(c.find(&b.name).unwrap().id, b.id);
        assert!(matches!(
            c.find("nope"),
            Err(RuntimeError::NoSuchContainer(_))
        ));
        assert_eq!(c.list().unwrap().len(), 2);
        assert!(
            dir.path()
                .join(CONTAINER_DIR)
                .join(&a.id)
                .join("upper")
                .is_dir()
        );
    }

    #[test]
    fn a_killed_manifold_is_noticed_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = Containers::open(dir.path()).unwrap();
        // Owned by a process that is not alive (pid 0's start time is never ours).
        let mut dead = record(&new_id());
        dead.owner = Some(Owner {
            pid: std::process::id(),
            start_time: 1,
        });
        let dead = c.create(dead, Some("dead")).unwrap();
        let mut alive = record(&new_id());
        alive.owner = Some(Owner::current());
        let alive = c.create(alive, Some("alive")).unwrap();
        let mut gone = record(&new_id());
        gone.auto_remove = true;
        gone.owner = Some(Owner {
            pid: u32::MAX - 1,
            start_time: 5,
        });
        let gone = c.create(gone, Some("gone")).unwrap();
        store
            .begin()
            .unwrap()
            .add_lease(&gone.id, [Digest::sha256_of(b"x")])
            .unwrap();

        let sys = FakeSyscalls::new(true);
        let rootfs = c.dir_of(&dead.id).rootfs();
        *sys.mountinfo.lock().unwrap() = format!(
            "40 22 0:40 / {} rw - overlay overlay rw\n",
            rootfs.display()
        );
        let cleaned = c.reconcile(&sys, &store, |_| None).unwrap();
        assert_eq!(
            cleaned,
            Reconciled {
                exited: vec![dead.id.clone()],
                removed: vec![gone.id.clone()],
            }
        );
        assert!(
            sys.calls()
                .contains(&format!("umount {} detach=true", rootfs.display()))
        );
        let dead = c.find("dead").unwrap();
        assert_eq!(dead.status, Status::Exited);
        assert_eq!(dead.exit_code, None);
        assert!(dead.finished.is_some());
        assert_eq!(c.find("alive").unwrap().status, Status::Running);
        assert!(matches!(
            c.find("gone"),
            Err(RuntimeError::NoSuchContainer(_))
        ));
        assert!(store.leases().unwrap().is_empty());
        let _ = alive;
    }

    #[test]
    fn ephemeral_containers_go_with_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = Containers::open(dir.path()).unwrap();
        let sys = FakeSyscalls::new(true);
        let mut mine = record(&new_id());
        mine.ephemeral = true;
        mine.owner = Some(Owner::current());
        let mine = c.create(mine, Some("mine")).unwrap();
        // A killed build's step: still running as far as its record knows, or exited.
        let mut orphans = Vec::new();
        for (name, status) in [("step1", Status::Running), ("step2", Status::Exited)] {
            let mut r = record(&new_id());
            r.ephemeral = true;
            r.status = status;
            r.owner = Some(Owner {
                pid: u32::MAX - 1,
                start_time: 5,
            });
            let r = c.create(r, Some(name)).unwrap();
            store
                .begin()
                .unwrap()
                .add_lease(&r.id, [Digest::sha256_of(b"x")])
                .unwrap();
            fs::write(c.dir_of(&r.id).upper().join("file"), "x").unwrap();
            orphans.push(r.id);
        }
        let mut done = c.reconcile(&sys, &store, |_| None).unwrap();
        done.removed.sort();
        orphans.sort();
        assert_eq!(done.removed, orphans);
        assert!(done.exited.is_empty());
        let left: Vec<String> = c.list().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(left, vec![mine.id.clone()]);
        assert!(store.leases().unwrap().is_empty());
        for id in &orphans {
            assert!(!c.dir_of(id).dir.exists());
        }
    }

    #[test]
    fn a_failed_removal_keeps_the_record_and_is_finished_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = Containers::open(dir.path()).unwrap();
        let sys = FakeSyscalls::new(true);
        let mut r = record(&new_id());
        r.status = Status::Exited;
        let r = c.create(r, Some("stuck")).unwrap();
        store
            .begin()
            .unwrap()
            .add_lease(&r.id, [Digest::sha256_of(b"x")])
            .unwrap();
        let upper = c.dir_of(&r.id).upper();
        fs::create_dir_all(upper.join("a/b")).unwrap();
        fs::write(upper.join("a/b/f"), "x").unwrap();
        // An immutable file stops the removal (as root, whom modes do not stop), else a
        // directory without write permission.
        let blocked = upper.join("a/b");
        let block = |on: bool| {
            if rustix::process::geteuid().is_root() {
                let flag = if on { "+i" } else { "-i" };
                let ok = std::process::Command::new("chattr")
                    .arg(flag)
                    .arg(blocked.join("f"))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chattr {flag}");
            } else {
                let mode = if on { 0o500 } else { 0o755 };
                let perms = std::os::unix::fs::PermissionsExt::from_mode(mode);
                fs::set_permissions(&blocked, perms).unwrap();
            }
        };
        block(true);
        assert!(c.remove(&sys, None, &store, &r.id).is_err());
        let kept = c.find("stuck").unwrap();
        assert_eq!(kept.status, Status::Removing);
        assert!(kept.owner_alive(), "this process is its remover");
        assert_eq!(store.leases().unwrap().len(), 1);
        // Not finished while its remover lives; finished once the cause is gone.
        assert!(c.finish_removals(&sys, &store).unwrap().removed.is_empty());
        block(false);
        c.update(&r.id, |r| {
            r.owner = Some(Owner {
                pid: u32::MAX - 1,
                start_time: 5,
            })
        })
        .unwrap();
        let done = c.finish_removals(&sys, &store).unwrap();
        assert!(done.failed.is_empty());
        assert_eq!(done.removed, vec![r.id.clone()]);
        assert!(c.list().unwrap().is_empty());
        assert!(store.leases().unwrap().is_empty());
        assert!(!c.dir_of(&r.id).dir.exists());
    }

    #[test]
    fn directories_without_a_record_are_finished_with_their_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = Containers::open(dir.path()).unwrap();
        let sys = FakeSyscalls::new(true);
        let id = new_id();
        fs::create_dir_all(c.dir_of(&id).upper().join("x/y")).unwrap();
        store
            .begin()
            .unwrap()
            .add_lease(&id, [Digest::sha256_of(b"x")])
            .unwrap();
        store
            .begin()
            .unwrap()
            .add_lease("other", [Digest::sha256_of(b"y")])
            .unwrap();
        fs::create_dir_all(dir.path().join(CONTAINER_DIR).join("not-an-id")).unwrap();
        let done = c.finish_removals(&sys, &store).unwrap();
        assert!(done.failed.is_empty());
        assert_eq!(done.removed, vec![id.clone()]);
        assert!(!c.dir_of(&id).dir.exists());
        let leases: Vec<String> = store
            .leases()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(leases, ["other"]);
        assert!(dir.path().join(CONTAINER_DIR).join("not-an-id").exists());
    }

    #[test]
    fn start_time_of_this_process() {
        let me = Owner::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
    }
}
