//! The guard run: backup → deploy command → health gate → automatic
//! rollback when the deploy failed or stays unhealthy → notification.

use std::process::Command;
use std::time::Instant;

use super::error::{Result, refuse};
use rewind_core::exit::ExitCode;

use super::Runner;
use super::backup::BackupOptions;
use super::rollback::{RollbackOptions, RollbackResult};
use rewind_sandbox::LogLevel;
use rewind_sandbox::bindings::rewind::hooks::types::EventKind;
use rewind_store::{RunKind, RunManifest, RunStatus, StepRecord, StepStatus};

/// How `rewind guard` runs.
#[derive(Debug, Clone, Default)]
pub struct GuardOptions {
    /// Never roll back, whatever `guard.auto_rollback` says.
    pub no_rollback: bool,
    /// Send the deploy command's stdout to rewind's stderr (when stdout
    /// carries `--json`).
    pub deploy_stdout_to_stderr: bool,
    /// The fleet-wide deploy this is (`--deploy-id`): recorded on the guard
    /// run and its backup.
    pub deploy_id: Option<String>,
}

/// How a guarded deploy ended; each has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardOutcome {
    /// The deploy succeeded and is healthy.
    Deployed,
    /// The backup before the deploy failed; the deploy did not run.
    BackupFailed,
    /// The deploy failed (or is unhealthy) and was not rolled back.
    DeployFailed,
    /// The deploy failed and the rollback restored a healthy state.
    RolledBack,
    /// The deploy failed and so did the rollback.
    RollbackFailed,
}

impl GuardOutcome {
    /// The exit code of `rewind guard` for this outcome.
    pub fn exit_code(self) -> ExitCode {
        match self {
            GuardOutcome::Deployed => ExitCode::Ok,
            GuardOutcome::BackupFailed | GuardOutcome::DeployFailed => ExitCode::Failed,
            GuardOutcome::RolledBack => ExitCode::RolledBack,
            GuardOutcome::RollbackFailed => ExitCode::RollbackFailed,
        }
    }

    /// The outcome as recorded in the guard manifest (`rolled-back`).
    pub fn as_str(self) -> &'static str {
        match self {
            GuardOutcome::Deployed => "deployed",
            GuardOutcome::BackupFailed => "backup-failed",
            GuardOutcome::DeployFailed => "deploy-failed",
            GuardOutcome::RolledBack => "rolled-back",
            GuardOutcome::RollbackFailed => "rollback-failed",
        }
    }
}

/// What a guarded deploy did: its own manifest and the runs it linked.
#[derive(Debug)]
pub struct GuardResult {
    /// How it ended.
    pub outcome: GuardOutcome,
    /// The guard run's manifest.
    pub run: RunManifest,
    /// The backup taken before the deploy.
    pub backup: RunManifest,
    /// The rollback, when one ran.
    pub rollback: Option<RollbackResult>,
}

