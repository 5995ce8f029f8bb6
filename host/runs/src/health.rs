//! Health checks: one pass over the guard's health instances, and the
//! gate that retries them.

use std::time::Duration;

use rewind_sandbox::bindings::rewind::hooks::types::HealthStatus;
use rewind_sandbox::{HookInput, HookOutput, LogLevel};
use rewind_store::{RunManifest, StepRecord};

use super::Runner;

pub fn status_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unhealthy => "unhealthy",
    }
}

/// The outcome of the health checks.
#[derive(Debug, Clone)]
pub struct HealthResult {
    /// Every instance reported healthy in the last pass.
    pub healthy: bool,
    /// What failed, one line per failing check.
    pub failures: Vec<String>,
    /// Passes made.
    pub attempts: u32,
}

impl HealthResult {
    /// One line: healthy or not, after how many passes.
    pub fn summary(&self) -> String {
        if self.healthy {
            "healthy".into()
        } else {
            self.failures.join("; ")
        }
    }
}

impl Runner<'_> {
    /// Run every health instance once, recording each as a step of `run`.
    fn health_pass(&self, run: &mut RunManifest) -> Vec<String> {
        let mut failures = Vec::new();
        for instance in &self.config.guard.health {
            match self.hook_step(run, instance, HookInput::Health, false, None) {
                Ok(HookOutput::Health(report)) => {
                    for check in &report.checks {
                        if check.status == HealthStatus::Unhealthy {
                            failures.push(format!("{instance}/{}: {}", check.name, check.detail));
                        }
                    }
                    if report.checks.is_empty() {
                        failures.push(format!("{instance}: reported no checks"));
                    }
                }
                Ok(_) => failures.push(format!("{instance}: did not return a health report")),
                Err(err) => failures.push(format!("{instance}: {}", err.message)),
            }
        }
        failures
    }

    /// The health gate: up to `retries` more passes, `delay` apart, until
    /// one is fully healthy. With no health instances configured it passes
    /// (and says so).
    pub(crate) fn health_gate(&self, run: &mut RunManifest) -> HealthResult {
        let guard = &self.config.guard;
        if guard.health.is_empty() {
            self.observer.note(
                LogLevel::Warn,
                "no health checks configured (guard.health is empty): nothing confirms the result",
            );
            return HealthResult {
                healthy: true,
                failures: Vec::new(),
                attempts: 0,
            };
        }
        let total = guard.retries + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failures = self.health_pass(run);
            if failures.is_empty() {
                return HealthResult {
                    healthy: true,
                    failures,
                    attempts: attempt,
                };
            }
            if attempt >= total {
                return HealthResult {
                    healthy: false,
                    failures,
                    attempts: attempt,
                };
            }
            self.observer.note(
                LogLevel::Warn,
                &format!(
                    "health check failed (attempt {attempt}/{total}): {}; retrying in {}",
                    failures.join("; "),
                    human_duration(guard.delay)
                ),
            );
            self.journal_catch_up(run);
            std::thread::sleep(guard.delay);
        }
    }

    /// `rewind health`: one pass, recorded nowhere but returned.
    pub fn health(&self) -> (HealthResult, Vec<StepRecord>) {
        let mut scratch = RunManifest::start(
            rewind_store::RunKind::Guard,
            &self.config.project,
            &self.config.environment,
        );
        let failures = self.health_pass_unjournaled(&mut scratch);
        (
            HealthResult {
                healthy: failures.is_empty(),
                failures,
                attempts: 1,
            },
            scratch.steps,
        )
    }

    fn health_pass_unjournaled(&self, scratch: &mut RunManifest) -> Vec<String> {
        // `health` is a read command: no journal, no events.
        let saved = self.recording.replace(false);
        let failures = self.health_pass(scratch);
        self.recording.set(saved);
        failures
    }
}

/// `1.5 s`, `2 min 3 s`: a duration for people.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
