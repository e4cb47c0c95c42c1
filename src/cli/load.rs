//! `manifold load [-i FILE] [-q]`: docker-archive or OCI archive, auto-detected, from stdin by
//! default.

use std::fs::File;

use anyhow::Context;

use super::Settings;
use super::args::LoadArgs;
use super::output::outln;
use crate::archive;

pub fn run(args: LoadArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = settings.store()?;
    let progress = settings.progress(args.quiet);
    let loaded = match &args.input {
        Some(path) => {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            archive::load(&store, f, &progress)
                .with_context(|| format!("cannot load {}", path.display()))?
        }
        None => archive::load(&store, std::io::stdin().lock(), &progress)
            .context("cannot load the archive from stdin")?,
    };
    for image in loaded {
        match image.reference {
            Some(r) if args.quiet => outln!("{}", r.familiar())?,
            Some(r) => outln!("Loaded image: {}", r.familiar())?,
            None if args.quiet => outln!("{}", image.descriptor.digest)?,
            None => outln!("Loaded image ID: {}", image.descriptor.digest)?,
        }
    }
    Ok(())
}
