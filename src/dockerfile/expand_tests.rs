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
    assert_eq!(w("$1"), "", "positional parameters are never set");
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
    assert_eq!(
        w("trailing\\"),
        "trailing",
        "an escape that escapes nothing goes"
    );
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
        Err(ExpandError::Modifier { .. })
    ));
    assert_eq!(
        lx.word("${A/x", &vars()).unwrap_err(),
        ExpandError::Slash("${A/x".into())
    );
    assert_eq!(
        lx.word("${A#\\x}", &vars()).unwrap_err().to_string(),
        "invalid pattern `\\x` in substitution: `\\` escapes only `*`, `?` and `\\`"
    );
    let e = lx.word("${EMPTY:?}", &vars()).unwrap_err();
    assert_eq!(e.to_string(), "EMPTY: is not allowed to be empty");
}

#[test]
fn pattern_removal_and_replacement() {
    let mut v = vars();
    v.set("P", "/usr/local/lib/x.tar.gz");
    let w = |s: &str| Lexer::default().word(s, &v).unwrap();
    assert_eq!(w("${P#*/}"), "usr/local/lib/x.tar.gz");
    assert_eq!(w("${P##*/}"), "x.tar.gz");
    assert_eq!(w("${P%.*}"), "/usr/local/lib/x.tar");
    assert_eq!(w("${P%%.*}"), "/usr/local/lib/x");
    assert_eq!(w("${P/l/L}"), "/usr/Local/lib/x.tar.gz");
    assert_eq!(w("${P//l/L}"), "/usr/LocaL/Lib/x.tar.gz");
    assert_eq!(w("${UNSET##*/}"), "");
    for special in [
        "$@", "${#}", "$*", "$?", "$$", "$!", "$0", "${-}", "$9", "${10}",
    ] {
        assert_eq!(w(special), "", "{special}");
    }
}

// --- BuildKit's own tables (frontend/dockerfile/shell: envVarTest, wordsTest, lex_test.go),
// ported as data ------------------------------------------------------------------------------

