//! What the user can do about a failure: the [`Hint`] trait, implemented next to each error type
//! whose cases a user can act on, and [`of`], which finds the hint of one link of an error chain.
//!
//! Each error enum answers for its own variants in its own module; an `#[error(transparent)]`
//! variant delegates to the error it wraps (thiserror forwards `source()` past a transparent
//! wrapper, so the wrapped error never shows in the chain: only the wrapper can answer for it).
//! `cli::errors` walks `err.chain()` and prints the first hint a link gives (its own `UserError`
//! carries the hint a command chose).
//!
//! A link of the chain is a `&dyn Error`, and stable Rust cannot ask a `dyn Error` for another
//! trait (`Error::provide` is unstable), so [`of`] holds the one table of the error types that
//! implement [`Hint`] and tries each downcast once. The table names the types and nothing else:
//! what a hint says lives with its error. A new error type with hints adds one line here, and
//! `every_hint_type_is_in_the_table` below is the reminder. Modules depend on the trait only;
//! the table is the one place that looks back up at their types, in place of `cli`'s former
//! downcasts.

use std::error::Error;

/// A hint for the user: what to do about this error, when there is something to do.
pub trait Hint {
    fn hint(&self) -> Option<String>;
}

/// The hint of one link of an error chain, if its type has hints and this case has one.
pub fn of(cause: &(dyn Error + 'static)) -> Option<String> {
    find(cause)?.hint()
}

/// Each type is looked for as itself, boxed and shared: a `#[source]` field of type `Box<E>` or
/// `Arc<E>` shows in the chain as the box.
macro_rules! table {
    ($($t:ty),* $(,)?) => {
        fn find<'a>(cause: &'a (dyn Error + 'static)) -> Option<&'a dyn Hint> {
            $(
                if let Some(e) = cause.downcast_ref::<$t>() {
                    return Some(e);
                }
                if let Some(e) = cause.downcast_ref::<Box<$t>>() {
                    return Some(&**e);
                }
                if let Some(e) = cause.downcast_ref::<std::sync::Arc<$t>>() {
                    return Some(&**e);
                }
            )*
            None
        }

        #[cfg(test)]
        const TABLE: &[&str] = &[$(stringify!($t)),*];
    };
}

table![
    crate::archive::ArchiveError,
    crate::attest::AttestError,
    crate::attest::KeyError,
    crate::bake::BakeError,
    crate::binfmt::BinfmtError,
    crate::builder::BuildError,
    crate::builder::StepError,
    crate::builder::cache_remote::CacheError,
    crate::builder::cache_remote::SpecError,
    crate::builder::run::RunError,
    crate::builder::secrets::SecretError,
    crate::builder::copy::CopyError,
    crate::builder::tree::TreeError,
    crate::builder::layer::LayerError,
    crate::content::ContentError,
    crate::dockerfile::plan::EntitlementError,
    crate::manifest::ManifestError,
    crate::oci::OciError,
    crate::ops::OpsError,
    crate::platform::PlatformError,
    crate::reference::ReferenceError,
    crate::registry::RegistryError,
    crate::runtime::RuntimeError,
    crate::runtime::network::NetworkError,
    crate::runtime::ports::PortError,
    crate::runtime::resources::ResourceError,
    crate::runtime::logs::LogError,
    crate::runtime::spec::security::SecurityError,
    crate::space::NoSpace,
    crate::store::StoreError,
    crate::userns::UsernsError,
    crate::verify::VerifyError,
    std::io::Error,
];

#[cfg(test)]
mod tests {
    //! How hints are found along a chain, and source scans for what the compiler cannot check
    //! about error types.

    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use crate::archive::ArchiveError;
    use crate::builder::run::RunError;
    use crate::builder::{BuildError, StepError};
    use crate::content::ContentError;
    use crate::manifest::ManifestError;
    use crate::registry::RegistryError;
    use crate::runtime::RuntimeError;
    use crate::space::NoSpace;
    use crate::store::StoreError;
    use crate::verify::VerifyError;

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn sources() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                let name = p.strip_prefix(root).unwrap().display().to_string();
                (name, text)
            })
            .collect()
    }

    /// The index just past the bracket that closes the one at `open`, string literals skipped.
    fn close(s: &[u8], open: usize) -> usize {
        let mut depth = 0usize;
        let mut i = open;
        while i < s.len() {
            match s[i] {
                b'"' => {
                    i += 1;
                    while i < s.len() && s[i] != b'"' {
                        i += if s[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced brackets");
    }

    /// The fields of a variant's (or struct's) body, split at top-level commas.
    fn fields(body: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0i32, 0);
        for (i, c) in body.char_indices() {
            match c {
                '(' | '[' | '{' | '<' => depth += 1,
                ')' | ']' | '}' | '>' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(&body[start..]);
        out.retain(|f| !f.trim().is_empty());
        out
    }

    /// The names a format string and its arguments interpolate: `{name}`, `{0:?}`, `.name`.
    fn interpolated(args: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let Some(open) = args.find('"') else {
            return names;
        };
        let bytes = args.as_bytes();
        let mut end = open + 1;
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let format = &args[open + 1..end];
        let mut rest = format;
        while let Some(i) = rest.find('{') {
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('{') {
                rest = r;
                continue;
            }
            let stop = rest.find(['}', ':']).unwrap_or(rest.len());
            names.insert(rest[..stop].trim().to_string());
        }
        let extra = &args[end + 1..];
        for (i, _) in extra.match_indices('.') {
            let name: String = extra[i + 1..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
        names
    }

    /// Defect 6 of issue 10: a variant that prints its source and returns it from `source()`
    /// says it twice, once in `error:` and again in `caused by:`.
    #[test]
    fn no_error_variant_prints_its_source() {
        let needle = concat!("#[", "error(");
        let mut offenders = Vec::new();
        for (file, text) in sources() {
            let s = text.as_bytes();
            for (at, _) in text.match_indices(needle) {
                let args_end = close(s, at + needle.len() - 1);
                let args = &text[at + needle.len()..args_end - 1];
                if args.trim() == "transparent" {
                    continue;
                }
                // The variant's (or struct's) body: past `]`, attributes and comments, up to
                // its brackets; a unit variant has none.
                let mut i = args_end + 1;
                let body = loop {
                    match s[i] {
                        b'#' => i = close(s, i + 1),
                        b'/' if s[i + 1] == b'/' => {
                            i += text[i..].find('\n').unwrap();
                        }
                        b'(' | b'{' => break &text[i + 1..close(s, i) - 1],
                        b',' | b'}' | b';' => break "",
                        _ => i += 1,
                    }
                };
                let fields: Vec<(String, bool, bool)> = fields(body)
                    .iter()
                    .enumerate()
                    .map(|(n, field)| {
                        let marked = field.contains("#[from]") || field.contains("#[source]");
                        let mut decl = field.trim();
                        while decl.starts_with("#[") || decl.starts_with("//") {
                            let skip = if decl.starts_with("//") {
                                decl.find('\n').unwrap_or(decl.len())
                            } else {
                                close(decl.as_bytes(), 1)
                            };
                            decl = decl[skip..].trim_start();
                        }
                        let decl = decl.strip_prefix("pub ").unwrap_or(decl).trim_start();
                        let name = match decl.split_once(':') {
                            Some((name, ty))
                                if !ty.starts_with(':')
                                    && name
                                        .trim()
                                        .chars()
                                        .all(|c| c.is_alphanumeric() || c == '_') =>
                            {
                                name.trim().to_string()
                            }
                            _ => n.to_string(),
                        };
                        let implicit = name == "source";
                        (name, marked, implicit)
                    })
                    .collect();
                let any_marked = fields.iter().any(|f| f.1);
                let names = interpolated(args);
                for (name, marked, implicit) in &fields {
                    if (*marked || (!any_marked && *implicit)) && names.contains(name) {
                        let line = text[..at].lines().count() + 1;
                        offenders.push(format!("{file}:{line}: `{name}`"));
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "these error messages print the source they also return from `source()` (so \
             `caused by:` repeats it); leave it out of the message:\n{}",
            offenders.join("\n")
        );
    }

    /// The first hint along an error's chain, as `cli::errors` finds it.
    fn first_hint(e: &(dyn std::error::Error + 'static)) -> Option<String> {
        std::iter::successors(Some(e), |e| e.source()).find_map(super::of)
    }

    const IMAGES: &str = "`manifold images` lists the images in the store";

    fn not_found() -> StoreError {
        StoreError::ImageNotFound("x".into())
    }

    /// Transparent wrappers hide what they wrap from `source()`: each passes the question on.
    #[test]
    fn transparent_wrappers_give_the_hint_of_what_they_wrap() {
        let wrapped: Vec<Box<dyn std::error::Error + 'static>> = vec![
            Box::new(ArchiveError::Store(not_found())),
            Box::new(RuntimeError::Store(not_found())),
            Box::new(ManifestError::Store(not_found())),
            Box::new(BuildError::Store(not_found())),
            Box::new(BuildError::Shared(Arc::new(BuildError::Store(not_found())))),
            Box::new(VerifyError::Store(not_found())),
            Box::new(StepError::Run(RunError::Store(not_found()))),
            Box::new(StoreError::Content(ContentError::Backend(Box::new(
                not_found(),
            )))),
        ];
        for e in &wrapped {
            assert_eq!(first_hint(e.as_ref()).as_deref(), Some(IMAGES), "{e:?}");
        }
        let registry =
            ManifestError::Content(ContentError::Transient(Box::new(RegistryError::NotFound {
                registry: "r".into(),
                what: "w".into(),
            })));
        assert!(first_hint(&registry).unwrap().contains("manifold tags"));
    }

    /// A cause that is boxed or shared is found in the chain as the box.
    #[test]
    fn boxed_and_shared_causes_give_their_hints() {
        let step = BuildError::Step {
            file: "Dockerfile".into(),
            line: 2,
            platform: "linux/amd64".into(),
            instruction: "RUN true".into(),
            source: Box::new(StepError::Store(not_found())),
        };
        assert_eq!(first_hint(&step).as_deref(), Some(IMAGES));
        let run = RunError::NoRuntime(Arc::new(RuntimeError::NotRoot));
        assert_eq!(first_hint(&run).as_deref(), Some("run it with sudo"));
        // The outermost hint wins.
        let run = StepError::Run(RunError::NotRoot);
        assert_eq!(first_hint(&run).as_deref(), Some("run the build with sudo"));
    }

    #[test]
    fn a_full_disk_is_hinted_whoever_met_it() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = ContentError::Io(full);
        assert_eq!(first_hint(&e).as_deref(), Some(NoSpace::HINT));
        let other = ContentError::Io(std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(first_hint(&other), None);
    }

    /// [`super::of`] finds only the types in its table: each type with an `impl Hint` must be
    /// there.
    #[test]
    fn every_hint_type_is_in_the_table() {
        let listed: BTreeSet<String> = super::TABLE
            .iter()
            .map(|t| t.rsplit("::").next().unwrap().trim().to_string())
            .collect();
        let mut missing = Vec::new();
        for (file, text) in sources() {
            for line in text.lines() {
                let line = line.trim();
                let Some(rest) = line
                    .strip_prefix("impl Hint for ")
                    .or_else(|| line.strip_prefix("impl crate::hint::Hint for "))
                else {
                    continue;
                };
                let ty = rest.trim_end_matches('{').trim();
                let ty = ty.rsplit("::").next().unwrap();
                if !listed.contains(ty) {
                    missing.push(format!("{file}: {ty}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add these to the table in src/hint.rs:\n{}",
            missing.join("\n")
        );
    }
}
