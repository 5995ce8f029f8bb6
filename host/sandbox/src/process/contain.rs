//! Every process a command starts ends when the command ends.
//!
//! A command's background child (`sleep 60 &`) or a grandchild that calls
//! `setsid` leaves the command's process group, so killing the group is not
//! enough. Two ways to catch them all:
//!
//! - **cgroup** (preferred): where the host can write a cgroup v2 hierarchy
//!   (root, found through `/proc/self/mounts`: `/sys/fs/cgroup` when
//!   unified, `/sys/fs/cgroup/unified` in hybrid mode), each command gets
//!   its own cgroup `<root>/rewind/<host pid>-<n>`. The child moves itself
//!   into it before `execve` (a write of `0` to a `cgroup.procs` descriptor
//!   opened beforehand), so every descendant is born inside it and no
//!   `setsid`, double fork or re-parenting leaves it. When the command
//!   exits or times out the host writes `1` to `cgroup.kill`, waits (at
//!   most [`DRAIN`]) until `cgroup.events` says `populated 0`, and removes
//!   the cgroup.
//! - **subreaper** (fallback: no cgroup v2, or not permitted, e.g. not
//!   root): the child becomes a child subreaper (`PR_SET_CHILD_SUBREAPER`),
//!   forks the real command and supervises it: orphaned descendants are
//!   re-parented to it rather than to init. When the command exits, or the
//!   host asks it to stop (`SIGTERM` at the timeout; `SIGTERM` as well if
//!   the host thread dies, through `PR_SET_PDEATHSIG`), it `SIGKILL`s its
//!   children (read from `/proc/thread-self/children`) until none is left,
//!   then exits as the command did. Between `fork` and `execve` only
//!   async-signal-safe calls are made, with no allocation.
//!
//! `REWIND_COMMAND_CONTAINMENT` chooses: `auto` (default: cgroup when
//! possible, else subreaper), `cgroup` (refuse commands when unavailable)
//! or `subreaper` (force the fallback, for tests). The process-group kill at
//! the timeout stays as a third net.

use std::ffi::CStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that chooses the containment.
pub const CONTAINMENT_ENV: &str = "REWIND_COMMAND_CONTAINMENT";

/// How long to wait for a killed command's processes to be gone.
const DRAIN: Duration = Duration::from_secs(5);

/// Which containment a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Auto,
    Cgroup,
    Subreaper,
}

pub(crate) fn wanted() -> Result<Want, String> {
    match std::env::var(CONTAINMENT_ENV).as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(Want::Auto),
        Ok("cgroup") => Ok(Want::Cgroup),
        Ok("subreaper") => Ok(Want::Subreaper),
        Ok(other) => Err(format!(
            "{CONTAINMENT_ENV}={other} is not one of auto, cgroup, subreaper"
        )),
    }
}

/// The containment of one command, on the host's side.
#[derive(Debug)]
pub(crate) enum Containment {
    Cgroup(Cgroup),
    Subreaper,
}

impl Containment {
    pub(crate) fn new(want: Want) -> io::Result<Containment> {
        match want {
            Want::Subreaper => Ok(Containment::Subreaper),
            Want::Cgroup => Cgroup::create().map(Containment::Cgroup),
            Want::Auto => Ok(Cgroup::create()
                .map(Containment::Cgroup)
                .unwrap_or(Containment::Subreaper)),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Containment::Cgroup(_) => "cgroup",
            Containment::Subreaper => "subreaper",
        }
    }

    /// What the child needs (plain data, usable after `fork`).
    pub(crate) fn child(&self) -> ChildContainment {
        match self {
            Containment::Cgroup(cg) => ChildContainment::Cgroup(cg.procs.as_raw_fd()),
            Containment::Subreaper => ChildContainment::Subreaper,
        }
    }

    /// Stop the command and everything it started, before the host reaps
    /// the child (`pid`, its process group leader).
    pub(crate) fn stop(&self, pid: u32) {
        let pid = pid as libc::pid_t;
        match self {
            Containment::Cgroup(cg) => {
                kill_group(pid);
                let _ = cg.kill();
            }
            // The reaper kills its descendants when asked to stop; a
            // SIGKILL would leave them to init. The group kill follows once
            // the reaper has exited (or did not in time).
            // SAFETY: plain syscall on our own child, not yet reaped.
            Containment::Subreaper => unsafe {
                libc::kill(pid, libc::SIGTERM);
            },
        }
    }

    /// After the command's child has been waited for: end whatever is left
    /// (a cgroup's leftovers) and remove the cgroup.
    pub(crate) fn finish(self) -> io::Result<()> {
        match self {
            Containment::Cgroup(cg) => cg.remove(),
            // The reaper killed every descendant before it exited.
            Containment::Subreaper => Ok(()),
        }
    }
}

/// SIGKILL a process group.
pub(crate) fn kill_group(pgid: libc::pid_t) {
    // SAFETY: plain syscall.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// One command's cgroup.
#[derive(Debug)]
pub(crate) struct Cgroup {
    dir: PathBuf,
    /// Its `cgroup.procs`, opened for writing before the child is forked.
    procs: OwnedFd,
    removed: bool,
}

/// The writable cgroup v2 hierarchy, if any.
fn cgroup2_root() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(dir.replace("\\040", " ")))
        })
    })
    .as_deref()
}

