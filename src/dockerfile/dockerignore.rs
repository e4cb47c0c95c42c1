//! `.dockerignore` patterns with docker's semantics (moby/patternmatcher and its `ignorefile`
//! reader): one pattern a line, `#` comments, `!` re-includes, paths cleaned (Go's
//! `filepath.Clean`) and relative to the context root, `*` and `?` within one path component,
//! `**` across any number of them, `[…]` classes, `\` escapes. The last matching pattern decides,
//! and a pattern that matches a directory matches everything under it. A malformed pattern (what
//! Go's `filepath.Match` refuses: `[`, `a[`, `[a-b-c]`, a trailing `\`, a lone `!`) is an error
//! naming it and its line.
//!
//! Patterns are compiled once, into patternmatcher's match kinds: exact, prefix (`dir/**`),
//! suffix (`**/name`, `**name`) or a regex; COPY's wildcard sources use the same compiler
//! ([`Glob`]).

use regex::Regex;

use crate::lexical::go_clean;
/// How one pattern matches a path.
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    /// `lit**`: every path starting with `lit`.
    Prefix(String),
    /// `**lit`: every path ending with `lit`, and `lit` without its leading `/`.
    Suffix(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(p) => path == p,
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            Matcher::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|s| path == s)
            }
            Matcher::Regex(r) => r.is_match(path),
        }
    }
}

/// Why a pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a `[` is not closed")]
    UnclosedClass,
    #[error("a `-` or `]` inside `[…]` must be escaped (`\\-`, `\\]`)")]
    ClassSyntax,
    #[error("the range `{lo}-{hi}` runs backwards")]
    ReversedRange { lo: char, hi: char },
    #[error("it ends with a `\\` that escapes nothing")]
    TrailingEscape,
    #[error("a `!` alone re-includes nothing: write `!PATTERN`")]
    LoneExclamation,
}

/// A malformed pattern, with its line when it comes from an ignore file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}invalid pattern `{pattern}`: {reason}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct IgnoreError {
    pub line: Option<usize>,
    pub pattern: String,
    pub reason: PatternError,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without its `!`.
    text: String,
    exclusion: bool,
    matcher: Matcher,
    /// Each `/`-separated component, compiled on its own (exclusions only: for
    /// [`Ignore::may_reinclude_under`]); None for a component that is no pattern on its own.
    components: Vec<Option<Glob>>,
}

#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parse the text of a `.dockerignore` file (ignorefile.ReadAll, then patternmatcher.New).
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            // A comment only when `#` is the very first character, as docker reads it.
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, rest) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            patterns.push(Pattern::new(rest, exclusion, Some(i + 1))?);
        }
        Ok(Ignore { patterns })
    }

    /// Patterns given one by one (`COPY --exclude=PATTERN`).
    pub fn from_patterns<S: AsRef<str>>(list: &[S]) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for p in list {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let (exclusion, rest) = match p.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, p),
            };
            patterns.push(Pattern::new(rest, exclusion, None)?);
        }
        Ok(Ignore { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded from the context
    /// (patternmatcher's `MatchesOrParentMatches`).
    pub fn excludes(&self, path: &str) -> bool {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return false;
        }
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that would change the answer is looked at.
            if p.exclusion != excluded {
                continue;
            }
            if p.matcher.matches(path) || parents.iter().any(|d| p.matcher.matches(d)) {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include something under the excluded directory `dir`
    /// (then the directory must still be walked).
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir = dir.trim_matches('/');
        let depth = dir.split('/').count();
        self.patterns.iter().any(|p| {
            // A character class may match `/` (`a[/]b`, `a[^x]b`), which the component-wise
            // check below cannot see: such a pattern may re-include anything.
            p.exclusion
                && (p.text.contains("**")
                    || p.text.contains('[')
                    || p.text.starts_with(&format!("{dir}/"))
                    || p.components.len() > depth
                        && dir
                            .split('/')
                            .zip(&p.components)
                            .all(|(d, c)| c.as_ref().is_none_or(|g| g.matches(d))))
        })
    }
}

impl Pattern {
    /// `text` as ignorefile.ReadAll leaves it (without its `!`), compiled.
    fn new(text: &str, exclusion: bool, line: Option<usize>) -> Result<Pattern, IgnoreError> {
        let error = |reason| IgnoreError {
            line,
            pattern: if exclusion {
                format!("!{text}")
            } else {
                text.to_string()
            },
            reason,
        };
        if exclusion && text.is_empty() {
            return Err(error(PatternError::LoneExclamation));
        }
        let mut cleaned = go_clean(text);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
        let matcher = compile(&cleaned, true).map_err(error)?;
        let components = if exclusion {
            cleaned
                .split('/')
                .map(|c| compile(c, false).ok().map(Glob))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Pattern {
            text: cleaned,
            exclusion,
            matcher,
            components,
        })
    }
}

/// A COPY source pattern (`*`, `?`, `[…]`, `**`), compiled once and matched against many paths.
#[derive(Debug, Clone)]
pub struct Glob(Matcher);

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, IgnoreError> {
        let cleaned = go_clean(pattern);
        let cleaned = cleaned.trim_start_matches('/');
        compile(cleaned, false)
            .map(Glob)
            .map_err(|reason| IgnoreError {
                line: None,
                pattern: pattern.to_string(),
                reason,
            })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.matches(path)
    }
}

