//! One run at a time per store, by a lease that cannot go stale.
//!
//! The lock is a file, `<root>/lock`, created with `O_EXCL` and holding who
//! took it (pid, host, start time, command), a random lease id and when the
//! lease expires. Creating a file exclusively is atomic on every local
//! filesystem, so two callers can never both take it. While the run lasts,
//! a thread renews the lease (every third of its length) by replacing the
//! file atomically, after checking that it still holds the same lease id.
//!
//! A lock is stale, reported and taken over, when its lease expired (its
//! holder stopped renewing: killed, frozen, its host gone), or at once when
//! its holder is a dead process on this host. A live lease from another
//! host is never taken over: wait for it (`--lock-wait`), or remove it on
//! purpose with `rewind unlock --force`, which is recorded.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// Which lease this is: the holder renews (and removes) the lock only
    /// while the file still carries its id. Empty in a lock written before
    /// leases.
    #[serde(default)]
    pub lease_id: String,
    /// When the lease ends unless renewed (RFC 3339); absent in a lock
    /// written before leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on host {}, since {} (`{}`)",
            self.pid, self.host, self.started_at, self.command
        )?;
        if let Some(expires) = &self.expires_at {
            let verb = if self.is_expired() {
                "expired"
            } else {
                "expires"
            };
            write!(f, ", lease {verb} at {expires}")?;
        }
        Ok(())
    }
}

/// How long a lease lasts unless renewed: long enough that a busy disk
/// never loses it, short enough that a killed holder blocks the store for
/// a minute, not for weeks. `REWIND_LEASE_S` overrides it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The lease length: `REWIND_LEASE_S` (whole seconds, at least 1) or
/// [`DEFAULT_LEASE`].
pub fn lease_length() -> Duration {
    std::env::var("REWIND_LEASE_S")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s >= 1)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LEASE)
}

impl LockHolder {
    fn current(command: &str, lease: Duration) -> Self {
        let mut id = [0u8; 8];
        super::runs::getrandom(&mut id);
        LockHolder {
            pid: std::process::id(),
            host: hostname(),
            started_at: jiff::Timestamp::now().to_string(),
            command: command.to_string(),
            lease_id: hex::encode(id),
            expires_at: Some(expiry(lease)),
        }
    }

    /// Has its lease ended without being renewed?
    pub fn is_expired(&self) -> bool {
        self.expires_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t < jiff::Timestamp::now())
    }

    /// May the next run take this lock over: its lease expired, or its
    /// holder is a process on this host that no longer exists.
    pub fn is_stale(&self) -> bool {
        self.is_expired() || (self.host == hostname() && !process_alive(self.pid))
    }
}

