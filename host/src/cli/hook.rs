//! `rewind hook`: run one hook of one plugin.

use super::Result;
use rewind::bindings::rewind::hooks::types::HealthStatus;
use rewind::run::hook::{EventSpec, HookRequest, HookRun, HookTarget, run_hook};
use rewind::sandbox::{HookOutput, LogLevel};
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
    let store = match (&args.store, &target.config) {
        (Some(dir), _) => rewind::store::StoreLocation::Local(dir.clone()),
        (None, Some(config)) => config.store.location(),
        (None, None) => rewind::store::StoreLocation::Local(rewind::store::default_root()),
    };
    let request = HookRequest {
        hook: args.hook,
        store,
        artifacts: args.artifacts.clone(),
        run: args.run.clone(),
        dry_run: args.dry_run,
        target: args.target.clone(),
        event: EventSpec {
            kind: args.event.event_kind.clone(),
            title: args.event.event_title.clone(),
            message: args.event.event_message.clone(),
        },
        // In JSON mode the log goes into the JSON, not onto the terminal.
        echo: if args.json { None } else { echo },
    };
    let HookRun { outcome, code } = run_hook(&hook_target(&target), &request)?;

    let who = format!("{} {}", target.spec.instance, args.hook);
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

/// What the library needs of a resolved `<PLUGIN>` argument.
fn hook_target(target: &PluginTarget) -> HookTarget {
    HookTarget {
        source: target.source.clone(),
        pin: target.pin.clone(),
        spec: target.spec.clone(),
        params: target.params.clone(),
        project: target.project.clone(),
        environment: target.environment.clone(),
    }
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
