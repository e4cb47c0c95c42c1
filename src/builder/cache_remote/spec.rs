//! `--cache-to` and `--cache-from` as buildx writes them: a CSV of `key=value` fields (Go's
//! `encoding/csv`: a field may be double-quoted, `""` inside quotes is one quote), or a bare
//! reference meaning `type=registry,ref=REF`. Bake files give the same fields as a mapping.

use std::path::PathBuf;

use crate::reference::Reference;

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A tag (or digest, for reading) in a registry repository.
    Registry(Reference),
    /// An OCI image layout directory; the cache manifest is the one named `tag` in its
    /// index.json.
    Local { dir: PathBuf, tag: String },
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(r) => write!(f, "{}", r.familiar()),
            CacheLocation::Local { dir, tag } => write!(f, "{}:{tag}", dir.display()),
        }
    }
}

/// Which steps an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The steps of the stages the final images are made of (their bases included).
    #[default]
    Min,
    /// The steps of every stage that ran or came from the cache.
    Max,
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFrom {
    pub location: CacheLocation,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    pub location: CacheLocation,
    pub mode: Mode,
    /// A failed export is a warning, not a failed build.
    pub ignore_error: bool,
    /// Keep the newest records whose layers fit in this many bytes.
    pub max_size: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("`{flag}`: unknown key `{key}`")]
    UnknownKey { flag: &'static str, key: String },
    #[error("`{flag}`: `{key}={value}`: {why}")]
    BadValue {
        flag: &'static str,
        key: String,
        value: String,
        why: String,
    },
    #[error("`{flag}`: `{field}` is not `key=value`")]
    NotKeyValue { flag: &'static str, field: String },
    #[error("`{flag}`: cache type `{kind}` is not supported")]
    UnsupportedType { flag: &'static str, kind: String },
    #[error("`{flag}`: `type={kind}` needs `{key}=`")]
    Missing {
        flag: &'static str,
        kind: String,
        key: &'static str,
    },
    #[error("`{flag}`: unterminated quote in `{spec}`")]
    Quote { flag: &'static str, spec: String },
    #[error("`{flag}` is empty")]
    Empty { flag: &'static str },
}

impl crate::hint::Hint for SpecError {
    /// What to write instead.
    fn hint(&self) -> Option<String> {
        Some(match self {
            SpecError::UnsupportedType { .. } => {
                "manifold keeps build caches in registries (`type=registry,ref=REGISTRY/REPO:TAG`) and OCI layout directories (`type=local,dest=DIR` / `type=local,src=DIR`)"
            }
            _ => {
                "write `type=registry,ref=REGISTRY/REPO:TAG[,mode=min|max][,ignore-error=true][,max-size=2GB]` or `type=local,dest=DIR` (`src=DIR` for --cache-from)"
            }
        }.into())
    }
}

const FROM: &str = "--cache-from";
const TO: &str = "--cache-to";

/// The fields of a CSV line (Go's `encoding/csv`, one record, comma separated).
pub fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
            // After the closing quote: the separator or the end.
            match chars.next() {
                None => {
                    out.push(field);
                    return Some(out);
                }
                Some(',') => out.push(field),
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Some(out);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}

/// The `key=value` pairs of a spec; a lone field without `=` is a registry reference.
fn pairs(flag: &'static str, spec: &str) -> Result<Vec<(String, String)>, SpecError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(SpecError::Empty { flag });
    }
    let fields = csv_fields(spec).ok_or_else(|| SpecError::Quote {
        flag,
        spec: spec.to_string(),
    })?;
    if let [only] = fields.as_slice()
        && !only.contains('=')
    {
        return Ok(vec![
            ("type".into(), "registry".into()),
            ("ref".into(), only.trim().to_string()),
        ]);
    }
    fields
        .iter()
        .map(|f| f.trim())
        .filter(|f| !f.is_empty())
        .map(|f| match f.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_lowercase(), v.trim().to_string())),
            None => Err(SpecError::NotKeyValue {
                flag,
                field: f.to_string(),
            }),
        })
        .collect()
}

