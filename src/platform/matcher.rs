//! Choosing among an index's platforms: which ones a wanted platform can run, and in what order
//! of preference (containerd's `Only`/`OnlyStrict` and its Windows matcher, with the data in
//! platforms/fallbacks.yaml and platforms/windows.yaml).

use std::cmp::Reverse;

use super::Platform;
use super::data::{Arch, FALLBACKS, WINDOWS};

/// The feature Windows images declare for their GUI subsystem, which containerd leaves out when
/// it matches (older versions did not compare features at all).
const WIN32K: &str = "win32k";

/// Decides which platforms satisfy a wanted one, and ranks them, as containerd does.
///
/// The OS must be equal (after normalisation). The architecture must be the wanted one or, for a
/// non-strict matcher, one of its fallbacks; an earlier fallback ranks better. A candidate's
/// `os.features` must all be wanted ones (on Windows, `win32k` aside); of two otherwise equal
/// candidates, the one with more features ranks better. `os.version` counts only on Windows:
/// when a version is wanted, the candidate must be one that a host of that version runs (see
/// platforms/windows.yaml; one declaring no version always is), and the newest such version
/// ranks best. A closer architecture always beats more features or a newer version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// The platform asked for, normalised.
    wanted: Platform,
    /// Acceptable architectures, best first; the wanted one is first.
    archs: Vec<Arch>,
    /// The Windows version asked for, when it is one (containerd ignores one it cannot read).
    windows_host: Option<WindowsVersion>,
}

/// How good a match is: smaller is better.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    arch: usize,
    features: Reverse<usize>,
    version: Reverse<Option<Vec<VersionPart>>>,
}

/// A component of an `os.version`, compared as a number when it is one.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum VersionPart {
    Number(u64),
    Text(String),
}

impl Matcher {
    pub(super) fn new(wanted: &Platform, strict: bool) -> Matcher {
        let wanted = wanted.normalized();
        let own = Arch {
            architecture: wanted.architecture.clone(),
            variant: wanted.variant.clone(),
        };
        let archs = match FALLBACKS.get(&own) {
            Some(chain) if !strict => chain.clone(),
            _ => vec![own],
        };
        let windows_host = match wanted.os.as_str() {
            "windows" => wanted
                .os_version
                .as_deref()
                .and_then(WindowsVersion::parse)
                .filter(|v| *v != WindowsVersion::default()),
            _ => None,
        };
        Matcher {
            wanted,
            archs,
            windows_host,
        }
    }

    /// The platform asked for, normalised (for messages such as "no image for linux/arm64/v8").
    pub fn platform(&self) -> &Platform {
        &self.wanted
    }

    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// Indexes of the candidates that match, best first; of equally good ones the first comes
    /// first. unknown/unknown (attestations) never matches.
    pub fn order<'a>(&self, candidates: impl IntoIterator<Item = &'a Platform>) -> Vec<usize> {
        let mut ranked: Vec<(Rank, usize)> = candidates
            .into_iter()
            .enumerate()
            .filter(|(_, p)| !p.is_unknown())
            .filter_map(|(i, p)| Some((self.rank(p)?, i)))
            .collect();
        ranked.sort();
        ranked.into_iter().map(|(_, i)| i).collect()
    }

    /// Index of the best candidate (see [`Matcher::order`]).
    pub fn best<'a>(&self, candidates: impl IntoIterator<Item = &'a Platform>) -> Option<usize> {
        self.order(candidates).first().copied()
    }

    /// None when the candidate does not match.
    fn rank(&self, candidate: &Platform) -> Option<Rank> {
        let candidate = candidate.normalized();
        if candidate.os != self.wanted.os {
            return None;
        }
        let arch = Arch {
            architecture: candidate.architecture,
            variant: candidate.variant,
        };
        let position = self.archs.iter().position(|a| *a == arch)?;
        let features = candidate.os_features.unwrap_or_default();
        let wanted = self.wanted.os_features.as_deref().unwrap_or_default();
        let windows = candidate.os == "windows";
        if !features
            .iter()
            .filter(|f| !(windows && *f == WIN32K))
            .all(|f| wanted.contains(f))
        {
            return None;
        }
        let version = match &self.windows_host {
            None => None,
            Some(host) => {
                let version = candidate.os_version;
                if let Some(v) = &version
                    && !host.runs(&WindowsVersion::parse(v).unwrap_or_default())
                {
                    return None;
                }
                version.map(|v| version_parts(&v))
            }
        };
        Some(Rank {
            arch: position,
            features: Reverse(features.len()),
            version: Reverse(version),
        })
    }
}

