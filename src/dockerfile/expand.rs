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
    #[error("bad substitution `{0}`")]
    BadSubstitution(String),
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
        let mut words = self.run(input, vars, Mode::Word)?;
        Ok(words.pop().unwrap_or_default())
    }

    /// Words split at unquoted whitespace (`EXPOSE $PORTS` gives one word per port).
    pub fn words(&self, input: &str, vars: &dyn Lookup) -> Result<Vec<String>, ExpandError> {
        self.run(input, vars, Mode::Words)
    }

    /// Variables expanded, quotes kept as they are (a here-document's body).
    pub fn expand_only(&self, input: &str, vars: &dyn Lookup) -> Result<String, ExpandError> {
        let mut words = self.run(input, vars, Mode::KeepQuotes)?;
        Ok(words.pop().unwrap_or_default())
    }

    fn run(&self, input: &str, vars: &dyn Lookup, mode: Mode) -> Result<Vec<String>, ExpandError> {
        let mut s = Scan {
            chars: input.chars().collect(),
            pos: 0,
            escape: self.escape,
            input,
            vars,
            mode,
        };
        s.process(None)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Word,
    Words,
    KeepQuotes,
}

struct Scan<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    input: &'a str,
    vars: &'a dyn Lookup,
    mode: Mode,
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

    /// Words up to `stop` (the `}` ending a `${V:-word}`) or the end.
    fn process(&mut self, stop: Option<char>) -> Result<Vec<String>, ExpandError> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            if c == self.escape {
                self.pos += 1;
                match self.next() {
                    // A trailing escape stays what it is.
                    None => cur.push(c),
                    Some(n) => {
                        if self.mode == Mode::KeepQuotes && n != '$' {
                            cur.push(c);
                        }
                        cur.push(n);
                    }
                }
                in_word = true;
                continue;
            }
            match c {
                '\'' if self.mode != Mode::KeepQuotes => {
                    self.pos += 1;
                    self.single_quoted(&mut cur)?;
                    in_word = true;
                }
                '"' if self.mode != Mode::KeepQuotes => {
                    self.pos += 1;
                    self.double_quoted(&mut cur)?;
                    in_word = true;
                }
                '$' => {
                    self.pos += 1;
                    let value = self.dollar()?;
                    cur.push_str(&value);
                    in_word = true;
                }
                c if c.is_whitespace() && self.mode == Mode::Words => {
                    self.pos += 1;
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    self.pos += 1;
                    cur.push(c);
                    in_word = true;
                }
            }
        }
        if in_word || self.mode != Mode::Words {
            words.push(cur);
        }
        Ok(words)
    }

    fn single_quoted(&mut self, out: &mut String) -> Result<(), ExpandError> {
        loop {
            match self.next() {
                None => return Err(ExpandError::SingleQuote(self.input.to_string())),
                Some('\'') => return Ok(()),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut String) -> Result<(), ExpandError> {
        loop {
            match self.next() {
                None => return Err(ExpandError::DoubleQuote(self.input.to_string())),
                Some('"') => return Ok(()),
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`: the value it stands for.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok(self.vars.get(&name).unwrap_or_default().to_string())
            }
            // `$` before anything that cannot start a name is a plain `$`.
            _ => Ok("$".to_string()),
        }
    }

    fn braced(&mut self) -> Result<String, ExpandError> {
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError::BadSubstitution(self.input.to_string()));
        }
        let value = self.vars.get(&name).map(str::to_string);
        match self.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(c) if matches!(c, ':' | '-' | '+' | '?') => {
                let colon = c == ':';
                let op = if colon { self.next() } else { Some(c) };
                let op = match op {
                    Some(op @ ('-' | '+' | '?')) => op,
                    _ => return Err(ExpandError::BadSubstitution(self.input.to_string())),
                };
                let word = self.sub_word()?;
                // With `:`, an empty value counts as unset.
                let set = match &value {
                    Some(v) => !(colon && v.is_empty()),
                    None => false,
                };
                Ok(match op {
                    '-' => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            word
                        }
                    }
                    '+' => {
                        if set {
                            word
                        } else {
                            String::new()
                        }
                    }
                    _ => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            let message = if word.is_empty() {
                                "is not allowed to be unset".to_string()
                            } else {
                                word
                            };
                            return Err(ExpandError::Required { name, message });
                        }
                    }
                })
            }
            None => Err(ExpandError::Brace(self.input.to_string())),
            Some(_) => Err(ExpandError::BadSubstitution(self.input.to_string())),
        }
    }

    /// The word of `${V:-word}` up to its `}`, itself expanded.
    fn sub_word(&mut self) -> Result<String, ExpandError> {
        let mode = self.mode;
        self.mode = Mode::Word;
        let words = self.process(Some('}'));
        self.mode = mode;
        let words = words?;
        match self.next() {
            Some('}') => Ok(words.concat()),
            _ => Err(ExpandError::Brace(self.input.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("A", "apple");
        v.set("EMPTY", "");
        v.set("SPACED", "a b");
        v
    }

    fn w(s: &str) -> String {
        Lexer::default().word(s, &vars()).unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(w("$A"), "apple");
        assert_eq!(w("${A}"), "apple");
        assert_eq!(w("x${A}y"), "xappley");
        assert_eq!(w("$A-1"), "apple-1");
        assert_eq!(w("$UNSET"), "");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$1"), "$1");
        assert_eq!(w("cost: $ 5"), "cost: $ 5");
    }

    #[test]
    fn defaults_and_alternatives() {
        assert_eq!(w("${A:-d}"), "apple");
        assert_eq!(w("${UNSET:-d}"), "d");
        assert_eq!(w("${EMPTY:-d}"), "d");
        assert_eq!(w("${EMPTY-d}"), "");
        assert_eq!(w("${UNSET-d}"), "d");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${EMPTY:+alt}"), "");
        assert_eq!(w("${EMPTY+alt}"), "alt");
        assert_eq!(w("${UNSET+alt}"), "");
        assert_eq!(w("${UNSET:-$A}"), "apple");
        assert_eq!(w("${UNSET:-${A:+nested}}"), "nested");
        assert_eq!(w("${UNSET:-two words}"), "two words");
    }

    #[test]
    fn required() {
        let e = Lexer::default()
            .word("${UNSET:?need it}", &vars())
            .unwrap_err();
        assert_eq!(e.to_string(), "UNSET: need it");
        assert!(Lexer::default().word("${EMPTY?x}", &vars()).is_ok());
        assert!(Lexer::default().word("${EMPTY:?}", &vars()).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A\""), "apple");
        assert_eq!(w("\"a \\\"q\\\" \\$A \\x\""), "a \"q\" $A \\x");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("trailing\\"), "trailing\\");
        assert_eq!(w("a''b\"\"c"), "abc");
    }

    #[test]
    fn other_escape_character() {
        let lx = Lexer::new('`');
        assert_eq!(lx.word("`$A", &vars()).unwrap(), "$A");
        assert_eq!(lx.word("C:\\dir\\$A", &vars()).unwrap(), "C:\\dir\\apple");
    }

    #[test]
    fn words_split_outside_quotes_only() {
        let lx = Lexer::default();
        assert_eq!(
            lx.words("80 \"443 8443\" $A", &vars()).unwrap(),
            vec!["80", "443 8443", "apple"]
        );
        assert_eq!(lx.words("  ", &vars()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let lx = Lexer::default();
        assert_eq!(
            lx.expand_only("echo \"$A\" '$A' \\$A\n", &vars()).unwrap(),
            "echo \"apple\" 'apple' $A\n"
        );
    }

    #[test]
    fn errors() {
        let lx = Lexer::default();
        assert!(matches!(
            lx.word("'open", &vars()),
            Err(ExpandError::SingleQuote(_))
        ));
        assert!(matches!(
            lx.word("\"open", &vars()),
            Err(ExpandError::DoubleQuote(_))
        ));
        assert!(matches!(
            lx.word("${A", &vars()),
            Err(ExpandError::Brace(_))
        ));
        assert!(matches!(
            lx.word("${}", &vars()),
            Err(ExpandError::BadSubstitution(_))
        ));
        assert!(matches!(
            lx.word("${A:x}", &vars()),
            Err(ExpandError::BadSubstitution(_))
        ));
    }
}
