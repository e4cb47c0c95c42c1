//! containerd/platforms' own test tables (platforms_test.go, compare_test.go, defaults_test.go,
//! platform_windows_compat_test.go, platforms_windows_test.go, defaults_windows_test.go, as of
//! March 2026), ported as facts about [`Platform::parse`], its `Display` (containerd's
//! `FormatAll`), [`Platform::matcher`] (`Only`) and [`Platform::strict_matcher`] (`OnlyStrict`,
//! `NewMatcher`).
//!
//! One difference is by design: [`Platform::parse`] is containerd's `Normalize(Parse(s))`, and
//! manifold writes ARM's default revisions out (`linux/arm64/v8`, `linux/arm/v7`, as Docker Hub's
//! images declare them) where containerd's `Format` leaves them to the reader (`linux/arm64`,
//! `linux/arm`). Both spellings parse to the same platform, which the tables check. `OnlyOS`
//! (every architecture of one OS) has no counterpart in manifold, so its two tables are not here.
//!
//! Each table collects every failing case before failing, so one run shows them all.

use super::*;

#[track_caller]
fn no_failures(table: &str, cases: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{table}: {} of {cases} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A platform as a Go test writes a `specs.Platform` literal (not normalised).
fn spec(os: &str, arch: &str, variant: &str, version: &str, features: &[&str]) -> Platform {
    Platform {
        architecture: arch.to_string(),
        os: os.to_string(),
        os_version: Some(version.to_string()).filter(|v| !v.is_empty()),
        os_features: Some(features.iter().map(|f| f.to_string()).collect())
            .filter(|f: &Vec<String>| !f.is_empty()),
        variant: Some(variant.to_string()).filter(|v| !v.is_empty()),
    }
}

fn parse(s: &str) -> Platform {
    Platform::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// platforms_test.go `TestParseSelector`: its 26 cases (3 more are skipped upstream: wildcards,
/// which both refuse). Per case: the parsed platform, the platforms its `NewMatcher` matches,
/// and the formatted text (upstream's, and manifold's where it writes a default ARM revision).
#[test]
fn parse_selector() {
    let host = Platform::host_target();
    let (arch, variant) = (
        host.architecture.as_str(),
        host.variant.as_deref().unwrap_or(""),
    );
    let host_tail = host.to_string().split_once('/').unwrap().1.to_string();
    let on = |os: &str| format!("{os}/{host_tail}");
    struct Case {
        input: &'static str,
        expected: Platform,
        matches: Vec<Platform>,
        formatted: String,
        /// manifold's `Display`, where it is not `formatted`.
        ours: Option<&'static str>,
    }
    let case = |input, expected, matches, formatted: &str, ours| Case {
        input,
        expected,
        matches,
        formatted: formatted.to_string(),
        ours,
    };
    let cases = vec![
        case(
            "linux/arm64",
            spec("linux", "arm64", "", "", &[]),
            vec![
                spec("linux", "aarch64", "", "", &[]),
                spec("linux", "aarch64", "v8", "", &[]),
                spec("linux", "arm64", "v8", "", &[]),
            ],
            "linux/arm64",
            Some("linux/arm64/v8"),
        ),
        case(
            "linux/arm64/v8",
            spec("linux", "arm64", "v8", "", &[]),
            vec![
                spec("linux", "aarch64", "", "", &[]),
                spec("linux", "aarch64", "v8", "", &[]),
                spec("linux", "arm64", "", "", &[]),
            ],
            "linux/arm64/v8",
            None,
        ),
        case(
            "linux/arm",
            spec("linux", "arm", "", "", &[]),
            vec![
                spec("linux", "arm", "v7", "", &[]),
                spec("linux", "armhf", "", "", &[]),
                spec("linux", "arm", "7", "", &[]),
            ],
            "linux/arm",
            Some("linux/arm/v7"),
        ),
        case(
            "linux/arm/v6",
            spec("linux", "arm", "v6", "", &[]),
            vec![spec("linux", "armel", "", "", &[])],
            "linux/arm/v6",
            None,
        ),
        case(
            "linux/arm/v7",
            spec("linux", "arm", "v7", "", &[]),
            vec![
                spec("linux", "arm", "", "", &[]),
                spec("linux", "armhf", "", "", &[]),
            ],
            "linux/arm/v7",
            None,
        ),
        case(
            "arm",
            spec("linux", "arm", "", "", &[]),
            vec![],
            "linux/arm",
            Some("linux/arm/v7"),
        ),
        case(
            "armel",
            spec("linux", "arm", "v6", "", &[]),
            vec![],
            "linux/arm/v6",
            None,
        ),
        case(
            "armhf",
            spec("linux", "arm", "", "", &[]),
            vec![],
            "linux/arm",
            Some("linux/arm/v7"),
        ),
        case(
            "Aarch64",
            spec("linux", "arm64", "", "", &[]),
            vec![],
            "linux/arm64",
            Some("linux/arm64/v8"),
        ),
        case(
            "x86_64",
            spec("linux", "amd64", "", "", &[]),
            vec![],
            "linux/amd64",
            None,
        ),
        case(
            "Linux/x86_64",
            spec("linux", "amd64", "", "", &[]),
            vec![],
            "linux/amd64",
            None,
        ),
        case(
            "i386",
            spec("linux", "386", "", "", &[]),
            vec![],
            "linux/386",
            None,
        ),
        case(
            "linux",
            spec("linux", arch, variant, "", &[]),
            vec![],
            &on("linux"),
            None,
        ),
        case(
            "s390x",
            spec("linux", "s390x", "", "", &[]),
            vec![],
            "linux/s390x",
            None,
        ),
        case(
            "linux/s390x",
            spec("linux", "s390x", "", "", &[]),
            vec![],
            "linux/s390x",
            None,
        ),
        case(
            "macOS",
            spec("darwin", arch, variant, "", &[]),
            vec![],
            &on("darwin"),
            None,
        ),
        case(
            "windows",
            spec("windows", arch, variant, "", &[]),
            vec![],
            &on("windows"),
            None,
        ),
        case(
            "windows()",
            spec("windows", arch, variant, "", &[]),
            vec![],
            &on("windows"),
            None,
        ),
        case(
            "windows(10.0.17763)",
            spec("windows", arch, variant, "10.0.17763", &[]),
            vec![],
            &on("windows(10.0.17763)"),
            None,
        ),
        case(
            "windows(10.0.17763+win32k)",
            spec("windows", arch, variant, "10.0.17763", &["win32k"]),
            vec![],
            &on("windows(10.0.17763+win32k)"),
            None,
        ),
        case(
            "linux(+gpu)",
            spec("linux", arch, variant, "", &["gpu"]),
            vec![],
            &on("linux(+gpu)"),
            None,
        ),
        case(
            "linux(+gpu+simd)",
            spec("linux", arch, variant, "", &["gpu", "simd"]),
            vec![],
            &on("linux(+gpu+simd)"),
            None,
        ),
        case(
            "linux(+unsorted+erofs)",
            spec("linux", arch, variant, "", &["unsorted", "erofs"]),
            vec![],
            &on("linux(+erofs+unsorted)"),
            None,
        ),
        case(
            "windows(10.0.17763%2Bbuild.42)",
            spec("windows", arch, variant, "10.0.17763+build.42", &[]),
            vec![],
            &on("windows(10.0.17763%2Bbuild.42)"),
            None,
        ),
        case(
            "windows(10.0.17763%2Bbuild.42+win32k)",
            spec("windows", arch, variant, "10.0.17763+build.42", &["win32k"]),
            vec![],
            &on("windows(10.0.17763%2Bbuild.42+win32k)"),
            None,
        ),
        case(
            "windows(50%25done)",
            spec("windows", arch, variant, "50%done", &[]),
            vec![],
            &on("windows(50%25done)"),
            None,
        ),
    ];
    let n = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        let p = match Platform::parse(c.input) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", c.input));
                continue;
            }
        };
        if p != c.expected.normalized() {
            failures.push(format!("{}: parsed as {p:?}", c.input));
        }
        let m = p.strict_matcher();
        for candidate in std::iter::once(&c.expected).chain(&c.matches) {
            if !m.matches(candidate) {
                failures.push(format!("{}: does not match {candidate:?}", c.input));
            }
        }
        let shown = p.to_string();
        if shown != c.ours.map_or(c.formatted.clone(), str::to_string) {
            failures.push(format!("{}: formatted as {shown}", c.input));
        }
        for text in [&c.formatted, &shown] {
            if Platform::parse(text).as_ref() != Ok(&p) {
                failures.push(format!("{}: `{text}` parses otherwise", c.input));
            }
        }
    }
    for wildcard in ["*", "linux/*", "*/arm64"] {
        if let Ok(p) = Platform::parse(wildcard) {
            failures.push(format!("{wildcard}: accepted as {p}"));
        }
    }
    no_failures("TestParseSelector", n + 3, failures);
}

