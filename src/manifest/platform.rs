//! A list entry's platform comes from the child's config, never from a guess; what an index (or
//! an annotation) says about it may add detail the config leaves out (a variant, an os.version)
//! but may not contradict it.

use crate::platform::Platform;

/// What makes two list entries the same platform: OS, architecture and variant after
/// normalisation (`linux/arm64` is `linux/arm64/v8`), and the OS version. OS features do not
/// tell platforms apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformKey {
    os: String,
    architecture: String,
    variant: Option<String>,
    os_version: Option<String>,
}

impl PlatformKey {
    pub fn of(p: &Platform) -> PlatformKey {
        let n = p.normalized();
        PlatformKey {
            os: n.os,
            architecture: n.architecture,
            variant: n.variant,
            os_version: n.os_version,
        }
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

/// Whether `listed` says something about the image that `config` denies. Fields only one of them
/// gives are no contradiction: a config without a variant is not denied by an entry with one.
pub fn contradicts(listed: &Platform, config: &Platform) -> bool {
    let (l, c) = (listed.normalized(), config.normalized());
    if l.os != c.os || l.architecture != c.architecture {
        return true;
    }
    if non_empty(&listed.variant).is_some()
        && non_empty(&config.variant).is_some()
        && l.variant != c.variant
    {
        return true;
    }
    matches!(
        (non_empty(&listed.os_version), non_empty(&config.os_version)),
        (Some(a), Some(b)) if a != b
    )
}

/// The platform of a list entry: the config's, with what `listed` adds where the config is
/// silent (variant, os.version, os.features). Architecture and OS names the config spells
/// unusually (`aarch64`, `x86_64`) are written canonically. `Err` with the config's platform
/// when `listed` contradicts it; `Ok(None)` when the config declares no platform and nothing
/// is listed.
pub fn reconcile(
    listed: Option<&Platform>,
    config: &Platform,
) -> Result<Option<Platform>, Platform> {
    if config.os.is_empty() || config.architecture.is_empty() {
        return Ok(listed.cloned());
    }
    let mut out = config.clone();
    out.variant = out.variant.filter(|v| !v.is_empty());
    out.os_version = out.os_version.filter(|v| !v.is_empty());
    out.os_features = out.os_features.filter(|f| !f.is_empty());
    let n = config.normalized();
    if n.os != config.os || n.architecture != config.architecture {
        out.os = n.os;
        out.architecture = n.architecture;
        out.variant = n.variant;
    }
    if let Some(listed) = listed {
        if contradicts(listed, config) {
            return Err(config.clone());
        }
        if out.variant.is_none() {
            out.variant = listed.variant.clone().filter(|v| !v.is_empty());
        }
        if out.os_version.is_none() {
            out.os_version = listed.os_version.clone().filter(|v| !v.is_empty());
        }
        if out.os_features.is_none() {
            out.os_features = listed.os_features.clone().filter(|f| !f.is_empty());
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn raw(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform::new(os, arch, variant)
    }

    #[test]
    fn the_config_decides_and_the_listing_adds_detail() {
        let config = raw("linux", "arm64", None);
        assert_eq!(reconcile(None, &config), Ok(Some(config.clone())));
        let listed = raw("linux", "arm64", Some("v8"));
        assert_eq!(reconcile(Some(&listed), &config), Ok(Some(listed.clone())));
        // Spelt unusually in the config: written canonically.
        let odd = raw("linux", "aarch64", None);
        assert_eq!(
            reconcile(None, &odd),
            Ok(Some(raw("linux", "arm64", Some("v8"))))
        );
        let mut windows = raw("windows", "amd64", None);
        windows.os_version = Some("10.0.17763.1234".into());
        let mut listed = raw("windows", "amd64", None);
        listed.os_features = Some(vec!["win32k".into()]);
        let got = reconcile(Some(&listed), &windows).unwrap().unwrap();
        assert_eq!(got.os_version.as_deref(), Some("10.0.17763.1234"));
        assert_eq!(got.os_features, Some(vec!["win32k".to_string()]));
    }

    #[test]
    fn contradictions_are_refused_silence_is_not() {
        let amd64 = raw("linux", "amd64", None);
        assert_eq!(
            reconcile(Some(&p("linux/arm64")), &amd64),
            Err(amd64.clone())
        );
        assert!(reconcile(Some(&p("windows/amd64")), &amd64).is_err());
        let v7 = raw("linux", "arm", Some("v7"));
        assert!(reconcile(Some(&raw("linux", "arm", Some("v6"))), &v7).is_err());
        // The config names no variant: any listed variant adds detail.
        let arm = raw("linux", "arm", None);
        assert_eq!(
            reconcile(Some(&raw("linux", "arm", Some("v6"))), &arm),
            Ok(Some(raw("linux", "arm", Some("v6"))))
        );
        // `arm64` and `arm64/v8` are the same platform.
        assert!(
            reconcile(
                Some(&raw("linux", "arm64", Some("v8"))),
                &raw("linux", "arm64", None)
            )
            .is_ok()
        );
        let mut a = amd64.clone();
        a.os_version = Some("1".into());
        let mut b = amd64.clone();
        b.os_version = Some("2".into());
        assert!(contradicts(&a, &b));
        assert!(!contradicts(&amd64, &b));
    }

    #[test]
    fn a_config_without_platform_keeps_the_listing() {
        let empty = raw("", "", None);
        assert_eq!(reconcile(None, &empty), Ok(None));
        assert_eq!(
            reconcile(Some(&p("linux/s390x")), &empty),
            Ok(Some(p("linux/s390x")))
        );
    }

    #[test]
    fn keys_compare_normalised_platforms() {
        assert_eq!(
            PlatformKey::of(&raw("linux", "arm64", None)),
            PlatformKey::of(&raw("linux", "arm64", Some("v8")))
        );
        assert_ne!(
            PlatformKey::of(&raw("linux", "amd64", None)),
            PlatformKey::of(&raw("linux", "amd64", Some("v3")))
        );
        let mut f = raw("linux", "amd64", None);
        f.os_features = Some(vec!["x".into()]);
        assert_eq!(
            PlatformKey::of(&f),
            PlatformKey::of(&raw("linux", "amd64", None))
        );
    }
}
