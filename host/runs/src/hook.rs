//! `rewind hook`: one hook of one plugin, outside a run. The CLI resolves
//! what to call (a .wasm file with `--grant-*` flags, or an instance of
//! rewind.toml) into a [`HookTarget`], calls [`run_hook`] and prints the
//! [`HookRun`]; everything in between is here.

use std::path::{Path, PathBuf};

use rewind_core::{ExitCode, HookKind, LogLevel};
use rewind_grants::paths::{HostPrivate, PathGrant};
use rewind_sandbox::bindings::rewind::hooks::types::{Event, EventKind, HealthStatus, HookContext};
use rewind_sandbox::engine::{EngineError, Runtime};
use rewind_sandbox::plugin::PluginError;
use rewind_sandbox::{CallOutcome, HookInput, HookOutput, LogSink, SandboxSpec, call_hook};
use rewind_store::{ArtifactRecord, Store};

/// A plugin ready to load and call, with what it runs as.
#[derive(Debug, Clone)]
pub struct HookTarget {
    /// The .wasm file.
    pub source: PathBuf,
    /// Its expected sha256, checked before it is compiled.
    pub pin: Option<String>,
    /// Instance name, grants and limits.
    pub spec: SandboxSpec,
    /// The instance's params, handed to the hook as JSON.
    pub params: serde_json::Value,
    /// The project named in the hook's context.
    pub project: String,
    /// The environment named in the hook's context.
    pub environment: String,
}

/// The event a `notify` call delivers, as the options spell it.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// `info`, `success`, `warning`, `error`, `rollback-success` or `rollback-failed`.
    pub kind: String,
    /// The event's title.
    pub title: String,
    /// The event's message.
    pub message: String,
}

/// One hook call: which hook, on what, with which inputs.
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// The hook to call.
    pub hook: HookKind,
    /// The artifact store the call writes to (and reads given artifacts from).
    pub store: rewind_store::StoreLocation,
    /// Artifacts for restore or revert from what `rewind hook … backup --json`
    /// printed (or a bare list of records).
    pub artifacts: Option<PathBuf>,
    /// Artifacts for restore or revert from a run in the store (id or prefix).
    pub run: Option<String>,
    /// The hook's context says it is a dry run.
    pub dry_run: bool,
    /// The hook's context names this target explicitly.
    pub target: Option<String>,
    /// What a `notify` call delivers.
    pub event: EventSpec,
    /// Print log lines at this level and above as they arrive.
    pub echo: Option<LogLevel>,
}

/// What a hook call did.
#[derive(Debug)]
pub struct HookRun {
    /// The call's result, logs and duration.
    pub outcome: CallOutcome,
    /// What `rewind hook` exits with: failed when the call failed or a
    /// health check is unhealthy.
    pub code: ExitCode,
}

