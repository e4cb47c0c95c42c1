//! Subordinate ids (/etc/subuid, /etc/subgid: `USER:START:COUNT`, the user by name or by uid)
//! and the mapping of manifold's user namespace built from them.

use serde::{Deserialize, Serialize};

/// One line of a uid_map or gid_map: `count` ids from `inside` map to `outside` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The ids of a user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl Mapping {
    /// 0 → `uid` (and `gid`), nothing else.
    pub fn single(uid: u32, gid: u32) -> Mapping {
        Mapping {
            uids: vec![IdMap {
                inside: 0,
                outside: uid,
                count: 1,
            }],
            gids: vec![IdMap {
                inside: 0,
                outside: gid,
                count: 1,
            }],
        }
    }

    /// podman's: 0 → the user, then each subordinate range in turn from id 1.
    pub fn with_ranges(
        uid: u32,
        gid: u32,
        uranges: &[(u32, u32)],
        granges: &[(u32, u32)],
    ) -> Mapping {
        let lines = |own: u32, ranges: &[(u32, u32)]| {
            let mut out = vec![IdMap {
                inside: 0,
                outside: own,
                count: 1,
            }];
            let mut next = 1u32;
            for &(start, count) in ranges {
                let Some(end) = next.checked_add(count) else {
                    break;
                };
                out.push(IdMap {
                    inside: next,
                    outside: start,
                    count,
                });
                next = end;
            }
            out
        };
        Mapping {
            uids: lines(uid, uranges),
            gids: lines(gid, granges),
        }
    }

    /// Whether only one uid (0, the user) exists inside.
    pub fn is_single(&self) -> bool {
        self.uids.iter().map(|m| m.count as u64).sum::<u64>() <= 1
            || self.gids.iter().map(|m| m.count as u64).sum::<u64>() <= 1
    }

    /// Whether the id `inside` the namespace is mapped.
    pub fn maps_uid(&self, inside: u32) -> bool {
        maps(&self.uids, inside)
    }

    pub fn maps_gid(&self, inside: u32) -> bool {
        maps(&self.gids, inside)
    }

    /// The host's uid for an id inside (what the files of a snapshot are owned by on disk).
    pub fn host_uid(&self, inside: u32) -> Option<u32> {
        to_host(&self.uids, inside)
    }

    pub fn host_gid(&self, inside: u32) -> Option<u32> {
        to_host(&self.gids, inside)
    }

    /// The highest uid inside (0 for a single mapping).
    pub fn max_uid(&self) -> u32 {
        self.uids
            .iter()
            .map(|m| m.inside + m.count.saturating_sub(1))
            .max()
            .unwrap_or(0)
    }

    /// /proc/PID/uid_map's text.
    pub fn uid_map(&self) -> String {
        text(&self.uids)
    }

    pub fn gid_map(&self) -> String {
        text(&self.gids)
    }

    /// newuidmap's arguments after the pid.
    pub fn uid_args(&self) -> Vec<String> {
        args(&self.uids)
    }

    pub fn gid_args(&self) -> Vec<String> {
        args(&self.gids)
    }

    /// `0→1000, 1-65536→100000-165535` (for messages).
    pub fn describe(&self) -> String {
        let one = |m: &IdMap| {
            if m.count == 1 {
                format!("{}→{}", m.inside, m.outside)
            } else {
                format!(
                    "{}-{}→{}-{}",
                    m.inside,
                    m.inside as u64 + m.count as u64 - 1,
                    m.outside,
                    m.outside as u64 + m.count as u64 - 1
                )
            }
        };
        format!(
            "uids {}, gids {}",
            self.uids.iter().map(one).collect::<Vec<_>>().join(", "),
            self.gids.iter().map(one).collect::<Vec<_>>().join(", ")
        )
    }
}

fn maps(lines: &[IdMap], inside: u32) -> bool {
    to_host(lines, inside).is_some()
}

fn to_host(lines: &[IdMap], inside: u32) -> Option<u32> {
    lines.iter().find_map(|m| {
        let offset = inside.checked_sub(m.inside)?;
        (offset < m.count).then(|| m.outside + offset)
    })
}

fn text(lines: &[IdMap]) -> String {
    lines
        .iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
        .collect()
}

fn args(lines: &[IdMap]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|m| [m.inside, m.outside, m.count])
        .map(|n| n.to_string())
        .collect()
}

/// The lines of /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Default)]
pub struct SubIds {
    lines: Vec<(String, u32, u32)>,
}

impl SubIds {
    /// Lines that are not `NAME:START:COUNT` with numbers (comments, garbage) are skipped, as
    /// shadow's own tools skip them.
    pub fn parse(text: &str) -> SubIds {
        let lines = text
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().split(':');
                let (who, start, count) = (f.next()?, f.next()?, f.next()?);
                if f.next().is_some() || who.is_empty() || who.starts_with('#') {
                    return None;
                }
                let count: u32 = count.trim().parse().ok()?;
                (count > 0).then_some((who.to_string(), start.trim().parse().ok()?, count))
            })
            .collect();
        SubIds { lines }
    }

    /// The ranges of a user, named either way, in file order (duplicates once).
    pub fn ranges_of(&self, user: &str, uid: u32) -> Vec<(u32, u32)> {
        let uid = uid.to_string();
        let mut out: Vec<(u32, u32)> = Vec::new();
        for (who, start, count) in &self.lines {
            if (who == user || *who == uid) && !out.contains(&(*start, *count)) {
                out.push((*start, *count));
            }
        }
        out
    }
}
