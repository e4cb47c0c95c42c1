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
    let i = ig("*\n!s*/keep\n");
    assert!(i.may_reinclude_under("src"));
    assert!(!i.may_reinclude_under("lib"));
}

#[test]
fn cleaning_and_escapes() {
    let i = ig("./a/../b/\n\\!bang\n[ab]c\n");
    assert!(i.excludes("b"));
    assert!(i.excludes("!bang"));
    assert!(i.excludes("ac"));
    assert!(i.excludes("bc"));
    assert!(!i.excludes("cc"));
    // Go's Clean keeps a leading `..` of a relative path: such a pattern names nothing in the
    // context (it does not become `b`).
    assert!(!ig("a/../../b\n").excludes("b"));
    // `!` is no negation inside a class (Go's filepath.Match has only `^`).
    let i = ig("[!a]x\n");
    assert!(i.excludes("!x") && i.excludes("ax") && !i.excludes("bx"));
}

#[test]
fn globs() {
    let g = |p: &str, s: &str| Glob::new(p).unwrap().matches(s);
    assert!(g("*.txt", "a.txt"));
    assert!(!g("*.txt", "d/a.txt"));
    assert!(g("d/*.txt", "d/a.txt"));
    assert!(g("/d/?.txt", "d/a.txt"));
    // COPY keeps the regex reading of a leading `**` (no suffix rule).
    assert!(!g("**file", "afile"));
    assert!(g("**/file", "a/b/file"));
    assert!(Glob::new("a[").is_err());
    assert!(has_wildcards("a*"));
    assert!(!has_wildcards("a"));
}

/// ignorefile.ReadAll's rules: a BOM is dropped, `#` starts a comment only as the first
/// character, whitespace around a pattern (and after its `!`) is trimmed, a leading `/` goes.
#[test]
fn reading_the_file() {
    let i = ig("\u{feff}a\n  #b\n/c/d\n!  /e\n");
    assert!(i.excludes("a"), "the BOM is not part of the first pattern");
    assert!(i.excludes("#b"), "an indented `#` is a pattern");
    assert!(i.excludes("c/d"));
    assert_eq!(i.patterns.len(), 4);
    assert!(i.patterns[3].exclusion);
    assert_eq!(i.patterns[3].text, "e");
    // patternmatcher's ignorefile test: the same file, and its lone `!` lines are errors
    let content =
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
    let e = Ignore::parse(content).unwrap_err();
    assert_eq!(e.line, Some(8));
    assert_eq!(e.pattern, "!");
    assert_eq!(e.reason, PatternError::LoneExclamation);
    let i = ig(&content.replace("\n!\n! ", "\n"));
    let texts: Vec<(&str, bool)> = i
        .patterns
        .iter()
        .map(|p| (p.text.as_str(), p.exclusion))
        .collect();
    assert_eq!(
        texts,
        [
            ("test1", false),
            ("test2", false),
            ("a/file/here", false),
            ("lastfile", false),
            ("inverted/abs/path", true)
        ]
    );
}

#[test]
fn invalid_patterns_name_the_pattern_and_line() {
    for (pattern, reason) in [
        ("[", PatternError::UnclosedClass),
        ("[^", PatternError::UnclosedClass),
        ("a[", PatternError::UnclosedClass),
        ("[a-b-c]", PatternError::ClassSyntax),
        ("!", PatternError::LoneExclamation),
        ("a\\", PatternError::TrailingEscape),
        ("[z-a]", PatternError::ReversedRange { lo: 'z', hi: 'a' }),
    ] {
        let e = Ignore::parse(&format!("ok\n# c\n{pattern}\n")).unwrap_err();
        assert_eq!(
            e,
            IgnoreError {
                line: Some(3),
                pattern: pattern.to_string(),
                reason
            }
        );
        assert!(
            e.to_string()
                .starts_with(&format!("line 3: invalid pattern `{pattern}`: ")),
            "{e}"
        );
    }
    let e = Ignore::from_patterns(&["ok", "x[y"]).unwrap_err();
    assert_eq!(e.to_string(), "invalid pattern `x[y`: a `[` is not closed");
}

// --- moby/patternmatcher's own tables (patternmatcher_test.go), ported as data -------------

