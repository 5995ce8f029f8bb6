//! The backup run: each instance of the backup chain, in order.

use super::error::{Result, RunError};

use super::Runner;
use rewind_sandbox::HookInput;
use rewind_sandbox::bindings::rewind::hooks::types::EventKind;
use rewind_store::{RunKind, RunManifest, RunStatus};

/// How a backup run is started.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub label: Option<String>,
    /// A named chain instead of `chains.backup`.
    pub chain: Option<String>,
    /// Exactly these instances (a safety backup covers what the rollback
    /// will change); overrides `chain`.
    pub instances: Option<Vec<String>>,
    /// Taken automatically before a rollback.
    pub safety: bool,
    /// The fleet-wide deploy this backup is taken for (`--deploy-id`).
    pub deploy_id: Option<String>,
    /// Send start and outcome to the notify sinks (a run the operator
    /// asked for); backups inside a rollback or guard do not.
    pub notify: bool,
}

impl Runner<'_> {
    /// `rewind backup`: take the lock and run the backup chain (the
    /// named `chain`, or `chains.backup`), recording `label` and
    /// `deploy_id`.
    pub fn backup(
        &self,
        label: Option<String>,
        chain: Option<String>,
        deploy_id: Option<String>,
    ) -> Result<RunManifest> {
        let _lock = self.lock(super::Interrupted::Keep)?;
        let run = self.backup_locked(BackupOptions {
            label,
            chain,
            deploy_id,
            notify: true,
            ..BackupOptions::default()
        })?;
        if run.status == RunStatus::Succeeded {
            self.auto_prune();
        }
        Ok(run)
    }

    /// Run the backup chain; the caller holds the lock. A failing step
    /// stops the chain and the run is recorded as failed (and can never be
    /// chosen for a rollback).
    pub(crate) fn backup_locked(&self, options: BackupOptions) -> Result<RunManifest> {
        let chain = match &options.instances {
            Some(list) => list.as_slice(),
            None => self.config.chains.backup_chain(options.chain.as_deref())?,
        };
        if chain.is_empty() && options.instances.is_none() {
            return Err(RunError::EmptyBackupChain {
                config: self.config.path.clone(),
            });
        }
        self.preload(chain)?;
        let what = if options.safety {
            "safety backup"
        } else {
            "backup"
        };
        let mut run = self.begin(RunKind::Backup, format!("{what} started"), options.notify)?;
        run.label = options.label;
        run.chain = options.chain;
        run.safety = options.safety;
        run.deploy_id = options.deploy_id;
        for instance in chain {
            if let Err(err) = self.hook_step(&mut run, instance, HookInput::Backup, false, None) {
                run.status = RunStatus::Failed;
                run.error = Some(err.to_string());
                break;
            }
        }
        let (kind, title) = match run.status {
            RunStatus::Failed => (EventKind::Error, format!("{what} failed")),
            _ => (EventKind::Success, format!("{what} completed")),
        };
        self.end(&mut run, kind, title, options.notify)?;
        Ok(run)
    }
}