/// Windows' `major.minor.build`, as containerd reads it from `os.version` (a revision after the
/// build is ignored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct WindowsVersion {
    major: u8,
    minor: u8,
    build: u16,
}

impl WindowsVersion {
    fn parse(version: &str) -> Option<WindowsVersion> {
        fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
            // `str::parse` takes a leading `+`, Go's `ParseUint` does not.
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse().ok())?
        }
        let mut parts = version.splitn(4, '.');
        let (major, minor, build) = (parts.next()?, parts.next()?, parts.next()?);
        Some(WindowsVersion {
            major: number(major)?,
            minor: number(minor)?,
            build: number(build)?,
        })
    }

    /// Whether a host of this version runs a container image of version `image`.
    fn runs(&self, image: &WindowsVersion) -> bool {
        if (self.major, self.minor) != (image.major, image.minor) {
            return false;
        }
        let stable = &WINDOWS.stable_abi_builds;
        if self.build < stable[0] {
            return self.build == image.build;
        }
        // The oldest image build this host runs: the newest stable-ABI release older than the
        // host, or the first one when the host is that release.
        let oldest = stable
            .iter()
            .rev()
            .find(|&&b| self.build > b)
            .unwrap_or(&stable[0]);
        (*oldest..=self.build).contains(&image.build)
    }
}