/// TestMatches: one pattern, one path, whether it is excluded (MatchesOrParentMatches).
/// Left out: `("**", "/")` and `("**/", "/")` — the context root itself, which is never
/// excluded here (patternmatcher's `Matches` says the same of `.`).
const MATCHES: &[(&str, &str, bool)] = &[
    ("**", "file", true),
    ("**", "file/", true),
    ("**/", "file", true),
    ("**/", "file/", true),
    ("**", "dir/file", true),
    ("**/", "dir/file", true),
    ("**", "dir/file/", true),
    ("**/", "dir/file/", true),
    ("**/**", "dir/file", true),
    ("**/**", "dir/file/", true),
    ("dir/**", "dir/file", true),
    ("dir/**", "dir/file/", true),
    ("dir/**", "dir/dir2/file", true),
    ("dir/**", "dir/dir2/file/", true),
    ("**/dir", "dir", true),
    ("**/dir", "dir/file", true),
    ("**/dir2/*", "dir/dir2/file", true),
    ("**/dir2/*", "dir/dir2/file/", true),
    ("**/dir2/**", "dir/dir2/dir3/file", true),
    ("**/dir2/**", "dir/dir2/dir3/file/", true),
    ("**file", "file", true),
    ("**file", "dir/file", true),
    ("**/file", "dir/file", true),
    ("**file", "dir/dir/file", true),
    ("**/file", "dir/dir/file", true),
    ("**/file*", "dir/dir/file", true),
    ("**/file*", "dir/dir/file.txt", true),
    ("**/file*txt", "dir/dir/file.txt", true),
    ("**/file*.txt", "dir/dir/file.txt", true),
    ("**/file*.txt*", "dir/dir/file.txt", true),
    ("**/**/*.txt", "dir/dir/file.txt", true),
    ("**/**/*.txt2", "dir/dir/file.txt", false),
    ("**/*.txt", "file.txt", true),
    ("**/**/*.txt", "file.txt", true),
    ("a**/*.txt", "a/file.txt", true),
    ("a**/*.txt", "a/dir/file.txt", true),
    ("a**/*.txt", "a/dir/dir/file.txt", true),
    ("a/*.txt", "a/dir/file.txt", false),
    ("a/*.txt", "a/file.txt", true),
    ("a/*.txt**", "a/file.txt", true),
    ("a[b-d]e", "ae", false),
    ("a[b-d]e", "ace", true),
    ("a[b-d]e", "aae", false),
    ("a[^b-d]e", "aze", true),
    (".*", ".foo", true),
    (".*", "foo", false),
    ("abc.def", "abcdef", false),
    ("abc.def", "abc.def", true),
    ("abc.def", "abcZdef", false),
    ("abc?def", "abcZdef", true),
    ("abc?def", "abcdef", false),
    ("a\\\\", "a\\", true),
    ("**/foo/bar", "foo/bar", true),
    ("**/foo/bar", "dir/foo/bar", true),
    ("**/foo/bar", "dir/dir2/foo/bar", true),
    ("abc/**", "abc", false),
    ("abc/**", "abc/def", true),
    ("abc/**", "abc/def/ghi", true),
    ("**/.foo", ".foo", true),
    ("**/.foo", "bar.foo", false),
    ("a(b)c/def", "a(b)c/def", true),
    ("a(b)c/def", "a(b)c/xyz", false),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        true,
    ),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        true,
    ),
    ("a\\*b", "a*b", true),
];

