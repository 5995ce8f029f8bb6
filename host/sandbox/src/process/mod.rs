//! The `process` import: run a granted command on the host.
//!
//! A command runs only if its program and arguments match an exec grant,
//! and only a program no plugin can write ([`program`]: bare names come
//! from [`COMMAND_PATH`], never the host's `PATH`; the canonical file runs).
//! It gets an empty environment plus `PATH=COMMAND_PATH` and the variables
//! the plugin names (each of which must be granted), a working directory
//! opened beneath its grant and entered by descriptor (or an empty private
//! one), read-only grants mounted read-only when the host may
//! ([`namespace`]), a timeout, and output capped per stream. Every process
//! it starts, however it detaches, ends when it ends ([`contain`]).
//! Streaming variants connect its stdout to a new blob or a verified blob
//! to its stdin, so large dumps never pass through the guest's memory.

mod contain;
mod namespace;
mod program;

/// Preflight for `rewind check`: the program an exec grant names exists in
/// `COMMAND_PATH` (or at its absolute path) and no plugin could replace it;
/// else the reason the command would be refused when a hook runs it.
pub fn preflight_program(
    grants: &rewind_grants::Grants,
    program: &str,
) -> Result<std::path::PathBuf, String> {
    program::resolve_program(grants, program).map_err(|err| match err {
        program::ProgramError::Invalid(m) | program::ProgramError::Missing(m) => m,
        program::ProgramError::Refused(denial) => denial.grant,
    })
}

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command as OsCommand, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::HookState;
use super::resolve::{ResolveError, resolve};
use crate::bindings::rewind::hooks::process::{Command, Host, Output};
use crate::bindings::rewind::hooks::types::{ArtifactRef, Failure, HookError};
use contain::{ChildContainment, Containment};
use namespace::{MountPlan, Workdir};
use program::{ProgramError, resolve_program};
use rewind_grants::risks::COMMAND_PATH;
use rewind_grants::{Denial, Kind};
use rewind_store::{ArtifactRecord, BlobInfo, BlobReader, BlobWriter};

/// How long a stopped command's supervisor gets to kill what it started
/// before the host kills the whole process group itself.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long to wait for a command's output to end once it and everything it
/// started are gone (only a process that escaped containment, such as a
/// root command that moved itself to another cgroup, can hold it open).
const PIPE_WAIT: Duration = Duration::from_secs(10);

/// A checked command, ready to spawn.
struct Prepared {
    os: OsCommand,
    timeout: Duration,
    containment: Containment,
    namespaced: bool,
}

/// What the child does between `fork` and `execve`, in this order: join the
/// cgroup (so everything after is inside it), enter the mount namespace and
/// mount the read-only grants, enter the working directory, and (subreaper
/// containment) fork the command under a supervisor.
struct ChildSetup {
    workdir: Workdir,
    mounts: Option<MountPlan>,
    child: ChildContainment,
}

impl ChildSetup {
    fn run(&self) -> io::Result<()> {
        // SAFETY: called by std between fork and execve only.
        unsafe {
            self.child.enter()?;
            if let Some(mounts) = &self.mounts {
                mounts.apply()?;
            }
            self.workdir.enter(self.mounts.is_some())?;
            self.child.supervise()
        }
    }
}

/// Where the command's stdin comes from.
enum Input {
    Null,
    Bytes(Vec<u8>),
    Blob(Box<BlobReader<'static>>),
}

/// Where its stdout goes.
enum Sink {
    Capture,
    Blob(Box<BlobWriter>),
}

fn failed(message: String) -> HookError {
    HookError::Failed(Failure {
        message,
        stderr_tail: None,
    })
}

impl Host for HookState {
    fn run(&mut self, cmd: Command) -> wasmtime::Result<Result<Output, HookError>> {
        let input = match cmd.stdin.clone() {
            Some(bytes) => Input::Bytes(bytes),
            None => Input::Null,
        };
        Ok(self
            .run_command(&cmd, input, Sink::Capture)
            .map(|(out, _)| out))
    }

