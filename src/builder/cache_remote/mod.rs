//! The build cache beyond the store: `--cache-from` and `--cache-to` (buildx's flags), in
//! registries (`type=registry`) and OCI layout directories (`type=local`).
//!
//! ```text
//! spec    parse the flags (CSV `key=value`, as buildx), and bake's mapping form
//! format  the artifact: an image manifest whose config (manifold's media type) holds the
//!         records, whose layers are their blobs; merging and `max-size` trimming
//! layout  an OCI layout directory as a content source and sink
//! io      reading a cache; writing one: merge with what the ref holds, compare-and-swap on
//!         the manifest digest, retry when another writer got in between
//! ahead   the layers of a `mode=max` registry export uploaded while the build goes on
//! ```
//!
//! Keys are the local cache's (`cache::KeyBuilder`), so one ref serves every platform and
//! every runner: each record is found by what decides it. A hit is lazy: the record says what
//! the layer is, and its bytes are fetched only when a step that runs needs them (`ensure`),
//! or when the image must be whole in the store; an image pushed to the cache's registry
//! mounts them instead (the cache repository is recorded as where they live).

pub mod ahead;
mod base;
pub mod format;
mod io;
pub mod layout;
pub mod spec;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use format::{RemoteRecord, Unusable};
pub use io::{ExportReport, export, import};
pub use spec::{CacheFrom, CacheLocation, CacheTo, Mode, SpecError};

use super::cache::Record;
use crate::content::{BlobLocation, BlobLocations, ContentError, NoLocations, Source};
use crate::hint::Hint;
use crate::oci::{Descriptor, Digest};
use crate::platform::Platform;
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::registry::{Client, PullSource, Repository, content_error};
use crate::store::{Store, StoreError, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read the build cache `{location}`")]
    Import {
        location: String,
        #[source]
        source: ContentError,
    },
    #[error("the build cache `{location}` is not usable: {why}")]
    Unusable { location: String, why: Unusable },
    #[error("cannot export the build cache to `{location}`")]
    Export {
        location: String,
        #[source]
        source: ContentError,
    },
    #[error(
        "cannot export the build cache to `{location}`: other writers changed it {attempts} times while this build merged its records"
    )]
    Contended { location: String, attempts: usize },
    #[error("cannot fetch layer {digest} of the build cache")]
    Fetch {
        digest: Digest,
        #[source]
        source: ContentError,
    },
    #[error("layer {digest} is not in the store, and no cache or registry is known to hold it")]
    NoOrigin { digest: Digest },
    #[error("cannot fetch layer {digest} of the build cache: no registry client")]
    NoClient { digest: Digest },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hint for CacheError {
    fn hint(&self) -> Option<String> {
        match self {
            CacheError::Export { .. } | CacheError::Contended { .. } => Some(
                "add `,ignore-error=true` to `--cache-to` to let the build succeed when its cache cannot be written".into(),
            ),
            CacheError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// What the remote cache did, for the build's log.
#[derive(Debug, Clone, Copy)]
pub enum CacheEvent<'a> {
    /// Records read from a `--cache-from`.
    Imported {
        location: &'a CacheLocation,
        records: usize,
    },
    /// A `--cache-from` could not be read: the build goes on without it.
    ImportFailed {
        location: &'a CacheLocation,
        error: &'a CacheError,
    },
    /// A `--cache-from` that is not a cache this manifold reads: ignored.
    Ignored {
        location: &'a CacheLocation,
        why: &'a Unusable,
    },
    /// Records written to a `--cache-to`.
    Exported {
        location: &'a CacheLocation,
        report: &'a ExportReport,
    },
    /// A `--cache-to …,ignore-error=true` that failed.
    ExportFailed {
        location: &'a CacheLocation,
        error: &'a CacheError,
    },
    /// Another writer changed the ref between our read and our write: merging again.
    Contended {
        location: &'a CacheLocation,
        attempt: usize,
    },
}

/// Where a blob can be read when the store lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// A repository of a registry (a cache ref's, a base image's).
    Registry(BlobLocation),
    /// What a pull of this reference reads from (mirrors first).
    Pull(Reference),
    /// An OCI layout directory.
    Dir(PathBuf),
}

/// A step the build used (ran, or took from a cache), for the export.
#[derive(Debug, Clone)]
struct Used {
    stage: Digest,
    key: Digest,
    platform: String,
    record: Record,
}

/// What a base reference names, and the bytes of the index when it is one.
type ResolvedTop = (Descriptor, Option<Vec<u8>>);

/// One build's view of the remote caches: the records imported, where lazy blobs live, the
/// steps used (for the export).
pub struct RemoteCache<'a> {
    client: Option<&'a Client>,
    records: HashMap<Digest, RemoteRecord>,
    /// Where each imported blob lives (every import that lists it, in `--cache-from` order).
    blobs: HashMap<Digest, Vec<Origin>>,
    /// Where the layers of base images resolved lazily live.
    bases: Mutex<HashMap<Digest, Origin>>,
    /// What each base reference resolved to (and the index's bytes), for the other platforms.
    tops: Mutex<HashMap<String, ResolvedTop>>,
    used: Mutex<Vec<Used>>,
    /// One fetch per blob at a time.
    fetching: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// Resolve base images without their layers (worth it only when steps may come from an
    /// import).
    lazy_bases: bool,
    /// The layers of the steps used go ahead to the exports, once opened.
    pub ahead: ahead::Ahead,
}

