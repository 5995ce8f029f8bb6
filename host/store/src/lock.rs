//! One run at a time per store, by a lease that cannot go stale.
//!
//! The lock is a file, `<root>/lock` (on S3 the object `<prefix>/lock`),
//! created exclusively (`O_EXCL`; on S3 a PUT with `If-None-Match: *`) and
//! holding who took it (pid, host, start time, command), a random lease id
//! and when the lease expires. An exclusive create is atomic, so two
//! callers can never both take it. While the run lasts, a thread renews the
//! lease (every third of its length) by replacing it on condition that it
//! is still the version that carried our lease id (locally: the same bytes,
//! then an atomic rename; on S3 a PUT with `If-Match: <ETag>`).
//!
//! The logic is written once here against the backend's conditional
//! operations (`backend.rs`); only those differ between a directory and S3.
//!
//! A lock is stale, reported and taken over, when its lease expired (its
//! holder stopped renewing: killed, frozen, its host gone), or at once when
//! its holder is a dead process on this host. A live lease from another
//! host is never taken over: wait for it (`--lock-wait`), or remove it on
//! purpose with `rewind unlock --force`, which is recorded. Taking an
//! expired lease over is conditional on the version found expired (on S3
//! `If-Match` with its ETag), so of two runs taking it over one wins.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Store;
use crate::backend::{Backend, Version};

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
    backend: Arc<dyn Backend>,
    lease_id: String,
    /// The stale holder this lock replaced, for the caller to report.
    pub took_over: Option<LockHolder>,
    renewal: Option<Renewal>,
    /// How long the lease lasts unrenewed.
    lease: Duration,
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

    /// A handle the run keeps to ask, before it writes, whether the lock
    /// is still its own.
    pub fn lease_check(&self) -> LeaseCheck {
        LeaseCheck {
            backend: self.backend.clone(),
            lease_id: self.lease_id.clone(),
            lost: self.renewal.as_ref().map(|r| r.lost.clone()),
            lease: self.lease,
        }
    }
}

/// Whether a lock is still held by the run that took it.
#[derive(Clone)]
pub struct LeaseCheck {
    backend: Arc<dyn Backend>,
    lease_id: String,
    lost: Option<Arc<AtomicBool>>,
    lease: Duration,
}

impl LeaseCheck {
    /// The renewal thread already found the lease taken over.
    pub fn known_lost(&self) -> bool {
        self.lost.as_ref().is_some_and(|l| l.load(Ordering::SeqCst))
    }

    /// Who holds the lock now, if it is no longer ours. Reads the lock,
    /// because a run that was frozen past its lease and woke up can get
    /// here before its renewal thread has noticed: the lock must still
    /// carry our lease id.
    pub fn taken_by(&self) -> io::Result<Option<String>> {
        let Some((mut holder, version)) = read_holder(&*self.backend)? else {
            return Ok(Some("nobody (the lock was removed)".to_string()));
        };
        if holder.lease_id != self.lease_id || self.known_lost() {
            return Ok(Some(holder.to_string()));
        }
        if holder.is_expired() {
            // Ours, but expired: another run may be taking it over at this
            // moment. Renew it now, on condition that it is still this
            // version; a takeover is conditional on the same version, so
            // exactly one of the two wins.
            holder.expires_at = Some(expiry(self.lease));
            let bytes = serde_json::to_vec_pretty(&holder).map_err(io::Error::other)?;
            if self.backend.replace_if(LOCK, &bytes, &version)?.is_none() {
                return Ok(Some(
                    "another run (it took the expired lease over just now)".to_string(),
                ));
            }
        }
        Ok(None)
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            *renewal.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            renewal.stop.1.notify_all();
            let _ = renewal.thread.join();
        }
        // Only our own lease: after a takeover the object is another run's.
        // On S3 the check and the removal are two requests; nobody can
        // take a live lease over in between, and ours was renewed at most
        // a third of its length ago.
        if let Ok(Some((bytes, version))) = self.backend.read_versioned(LOCK)
            && parse_holder(&bytes).lease_id == self.lease_id
        {
            let _ = self.backend.remove_if(LOCK, &version);
        }
    }
}

/// The lock's key in the store.
const LOCK: &str = "lock";

fn parse_holder(bytes: &[u8]) -> LockHolder {
    serde_json::from_slice(bytes).unwrap_or(LockHolder {
        pid: 0,
        host: "?".into(),
        started_at: "?".into(),
        command: "(unreadable lock file)".into(),
        lease_id: String::new(),
        expires_at: None,
    })
}

fn read_holder(backend: &dyn Backend) -> io::Result<Option<(LockHolder, Version)>> {
    Ok(backend
        .read_versioned(LOCK)?
        .map(|(bytes, version)| (parse_holder(&bytes), version)))
}