fn bad(flag: &'static str, key: &str, value: &str, why: impl Into<String>) -> SpecError {
    SpecError::BadValue {
        flag,
        key: key.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

fn boolean(flag: &'static str, key: &str, value: &str) -> Result<bool, SpecError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(flag, key, value, "use true or false")),
    }
}

/// `2GB`, `500MiB`, `1048576`: decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units,
/// case-insensitive, bytes without one.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn location(
    flag: &'static str,
    kind: &str,
    reference: Option<String>,
    dir: Option<(&'static str, String)>,
    tag: Option<String>,
) -> Result<CacheLocation, SpecError> {
    match kind {
        "registry" => {
            let r = reference.ok_or_else(|| SpecError::Missing {
                flag,
                kind: kind.into(),
                key: "ref",
            })?;
            let parsed = Reference::parse(&r).map_err(|e| bad(flag, "ref", &r, e.to_string()))?;
            if flag == TO && parsed.digest().is_some() {
                return Err(bad(
                    flag,
                    "ref",
                    &r,
                    "a cache is written to a tag, not a digest",
                ));
            }
            Ok(CacheLocation::Registry(parsed))
        }
        "local" => {
            let key = if flag == TO { "dest" } else { "src" };
            let dir = match dir {
                Some((k, d)) if k == key && !d.is_empty() => d,
                _ => {
                    return Err(SpecError::Missing {
                        flag,
                        kind: kind.into(),
                        key,
                    });
                }
            };
            let tag = tag.unwrap_or_else(|| "latest".into());
            if !crate::reference::is_valid_tag(&tag) {
                return Err(bad(flag, "tag", &tag, "not a valid tag"));
            }
            Ok(CacheLocation::Local {
                dir: PathBuf::from(dir),
                tag,
            })
        }
        other => Err(SpecError::UnsupportedType {
            flag,
            kind: other.to_string(),
        }),
    }
}

impl CacheFrom {
    pub fn parse(spec: &str) -> Result<CacheFrom, SpecError> {
        CacheFrom::from_pairs(pairs(FROM, spec)?)
    }

    /// From `key=value` pairs (a bake file's mapping form).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<CacheFrom, SpecError> {
        let flag = FROM;
        let (mut kind, mut reference, mut dir, mut tag) = (None, None, None, None);
        for (k, v) in pairs {
            match k.as_str() {
                "type" => kind = Some(v),
                "ref" => reference = Some(v),
                "src" => dir = Some(("src", v)),
                "dest" => dir = Some(("dest", v)),
                "tag" => tag = Some(v),
                // buildx's, meaningful to its own cache formats only.
                "digest" | "image-manifest" | "oci-mediatypes" => {}
                _ => return Err(SpecError::UnknownKey { flag, key: k }),
            }
        }
        let kind = kind.unwrap_or_else(|| "registry".into());
        Ok(CacheFrom {
            location: location(flag, &kind, reference, dir, tag)?,
        })
    }
}

impl CacheTo {
    pub fn parse(spec: &str) -> Result<CacheTo, SpecError> {
        CacheTo::from_pairs(pairs(TO, spec)?)
    }

