//! `manifold inspect [--platform P] [--raw] IMAGE...`: a JSON array, one object per image
//! (docker's shape where it has one), or with `--raw` the stored bytes exactly;
//! `--attestations` lists an image's attestations and signatures, `--attestation WHICH` prints
//! one.

use serde_json::{Value, json};

use super::Settings;
use super::args::InspectArgs;
use super::output::{Table, write_stdout};
use crate::attest::{self, manifest::Medium};
use crate::content::Source;
use crate::oci::Descriptor;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{Store, StoreError};

pub fn run(args: InspectArgs, settings: &Settings) -> anyhow::Result<()> {
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let store = settings.store()?;
    if args.attestations || args.attestation.is_some() {
        for image in &args.images {
            attestations(settings, &store, image, &args, platform.as_ref())?;
        }
        return Ok(());
    }
    let mut out = Vec::new();
    for image in &args.images {
        let found = store.lookup(image)?;
        let desc = match &platform {
            Some(p) => store.platform_manifest(&found.descriptor, Some(p))?,
            None => found.descriptor.clone(),
        };
        if args.raw {
            write_stdout(&store.read_blob(&desc.digest)?)?;
            continue;
        }
        out.push(describe(&store, &found.descriptor, &desc)?);
    }
    if !args.raw {
        super::output::print_json(&out)?;
    }
    Ok(())
}

/// `--attestations`: the image's attestations and signatures as a table; `--attestation
/// WHICH`: the chosen one's bytes. The store's copy of the image is read when it has one, else
/// its registry's.
fn attestations(
    settings: &Settings,
    store: &Store,
    image: &str,
    args: &InspectArgs,
    platform: Option<&Platform>,
) -> anyhow::Result<()> {
    let repo;
    let (medium, root): (&dyn Medium, Descriptor) = match store.lookup(image) {
        Ok(found) => (store, found.descriptor),
        Err(StoreError::ImageNotFound(_)) if Reference::parse(image).is_ok() => {
            let reference = Reference::parse(image)?;
            repo = super::remote::client(settings)?.repository(&reference)?;
            let root = Source::resolve(&repo, &reference)?;
            (&repo, root)
        }
        Err(e) => return Err(e.into()),
    };
    let found = attest::manifest::find(medium, &root)?;
    if let Some(which) = &args.attestation {
        let chosen = attest::manifest::choose(image, &found, which, platform)?;
        write_stdout(&attest::manifest::read(medium, chosen)?)?;
        return Ok(());
    }
    let mut t = Table::new(&["PLATFORM", "KIND", "PREDICATE TYPE", "FORM", "DIGEST"]);
    for f in found.iter().filter(|f| {
        platform.is_none_or(|p| {
            f.platform
                .as_ref()
                .is_some_and(|fp| p.matcher().matches(fp))
        })
    }) {
        t.row(vec![
            f.platform
                .as_ref()
                .map_or("index".to_string(), super::select::short_platform),
            f.kind.name().to_string(),
            f.predicate_type.clone().unwrap_or_else(|| "-".into()),
            f.form.to_string(),
            f.layer.digest.to_string(),
        ]);
    }
    t.print()?;
    Ok(())
}

/// Names the store gives an image: tags and `name@digest` forms.
fn names(store: &Store, root: &Descriptor) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for e in store.entries()? {
        if e.descriptor.digest != root.digest {
            continue;
        }
        if let Some(r) = e.reference {
            if r.tag().is_some() {
                tags.push(r.familiar());
            }
            let by_digest: Reference = r.with_digest(root.digest.clone());
            digests.push(by_digest.familiar_name() + "@" + &root.digest.to_string());
        }
    }
    digests.dedup();
    Ok((tags, digests))
}

fn describe(store: &Store, root: &Descriptor, desc: &Descriptor) -> anyhow::Result<Value> {
    let (tags, repo_digests) = names(store, root)?;
    let summary = store.summarize(desc)?;
    if desc.is_index() {
        let index: Value = serde_json::from_slice(&store.read_blob(&desc.digest)?)?;
        let platforms: Vec<Value> = summary
            .platforms
            .iter()
            .map(|p| {
                json!({
                    "Platform": p.platform.as_ref().map(ToString::to_string),
                    "Digest": p.descriptor.digest.to_string(),
                    "Present": p.present,
                })
            })
            .collect();
        return Ok(json!({
            "Id": desc.digest.to_string(),
            "RepoTags": tags,
            "RepoDigests": repo_digests,
            "MediaType": desc.media_type,
            "Created": summary.created.map(|t| t.to_rfc3339()),
            "Size": summary.size,
            "Sparse": summary.is_sparse(),
            "Platforms": platforms,
            "Index": index,
        }));
    }
    let manifest = store.read_manifest(&desc.digest)?;
    let config_bytes = store.read_blob(&manifest.value.config.digest)?;
    let config: Value = serde_json::from_slice(&config_bytes)?;
    let platform = desc
        .platform
        .clone()
        .or_else(|| summary.platforms.first().and_then(|p| p.platform.clone()));
    let manifest_json: Value = serde_json::from_slice(&manifest.bytes)?;
    Ok(json!({
        "Id": desc.digest.to_string(),
        "ConfigDigest": manifest.value.config.digest.to_string(),
        "RepoTags": tags,
        "RepoDigests": repo_digests,
        "Parent": if root.digest != desc.digest { Some(root.digest.to_string()) } else { None },
        "MediaType": desc.media_type,
        "Created": config.get("created"),
        "Author": config.get("author"),
        "Platform": platform.as_ref().map(ToString::to_string),
        "Architecture": config.get("architecture"),
        "Os": config.get("os"),
        "Variant": config.get("variant"),
        "Size": summary.size,
        "Config": config.get("config"),
        "RootFS": config.get("rootfs"),
        "Manifest": manifest_json,
    }))
}
