//! How a run reports progress while it happens.

use rewind_sandbox::{LogLevel, LogLine};
use rewind_store::{RunManifest, StepRecord, Store};

/// Receives a run's progress: the CLI draws a timeline from it; tests and
/// `--json` use [`Silent`]. Every method has a do-nothing default.
pub trait Observer: Sync {
    /// A run was recorded in the journal and begins.
    fn run_started(&self, _run: &RunManifest) {}
    /// A step begins; `store` meters the blob bytes it moves.
    fn step_started(&self, _run: &RunManifest, _step: &StepRecord, _store: &Store) {}
    /// What the plugin logged during the step, before it is recorded.
    fn step_logs(&self, _step: &StepRecord, _logs: &[LogLine]) {}
    /// A step ended (its record says how).
    fn step_finished(&self, _run: &RunManifest, _step: &StepRecord) {}
    /// The run ended and its manifest is final.
    fn run_finished(&self, _run: &RunManifest) {}
    /// Something the operator should read (a stale lock taken over, a
    /// retry, a sink that failed).
    fn note(&self, _level: LogLevel, _text: &str) {}
    /// A host-side pass over `total` stored bytes begins (verification).
    /// The returned function is called with bytes done as they go.
    fn transfer(&self, _label: &str, _total: u64) -> Box<dyn Fn(u64) + Sync + '_> {
        Box::new(|_| {})
    }
    /// The transfer started last is over.
    fn transfer_done(&self) {}
}

/// Reports nothing.
pub struct Silent;

impl Observer for Silent {}
