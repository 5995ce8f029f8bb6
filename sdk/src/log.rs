//! Log lines attributed to this plugin instance by the host.
//!
//! Anything the plugin prints to stdout or stderr is captured into the log
//! too, at info and warn level; these functions add a level and fields.

use crate::bindings::rewind::hooks::log::write;

/// Log at trace level.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message.as_ref(), &[]);
}

/// Log at debug level.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message.as_ref(), &[]);
}

/// Log at info level.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message.as_ref(), &[]);
}

/// Log at warn level.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message.as_ref(), &[]);
}

/// Log at error level.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message.as_ref(), &[]);
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
