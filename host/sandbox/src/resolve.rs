//! Resolve a path once, beneath the grant that decides it, by descriptor.
//!
//! A path that is checked and then opened again by name can be swapped for
//! a symlink in between (`renameat2(RENAME_EXCHANGE)` in a loop wins such a
//! race within seconds). So a host import that acts on a plugin's path
//! opens it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from the
//! descriptor of the most specific grant containing it, reads back where the
//! kernel actually landed (`/proc/self/fd`), checks *that* path against the
//! grants (a symlink inside a read-write tree may lead into a nested
//! read-only grant), and then acts only on the descriptor: `fchmodat`,
//! `fchownat`, `fchdir`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use rewind_grants::{Denial, Grants, normalize};

/// A path opened beneath its grant.
#[derive(Debug)]
#[allow(dead_code)] // used by the fs and process imports
pub(crate) struct Resolved {
    /// An `O_PATH` descriptor of what the path named.
    pub fd: OwnedFd,
    /// Where the kernel resolved it (all symlinks followed but a final one
    /// when `follow_last` was false).
    pub real: PathBuf,
}

/// Why a path could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// Not allowed: as written, or as resolved.
    Denied(Denial),
    /// The path does not exist or cannot be opened (the path is inside a
    /// grant, so saying so reveals nothing).
    Io(PathBuf, std::io::Error),
    /// The path is absolute-only.
    NotAbsolute(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Denied(d) => write!(f, "{d}"),
            ResolveError::Io(path, err) => write!(f, "{}: {err}", path.display()),
            ResolveError::NotAbsolute(p) => write!(f, "path `{p}` must be absolute"),
        }
    }
}

/// Open `path` beneath the grant that decides it. `write` asks for a
/// read-write grant (as written and as resolved); `follow_last` follows a
/// final symlink (a working directory) or not (a file whose mode is set).
pub(crate) fn resolve(
    grants: &Grants,
    path: &str,
    write: bool,
    follow_last: bool,
) -> Result<Resolved, ResolveError> {
    let raw = Path::new(path);
    if !raw.is_absolute() {
        return Err(ResolveError::NotAbsolute(path.to_string()));
    }
    let lexical = normalize(raw);
    grants
        .check_path(&lexical, write)
        .map_err(ResolveError::Denied)?;
    let grant = grants
        .grant_for(&lexical)
        .expect("a path that passed its check has a grant");
    let io = |err: rustix::io::Errno| ResolveError::Io(lexical.clone(), err.into());
    let root = rustix::fs::open(
        &grant.path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| ResolveError::Io(grant.path.clone(), err.into()))?;
    let relative = lexical
        .strip_prefix(&grant.path)
        .expect("the grant contains the path");
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if !follow_last {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::openat2(
        &root,
        relative,
        flags,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(io)?;
    let real = real_path(&fd).map_err(|err| ResolveError::Io(lexical.clone(), err))?;
    grants
        .check_path(&real, write)
        .map_err(ResolveError::Denied)?;
    Ok(Resolved { fd, real })
}

/// Where a descriptor points, as the kernel names it.
pub(crate) fn real_path(fd: &impl AsFd) -> std::io::Result<PathBuf> {
    let link = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd())
    );
    std::fs::read_link(link)
}

/// The `/proc/self/fd/N` path of a descriptor, to act on it by name where
/// the kernel has no descriptor call (`chmod` of an `O_PATH` descriptor).
#[allow(dead_code)]
pub(crate) fn proc_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_grants::PathGrant;

    #[test]
    fn a_symlink_into_a_nested_read_only_grant_is_refused_for_writing() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("protected")).unwrap();
        std::fs::write(app.join("protected/x"), "keep").unwrap();
        std::os::unix::fs::symlink("protected", app.join("door")).unwrap();
        let grants = Grants {
            paths: vec![
                PathGrant::parse(&app.display().to_string()).unwrap(),
                PathGrant::parse(&format!("ro:{}/protected", app.display())).unwrap(),
            ],
            ..Grants::default()
        };
        let through = format!("{}/door/x", app.display());
        assert!(matches!(
            resolve(&grants, &through, true, false),
            Err(ResolveError::Denied(_))
        ));
        assert!(resolve(&grants, &through, false, false).is_ok());
        // A symlink leaving the grant entirely is not followed at all.
        std::os::unix::fs::symlink("/etc", app.join("out")).unwrap();
        let out = format!("{}/out/passwd", app.display());
        assert!(matches!(
            resolve(&grants, &out, false, false),
            Err(ResolveError::Io(..))
        ));
        let ok = resolve(
            &grants,
            &format!("{}/protected/x", app.display()),
            false,
            false,
        )
        .unwrap();
        assert!(ok.real.ends_with("protected/x"));
    }
}