/// TestMatches' multi-pattern cases.
const MULTI: &[(&[&str], &str, bool)] = &[
    (&["**", "!util/docker/web"], "util/docker/web/foo", false),
    (
        &["**", "!util/docker/web", "util/docker/web/foo"],
        "util/docker/web/foo",
        true,
    ),
    (
        &[
            "**",
            "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        ],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        false,
    ),
    (
        &["**", "!dist/*.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        false,
    ),
    // TestWildcardMatches, TestPatternMatches, TestExclusionPatternMatches*,
    // TestPatternMatchesFolder*
    (&["*"], "fileutils.go", true),
    (&["*.go"], "fileutils.go", true),
    (&["!fileutils.go", "*.go"], "fileutils.go", true),
    (&["docs", "!docs/README.md"], "docs/README.md", false),
    (&["docs/", "!docs/README.md"], "docs/README.md", false),
    (&["docs/*", "!docs/README.md"], "docs/README.md", false),
    (&["*.go", "!fileutils.go"], "fileutils.go", false),
    (&["*.go"], ".", false),
    (&[], "/any/path/there", false),
];

/// The matchTests patternmatcher takes from Go's filepath.Match tests: pattern, path, match,
/// and whether the pattern is malformed.
const GO_MATCH: &[(&str, &str, bool, bool)] = &[
    ("abc", "abc", true, false),
    ("*", "abc", true, false),
    ("*c", "abc", true, false),
    ("a*", "a", true, false),
    ("a*", "abc", true, false),
    ("a*", "ab/c", true, false),
    ("a*/b", "abc/b", true, false),
    ("a*/b", "a/c/b", false, false),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", true, false),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false),
    ("a*b?c*x", "abxbbxdbxebxczzx", true, false),
    ("a*b?c*x", "abxbbxdbxebxczzy", false, false),
    ("ab[c]", "abc", true, false),
    ("ab[b-d]", "abc", true, false),
    ("ab[e-g]", "abc", false, false),
    ("ab[^c]", "abc", false, false),
    ("ab[^b-d]", "abc", false, false),
    ("ab[^e-g]", "abc", true, false),
    ("a\\*b", "a*b", true, false),
    ("a\\*b", "ab", false, false),
    ("a?b", "a☺b", true, false),
    ("a[^a]b", "a☺b", true, false),
    ("a???b", "a☺b", false, false),
    ("a[^a][^a][^a]b", "a☺b", false, false),
    ("[a-ζ]*", "α", true, false),
    ("*[a-ζ]", "A", false, false),
    ("a?b", "a/b", false, false),
    ("a*b", "a/b", false, false),
    ("[\\]a]", "]", true, false),
    ("[\\-]", "-", true, false),
    ("[x\\-]", "x", true, false),
    ("[x\\-]", "-", true, false),
    ("[x\\-]", "z", false, false),
    ("[\\-x]", "x", true, false),
    ("[\\-x]", "-", true, false),
    ("[\\-x]", "a", false, false),
    ("[]a]", "]", false, true),
    ("[-]", "-", false, true),
    ("[x-]", "x", false, true),
    ("[x-]", "-", false, true),
    ("[x-]", "z", false, true),
    ("[-x]", "x", false, true),
    ("[-x]", "-", false, true),
    ("[-x]", "a", false, true),
    ("\\", "a", false, true),
    ("[a-b-c]", "a", false, true),
    ("[", "a", false, true),
    ("[^", "a", false, true),
    ("[^bc", "a", false, true),
    ("a[", "a", false, true),
    ("a[", "ab", false, true),
    ("*x", "xxx", true, false),
    // TestMatchesWithMalformedPatterns, TestSingleExclamationError
    ("[", "/any/path/there", false, true),
    ("!", "fileutils.go", false, true),
];

/// TestCompile: which of patternmatcher's match kinds each pattern compiles to.
const KINDS: &[(&str, &str)] = &[
    ("*", "regex"),
    ("file*", "regex"),
    ("*file", "regex"),
    ("a*/b", "regex"),
    ("**", "suffix"),
    ("**/**", "regex"),
    ("dir/**", "prefix"),
    ("**/dir", "suffix"),
    ("**/dir2/*", "regex"),
    ("**/dir2/**", "regex"),
    ("**file", "suffix"),
    ("**/file*txt", "regex"),
    ("**/**/*.txt", "regex"),
    ("a[b-d]e", "regex"),
    (".*", "regex"),
    ("abc.def", "exact"),
    ("abc?def", "regex"),
    ("**/foo/bar", "suffix"),
    ("a(b)c/def", "exact"),
    ("a.|)$(}+{bc", "exact"),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "exact",
    ),
];

#[test]
fn patternmatcher_tables() {
    let mut failures = Vec::new();
    for &(pattern, path, want) in MATCHES {
        let got = ig(pattern).excludes(path);
        if got != want {
            failures.push(format!("{pattern:?} on {path:?}: got {got}"));
        }
    }
    for &(patterns, path, want) in MULTI {
        let got = Ignore::from_patterns(patterns).unwrap().excludes(path);
        if got != want {
            failures.push(format!("{patterns:?} on {path:?}: got {got}"));
        }
    }
    for &(pattern, path, want, malformed) in GO_MATCH {
        match Ignore::parse(pattern) {
            Err(_) if malformed => {}
            Err(e) => failures.push(format!("{pattern:?}: unexpected error {e}")),
            Ok(_) if malformed => failures.push(format!("{pattern:?}: accepted")),
            Ok(i) => {
                if i.excludes(path) != want {
                    failures.push(format!("{pattern:?} on {path:?}: got {}", !want));
                }
            }
        }
    }
    for &(pattern, want) in KINDS {
        let got = match compile(&go_clean(pattern), true).unwrap() {
            Matcher::Exact(_) => "exact",
            Matcher::Prefix(_) => "prefix",
            Matcher::Suffix(_) => "suffix",
            Matcher::Regex(_) => "regex",
        };
        if got != want {
            failures.push(format!("{pattern:?} compiles to {got}, not {want}"));
        }
    }
    // TestCleanPatterns*: empty patterns dropped, exceptions found after trimming
    assert_eq!(
        Ignore::from_patterns(&["docs", "config", ""])
            .unwrap()
            .patterns
            .len(),
        2
    );
    for list in [
        ["docs", "!docs/README.md"],
        ["docs", "  !docs/README.md"],
        ["docs", "!docs/README.md  "],
    ] {
        assert!(Ignore::from_patterns(&list).unwrap().patterns[1].exclusion);
    }
    // The regression test for moby/moby#52203: a class whose range runs backwards fails
    // (here when the file is read, not at the first match).
    assert!(Ignore::parse("[Local-Only]/").is_err());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Found by the `dockerignore` fuzz target's property (fuzz/regressions/dockerignore/): a `!`
/// pattern whose character class matches `/` re-includes `a/b`, but the context walk was told
/// nothing under `a` could come back, and skipped it.
#[test]
fn class_matching_a_slash_may_reinclude() {
    for text in ["a\n!a[/]b\n", "a\n!a[^x]b\n"] {
        let i = ig(text);
        assert!(i.excludes("a") && !i.excludes("a/b"), "{text:?}");
        assert!(i.may_reinclude_under("a"), "{text:?}");
    }
}