/// platforms_test.go `TestFormatAllEncoding` (9 cases) and `TestFormatAllSkipsEmptyOSFeatures`.
#[test]
fn format_all_encoding() {
    let cases = [
        (
            spec("windows", "amd64", "", "10.0.17763+build.42", &[]),
            "windows(10.0.17763%2Bbuild.42)/amd64",
        ),
        (
            spec("windows", "amd64", "", "10.0.17763+build.42", &["win32k"]),
            "windows(10.0.17763%2Bbuild.42+win32k)/amd64",
        ),
        (
            spec("windows", "amd64", "", "50%done", &[]),
            "windows(50%25done)/amd64",
        ),
        (
            spec("windows", "amd64", "", "1.0(beta)", &[]),
            "windows(1.0%28beta%29)/amd64",
        ),
        (
            spec("windows", "amd64", "", "a/b", &[]),
            "windows(a%2Fb)/amd64",
        ),
        (
            spec("windows", "amd64", "", "10.0.17763", &[]),
            "windows(10.0.17763)/amd64",
        ),
        (
            spec("linux", "amd64", "", "", &["feat+v2"]),
            "linux(+feat%2Bv2)/amd64",
        ),
        (
            spec("linux", "amd64", "", "", &["100%gpu"]),
            "linux(+100%25gpu)/amd64",
        ),
        (
            spec("windows", "amd64", "", "10.0+build", &["feat+1"]),
            "windows(10.0%2Bbuild+feat%2B1)/amd64",
        ),
    ];
    let mut failures = Vec::new();
    for (platform, expected) in &cases {
        let formatted = platform.to_string();
        if formatted != *expected {
            failures.push(format!("{platform:?}: formatted as {formatted}"));
            continue;
        }
        match Platform::parse(&formatted) {
            Ok(p)
                if p.os_version == platform.os_version && p.os_features == platform.os_features => {
            }
            other => failures.push(format!("{formatted}: parsed back as {other:?}")),
        }
    }
    let empty_features = spec("linux", "amd64", "", "", &["", "gpu", "", "simd"]);
    if empty_features.to_string() != "linux(+gpu+simd)/amd64" {
        failures.push(format!("{empty_features:?}: formatted as {empty_features}"));
    }
    no_failures("TestFormatAllEncoding", cases.len() + 1, failures);
}

