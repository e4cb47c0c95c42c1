//! The executor: plans (one per target platform) run against the store. Stages are memoised by
//! the identity of their plan, so a stage that is the same for every target (a
//! `FROM --platform=$BUILDPLATFORM` stage that does not use TARGETARCH) is built once; steps
//! are memoised by cache key within the build and looked up in the step cache across builds.
//! Platforms and independent stages run on threads of their own.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use super::cache::{Cache, KeyBuilder, Record};
use super::cache_remote::RemoteCache;
use super::context::Context;
use super::copy::{self, CopyEnv};
use super::fetch::{self, FetchError, Fetched};
use super::layer::{self, Entry, Kind, LayerInfo};
use super::report::{BuildEvent, BuildReporter, Emulation, StepInfo};
use super::run::{BindSource, RunError, RunRequest, Runner, View};
use super::secrets::{Secrets, SshAgents};
use super::tree::{self, Tree};
use super::{BuildError, ImageError, StepError};
use crate::content::{ContentError, Platforms};
use crate::dockerfile::instructions::{Dockerfile, MountKind};
use crate::dockerfile::plan::{
    self, Base, CopyFrom, CopySrc, Op, Plan, PlanOptions, ResolveError, Resolver, StagePlan, Step,
};
use crate::layer::Compression;
use crate::oci::{self, Descriptor, Digest, History, ImageConfig, Manifest, Parsed, media_type};
use crate::ops::{Ops, OpsError};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::Client;
use crate::store::{StoreError, Transaction};

pub struct Options<'a> {
    /// The store, in a transaction the caller keeps open until it has tagged (or pushed, or
    /// exported) the output: until then nothing else keeps the new blobs from a collection.
    pub store: &'a Transaction,
    pub dockerfile: &'a Dockerfile,
    pub context: &'a Context,
    pub platforms: Vec<Platform>,
    pub plan: PlanOptions,
    pub no_cache: bool,
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: every timestamp clamped to it.
    pub epoch: Option<u64>,
    /// Fetches what the store lacks of base images; None: the store only.
    pub client: Option<&'a Client>,
    pub runner: &'a dyn Runner,
    pub reporter: &'a dyn BuildReporter,
    /// `--cache-from` records (looked up after the store's) and what `--cache-to` exports.
    pub remote: Option<&'a RemoteCache<'a>>,
    /// `--secret`: read by `RUN --mount=type=secret`, never part of a key, record or layer.
    pub secrets: &'a Secrets,
    /// `--ssh`: the agents `RUN --mount=type=ssh` forwards to.
    pub ssh: &'a SshAgents,
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub platform: Platform,
    /// The manifest, with its platform.
    pub manifest: Descriptor,
    pub config: Digest,
    /// What its build used (provenance's resolved dependencies) and the steps it ran.
    pub used: Used,
}

/// What one platform's build used from outside its context, and the steps of its stages.
#[derive(Debug, Clone, Default)]
pub struct Used {
    /// Base images and `COPY --from` images, each once.
    pub images: Vec<UsedImage>,
    /// ADD URLs, by the digest of what they served.
    pub urls: Vec<(String, Digest)>,
    /// IDs of the secrets and SSH agents RUN steps mount (never their values).
    pub secrets: Vec<String>,
    pub ssh: Vec<String>,
    /// Every step of the stages the target needs, in order.
    pub steps: Vec<UsedStep>,
}

/// An image a build used, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedImage {
    /// As the Dockerfile names it.
    pub reference: String,
    pub platform: Platform,
    /// The platform's manifest.
    pub manifest: Digest,
    /// The index the reference named, when it named one.
    pub index: Option<Digest>,
}

/// A step as provenance records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedStep {
    pub stage: String,
    pub platform: Platform,
    pub line: usize,
    /// As written (build args not expanded).
    pub instruction: String,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub images: Vec<BuiltImage>,
    /// The manifest (one platform) or the index over them (several).
    pub root: Descriptor,
    /// How many steps ran, and how many came from the cache.
    pub steps_run: usize,
    pub steps_cached: usize,
    /// The identities of the stages the images are made of (the target and its bases): what
    /// a `mode=min` cache export writes.
    pub final_stages: Vec<Digest>,
    /// The time RUN steps spent under QEMU, per platform.
    pub emulation: Emulation,
}

/// A resolved base image.
struct Image {
    /// What the reference named: an index, or the manifest itself.
    top: Digest,
    manifest: Descriptor,
    value: Manifest,
    config: ImageConfig,
}

/// What a finished stage is.
struct StageOut {
    platform: Platform,
    layers: Vec<Descriptor>,
    diff_ids: Vec<Digest>,
    history: Vec<History>,
    config: ImageConfig,
    /// The key of its filesystem state.
    chain: Digest,
    tree: Mutex<Option<Arc<Tree>>>,
}

type Shared<T> = Arc<OnceLock<Result<T, Arc<BuildError>>>>;

/// A stage's filesystem view while its steps run: loaded when a step first needs it, then
/// brought up to date with the layers added since only when a step looks again.
#[derive(Default)]
struct StageTree {
    tree: Option<Tree>,
    /// Layers added after the view was loaded, not read into it yet.
    pending: Vec<Descriptor>,
}

/// An ADD URL within one build: its content's digest (fetched or revalidated once, for the
/// cache keys) and its body once downloaded.
#[derive(Default)]
struct Url {
    digest: Option<Digest>,
    body: Option<std::path::PathBuf>,
}

struct Executor<'a> {
    o: &'a Options<'a>,
    cache: Cache,
    plans: Vec<Plan>,
    /// Identity of each planned stage, per platform.
    ids: Vec<BTreeMap<usize, Digest>>,
    stages: Mutex<HashMap<Digest, Shared<Arc<StageOut>>>>,
    steps: Mutex<HashMap<Digest, Shared<(Record, bool)>>>,
    images: Mutex<HashMap<(String, String), Arc<Image>>>,
    urls: Mutex<HashMap<String, Arc<Mutex<Url>>>>,
    /// Where URL bodies are downloaded, for the build's duration.
    downloads: tempfile::TempDir,
    downloaded: AtomicUsize,
    failed: AtomicBool,
    counter: AtomicUsize,
    run: AtomicUsize,
    cached: AtomicUsize,
    /// The time the steps that ran took, and RUN steps under QEMU per platform.
    emulation: Mutex<Emulation>,
    now: u64,
}

