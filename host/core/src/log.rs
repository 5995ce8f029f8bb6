//! Log lines attributed to a plugin instance and hook, as runs keep them.

use serde::{Deserialize, Serialize};

/// How loud a line is; ordered, so that a minimum level can filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, for following a plugin step by step.
    Trace,
    /// What a plugin author wants when a hook misbehaves.
    Debug,
    /// What an operator sees with `-v`.
    Info,
    /// Something went wrong but the call carried on.
    Warn,
    /// Something failed.
    Error,
}

/// One line of a call's log (already cleaned and bounded by the sandbox).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// The plugin instance that logged it (or on whose behalf the host did).
    pub instance: String,
    /// The hook being called.
    pub hook: String,
    /// The message.
    pub message: String,
    /// Structured key-value fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}
