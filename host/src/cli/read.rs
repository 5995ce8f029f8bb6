//! Read commands over the store: `status`, `history`, `artifacts list`,
//! `artifacts verify`, and the two that change it: `artifacts prune` and
//! `unlock`.

use super::Result;
use clap::Args;
use rewind::run::{Silent, stopped_at};
use rewind::store::{RunManifest, newest_backup};
use serde_json::json;

use super::{Cli, load_config, open_store, print_json, short_time};
use rewind::exit::ExitCode;

pub const VERIFY_AFTER_HELP: &str = "\
Checks that every manifest links to the one before it by its sha256 (the
history is a hash chain ending at HEAD), and re-hashes every blob (or those
of one run) against both recorded digests. Exits 1 naming every mismatch.

Examples:
  rewind artifacts verify
  rewind artifacts verify 20261123-171500 --json";

pub const PRUNE_AFTER_HELP: &str = "\
A run is kept while it is younger than store.keep_days (default 7) or among
the newest store.keep_last backups (default 3); the newest backup is always
kept. Safety backups are kept until you prune them on purpose (--safety).
Blobs still used by a kept run stay.

Orphans, blobs no manifest, journal or chunk index names (chunks of a
backup that died), are removed once older than --orphans-older-than
(default 24h): a younger one may belong to a backup still running. The
prune after each backup leaves them.

Examples:
  rewind artifacts prune --dry-run
  rewind artifacts prune --safety
  rewind artifacts prune --orphans-older-than 2h";

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show this run's manifest.
    pub run: Option<String>,
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArtifactsListArgs {
    /// Only this run's artifacts.
    pub run: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this run's blobs (the chain is always checked whole).
    pub run: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also prune safety backups past retention.
    #[arg(long)]
    pub safety: bool,
    /// Remove orphans (blobs nothing names) only when last written at least
    /// this long ago (`24h`, `30m`, `0s`).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_wait, default_value = "24h")]
    pub orphans_older_than: std::time::Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove the lock even if its holder may be alive (another host's lock).
    #[arg(long)]
    pub force: bool,
}

fn one_line(run: &RunManifest) -> String {
    let mut kind = run.kind.as_str().to_string();
    if run.safety {
        kind = "safety".into();
    }
    let mut extra = Vec::new();
    if let Some(label) = &run.label {
        extra.push(label.clone());
    }
    if let Some(deploy) = &run.deploy_id {
        extra.push(format!("deploy {deploy}"));
    }
    if let Some(outcome) = &run.outcome {
        extra.push(outcome.clone());
    }
    if let Some(source) = &run.source_run {
        extra.push(format!("to {source}"));
    }
    let count = run.artifacts().count();
    if count > 0 {
        extra.push(format!("{count} artifact(s)"));
    }
    format!(
        "{:<22} {:<9} {:<12} {}  {}",
        run.id,
        kind,
        run.status_text(),
        short_time(&run.started_at),
        extra.join(", ")
    )
}

pub fn status(cli: &Cli, json: bool) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let store = open_store(&config)?;
    let runs = store.runs()?;
    let journals = store.journals()?;
    let lock = store.lock_holder()?;
    let newest = newest_backup(&runs);
    // An interrupted rollback is what `--resume` continues first.
    let failed = if journals
        .iter()
        .any(|j| j.kind == rewind::store::RunKind::Rollback)
    {
        None
    } else {
        rewind::run::failed_rollback(&runs)
    };
    let health = if config.guard.health.is_empty() {
        None
    } else {
        Some(super::runs::runner(cli, &config, &Silent)?.health())
    };

    if json {
        print_json(&json!({
            "project": config.project,
            "environment": config.environment,
            "store": store.root(),
            "health": health.as_ref().map(|(h, steps)| json!({
                "healthy": h.healthy, "failures": h.failures, "steps": steps,
            })),
            "newest_backup": newest.map(|r| &r.id),
            "last_runs": runs.iter().rev().take(5).collect::<Vec<_>>(),
            "interrupted": journals.iter().map(|j| json!({
                "id": j.id, "kind": j.kind, "started_at": j.started_at,
                "stopped": stopped_at(j).trim().to_string(),
                "resumable": j.kind == rewind::store::RunKind::Rollback,
            })).collect::<Vec<_>>(),
            "failed_rollback": failed.map(|r| {
                let step = rewind::run::failed_step(r);
                json!({
                    "id": r.id, "source_run": r.source_run, "error": r.error,
                    "failed_step": step.map(|s| json!({"instance": s.instance, "hook": s.hook})),
                    "resume": "rewind rollback --resume",
                    "skip": step.map(|s| format!("rewind rollback --resume --skip {}", s.instance)),
                })
            }),
            "lock": lock.as_ref().map(|h| json!({
                "holder": h, "stale": h.is_stale(),
            })),
        }))?;
        return Ok(ExitCode::Ok);
    }

    println!("{} ({})", config.project, config.environment);
    println!("  store:         {}", store.root().display());
    match &health {
        Some((h, _)) if h.healthy => println!("  health:        healthy"),
        Some((h, _)) => println!("  health:        UNHEALTHY: {}", h.summary()),
        None => println!("  health:        (no guard.health configured)"),
    }
    match newest {
        Some(run) => println!(
            "  newest backup: {} ({}{})",
            run.id,
            short_time(&run.started_at),
            run.label
                .as_deref()
                .map(|l| format!(", {l}"))
                .unwrap_or_default()
        ),
        None => println!("  newest backup: none (run `rewind backup`)"),
    }
    match &lock {
        Some(holder) if holder.is_stale() => println!(
            "  lock:          STALE, left by {holder}; the next run takes it over, or clear it with `rewind unlock`"
        ),
        Some(holder) => println!("  lock:          held by {holder}"),
        None => println!("  lock:          free"),
    }
    // A lock taken over or removed by force is worth knowing about later.
    if let Some(event) = rewind::run::events::read_log(&store)
        .unwrap_or_default()
        .iter()
        .rev()
        .find(|e| e.title.starts_with("store lock "))
    {
        println!(
            "  last lock event: {} {}",
            short_time(&event.timestamp),
            event.message
        );
    }
    for journal in &journals {
        let next = if journal.kind == rewind::store::RunKind::Rollback {
            "continue it with `rewind rollback --resume`, or start over with `rewind rollback`"
        } else {
            "the next run records it as interrupted"
        };
        println!(
            "  INTERRUPTED:   {} {} stopped{}; {next}",
            journal.kind.as_str(),
            journal.id,
            stopped_at(journal)
        );
    }
    if let Some(run) = failed {
        let at = rewind::run::failed_step(run)
            .map(|s| format!(" at step `{} {}`", s.instance, s.hook))
            .unwrap_or_default();
        println!(
            "  FAILED:        rollback {} to {} failed{at}; {}",
            run.id,
            run.source_run.as_deref().unwrap_or("?"),
            rewind::run::resume_hint(run)
        );
    }
    if !runs.is_empty() {
        println!("  last runs:");
        for run in runs.iter().rev().take(5) {
            println!("    {}", one_line(run));
        }
    }
    let unhealthy = health.as_ref().is_some_and(|(h, _)| !h.healthy);
    Ok(if unhealthy || !journals.is_empty() {
        ExitCode::Failed
    } else {
        ExitCode::Ok
    })
}

