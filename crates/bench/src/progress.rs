//! Progress on the terminal while a benchmark runs (nothing is drawn when stderr is not one).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::time::Duration;

const TICK_MS: u64 = 200;

/// The bars of one benchmark run.
pub(crate) struct Progress {
    multi: MultiProgress,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            multi: MultiProgress::new(),
        }
    }

    /// A bar counting measured points (`done/total`), with the current point as its message.
    pub(crate) fn points(&self, title: &str, total: u64) -> ProgressBar {
        self.add(
            total,
            &format!(
                "{{spinner}} {title} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}}"
            ),
        )
    }

    /// A bar counting records, with their rate.
    pub(crate) fn records(&self, title: &str, total: u64) -> ProgressBar {
        self.add(
            total,
            &format!("{{spinner}} {title} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} ({{per_sec}}, {{eta}} left) {{msg}}"),
        )
    }

    fn add(&self, total: u64, template: &str) -> ProgressBar {
        let style =
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = self.multi.add(ProgressBar::new(total).with_style(style));
        bar.enable_steady_tick(Duration::from_millis(TICK_MS));
        bar
    }

    /// Removes the bars before the table is printed.
    pub(crate) fn finish(&self) {
        let _ = self.multi.clear();
    }
}
