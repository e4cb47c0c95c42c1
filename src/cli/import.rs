//! `manifold import [--platform P] [-c INSTR]... [-m MSG] FILE|- [REF]`: prints the new image's
//! digest.

use std::fs::File;

use anyhow::Context;

use super::Settings;
use super::args::ImportArgs;
use super::output::outln;
use crate::archive::{self, ImportOptions};
use crate::platform::Platform;
use crate::reference::Reference;

pub fn run(args: ImportArgs, settings: &Settings) -> anyhow::Result<()> {
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host_target(),
    };
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let options = ImportOptions {
        platform,
        changes: args.changes,
        message: args.message,
        source_name: args.file.clone(),
        reference,
    };
    let store = settings.store()?;
    let progress = settings.progress(false);
    let desc = if args.file == "-" {
        archive::import(&store, std::io::stdin().lock(), &options, &progress)
            .context("cannot import from stdin")?
    } else {
        let f = File::open(&args.file).with_context(|| format!("cannot open {}", args.file))?;
        archive::import(&store, f, &options, &progress)
            .with_context(|| format!("cannot import {}", args.file))?
    };
    outln!("{}", desc.digest)?;
    Ok(())
}
