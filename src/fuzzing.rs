//! The entry points of the fuzz targets (`fuzz/`), one function per target. Each takes arbitrary
//! bytes, feeds them to one parser the way manifold itself does, and panics when a property that
//! must hold for every input fails (not only on a crash). The same functions replay the committed
//! corpora and regression inputs in the normal `cargo test` (tests/it/fuzz.rs), so the targets
//! stay thin and the code they call can move without touching `fuzz/`.
//!
//! Not an API: hidden from the documentation, and free to change with the fuzz targets.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::bake;
use crate::dockerfile::dockerignore::Ignore;
use crate::dockerfile::instructions;
use crate::dockerfile::plan::{self, Base, Op, PlanOptions, Resolver};
use crate::oci::{self, Digest, ImageConfig, media_type};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::auth::{self, Challenge};
use crate::store::Store;

/// What a target runs on one input.
pub type EntryPoint = fn(&[u8]);

/// Every target, by the name of its fuzz target and its corpus folder.
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("reference", reference),
    ("platform", platform),
    ("dockerfile", dockerfile),
    ("oci_json", oci_json),
    ("archive_load", archive_load),
    ("layer_extract", layer_extract),
    ("dockerignore", dockerignore),
    ("bake", bake_yaml),
    ("www_authenticate", www_authenticate),
];

/// Decompressed bytes the targets that take compressed input read at most: past that it is a
/// decompression bomb, a resource question (issue 9) rather than a parsing one.
const INFLATED_LIMIT: u64 = 16 << 20;

/// `Reference::parse`: what parses is normalised, and its printed forms (full and familiar) parse
/// back to the same reference.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = Reference::parse(text) else {
        return;
    };
    assert!(
        r.tag().is_some() || r.digest().is_some(),
        "{text:?}: neither tag nor digest"
    );
    assert!(r.repository().len() <= 255, "{text:?}: path over 255");
    if let Some(tag) = r.tag() {
        assert!(
            crate::reference::is_valid_tag(tag),
            "{text:?}: bad tag kept"
        );
    }
    for printed in [r.to_string(), r.familiar()] {
        assert_eq!(
            Reference::parse(&printed).as_ref(),
            Ok(&r),
            "{text:?} prints as {printed:?}, which parses differently"
        );
    }
    assert_eq!(Reference::parse(&r.name()).map(|n| n.name()), Ok(r.name()));
}

/// `Platform::parse` and the matcher. The first line is a platform: what parses is normalised,
/// and its printed form parses back to the same platform, which its matchers accept. The other
/// lines are candidates: the matcher's order holds exactly the ones it matches, best first.
pub fn platform(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let _ = Platform::parse_list(first);
    let Ok(p) = Platform::parse(first) else {
        return;
    };
    assert_eq!(p.normalized(), p, "{first:?}: parse does not normalise");
    let printed = p.to_string();
    assert_eq!(
        Platform::parse(&printed).as_ref(),
        Ok(&p),
        "{first:?} prints as {printed:?}, which parses differently"
    );
    let matcher = p.matcher();
    let strict = p.strict_matcher();
    assert!(
        strict.matches(&p),
        "{first:?}: its strict matcher refuses it"
    );
    assert!(matcher.matches(&p), "{first:?}: its matcher refuses it");
    if !p.is_unknown() {
        assert_eq!(matcher.best([&p]), Some(0), "{first:?}: not its own best");
    }

    let candidates: Vec<Platform> = lines.filter_map(|l| Platform::parse(l).ok()).collect();
    for m in [&matcher, &strict] {
        let order = m.order(&candidates);
        let expected: BTreeSet<usize> = (0..candidates.len())
            .filter(|&i| !candidates[i].is_unknown() && m.matches(&candidates[i]))
            .collect();
        assert_eq!(
            order.iter().copied().collect::<BTreeSet<_>>(),
            expected,
            "{first:?}: order is not the matching candidates"
        );
        assert_eq!(order.len(), expected.len(), "{first:?}: order repeats");
        assert_eq!(m.best(&candidates), order.first().copied());
        for &i in &order {
            assert!(
                matcher.matches(&candidates[i]),
                "{first:?}: strict matches {} where the fallbacks do not",
                candidates[i]
            );
        }
    }
}

