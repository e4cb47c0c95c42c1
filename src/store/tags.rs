//! index.json: the store's tags. Each entry is a descriptor of a manifest or index; a tagged
//! entry carries `org.opencontainers.image.ref.name` = the full normalised reference, an
//! untagged one (a dangling image, docker's `<none>:<none>`) carries none.

use std::collections::{HashMap, VecDeque};

use super::{Result, Store, StoreError, Transaction};
use crate::oci::{self, ANNOTATION_REF_NAME, Descriptor, Digest};
use crate::reference::Reference;

/// One index.json entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// None for a dangling (untagged) image.
    pub reference: Option<Reference>,
    pub descriptor: Descriptor,
}

/// What a user's image argument (reference, digest or ID prefix) resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub descriptor: Descriptor,
    /// The tag it was found under, when it was named by one.
    pub reference: Option<Reference>,
}

impl Store {
    fn index_path(&self) -> std::path::PathBuf {
        self.layout.join("index.json")
    }

    fn read_layout_index(&self) -> Result<oci::Index> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(StoreError::io("cannot read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::NotAStore {
            path: self.layout.clone(),
            why: format!("index.json is not a valid image index: {e}"),
        })
    }

    /// Every index.json entry, in file order.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        Ok(self
            .read_layout_index()?
            .manifests
            .into_iter()
            .map(|descriptor| Entry {
                reference: descriptor
                    .annotation(ANNOTATION_REF_NAME)
                    .and_then(|r| Reference::parse(r).ok()),
                descriptor,
            })
            .collect())
    }

    /// Read-modify-write index.json under the index lock. `f` sees and edits the entries; the
    /// new index.json replaces the old by rename, so readers see one or the other.
    fn edit_entries<R>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<R>) -> Result<R> {
        let _lock = self.lock_index()?;
        let mut index = self.read_layout_index()?;
        let before = index.manifests.clone();
        let r = f(&mut index.manifests)?;
        if index.manifests != before {
            let bytes = serde_json::to_vec(&index).expect("index serialises");
            self.write_atomic(&self.index_path(), &bytes)?;
        }
        Ok(r)
    }

    /// Remove a tag; returns the descriptor it pointed at. The image itself goes when no other
    /// entry holds it (blobs are freed by `gc`).
    pub fn untag(&self, reference: &Reference) -> Result<Descriptor> {
        let name = reference.to_string();
        self.edit_entries(|entries| {
            take_ref(entries, &name).ok_or_else(|| StoreError::ImageNotFound(reference.familiar()))
        })
    }

    /// Remove every entry (tagged or not) of the image `digest`; returns how many.
    pub fn remove_image(&self, digest: &Digest) -> Result<usize> {
        self.edit_entries(|entries| {
            let before = entries.len();
            entries.retain(|e| &e.digest != digest);
            Ok(before - entries.len())
        })
    }

    /// The descriptor a reference names: a tag from index.json, or a digest of an image (or of a
    /// platform's manifest inside an index) held in the store.
    pub fn resolve(&self, reference: &Reference) -> Result<Descriptor> {
        let entries = self.entries()?;
        if let Some(digest) = reference.digest() {
            return self
                .resolve_digest(&entries, digest)
                .ok_or_else(|| StoreError::ImageNotFound(reference.familiar()));
        }
        let name = reference.to_string();
        entries
            .into_iter()
            .find(|e| e.descriptor.annotation(ANNOTATION_REF_NAME) == Some(name.as_str()))
            .map(|e| e.descriptor)
            .ok_or_else(|| StoreError::ImageNotFound(reference.familiar()))
    }

    fn resolve_digest(&self, entries: &[Entry], digest: &Digest) -> Option<Descriptor> {
        if let Some(e) = entries.iter().find(|e| &e.descriptor.digest == digest) {
            let mut d = e.descriptor.clone();
            d.remove_annotation(ANNOTATION_REF_NAME);
            return Some(d);
        }
        // A platform's manifest inside a stored index keeps its platform.
        for e in entries.iter().filter(|e| e.descriptor.is_index()) {
            if let Ok(index) = self.read_index(&e.descriptor.digest)
                && let Some(child) = index.value.manifests.iter().find(|c| &c.digest == digest)
                && self.has_blob(digest)
            {
                return Some(child.clone());
            }
        }
        let bytes = self.read_blob(digest).ok()?;
        let media_type = oci::sniff_media_type(&bytes).ok()?;
        Some(Descriptor::new(
            media_type,
            digest.clone(),
            bytes.len() as u64,
        ))
    }

    /// Resolve what a user typed: a reference (`alpine`, `reg/x:1`, `x@sha256:…`), a full
    /// digest, or an image ID prefix as `images` shows it.
    pub fn lookup(&self, input: &str) -> Result<Resolved> {
        let entries = self.entries()?;
        if let Ok(reference) = Reference::parse(input) {
            let found = match reference.digest() {
                Some(d) => self.resolve_digest(&entries, d),
                None => {
                    let name = reference.to_string();
                    entries
                        .iter()
                        .find(|e| {
                            e.descriptor.annotation(ANNOTATION_REF_NAME) == Some(name.as_str())
                        })
                        .map(|e| e.descriptor.clone())
                }
            };
            if let Some(descriptor) = found {
                let reference = reference.digest().is_none().then_some(reference);
                return Ok(Resolved {
                    descriptor,
                    reference,
                });
            }
        }
        let prefix = input.strip_prefix("sha256:").unwrap_or(input);
        if let Ok(d) = Digest::parse(&format!("sha256:{prefix}"))
            && let Some(descriptor) = self.resolve_digest(&entries, &d)
        {
            return Ok(Resolved {
                descriptor,
                reference: None,
            });
        }
        if !prefix.is_empty() && prefix.len() < 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let mut matches: Vec<&Descriptor> = entries
                .iter()
                .map(|e| &e.descriptor)
                .filter(|d| d.digest.hex().starts_with(prefix))
                .collect();
            matches.dedup_by(|a, b| a.digest == b.digest);
            matches.sort_by(|a, b| a.digest.cmp(&b.digest));
            matches.dedup_by(|a, b| a.digest == b.digest);
            match matches.len() {
                0 => {}
                1 => {
                    let mut descriptor = matches[0].clone();
                    descriptor.remove_annotation(ANNOTATION_REF_NAME);
                    return Ok(Resolved {
                        descriptor,
                        reference: None,
                    });
                }
                count => {
                    return Err(StoreError::Ambiguous {
                        reference: input.to_string(),
                        count,
                    });
                }
            }
        }
        // Report a malformed reference as such, not as a missing image.
        Reference::parse(input)?;
        Err(StoreError::ImageNotFound(input.to_string()))
    }
}

