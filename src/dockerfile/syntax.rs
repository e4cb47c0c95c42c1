//! The syntax layer: the parse-dockerfile crate's tree plus what it leaves to its users — line
//! numbers for every instruction, the instruction's source text, line continuations joined the
//! way docker joins them, `ENTRYPOINT []` (which the crate refuses) — and errors as
//! `Dockerfile:LINE: message`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What made a line fail, kept whole (a registry's refusal to hand out a base image, a
/// missing entitlement), so that the error chain reaches it.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// An error that points at a line of the Dockerfile.
#[derive(Debug, Clone)]
pub struct DockerfileError {
    /// The name the user knows the file by (`Dockerfile`, `build/Containerfile`).
    pub file: String,
    /// 1-based; 0 when the error concerns the whole file.
    pub line: usize,
    pub message: String,
    /// The failure behind it, shown on its own `caused by:` line (never in `message`).
    pub cause: Option<Cause>,
}

impl DockerfileError {
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for DockerfileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Offsets to line numbers, and source text by span.
#[derive(Debug, Clone)]
pub struct SourceMap {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub fn new(name: &str, text: &str) -> SourceMap {
        // parse-dockerfile skips a byte order mark and counts its spans from after it: so do we.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap {
            name: name.to_string(),
            text: text.to_string(),
            line_starts,
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    pub fn error(&self, line: usize, message: impl Into<String>) -> DockerfileError {
        DockerfileError {
            file: self.name.clone(),
            line,
            message: message.into(),
            cause: None,
        }
    }

    /// The source of the instruction starting at `start` and ending before `next` (the next
    /// instruction's start, or the end of the text): trailing blank and comment lines left out.
    pub fn instruction_text(&self, start: usize, next: usize) -> &str {
        let mut s = &self.text[start..next.min(self.text.len())];
        loop {
            let trimmed = s.trim_end();
            match trimmed.rfind('\n') {
                Some(i) if trimmed[i + 1..].trim_start().starts_with('#') => s = &trimmed[..i],
                _ => return trimmed,
            }
        }
    }
}

/// `ENTRYPOINT []` clears the entrypoint (BuildKit), but the parser refuses an ENTRYPOINT
/// without arguments. Each such instruction the parser stops at is given to it as
/// `CMD       []` — as long, so every offset and line stays — and its offset is returned, for
/// the typed layer to make it an ENTRYPOINT again. A Dockerfile without one is not copied.
pub fn parseable(map: &SourceMap) -> (Cow<'_, str>, Vec<usize>) {
    static EMPTY_ENTRYPOINT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?mi)^[ \t]*(?:ONBUILD[ \t]+)?(ENTRYPOINT)[ \t]*\[[ \t]*\][ \t]*\r?$")
            .expect("entrypoint regex")
    });
    let candidates: Vec<(usize, usize)> = EMPTY_ENTRYPOINT
        .captures_iter(&map.text)
        .filter_map(|c| c.get(1))
        .map(|m| (map.line_of(m.start()), m.start()))
        .collect();
    if candidates.is_empty() {
        return (Cow::Borrowed(&map.text), Vec::new());
    }
    // Only the lines the parser itself stops at: the same text in a here-document is data.
    let mut text = map.text.clone();
    let mut rewritten = Vec::new();
    for _ in 0..=candidates.len() {
        let Err(e) = parse_dockerfile::parse(&text) else {
            break;
        };
        let line = e.line();
        match candidates
            .iter()
            .find(|(l, o)| *l == line && !rewritten.contains(o))
        {
            Some(&(_, offset)) => {
                text.replace_range(offset..offset + "ENTRYPOINT".len(), "CMD       ");
                rewritten.push(offset);
            }
            // Another error: the parse that follows reports it.
            None => break,
        }
    }
    (Cow::Owned(text), rewritten)
}

/// Parse `text` (the map's text, or what [`parseable`] made of it) with parse-dockerfile,
/// turning its errors into `Dockerfile:LINE` errors.
pub fn parse<'a>(
    map: &SourceMap,
    text: &'a str,
) -> Result<parse_dockerfile::Dockerfile<'a>, DockerfileError> {
    parse_dockerfile::parse(text).map_err(|e| {
        let message = e.to_string();
        // The crate appends its own position; ours is in front.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        map.error(e.line(), message)
    })
}

/// A shell-form command as docker runs it: each escape + newline removed, and the comment and
/// empty lines inside the continuation dropped.
pub fn join_continuations(raw: &str, escape: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut lines = raw.split('\n').peekable();
    let mut continued = false;
    while let Some(line) = lines.next() {
        if continued {
            let t = line.trim_start();
            if (t.is_empty() || t.starts_with('#')) && lines.peek().is_some() {
                continue;
            }
        }
        let body = line.trim_end_matches([' ', '\t', '\r']);
        match body.strip_suffix(escape) {
            Some(head) if lines.peek().is_some() => {
                out.push_str(head);
                continued = true;
            }
            _ => {
                out.push_str(line.trim_end_matches('\r'));
                if lines.peek().is_some() {
                    out.push('\n');
                }
                continued = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_offsets() {
        let m = SourceMap::new("Dockerfile", "FROM a\nRUN b\n\nCMD c");
        assert_eq!(m.line_of(0), 1);
        assert_eq!(m.line_of(5), 1);
        assert_eq!(m.line_of(7), 2);
        assert_eq!(m.line_of(13), 3);
        assert_eq!(m.line_of(14), 4);
    }

    #[test]
    fn errors_name_the_line() {
        let m = SourceMap::new("Dockerfile", "FROM a\nRUN x\nFOO bar\n");
        let e = parse(&m, &m.text).unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "Dockerfile:3: unknown instruction 'FOO'");
    }

    #[test]
    fn continuations_join_like_docker() {
        assert_eq!(
            join_continuations("echo a \\\n    b && \\\n  c", '\\'),
            "echo a     b &&   c"
        );
        assert_eq!(
            join_continuations("echo a \\\n# a comment\n\n  b", '\\'),
            "echo a   b"
        );
        assert_eq!(join_continuations("echo a `\n b", '`'), "echo a  b");
        // a backslash not at the end of a line stays
        assert_eq!(join_continuations("echo a\\b", '\\'), "echo a\\b");
    }

    /// Found by the `dockerfile` fuzz target (fuzz/regressions/dockerfile/): with a UTF-8 byte
    /// order mark, the parser's spans were 3 bytes off the text they were applied to: every
    /// instruction's text (history, progress) started 3 bytes early, and a `RUN <<EOT` right
    /// after a short line panicked slicing it.
    #[test]
    fn byte_order_mark_does_not_shift_instruction_texts() {
        let df = crate::dockerfile::instructions::parse(
            "Dockerfile",
            "\u{feff}FROM \0\nRUN <<EOT\nEOT\nENV A=1\n",
        )
        .unwrap();
        let texts: Vec<&str> = df.instructions.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["FROM \0", "RUN <<EOT\nEOT", "ENV A=1"]);
        let lines: Vec<usize> = df.instructions.iter().map(|l| l.line).collect();
        assert_eq!(lines, [1, 2, 4]);
    }

    #[test]
    fn instruction_text_drops_trailing_comments() {
        let text = "RUN a \\\n  b\n# comment\n\nCMD x";
        let m = SourceMap::new("Dockerfile", text);
        assert_eq!(
            m.instruction_text(0, text.find("CMD").unwrap()),
            "RUN a \\\n  b"
        );
    }
}