impl<'a> RemoteCache<'a> {
    /// Read every `from` (failures are reported and skipped: a cache never fails a build).
    pub fn open(
        client: Option<&'a Client>,
        from: &[CacheFrom],
        report: &dyn Fn(CacheEvent<'_>),
    ) -> RemoteCache<'a> {
        let mut records = HashMap::new();
        let mut blobs: HashMap<Digest, Vec<Origin>> = HashMap::new();
        let mut any = false;
        for f in from {
            match io::import(client, &f.location) {
                Ok(config) => {
                    any = true;
                    report(CacheEvent::Imported {
                        location: &f.location,
                        records: config.records.len(),
                    });
                    let origin = match &f.location {
                        CacheLocation::Registry(r) => {
                            Origin::Registry(BlobLocation::new(r.registry(), r.repository()))
                        }
                        CacheLocation::Local { dir, .. } => Origin::Dir(dir.clone()),
                    };
                    for r in config.records {
                        if let Some(l) = &r.layer {
                            let at = blobs.entry(l.descriptor.digest.clone()).or_default();
                            if !at.contains(&origin) {
                                at.push(origin.clone());
                            }
                        }
                        // The first source that has a key gives it.
                        records.entry(r.key.clone()).or_insert(r);
                    }
                }
                Err(CacheError::Unusable { why, .. }) => report(CacheEvent::Ignored {
                    location: &f.location,
                    why: &why,
                }),
                Err(error) => report(CacheEvent::ImportFailed {
                    location: &f.location,
                    error: &error,
                }),
            }
        }
        RemoteCache {
            client,
            records,
            blobs,
            bases: Mutex::new(HashMap::new()),
            tops: Mutex::new(HashMap::new()),
            used: Mutex::new(Vec::new()),
            fetching: Mutex::new(HashMap::new()),
            lazy_bases: any && client.is_some(),
            ahead: ahead::Ahead::default(),
        }
    }

    /// The record of `key` from an import, its layer (if any) possibly not in the store yet:
    /// the store learns where it lives, so that a push to the same registry mounts it.
    pub fn get(&self, store: &Store, key: &Digest) -> Option<Record> {
        let r = self.records.get(key)?;
        if let Some(l) = &r.layer {
            let here: Vec<BlobLocation> = self
                .blobs
                .get(&l.descriptor.digest)
                .into_iter()
                .flatten()
                .filter_map(|o| match o {
                    Origin::Registry(b) => Some(b.clone()),
                    _ => None,
                })
                .collect();
            let _ = store.add_blob_locations(&l.descriptor.digest, &here);
        }
        Some(Record {
            layer: r.layer.clone(),
            created: r.created.clone(),
            blobs: format::blobs_of(&r.layer),
        })
    }

    /// Whether base images are resolved without their layers.
    pub fn lazy_bases(&self) -> bool {
        self.lazy_bases
    }

    /// A step of stage `stage` (its identity) used `record` under `key`.
    pub fn note(&self, stage: &Digest, key: &Digest, platform: &Platform, record: &Record) {
        if let Some(l) = &record.layer {
            self.ahead.send(&l.descriptor);
        }
        self.used.lock().expect("used").push(Used {
            stage: stage.clone(),
            key: key.clone(),
            platform: platform.to_string(),
            record: record.clone(),
        });
    }

