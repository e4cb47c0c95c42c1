//! What `build` asks of `attest`: which attestations (`--provenance`, `--sbom`, `--attest`,
//! `--attest-format`), and the facts of the build they record, turned into statements attached
//! to each platform's image in the store before it is named or pushed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::args::{AttestFormat, BuildArgs};
use super::errors::user_error;
use crate::attest::manifest::{self as attestation, Form};
use crate::attest::provenance::{self, Dependency, Mode};
use crate::attest::statement::{Statement, image_purl};
use crate::attest::{AttestError, sbom};
use crate::builder::context::Context;
use crate::builder::exec::Output;
use crate::builder::secrets::Secrets;
use crate::oci::Digest;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Transaction;

/// The attestations a build makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub provenance: Option<Mode>,
    pub sbom: bool,
    pub form: Form,
}

impl Wanted {
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom
    }
}

fn flag_bool(flag: &str, v: &str) -> anyhow::Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(user_error(
            format!("invalid `{flag}={other}`"),
            Some("use `true` or `false`"),
        )),
    }
}

/// `--provenance[=min|max|true|false|mode=…]`, `--sbom[=true|false]` and `--attest SPEC`.
pub fn wanted(args: &BuildArgs) -> anyhow::Result<Wanted> {
    let mut w = Wanted {
        form: match args.attest_format {
            AttestFormat::Referrers => Form::Referrers,
            AttestFormat::Index => Form::Index,
        },
        ..Wanted::default()
    };
    let bad_mode = |v: &str| {
        user_error(
            format!("invalid provenance mode `{v}`"),
            Some("use `--provenance=min` or `--provenance=max`"),
        )
    };
    if let Some(v) = args.provenance.as_deref() {
        let v = v.strip_prefix("mode=").unwrap_or(v);
        w.provenance = match v {
            "true" | "1" => Some(Mode::Min),
            "false" | "0" => None,
            m => Some(m.parse().map_err(|_| bad_mode(m))?),
        };
    }
    if let Some(v) = args.sbom.as_deref() {
        w.sbom = flag_bool("--sbom", v)?;
    }
    for spec in &args.attest {
        let mut kind = None;
        let mut mode = Mode::Min;
        let mut disabled = false;
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("type", t)) => kind = Some(t.to_string()),
                Some(("mode", m)) => mode = m.parse().map_err(|_| bad_mode(m))?,
                Some(("disabled", d)) => disabled = flag_bool("disabled", d)?,
                // buildx's SBOM generator image: ours reads the layers itself.
                Some(("generator", _)) => {}
                _ => {
                    return Err(user_error(
                        format!("invalid `--attest {spec}`"),
                        Some("use `type=provenance[,mode=min|max]` or `type=sbom`"),
                    ));
                }
            }
        }
        match kind.as_deref() {
            Some("provenance") => w.provenance = (!disabled).then_some(mode),
            Some("sbom") => w.sbom = !disabled,
            other => {
                return Err(user_error(
                    format!(
                        "`--attest` type `{}` is not supported",
                        other.unwrap_or("(none)")
                    ),
                    Some("use `type=provenance[,mode=min|max]` or `type=sbom`"),
                ));
            }
        }
    }
    Ok(w)
}

/// What a build's provenance records besides what the builder reports.
pub struct Facts<'a> {
    pub dockerfile: (&'a str, &'a str),
    /// The context as the user named it (`.`, a path, `-`).
    pub context_name: &'a str,
    pub context: &'a Context,
    pub target: Option<&'a str>,
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    /// The image's first name, for the subject's purl.
    pub name: Option<&'a Reference>,
    pub started: DateTime<Utc>,
    pub secrets: &'a Secrets,
}