pub fn has_wildcards(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// patternmatcher's `compile`, with the syntax Go's `filepath.Match` accepts checked first and
/// the classes and escapes translated for the regex crate. `suffix_rule`: a leading `**`
/// followed by plain text is a suffix match (`**file` matches `afile`), as patternmatcher has it.
fn compile(pattern: &str, suffix_rule: bool) -> Result<Matcher, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut i = 0;
    let mut first = true;
    // Where the `**` of a prefix match starts.
    let mut prefix_end = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                prefix_end = i;
                i += 2;
                // `**/` is `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first && suffix_rule {
                    kind = Kind::Suffix;
                }
                first = false;
                continue;
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            '\\' => {
                i += 1;
                let n = *chars.get(i).ok_or(PatternError::TrailingEscape)?;
                re.push_str(&regex::escape(&n.to_string()));
                kind = Kind::Regex;
            }
            '[' => {
                let (class, next) = class(&chars, i + 1)?;
                re.push_str(&class);
                kind = Kind::Regex;
                i = next;
                first = false;
                continue;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
        first = false;
    }
    Ok(match kind {
        Kind::Exact => Matcher::Exact(pattern.to_string()),
        Kind::Prefix => Matcher::Prefix(chars[..prefix_end].iter().collect()),
        Kind::Suffix => Matcher::Suffix(pattern[2..].to_string()),
        Kind::Regex => {
            re.push('$');
            // Every piece was escaped or built here: the regex is well formed.
            Matcher::Regex(Regex::new(&re).expect("a translated pattern is a valid regex"))
        }
    })
}

/// The class starting after a `[` at `j`, as Go's `matchChunk` reads it (`^` negates; each
/// item a character or a `lo-hi` range, `\` escaping; `-` and `]` must be escaped but for the
/// closing `]` after at least one item): the regex class and the index after its `]`.
fn class(chars: &[char], mut j: usize) -> Result<(String, usize), PatternError> {
    let mut out = String::from("[");
    if chars.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    let mut items = 0;
    loop {
        if chars.get(j) == Some(&']') && items > 0 {
            out.push(']');
            return Ok((out, j + 1));
        }
        let (lo, next) = class_char(chars, j)?;
        j = next;
        let mut hi = lo;
        if chars.get(j) == Some(&'-') {
            (hi, j) = class_char(chars, j + 1)?;
        }
        if lo > hi {
            return Err(PatternError::ReversedRange { lo, hi });
        }
        out.push_str(&format!("\\x{{{:x}}}-\\x{{{:x}}}", lo as u32, hi as u32));
        items += 1;
    }
}

/// Go's `getEsc`: one (possibly escaped) character of a class, which must not be the last of
/// the pattern (the class would not be closed).
fn class_char(chars: &[char], mut j: usize) -> Result<(char, usize), PatternError> {
    let c = match chars.get(j) {
        None => return Err(PatternError::UnclosedClass),
        Some('-' | ']') => return Err(PatternError::ClassSyntax),
        Some('\\') => {
            j += 1;
            *chars.get(j).ok_or(PatternError::UnclosedClass)?
        }
        Some(c) => *c,
    };
    j += 1;
    if j >= chars.len() {
        return Err(PatternError::UnclosedClass);
    }
    Ok((c, j))
}

#[cfg(test)]
#[path = "dockerignore_tests.rs"]
mod tests;
