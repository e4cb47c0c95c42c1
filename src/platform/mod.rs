//! Platforms as OCI image indexes declare them (`os[(version+feature…)]/architecture[/variant]`):
//! parsing, normalisation and formatting like containerd's, host detection, matching an index
//! entry with containerd's fallback order, and the table of known platforms. The data lives in
//! platforms/*.yaml.

mod data;
mod host;
mod matcher;

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use regex::Regex;
use serde::{Deserialize, Serialize};

pub use matcher::Matcher;

use data::{ALIASES, KNOWN};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("invalid platform: empty string")]
    Empty,
    #[error("invalid platform `{0}`: expected `os[(version+feature…)]/architecture[/variant]`")]
    Shape(String),
    #[error("invalid platform `{0}`: empty component")]
    EmptyComponent(String),
    #[error(
        "invalid platform `{input}`: invalid component `{component}` (letters, digits, `_`, `.` and `-` only)"
    )]
    Component { input: String, component: String },
    #[error("invalid platform `{0}`: unknown operating system or architecture")]
    Unknown(String),
    #[error(
        "invalid platform `{input}`: bad percent-encoding in `{value}` (`%` starts a `%XX` escape of UTF-8)"
    )]
    Escape { input: String, value: String },
}

impl crate::hint::Hint for PlatformError {
    fn hint(&self) -> Option<String> {
        Some("platforms look like `linux/arm64`, `linux/arm/v7`, `linux/amd64` or `arm64`".into())
    }
}

/// A platform as in an OCI image index. Values parsed from user input are normalised; values
/// deserialised from JSON are kept as written (so that a manifest round-trips byte for byte)
/// and normalised only when compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

/// A platform manifold knows by name, with what other tools call its architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownPlatform {
    platform: Platform,
    debian_arch: Option<String>,
    qemu_arch: String,
}

impl KnownPlatform {
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// Debian's dpkg architecture (`armhf`, `ppc64el`), if Debian has a port.
    pub fn debian_arch(&self) -> Option<&str> {
        self.debian_arch.as_deref()
    }

    /// The suffix of QEMU's user-mode emulator, `qemu-<name>` (`aarch64`, `loongarch64`).
    pub fn qemu_arch(&self) -> &str {
        &self.qemu_arch
    }
}

/// containerd's grammar for the first component: `os`, `os(os.version)`, with `os.features`
/// after the version, each behind a `+`: `windows(10.0.17763+win32k)`, `linux(+gpu)`. The version
/// and the features are percent-encoded.
static OS_AND_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$")
        .expect("os regex")
});

/// What [`Platform`]'s `Display` escapes in a version or feature: all that the grammar above does
/// not take literally (containerd escapes only `%+()/`, which leaves other characters that its
/// own parser then rejects).
const OS_OPTION_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'.').remove(b'-');

static COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_.-]+$").expect("component regex"));

static HOST: LazyLock<Platform> = LazyLock::new(host::detect);

