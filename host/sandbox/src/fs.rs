//! The `fs` import: metadata, permission bits and owners of granted paths.
//!
//! WASI p2 has no notion of modes or owners, so a plugin that must restore
//! them (config files, storage directories) asks the host.
//!
//! Every call resolves the path **once**, with [`resolve`]: the path is
//! checked against the grants as written (before the filesystem is touched,
//! so a refusal cannot reveal whether a path outside the grants exists),
//! opened with `openat2(RESOLVE_BENEATH)` below the grant that decides it,
//! and checked again where the kernel landed (a symlink inside a read-write
//! tree may lead into a nested read-only grant). From then on the host acts
//! only on that descriptor: `fstat` for metadata, `chmod` of its
//! `/proc/self/fd` path, `fchownat(AT_EMPTY_PATH)`. Nothing is looked up by
//! name a second time, so swapping a symlink in between (a
//! `renameat2(RENAME_EXCHANGE)` loop) changes nothing. A final symlink is
//! never followed: its metadata is reported, its mode and owner are never
//! changed.
//!
//! Special bits and owners have grants of their own: setuid and setgid need
//! `grants.setid = true`, giving a file to another user or group needs
//! `grants.owners` (see `grants::owners`).

use rustix::fs::{AtFlags, FileType, Mode, Stat};

use super::HookState;
use super::resolve::{ResolveError, Resolved, proc_path, resolve};
use crate::bindings::rewind::hooks::fs::{FileKind, FileMeta, Host};
use crate::bindings::rewind::hooks::types::{Failure, HookError};

fn failed(message: String) -> HookError {
    HookError::Failed(Failure {
        message,
        stderr_tail: None,
    })
}

/// An error of the filesystem itself, on a path that is inside a grant (a
/// path outside every grant is refused before the filesystem is touched).
fn io_failure(path: &str, err: &std::io::Error) -> HookError {
    match err.raw_os_error() {
        // RESOLVE_BENEATH refused a `..` or an absolute symlink that leaves
        // the grant the path was opened under.
        Some(libc::EXDEV) => failed(format!(
            "{path}: a symlink or `..` on the way leads outside the grant; it is not followed"
        )),
        _ => failed(format!("{path}: {err}")),
    }
}

fn kind_of(stat: &Stat) -> FileKind {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => FileKind::Symlink,
        FileType::Directory => FileKind::Directory,
        FileType::RegularFile => FileKind::File,
        _ => FileKind::Other,
    }
}

impl HookState {
    /// Open `path` beneath its grant (a writable one when `write`), not
    /// following a final symlink; a refusal is logged and names the grant.
    fn open_granted(&self, path: &str, write: bool) -> Result<Resolved, HookError> {
        resolve(&self.call.grants, path, write, false).map_err(|err| match err {
            ResolveError::Denied(denial) => self.call.denied(denial),
            ResolveError::NotAbsolute(p) => {
                HookError::InvalidInput(format!("path `{p}` must be absolute"))
            }
            ResolveError::Io(_, err) => io_failure(path, &err),
        })
    }

    /// Open `path` for a change of mode or owner: writable, and not a
    /// symlink (whose target would be changed on some systems, and whose own
    /// mode means nothing).
    fn open_for_change(&self, path: &str, what: &str) -> Result<(Resolved, Stat), HookError> {
        let resolved = self.open_granted(path, true)?;
        let stat = rustix::fs::fstat(&resolved.fd).map_err(|err| io_failure(path, &err.into()))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            return Err(failed(format!(
                "{path} is a symlink; its {what} is not changed (name the file it points to)"
            )));
        }
        Ok((resolved, stat))
    }
}

impl Host for HookState {
    fn metadata(&mut self, path: String) -> wasmtime::Result<Result<FileMeta, HookError>> {
        Ok((|| {
            let resolved = self.open_granted(&path, false)?;
            let stat =
                rustix::fs::fstat(&resolved.fd).map_err(|err| io_failure(&path, &err.into()))?;
            Ok(FileMeta {
                kind: kind_of(&stat),
                mode: stat.st_mode & 0o7777,
                uid: stat.st_uid,
                gid: stat.st_gid,
                size: u64::try_from(stat.st_size).unwrap_or(0),
                mtime: stat.st_mtime,
            })
        })())
    }

    fn set_mode(&mut self, path: String, mode: u32) -> wasmtime::Result<Result<(), HookError>> {
        Ok((|| {
            if mode > 0o7777 {
                return Err(HookError::InvalidInput(format!(
                    "mode {mode:o} is not a permission mode"
                )));
            }
            let (resolved, _) = self.open_for_change(&path, "mode")?;
            self.call
                .grants
                .check_mode(&path, mode)
                .map_err(|denial| self.call.denied(denial))?;
            // chmod of an O_PATH descriptor: through its /proc/self/fd magic
            // link, which names this very inode whatever happens to `path`.
            rustix::fs::chmod(proc_path(&resolved.fd), Mode::from_raw_mode(mode))
                .map_err(|err| failed(format!("chmod {mode:o} {path}: {err}")))
        })())
    }

    fn set_owner(
        &mut self,
        path: String,
        uid: u32,
        gid: u32,
    ) -> wasmtime::Result<Result<(), HookError>> {
        Ok((|| {
            if uid == u32::MAX || gid == u32::MAX {
                return Err(HookError::InvalidInput(format!(
                    "{uid}:{gid} is not an owner (-1 is not a user or group id)"
                )));
            }
            let (resolved, stat) = self.open_for_change(&path, "owner")?;
            self.call
                .grants
                .check_owner(&path, (stat.st_uid, stat.st_gid), uid, gid)
                .map_err(|denial| self.call.denied(denial))?;
            rustix::fs::chownat(
                &resolved.fd,
                "",
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::EMPTY_PATH,
            )
            .map_err(|err| failed(format!("chown {uid}:{gid} {path}: {err}")))
        })())
    }
}

/// Preflight for `rewind check`: whether a read-write grant that exists can
/// be written; else why not (a read-only file system, permissions). A grant
/// of a path that does not exist yet passes: a backup may create it.
pub fn preflight_writable(path: &std::path::Path) -> Result<(), String> {
    use rustix::fs::{Access, access};
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    match access(path, Access::WRITE_OK) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::ROFS) => Err("it is on a read-only file system".into()),
        Err(err) => Err(format!("it is not writable ({err})")),
    }
}