/// Tags make blobs reachable, so they are written in a transaction: no garbage collection can
/// run between the blobs a writer stored and the tag that keeps them.
impl Transaction {
    /// Read-modify-write index.json under the index lock (see `Store::edit_entries`).
    pub fn update_entries<R>(
        &self,
        f: impl FnOnce(&mut Vec<Descriptor>) -> Result<R>,
    ) -> Result<R> {
        self.store().edit_entries(f)
    }

    /// Point `reference` at `desc` (which must be stored). An image the tag pointed at before
    /// stays in the store as a dangling image when no other tag names it.
    pub fn tag(&self, reference: &Reference, desc: &Descriptor) -> Result<()> {
        self.tag_all(&[(Some(reference.clone()), desc.clone())])
    }

    /// Record an image without a tag (a loaded archive without names, an import without REF),
    /// unless some entry already holds it.
    pub fn add_untagged(&self, desc: &Descriptor) -> Result<()> {
        self.tag_all(&[(None, desc.clone())])
    }

    /// Tag (or, for `None`, record untagged) each image in turn, as `tag` and `add_untagged`
    /// would one by one, but in one write of index.json: all of them or none, and linear in
    /// the number of entries however many tags an archive brings.
    pub fn tag_all(&self, images: &[(Option<Reference>, Descriptor)]) -> Result<()> {
        for (_, desc) in images {
            if !self.has_blob(&desc.digest) {
                return Err(StoreError::BlobNotFound(desc.digest.clone()));
            }
        }
        self.edit_entries(|entries| {
            let mut index = EntryIndex::new(std::mem::take(entries));
            for (reference, desc) in images {
                match reference {
                    Some(r) => index.tag(r.to_string(), desc),
                    None => index.keep_dangling(desc.clone()),
                }
            }
            *entries = index.into_entries();
            Ok(())
        })
    }
}

