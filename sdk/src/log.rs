//! Log lines attributed to this plugin instance by the host.
//!
//! Anything the plugin prints to stdout or stderr is captured into the log
//! too, at info and warn level; these functions add a level and fields.

use crate::bindings::rewind::hooks::log::write;

pub fn trace(message: &str) {
    write(Level::Trace, message, &[]);
}

pub fn debug(message: &str) {
    write(Level::Debug, message, &[]);
}

pub fn info(message: &str) {
    write(Level::Info, message, &[]);
}

pub fn warn(message: &str) {
    write(Level::Warn, message, &[]);
}

pub fn error(message: &str) {
    write(Level::Error, message, &[]);
}

/// A line with structured fields: `log::with_fields(Level::Info, "dumped", &[("bytes", "123")])`.
pub fn with_fields(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    write(level, message, &fields);
}

pub use crate::bindings::rewind::hooks::log::Level;

