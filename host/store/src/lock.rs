//! One run at a time per store.
//!
//! The lock is a file, `<root>/lock`, created with `O_EXCL` and holding who
//! took it (pid, host, start time, command, run). Creating a file
//! exclusively is atomic on every local filesystem, so two callers can
//! never both hold it. A lock whose holder is a dead process on this host is
//! stale: it is reported, and taken over, since nothing can still be
//! writing under it. A lock held from another host is never taken over
//! automatically: rewind cannot know whether that process is alive.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Store;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id of the holder.
    pub pid: u32,
    /// Host name of the holder.
    pub host: String,
    /// When the holder took the lock.
    pub started_at: String,
    /// The command line, e.g. `rewind rollback --yes`.
    pub command: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on host {}, since {} (`{}`)",
            self.pid, self.host, self.started_at, self.command
        )
    }
}

impl LockHolder {
    fn current(command: &str) -> Self {
        LockHolder {
            pid: std::process::id(),
            host: hostname(),
            started_at: jiff::Timestamp::now().to_string(),
            command: command.to_string(),
        }
    }

    /// Is this holder a process on this host that no longer exists?
    pub fn is_stale(&self) -> bool {
        self.host == hostname() && !process_alive(self.pid)
    }
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// A live run holds it.
    Held {
        /// Who holds it.
        holder: LockHolder,
        /// The lock file.
        path: PathBuf,
    },
    /// Held from another host: it may be alive.
    HeldElsewhere {
        /// Who holds it.
        holder: LockHolder,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be read or written.
    Io(io::Error),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held { holder, path } => write!(
                f,
                "another rewind run holds the store lock {}: {holder}; wait for it to finish \
                 (`rewind status` shows it)",
                path.display()
            ),
            LockError::HeldElsewhere { holder, path } => write!(
                f,
                "the store lock {} is held by {holder}; rewind cannot tell from here whether \
                 that process is still running. If it is not, clear the lock with \
                 `rewind unlock --force`",
                path.display()
            ),
            LockError::Io(err) => write!(f, "cannot take the store lock: {err}"),
        }
    }
}

impl std::error::Error for LockError {}

impl From<io::Error> for LockError {
    fn from(err: io::Error) -> Self {
        LockError::Io(err)
    }
}

/// The held lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    path: PathBuf,
    /// The stale holder this lock replaced, for the caller to report.
    pub took_over: Option<LockHolder>,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Store {
    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Who holds the lock now, if anyone.
    pub fn lock_holder(&self) -> io::Result<Option<LockHolder>> {
        match fs::read(self.lock_path()) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or(LockHolder {
                pid: 0,
                host: "?".into(),
                started_at: "?".into(),
                command: "(unreadable lock file)".into(),
            }))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Take the lock for a run described by `command`. A stale lock (dead
    /// process on this host) is replaced and reported in `took_over`.
    pub fn lock(&self, command: &str) -> Result<StoreLock, LockError> {
        let path = self.lock_path();
        let me =
            serde_json::to_vec_pretty(&LockHolder::current(command)).map_err(io::Error::other)?;
        let mut took_over = None;
        // Two rounds: the second follows the removal of a stale lock.
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(&me)?;
                    file.sync_all()?;
                    super::blob::sync_dir(&self.root)?;
                    // Blobs half-written by a dead run are garbage now.
                    if took_over.is_some() {
                        self.clear_tmp()?;
                    }
                    return Ok(StoreLock { path, took_over });
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    let Some(holder) = self.lock_holder()? else {
                        continue;
                    };
                    if holder.is_stale() {
                        // Remove only if the file is still the stale one.
                        if self.lock_holder()?.as_ref() == Some(&holder) {
                            fs::remove_file(&path)?;
                        }
                        took_over = Some(holder);
                        continue;
                    }
                    if holder.host != hostname() {
                        return Err(LockError::HeldElsewhere { holder, path });
                    }
                    return Err(LockError::Held { holder, path });
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(LockError::Io(io::Error::other(
            "the store lock changed hands while it was being taken; try again",
        )))
    }

    /// Remove the lock file: only a stale one unless `force`.
    pub fn unlock(&self, force: bool) -> Result<Option<LockHolder>, LockError> {
        let Some(holder) = self.lock_holder()? else {
            return Ok(None);
        };
        if !force && !holder.is_stale() {
            let path = self.lock_path();
            return Err(if holder.host != hostname() {
                LockError::HeldElsewhere { holder, path }
            } else {
                LockError::Held { holder, path }
            });
        }
        fs::remove_file(self.lock_path())?;
        Ok(Some(holder))
    }

    fn clear_tmp(&self) -> io::Result<()> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp)? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(())
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_caller_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let held = store.lock("rewind backup").unwrap();
        let err = store.lock("rewind rollback").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("rewind backup"),
            "{text}"
        );
        drop(held);
        store.lock("rewind rollback").unwrap();
    }

    #[test]
    fn a_dead_holder_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A child that has exited: its pid is dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let stale = LockHolder {
            pid,
            host: hostname(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "rewind backup".into(),
        };
        fs::write(dir.path().join("lock"), serde_json::to_vec(&stale).unwrap()).unwrap();
        fs::write(dir.path().join("tmp/blob-dead"), b"partial").unwrap();
        let lock = store.lock("rewind backup").unwrap();
        assert_eq!(lock.took_over, Some(stale));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_lock_from_another_host_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let other = LockHolder {
            pid: 1,
            host: "some-other-host.invalid".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "rewind rollback".into(),
        };
        fs::write(dir.path().join("lock"), serde_json::to_vec(&other).unwrap()).unwrap();
        let err = store.lock("rewind backup").unwrap_err();
        assert!(matches!(err, LockError::HeldElsewhere { .. }), "{err}");
        assert!(err.to_string().contains("rewind unlock --force"), "{err}");
        assert!(store.unlock(false).is_err());
        assert_eq!(store.unlock(true).unwrap(), Some(other));
    }
}