/// platforms_test.go `TestParseSelectorInvalid`: all 6 cases.
#[test]
fn parse_selector_invalid() {
    let cases = [
        "",
        "/linux/arm",
        "linux/arm/",
        "linux /arm",
        "linux/&arm",
        "linux/arm/foo/bar",
    ];
    let failures = cases
        .iter()
        .filter_map(|input| {
            Some(format!(
                "{input}: accepted as {}",
                Platform::parse(input).ok()?
            ))
        })
        .collect();
    no_failures("TestParseSelectorInvalid", cases.len(), failures);
}

/// Runs compare_test.go's `TestOnly`/`TestOnlyStrict` tables: for each wanted platform, the
/// candidates that match and those that do not.
fn match_table(
    table: &str,
    matcher: impl Fn(&Platform) -> Matcher,
    cases: &[(&str, &[&str], &[&str])],
) {
    let mut n = 0;
    let mut failures = Vec::new();
    for (wanted, yes, no) in cases {
        let m = matcher(&parse(wanted));
        for (candidates, want) in [(yes, true), (no, false)] {
            for candidate in candidates.iter() {
                n += 1;
                if m.matches(&parse(candidate)) != want {
                    let verb = if want {
                        "should match"
                    } else {
                        "should not match"
                    };
                    failures.push(format!("{wanted} {verb} {candidate}"));
                }
            }
        }
    }
    no_failures(table, n, failures);
}

