//! Which image (and which of its platforms) `run` and `verify` act on, and the one place where
//! an image the store lacks is fetched.

use anyhow::Context;

use super::Settings;
use super::errors::user_error;
use crate::content::{self, ContentError, CopyOptions, Platforms, Sink, Source};
use crate::oci::{Descriptor, Digest, Document, ImageConfig, Manifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{Resolved, Store, StoreError};

/// What `--platform` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    /// The host's (by the matcher's fallbacks) for an index; a lone manifest as it is.
    Default,
    /// Each of these (one or more).
    These(Vec<Platform>),
    /// Every platform of the image.
    All,
}

impl PlatformChoice {
    pub fn parse(arg: Option<&str>) -> anyhow::Result<PlatformChoice> {
        Ok(match arg.map(str::trim) {
            None | Some("") => PlatformChoice::Default,
            Some(a) if a.eq_ignore_ascii_case("all") => PlatformChoice::All,
            Some(a) => PlatformChoice::These(Platform::parse_list(a)?),
        })
    }

    /// More than one platform: a matrix run.
    pub fn is_matrix(&self) -> bool {
        match self {
            PlatformChoice::All => true,
            PlatformChoice::These(ps) => ps.len() > 1,
            PlatformChoice::Default => false,
        }
    }
}

/// One platform's image, with its documents read.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The image as the user named it.
    pub image: String,
    /// What the name resolved to (an index or a manifest).
    pub top: Descriptor,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// The platform the image declares for this manifest.
    pub platform: Platform,
}

/// `linux/arm64` rather than `linux/arm64/v8` (the default variant, as docker prints it);
/// other platforms as normalised.
pub fn short_platform(p: &Platform) -> String {
    let mut n = p.normalized();
    if n.architecture == "arm64" && n.variant.as_deref() == Some("v8") {
        n.variant = None;
    }
    n.to_string()
}

/// Resolve `image` in the store, pulling what is missing (the image, or the platforms of it a
/// sparse index lacks), and pick the platforms.
pub fn select(
    settings: &Settings,
    store: &Store,
    image: &str,
    choice: &PlatformChoice,
) -> anyhow::Result<Vec<Selected>> {
    let resolved = match store.lookup(image) {
        Ok(r) => r,
        Err(StoreError::ImageNotFound(_)) => fetch_missing(settings, store, image, choice)?,
        Err(e) => return Err(e.into()),
    };
    match pick(store, image, &resolved.descriptor, choice)? {
        Picked::Complete(selected) => Ok(selected),
        Picked::Missing(platforms) => {
            let missing = if platforms.is_empty() {
                choice.clone()
            } else {
                PlatformChoice::These(platforms)
            };
            let resolved = fetch_missing(settings, store, image, &missing)?;
            match pick(store, image, &resolved.descriptor, choice)? {
                Picked::Complete(selected) => Ok(selected),
                Picked::Missing(_) => Err(user_error(
                    format!("`{image}` still lacks blobs after the pull"),
                    Some("`manifold inspect` shows what the store holds of it"),
                )),
            }
        }
    }
}

enum Picked {
    Complete(Vec<Selected>),
    /// These platforms' blobs (none listed: the image's own) are not all in the store.
    Missing(Vec<Platform>),
}

