//! Image references (`[registry/]repository[:tag][@digest]`): the grammar of docker's
//! distribution/reference, normalised the way `docker pull` reads a name (`docker.io`,
//! `library/`, `latest`), and the short "familiar" forms docker prints.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::oci::Digest;
use crate::oci::digest::DigestError;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
/// Docker Hub's pre-2017 name, still found in configs and old references.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
/// distribution/reference's `RepositoryNameTotalLengthMax`, counted on the normalised path (the
/// repository without its registry, `library/` included).
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference: empty string")]
    Empty,
    #[error("invalid reference `{0}`: repository name must be lowercase")]
    Uppercase(String),
    #[error(
        "invalid reference `{input}`: invalid tag `{tag}` (up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`)"
    )]
    Tag { input: String, tag: String },
    #[error("invalid reference `{input}`: bad digest")]
    Digest {
        input: String,
        #[source]
        source: DigestError,
    },
    #[error(
        "invalid reference `{0}`: repository name (without the registry) is longer than 255 characters"
    )]
    NameTooLong(String),
    #[error("invalid reference `{input}`: invalid registry `{registry}`")]
    Registry { input: String, registry: String },
    #[error(
        "invalid reference `{input}`: invalid repository component `{component}` (lower-case letters and digits, separated by `.`, `_`, `__` or `-`)"
    )]
    Component { input: String, component: String },
    #[error(
        "invalid reference `{0}`: a 64-character hex string is an image ID, not a repository name"
    )]
    ImageId(String),
}

impl crate::hint::Hint for ReferenceError {
    fn hint(&self) -> Option<String> {
        Some(
            "references look like `name`, `name:tag`, `registry:port/name:tag` or `name@sha256:…`, in lower case"
                .into(),
        )
    }
}

/// A normalised image reference. A reference always has a tag or a digest (or both): a bare
/// name means `:latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    Regex::new(&format!(
        r"^(?:{component}(?:\.{component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
    ))
    .expect("domain regex")
});

static PATH_COMPONENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").expect("path component regex")
});

/// Whether `s` is a valid tag: `[\w][\w.-]{0,127}` with ASCII `\w`.
pub fn is_valid_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match s.as_bytes() {
        [first, rest @ ..] => {
            s.len() <= TAG_MAX
                && word(*first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        [] => false,
    }
}

fn is_image_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Reference {
    /// Parses and normalises like docker's `ParseNormalizedNamed`: `alpine` is
    /// `docker.io/library/alpine:latest`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_exact(s).map_err(|e| match e {
            // As distribution/reference reports it: input that would be valid in lower case
            // fails for its upper case (`Foo_bar/x` is no registry, so `Foo_bar` is a namespace).
            ReferenceError::Registry { .. } | ReferenceError::Component { .. }
                if s.bytes().any(|b| b.is_ascii_uppercase())
                    && Reference::parse_exact(&s.to_ascii_lowercase()).is_ok() =>
            {
                ReferenceError::Uppercase(s.to_string())
            }
            e => e,
        })
    }

    fn parse_exact(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_image_id(s) {
            return Err(ReferenceError::ImageId(s.to_string()));
        }

        // Neither names nor tags may contain `@`, so the first one starts the digest.
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::Digest {
                    input: s.to_string(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };

        // A `:` after the last `/` starts the tag; earlier ones belong to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };

        let (registry, path) = split_registry(name);
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(s.to_string()));
        }
        if !DOMAIN.is_match(registry) {
            return Err(ReferenceError::Registry {
                input: s.to_string(),
                registry: registry.to_string(),
            });
        }
        if let Some(bad) = path.split('/').find(|c| !PATH_COMPONENT.is_match(c)) {
            return Err(ReferenceError::Component {
                input: s.to_string(),
                component: bad.to_string(),
            });
        }
        if let Some(tag) = tag
            && !is_valid_tag(tag)
        {
            return Err(ReferenceError::Tag {
                input: s.to_string(),
                tag: tag.to_string(),
            });
        }

        let registry = match registry {
            LEGACY_DEFAULT_REGISTRY => DEFAULT_REGISTRY,
            other => other,
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        if repository.len() > NAME_MAX {
            return Err(ReferenceError::NameTooLong(s.to_string()));
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with its port if any: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What the registry API takes after `/manifests/`: the digest when pinned, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// `registry/repository`: `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as docker prints it: Docker Hub's registry and `library/` are left out, except
    /// where the short name would read as another registry's (`docker.io/example.com/app`
    /// stays whole: `example.com/app` names example.com). Docker shortens that one too, and
    /// `save` + `load` then renamed the image.
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        let short = match self.repository.strip_prefix(OFFICIAL_PREFIX) {
            Some(short) if !short.contains('/') => short,
            _ => &self.repository,
        };
        match split_registry(short) {
            (DEFAULT_REGISTRY, _) => short.to_string(),
            _ => self.name(),
        }
    }

    /// The whole reference as docker prints it: `alpine:latest`, `x/y@sha256:…`.
    pub fn familiar(&self) -> String {
        self.with_suffix(self.familiar_name())
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::Tag {
                input: format!("{}:{tag}", self.name()),
                tag: tag.to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.name_only()
        })
    }

    /// The same repository pinned to `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.name_only()
        }
    }

    /// The same repository and tag (`latest` when there was none), unpinned.
    pub fn without_digest(&self) -> Reference {
        Reference {
            tag: Some(self.tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_string())),
            ..self.name_only()
        }
    }

    fn name_only(&self) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: None,
        }
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }
}