/// compare_test.go `TestOnly`: all 13 platforms, 154 candidates.
#[test]
fn only() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "linux/amd64",
            &["linux/amd64", "linux/386"],
            &[
                "linux/amd64/v2",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/amd64/v2",
            &[
                "linux/amd64",
                "linux/amd64/v1",
                "linux/amd64/v2",
                "linux/386",
            ],
            &[
                "linux/amd64/v3",
                "linux/amd64/v4",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/386",
            &["linux/386"],
            &[
                "linux/amd64",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "windows/amd64",
            &["windows/amd64", "windows(10.0.17763)/amd64"],
            &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
        ),
        (
            "linux/arm/v8",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v7",
            &["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7"],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v6",
            &["linux/arm/v5", "linux/arm/v6"],
            &[
                "linux/amd64",
                "linux/arm",
                "linux/arm/v4",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v5",
            &["linux/arm/v5"],
            &[
                "linux/amd64",
                "linux/arm",
                "linux/arm/v4",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v4",
            &["linux/arm/v4"],
            &[
                "linux/amd64",
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm64/v9.6",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
                "linux/arm64/v8.2",
                "linux/arm64/v8.3",
                "linux/arm64/v8.4",
                "linux/arm64/v8.5",
                "linux/arm64/v8.6",
                "linux/arm64/v8.7",
                "linux/arm64/v8.8",
                "linux/arm64/v8.9",
                "linux/arm64/v9",
                "linux/arm64/v9.0",
                "linux/arm64/v9.1",
                "linux/arm64/v9.2",
                "linux/arm64/v9.3",
                "linux/arm64/v9.4",
                "linux/arm64/v9.5",
                "linux/arm64/v9.6",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "windows/amd64",
                "windows/arm",
                "linux/arm64/v8.10",
            ],
        ),
        (
            "linux/arm64/v9",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
                "linux/arm64/v8.2",
                "linux/arm64/v8.3",
                "linux/arm64/v8.4",
                "linux/arm64/v8.5",
                "linux/arm64/v9",
                "linux/arm64/v9.0",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "windows/amd64",
                "windows/arm",
                "linux/arm64/v8.6",
            ],
        ),
        (
            "linux/arm64/v8.1",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v9",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm64",
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "linux/arm64/v8",
            ],
            &[
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v9",
                "windows/amd64",
                "windows/arm",
            ],
        ),
    ];
    match_table("TestOnly", Platform::matcher, cases);
}