/// Why [`run_hook`] did not call the hook. (A call that fails is not an
/// error: it is a [`HookRun`] whose outcome holds the failure.)
#[derive(Debug, thiserror::Error)]
pub enum HookRunError {
    /// An ad-hoc path grant contains the store or the compile cache.
    #[error(
        "--grant-path {}{} contains {} {} ({})",
        if grant.writable { "" } else { "ro:" },
        grant.path.display(),
        private.what,
        private.path.display(),
        private.why
    )]
    GrantContainsPrivate {
        /// The grant.
        grant: PathGrant,
        /// What it contains.
        private: HostPrivate,
    },
    /// The artifact store could not be opened.
    #[error("opening the artifact store {}", root.display())]
    OpenStore {
        /// The store's root.
        root: PathBuf,
        /// Why it could not be opened.
        source: std::io::Error,
    },
    /// `--run` names no run of the store (or it could not be read).
    #[error(transparent)]
    FindRun(std::io::Error),
    /// The run `--run` names holds nothing of this instance.
    #[error("run {run} holds no artifacts of `{instance}`")]
    NoArtifacts {
        /// The run's id.
        run: String,
        /// The instance.
        instance: String,
    },
    /// The `--artifacts` file could not be read.
    #[error("reading artifacts from {}", path.display())]
    ReadArtifacts {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The `--artifacts` file is not JSON.
    #[error("{} is not JSON", path.display())]
    ArtifactsNotJson {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// The `--artifacts` file is JSON, but not a list of artifact records.
    #[error(
        "{} does not hold artifacts: pass the JSON that `rewind hook <plugin> backup --json` printed",
        path.display()
    )]
    NotArtifacts {
        /// The file.
        path: PathBuf,
        /// What did not match.
        source: serde_json::Error,
    },
    /// An artifact of the `--artifacts` file was made by another instance.
    #[error("{}: artifact `{name}` was made by instance `{made_by}`, not `{instance}`", path.display())]
    ForeignArtifact {
        /// The file.
        path: PathBuf,
        /// The artifact's name.
        name: String,
        /// The instance that made it.
        made_by: String,
        /// The instance the hook runs as.
        instance: String,
    },
    /// A given artifact's blob is missing or does not match its digest.
    #[error("artifact `{name}` ({digest}) failed verification; refusing to {hook} from it")]
    Unverified {
        /// The artifact's name.
        name: String,
        /// Its blob's digest.
        digest: String,
        /// The hook that would have read it.
        hook: HookKind,
        /// What verification found.
        source: std::io::Error,
    },
    /// The engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// `--event-kind` is not an event kind.
    #[error(
        "--event-kind `{0}` is not one of: info, success, warning, error, rollback-success, rollback-failed"
    )]
    EventKind(String),
}

impl HookRunError {
    /// The exit code `rewind hook` ends with for this error: each is a
    /// usage, configuration or environment error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            HookRunError::GrantContainsPrivate { .. }
            | HookRunError::OpenStore { .. }
            | HookRunError::FindRun(_)
            | HookRunError::NoArtifacts { .. }
            | HookRunError::ReadArtifacts { .. }
            | HookRunError::ArtifactsNotJson { .. }
            | HookRunError::NotArtifacts { .. }
            | HookRunError::ForeignArtifact { .. }
            | HookRunError::Unverified { .. }
            | HookRunError::Engine(_)
            | HookRunError::Plugin(_)
            | HookRunError::EventKind(_) => ExitCode::Usage,
        }
    }
}

type Result<T, E = HookRunError> = std::result::Result<T, E>;

