//! `wasi:filesystem` behind the path grants.
//!
//! wasmtime-wasi already keeps the guest beneath its preopens (cap-std
//! refuses `..` above a descriptor and symlinks that leave it) and refuses
//! every mutation under a read-only preopen. What it cannot know is rewind's
//! policy on top of that, enforced here before each call is handed to
//! wasmtime's own implementation:
//!
//! * **The most specific grant decides.** With `/srv/app` read-write and
//!   `ro:/srv/app/protected`, both are preopened, but
//!   `/srv/app/./protected/x` reaches `protected` through the read-write
//!   preopen. So every descriptor's guest path is tracked (a preopen's is
//!   its grant, an opened one's is its parent's joined with the normalised
//!   relative path) and every mutating operation checks the path of its
//!   target with [`Grants::check_path`], as written and as the kernel
//!   resolves it (a symlink in the read-write tree may lead into the
//!   read-only one): the parent directory is opened beneath its grant with
//!   [`resolve`] and the target's real path checked again.
//! * **Links stay inside the grants.** Commands run outside WebAssembly and
//!   follow links, so a link must not lead anywhere the plugin may not
//!   write: a symbolic link's text is resolved against the link's own
//!   (real) directory and must land in a read-write grant; a link that is
//!   moved (or a directory holding links) is re-evaluated at its new place;
//!   a hard link's source must be writable.
//! * **Refusals name the grant.** A catch-all preopen at `/`, backed by an
//!   empty private directory, receives every absolute path outside the
//!   grants (wasi-libc picks the longest matching preopen). Every operation
//!   on it is refused with the grant line that would allow it, and nothing
//!   about the host's root is revealed.
//!
//! Every refusal is recorded with [`CallState::refuse`] and returned to the
//! guest as `not-permitted`.
//!
//! Residual race: the checks open paths by name and wasmtime then opens them
//! again by name. The guest itself cannot act in between (a store runs one
//! host call at a time and commands run to completion), but another process
//! that can write the granted tree (another plugin with the same grant, or
//! a process a command left behind) could swap a directory for a symlink in
//! that window. A mutating open is therefore checked again on the
//! descriptor it produced (`/proc/self/fd`), and such a descriptor is closed
//! and refused; a file created or truncated in that window stays so.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry,
    DirectoryEntryStream, ErrorCode, Filesize, HostDescriptor, HostDirectoryEntryStream,
    MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult};

use crate::resolve::{self, ResolveError};
use crate::{CallState, HookState};
use rewind_grants::{Access, Denial, Grants, Kind, normalize};

/// The guest path of the catch-all preopen.
pub(crate) const CATCH_ALL: &str = "/";

/// Symbolic links checked when a directory is moved; a bigger tree is
/// refused rather than moved unchecked.
const MOVE_SCAN_LIMIT: usize = 10_000;

/// Per-call filesystem policy state.
pub(crate) struct FsPolicy {
    /// The guest path of every live descriptor, by resource index.
    paths: HashMap<u32, PathBuf>,
    /// Descriptors of the catch-all preopen.
    catch_all: HashSet<u32>,
    /// The empty directory behind the catch-all (none when `/` itself is
    /// granted: then no path lies outside every grant).
    empty: Option<crate::scratch::ScratchDir>,
}

impl FsPolicy {
    pub(crate) fn new(
        grants: &Grants,
        scratch: &std::sync::Arc<crate::scratch::ScratchDirs>,
    ) -> std::io::Result<FsPolicy> {
        let root_granted = grants.paths.iter().any(|g| g.path == Path::new("/"));
        let empty = if root_granted {
            None
        } else {
            Some(scratch.take()?)
        };
        Ok(FsPolicy {
            paths: HashMap::new(),
            catch_all: HashSet::new(),
            empty,
        })
    }

    /// The directory to preopen read-only at [`CATCH_ALL`], if any.
    pub(crate) fn catch_all_dir(&self) -> Option<&Path> {
        self.empty.as_ref().map(|d| d.path())
    }
}

/// `HasData` for the guarded filesystem.
pub(crate) struct GuardedFs;

impl HasData for GuardedFs {
    type Data<'a> = FsView<'a>;
}

/// wasmtime's filesystem view, the policy state and the call.
pub(crate) struct FsView<'a> {
    inner: WasiFilesystemCtxView<'a>,
    policy: &'a mut FsPolicy,
    call: &'a CallState,
}

pub(crate) fn view(state: &mut HookState) -> FsView<'_> {
    FsView {
        inner: WasiFilesystemCtxView {
            ctx: state.wasi.filesystem(),
            table: &mut state.table,
        },
        policy: &mut state.fs_policy,
        call: &state.call,
    }
}