/// Base image configs for the planner: any name is an image (some with ONBUILD triggers), except
/// `missing…`.
struct FakeResolver;

impl Resolver for FakeResolver {
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, crate::dockerfile::plan::ResolveError> {
        if reference.starts_with("missing") {
            return Err(format!("no image `{reference}`").into());
        }
        let mut config = ImageConfig::default();
        config.set_platform(platform);
        let rc = config.run_config_mut();
        rc.env = Some(vec!["PATH=/usr/bin:/bin".into()]);
        rc.cmd = Some(vec!["sh".into()]);
        if reference.contains("onbuild") {
            rc.on_build = Some(vec![
                "ENV TRIGGERED=1".into(),
                "COPY . /app/".into(),
                "RUN echo $TRIGGERED".into(),
            ]);
        }
        Ok(config)
    }
}

/// The Dockerfile frontend: parse, then plan for two platforms. For what plans, the target and
/// every stage a stage builds on are planned, and every path the plan holds is absolute.
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(df) = instructions::parse("Dockerfile", text) else {
        return;
    };
    let names = plan::stage_names(&df);
    let opts = PlanOptions {
        build_platform: Some(Platform::new("linux", "amd64", None)),
        build_args: BTreeMap::from([("VERSION".to_string(), "1.0".to_string())]),
        ..Default::default()
    };
    for platform in [
        Platform::new("linux", "amd64", None),
        Platform::new("linux", "arm64", Some("v8")),
    ] {
        let Ok(plan) = plan::plan(&df, &platform, &opts, &FakeResolver) else {
            continue;
        };
        assert!(
            plan.target < names.len(),
            "target {} out of range",
            plan.target
        );
        assert!(plan.stages.contains_key(&plan.target), "target not planned");
        for (&i, stage) in &plan.stages {
            assert_eq!(stage.index, i);
            if let Base::Stage(base) = stage.base {
                assert!(
                    base < i,
                    "stage {i} builds on stage {base}, not an earlier one"
                );
                assert!(
                    plan.stages.contains_key(&base),
                    "base stage {base} not planned"
                );
            }
            for step in &stage.steps {
                match &step.op {
                    Op::Meta => {}
                    Op::Workdir { path, .. } => {
                        assert!(path.starts_with('/'), "WORKDIR {path:?} not absolute")
                    }
                    Op::Copy(c) => {
                        assert!(c.dest.starts_with('/'), "COPY to {:?} not absolute", c.dest);
                        if let plan::CopyFrom::Stage(s) = c.from {
                            assert!(s < i && plan.stages.contains_key(&s), "COPY --from={s}");
                        }
                    }
                    Op::Run(r) => {
                        assert!(r.workdir.starts_with('/'), "RUN in {:?}", r.workdir);
                        for m in &r.mounts {
                            assert!(m.target.starts_with('/'), "mount at {:?}", m.target);
                        }
                    }
                }
            }
        }
    }
}

/// Manifest, index and config JSON (`src/oci`): what parses keeps its bytes exactly (so its
/// digest is the input's), and the parsed value serialises to JSON that parses to the same value.
pub fn oci_json(data: &[u8]) {
    fn round_trip<T>(what: &str, parsed: oci::Parsed<T>, data: &[u8])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(parsed.bytes, data, "{what}: bytes not kept");
        assert_eq!(parsed.digest(), Digest::sha256_of(data), "{what}: digest");
        let json = serde_json::to_vec(&parsed.value).expect("serialises");
        let again: T = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("{what}: its own JSON does not parse: {e}"));
        assert_eq!(
            again, parsed.value,
            "{what}: JSON round trip changes the value"
        );
    }
    if let Ok(p) = oci::parse_manifest(data.to_vec()) {
        round_trip("manifest", p, data);
    }
    if let Ok(p) = oci::parse_index(data.to_vec()) {
        round_trip("index", p, data);
    }
    if let Ok(p) = oci::parse_config(data.to_vec()) {
        let platform = p.value.platform();
        let _ = platform.normalized();
        round_trip("config", p, data);
    }
    if let Ok(mt) = oci::sniff_media_type(data)
        && let Ok(p) = oci::parse_document(&mt, data.to_vec())
    {
        assert_eq!(p.bytes, data, "document: bytes not kept");
        match p.value {
            oci::Document::Index(i) => {
                assert!(media_type::is_index(&mt));
                for d in i.images() {
                    let _ = (d.is_index(), d.is_manifest(), d.platform.as_ref());
                }
            }
            oci::Document::Manifest(_) => assert!(media_type::is_manifest(&mt)),
        }
    }
}