impl Platform {
    /// A platform exactly as given, not normalised (as it would come from JSON).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: None,
            variant: variant.map(str::to_string),
        }
    }

    /// Parses like containerd 2's `platforms.Parse`, normalised: `linux/arm64/v8`, `arm64`
    /// (Linux), `linux` (this machine's architecture, as [`Platform::host_target`]),
    /// `windows(10.0.17763.1234)/amd64`, `windows(10.0.17763+win32k)/amd64` (`os.features`
    /// follow the version, each behind a `+`; both are percent-encoded:
    /// `windows(10.0.17763%2Bbuild.42)`). Case does not matter, except in the version and
    /// features.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        if s.is_empty() {
            return Err(PlatformError::Empty);
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 {
            return Err(PlatformError::Shape(s.to_string()));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError::EmptyComponent(s.to_string()));
        }
        let bad = |component: &str| PlatformError::Component {
            input: s.to_string(),
            component: component.to_string(),
        };
        let os_and_version = OS_AND_VERSION
            .captures(parts[0])
            .ok_or_else(|| bad(parts[0]))?;
        if let Some(rest) = parts[1..].iter().find(|p| !COMPONENT.is_match(p)) {
            return Err(bad(rest));
        }
        let word = &os_and_version[1];
        let os = ALIASES.os(word);
        let decode = |value: &str| {
            decode_os_option(value).ok_or_else(|| PlatformError::Escape {
                input: s.to_string(),
                value: value.to_string(),
            })
        };
        let os_version = match os_and_version.get(2).map(|v| v.as_str()) {
            Some(v) if !v.is_empty() => Some(decode(v)?),
            _ => None,
        };
        let os_features = match os_and_version.get(3).map(|f| f.as_str()) {
            // The grammar gives `+a+b`: no feature is empty before decoding.
            Some(f) if !f.is_empty() => Some(
                f[1..]
                    .split('+')
                    .map(decode)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };

        let (os, arch) = match parts[..] {
            [_] if ALIASES.is_known_os(&os) => {
                let target = Platform::host_target();
                let arch = ALIASES.arch(&target.architecture, target.variant.as_deref());
                (os, arch)
            }
            // Like containerd, a lone word that is no OS is an architecture, on Linux.
            [_] => {
                let arch = ALIASES.arch(word, None);
                if os_version.is_some()
                    || os_features.is_some()
                    || !ALIASES.is_known_arch(&arch.architecture)
                {
                    return Err(PlatformError::Unknown(s.to_string()));
                }
                ("linux".to_string(), arch)
            }
            [_, architecture] => (os, ALIASES.arch(architecture, None)),
            [_, architecture, variant] => (os, ALIASES.arch(architecture, Some(variant))),
            _ => unreachable!("between one and three components"),
        };
        Ok(Platform {
            architecture: arch.architecture,
            os,
            os_version,
            os_features: normalize_features(os_features.as_deref()),
            variant: arch.variant,
        })
    }

    /// Parses a comma-separated list, as `--platform linux/amd64,linux/arm64` takes.
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, PlatformError> {
        s.split(',')
            .map(|p| match p.trim() {
                "" => Err(PlatformError::EmptyComponent(s.to_string())),
                p => Platform::parse(p),
            })
            .collect()
    }

    /// The same platform normalised as [`Platform::parse`] does: OS, architecture and variant
    /// spelt canonically, `os.features` sorted without repeats (containerd's `Normalize`), an
    /// empty `os.version` or feature list left out.
    pub fn normalized(&self) -> Platform {
        let arch = ALIASES.arch(&self.architecture, self.variant.as_deref());
        Platform {
            architecture: arch.architecture,
            os: ALIASES.os(&self.os),
            os_version: self.os_version.clone().filter(|v| !v.is_empty()),
            os_features: normalize_features(self.os_features.as_deref()),
            variant: arch.variant,
        }
    }

    /// Whether the OS and architecture are ones manifold knows by name (platforms/aliases.yaml),
    /// after normalisation: `linux/amd46` parses, but is most likely a typo.
    pub fn is_known(&self) -> bool {
        let n = self.normalized();
        ALIASES.is_known_os(&n.os) && ALIASES.is_known_arch(&n.architecture)
    }

    /// Whether this is a placeholder such as BuildKit's attestation manifests carry
    /// (`unknown/unknown`), which is never an image to run.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }

    /// This machine: Linux on the architecture manifold runs on, with the variant the CPU
    /// supports (`amd64/v3` on a CPU with AVX2, `arm64/v8`). x86-64-v1 has no variant.
    pub fn host() -> Platform {
        HOST.clone()
    }

    /// The platform an image built or imported here declares by default: [`Platform::host`],
    /// except that amd64 is plain `linux/amd64` whatever the CPU level, as docker writes it.
    pub fn host_target() -> Platform {
        let mut host = Platform::host();
        if host.architecture == "amd64" {
            host.variant = None;
        }
        host
    }

    /// The platforms manifold knows by name, from platforms/known.yaml.
    pub fn known() -> &'static [KnownPlatform] {
        &KNOWN
    }

    /// Debian's architecture name for this platform, for Linux platforms in [`Platform::known`].
    pub fn debian_arch(&self) -> Option<&'static str> {
        self.known_entry()?.debian_arch()
    }

    /// QEMU's name for this platform's architecture, for Linux platforms in
    /// [`Platform::known`].
    pub fn qemu_arch(&self) -> Option<&'static str> {
        Some(self.known_entry()?.qemu_arch())
    }

    /// The known entry for this platform, or failing that for its architecture (so that an
    /// unusual variant still finds its emulator).
    fn known_entry(&self) -> Option<&'static KnownPlatform> {
        let me = self.normalized();
        if me.os != "linux" {
            return None;
        }
        let known = Platform::known();
        known
            .iter()
            .find(|k| {
                k.platform.architecture == me.architecture && k.platform.variant == me.variant
            })
            .or_else(|| {
                known
                    .iter()
                    .find(|k| k.platform.architecture == me.architecture)
            })
    }

    /// Matches candidates this platform can run, with containerd's fallbacks
    /// (see [`Matcher`]).
    pub fn matcher(&self) -> Matcher {
        Matcher::new(self, false)
    }

    /// Matches only this platform, after normalisation.
    pub fn strict_matcher(&self) -> Matcher {
        Matcher::new(self, true)
    }
}