    fn run_to_artifact(
        &mut self,
        cmd: Command,
        name: String,
        media_type: String,
    ) -> wasmtime::Result<Result<(ArtifactRef, Output), HookError>> {
        let result = (|| {
            self.reserve_artifact_name(&name)?;
            let blob = self.new_blob()?;
            let input = match cmd.stdin.clone() {
                Some(bytes) => Input::Bytes(bytes),
                None => Input::Null,
            };
            let (output, info) = self.run_command(&cmd, input, Sink::Blob(Box::new(blob)))?;
            let Some(info) = info else {
                // Non-zero exit: nothing is stored; the caller sees the code.
                return Err(HookError::Failed(Failure {
                    message: format!(
                        "`{}` exited with {}; artifact `{name}` was not stored",
                        display(&cmd),
                        exit_text(output.exit_code)
                    ),
                    stderr_tail: super::tail(&output.stderr),
                }));
            };
            let record = ArtifactRecord {
                instance: self.call.instance.clone(),
                hook: self.call.hook.to_string(),
                name: name.clone(),
                media_type,
                labels: Vec::new(),
                blob: info,
            };
            Ok((self.record_artifact(record), output))
        })();
        Ok(result)
    }

    fn run_from_artifact(
        &mut self,
        cmd: Command,
        artifact: ArtifactRef,
    ) -> wasmtime::Result<Result<Output, HookError>> {
        let result = (|| {
            let reader = self.open_artifact(&artifact)?;
            self.run_command(&cmd, Input::Blob(Box::new(reader)), Sink::Capture)
                .map(|(out, _)| out)
        })();
        Ok(result)
    }
}

fn display(cmd: &Command) -> String {
    std::iter::once(cmd.program.as_str())
        .chain(cmd.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("code {code}"),
        None => "a signal".to_string(),
    }
}

impl HookState {
    /// Check a command against the grants and build it, with everything
    /// its child needs computed before the fork.
    fn prepare(&mut self, cmd: &Command) -> Result<Prepared, HookError> {
        let call = &self.call;
        if let Err(denial) = call.grants.check_exec(&cmd.program, &cmd.args) {
            return Err(call.denied(denial));
        }
        for name in cmd.env.iter().map(|(k, _)| k).chain(&cmd.inherit_env) {
            if name == "PATH" {
                return Err(call.denied(Denial::new(
                    Kind::Never,
                    "set PATH for a command",
                    format!(
                        "every command gets PATH={COMMAND_PATH}, so that a plugin cannot choose \
                         what a program name means; grant absolute program paths instead"
                    ),
                )));
            }
            if let Err(denial) = call.grants.check_env(name) {
                return Err(call.denied(denial));
            }
        }
        let workdir = match &cmd.cwd {
            // Opened once beneath its grant; the child enters the descriptor.
            Some(dir) => match call
                .grants
                // The refusal a plugin sees names the working directory.
                .check_dir(&rewind_grants::normalize(std::path::Path::new(dir)))
                .or_else(|d| match std::path::Path::new(dir).is_absolute() {
                    true => Err(ResolveError::Denied(d)),
                    false => Ok(()), // `resolve` says it must be absolute
                })
                .and_then(|()| resolve(&call.grants, dir, false, true))
            {
                Ok(resolved) => Workdir::new(resolved.fd, &resolved.real),
                Err(ResolveError::Denied(denial)) => return Err(call.denied(denial)),
                Err(ResolveError::NotAbsolute(dir)) => {
                    return Err(HookError::InvalidInput(format!(
                        "working directory `{dir}` must be absolute"
                    )));
                }
                Err(err) => return Err(failed(format!("working directory {err}"))),
            },
            None => Workdir::open(call.workdir.path()),
        }
        .map_err(|err| failed(format!("working directory: {err}")))?;
        let program = match resolve_program(&call.grants, &cmd.program) {
            Ok(path) => path,
            Err(ProgramError::Invalid(message)) => return Err(HookError::InvalidInput(message)),
            Err(ProgramError::Missing(message)) => return Err(failed(message)),
            Err(ProgramError::Refused(denial)) => return Err(call.denied(denial)),
        };
        let mounts = if namespace::can_mount() {
            MountPlan::new(&call.grants).map_err(|err| {
                failed(format!(
                    "cannot prepare the read-only grants for `{}`: {err}",
                    display(cmd)
                ))
            })?
        } else {
            None
        };
        let want = contain::wanted().map_err(failed)?;
        let containment = Containment::new(want).map_err(|err| {
            failed(format!(
                "cannot contain `{}` in a cgroup ({}=cgroup): {err}",
                display(cmd),
                contain::CONTAINMENT_ENV
            ))
        })?;

        let mut os = OsCommand::new(&program);
        // argv[0] as the plugin wrote it (multi-call programs read it).
        os.arg0(&cmd.program)
            .args(&cmd.args)
            .env_clear()
            .env("PATH", COMMAND_PATH)
            // Its own process group, so that a timeout kills its children too.
            .process_group(0);
        for name in &cmd.inherit_env {
            if let Some(value) = std::env::var_os(name) {
                os.env(name, value);
            }
        }
        for (key, value) in &cmd.env {
            os.env(key, value);
        }
        let child = containment.child();
        let namespaced = mounts.is_some();
        let setup = ChildSetup {
            workdir,
            mounts,
            child,
        };
        // SAFETY: the closure makes only async-signal-safe syscalls on data
        // computed above, and allocates nothing.
        unsafe {
            os.pre_exec(move || setup.run());
        }
        let limit = call.remaining();
        let timeout = cmd
            .timeout_ms
            .map(Duration::from_millis)
            .map_or(limit, |t| t.min(limit));
        Ok(Prepared {
            os,
            timeout,
            containment,
            namespaced,
        })
    }