pub fn history(cli: &Cli, args: &HistoryArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let store = open_store(&config)?;
    if let Some(id) = &args.run {
        let run = store.find_run(id)?;
        if args.json {
            print_json(&run)?;
        } else {
            print_manifest(&run);
        }
        return Ok(ExitCode::Ok);
    }
    let runs = store.runs()?;
    let newest: Vec<&RunManifest> = runs.iter().rev().take(args.limit).collect();
    if args.json {
        print_json(&newest)?;
        return Ok(ExitCode::Ok);
    }
    if newest.is_empty() {
        println!("no runs yet in {}", store.root().display());
    }
    for run in newest {
        println!("{}", one_line(run));
    }
    Ok(ExitCode::Ok)
}

/// A manifest for people: header, then one line per step.
pub fn print_manifest(run: &RunManifest) {
    println!("run {} ({}, number {})", run.id, run.kind.as_str(), run.seq);
    println!("  status:   {}", run.status_text());
    println!(
        "  started:  {}  finished: {}",
        short_time(&run.started_at),
        run.finished_at.as_deref().map_or("-".into(), short_time)
    );
    for (key, value) in [
        ("label", &run.label),
        ("deploy", &run.deploy_id),
        ("outcome", &run.outcome),
        ("from", &run.source_run),
        ("safety", &run.safety_run),
        ("backup", &run.backup_run),
        ("rollback", &run.rollback_run),
        ("resumes", &run.resumes),
        ("error", &run.error),
    ] {
        if let Some(value) = value {
            println!("  {key:<9} {value}");
        }
    }
    if !run.only.is_empty() {
        println!("  only      {}", run.only.join(", "));
    }
    if let Some(prev) = &run.previous {
        println!("  previous: {} sha256:{}", prev.id, prev.digest);
    }
    println!("  steps:");
    for step in &run.steps {
        println!(
            "    {:<24} {:<9} {} ms{}",
            format!("{} {}", step.instance, step.hook),
            format!("{:?}", step.status).to_lowercase(),
            step.duration_ms,
            step.summary
                .as_deref()
                .map(|s| format!("  {s}"))
                .unwrap_or_default()
        );
        if let Some(err) = &step.error {
            println!("      error: {}", err.message);
        }
        for c in &step.checks {
            println!("      {} {}: {}", c.status, c.name, c.detail);
        }
        if step.hook == "backup" {
            for a in &step.artifacts {
                println!(
                    "      {:<18} sha256:{}  {} bytes",
                    a.name, a.blob.digest, a.blob.size
                );
            }
        }
    }
}

