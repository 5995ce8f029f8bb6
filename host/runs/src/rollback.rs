//! The rollback run: choose a backup, verify every artifact it will use,
//! take a safety backup, run the rollback chain, check health.

use super::error::{Result, RunError, refuse};
use std::collections::BTreeSet;

use serde::Serialize;

use super::backup::BackupOptions;
use super::health::HealthResult;
use super::{Runner, stopped_at};
use crate::config::OnFailure;
use rewind_core::ErrorReport;
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
    /// Instead of `to`: the backup the fleet-wide deploy `deploy_id` took
    /// on this host (`--deploy-id`).
    pub deploy_id: Option<String>,
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
    /// The instance rolled back.
    pub instance: String,
    /// Its revert hook, or restore if it has none.
    pub hook: HookKind,
    /// The plugin file and pin it runs with.
    pub plugin: PluginRef,
    /// The artifacts this instance wrote in the chosen backup run.
    pub artifacts: Vec<ArtifactRecord>,
    /// What runs when this step fails: the instance's `fallback`, given
    /// the artifacts it wrote in the same backup run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<PlanStep>>,
    /// What the rollback does when this step (and its fallback) failed.
    pub on_failure: OnFailure,
}

impl PlanStep {
    /// The step as recorded in the manifest, so a resumed rollback follows
    /// the same plan whatever the config says by then.
    fn planned(&self) -> PlannedStep {
        PlannedStep {
            instance: self.instance.clone(),
            hook: self.hook.as_str().to_string(),
            fallback: self.fallback.as_ref().map(|f| Box::new(f.planned())),
            on_failure: Some(self.on_failure.as_str().to_string()),
        }
    }

    /// This step and its fallback: every step that may run for it.
    fn with_fallback(&self) -> impl Iterator<Item = &PlanStep> {
        std::iter::once(self).chain(self.fallback.as_deref())
    }

    fn input(&self) -> HookInput<'_> {
        match self.hook {
            HookKind::Revert => HookInput::Revert(&self.artifacts),
            _ => HookInput::Restore(&self.artifacts),
        }
    }

    /// `` `instance hook` ``, as messages name a step.
    fn name(&self) -> String {
        format!("`{} {}`", self.instance, self.hook)
    }
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
    /// Dry run: what `rewind check` finds wrong with the instances the
    /// rollback uses (each a reason it would fail).
    pub preflight: Vec<String>,
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
                    && self.preflight.is_empty()
                    && self
                        .dry_run_steps
                        .iter()
                        .all(|s| s.status == StepStatus::Succeeded)
            }
        }
    }
}

