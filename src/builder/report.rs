//! What a build tells its user, as typed events (uv's reporter model): the builder reports a
//! step starting, coming from the cache, printing a line, finishing or failing, and the build
//! finishing; only the CLI renders them (docker's `#N [platform stage n/m] INSTRUCTION` lines for
//! `build`, the same with the target's name in front for `bake`). Transfers (pulls of base
//! images) go to a [`Progress`] the reporter hands out.

use std::time::Duration;

use super::StepError;
use crate::oci::Descriptor;
use crate::platform::Platform;
use crate::progress::{NoProgress, Progress};
use crate::reference::Reference;

/// A step as its events name it.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// In the order steps start across the whole build (`#3`), platforms side by side.
    pub number: usize,
    /// The platform of the stage's filesystem.
    pub platform: &'a Platform,
    /// The stage's name, or `stage-N`.
    pub stage: &'a str,
    /// 1-based, among the stage's steps.
    pub index: usize,
    pub total: usize,
    /// The instruction as written, on one line.
    pub instruction: &'a str,
    /// Its line in the Dockerfile (0 for an ONBUILD trigger of the base image).
    pub line: usize,
}

#[derive(Debug, Clone, Copy)]
pub enum BuildEvent<'a> {
    /// `--build-arg`s no ARG consumed (docker warns about them).
    UnusedArgs(&'a [String]),
    /// A base or `COPY --from` image is not in the store and is pulled.
    Pulling {
        reference: &'a Reference,
        platform: &'a Platform,
    },
    StepStarted(StepInfo<'a>),
    /// The step's result comes from the cache.
    StepCached(StepInfo<'a>),
    /// A line a RUN step printed (stdout or stderr).
    StepOutput {
        step: StepInfo<'a>,
        line: &'a str,
    },
    StepFinished {
        step: StepInfo<'a>,
        duration: Duration,
    },
    StepFailed {
        step: StepInfo<'a>,
        error: &'a StepError,
    },
    /// Every platform built; the images are in the store, not tagged yet.
    BuildFinished {
        root: &'a Descriptor,
        steps_run: usize,
        steps_cached: usize,
        duration: Duration,
    },
}

pub trait BuildReporter: Sync {
    fn report(&self, event: &BuildEvent<'_>);

    /// Where the bytes of pulls are shown.
    fn transfers(&self) -> &dyn Progress {
        &NoProgress
    }
}

/// Reports nothing.
pub struct NoReport;

impl BuildReporter for NoReport {
    fn report(&self, _: &BuildEvent<'_>) {}
}