    /// The records an export of `mode` writes: every step used, or (`Mode::Min`) those of the
    /// stages in `final_stages`.
    pub fn records(&self, mode: Mode, final_stages: &[Digest]) -> Vec<RemoteRecord> {
        let exported = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut out: HashMap<Digest, RemoteRecord> = HashMap::new();
        for u in self.used.lock().expect("used").iter() {
            if mode == Mode::Min && !final_stages.contains(&u.stage) {
                continue;
            }
            out.entry(u.key.clone()).or_insert_with(|| RemoteRecord {
                key: u.key.clone(),
                platform: u.platform.clone(),
                size: u.record.layer.as_ref().map_or(0, |l| l.descriptor.size),
                layer: u.record.layer.clone(),
                created: u.record.created.clone(),
                exported: exported.clone(),
            });
        }
        let mut v: Vec<RemoteRecord> = out.into_values().collect();
        v.sort_by_key(|a| a.key.to_string());
        v
    }

    /// Remember that the layers of base image `reference` live where a pull of it reads.
    pub fn note_base(&self, store: &Store, reference: &Reference, layers: &[Descriptor]) {
        let here = BlobLocation::new(reference.registry(), reference.repository());
        let mut bases = self.bases.lock().expect("bases");
        for l in layers {
            bases.insert(l.digest.clone(), Origin::Pull(reference.clone()));
            let _ = store.add_blob_locations(&l.digest, std::slice::from_ref(&here));
        }
    }

    /// Where `desc` can be read, best first: the imports that list it, the base image it
    /// belongs to, the registries the store knows it in.
    fn origins(&self, store: &Store, desc: &Descriptor) -> Vec<Origin> {
        let mut out: Vec<Origin> = self.blobs.get(&desc.digest).cloned().unwrap_or_default();
        if let Some(o) = self.bases.lock().expect("bases").get(&desc.digest) {
            out.push(o.clone());
        }
        for l in store.blob_locations(&desc.digest) {
            let o = Origin::Registry(l);
            if !out.contains(&o) {
                out.push(o);
            }
        }
        out
    }

