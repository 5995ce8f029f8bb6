//! Why a hook call did not succeed.

use std::error::Error;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a call did not succeed, in a form the CLI, the manifest and the
/// event log all use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// What kind of failure, for exit codes and summaries.
    pub kind: ErrorKind,
    /// The whole sentence, naming plugin and hook.
    pub message: String,
    /// For denials: the grant line to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The end of a failed command's stderr, when the plugin passed it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
}

/// The kinds of [`CallError`]: the WIT `hook-error` cases plus what only the
/// host can observe (a trap, the memory cap, a host-side failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The plugin does not do this (the hook or the request).
    Unsupported,
    /// The sandbox refused something the call needed.
    Denied,
    /// The plugin's work failed.
    Failed,
    /// The call (or a command it ran) hit its time limit.
    Timeout,
    /// The plugin rejected its params or artifacts.
    InvalidInput,
    /// The guest trapped (panic, abort, unreachable).
    Crashed,
    /// The guest hit its memory cap.
    MemoryLimit,
    /// Setting up the call failed on the host side.
    Host,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(tail) = self.stderr_tail.as_deref().filter(|t| !t.is_empty()) {
            write!(f, "\n  stderr:\n    {}", tail.replace('\n', "\n    "))?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {}

impl CallError {
    /// An error with no grant and no stderr.
    pub fn new(kind: ErrorKind, message: String) -> Self {
        CallError {
            kind,
            message,
            grant: None,
            stderr_tail: None,
        }
    }
}

/// An error with its causes on one line, `message: cause: cause`: how
/// `rewind` prints an error, and how a library error becomes the text of a
/// finding or a [`CallError`]. The library's errors keep their causes in
/// [`Error::source`] (not in their own message), so printing one with `{}`
/// alone would drop them.
pub struct ErrorReport<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading x")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_report_joins_the_causes() {
        let err = Outer(std::io::Error::other("disk"));
        assert_eq!(ErrorReport(&err).to_string(), "reading x: disk");
    }
}
