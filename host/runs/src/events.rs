//! Events: the built-in JSON-lines event log, and delivery to notify sinks.
//!
//! Every event goes to `<store>/events.jsonl`, one JSON object per line,
//! appended with a single `write` so concurrent readers never see half a
//! line. Run start and outcome events also go to each configured notify
//! sink, each on its own thread: a slow or failing sink is reported, and
//! never fails, delays or blocks the run itself.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::config::Instance;
use rewind_sandbox::bindings::rewind::hooks::types::{Event, EventKind, HookContext};
use rewind_sandbox::engine::Runtime;
use rewind_sandbox::plugin::LoadedPlugin;
use rewind_sandbox::{HookInput, LogSink, call_hook};
use rewind_store::Store;

/// Event kinds as written in the log and in the seeds' runbooks: the WIT
/// `event-kind` case in upper case (the SDK's `Event::kind_name` is the
/// same mapping; each side's test pins it to `wit/types.wit`).
pub fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Info => "INFO",
        EventKind::Success => "SUCCESS",
        EventKind::Warning => "WARNING",
        EventKind::Error => "ERROR",
        EventKind::RollbackSuccess => "ROLLBACK_SUCCESS",
        EventKind::RollbackFailed => "ROLLBACK_FAILED",
    }
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// The event kind in upper case (`ROLLBACK_SUCCESS`).
    pub kind: String,
    /// The run it belongs to.
    pub run_id: String,
    /// The project of the config.
    pub project: String,
    /// The environment of the config.
    pub environment: String,
    /// One line for people.
    pub title: String,
    /// The details.
    pub message: String,
    /// Structured fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

impl LoggedEvent {
    fn from_event(event: &Event) -> Self {
        LoggedEvent {
            timestamp: event.timestamp.clone(),
            kind: kind_name(event.kind).to_string(),
            run_id: event.run_id.clone(),
            project: event.project.clone(),
            environment: event.environment.clone(),
            title: event.title.clone(),
            message: event.message.clone(),
            fields: event.fields.clone(),
        }
    }
}

/// A sink ready to be called: its instance and loaded plugin.
pub struct Sink {
    /// The `[plugins.<name>]` instance.
    pub instance: Instance,
    /// Its plugin, loaded and pin-checked.
    pub plugin: Arc<LoadedPlugin>,
}

/// What a sink delivery came to, for the run's report.
#[derive(Debug, Clone)]
pub struct SinkFailure {
    /// The sink instance that failed.
    pub instance: String,
    /// Why.
    pub message: String,
}

/// Appends to the event log and fans events out to sinks.
pub struct Events {
    path: PathBuf,
    sinks: Vec<Arc<Sink>>,
    store: Store,
    runtime: Runtime,
    pending: Mutex<Vec<JoinHandle<Option<SinkFailure>>>>,
}

impl Events {
    /// The event log of `store` (`events.jsonl`), delivering to `sinks`.
    pub fn new(store: &Store, runtime: &Runtime, sinks: Vec<Sink>) -> Self {
        Events {
            // For messages: `events.jsonl`, or on S3 the `events/` prefix.
            path: if store.is_local() {
                store.events_path()
            } else {
                store.root().join("events/")
            },
            sinks: sinks.into_iter().map(Arc::new).collect(),
            store: store.clone(),
            runtime: runtime.clone(),
            pending: Mutex::default(),
        }
    }

    /// Append an event to the log. A log that cannot be written is reported
    /// on stderr; it never stops a run.
    pub fn log(&self, event: &Event) {
        let line = serde_json::to_vec(&LoggedEvent::from_event(event)).unwrap_or_default();
        if let Err(err) = self.store.append_event(&line) {
            eprintln!(
                "warning: cannot append to the event log {}: {err}",
                self.path.display()
            );
        }
    }

    /// Log an event and deliver it to every sink in the background.
    pub fn notify(&self, event: &Event) {
        self.log(event);
        for sink in &self.sinks {
            let sink = sink.clone();
            let store = self.store.clone();
            let event = event.clone();
            // The runtime's epoch ticker enforces the sink's deadline: keep
            // it alive for as long as the delivery runs.
            let runtime = self.runtime.clone();
            let handle = std::thread::spawn(move || {
                let ctx = HookContext {
                    run_id: event.run_id.clone(),
                    project: event.project.clone(),
                    environment: event.environment.clone(),
                    instance: sink.instance.name.clone(),
                    dry_run: false,
                    params_json: sink.instance.params.to_string(),
                    target: None,
                };
                let outcome = call_hook(
                    &sink.plugin,
                    &sink.instance.sandbox_spec(),
                    &store,
                    ctx,
                    HookInput::Notify(event),
                    LogSink::new(None),
                );
                drop(runtime);
                outcome.result.err().map(|err| SinkFailure {
                    instance: sink.instance.name.clone(),
                    message: err.to_string(),
                })
            });
            self.pending.lock().expect("pending sinks").push(handle);
        }
    }

    /// Wait for every delivery started so far (each is bounded by its
    /// instance's time limit) and return the ones that failed.
    pub fn wait(&self) -> Vec<SinkFailure> {
        let handles = std::mem::take(&mut *self.pending.lock().expect("pending sinks"));
        let mut failures = Vec::new();
        for handle in handles {
            match handle.join() {
                Ok(Some(failure)) => failures.push(failure),
                Ok(None) => {}
                Err(_) => failures.push(SinkFailure {
                    instance: "?".into(),
                    message: "the delivery thread panicked".into(),
                }),
            }
        }
        for failure in &failures {
            self.log(&Event {
                kind: EventKind::Warning,
                title: format!("notify sink `{}` failed", failure.instance),
                message: failure.message.clone(),
                run_id: String::new(),
                project: String::new(),
                environment: String::new(),
                timestamp: jiff::Timestamp::now().to_string(),
                fields: Vec::new(),
            });
        }
        failures
    }
}

/// Read the event log (for `status` and tests), newest last.
pub fn read_log(store: &Store) -> std::io::Result<Vec<LoggedEvent>> {
    let bytes = store.read_events()?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of `enum event-kind` in the WIT, in order, as event names.
    fn wit_event_kinds() -> Vec<String> {
        rewind_sandbox::bindings::wit_enum_cases("event-kind")
            .iter()
            .map(|case| case.to_uppercase().replace('-', "_"))
            .collect()
    }

    #[test]
    fn kind_names_are_the_wit_case_names() {
        let all = [
            EventKind::Info,
            EventKind::Success,
            EventKind::Warning,
            EventKind::Error,
            EventKind::RollbackSuccess,
            EventKind::RollbackFailed,
        ];
        let names: Vec<&str> = all.into_iter().map(kind_name).collect();
        assert_eq!(names, wit_event_kinds());
    }
}
