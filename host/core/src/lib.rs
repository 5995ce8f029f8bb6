//! `rewind-core`: the vocabulary every layer of the rewind host shares.
//!
//! These types sit below everything else so that the crates above them can
//! name the same thing without depending on each other: the store records a
//! [`CallError`] and [`LogLine`]s without knowing the sandbox that made
//! them, and the exit codes are defined once for the library and the CLI.
//! Nothing here knows WebAssembly, grants or files.

#![deny(missing_docs)]

mod error;
pub mod exit;
mod hook;
mod log;

use sha2::{Digest, Sha256};

pub use error::{CallError, ErrorKind, ErrorReport};
pub use exit::ExitCode;
pub use hook::HookKind;
pub use log::{LogLevel, LogLine};

/// The lowercase hex sha256 of `bytes`: how a plugin file is pinned and how
/// a manifest names the one before it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