    /// Make every one of `layers` present in the store, fetching the missing ones (several at
    /// once) from where they live.
    pub fn ensure(
        &self,
        store: &Transaction,
        layers: &[Descriptor],
        progress: &dyn Progress,
    ) -> Result<(), CacheError> {
        let missing: Vec<&Descriptor> = layers
            .iter()
            .filter(|l| !store.has_blob(&l.digest))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let first_error: Mutex<Option<CacheError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..missing.len().min(crate::content::DEFAULT_CONCURRENCY) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(desc) = missing.get(i) else { return };
                        if first_error.lock().expect("error").is_some() {
                            return;
                        }
                        if let Err(e) = self.fetch(store, desc, progress) {
                            first_error.lock().expect("error").get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        match first_error.into_inner().expect("error") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fetch(
        &self,
        store: &Transaction,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<(), CacheError> {
        let lock = self
            .fetching
            .lock()
            .expect("fetching")
            .entry(desc.digest.clone())
            .or_default()
            .clone();
        let _one = lock.lock().expect("fetch");
        if store.has_blob(&desc.digest) {
            return Ok(());
        }
        let origins = self.origins(store, desc);
        fetch_from(self.client, store, desc, &origins, progress)
    }
}

impl RemoteCache<'_> {
    /// After the build: the images' layers made present in the store — all of them, or with
    /// `lazy_output` (the images are only pushed) those no registry holds; and the steps whose
    /// imported layer is now in the store recorded in the store's cache, for the next build.
    pub fn finish(
        &self,
        store: &Transaction,
        images: &[Descriptor],
        lazy_output: bool,
        progress: &dyn Progress,
    ) -> Result<(), CacheError> {
        let mut layers = Vec::new();
        for m in images {
            layers.extend(store.read_manifest(&m.digest)?.value.layers);
        }
        if lazy_output {
            layers.retain(|l| {
                !store.has_blob(&l.digest)
                    && !self
                        .origins(store, l)
                        .iter()
                        .any(|o| matches!(o, Origin::Registry(_) | Origin::Pull(_)))
            });
        }
        self.ensure(store, &layers, progress)?;
        let cache = super::cache::Cache::open(store)?;
        for u in self.used.lock().expect("used").iter() {
            if let Some(l) = &u.record.layer
                && store.has_blob(&l.descriptor.digest)
                && cache.get(&u.key).is_none()
            {
                cache.put(&u.key, &u.record)?;
            }
        }
        Ok(())
    }
}

/// Fetch `desc` into the store from the first of `origins` that gives it.
fn fetch_from(
    client: Option<&Client>,
    store: &Transaction,
    desc: &Descriptor,
    origins: &[Origin],
    progress: &dyn Progress,
) -> Result<(), CacheError> {
    let mut last = None;
    let id = desc.digest.short().to_string();
    for o in origins {
        let result = with_reader(client, o, desc, |reader| {
            progress.start(&id, &id, Some(desc.size));
            let mut reader = ProgressReader::new(reader, &id, progress);
            let r = store
                .write_blob(&mut reader, Some(desc))
                .map(|_| ())
                .map_err(|e| match e {
                    StoreError::Content(c) => c,
                    e => ContentError::Backend(Box::new(e)),
                });
            progress.finish(&id, if r.is_ok() { "fetched" } else { "failed" });
            r
        });
        match result {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(CacheError::NoClient { .. }) | None if origins.is_empty() => CacheError::NoOrigin {
            digest: desc.digest.clone(),
        },
        Some(e) => e,
        None => CacheError::NoOrigin {
            digest: desc.digest.clone(),
        },
    })
}

/// Open `desc` at `origin` and hand the stream to `f`.
fn with_reader<T>(
    client: Option<&Client>,
    origin: &Origin,
    desc: &Descriptor,
    f: impl FnOnce(&mut dyn Read) -> Result<T, ContentError>,
) -> Result<T, CacheError> {
    let fetch_err = |source| CacheError::Fetch {
        digest: desc.digest.clone(),
        source,
    };
    let need_client = || CacheError::NoClient {
        digest: desc.digest.clone(),
    };
    match origin {
        Origin::Dir(dir) => {
            let l = layout::LayoutDir::new(dir);
            let mut r = l.open_blob(desc, &NoLocations).map_err(fetch_err)?;
            f(&mut r).map_err(fetch_err)
        }
        Origin::Registry(at) => {
            let client = client.ok_or_else(need_client)?;
            let transport = client
                .transport(&at.registry)
                .map_err(|e| fetch_err(content_error(e)))?;
            let repo = Repository::new(transport, &at.repository);
            let mut r = repo.open_blob(desc, &NoLocations).map_err(fetch_err)?;
            f(&mut r).map_err(fetch_err)
        }
        Origin::Pull(reference) => {
            let client = client.ok_or_else(need_client)?;
            let source = client
                .pull_source(reference)
                .map_err(|e| fetch_err(content_error(e)))?;
            let mut r = source.open_blob(desc, &NoLocations).map_err(fetch_err)?;
            f(&mut r).map_err(fetch_err)
        }
    }
}

/// The store as a source whose missing blobs are read from where they live (an import, a
/// base image's registry, a registry the store knows them in): what a push of an image with
/// lazy layers, or an export of a cache, reads from. `docs` are documents not in the store
/// (a cache's manifest and config).
pub struct Blobs<'a> {
    store: &'a Store,
    /// Where each blob the store lacks can be read.
    origins: HashMap<Digest, Vec<Origin>>,
    repos: HashMap<BlobLocation, Repository>,
    pulls: HashMap<String, PullSource>,
    docs: Vec<(Digest, Vec<u8>)>,
}

impl<'a> Blobs<'a> {
    /// For reading `wanted` (blobs of an image or a cache): the connections to where the
    /// missing ones live are made now.
    pub fn new<'d>(
        store: &'a Store,
        client: Option<&Client>,
        remote: Option<&RemoteCache<'_>>,
        wanted: impl IntoIterator<Item = &'d Descriptor>,
    ) -> Blobs<'a> {
        let mut b = Blobs {
            store,
            origins: HashMap::new(),
            repos: HashMap::new(),
            pulls: HashMap::new(),
            docs: Vec::new(),
        };
        for d in wanted {
            if store.has_blob(&d.digest) || b.origins.contains_key(&d.digest) {
                continue;
            }
            let origins = match remote {
                Some(r) => r.origins(store, d),
                None => store
                    .blob_locations(&d.digest)
                    .into_iter()
                    .map(Origin::Registry)
                    .collect(),
            };
            for o in &origins {
                let Some(client) = client else { break };
                match o {
                    Origin::Registry(at) if !b.repos.contains_key(at) => {
                        if let Ok(t) = client.transport(&at.registry) {
                            b.repos
                                .insert(at.clone(), Repository::new(t, &at.repository));
                        }
                    }
                    Origin::Pull(r) if !b.pulls.contains_key(&r.to_string()) => {
                        if let Ok(p) = client.pull_source(r) {
                            b.pulls.insert(r.to_string(), p);
                        }
                    }
                    _ => {}
                }
            }
            b.origins.insert(d.digest.clone(), origins);
        }
        b
    }

    /// For pushing the image `root` from the store (the layers it lacks read from where they
    /// live).
    pub fn for_image(
        store: &'a Store,
        client: Option<&Client>,
        root: &Descriptor,
    ) -> Result<Blobs<'a>, StoreError> {
        let mut manifests = Vec::new();
        if root.is_index() {
            let index = store.read_index(&root.digest)?;
            manifests.extend(
                index
                    .value
                    .manifests
                    .iter()
                    .filter(|d| d.is_manifest() && store.has_blob(&d.digest))
                    .cloned(),
            );
        } else {
            manifests.push(root.clone());
        }
        let mut layers = Vec::new();
        for m in &manifests {
            layers.extend(store.read_manifest(&m.digest)?.value.layers);
        }
        Ok(Blobs::new(store, client, None, &layers))
    }

    pub fn with_document(mut self, digest: Digest, bytes: Vec<u8>) -> Blobs<'a> {
        self.docs.push((digest, bytes));
        self
    }

    fn doc(&self, digest: &Digest) -> Option<&[u8]> {
        self.docs
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, b)| b.as_slice())
    }

    fn open_at(
        &self,
        origin: &Origin,
        desc: &Descriptor,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        let missing = || ContentError::NotFound(desc.digest.to_string());
        match origin {
            Origin::Dir(dir) => {
                let path = dir
                    .join("blobs")
                    .join(desc.digest.algorithm().name())
                    .join(desc.digest.hex());
                let f = std::fs::File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => missing(),
                    _ => ContentError::Io(e),
                })?;
                Ok(Box::new(f))
            }
            Origin::Registry(at) => self
                .repos
                .get(at)
                .ok_or_else(missing)?
                .open_blob(desc, &NoLocations),
            Origin::Pull(r) => self
                .pulls
                .get(&r.to_string())
                .ok_or_else(missing)?
                .open_blob(desc, &NoLocations),
        }
    }
}

