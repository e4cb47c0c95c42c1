//! Choosing among an index's platforms: which ones a wanted platform can run, and in what order
//! of preference (containerd's, from platforms/fallbacks.yaml).

use super::Platform;
use super::data::{ALIASES, Arch, FALLBACKS};

/// Decides which platforms satisfy a wanted one, and ranks them.
///
/// The OS must be equal (after normalisation). The architecture must be the wanted one or, for a
/// non-strict matcher, one of its fallbacks; an earlier fallback ranks better. `os.version` only
/// refines that: when one is wanted, a candidate with the same version ranks best, then one
/// declaring none or (on Windows) the same `major.minor.build`; one with another version does not
/// match. A closer architecture always beats a closer `os.version`. `os.features` are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// The platform asked for, normalised.
    wanted: Platform,
    /// Acceptable architectures, best first; the wanted one is first.
    archs: Vec<Arch>,
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
        Matcher { wanted, archs }
    }

    /// The platform asked for, normalised (for messages such as "no image for linux/arm64/v8").
    pub fn platform(&self) -> &Platform {
        &self.wanted
    }

    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// Preference rank of a candidate: Some(0) is the best; None when it does not match.
    pub fn rank(&self, candidate: &Platform) -> Option<usize> {
        if ALIASES.os(&candidate.os) != self.wanted.os {
            return None;
        }
        let arch = ALIASES.arch(&candidate.architecture, candidate.variant.as_deref());
        let position = self.archs.iter().position(|a| *a == arch)?;
        let penalty = self.os_version_penalty(candidate.os_version.as_deref())?;
        Some(position * 2 + penalty)
    }

    /// Index of the best candidate among platforms, skipping unknown/unknown.
    ///
    /// Of equally good candidates the first wins.
    pub fn best<'a>(&self, candidates: impl IntoIterator<Item = &'a Platform>) -> Option<usize> {
        candidates
            .into_iter()
            .enumerate()
            .filter(|(_, p)| !p.is_unknown())
            .filter_map(|(i, p)| Some((self.rank(p)?, i)))
            .min()
            .map(|(_, i)| i)
    }

    fn os_version_penalty(&self, candidate: Option<&str>) -> Option<usize> {
        let candidate = candidate.filter(|v| !v.is_empty());
        match (&self.wanted.os_version, candidate) {
            (None, _) => Some(0),
            (Some(want), Some(have)) if want == have => Some(0),
            (Some(_), None) => Some(1),
            (Some(want), Some(have))
                if self.wanted.os == "windows" && build(want) == build(have) =>
            {
                Some(1)
            }
            _ => None,
        }
    }
}

/// Windows' `major.minor.build`: images of the same build run on any revision of it.
fn build(version: &str) -> Vec<&str> {
    version.split('.').take(3).collect()
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
            for (i, a) in chain.iter().enumerate() {
                let candidate = raw("linux", &a.architecture, a.variant.as_deref());
                assert_eq!(
                    matcher.rank(&candidate),
                    Some(i * 2),
                    "{wanted} → {candidate}"
                );
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
        assert_eq!(m.rank(&p("windows(10.0.17763.1234)/amd64")), Some(0));
        assert_eq!(m.rank(&p("windows(10.0.17763.5000)/amd64")), Some(1));
        assert_eq!(m.rank(&p("windows/amd64")), Some(1));
        assert_eq!(m.rank(&p("windows(10.0.20348.1)/amd64")), None);
        let index = [
            p("windows(10.0.20348.1)/amd64"),
            p("windows(10.0.17763.5000)/amd64"),
            p("windows(10.0.17763.1234)/amd64"),
        ];
        assert_eq!(m.best(&index), Some(2));
        assert_eq!(m.best(&index[..2]), Some(1));
        // Without a wanted version, any version is as good.
        assert_eq!(p("windows/amd64").matcher().rank(&index[0]), Some(0));
        // Off Windows, versions are compared whole.
        let linux = p("linux(5.1)/amd64").matcher();
        assert!(!linux.matches(&p("linux(5.1.1)/amd64")));
        assert!(linux.matches(&p("linux(5.1)/amd64")));
        // A closer architecture beats a closer version.
        let both = [
            p("windows(10.0.17763.1234)/386"),
            p("windows(10.0.17763.9)/amd64"),
        ];
        assert_eq!(m.best(&both), Some(1));
    }
}
