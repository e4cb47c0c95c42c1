//! Which image (and which of its platforms) `run` and `verify` act on, and the one place where
//! an image the store lacks is fetched.

use anyhow::Context;

use super::Settings;
use super::errors::user_error;
use crate::content::ContentError;
use crate::oci::{Descriptor, Digest, Document, ImageConfig, Manifest};
use crate::platform::Platform;
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

/// Resolve `image` in the store, pulling what is missing, and pick the platforms.
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
    let top = resolved.descriptor.clone();
    let document = store
        .read_document(&top)
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
                ContentError::NoMatchingPlatform {
                    reference: image.to_string(),
                    wanted: short_platform(wanted),
                    available: available.clone(),
                }
                .into()
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
            for d in chosen {
                let platform = d.platform.clone().expect("filtered on platform");
                if !complete(store, &d.digest) {
                    fetch_missing(
                        settings,
                        store,
                        image,
                        &PlatformChoice::These(vec![platform.clone()]),
                    )?;
                }
                out.push(read_selected(store, image, &top, d, platform)?);
            }
        }
        Document::Manifest(_) => {
            if !complete(store, &top.digest) {
                fetch_missing(settings, store, image, choice)?;
            }
            let manifest = store.read_manifest(&top.digest)?;
            let config = store.read_config(&manifest.value.config.digest)?;
            let platform = config.value.platform();
            // Every platform asked for must be this one (a single-platform image).
            if let PlatformChoice::These(ps) = choice
                && let Some(wanted) = ps.iter().find(|p| !p.matcher().matches(&platform))
            {
                return Err(ContentError::NoMatchingPlatform {
                    reference: image.to_string(),
                    wanted: short_platform(wanted),
                    available: vec![platform],
                }
                .into());
            }
            out.push(Selected {
                image: image.to_string(),
                top: top.clone(),
                manifest_digest: top.digest.clone(),
                manifest: manifest.value,
                config_digest: manifest_config_digest(store, &top.digest)?,
                config: config.value,
                platform,
            });
        }
    }
    Ok(out)
}

fn manifest_config_digest(store: &Store, manifest: &Digest) -> anyhow::Result<Digest> {
    Ok(store.read_manifest(manifest)?.value.config.digest)
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

/// Whether a manifest, its config and its layers are all in the store.
fn complete(store: &Store, manifest: &Digest) -> bool {
    let Ok(m) = store.read_manifest(manifest) else {
        return false;
    };
    std::iter::once(&m.value.config)
        .chain(&m.value.layers)
        .all(|d| store.has_blob(&d.digest))
}

/// An image (or some platform of it) the store lacks. `run` and `verify` pull it, as docker
/// does; this is the one function that will call the registry's pull when it is in, and until
/// then fails with the command that fetches the image.
pub fn fetch_missing(
    _settings: &Settings,
    _store: &Store,
    image: &str,
    choice: &PlatformChoice,
) -> anyhow::Result<Resolved> {
    let platform = match choice {
        PlatformChoice::Default => String::new(),
        PlatformChoice::All => " --all-platforms".into(),
        PlatformChoice::These(ps) => format!(
            " --platform {}",
            ps.iter().map(short_platform).collect::<Vec<_>>().join(",")
        ),
    };
    Err(user_error(
        format!(
            "image `{image}` is not in the store (or lacks the platform asked for), and this build cannot pull"
        ),
        Some(&format!("`manifold pull{platform} {image}` fetches it")),
    ))
}