impl Source for Blobs<'_> {
    fn resolve(&self, reference: &Reference) -> Result<Descriptor, ContentError> {
        Source::resolve(self.store, reference)
    }

    fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ContentError> {
        match self.doc(&desc.digest) {
            Some(b) => Ok(b.to_vec()),
            None => self.store.fetch_manifest(desc),
        }
    }

    fn open_blob(
        &self,
        desc: &Descriptor,
        locations: &dyn BlobLocations,
    ) -> Result<Box<dyn Read + Send + '_>, ContentError> {
        if let Some(b) = self.doc(&desc.digest) {
            return Ok(Box::new(b));
        }
        if self.store.has_blob(&desc.digest) {
            return Source::open_blob(self.store, desc, locations);
        }
        let mut last = ContentError::NotFound(desc.digest.to_string());
        for o in self.origins.get(&desc.digest).into_iter().flatten() {
            match self.open_at(o, desc) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Where the blobs a push reads live: the store's knowledge, and the caches' and bases'
/// registries this build found them in (a push to one of those mounts them).
impl BlobLocations for Blobs<'_> {
    fn candidates(&self, digest: &Digest) -> Vec<BlobLocation> {
        let mut out = self.store.blob_locations(digest);
        for o in self.origins.get(digest).into_iter().flatten() {
            let at = match o {
                Origin::Registry(b) => b.clone(),
                Origin::Pull(r) => BlobLocation::new(r.registry(), r.repository()),
                Origin::Dir(_) => continue,
            };
            if !out.contains(&at) {
                out.push(at);
            }
        }
        out
    }

    fn record(&self, digest: &Digest, location: &BlobLocation) {
        BlobLocations::record(self.store, digest, location)
    }
}

/// Push the built image `root` (named `name` in errors) to `destination` and name it there:
/// `Ops::push`, except that the layers the store lacks (they came from a registry's build cache
/// or a base image and were never fetched) are mounted from, or read at, where they live.
pub fn push(
    ops: &crate::ops::Ops<'_>,
    txn: &Transaction,
    name: &str,
    root: &Descriptor,
    destination: &Reference,
) -> Result<crate::ops::Pushed, crate::ops::OpsError> {
    let source = Blobs::for_image(txn.store(), ops.client(), root)?;
    ops.push_from(&source, &source, txn, name, root, destination)
}
