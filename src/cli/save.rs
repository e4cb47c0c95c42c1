//! `manifold save [-o FILE] [--format docker|oci] [--platform P] IMAGE...`.

use std::io::IsTerminal;

use anyhow::Context;

use super::Settings;
use super::args::{ArchiveFormat, SaveArgs};
use super::errors::user_error;
use crate::archive::{self, ArchiveError, SaveFormat};
use crate::platform::Platform;

pub fn run(args: SaveArgs, settings: &Settings) -> anyhow::Result<()> {
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(user_error(
            "refusing to write an archive to a terminal",
            Some("use `-o FILE` or redirect stdout"),
        ));
    }
    let store = settings.store()?;
    let images = args
        .images
        .iter()
        .map(|i| store.lookup(i))
        .collect::<Result<Vec<_>, _>>()?;
    let format = match args.format {
        ArchiveFormat::Docker => SaveFormat::Docker,
        ArchiveFormat::Oci => SaveFormat::Oci,
    };
    let progress = settings.progress(false);
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
                &store,
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
                &store,
                &images,
                format,
                platform.as_ref(),
                std::io::BufWriter::new(super::output::stdout()),
                &progress,
            )
        }
    };
    result.map_err(|e| match e {
        ArchiveError::MultiPlatform(_) => {
            let msg = e.to_string();
            user_error(
                msg,
                Some("choose one with `--platform`, or keep every platform with `--format oci`"),
            )
        }
        ArchiveError::Sparse(_) => {
            let msg = e.to_string();
            user_error(
                msg,
                Some("save one platform with `--platform`, or pull the rest first"),
            )
        }
        other => other.into(),
    })
}