fn take_ref(entries: &mut Vec<Descriptor>, name: &str) -> Option<Descriptor> {
    let pos = entries
        .iter()
        .position(|e| e.annotation(ANNOTATION_REF_NAME) == Some(name))?;
    let mut d = entries.remove(pos);
    d.remove_annotation(ANNOTATION_REF_NAME);
    Some(d)
}

/// index.json's entries while many tags are applied: removed entries leave a hole (order is
/// kept), and tags, holders and untagged entries are looked up by hash, not by scanning.
struct EntryIndex {
    slots: Vec<Option<Descriptor>>,
    /// Tagged entries by name; the first of duplicate names (a hand-edited index.json) is the
    /// one a lookup finds.
    by_name: HashMap<String, VecDeque<usize>>,
    /// How many live entries hold each image.
    holders: HashMap<Digest, usize>,
    untagged: HashMap<Digest, Vec<usize>>,
}

impl EntryIndex {
    fn new(entries: Vec<Descriptor>) -> EntryIndex {
        let mut index = EntryIndex {
            slots: Vec::with_capacity(entries.len()),
            by_name: HashMap::new(),
            holders: HashMap::new(),
            untagged: HashMap::new(),
        };
        for e in entries {
            index.push(e);
        }
        index
    }

    fn push(&mut self, e: Descriptor) {
        let i = self.slots.len();
        match e.annotation(ANNOTATION_REF_NAME) {
            Some(name) => self
                .by_name
                .entry(name.to_string())
                .or_default()
                .push_back(i),
            None => self.untagged.entry(e.digest.clone()).or_default().push(i),
        }
        *self.holders.entry(e.digest.clone()).or_default() += 1;
        self.slots.push(Some(e));
    }

    fn remove(&mut self, i: usize) -> Option<Descriptor> {
        let e = self.slots[i].take()?;
        if let Some(n) = self.holders.get_mut(&e.digest) {
            *n -= 1;
        }
        Some(e)
    }

    fn tag(&mut self, name: String, desc: &Descriptor) {
        if let Some(i) = self.by_name.get_mut(&name).and_then(VecDeque::pop_front)
            && let Some(mut old) = self.remove(i)
            && old.digest != desc.digest
        {
            old.remove_annotation(ANNOTATION_REF_NAME);
            self.keep_dangling(old);
        }
        for i in self.untagged.remove(&desc.digest).unwrap_or_default() {
            self.remove(i);
        }
        let mut entry = desc.clone();
        entry.set_annotation(ANNOTATION_REF_NAME, name);
        self.push(entry);
    }

    /// Keep `desc` as an untagged entry unless another entry already holds that image.
    fn keep_dangling(&mut self, mut desc: Descriptor) {
        if self.holders.get(&desc.digest).is_some_and(|&n| n > 0) {
            return;
        }
        desc.remove_annotation(ANNOTATION_REF_NAME);
        self.push(desc);
    }

    fn into_entries(self) -> Vec<Descriptor> {
        self.slots.into_iter().flatten().collect()
    }
}