/// An `os.version` as comparable parts: `10.0.17763.999` is older than `10.0.17763.1000`.
fn version_parts(version: &str) -> Vec<VersionPart> {
    version
        .split('.')
        .map(|part| match part.parse() {
            Ok(n) if part.bytes().all(|b| b.is_ascii_digit()) => VersionPart::Number(n),
            _ => VersionPart::Text(part.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn raw(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform::new(os, arch, variant)
    }

    /// Every chain in platforms/fallbacks.yaml, read back through the matcher.
    #[test]
    fn every_fallback_chain_ranks_in_order() {
        for chain in FALLBACKS.values() {
            let own = &chain[0];
            let wanted = raw("linux", &own.architecture, own.variant.as_deref());
            let matcher = wanted.matcher();
            let strict = wanted.strict_matcher();
            let candidates: Vec<Platform> = chain
                .iter()
                .rev()
                .map(|a| raw("linux", &a.architecture, a.variant.as_deref()))
                .collect();
            let best_first: Vec<usize> = (0..chain.len()).rev().collect();
            assert_eq!(matcher.order(&candidates), best_first, "{wanted}");
            for (i, a) in chain.iter().enumerate() {
                let candidate = raw("linux", &a.architecture, a.variant.as_deref());
                assert!(matcher.matches(&candidate), "{wanted} → {candidate}");
                assert_eq!(
                    strict.matches(&candidate),
                    i == 0,
                    "strict {wanted} → {candidate}"
                );
                let other_os = raw("windows", &a.architecture, a.variant.as_deref());
                assert!(!matcher.matches(&other_os), "{wanted} → {other_os}");
            }
        }
    }

    #[test]
    fn explicit_fallbacks() {
        let yes = [
            ("linux/amd64/v3", "linux/amd64/v2"),
            ("linux/amd64/v3", "linux/amd64"),
            ("linux/amd64/v3", "linux/386"),
            ("linux/amd64", "linux/386"),
            ("linux/amd64/v4", "linux/amd64/v3"),
            ("linux/arm64", "linux/arm/v7"),
            ("linux/arm64/v8", "linux/arm/v5"),
            ("linux/arm64", "linux/arm64/v8"),
            ("linux/arm/v7", "linux/arm/v6"),
            ("linux/arm/v7", "linux/arm/v5"),
            ("linux/arm/v6", "linux/arm/v5"),
            ("linux/arm", "linux/arm/v7"),
        ];
        for (want, candidate) in yes {
            assert!(
                p(want).matcher().matches(&p(candidate)),
                "{want} → {candidate}"
            );
        }
        let no = [
            ("linux/amd64", "linux/amd64/v2"),
            ("linux/amd64/v2", "linux/amd64/v3"),
            ("linux/386", "linux/amd64"),
            ("linux/arm/v7", "linux/arm64"),
            ("linux/arm/v6", "linux/arm/v7"),
            ("linux/arm/v5", "linux/arm/v6"),
            ("linux/arm64", "linux/amd64"),
            ("linux/s390x", "linux/amd64"),
            ("linux/amd64", "windows/amd64"),
        ];
        for (want, candidate) in no {
            assert!(
                !p(want).matcher().matches(&p(candidate)),
                "{want} ↛ {candidate}"
            );
        }
    }

    #[test]
    fn the_wanted_platform_is_kept_normalised() {
        let m = Platform::new("Linux", "aarch64", None).matcher();
        assert_eq!(m.platform(), &p("linux/arm64/v8"));
        assert_eq!(m.platform().to_string(), "linux/arm64/v8");
    }

    #[test]
    fn candidates_are_normalised_before_comparing() {
        let arm64 = p("linux/arm64");
        assert!(arm64.strict_matcher().matches(&raw("linux", "arm64", None)));
        assert!(
            arm64
                .strict_matcher()
                .matches(&raw("Linux", "aarch64", Some("8")))
        );
        assert!(
            arm64
                .strict_matcher()
                .matches(&raw("linux", "arm64", Some("")))
        );
        let amd64 = p("linux/amd64");
        assert!(
            amd64
                .strict_matcher()
                .matches(&raw("linux", "amd64", Some("v1")))
        );
        assert!(
            amd64
                .strict_matcher()
                .matches(&raw("linux", "x86_64", None))
        );
        assert!(!amd64.strict_matcher().matches(&raw("linux", "386", None)));
        // A wanted platform straight from JSON is normalised too.
        let json_arm = raw("linux", "arm", None);
        assert!(json_arm.strict_matcher().matches(&p("linux/arm/v7")));
    }

    #[test]
    fn best_prefers_the_closest() {
        let arm64 = p("linux/arm64");
        let candidates = [p("linux/arm/v6"), p("linux/arm/v7")];
        assert_eq!(arm64.matcher().best(&candidates), Some(1));
        assert_eq!(arm64.strict_matcher().best(&candidates), None);

        let amd64 = p("linux/amd64");
        let only_386 = [p("linux/arm64"), p("linux/386")];
        assert_eq!(amd64.matcher().best(&only_386), Some(1));

        let s390x = p("linux/s390x");
        let common = [
            p("linux/amd64"),
            p("linux/arm64"),
            p("linux/arm/v7"),
            p("linux/386"),
        ];
        assert_eq!(s390x.matcher().best(&common), None);

        let v3 = p("linux/amd64/v3");
        let levels = [
            p("linux/386"),
            p("linux/amd64"),
            p("linux/amd64/v2"),
            p("linux/amd64/v4"),
        ];
        assert_eq!(v3.matcher().best(&levels), Some(2));

        // Equal ranks: the first wins.
        let twice = [p("linux/arm64"), p("linux/arm64/v8")];
        assert_eq!(arm64.matcher().best(&twice), Some(0));
        assert_eq!(arm64.matcher().best(std::iter::empty()), None);
    }

    #[test]
    fn best_never_picks_unknown() {
        let unknown = raw("unknown", "unknown", None);
        let amd64 = p("linux/amd64");
        assert_eq!(unknown.matcher().best([&unknown]), None);
        assert_eq!(amd64.matcher().best([&unknown, &amd64]), Some(1));
        assert_eq!(amd64.matcher().best([&unknown]), None);
    }

    #[test]
    fn os_version() {
        let want = p("windows(10.0.17763.1234)/amd64");
        let m = want.matcher();
        assert!(m.matches(&p("windows(10.0.17763.1234)/amd64")));
        assert!(m.matches(&p("windows(10.0.17763.5000)/amd64")));
        assert!(m.matches(&p("windows/amd64")));
        assert!(!m.matches(&p("windows(10.0.20348.1)/amd64")));
        let index = [
            p("windows(10.0.20348.1)/amd64"),
            p("windows(10.0.17763.5000)/amd64"),
            p("windows(10.0.17763.1234)/amd64"),
            p("windows/amd64"),
        ];
        // containerd's Windows matcher prefers the newest revision of the build, then none.
        assert_eq!(m.order(&index), vec![1, 2, 3]);
        // Revisions compare as numbers.
        let revisions = [
            p("windows(10.0.17763.999)/amd64"),
            p("windows(10.0.17763.1000)/amd64"),
        ];
        assert_eq!(m.order(&revisions), vec![1, 0]);
        // Without a wanted version, any version is as good: the first wins.
        assert_eq!(p("windows/amd64").matcher().order(&index), vec![0, 1, 2, 3]);
        // Off Windows, containerd does not compare versions.
        let linux = p("linux(5.1)/amd64").matcher();
        assert!(linux.matches(&p("linux(5.1.1)/amd64")));
        assert!(linux.matches(&p("linux(5.1)/amd64")));
        assert!(linux.matches(&p("linux/amd64")));
        // A closer architecture beats a closer version.
        let both = [
            p("windows(10.0.17763.1234)/386"),
            p("windows(10.0.17763.9)/amd64"),
        ];
        assert_eq!(m.best(&both), Some(1));
    }
}
