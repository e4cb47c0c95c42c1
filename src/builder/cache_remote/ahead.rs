//! Layers sent ahead: while a build runs, each layer a step makes goes up to the registries of
//! its `--cache-to type=registry,…,mode=max` exports (every step's layer is exported there), on a
//! thread of its own, overlapping the steps that follow. The export after the build then finds
//! them there and has only its small documents to write; the store records where they went, so
//! the image's push mounts them from there. A layer that fails to go ahead is left to the export,
//! which reports it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use super::{CacheLocation, CacheTo, Mode};
use crate::content::Sink;
use crate::oci::{Descriptor, Digest};
use crate::reference::Reference;
use crate::registry::Client;
use crate::store::Store;

/// Layers smaller than this are uploaded without asking whether the registry has them.
const ASK_FIRST: u64 = 1 << 20;

/// The build's end of the way ahead: layers to send, until it is closed; then what went.
#[derive(Default)]
pub struct Ahead {
    layers: Mutex<Option<Sender<Descriptor>>>,
    sent: Mutex<SentAhead>,
}

/// What went ahead to one cache location.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    /// Blobs the location holds now (sent, or there already).
    pub present: HashSet<Digest>,
    /// Blobs uploaded, and their sizes.
    pub uploaded: HashMap<Digest, u64>,
}

/// What went ahead, by cache location (its `Display`).
pub type SentAhead = HashMap<String, Sent>;

impl Ahead {
    /// Open the way: layers sent from now on reach the receiver, for [`upload`].
    pub fn open(&self) -> Receiver<Descriptor> {
        let (tx, rx) = channel();
        *self.layers.lock().expect("ahead") = Some(tx);
        rx
    }

    /// Send `layer` (made by a step, in the store) ahead; nothing once closed.
    pub fn send(&self, layer: &Descriptor) {
        if let Some(tx) = &*self.layers.lock().expect("ahead") {
            // The uploader only stops when the sender is dropped.
            let _ = tx.send(layer.clone());
        }
    }

    /// No more layers: the uploader finishes what it was sent.
    pub fn close(&self) {
        self.layers.lock().expect("ahead").take();
    }

    /// Keep what the uploader sent, for the exports.
    pub fn went(&self, sent: SentAhead) {
        *self.sent.lock().expect("ahead") = sent;
    }

    /// What went ahead to `location`.
    pub fn sent_to(&self, location: &CacheLocation) -> Sent {
        let sent = self.sent.lock().expect("ahead");
        sent.get(&location.to_string()).cloned().unwrap_or_default()
    }
}

/// The registry caches layers go ahead to: those exporting every step (`mode=max`).
pub fn targets(to: &[CacheTo]) -> Vec<&Reference> {
    to.iter()
        .filter(|t| t.mode == Mode::Max)
        .filter_map(|t| match &t.location {
            CacheLocation::Registry(r) => Some(r),
            CacheLocation::Local { .. } => None,
        })
        .collect()
}

/// Upload each layer `layers` brings to every target, one after the other, until the sender
/// closes. Layers not in the store (a hit left in another cache) are the export's to mount.
pub fn upload(
    store: &Store,
    client: &Client,
    targets: &[&Reference],
    layers: Receiver<Descriptor>,
) -> SentAhead {
    let mut repos = Vec::new();
    for r in targets {
        if let Ok(repo) = client.repository(r) {
            repos.push((CacheLocation::Registry((*r).clone()).to_string(), repo));
        }
    }
    let mut sent = SentAhead::new();
    let mut seen = HashSet::new();
    for layer in layers {
        if !seen.insert(layer.digest.clone()) || !store.has_blob(&layer.digest) {
            continue;
        }
        for (location, repo) in &repos {
            // A small layer is sent without asking first: the answer costs what sending does.
            let reused = if layer.size < ASK_FIRST {
                Ok(None)
            } else {
                Sink::try_reuse(repo, &layer, store)
            };
            let went = match reused {
                Ok(Some(_)) => Some(false),
                Ok(None) => store.open_blob(&layer.digest).ok().and_then(|mut file| {
                    Sink::put_blob(repo, &layer, &mut file, store)
                        .ok()
                        .map(|()| true)
                }),
                Err(_) => None,
            };
            if let Some(uploaded) = went {
                let at = sent.entry(location.clone()).or_default();
                at.present.insert(layer.digest.clone());
                if uploaded {
                    at.uploaded.insert(layer.digest.clone(), layer.size);
                }
            }
        }
    }
    sent
}
