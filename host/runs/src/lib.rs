//! `rewind-runs`: the library the `rewind` CLI calls. It reads
//! `rewind.toml` ([`config`]: grants and limits per instance), runs chains
//! of hook calls recorded as manifests, checks a config ([`check`]) and runs
//! one hook on its own ([`hook`], for `rewind hook`). It builds on
//! `rewind-sandbox` for the calls and `rewind-store` for what they keep.
//!
//! Runs: chains of hook calls recorded as manifests.
//!
//! A [`Runner`] holds what every run needs (config, store, engine, loaded
//! plugins, event log) and executes the three kinds of run: backup
//! ([`Runner::backup`]), rollback ([`Runner::rollback`]) and guard
//! ([`Runner::guard`]). Each run takes the store lock, keeps its progress in
//! the journal so a crash is explained and resumable, and ends as one
//! hash-chained manifest. Progress is reported to an [`Observer`] (the
//! terminal timeline, plain lines, or nothing).

#![deny(missing_docs)]

mod backup;
pub mod check;
pub mod config;
mod error;
pub mod events;
mod guard;
mod health;
pub mod hook;
mod observer;
mod rollback;
pub mod source;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Instance};
use rewind_core::ErrorReport;
use rewind_sandbox::bindings::rewind::hooks::types::{Event, EventKind, HookContext};
use rewind_sandbox::engine::Runtime;
use rewind_sandbox::plugin::LoadedPlugin;
use rewind_sandbox::{CallError, HookInput, HookOutput, LogLevel, LogSink, call_hook};
use rewind_store::{
    Orphans, PluginRef, PrunePlan, RetentionPolicy, RunKind, RunManifest, RunStatus, StepRecord,
    StepStatus, Store, StoreLock,
};

pub use error::{Result, RunError};
pub use events::{Events, LoggedEvent, Sink, SinkFailure};
pub use guard::{GuardOptions, GuardOutcome, GuardResult};
pub use health::{HealthResult, human_duration};
pub use observer::{Observer, Silent};
pub use rollback::{
    PlanStep, RollbackOptions, RollbackPlan, RollbackResult, failed_rollback, failed_step,
    fallbacks_used, restrict, resume_hint,
};

/// What taking the lock does with interrupted rollbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupted {
    /// Leave them for `--resume`, and say so.
    Keep,
    /// This run resumes one: leave them, quietly.
    Resume,
    /// This run is a new rollback: record them as interrupted.
    Close,
}

/// Executes runs for one config and store.
pub struct Runner<'a> {
    /// The config runs are made of.
    pub config: &'a Config,
    /// The store runs are recorded in.
    pub store: Store,
    runtime: Runtime,
    observer: &'a dyn Observer,
    /// Loaded plugins by file and pin (see [`Runner::plugin`]).
    plugins: RefCell<BTreeMap<(PathBuf, String), Arc<LoadedPlugin>>>,
    events: Events,
    /// The command line, recorded in the lock.
    command: String,
    /// False while running read-only checks: steps write no journal and
    /// no events.
    recording: Cell<bool>,
    /// The run whose journal lacks the end of its last step: written with
    /// its next journal write (see [`Runner::journal_step_end`]). A run
    /// can hold others (a guard its backup and rollback), so it is named.
    journal_behind: RefCell<Option<String>>,
    /// Asks whether the store lock this run took is still its own.
    lease: RefCell<Option<rewind_store::LeaseCheck>>,
    /// How long to wait for a store lock another run holds.
    lock_wait: std::time::Duration,
}

impl<'a> Runner<'a> {
    /// Open the config's store and load the notify sinks.
    pub fn new(
        config: &'a Config,
        store: Store,
        runtime: Runtime,
        observer: &'a dyn Observer,
        command: String,
    ) -> Result<Self> {
        let runner = Runner {
            config,
            store: store.clone(),
            runtime: runtime.clone(),
            observer,
            plugins: RefCell::default(),
            events: Events::new(&store, &runtime, Vec::new()),
            command,
            recording: Cell::new(true),
            journal_behind: RefCell::default(),
            lease: RefCell::default(),
            lock_wait: std::time::Duration::ZERO,
        };
        let mut sinks = Vec::new();
        for name in &config.notify_sinks {
            sinks.push(Sink {
                instance: config.instance(name)?.clone(),
                plugin: runner.plugin(name)?,
            });
        }
        Ok(Runner {
            events: Events::new(&store, &runtime, sinks),
            ..runner
        })
    }

