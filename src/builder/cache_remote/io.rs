//! Reading a cache, and writing one that other runners write too.
//!
//! A registry has no locks and (distribution, at least) no conditional PUT on tags: a manifest
//! PUT with `If-Match` is stored whatever the tag points at. So an export first uploads its
//! blobs (the long part), then, in a short loop: read the tag (its digest is the token), merge
//! our records into what it holds, put the merged manifest by digest, read the tag again and
//! write it only if it still is the token, then — after a pause twice as long as that compare
//! and swap took — read it once more: if what it points at now lacks our records (another
//! writer compared before our swap and swapped after it), merge again. What remains is a writer
//! whose own compare-to-swap is more than twice as slow as ours and overlaps ours exactly: it
//! drops our records, which the next export of ours puts back. (A build's export runs while its
//! image is pushed, so the pause costs no wall time there.)

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Read;
use std::time::{Duration, Instant};

use super::format::{self, CacheConfig, Documents, RemoteRecord, Unusable};
use super::layout::LayoutDir;
use super::{Blobs, CacheError, CacheEvent, CacheLocation, CacheTo, RemoteCache};
use crate::content::{
    self, ContentError, CopyEnv, CopyOptions, CopyReport, NoLocations, Platforms, Sink,
};
use crate::oci::{Descriptor, Digest, media_type};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{Client, Repository, content_error};
use crate::store::Store;

/// Merges tried before an export gives up.
const MAX_ATTEMPTS: usize = 8;
/// The shortest pause before the check that our write stayed.
const MIN_SETTLE: Duration = Duration::from_millis(10);
/// The pause after a collision, before merging again (jittered).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What an export did.
#[derive(Debug, Clone, Default)]
pub struct ExportReport {
    /// Records in the cache now (ours and the other writers').
    pub records: usize,
    /// Of ours.
    pub ours: usize,
    /// Dropped by `max-size`.
    pub dropped: usize,
    /// How our blobs got there.
    pub copy: CopyReport,
    /// Merges it took (1 when nobody else wrote meanwhile).
    pub attempts: usize,
    /// The manifest the ref names now.
    pub manifest: Option<Digest>,
}

fn import_err(location: &CacheLocation) -> impl Fn(ContentError) -> CacheError + '_ {
    move |source| CacheError::Import {
        location: location.to_string(),
        source,
    }
}

fn unusable(location: &CacheLocation, why: Unusable) -> CacheError {
    CacheError::Unusable {
        location: location.to_string(),
        why,
    }
}

/// Read the cache at `location`.
pub fn import(
    client: Option<&Client>,
    location: &CacheLocation,
) -> Result<CacheConfig, CacheError> {
    let err = import_err(location);
    match location {
        CacheLocation::Registry(r) => {
            let client = client.ok_or_else(|| {
                err(ContentError::NotFound(
                    "a registry client (this build reads the store only)".into(),
                ))
            })?;
            let repo = client.repository(r).map_err(|e| err(content_error(e)))?;
            match read_registry(&repo, &r.tag_or_digest(), r.digest()) {
                Ok(Some((_, Ok(config)))) => Ok(config),
                Ok(Some((_, Err(why)))) => Err(unusable(location, why)),
                Ok(None) => Err(err(ContentError::NotFound(r.familiar()))),
                Err(e) => Err(err(e)),
            }
        }
        CacheLocation::Local { dir, tag } => {
            let l = LayoutDir::new(dir);
            match read_layout(&l, tag).map_err(&err)? {
                Some((_, Ok(config))) => Ok(config),
                Some((_, Err(why))) => Err(unusable(location, why)),
                None => Err(err(ContentError::NotFound(location.to_string()))),
            }
        }
    }
}

type Current = Option<(Descriptor, Result<CacheConfig, Unusable>)>;

/// The manifest `reference` names and its records; None when it names nothing.
fn read_registry(
    repo: &Repository,
    reference: &str,
    digest: Option<&Digest>,
) -> Result<Current, ContentError> {
    let (desc, bytes) = match repo.get_manifest(reference, digest) {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(content_error(e)),
    };
    if !media_type::is_manifest(&desc.media_type) {
        let why = Unusable::NotACache(desc.media_type.clone());
        return Ok(Some((desc, Err(why))));
    }
    let manifest = match format::parse_manifest(&bytes) {
        Ok(m) => m,
        Err(why) => return Ok(Some((desc, Err(why)))),
    };
    let config = &manifest.config;
    if config.media_type != format::CONFIG_MEDIA_TYPE {
        let why = Unusable::NotACache(config.media_type.clone());
        return Ok(Some((desc, Err(why))));
    }
    if config.size > format::MAX_CONFIG {
        let why = Unusable::Invalid(format!("its config has {} bytes", config.size));
        return Ok(Some((desc, Err(why))));
    }
    let mut bytes = Vec::new();
    repo.blob_reader(config)
        .map_err(content_error)?
        .take(format::MAX_CONFIG)
        .read_to_end(&mut bytes)?;
    content::verify(&format!("blob {}", config.digest), config, &bytes)?;
    Ok(Some((desc, CacheConfig::parse(&config.media_type, &bytes))))
}