/// Whether `data` is compressed and inflates past [`INFLATED_LIMIT`].
fn inflates_too_far(data: &[u8]) -> bool {
    let Ok((reader, _)) = crate::archive::decompressed(data) else {
        return false;
    };
    let mut limited = reader.take(INFLATED_LIMIT + 1);
    let n = std::io::copy(&mut limited, &mut std::io::sink()).unwrap_or(0);
    n > INFLATED_LIMIT
}

/// Everything under `root` but `skip` (relative path → kind, content and, with `meta`, mode,
/// owner and modification time). Only the contents of regular files are read: a layer may hold
/// FIFOs, which is why the destination of an extraction is skipped.
fn snapshot(root: &Path, skip: Option<&Path>, meta: bool) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(
        root: &Path,
        dir: &Path,
        skip: Option<&Path>,
        meta: bool,
        out: &mut BTreeMap<PathBuf, String>,
    ) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            let m = fs::symlink_metadata(&path).expect("stat");
            let what = if m.is_dir() {
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&path).expect("readlink"))
            } else if m.is_file() {
                format!(
                    "file {}",
                    Digest::sha256_of(&fs::read(&path).expect("read"))
                )
            } else {
                format!("special {:o}", m.mode())
            };
            if Some(rel.as_path()) == skip {
                out.insert(rel, "skipped".into());
                continue;
            }
            out.insert(rel, describe(what, &m, meta));
            if m.is_dir() {
                walk(root, &path, skip, meta, out);
            }
        }
    }
    fn describe(what: String, m: &fs::Metadata, meta: bool) -> String {
        match meta {
            true => format!(
                "{what} mode {:o} owner {}:{} mtime {}.{}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec()
            ),
            false => what,
        }
    }
    let mut out = BTreeMap::new();
    let m = fs::symlink_metadata(root).expect("stat root");
    out.insert(PathBuf::new(), describe("root".into(), &m, meta));
    walk(root, root, skip, meta, &mut out);
    out
}

/// A store holding one small image (`fuzz.test/base:1`: an empty layer, its config and its
/// manifest), made once per process and kept as its files (relative path, content; None for a
/// directory): each input is loaded into a fresh copy, so that archives that use its blobs
/// without holding them are exercised too.
fn template_store() -> &'static [(PathBuf, Option<Vec<u8>>)] {
    static TEMPLATE: OnceLock<Vec<(PathBuf, Option<Vec<u8>>)>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let txn = store.begin().expect("transaction");
        let (layer, config, manifest) = base_image();
        for blob in [&layer, &config, &manifest] {
            txn.put_bytes(blob).expect("put blob");
        }
        let desc = oci::Descriptor::of(media_type::OCI_MANIFEST, &manifest);
        let name = Reference::parse("fuzz.test/base:1").expect("reference");
        txn.tag(&name, &desc).expect("tag");
        drop(txn);
        let mut files = Vec::new();
        let mut dirs = vec![dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for entry in fs::read_dir(&d).expect("list").flatten() {
                let rel = entry
                    .path()
                    .strip_prefix(dir.path())
                    .expect("under")
                    .to_path_buf();
                if entry.file_type().expect("type").is_dir() {
                    dirs.push(entry.path());
                    files.push((rel, None));
                } else {
                    files.push((rel, Some(fs::read(entry.path()).expect("read"))));
                }
            }
        }
        // Parents before their contents.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    })
}