impl Runner<'_> {
    /// The backup run a rollback restores from: the backup the deploy
    /// `deploy_id` took on this host; else `to`; else the newest finished,
    /// non-safety backup.
    pub fn source_of(&self, to: Option<&str>, deploy_id: Option<&str>) -> Result<RunManifest> {
        if let Some(deploy) = deploy_id {
            let runs = self.store.runs()?;
            return match rewind_store::deploy_backup(&runs, deploy) {
                Some(run) => Ok(run.clone()),
                None => refuse!(
                    "there is no backup of deploy `{deploy}` in the store {}: a deploy's backups \
                     are tagged by `rewind guard --deploy-id {deploy}` or `rewind backup \
                     --deploy-id {deploy}` on this host (`rewind history` lists the runs)",
                    self.store.root().display()
                ),
            };
        }
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
        let key = match chain {
            Some(name) => format!("chains.named.{name}"),
            None => "chains.rollback".to_string(),
        };
        let chain = self.config.chains.rollback_chain(chain)?;
        if chain.is_empty() {
            return Err(RunError::EmptyRollbackChain {
                config: self.config.path.clone(),
                key,
            });
        }
        self.preload(&self.config.guard.health)?;
        let mut steps = Vec::new();
        for instance in chain {
            let spec = self.config.instance(instance)?;
            let mut step = self.plan_step(source, instance, self.rollback_hook(instance, &key)?)?;
            step.on_failure = spec.on_failure;
            if let Some(fallback) = &spec.fallback {
                step.fallback = self.plan_fallback(source, instance, fallback)?;
            }
            steps.push(step);
        }
        for step in source.steps.iter().filter(|s| s.hook == "backup") {
            let used = steps
                .iter()
                .flat_map(PlanStep::with_fallback)
                .any(|s| s.instance == step.instance);
            if !used && !step.artifacts.is_empty() {
                self.observer.note(
                    LogLevel::Warn,
                    &format!(
                        "backup {} holds artifacts of `{}`, which {key} does not list (nor any \
                         step's fallback): they will not be restored",
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

    /// The hook that rolls `instance` back: revert, or else restore.
    fn rollback_hook(&self, instance: &str, listed_in: &str) -> Result<HookKind> {
        let plugin = self.plugin(instance)?;
        if plugin.hooks.contains(&HookKind::Revert) {
            Ok(HookKind::Revert)
        } else if plugin.hooks.contains(&HookKind::Restore) {
            Ok(HookKind::Restore)
        } else {
            Err(RunError::NoRollbackHook {
                listed_in: listed_in.to_string(),
                instance: instance.to_string(),
                exports: plugin.hook_list(),
            })
        }
    }

    /// The fallback step of `instance`: `fallback`'s restore from the same
    /// backup. None, with a warning, when that backup holds nothing of it.
    fn plan_fallback(
        &self,
        source: &RunManifest,
        instance: &str,
        fallback: &str,
    ) -> Result<Option<Box<PlanStep>>> {
        let key = format!("plugins.{instance}.fallback");
        let step = self.plan_step(source, fallback, self.rollback_hook(fallback, &key)?)?;
        if step.artifacts.is_empty() {
            self.observer.note(
                LogLevel::Warn,
                &format!(
                    "{key} = \"{fallback}\", but backup {} holds no artifacts of `{fallback}` \
                     (is it in chains.backup?): if `{instance}` fails there is nothing to fall \
                     back to",
                    source.id
                ),
            );
            return Ok(None);
        }
        Ok(Some(Box::new(step)))
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
                source: spec.source_label(),
                sha256: spec.sha256.clone(),
            },
            artifacts,
            fallback: None,
            on_failure: OnFailure::default(),
        })
    }

    /// A step as a resumed rollback recorded it, with its fallback.
    fn replan_step(&self, source: &RunManifest, planned: &PlannedStep) -> Result<PlanStep> {
        let hook: HookKind = planned.hook.parse().map_err(RunError::Refused)?;
        let mut step = self.plan_step(source, &planned.instance, hook)?;
        step.on_failure = match planned.on_failure.as_deref() {
            Some("continue") => OnFailure::Continue,
            _ => OnFailure::Stop,
        };
        if let Some(fallback) = &planned.fallback {
            step.fallback = Some(Box::new(self.replan_step(source, fallback)?));
        }
        Ok(step)
    }

    /// Prove every artifact the plan will use intact before any step runs:
    /// its stored bytes (a blob, or an index and its chunks) against the
    /// digests recorded when they were written. Each content digest is
    /// then checked as the restore streams it, so the content is not
    /// decompressed and hashed twice. One line per problem.
    pub fn verify_plan(&self, steps: &[PlanStep]) -> Vec<String> {
        let total = steps
            .iter()
            .flat_map(PlanStep::with_fallback)
            .flat_map(|s| &s.artifacts)
            .map(|a| a.blob.footprint())
            .sum();
        let mut problems = Vec::new();
        {
            let progress = self.observer.transfer("verifying artifacts", total);
            let done = std::sync::atomic::AtomicU64::new(0);
            let tick = |n: u64| {
                let so_far = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress(so_far);
            };
            for step in steps.iter().flat_map(PlanStep::with_fallback) {
                for artifact in &step.artifacts {
                    if let Err(err) = self.store.check_stored(&artifact.blob, &tick) {
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
        let source = self.source_of(options.to.as_deref(), options.deploy_id.as_deref())?;
        let mut plan = self.plan_rollback(&source, options.chain.as_deref(), options.quick)?;
        restrict(&mut plan, &options.only)?;
        let problems = self.verify_plan(&plan.steps);
        self.dry_run_plan(plan, problems)
    }

    /// `rewind check`'s part of the rollback: each step's dry run (the
    /// plugins' own preflight) against the newest backup. Artifacts are
    /// not re-hashed here (that is `artifacts verify`); a plugin that reads
    /// one still verifies it as it streams.
    pub fn rollback_preflight(&self) -> Vec<super::check::Finding> {
        use super::check::{Finding, Level};
        let finding = |level, message: String| Finding {
            level,
            subject: "rollback preflight".into(),
            message,
        };
        let runs = match self.store.runs() {
            Ok(runs) => runs,
            Err(err) => return vec![finding(Level::Error, format!("{err:#}"))],
        };
        let Some(source) = newest_backup(&runs) else {
            return vec![finding(
                Level::Ok,
                "no backup yet: once one exists, the rollback chain's dry runs (each plugin's \
                 own preflight) run here"
                    .into(),
            )];
        };
        let plan = match self.plan_rollback(source, None, true) {
            Ok(plan) => plan,
            Err(err) => return vec![finding(Level::Error, ErrorReport(&err).to_string())],
        };
        let result = match self.dry_run_plan(plan, Vec::new()) {
            Ok(result) => result,
            Err(err) => return vec![finding(Level::Error, ErrorReport(&err).to_string())],
        };
        let mut out: Vec<Finding> = result
            .preflight
            .iter()
            .map(|p| finding(Level::Error, p.clone()))
            .collect();
        for step in result.dry_run_steps.iter().filter(|s| s.error.is_some()) {
            let what = match &step.fallback_for {
                Some(of) => format!("`{} {}` (fallback for `{of}`)", step.instance, step.hook),
                None => format!("`{} {}`", step.instance, step.hook),
            };
            let err = step.error.as_ref().expect("filtered");
            out.push(finding(
                Level::Error,
                format!("{what} would fail against backup {}: {err}", source.id),
            ));
        }
        if out.is_empty() {
            out.push(finding(
                Level::Ok,
                format!("every step's dry run passes against backup {}", source.id),
            ));
        }
        out
    }

    /// Preflight and dry-run every step of `plan` unless verification
    /// found `problems`.
    fn dry_run_plan(&self, plan: RollbackPlan, problems: Vec<String>) -> Result<RollbackResult> {
        // The same preflight as `rewind check`, for what this rollback uses.
        let used: BTreeSet<&String> = plan
            .steps
            .iter()
            .flat_map(PlanStep::with_fallback)
            .map(|s| &s.instance)
            .chain(&plan.health)
            .collect();
        let mut preflight = Vec::new();
        for instance in used {
            let (findings, _) = super::check::check_instance(self.config, instance, &self.runtime);
            preflight.extend(
                findings
                    .into_iter()
                    .filter(|f| f.level == super::check::Level::Error)
                    .map(|f| format!("{}: {}", f.subject, f.message)),
            );
        }
        let mut scratch = RunManifest::start(
            RunKind::Rollback,
            &self.config.project,
            &self.config.environment,
        );
        if problems.is_empty() {
            let saved = self.recording.replace(false);
            // Each plugin's dry run is its preflight: the fallbacks too.
            for step in &plan.steps {
                let _ = self.hook_step(&mut scratch, &step.instance, step.input(), true, None);
                if let Some(fallback) = &step.fallback {
                    let _ = self.hook_step(
                        &mut scratch,
                        &fallback.instance,
                        fallback.input(),
                        true,
                        Some(&step.instance),
                    );
                }
            }
            self.recording.set(saved);
        }
        Ok(RollbackResult {
            plan,
            run: None,
            problems,
            preflight,
            dry_run_steps: scratch.steps,
            health: None,
        })
    }

    /// The rollback itself; the caller holds the lock.
    pub(crate) fn rollback_locked(&self, options: RollbackOptions) -> Result<RollbackResult> {
        let (mut run, source, plan, done) = if options.resume {
            self.resume_state(options.notify, &options.skip)?
        } else {
            let source = self.source_of(options.to.as_deref(), options.deploy_id.as_deref())?;
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
            run.deploy_id = options.deploy_id.clone();
            run.plan = plan.steps.iter().map(PlanStep::planned).collect();
            self.journal(&run);
            (run, source, plan, BTreeSet::new())
        };
        let remaining: Vec<&PlanStep> = plan
            .steps
            .iter()
            .filter(|s| !done.contains(&s.instance))
            .collect();
        let to_run: Vec<PlanStep> = remaining
            .iter()
            .filter(|s| !options.skip.contains(&s.instance))
            .map(|s| (*s).clone())
            .collect();
        let mut result = RollbackResult {
            plan: plan.clone(),
            run: None,
            problems: Vec::new(),
            preflight: Vec::new(),
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

        if done.is_empty() && !options.quick && !self.safety_succeeded(&run) {
            // The safety backup covers exactly what the rollback may
            // change: the plan's instances and fallbacks that can back up.
            let mut instances = Vec::new();
            for step in plan.steps.iter().flat_map(PlanStep::with_fallback) {
                if !instances.contains(&step.instance)
                    && self
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

        let mut failures = Vec::new();
        for (i, step) in remaining.iter().enumerate() {
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
            let Err(err) = self.hook_step(&mut run, &step.instance, step.input(), false, None)
            else {
                continue;
            };
            let mut failure = format!("{} failed: {err}", step.name());
            if let Some(fallback) = &step.fallback {
                self.observer.note(
                    LogLevel::Warn,
                    &format!(
                        "{} failed; falling back to {} from backup {}",
                        step.name(),
                        fallback.name(),
                        source.id
                    ),
                );
                match self.hook_step(
                    &mut run,
                    &fallback.instance,
                    fallback.input(),
                    false,
                    Some(&step.instance),
                ) {
                    Ok(_) => continue,
                    Err(err) => failure.push_str(&format!(
                        "; its fallback {} failed too: {err}",
                        fallback.name()
                    )),
                }
            }
            failures.push(failure);
            if step.on_failure == OnFailure::Stop {
                let not_run: Vec<String> = remaining[i + 1..].iter().map(|s| s.name()).collect();
                run.status = RunStatus::Failed;
                run.error = Some(stop_report(&run, &failures, &not_run));
                return self.finish_rollback(run, result, options.notify);
            }
        }

        let health = self.health_gate(&mut run);
        if !failures.is_empty() {
            // on_failure = "continue": every step ran, not every one worked.
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "{} (on_failure = \"continue\": the later steps ran); health: {}",
                failures.join("; "),
                health.summary()
            ));
        } else if !health.healthy {
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
    ) -> Result<(RunManifest, RunManifest, RollbackPlan, BTreeSet<String>)> {
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
            steps.push(self.replan_step(&source, planned)?);
        }
        let done = steps_done(&run, &runs);
        let left: Vec<&PlanStep> = steps
            .iter()
            .filter(|s| !done.contains(&s.instance))
            .collect();
        for name in skip {
            if !left.iter().any(|s| &s.instance == name) {
                refuse!(
                    "--skip {name}: the steps of rollback {} left to run are {}",
                    run.id,
                    left.iter()
                        .map(|s| format!("`{}`", s.instance))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        // The same guarantees as a new rollback: every plugin it will use
        // matches its pin before anything runs.
        self.preload(
            left.iter()
                .flat_map(|s| s.with_fallback())
                .map(|s| &s.instance),
        )?;
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
                    done.len(),
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
                done.len(),
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
pub fn restrict(plan: &mut RollbackPlan, only: &[String]) -> Result<()> {
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

/// The instances whose planned step is done: succeeded, skipped, or failed
/// and then replaced by its fallback that succeeded; in this run and the
/// failed runs it resumes.
fn steps_done(run: &RunManifest, runs: &[RunManifest]) -> BTreeSet<String> {
    let mut done = BTreeSet::new();
    let mut next = Some(run);
    // Each link names an older run; the bound only guards a hand-edited
    // cycle.
    for _ in 0..=runs.len() {
        let Some(run) = next else { break };
        done.extend(run.steps.iter().filter_map(step_done));
        next = run
            .resumes
            .as_deref()
            .and_then(|id| runs.iter().find(|r| r.id == id));
    }
    done
}

/// The planned instance a record completes, if it does.
fn step_done(record: &StepRecord) -> Option<String> {
    match (&record.fallback_for, record.status) {
        _ if record.hook == "health" => None,
        (Some(instance), StepStatus::Succeeded) => Some(instance.clone()),
        (None, StepStatus::Succeeded | StepStatus::Skipped) => Some(record.instance.clone()),
        _ => None,
    }
}

/// Why a rollback stopped: the steps that ran and how each ended, what
/// failed, what did not run.
fn stop_report(run: &RunManifest, failures: &[String], not_run: &[String]) -> String {
    let ran: Vec<String> = run
        .steps
        .iter()
        .filter(|s| s.hook != "health")
        .map(|s| {
            let fallback = s
                .fallback_for
                .as_deref()
                .map(|f| format!(" (fallback for `{f}`)"))
                .unwrap_or_default();
            format!(
                "`{} {}`{fallback} {}",
                s.instance,
                s.hook,
                s.status.as_str()
            )
        })
        .collect();
    let not_run = if not_run.is_empty() {
        "none".to_string()
    } else {
        not_run.join(", ")
    };
    format!(
        "{}\nsteps run: {}\nnot run: {not_run}",
        failures.join("\n"),
        ran.join(", ")
    )
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
    let replaced: BTreeSet<String> = run.steps.iter().filter_map(step_done).collect();
    run.steps.iter().find(|s| {
        s.hook != "health"
            && s.fallback_for.is_none()
            && s.status == StepStatus::Failed
            && !replaced.contains(&s.instance)
    })
}

/// The steps of a rollback that failed and were replaced by their fallback,
/// one sentence each: worth saying even when the rollback succeeded.
pub fn fallbacks_used(run: &RunManifest) -> Vec<String> {
    run.steps
        .iter()
        .filter(|s| s.status == StepStatus::Succeeded)
        .filter_map(|s| {
            let failed = s.fallback_for.as_deref()?;
            Some(format!(
                "`{failed}` failed to roll back; its fallback `{} {}` restored the backup instead \
                 (the manifest has `{failed}`'s error)",
                s.instance, s.hook
            ))
        })
        .collect()
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