impl Runner<'_> {
    /// `rewind guard -- <command…>`.
    pub fn guard(&self, command: &[String], options: GuardOptions) -> Result<GuardResult> {
        let Some((program, args)) = command.split_first() else {
            refuse!(
                "guard needs the deploy command after `--`, e.g. `rewind guard -- ./deploy.sh v2`"
            );
        };
        let chains = &self.config.chains;
        self.preload(
            chains
                .backup
                .iter()
                .chain(&chains.rollback)
                .chain(&self.config.guard.health),
        )?;
        let _lock = self.lock(super::Interrupted::Keep)?;
        let mut run = self.begin(
            RunKind::Guard,
            format!("guarded deploy started: {}", command.join(" ")),
            true,
        )?;

        run.deploy_id = options.deploy_id.clone();
        let backup = self.backup_locked(BackupOptions {
            label: Some(format!("before guarded deploy {}", run.id)),
            deploy_id: options.deploy_id.clone(),
            ..BackupOptions::default()
        })?;
        run.backup_run = Some(backup.id.clone());
        self.journal(&run);
        if backup.status != RunStatus::Succeeded {
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "the backup before the deploy failed, so the deploy did not run: {}",
                backup.error.clone().unwrap_or_default()
            ));
            return self.finish_guard(run, backup, None, GuardOutcome::BackupFailed);
        }

        let deployed = self.deploy_step(
            &mut run,
            program,
            args,
            &backup.id,
            options.deploy_stdout_to_stderr,
        );
        let failure = match deployed {
            Err(why) => Some(why),
            Ok(()) => {
                let health = self.health_gate(&mut run);
                (!health.healthy).then(|| format!("the deploy is unhealthy: {}", health.summary()))
            }
        };
        let Some(failure) = failure else {
            return self.finish_guard(run, backup, None, GuardOutcome::Deployed);
        };

        let auto = self.config.guard.auto_rollback && !options.no_rollback;
        if !auto {
            let why = if options.no_rollback {
                "--no-rollback"
            } else {
                "guard.auto_rollback = false"
            };
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "{failure}; not rolled back ({why}). Roll back with `rewind rollback --to {}`",
                backup.id
            ));
            return self.finish_guard(run, backup, None, GuardOutcome::DeployFailed);
        }

        self.observer.note(
            LogLevel::Warn,
            &format!("{failure}; rolling back to {}", backup.id),
        );
        // The failed health pass is the guard's record until it finishes.
        self.journal_catch_up(&run);
        let rollback = self.rollback_locked(RollbackOptions {
            to: Some(backup.id.clone()),
            safety_best_effort: true,
            notify: false,
            ..RollbackOptions::default()
        })?;
        let rollback_run = rollback.run.as_ref().expect("a real rollback has a run");
        run.rollback_run = Some(rollback_run.id.clone());
        run.status = RunStatus::Failed;
        let outcome = if rollback_run.status == RunStatus::Succeeded {
            run.error = Some(format!("{failure}; rolled back to {}", backup.id));
            GuardOutcome::RolledBack
        } else {
            run.error = Some(format!(
                "{failure}; the rollback failed too: {}",
                rollback_run.error.clone().unwrap_or_default()
            ));
            GuardOutcome::RollbackFailed
        };
        self.finish_guard(run, backup, Some(rollback), outcome)
    }

    /// Run the deploy command with the terminal's stdio (its output
    /// streams as it comes), recorded as a step.
    fn deploy_step(
        &self,
        run: &mut RunManifest,
        program: &str,
        args: &[String],
        backup_id: &str,
        stdout_to_stderr: bool,
    ) -> std::result::Result<(), String> {
        if let Some(holder) = self.lease_taken_by() {
            return Err(format!(
                "the deploy did not run: while this run was stopped past its lease, the store \
                 lock was taken over by {holder}"
            ));
        }
        let mut step = StepRecord::start("deploy", "command");
        let mut line = vec![program.to_string()];
        line.extend(args.iter().cloned());
        step.command = Some(line.clone());
        run.steps.push(step.clone());
        self.journal(run);
        self.observer.step_started(run, &step, &self.store);
        self.step_event(run, &step);

        let started = Instant::now();
        let mut command = Command::new(program);
        if stdout_to_stderr {
            use std::os::fd::AsFd;
            if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
                command.stdout(fd);
            }
        }
        let status = command
            .args(args)
            .env("REWIND_RUN_ID", &run.id)
            .env("REWIND_BACKUP_RUN", backup_id)
            .env("REWIND_PROJECT", &self.config.project)
            .env("REWIND_ENVIRONMENT", &self.config.environment)
            .status();
        step.duration_ms = started.elapsed().as_millis() as u64;
        let result = match status {
            Ok(status) if status.success() => {
                step.exit_code = status.code();
                Ok(())
            }
            Ok(status) => {
                step.exit_code = status.code();
                Err(match status.code() {
                    Some(code) => format!("the deploy command exited with status {code}"),
                    None => "the deploy command was killed by a signal".to_string(),
                })
            }
            Err(err) => Err(format!(
                "the deploy command `{program}` could not start: {err}"
            )),
        };
        match &result {
            Ok(()) => {
                step.status = StepStatus::Succeeded;
                step.summary = Some("deploy command succeeded".into());
            }
            Err(why) => {
                step.status = StepStatus::Failed;
                step.error = Some(rewind_sandbox::CallError::new(
                    rewind_sandbox::ErrorKind::Failed,
                    why.clone(),
                ));
            }
        }
        *run.steps.last_mut().expect("the step was pushed") = step.clone();
        self.journal(run);
        self.observer.step_finished(run, &step);
        self.step_event(run, &step);
        result
    }

    fn finish_guard(
        &self,
        mut run: RunManifest,
        backup: RunManifest,
        rollback: Option<RollbackResult>,
        outcome: GuardOutcome,
    ) -> Result<GuardResult> {
        run.outcome = Some(outcome.as_str().to_string());
        let (kind, title) = match outcome {
            GuardOutcome::Deployed => (EventKind::Success, "deployed and healthy".to_string()),
            GuardOutcome::BackupFailed => (
                EventKind::Error,
                "deploy not started: the backup failed".to_string(),
            ),
            GuardOutcome::DeployFailed => (
                EventKind::Error,
                "deploy failed, not rolled back".to_string(),
            ),
            GuardOutcome::RolledBack => (
                EventKind::RollbackSuccess,
                format!("deploy failed; rolled back to {}", backup.id),
            ),
            GuardOutcome::RollbackFailed => (
                EventKind::RollbackFailed,
                "deploy failed and the rollback failed: manual action needed".to_string(),
            ),
        };
        self.end(&mut run, kind, title, true)?;
        if outcome == GuardOutcome::Deployed {
            self.auto_prune();
        }
        Ok(GuardResult {
            outcome,
            run,
            backup,
            rollback,
        })
    }
}
