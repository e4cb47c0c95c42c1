//! `manifold sign --key KEY IMAGE` (cosign's format: the `sha256-<hex>.sig` tag and an OCI 1.1
//! referrer, recursive over the platforms by default), `sign --generate-key KEY`, and the
//! signature half of `verify --key PUB`. Signatures live in the registry, as cosign's do.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::Settings;
use super::errors::user_error;
use super::output::outln;
use super::remote;
use crate::attest::keys::{PrivateKey, PublicKey};
use crate::attest::sign::{self, Check, Outcome};
use crate::content::Source;
use crate::reference::Reference;

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key: PKCS#8 or SEC1 PEM (ECDSA P-256), or cosign's encrypted key (password in COSIGN_PASSWORD)
    #[arg(long, value_name = "KEY", required_unless_present = "generate_key")]
    pub key: Option<PathBuf>,
    /// Sign only the index (or lone manifest), not each platform's manifest
    #[arg(long)]
    pub no_recursive: bool,
    /// Write a new key pair, KEY (PKCS#8 PEM; cosign's encrypted form when COSIGN_PASSWORD is set) and KEY.pub, and exit
    #[arg(long, value_name = "KEY", conflicts_with_all = ["key", "image"])]
    pub generate_key: Option<PathBuf>,
    /// An image in a registry
    #[arg(required_unless_present = "generate_key", value_name = "IMAGE")]
    pub image: Option<String>,
}

/// cosign's password variable; set but empty is the empty password, as cosign takes it.
fn password() -> Option<Vec<u8>> {
    std::env::var_os("COSIGN_PASSWORD").map(|p| p.into_encoded_bytes())
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

pub fn run(args: SignArgs, settings: &Settings) -> anyhow::Result<()> {
    if let Some(path) = &args.generate_key {
        return generate(path);
    }
    let (Some(key_path), Some(image)) = (&args.key, &args.image) else {
        unreachable!("clap requires --key and IMAGE without --generate-key");
    };
    let key = PrivateKey::from_pem(
        &key_path.display().to_string(),
        &read_text(key_path)?,
        password,
    )?;
    let reference = Reference::parse(image)?;
    let client = remote::client(settings)?;
    let repo = client.repository(&reference)?;
    let root = Source::resolve(&repo, &reference)?;
    let signed = sign::sign(&repo, &reference, &root, &key, !args.no_recursive)?;
    for s in &signed {
        let what = s.platform.as_ref().map_or_else(
            || if signed.len() > 1 { "index" } else { "image" }.to_string(),
            super::select::short_platform,
        );
        let note = if s.added {
            "signed"
        } else {
            "already signed by this key"
        };
        eprintln!("{what} {}: {note}", s.digest);
        outln!("{}", s.digest)?;
    }
    Ok(())
}

fn generate(path: &Path) -> anyhow::Result<()> {
    let public = path.with_extension("pub");
    for p in [path, public.as_path()] {
        if p.exists() {
            return Err(user_error(
                format!("`{}` exists", p.display()),
                Some("choose another name, or remove it first"),
            ));
        }
    }
    let key = PrivateKey::generate();
    let text = match password() {
        Some(pw) => key.to_encrypted_pem(&pw),
        None => key.to_pem(),
    };
    write_new(path, text.as_bytes(), 0o600)?;
    write_new(&public, key.public().to_pem().as_bytes(), 0o644)?;
    eprintln!(
        "wrote the private key `{}` and the public key `{}`",
        path.display(),
        public.display()
    );
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Check the signatures of `image` in its registry (the index and every platform) with the
/// public key at `key_path`; print one line per manifest; the failures, named.
pub fn verify(settings: &Settings, image: &str, key_path: &Path) -> anyhow::Result<Vec<String>> {
    let key = PublicKey::from_pem(&key_path.display().to_string(), &read_text(key_path)?)?;
    let reference = Reference::parse(image)?;
    let client = remote::client(settings)?;
    let repo = client.repository(&reference)?;
    let root = Source::resolve(&repo, &reference)?;
    let checks = sign::verify(&repo, &root, &key)?;
    let mut failed = Vec::new();
    for c in &checks {
        let what = label(c, checks.len() > 1);
        let line = match &c.outcome {
            Outcome::Verified => format!("{what} {}: signature verified", c.digest),
            Outcome::Unsigned => format!("{what} {}: unsigned", c.digest),
            Outcome::Invalid(why) => format!("{what} {}: {why}", c.digest),
        };
        eprintln!("{line}");
        match &c.outcome {
            Outcome::Verified => {}
            Outcome::Unsigned => failed.push(format!("{what} (unsigned)")),
            Outcome::Invalid(_) => failed.push(format!("{what} (signature does not match)")),
        }
    }
    Ok(failed)
}

/// A platform, or the index (the image, when it is one manifest).
fn label(c: &Check, index: bool) -> String {
    match &c.platform {
        Some(p) => super::select::short_platform(p),
        None if index => "index".into(),
        None => "image".into(),
    }
}
