//! `.dockerignore` patterns with docker's semantics (moby/patternmatcher): one pattern a line,
//! `#` comments, `!` re-includes, paths cleaned and relative to the context root, `*` and `?`
//! within one path component, `**` across any number of them, `\` escapes. The last matching
//! pattern decides, and a pattern that matches a directory matches everything under it.

use regex::Regex;

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    exclusion: bool,
    regex: Regex,
}

#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid .dockerignore pattern `{pattern}`: {why}")]
pub struct IgnoreError {
    pub pattern: String,
    pub why: String,
}

impl Ignore {
    /// Parse the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, p) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(p);
            if cleaned.is_empty() {
                continue;
            }
            let regex = Regex::new(&to_regex(&cleaned)).map_err(|e| IgnoreError {
                pattern: line.to_string(),
                why: e.to_string(),
            })?;
            patterns.push(Pattern {
                text: cleaned,
                exclusion,
                regex,
            });
        }
        Ok(Ignore { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded from the context.
    pub fn excludes(&self, path: &str) -> bool {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return false;
        }
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            let matched = p.regex.is_match(path) || parents.iter().any(|d| p.regex.is_match(d));
            if matched {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include something under the excluded directory `dir`
    /// (then the directory must still be walked).
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir = dir.trim_matches('/');
        self.patterns.iter().any(|p| {
            // A character class may match `/` (`a[/]b`, `a[^x]b`), which the component-wise
            // check below cannot see: such a pattern may re-include anything.
            p.exclusion
                && (p.text.contains("**")
                    || p.text.contains('[')
                    || p.text.starts_with(&format!("{dir}/"))
                    || p.text.split('/').count() > dir.split('/').count()
                        && prefix_could_match(&p.text, dir))
        })
    }
}

/// Whether the first components of `pattern` could match `dir`'s components.
fn prefix_could_match(pattern: &str, dir: &str) -> bool {
    let pc: Vec<&str> = pattern.split('/').collect();
    let dc: Vec<&str> = dir.split('/').collect();
    dc.iter()
        .zip(pc.iter())
        .all(|(d, p)| Regex::new(&to_regex(p)).is_ok_and(|r| r.is_match(d)))
}

/// `filepath.Clean`, leading `/` removed.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn to_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' => {
                if chars.get(i + 1) == Some(&'*') {
                    i += 1;
                    if chars.get(i + 1) == Some(&'/') {
                        i += 1;
                    }
                    if i + 1 >= chars.len() {
                        re.push_str(".*");
                    } else {
                        re.push_str("(.*/)?");
                    }
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' => re.push_str("[^/]"),
            '\\' => {
                i += 1;
                if let Some(n) = chars.get(i) {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            '[' => {
                // A character class, copied through (its `\` escapes too).
                let mut j = i + 1;
                let mut class = String::from("[");
                if chars.get(j) == Some(&'^') || chars.get(j) == Some(&'!') {
                    class.push('^');
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        class.push('\\');
                        j += 1;
                    }
                    class.push(chars[j]);
                    j += 1;
                }
                if j < chars.len() {
                    class.push(']');
                    re.push_str(&class);
                    i = j;
                } else {
                    re.push_str("\\[");
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    re
}

/// Shell-style match of one path against a COPY source pattern (`*`, `?`, `[…]`, `**`).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    Regex::new(&to_regex(&clean(pattern))).is_ok_and(|r| r.is_match(path))
}

pub fn has_wildcards(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn basic_patterns() {
        let i = ig("# comment\n*.log\n/build\ntmp?\n");
        assert!(i.excludes("a.log"));
        assert!(!i.excludes("dir/a.log"), "`*` does not cross directories");
        assert!(i.excludes("build"));
        assert!(i.excludes("build/x/y"), "a directory's contents go with it");
        assert!(i.excludes("tmp1"));
        assert!(!i.excludes("tmp12"));
        assert!(!i.excludes("src/main.rs"));
    }

    #[test]
    fn double_star() {
        let i = ig("**/*.o\ndocs/**\n");
        assert!(i.excludes("a.o"));
        assert!(i.excludes("x/y/z.o"));
        assert!(i.excludes("docs/a/b"));
        assert!(!i.excludes("docsx/a"));
        let i = ig("a/**/b");
        assert!(i.excludes("a/b"));
        assert!(i.excludes("a/x/y/b"));
        assert!(!i.excludes("a/x/c"));
    }

    #[test]
    fn exceptions_last_match_wins() {
        let i = ig("*.md\n!README.md\n");
        assert!(i.excludes("CHANGES.md"));
        assert!(!i.excludes("README.md"));
        let i = ig("!README.md\n*.md\n");
        assert!(
            i.excludes("README.md"),
            "a later pattern overrides the exception"
        );
        let i = ig("secret\n!secret/public\n");
        assert!(i.excludes("secret/key"));
        assert!(!i.excludes("secret/public"));
        assert!(!i.excludes("secret/public/x"));
        assert!(i.may_reinclude_under("secret"));
        assert!(!ig("secret\n").may_reinclude_under("secret"));
    }

    /// Found by the `dockerignore` fuzz target's property (fuzz/regressions/dockerignore/): a
    /// `!` pattern whose character class matches `/` re-includes `a/b`, but the context walk was
    /// told nothing under `a` could come back, and skipped it.
    #[test]
    fn class_matching_a_slash_may_reinclude() {
        for text in ["a\n!a[/]b\n", "a\n!a[^x]b\n"] {
            let i = ig(text);
            assert!(i.excludes("a") && !i.excludes("a/b"), "{text:?}");
            assert!(i.may_reinclude_under("a"), "{text:?}");
        }
    }

    #[test]
    fn cleaning_and_escapes() {
        let i = ig("./a/../b/\n\\!bang\n[ab]c\n");
        assert!(i.excludes("b"));
        assert!(i.excludes("!bang"));
        assert!(i.excludes("ac"));
        assert!(i.excludes("bc"));
        assert!(!i.excludes("cc"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "d/a.txt"));
        assert!(glob_match("d/*.txt", "d/a.txt"));
        assert!(glob_match("/d/?.txt", "d/a.txt"));
        assert!(has_wildcards("a*"));
        assert!(!has_wildcards("a"));
    }
}