/// The transfers of a base image's fetch; its notices are left out when the build reported
/// the pull itself.
struct Transfers<'a> {
    inner: &'a dyn Progress,
    notices: bool,
}

impl Progress for Transfers<'_> {
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        self.inner.start(id, label, total)
    }
    fn advance(&self, id: &str, bytes: u64) {
        self.inner.advance(id, bytes)
    }
    fn finish(&self, id: &str, outcome: &str) {
        self.inner.finish(id, outcome)
    }
    fn message(&self, text: &str) {
        self.inner.message(text)
    }
    fn notice(&self, text: &str) {
        if self.notices {
            self.inner.notice(text)
        }
    }
}

/// Why `ensure_local` could not give a base image, as the build names it.
fn image_error(reference: &str, platform: &Platform, e: OpsError) -> Box<ImageError> {
    let reference = reference.to_string();
    Box::new(match e {
        OpsError::NotFound(_) | OpsError::NotLocal(_) => ImageError::NotInStore { reference },
        OpsError::Reference(source) => ImageError::Reference { reference, source },
        OpsError::Registry(source) => ImageError::Registry { reference, source },
        OpsError::Store(source) => ImageError::Store { reference, source },
        OpsError::WrongPlatform { actual, .. } => ImageError::WrongPlatform {
            reference,
            actual,
            platform: platform.to_string(),
        },
        OpsError::Content(ContentError::NoMatchingPlatform { available, .. }) => {
            ImageError::NoPlatform {
                reference,
                platform: platform.to_string(),
                available: available
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        }
        source => ImageError::Pull {
            reference,
            platform: platform.to_string(),
            source,
        },
    })
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Run the build; returns the images, written in `o.store`'s transaction but not tagged.
pub fn build(o: &Options<'_>) -> Result<Output, BuildError> {
    let started = Instant::now();
    let cache = Cache::open(o.store)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut ex = Executor {
        o,
        cache,
        plans: Vec::new(),
        ids: Vec::new(),
        stages: Mutex::new(HashMap::new()),
        steps: Mutex::new(HashMap::new()),
        images: Mutex::new(HashMap::new()),
        urls: Mutex::new(HashMap::new()),
        downloads: tempfile::Builder::new()
            .prefix("downloads-")
            .tempdir_in(o.store.tmp_dir())
            .map_err(|source| BuildError::Temp {
                dir: o.store.tmp_dir().to_path_buf(),
                source,
            })?,
        downloaded: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        counter: AtomicUsize::new(0),
        run: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        emulation: Mutex::new(Emulation::default()),
        now: o.epoch.map_or(now, |e| now.min(e)),
    };
    for p in &o.platforms {
        let plan = plan::plan(o.dockerfile, p, &o.plan, &ex)?;
        let ids = identities(&plan);
        ex.plans.push(plan);
        ex.ids.push(ids);
    }
    if let Some(plan) = ex.plans.first()
        && !plan.unused_args.is_empty()
    {
        o.reporter
            .report(&BuildEvent::UnusedArgs(&plan.unused_args));
    }
    let ex = &ex;
    ex.run_stages();
    let results: Vec<Result<Arc<StageOut>, Arc<BuildError>>> = ex
        .plans
        .iter()
        .enumerate()
        .map(|(pi, plan)| ex.stage(pi, plan.target))
        .collect();
    // Report the failure itself, not a stage that stopped because of it.
    if results.iter().any(|r| r.is_err()) {
        let stage_errors: Vec<Arc<BuildError>> = ex
            .stages
            .lock()
            .expect("stages")
            .values()
            .filter_map(|cell| cell.get().and_then(|r| r.as_ref().err().cloned()))
            .collect();
        let e = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .chain(stage_errors.iter())
            .min_by_key(|e| matches!(e.root(), BuildError::Cancelled))
            .expect("an error");
        return Err(BuildError::Shared(e.clone()));
    }
    let mut images = Vec::new();
    for (pi, r) in results.into_iter().enumerate() {
        let out = r.map_err(BuildError::Shared)?;
        let mut image = ex.write_image(&out)?;
        image.used = ex.used(pi)?;
        images.push(image);
    }
    let root = if images.len() == 1 {
        images[0].manifest.clone()
    } else {
        let index = Parsed::from_value(oci::Index::new_oci(
            images.iter().map(|i| i.manifest.clone()).collect(),
        ));
        o.store.put_bytes(&index.bytes)?;
        index.descriptor(media_type::OCI_INDEX)
    };
    let out = Output {
        images,
        root,
        steps_run: ex.run.load(Ordering::Relaxed),
        steps_cached: ex.cached.load(Ordering::Relaxed),
        final_stages: ex.final_stages(),
        emulation: ex.emulation.lock().expect("emulation").clone(),
    };
    o.reporter.report(&BuildEvent::BuildFinished {
        root: &out.root,
        steps_run: out.steps_run,
        steps_cached: out.steps_cached,
        duration: started.elapsed(),
        emulation: &out.emulation,
    });
    Ok(out)
}

/// A digest per planned stage that is equal exactly when two stages would build the same
/// thing (platform, base, steps, config; stages they use by their own identity). Computed in
/// the plan's order, so the stages a stage uses always have theirs already.
fn identities(plan: &Plan) -> BTreeMap<usize, Digest> {
    let mut ids: BTreeMap<usize, Digest> = BTreeMap::new();
    for &i in &plan.order {
        let s = plan.stage(i);
        let mut k = KeyBuilder::new("stage");
        k.add_str(&s.platform.to_string());
        match &s.base {
            Base::Stage(j) => {
                k.add_str("stage").add_str(&ids[j].to_string());
            }
            b => {
                k.add_json(b);
            }
        }
        for step in &s.steps {
            k.add_str(&step.created_by);
            match &step.op {
                Op::Copy(c) => {
                    if let CopyFrom::Stage(j) = c.from {
                        k.add_str(&ids[&j].to_string());
                    }
                }
                Op::Run(r) => {
                    for m in &r.mounts {
                        if let Some(CopyFrom::Stage(j)) = m.from {
                            k.add_str(&ids[&j].to_string());
                        }
                    }
                }
                _ => {}
            }
            k.add_json(&step.op);
        }
        k.add_json(&s.config);
        ids.insert(i, k.finish());
    }
    ids
}

/// How many stages run at once (independent stages and platforms; the rest wait their turn).
const PARALLEL_STAGES: usize = 16;

impl Resolver for Executor<'_> {
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, ResolveError> {
        match self.image(reference, platform) {
            Ok(i) => Ok(i.config.clone()),
            Err(e) => Err(e),
        }
    }

    fn local_image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, ResolveError> {
        Ok(self.local_image(reference, platform, None)?.config)
    }
}

impl<'a> Executor<'a> {
    /// A base image (or `COPY --from` image) for a platform: from the store, what it lacks
    /// fetched first (see `ops::ensure_local`).
    fn image(&self, reference: &str, platform: &Platform) -> Result<Arc<Image>, Box<ImageError>> {
        let key = (reference.to_string(), platform.to_string());
        if let Some(i) = self.images.lock().expect("images").get(&key) {
            return Ok(i.clone());
        }
        // A base the store lacks altogether, with a remote cache: resolved without its layers
        // (they are fetched only if a step that runs needs them).
        let lazy = self.o.remote.filter(|r| r.lazy_bases()).filter(|_| {
            matches!(
                self.o.store.lookup(reference),
                Err(StoreError::ImageNotFound(_))
            )
        });
        let image = match lazy {
            Some(remote) => {
                let (top, manifest, value, config) =
                    remote.resolve_base(self.o.store, reference, platform)?;
                Image {
                    top,
                    manifest,
                    value,
                    config,
                }
            }
            None => self.local_image(reference, platform, self.o.client)?,
        };
        let image = Arc::new(image);
        self.images
            .lock()
            .expect("images")
            .insert(key, image.clone());
        Ok(image)
    }

    /// The image for `platform`, made whole in the store (what it lacks fetched through
    /// `client`; None: the store only).
    fn local_image(
        &self,
        reference: &str,
        platform: &Platform,
        client: Option<&Client>,
    ) -> Result<Image, Box<ImageError>> {
        let store = self.o.store;
        let store_err = |source| ImageError::Store {
            reference: reference.to_string(),
            source,
        };
        // An image the store lacks altogether is reported as a pull of the build's; what
        // `ensure_local` fetches of an image the store has in part, it says itself.
        let mut pulling = false;
        if client.is_some()
            && let Err(StoreError::ImageNotFound(_)) = store.lookup(reference)
            && let Ok(r) = Reference::parse(reference)
        {
            self.o.reporter.report(&BuildEvent::Pulling {
                reference: &r,
                platform,
            });
            pulling = true;
        }
        let transfers = Transfers {
            inner: self.o.reporter.transfers(),
            notices: !pulling,
        };
        let ops = Ops::new(store.store(), client, &transfers);
        let local = ops
            .ensure_local(store, reference, &Platforms::Each(vec![platform.matcher()]))
            .map_err(|e| image_error(reference, platform, e))?;
        let top = local.descriptor.digest.clone();
        let desc = local
            .manifests
            .into_iter()
            .next()
            .ok_or_else(|| ImageError::NoPlatform {
                reference: reference.to_string(),
                platform: platform.to_string(),
                available: "none in the store".into(),
            })?;
        let manifest = store.read_manifest(&desc.digest).map_err(store_err)?;
        let config = store
            .read_config(&manifest.value.config.digest)
            .map_err(store_err)?
            .value;
        Ok(Image {
            top,
            manifest: desc,
            value: manifest.value,
            config,
        })
    }

    /// Run every planned stage of every platform, each once the stages it uses are done, on
    /// a bounded pool of threads: a Dockerfile of thousands of stages gets neither thousands
    /// of threads nor a recursion from each stage into its base.
    fn run_stages(&self) {
        let mut units: Vec<(usize, usize)> = Vec::new();
        let mut unit_of: HashMap<(usize, usize), usize> = HashMap::new();
        for (pi, plan) in self.plans.iter().enumerate() {
            for &si in &plan.order {
                unit_of.insert((pi, si), units.len());
                units.push((pi, si));
            }
        }
        let mut waiting = vec![0usize; units.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); units.len()];
        for (u, &(pi, si)) in units.iter().enumerate() {
            for d in self.plans[pi].stage(si).deps() {
                waiting[u] += 1;
                dependents[unit_of[&(pi, d)]].push(u);
            }
        }
        struct Queue {
            ready: VecDeque<usize>,
            waiting: Vec<usize>,
            left: usize,
        }
        let queue = Mutex::new(Queue {
            ready: (0..units.len()).filter(|&u| waiting[u] == 0).collect(),
            waiting,
            left: units.len(),
        });
        let wake = Condvar::new();
        let worker = || {
            loop {
                let u = {
                    let mut q = queue.lock().expect("queue");
                    loop {
                        if let Some(u) = q.ready.pop_front() {
                            break u;
                        }
                        if q.left == 0 {
                            return;
                        }
                        q = wake.wait(q).expect("queue");
                    }
                };
                let (pi, si) = units[u];
                // A failure is kept in the stage's cell; the stages using it report it.
                let _ = self.stage(pi, si);
                let mut q = queue.lock().expect("queue");
                q.left -= 1;
                for &d in &dependents[u] {
                    q.waiting[d] -= 1;
                    if q.waiting[d] == 0 {
                        q.ready.push_back(d);
                    }
                }
                wake.notify_all();
            }
        };
        std::thread::scope(|s| {
            for _ in 0..units.len().clamp(1, PARALLEL_STAGES) {
                s.spawn(worker);
            }
        });
    }

    fn url(&self, url: &str) -> Arc<Mutex<Url>> {
        self.urls
            .lock()
            .expect("urls")
            .entry(url.to_string())
            .or_default()
            .clone()
    }

    fn download_path(&self) -> std::path::PathBuf {
        let n = self.downloaded.fetch_add(1, Ordering::Relaxed);
        self.downloads.path().join(format!("body-{n}"))
    }

    /// The digest of what `url` serves now, once per build: revalidated with what the server
    /// said last time (a 304 is the same content, nothing downloaded), else downloaded.
    fn url_digest(&self, url: &str) -> Result<Digest, FetchError> {
        let cell = self.url(url);
        let mut u = cell.lock().expect("url");
        if let Some(d) = &u.digest {
            return Ok(d.clone());
        }
        let known = if self.o.no_cache {
            None
        } else {
            self.cache.validators(url)
        };
        let file = self.download_path();
        let fetched = fetch::fetch(url, &file, known.as_ref())?;
        self.keep_validators(url, &fetched)?;
        if matches!(fetched, Fetched::Body { .. }) {
            u.body = Some(file);
        }
        u.digest = Some(fetched.digest().clone());
        Ok(fetched.digest().clone())
    }

    /// The body of `url` for a step that runs: downloaded now when only revalidated before,
    /// and then it must still be the content the step's cache key names.
    fn keep_validators(&self, url: &str, fetched: &Fetched) -> Result<(), FetchError> {
        if let Fetched::Body {
            validators: Some(v),
            ..
        } = fetched
        {
            self.cache
                .put_validators(v)
                .map_err(|source| FetchError::Cache {
                    url: url.to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    fn url_body(&self, url: &str) -> Result<std::path::PathBuf, FetchError> {
        let want = self.url_digest(url)?;
        let cell = self.url(url);
        let mut u = cell.lock().expect("url");
        if let Some(b) = &u.body {
            return Ok(b.clone());
        }
        let file = self.download_path();
        let fetched = fetch::fetch(url, &file, None)?;
        if fetched.digest() != &want {
            return Err(FetchError::Changed {
                url: url.to_string(),
                was: want,
                now: fetched.digest().clone(),
            });
        }
        self.keep_validators(url, &fetched)?;
        u.body = Some(file.clone());
        Ok(file)
    }

    fn stage(&self, pi: usize, si: usize) -> Result<Arc<StageOut>, Arc<BuildError>> {
        let id = self.ids[pi][&si].clone();
        let cell = self
            .stages
            .lock()
            .expect("stages")
            .entry(id)
            .or_default()
            .clone();
        cell.get_or_init(|| {
            let r = self.run_stage(pi, si).map(Arc::new).map_err(Arc::new);
            if r.is_err() {
                self.failed.store(true, Ordering::Relaxed);
            }
            r
        })
        .clone()
    }

    fn step_error(&self, stage: &StagePlan, step: &Step, source: StepError) -> BuildError {
        BuildError::Step {
            file: self.o.dockerfile.map.name.clone(),
            line: step.line,
            platform: stage_label(stage),
            instruction: step.text.clone(),
            source: Box::new(source),
        }
    }

    fn run_stage(&self, pi: usize, si: usize) -> Result<StageOut, BuildError> {
        let plan = &self.plans[pi];
        let stage = plan.stage(si);
        let (mut layers, mut diff_ids, mut history, mut chain) = match &stage.base {
            Base::Scratch => (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                KeyBuilder::new("scratch").finish(),
            ),
            Base::Image(r) => {
                let img = self
                    .image(r, &stage.platform)
                    .map_err(|e| BuildError::Step {
                        file: self.o.dockerfile.map.name.clone(),
                        line: stage.line,
                        platform: stage_label(stage),
                        instruction: format!("FROM {r}"),
                        source: Box::new(e.into()),
                    })?;
                (
                    img.value.layers.clone(),
                    img.config.rootfs.diff_ids.clone(),
                    img.config.history.clone(),
                    KeyBuilder::new("image")
                        .add_str(&img.manifest.digest.to_string())
                        .finish(),
                )
            }
            Base::Stage(j) => {
                let b = self.stage(pi, *j).map_err(BuildError::Shared)?;
                (
                    b.layers.clone(),
                    b.diff_ids.clone(),
                    b.history.clone(),
                    b.chain.clone(),
                )
            }
        };
        let mut tree = StageTree::default();
        let total = stage.steps.len();
        for (n, step) in stage.steps.iter().enumerate() {
            if self.failed.load(Ordering::Relaxed) {
                return Err(BuildError::Cancelled);
            }
            let (key, record) = match &step.op {
                Op::Meta => {
                    let key = KeyBuilder::new("meta")
                        .add_str(&chain.to_string())
                        .add_str(&n.to_string())
                        .add_str(&step.created_by)
                        .finish();
                    let created = match self.o.epoch {
                        Some(e) => rfc3339(e),
                        None => match self.cached(&key) {
                            Some(r) => r.created,
                            None => {
                                let r = Record {
                                    layer: None,
                                    created: rfc3339(self.now),
                                    blobs: Vec::new(),
                                };
                                self.cache.put_unsynced(&key, &r)?;
                                r.created
                            }
                        },
                    };
                    let record = Record {
                        layer: None,
                        created,
                        blobs: Vec::new(),
                    };
                    // With SOURCE_DATE_EPOCH, a config step's record says nothing.
                    (self.o.epoch.is_none().then_some(key), record)
                }
                _ => {
                    let key = self.step_key(plan, stage, step, &chain)?;
                    let place = (n + 1, total);
                    let record = self.step_result(&key, stage, step, place, |info| {
                        self.execute(plan, stage, step, info, &layers, &diff_ids, &mut tree)
                    })?;
                    if record.layer.is_some() {
                        chain = key.clone();
                    }
                    (Some(key), record)
                }
            };
            if let (Some(remote), Some(key)) = (self.o.remote, &key) {
                remote.note(&self.ids[pi][&si], key, &stage.platform, &record);
            }
            let empty = record.layer.is_none();
            if let Some(l) = &record.layer {
                layers.push(l.descriptor.clone());
                diff_ids.push(l.diff_id.clone());
                // Read into the view only when a later step looks (the last step's layer,
                // an archive of many files say, never is).
                if tree.tree.is_some() {
                    tree.pending.push(l.descriptor.clone());
                }
            }
            history.push(History {
                created: Some(record.created.clone()),
                created_by: Some(step.created_by.clone()),
                comment: Some("buildkit.dockerfile.v0".to_string()),
                empty_layer: empty.then_some(true),
                ..Default::default()
            });
        }
        let mut config = stage.config.clone();
        config.rootfs = oci::RootFs {
            kind: "layers".into(),
            diff_ids: diff_ids.clone(),
        };
        if let Some(e) = self.o.epoch {
            for h in &mut history {
                h.created = Some(rfc3339(e));
            }
        }
        config.created = history
            .iter()
            .filter_map(|h| h.created.clone())
            .max()
            .or_else(|| Some(rfc3339(self.now)));
        config.history = history.clone();
        Ok(StageOut {
            platform: stage.platform.clone(),
            layers,
            diff_ids,
            history,
            config,
            chain,
            tree: Mutex::new(None),
        })
    }

    /// What decides a layer step's result.
    fn step_key(
        &self,
        plan: &Plan,
        stage: &StagePlan,
        step: &Step,
        chain: &Digest,
    ) -> Result<Digest, BuildError> {
        let fail = |e: StepError| self.step_error(stage, step, e);
        let mut k = KeyBuilder::new("step");
        k.add_str(&chain.to_string())
            .add_str(&stage.platform.to_string())
            .add_json(&self.o.compression)
            .add_str(&self.o.epoch.map(|e| e.to_string()).unwrap_or_default())
            .add_json(&step.op);
        if let Op::Run(r) = &step.op {
            for m in &r.mounts {
                self.mount_key(plan, stage, m, &mut k)
                    .map_err(|e| e.into_build(fail))?;
            }
        }
        if let Op::Copy(c) = &step.op {
            for src in &c.sources {
                if let CopySrc::Url(u) = src {
                    let digest = self.url_digest(u).map_err(|e| fail(e.into()))?;
                    fetch::verify(u, &digest, c.checksum.as_deref()).map_err(|e| fail(e.into()))?;
                    k.add_str(&digest.to_string());
                }
            }
            match &c.from {
                CopyFrom::Context => {
                    let key = copy::context_key(c, self.o.context).map_err(|e| fail(e.into()))?;
                    k.add_str(&key.to_string());
                }
                CopyFrom::Stage(j) => {
                    // A failed stage is reported as itself, not inside this step.
                    let out = self
                        .stage(self.plan_index(plan), *j)
                        .map_err(BuildError::Shared)?;
                    k.add_str(&out.chain.to_string());
                }
                CopyFrom::Image(r) => {
                    let img = self.image(r, &stage.platform).map_err(|e| fail(e.into()))?;
                    k.add_str(&img.manifest.digest.to_string());
                }
            }
        }
        Ok(k.finish())
    }

    /// A step's record: the store's cache first, then the imported ones (whose layer may be
    /// fetched only when a step that runs needs it: see `execute`).
    fn cached(&self, key: &Digest) -> Option<Record> {
        self.cache
            .get(key)
            .or_else(|| self.o.remote?.get(self.o.store, key))
    }

    /// The identities of each target stage and of the stages it is built on.
    fn final_stages(&self) -> Vec<Digest> {
        let mut out = Vec::new();
        for (pi, plan) in self.plans.iter().enumerate() {
            let mut si = plan.target;
            // Each stage's base comes before it in the plan: bounded by the stage count.
            for _ in 0..=plan.order.len() {
                out.push(self.ids[pi][&si].clone());
                match plan.stage(si).base {
                    Base::Stage(j) => si = j,
                    _ => break,
                }
            }
        }
        out
    }

    /// Layers a step that runs reads: present in the store, fetched when they came from an
    /// imported cache or a base image resolved without them.
    fn ensure(&self, layers: &[Descriptor]) -> Result<(), StepError> {
        match self.o.remote {
            Some(r) => r
                .ensure(self.o.store, layers, self.o.reporter.transfers())
                .map_err(|e| StepError::Cache(Box::new(e))),
            None => Ok(()),
        }
    }

    /// A mount's part of its step's key: whether a secret or agent was given (never its
    /// value: BuildKit does not run a step again when only a secret's content changed), and
    /// the content of what a bind mount shows.
    fn mount_key(
        &self,
        plan: &Plan,
        stage: &StagePlan,
        m: &plan::MountOp,
        k: &mut KeyBuilder,
    ) -> Result<(), StepFail> {
        match m.kind {
            MountKind::Secret => {
                let given = self.o.secrets.get(&m.id).is_some();
                k.add_str("secret").add_str(&m.id).add(&[u8::from(given)]);
            }
            MountKind::Ssh => {
                let given = self.o.ssh.contains(&m.id);
                k.add_str("ssh").add_str(&m.id).add(&[u8::from(given)]);
            }
            MountKind::Bind => {
                k.add_str("bind");
                match &m.from {
                    None | Some(CopyFrom::Context) => {
                        let op = bind_copy_op(m);
                        let key = copy::context_key(&op, self.o.context)
                            .map_err(|e| StepFail::Step(e.into()))?;
                        k.add_str(&key.to_string());
                    }
                    Some(CopyFrom::Stage(j)) => {
                        let out = self
                            .stage(self.plan_index(plan), *j)
                            .map_err(StepFail::Stage)?;
                        k.add_str(&out.chain.to_string());
                    }
                    Some(CopyFrom::Image(r)) => {
                        let img = self
                            .image(r, &stage.platform)
                            .map_err(|e| StepFail::Step(e.into()))?;
                        k.add_str(&img.manifest.digest.to_string());
                    }
                }
            }
            MountKind::Cache | MountKind::Tmpfs => {}
        }
        Ok(())
    }

    /// What each bind mount of a RUN step shows (None for the other kinds).
    fn bind_sources(
        &self,
        plan: &Plan,
        stage: &StagePlan,
        r: &plan::RunOp,
    ) -> Result<Vec<Option<BindSource>>, StepFail> {
        let mut out = Vec::new();
        for m in &r.mounts {
            if m.kind != MountKind::Bind {
                out.push(None);
                continue;
            }
            let source = m.source.as_deref().unwrap_or("");
            let (view, tree, from) = match &m.from {
                None | Some(CopyFrom::Context) => {
                    let ctx = self.o.context;
                    let step = |e: super::context::ContextError| {
                        StepFail::Step(copy::CopyError::from(e).into())
                    };
                    let found = ctx.sources(source).map_err(step)?;
                    let item = found.into_iter().next().expect("a path without wildcards");
                    let hidden = if item.meta.is_dir() {
                        ctx.hidden(&item.rel).map_err(step)?
                    } else {
                        Vec::new()
                    };
                    out.push(Some(BindSource {
                        view: View::Dir {
                            root: ctx.root().to_path_buf(),
                            hidden,
                        },
                        path: item.rel,
                    }));
                    continue;
                }
                Some(CopyFrom::Stage(j)) => {
                    let o = self
                        .stage(self.plan_index(plan), *j)
                        .map_err(StepFail::Stage)?;
                    // Its layers may have come from a remote cache, not yet fetched.
                    self.ensure(&o.layers).map_err(StepFail::Step)?;
                    let t = self.stage_tree(&o).map_err(StepFail::Step)?;
                    let view = View::Layers {
                        layers: o.layers.clone(),
                        diff_ids: o.diff_ids.clone(),
                    };
                    (view, t, plan.stage(*j).label())
                }
                Some(CopyFrom::Image(r)) => {
                    let img = self
                        .image(r, &stage.platform)
                        .map_err(|e| StepFail::Step(e.into()))?;
                    // A base resolved without its layers (a remote cache's lazy base).
                    self.ensure(&img.value.layers).map_err(StepFail::Step)?;
                    let t = Tree::load_with(
                        self.o.store,
                        &self.cache,
                        &img.value.layers,
                        &img.config.rootfs.diff_ids,
                    )
                    .map_err(|e| StepFail::Step(e.into()))?;
                    let view = View::Layers {
                        layers: img.value.layers.clone(),
                        diff_ids: img.config.rootfs.diff_ids.clone(),
                    };
                    (view, Arc::new(t), r.clone())
                }
            };
            let path = tree.resolve(source, true);
            if !path.is_empty() && !tree.exists(&path) {
                return Err(StepFail::Step(
                    RunError::BindSource {
                        path: source.to_string(),
                        from,
                    }
                    .into(),
                ));
            }
            out.push(Some(BindSource { view, path }));
        }
        Ok(out)
    }

    fn plan_index(&self, plan: &Plan) -> usize {
        self.plans
            .iter()
            .position(|p| std::ptr::eq(p, plan))
            .expect("a plan of this build")
    }

    /// A step's record: from this build's memo, the cache, or by running it (`run` gets the
    /// step's place for its events). `place`: the step's index among the stage's, and their
    /// number.
    fn step_result(
        &self,
        key: &Digest,
        stage: &StagePlan,
        step: &Step,
        (index, total): (usize, usize),
        run: impl FnOnce(&StepInfo<'_>) -> Result<Option<LayerInfo>, BuildError>,
    ) -> Result<Record, BuildError> {
        let cell = self
            .steps
            .lock()
            .expect("steps")
            .entry(key.clone())
            .or_default()
            .clone();
        let label = stage.label();
        cell.get_or_init(|| {
            let info = StepInfo {
                number: self.counter.fetch_add(1, Ordering::Relaxed) + 1,
                platform: &stage.platform,
                stage: &label,
                index,
                total,
                instruction: &step.text,
                line: step.line,
            };
            let report = self.o.reporter;
            report.report(&BuildEvent::StepStarted(info));
            if !self.o.no_cache
                && let Some(r) = self.cached(key)
            {
                report.report(&BuildEvent::StepCached(info));
                self.cached.fetch_add(1, Ordering::Relaxed);
                return Ok((r, true));
            }
            // Only RUN executes the platform's programs; everything else is manifold's own work.
            let emulator = match step.op {
                Op::Run(_) if !crate::binfmt::is_native(&stage.platform) => {
                    crate::binfmt::Handler::for_platform(&stage.platform).map(|h| h.name.as_str())
                }
                _ => None,
            };
            if let Some(emulator) = emulator {
                report.report(&BuildEvent::StepEmulated {
                    step: info,
                    emulator,
                });
            }
            let started = Instant::now();
            let layer = match run(&info) {
                Ok(l) => l,
                Err(e) => {
                    if let BuildError::Step { source, .. } = &e {
                        report.report(&BuildEvent::StepFailed {
                            step: info,
                            error: source,
                        });
                    }
                    return Err(Arc::new(e));
                }
            };
            let record = Record {
                blobs: layer.iter().map(|l| l.descriptor.digest.clone()).collect(),
                layer,
                created: rfc3339(self.o.epoch.unwrap_or(self.now)),
            };
            self.cache
                .put(key, &record)
                .map_err(|e| Arc::new(e.into()))?;
            self.run.fetch_add(1, Ordering::Relaxed);
            let duration = started.elapsed();
            self.emulation.lock().expect("emulation").add(
                &stage.platform,
                emulator.is_some(),
                duration,
            );
            report.report(&BuildEvent::StepFinished {
                step: info,
                duration,
                emulated: emulator.is_some(),
            });
            Ok((record, false))
        })
        .clone()
        .map(|(record, _)| record)
        .map_err(BuildError::Shared)
    }

    fn tree_of<'t>(
        &self,
        st: &'t mut StageTree,
        layers: &[Descriptor],
        diff_ids: &[Digest],
    ) -> Result<&'t Tree, StepError> {
        match &mut st.tree {
            None => {
                st.tree = Some(Tree::load_with(
                    self.o.store,
                    &self.cache,
                    layers,
                    diff_ids,
                )?);
                st.pending.clear();
            }
            Some(t) => {
                for d in st.pending.drain(..) {
                    let entries = tree::layer_entries(self.o.store, &self.cache, &d)?;
                    t.push(d, entries);
                }
            }
        }
        Ok(st.tree.as_ref().expect("just loaded"))
    }

    fn stage_tree(&self, out: &StageOut) -> Result<Arc<Tree>, StepError> {
        let mut t = out.tree.lock().expect("tree");
        if let Some(t) = t.as_ref() {
            return Ok(t.clone());
        }
        let loaded = Arc::new(Tree::load_with(
            self.o.store,
            &self.cache,
            &out.layers,
            &out.diff_ids,
        )?);
        *t = Some(loaded.clone());
        Ok(loaded)
    }

    // The stage's state is passed apart (layers, diff IDs, tree) because the tree is built
    // lazily and borrowed mutably while the others are read.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        plan: &Plan,
        stage: &StagePlan,
        step: &Step,
        info: &StepInfo<'_>,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        tree: &mut StageTree,
    ) -> Result<Option<LayerInfo>, BuildError> {
        self.ensure(layers)
            .map_err(|e| self.step_error(stage, step, e))?;
        // A stage this step copies from that failed is reported as itself.
        if let Op::Copy(c) = &step.op
            && let CopyFrom::Stage(j) = c.from
        {
            let out = self
                .stage(self.plan_index(plan), j)
                .map_err(BuildError::Shared)?;
            self.ensure(&out.layers)
                .map_err(|e| self.step_error(stage, step, e))?;
            return self
                .copy_from_stage(c, &out, layers, diff_ids, tree)
                .map(Some)
                .map_err(|e| self.step_error(stage, step, e));
        }
        if let Op::Run(r) = &step.op {
            let binds = self
                .bind_sources(plan, stage, r)
                .map_err(|e| e.into_build(|e| self.step_error(stage, step, e)))?;
            return self
                .run_step(stage, r, info, (layers, diff_ids), &binds)
                .map_err(|e| self.step_error(stage, step, e));
        }
        self.execute_step(stage, step, layers, diff_ids, tree)
            .map_err(|e| self.step_error(stage, step, e))
    }

    fn temp_dir(&self) -> Result<tempfile::TempDir, StepError> {
        tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(self.o.store.tmp_dir())
            .map_err(StepError::Temp)
    }

    fn execute_step(
        &self,
        stage: &StagePlan,
        step: &Step,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        tree: &mut StageTree,
    ) -> Result<Option<LayerInfo>, StepError> {
        let store = self.o.store;
        match &step.op {
            Op::Meta => Ok(None),
            Op::Workdir { path, user } => {
                let tmp = self.temp_dir()?;
                let t = self.tree_of(tree, layers, diff_ids)?;
                if t.is_dir(path) {
                    return Ok(None);
                }
                let owner = match user {
                    Some(u) => tree::resolve_owner(u, t, store, tmp.path(), true)?,
                    None => (0, 0),
                };
                let mut entries = Vec::new();
                let mut acc = String::new();
                for c in path.split('/').filter(|c| !c.is_empty()) {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(c);
                    let resolved = t.resolve(&acc, true);
                    if t.exists(&resolved) {
                        continue;
                    }
                    entries.push(Entry {
                        path: resolved,
                        kind: Kind::Dir,
                        mode: 0o755,
                        uid: owner.0,
                        gid: owner.1,
                        mtime: self.now,
                    });
                }
                let info = layer::write(store, entries, self.o.compression, self.o.epoch)?;
                Ok(Some(info))
            }
            Op::Copy(c) => {
                let image;
                let source = match &c.from {
                    CopyFrom::Context => None,
                    CopyFrom::Image(r) => {
                        let img = self.image(r, &stage.platform)?;
                        self.ensure(&img.value.layers)?;
                        image = Tree::load_with(
                            store,
                            &self.cache,
                            &img.value.layers,
                            &img.config.rootfs.diff_ids,
                        )?;
                        Some(&image)
                    }
                    CopyFrom::Stage(_) => unreachable!("copies from stages are executed apart"),
                };
                self.copy(c, source, layers, diff_ids, tree).map(Some)
            }
            Op::Run(_) => unreachable!("RUN steps are executed apart"),
        }
    }

    /// RUN: the secrets and agents it requires checked, then the runner.
    fn run_step(
        &self,
        stage: &StagePlan,
        r: &plan::RunOp,
        info: &StepInfo<'_>,
        (layers, diff_ids): (&[Descriptor], &[Digest]),
        binds: &[Option<BindSource>],
    ) -> Result<Option<LayerInfo>, StepError> {
        for m in r.mounts.iter().filter(|m| m.required) {
            match m.kind {
                MountKind::Secret if self.o.secrets.get(&m.id).is_none() => {
                    return Err(RunError::SecretRequired {
                        id: m.id.clone(),
                        unset: self.o.secrets.unset_variable(&m.id).map(str::to_string),
                    }
                    .into());
                }
                MountKind::Ssh if !self.o.ssh.contains(&m.id) => {
                    return Err(RunError::SshRequired { id: m.id.clone() }.into());
                }
                _ => {}
            }
        }
        let tmp = self.temp_dir()?;
        let output = |line: &str| {
            self.o
                .reporter
                .report(&BuildEvent::StepOutput { step: *info, line })
        };
        let req = RunRequest {
            store: self.o.store,
            platform: &stage.platform,
            layers,
            diff_ids,
            op: r,
            compression: self.o.compression,
            epoch: self.o.epoch,
            tmp: tmp.path(),
            output: &output,
            secrets: self.o.secrets,
            ssh: self.o.ssh,
            binds,
        };
        Ok(self.o.runner.run(&req)?)
    }

    fn copy_from_stage(
        &self,
        c: &plan::CopyOp,
        out: &StageOut,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        tree: &mut StageTree,
    ) -> Result<LayerInfo, StepError> {
        let t = self.stage_tree(out)?;
        self.copy(c, Some(&t), layers, diff_ids, tree)
    }

    /// COPY/ADD from the context (`source` None) or from a stage's or image's files.
    fn copy(
        &self,
        c: &plan::CopyOp,
        source: Option<&Tree>,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        tree: &mut StageTree,
    ) -> Result<LayerInfo, StepError> {
        let store = self.o.store;
        let tmp = self.temp_dir()?;
        let owner = match &c.chown {
            Some(spec) => {
                let t = self.tree_of(tree, layers, diff_ids)?;
                Some(tree::resolve_owner(spec, t, store, tmp.path(), false)?)
            }
            None => None,
        };
        let dest_tree = self.tree_of(tree, layers, diff_ids)?;
        let download = |u: &str| self.url_body(u);
        let env = CopyEnv {
            store,
            dest_tree,
            owner,
            now: self.now,
            tmp: tmp.path(),
            download: &download,
        };
        let entries = match source {
            None => copy::entries(c, &copy::Source::Context(self.o.context), &env),
            Some(t) => copy::entries(c, &copy::Source::Tree(t), &env),
        }?;
        Ok(layer::write_contents(
            store,
            entries,
            self.o.compression,
            self.o.epoch,
        )?)
    }

    fn write_image(&self, out: &StageOut) -> Result<BuiltImage, BuildError> {
        let store = self.o.store;
        let config = Parsed::from_value(out.config.clone());
        store.put_bytes(&config.bytes)?;
        let manifest = Manifest::new_oci(
            config.descriptor(media_type::OCI_CONFIG),
            out.layers.clone(),
        );
        let manifest = Parsed::from_value(manifest);
        store.put_bytes(&manifest.bytes)?;
        let mut desc = manifest.descriptor(media_type::OCI_MANIFEST);
        let platform = out.config.platform();
        desc.platform = Some(platform.clone());
        Ok(BuiltImage {
            platform: out.platform.clone(),
            manifest: desc,
            config: config.digest(),
            used: Used::default(),
        })
    }

    /// What platform `pi`'s build used: the images and URLs its stages resolved (each was
    /// resolved while the build ran: this only reads the memo), the secrets and SSH agents
    /// its RUN steps mount, and its steps.
    fn used(&self, pi: usize) -> Result<Used, BuildError> {
        let plan = &self.plans[pi];
        let mut used = Used::default();
        let image_err = |stage: &StagePlan, e: Box<ImageError>| BuildError::Step {
            file: self.o.dockerfile.map.name.clone(),
            line: stage.line,
            platform: stage_label(stage),
            instruction: "FROM".into(),
            source: Box::new(StepError::Image(e)),
        };
        for &si in &plan.order {
            let stage = plan.stage(si);
            let mut refs = Vec::new();
            if let Base::Image(r) = &stage.base {
                refs.push(r.clone());
            }
            for step in &stage.steps {
                used.steps.push(UsedStep {
                    stage: stage.label(),
                    platform: stage.platform.clone(),
                    line: step.line,
                    instruction: step.text.clone(),
                });
                match &step.op {
                    Op::Copy(c) => {
                        if let CopyFrom::Image(r) = &c.from {
                            refs.push(r.clone());
                        }
                        for src in &c.sources {
                            if let CopySrc::Url(u) = src
                                && let Some(d) = self.url(u).lock().expect("url").digest.clone()
                                && !used.urls.iter().any(|(x, _)| x == u)
                            {
                                used.urls.push((u.clone(), d));
                            }
                        }
                    }
                    Op::Run(r) => {
                        for m in &r.mounts {
                            let list = match m.kind {
                                MountKind::Secret => &mut used.secrets,
                                MountKind::Ssh => &mut used.ssh,
                                _ => continue,
                            };
                            if !list.contains(&m.id) {
                                list.push(m.id.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
            for r in refs {
                let image = self
                    .image(&r, &stage.platform)
                    .map_err(|e| image_err(stage, e))?;
                let u = UsedImage {
                    reference: r,
                    platform: stage.platform.clone(),
                    manifest: image.manifest.digest.clone(),
                    index: (image.top != image.manifest.digest).then(|| image.top.clone()),
                };
                if !used.images.contains(&u) {
                    used.images.push(u);
                }
            }
        }
        Ok(used)
    }
}

/// Why a step could not be keyed or prepared: a stage it uses failed (reported as itself), or
/// the step's own problem.
enum StepFail {
    Stage(Arc<BuildError>),
    Step(StepError),
}

impl StepFail {
    fn into_build(self, step: impl FnOnce(StepError) -> BuildError) -> BuildError {
        match self {
            StepFail::Stage(e) => BuildError::Shared(e),
            StepFail::Step(e) => step(e),
        }
    }
}

/// A context bind mount as the COPY its content is keyed like (.dockerignore applies).
fn bind_copy_op(m: &plan::MountOp) -> plan::CopyOp {
    plan::CopyOp {
        add: false,
        from: CopyFrom::Context,
        sources: vec![CopySrc::Path(
            m.source
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| ".".into()),
        )],
        dest: m.target.clone(),
        chown: None,
        chmod: None,
        exclude: Vec::new(),
        checksum: None,
        keep_git_dir: false,
    }
}

/// `linux/arm64 stage-1`: which stage of which platform, for messages.
fn stage_label(stage: &StagePlan) -> String {
    format!("{} {}", stage.platform, stage.label())
}