fn read_layout(l: &LayoutDir, tag: &str) -> Result<Current, ContentError> {
    let desc = match l.find(tag) {
        Ok(d) => d,
        Err(ContentError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let bytes = l.read(&desc, format::MAX_CONFIG)?;
    let manifest = match format::parse_manifest(&bytes) {
        Ok(m) => m,
        Err(why) => return Ok(Some((desc, Err(why)))),
    };
    if manifest.config.media_type != format::CONFIG_MEDIA_TYPE {
        let why = Unusable::NotACache(manifest.config.media_type.clone());
        return Ok(Some((desc, Err(why))));
    }
    let bytes = l.read(&manifest.config, format::MAX_CONFIG)?;
    Ok(Some((
        desc,
        CacheConfig::parse(&manifest.config.media_type, &bytes),
    )))
}

/// The records of what is there now (none when it is absent or not ours to read: then it is
/// replaced).
fn records_of(current: &Current) -> Vec<RemoteRecord> {
    match current {
        Some((_, Ok(c))) => c.records.clone(),
        _ => Vec::new(),
    }
}

/// Write the records the build used to `to` (merged with what is there); see the module doc.
pub fn export(
    store: &Store,
    client: Option<&Client>,
    remote: &RemoteCache<'_>,
    to: &CacheTo,
    final_stages: &[Digest],
    progress: &dyn Progress,
    report: &dyn Fn(CacheEvent<'_>),
) -> Result<ExportReport, CacheError> {
    let ours = remote.records(to.mode, final_stages);
    let err = |source| CacheError::Export {
        location: to.location.to_string(),
        source,
    };
    let layers: Vec<Descriptor> = ours
        .iter()
        .filter_map(|r| r.layer.as_ref().map(|l| l.descriptor.clone()))
        .collect();
    // Our blobs first, with a manifest of our records alone (stored by digest, named by no
    // tag): the merge loop then moves only small documents.
    let alone = CacheConfig::new(ours.clone()).documents();
    let source = Blobs::new(store, client, Some(remote), &layers)
        .with_document(alone.config.digest.clone(), alone.config_bytes.clone())
        .with_document(alone.manifest.digest.clone(), alone.manifest_bytes.clone());
    let options = CopyOptions::default();
    // Blobs the cache's registry holds elsewhere (a base's layers) are mounted.
    let env = CopyEnv {
        locations: &source,
        progress,
        options: &options,
    };
    match &to.location {
        CacheLocation::Registry(r) => {
            let client = client.ok_or_else(|| {
                err(ContentError::NotFound(
                    "a registry client (this build reads the store only)".into(),
                ))
            })?;
            let repo = client.repository(r).map_err(|e| err(content_error(e)))?;
            // What went ahead is there: not asked about again, counted as uploaded.
            let ahead = remote.ahead.sent_to(&to.location);
            repo.assume_present(ahead.present.iter().cloned());
            let mut copy = content::copy(
                &source,
                &repo,
                &r.familiar(),
                &alone.manifest,
                &Platforms::All,
                &[],
                &env,
            )
            .map_err(err)?;
            let exported: std::collections::HashSet<&Digest> =
                layers.iter().map(|l| &l.digest).collect();
            for (digest, size) in &ahead.uploaded {
                if exported.contains(digest) {
                    copy.blobs_copied += 1;
                    copy.blobs_skipped = copy.blobs_skipped.saturating_sub(1);
                    copy.bytes_copied += size;
                }
            }
            merge_registry(&repo, r, &ours, &alone, to, copy, report)
        }
        CacheLocation::Local { dir, tag } => {
            let l = LayoutDir::new(dir);
            l.create().map_err(err)?;
            let copy = content::copy(
                &source,
                &l,
                &to.location.to_string(),
                &alone.manifest,
                &Platforms::All,
                &[],
                &env,
            )
            .map_err(err)?;
            // Writers on this machine take turns.
            let _lock = l.lock().map_err(err)?;
            let current = read_layout(&l, tag).map_err(err)?;
            let (docs, kept, dropped) = merged(&current, &ours, to.max_size);
            l.put_blob(&docs.config, &mut &docs.config_bytes[..], &NoLocations)
                .map_err(err)?;
            l.put_manifest(&docs.manifest, &docs.manifest_bytes)
                .map_err(err)?;
            l.set_tag(tag, &docs.manifest).map_err(err)?;
            l.collect_garbage().map_err(err)?;
            Ok(ExportReport {
                records: kept,
                ours: ours.len(),
                dropped,
                copy,
                attempts: 1,
                manifest: Some(docs.manifest.digest),
            })
        }
    }
}

/// The documents of `ours` merged into `current` and trimmed; how many records they hold and
/// how many were dropped.
fn merged(
    current: &Current,
    ours: &[RemoteRecord],
    max_size: Option<u64>,
) -> (Documents, usize, usize) {
    let all = format::merge(records_of(current), ours);
    let (kept, dropped) = format::trim(all, max_size);
    let n = kept.len();
    (CacheConfig::new(kept).documents(), n, dropped)
}

/// A pause of `base` plus up to as much again, different in every process, so that two writers
/// that collided do not collide again in step.
fn jittered(base: Duration) -> Duration {
    let noise = RandomState::new().hash_one(Instant::now()) % 1000;
    base + base.mul_f64(noise as f64 / 1000.0)
}

fn merge_registry(
    repo: &Repository,
    reference: &Reference,
    ours: &[RemoteRecord],
    alone: &Documents,
    to: &CacheTo,
    copy: CopyReport,
    report: &dyn Fn(CacheEvent<'_>),
) -> Result<ExportReport, CacheError> {
    let err = |source| CacheError::Export {
        location: to.location.to_string(),
        source,
    };
    let tag = reference.tag_or_digest();
    for attempt in 1..=MAX_ATTEMPTS {
        let current = read_registry(repo, &tag, None).map_err(err)?;
        let token = current.as_ref().map(|(d, _)| d.digest.clone());
        let (docs, kept, dropped) = merged(&current, ours, to.max_size);
        let config = format::CacheConfig::parse(format::CONFIG_MEDIA_TYPE, &docs.config_bytes)
            .expect("our own config reads back");
        // Our records that survived the trim: what must be there after the write.
        let ours_kept: Vec<RemoteRecord> = ours
            .iter()
            .filter(|o| config.keys().contains(&o.key))
            .cloned()
            .collect();
        // A cache that held none of the records (a new ref, or one we replace whole) is our
        // records alone, already there from the copy.
        let fresh = docs.manifest.digest == alone.manifest.digest;
        if !fresh {
            if Sink::try_reuse(repo, &docs.config, &NoLocations)
                .map_err(err)?
                .is_none()
            {
                Sink::put_blob(
                    repo,
                    &docs.config,
                    &mut &docs.config_bytes[..],
                    &NoLocations,
                )
                .map_err(err)?;
            }
            repo.put_manifest_bytes(
                &docs.manifest.digest.to_string(),
                &docs.manifest,
                &docs.manifest_bytes,
            )
            .map_err(|e| err(content_error(e)))?;
        }
        // Compare: the tag must still name what we merged into.
        let compared = Instant::now();
        let now = tag_digest(repo, &tag).map_err(err)?;
        if now != token {
            report(CacheEvent::Contended {
                location: &to.location,
                attempt,
            });
            std::thread::sleep(jittered(RETRY_PAUSE));
            continue;
        }
        // Swap.
        repo.put_manifest_bytes(&tag, &docs.manifest, &docs.manifest_bytes)
            .map_err(|e| err(content_error(e)))?;
        // A writer that compared before our swap may still swap after it: the time between
        // its compare and its swap is what ours took, so give it that twice, then look.
        std::thread::sleep(compared.elapsed().mul_f64(2.0).max(MIN_SETTLE));
        // Ours is still there, or another writer's that kept our records.
        let after = match tag_digest(repo, &tag).map_err(err)? {
            Some(d) if d == docs.manifest.digest => Some(d),
            _ => match read_registry(repo, &tag, None).map_err(err)? {
                Some((d, Ok(c))) if format::holds_all(&c, &ours_kept) => Some(d.digest),
                _ => None,
            },
        };
        if let Some(manifest) = after {
            return Ok(ExportReport {
                records: kept,
                ours: ours.len(),
                dropped,
                copy,
                attempts: attempt,
                manifest: Some(manifest),
            });
        }
        report(CacheEvent::Contended {
            location: &to.location,
            attempt,
        });
    }
    Err(CacheError::Contended {
        location: to.location.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

/// The digest `tag` names now (None: nothing).
fn tag_digest(repo: &Repository, tag: &str) -> Result<Option<Digest>, ContentError> {
    match repo.get_manifest(tag, None) {
        Ok((d, _)) => Ok(Some(d.digest)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(content_error(e)),
    }
}
