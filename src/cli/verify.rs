//! `manifold verify [--platform P] [--format json] IMAGE`: for each platform of the image (or
//! the one asked for), report every binary whose ELF machine, class or byte order contradicts
//! the platform the image declares. Exits 1 when there is any. With `--key PUB`, the image's
//! cosign signatures in its registry instead (index and every platform; `--elf` for both).

use std::process::ExitCode;

use clap::Args;

use super::Settings;
use super::args::ListFormat;
use super::output::{Table, print_json_lines};
use super::select::{self, PlatformChoice, short_platform};
use crate::verify;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this platform (or these, comma separated) [default: every platform of the image]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Check the image's signatures in its registry with this public key (cosign's format): the index and every platform must be signed
    #[arg(long, value_name = "PUB")]
    pub key: Option<std::path::PathBuf>,
    /// With `--key`: check the binaries as well
    #[arg(long, requires = "key")]
    pub elf: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
    /// An image in the store, or pulled when the store lacks it
    pub image: String,
}

pub fn run(args: VerifyArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    if let Some(key) = &args.key {
        let unsigned = super::sign::verify(settings, &args.image, key)?;
        if !unsigned.is_empty() {
            eprintln!(
                "error: `{}` is not signed by `{}`: {}",
                args.image,
                key.display(),
                unsigned.join(", ")
            );
            failed = true;
        }
        if !args.elf {
            return Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
    }
    let choice = match args.platform.as_deref() {
        None => PlatformChoice::All,
        some => PlatformChoice::parse(some)?,
    };
    let store = settings.store()?;
    let selected = select::select(settings, &store, &args.image, &choice)?;
    let mut reports = Vec::new();
    for s in &selected {
        let mut r = verify::verify(&store, &s.manifest, &s.config, &s.platform)?;
        r.platform = short_platform(&s.platform);
        reports.push(r);
    }
    let bad: usize = reports.iter().map(|r| r.mismatches.len()).sum();
    match args.format {
        ListFormat::Json => print_json_lines(&reports)?,
        ListFormat::Table => {
            if bad > 0 {
                let mut t = Table::new(&["PLATFORM", "FILE", "FOUND", "EXPECTED"]);
                for r in &reports {
                    for f in &r.mismatches {
                        let path = if f.entrypoint {
                            format!("{} (entrypoint)", f.path)
                        } else {
                            f.path.clone()
                        };
                        t.row(vec![
                            r.platform.clone(),
                            path,
                            f.found.clone(),
                            f.expected.clone(),
                        ]);
                    }
                }
                t.print()?;
            }
            for r in &reports {
                let entry = r
                    .entrypoint
                    .as_ref()
                    .map_or(String::new(), |e| format!("; entrypoint {e}"));
                eprintln!(
                    "{}: {} ELF files checked, {} contradict the platform ({}){entry}",
                    r.platform,
                    r.checked,
                    r.mismatches.len(),
                    r.expected
                );
            }
        }
    }
    Ok(if bad > 0 || failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