/// A store in `root` (an empty directory) holding what the template store holds.
fn new_store(root: &Path) -> Store {
    for (rel, content) in template_store() {
        let path = root.join(rel);
        match content {
            None => fs::create_dir(&path).expect("mkdir"),
            Some(bytes) => fs::write(&path, bytes).expect("write"),
        }
    }
    Store::open(root).expect("open the copied store")
}

/// The template store's image, as (layer, config, manifest) bytes. The seed archives
/// (fuzz/seeds.py) refer to these digests.
pub fn base_image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = vec![0u8; 1024];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&layer).to_string()]},
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": oci::Descriptor::of(media_type::OCI_CONFIG, &config),
        "layers": [oci::Descriptor::of(media_type::OCI_LAYER, &layer)],
    }))
    .expect("json");
    (layer, config, manifest)
}

/// Checks what a store must hold whatever was loaded into it: every blob has the digest it is
/// stored under, index.json parses, and every image it lists is complete (its documents, config
/// and layers all present).
fn assert_store_valid(store: &Store) {
    let blobs = store.layout_dir().join("blobs").join("sha256");
    for entry in fs::read_dir(&blobs).expect("list blobs").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let digest = Digest::parse(&format!("sha256:{name}")).expect("blob named by its digest");
        let bytes = fs::read(entry.path()).expect("read blob");
        assert_eq!(
            Digest::sha256_of(&bytes),
            digest,
            "blob {name} holds other content"
        );
    }
    let entries = store.entries().expect("index.json parses");
    store.reachable().expect("every document reachable parses");
    for entry in entries {
        assert_complete(store, &entry.descriptor);
    }
}

fn assert_complete(store: &Store, desc: &oci::Descriptor) {
    assert!(
        store.has_blob(&desc.digest),
        "{} listed but absent",
        desc.digest
    );
    if desc.is_index() {
        let index = store
            .read_index(&desc.digest)
            .expect("a stored index parses");
        for child in &index.value.manifests {
            assert_complete(store, child);
        }
    } else if desc.is_manifest() {
        assert!(
            store.is_complete(&desc.digest),
            "image {} lacks its config or a layer",
            desc.digest
        );
    }
}

/// `load` of a docker or OCI archive (plain, gzip or zstd) into a store that already holds an
/// image: a failed load leaves the store exactly as it was; a successful one leaves it valid,
/// with every loaded image complete and no temp file behind.
pub fn archive_load(data: &[u8]) {
    if inflates_too_far(data) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = new_store(dir.path());
    // Lock files appear when first taken: they are no content.
    let locks = store.root().join("locks-v1");
    let locks = locks.strip_prefix(dir.path()).ok();
    let before = snapshot(dir.path(), locks, false);
    match crate::archive::load(&store, data, &crate::progress::NoProgress) {
        Err(e) => {
            let after = snapshot(dir.path(), locks, false);
            assert_eq!(
                after.keys().collect::<Vec<_>>(),
                before.keys().collect::<Vec<_>>(),
                "a failed load ({e}) changed the store's files"
            );
            assert!(
                after == before,
                "a failed load ({e}) changed a file of the store"
            );
        }
        Ok(images) => {
            for image in &images {
                assert_complete(&store, &image.descriptor);
            }
            let tmp: Vec<_> = fs::read_dir(store.tmp_dir()).expect("list tmp").collect();
            assert!(tmp.is_empty(), "load left temp files: {tmp:?}");
        }
    }
    assert_store_valid(&store);
}

const CANARY: &[u8] = b"canary: must never change\n";

/// Layer extraction (plain, gzip or zstd, as `unpack` takes them) into a directory two levels
/// below a temporary one, with a canary file next to it at each level: whatever the tarball
/// holds, nothing appears, changes or disappears outside the destination.
pub fn layer_extract(data: &[u8]) {
    if inflates_too_far(data) {
        return;
    }
    let base = tempfile::tempdir().expect("tempdir");
    let middle = base.path().join("m");
    let dest = middle.join("rootfs");
    fs::create_dir_all(&dest).expect("mkdir");
    for dir in [base.path(), &middle] {
        fs::write(dir.join("canary"), CANARY).expect("canary");
    }
    let skip = Path::new("m/rootfs");
    let before = snapshot(base.path(), Some(skip), true);
    let compression = crate::layer::Compression::sniff(data);
    let result = crate::layer::unpack(data, compression, &dest, None);
    let after = snapshot(base.path(), Some(skip), true);
    assert_eq!(
        before, after,
        "extraction ({result:?}) touched something outside the destination"
    );
    let meta = fs::symlink_metadata(&dest).expect("the destination is still there");
    assert!(meta.is_dir(), "the destination is no longer a directory");
}