fn pick(
    store: &Store,
    image: &str,
    top: &Descriptor,
    choice: &PlatformChoice,
) -> anyhow::Result<Picked> {
    let document = store
        .read_document(top)
        .with_context(|| format!("cannot read image `{image}`"))?;
    let mut out = Vec::new();
    match document.value {
        Document::Index(index) => {
            let entries: Vec<&Descriptor> = index
                .images()
                .filter(|d| d.is_manifest() && d.platform.is_some())
                .collect();
            let available: Vec<Platform> =
                entries.iter().filter_map(|d| d.platform.clone()).collect();
            let no_match = |wanted: &Platform| -> anyhow::Error {
                no_platform(ContentError::NoMatchingPlatform {
                    reference: image.to_string(),
                    wanted: short_platform(wanted),
                    available: available.clone(),
                })
            };
            let best = |wanted: &Platform| -> anyhow::Result<&Descriptor> {
                wanted
                    .matcher()
                    .best(entries.iter().filter_map(|d| d.platform.as_ref()))
                    .map(|i| entries[i])
                    .ok_or_else(|| no_match(wanted))
            };
            let chosen: Vec<&Descriptor> = match choice {
                PlatformChoice::Default => vec![best(&Platform::host())?],
                PlatformChoice::These(ps) => {
                    let mut v: Vec<&Descriptor> = Vec::new();
                    for p in ps {
                        let d = best(p)?;
                        if !v.iter().any(|x| x.digest == d.digest) {
                            v.push(d);
                        }
                    }
                    v
                }
                PlatformChoice::All => entries.clone(),
            };
            if chosen.is_empty() {
                return Err(user_error(
                    format!("`{image}` lists no platform images"),
                    None,
                ));
            }
            let missing: Vec<Platform> = chosen
                .iter()
                .filter(|d| !complete(store, &d.digest))
                .filter_map(|d| d.platform.clone())
                .collect();
            if !missing.is_empty() {
                return Ok(Picked::Missing(missing));
            }
            for d in chosen {
                let platform = d.platform.clone().expect("filtered on platform");
                out.push(read_selected(store, image, top, d, platform)?);
            }
        }
        Document::Manifest(_) => {
            if !complete(store, &top.digest) {
                return Ok(Picked::Missing(Vec::new()));
            }
            let manifest = store.read_manifest(&top.digest)?;
            let config = store.read_config(&manifest.value.config.digest)?;
            let platform = config.value.platform();
            // Every platform asked for must be this one (a single-platform image).
            if let PlatformChoice::These(ps) = choice
                && let Some(wanted) = ps.iter().find(|p| !p.matcher().matches(&platform))
            {
                return Err(no_platform(ContentError::NoMatchingPlatform {
                    reference: image.to_string(),
                    wanted: short_platform(wanted),
                    available: vec![platform],
                }));
            }
            out.push(Selected {
                image: image.to_string(),
                top: top.clone(),
                manifest_digest: top.digest.clone(),
                config_digest: manifest.value.config.digest.clone(),
                manifest: manifest.value,
                config: config.value,
                platform,
            });
        }
    }
    Ok(Picked::Complete(out))
}

fn read_selected(
    store: &Store,
    image: &str,
    top: &Descriptor,
    d: &Descriptor,
    platform: Platform,
) -> anyhow::Result<Selected> {
    let manifest = store.read_manifest(&d.digest)?;
    let config = store.read_config(&manifest.value.config.digest)?;
    Ok(Selected {
        image: image.to_string(),
        top: top.clone(),
        manifest_digest: d.digest.clone(),
        config_digest: manifest.value.config.digest.clone(),
        manifest: manifest.value,
        config: config.value,
        platform,
    })
}

/// The store's error, with the hint for `run` and `verify` (not pull's `--all-platforms`).
fn no_platform(e: ContentError) -> anyhow::Error {
    user_error(
        e.to_string(),
        Some("choose one of the image's platforms with `--platform` (`--platform all` takes each)"),
    )
}

/// Whether a manifest, its config and its layers are all in the store.
fn complete(store: &Store, manifest: &Digest) -> bool {
    let Ok(m) = store.read_manifest(manifest) else {
        return false;
    };
    std::iter::once(&m.value.config)
        .chain(&m.value.layers)
        .all(|d| store.has_blob(&d.digest))
}

/// An image (or some platforms of it) the store lacks: `run` and `verify` pull it from its
/// registry, as docker does (the whole index is kept, only the platforms needed are fetched).
pub fn fetch_missing(
    settings: &Settings,
    store: &Store,
    image: &str,
    choice: &PlatformChoice,
) -> anyhow::Result<Resolved> {
    let reference = Reference::parse(image).map_err(|_| {
        user_error(
            format!("no such image: `{image}`"),
            Some("`manifold images` lists the images in the store"),
        )
    })?;
    if reference.digest().is_none() && looks_like_id(image) {
        // An image ID prefix that matches nothing: not a repository to pull.
        return Err(StoreError::ImageNotFound(image.to_string()).into());
    }
    let platforms = match choice {
        PlatformChoice::Default => Platforms::Best(Platform::host().matcher()),
        PlatformChoice::These(ps) => Platforms::Each(ps.iter().map(Platform::matcher).collect()),
        PlatformChoice::All => Platforms::All,
    };
    eprintln!(
        "Unable to find image '{}' locally (or the platforms asked for): pulling",
        reference.familiar()
    );
    let _guard = store.write_guard()?;
    let client = super::remote::client(settings)?;
    let source = client.pull_source(&reference)?;
    let progress = settings.progress(false);
    let root = Source::resolve(&source, &reference)?;
    content::copy_with(
        &source,
        store,
        &reference,
        &root,
        &platforms,
        &progress,
        &CopyOptions::default(),
    )?;
    Sink::tag(store, &reference, &root)?;
    eprintln!("Digest: {}", root.digest);
    Ok(Resolved {
        descriptor: root,
        reference: Some(reference),
    })
}

/// 12 to 64 hex digits: what `images` shows as IMAGE ID.
fn looks_like_id(s: &str) -> bool {
    (12..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
