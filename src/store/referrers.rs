//! Referrers in the store: documents (attestations, signatures) that name another as their
//! `subject`. The OCI image layout has no place for them that its readers agree on, and an
//! index.json entry would show as a dangling image; so each subject's referrers are listed in an
//! OCI index of their own, the shape a registry's referrers API (and its `sha256-<hex>` fallback
//! tag) answers with:
//!
//! ```text
//! <root>/referrers-v1/<alg>/<subject hex>.json    {"schemaVersion":2,"mediaType":"…index…","manifests":[…]}
//! ```
//!
//! A listed descriptor carries the referrer's `artifactType` and annotations, as the referrers
//! API lists them. Garbage collection keeps a referrer (its config, layers and own referrers)
//! exactly as long as its subject is kept, and removes the list with its subject.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::{Result, Store, StoreError, Transaction, private};
use crate::oci::{self, Descriptor, Digest};

pub(super) const REFERRERS_DIR: &str = "referrers-v1";

impl Store {
    fn referrers_path(&self, subject: &Digest) -> PathBuf {
        self.root
            .join(REFERRERS_DIR)
            .join(subject.algorithm().name())
            .join(format!("{}.json", subject.hex()))
    }

    /// The referrers of `subject` the store holds (none listed: empty).
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        let path = self.referrers_path(subject);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("cannot read", &path)(e)),
        };
        let index: oci::Index =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::NotAStore {
                path: path.clone(),
                why: format!("a referrers list is not an image index: {e}"),
            })?;
        Ok(index
            .manifests
            .into_iter()
            .filter(|d| self.has_blob(&d.digest))
            .collect())
    }

    /// Remove the referrers lists of subjects not in `keep` (garbage collection, under its
    /// locks); how many.
    pub(super) fn forget_referrers_except(
        &self,
        keep: &std::collections::HashSet<Digest>,
    ) -> Result<usize> {
        let top = self.root.join(REFERRERS_DIR);
        let algs = match fs::read_dir(&top) {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io("cannot list", &top)(e)),
        };
        let mut removed = 0;
        for alg in algs {
            let alg = alg.map_err(StoreError::io("cannot list", &top))?;
            let name = alg.file_name().to_string_lossy().into_owned();
            let dir = alg.path();
            for list in fs::read_dir(&dir).map_err(StoreError::io("cannot list", &dir))? {
                let list = list.map_err(StoreError::io("cannot list", &dir))?;
                let file = list.file_name().to_string_lossy().into_owned();
                let subject = file
                    .strip_suffix(".json")
                    .and_then(|hex| Digest::parse(&format!("{name}:{hex}")).ok());
                if subject.is_some_and(|s| keep.contains(&s)) {
                    continue;
                }
                fs::remove_file(list.path())
                    .map_err(StoreError::io("cannot remove", &list.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Transaction {
    /// List `referrer` (a stored document) among the referrers of `subject`; an entry of the
    /// same digest is replaced.
    pub fn add_referrer(&self, subject: &Digest, referrer: &Descriptor) -> Result<()> {
        if !self.has_blob(&referrer.digest) {
            return Err(StoreError::BlobNotFound(referrer.digest.clone()));
        }
        let path = self.referrers_path(subject);
        let dir = path.parent().expect("a referrers list is in a directory");
        private::create_dir(&self.root.join(REFERRERS_DIR))
            .and_then(|_| private::create_dir(dir))
            .map_err(StoreError::io("cannot create", dir))?;
        let lock = self.lock_file("referrers.lock")?;
        lock.lock().map_err(StoreError::io(
            "cannot lock",
            &self.locks.join("referrers.lock"),
        ))?;
        let mut listed = self.referrers(subject)?;
        let mut entry = referrer.clone();
        entry.platform = None;
        match listed.iter_mut().find(|d| d.digest == entry.digest) {
            Some(d) => *d = entry,
            None => listed.push(entry),
        }
        let bytes = serde_json::to_vec(&oci::Index::new_oci(listed)).expect("index serialises");
        self.write_atomic(&path, &bytes)
    }
}

impl crate::content::Referrers for Store {
    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, crate::content::ContentError> {
        Store::referrers(self, subject).map_err(|e| crate::content::ContentError::Backend(e.into()))
    }
}

impl crate::content::Referrers for Transaction {
    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, crate::content::ContentError> {
        crate::content::Referrers::referrers(self.store(), subject)
    }
}

impl crate::content::PutReferrers for Transaction {
    fn put_referrer(
        &self,
        subject: &Digest,
        listed: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), crate::content::ContentError> {
        let backend = |e: StoreError| crate::content::ContentError::Backend(e.into());
        let plain = Descriptor::new(
            listed.media_type.clone(),
            listed.digest.clone(),
            listed.size,
        );
        crate::content::Sink::put_manifest(self, &plain, bytes)?;
        self.add_referrer(subject, listed).map_err(backend)
    }
}