/// Check the target's grants against the store and the compile cache, gather
/// and verify the given artifacts, load the plugin (pin first) and call the
/// hook once.
pub fn run_hook(target: &HookTarget, args: &HookRequest) -> Result<HookRun> {
    // Ad-hoc grants meet the same rule as rewind.toml's: no grant may
    // contain the store (a local one) or the compile cache.
    let cache = Runtime::default_cache_dir();
    let private = match &args.store {
        rewind_store::StoreLocation::Local(root) => {
            rewind_grants::paths::host_private(root, cache.as_deref())
        }
        rewind_store::StoreLocation::S3(_) => {
            rewind_grants::paths::host_private(Path::new("/"), cache.as_deref())
                .into_iter()
                .filter(|p| p.path != Path::new("/"))
                .collect()
        }
    };
    for private in private {
        if let Some(grant) = target.spec.grants.grant_containing(&private.path) {
            return Err(HookRunError::GrantContainsPrivate {
                grant: grant.clone(),
                private,
            });
        }
    }
    let store = Store::open_at(&args.store).map_err(|source| HookRunError::OpenStore {
        root: PathBuf::from(args.store.display()),
        source,
    })?;

    let given = match (&args.artifacts, &args.run) {
        (Some(path), _) => read_artifacts(path, &target.spec.instance)?,
        (None, Some(run)) => {
            let run = store.find_run(run).map_err(HookRunError::FindRun)?;
            let records: Vec<ArtifactRecord> = run
                .artifacts()
                .filter(|a| a.instance == target.spec.instance)
                .cloned()
                .collect();
            if records.is_empty() {
                return Err(HookRunError::NoArtifacts {
                    run: run.id,
                    instance: target.spec.instance.clone(),
                });
            }
            records
        }
        (None, None) => Vec::new(),
    };
    if matches!(args.hook, HookKind::Restore | HookKind::Revert) {
        for record in &given {
            store
                .check_stored(&record.blob, &|_| {})
                .map_err(|source| HookRunError::Unverified {
                    name: record.name.clone(),
                    digest: record.blob.digest.clone(),
                    hook: args.hook,
                    source,
                })?;
        }
    }

    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let plugin = rewind_sandbox::plugin::load(&runtime, &target.source, target.pin.as_deref())?;
    let run_id = format!("hook-{}", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"));
    let ctx = context(target, &run_id, args.dry_run, args.target.clone());
    let input = match args.hook {
        HookKind::Backup => HookInput::Backup,
        HookKind::Restore => HookInput::Restore(&given),
        HookKind::Revert => HookInput::Revert(&given),
        HookKind::Health => HookInput::Health,
        HookKind::Notify => HookInput::Notify(event(&args.event, target, &run_id)?),
    };
    let outcome = call_hook(
        &plugin,
        &target.spec,
        &store,
        ctx,
        input,
        LogSink::new(args.echo),
    );
    let code = match &outcome.result {
        Ok(HookOutput::Health(report))
            if report
                .checks
                .iter()
                .any(|c| c.status == HealthStatus::Unhealthy) =>
        {
            ExitCode::Failed
        }
        Ok(_) => ExitCode::Ok,
        Err(_) => ExitCode::Failed,
    };
    Ok(HookRun { outcome, code })
}

fn context(
    target: &HookTarget,
    run_id: &str,
    dry_run: bool,
    explicit_target: Option<String>,
) -> HookContext {
    HookContext {
        run_id: run_id.to_string(),
        project: target.project.clone(),
        environment: target.environment.clone(),
        instance: target.spec.instance.clone(),
        dry_run,
        params_json: target.params.to_string(),
        target: explicit_target,
    }
}

/// Accept what `rewind hook … backup --json` printed, or a bare list of records.
fn read_artifacts(path: &Path, instance: &str) -> Result<Vec<ArtifactRecord>> {
    let text = std::fs::read_to_string(path).map_err(|source| HookRunError::ReadArtifacts {
        path: path.to_path_buf(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| HookRunError::ArtifactsNotJson {
            path: path.to_path_buf(),
            source,
        })?;
    let list = match value.get("result").and_then(|r| r.get("artifacts")) {
        Some(list) => list.clone(),
        None => value,
    };
    let records: Vec<ArtifactRecord> =
        serde_json::from_value(list).map_err(|source| HookRunError::NotArtifacts {
            path: path.to_path_buf(),
            source,
        })?;
    if let Some(other) = records.iter().find(|r| r.instance != instance) {
        return Err(HookRunError::ForeignArtifact {
            path: path.to_path_buf(),
            name: other.name.clone(),
            made_by: other.instance.clone(),
            instance: instance.to_string(),
        });
    }
    Ok(records)
}

fn event(spec: &EventSpec, target: &HookTarget, run_id: &str) -> Result<Event> {
    let kind = match spec.kind.as_str() {
        "info" => EventKind::Info,
        "success" => EventKind::Success,
        "warning" => EventKind::Warning,
        "error" => EventKind::Error,
        "rollback-success" => EventKind::RollbackSuccess,
        "rollback-failed" => EventKind::RollbackFailed,
        other => return Err(HookRunError::EventKind(other.to_string())),
    };
    Ok(Event {
        kind,
        title: spec.title.clone(),
        message: spec.message.clone(),
        run_id: run_id.to_string(),
        project: target.project.clone(),
        environment: target.environment.clone(),
        timestamp: jiff::Timestamp::now().to_string(),
        fields: Vec::new(),
    })
}
