//! A store's ownership convention: how the files manifold unpacks (snapshots) and containers
//! write (upper directories) are owned on disk. One store holds one convention, recorded in
//! `<root>/ownership-v1.json` when its runtime is first used:
//!
//! - `host` (root): files are owned on disk by the ids the image says; overlayfs's opaque
//!   markers are `trusted.overlay.opaque`.
//! - `user-namespace` (rootless): files are owned by the ids the image says *inside* manifold's
//!   user namespace, which puts them on the host's subordinate ids of the user (uid 0 → the
//!   user, 1000 → subuid start + 999, …); opaque markers are `user.overlay.opaque` (overlayfs
//!   mounted with `userxattr`: `trusted.*` cannot be set in a user namespace). The mapping is
//!   recorded too: the same files read through another mapping would have other owners.
//!
//! A store made by root and one made by a rootless user are different stores (root's default
//! is /var/lib/manifold, a user's under `$XDG_DATA_HOME`); a process whose convention differs
//! from the store's (root on a user's store, the user after their subordinate ids changed)
//! is refused before it unpacks or mounts anything, with the way out.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RuntimeError;
use crate::layer::extract::{OVERLAY_OPAQUE_XATTR, USER_OVERLAY_OPAQUE_XATTR};
use crate::layer::{ExtractOptions, Owners, Whiteouts};
use crate::store::private;
use crate::userns::{self, IdMap};

pub const FILE: &str = "ownership-v1.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ids", rename_all = "kebab-case")]
pub enum Ownership {
    Host,
    UserNamespace {
        uid_map: Vec<IdMap>,
        gid_map: Vec<IdMap>,
    },
}

impl Ownership {
    /// This process's: in manifold's user namespace, its mapping; else the host's ids.
    pub fn current() -> Ownership {
        match userns::current() {
            Some(m) => Ownership::UserNamespace {
                uid_map: m.uids.clone(),
                gid_map: m.gids.clone(),
            },
            None => Ownership::Host,
        }
    }

    /// The store's convention: recorded, else this process's (recorded now). An error when
    /// they differ.
    pub fn of_store(root: &Path) -> Result<Ownership, RuntimeError> {
        let now = Ownership::current();
        let path = root.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let found: Ownership = serde_json::from_slice(&bytes).map_err(|e| {
                    RuntimeError::io("read", &path)(io::Error::new(io::ErrorKind::InvalidData, e))
                })?;
                if found != now {
                    return Err(RuntimeError::Ownership {
                        root: root.to_path_buf(),
                        found: found.describe(),
                        now: now.describe(),
                    });
                }
                Ok(found)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let bytes = serde_json::to_vec_pretty(&now).expect("serialises");
                private::write_file(&path, &bytes).map_err(RuntimeError::io("write", &path))?;
                Ok(now)
            }
            Err(e) => Err(RuntimeError::io("read", &path)(e)),
        }
    }

    /// Forget the store's convention (after everything that followed it is gone).
    pub fn forget(root: &Path) -> io::Result<()> {
        match std::fs::remove_file(root.join(FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn is_user_namespace(&self) -> bool {
        matches!(self, Ownership::UserNamespace { .. })
    }

    /// A user namespace that maps one id: every owner squashed to root.
    pub fn is_single(&self) -> bool {
        match self {
            Ownership::Host => false,
            Ownership::UserNamespace { uid_map, gid_map } => {
                let total = |m: &[IdMap]| m.iter().map(|l| l.count as u64).sum::<u64>();
                total(uid_map) <= 1 || total(gid_map) <= 1
            }
        }
    }

    /// How a snapshot of this store is unpacked.
    pub fn snapshot_options(&self) -> ExtractOptions {
        ExtractOptions {
            whiteouts: Whiteouts::Overlay {
                opaque_xattr: self.opaque_xattr(),
            },
            owners: if self.is_single() {
                Owners::Squash
            } else {
                Owners::Keep
            },
        }
    }

    pub fn opaque_xattr(&self) -> &'static str {
        match self {
            Ownership::Host => OVERLAY_OPAQUE_XATTR,
            Ownership::UserNamespace { .. } => USER_OVERLAY_OPAQUE_XATTR,
        }
    }

    fn describe(&self) -> String {
        match self {
            Ownership::Host => "root (host ids)".into(),
            Ownership::UserNamespace { uid_map, gid_map } => format!(
                "a user namespace ({})",
                userns::Mapping {
                    uids: uid_map.clone(),
                    gids: gid_map.clone(),
                }
                .describe()
            ),
        }
    }
}

/// Where an ownership record lives (for messages).
pub fn record_path(root: &Path) -> PathBuf {
    root.join(FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_keeps_the_convention_it_was_first_used_with() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ownership::of_store(dir.path()).unwrap();
        assert_eq!(first, Ownership::current());
        assert_eq!(Ownership::of_store(dir.path()).unwrap(), first);
        // A store unpacked through another mapping is refused, naming both.
        let other = Ownership::UserNamespace {
            uid_map: vec![IdMap {
                inside: 0,
                outside: 1001,
                count: 1,
            }],
            gid_map: vec![IdMap {
                inside: 0,
                outside: 1001,
                count: 1,
            }],
        };
        std::fs::write(record_path(dir.path()), serde_json::to_vec(&other).unwrap()).unwrap();
        let err = Ownership::of_store(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the store at {} was unpacked by a user namespace (uids 0→1001, gids 0→1001), and this process runs as root (host ids)",
                dir.path().display()
            )
        );
        assert!(other.is_single());
        assert_eq!(other.snapshot_options().owners, Owners::Squash);
        assert_eq!(other.opaque_xattr(), "user.overlay.opaque");
        Ownership::forget(dir.path()).unwrap();
        assert!(Ownership::of_store(dir.path()).is_ok());
    }
}