/// envVarTest (the lines for every platform and for Unix): input, and the word or an error,
/// with PWD=/home, SHELL=bash, KOREAN=한국어 and NULL= set.
const ENV_VAR_TEST: &[(&str, Option<&str>)] = &[
    ("hello", Some("hello")),
    ("he'll'o", Some("hello")),
    ("he'llo", None),
    ("he\\'llo", Some("he'llo")),
    ("he\\\\'llo", None),
    ("abc\\tdef", Some("abctdef")),
    ("\"abc\\tdef\"", Some("abc\\tdef")),
    ("\"abc\\\\tdef\"", Some("abc\\tdef")),
    ("'abc\\tdef'", Some("abc\\tdef")),
    ("hello\\", Some("hello")),
    ("hello\\\\", Some("hello\\")),
    ("\"hello", None),
    ("\"hello\\\"", None),
    ("\"hel'lo\"", Some("hel'lo")),
    ("'hello", None),
    ("'hello\\'", Some("hello\\")),
    ("'hello\\there'", Some("hello\\there")),
    ("'hello\\\\there'", Some("hello\\\\there")),
    ("\"''\"", Some("''")),
    ("$.", Some("$.")),
    ("he$1x", Some("hex")),
    ("he$.x", Some("he$.x")),
    ("he$pwd.", Some("he.")),
    ("he$PWD", Some("he/home")),
    ("he\\$PWD", Some("he$PWD")),
    ("he\\\\$PWD", Some("he\\/home")),
    ("\"he\\$PWD\"", Some("he$PWD")),
    ("\"he\\\\$PWD\"", Some("he\\/home")),
    ("\\${}", Some("${}")),
    ("\\${}aaa", Some("${}aaa")),
    ("he\\${}", Some("he${}")),
    ("he\\${}xx", Some("he${}xx")),
    ("${}", None),
    ("${}aaa", None),
    ("he${}", None),
    ("he${}xx", None),
    ("he${hi}", Some("he")),
    ("he${hi}xx", Some("hexx")),
    ("he${PWD}", Some("he/home")),
    ("he${.}", None),
    ("he${XXX:-000}xx", Some("he000xx")),
    ("he${PWD:-000}xx", Some("he/homexx")),
    ("he${XXX:-$PWD}xx", Some("he/homexx")),
    ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
    ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
    ("he${XXX:YYY}", None),
    ("he${XXX?}", None),
    ("he${XXX:?}", None),
    ("he${PWD?}", Some("he/home")),
    ("he${PWD:?}", Some("he/home")),
    ("he${NULL?}", Some("he")),
    ("he${NULL:?}", None),
    ("he${XXX:+${PWD}}xx", Some("hexx")),
    ("he${PWD:+${XXX}}xx", Some("hexx")),
    ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
    ("he${XXX:+000}xx", Some("hexx")),
    ("he${PWD:+000}xx", Some("he000xx")),
    ("'he${XX}'", Some("he${XX}")),
    ("\"he${PWD}\"", Some("he/home")),
    ("\"he'$PWD'\"", Some("he'/home'")),
    ("\"$PWD\"", Some("/home")),
    ("'$PWD'", Some("$PWD")),
    ("'\\$PWD'", Some("\\$PWD")),
    ("'\"hello\"'", Some("\"hello\"")),
    ("he\\$PWD", Some("he$PWD")),
    ("\"he\\$PWD\"", Some("he$PWD")),
    ("'he\\$PWD'", Some("he\\$PWD")),
    ("he${PWD", None),
    ("he${PWD:=000}xx", None),
    ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
    ("he${XXX:-\\$PWD:}xx", Some("he$PWD:xx")),
    ("he${XXX:-\\${PWD}z}xx", Some("he${PWDz}xx")),
    ("안녕하세요", Some("안녕하세요")),
    ("안'녕'하세요", Some("안녕하세요")),
    ("안'녕하세요", None),
    ("안녕\\'하세요", Some("안녕'하세요")),
    ("안\\\\'녕하세요", None),
    ("안녕\\t하세요", Some("안녕t하세요")),
    ("\"안녕\\t하세요\"", Some("안녕\\t하세요")),
    ("'안녕\\t하세요", None),
    ("안녕하세요\\", Some("안녕하세요")),
    ("안녕하세요\\\\", Some("안녕하세요\\")),
    ("\"안녕하세요", None),
    ("\"안녕하세요\\\"", None),
    ("\"안녕'하세요\"", Some("안녕'하세요")),
    ("'안녕하세요", None),
    ("'안녕하세요\\'", Some("안녕하세요\\")),
    ("안녕$1x", Some("안녕x")),
    ("안녕$.x", Some("안녕$.x")),
    ("안녕$pwd.", Some("안녕.")),
    ("안녕$PWD", Some("안녕/home")),
    ("안녕\\$PWD", Some("안녕$PWD")),
    ("안녕\\\\$PWD", Some("안녕\\/home")),
    ("안녕\\${}", Some("안녕${}")),
    ("안녕\\${}xx", Some("안녕${}xx")),
    ("안녕${}", None),
    ("안녕${}xx", None),
    ("안녕${hi}", Some("안녕")),
    ("안녕${hi}xx", Some("안녕xx")),
    ("안녕${PWD}", Some("안녕/home")),
    ("안녕${.}", None),
    ("안녕${XXX:-000}xx", Some("안녕000xx")),
    ("안녕${PWD:-000}xx", Some("안녕/homexx")),
    ("안녕${XXX:-$PWD}xx", Some("안녕/homexx")),
    ("안녕${XXX:-${PWD:-yyy}}xx", Some("안녕/homexx")),
    ("안녕${XXX:-${YYY:-yyy}}xx", Some("안녕yyyxx")),
    ("안녕${XXX:YYY}", None),
    ("안녕${XXX:+${PWD}}xx", Some("안녕xx")),
    ("안녕${PWD:+${XXX}}xx", Some("안녕xx")),
    ("안녕${PWD:+${SHELL}}xx", Some("안녕bashxx")),
    ("안녕${XXX:+000}xx", Some("안녕xx")),
    ("안녕${PWD:+000}xx", Some("안녕000xx")),
    ("'안녕${XX}'", Some("안녕${XX}")),
    ("\"안녕${PWD}\"", Some("안녕/home")),
    ("\"안녕'$PWD'\"", Some("안녕'/home'")),
    ("'\"안녕\"'", Some("\"안녕\"")),
    ("안녕\\$PWD", Some("안녕$PWD")),
    ("\"안녕\\$PWD\"", Some("안녕$PWD")),
    ("'안녕\\$PWD'", Some("안녕\\$PWD")),
    ("안녕${PWD", None),
    ("안녕${PWD:=000}xx", None),
    ("안녕${PWD:+${PWD}:}xx", Some("안녕/home:xx")),
    ("안녕${XXX:-\\$PWD:}xx", Some("안녕$PWD:xx")),
    ("안녕${XXX:-\\${PWD}z}xx", Some("안녕${PWDz}xx")),
    ("$KOREAN", Some("한국어")),
    ("안녕$KOREAN", Some("안녕한국어")),
    ("${{aaa}", None),
    ("${aaa}}", Some("}")),
    ("${aaa", None),
    ("${{aaa:-bbb}", None),
    ("${aaa:-bbb}}", Some("bbb}")),
    ("${aaa:-bbb", None),
    ("${aaa:-bbb}", Some("bbb")),
    ("${aaa:-${bbb:-ccc}}", Some("ccc")),
    ("${aaa:-bbb ${foo}", None),
    ("${aaa:-bbb {foo}", Some("bbb {foo")),
    ("${:}", None),
    ("${:-bbb}", None),
    ("${:+bbb}", None),
    ("$1", Some("")),
    ("${1}", Some("")),
    ("${1:+bbb}", Some("")),
    ("${1:-bbb}", Some("bbb")),
    ("$2", Some("")),
    ("${2}", Some("")),
    ("${2:+bbb}", Some("")),
    ("${2:-bbb}", Some("bbb")),
    ("$3", Some("")),
    ("${3}", Some("")),
    ("${3:+bbb}", Some("")),
    ("${3:-bbb}", Some("bbb")),
    ("$4", Some("")),
    ("${4}", Some("")),
    ("${4:+bbb}", Some("")),
    ("${4:-bbb}", Some("bbb")),
    ("$5", Some("")),
    ("${5}", Some("")),
    ("${5:+bbb}", Some("")),
    ("${5:-bbb}", Some("bbb")),
    ("$6", Some("")),
    ("${6}", Some("")),
    ("${6:+bbb}", Some("")),
    ("${6:-bbb}", Some("bbb")),
    ("$7", Some("")),
    ("${7}", Some("")),
    ("${7:+bbb}", Some("")),
    ("${7:-bbb}", Some("bbb")),
    ("$8", Some("")),
    ("${8}", Some("")),
    ("${8:+bbb}", Some("")),
    ("${8:-bbb}", Some("bbb")),
    ("$9", Some("")),
    ("${9}", Some("")),
    ("${9:+bbb}", Some("")),
    ("${9:-bbb}", Some("bbb")),
    ("$999", Some("")),
    ("${999}", Some("")),
    ("${999:+bbb}", Some("")),
    ("${999:-bbb}", Some("bbb")),
    ("$999aaa", Some("aaa")),
    ("${999}aaa", Some("aaa")),
    ("${999:+bbb}aaa", Some("aaa")),
    ("${999:-bbb}aaa", Some("bbbaaa")),
    ("$001", Some("")),
    ("${001}", Some("")),
    ("${001:+bbb}", Some("")),
    ("${001:-bbb}", Some("bbb")),
    ("$001aaa", Some("aaa")),
    ("${001}aaa", Some("aaa")),
    ("${001:+bbb}aaa", Some("aaa")),
    ("${001:-bbb}aaa", Some("bbbaaa")),
    ("$@", Some("")),
    ("${@}", Some("")),
    ("${@:+bbb}", Some("")),
    ("${@:-bbb}", Some("bbb")),
    ("$@@@", Some("@@")),
    ("$@aaa", Some("aaa")),
    ("${@}aaa", Some("aaa")),
    ("${@:+bbb}aaa", Some("aaa")),
    ("${@:-bbb}aaa", Some("bbbaaa")),
    ("$*", Some("")),
    ("${*}", Some("")),
    ("${*:+bbb}", Some("")),
    ("${*:-bbb}", Some("bbb")),
    ("$#", Some("")),
    ("${#}", Some("")),
    ("${#:+bbb}", Some("")),
    ("${#:-bbb}", Some("bbb")),
    ("$?", Some("")),
    ("${?}", Some("")),
    ("${?:+bbb}", Some("")),
    ("${?:-bbb}", Some("bbb")),
    ("$-", Some("")),
    ("${-}", Some("")),
    ("${-:+bbb}", Some("")),
    ("${-:-bbb}", Some("bbb")),
    ("$$", Some("")),
    ("${$}", Some("")),
    ("${$:+bbb}", Some("")),
    ("${$:-bbb}", Some("bbb")),
    ("$!", Some("")),
    ("${!}", Some("")),
    ("${!:+bbb}", Some("")),
    ("${!:-bbb}", Some("bbb")),
    ("$0", Some("")),
    ("${0}", Some("")),
    ("${0:+bbb}", Some("")),
    ("${0:-bbb}", Some("bbb")),
];