/// docker's `splitDockerDomain`: the first of several components names a registry when it looks
/// like a host (a `.` or `:` in it, `localhost`, or an upper-case letter, which a namespace may
/// not have: `LOCALDOMAIN/debian`); otherwise the name is on Docker Hub.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod upstream_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        // (input, registry, repository, tag)
        let cases = [
            ("alpine", "docker.io", "library/alpine", "latest"),
            ("alpine:3.19", "docker.io", "library/alpine", "3.19"),
            ("library/alpine:3.19", "docker.io", "library/alpine", "3.19"),
            ("docker.io/x/y", "docker.io", "x/y", "latest"),
            ("docker.io/alpine", "docker.io", "library/alpine", "latest"),
            (
                "index.docker.io/alpine",
                "docker.io",
                "library/alpine",
                "latest",
            ),
            ("index.docker.io/x/y:1", "docker.io", "x/y", "1"),
            (
                "registry.example.com:5000/a/b/c:tag",
                "registry.example.com:5000",
                "a/b/c",
                "tag",
            ),
            ("localhost/x", "localhost", "x", "latest"),
            ("localhost:5000/x", "localhost:5000", "x", "latest"),
            ("[::1]:5000/x", "[::1]:5000", "x", "latest"),
            ("[::1]/x:v1", "[::1]", "x", "v1"),
            ("ghcr.io/o/r", "ghcr.io", "o/r", "latest"),
            // A bare `localhost:5000` is Docker Hub's `library/localhost` at tag `5000`.
            ("localhost:5000", "docker.io", "library/localhost", "5000"),
            ("foo/bar", "docker.io", "foo/bar", "latest"),
            (
                "a_b-c__d---e/f.g",
                "docker.io",
                "a_b-c__d---e/f.g",
                "latest",
            ),
        ];
        for (input, registry, repository, tag) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.tag(), Some(tag), "{input}");
            assert_eq!(r.digest(), None, "{input}");
            assert_eq!(r.tag_or_digest(), tag, "{input}");
        }
    }

    #[test]
    fn digests_with_and_without_tag() {
        let by_digest = Reference::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(by_digest.tag(), None);
        assert_eq!(by_digest.digest().unwrap().to_string(), D);
        assert_eq!(
            by_digest.to_string(),
            format!("docker.io/library/alpine@{D}")
        );
        assert_eq!(by_digest.tag_or_digest(), D);

        let both = Reference::parse(&format!("alpine:3@{D}")).unwrap();
        assert_eq!(both.tag(), Some("3"));
        assert_eq!(both.to_string(), format!("docker.io/library/alpine:3@{D}"));

        let local = Reference::parse(&format!("localhost:5000/a@{D}")).unwrap();
        assert_eq!(local.to_string(), format!("localhost:5000/a@{D}"));
    }

    #[test]
    fn display_is_the_full_normalised_form_and_round_trips() {
        let inputs = [
            "alpine".to_string(),
            "library/alpine:3.19".to_string(),
            "docker.io/x/y".to_string(),
            "registry.example.com:5000/a/b/c:tag".to_string(),
            "localhost/x".to_string(),
            "localhost:5000/x".to_string(),
            "[::1]:5000/x".to_string(),
            format!("name@{D}"),
            format!("name:tag@{D}"),
        ];
        assert_eq!(
            Reference::parse("alpine").unwrap().to_string(),
            "docker.io/library/alpine:latest"
        );
        for input in &inputs {
            let r = Reference::parse(input).unwrap();
            let again = Reference::parse(&r.to_string()).unwrap();
            assert_eq!(again, r, "{input}");
            assert_eq!(again.to_string(), r.to_string());
            assert_eq!(Reference::parse(&r.familiar()).unwrap(), r, "{input}");
            assert_eq!(input.parse::<Reference>().unwrap(), r);
        }
    }

    #[test]
    fn familiar_forms() {
        let cases = [
            ("alpine", "alpine", "alpine:latest"),
            ("docker.io/library/alpine:3", "alpine", "alpine:3"),
            ("x/y", "x/y", "x/y:latest"),
            ("docker.io/library/a/b", "library/a/b", "library/a/b:latest"),
            (
                "localhost:5000/x",
                "localhost:5000/x",
                "localhost:5000/x:latest",
            ),
            ("ghcr.io/o/r:1", "ghcr.io/o/r", "ghcr.io/o/r:1"),
        ];
        for (input, name, full) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.familiar_name(), name, "{input}");
            assert_eq!(r.familiar(), full, "{input}");
        }
        let pinned = Reference::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(pinned.familiar(), format!("alpine@{D}"));
        assert_eq!(pinned.name(), "docker.io/library/alpine");
    }

    /// Found by the `reference` fuzz target (fuzz/regressions/reference/): a Docker Hub path whose
    /// first component looks like a host printed without `docker.io/`, which parses back as that
    /// host's repository (so `save` wrote a RepoTag that `load` read as another image).
    #[test]
    fn familiar_form_of_a_hub_path_that_looks_like_a_host_parses_back() {
        for input in [
            "docker.io/xmtjecker.io/xmceea/ty",
            "docker.io/localhost/x:1",
            "docker.io/a.b/c",
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.registry(), "docker.io", "{input}");
            assert!(r.familiar().starts_with("docker.io/"), "{input}");
            assert_eq!(Reference::parse(&r.familiar()).unwrap(), r, "{input}");
        }
        // A path that cannot be a host keeps the short form.
        let r = Reference::parse("docker.io/a_b/c").unwrap();
        assert_eq!(r.familiar(), "a_b/c:latest");
    }

    #[test]
    fn derived_references() {
        let digest = Digest::parse(D).unwrap();
        let r = Reference::parse("localhost:5000/a:1").unwrap();

        let pinned = r.with_digest(digest.clone());
        assert_eq!(pinned.to_string(), format!("localhost:5000/a@{D}"));
        assert_eq!(
            pinned.without_digest().to_string(),
            "localhost:5000/a:latest"
        );

        let both = Reference::parse(&format!("a:1@{D}")).unwrap();
        assert_eq!(both.without_digest().to_string(), "docker.io/library/a:1");
        assert_eq!(
            both.with_tag("2").unwrap().to_string(),
            "docker.io/library/a:2"
        );

        assert!(matches!(
            r.with_tag(".bad"),
            Err(ReferenceError::Tag { tag, .. }) if tag == ".bad"
        ));
    }

    #[test]
    fn tags() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x.Y-1"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag("-x"));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag("a+b"));
        assert!(!is_valid_tag("é"));
    }

    #[test]
    fn errors_name_the_input() {
        use ReferenceError as E;
        assert_eq!(Reference::parse(""), Err(E::Empty));
        assert_eq!(
            Reference::parse("Alpine"),
            Err(E::Uppercase("Alpine".into()))
        );
        assert_eq!(
            Reference::parse("Foo/Bar:1"),
            Err(E::Uppercase("Foo/Bar:1".into()))
        );
        // Only the repository must be lower-case: registries and tags may not be, and an
        // upper-case first component is a registry (distribution/reference's rule).
        assert!(Reference::parse("Registry.Example.com/x:V1").is_ok());
        assert_eq!(Reference::parse("Foo/bar:1").unwrap().registry(), "Foo");
        assert_eq!(
            Reference::parse("Foo_bar/x"),
            Err(E::Uppercase("Foo_bar/x".into()))
        );
        assert!(matches!(
            Reference::parse("ghcr.io/Org/x"),
            Err(E::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("alpine:-x"),
            Err(E::Tag { tag, .. }) if tag == "-x"
        ));
        assert!(matches!(Reference::parse("alpine:"), Err(E::Tag { .. })));
        assert!(matches!(
            Reference::parse(&format!("alpine:{}", "a".repeat(129))),
            Err(E::Tag { .. })
        ));
        let bad_digest = Reference::parse("alpine@sha256:abc").unwrap_err();
        assert!(matches!(
            &bad_digest,
            E::Digest {
                source: DigestError::BadEncoded(..),
                ..
            }
        ));
        assert_eq!(
            bad_digest.to_string(),
            "invalid reference `alpine@sha256:abc`: bad digest"
        );
        assert!(matches!(
            Reference::parse("alpine@md5:abc"),
            Err(E::Digest {
                source: DigestError::UnsupportedAlgorithm(..),
                ..
            })
        ));
        assert!(matches!(
            Reference::parse(&format!("a@{D}@{D}")),
            Err(E::Digest { .. })
        ));

        // The limit is on the path, `library/` included, whatever the registry's length.
        let long = format!("x/{}", "a".repeat(254));
        assert!(matches!(Reference::parse(&long), Err(E::NameTooLong(_))));
        let fits = format!("x/{}", "a".repeat(253));
        assert!(Reference::parse(&fits).is_ok());
        let official = "a".repeat(255 - "library/".len());
        assert!(Reference::parse(&official).is_ok());
        assert!(matches!(
            Reference::parse(&format!("{official}a")),
            Err(E::NameTooLong(_))
        ));
        let long_registry = format!("{}.example/{}", "r".repeat(100), "a".repeat(255));
        assert!(Reference::parse(&long_registry).is_ok());

        for bad in [
            "a//b", "/a", "a/", "-a", "a-", "a..b", "a___b", "a b", "a/b!c", "a$",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(E::Component { .. })),
                "{bad}: {:?}",
                Reference::parse(bad)
            );
        }
        assert!(matches!(
            Reference::parse("-bad.com/x"),
            Err(E::Registry { registry, .. }) if registry == "-bad.com"
        ));
        assert!(matches!(
            Reference::parse("host:port/x"),
            Err(E::Registry { .. })
        ));
        let id = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Reference::parse(id), Err(E::ImageId(id.into())));

        let e = Reference::parse("a b").unwrap_err().to_string();
        assert!(e.starts_with("invalid reference `a b`: "), "{e}");
    }

    #[test]
    fn serde_as_string() {
        let r = Reference::parse("alpine:3").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/alpine:3\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Reference>("\"UPPER\"").is_err());
    }

    #[test]
    fn ordering_and_hashing_follow_the_fields() {
        let a = Reference::parse("a").unwrap();
        let b = Reference::parse("b").unwrap();
        assert!(a < b);
        let set: std::collections::HashSet<_> = [a.clone(), a.clone(), b].into_iter().collect();
        assert_eq!(set.len(), 2);
    }
}