    /// The loaded (pin-checked, compiled) plugin of an instance. Instances
    /// of one plugin file with one pin share it: the file is read, hashed
    /// and its compiled code loaded once per run, not once per step.
    pub fn plugin(&self, instance: &str) -> Result<Arc<LoadedPlugin>> {
        let spec = self.config.instance(instance)?;
        let key = (spec.source.clone(), spec.sha256.clone());
        if let Some(plugin) = self.plugins.borrow().get(&key) {
            return Ok(plugin.clone());
        }
        source::prepare(self.config, spec)?;
        let plugin = rewind_sandbox::plugin::load(&self.runtime, &spec.source, Some(&spec.sha256))
            .map_err(|source| RunError::Plugin {
                instance: instance.to_string(),
                source,
            })?;
        let plugin = Arc::new(plugin);
        self.plugins.borrow_mut().insert(key, plugin.clone());
        Ok(plugin)
    }

    /// Load (pin-check, compile) every plugin a run will use before its
    /// first step, so a missing or changed plugin file stops the run before
    /// it has touched anything.
    fn preload<'n>(&self, instances: impl IntoIterator<Item = &'n String>) -> Result<()> {
        for name in instances {
            self.plugin(name)?;
        }
        Ok(())
    }

    /// Take the store lock, reporting (and closing the journal of) any run
    /// whose process died while holding it. Interrupted rollbacks stay in
    /// the journal for `rollback --resume` unless `rollbacks` says to close
    /// them (a new rollback supersedes them).
    fn lock(&self, rollbacks: Interrupted) -> Result<StoreLock> {
        let lock = self
            .store
            .lock_waiting(&self.command, self.lock_wait, &|holder| {
                self.observer.note(
                    LogLevel::Info,
                    &format!(
                        "waiting up to {} for the store lock, held by {holder}",
                        human_duration(self.lock_wait)
                    ),
                )
            })?;
        if let Some(holder) = &lock.took_over {
            let message = if holder.is_expired() {
                format!(
                    "took over the store lock of {holder}: its lease expired unrenewed, so \
                     that run is gone"
                )
            } else {
                format!(
                    "the store lock was left by a run that is no longer running ({holder}); \
                     took it over"
                )
            };
            self.observer.note(LogLevel::Warn, &message);
            self.log_store_event(EventKind::Warning, "store lock taken over", message);
        }
        for mut journal in self.store.journals()? {
            if journal.kind == RunKind::Rollback && rollbacks != Interrupted::Close {
                if rollbacks == Interrupted::Resume {
                    continue;
                }
                self.observer.note(
                    LogLevel::Warn,
                    &format!(
                        "rollback {} was interrupted{}; continue it with `rewind rollback --resume`",
                        journal.id,
                        stopped_at(&journal)
                    ),
                );
                continue;
            }
            journal.error = Some(format!(
                "interrupted{}: its process stopped before the run finished",
                stopped_at(&journal)
            ));
            journal.status = RunStatus::Interrupted;
            for step in &mut journal.steps {
                if step.status == StepStatus::Running {
                    step.status = StepStatus::Failed;
                    step.error = Some(CallError::new(
                        rewind_sandbox::ErrorKind::Host,
                        "interrupted: the process stopped during this step".into(),
                    ));
                }
            }
            self.store.finish_run(&mut journal)?;
            self.observer.note(
                LogLevel::Warn,
                &format!(
                    "{} run {} was interrupted{}; recorded it as interrupted",
                    journal.kind.as_str(),
                    journal.id,
                    stopped_at(&journal)
                ),
            );
        }
        *self.lease.borrow_mut() = Some(lock.lease_check());
        Ok(lock)
    }

    /// For removals that go on for a while (a prune): an error once the
    /// store lock is no longer this run's, asked at most once a second
    /// (on S3 each asking is a request).
    fn lease_still_held(&self) -> impl FnMut() -> std::io::Result<()> + '_ {
        let mut asked: Option<std::time::Instant> = None;
        move || {
            if asked.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1)) {
                return Ok(());
            }
            asked = Some(std::time::Instant::now());
            match self.lease_taken_by() {
                None => Ok(()),
                Some(holder) => Err(std::io::Error::other(format!(
                    "stopped: while this run was stopped past its lease, the store lock was \
                     taken over by {holder}; what it had not removed yet stays"
                ))),
            }
        }
    }

    /// Who took the store lock over from this run, if anyone did: a run
    /// frozen past its lease (a stopped process, a suspended machine, a
    /// stalled disk) loses it to the next run, and must then neither touch
    /// production nor write to the store. Asked before every step and
    /// before the manifest; a store that cannot be read is left to the
    /// write that follows to report.
    fn lease_taken_by(&self) -> Option<String> {
        if !self.recording.get() {
            return None;
        }
        let check = self.lease.borrow().clone()?;
        check.taken_by().ok().flatten()
    }

    /// Start a run: record it in the journal and announce it.
    fn begin(&self, kind: RunKind, title: String, notify: bool) -> Result<RunManifest> {
        let run = RunManifest::start(kind, &self.config.project, &self.config.environment);
        self.store.write_journal(&run)?;
        self.observer.run_started(&run);
        self.emit(&run, EventKind::Info, title, String::new(), notify);
        Ok(run)
    }

    /// Finish a run: make its manifest visible and announce the outcome.
    fn end(
        &self,
        run: &mut RunManifest,
        kind: EventKind,
        title: String,
        notify: bool,
    ) -> Result<()> {
        if run.status == RunStatus::Running {
            run.status = RunStatus::Succeeded;
        }
        if let Some(holder) = self.lease_taken_by() {
            return Err(RunError::LeaseLost {
                run: run.id.clone(),
                holder,
            });
        }
        self.store.finish_run(run).map_err(|source| {
            // The journal is what explains this run now.
            self.journal_catch_up(run);
            RunError::Manifest {
                run: run.id.clone(),
                source,
            }
        })?;
        let message = run.error.clone().unwrap_or_default();
        self.emit(run, kind, title, message, notify);
        self.observer.run_finished(run);
        Ok(())
    }

    fn emit(
        &self,
        run: &RunManifest,
        kind: EventKind,
        title: String,
        message: String,
        notify: bool,
    ) {
        let mut fields = vec![
            ("run_kind".to_string(), run.kind.as_str().to_string()),
            ("host".to_string(), run.host.clone()),
        ];
        for (key, value) in [
            ("status", Some(run.status.as_str())),
            ("source_run", run.source_run.as_deref()),
            ("safety_run", run.safety_run.as_deref()),
            ("backup_run", run.backup_run.as_deref()),
            ("rollback_run", run.rollback_run.as_deref()),
            ("outcome", run.outcome.as_deref()),
            ("label", run.label.as_deref()),
        ] {
            if let Some(value) = value {
                fields.push((key.to_string(), value.to_string()));
            }
        }
        // A rollback that succeeded through a fallback did not fail at a
        // step; say which fallback did the work instead.
        let failed = match run.status {
            RunStatus::Succeeded => None,
            _ => run.steps.iter().find(|s| s.status == StepStatus::Failed),
        };
        if let Some(failed) = failed {
            fields.push((
                "failed_step".to_string(),
                format!("{} {}", failed.instance, failed.hook),
            ));
        }
        let fallbacks = rollback::fallbacks_used(run);
        if !fallbacks.is_empty() {
            fields.push(("fallbacks".to_string(), fallbacks.join("; ")));
        }
        // What the app is at now, as the plugins reported it (a release
        // name, a commit): what a notification reader wants first.
        // A guard's own steps are the deploy and health checks; what its
        // rollback restored is in the rollback's manifest.
        let rollback = run
            .rollback_run
            .as_deref()
            .and_then(|id| self.store.find_run(id).ok());
        let steps = rollback.as_ref().map_or(&run.steps, |r| &r.steps);
        for (field, keys) in [
            ("release", &["release"][..]),
            ("commit", &["commit_after", "commit"][..]),
        ] {
            let reported = steps
                .iter()
                .rev()
                .flat_map(|s| s.details.iter())
                .find(|(k, _)| keys.contains(&k.as_str()));
            if let Some((_, value)) = reported {
                fields.push((field.to_string(), value.clone()));
            }
        }
        if let Some(ms) = run_duration_ms(run) {
            fields.push(("duration_ms".to_string(), ms.to_string()));
        }
        let event = Event {
            kind,
            title,
            message,
            run_id: run.id.clone(),
            project: run.project.clone(),
            environment: run.environment.clone(),
            timestamp: jiff::Timestamp::now().to_string(),
            fields,
        };
        if notify {
            self.events.notify(&event);
        } else {
            self.events.log(&event);
        }
    }

    /// Log a step event (never sent to sinks: one message per step would
    /// bury the one that matters).
    fn step_event(&self, run: &RunManifest, step: &StepRecord) {
        if !self.recording.get() {
            return;
        }
        let (kind, title) = match step.status {
            StepStatus::Running => (
                EventKind::Info,
                format!("{} {} started", step.instance, step.hook),
            ),
            StepStatus::Succeeded => (
                EventKind::Success,
                format!("{} {} succeeded", step.instance, step.hook),
            ),
            StepStatus::Failed => (
                EventKind::Error,
                format!("{} {} failed", step.instance, step.hook),
            ),
            StepStatus::Skipped => (
                EventKind::Info,
                format!("{} {} skipped", step.instance, step.hook),
            ),
        };
        let message = step
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .or_else(|| step.summary.clone())
            .unwrap_or_default();
        self.emit(run, kind, title, message, false);
    }

    /// Run one hook of one instance as a step of `run`, recorded in the
    /// journal before and after.
    fn hook_step(
        &self,
        run: &mut RunManifest,
        instance: &str,
        input: HookInput<'_>,
        dry_run: bool,
        fallback_for: Option<&str>,
    ) -> Result<HookOutput, CallError> {
        let hook = input.name();
        if let Some(holder) = self.lease_taken_by() {
            return Err(CallError::new(
                rewind_sandbox::ErrorKind::Host,
                format!(
                    "{instance} {hook} not started: while this run was stopped past its lease, \
                     the store lock was taken over by {holder}"
                ),
            ));
        }
        let mut step = StepRecord::start(instance, hook);
        step.fallback_for = fallback_for.map(str::to_string);
        let spec = self.config.instance(instance).map_err(|err| {
            CallError::new(
                rewind_sandbox::ErrorKind::Host,
                ErrorReport(&err).to_string(),
            )
        })?;
        step.plugin = Some(PluginRef {
            source: spec.source_label(),
            sha256: spec.sha256.clone(),
        });
        step.artifacts = input.given_artifacts().to_vec();
        run.steps.push(step.clone());
        self.journal(run);
        self.observer.step_started(run, &step, &self.store);
        self.step_event(run, &step);

        let started = Instant::now();
        let result = self.plugin(instance).map_err(|err| {
            CallError::new(
                rewind_sandbox::ErrorKind::Host,
                ErrorReport(&err).to_string(),
            )
        });
        let (result, logs) = match result {
            Ok(plugin) => {
                let ctx = self.context(spec, &run.id, dry_run);
                let mut sandbox = spec.sandbox_spec();
                // Everything the run's calls stored so far (returned or not)
                // counts against this instance's per-run quota: a run cannot
                // fill the disk by spreading its bytes over calls.
                let left = sandbox
                    .limits
                    .run_artifact_bytes
                    .saturating_sub(run.stored_bytes);
                sandbox.limits.artifact_bytes = sandbox.limits.artifact_bytes.min(left);
                let outcome = call_hook(
                    &plugin,
                    &sandbox,
                    &self.store,
                    ctx,
                    input,
                    LogSink::new(None),
                );
                run.stored_bytes += outcome.stored_bytes;
                (outcome.result, outcome.logs)
            }
            Err(err) => (Err(err), Vec::new()),
        };
        step.duration_ms = started.elapsed().as_millis() as u64;
        self.observer.step_logs(&step, &logs);
        step.logs = logs
            .into_iter()
            .filter(|l| l.level >= LogLevel::Info)
            .take(200)
            .collect();
        match &result {
            Ok(output) => {
                step.status = StepStatus::Succeeded;
                record_output(&mut step, output);
            }
            Err(err) => {
                step.status = StepStatus::Failed;
                step.error = Some(err.clone());
            }
        }
        *run.steps.last_mut().expect("the step was pushed") = step.clone();
        self.journal_step_end(run);
        self.observer.step_finished(run, &step);
        self.step_event(run, &step);
        result
    }

    fn context(&self, instance: &Instance, run_id: &str, dry_run: bool) -> HookContext {
        HookContext {
            run_id: run_id.to_string(),
            project: self.config.project.clone(),
            environment: self.config.environment.clone(),
            instance: instance.name.clone(),
            dry_run,
            params_json: instance.params.to_string(),
            // Only `rewind hook --target` sets one.
            target: None,
        }
    }

    /// Rewrite the journal; a failure is reported but does not stop the
    /// run (the final manifest is what must not fail).
    fn journal(&self, run: &RunManifest) {
        let lost = self.lease.borrow().as_ref().is_some_and(|l| l.known_lost());
        if !self.recording.get() || lost {
            return;
        }
        let mut behind = self.journal_behind.borrow_mut();
        if behind.as_deref() == Some(run.id.as_str()) {
            *behind = None;
        }
        drop(behind);
        if let Err(err) = self.store.write_journal(run) {
            self.observer.note(
                LogLevel::Warn,
                &format!("cannot update the journal of run {}: {err}", run.id),
            );
        }
    }

    /// A step ended: its end goes into the journal with the next write
    /// (the next step's start, a run's state change, or
    /// [`Runner::journal_catch_up`] before the host waits), not in a
    /// synced write of its own. What this gives up is only precision in a
    /// crash right between two steps, where nothing touches production:
    /// the journal then shows the ended step as running, and a resume runs
    /// it again, as it would a step the crash interrupted. What it saves
    /// is half the synced writes of every chain (docs/performance.md,
    /// "Whole runs").
    fn journal_step_end(&self, run: &RunManifest) {
        // A run that starts another (a guard its rollback) catches up
        // first, so no run's pending end is replaced by another's.
        if self.recording.get() {
            *self.journal_behind.borrow_mut() = Some(run.id.clone());
        }
    }

    /// Write the end of the last step now, if it is not in the journal
    /// yet: before the host waits, and when a run cannot be finished.
    pub(crate) fn journal_catch_up(&self, run: &RunManifest) {
        if self.journal_behind.borrow().as_deref() == Some(run.id.as_str()) {
            self.journal(run);
        }
    }

    /// Wait for notifications still being delivered; report failures.
    pub fn finish_notifications(&self) -> Vec<SinkFailure> {
        let failures = self.events.wait();
        for failure in &failures {
            self.observer.note(
                LogLevel::Warn,
                &format!(
                    "notify sink `{}` failed (the run itself is unaffected): {}",
                    failure.instance, failure.message
                ),
            );
        }
        failures
    }

    /// Retention from the config (`store.keep_days`, `store.keep_last`);
    /// `include_safety` lets it remove safety backups too.
    pub fn retention(&self, include_safety: bool) -> RetentionPolicy {
        let default = RetentionPolicy::default();
        RetentionPolicy {
            keep_days: self.config.store.keep_days.unwrap_or(default.keep_days),
            keep_last: self.config.store.keep_last.unwrap_or(default.keep_last),
            include_safety,
        }
    }

    /// `rewind artifacts prune`: remove the runs past retention, the
    /// blobs nothing else uses and the `orphans` (blobs no record names,
    /// left by runs that died). Like every run it takes the lock (recording
    /// runs whose process died as interrupted, so that what they finished
    /// is named) and logs an event; a dry run only plans, without the lock.
    pub fn prune(
        &self,
        include_safety: bool,
        dry_run: bool,
        orphans: Orphans,
    ) -> Result<PrunePlan> {
        let policy = self.retention(include_safety);
        if dry_run {
            return Ok(self
                .store
                .prune_plan_with(policy, jiff::Timestamp::now(), orphans)?);
        }
        let _lock = self.lock(Interrupted::Keep)?;
        let plan = self
            .store
            .prune_plan_with(policy, jiff::Timestamp::now(), orphans)?;
        self.store
            .apply_prune_while(&plan, &mut self.lease_still_held())?;
        self.events.log(&Event {
            kind: EventKind::Info,
            title: format!(
                "pruned {} run(s), {} blob(s), {} bytes; {} orphan blob(s), {} bytes",
                plan.runs.len(),
                plan.blobs.len(),
                plan.bytes,
                plan.orphans.len(),
                plan.orphan_bytes
            ),
            message: plan
                .runs
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            run_id: String::new(),
            project: self.config.project.clone(),
            environment: self.config.environment.clone(),
            timestamp: jiff::Timestamp::now().to_string(),
            fields: vec![
                ("run_kind".to_string(), "prune".to_string()),
                ("host".to_string(), rewind_store::hostname()),
                ("runs".to_string(), plan.runs.len().to_string()),
                ("blobs".to_string(), plan.blobs.len().to_string()),
                ("bytes".to_string(), plan.bytes.to_string()),
                ("orphans".to_string(), plan.orphans.len().to_string()),
                ("orphan_bytes".to_string(), plan.orphan_bytes.to_string()),
            ],
        });
        Ok(plan)
    }

    /// Wait up to `wait` for a store lock another run holds, instead of
    /// failing at once (`--lock-wait`).
    pub fn with_lock_wait(mut self, wait: std::time::Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// `rewind unlock`: remove the store lock, only a stale one unless
    /// `force`; a forced removal is recorded (who, from where, whose lock)
    /// in the event log and sent to the notify sinks.
    pub fn unlock(&self, force: bool) -> Result<Option<rewind_store::LockHolder>> {
        let removed = self.store.unlock(force)?;
        if let Some(holder) = &removed
            && force
            && !holder.is_stale()
        {
            let message = format!(
                "`{}` on host {} removed the store lock of {holder} with --force",
                self.command,
                rewind_store::hostname()
            );
            self.log_store_event(EventKind::Warning, "store lock removed by force", message);
        }
        Ok(removed)
    }

    /// An event about the store itself (not a run), logged and notified.
    fn log_store_event(&self, kind: EventKind, title: &str, message: String) {
        self.events.notify(&Event {
            kind,
            title: title.to_string(),
            message,
            run_id: String::new(),
            project: self.config.project.clone(),
            environment: self.config.environment.clone(),
            timestamp: jiff::Timestamp::now().to_string(),
            fields: vec![
                ("run_kind".to_string(), "store".to_string()),
                ("host".to_string(), rewind_store::hostname()),
            ],
        });
    }

    /// Apply retention after a successful backup, reporting what went.
    /// Orphans are not looked for ([`Orphans::Skip`]): that lists every
    /// blob of the store (on S3 one LIST request per 1000 blobs, on every
    /// backup) to find what only a run that died leaves; `rewind artifacts
    /// prune` collects them.
    fn auto_prune(&self) {
        let plan = match self
            .store
            .prune_plan(self.retention(false), jiff::Timestamp::now())
        {
            Ok(plan) => plan,
            Err(err) => {
                self.observer
                    .note(LogLevel::Warn, &format!("retention check failed: {err}"));
                return;
            }
        };
        if plan.runs.is_empty() {
            return;
        }
        match self
            .store
            .apply_prune_while(&plan, &mut self.lease_still_held())
        {
            Ok(()) => self.observer.note(
                LogLevel::Info,
                &format!(
                    "retention: pruned {} old run(s), {} blob(s), {} bytes",
                    plan.runs.len(),
                    plan.blobs.len(),
                    plan.bytes
                ),
            ),
            Err(err) => self
                .observer
                .note(LogLevel::Warn, &format!("retention: prune failed: {err}")),
        }
    }
}

