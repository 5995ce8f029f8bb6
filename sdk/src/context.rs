use serde::de::DeserializeOwned;

use crate::{HookContext, HookError};

/// What the host told this hook call: the run, the instance, dry-run, the
/// operator's `params` and an optional explicit target.
#[derive(Debug, Clone)]
pub struct Context {
    raw: HookContext,
}

impl Context {
    /// Wrap the context the host passed in.
    pub fn new(raw: HookContext) -> Self {
        Self { raw }
    }

    /// The instance's `params` table, deserialized: usually into a struct
    /// declared with [`params!`](crate::params!), which refuses unknown
    /// keys and values of the wrong type with an `invalid-input` error
    /// naming the key.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        serde_json::from_str(&self.raw.params_json).map_err(|err| {
            HookError::InvalidInput(format!("params of instance `{}`: {err}", self.raw.instance))
        })
    }

    /// The id of the run this call belongs to.
    pub fn run_id(&self) -> &str {
        &self.raw.run_id
    }

    /// The project name from rewind.toml.
    pub fn project(&self) -> &str {
        &self.raw.project
    }

    /// The environment (`production`, `staging`, …) from rewind.toml.
    pub fn environment(&self) -> &str {
        &self.raw.environment
    }

    /// The operator's name for this plugin instance.
    pub fn instance(&self) -> &str {
        &self.raw.instance
    }

    /// When true, change nothing; report what would be done.
    pub fn dry_run(&self) -> bool {
        self.raw.dry_run
    }

    /// An explicit target (release, commit, tag, revision) given by the operator.
    pub fn target(&self) -> Option<&str> {
        self.raw.target.as_deref()
    }

    /// The context exactly as the host passed it.
    pub fn raw(&self) -> &HookContext {
        &self.raw
    }
}
