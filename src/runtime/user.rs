//! `USER[:GROUP]` resolved through the image's /etc/passwd and /etc/group (read by
//! [`crate::passwd`]), with docker's (runc's libcontainer/user) rules: names must exist, numbers
//! need not; without a group the user's primary group and the groups listing it as a member
//! apply.

use crate::passwd;

/// The identity the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From passwd; `/` when the user has no entry.
    pub home: String,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user `{0}`")]
    Invalid(String),
}

/// Resolve `spec` (`""`, `user`, `uid`, `user:group`, `uid:gid`, …) against the image's files
/// (None when the image has no such file).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users: Vec<passwd::User> = passwd
        .map(|t| passwd::users(t).collect())
        .unwrap_or_default();
    let groups: Vec<passwd::Group> = group
        .map(|t| passwd::groups(t).collect())
        .unwrap_or_default();
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".into(),
        name: None,
    };
    let numeric_user = user_part.parse::<u32>().ok();
    let home_of = |u: &passwd::User| -> String {
        if u.home.is_empty() {
            "/".into()
        } else {
            u.home.into()
        }
    };
    if !user_part.is_empty() {
        let found = users.iter().find(|u| match numeric_user {
            Some(n) => u.uid == n,
            None => u.name == user_part,
        });
        match (found, numeric_user) {
            (Some(u), _) => {
                out.uid = u.uid;
                out.gid = u.gid.unwrap_or(0);
                out.home = home_of(u);
                out.name = Some(u.name.to_string());
            }
            (None, Some(n)) => out.uid = n,
            (None, None) => {
                if user_part.contains(char::is_whitespace) {
                    return Err(UserError::Invalid(spec.to_string()));
                }
                return Err(UserError::NoUser(user_part.to_string()));
            }
        }
    } else if let Some(root) = users.iter().find(|u| u.uid == 0) {
        out.home = home_of(root);
        out.name = Some(root.name.to_string());
    }
    match group_part {
        Some("") | None => {
            // Supplementary groups: those naming the user as a member.
            if let Some(name) = &out.name {
                for g in &groups {
                    if g.members.contains(&name.as_str()) && g.gid != out.gid {
                        out.additional_gids.push(g.gid);
                    }
                }
            }
        }
        Some(g) => {
            if let Ok(n) = g.parse::<u32>() {
                out.gid = groups.iter().find(|x| x.gid == n).map_or(n, |x| x.gid);
            } else {
                out.gid = groups
                    .iter()
                    .find(|x| x.name == g)
                    .map(|x| x.gid)
                    .ok_or_else(|| UserError::NoGroup(g.to_string()))?;
            }
        }
    }
    out.additional_gids.sort_unstable();
    out.additional_gids.dedup();
    Ok(out)
}

/// Resolve `spec` against the passwd and group files of the root `root` holds. runc's rule
/// (libcontainer/user's GetExecUserPath): a file that cannot be read is absent; `read` takes
/// regular files only, so a FIFO in its place cannot block the start.
pub fn resolve_in(root: &crate::layer::InRoot, spec: &str) -> Result<ExecUser, UserError> {
    let read = |p: &str| {
        root.read(std::path::Path::new(p), 4 << 20)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    resolve(
        spec,
        read("/etc/passwd").as_deref(),
        read("/etc/group").as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\n";
    const GROUP: &str =
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,other\ndocker:x:999:app\n";

    fn r(spec: &str) -> Result<ExecUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn defaults_to_root() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = resolve("", None, None).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/"));
    }

    #[test]
    fn names_and_numbers() {
        let u = r("app").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.home, "/home/app");
        assert_eq!(u.additional_gids, vec![10, 999]);
        let u = r("1000").unwrap();
        assert_eq!((u.uid, u.gid, u.name.as_deref()), (1000, 1000, Some("app")));
        // A uid without an entry: root's group, home /.
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        let u = r("nobody:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (65534, 10));
        assert!(u.additional_gids.is_empty());
        let u = r("4242:4343").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 4343));
        let u = r("app:").unwrap();
        assert_eq!(u.gid, 1000);
    }

    #[test]
    fn unknown_names_fail_like_docker() {
        assert_eq!(
            r("ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:ghosts").unwrap_err(),
            UserError::NoGroup("ghosts".into())
        );
        assert_eq!(
            resolve("app", None, None).unwrap_err(),
            UserError::NoUser("app".into())
        );
    }
}
