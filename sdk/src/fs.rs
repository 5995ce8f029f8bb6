//! Filesystem operations that `std` does not offer on `wasm32-wasip2`:
//! symlinks, permission bits and owners.
//!
//! Everything else (read, write, rename, directories) is plain `std::fs` on
//! the granted paths, which the host preopens at their real absolute paths.

use std::io;
use std::path::Path;

use crate::HookError;
use crate::bindings::rewind::hooks::fs as host;

pub use host::{FileKind, FileMeta};

/// Mode, owner, kind, size and mtime of `path`, not following a final symlink.
pub fn metadata(path: &Path) -> Result<FileMeta, HookError> {
    host::metadata(&path.to_string_lossy())
}

/// Set permission bits (`0o640`). Needs a read-write grant.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), HookError> {
    host::set_mode(&path.to_string_lossy(), mode)
}

/// Set owner and group. Fails when the host may not (it is not root).
pub fn set_owner(path: &Path, uid: u32, gid: u32) -> Result<(), HookError> {
    host::set_owner(&path.to_string_lossy(), uid, gid)
}

/// Create a symlink at `link` whose text is `original` (relative or absolute).
///
/// `std::os::wasi::fs::symlink_path` is unstable, so this goes through
/// `wasi:filesystem` directly: find the preopened directory that holds
/// `link` and create the link relative to it. The host resolves the link
/// inside the same capability, so a link can point anywhere but following it
/// never leaves the grant.
pub fn symlink(original: &Path, link: &Path) -> io::Result<()> {
    imp::symlink(original, link)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::io;
    use std::path::{Path, PathBuf};

    use wasip2::filesystem::preopens::get_directories;

    pub fn symlink(original: &Path, link: &Path) -> io::Result<()> {
        let original = original.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "symlink text is not UTF-8")
        })?;
        let mut best: Option<(wasip2::filesystem::types::Descriptor, PathBuf)> = None;
        for (dir, root) in get_directories() {
            let root = PathBuf::from(root);
            if link.starts_with(&root)
                && best
                    .as_ref()
                    .is_none_or(|(_, b)| root.components().count() > b.components().count())
            {
                best = Some((dir, root));
            }
        }
        let (dir, root) = best.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is not inside a granted path", link.display()),
            )
        })?;
        let relative = link.strip_prefix(&root).expect("checked above");
        let relative = relative
            .to_str()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "link path is not UTF-8"))?;
        dir.symlink_at(original, relative).map_err(|code| {
            io::Error::other(format!(
                "cannot create symlink {}: {code:?}",
                link.display()
            ))
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::io;
    use std::path::Path;

    pub fn symlink(original: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(original, link)
    }
}
