//! The `fs` import: metadata, permission bits and owners of granted paths.
//!
//! WASI p2 has no notion of modes or owners, so a plugin that must restore
//! them (config files, storage directories) asks the host. Every path is
//! checked against the grants twice, as written and as resolved, and the
//! final component is opened with `O_NOFOLLOW`, so neither `..` nor a
//! symlink reaches outside a grant.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::HookState;
use crate::bindings::rewind::hooks::fs::{FileKind, FileMeta, Host};
use crate::bindings::rewind::hooks::types::{Failure, HookError};
use crate::grants::normalize;

fn failed(message: String) -> HookError {
    HookError::Failed(Failure {
        message,
        stderr_tail: None,
    })
}

impl HookState {
    /// The real path of `path` if it lies inside a grant (a writable one
    /// when `write`), else the denial naming the grant to add.
    fn granted_path(&self, path: &str, write: bool) -> Result<PathBuf, HookError> {
        let raw = Path::new(path);
        if !raw.is_absolute() {
            return Err(HookError::InvalidInput(format!(
                "path `{path}` must be absolute"
            )));
        }
        let lexical = normalize(raw);
        let check = |p: &Path| {
            self.call
                .grants
                .check_path(p, write)
                .map_err(|d| self.call.denied(d))
        };
        check(&lexical)?;
        // Resolve the parent (symlinks in it are followed), keep the last
        // component as is: it is opened without following.
        let real = match (lexical.parent(), lexical.file_name()) {
            (Some(parent), Some(name)) => parent
                .canonicalize()
                .map_err(|err| failed(format!("{}: {err}", parent.display())))?
                .join(name),
            _ => lexical.clone(),
        };
        check(&real)?;
        Ok(real)
    }
}

fn open_no_follow(path: &Path) -> Result<File, HookError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
                failed(format!(
                    "{} is a symlink; its mode and owner are not changed",
                    path.display()
                ))
            } else {
                failed(format!("{}: {err}", path.display()))
            }
        })
}

impl Host for HookState {
    fn metadata(&mut self, path: String) -> wasmtime::Result<Result<FileMeta, HookError>> {
        Ok((|| {
            let real = self.granted_path(&path, false)?;
            let meta =
                std::fs::symlink_metadata(&real).map_err(|err| failed(format!("{path}: {err}")))?;
            let kind = if meta.file_type().is_symlink() {
                FileKind::Symlink
            } else if meta.is_dir() {
                FileKind::Directory
            } else if meta.is_file() {
                FileKind::File
            } else {
                FileKind::Other
            };
            Ok(FileMeta {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.len(),
                mtime: meta.mtime(),
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
            let real = self.granted_path(&path, true)?;
            let file = open_no_follow(&real)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
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
            let real = self.granted_path(&path, true)?;
            let file = open_no_follow(&real)?;
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .map_err(|err| failed(format!("chown {uid}:{gid} {path}: {err}")))
        })())
    }
}
