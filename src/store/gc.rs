//! Garbage collection: remove every blob no index.json entry reaches, and leftover temp files.
//! It holds the gc lock exclusively, so it never runs while another process is between writing
//! blobs and tagging them (writers hold it shared).

use std::collections::HashSet;
use std::fs;

use super::{Result, Store, StoreError};
use crate::oci::{Descriptor, Digest, Document};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    /// The blobs' bytes.
    pub bytes_freed: u64,
    /// Entries of `tmp-v1` (files, and directories whole) and the sizes of their files.
    pub temp_files_removed: usize,
    pub temp_bytes_freed: u64,
}

impl Store {
    /// Every blob reachable from index.json (documents, their present children, configs,
    /// layers, the referrers of each document and what they reach), and every blob a lease
    /// holds.
    pub fn reachable(&self) -> Result<HashSet<Digest>> {
        let mut roots: Vec<Descriptor> =
            self.entries()?.into_iter().map(|e| e.descriptor).collect();
        let mut seen = HashSet::new();
        let mut blobs = Vec::new();
        // Referrers are kept with their subjects: each round walks the referrers the previous
        // one reached (a signature of an attestation...) as roots of their own. Every round
        // walks only documents not seen before, so the rounds end.
        while !roots.is_empty() {
            let mut referrers = Vec::new();
            crate::content::walk(
                &roots,
                &mut seen,
                |desc, _| {
                    if !self.has_blob(&desc.digest) || !(desc.is_index() || desc.is_manifest()) {
                        return Ok((Vec::new(), ()));
                    }
                    referrers.extend(self.referrers(&desc.digest)?);
                    match self.read_document(desc)?.value {
                        Document::Index(index) => Ok((index.manifests, ())),
                        Document::Manifest(m) => {
                            blobs.push(m.config.digest);
                            blobs.extend(m.layers.into_iter().map(|l| l.digest));
                            Ok((Vec::new(), ()))
                        }
                    }
                },
                |_, ()| Ok::<(), StoreError>(()),
            )?;
            referrers.retain(|d| !seen.contains(&d.digest));
            roots = referrers;
        }
        seen.extend(blobs);
        self.mark_cache_records(&mut seen)?;
        // Leases list every blob they keep (documents, config, layers): nothing to walk.
        for lease in self.leases()? {
            seen.extend(lease.digests);
        }
        Ok(seen)
    }

    /// The build cache's records (`cache-v1/steps/*.json`, each with a `blobs` list) are roots
    /// too: a rebuild finds its layers although no tag reaches them.
    fn mark_cache_records(&self, seen: &mut HashSet<Digest>) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Record {
            #[serde(default)]
            blobs: Vec<Digest>,
        }
        let dir = self.cache_dir().join("steps");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("cannot list", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(StoreError::io("cannot list", &dir))?;
            // A record being written or half-written holds nothing yet.
            if let Ok(bytes) = fs::read(entry.path())
                && let Ok(record) = serde_json::from_slice::<Record>(&bytes)
            {
                seen.extend(record.blobs);
            }
        }
        Ok(())
    }

    /// Remove unreachable blobs and temp files.
    pub fn gc(&self) -> Result<GcReport> {
        assert!(
            !super::transaction::open_here(&self.root),
            "a garbage collection of {} by a process holding a write transaction on it would wait for itself",
            self.root.display()
        );
        // Lock order everywhere: gc, then index. Holding both keeps writers and index.json
        // updates (which use temp files too) away while temp files are cleared.
        let _gc = self.gc_lock()?;
        let _index = self.lock_index()?;
        let keep = self.reachable()?;
        self.forget_referrers_except(&keep)?;
        let mut report = GcReport::default();
        let blobs = self.layout.join("blobs");
        for alg_dir in fs::read_dir(&blobs).map_err(StoreError::io("cannot list", &blobs))? {
            let alg_dir = alg_dir.map_err(StoreError::io("cannot list", &blobs))?;
            let alg = alg_dir.file_name().to_string_lossy().into_owned();
            let path = alg_dir.path();
            for blob in fs::read_dir(&path).map_err(StoreError::io("cannot list", &path))? {
                let blob = blob.map_err(StoreError::io("cannot list", &path))?;
                let name = format!("{alg}:{}", blob.file_name().to_string_lossy());
                if Digest::parse(&name).is_ok_and(|d| keep.contains(&d)) {
                    continue;
                }
                let size = blob.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(blob.path())
                    .map_err(StoreError::io("cannot remove", &blob.path()))?;
                if let Ok(d) = Digest::parse(&name) {
                    self.forget_blob_locations(&d);
                }
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        for tmp in fs::read_dir(&self.tmp).map_err(StoreError::io("cannot list", &self.tmp))? {
            let tmp = tmp.map_err(StoreError::io("cannot list", &self.tmp))?;
            let p = tmp.path();
            if super::staging::in_use(&p) {
                continue;
            }
            // A build's temp directory may hold a tree of any depth a RUN step made.
            if let Ok(removed) = crate::layer::walk::remove_tree(&p)
                && removed.entries > 0
            {
                report.temp_files_removed += 1;
                report.temp_bytes_freed += removed.bytes;
            }
        }
        Ok(report)
    }
}