/// Where a descriptor is, for the policy.
enum Place {
    /// The catch-all: everything on it is refused.
    CatchAll,
    /// A granted directory or something opened beneath one.
    Path(PathBuf),
}

/// Why an operation stops before wasmtime sees it.
enum Stop {
    /// A policy refusal: recorded, logged, `not-permitted`.
    Deny(Denial),
    /// An error from looking at the filesystem.
    Code(ErrorCode),
}

impl From<Denial> for Stop {
    fn from(d: Denial) -> Self {
        Stop::Deny(d)
    }
}

fn io_code(err: std::io::Error) -> Stop {
    Stop::Code(ErrorCode::from(err))
}

/// A guest path as a string (guest paths are UTF-8: they come from WIT
/// strings and granted paths).
fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `base` joined with a guest's relative path, normalised.
fn join(base: &Path, relative: &str) -> PathBuf {
    normalize(&base.join(relative.trim_start_matches('/')))
}

/// Does `relative` climb with `..` after a name (`a/../b`)? The kernel
/// resolves `a` first, so where that lands depends on what `a` is (a
/// symbolic link climbs out of its target), not on the text.
fn climbs_after_name(relative: &str) -> bool {
    let mut named = false;
    for part in Path::new(relative).components() {
        match part {
            Component::Normal(_) => named = true,
            Component::ParentDir if named => return true,
            _ => {}
        }
    }
    false
}

/// Does opening with these flags change anything?
fn mutating_open(oflags: OpenFlags, flags: DescriptorFlags) -> bool {
    oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::EXCLUSIVE)
        || flags.intersects(DescriptorFlags::WRITE | DescriptorFlags::MUTATE_DIRECTORY)
}

/// A descriptor's underlying file, for `/proc/self/fd`.
fn descriptor_fd(d: &Descriptor) -> std::os::fd::BorrowedFd<'_> {
    match d {
        Descriptor::File(f) => f.file.as_fd(),
        Descriptor::Dir(d) => d.dir.as_fd(),
    }
}

