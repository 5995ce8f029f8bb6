//! Checksummed artifacts: stream them with [`std::io::Write`] and
//! [`std::io::Read`], or keep small JSON state records.
//!
//! ```no_run
//! # use rewind_sdk::{artifacts, HookError};
//! # fn f() -> Result<(), HookError> {
//! use std::io::Write;
//! let mut w = artifacts::Writer::create("notes", "text/plain")?;
//! w.write_all(b"hello")?;
//! let saved = w.finish()?;
//! assert_eq!(artifacts::read_bytes(&saved)?, b"hello");
//! # Ok(()) }
//! ```

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::rewind::hooks::artifacts as host;
use crate::{ArtifactRef, HookError};

/// Bytes are sent to the host in chunks of this size: large enough that the
/// per-call cost vanishes, small enough to stay well inside a memory limit.
const CHUNK: usize = 256 * 1024;

/// A new artifact being written. Nothing is visible until [`Writer::finish`].
pub struct Writer {
    inner: host::Writer,
    buffer: Vec<u8>,
}

impl Writer {
    /// Start a new artifact named `name` (unique within the call) of type
    /// `media_type`.
    pub fn create(name: &str, media_type: &str) -> Result<Self, HookError> {
        Ok(Writer {
            inner: host::create(name, media_type)?,
            buffer: Vec::with_capacity(CHUNK),
        })
    }

    /// Attach a label (recorded in the run manifest).
    pub fn label(&mut self, key: &str, value: &str) {
        self.inner.label(key, value);
    }

    /// Seal the artifact and get its reference (digest, size).
    pub fn finish(mut self) -> Result<ArtifactRef, HookError> {
        self.flush_buffer()?;
        self.inner.finish()
    }

    fn flush_buffer(&mut self) -> Result<(), HookError> {
        if !self.buffer.is_empty() {
            self.inner.write(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }
}

impl io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > CHUNK {
            self.flush_buffer().map_err(io::Error::other)?;
        }
        if bytes.len() >= CHUNK {
            self.inner.write(bytes).map_err(io::Error::other)?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer().map_err(io::Error::other)
    }
}

/// An artifact being read; the host verifies its digest as it streams.
pub struct Reader {
    inner: host::Reader,
    pending: Vec<u8>,
    offset: usize,
    done: bool,
}

impl Reader {
    /// Open an artifact given to this call (or written by it).
    pub fn open(artifact: &ArtifactRef) -> Result<Self, HookError> {
        Ok(Reader {
            inner: host::open(artifact)?,
            pending: Vec::new(),
            offset: 0,
            done: false,
        })
    }
}

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            self.pending = self.inner.read(CHUNK as u64).map_err(io::Error::other)?;
            self.offset = 0;
            if self.pending.is_empty() {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..n + self.offset]);
        self.offset += n;
        Ok(n)
    }
}

/// Store `bytes` as one artifact.
pub fn write_bytes(name: &str, media_type: &str, bytes: &[u8]) -> Result<ArtifactRef, HookError> {
    use io::Write;
    let mut writer = Writer::create(name, media_type)?;
    writer.write_all(bytes)?;
    writer.finish()
}

/// Read a whole (small) artifact, verified.
pub fn read_bytes(artifact: &ArtifactRef) -> Result<Vec<u8>, HookError> {
    use io::Read;
    let mut bytes = Vec::with_capacity(artifact.size as usize);
    Reader::open(artifact)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Store a JSON state record (labelled `kind=state`).
pub fn write_json<T: Serialize>(name: &str, value: &T) -> Result<ArtifactRef, HookError> {
    use io::Write;
    let mut writer = Writer::create(name, "application/json")?;
    writer.label("kind", "state");
    writer.write_all(&serde_json::to_vec_pretty(value)?)?;
    writer.finish()
}

/// Read a JSON state record written by [`write_json`].
pub fn read_json<T: DeserializeOwned>(artifact: &ArtifactRef) -> Result<T, HookError> {
    serde_json::from_slice(&read_bytes(artifact)?).map_err(|err| {
        HookError::invalid_input(format!(
            "artifact `{}` is not the expected JSON: {err}",
            artifact.name
        ))
    })
}

/// The artifact called `name` among those given to a hook.
pub fn find<'a>(artifacts: &'a [ArtifactRef], name: &str) -> Result<&'a ArtifactRef, HookError> {
    artifacts.iter().find(|a| a.name == name).ok_or_else(|| {
        let names: Vec<&str> = artifacts.iter().map(|a| a.name.as_str()).collect();
        HookError::invalid_input(format!(
            "no artifact named `{name}` (this instance's backup has: {})",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        ))
    })
}