    fn run_command(
        &mut self,
        cmd: &Command,
        input: Input,
        sink: Sink,
    ) -> Result<(Output, Option<BlobInfo>), HookError> {
        let Prepared {
            mut os,
            timeout,
            containment,
            namespaced,
        } = self.prepare(cmd)?;
        let cap = self.call.limits.output_bytes;
        let line = display(cmd);
        self.call.log.line(
            super::LogLevel::Debug,
            format!(
                "running `{line}` (contained by {}{})",
                containment.name(),
                if namespaced {
                    ", read-only grants mounted read-only"
                } else {
                    ""
                }
            ),
            Vec::new(),
        );
        os.stdin(match input {
            Input::Null => Stdio::null(),
            _ => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = os.spawn().map_err(|err| {
            if err.raw_os_error() == Some(namespace::WORKDIR_MOVED) {
                failed(format!(
                    "cannot start `{line}`: its working directory was replaced while it started"
                ))
            } else {
                failed(format!("cannot start `{line}`: {err}"))
            }
        })?;
        // The command (or its supervisor) holds what it needs; the
        // descriptors the closure kept close with `os`.
        drop(os);
        if let Some(stdin) = &child.stdin {
            widen_pipe(stdin);
        }
        if let Some(stdout) = &child.stdout {
            widen_pipe(stdout);
        }

        let stdin_done = feed_stdin(&mut child, input);
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (stdout_tx, stdout_rx) = mpsc::channel();
        thread::spawn(move || {
            let result = match sink {
                Sink::Capture => capture(stdout, cap, false).map(|c| (c, None)),
                Sink::Blob(mut blob) => {
                    copy_into(stdout, &mut blob).map(|()| (Captured::default(), Some(blob)))
                }
            };
            let _ = stdout_tx.send(result);
        });
        let (stderr_tx, stderr_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = stderr_tx.send(capture(stderr, cap, true));
        });

        // Wait for exit, the deadline, or a stdin stream that failed its
        // checksum, whichever comes first.
        let mut stdin_error = None;
        let mut timed_out: Option<Duration> = None;
        let mut stopped_at: Option<Instant> = None;
        let mut nap = Duration::from_millis(1);
        let exited = ExitSignal::open(child.id());
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(err) => {
                    containment.stop(child.id());
                    return Err(failed(format!("waiting for `{line}`: {err}")));
                }
            }
            if stopped_at.is_none() {
                if let Some(rx) = &stdin_done
                    && let Ok(Err(err)) = rx.try_recv()
                {
                    stdin_error = Some(err);
                    containment.stop(child.id());
                    stopped_at = Some(Instant::now());
                } else if started.elapsed() >= timeout {
                    timed_out = Some(started.elapsed());
                    containment.stop(child.id());
                    stopped_at = Some(Instant::now());
                }
            } else if stopped_at.is_some_and(|at| at.elapsed() >= STOP_GRACE) {
                // A supervisor that did not finish in time: the whole
                // group, now (it is not reaped yet, so the id is still ours).
                contain::kill_group(child.id() as libc::pid_t);
            }
            exited.wait(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        };
        // Whatever the command left behind ends now, so its pipes close.
        if let Err(err) = containment.finish() {
            self.call.log.warn(format!(
                "after `{line}`: {err}; its remaining processes may still run"
            ));
        }
        let stdout_result = stdout_rx.recv_timeout(PIPE_WAIT);
        let stderr_result = stderr_rx
            .recv_timeout(PIPE_WAIT)
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if let Some(rx) = stdin_done
            && stdin_error.is_none()
            && let Ok(Err(err)) = rx.recv_timeout(PIPE_WAIT)
        {
            stdin_error = Some(err);
        }
        let duration_ms = started.elapsed().as_millis() as u64;

        if let Some(ran) = timed_out {
            return Err(HookError::Timeout(format!(
                "`{line}` ran for {:.1} s, its time limit, and was killed with every process it \
                 started",
                ran.as_secs_f64()
            )));
        }
        if let Some(err) = stdin_error.filter(|e| e.kind() == io::ErrorKind::InvalidData) {
            return Err(HookError::Failed(Failure {
                message: format!("{err}; `{line}` was stopped before it could use the rest"),
                stderr_tail: super::tail(&stderr_result.bytes),
            }));
        }
        let (stdout_captured, blob) = match stdout_result {
            Ok(Ok(pair)) => pair,
            Ok(Err(err)) => return Err(failed(format!("reading the output of `{line}`: {err}"))),
            Err(_) => {
                return Err(failed(format!(
                    "the output of `{line}` was still open {} s after it exited and every \
                     process it started was killed",
                    PIPE_WAIT.as_secs()
                )));
            }
        };
        let exit_code = status.code();
        let info = match blob {
            Some(blob) if exit_code == Some(0) => Some(
                blob.finish()
                    .map_err(|err| failed(format!("storing the output of `{line}`: {err}")))?,
            ),
            // Dropping an unsealed blob removes it.
            _ => None,
        };
        Ok((
            Output {
                exit_code,
                stdout: stdout_captured.bytes,
                stderr: stderr_result.bytes,
                stdout_truncated: stdout_captured.truncated,
                stderr_truncated: stderr_result.truncated,
                duration_ms,
            },
            info,
        ))
    }
}

/// Start feeding the child's stdin; the receiver gets the outcome.
/// What wakes the wait for a command: its pidfd, readable once the process
/// has exited, so a command that takes 2 ms is seen done at 2 ms rather
/// than at the end of a nap (a nap of 1 ms costs a scheduling round, which
/// on a loaded machine is 10 ms or more, and a chain pays it per step).
/// Without pidfds (Linux before 5.3), a plain nap.
struct ExitSignal(Option<std::os::fd::OwnedFd>);

impl ExitSignal {
    fn open(pid: u32) -> ExitSignal {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the child is not reaped yet, so `pid` is
        // still ours (a zombie at worst, for which the pidfd is readable).
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a descriptor the kernel just returned, owned by nobody else.
        ExitSignal((fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Return when the process exits or after `most`, whichever is first.
    fn wait(&self, most: Duration) {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.0 else {
            thread::sleep(most);
            return;
        };
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut poll, 1, most.as_millis().max(1) as libc::c_int) };
    }
}

/// Give an artifact's pipe 1 MiB instead of Linux's 64 KiB: a dump
/// streamed to or from a command then crosses in 1 MiB turns rather than
/// 64 KiB ones, each a pair of context switches between the command and
/// the host's thread (docs/performance.md, "Restore"). Best effort: a
/// smaller `fs.pipe-max-size` leaves the pipe as it was.
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

fn feed_stdin(child: &mut Child, input: Input) -> Option<mpsc::Receiver<io::Result<()>>> {
    let mut stdin = child.stdin.take()?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let result = match input {
            Input::Null => Ok(()),
            Input::Bytes(bytes) => stdin.write_all(&bytes),
            Input::Blob(mut reader) => copy_large(&mut reader, &mut stdin),
        };
        // A command that exits without reading all its input is its own
        // business (its exit code says how it went); a corrupt artifact is not.
        let result = match result {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        };
        drop(stdin);
        let _ = tx.send(result);
    });
    Some(rx)
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Read a stream to its end, keeping at most `cap` bytes: the first ones,
/// or the last ones when `keep_tail` (stderr: the error is usually last).
fn capture(mut stream: impl Read, cap: usize, keep_tail: bool) -> io::Result<Captured> {
    let mut kept: VecDeque<u8> = VecDeque::new();
    let mut truncated = false;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if keep_tail {
            kept.extend(&buf[..n]);
            if kept.len() > cap {
                kept.drain(..kept.len() - cap);
                truncated = true;
            }
        } else {
            let room = cap.saturating_sub(kept.len());
            kept.extend(&buf[..n.min(room)]);
            truncated |= n > room;
        }
    }
    Ok(Captured {
        bytes: kept.into(),
        truncated,
    })
}

fn copy_into(mut stream: impl Read, blob: &mut BlobWriter) -> io::Result<()> {
    copy_large(&mut stream, blob)
}

/// `io::copy` with a 256 KiB buffer instead of its 8 KiB: a dump of a
/// gigabyte through pipes is then ~4,000 reads and writes instead of
/// ~130,000 (a pipe holds 64 KiB, so a read returns up to that, and a write
/// of more hands it over in one call).
fn copy_large(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0; 256 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        to.write_all(&buf[..n])?;
    }
}
