//! Paths by their names alone, no file system: cleaning (Go's `path.Clean` under a root: empty
//! and `.` components dropped, `..` never climbing above the root, as docker, BuildKit and
//! containerd join Dockerfile and tar paths to a root) and symlink resolution over any tree that
//! can say what a name is (a layer stack, a build context on the host).
//!
//! The one home of both rules: the Dockerfile plan, `.dockerignore`, layer extraction, the
//! builder's trees and context, `verify` and archive loading call here.

/// The components of `path` under a root, cleaned: `/`, `.` and empty components dropped, `..`
/// removing the component before it and nothing at the root.
pub fn components(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn str_components(path: &str) -> impl Iterator<Item = &str> {
    components(path.as_bytes())
        .into_iter()
        .map(|c| std::str::from_utf8(c).expect("split at an ASCII byte, still UTF-8"))
}

/// `/a/./b/../c/` → `a/c`; the root is `` (the form of a layer's or an archive's paths).
pub fn relative(path: &str) -> String {
    str_components(path).collect::<Vec<_>>().join("/")
}

/// Go's `filepath.Clean` for `/`-separated paths, not under a root (what `.dockerignore`
/// patterns are cleaned with): `.` and empty components dropped, `..` removing the one before
/// (kept at the start of a relative path), `.` for nothing.
pub fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    match (rooted, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    }
}

/// `a/./b/../c/` → `/a/c`; the root is `/` (the form of a Dockerfile's paths).
pub fn absolute(path: &str) -> String {
    format!("/{}", relative(path))
}

/// Like [`relative`], but None for a path whose `..` climbs above the root (an archive's own
/// references to its files, where such a path is a broken archive, not a path to clamp).
pub fn within(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// Symlinks followed in one resolution before giving up (the kernel's own limit).
pub const MAX_LINKS: u32 = 40;

/// Where a path led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Relative to the root, cleaned (`` for the root itself).
    pub path: String,
    /// More than [`MAX_LINKS`] symlinks were met: `path` is where the walk stopped.
    pub looped: bool,
}

/// Resolve `path` under a root, one component at a time, as the kernel does under a chroot: an
/// absolute symlink target starts again at the root, `..` stops at it. `at` is asked about each
/// component reached (the path so far, relative, and whether it is the last): a symlink's target,
/// `None` for anything else, or an error that ends the walk. The last component's link is
/// followed only when `follow_last`.
pub fn resolve<E>(
    path: &str,
    follow_last: bool,
    mut at: impl FnMut(&str, bool) -> Result<Option<String>, E>,
) -> Result<Resolved, E> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = Vec::new();
    push_reversed(&mut todo, path);
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        done.push(c);
        let last = todo.is_empty();
        let Some(target) = at(&done.join("/"), last)? else {
            continue;
        };
        if last && !follow_last {
            continue;
        }
        if links == MAX_LINKS {
            return Ok(Resolved {
                path: done.join("/"),
                looped: true,
            });
        }
        links += 1;
        done.pop();
        if target.starts_with('/') {
            done.clear();
        }
        push_reversed(&mut todo, &target);
    }
    Ok(Resolved {
        path: done.join("/"),
        looped: false,
    })
}

fn push_reversed(todo: &mut Vec<String>, path: &str) {
    todo.extend(
        path.split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_string),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn cleaning_never_climbs_above_the_root() {
        // (input, relative, absolute, within)
        let table: &[(&str, &str, &str, Option<&str>)] = &[
            ("/a/./b/../c/", "a/c", "/a/c", Some("a/c")),
            ("a//b/", "a/b", "/a/b", Some("a/b")),
            ("/..", "", "/", None),
            ("../../etc/passwd", "etc/passwd", "/etc/passwd", None),
            ("a/../../b", "b", "/b", None),
            ("a/b/../..", "", "/", Some("")),
            ("", "", "/", Some("")),
            ("./", "", "/", Some("")),
            (".wh..", ".wh..", "/.wh..", Some(".wh..")),
        ];
        for (input, rel, abs, inside) in table {
            assert_eq!(relative(input), *rel, "relative({input:?})");
            assert_eq!(absolute(input), *abs, "absolute({input:?})");
            assert_eq!(within(input).as_deref(), *inside, "within({input:?})");
        }
        assert_eq!(
            components(b"/x/\xff/../y"),
            vec![b"x".as_slice(), b"y".as_slice()]
        );
    }

    fn links(table: &[(&str, &str)]) -> HashMap<String, String> {
        table
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn walk(links: &HashMap<String, String>, path: &str, follow_last: bool) -> Resolved {
        resolve::<()>(path, follow_last, |p, _| Ok(links.get(p).cloned())).unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let l = links(&[
            ("lib", "usr/lib"),
            ("usr/lib/cur", "/usr/lib/v1"),
            ("up", "../../../etc"),
            ("self", "self"),
        ]);
        // (path, follow_last, where it leads)
        let table = [
            ("/lib/x", true, "usr/lib/x"),
            ("/lib/cur", true, "usr/lib/v1"),
            ("/lib/cur", false, "usr/lib/cur"),
            ("up/passwd", true, "etc/passwd"),
            ("a/./b/../c", true, "a/c"),
            ("lib", false, "lib"),
        ];
        for (path, follow, want) in table {
            let r = walk(&l, path, follow);
            assert_eq!((r.path.as_str(), r.looped), (want, false), "{path}");
        }
        let r = walk(&l, "self/x", true);
        assert!(r.looped, "{r:?}");
    }

    #[test]
    fn the_walk_asks_about_every_component_and_stops_at_an_error() {
        let mut asked = Vec::new();
        let r = resolve("a/b/c", true, |p, last| -> Result<Option<String>, String> {
            asked.push((p.to_string(), last));
            if p == "a/b" {
                return Err(format!("`{p}` is excluded"));
            }
            Ok(None)
        });
        assert_eq!(r, Err("`a/b` is excluded".to_string()));
        assert_eq!(
            asked,
            vec![("a".to_string(), false), ("a/b".to_string(), false)]
        );
    }
}