    /// From `key=value` pairs (a bake file's mapping form).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<CacheTo, SpecError> {
        let flag = TO;
        let (mut kind, mut reference, mut dir, mut tag) = (None, None, None, None);
        let mut mode = Mode::Min;
        let mut ignore_error = false;
        let mut max_size = None;
        for (k, v) in pairs {
            match k.as_str() {
                "type" => kind = Some(v),
                "ref" => reference = Some(v),
                "dest" => dir = Some(("dest", v)),
                "src" => dir = Some(("src", v)),
                "tag" => tag = Some(v),
                "mode" => {
                    mode = match v.as_str() {
                        "min" => Mode::Min,
                        "max" => Mode::Max,
                        _ => return Err(bad(flag, &k, &v, "use min or max")),
                    }
                }
                "ignore-error" => ignore_error = boolean(flag, &k, &v)?,
                "max-size" => {
                    max_size = Some(parse_size(&v).ok_or_else(|| {
                        bad(
                            flag,
                            &k,
                            &v,
                            "a size such as 2GB, 500MiB or a number of bytes",
                        )
                    })?)
                }
                // buildx's: manifold always writes an OCI image manifest.
                "image-manifest" | "oci-mediatypes" => {
                    boolean(flag, &k, &v)?;
                }
                _ => return Err(SpecError::UnknownKey { flag, key: k }),
            }
        }
        let kind = kind.unwrap_or_else(|| "registry".into());
        Ok(CacheTo {
            location: location(flag, &kind, reference, dir, tag)?,
            mode,
            ignore_error,
            max_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_like_go() {
        assert_eq!(
            csv_fields("type=local,dest=/a").unwrap(),
            vec!["type=local", "dest=/a"]
        );
        assert_eq!(
            csv_fields(r#"type=local,"dest=/a,b""#).unwrap(),
            vec!["type=local", "dest=/a,b"]
        );
        assert_eq!(csv_fields(r#""a""b",c"#).unwrap(), vec![r#"a"b"#, "c"]);
        assert_eq!(csv_fields("a,,b").unwrap(), vec!["a", "", "b"]);
        assert!(csv_fields(r#""open"#).is_none());
        assert!(csv_fields(r#""x"y"#).is_none());
    }

    #[test]
    fn registry_specs() {
        let t = CacheTo::parse(
            "type=registry,ref=127.0.0.1:5000/app:cache,mode=max,ignore-error=true,max-size=2GB",
        )
        .unwrap();
        assert_eq!(
            t.location,
            CacheLocation::Registry(Reference::parse("127.0.0.1:5000/app:cache").unwrap())
        );
        assert_eq!(t.mode, Mode::Max);
        assert!(t.ignore_error);
        assert_eq!(t.max_size, Some(2_000_000_000));
        // buildx's short form: a bare reference.
        let f = CacheFrom::parse("127.0.0.1:5000/app:cache").unwrap();
        assert!(matches!(f.location, CacheLocation::Registry(_)));
        let d = CacheTo::parse("ref=r.example/a:b").unwrap();
        assert_eq!(d.mode, Mode::Min);
        assert!(!d.ignore_error);
    }

    #[test]
    fn local_specs() {
        let t = CacheTo::parse("type=local,dest=/tmp/c").unwrap();
        assert_eq!(
            t.location,
            CacheLocation::Local {
                dir: "/tmp/c".into(),
                tag: "latest".into()
            }
        );
        let f = CacheFrom::parse(r#"type=local,"src=/tmp/a,b",tag=v1"#).unwrap();
        assert_eq!(
            f.location,
            CacheLocation::Local {
                dir: "/tmp/a,b".into(),
                tag: "v1".into()
            }
        );
    }

    #[test]
    fn errors_name_the_bad_key() {
        let e = CacheTo::parse("type=registry,ref=a/b:c,mood=max").unwrap_err();
        assert_eq!(e.to_string(), "`--cache-to`: unknown key `mood`");
        let e = CacheTo::parse("type=registry,ref=a/b:c,mode=all").unwrap_err();
        assert_eq!(e.to_string(), "`--cache-to`: `mode=all`: use min or max");
        let e = CacheTo::parse("type=registry,ref=a/b:c,max-size=lots").unwrap_err();
        assert!(e.to_string().contains("`max-size=lots`"), "{e}");
        let e = CacheTo::parse("type=registry").unwrap_err();
        assert_eq!(e.to_string(), "`--cache-to`: `type=registry` needs `ref=`");
        let e = CacheTo::parse("type=local,src=/x").unwrap_err();
        assert_eq!(e.to_string(), "`--cache-to`: `type=local` needs `dest=`");
        let e = CacheFrom::parse("type=gha").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`--cache-from`: cache type `gha` is not supported"
        );
        let e = CacheFrom::parse("type=registry,ref=a/UPPER").unwrap_err();
        assert!(
            e.to_string().starts_with("`--cache-from`: `ref=a/UPPER`: "),
            "{e}"
        );
        let e = CacheTo::parse("type=registry,ref=a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000").unwrap_err();
        assert!(e.to_string().contains("not a digest"), "{e}");
        assert_eq!(
            CacheTo::parse("type=local,dest").unwrap_err().to_string(),
            "`--cache-to`: `dest` is not `key=value`"
        );
        assert_eq!(
            CacheFrom::parse("  ").unwrap_err().to_string(),
            "`--cache-from` is empty"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("500mb"), Some(500_000_000));
        assert_eq!(parse_size("1.5KiB"), Some(1536));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("12XB"), None);
        assert_eq!(parse_size(""), None);
    }
}