/// Renew `holder`'s lease every third of `lease` until stopped, each time
/// on condition that the lock is still the version this run last read
/// with its lease id in it; give up (and say so in `lost`) when it holds
/// another lease.
fn renew(
    backend: Arc<dyn Backend>,
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
        let version = match read_holder(&*backend) {
            Ok(Some((now, version))) if now.lease_id == holder.lease_id => version,
            // Taken over (or removed by `unlock --force`): not ours now.
            Ok(_) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A read that failed is retried at the next renewal; the lease
            // is long enough to survive a few.
            Err(_) => continue,
        };
        holder.expires_at = Some(expiry(lease));
        if let Ok(bytes) = serde_json::to_vec_pretty(&holder) {
            // Changed since the read: the next round finds out by whom.
            let _ = backend.replace_if(LOCK, &bytes, &version);
        }
    }
}

impl Store {
    fn lock_path(&self) -> PathBuf {
        self.backend().display(LOCK)
    }

    /// Who holds the lock now, if anyone.
    pub fn lock_holder(&self) -> io::Result<Option<LockHolder>> {
        Ok(read_holder(self.backend())?.map(|(holder, _)| holder))
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
        let backend = self.backend();
        let holder = LockHolder::current(command, lease);
        let me = serde_json::to_vec_pretty(&holder).map_err(io::Error::other)?;
        let mut took_over = None;
        let mut stale: Option<Version> = None;
        // Two rounds: the second follows a stale lock, taken over on
        // condition that it is still the version found stale, so that of
        // two runs taking it over only one succeeds.
        for _ in 0..2 {
            let taken = match stale.take() {
                None => backend.create_new(LOCK, &me)?,
                Some(version) => backend.take_over(LOCK, &me, &version)?,
            };
            let found = match taken {
                Some(_) => None,
                None => read_holder(backend)?,
            };
            // A create retried after a lost response finds its own lease.
            let ours = taken.is_some()
                || found
                    .as_ref()
                    .is_some_and(|(h, _)| h.lease_id == holder.lease_id);
            if ours {
                // Blobs half-written by a dead run are garbage now.
                if took_over.is_some() {
                    backend.clear_tmp()?;
                }
                let stop = Arc::new((Mutex::new(false), Condvar::new()));
                let lost = Arc::new(AtomicBool::new(false));
                let thread = {
                    let (backend, holder) = (self.backend.clone(), holder.clone());
                    let (stop, lost) = (stop.clone(), lost.clone());
                    std::thread::Builder::new()
                        .name("rewind-lease".into())
                        .spawn(move || renew(backend, holder, lease, stop, lost))?
                };
                return Ok(StoreLock {
                    backend: self.backend.clone(),
                    lease_id: holder.lease_id,
                    took_over,
                    renewal: Some(Renewal { stop, lost, thread }),
                    lease,
                });
            }
            let Some((found, version)) = found else {
                continue;
            };
            if found.is_stale() {
                took_over = Some(found);
                stale = Some(version);
                continue;
            }
            let path = self.lock_path();
            return Err(if found.host != hostname() {
                LockError::HeldElsewhere {
                    holder: Box::new(found),
                    path,
                }
            } else {
                LockError::Held {
                    holder: Box::new(found),
                    path,
                }
            });
        }
        Err(LockError::Io(io::Error::other(
            "the store lock changed hands while it was being taken; try again",
        )))
    }

    /// Remove the lock: only a stale one unless `force`. What is removed is
    /// the lock as read here: one that changed meanwhile stays.
    pub fn unlock(&self, force: bool) -> Result<Option<LockHolder>, LockError> {
        // A holder renewing meanwhile changes the version: read it again.
        for _ in 0..5 {
            let Some((holder, version)) = read_holder(self.backend())? else {
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
            if self.backend().remove_if(LOCK, &version)? {
                return Ok(Some(holder));
            }
        }
        Err(LockError::Io(io::Error::other(
            "the store lock kept changing while it was being removed; run `rewind status` and try again",
        )))
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
    use std::fs;

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

    /// A run frozen past its lease that wakes before anyone took it over
    /// renews it when it asks; once another run holds it, it is told so.
    #[test]
    fn a_lease_that_expired_while_its_run_was_frozen_is_renewed_or_reported_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.lock("rewind backup").unwrap();
        let check = lock.lease_check();
        assert_eq!(check.taken_by().unwrap(), None);

        let path = dir.path().join("lock");
        let mut ours: LockHolder = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        ours.expires_at = Some("2001-01-01T00:00:00Z".into());
        fs::write(&path, serde_json::to_vec(&ours).unwrap()).unwrap();
        assert_eq!(check.taken_by().unwrap(), None, "still ours: renewed");
        let renewed: LockHolder = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert!(!renewed.is_expired(), "{renewed:?}");

        fs::write(
            &path,
            serde_json::to_vec(&from_elsewhere("2999-01-01T00:00:00Z")).unwrap(),
        )
        .unwrap();
        let holder = check.taken_by().unwrap().expect("taken over");
        assert!(holder.contains("some-other-host.invalid"), "{holder}");
        drop(lock);
        assert!(path.exists(), "the other run's lock is left alone");
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