/// `os.features` sorted, without repeats or empty names; None when none is left.
fn normalize_features(features: Option<&[String]>) -> Option<Vec<String>> {
    let mut features: Vec<String> = features?
        .iter()
        .filter(|f| !f.is_empty())
        .cloned()
        .collect();
    features.sort();
    features.dedup();
    Some(features).filter(|f| !f.is_empty())
}

/// Go's `url.PathUnescape`: every `%` starts two hex digits, and the result is UTF-8.
fn decode_os_option(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// containerd's `FormatAll`: `os(version+feature…)/architecture/variant`, the version and the
/// features percent-encoded, the features sorted without repeats.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.os)?;
        let version = self.os_version.as_deref().unwrap_or_default();
        let features = normalize_features(self.os_features.as_deref()).unwrap_or_default();
        if !version.is_empty() || !features.is_empty() {
            write!(f, "({}", utf8_percent_encode(version, OS_OPTION_ESCAPED))?;
            for feature in &features {
                write!(f, "+{}", utf8_percent_encode(feature, OS_OPTION_ESCAPED))?;
            }
            f.write_str(")")?;
        }
        write!(f, "/{}", self.architecture)?;
        if let Some(variant) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod upstream_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("linux/arm64", "linux/arm64/v8"),
            ("arm64", "linux/arm64/v8"),
            ("aarch64", "linux/arm64/v8"),
            ("linux/aarch64/8", "linux/arm64/v8"),
            ("linux/arm64/v8.0", "linux/arm64/v8"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("armhf", "linux/arm/v7"),
            ("linux/amd64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64/v2", "linux/amd64/v2"),
            ("x86_64", "linux/amd64"),
            ("LINUX/AMD64/V4", "linux/amd64/v4"),
            ("windows/amd64", "windows/amd64"),
            (
                "windows(10.0.17763.1234)/amd64",
                "windows(10.0.17763.1234)/amd64",
            ),
            ("linux/i686", "linux/386"),
            ("i386", "linux/386"),
            ("linux/386", "linux/386"),
            ("linux/ppc64le", "linux/ppc64le"),
            ("linux/ppc64el", "linux/ppc64le"),
            ("s390x", "linux/s390x"),
            ("linux/riscv64", "linux/riscv64"),
            ("linux/mips64el", "linux/mips64le"),
            ("linux/loongarch64", "linux/loong64"),
            ("macos/arm64", "darwin/arm64/v8"),
            ("freebsd/amd64", "freebsd/amd64"),
            ("wasip1/wasm", "wasip1/wasm"),
            // containerd accepts any well-formed os/arch pair.
            ("plan10/quux", "plan10/quux"),
            ("unknown/unknown", "unknown/unknown"),
        ];
        for (input, want) in cases {
            assert_eq!(p(input).to_string(), want, "{input}");
        }
        let w = p("windows(10.0.17763.1234)/amd64");
        assert_eq!(w.os_version.as_deref(), Some("10.0.17763.1234"));
        assert_eq!(w.variant, None);
        assert_eq!(p("windows()/amd64").os_version, None);
    }

    #[test]
    fn a_lone_os_takes_the_host_architecture() {
        let target = Platform::host_target();
        let linux = p("linux");
        assert_eq!(linux, target);
        let windows = p("Windows");
        assert_eq!(windows.os, "windows");
        assert_eq!(windows.architecture, target.architecture);
        let versioned = p("windows(10.0.20348)");
        assert_eq!(versioned.os_version.as_deref(), Some("10.0.20348"));
    }

    #[test]
    fn parse_errors_name_the_input() {
        use PlatformError as E;
        assert_eq!(Platform::parse(""), Err(E::Empty));
        assert_eq!(
            Platform::parse("linux/"),
            Err(E::EmptyComponent("linux/".into()))
        );
        assert_eq!(
            Platform::parse("/amd64"),
            Err(E::EmptyComponent("/amd64".into()))
        );
        assert_eq!(
            Platform::parse("linux//v7"),
            Err(E::EmptyComponent("linux//v7".into()))
        );
        assert_eq!(Platform::parse("a/b/c/d"), Err(E::Shape("a/b/c/d".into())));
        assert_eq!(
            Platform::parse("linux/amd 64"),
            Err(E::Component {
                input: "linux/amd 64".into(),
                component: "amd 64".into()
            })
        );
        assert!(matches!(
            Platform::parse("linux/*"),
            Err(E::Component { .. })
        ));
        assert!(matches!(
            Platform::parse("lin.ux/amd64"),
            Err(E::Component { .. })
        ));
        assert!(matches!(
            Platform::parse("windows(10 0)/amd64"),
            Err(E::Component { .. })
        ));
        assert!(matches!(
            Platform::parse("linux/arm64/v8+"),
            Err(E::Component { .. })
        ));
        assert_eq!(
            Platform::parse("garbage"),
            Err(E::Unknown("garbage".into()))
        );
        assert_eq!(
            Platform::parse("amd64(1.0)"),
            Err(E::Unknown("amd64(1.0)".into()))
        );
        assert_eq!(
            Platform::parse("linux/").unwrap_err().to_string(),
            "invalid platform `linux/`: empty component"
        );
        assert_eq!(
            Platform::parse("a/b/c/d").unwrap_err().to_string(),
            "invalid platform `a/b/c/d`: expected `os[(version+feature…)]/architecture[/variant]`"
        );
        for bad in [
            "windows(10%zz)/amd64",
            "windows(%)/amd64",
            "linux(+a%2)/amd64",
        ] {
            assert!(
                matches!(Platform::parse(bad), Err(E::Escape { .. })),
                "{bad}: {:?}",
                Platform::parse(bad)
            );
        }
        // An escape must decode to UTF-8.
        assert_eq!(
            Platform::parse("windows(%ff)/amd64")
                .unwrap_err()
                .to_string(),
            "invalid platform `windows(%ff)/amd64`: bad percent-encoding in `%ff` (`%` starts a `%XX` escape of UTF-8)"
        );
        for bad in [
            "linux(+)/amd64",
            "linux(1++a)/amd64",
            "linux(a b)/amd64",
            "linux(()/amd64",
        ] {
            assert!(
                matches!(Platform::parse(bad), Err(E::Component { .. })),
                "{bad}: {:?}",
                Platform::parse(bad)
            );
        }
        assert_eq!(
            Platform::parse("amd64(+gpu)"),
            Err(E::Unknown("amd64(+gpu)".into()))
        );
    }

    #[test]
    fn lists() {
        let list = Platform::parse_list("linux/amd64, linux/arm64").unwrap();
        assert_eq!(list, vec![p("linux/amd64"), p("linux/arm64/v8")]);
        assert_eq!(
            Platform::parse_list("linux/amd64,"),
            Err(PlatformError::EmptyComponent("linux/amd64,".into()))
        );
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "linux/arm64/v8",
            "linux/arm/v7",
            "linux/amd64",
            "linux/amd64/v3",
            "windows(10.0.17763)/amd64",
            "linux/386",
        ] {
            let platform = p(input);
            assert_eq!(platform.to_string(), input);
            assert_eq!(input.parse::<Platform>().unwrap(), platform);
        }
        for known in Platform::known() {
            let platform = known.platform();
            assert_eq!(&p(&platform.to_string()), platform);
        }
    }

    #[test]
    fn serde_round_trips_the_oci_json() {
        let docs = [
            r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#,
            r#"{"architecture":"amd64","os":"linux"}"#,
            r#"{"architecture":"arm64","os":"linux"}"#,
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1234","os.features":["win32k"]}"#,
            r#"{"architecture":"unknown","os":"unknown"}"#,
        ];
        for doc in docs {
            let platform: Platform = serde_json::from_str(doc).unwrap();
            assert_eq!(serde_json::to_string(&platform).unwrap(), doc);
        }
        // Deserialising keeps what the index says; matching normalises.
        let bare: Platform = serde_json::from_str(docs[2]).unwrap();
        assert_eq!(bare.variant, None);
        assert_eq!(bare.normalized(), p("linux/arm64/v8"));
        let windows: Platform = serde_json::from_str(docs[3]).unwrap();
        assert_eq!(windows.os_version.as_deref(), Some("10.0.17763.1234"));
        assert_eq!(windows.os_features, Some(vec!["win32k".to_string()]));
    }

    #[test]
    fn unknown_platforms() {
        assert!(Platform::new("unknown", "unknown", None).is_unknown());
        assert!(Platform::new("linux", "unknown", None).is_unknown());
        assert!(!p("linux/amd64").is_unknown());
    }

    #[test]
    fn host_and_host_target() {
        let host = Platform::host();
        let target = Platform::host_target();
        assert_eq!(host.os, "linux");
        assert_eq!(target.architecture, host.architecture);
        assert!(host.matcher().matches(&target));
        if host.architecture == "amd64" {
            assert_eq!(target.variant, None);
        } else {
            assert_eq!(target, host);
        }
        #[cfg(target_arch = "x86_64")]
        {
            let level = host::x86_64_level();
            assert_eq!(host.variant, (level > 1).then(|| format!("v{level}")));
            assert_eq!(target.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn known_platforms() {
        let names: Vec<String> = Platform::known()
            .iter()
            .map(|k| k.platform().to_string())
            .collect();
        for want in [
            "linux/amd64",
            "linux/amd64/v2",
            "linux/amd64/v3",
            "linux/amd64/v4",
            "linux/arm64/v8",
            "linux/arm/v7",
            "linux/arm/v6",
            "linux/arm/v5",
            "linux/386",
            "linux/ppc64le",
            "linux/ppc64",
            "linux/s390x",
            "linux/riscv64",
            "linux/mips64le",
            "linux/mips64",
            "linux/mipsle",
            "linux/loong64",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing");
        }
        for known in Platform::known() {
            let platform = known.platform();
            assert_eq!(platform, &platform.normalized(), "{platform}");
            assert_eq!(
                names.iter().filter(|n| **n == platform.to_string()).count(),
                1,
                "{platform} listed twice"
            );
            // Both foreign names are aliases of (or equal to) the architecture they stand for.
            let foreign = known.debian_arch().into_iter().chain([known.qemu_arch()]);
            for name in foreign {
                assert_eq!(
                    ALIASES.arch(name, None).architecture,
                    platform.architecture,
                    "{platform}: `{name}`"
                );
            }
            assert_eq!(platform.debian_arch(), known.debian_arch());
            assert_eq!(platform.qemu_arch(), Some(known.qemu_arch()));
        }
    }

    #[test]
    fn foreign_architecture_names() {
        let cases = [
            ("linux/amd64", Some("amd64"), Some("x86_64")),
            ("linux/amd64/v3", Some("amd64"), Some("x86_64")),
            ("linux/arm64", Some("arm64"), Some("aarch64")),
            ("linux/arm/v7", Some("armhf"), Some("arm")),
            ("linux/arm/v6", Some("armel"), Some("arm")),
            ("linux/arm/v5", Some("armel"), Some("arm")),
            // No entry for arm/v8: the first arm entry stands in.
            ("linux/arm/v8", Some("armhf"), Some("arm")),
            ("linux/386", Some("i386"), Some("i386")),
            ("linux/ppc64le", Some("ppc64el"), Some("ppc64le")),
            ("linux/s390x", Some("s390x"), Some("s390x")),
            ("linux/riscv64", Some("riscv64"), Some("riscv64")),
            ("linux/mips64le", Some("mips64el"), Some("mips64el")),
            ("linux/mips64", None, Some("mips64")),
            ("linux/loong64", Some("loong64"), Some("loongarch64")),
            ("windows/amd64", None, None),
            ("linux/sparc64", None, None),
        ];
        for (input, debian, qemu) in cases {
            let platform = p(input);
            assert_eq!(platform.debian_arch(), debian, "{input}");
            assert_eq!(platform.qemu_arch(), qemu, "{input}");
        }
        assert_eq!(
            Platform::new("linux", "aarch64", None).qemu_arch(),
            Some("aarch64")
        );
    }
}
