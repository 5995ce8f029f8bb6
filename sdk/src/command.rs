use std::time::Duration;

use crate::bindings::rewind::hooks::process;
use crate::{ArtifactRef, HookError};

/// A command to run on the host, within the instance's `exec` grants.
///
/// ```no_run
/// # use rewind_sdk::{Command, HookError};
/// # fn f() -> Result<(), HookError> {
/// let out = Command::new("git").args(["rev-parse", "HEAD"]).cwd("/srv/app").run()?;
/// let commit = out.stdout_text().trim().to_string();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    inner: process::Command,
}

/// What a finished command produced.
pub type Output = process::Output;

impl Command {
    /// A command running `program` (looked up in the host's fixed PATH).
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            inner: process::Command {
                program: program.into(),
                args: Vec::new(),
                env: Vec::new(),
                inherit_env: Vec::new(),
                cwd: None,
                timeout_ms: None,
                stdin: None,
            },
        }
    }

    /// Append one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.inner.args.push(arg.into());
        self
    }

    /// Append several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set a variable to a literal value.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.env.push((key.into(), value.into()));
        self
    }

    /// Pass a host environment variable through; it must be granted.
    pub fn inherit_env(mut self, key: impl Into<String>) -> Self {
        self.inner.inherit_env.push(key.into());
        self
    }

    /// Set the command's `name` from the granted host variable `source`:
    /// passed through when the names match, else copied as a literal (then
    /// `name` must be granted too). Nothing is set when `source` is unset.
    pub fn env_from(self, name: &str, source: &str) -> Self {
        if name == source {
            return self.inherit_env(source);
        }
        match std::env::var(source) {
            Ok(value) => self.env(name, value),
            Err(_) => self,
        }
    }

    /// Working directory; must be inside a granted path.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.inner.cwd = Some(dir.into());
        self
    }

    /// Kill the command after this long (never longer than the instance's limit).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Bytes to write to the command's stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.inner.stdin = Some(bytes.into());
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        std::iter::once(self.inner.program.as_str())
            .chain(self.inner.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run and return the output, whatever the exit code.
    pub fn output(&self) -> Result<Output, HookError> {
        process::run(&self.inner)
    }

    /// Run and require exit code 0; otherwise a `failed` error with the
    /// command line, the exit code and the tail of stderr.
    pub fn run(&self) -> Result<Output, HookError> {
        let out = self.output()?;
        self.check(&out)?;
        Ok(out)
    }

    /// Run, streaming stdout into a new artifact (exit code 0 required).
    pub fn run_to_artifact(&self, name: &str, media_type: &str) -> Result<ArtifactRef, HookError> {
        let (artifact, out) = process::run_to_artifact(&self.inner, name, media_type)?;
        self.check(&out)?;
        Ok(artifact)
    }

    /// Run with an artifact streamed into stdin (exit code 0 required).
    pub fn run_from_artifact(&self, artifact: &ArtifactRef) -> Result<Output, HookError> {
        let out = process::run_from_artifact(&self.inner, artifact)?;
        self.check(&out)?;
        Ok(out)
    }

    fn check(&self, out: &Output) -> Result<(), HookError> {
        match out.exit_code {
            Some(0) => Ok(()),
            Some(code) => Err(HookError::failed_with_stderr(
                format!("`{}` exited with code {code}", self.display()),
                &out.stderr,
            )),
            None => Err(HookError::failed_with_stderr(
                format!("`{}` was killed by a signal", self.display()),
                &out.stderr,
            )),
        }
    }
}

impl process::Output {
    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Did the command exit with code 0?
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}