/// Copy what a hook returned into its step record.
fn record_output(step: &mut StepRecord, output: &HookOutput) {
    match output {
        HookOutput::Artifacts(records) => step.artifacts = records.clone(),
        HookOutput::Report(report) => {
            step.summary = Some(report.summary.clone());
            step.details = report.details.clone();
        }
        HookOutput::Health(report) => {
            step.checks = report
                .checks
                .iter()
                .map(|c| rewind_store::CheckRecord {
                    name: c.name.clone(),
                    status: health::status_name(c.status).to_string(),
                    detail: c.detail.clone(),
                    latency_ms: c.latency_ms,
                })
                .collect();
        }
        HookOutput::Info(_) | HookOutput::Notified => {}
    }
}

/// " at step 2/4 (files restore)" for a journal, or "".
pub fn stopped_at(run: &RunManifest) -> String {
    match run.last_step() {
        Some(step) => {
            let total = if run.plan.is_empty() {
                run.steps.len()
            } else {
                run.plan.len()
            };
            let state = if step.status == StepStatus::Running {
                "at"
            } else {
                "after"
            };
            format!(
                " {state} step {}/{} ({} {})",
                run.steps.len(),
                total.max(run.steps.len()),
                step.instance,
                step.hook
            )
        }
        None => " before its first step".to_string(),
    }
}

fn run_duration_ms(run: &RunManifest) -> Option<i64> {
    let start: jiff::Timestamp = run.started_at.parse().ok()?;
    let end: jiff::Timestamp = match &run.finished_at {
        Some(t) => t.parse().ok()?,
        None => jiff::Timestamp::now(),
    };
    Some(end.duration_since(start).as_millis() as i64)
}
