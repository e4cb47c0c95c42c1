//! `commit`: a container's upper directory becomes one more layer (OCI whiteouts, gzip) on top
//! of its image, with config changes applied, stored as a new single-platform image.

use chrono::{SecondsFormat, Utc};

use super::RuntimeError;
use super::containers::{ContainerRecord, Containers, Status};
use super::oci_runtime::OciRuntime;
use crate::layer;
use crate::oci::{Descriptor, History, Parsed, changes, media_type};
use crate::reference::Reference;
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Dockerfile instructions applied to the config (`CMD ["sh"]`, `ENV A=b`, …).
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    pub reference: Option<Reference>,
    /// Freeze a running container while its changes are read (docker's default).
    pub pause: bool,
}

/// What `commit` made.
#[derive(Debug, Clone)]
pub struct Committed {
    pub descriptor: Descriptor,
    pub layer: Descriptor,
    pub report: layer::DiffReport,
}

/// Commit `record`'s changes. `oci` (the container's runtime) pauses a running container; a
/// stopped one needs none.
pub fn commit(
    store: &Store,
    containers: &Containers,
    oci: Option<&OciRuntime>,
    record: &ContainerRecord,
    opts: &CommitOptions,
) -> Result<Committed, RuntimeError> {
    if record.status == Status::Removing {
        return Err(RuntimeError::BeingRemoved {
            id: record.short_id().to_string(),
        });
    }
    let base_manifest = store.read_manifest(&record.manifest)?;
    let base_config = store.read_config(&record.config)?;
    // Changes first: a typo must not cost a pass over the upper directory.
    let mut config = base_config.value.clone();
    for c in &opts.changes {
        changes::apply(&mut config, c)?;
    }

    let paused = match oci {
        Some(rt) if opts.pause && record.status == Status::Running => rt.pause(&record.id).is_ok(),
        _ => false,
    };
    let cdir = containers.dir_of(&record.id);
    let txn = store.begin()?;
    let writer = txn.blob_writer()?;
    let written = layer::write_layer_diff(&cdir.upper(), writer, layer::Compression::Gzip, None);
    if paused && let Some(rt) = oci {
        let _ = rt.resume(&record.id);
    }
    // Reading the changes and writing the layer share one stream: the cause says which failed
    // (a full disk names the store's file system).
    let (diff_id, report, writer) =
        written.map_err(RuntimeError::io("commit the changes in", &cdir.upper()))?;
    let (layer_digest, layer_size) = writer.commit(&txn, None)?;

    let docker = base_manifest.value.media_type.as_deref() == Some(media_type::DOCKER_MANIFEST);
    let layer_type = if docker {
        media_type::DOCKER_LAYER_GZIP
    } else {
        media_type::OCI_LAYER_GZIP
    };
    let layer = Descriptor::new(layer_type, layer_digest, layer_size);

    let created = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    config.created = Some(created.clone());
    if let Some(a) = &opts.author {
        config.author = Some(a.clone());
    }
    config.rootfs.diff_ids.push(diff_id);
    config.history.push(History {
        created: Some(created),
        created_by: Some(format!("manifold commit {}", record.short_id())),
        author: opts.author.clone(),
        comment: opts.message.clone(),
        ..Default::default()
    });
    let config = Parsed::from_value(config);
    txn.put_bytes(&config.bytes)?;
    let config_type = &base_manifest.value.config.media_type;

    let mut manifest = base_manifest.value.clone();
    manifest.config = config.descriptor(config_type.as_str());
    manifest.layers.push(layer.clone());
    manifest.subject = None;
    let manifest_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
    let manifest = Parsed::from_value(manifest);
    txn.put_bytes(&manifest.bytes)?;
    let mut descriptor = manifest.descriptor(&manifest_type);
    descriptor.platform = Some(record.platform.clone());
    match &opts.reference {
        Some(r) => txn.tag(r, &descriptor)?,
        None => txn.add_untagged(&descriptor)?,
    }
    drop(txn);
    Ok(Committed {
        descriptor,
        layer,
        report,
    })
}
