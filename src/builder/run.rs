//! RUN: the one step that needs a container. The executor hands a [`RunRequest`] to a
//! [`Runner`]; the runtime-backed runner mounts the stage's layers, runs the command (under
//! QEMU through binfmt_misc for a foreign platform) and turns the overlay's upper directory
//! into the step's layer.

use std::path::Path;

use super::layer::{Compression, LayerInfo};
use crate::dockerfile::plan::RunOp;
use crate::oci::{Descriptor, Digest};
use crate::platform::Platform;
use crate::store::Transaction;

pub struct RunRequest<'a> {
    /// The build's transaction: RUN writes its stage's image and its layer.
    pub store: &'a Transaction,
    /// The platform the stage is built for.
    pub platform: &'a Platform,
    /// The stage's layers before the step, and their diff IDs.
    pub layers: &'a [Descriptor],
    pub diff_ids: &'a [Digest],
    pub op: &'a RunOp,
    pub compression: Compression,
    pub epoch: Option<u64>,
    /// Scratch space for the step (removed afterwards).
    pub tmp: &'a Path,
    /// Each line the command prints.
    pub output: &'a (dyn Fn(&str) + Sync),
}

pub trait Runner: Sync {
    /// Run the step; the layer of what it changed (None when it changed nothing), or a message
    /// saying why it failed (with the exit code when the command failed).
    fn run(&self, req: &RunRequest<'_>) -> Result<Option<LayerInfo>, String>;
}

/// When RUN cannot work here (not root, no OCI runtime): every RUN fails with the reason.
pub struct Unavailable(pub String);

impl Runner for Unavailable {
    fn run(&self, _req: &RunRequest<'_>) -> Result<Option<LayerInfo>, String> {
        Err(self.0.clone())
    }
}
