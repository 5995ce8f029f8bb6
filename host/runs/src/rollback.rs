//! The rollback run: choose a backup, verify every artifact it will use,
//! take a safety backup, run the rollback chain, check health.

use super::error::{Result, RunError, config_error, refuse};
use serde::Serialize;

use super::backup::BackupOptions;
use super::health::HealthResult;
use super::{Runner, stopped_at};
use rewind_core::exit::ExitCode;
use rewind_sandbox::bindings::rewind::hooks::types::EventKind;
use rewind_sandbox::plugin::HookKind;
use rewind_sandbox::{HookInput, LogLevel};
use rewind_store::{
    ArtifactRecord, PlannedStep, PluginRef, RunKind, RunManifest, RunStatus, StepRecord,
    StepStatus, newest_backup,
};

/// How `rewind rollback` runs.
#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    /// A backup run id (or unique prefix); default: the newest backup.
    pub to: Option<String>,
    /// A named chain instead of `chains.rollback`.
    pub chain: Option<String>,
    /// Skip the safety backup.
    pub quick: bool,
    /// Print the plan and let each plugin report what it would do.
    pub dry_run: bool,
    /// Continue the interrupted rollback, or else the newest rollback if it
    /// failed, instead of starting a new one.
    pub resume: bool,
    /// With `resume`: instances whose step is recorded as skipped instead
    /// of run.
    pub skip: Vec<String>,
    /// Run only these instances of the chain (in chain order).
    pub only: Vec<String>,
    /// Inside guard: a failed safety backup is reported, not fatal (the
    /// guard's own backup is minutes old).
    pub safety_best_effort: bool,
    /// Send the outcome to the notify sinks.
    pub notify: bool,
}

/// One step a rollback will run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub instance: String,
    pub hook: HookKind,
    pub plugin: PluginRef,
    /// The artifacts this instance wrote in the chosen backup run.
    pub artifacts: Vec<ArtifactRecord>,
}

/// What a rollback will do.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackPlan {
    /// The backup run restored from.
    pub source_run: String,
    /// When the backup run started.
    pub source_started_at: String,
    /// The backup run's label, if any.
    pub source_label: Option<String>,
    /// The restore or revert steps, in chain order.
    pub steps: Vec<PlanStep>,
    /// Health instances checked afterwards.
    pub health: Vec<String>,
    /// A safety backup is taken first.
    pub safety_backup: bool,
}

/// What a rollback did.
#[derive(Debug)]
pub struct RollbackResult {
    /// What it planned.
    pub plan: RollbackPlan,
    /// The finished manifest; `None` for a dry run.
    pub run: Option<RunManifest>,
    /// Verification problems (a rollback with any does not run).
    pub problems: Vec<String>,
    /// Dry run: what each plugin said it would do.
    pub dry_run_steps: Vec<StepRecord>,
    /// The health pass after it, when the config names health instances.
    pub health: Option<HealthResult>,
}

impl RollbackResult {
    /// The exit code of `rewind rollback`: a dry run that found problems
    /// failed (1); a rollback that was refused by verification or failed
    /// needs manual action (4).
    pub fn exit_code(&self) -> ExitCode {
        if self.succeeded() {
            ExitCode::Ok
        } else if self.run.is_none() {
            ExitCode::Failed
        } else {
            ExitCode::RollbackFailed
        }
    }

    /// The rollback ran, every step succeeded and health (if checked) passed.
    pub fn succeeded(&self) -> bool {
        match &self.run {
            Some(run) => run.status == RunStatus::Succeeded,
            None => {
                self.problems.is_empty()
                    && self
                        .dry_run_steps
                        .iter()
                        .all(|s| s.status == StepStatus::Succeeded)
            }
        }
    }
}