fn expiry(lease: Duration) -> String {
    let lease = jiff::SignedDuration::try_from(lease).unwrap_or(jiff::SignedDuration::MAX);
    jiff::Timestamp::now()
        .checked_add(lease)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// A live run holds it.
    Held {
        /// Who holds it.
        holder: Box<LockHolder>,
        /// The lock file.
        path: PathBuf,
    },
    /// Held from another host: it may be alive.
    HeldElsewhere {
        /// Who holds it.
        holder: Box<LockHolder>,
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
                "the store lock {} is held by {holder}; it is taken over only once its lease \
                 expires unrenewed. Wait for it (`--lock-wait 5m`), or, if you know that run \
                 is gone, remove the lock now with `rewind unlock --force` (recorded)",
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

/// The held lock, its lease renewed by a thread; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    path: PathBuf,
    lease_id: String,
    /// The stale holder this lock replaced, for the caller to report.
    pub took_over: Option<LockHolder>,
    renewal: Option<Renewal>,
}

#[derive(Debug)]
struct Renewal {
    stop: Arc<(Mutex<bool>, Condvar)>,
    lost: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl StoreLock {
    /// Whether the lease was lost: another run took the lock over after
    /// this one failed to renew it in time (it was frozen, or its disk
    /// stalled). The run should stop writing.
    pub fn lost(&self) -> bool {
        self.renewal
            .as_ref()
            .is_some_and(|r| r.lost.load(Ordering::SeqCst))
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            *renewal.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            renewal.stop.1.notify_all();
            let _ = renewal.thread.join();
        }
        // Only our own lease: after a takeover the file is another run's.
        if read_holder(&self.path).is_ok_and(|h| h.is_some_and(|h| h.lease_id == self.lease_id)) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn read_holder(path: &std::path::Path) -> io::Result<Option<LockHolder>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or(LockHolder {
            pid: 0,
            host: "?".into(),
            started_at: "?".into(),
            command: "(unreadable lock file)".into(),
            lease_id: String::new(),
            expires_at: None,
        }))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Renew `holder`'s lease in `path` every third of `lease` until stopped;
/// give up (and say so in `lost`) when the file holds another lease.
fn renew(
    path: PathBuf,
    mut holder: LockHolder,
    lease: Duration,
    stop: Arc<(Mutex<bool>, Condvar)>,
    lost: Arc<AtomicBool>,
) {
    let every = lease / 3;
    let (flag, wake) = &*stop;
    let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let deadline = Instant::now() + every;
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if *stopped {
            return;
        }
        match read_holder(&path) {
            Ok(Some(now)) if now.lease_id == holder.lease_id => {}
            // Taken over (or removed by `unlock --force`): not ours now.
            Ok(_) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A read that failed is retried at the next renewal; the lease
            // is long enough to survive a few.
            Err(_) => continue,
        }
        holder.expires_at = Some(expiry(lease));
        if let Ok(bytes) = serde_json::to_vec_pretty(&holder) {
            let _ = super::blob::write_atomic(&path, &bytes);
        }
    }
}

impl Store {
    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Who holds the lock now, if anyone.
    pub fn lock_holder(&self) -> io::Result<Option<LockHolder>> {
        read_holder(&self.lock_path())
    }

    /// [`Store::lock`], waiting up to `wait` for a live holder to finish;
    /// `waiting` is told who holds it, once, when the wait begins.
    pub fn lock_waiting(
        &self,
        command: &str,
        wait: Duration,
        waiting: &dyn Fn(&LockHolder),
    ) -> Result<StoreLock, LockError> {
        let until = Instant::now() + wait;
        let mut told = false;
        loop {
            match self.lock(command) {
                Err(LockError::Held { holder, .. } | LockError::HeldElsewhere { holder, .. })
                    if Instant::now() < until =>
                {
                    if !told {
                        waiting(&holder);
                        told = true;
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.min(Duration::from_millis(250)));
                }
                other => return other,
            }
        }
    }

    /// Take the lock for a run described by `command`, with a lease of
    /// [`lease_length`] renewed until the lock is dropped. A stale lock
    /// (expired lease, or a dead process on this host) is replaced and
    /// reported in `took_over`.
    pub fn lock(&self, command: &str) -> Result<StoreLock, LockError> {
        self.lock_for(command, lease_length())
    }

    fn lock_for(&self, command: &str, lease: Duration) -> Result<StoreLock, LockError> {
        let path = self.lock_path();
        let holder = LockHolder::current(command, lease);
        let me = serde_json::to_vec_pretty(&holder).map_err(io::Error::other)?;
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
                    let stop = Arc::new((Mutex::new(false), Condvar::new()));
                    let lost = Arc::new(AtomicBool::new(false));
                    let thread = {
                        let (path, holder) = (path.clone(), holder.clone());
                        let (stop, lost) = (stop.clone(), lost.clone());
                        std::thread::Builder::new()
                            .name("rewind-lease".into())
                            .spawn(move || renew(path, holder, lease, stop, lost))?
                    };
                    return Ok(StoreLock {
                        path,
                        lease_id: holder.lease_id,
                        took_over,
                        renewal: Some(Renewal { stop, lost, thread }),
                    });
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
                        return Err(LockError::HeldElsewhere {
                            holder: Box::new(holder),
                            path,
                        });
                    }
                    return Err(LockError::Held {
                        holder: Box::new(holder),
                        path,
                    });
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
            let holder = Box::new(holder);
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
            lease_id: String::new(),
            expires_at: None,
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
            lease_id: String::new(),
            expires_at: None,
        };
        fs::write(dir.path().join("lock"), serde_json::to_vec(&other).unwrap()).unwrap();
        let err = store.lock("rewind backup").unwrap_err();
        assert!(matches!(err, LockError::HeldElsewhere { .. }), "{err}");
        assert!(err.to_string().contains("rewind unlock --force"), "{err}");
        assert!(store.unlock(false).is_err());
        assert_eq!(store.unlock(true).unwrap(), Some(other));
    }

    fn from_elsewhere(expires_at: &str) -> LockHolder {
        LockHolder {
            pid: 1,
            host: "some-other-host.invalid".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "rewind rollback".into(),
            lease_id: "0123456789abcdef".into(),
            expires_at: Some(expires_at.into()),
        }
    }

    #[test]
    fn an_expired_lease_from_another_host_is_taken_over_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = from_elsewhere("2999-01-01T00:00:00Z");
        fs::write(dir.path().join("lock"), serde_json::to_vec(&live).unwrap()).unwrap();
        let err = store.lock("rewind backup").unwrap_err();
        assert!(matches!(err, LockError::HeldElsewhere { .. }), "{err}");
        assert!(err.to_string().contains("lease expires at 2999"), "{err}");

        let expired = from_elsewhere("2026-01-01T00:01:00Z");
        fs::write(
            dir.path().join("lock"),
            serde_json::to_vec(&expired).unwrap(),
        )
        .unwrap();
        let lock = store.lock("rewind backup").unwrap();
        assert_eq!(lock.took_over, Some(expired));
        let mine = store.lock_holder().unwrap().unwrap();
        assert_eq!(mine.pid, std::process::id());
        drop(lock);
        assert_eq!(store.lock_holder().unwrap(), None);
    }

    #[test]
    fn a_held_lease_is_renewed_and_a_lost_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store
            .lock_for("rewind backup", Duration::from_secs(1))
            .unwrap();
        let first = store.lock_holder().unwrap().unwrap();
        // Three lease lengths later the lease is still live: renewed.
        std::thread::sleep(Duration::from_millis(3000));
        let now = store.lock_holder().unwrap().unwrap();
        assert_eq!(now.lease_id, first.lease_id);
        assert!(!now.is_expired(), "{now}");
        assert_ne!(now.expires_at, first.expires_at);
        assert!(!lock.lost());

        // Someone removes it on purpose and another run takes it: the
        // first holder notices, stops renewing and leaves it in place.
        store.unlock(true).unwrap();
        let other = store.lock("rewind rollback").unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(lock.lost());
        drop(lock);
        assert_eq!(
            store.lock_holder().unwrap().unwrap().command,
            "rewind rollback"
        );
        drop(other);
    }

    #[test]
    fn lock_waiting_waits_for_the_holder_to_finish() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let held = store.lock("rewind backup").unwrap();
        let waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(500));
                drop(held);
            });
            let lock = store
                .lock_waiting("rewind rollback", Duration::from_secs(30), &|holder| {
                    assert_eq!(holder.command, "rewind backup");
                    waited.store(true, Ordering::SeqCst);
                })
                .unwrap();
            assert!(waited.load(Ordering::SeqCst));
            drop(lock);
        });
        // Without a wait, or past it, a held lock is refused.
        let _held = store.lock("rewind backup").unwrap();
        let err = store
            .lock_waiting("rewind rollback", Duration::from_millis(300), &|_| {})
            .unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
    }
}