/// compare_test.go `TestOnlyStrict`: all 13 platforms, 129 candidates.
#[test]
fn only_strict() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "linux/amd64",
            &["linux/amd64"],
            &[
                "linux/386",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/386",
            &["linux/386"],
            &[
                "linux/amd64",
                "linux/arm/v7",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "windows/amd64",
            &["windows/amd64", "windows(10.0.17763)/amd64"],
            &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
        ),
        (
            "windows(10.0.17763)/amd64",
            &["windows/amd64", "windows(10.0.17763)/amd64"],
            &["linux/amd64", "linux/arm/v7", "linux/arm64", "windows/arm"],
        ),
        (
            "linux/arm/v8",
            &["linux/arm/v8"],
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v7",
            &["linux/arm", "linux/arm/v7"],
            &[
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v6",
            &["linux/arm/v6"],
            &[
                "linux/arm/v5",
                "linux/amd64",
                "linux/arm",
                "linux/arm/v4",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v5",
            &["linux/arm/v5"],
            &[
                "linux/amd64",
                "linux/arm",
                "linux/arm/v4",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm/v4",
            &["linux/arm/v4"],
            &[
                "linux/amd64",
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/arm64",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm64/v9.5",
            &["linux/arm64/v9.5"],
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
                "linux/arm64/v9",
                "linux/arm64/v9.1",
                "linux/arm64/v9.4",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm64/v9",
            &["linux/arm64/v9", "linux/arm64/v9.0"],
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v8",
                "linux/arm64/v8.1",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm64/v8.1",
            &["linux/arm64/v8.1"],
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v8",
                "linux/arm64/v9",
                "windows/amd64",
                "windows/arm",
            ],
        ),
        (
            "linux/arm64",
            &["linux/arm64", "linux/arm64/v8"],
            &[
                "linux/arm",
                "linux/arm/v5",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm/v8",
                "linux/amd64",
                "linux/arm/v4",
                "linux/arm/v9",
                "linux/arm64/v9",
                "windows/amd64",
                "windows/arm",
            ],
        ),
    ];
    match_table("TestOnlyStrict", Platform::strict_matcher, cases);
}

/// compare_test.go `TestCompareOSFeatures`: all 6 cases, for `Only` and `OnlyStrict` (its
/// `Ordered` and `Any` of one platform are `OnlyStrict` here). Upstream sorts every candidate;
/// manifold only ever chooses among those that match, so the check is that the matching ones
/// (the first `matching` of upstream's order) come in upstream's order and the others do not
/// match.
#[test]
fn compare_os_features() {
    // (wanted, candidates, upstream's order, how many of them match)
    let cases: &[(&str, [&str; 4], [&str; 4], usize)] = &[
        (
            "linux/amd64",
            [
                "windows/amd64",
                "linux/amd64",
                "linux(+other)/amd64",
                "linux/arm64",
            ],
            [
                "linux/amd64",
                "linux(+other)/amd64",
                "windows/amd64",
                "linux/arm64",
            ],
            1,
        ),
        (
            "linux(+none)/amd64",
            [
                "windows/amd64",
                "linux/amd64",
                "linux/arm64",
                "linux(+other)/amd64",
            ],
            [
                "linux/amd64",
                "linux(+other)/amd64",
                "windows/amd64",
                "linux/arm64",
            ],
            1,
        ),
        (
            "linux(+other)/amd64",
            [
                "windows/amd64",
                "linux/amd64",
                "linux/arm64",
                "linux(+other)/amd64",
            ],
            [
                "linux(+other)/amd64",
                "linux/amd64",
                "windows/amd64",
                "linux/arm64",
            ],
            2,
        ),
        (
            "linux(+af+other+zf)/amd64",
            [
                "windows/amd64",
                "linux/amd64",
                "linux/arm64",
                "linux(+other)/amd64",
            ],
            [
                "linux(+other)/amd64",
                "linux/amd64",
                "windows/amd64",
                "linux/arm64",
            ],
            2,
        ),
        (
            "linux(+f1+f2)/amd64",
            [
                "linux/amd64",
                "linux(+f2)/amd64",
                "linux(+f1)/amd64",
                "linux(+f1+f2)/amd64",
            ],
            [
                "linux(+f1+f2)/amd64",
                "linux(+f2)/amd64",
                "linux(+f1)/amd64",
                "linux/amd64",
            ],
            4,
        ),
        (
            // Upstream: "should likely fail and be updated when os version is considered for
            // linux".
            "linux(7.2+other)/amd64",
            [
                "linux/amd64",
                "linux(+other)/amd64",
                "linux(7.1)/amd64",
                "linux(7.2+other)/amd64",
            ],
            [
                "linux(+other)/amd64",
                "linux(7.2+other)/amd64",
                "linux/amd64",
                "linux(7.1)/amd64",
            ],
            4,
        ),
    ];
    let mut failures = Vec::new();
    for (wanted, candidates, expected, matching) in cases {
        let wanted = parse(wanted);
        let candidates: Vec<Platform> = candidates.iter().map(|c| parse(c)).collect();
        for m in [wanted.matcher(), wanted.strict_matcher()] {
            let order: Vec<String> = m
                .order(&candidates)
                .into_iter()
                .map(|i| candidates[i].to_string())
                .collect();
            if order != expected[..*matching] {
                failures.push(format!("{wanted}: ordered {order:?}"));
            }
            for other in &expected[*matching..] {
                if m.matches(&parse(other)) {
                    failures.push(format!("{wanted}: matches {other}"));
                }
            }
        }
    }
    no_failures("TestCompareOSFeatures", cases.len() * 2, failures);
}

fn windows(version: &str) -> Platform {
    spec("windows", "amd64", "", version, &[])
}

/// platform_windows_compat_test.go `Test_PlatformCompat`: all 12 host/image pairs, through a
/// matcher wanting the host's version.
#[test]
fn windows_platform_compat() {
    const LTSC2019: u16 = 17763;
    const LTSC2022: u16 = 20348;
    const WIN11_22H2: u16 = 22621;
    const V23H2: u16 = 25398;
    const LTSC2025: u16 = 26100;
    let cases = [
        (LTSC2019, LTSC2019, true),
        (LTSC2019, LTSC2022, false),
        (LTSC2022, LTSC2019, false),
        (LTSC2022, LTSC2022, true),
        (WIN11_22H2, LTSC2019, false),
        (WIN11_22H2, LTSC2022, true),
        (V23H2, LTSC2019, false),
        (V23H2, LTSC2022, true),
        (LTSC2025, LTSC2022, true),
        (LTSC2022, LTSC2025, false),
        (LTSC2022, WIN11_22H2, false),
        (LTSC2025, WIN11_22H2, true),
    ];
    let mut failures = Vec::new();
    for (host, image, runs) in cases {
        let m = windows(&format!("10.0.{host}")).matcher();
        if m.matches(&windows(&format!("10.0.{image}"))) != runs {
            failures.push(format!("host {host} runs {image}: wanted {runs}"));
        }
    }
    no_failures("Test_PlatformCompat", cases.len(), failures);
}

/// platform_windows_compat_test.go `Test_PlatformOrder`: all 3 cases.
#[test]
fn windows_platform_order() {
    let linux = spec("linux", "amd64", "", "", &[]);
    let ws2022 = windows("10.0.20348.3091");
    let ws2025 = windows("10.0.26100.2894");
    let ws2025_rev3000 = windows("10.0.26100.3000");
    let cases = [
        (&ws2022, [&linux, &ws2022, &ws2025], &ws2022),
        (&ws2025, [&linux, &ws2022, &ws2025], &ws2025),
        (&ws2025, [&linux, &ws2022, &ws2025_rev3000], &ws2025_rev3000),
    ];
    let mut failures = Vec::new();
    for (host, candidates, want) in cases {
        let best = host.matcher().best(candidates).map(|i| candidates[i]);
        if best != Some(want) {
            failures.push(format!("host {host}: chose {best:?}"));
        }
    }
    no_failures("Test_PlatformOrder", cases.len(), failures);
}

/// defaults_test.go `TestMatchComparerMatch_ABICheckWCOW` (9 cases) and platforms_windows_test.go
/// `TestFallbackOnOSVersion` (1).
#[test]
fn windows_abi_check() {
    let none = windows("");
    let ws2019 = windows("10.0.17763");
    let ws2022 = windows("10.0.20348");
    let win11 = windows("10.0.22621");
    let cases = [
        (&ws2019, &ws2019, true),
        (&ws2019, &ws2022, false),
        (&ws2022, &ws2019, false),
        (&ws2022, &ws2022, true),
        (&win11, &ws2019, false),
        (&win11, &ws2022, true),
        (&none, &ws2019, true),
        (&none, &none, true),
        (&none, &win11, true),
        (&windows("99.99.99.99"), &none, true),
    ];
    let mut failures = Vec::new();
    for (host, image, want) in cases {
        if host.strict_matcher().matches(image) != want {
            failures.push(format!("host {host} runs {image}: wanted {want}"));
        }
    }
    no_failures("TestMatchComparerMatch_ABICheckWCOW", cases.len(), failures);
}

/// defaults_test.go `TestWindowsMatchComparerLess`: the one ordering, newest matching revision
/// first, one without a version after those with one.
#[test]
fn windows_match_comparer_less() {
    let candidates = [
        windows("10.0.17764.1"),
        windows(""),
        windows("10.0.17763.1"),
        windows("10.0.17763.2"),
        windows("10.0.17762.1"),
    ];
    // Upstream's sorted list is 17763.2, 17763.1, none, then the two that do not match.
    let m = windows("10.0.17763.1").matcher();
    assert_eq!(m.order(&candidates), vec![3, 2, 1]);
    assert!(!m.matches(&candidates[0]) && !m.matches(&candidates[4]));
}

/// defaults_windows_test.go `TestDefaultMatchComparer` (2 cases), `TestMatchComparerMatch_WCOW`
/// (7) and `TestMatchComparerMatch_LCOW` (5), which run on a Windows host; here the host is
/// Windows Server 2019 (10.0.17763).
#[test]
fn windows_default_matchers() {
    let build = "10.0.17763";
    let host = windows(build);
    let linux = spec("linux", "amd64", "", "", &[]);
    let wcow = [
        (host.clone(), true),
        (windows(&format!("{build}.1")), true),
        (windows(&format!("{build}.2")), true),
        (windows("10.0.17762.1"), false),
        (windows("10.0.17764.1"), false),
        (windows(""), true),
        (linux.clone(), false),
    ];
    let lcow = [
        (host.clone(), false),
        (windows(""), false),
        (windows(&format!("{build}.2")), false),
        (windows("10.0.17762.1"), false),
        (linux.clone(), true),
    ];
    let default = [
        (host.clone(), true),
        (spec("linux", "amd64", "", "", &[]), false),
    ];
    let mut failures = Vec::new();
    for (wanted, table) in [
        (&host, &wcow[..]),
        (&linux, &lcow[..]),
        (&host, &default[..]),
    ] {
        for (candidate, want) in table {
            if wanted.strict_matcher().matches(candidate) != *want {
                failures.push(format!("{wanted} matches {candidate}: wanted {want}"));
            }
        }
    }
    no_failures(
        "TestMatchComparerMatch_*COW",
        wcow.len() + lcow.len() + default.len(),
        failures,
    );
}

/// Features in matching beyond the tables: containerd's `NewMatcher` leaves `win32k` out on
/// Windows, and a candidate's features must all be wanted.
#[test]
fn features_match_as_subsets() {
    let win32k = spec("windows", "amd64", "", "10.0.17763.1", &["win32k"]);
    assert!(windows("").matcher().matches(&win32k));
    assert!(windows("10.0.17763").matcher().matches(&win32k));
    // Of two otherwise equal candidates, the one with more features ranks first.
    let both = [windows("10.0.17763.1"), win32k.clone()];
    assert_eq!(windows("").matcher().order(&both), vec![1, 0]);
    let gpu = spec("linux", "amd64", "", "", &["gpu"]);
    assert!(!parse("linux/amd64").matcher().matches(&gpu));
    assert!(parse("linux(+gpu)/amd64").matcher().matches(&gpu));
    // Features are carried through the architecture fallbacks.
    let gpu_386 = spec("linux", "386", "", "", &["gpu"]);
    assert!(parse("linux(+gpu)/amd64").matcher().matches(&gpu_386));
    assert!(!parse("linux/amd64").matcher().matches(&gpu_386));
    // Order and repeats do not matter.
    let repeated = spec("linux", "amd64", "", "", &["b", "a", "b"]);
    assert!(
        parse("linux(+a+b)/amd64")
            .strict_matcher()
            .matches(&repeated)
    );
    assert_eq!(repeated.to_string(), "linux(+a+b)/amd64");
}
