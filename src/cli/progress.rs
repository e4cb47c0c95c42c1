//! The CLI's `Progress`: indicatif bars on a terminal, one plain line per event for CI logs,
//! or nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::ProgressMode;
use crate::progress::Progress;

pub struct CliProgress {
    mode: ProgressMode,
    /// `-q`: not even notices.
    quiet: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl CliProgress {
    pub fn new(mode: ProgressMode) -> CliProgress {
        let multi = MultiProgress::with_draw_target(match mode {
            ProgressMode::Auto => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        CliProgress {
            mode,
            quiet: false,
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// A reporter that says nothing at all (`-q`).
    pub fn quiet() -> CliProgress {
        CliProgress {
            quiet: true,
            ..CliProgress::new(ProgressMode::None)
        }
    }

    fn style(total: Option<u64>) -> ProgressStyle {
        let template = match total {
            Some(_) => "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            None => "{prefix:>12} {spinner} {bytes} {binary_bytes_per_sec}",
        };
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> ")
    }
}

impl Progress for CliProgress {
    fn start(&self, id: &str, label: &str, total: Option<u64>) {
        match self.mode {
            ProgressMode::Auto => {
                let bar = self.multi.add(match total {
                    Some(t) => ProgressBar::new(t),
                    None => ProgressBar::no_length(),
                });
                bar.set_style(Self::style(total));
                bar.set_prefix(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars.lock().unwrap().insert(id.to_string(), bar);
            }
            ProgressMode::Plain => match total {
                Some(t) => eprintln!("{label}: started ({})", super::output::human_size(t)),
                None => eprintln!("{label}: started"),
            },
            ProgressMode::None => {}
        }
    }

    fn advance(&self, id: &str, bytes: u64) {
        if self.mode == ProgressMode::Auto
            && let Some(bar) = self.bars.lock().unwrap().get(id)
        {
            bar.inc(bytes);
        }
    }

    fn finish(&self, id: &str, outcome: &str) {
        match self.mode {
            ProgressMode::Auto => {
                if let Some(bar) = self.bars.lock().unwrap().remove(id) {
                    bar.finish_and_clear();
                }
                let _ = self.multi.println(format!("{id}: {outcome}"));
            }
            ProgressMode::Plain => eprintln!("{id}: {outcome}"),
            ProgressMode::None => {}
        }
    }

    fn message(&self, text: &str) {
        match self.mode {
            ProgressMode::Auto => {
                let _ = self.multi.println(text);
            }
            ProgressMode::Plain => eprintln!("{text}"),
            ProgressMode::None => {}
        }
    }

    fn notice(&self, text: &str) {
        if self.quiet {
            return;
        }
        match self.mode {
            ProgressMode::Auto => {
                let _ = self.multi.println(text);
            }
            _ => eprintln!("{text}"),
        }
    }
}
