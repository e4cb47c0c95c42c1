//! The tables in platforms/*.yaml, parsed once, and the name normalisation they drive.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;

use super::{KnownPlatform, Platform};

const ALIASES_YAML: &str = include_str!("../../platforms/aliases.yaml");
const FALLBACKS_YAML: &str = include_str!("../../platforms/fallbacks.yaml");
const KNOWN_YAML: &str = include_str!("../../platforms/known.yaml");
const WINDOWS_YAML: &str = include_str!("../../platforms/windows.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Aliases {
    pub known_os: Vec<String>,
    pub os_aliases: BTreeMap<String, String>,
    pub arch_aliases: BTreeMap<String, String>,
    pub architectures: BTreeMap<String, ArchSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ArchSpec {
    #[serde(default)]
    pub default_variant: Option<String>,
    #[serde(default)]
    pub implicit_default: bool,
    #[serde(default)]
    pub variants: BTreeMap<String, String>,
}

/// A normalised architecture and variant: the unit that fallback chains and matchers compare.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Arch {
    pub architecture: String,
    pub variant: Option<String>,
}

impl Arch {
    /// Reads the `architecture[/variant]` notation of the YAML tables.
    fn parse(aliases: &Aliases, s: &str) -> Arch {
        let (architecture, variant) = match s.split_once('/') {
            Some((a, v)) => (a, Some(v)),
            None => (s, None),
        };
        aliases.arch(architecture, variant)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKnown {
    platform: String,
    debian: Option<String>,
    qemu: String,
}

pub(super) static ALIASES: LazyLock<Aliases> =
    LazyLock::new(|| serde_yaml::from_str(ALIASES_YAML).expect("platforms/aliases.yaml is valid"));

/// Each architecture's chain of acceptable architectures, itself first.
pub(super) static FALLBACKS: LazyLock<HashMap<Arch, Vec<Arch>>> = LazyLock::new(|| {
    let raw: BTreeMap<String, Vec<String>> =
        serde_yaml::from_str(FALLBACKS_YAML).expect("platforms/fallbacks.yaml is valid");
    let mut chains = HashMap::new();
    for (key, rest) in raw {
        let own = Arch::parse(&ALIASES, &key);
        let chain = std::iter::once(own.clone())
            .chain(rest.iter().map(|s| Arch::parse(&ALIASES, s)))
            .collect();
        let duplicate = chains.insert(own, chain);
        assert!(
            duplicate.is_none(),
            "platforms/fallbacks.yaml: `{key}` duplicates another key once normalised"
        );
    }
    chains
});

pub(super) static KNOWN: LazyLock<Vec<KnownPlatform>> = LazyLock::new(|| {
    let raw: Vec<RawKnown> =
        serde_yaml::from_str(KNOWN_YAML).expect("platforms/known.yaml is valid");
    raw.into_iter()
        .map(|k| KnownPlatform {
            platform: Platform::parse(&k.platform)
                .unwrap_or_else(|e| panic!("platforms/known.yaml: {e}")),
            debian_arch: k.debian,
            qemu_arch: k.qemu,
        })
        .collect()
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Windows {
    /// The LTSC builds from which the container ABI is stable, ascending.
    pub stable_abi_builds: Vec<u16>,
}

pub(super) static WINDOWS: LazyLock<Windows> = LazyLock::new(|| {
    let windows: Windows =
        serde_yaml::from_str(WINDOWS_YAML).expect("platforms/windows.yaml is valid");
    assert!(
        !windows.stable_abi_builds.is_empty() && windows.stable_abi_builds.is_sorted(),
        "platforms/windows.yaml: stable_abi_builds must be ascending and not empty"
    );
    windows
});

impl Aliases {
    pub fn os(&self, os: &str) -> String {
        let os = os.to_ascii_lowercase();
        self.os_aliases.get(&os).cloned().unwrap_or(os)
    }

    pub fn is_known_os(&self, os: &str) -> bool {
        self.known_os.iter().any(|k| k == os)
    }

    pub fn is_known_arch(&self, architecture: &str) -> bool {
        self.architectures.contains_key(architecture)
    }

    /// Normalises an architecture and variant: lower case, aliases resolved, the variant spelt
    /// canonically, a missing variant made the default, and an implicit default left out.
    pub fn arch(&self, architecture: &str, variant: Option<&str>) -> Arch {
        let architecture = architecture.to_ascii_lowercase();
        // OCI JSON in the wild sometimes carries `"variant": ""`, which means none.
        let mut variant = variant
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase);
        let architecture = match self.arch_aliases.get(&architecture) {
            Some(target) => match target.split_once('/') {
                Some((a, v)) => {
                    variant = Some(v.to_string());
                    a.to_string()
                }
                None => target.clone(),
            },
            None => architecture,
        };
        if let Some(spec) = self.architectures.get(&architecture) {
            variant = variant
                .map(|v| spec.variants.get(&v).cloned().unwrap_or(v))
                .or_else(|| spec.default_variant.clone());
            if spec.implicit_default && variant == spec.default_variant {
                variant = None;
            }
        }
        Arch {
            architecture,
            variant,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(a: &str, v: Option<&str>) -> Arch {
        Arch {
            architecture: a.to_string(),
            variant: v.map(str::to_string),
        }
    }

    #[test]
    fn tables_load_and_are_consistent() {
        let aliases = &*ALIASES;
        for (alias, target) in &aliases.arch_aliases {
            let Arch { architecture, .. } = Arch::parse(aliases, target);
            assert!(
                aliases.is_known_arch(&architecture),
                "alias `{alias}` points at unknown `{target}`"
            );
            assert!(
                !aliases.is_known_arch(alias),
                "alias `{alias}` is also an architecture"
            );
        }
        for target in aliases.os_aliases.values() {
            assert!(
                aliases.is_known_os(target),
                "os alias to unknown `{target}`"
            );
        }
        for (name, spec) in &aliases.architectures {
            for canonical in spec.variants.values() {
                assert_eq!(
                    spec.variants.get(canonical),
                    None,
                    "{name}: `{canonical}` is both a spelling and a canonical variant"
                );
            }
        }
        assert!(!FALLBACKS.is_empty());
        assert!(!KNOWN.is_empty());
        assert!(!WINDOWS.stable_abi_builds.is_empty());
    }

    #[test]
    fn every_arch_alias_normalises_to_its_target() {
        for (alias, target) in &ALIASES.arch_aliases {
            let (a, v) = match target.split_once('/') {
                Some((a, v)) => (a, Some(v)),
                None => (target.as_str(), None),
            };
            let want = ALIASES.arch(a, v);
            assert_eq!(ALIASES.arch(alias, None), want, "{alias}");
            assert_eq!(
                ALIASES.arch(&alias.to_ascii_uppercase(), None),
                want,
                "{alias} upper-case"
            );
        }
    }

    #[test]
    fn every_variant_spelling_normalises() {
        for (name, spec) in &ALIASES.architectures {
            for (spelling, canonical) in &spec.variants {
                let want =
                    if spec.implicit_default && spec.default_variant.as_ref() == Some(canonical) {
                        None
                    } else {
                        Some(canonical.as_str())
                    };
                assert_eq!(
                    ALIASES.arch(name, Some(spelling)),
                    arch(name, want),
                    "{name}/{spelling}"
                );
                assert_eq!(ALIASES.arch(name, Some(canonical)), arch(name, want));
            }
            let default = ALIASES.arch(name, None);
            match (&spec.default_variant, spec.implicit_default) {
                (Some(_), true) | (None, _) => assert_eq!(default.variant, None, "{name}"),
                (Some(d), false) => assert_eq!(default.variant.as_ref(), Some(d), "{name}"),
            }
        }
    }

    #[test]
    fn explicit_normalisations() {
        let cases = [
            (("x86_64", None), ("amd64", None)),
            (("X86-64", None), ("amd64", None)),
            (("amd64", Some("v1")), ("amd64", None)),
            (("amd64", Some("V3")), ("amd64", Some("v3"))),
            (("amd64", Some("")), ("amd64", None)),
            (("aarch64", None), ("arm64", Some("v8"))),
            (("arm64", Some("8")), ("arm64", Some("v8"))),
            (("arm64", Some("v8.0")), ("arm64", Some("v8"))),
            (("arm64", Some("9")), ("arm64", Some("v9"))),
            (("armhf", None), ("arm", Some("v7"))),
            (("armhf", Some("v6")), ("arm", Some("v7"))),
            (("armel", None), ("arm", Some("v6"))),
            (("arm", None), ("arm", Some("v7"))),
            (("arm", Some("7")), ("arm", Some("v7"))),
            (("arm", Some("5")), ("arm", Some("v5"))),
            (("i686", None), ("386", None)),
            (("i386", None), ("386", None)),
            (("mips64el", None), ("mips64le", None)),
            (("loongarch64", None), ("loong64", None)),
            (("ppc64el", None), ("ppc64le", None)),
            (("s390x", None), ("s390x", None)),
            (("riscv64", None), ("riscv64", None)),
            (("something", Some("Odd")), ("something", Some("odd"))),
        ];
        for ((a, v), (wa, wv)) in cases {
            assert_eq!(ALIASES.arch(a, v), arch(wa, wv), "{a}/{v:?}");
        }
        assert_eq!(ALIASES.os("MacOS"), "darwin");
        assert_eq!(ALIASES.os("Linux"), "linux");
    }

    #[test]
    fn fallback_chains_start_with_themselves_and_repeat_nothing() {
        for (own, chain) in FALLBACKS.iter() {
            assert_eq!(&chain[0], own);
            for (i, a) in chain.iter().enumerate() {
                assert!(!chain[i + 1..].contains(a), "{own:?} repeats {a:?}");
                assert!(ALIASES.is_known_arch(&a.architecture), "{a:?}");
            }
        }
    }
}