impl Runner<'_> {
    /// The backup run a rollback restores from: `to`, or the newest
    /// finished, non-safety backup.
    pub fn choose_source(&self, to: Option<&str>) -> Result<RunManifest> {
        match to {
            Some(id) => {
                let run = self.store.find_run(id)?;
                if run.kind != RunKind::Backup {
                    refuse!(
                        "run {} is a {} run; a rollback restores from a backup run \
                         (`rewind history` lists them)",
                        run.id,
                        run.kind.as_str()
                    );
                }
                if run.status != RunStatus::Succeeded {
                    refuse!(
                        "backup run {} {}: its artifacts are incomplete, so rewind will not \
                         restore from it; choose a backup that succeeded (`rewind history`)",
                        run.id,
                        run.status.as_str()
                    );
                }
                Ok(run)
            }
            None => {
                let runs = self.store.runs()?;
                match newest_backup(&runs) {
                    Some(run) => Ok(run.clone()),
                    None => refuse!(
                        "there is no backup to roll back to in the store {}: run `rewind backup` \
                         (or deploy with `rewind guard`) first",
                        self.store.root().display()
                    ),
                }
            }
        }
    }

    /// Plan a rollback from `source` along the rollback chain: each
    /// instance's revert (or, if it has none, restore) hook, given the
    /// artifacts that same instance wrote in `source`.
    pub fn plan_rollback(
        &self,
        source: &RunManifest,
        chain: Option<&str>,
        quick: bool,
    ) -> Result<RollbackPlan> {
        let chain = self.config.chains.rollback_chain(chain)?;
        if chain.is_empty() {
            config_error!(
                "{}: chains.rollback is empty; list the instances to roll back, e.g. \
                 `rollback = [\"code\", \"config\"]` under [chains]",
                self.config.path.display()
            );
        }
        self.preload(&self.config.guard.health)?;
        let mut steps = Vec::new();
        for instance in chain {
            let plugin = self.plugin(instance)?;
            let hook = if plugin.hooks.contains(&HookKind::Revert) {
                HookKind::Revert
            } else if plugin.hooks.contains(&HookKind::Restore) {
                HookKind::Restore
            } else {
                return Err(RunError::Plugin(anyhow::anyhow!(
                    "chains.rollback names `{instance}`, whose plugin exports neither revert nor \
                     restore (it exports: {})",
                    plugin.hook_list()
                )));
            };
            steps.push(self.plan_step(source, instance, hook)?);
        }
        for step in source.steps.iter().filter(|s| s.hook == "backup") {
            if !chain.contains(&step.instance) && !step.artifacts.is_empty() {
                self.observer.note(
                    LogLevel::Warn,
                    &format!(
                        "backup {} holds artifacts of `{}`, which chains.rollback does not list: they will not be restored",
                        source.id, step.instance
                    ),
                );
            }
        }
        Ok(RollbackPlan {
            source_run: source.id.clone(),
            source_started_at: source.started_at.clone(),
            source_label: source.label.clone(),
            steps,
            health: self.config.guard.health.clone(),
            safety_backup: !quick,
        })
    }

    fn plan_step(&self, source: &RunManifest, instance: &str, hook: HookKind) -> Result<PlanStep> {
        let spec = self.config.instance(instance)?;
        let artifacts: Vec<ArtifactRecord> = source
            .steps
            .iter()
            .filter(|s| s.instance == instance && s.hook == "backup")
            .flat_map(|s| s.artifacts.iter().cloned())
            .collect();
        Ok(PlanStep {
            instance: instance.to_string(),
            hook,
            plugin: PluginRef {
                source: spec.source.display().to_string(),
                sha256: spec.sha256.clone(),
            },
            artifacts,
        })
    }

    /// Re-hash every artifact the plan will use; one line per problem.
    pub fn verify_plan(&self, steps: &[PlanStep]) -> Vec<String> {
        let total = steps
            .iter()
            .flat_map(|s| &s.artifacts)
            .map(|a| a.blob.stored_size)
            .sum();
        let mut problems = Vec::new();
        {
            let progress = self.observer.transfer("verifying artifacts", total);
            let done = std::sync::atomic::AtomicU64::new(0);
            let tick = |n: u64| {
                let so_far = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress(so_far);
            };
            for step in steps {
                for artifact in &step.artifacts {
                    if let Err(err) = self.store.verify_blob_with(&artifact.blob, &tick) {
                        problems.push(format!(
                            "artifact `{}` of `{}` ({}): {err}",
                            artifact.name, step.instance, artifact.blob.digest
                        ));
                    }
                }
            }
        }
        self.observer.transfer_done();
        problems
    }

    /// `rewind rollback`.
    pub fn rollback(&self, options: RollbackOptions) -> Result<RollbackResult> {
        if options.dry_run {
            return self.rollback_dry_run(&options);
        }
        let _lock = self.lock(if options.resume {
            super::Interrupted::Resume
        } else {
            super::Interrupted::Close
        })?;
        self.rollback_locked(options)
    }

    fn rollback_dry_run(&self, options: &RollbackOptions) -> Result<RollbackResult> {
        let source = self.choose_source(options.to.as_deref())?;
        let mut plan = self.plan_rollback(&source, options.chain.as_deref(), options.quick)?;
        restrict(&mut plan, &options.only)?;
        let problems = self.verify_plan(&plan.steps);
        let mut scratch = RunManifest::start(
            RunKind::Rollback,
            &self.config.project,
            &self.config.environment,
        );
        if problems.is_empty() {
            let saved = self.recording.replace(false);
            for step in &plan.steps {
                let input = match step.hook {
                    HookKind::Revert => HookInput::Revert(&step.artifacts),
                    _ => HookInput::Restore(&step.artifacts),
                };
                let _ = self.hook_step(&mut scratch, &step.instance, input, true, None);
            }
            self.recording.set(saved);
        }
        Ok(RollbackResult {
            plan,
            run: None,
            problems,
            dry_run_steps: scratch.steps,
            health: None,
        })
    }

    /// The rollback itself; the caller holds the lock.
    pub(crate) fn rollback_locked(&self, options: RollbackOptions) -> Result<RollbackResult> {
        let (mut run, source, plan, done) = if options.resume {
            self.resume_state(options.notify, &options.skip)?
        } else {
            let source = self.choose_source(options.to.as_deref())?;
            let mut plan = self.plan_rollback(&source, options.chain.as_deref(), options.quick)?;
            restrict(&mut plan, &options.only)?;
            let mut run = self.begin(
                RunKind::Rollback,
                format!("rollback to {} started", source.id),
                options.notify,
            )?;
            run.source_run = Some(source.id.clone());
            run.chain = options.chain.clone();
            run.only = options.only.clone();
            run.plan = plan
                .steps
                .iter()
                .map(|s| PlannedStep {
                    instance: s.instance.clone(),
                    hook: s.hook.as_str().to_string(),
                })
                .collect();
            self.journal(&run);
            (run, source, plan, 0)
        };
        let remaining = &plan.steps[done..];
        let to_run: Vec<PlanStep> = remaining
            .iter()
            .filter(|s| !options.skip.contains(&s.instance))
            .cloned()
            .collect();
        let mut result = RollbackResult {
            plan: plan.clone(),
            run: None,
            problems: Vec::new(),
            dry_run_steps: Vec::new(),
            health: None,
        };

        // Nothing runs unless every artifact it needs is intact.
        result.problems = self.verify_plan(&to_run);
        if !result.problems.is_empty() {
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "artifact verification failed, nothing was changed: {}",
                result.problems.join("; ")
            ));
            return self.finish_rollback(run, result, options.notify);
        }

        if done == 0 && !options.quick && !self.safety_succeeded(&run) {
            // The safety backup covers exactly what the rollback changes:
            // the plan's instances that can back up.
            let mut instances = Vec::new();
            for step in &plan.steps {
                if self
                    .plugin(&step.instance)?
                    .hooks
                    .contains(&HookKind::Backup)
                {
                    instances.push(step.instance.clone());
                }
            }
            let safety = self.backup_locked(BackupOptions {
                label: Some(format!("safety backup before rollback {}", run.id)),
                instances: Some(instances),
                safety: true,
                ..BackupOptions::default()
            })?;
            run.safety_run = Some(safety.id.clone());
            self.journal(&run);
            if safety.status != RunStatus::Succeeded {
                let why = safety.error.clone().unwrap_or_default();
                if options.safety_best_effort {
                    self.observer.note(
                        LogLevel::Warn,
                        &format!(
                            "the safety backup {} failed ({why}); rolling back without one",
                            safety.id
                        ),
                    );
                } else {
                    run.status = RunStatus::Failed;
                    run.error = Some(format!(
                        "the safety backup {} failed, so nothing was rolled back: {why}. Fix \
                         the cause, or roll back without a safety backup: `rewind rollback --quick`",
                        safety.id
                    ));
                    return self.finish_rollback(run, result, options.notify);
                }
            }
        }

        for step in remaining {
            if options.skip.contains(&step.instance) {
                let mut record = StepRecord::start(&step.instance, step.hook.as_str());
                record.plugin = Some(step.plugin.clone());
                record.status = StepStatus::Skipped;
                record.summary = Some("skipped: `rewind rollback --resume --skip`".into());
                run.steps.push(record.clone());
                self.journal(&run);
                self.observer.step_finished(&run, &record);
                self.step_event(&run, &record);
                continue;
            }
            let input = match step.hook {
                HookKind::Revert => HookInput::Revert(&step.artifacts),
                _ => HookInput::Restore(&step.artifacts),
            };
            if let Err(err) = self.hook_step(&mut run, &step.instance, input, false, None) {
                run.status = RunStatus::Failed;
                run.error = Some(format!(
                    "step `{} {}` failed, later steps did not run: {err}",
                    step.instance, step.hook
                ));
                return self.finish_rollback(run, result, options.notify);
            }
        }

        let health = self.health_gate(&mut run);
        if !health.healthy {
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "rolled back to {}, but the health checks still fail: {}",
                source.id,
                health.summary()
            ));
        }
        result.health = Some(health);
        self.finish_rollback(run, result, options.notify)
    }

    fn finish_rollback(
        &self,
        mut run: RunManifest,
        mut result: RollbackResult,
        notify: bool,
    ) -> Result<RollbackResult> {
        let source = run.source_run.clone().unwrap_or_default();
        let (kind, title) = if run.status == RunStatus::Failed {
            (
                EventKind::RollbackFailed,
                format!("rollback to {source} failed"),
            )
        } else {
            (
                EventKind::RollbackSuccess,
                format!("rolled back to {source}"),
            )
        };
        self.end(&mut run, kind, title, notify)?;
        result.run = Some(run);
        Ok(result)
    }

    /// Whether the run's safety backup exists and succeeded.
    fn safety_succeeded(&self, run: &RunManifest) -> bool {
        run.safety_run.as_deref().is_some_and(|id| {
            self.store
                .find_run(id)
                .is_ok_and(|r| r.status == RunStatus::Succeeded)
        })
    }

    /// The rollback to resume: the interrupted one (its journal), or else
    /// the newest rollback run if it failed (a new run that `resumes` it);
    /// with its source, plan and how many planned steps are already done.
    fn resume_state(
        &self,
        notify: bool,
        skip: &[String],
    ) -> Result<(RunManifest, RunManifest, RollbackPlan, usize)> {
        let runs = self.store.runs()?;
        let interrupted = self
            .store
            .journals()?
            .into_iter()
            .rev()
            .find(|j| j.kind == RunKind::Rollback);
        let (mut run, failed) = match interrupted {
            Some(journal) => (journal, None),
            None => match failed_rollback(&runs) {
                Some(failed) => (failed.clone(), Some(failed)),
                None => refuse!(
                    "there is no interrupted or failed rollback to resume (`rewind status` shows \
                     the last runs); start a new one with `rewind rollback`"
                ),
            },
        };
        let Some(source_id) = run.source_run.clone() else {
            refuse!("the rollback {} does not name its backup run", run.id);
        };
        let source = self.store.find_run(&source_id)?;
        let mut steps = Vec::new();
        for planned in &run.plan {
            let hook: HookKind = planned.hook.parse().map_err(RunError::Refused)?;
            steps.push(self.plan_step(&source, &planned.instance, hook)?);
        }
        let done = steps_done(&run, &runs).min(steps.len());
        for name in skip {
            if !steps[done..].iter().any(|s| &s.instance == name) {
                refuse!(
                    "--skip {name}: the steps of rollback {} left to run are {}",
                    run.id,
                    steps[done..]
                        .iter()
                        .map(|s| format!("`{}`", s.instance))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        // The same guarantees as a new rollback: every plugin it will use
        // matches its pin before anything runs.
        self.preload(steps[done..].iter().map(|s| &s.instance))?;
        self.preload(&self.config.guard.health)?;
        let plan = RollbackPlan {
            source_run: source.id.clone(),
            source_started_at: source.started_at.clone(),
            source_label: source.label.clone(),
            steps,
            health: self.config.guard.health.clone(),
            safety_backup: false,
        };
        if let Some(failed) = failed {
            self.observer.note(
                LogLevel::Info,
                &format!(
                    "resuming failed rollback {} to {}: {} of {} steps done",
                    failed.id,
                    source.id,
                    done,
                    plan.steps.len()
                ),
            );
            let mut new = self.begin(
                RunKind::Rollback,
                format!("resuming rollback {} to {}", failed.id, source.id),
                notify,
            )?;
            new.source_run = Some(source.id.clone());
            new.safety_run = failed.safety_run.clone();
            new.chain = failed.chain.clone();
            new.only = failed.only.clone();
            new.plan = failed.plan.clone();
            new.resumes = Some(failed.id.clone());
            self.journal(&new);
            return Ok((new, source, plan, done));
        }
        self.observer.note(
            LogLevel::Info,
            &format!(
                "resuming rollback {} (interrupted{}): {} of {} steps done",
                run.id,
                stopped_at(&run),
                done,
                plan.steps.len()
            ),
        );
        for step in &mut run.steps {
            if step.status == StepStatus::Running {
                step.status = StepStatus::Failed;
                step.error = Some(rewind_sandbox::CallError::new(
                    rewind_sandbox::ErrorKind::Host,
                    "interrupted: the process stopped during this step; it runs again on resume"
                        .into(),
                ));
            }
        }
        Ok((run, source, plan, done))
    }
}

/// Keep only the steps of `only` (all of them when empty); each must be in
/// the plan.
fn restrict(plan: &mut RollbackPlan, only: &[String]) -> Result<()> {
    if only.is_empty() {
        return Ok(());
    }
    for name in only {
        if !plan.steps.iter().any(|s| &s.instance == name) {
            refuse!(
                "--only {name}: the rollback chain does not list it (it runs {})",
                plan.steps
                    .iter()
                    .map(|s| format!("`{}`", s.instance))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    plan.steps.retain(|s| only.contains(&s.instance));
    Ok(())
}

/// How many of a rollback's planned steps are done (succeeded or skipped),
/// counting those of the failed runs it resumes.
fn steps_done(run: &RunManifest, runs: &[RunManifest]) -> usize {
    let mut done = 0;
    let mut next = Some(run);
    // Each link names an older run; the bound only guards a hand-edited
    // cycle.
    for _ in 0..=runs.len() {
        let Some(run) = next else { break };
        done += run
            .steps
            .iter()
            .filter(|s| {
                s.hook != "health"
                    && matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped)
            })
            .count();
        next = run
            .resumes
            .as_deref()
            .and_then(|id| runs.iter().find(|r| r.id == id));
    }
    done
}

/// The newest rollback run, if it failed (and so nothing has resumed or
/// superseded it): what `rollback --resume` continues when no rollback was
/// interrupted.
pub fn failed_rollback(runs: &[RunManifest]) -> Option<&RunManifest> {
    runs.iter()
        .rev()
        .find(|r| r.kind == RunKind::Rollback)
        .filter(|r| r.status == RunStatus::Failed)
}

/// The planned step a failed rollback stopped at, if a step failed.
pub fn failed_step(run: &RunManifest) -> Option<&StepRecord> {
    run.steps
        .iter()
        .rev()
        .find(|s| s.hook != "health" && s.status == StepStatus::Failed)
}

/// What to do about a failed rollback: the exact commands that continue it.
pub fn resume_hint(run: &RunManifest) -> String {
    match failed_step(run) {
        Some(step) => format!(
            "continue it with `rewind rollback --resume` (runs `{0} {1}` again), or past that \
             step with `rewind rollback --resume --skip {0}`",
            step.instance, step.hook
        ),
        None => "continue it with `rewind rollback --resume`".to_string(),
    }
}
