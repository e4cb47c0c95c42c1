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
    /// A RUN step that was not cached starts under QEMU (`emulator`: the binfmt_misc handler,
    /// `qemu-aarch64`).
    StepEmulated {
        step: StepInfo<'a>,
        emulator: &'a str,
    },
    StepFinished {
        step: StepInfo<'a>,
        duration: Duration,
        /// It was a RUN step that ran under QEMU.
        emulated: bool,
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
        /// The time RUN steps spent under QEMU, per platform.
        emulation: &'a Emulation,
    },
}

/// The time RUN steps spent under emulation, per platform, against the time all the steps
/// that ran took (summed: platforms build side by side, so it may exceed the build's wall
/// time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Emulation {
    /// Per emulated platform, in the order of the platforms' names.
    pub platforms: Vec<EmulatedTime>,
    /// Every step that ran (not cached), native or emulated.
    pub step_time: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedTime {
    pub platform: Platform,
    /// The RUN steps that ran under QEMU.
    pub steps: usize,
    pub duration: Duration,
}

impl Emulation {
    /// Count a step that ran (`emulated`: a RUN under QEMU for `platform`).
    pub fn add(&mut self, platform: &Platform, emulated: bool, duration: Duration) {
        self.step_time += duration;
        if !emulated {
            return;
        }
        let name = platform.to_string();
        match self
            .platforms
            .binary_search_by(|e| e.platform.to_string().cmp(&name))
        {
            Ok(i) => {
                self.platforms[i].steps += 1;
                self.platforms[i].duration += duration;
            }
            Err(i) => self.platforms.insert(
                i,
                EmulatedTime {
                    platform: platform.clone(),
                    steps: 1,
                    duration,
                },
            ),
        }
    }

    /// All the emulated platforms' time.
    pub fn total(&self) -> Duration {
        self.platforms.iter().map(|p| p.duration).sum()
    }

    /// The share of the step time `duration` is, in whole percent.
    pub fn percent_of_steps(&self, duration: Duration) -> u32 {
        if self.step_time.is_zero() {
            return 0;
        }
        (duration.as_secs_f64() * 100.0 / self.step_time.as_secs_f64()).round() as u32
    }

    /// Emulation took more than half the time the steps that ran took: cross-compiling in a
    /// `FROM --platform=$BUILDPLATFORM` stage would save most of the build.
    pub fn dominates(&self) -> bool {
        !self.platforms.is_empty() && self.total() * 2 > self.step_time
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_time_is_summed_per_platform_and_judged_against_all_steps() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let s390x: Platform = "linux/s390x".parse().unwrap();
        let amd64: Platform = "linux/amd64".parse().unwrap();
        let mut e = Emulation::default();
        assert!(!e.dominates(), "nothing ran");
        assert_eq!(e.percent_of_steps(Duration::ZERO), 0);
        e.add(&s390x, true, Duration::from_secs(2));
        e.add(&arm64, true, Duration::from_secs(3));
        e.add(&arm64, true, Duration::from_secs(1));
        e.add(&amd64, false, Duration::from_secs(4));
        assert_eq!(
            e.platforms
                .iter()
                .map(|p| (p.platform.to_string(), p.steps, p.duration.as_secs()))
                .collect::<Vec<_>>(),
            [(arm64.to_string(), 2, 4), (s390x.to_string(), 1, 2)]
        );
        assert_eq!(e.step_time, Duration::from_secs(10));
        assert_eq!(e.percent_of_steps(e.total()), 60);
        assert!(e.dominates());
        e.add(&amd64, false, Duration::from_secs(2));
        assert!(!e.dominates(), "6 s of 12: half is not more than half");
        let mut native = Emulation::default();
        native.add(&amd64, false, Duration::from_secs(9));
        assert!(!native.dominates());
        assert!(native.platforms.is_empty());
    }
}
