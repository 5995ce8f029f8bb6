//! Empty private directories for hook calls: the catch-all root a guest
//! sees outside its grants, and the default working directory of its
//! commands.
//!
//! Every call gets directories no other call has written to. Creating one
//! allocates an inode, which on a busy ext4 costs more CPU than the rest
//! of a no-op step (docs/performance.md, "Whole runs"), so a directory a
//! call gives back **empty and intact** — still the directory it was (same
//! device and inode, not a link), mode 0700, no entries — is as good as a
//! new one and goes to the next call. Anything else (a command left files,
//! changed its mode, replaced it) is removed, as before. The pool belongs to
//! a [`crate::plugin::LoadedPlugin`]; its directories are removed with it.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Directories given back empty and intact, waiting for the next call.
#[derive(Default)]
pub(crate) struct ScratchDirs {
    free: Mutex<Vec<Kept>>,
}

/// A pooled directory and what it was when created.
struct Kept {
    dir: tempfile::TempDir,
    identity: (u64, u64),
}

impl Kept {
    fn new() -> io::Result<Kept> {
        // tempfile leaves the mode to the umask (0755 under the usual 022).
        let dir = tempfile::Builder::new()
            .prefix("rewind-call-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let meta = fs::symlink_metadata(dir.path())?;
        Ok(Kept {
            identity: (meta.dev(), meta.ino()),
            dir,
        })
    }

    /// Still the empty private directory it was created as.
    fn is_intact(&self) -> bool {
        let Ok(meta) = fs::symlink_metadata(self.dir.path()) else {
            return false;
        };
        meta.is_dir()
            && (meta.dev(), meta.ino()) == self.identity
            && meta.permissions().mode() & 0o7777 == 0o700
            && fs::read_dir(self.dir.path()).is_ok_and(|mut entries| entries.next().is_none())
    }
}

impl ScratchDirs {
    /// An empty private directory for one call.
    pub(crate) fn take(self: &Arc<Self>) -> io::Result<ScratchDir> {
        let reused = self.free.lock().expect("scratch pool poisoned").pop();
        // Checked again on the way out: something outside rewind running
        // as the same user could have written into it in between.
        let kept = match reused {
            Some(kept) if kept.is_intact() => kept,
            _ => Kept::new()?,
        };
        Ok(ScratchDir {
            kept: Some(kept),
            pool: self.clone(),
        })
    }
}

/// A directory lent to one call; given back to the pool when dropped.
pub struct ScratchDir {
    kept: Option<Kept>,
    pool: Arc<ScratchDirs>,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        self.kept.as_ref().expect("taken until dropped").dir.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let Some(kept) = self.kept.take() else {
            return;
        };
        if kept.is_intact() {
            self.pool
                .free
                .lock()
                .expect("scratch pool poisoned")
                .push(kept);
        }
        // Otherwise `kept` drops here and its directory is removed.
    }
}

impl std::fmt::Debug for ScratchDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ScratchDir").field(&self.path()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_directory_is_reused_and_a_written_one_is_not() {
        let pool = Arc::new(ScratchDirs::default());
        let first = pool.take().unwrap();
        let path = first.path().to_path_buf();
        drop(first);
        let second = pool.take().unwrap();
        assert_eq!(
            second.path(),
            path,
            "an empty directory goes to the next call"
        );

        fs::write(second.path().join("left-behind"), b"secret").unwrap();
        drop(second);
        assert!(!path.exists(), "a directory a call wrote to is removed");
        let third = pool.take().unwrap();
        assert_ne!(third.path(), path);
        assert_eq!(fs::read_dir(third.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_replaced_or_opened_up_directory_is_not_reused() {
        let pool = Arc::new(ScratchDirs::default());
        let taken = pool.take().unwrap();
        let path = taken.path().to_path_buf();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        drop(taken);
        assert!(!path.exists(), "a directory whose mode changed is removed");

        let taken = pool.take().unwrap();
        let path = taken.path().to_path_buf();
        drop(taken);
        // Replaced by a link to somewhere else after it was given back: the
        // link is removed, never followed, and a new directory is lent.
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("keep"), b"x").unwrap();
        fs::remove_dir(&path).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &path).unwrap();
        let next = pool.take().unwrap();
        assert_ne!(next.path(), path);
        assert!(fs::symlink_metadata(&path).is_err(), "the link is removed");
        assert!(elsewhere.path().join("keep").exists(), "and not followed");
    }
}
