//! `manifold save [-o FILE] [--format docker|oci] [--platform P] IMAGE...`.

use std::io::IsTerminal;

use anyhow::Context;

use super::Settings;
use super::args::{ArchiveFormat, SaveArgs};
use super::errors::user_error;
use super::remote;
use crate::archive::{self, ArchiveError, SaveFormat};
use crate::content::Platforms;
use crate::ops::Ops;
use crate::platform::Platform;
use crate::store::Resolved;

pub fn run(args: SaveArgs, settings: &Settings) -> anyhow::Result<()> {
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(user_error(
            "refusing to write an archive to a terminal",
            Some("use `-o FILE` or redirect stdout"),
        ));
    }
    let format = match args.format {
        ArchiveFormat::Docker => SaveFormat::Docker,
        ArchiveFormat::Oci => SaveFormat::Oci,
    };
    // What is saved: one platform (a docker-archive's, or the one asked for), else the whole
    // image.
    let platforms = match (&platform, format) {
        (Some(p), _) => Platforms::Best(p.matcher()),
        (None, SaveFormat::Docker) => Platforms::Best(Platform::host().matcher()),
        (None, SaveFormat::Oci) => Platforms::All,
    };
    let store = settings.store()?;
    let client = remote::client(settings)?;
    let progress = settings.progress(false);
    let ops = Ops::new(&store, Some(&client), &progress);
    // Keeps gc from removing blobs while they are fetched and read.
    let txn = store.begin()?;
    let mut images = Vec::new();
    for name in &args.images {
        if format == SaveFormat::Docker
            && platform.is_none()
            && txn.lookup(name).is_ok_and(|r| r.descriptor.is_index())
        {
            return Err(multi_platform(ArchiveError::MultiPlatform(name.clone())));
        }
        let local = ops.ensure_local(&txn, name, &platforms)?;
        images.push(Resolved {
            descriptor: local.descriptor,
            reference: local.reference,
        });
    }
    let result = match &args.output {
        Some(path) => {
            // Write beside the destination and rename: a failed save leaves no half archive.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            let r = archive::save(
                &txn,
                &images,
                format,
                platform.as_ref(),
                std::io::BufWriter::new(tmp.as_file_mut()),
                &progress,
            );
            if r.is_ok() {
                tmp.persist(path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            r
        }
        None => {
            // `save` flushes what it wrote: a closed stdout surfaces as its error.
            archive::save(
                &txn,
                &images,
                format,
                platform.as_ref(),
                // Unlocked: the archive is written from the copy's worker thread.
                std::io::BufWriter::new(super::output::MarkClosed(std::io::stdout())),
                &progress,
            )
        }
    };
    result.map_err(|e| match e {
        e @ ArchiveError::MultiPlatform(_) => multi_platform(e),
        other => other.into(),
    })
}

fn multi_platform(e: ArchiveError) -> anyhow::Error {
    user_error(
        e.to_string(),
        Some("choose one with `--platform`, or keep every platform with `--format oci`"),
    )
}