enum Words {
    /// `ENV k=v`: set for the cases after it.
    Env(&'static str),
    Case(&'static str, &'static [&'static str]),
    Error(&'static str),
}

/// wordsTest: ProcessWords, with the variables the ENV lines before each case set.
const WORDS_TEST: &[Words] = &[
    Words::Case("hello", &["hello"]),
    Words::Case("hello${hi}bye", &["hellobye"]),
    Words::Env("hi=hi"),
    Words::Case("hello${hi}bye", &["hellohibye"]),
    Words::Env("space=abc  def"),
    Words::Case("hello${space}bye", &["helloabc", "defbye"]),
    Words::Case("hello\"${space}\"bye", &["helloabc  defbye"]),
    Words::Case("hello \"${space}\"bye", &["hello", "abc  defbye"]),
    Words::Env("leading=  ab c"),
    Words::Case("hello${leading}def", &["hello", "ab", "cdef"]),
    Words::Case("hello\"${leading}\" def", &["hello  ab c", "def"]),
    Words::Case("hello\"${leading}\"", &["hello  ab c"]),
    Words::Case("hello${leading}", &["hello", "ab", "c"]),
    Words::Env("trailing=ab c   "),
    Words::Case("hello${trailing}", &["helloab", "c"]),
    Words::Case("hello${trailing}d", &["helloab", "c", "d"]),
    Words::Case("hello\"${trailing}\"d", &["helloab c   d"]),
    Words::Case("hel\"lo${trailing}\"", &["helloab c   "]),
    Words::Case("hello\" there  \"", &["hello there  "]),
    Words::Case("hello there", &["hello", "there"]),
    Words::Case("hello\\ there", &["hello there"]),
    Words::Error("hello\" there"),
    Words::Case("hello\\\" there", &["hello\"", "there"]),
    Words::Case("hello\"\\\\there\"", &["hello\\there"]),
    Words::Case("hello\"\\there\"", &["hello\\there"]),
    Words::Case("hello'\\\\there'", &["hello\\\\there"]),
    Words::Case("hello'\\there'", &["hello\\there"]),
    Words::Case("hello'$there'", &["hello$there"]),
];

/// TestProcessWithMatches and TestShellParserMandatoryEnvVars: input, variables, and the word
/// or an error.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const WITH_MATCHES: &[Case] = &[
    ("x", &[("DUMMY", "dummy")], Some("x")),
    ("x ${UNUSED}", &[("DUMMY", "dummy")], Some("x ")),
    ("x ${FOO}", &[("FOO", "y")], Some("x y")),
    (
        "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx  ccc"),
    ),
    (
        "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx bbb ccc"),
    ),
    ("${FOO:-}", &[("FOO", "xxx"), ("BAR", "")], Some("xxx")),
    ("${FOO:-}", &[], Some("")),
    (
        "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("aaa bbb "),
    ),
    (
        "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("aaa  "),
    ),
    ("${FOO?aaa}", &[("FOO", "xxx"), ("BAR", "")], Some("xxx")),
    ("${BAR?bbb}", &[("FOO", "xxx"), ("BAR", "")], Some("")),
    ("${BAZ?ccc}", &[("FOO", "xxx"), ("BAR", "")], None),
    ("${FOO:?aaa}", &[("FOO", "xxx"), ("BAR", "")], Some("xxx")),
    ("${BAR:?bbb}", &[("FOO", "xxx"), ("BAR", "")], None),
    ("${BAZ:?ccc}", &[("FOO", "xxx"), ("BAR", "")], None),
    ("${BAZ:?}", &[("FOO", "xxx"), ("BAR", "")], None),
    ("${FOO=aaa}", &[("FOO", "xxx"), ("BAR", "")], None),
    ("${FOO=:aaa}", &[("FOO", "xxx"), ("BAR", "")], None),
    ("${FOO=}", &[], None),
    (
        "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
        &[("FOO", "()[]{}^$.*?|\\x")],
        Some("x"),
    ),
    ("${FOO%%\\**}", &[("FOO", "xx**")], Some("xx")),
    ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
    ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
    ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
    ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
    ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y")),
    (
        "${ABC:-.}${FOO%x}${ABC:-.}",
        &[("FOO", "xxyy")],
        Some(".xxyy."),
    ),
    ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], Some("a")),
    ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
    (
        "${FOO%%$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
    ),
    ("${FOO:#}", &[], None),
    ("${FOO:##}", &[], None),
    ("${FOO:%}", &[], None),
    ("${FOO:%%}", &[], None),
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
        Some("/foo.*/*.txt - /foo..*.txt"),
    ),
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
        Some("/tmp/bar.txt - /bar.txt"),
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "/a/foo/b/c.txt"),
            ("NEEDLE", "/?/"),
            ("REPLACEMENT", "/"),
        ],
        Some("/foo/b/c.txt - /foo/c.txt"),
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "http://google.de"),
            ("NEEDLE", "http://"),
            ("REPLACEMENT", "https://"),
        ],
        Some("https://google.de"),
    ),
    (
        "${FOO//\\//\\/}",
        &[("FOO", "/tmp/foo.txt")],
        Some("\\/tmp\\/foo.txt"),
    ),
    (
        "${FOO/$BAR/ww}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("wwxxyy"),
    ),
    ("${FOO//ww}", &[("FOO", "xxyy")], None),
    ("${FOO//}", &[("FOO", "xxyy")], None),
    ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
    ("${FOO///}", &[], Some("")),
    // TestShellParserMandatoryEnvVars
    (
        "${VAR:?message here$ARG}",
        &[("VAR", "plain"), ("ARG", "x")],
        Some("plain"),
    ),
    (
        "${VAR:?message here$ARG}",
        &[("VAR", ""), ("ARG", "x")],
        None,
    ),
    ("${VAR:?message here$ARG}", &[("ARG", "x")], None),
    (
        "${VAR?message here$ARG}",
        &[("VAR", "plain"), ("ARG", "x")],
        Some("plain"),
    ),
    (
        "${VAR?message here$ARG}",
        &[("VAR", ""), ("ARG", "x")],
        Some(""),
    ),
    ("${VAR?message here$ARG}", &[("ARG", "x")], None),
    // TestProcessWithMatchesPlatform
    (
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
        &[
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
        ],
        Some("something-v1.2.3.linux-arm-v7.tar.gz"),
    ),
    (
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
        &[
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm64"),
            ("TARGETVARIANT", ""),
        ],
        Some("something-v1.2.3.linux-arm64.tar.gz"),
    ),
    (
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
        &[
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm64"),
        ],
        Some("something-v1.2.3.linux-arm64.tar.gz"),
    ),
];

