//! Why a run could not start or be recorded, typed so that the caller can
//! tell the cases apart without downcasting: the exit code is a property of
//! the error ([`RunError::exit_code`]).
//!
//! A run that starts and fails (a step, a deploy, health, a verification)
//! is not an error: it is a recorded run whose result carries its own exit
//! code ([`super::RollbackResult::exit_code`], [`super::GuardOutcome::exit_code`]).

use std::io;

use rewind_core::exit::ExitCode;
use rewind_store::LockError;

/// What stopped a run before (or while) it could be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store lock could not be taken: another run holds it, or the
    /// lock file could not be created.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The config does not describe what the run needs (an unknown
    /// instance or chain, an empty chain).
    #[error(transparent)]
    Config(#[from] anyhow::Error),
    /// A plugin could not be loaded: missing, not matching its pin, not a
    /// rewind plugin, or lacking the hook its chain needs.
    #[error("{0:#}")]
    Plugin(anyhow::Error),
    /// What was asked cannot be done: no backup to roll back to, a run
    /// that is not a restorable backup, no interrupted rollback to resume,
    /// no deploy command.
    #[error("{0}")]
    Refused(String),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] io::Error),
    /// A finished run's manifest could not be written.
    #[error("writing the manifest of run {run}: {source}")]
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
            RunError::Lock(LockError::Held { .. } | LockError::HeldElsewhere { .. }) => {
                ExitCode::Busy
            }
            RunError::Lock(LockError::Io(_))
            | RunError::Config(_)
            | RunError::Plugin(_)
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

/// `return Err(RunError::Config(anyhow!(…)))`.
macro_rules! config_error {
    ($($arg:tt)*) => {
        return Err($crate::RunError::Config(anyhow::anyhow!($($arg)*)))
    };
}
pub(crate) use config_error;

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
}
