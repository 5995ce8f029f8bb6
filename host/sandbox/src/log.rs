//! Log lines attributed to a plugin instance and hook: from the `log`
//! import, from the guest's stdout/stderr, and from the sandbox itself
//! (denials). Lines are printed as they come and kept for the run record.
//!
//! A guest decides what it logs, so every line is cleaned and bounded on
//! the way in (see [`super::bounded`]) and a call's log is capped; what is
//! dropped is counted and reported in a final line.

use std::sync::{Arc, Mutex};

use super::bounded;

use crate::bindings::rewind::hooks::log as wit_log;
use rewind_core::{LogLevel, LogLine};

/// A call's lines and what the cap dropped.
#[derive(Default)]
struct Buffer {
    lines: Vec<LogLine>,
    bytes: usize,
    dropped_lines: usize,
    dropped_bytes: usize,
}

/// Where a call's log lines go. Clones share the same buffer.
#[derive(Clone, Default)]
pub struct LogSink {
    lines: Arc<Mutex<Buffer>>,
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

    /// Record a line (cleaned and bounded: it may come from a guest), and
    /// print it when it is at the echo level.
    pub fn line(&self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let message = bounded::line(&message, bounded::MAX_MESSAGE);
        let mut fields = fields;
        let dropped_fields = bounded::list(&mut fields, bounded::MAX_FIELDS, |(k, v)| {
            bounded::in_place(k, bounded::MAX_NAME);
            bounded::in_place(v, bounded::MAX_VALUE);
        });
        if dropped_fields > 0 {
            fields.push(("rewind.dropped_fields".into(), dropped_fields.to_string()));
        }
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let mut buffer = self.lines.lock().expect("log lock");
        if buffer.lines.len() >= bounded::MAX_LOG_LINES
            || buffer.bytes + size > bounded::MAX_LOG_BYTES
        {
            buffer.dropped_lines += 1;
            buffer.dropped_bytes += size;
            return;
        }
        if self.echo.is_some_and(|min| level >= min) {
            let shown: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            let level = format!("{level:?}").to_lowercase();
            eprintln!(
                "  [{}/{}] {level}: {message}{shown}",
                self.instance, self.hook
            );
        }
        buffer.bytes += size;
        buffer.lines.push(LogLine {
            level,
            instance: self.instance.clone(),
            hook: self.hook.clone(),
            message,
            fields,
        });
    }

    /// Record a warning from the host about this call.
    pub fn warn(&self, message: String) {
        self.line(LogLevel::Warn, message, Vec::new());
    }

    /// The call's lines, ending with a warning when the cap dropped some.
    pub(crate) fn take(&self) -> Vec<LogLine> {
        let mut buffer = std::mem::take(&mut *self.lines.lock().expect("log lock"));
        if buffer.dropped_lines > 0 {
            buffer.lines.push(LogLine {
                level: LogLevel::Warn,
                instance: self.instance.clone(),
                hook: self.hook.clone(),
                message: format!(
                    "{} log lines ({} bytes) of this call were dropped: a call's log keeps at most {} lines and {} MiB",
                    buffer.dropped_lines,
                    buffer.dropped_bytes,
                    bounded::MAX_LOG_LINES,
                    bounded::MAX_LOG_BYTES >> 20
                ),
                fields: Vec::new(),
            });
        }
        buffer.lines
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
        // The sink cleans and bounds what the guest sent.
        self.call.log.line(level, message, fields);
        Ok(())
    }
}

impl crate::bindings::rewind::hooks::types::Host for super::HookState {}