/// `.dockerignore`: for what parses, the context walk's shortcut holds — a directory that is
/// excluded and under which no `!` pattern may re-include anything has everything under it
/// excluded too.
pub fn dockerignore(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ignore) = Ignore::parse(text) else {
        return;
    };
    assert!(!ignore.excludes(""), "the context root itself is excluded");
    // Paths to try: each pattern's own text with its wildcards filled in, and a few fixed ones.
    let mut paths: BTreeSet<String> = ["a", "a/b", "a/b/c", ".git", "x.txt", "dir/x.txt"]
        .into_iter()
        .map(str::to_string)
        .collect();
    for line in text.lines().take(64) {
        let p = line.trim().trim_start_matches('!').trim();
        let filled: String = p
            .chars()
            .filter(|c| !matches!(c, '[' | ']' | '\\' | '^'))
            .map(|c| if matches!(c, '*' | '?') { 'x' } else { c })
            .collect();
        let filled = filled.trim_matches('/').to_string();
        if !filled.is_empty() && filled.len() < 256 {
            paths.insert(filled);
        }
    }
    for path in &paths {
        let excluded = ignore.excludes(path);
        if !excluded || ignore.may_reinclude_under(path) {
            continue;
        }
        for child in paths
            .iter()
            .filter_map(|c| c.strip_prefix(&format!("{path}/")))
        {
            assert!(
                ignore.excludes(&format!("{path}/{child}")),
                "`{path}` is excluded and may_reinclude_under says nothing under it comes \
                 back, but `{path}/{child}` is not excluded"
            );
        }
        for child in ["x", "x/y"] {
            assert!(
                ignore.excludes(&format!("{path}/{child}")),
                "`{path}` is excluded, `{path}/{child}` is not"
            );
        }
    }
}

/// Bake YAML: parse, select the default targets, print. What parses names valid platforms and
/// tags, and the selection names only targets the file has.
pub fn bake_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "FROM_ENV").then(|| "env-value".to_string());
    let Ok(file) = bake::parse("manifold.yaml", text, &env) else {
        return;
    };
    for (name, target) in &file.targets {
        for p in &target.platforms {
            assert!(Platform::parse(p).is_ok(), "target {name}: platform {p:?}");
        }
        for t in &target.tags {
            assert!(Reference::parse(t).is_ok(), "target {name}: tag {t:?}");
        }
    }
    let mut names: Vec<Vec<String>> = vec![Vec::new()];
    names.extend(file.groups.keys().take(4).map(|g| vec![g.clone()]));
    names.extend(file.targets.keys().take(4).map(|t| vec![t.clone()]));
    for n in names {
        let Ok(selection) = bake::select(&file, &n) else {
            continue;
        };
        for t in &selection.targets {
            assert!(
                file.targets.contains_key(t),
                "selected unknown target {t:?}"
            );
        }
        let _ = bake::print(&file, &selection);
    }
}

/// WWW-Authenticate: a Bearer challenge comes only from a header that offers Bearer, and its
/// realm is what the header says.
pub fn www_authenticate(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    match auth::parse_challenge("registry.fuzz.test", header) {
        Ok(Challenge::Bearer { realm, .. }) => {
            assert!(
                header.to_ascii_lowercase().contains("bearer"),
                "Bearer from {header:?}"
            );
            assert!(
                header.contains(realm.as_str()) || header.contains('\\'),
                "realm {realm:?} is not in {header:?}"
            );
        }
        Ok(Challenge::Basic) => assert!(header.to_ascii_lowercase().contains("basic")),
        Ok(Challenge::None) => panic!("a header is never no challenge"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
