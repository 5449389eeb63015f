//! What runs right now, on stderr: an overall bar over all steps and a detail bar for the step.
//! Without a terminal the bars stay hidden and each finished step is logged as a line instead.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    detail: ProgressBar,
}

/// What the detail bar counts.
pub enum Detail {
    Bytes(u64),
    Items(u64),
    Requests,
    Spinner,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("static progress template is valid")
}

impl Progress {
    pub fn new(total_steps: u64) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total_steps));
        overall.set_style(style("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}"));
        let detail = multi.add(ProgressBar::new(0));
        overall.enable_steady_tick(Duration::from_millis(200));
        detail.enable_steady_tick(Duration::from_millis(200));
        Self { multi, overall, detail }
    }

    /// Starts a step and returns the bar its work should advance.
    pub fn step(&self, message: String, detail: Detail) -> ProgressBar {
        self.overall.set_message(message);
        self.detail.reset();
        self.detail.set_position(0);
        let (length, template) = match detail {
            Detail::Bytes(total) => (total, "  {bar:30} {bytes}/{total_bytes} {bytes_per_sec}"),
            Detail::Items(total) => (total, "  {bar:30} {pos}/{len}"),
            Detail::Requests => (0, "  {spinner} {pos} requests"),
            Detail::Spinner => (0, "  {spinner} {elapsed}"),
        };
        self.detail.set_length(length);
        self.detail.set_style(style(template));
        self.detail.clone()
    }

    /// Ends the current step with a one-line outcome that stays visible.
    pub fn done(&self, line: String) {
        self.overall.inc(1);
        self.log(line);
    }

    pub fn log(&self, line: String) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            self.multi.println(line).ok();
        }
    }

    pub fn finish(&self) {
        self.detail.finish_and_clear();
        self.overall.finish_and_clear();
    }
}
