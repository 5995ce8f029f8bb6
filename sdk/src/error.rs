//! Constructors and conversions for [`HookError`], and small helpers for the
//! other generated records.

use std::fmt;

use crate::{
    Capabilities, Denial, Failure, HealthCheck, HealthStatus, HookError, ParamSpec, Report,
};

impl HookError {
    /// The hook ran and failed.
    pub fn failed(message: impl Into<String>) -> Self {
        HookError::Failed(Failure {
            message: message.into(),
            stderr_tail: None,
        })
    }

    /// The hook ran a command that failed; keeps the tail of its stderr.
    pub fn failed_with_stderr(message: impl Into<String>, stderr: &[u8]) -> Self {
        HookError::Failed(Failure {
            message: message.into(),
            stderr_tail: Some(tail_lines(&String::from_utf8_lossy(stderr), 20)),
        })
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        HookError::InvalidInput(message.into())
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        HookError::Unsupported(message.into())
    }
}

/// The last `n` non-empty lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl HookError {
    /// One readable message (wit-bindgen's `Display` is `Debug`-shaped).
    pub fn message(&self) -> String {
        let mut f = String::new();
        let _ = self.write_message(&mut f);
        f
    }

    fn write_message(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            HookError::Unsupported(m) => write!(f, "unsupported: {m}"),
            HookError::Denied(Denial {
                kind,
                attempted,
                grant,
            }) if kind == "never" => write!(f, "denied: `{attempted}` is refused: {grant}"),
            HookError::Denied(Denial {
                kind,
                attempted,
                grant,
            }) => write!(
                f,
                "denied: {kind} `{attempted}` is not granted; add {grant}"
            ),
            HookError::Failed(Failure {
                message,
                stderr_tail,
            }) => match stderr_tail {
                Some(tail) if !tail.is_empty() => write!(f, "{message}\n{tail}"),
                _ => write!(f, "{message}"),
            },
            HookError::Timeout(m) => write!(f, "timeout: {m}"),
            HookError::InvalidInput(m) => write!(f, "invalid input: {m}"),
        }
    }
}

/// The newest refusal of this hook call that nobody has taken yet: the
/// typed form of a WASI error that only says "not permitted".
pub fn take_denial() -> Option<Denial> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::rewind::hooks::sandbox::take_denial()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        None
    }
}

impl From<std::io::Error> for HookError {
    fn from(err: std::io::Error) -> Self {
        // A refused file or socket reaches the guest as a plain OS error;
        // the sandbox kept the refusal, with the grant that would allow it.
        if matches!(
            err.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
        ) && let Some(denial) = take_denial()
        {
            return HookError::Denied(denial);
        }
        match err.kind() {
            std::io::ErrorKind::PermissionDenied => HookError::failed(format!(
                "{err} (is the path granted, and writable if it is written to?)"
            )),
            _ => HookError::failed(err.to_string()),
        }
    }
}

impl From<serde_json::Error> for HookError {
    fn from(err: serde_json::Error) -> Self {
        HookError::failed(format!("JSON: {err}"))
    }
}

impl Report {
    pub fn new(summary: impl Into<String>) -> Self {
        Report {
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    /// Add a structured detail recorded in the run manifest.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((key.into(), value.into()));
        self
    }
}

impl HealthCheck {
    pub fn new(name: impl Into<String>, status: HealthStatus, detail: impl Into<String>) -> Self {
        HealthCheck {
            name: name.into(),
            status,
            detail: detail.into(),
            latency_ms: 0,
        }
    }
}

impl ParamSpec {
    pub fn required(name: &str, description: &str) -> Self {
        ParamSpec {
            name: name.into(),
            description: description.into(),
            required: true,
            default_value: None,
        }
    }

    pub fn optional(name: &str, description: &str, default_value: &str) -> Self {
        ParamSpec {
            name: name.into(),
            description: description.into(),
            required: false,
            default_value: Some(default_value.into()),
        }
    }
}

// The type is generated by wit-bindgen, so `#[derive(Default)]` is not an option.
#[allow(clippy::derivable_impls)]
impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            exec: Vec::new(),
            paths: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
        }
    }
}