impl Cgroup {
    fn create() -> io::Result<Cgroup> {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let root = cgroup2_root()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup v2 hierarchy"))?;
        let parent = root.join("rewind");
        match fs::create_dir(&parent) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
            _ => {}
        }
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("{}-{n}", std::process::id()));
        fs::create_dir(&dir)?;
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"));
        match procs {
            Ok(file) => Ok(Cgroup {
                dir,
                procs: file.into(),
                removed: false,
            }),
            Err(err) => {
                let _ = fs::remove_dir(&dir);
                Err(err)
            }
        }
    }

    fn populated(&self) -> bool {
        fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|events| events.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    }

    /// Kill every process in the cgroup (`cgroup.kill`, or one by one on
    /// kernels before 5.14).
    fn kill(&self) -> io::Result<()> {
        match fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
        {
            Ok(mut file) => file.write_all(b"1"),
            Err(_) => {
                let pids = fs::read_to_string(self.dir.join("cgroup.procs"))?;
                for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: plain syscall.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                Ok(())
            }
        }
    }

    /// Kill what is left, wait until the cgroup is empty, remove it.
    fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        let deadline = Instant::now() + DRAIN;
        let mut nap = Duration::from_millis(1);
        while self.populated() {
            self.kill()?;
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "processes in {} did not end within {} s",
                    self.dir.display(),
                    DRAIN.as_secs()
                )));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
        fs::remove_dir(&self.dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.kill();
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// What the child does to be contained; runs between `fork` and `execve`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChildContainment {
    /// Write `0` to this `cgroup.procs` descriptor.
    Cgroup(RawFd),
    Subreaper,
}

impl ChildContainment {
    /// Join the cgroup (first thing after fork, so that every later process
    /// is born inside it).
    ///
    /// # Safety
    /// Only between `fork` and `execve`.
    pub(crate) unsafe fn enter(&self) -> io::Result<()> {
        if let ChildContainment::Cgroup(fd) = *self {
            // SAFETY: write(2) of a static buffer to a descriptor we own.
            if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The subreaper: fork the command and supervise it. Returns (`Ok`) in
    /// the process that goes on to `execve` the command; the supervisor
    /// never returns. Last thing before `execve`.
    ///
    /// # Safety
    /// Only between `fork` and `execve`: it forks again and exits.
    pub(crate) unsafe fn supervise(&self) -> io::Result<()> {
        if !matches!(self, ChildContainment::Subreaper) {
            return Ok(());
        }
        // SAFETY: async-signal-safe syscalls only; no allocation.
        unsafe {
            let host = libc::getppid();
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Asked to stop: by the host at the timeout, or when the host
            // thread that started us dies.
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0; // no SA_RESTART: waitpid returns EINTR
            if libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
            if libc::getppid() != host {
                STOP.store(true, Ordering::SeqCst);
            }
            let command = libc::fork();
            if command < 0 {
                return Err(io::Error::last_os_error());
            }
            if command == 0 {
                // The command: execve resets the handler; the death signal
                // would fire when the supervisor exits, which is harmless,
                // but the command should not carry it.
                libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                return Ok(());
            }
            // The supervisor holds nothing: not the command's pipes, not
            // std's exec-error pipe (so that `spawn` returns once the
            // command has started).
            close_everything();
            let status = supervise_command(command);
            exit_as(status)
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Close every descriptor.
unsafe fn close_everything() {
    // SAFETY: raw syscalls.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..4096 {
                libc::close(fd);
            }
        }
    }
}

/// Wait for the command (or a stop request), then kill every descendant;
/// the command's wait status (a SIGKILL status when it was stopped before
/// it ended).
unsafe fn supervise_command(command: libc::pid_t) -> libc::c_int {
    let mut command_status: Option<libc::c_int> = None;
    // SAFETY: async-signal-safe syscalls on our own children.
    unsafe {
        while !STOP.load(Ordering::SeqCst) {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == command {
                command_status = Some(status);
                break;
            }
            if pid < 0 && *libc::__errno_location() != libc::EINTR {
                break; // ECHILD: nothing left at all
            }
        }
        // Kill the children, reap one, repeat: the orphans of each killed
        // process are re-parented to us and listed in the next round.
        loop {
            kill_children();
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == command && command_status.is_none() {
                command_status = Some(status);
            }
            if pid < 0 && *libc::__errno_location() == libc::ECHILD {
                break;
            }
        }
    }
    // SIGKILL's wait status.
    command_status.unwrap_or(libc::SIGKILL)
}

/// SIGKILL every pid in `/proc/thread-self/children` (we are the only
/// thread of this process).
unsafe fn kill_children() {
    const CHILDREN: &CStr = c"/proc/thread-self/children";
    // SAFETY: open/read/kill/close with stack buffers.
    unsafe {
        let fd = libc::open(CHILDREN.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            // No procfs: the group kill is all we can do.
            libc::kill(-libc::getpgrp(), libc::SIGKILL);
            return;
        }
        let mut buf = [0u8; 4096];
        let mut pid: libc::pid_t = 0;
        let mut digits = false;
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
            for &b in &buf[..n as usize] {
                if b.is_ascii_digit() {
                    pid = pid
                        .saturating_mul(10)
                        .saturating_add((b - b'0') as libc::pid_t);
                    digits = true;
                } else {
                    if digits && pid > 0 {
                        libc::kill(pid, libc::SIGKILL);
                    }
                    pid = 0;
                    digits = false;
                }
            }
        }
        if digits && pid > 0 {
            libc::kill(pid, libc::SIGKILL);
        }
        libc::close(fd);
    }
}

/// Exit as the command did: its exit code, or its signal.
unsafe fn exit_as(status: libc::c_int) -> ! {
    // SAFETY: async-signal-safe calls; the process ends here.
    unsafe {
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let signal = libc::WTERMSIG(status);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal)
    }
}
