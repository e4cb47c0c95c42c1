//! Which image (and which of its platforms) `run` and `verify` act on; what the store lacks
//! of it is fetched by `ops::ensure_local`.

use anyhow::Context;

use super::Settings;
use super::errors::user_error;
use crate::content::{ContentError, Platforms};
use crate::oci::{Descriptor, Digest, ImageConfig, Manifest};
use crate::ops::{Ops, OpsError};
use crate::platform::Platform;
use crate::store::Store;

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

/// Resolve `image` in the store, fetching what is missing (the image, the platforms of it a
/// sparse index lacks, the layers of a list's children), and pick the platforms.
pub fn select(
    settings: &Settings,
    store: &Store,
    image: &str,
    choice: &PlatformChoice,
) -> anyhow::Result<Vec<Selected>> {
    let platforms = match choice {
        PlatformChoice::Default => Platforms::Best(Platform::host().matcher()),
        PlatformChoice::These(ps) => Platforms::of(ps),
        PlatformChoice::All => Platforms::All,
    };
    let client = super::remote::client(settings)?;
    let progress = settings.progress(false);
    let ops = Ops::new(store, Some(&client), &progress);
    // Ends before the command runs anything: a container may live long, a prune meanwhile is
    // kept off its image by its lease.
    let txn = store.begin()?;
    let local = ops
        .ensure_local(&txn, image, &platforms)
        .map_err(|e| match e {
            OpsError::Content(e @ ContentError::NoMatchingPlatform { .. }) => no_platform(e),
            OpsError::WrongPlatform {
                image,
                actual,
                wanted,
            } => user_error(
                format!("no image for platform `{wanted}` in `{image}` (it has: {actual})"),
                Some(PLATFORM_HINT),
            ),
            e => e.into(),
        })?;
    if local.manifests.is_empty() {
        return Err(user_error(
            format!("`{image}` lists no platform images"),
            None,
        ));
    }
    local
        .manifests
        .iter()
        .map(|d| read_selected(&txn, image, &local.descriptor, d))
        .collect()
}

fn read_selected(
    store: &Store,
    image: &str,
    top: &Descriptor,
    d: &Descriptor,
) -> anyhow::Result<Selected> {
    let manifest = store
        .read_manifest(&d.digest)
        .with_context(|| format!("cannot read image `{image}`"))?;
    let config = store.read_config(&manifest.value.config.digest)?;
    // An index gives each child's platform; a lone image's is its config's.
    let platform = d
        .platform
        .clone()
        .unwrap_or_else(|| config.value.platform());
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

const PLATFORM_HINT: &str =
    "choose one of the image's platforms with `--platform` (`--platform all` takes each)";

/// The store's error, with the hint for `run` and `verify` (not pull's `--all-platforms`).
fn no_platform(e: ContentError) -> anyhow::Error {
    user_error(e.to_string(), Some(PLATFORM_HINT))
}