/// Values that must never appear in an attestation: the values of the secrets given to the
/// build (`--secret`), as given and without surrounding whitespace.
fn never_recorded(secrets: &Secrets) -> Vec<String> {
    let mut out = Vec::new();
    for v in secrets.values() {
        let text = String::from_utf8_lossy(v.expose());
        for s in [text.as_ref(), text.trim()] {
            if !s.is_empty() && !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// Make the attestations `wanted` of each platform's image and attach them in the store; the
/// output's root is replaced when they go inline into the index.
pub fn attach(
    store: &Transaction,
    mut out: Output,
    wanted: &Wanted,
    facts: &Facts<'_>,
) -> anyhow::Result<Output> {
    if !wanted.any() {
        return Ok(out);
    }
    let finished = Utc::now();
    let epoch = facts
        .build_args
        .get("SOURCE_DATE_EPOCH")
        .and_then(|e| e.parse::<u64>().ok());
    let dockerfile_digest = Digest::sha256_of(facts.dockerfile.1.as_bytes());
    let context_digest = if wanted.provenance.is_some() {
        Some(facts.context.digest()?)
    } else {
        None
    };
    let mut inline = Vec::new();
    for image in &out.images {
        let name = image_purl(facts.name, Some(&image.platform));
        let mut statements: Vec<Statement> = Vec::new();
        if let Some(mode) = wanted.provenance {
            let input = provenance::Input {
                name: name.clone(),
                subject: Some(image.manifest.digest.clone()),
                mode,
                dockerfile: Some((facts.dockerfile.0.to_string(), dockerfile_digest.clone())),
                context: context_digest
                    .clone()
                    .map(|d| (facts.context_name.to_string(), d)),
                target: facts.target.map(str::to_string),
                platform: super::select::short_platform(&image.platform),
                args: facts.build_args.clone(),
                labels: facts.labels.clone(),
                secrets: image.used.secrets.clone(),
                ssh: image.used.ssh.clone(),
                never_recorded: never_recorded(facts.secrets),
                dependencies: dependencies(image),
                steps: image
                    .used
                    .steps
                    .iter()
                    .map(|s| provenance::Step {
                        stage: s.stage.clone(),
                        platform: s.platform.to_string(),
                        line: s.line,
                        instruction: s.instruction.clone(),
                    })
                    .collect(),
                builder_platform: Platform::host().to_string(),
                source_date_epoch: epoch,
                // A reproducible build (SOURCE_DATE_EPOCH) gets a reproducible provenance: no
                // times, an ID derived from its subject.
                invocation_id: match epoch {
                    Some(_) => image.manifest.digest.hex()[..32].to_string(),
                    None => hex::encode(crate::runtime::containers::random_bytes::<16>()),
                },
                started: epoch.is_none().then_some(facts.started),
                finished: epoch.is_none().then_some(finished),
            };
            statements.push(provenance::statement(&input));
        }
        if wanted.sbom {
            let created = store
                .read_config(&image.config)?
                .value
                .created
                .as_deref()
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                .map_or(finished, |c| c.with_timezone(&Utc));
            let s = sbom::statement(store, &image.manifest.digest, &name, created)
                .map_err(|e| with_platform(e, &image.platform))?;
            statements.push(s);
        }
        if let Some(d) =
            attestation::store_attestations(store, &image.manifest, &statements, wanted.form)?
        {
            inline.push(d);
        }
    }
    if wanted.form == Form::Index {
        out.root = attestation::with_inline(store, &out.root, inline)?;
    }
    Ok(out)
}

fn with_platform(e: AttestError, platform: &Platform) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("cannot make the SBOM of the {platform} image"))
}

/// The images and URLs a platform's build used, as provenance lists them.
fn dependencies(image: &crate::builder::exec::BuiltImage) -> Vec<Dependency> {
    let mut out = Vec::new();
    for u in &image.used.images {
        let reference = Reference::parse(&u.reference).ok();
        let mut annotations = BTreeMap::new();
        if let Some(index) = &u.index {
            annotations.insert("index".to_string(), index.to_string());
        }
        out.push(Dependency {
            uri: image_purl(reference.as_ref(), Some(&u.platform)),
            digest: u.manifest.clone(),
            name: Some(u.reference.clone()),
            annotations,
        });
    }
    for (url, digest) in &image.used.urls {
        out.push(Dependency {
            uri: url.clone(),
            digest: digest.clone(),
            name: None,
            annotations: BTreeMap::new(),
        });
    }
    out
}
