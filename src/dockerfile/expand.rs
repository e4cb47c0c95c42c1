//! Variable expansion in Dockerfile words, as BuildKit's shell lexer does it: `$V`, `${V}`,
//! `${V:-word}`, `${V-word}`, `${V:+word}`, `${V+word}`, `${V:?message}`, `${V?message}`, single
//! and double quotes, and the escape character (`\` or the `# escape=` directive's).
//!
//! Which instructions expand is the planner's business (FROM, ADD, COPY, ENV, EXPOSE, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR, ARG and the flags of FROM/COPY/ADD do; RUN, CMD,
//! ENTRYPOINT, SHELL and HEALTHCHECK leave `$` to the shell in the container).

/// Where an expansion looks names up.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<&str>;
}

/// Variables, in the order they were last set (a set moves a name to the end, as an image
/// config's Env does). Lookups and sets are O(1): a Dockerfile with thousands of ENV or ARG
/// lines must plan in linear time.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    entries: std::collections::HashMap<String, (u64, String)>,
    next: u64,
}

impl Vars {
    pub fn new() -> Vars {
        Vars::default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|(_, v)| v.as_str())
    }

    /// Set `name`, replacing an earlier value.
    pub fn set(&mut self, name: &str, value: &str) {
        self.next += 1;
        self.entries
            .insert(name.to_string(), (self.next, value.to_string()));
    }

    pub fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// `KEY=VALUE` strings (an image config's Env) as variables.
    pub fn from_env_list(env: &[String]) -> Vars {
        let mut v = Vars::new();
        for e in env {
            match e.split_once('=') {
                Some((k, val)) => v.set(k, val),
                None => v.set(e, ""),
            }
        }
        v
    }

    /// `KEY=VALUE` strings, in order.
    pub fn to_env_list(&self) -> Vec<String> {
        self.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The variables in the order they were last set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut v: Vec<(&u64, &str, &str)> = self
            .entries
            .iter()
            .map(|(k, (n, v))| (n, k.as_str(), v.as_str()))
            .collect();
        v.sort_unstable_by_key(|(n, _, _)| **n);
        v.into_iter().map(|(_, k, v)| (k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl PartialEq for Vars {
    fn eq(&self, other: &Vars) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Vars {}

impl Lookup for Vars {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self, name)
    }
}

/// Two sets of variables seen as one, `over` winning (a stage's ENV over its ARGs), without
/// copying either.
pub struct Layered<'a> {
    pub over: &'a Vars,
    pub under: &'a Vars,
}

impl Lookup for Layered<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.over.get(name).or_else(|| self.under.get(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated single quote in `{0}`")]
    SingleQuote(String),
    #[error("unterminated double quote in `{0}`")]
    DoubleQuote(String),
    #[error("missing `}}` in `{0}`")]
    Brace(String),
    #[error("missing `/` in `{0}`")]
    Slash(String),
    #[error("bad substitution `{0}`")]
    BadSubstitution(String),
    #[error("unsupported modifier `{modifier}` in `{input}`")]
    Modifier { modifier: String, input: String },
    #[error("invalid pattern `{pattern}` in substitution: {why}")]
    Pattern { pattern: String, why: &'static str },
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// The lexer: the escape character is `\` unless the Dockerfile's `# escape=` says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    pub escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape }
    }

    /// One word: quotes removed, escapes resolved, variables expanded. Whitespace is kept.
    pub fn word(&self, input: &str, vars: &dyn Lookup) -> Result<String, ExpandError> {
        Ok(self.scan(input, vars, false).process(None, false)?.0)
    }

    /// Words split at unquoted whitespace, also the whitespace an unquoted variable brings
    /// (`EXPOSE $PORTS` gives one word per port); quoted empty words vanish.
    pub fn words(&self, input: &str, vars: &dyn Lookup) -> Result<Vec<String>, ExpandError> {
        Ok(self.scan(input, vars, false).process(None, false)?.1)
    }

    /// Variables expanded, quotes kept as they are (a here-document's body).
    pub fn expand_only(&self, input: &str, vars: &dyn Lookup) -> Result<String, ExpandError> {
        Ok(self.scan(input, vars, true).process(None, false)?.0)
    }

    fn scan<'a>(&self, input: &'a str, vars: &'a dyn Lookup, keep_quotes: bool) -> Scan<'a> {
        Scan {
            chars: input.chars().collect(),
            pos: 0,
            escape: self.escape,
            input,
            vars,
            keep_quotes,
        }
    }
}

/// BuildKit's `wordsStruct`: words split at whitespace, except what is added raw (quoted text,
/// escaped characters).
#[derive(Default)]
struct WordsBuf {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl WordsBuf {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

/// The scanner, after BuildKit's `shellWord`.
struct Scan<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    input: &'a str,
    vars: &'a dyn Lookup,
    /// A here-document's body: quotes are plain characters, an escape is kept but before `$`.
    keep_quotes: bool,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// The text up to `stop` (consumed; the `}` ending a `${V:-word}`) or the end, as one word
    /// and as words. `raw_escapes`: escape characters are kept (in the patterns of `${V#…}`,
    /// `${V/…/…}`).
    fn process(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = WordsBuf::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    self.pos += 1;
                    let v = self.dollar()?;
                    result.push_str(&v);
                    words.add_str(&v);
                }
                '<' => {
                    let v = self.possible_heredoc();
                    result.push_str(&v);
                    words.add_raw_str(&v);
                }
                '\'' if !self.keep_quotes => {
                    self.pos += 1;
                    let v = self.single_quoted()?;
                    result.push_str(&v);
                    words.add_raw_str(&v);
                }
                '"' if !self.keep_quotes => {
                    self.pos += 1;
                    let v = self.double_quoted(raw_escapes)?;
                    result.push_str(&v);
                    words.add_raw_str(&v);
                }
                c if c == self.escape => {
                    self.pos += 1;
                    if self.keep_quotes {
                        match self.next() {
                            None => result.push(c),
                            Some(n) => {
                                if n != '$' {
                                    result.push(c);
                                }
                                result.push(n);
                            }
                        }
                        continue;
                    }
                    if raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    // An escape at the very end escapes nothing and is dropped.
                    let Some(n) = self.next() else { break };
                    words.add_raw_char(n);
                    result.push(n);
                }
                c => {
                    self.pos += 1;
                    words.add_char(c);
                    result.push(c);
                }
            }
        }
        if stop.is_some() {
            return Err(ExpandError::Brace(self.input.to_string()));
        }
        Ok((result, words.finish()))
    }

    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(ExpandError::SingleQuote(self.input.to_string())),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// Inside `"…"`: `$` expands; the escape character escapes only `"`, `$` and itself.
    fn double_quoted(&mut self, raw_escapes: bool) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandError::DoubleQuote(self.input.to_string())),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => {
                    self.pos += 1;
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(c) => {
                    self.pos += 1;
                    let mut c = c;
                    if c == self.escape {
                        if raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    /// `<<` and the blanks after it, kept together (a here-document's marker is one word).
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    /// A name (letters, digits, `_`), a positional parameter (digits: `$1`, `$001`) or a
    /// special one (`$@`, `$#`, …): the last two are never set in a Dockerfile.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.pos += 1;
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn value(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(str::to_string)
    }

    /// After a `$`: the value it stands for.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                // `$` before anything that cannot start a name is a plain `$`.
                return Ok("$".into());
            }
            return Ok(self.value(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandError::Brace(self.input.to_string())),
            Some('{' | '}' | ':') => {
                return Err(ExpandError::BadSubstitution(self.input.to_string()));
            }
            Some(_) => {}
        }
        let name = self.name();
        let modifier = |m: &str, input: &str| ExpandError::Modifier {
            modifier: m.to_string(),
            input: input.to_string(),
        };
        match self.next() {
            Some('}') => Ok(self.value(&name).unwrap_or_default()),
            Some(c @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let colon = c == ':';
                let op = if colon { self.next() } else { Some(c) };
                let shown: String = [Some(c), op.filter(|_| colon)]
                    .into_iter()
                    .flatten()
                    .collect();
                let pattern_op = matches!(op, Some('#' | '%'));
                if colon && pattern_op {
                    return Err(modifier(&shown, self.input));
                }
                let word = match self.process(Some('}'), pattern_op) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return Err(ExpandError::Brace(self.input.to_string()));
                    }
                    Err(e) => return Err(e),
                };
                let value = self.value(&name);
                // With `:`, an empty value counts as unset.
                let set = value.as_ref().is_some_and(|v| !(colon && v.is_empty()));
                match op {
                    Some('-') => Ok(if set { value.unwrap_or_default() } else { word }),
                    Some('+') => Ok(if set { word } else { String::new() }),
                    Some('?') if set => Ok(value.unwrap_or_default()),
                    Some('?') => {
                        let message = if !word.is_empty() {
                            word
                        } else if value.is_some() {
                            "is not allowed to be empty".into()
                        } else {
                            "is not allowed to be unset".into()
                        };
                        Err(ExpandError::Required { name, message })
                    }
                    Some(op @ ('#' | '%')) => {
                        // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        if op == '#' {
                            trim_prefix(pattern, &value, greedy)
                        } else {
                            trim_suffix(pattern, &value, greedy)
                        }
                    }
                    _ => Err(modifier(&shown, self.input)),
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = match self.process(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(_) if self.peek().is_none() => {
                        return Err(ExpandError::Slash(self.input.to_string()));
                    }
                    Err(e) => return Err(e),
                };
                let replacement = match self.process(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(_) if self.peek().is_none() => {
                        return Err(ExpandError::Brace(self.input.to_string()));
                    }
                    Err(e) => return Err(e),
                };
                let value = self.value(&name).unwrap_or_default();
                let re = shell_pattern(&pattern, true, false)?;
                Ok(if all {
                    re.replace_all(&value, replacement.as_str()).into_owned()
                } else {
                    match re.find(&value) {
                        Some(m) => {
                            format!("{}{replacement}{}", &value[..m.start()], &value[m.end()..])
                        }
                        None => value,
                    }
                })
            }
            Some(c) => Err(modifier(&c.to_string(), self.input)),
            None => Err(ExpandError::Brace(self.input.to_string())),
        }
    }
}

