//! `rewind hook`: run one hook of one plugin.

use std::path::Path;

use anyhow::Context as _;

use super::Result;
use rewind::bindings::rewind::hooks::types::{Event, EventKind, HealthStatus, HookContext};
use rewind::plugin::HookKind;
use rewind::sandbox::{HookInput, HookOutput, LogLevel, LogSink, call_hook};
use rewind::store::{ArtifactRecord, Store};
use serde_json::json;

use super::target::{self, PluginTarget};
use super::{Cli, HookArgs};
use rewind::exit::ExitCode;

pub const AFTER_HELP: &str = "\
A .wasm file runs with only what the --grant-* options give it; an instance
runs with the params, grants and limits of its [plugins.<name>] table.

Examples:
  # a health check against a local server
  rewind hook plugins/http-health.wasm health \\
      --grant-http http://127.0.0.1:8080 --param url=http://127.0.0.1:8080/health

  # back up where `current` points, then switch it back
  rewind hook release-symlink.wasm backup --grant-path /srv/app \\
      --param base=/srv/app --json > backup.json
  rewind hook release-symlink.wasm revert --grant-path /srv/app \\
      --param base=/srv/app --artifacts backup.json

  # an instance from rewind.toml, restoring what it wrote in a backup run
  rewind hook db backup
  rewind hook db restore --run 20261123-171500";

pub fn run(cli: &Cli, args: &HookArgs, echo: Option<LogLevel>) -> Result<ExitCode> {
    let target = target::resolve(cli, &args.plugin, &args.adhoc)?;
    let store_root = match (&args.store, &target.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => config.store.root(),
        (None, None) => rewind::store::default_root(),
    };
    // Ad-hoc grants meet the same rule as rewind.toml's: no grant may
    // contain the store or the compile cache.
    let cache = rewind::engine::Runtime::default_cache_dir();
    for private in rewind::grants::paths::host_private(&store_root, cache.as_deref()) {
        if let Some(grant) = target.spec.grants.grant_containing(&private.path) {
            fail!(
                "--grant-path {}{} contains {} {} ({})",
                if grant.writable { "" } else { "ro:" },
                grant.path.display(),
                private.what,
                private.path.display(),
                private.why
            );
        }
    }
    let store = Store::open(&store_root)
        .with_context(|| format!("opening the artifact store {}", store_root.display()))?;

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
                fail!(
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

    let runtime = super::runtime()?;
    let plugin = rewind::plugin::load(&runtime, &target.source, target.pin.as_deref())?;
    let run_id = format!("hook-{}", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"));
    let ctx = context(&target, &run_id, args.dry_run, args.target.clone());
    let input = match args.hook {
        HookKind::Backup => HookInput::Backup,
        HookKind::Restore => HookInput::Restore(&given),
        HookKind::Revert => HookInput::Revert(&given),
        HookKind::Health => HookInput::Health,
        HookKind::Notify => HookInput::Notify(event(args, &target, &run_id)?),
    };
    // In JSON mode the log goes into the JSON, not onto the terminal.
    let echo = if args.json { None } else { echo };
    let outcome = call_hook(
        &plugin,
        &target.spec,
        &store,
        ctx,
        input,
        LogSink::new(echo),
    );

    let who = format!("{} {}", target.spec.instance, args.hook);
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
    if args.json {
        let mut out = json!({
            "instance": target.spec.instance,
            "hook": args.hook,
            "ok": code == ExitCode::Ok,
            "duration_ms": outcome.duration.as_millis() as u64,
            "logs": outcome.logs,
        });
        match &outcome.result {
            Ok(output) => out["result"] = output_json(output),
            Err(err) => out["error"] = serde_json::to_value(err)?,
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(code);
    }
    let ms = outcome.duration.as_millis();
    match outcome.result {
        Ok(output) => print_output(&who, &output, ms),
        Err(err) => eprintln!("error: {err}"),
    }
    Ok(code)
}

pub fn context(
    target: &PluginTarget,
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
        fail!(
            "{}: artifact `{}` was made by instance `{}`, not `{instance}`",
            path.display(),
            other.name,
            other.instance
        );
    }
    Ok(records)
}

fn event(args: &HookArgs, target: &PluginTarget, run_id: &str) -> Result<Event> {
    let kind = match args.event.event_kind.as_str() {
        "info" => EventKind::Info,
        "success" => EventKind::Success,
        "warning" => EventKind::Warning,
        "error" => EventKind::Error,
        "rollback-success" => EventKind::RollbackSuccess,
        "rollback-failed" => EventKind::RollbackFailed,
        other => fail!(
            "--event-kind `{other}` is not one of: info, success, warning, error, rollback-success, rollback-failed"
        ),
    };
    Ok(Event {
        kind,
        title: args.event.event_title.clone(),
        message: args.event.event_message.clone(),
        run_id: run_id.to_string(),
        project: target.project.clone(),
        environment: target.environment.clone(),
        timestamp: jiff::Timestamp::now().to_string(),
        fields: Vec::new(),
    })
}

fn output_json(output: &HookOutput) -> serde_json::Value {
    match output {
        HookOutput::Info(info) => json!({ "name": info.name, "version": info.version }),
        HookOutput::Artifacts(records) => json!({ "artifacts": records }),
        HookOutput::Report(report) => json!({
            "summary": report.summary,
            "details": report.details,
        }),
        HookOutput::Health(report) => json!({
            "checks": report.checks.iter().map(|c| json!({
                "name": c.name,
                "status": status_name(c.status),
                "detail": c.detail,
                "latency_ms": c.latency_ms,
            })).collect::<Vec<_>>()
        }),
        HookOutput::Notified => json!({ "notified": true }),
    }
}

fn status_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unhealthy => "unhealthy",
    }
}

fn print_output(who: &str, output: &HookOutput, ms: u128) {
    match output {
        HookOutput::Info(info) => println!("{who}: {} {}", info.name, info.version),
        HookOutput::Artifacts(records) => {
            println!("{who}: {} artifact(s) in {ms} ms", records.len());
            for r in records {
                println!(
                    "  {:<16} {}  {} bytes ({} stored)  {}",
                    r.name, r.blob.digest, r.blob.size, r.blob.stored_size, r.media_type
                );
            }
            if !records.is_empty() {
                println!(
                    "  (re-run with --json > FILE and pass --artifacts FILE to restore or revert)"
                );
            }
        }
        HookOutput::Report(report) => {
            println!("{who}: {} ({ms} ms)", report.summary);
            for (k, v) in &report.details {
                println!("  {k}: {v}");
            }
        }
        HookOutput::Health(report) => {
            for c in &report.checks {
                println!(
                    "{:<10} {}  {} ({} ms)",
                    status_name(c.status),
                    c.name,
                    c.detail,
                    c.latency_ms
                );
            }
        }
        HookOutput::Notified => println!("{who}: delivered ({ms} ms)"),
    }
}
