//! Log lines attributed to a plugin instance and hook: from the `log`
//! import, from the guest's stdout/stderr, and from the sandbox itself
//! (denials). Lines are printed as they come and kept for the run record.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::bindings::rewind::hooks::log as wit_log;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub instance: String,
    pub hook: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// Where a call's log lines go. Clones share the same buffer.
#[derive(Clone, Default)]
pub struct LogSink {
    lines: Arc<Mutex<Vec<LogLine>>>,
    instance: String,
    hook: String,
    /// Print lines at this level and above to stderr as they arrive.
    echo: Option<LogLevel>,
}

impl LogSink {
    /// A sink that prints lines at `echo` and above as they arrive.
    pub fn new(echo: Option<LogLevel>) -> Self {
        LogSink {
            echo,
            ..LogSink::default()
        }
    }

    /// A fresh buffer for one call, attributing lines to instance and hook.
    pub(crate) fn scoped(&self, instance: &str, hook: &str) -> Self {
        LogSink {
            lines: Arc::default(),
            instance: instance.to_string(),
            hook: hook.to_string(),
            echo: self.echo,
        }
    }

    pub fn line(&self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        if self.echo.is_some_and(|min| level >= min) {
            let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            let level = format!("{level:?}").to_lowercase();
            eprintln!(
                "  [{}/{}] {level}: {message}{fields}",
                self.instance, self.hook
            );
        }
        self.lines.lock().expect("log lock").push(LogLine {
            level,
            instance: self.instance.clone(),
            hook: self.hook.clone(),
            message,
            fields,
        });
    }

    pub fn warn(&self, message: String) {
        self.line(LogLevel::Warn, message, Vec::new());
    }

    pub(crate) fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.lines.lock().expect("log lock"))
    }
}

impl wit_log::Host for super::HookState {
    fn write(
        &mut self,
        level: wit_log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            wit_log::Level::Trace => LogLevel::Trace,
            wit_log::Level::Debug => LogLevel::Debug,
            wit_log::Level::Info => LogLevel::Info,
            wit_log::Level::Warn => LogLevel::Warn,
            wit_log::Level::Error => LogLevel::Error,
        };
        // A plugin cannot flood the host: cap a line's size.
        let mut message = message;
        message.truncate(16 * 1024);
        self.call.log.line(level, message, fields);
        Ok(())
    }
}

impl crate::bindings::rewind::hooks::types::Host for super::HookState {}