impl FsView<'_> {
    fn grants(&self) -> &Grants {
        &self.call.grants
    }

    fn place(&self, fd: &Resource<Descriptor>) -> Result<Place, Stop> {
        let rep = fd.rep();
        if self.policy.catch_all.contains(&rep) {
            return Ok(Place::CatchAll);
        }
        match self.policy.paths.get(&rep) {
            Some(path) => Ok(Place::Path(path.clone())),
            // Every descriptor comes from get-directories or open-at, both
            // of which record it; an unknown one is refused, not guessed.
            None => Err(Stop::Code(ErrorCode::BadDescriptor)),
        }
    }

    /// Record and log a refusal; the guest sees `not-permitted`.
    fn stop(&self, stop: Stop) -> FsError {
        match stop {
            Stop::Deny(denial) => {
                self.call.refuse(&denial);
                ErrorCode::NotPermitted.into()
            }
            Stop::Code(code) => code.into(),
        }
    }

    /// The refusal of anything on the catch-all: the path as the guest
    /// wrote it is outside every grant (or reaches one only through `.` or
    /// `..`, which wasi-libc could not match to its preopen).
    fn outside(&self, relative: &str, write: bool) -> Stop {
        let path = join(Path::new(CATCH_ALL), relative);
        match self.grants().check_path(&path, write) {
            Err(denial) => Stop::Deny(denial),
            Ok(()) => Stop::Deny(Denial::new(
                Kind::Never,
                format!("{} {relative}", if write { "write" } else { "read" }),
                format!(
                    "it reaches a granted directory only through `.` or `..`; write it as {}",
                    path.display()
                ),
            )),
        }
    }

    /// The guest path of `relative` under the directory `fd`, refusing it
    /// on the catch-all.
    fn target(
        &self,
        fd: &Resource<Descriptor>,
        relative: &str,
        write: bool,
    ) -> Result<PathBuf, Stop> {
        match self.place(fd)? {
            Place::CatchAll => Err(self.outside(relative, write)),
            Place::Path(dir) => {
                let target = join(&dir, relative);
                if write && climbs_after_name(relative) {
                    // Not writable even as written: that refusal names the grant.
                    self.grants().check_path(&target, true)?;
                    // The policy reads `current/../x` as `x`; the kernel
                    // climbs out of whatever `current` resolves to (a
                    // read-only grant, say). Refuse what cannot be checked.
                    return Err(Stop::Deny(Denial::new(
                        Kind::Never,
                        format!("write {}", Path::new(&dir).join(relative).display()),
                        format!(
                            "a path that changes something may use `..` only at its start \
                             (`name/..` climbs out of whatever `name` resolves to); write it as {}",
                            target.display()
                        ),
                    )));
                }
                Ok(target)
            }
        }
    }

    /// May the plugin change `target` (a guest path)? Checked as written
    /// and where the kernel resolves it. Returns the real path of the
    /// target (its final component followed only when `follow`).
    fn check_write(&self, target: &Path, follow: bool) -> Result<PathBuf, Stop> {
        let grants = self.grants();
        grants.check_path(target, true)?;
        let real = match (target.parent(), target.file_name()) {
            (Some(parent), Some(name)) if grants.access(parent).is_some() => {
                let parent = resolved(grants, parent, false, true)?;
                parent.join(name)
            }
            // The granted directory itself.
            _ => resolved(grants, target, true, false)?,
        };
        let real = if follow {
            match resolve::resolve(grants, &text(target), false, true) {
                Ok(r) => r.real,
                Err(ResolveError::Io(_, err)) if err.kind() == std::io::ErrorKind::NotFound => {
                    // The name does not exist, or it is a symbolic link to
                    // something that does not: creating through a dangling
                    // link would create wherever it points.
                    if resolve::resolve(grants, &text(target), false, false).is_ok() {
                        return Err(Stop::Deny(Denial::new(
                            Kind::Never,
                            format!("write {}", target.display()),
                            "it is a symbolic link to a file that does not exist; write to the link's target by its own name",
                        )));
                    }
                    real
                }
                Err(err) => return Err(resolve_stop(err)),
            }
        } else {
            real
        };
        grants.check_path(&real, true)?;
        Ok(real)
    }

    /// May a symbolic link whose text is `link_text` live at `real` (its
    /// real path)? The text is resolved against the link's own directory
    /// and must land in a read-write grant.
    fn check_link_text(&self, real: &Path, link_text: &str, shown: &Path) -> Result<(), Stop> {
        let text_path = Path::new(link_text);
        let attempted = format!("symbolic link {} -> {link_text}", shown.display());
        // `..` after a name climbs out of whatever that name resolves to,
        // which a later link can change: only leading `..` is evaluated.
        let mut named = false;
        for part in text_path.components() {
            match part {
                Component::Normal(_) => named = true,
                Component::ParentDir if named => {
                    return Err(Stop::Deny(Denial::new(
                        Kind::Never,
                        attempted,
                        "a link's text may use `..` only at its start (write it without `name/..`)",
                    )));
                }
                _ => {}
            }
        }
        let dir = real.parent().unwrap_or(Path::new("/"));
        let target = normalize(&dir.join(text_path));
        if self.grants().access(&target) != Some(Access::ReadWrite) {
            return Err(Stop::Deny(Denial::new(
                Kind::Never,
                attempted,
                format!(
                    "it resolves to {}, which is not in a read-write grant; a link may only lead where the plugin may write (commands follow links)",
                    target.display()
                ),
            )));
        }
        Ok(())
    }

    /// `from` (a guest path, not followed) is about to move or be linked
    /// to `to_real`: if it is a symbolic link, or a directory holding
    /// relative links, check those links at their new place.
    fn check_move(&self, from: &Path, to_real: &Path, shown: &Path) -> Result<(), Stop> {
        let Ok(source) = resolve::resolve(self.grants(), &text(from), false, false) else {
            // Missing: wasmtime reports it.
            return Ok(());
        };
        let stat = rustix::fs::fstat(&source.fd).map_err(|e| io_code(e.into()))?;
        let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        if kind == rustix::fs::FileType::Symlink {
            let link = rustix::fs::readlinkat(&source.fd, "", Vec::new())
                .map_err(|e| io_code(e.into()))?;
            return self.check_link_text(to_real, &link.to_string_lossy(), shown);
        }
        if kind != rustix::fs::FileType::Directory {
            return Ok(());
        }
        let mut seen = 0usize;
        let mut stack = vec![source.real.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(io_code)?;
            for entry in entries {
                let entry = entry.map_err(io_code)?;
                seen += 1;
                if seen > MOVE_SCAN_LIMIT {
                    return Err(Stop::Deny(Denial::new(
                        Kind::Never,
                        format!("move {}", from.display()),
                        format!(
                            "the directory holds more than {MOVE_SCAN_LIMIT} entries, too many to check the links inside it"
                        ),
                    )));
                }
                let kind = entry.file_type().map_err(io_code)?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_symlink() {
                    let link = std::fs::read_link(entry.path()).map_err(io_code)?;
                    // Absolute text and text without `..` mean the same
                    // wherever the link is.
                    if link.is_absolute() || !link.components().any(|c| c == Component::ParentDir) {
                        continue;
                    }
                    let inside = entry
                        .path()
                        .strip_prefix(&source.real)
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    self.check_link_text(
                        &to_real.join(&inside),
                        &link.to_string_lossy(),
                        &shown.join(&inside),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Moving a directory that holds a read-only grant would carry the
    /// grant's files to where they are writable.
    fn check_no_grant_inside(&self, source: &Path, real: &Path) -> Result<(), Stop> {
        let inside = self.grants().paths.iter().find(|g| {
            !g.writable
                && ((g.path.starts_with(source) && g.path != source)
                    || (g.path.starts_with(real) && g.path != real))
        });
        match inside {
            Some(grant) => Err(Stop::Deny(Denial::new(
                Kind::Never,
                format!("move {}", source.display()),
                format!(
                    "it holds the read-only grant {}, whose files would become writable",
                    grant.path.display()
                ),
            ))),
            None => Ok(()),
        }
    }

    /// The checks of a mutating operation on a descriptor itself.
    fn check_descriptor_write(&self, fd: &Resource<Descriptor>) -> Result<(), Stop> {
        let path = match self.place(fd)? {
            Place::CatchAll => return Err(self.outside("", true)),
            Place::Path(path) => path,
        };
        self.grants().check_path(&path, true)?;
        let d = self
            .inner
            .table
            .get(fd)
            .map_err(|_| Stop::Code(ErrorCode::BadDescriptor))?;
        let real = resolve::real_path(&descriptor_fd(d)).map_err(io_code)?;
        self.grants().check_path(&real, true)?;
        Ok(())
    }

    /// Refuse anything that reads the catch-all itself.
    fn check_descriptor_read(&self, fd: &Resource<Descriptor>) -> Result<(), Stop> {
        match self.place(fd)? {
            Place::CatchAll => Err(self.outside("", false)),
            Place::Path(_) => Ok(()),
        }
    }
}

/// [`resolve::resolve`]'s real path, or why not.
fn resolved(grants: &Grants, path: &Path, write: bool, follow: bool) -> Result<PathBuf, Stop> {
    resolve::resolve(grants, &text(path), write, follow)
        .map(|r| r.real)
        .map_err(resolve_stop)
}

fn resolve_stop(err: ResolveError) -> Stop {
    match err {
        ResolveError::Denied(d) => Stop::Deny(d),
        ResolveError::Io(_, err) => io_code(err),
        ResolveError::NotAbsolute(_) => Stop::Code(ErrorCode::Invalid),
    }
}

macro_rules! checked {
    ($self:ident, $check:expr) => {
        if let Err(stop) = $check {
            return Err($self.stop(stop));
        }
    };
}

impl preopens::Host for FsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.inner)?;
        let catch_all = self.policy.empty.is_some();
        for (fd, name) in &dirs {
            if catch_all && name == CATCH_ALL {
                self.policy.catch_all.insert(fd.rep());
            } else {
                self.policy
                    .paths
                    .insert(fd.rep(), normalize(Path::new(name)));
            }
        }
        Ok(dirs)
    }
}

impl types::Host for FsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl HostDescriptor for FsView<'_> {
    async fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
        len: Filesize,
        advice: Advice,
    ) -> FsResult<()> {
        self.inner.advise(fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.inner.sync_data(fd).await
    }

    async fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        self.inner.get_flags(fd).await
    }

    async fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        self.inner.get_type(fd).await
    }

    async fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        checked!(self, self.check_descriptor_write(&fd));
        self.inner.set_size(fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        checked!(self, self.check_descriptor_write(&fd));
        self.inner.set_times(fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        self.inner.read(fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        checked!(self, self.check_descriptor_write(&fd));
        self.inner.write(fd, buf, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DirectoryEntryStream>> {
        checked!(self, self.check_descriptor_read(&fd));
        self.inner.read_directory(fd).await
    }

    async fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        self.inner.sync(fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let target = self.target(&fd, &path, true);
        checked!(self, target.and_then(|t| self.check_write(&t, false)));
        self.inner.create_directory_at(fd, path).await
    }

    async fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        checked!(self, self.check_descriptor_read(&fd));
        self.inner.stat(fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        checked!(self, self.target(&fd, &path, false));
        self.inner.stat_at(fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let target = self.target(&fd, &path, true);
        checked!(self, target.and_then(|t| self.check_write(&t, follow)));
        self.inner
            .set_times_at(fd, path_flags, path, atim, mtim)
            .await
    }

    async fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path_flags: PathFlags,
        old_path: String,
        new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let follow = old_path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let check = (|| {
            // The source: a hard link to a file is a way to write it.
            let source = self.target(&fd, &old_path, true)?;
            self.check_write(&source, follow)
                .map_err(|stop| match stop {
                    Stop::Deny(mut d) if d.kind == Kind::Path => {
                        d.attempted = format!("hard link of {}", source.display());
                        Stop::Deny(d)
                    }
                    other => other,
                })?;
            let dest = self.target(&new_descriptor, &new_path, true)?;
            let dest_real = self.check_write(&dest, false)?;
            if !follow {
                // A hard link to a symbolic link is a copy of the link.
                self.check_move(&source, &dest_real, &dest)?;
            }
            Ok(())
        })();
        checked!(self, check);
        self.inner
            .link_at(fd, old_path_flags, old_path, new_descriptor, new_path)
            .await
    }

    async fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let write = mutating_open(oflags, flags);
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let climbs = climbs_after_name(&path);
        let target = match self.target(&fd, &path, write) {
            Ok(t) => t,
            Err(stop) => return Err(self.stop(stop)),
        };
        if write {
            checked!(self, self.check_write(&target, follow));
        }
        let opened = self
            .inner
            .open_at(fd, path_flags, path, oflags, flags)
            .await?;
        if write {
            // Again on what was opened: the path may have changed since.
            let landed = self
                .inner
                .table
                .get(&opened)
                .map_err(|_| Stop::Code(ErrorCode::BadDescriptor))
                .and_then(|d| resolve::real_path(&descriptor_fd(d)).map_err(io_code))
                .and_then(|real| self.grants().check_path(&real, true).map_err(Stop::Deny));
            if let Err(stop) = landed {
                let _ = self.inner.table.delete(opened);
                return Err(self.stop(stop));
            }
        }
        // A descriptor reached through `name/..` is wherever the kernel
        // put it (`current/..` may be a read-only grant while its text says
        // otherwise): later checks on it start from its real path.
        let target = if climbs {
            match self
                .inner
                .table
                .get(&opened)
                .map_err(|_| Stop::Code(ErrorCode::BadDescriptor))
                .and_then(|d| resolve::real_path(&descriptor_fd(d)).map_err(io_code))
            {
                Ok(real) => real,
                Err(stop) => {
                    let _ = self.inner.table.delete(opened);
                    return Err(self.stop(stop));
                }
            }
        } else {
            target
        };
        self.policy.paths.insert(opened.rep(), target);
        Ok(opened)
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.policy.paths.remove(&fd.rep());
        self.policy.catch_all.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        checked!(self, self.target(&fd, &path, false));
        self.inner.readlink_at(fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let target = self.target(&fd, &path, true);
        checked!(self, target.and_then(|t| self.check_write(&t, false)));
        self.inner.remove_directory_at(fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let check = (|| {
            let source = self.target(&fd, &old_path, true)?;
            let source_real = self.check_write(&source, false)?;
            self.check_no_grant_inside(&source, &source_real)?;
            let dest = self.target(&new_fd, &new_path, true)?;
            let dest_real = self.check_write(&dest, false)?;
            // Moving a relative link changes what it points to.
            self.check_move(&source, &dest_real, &dest)
        })();
        checked!(self, check);
        self.inner.rename_at(fd, old_path, new_fd, new_path).await
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let check = (|| {
            let link = self.target(&fd, &dest_path, true)?;
            let real = self.check_write(&link, false)?;
            self.check_link_text(&real, &src_path, &link)
        })();
        checked!(self, check);
        self.inner.symlink_at(fd, src_path, dest_path).await
    }

    async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let target = self.target(&fd, &path, true);
        checked!(self, target.and_then(|t| self.check_write(&t, false)));
        self.inner.unlink_file_at(fd, path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        self.inner.read_via_stream(fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        checked!(self, self.check_descriptor_write(&fd));
        self.inner.write_via_stream(fd, offset)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        checked!(self, self.check_descriptor_write(&fd));
        self.inner.append_via_stream(fd)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        self.inner.is_same_object(a, b).await
    }

    async fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        checked!(self, self.check_descriptor_read(&fd));
        self.inner.metadata_hash(fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        checked!(self, self.target(&fd, &path, false));
        self.inner.metadata_hash_at(fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for FsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<DirectoryEntryStream>,
    ) -> FsResult<Option<DirectoryEntry>> {
        self.inner.read_directory_entry(stream).await
    }

    fn drop(&mut self, stream: Resource<DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