pub fn list_artifacts(cli: &Cli, args: &ArtifactsListArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let store = open_store(&config)?;
    let runs = match &args.run {
        Some(id) => vec![store.find_run(id)?],
        None => store.runs()?,
    };
    let mut rows = Vec::new();
    for run in runs.iter().rev() {
        for a in run.artifacts() {
            rows.push(json!({
                "run": run.id, "safety": run.safety, "instance": a.instance,
                "name": a.name, "media_type": a.media_type, "digest": a.blob.digest,
                "size": a.blob.size, "stored_size": a.blob.stored_size,
                // A chunked artifact: its chunks, and what they and the
                // index take (shared chunks counted in each artifact).
                "chunks": a.blob.chunks.as_ref().map(|c| c.count),
                "stored_total": a.blob.footprint(),
                "present": store.has_blob(&a.blob.digest),
            }));
        }
    }
    if args.json {
        print_json(&rows)?;
        return Ok(ExitCode::Ok);
    }
    if rows.is_empty() {
        println!("no artifacts");
    }
    for r in &rows {
        println!(
            "{:<22} {:<12} {:<20} {}  {:>10} bytes  {:>10} stored{}",
            r["run"].as_str().unwrap_or(""),
            r["instance"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            &r["digest"].as_str().unwrap_or("")[..16],
            r["size"],
            r["stored_total"],
            if r["present"] == true {
                ""
            } else {
                "  MISSING"
            }
        );
    }
    Ok(ExitCode::Ok)
}

pub fn verify(cli: &Cli, args: &VerifyArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let store = open_store(&config)?;
    let console = super::console::Console::new(cli.quiet || args.json, cli.verbose);
    let runs = store.runs()?;
    let total = runs
        .iter()
        .filter(|r| {
            args.run
                .as_ref()
                .is_none_or(|id| r.id.starts_with(id.as_str()))
        })
        .flat_map(|r| r.artifacts())
        .map(|a| a.blob.footprint())
        .sum();
    let report = {
        use rewind::run::Observer;
        let progress = console.transfer("verifying", total);
        let done = std::sync::atomic::AtomicU64::new(0);
        let report = store.verify(args.run.as_deref(), &|n| {
            progress(done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n)
        })?;
        console.transfer_done();
        report
    };
    if args.json {
        print_json(&report)?;
    } else if report.ok() {
        println!(
            "verified {} run(s), {} blob(s), {} stored bytes: the chain is intact and every blob matches",
            report.runs, report.blobs, report.bytes
        );
    } else {
        println!(
            "verification FAILED ({} problem(s)):",
            report.problems.len()
        );
        for p in &report.problems {
            match &p.run {
                Some(run) => println!("  run {run}: {}", p.message),
                None => println!("  {}", p.message),
            }
        }
    }
    Ok(if report.ok() {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    })
}

pub fn prune(cli: &Cli, args: &PruneArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let console = super::console::Console::new(cli.quiet || args.json, cli.verbose);
    let runner = super::runs::runner(cli, &config, &console)?;
    let grace = args.orphans_older_than;
    let plan = runner.prune(
        args.safety,
        args.dry_run,
        rewind::store::Orphans::OlderThan(grace),
    )?;
    let policy = runner.retention(args.safety);
    if args.json {
        print_json(&json!({
            "dry_run": args.dry_run,
            "orphans_older_than_s": grace.as_secs(),
            "plan": plan,
        }))?;
        return Ok(ExitCode::Ok);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "{verb} {} run(s) and {} blob(s), {} stored bytes (keep_days = {}, keep_last = {})",
        plan.runs.len(),
        plan.blobs.len(),
        plan.bytes,
        policy.keep_days,
        policy.keep_last
    );
    for run in &plan.runs {
        let kind = if run.safety {
            "safety"
        } else {
            run.kind.as_str()
        };
        println!("  {} {kind} {}", run.id, short_time(&run.started_at));
    }
    if plan.safety_kept > 0 {
        println!(
            "kept {} safety backup(s) past retention; prune them with --safety",
            plan.safety_kept
        );
    }
    let age = rewind::run::human_duration(grace);
    println!(
        "{verb} {} orphan blob(s), {} stored bytes: no run names them (left by runs that died), older than {age}",
        plan.orphans.len(),
        plan.orphan_bytes,
    );
    if args.dry_run {
        for (digest, size) in &plan.orphans {
            println!("  orphan {digest} {size} bytes");
        }
    }
    if plan.orphans_recent > 0 {
        println!(
            "kept {} orphan blob(s), {} stored bytes, written less than {age} ago: a run in progress may still name them (--orphans-older-than)",
            plan.orphans_recent, plan.orphans_recent_bytes
        );
    }
    Ok(ExitCode::Ok)
}

pub fn unlock(cli: &Cli, args: &UnlockArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let runner = super::runs::runner(cli, &config, &Silent)?;
    let removed = runner.unlock(args.force)?;
    runner.finish_notifications();
    match removed {
        Some(holder) => println!("removed the lock held by {holder}"),
        None => println!("the store is not locked"),
    }
    Ok(ExitCode::Ok)
}
