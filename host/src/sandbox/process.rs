//! The `process` import: run a granted command on the host.
//!
//! A command runs only if its program and arguments match an exec grant. It
//! gets an empty environment plus `PATH` and the variables the plugin names
//! (each of which must be granted), a working directory inside a granted
//! path (or an empty private one), a timeout that kills its whole process
//! group, and output capped per stream. Streaming variants connect its
//! stdout to a new blob or a verified blob to its stdin, so large dumps never
//! pass through the guest's memory.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as OsCommand, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::HookState;
use crate::bindings::rewind::hooks::process::{Command, Host, Output};
use crate::bindings::rewind::hooks::types::{ArtifactRef, Failure, HookError};
use crate::grants::normalize;
use crate::store::{ArtifactRecord, BlobInfo, BlobReader, BlobWriter};

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

/// Find `program` in the host's PATH (never in a path the plugin chose).
fn resolve_program(program: &str) -> Result<PathBuf, HookError> {
    if program.contains('/') {
        let path = Path::new(program);
        if !path.is_absolute() {
            return Err(HookError::InvalidInput(format!(
                "program `{program}` must be a bare name (looked up in PATH) or an absolute path"
            )));
        }
        return Ok(path.to_path_buf());
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| failed(format!("program `{program}` was not found in PATH")))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl HookState {
    /// Check a command against the grants and build it.
    fn prepare(&mut self, cmd: &Command) -> Result<(OsCommand, Duration), HookError> {
        let call = &self.call;
        if let Err(denial) = call.grants.check_exec(&cmd.program, &cmd.args) {
            return Err(call.denied(denial));
        }
        for name in cmd.env.iter().map(|(k, _)| k).chain(&cmd.inherit_env) {
            if let Err(denial) = call.grants.check_env(name) {
                return Err(call.denied(denial));
            }
        }
        let cwd = match &cmd.cwd {
            Some(dir) => {
                let dir = Path::new(dir);
                if !dir.is_absolute() {
                    return Err(HookError::InvalidInput(format!(
                        "working directory `{}` must be absolute",
                        dir.display()
                    )));
                }
                // Check the path as written and as the filesystem resolves
                // it, so that neither `..` nor a symlink leaves the grants.
                let lexical = normalize(dir);
                call.grants
                    .check_dir(&lexical)
                    .map_err(|d| call.denied(d))?;
                let real = lexical.canonicalize().map_err(|err| {
                    failed(format!("working directory {}: {err}", lexical.display()))
                })?;
                call.grants.check_dir(&real).map_err(|d| call.denied(d))?;
                real
            }
            None => call.workdir.path().to_path_buf(),
        };
        let program = resolve_program(&cmd.program)?;

        let mut os = OsCommand::new(&program);
        os.args(&cmd.args)
            .env_clear()
            .current_dir(&cwd)
            // Its own process group, so that a timeout kills its children too.
            .process_group(0);
        if let Some(path) = std::env::var_os("PATH") {
            os.env("PATH", path);
        }
        for name in &cmd.inherit_env {
            if let Some(value) = std::env::var_os(name) {
                os.env(name, value);
            }
        }
        for (key, value) in &cmd.env {
            os.env(key, value);
        }
        let limit = call.remaining();
        let timeout = cmd
            .timeout_ms
            .map(Duration::from_millis)
            .map_or(limit, |t| t.min(limit));
        Ok((os, timeout))
    }

    fn run_command(
        &mut self,
        cmd: &Command,
        input: Input,
        sink: Sink,
    ) -> Result<(Output, Option<BlobInfo>), HookError> {
        let (mut os, timeout) = self.prepare(cmd)?;
        let cap = self.call.limits.output_bytes;
        let line = display(cmd);
        self.call.log.line(
            super::LogLevel::Debug,
            format!("running `{line}`"),
            Vec::new(),
        );
        os.stdin(match input {
            Input::Null => Stdio::null(),
            _ => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = os
            .spawn()
            .map_err(|err| failed(format!("cannot start `{line}`: {err}")))?;

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
        let mut timed_out = false;
        let mut nap = Duration::from_millis(1);
        let status = loop {
            if let Some(rx) = &stdin_done
                && let Ok(Err(err)) = rx.try_recv()
            {
                stdin_error = Some(err);
                kill_group(&child);
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(err) => return Err(failed(format!("waiting for `{line}`: {err}"))),
            }
            if started.elapsed() >= timeout && !timed_out {
                timed_out = true;
                kill_group(&child);
            }
            thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        };
        // A grandchild that left the process group can hold the pipes open;
        // do not wait for it forever.
        let grace = Duration::from_secs(2);
        let stdout_result = stdout_rx.recv_timeout(grace);
        let stderr_result = stderr_rx
            .recv_timeout(grace)
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if let Some(rx) = stdin_done
            && stdin_error.is_none()
            && let Ok(Err(err)) = rx.recv_timeout(grace)
        {
            stdin_error = Some(err);
        }
        let duration_ms = started.elapsed().as_millis() as u64;

        if timed_out {
            return Err(HookError::Timeout(format!(
                "`{line}` did not finish within {:.1} s and was killed",
                timeout.as_secs_f64()
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
                    "the output of `{line}` did not end after it exited"
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
fn feed_stdin(child: &mut Child, input: Input) -> Option<mpsc::Receiver<io::Result<()>>> {
    let mut stdin = child.stdin.take()?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let result = match input {
            Input::Null => Ok(()),
            Input::Bytes(bytes) => stdin.write_all(&bytes),
            Input::Blob(mut reader) => io::copy(&mut reader, &mut stdin).map(drop),
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

fn kill_group(child: &Child) {
    // SAFETY: plain syscall on the process group we created for this child.
    unsafe {
        libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
    }
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
    io::copy(&mut stream, blob).map(drop)
}