fn vars_of(pairs: &[(&str, &str)]) -> Vars {
    let mut v = Vars::new();
    for (k, val) in pairs {
        v.set(k, val);
    }
    v
}

#[test]
fn buildkit_tables() {
    let lx = Lexer::default();
    let mut failures = Vec::new();
    let mut check =
        |input: &str, vars: &Vars, want: Option<&str>| match (lx.word(input, vars), want) {
            (Ok(got), Some(want)) if got == want => {}
            (Err(_), None) => {}
            (got, want) => failures.push(format!("{input:?}: got {got:?}, want {want:?}")),
        };
    let env = vars_of(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    for &(input, want) in ENV_VAR_TEST {
        check(input, &env, want);
    }
    for &(input, pairs, want) in WITH_MATCHES {
        check(input, &vars_of(pairs), want);
    }
    let mut env = Vars::new();
    for w in WORDS_TEST {
        match w {
            Words::Env(kv) => {
                let (k, v) = kv.split_once('=').unwrap();
                env.set(k, v);
            }
            Words::Case(input, want) => match lx.words(input, &env) {
                Ok(got) if got == *want => {}
                got => failures.push(format!("words {input:?}: got {got:?}, want {want:?}")),
            },
            Words::Error(input) => {
                if let Ok(got) = lx.words(input, &env) {
                    failures.push(format!("words {input:?}: got {got:?}, want an error"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// TestConvertShellPatternToRegex, TestReversePattern, TestReverseString.
#[test]
fn shell_patterns() {
    for (pattern, text) in [
        ("*", "anything"),
        ("?", "x"),
        ("\\*", "*"),
        ("(()[]{\\}^$.\\*\\?|\\\\", "(()[]{}^$.*?|\\"),
    ] {
        let re = shell_pattern(pattern, true, true).unwrap();
        assert_eq!(re.find(text).map(|m| m.as_str()), Some(text), "{pattern}");
    }
    for pattern in ["\\", "\\x", "\\\\\\"] {
        assert!(shell_pattern(pattern, true, true).is_err(), "{pattern}");
    }
    for (pattern, reversed) in [
        ("a\\*c", "c\\*a"),
        ("\\\\\\ab", "b\\a\\\\"),
        ("ab\\", "\\ba"),
        ("👽\\🚀🖖", "🖖\\🚀👽"),
        ("\\\\b", "b\\\\"),
    ] {
        assert_eq!(reverse_pattern(pattern), reversed);
    }
}
