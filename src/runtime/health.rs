//! Health checks: an image's HEALTHCHECK (docker's config shape), the state it gives a running
//! container (`starting`, `healthy`, `unhealthy`, docker's rules), and the loop the container's
//! monitor runs: a probe every interval (every start interval during the start period), run in
//! the container like `exec`, killed after the timeout.
//!
//! docker's rules: the first probe comes one interval after the start; a probe that exits 0
//! makes the container healthy and resets the failing streak; one that fails (any other status,
//! or the timeout) adds to the streak, and `retries` failures in a row make it unhealthy — except
//! during the start period, where failures do not count while the container has not yet been
//! healthy.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;
/// How many probe results are kept (docker's `maxLogEntries`).
const KEEP_RESULTS: usize = 5;
/// How much of a probe's output is kept (docker's `maxOutputLen`).
pub const MAX_OUTPUT: usize = 4096;

/// A HEALTHCHECK, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// The command run in the container (`CMD-SHELL x` is `/bin/sh -c x`).
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

impl Healthcheck {
    /// From an image config's `Healthcheck` (`{"Test": ["CMD-SHELL", "…"], "Interval": ns, …}`):
    /// None when there is none, or it is `NONE`.
    pub fn from_config(value: Option<&serde_json::Value>) -> Option<Healthcheck> {
        let v = value?;
        let test: Vec<String> = v["Test"]
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        let command = match test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
            Some((kind, [shell])) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), shell.clone()]
            }
            _ => return None,
        };
        let duration = |key: &str, default: Duration| {
            v[key]
                .as_u64()
                .filter(|n| *n > 0)
                .map_or(default, Duration::from_nanos)
        };
        Some(Healthcheck {
            command,
            interval: duration("Interval", DEFAULT_INTERVAL),
            timeout: duration("Timeout", DEFAULT_TIMEOUT),
            start_period: duration("StartPeriod", Duration::ZERO),
            start_interval: duration("StartInterval", DEFAULT_START_INTERVAL),
            retries: v["Retries"]
                .as_u64()
                .filter(|n| *n > 0)
                .map_or(DEFAULT_RETRIES, |n| n.min(u32::MAX as u64) as u32),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    /// The suffix of `ps`'s STATUS: `(health: starting)`, `(healthy)`, `(unhealthy)`.
    pub fn ps_suffix(self) -> &'static str {
        match self {
            HealthStatus::Starting => "(health: starting)",
            HealthStatus::Healthy => "(healthy)",
            HealthStatus::Unhealthy => "(unhealthy)",
        }
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// -1 when it timed out or could not run.
    pub exit_code: i32,
    pub output: String,
}

/// A container's health, kept in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    /// The last few probes, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<Probe>,
}

impl Health {
    pub fn starting() -> Health {
        Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// docker's transition for one probe; `in_start_period`: the start period has not ended.
    pub fn record(&mut self, probe: Probe, retries: u32, in_start_period: bool) {
        if probe.exit_code == 0 {
            self.status = HealthStatus::Healthy;
            self.failing_streak = 0;
        } else if !(in_start_period && self.status == HealthStatus::Starting) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(probe);
        if self.log.len() > KEEP_RESULTS {
            self.log.remove(0);
        }
    }
}

/// Probe `check` until `stop` says the container has exited (a message or the sender dropped):
/// `probe` runs the command (with its timeout) and says how it went; `update` gets the health
/// after each probe (it starts as [`Health::starting`]).
pub fn run(
    check: &Healthcheck,
    started: Instant,
    stop: &Receiver<()>,
    mut probe: impl FnMut(&[String], Duration) -> Probe,
    mut update: impl FnMut(&Health),
) {
    let mut health = Health::starting();
    loop {
        let in_start_period = started.elapsed() < check.start_period;
        let wait = if in_start_period && health.status == HealthStatus::Starting {
            check.start_interval.min(check.interval)
        } else {
            check.interval
        };
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let in_start_period = started.elapsed() < check.start_period;
        let result = probe(&check.command, check.timeout);
        health.record(result, check.retries, in_start_period);
        update(&health);
    }
}

/// Keep at most [`MAX_OUTPUT`] bytes of a probe's output, on a character boundary.
pub fn truncate_output(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            start: Utc::now(),
            end: Utc::now(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn from_docker_configs() {
        let v = serde_json::json!({"Test": ["CMD-SHELL", "test -f /ok"], "Interval": 1_000_000_000u64, "Retries": 2});
        let h = Healthcheck::from_config(Some(&v)).unwrap();
        assert_eq!(h.command, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(h.interval, Duration::from_secs(1));
        assert_eq!(h.timeout, DEFAULT_TIMEOUT);
        assert_eq!(h.retries, 2);
        let v = serde_json::json!({"Test": ["CMD", "/bin/check", "-q"]});
        let h = Healthcheck::from_config(Some(&v)).unwrap();
        assert_eq!(h.command, ["/bin/check", "-q"]);
        assert_eq!(h.retries, 3);
        assert_eq!(h.interval, Duration::from_secs(30));
        for none in [
            serde_json::json!({"Test": ["NONE"]}),
            serde_json::json!({"Test": []}),
            serde_json::json!({"Test": ["CMD"]}),
            serde_json::json!({}),
        ] {
            assert_eq!(Healthcheck::from_config(Some(&none)), None, "{none}");
        }
        assert_eq!(Healthcheck::from_config(None), None);
    }

    #[test]
    fn docker_transitions() {
        let mut h = Health::starting();
        // Failures in the start period do not count while starting.
        h.record(probe(1), 2, true);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        h.record(probe(0), 2, true);
        assert_eq!(h.status, HealthStatus::Healthy);
        // Once healthy, they count even in the start period.
        h.record(probe(1), 2, true);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 1));
        h.record(probe(-1), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 2));
        h.record(probe(0), 2, false);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        for _ in 0..10 {
            h.record(probe(1), 2, false);
        }
        assert_eq!(h.log.len(), KEEP_RESULTS);
        let mut s = Health::starting();
        s.record(probe(1), 1, false);
        assert_eq!(s.status, HealthStatus::Unhealthy);
    }

    #[test]
    fn the_loop_probes_each_interval_and_stops() {
        let check = Healthcheck {
            command: vec!["true".into()],
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            start_period: Duration::ZERO,
            start_interval: Duration::from_millis(10),
            retries: 1,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let mut seen = Vec::new();
        let mut n = 0;
        run(
            &check,
            Instant::now(),
            &rx,
            |cmd, _| {
                assert_eq!(cmd, ["true"]);
                n += 1;
                if n == 3 {
                    tx.send(()).unwrap();
                }
                probe(if n == 2 { 1 } else { 0 })
            },
            |h| seen.push(h.status),
        );
        assert_eq!(
            seen,
            [
                HealthStatus::Healthy,
                HealthStatus::Unhealthy,
                HealthStatus::Healthy
            ]
        );
        assert_eq!(truncate_output("é".repeat(MAX_OUTPUT)).len(), MAX_OUTPUT);
    }
}
