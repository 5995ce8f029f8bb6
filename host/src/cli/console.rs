//! The run timeline on stderr: spinners and progress bars with bytes/s on
//! a terminal, one plain line per event elsewhere (CI logs, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rewind::run::Observer;
use rewind::sandbox::{LogLevel, LogLine};
use rewind::store::{RunManifest, StepRecord, StepStatus, Store};

/// What the console prints.
pub struct Console {
    fancy: bool,
    quiet: bool,
    /// Plugin log lines at this level and above are shown.
    log_level: LogLevel,
    active: Mutex<Option<ProgressBar>>,
}

impl Console {
    pub fn new(quiet: bool, verbose: u8) -> Self {
        Console {
            fancy: std::io::stderr().is_terminal() && !quiet,
            quiet,
            log_level: match verbose {
                0 => LogLevel::Warn,
                1 => LogLevel::Info,
                2 => LogLevel::Debug,
                _ => LogLevel::Trace,
            },
            active: Mutex::new(None),
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &*self.active.lock().expect("console") {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn finish_bar(&self) {
        if let Some(bar) = self.active.lock().expect("console").take() {
            bar.finish_and_clear();
        }
    }
}

fn step_label(step: &StepRecord) -> String {
    format!("{} {}", step.instance, step.hook)
}

fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

impl Observer for Console {
    fn run_started(&self, run: &RunManifest) {
        let what = if run.safety {
            "safety backup"
        } else {
            run.kind.as_str()
        };
        self.line(&format!("{} {what} {}", clock(), run.id));
    }

    fn step_started(&self, _run: &RunManifest, step: &StepRecord, store: &Store) {
        if !self.fancy {
            self.line(&format!("{}   {} ...", clock(), step_label(step)));
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "  {spinner} {msg} {elapsed} {binary_bytes} {binary_bytes_per_sec}",
            )
            .expect("valid template"),
        );
        bar.set_message(step_label(step));
        bar.enable_steady_tick(Duration::from_millis(100));
        // The store meters blob bytes the step moves; mirror them.
        let start = store.bytes_moved();
        let meter = store.clone();
        let watched = bar.clone();
        std::thread::spawn(move || {
            while !watched.is_finished() {
                watched.set_position(meter.bytes_moved().saturating_sub(start));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        *self.active.lock().expect("console") = Some(bar);
    }

    fn step_logs(&self, _step: &StepRecord, logs: &[LogLine]) {
        for line in logs.iter().filter(|l| l.level >= self.log_level) {
            let level = format!("{:?}", line.level).to_lowercase();
            self.line(&format!(
                "      [{}/{}] {level}: {}",
                line.instance, line.hook, line.message
            ));
        }
    }

    fn step_finished(&self, _run: &RunManifest, step: &StepRecord) {
        self.finish_bar();
        let unhealthy = step.checks.iter().any(|c| c.status == "unhealthy");
        let (mark, outcome) = match step.status {
            StepStatus::Succeeded if unhealthy => ("BAD", String::new()),
            StepStatus::Succeeded => ("ok", String::new()),
            StepStatus::Failed => (
                "FAILED",
                step.error
                    .as_ref()
                    .map(|e| format!("\n      {}", e.to_string().replace('\n', "\n      ")))
                    .unwrap_or_default(),
            ),
            StepStatus::Running => ("...", String::new()),
            StepStatus::Skipped => ("skipped", String::new()),
        };
        let mut facts = vec![rewind::run::human_duration(Duration::from_millis(
            step.duration_ms,
        ))];
        if step.hook == "backup" {
            let bytes: u64 = step.artifacts.iter().map(|a| a.blob.size).sum();
            facts.push(format!(
                "{} artifact(s), {}",
                step.artifacts.len(),
                indicatif::BinaryBytes(bytes)
            ));
        }
        if let Some(summary) = &step.summary {
            facts.push(summary.clone());
        }
        for check in &step.checks {
            facts.push(format!("{} {}: {}", check.status, check.name, check.detail));
        }
        self.line(&format!(
            "{}   {:<28} {mark:<6} {}{outcome}",
            clock(),
            step_label(step),
            facts.join(", ")
        ));
    }

    fn run_finished(&self, run: &RunManifest) {
        let what = if run.safety {
            "safety backup"
        } else {
            run.kind.as_str()
        };
        let mut text = format!("{} {what} {} {}", clock(), run.id, run.status_text());
        if let Some(error) = &run.error {
            text.push_str(&format!(": {error}"));
        }
        self.line(&text);
    }

    fn note(&self, level: LogLevel, text: &str) {
        let prefix = match level {
            LogLevel::Warn => "warning: ",
            LogLevel::Error => "error: ",
            _ => "",
        };
        self.line(&format!("{}   {prefix}{text}", clock()));
    }

    fn transfer(&self, label: &str, total: u64) -> Box<dyn Fn(u64) + Sync + '_> {
        if !self.fancy || total == 0 {
            self.line(&format!(
                "{}   {label} ({})",
                clock(),
                indicatif::BinaryBytes(total)
            ));
            return Box::new(|_| {});
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "  {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        *self.active.lock().expect("console") = Some(bar.clone());
        Box::new(move |done| bar.set_position(done))
    }

    fn transfer_done(&self) {
        self.finish_bar();
    }
}
