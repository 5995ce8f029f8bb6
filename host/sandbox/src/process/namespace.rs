//! The working directory, and read-only grants that bind commands too.
//!
//! The working directory is resolved once, beneath its grant, by descriptor
//! ([`crate::resolve`]); the child `fchdir`s to that descriptor, so
//! swapping a path component for a symlink after the check changes nothing.
//!
//! A command is an ordinary host process: `ro:` means nothing to it unless
//! the kernel enforces it. As root (with `CAP_SYS_ADMIN`) each command gets
//! its own mount namespace: `/` is made private (nothing propagates back to
//! the host), and every read-only grant, nested ones included, is
//! bind-mounted onto itself read-only (recursively, with the new mount API:
//! `open_tree(OPEN_TREE_CLONE)`, `mount_setattr(MOUNT_ATTR_RDONLY)`,
//! `move_mount`). A read-write grant nested inside a read-only one is
//! bound again writable (unless its own mount is read-only). Directories
//! are opened with `RESOLVE_NO_SYMLINKS` so a link a plugin planted cannot
//! redirect a mount.
//!
//! The working-directory descriptor was opened before those mounts, so it
//! names the writable mount underneath them. In a namespace the child
//! therefore opens the directory again by its real path (no symlinks) and
//! refuses to start unless it is the same directory (`st_dev`, `st_ino`).
//!
//! Without the privilege (not root) commands get no namespace: a command
//! whose working directory is in a read-only grant can write there if the
//! host user can. Grant such commands nothing writable that matters, or run
//! rewind as root.
//!
//! Everything the child runs is plain syscalls on data computed before the
//! fork (C strings, descriptors, device and inode numbers).

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use rewind_grants::Grants;

/// A command's working directory, opened beneath its grant.
#[derive(Debug)]
pub(crate) struct Workdir {
    fd: OwnedFd,
    real: CString,
    id: (u64, u64),
}

impl Workdir {
    pub(crate) fn new(fd: OwnedFd, real: &Path) -> io::Result<Workdir> {
        let stat = rustix::fs::fstat(&fd)?;
        let real = CString::new(real.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        Ok(Workdir {
            fd,
            real,
            id: (stat.st_dev, stat.st_ino),
        })
    }

    /// Open a directory the host chose (the call's private temp directory).
    pub(crate) fn open(path: &Path) -> io::Result<Workdir> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // By its real path: the child may open it again by name.
        let real = crate::resolve::real_path(&fd).unwrap_or_else(|_| path.to_path_buf());
        Workdir::new(fd, &real)
    }

    /// Enter it.
    ///
    /// # Safety
    /// Only between `fork` and `execve`.
    pub(crate) unsafe fn enter(&self, namespaced: bool) -> io::Result<()> {
        if !namespaced {
            return rustix::process::fchdir(&self.fd).map_err(Into::into);
        }
        let dir = rustix::fs::openat2(
            CWD,
            self.real.as_c_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS,
        )?;
        let stat = rustix::fs::fstat(&dir)?;
        if (stat.st_dev, stat.st_ino) != self.id {
            return Err(io::Error::from_raw_os_error(WORKDIR_MOVED));
        }
        rustix::process::fchdir(&dir).map_err(Into::into)
    }
}

/// `CAP_SYS_ADMIN` (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;

/// The error a child reports when its working directory was swapped
/// between the check and the start.
pub(crate) const WORKDIR_MOVED: i32 = libc::ESTALE;

/// The mounts a command's namespace gets.
#[derive(Debug, Default)]
pub(crate) struct MountPlan {
    binds: Vec<Bind>,
}

#[derive(Debug)]
struct Bind {
    path: CString,
    read_only: bool,
}

/// Whether this process may create mount namespaces (root with
/// `CAP_SYS_ADMIN`).
pub(crate) fn can_mount() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            return false;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
    })
}

impl MountPlan {
    /// The binds `grants` need, or `None` when there is no read-only grant
    /// (nothing to enforce).
    pub(crate) fn new(grants: &Grants) -> io::Result<Option<MountPlan>> {
        let read_only: Vec<&Path> = grants
            .paths
            .iter()
            .filter(|g| !g.writable)
            .map(|g| g.path.as_path())
            .collect();
        if read_only.is_empty() {
            return Ok(None);
        }
        let mut chosen: Vec<(usize, bool, &Path)> = Vec::new();
        for grant in &grants.paths {
            let path = grant.path.as_path();
            let keep = if grant.writable {
                // Writable again only under a read-only grant, and not
                // where the same directory is also granted read-only.
                !read_only.contains(&path)
                    && read_only
                        .iter()
                        .any(|ro| path.starts_with(ro) && path != *ro)
                    && !mounted_read_only(path)
            } else {
                true
            };
            if keep {
                chosen.push((path.components().count(), !grant.writable, path));
            }
        }
        // Outer grants first; at equal depth read-only last (it wins).
        chosen.sort();
        chosen.dedup_by(|a, b| a.2 == b.2 && a.1 == b.1);
        let mut binds = Vec::new();
        for (_, read_only, path) in chosen {
            let real = path.canonicalize()?;
            binds.push(Bind {
                path: CString::new(real.as_os_str().as_bytes())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?,
                read_only,
            });
        }
        Ok(Some(MountPlan { binds }))
    }

    /// Enter a new mount namespace and apply the binds.
    ///
    /// # Safety
    /// Only between `fork` and `execve`.
    pub(crate) unsafe fn apply(&self) -> io::Result<()> {
        // SAFETY: plain syscalls with static or precomputed arguments.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        for bind in &self.binds {
            let dir = rustix::fs::openat2(
                CWD,
                bind.path.as_c_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS,
            )?;
            let tree = rustix::mount::open_tree(
                &dir,
                c"",
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_RECURSIVE
                    | OpenTreeFlags::AT_EMPTY_PATH,
            )?;
            let attr = MountAttr {
                attr_set: if bind.read_only { MOUNT_ATTR_RDONLY } else { 0 },
                attr_clr: if bind.read_only { 0 } else { MOUNT_ATTR_RDONLY },
                propagation: 0,
                userns_fd: 0,
            };
            // Read-only: the whole tree below, submounts included.
            // Writable again: only the grant's own mount.
            let flags = libc::AT_EMPTY_PATH
                | if bind.read_only {
                    libc::AT_RECURSIVE
                } else {
                    0
                };
            // SAFETY: mount_setattr(2) with a valid descriptor, an empty
            // path and a properly sized attribute struct.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    std::os::fd::AsRawFd::as_raw_fd(&tree),
                    c"".as_ptr(),
                    flags as libc::c_uint,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            rustix::mount::move_mount(
                &tree,
                c"",
                &dir,
                c"",
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
            )?;
        }
        Ok(())
    }
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Whether the mount holding `path` is read-only already.
fn mounted_read_only(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}