/// A shell pattern of `${V#pat}` & co. as a regex (BuildKit's convertShellPatternToRegex):
/// `*` any text (`greedy`: the longest), `?` one character, `\` escapes `*`, `?` and `\`
/// (and is dropped before `}` and `/`, which it only kept from ending the word).
fn shell_pattern(pattern: &str, greedy: bool, anchored: bool) -> Result<regex::Regex, ExpandError> {
    let invalid = |why| ExpandError::Pattern {
        pattern: pattern.to_string(),
        why,
    };
    let mut out = String::from(if anchored { "^" } else { "" });
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(if greedy { ".*" } else { ".*?" }),
            '?' => out.push('.'),
            '\\' if matches!(chars.peek(), Some('}' | '/')) => {}
            '\\' => match chars.next() {
                Some(e @ ('*' | '?' | '\\')) => {
                    out.push('\\');
                    out.push(e);
                }
                _ => return Err(invalid("`\\` escapes only `*`, `?` and `\\`")),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex::Regex::new(&out).map_err(|_| invalid("not a pattern"))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let re = shell_pattern(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// The shortest (or longest) match at the end: reversed, it is a match at the start.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// A pattern reversed with its escapes kept in front of what they escape (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec![' '; p.len()];
    let mut i = 0;
    while i < p.len() {
        let at = p.len() - 1 - i;
        if p[i] == '\\' && i + 1 < p.len() {
            out[at - 1] = '\\';
            out[at] = p[i + 1];
            i += 2;
        } else {
            out[at] = p[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
#[path = "expand_tests.rs"]
mod tests;
