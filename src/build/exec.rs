//! The executor: plans (one per target platform) run against the store. Stages are memoised by
//! the identity of their plan, so a stage that is the same for every target (a
//! `FROM --platform=$BUILDPLATFORM` stage that does not use TARGETARCH) is built once; steps
//! are memoised by cache key within the build and looked up in the step cache across builds.
//! Platforms and independent stages run on threads of their own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::BuildError;
use super::cache::{Cache, KeyBuilder, Record};
use super::context::Context;
use super::copy::{self, CopyEnv};
use super::instructions::Dockerfile;
use super::layer::{self, Compression, Entry, Kind, LayerInfo};
use super::plan::{self, Base, CopyFrom, Op, Plan, PlanOptions, Resolver, StagePlan, Step};
use super::run::{RunRequest, Runner};
use super::tree::{self, Tree};
use crate::content::{self, Platforms};
use crate::oci::{self, Descriptor, Digest, History, ImageConfig, Manifest, Parsed, media_type};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::Client;
use crate::store::Store;

pub struct Options<'a> {
    pub store: &'a Store,
    pub dockerfile: &'a Dockerfile,
    pub context: &'a Context,
    pub platforms: Vec<Platform>,
    pub plan: PlanOptions,
    pub no_cache: bool,
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: every timestamp clamped to it.
    pub epoch: Option<u64>,
    /// Pulls base images the store lacks; None: the store only.
    pub client: Option<&'a Client>,
    pub runner: &'a dyn Runner,
    pub progress: &'a dyn Progress,
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub platform: Platform,
    /// The manifest, with its platform.
    pub manifest: Descriptor,
    pub config: Digest,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub images: Vec<BuiltImage>,
    /// The manifest (one platform) or the index over them (several).
    pub root: Descriptor,
    /// How many steps ran, and how many came from the cache.
    pub steps_run: usize,
    pub steps_cached: usize,
}

/// A resolved base image.
struct Image {
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

struct Executor<'a> {
    o: &'a Options<'a>,
    cache: Cache,
    plans: Vec<Plan>,
    /// Identity of each planned stage, per platform.
    ids: Vec<BTreeMap<usize, Digest>>,
    stages: Mutex<HashMap<Digest, Shared<Arc<StageOut>>>>,
    steps: Mutex<HashMap<Digest, Shared<(Record, bool)>>>,
    images: Mutex<HashMap<(String, String), Arc<Image>>>,
    failed: AtomicBool,
    counter: AtomicUsize,
    run: AtomicUsize,
    cached: AtomicUsize,
    now: u64,
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Run the build; returns the images, written to the store but not tagged.
pub fn build(o: &Options<'_>) -> Result<Output, BuildError> {
    let _guard = o.store.write_guard()?;
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
        failed: AtomicBool::new(false),
        counter: AtomicUsize::new(0),
        run: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
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
        o.progress.message(&format!(
            "warning: build args not consumed by any ARG: {}",
            plan.unused_args.join(", ")
        ));
    }
    let ex = &ex;
    let results: Vec<Result<Arc<StageOut>, Arc<BuildError>>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (pi, plan) in ex.plans.iter().enumerate() {
            // Every reachable stage gets a thread; shared ones are computed once and the other
            // threads wait for them.
            for &si in plan.stages.keys() {
                if si != plan.target {
                    s.spawn(move || {
                        let _ = ex.stage(pi, si);
                    });
                }
            }
            handles.push(s.spawn(move || ex.stage(pi, plan.target)));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("build threads do not panic"))
            .collect()
    });
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
    for r in results {
        let out = r.map_err(BuildError::Shared)?;
        images.push(ex.write_image(&out)?);
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
    Ok(Output {
        images,
        root,
        steps_run: ex.run.load(Ordering::Relaxed),
        steps_cached: ex.cached.load(Ordering::Relaxed),
    })
}

/// A digest per planned stage that is equal exactly when two stages would build the same
/// thing (platform, base, steps, config; stages they use by their own identity).
fn identities(plan: &Plan) -> BTreeMap<usize, Digest> {
    fn id(plan: &Plan, i: usize, memo: &mut BTreeMap<usize, Digest>) -> Digest {
        if let Some(d) = memo.get(&i) {
            return d.clone();
        }
        let s = plan.stage(i);
        let mut k = KeyBuilder::new("stage");
        k.add_str(&s.platform.to_string());
        match &s.base {
            Base::Stage(j) => {
                let d = id(plan, *j, memo);
                k.add_str("stage").add_str(&d.to_string());
            }
            b => {
                k.add_json(b);
            }
        }
        for step in &s.steps {
            k.add_str(&step.created_by);
            if let Op::Copy(c) = &step.op
                && let CopyFrom::Stage(j) = c.from
            {
                let d = id(plan, j, memo);
                k.add_str(&d.to_string());
            }
            k.add_json(&step.op);
        }
        k.add_json(&s.config);
        let d = k.finish();
        memo.insert(i, d.clone());
        d
    }
    let mut memo = BTreeMap::new();
    for &i in plan.stages.keys() {
        id(plan, i, &mut memo);
    }
    memo
}

