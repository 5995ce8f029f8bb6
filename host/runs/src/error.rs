//! Why a run could not start or be recorded, typed so that the caller can
//! tell the cases apart without downcasting: the exit code is a property of
//! the error ([`RunError::exit_code`]).
//!
//! A run that starts and fails (a step, a deploy, health, a verification)
//! is not an error: it is a recorded run whose result carries its own exit
//! code ([`super::RollbackResult::exit_code`], [`super::GuardOutcome::exit_code`]).

use std::io;
use std::path::PathBuf;

use rewind_core::exit::ExitCode;
use rewind_sandbox::plugin::PluginError;
use rewind_store::LockError;

use crate::config::LookupError;

/// What stopped a run before (or while) it could be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store lock could not be taken: another run holds it, or the
    /// lock file could not be created.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The config names no such instance or chain.
    #[error(transparent)]
    Config(#[from] LookupError),
    /// `chains.backup` is empty, so a backup has nothing to run.
    #[error(
        "{}: chains.backup is empty; list the instances to back up, e.g. \
         `backup = [\"code\", \"config\"]` under [chains]",
        config.display()
    )]
    EmptyBackupChain {
        /// The config file.
        config: PathBuf,
    },
    /// The rollback chain (`chains.rollback` or a named one) is empty.
    #[error(
        "{}: {key} is empty; list the instances to roll back, e.g. \
         `rollback = [\"code\", \"config\"]` under [chains]",
        config.display()
    )]
    EmptyRollbackChain {
        /// The config file.
        config: PathBuf,
        /// The chain's key: `chains.rollback` or `chains.named.NAME`.
        key: String,
    },
    /// An instance's plugin could not be loaded: missing, not matching its
    /// pin, not a rewind plugin (the cause is the [`PluginError`]).
    #[error("loading plugin instance `{instance}`")]
    Plugin {
        /// The instance.
        instance: String,
        /// Why its plugin did not load.
        source: PluginError,
    },
    /// An instance's plugin could not be fetched, or its signature is not
    /// what `[trust]` requires; nothing of it was compiled.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// A rollback would run an instance (listed in a chain, or a step's
    /// fallback) whose plugin exports neither `revert` nor `restore`.
    #[error(
        "{listed_in} names `{instance}`, whose plugin exports neither revert nor restore \
         (it exports: {exports})"
    )]
    NoRollbackHook {
        /// Where the instance is named: `chains.rollback`,
        /// `chains.named.NAME` or `plugins.NAME.fallback`.
        listed_in: String,
        /// The instance.
        instance: String,
        /// The hooks its plugin does export, as "backup, health".
        exports: String,
    },
    /// What was asked cannot be done: no backup to roll back to, a run
    /// that is not a restorable backup, no interrupted rollback to resume,
    /// no deploy command.
    #[error("{0}")]
    Refused(String),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] io::Error),
    /// The store lock was taken over while the run was stopped past its
    /// lease: it stopped without writing its manifest.
    #[error(
        "run {run} was not recorded: while it was stopped past its lease, the store lock \
         was taken over by {holder}, so it wrote nothing more (what it had stored is \
         unnamed; `rewind artifacts prune` collects it). `rewind status` shows the store \
         now; run the command again"
    )]
    LeaseLost {
        /// The run's id.
        run: String,
        /// Who holds the lock now.
        holder: String,
    },
    /// A finished run's manifest could not be written.
    #[error("writing the manifest of run {run}")]
    Manifest {
        /// The run's id.
        run: String,
        /// Why the write failed.
        #[source]
        source: io::Error,
    },
}

impl RunError {
    /// The exit code `rewind` ends with for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Lock(LockError::Held { .. } | LockError::HeldElsewhere { .. })
            | RunError::LeaseLost { .. } => ExitCode::Busy,
            RunError::Lock(LockError::Io(_))
            | RunError::Config(_)
            | RunError::EmptyBackupChain { .. }
            | RunError::EmptyRollbackChain { .. }
            | RunError::Plugin { .. }
            | RunError::Source(_)
            | RunError::NoRollbackHook { .. }
            | RunError::Refused(_)
            | RunError::Store(_)
            | RunError::Manifest { .. } => ExitCode::Usage,
        }
    }
}

/// The run layer's result.
pub type Result<T, E = RunError> = std::result::Result<T, E>;

/// `return Err(RunError::Refused(format!(…)))`.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::RunError::Refused(format!($($arg)*)))
    };
}
pub(crate) use refuse;

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_store::LockHolder;

    #[test]
    fn only_a_held_lock_is_busy() {
        let holder = LockHolder {
            pid: 1,
            host: "h".into(),
            started_at: String::new(),
            command: String::new(),
            lease_id: String::new(),
            expires_at: None,
        };
        let held = RunError::Lock(LockError::Held {
            holder: Box::new(holder),
            path: "lock".into(),
        });
        assert_eq!(held.exit_code(), ExitCode::Busy);
        let io = RunError::Lock(LockError::Io(io::Error::other("disk")));
        assert_eq!(io.exit_code(), ExitCode::Usage);
        assert_eq!(RunError::Refused("no".into()).exit_code(), ExitCode::Usage);
    }

    #[test]
    fn a_plugin_error_keeps_its_instance_and_its_cause() {
        let err = RunError::Plugin {
            instance: "db".into(),
            source: PluginError::NotWasm {
                path: "db.wasm".into(),
            },
        };
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert_eq!(err.to_string(), "loading plugin instance `db`");
        assert_eq!(
            rewind_core::ErrorReport(&err).to_string(),
            "loading plugin instance `db`: db.wasm is not a WebAssembly file"
        );
        let RunError::Plugin {
            source: PluginError::NotWasm { path },
            ..
        } = &err
        else {
            unreachable!()
        };
        assert_eq!(path, std::path::Path::new("db.wasm"));
    }

    #[test]
    fn config_errors_say_what_is_missing() {
        let err = RunError::from(LookupError::NoInstance {
            config: "/etc/rewind.toml".into(),
            name: "web".into(),
            known: vec![],
        });
        assert_eq!(
            err.to_string(),
            "/etc/rewind.toml: there is no plugin instance `web`; defined instances: (none)"
        );
        let err = RunError::EmptyRollbackChain {
            config: "/etc/rewind.toml".into(),
            key: "chains.named.db".into(),
        };
        assert_eq!(
            err.to_string(),
            "/etc/rewind.toml: chains.named.db is empty; list the instances to roll back, e.g. \
             `rollback = [\"code\", \"config\"]` under [chains]"
        );
        let err = RunError::NoRollbackHook {
            listed_in: "chains.rollback".into(),
            instance: "notify".into(),
            exports: "notify".into(),
        };
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert_eq!(
            err.to_string(),
            "chains.rollback names `notify`, whose plugin exports neither revert nor restore \
             (it exports: notify)"
        );
    }
}
