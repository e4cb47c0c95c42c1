//! An image's /etc/passwd and /etc/group, read as runc's libcontainer/user reads them: one entry
//! a line, fields separated by `:`; blank lines and `#` comments skipped; a line whose ID is no
//! number is no entry; fields a short line lacks are empty. The one reader of both files: `run`
//! (`runtime::user`, the process's identity) and the builder (`USER`, `--chown`) apply their own
//! rules to what it reads.

/// A passwd entry (`name:password:uid:gid:gecos:home:shell`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User<'a> {
    pub name: &'a str,
    pub uid: u32,
    /// The primary group; None when the field is missing or no number.
    pub gid: Option<u32>,
    /// Empty when the field is.
    pub home: &'a str,
}

/// A group entry (`name:password:gid:member,member`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<'a> {
    pub name: &'a str,
    pub gid: u32,
    pub members: Vec<&'a str>,
}

/// The fields of each entry line.
fn lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

pub fn users(passwd: &str) -> impl Iterator<Item = User<'_>> {
    lines(passwd).filter_map(|f| {
        Some(User {
            name: f[0],
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3).and_then(|g| g.parse().ok()),
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

pub fn groups(group: &str) -> impl Iterator<Item = Group<'_>> {
    lines(group).filter_map(|f| {
        Some(Group {
            name: f[0],
            gid: f.get(2)?.parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|m| !m.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What both former readers agreed on, and the lines they read differently: `run`'s skipped
    /// comments and lines of fewer than 7 (passwd) or 4 (group) fields; the builder's read any
    /// line of 3 fields or more, comments included, and failed on a matching line whose ID was
    /// no number. runc reads short lines (the fields they lack are empty) and skips comments:
    /// both now do.
    #[test]
    fn entries_as_runc_reads_them() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                      # app:x:1:1::/:/bin/sh\n\
                      \n\
                      short:x:7\n\
                      four:x:8:9\n\
                      bad:x:notanumber:1::/:/bin/sh\n  \
                      app:x:1000:1001::/home/app:/bin/sh\n";
        let got: Vec<User> = users(passwd).collect();
        let table = [
            ("root", 0, Some(0), "/root"),
            ("short", 7, None, ""),
            ("four", 8, Some(9), ""),
            ("app", 1000, Some(1001), "/home/app"),
        ];
        assert_eq!(got.len(), table.len(), "{got:?}");
        for (u, (name, uid, gid, home)) in got.iter().zip(table) {
            assert_eq!((u.name, u.uid, u.gid, u.home), (name, uid, gid, home));
        }
        let group = "root:x:0:\nwheel:x:10:app,,other\n#staff:x:50:\nshort:x:60\nbad:x:y:\n";
        let got: Vec<Group> = groups(group).collect();
        assert_eq!(
            got,
            vec![
                Group {
                    name: "root",
                    gid: 0,
                    members: vec![]
                },
                Group {
                    name: "wheel",
                    gid: 10,
                    members: vec!["app", "other"]
                },
                Group {
                    name: "short",
                    gid: 60,
                    members: vec![]
                },
            ]
        );
    }
}