impl Resolver for Executor<'_> {
    fn image_config(&self, reference: &str, platform: &Platform) -> Result<ImageConfig, String> {
        self.image(reference, platform).map(|i| i.config.clone())
    }

    fn local_image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, String> {
        match self.local_image(reference, platform)? {
            Some(i) => Ok(i.config),
            None => Err("not in the store".into()),
        }
    }
}

impl<'a> Executor<'a> {
    /// A base image for a platform: from the store, pulled first when it is not there.
    fn image(&self, reference: &str, platform: &Platform) -> Result<Arc<Image>, String> {
        let key = (reference.to_string(), platform.to_string());
        if let Some(i) = self.images.lock().expect("images").get(&key) {
            return Ok(i.clone());
        }
        let image = match self.local_image(reference, platform) {
            Ok(Some(i)) => i,
            Ok(None) => {
                self.pull(reference, platform)?;
                self.local_image(reference, platform)?
                    .ok_or_else(|| format!("`{reference}` has no image for {platform}"))?
            }
            Err(e) => return Err(e),
        };
        let image = Arc::new(image);
        self.images
            .lock()
            .expect("images")
            .insert(key, image.clone());
        Ok(image)
    }

    /// Ok(None) when the store lacks the image (or its platform's manifest).
    fn local_image(&self, reference: &str, platform: &Platform) -> Result<Option<Image>, String> {
        let store = self.o.store;
        let found = match store.lookup(reference) {
            Ok(f) => f,
            Err(crate::store::StoreError::ImageNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut desc = found.descriptor;
        if desc.is_index() {
            let index = store.read_index(&desc.digest).map_err(|e| e.to_string())?;
            let Some(child) = index.value.select(&platform.matcher()) else {
                let have: Vec<String> = index
                    .value
                    .images()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect();
                return Err(format!(
                    "`{reference}` has no image for {platform} (it has {})",
                    have.join(", ")
                ));
            };
            if !store.has_blob(&child.digest) {
                return Ok(None);
            }
            desc = child.clone();
        }
        let manifest = store
            .read_manifest(&desc.digest)
            .map_err(|e| e.to_string())?;
        let config = store
            .read_config(&manifest.value.config.digest)
            .map_err(|e| e.to_string())?
            .value;
        let actual = config.platform();
        if !platform.matcher().matches(&actual) {
            return Err(format!(
                "`{reference}` is an image for {actual}, not {platform}"
            ));
        }
        if let Some(missing) = manifest
            .value
            .layers
            .iter()
            .find(|l| !store.has_blob(&l.digest))
        {
            return Err(format!(
                "layer {} of `{reference}` is missing from the store",
                missing.digest
            ));
        }
        Ok(Some(Image {
            manifest: desc,
            value: manifest.value,
            config,
        }))
    }

    fn pull(&self, reference: &str, platform: &Platform) -> Result<(), String> {
        let Some(client) = self.o.client else {
            return Err("not in the store".into());
        };
        let r = Reference::parse(reference).map_err(|e| e.to_string())?;
        self.o
            .progress
            .message(&format!("pulling {} for {platform}", r.familiar()));
        let source = client
            .pull_source(&r)
            .map_err(|e| format!("not in the store, and cannot pull it: {e}"))?;
        let root = content::Source::resolve(&source, &r)
            .map_err(|e| format!("not in the store, and cannot pull it: {e}"))?;
        content::copy_with(
            &source,
            self.o.store,
            &r,
            &root,
            &Platforms::Best(platform.matcher()),
            self.o.progress,
            &content::CopyOptions::default(),
        )
        .map_err(|e| format!("cannot pull it: {e}"))?;
        self.o.store.tag(&r, &root).map_err(|e| e.to_string())?;
        Ok(())
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

    fn step_error(
        &self,
        plan: &Plan,
        stage: &StagePlan,
        step: &Step,
        message: String,
    ) -> BuildError {
        BuildError::Step {
            file: self.o.dockerfile.map.name.clone(),
            line: step.line,
            platform: plan_label(plan, stage),
            instruction: step.text.clone(),
            message,
        }
    }

    fn run_stage(&self, pi: usize, si: usize) -> Result<StageOut, BuildError> {
        let plan = &self.plans[pi];
        let stage = plan.stage(si);
        let store = self.o.store;
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
                    .map_err(|m| BuildError::Step {
                        file: self.o.dockerfile.map.name.clone(),
                        line: stage.line,
                        platform: plan_label(plan, stage),
                        instruction: format!("FROM {r}"),
                        message: m,
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
        let mut tree: Option<Tree> = None;
        let total = stage.steps.len();
        for (n, step) in stage.steps.iter().enumerate() {
            if self.failed.load(Ordering::Relaxed) {
                return Err(BuildError::Cancelled);
            }
            let label = format!("[{} {}/{}]", plan_label(plan, stage), n + 1, total);
            let (record, layer_entries) = match &step.op {
                Op::Meta => {
                    let key = KeyBuilder::new("meta")
                        .add_str(&chain.to_string())
                        .add_str(&n.to_string())
                        .add_str(&step.created_by)
                        .finish();
                    let created = match self.o.epoch {
                        Some(e) => rfc3339(e),
                        None => match self.cache.get(&key) {
                            Some(r) => r.created,
                            None => {
                                let r = Record {
                                    layer: None,
                                    created: rfc3339(self.now),
                                    blobs: Vec::new(),
                                };
                                self.cache.put(&key, &r)?;
                                r.created
                            }
                        },
                    };
                    (
                        Record {
                            layer: None,
                            created,
                            blobs: Vec::new(),
                        },
                        None,
                    )
                }
                _ => {
                    let key = self.step_key(plan, stage, step, &chain)?;
                    let (record, cached) = self.step_result(&key, &label, step, |n| {
                        self.execute(plan, stage, step, n, &layers, &diff_ids, &mut tree)
                    })?;
                    let _ = cached;
                    if record.layer.is_some() {
                        chain = key;
                    }
                    (record, Some(()))
                }
            };
            let _ = layer_entries;
            let empty = record.layer.is_none();
            if let Some(l) = &record.layer {
                layers.push(l.descriptor.clone());
                diff_ids.push(l.diff_id.clone());
                // The tree is rebuilt lazily from the layers when a later step needs it.
                if let Some(t) = tree.as_mut() {
                    let entries = tree::layer_entries(store, &self.cache, &l.descriptor)
                        .map_err(|e| BuildError::Other(e.to_string()))?;
                    t.push(l.descriptor.clone(), entries);
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
        let fail = |m: String| self.step_error(plan, stage, step, m);
        let mut k = KeyBuilder::new("step");
        k.add_str(&chain.to_string())
            .add_str(&stage.platform.to_string())
            .add_json(&self.o.compression)
            .add_str(&self.o.epoch.map(|e| e.to_string()).unwrap_or_default())
            .add_json(&step.op);
        if let Op::Copy(c) = &step.op {
            match &c.from {
                CopyFrom::Context => {
                    k.add_str(
                        &copy::context_key(c, self.o.context)
                            .map_err(fail)?
                            .to_string(),
                    );
                }
                CopyFrom::Stage(j) => {
                    let pi = self
                        .plans
                        .iter()
                        .position(|p| std::ptr::eq(p, plan))
                        .expect("plan");
                    // A failed stage is reported as itself, not inside this step.
                    let out = self.stage(pi, *j).map_err(BuildError::Shared)?;
                    k.add_str(&out.chain.to_string());
                }
                CopyFrom::Image(r) => {
                    let img = self.image(r, &stage.platform).map_err(fail)?;
                    k.add_str(&img.manifest.digest.to_string());
                }
            }
        }
        Ok(k.finish())
    }

    /// A step's record: from this build's memo, the cache, or by running it. The bool says
    /// whether it was cached.
    fn step_result(
        &self,
        key: &Digest,
        label: &str,
        step: &Step,
        run: impl FnOnce(usize) -> Result<Option<LayerInfo>, BuildError>,
    ) -> Result<(Record, bool), BuildError> {
        let cell = self
            .steps
            .lock()
            .expect("steps")
            .entry(key.clone())
            .or_default()
            .clone();
        let mut ran_here = false;
        let r = cell
            .get_or_init(|| {
                ran_here = true;
                let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
                self.o
                    .progress
                    .message(&format!("#{n} {label} {}", step.text));
                if !self.o.no_cache
                    && let Some(r) = self.cache.get(key)
                {
                    self.o.progress.message(&format!("#{n} CACHED"));
                    self.cached.fetch_add(1, Ordering::Relaxed);
                    return Ok((r, true));
                }
                let started = Instant::now();
                let layer = run(n).map_err(Arc::new)?;
                let record = Record {
                    blobs: layer.iter().map(|l| l.descriptor.digest.clone()).collect(),
                    layer,
                    created: rfc3339(self.o.epoch.unwrap_or(self.now)),
                };
                self.cache
                    .put(key, &record)
                    .map_err(|e| Arc::new(e.into()))?;
                self.run.fetch_add(1, Ordering::Relaxed);
                self.o.progress.message(&format!(
                    "#{n} DONE {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                Ok((record, false))
            })
            .clone();
        if !ran_here && r.is_ok() {
            // Another platform's identical step: nothing to do here.
        }
        r.map_err(BuildError::Shared)
    }

    fn tree_of<'t>(
        &self,
        tree: &'t mut Option<Tree>,
        layers: &[Descriptor],
        diff_ids: &[Digest],
    ) -> Result<&'t Tree, BuildError> {
        if tree.is_none() {
            *tree = Some(
                Tree::load_with(self.o.store, &self.cache, layers, diff_ids)
                    .map_err(|e| BuildError::Other(e.to_string()))?,
            );
        }
        Ok(tree.as_ref().expect("just loaded"))
    }

    fn stage_tree(&self, out: &StageOut) -> Result<Arc<Tree>, BuildError> {
        let mut t = out.tree.lock().expect("tree");
        if let Some(t) = t.as_ref() {
            return Ok(t.clone());
        }
        let loaded = Arc::new(
            Tree::load_with(self.o.store, &self.cache, &out.layers, &out.diff_ids)
                .map_err(|e| BuildError::Other(e.to_string()))?,
        );
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
        n: usize,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        tree: &mut Option<Tree>,
    ) -> Result<Option<LayerInfo>, BuildError> {
        let store = self.o.store;
        let fail = |m: String| self.step_error(plan, stage, step, m);
        let tmp = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(store.tmp_dir())
            .map_err(|e| BuildError::Other(format!("cannot create a temp directory: {e}")))?;
        match &step.op {
            Op::Meta => Ok(None),
            Op::Workdir { path, user } => {
                let t = self.tree_of(tree, layers, diff_ids)?;
                if t.is_dir(path) {
                    return Ok(None);
                }
                let owner = match user {
                    Some(u) => tree::resolve_owner(u, t, store, tmp.path(), true).map_err(fail)?,
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
                let owner = match &c.chown {
                    Some(spec) => {
                        let t = self.tree_of(tree, layers, diff_ids)?;
                        Some(tree::resolve_owner(spec, t, store, tmp.path(), false).map_err(fail)?)
                    }
                    None => None,
                };
                let dest_tree = self.tree_of(tree, layers, diff_ids)?;
                let env = CopyEnv {
                    store,
                    dest_tree,
                    owner,
                    now: self.now,
                    tmp: tmp.path(),
                };
                let entries = match &c.from {
                    CopyFrom::Context => {
                        copy::entries(c, &copy::Source::Context(self.o.context), &env)
                    }
                    CopyFrom::Stage(j) => {
                        let pi = self
                            .plans
                            .iter()
                            .position(|p| std::ptr::eq(p, plan))
                            .expect("plan");
                        let out = self.stage(pi, *j).map_err(BuildError::Shared)?;
                        let t = self.stage_tree(&out)?;
                        copy::entries(c, &copy::Source::Tree(&t), &env)
                    }
                    CopyFrom::Image(r) => {
                        let img = self.image(r, &stage.platform).map_err(&fail)?;
                        let t = Tree::load_with(
                            store,
                            &self.cache,
                            &img.value.layers,
                            &img.config.rootfs.diff_ids,
                        )
                        .map_err(|e| fail(e.to_string()))?;
                        copy::entries(c, &copy::Source::Tree(&t), &env)
                    }
                }
                .map_err(&fail)?;
                let info = layer::write(store, entries, self.o.compression, self.o.epoch)?;
                Ok(Some(info))
            }
            Op::Run(r) => {
                let id = step.text.clone();
                // Prefixed with the step's number: platforms run side by side.
                let output = |line: &str| self.o.progress.message(&format!("#{n} {line}"));
                let req = RunRequest {
                    store,
                    platform: &stage.platform,
                    layers,
                    diff_ids,
                    op: r,
                    compression: self.o.compression,
                    epoch: self.o.epoch,
                    tmp: tmp.path(),
                    output: &output,
                };
                let _ = id;
                self.o.runner.run(&req).map_err(fail)
            }
        }
    }

    fn write_image(&self, out: &StageOut) -> Result<BuiltImage, BuildError> {
        let store = self.o.store;
        let config = Parsed::from_value(out.config.clone());
        store.put_bytes(&config.bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config: config.descriptor(media_type::OCI_CONFIG),
            layers: out.layers.clone(),
            subject: None,
            annotations: None,
            extra: Default::default(),
        };
        let manifest = Parsed::from_value(manifest);
        store.put_bytes(&manifest.bytes)?;
        let mut desc = manifest.descriptor(media_type::OCI_MANIFEST);
        let platform = out.config.platform();
        desc.platform = Some(platform.clone());
        Ok(BuiltImage {
            platform: out.platform.clone(),
            manifest: desc,
            config: config.digest(),
        })
    }
}

fn plan_label(plan: &Plan, stage: &StagePlan) -> String {
    let _ = plan;
    format!("{} {}", stage.platform, stage.label())
}
