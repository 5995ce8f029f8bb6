//! `rewind hook`: one hook of one plugin, outside a run. The CLI resolves
//! what to call (a .wasm file with `--grant-*` flags, or an instance of
//! rewind.toml) into a [`HookTarget`], calls [`run_hook`] and prints the
//! [`HookRun`]; everything in between is here.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use rewind_core::{ExitCode, HookKind, LogLevel};
use rewind_sandbox::bindings::rewind::hooks::types::{Event, EventKind, HealthStatus, HookContext};
use rewind_sandbox::engine::Runtime;
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
            bail!(
                "--grant-path {}{} contains {} {} ({})",
                if grant.writable { "" } else { "ro:" },
                grant.path.display(),
                private.what,
                private.path.display(),
                private.why
            );
        }
    }
    let store = Store::open_at(&args.store)
        .with_context(|| format!("opening the artifact store {}", args.store.display()))?;

    let given = match (&args.artifacts, &args.run) {
        (Some(path), _) => read_artifacts(path, &target.spec.instance)?,
        (None, Some(run)) => {
            let run = store.find_run(run)?;
            let records: Vec<ArtifactRecord> = run
                .artifacts()
                .filter(|a| a.instance == target.spec.instance)
                .cloned()
                .collect();
            if records.is_empty() {
                bail!(
                    "run {} holds no artifacts of `{}`",
                    run.id,
                    target.spec.instance
                );
            }
            records
        }
        (None, None) => Vec::new(),
    };
    if matches!(args.hook, HookKind::Restore | HookKind::Revert) {
        for record in &given {
            store.verify_blob(&record.blob).with_context(|| {
                format!(
                    "artifact `{}` ({}) failed verification; refusing to {} from it",
                    record.name, record.blob.digest, args.hook
                )
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
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading artifacts from {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let list = match value.get("result").and_then(|r| r.get("artifacts")) {
        Some(list) => list.clone(),
        None => value,
    };
    let records: Vec<ArtifactRecord> = serde_json::from_value(list).with_context(|| {
        format!(
            "{} does not hold artifacts: pass the JSON that `rewind hook <plugin> backup --json` printed",
            path.display()
        )
    })?;
    if let Some(other) = records.iter().find(|r| r.instance != instance) {
        bail!(
            "{}: artifact `{}` was made by instance `{}`, not `{instance}`",
            path.display(),
            other.name,
            other.instance
        );
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
        other => bail!(
            "--event-kind `{other}` is not one of: info, success, warning, error, rollback-success, rollback-failed"
        ),
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
