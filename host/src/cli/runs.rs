//! `rewind backup`, `rollback`, `guard` and `health`.

use std::io::{BufRead, IsTerminal, Write};

use super::Result;
use clap::Args;
use rewind::config::OnFailure;
use rewind::run::{
    GuardOptions, GuardOutcome, Observer, PlanStep, RollbackOptions, Runner, Silent,
};
use rewind::store::{RunManifest, RunStatus, StepStatus, newest_backup};
use serde_json::json;

use super::console::Console;
use super::{Cli, load_config, open_store, print_json};
use rewind::exit::ExitCode;

pub const BACKUP_AFTER_HELP: &str = "\
Runs the backup hook of every instance in chains.backup, in order, and
records the run (its id, each step, every artifact with its digests).

Examples:
  rewind backup
  rewind backup --label before-v2.3
  rewind backup --chain db-only          a chain from [chains.named]
  rewind backup --deploy-id 2026-11-24.3 tag it with a fleet-wide deploy id
  rewind backup --json | jq -r .id";

pub const ROLLBACK_AFTER_HELP: &str = "\
Restores from a backup run: the newest one, or the one given with --to.
Before any step runs, every artifact it will use is re-hashed: a mismatch
refuses the rollback and touches nothing. Then a safety backup of the
current state is taken (skip with --quick), the rollback chain runs in order
(each instance's revert or restore hook gets the artifacts that instance
wrote in the chosen backup), and the health checks confirm the result.

On a terminal, with neither --to nor --yes, it lists the backups and asks.
Off a terminal it never prompts.

Examples:
  rewind rollback --dry-run              the exact plan; changes nothing
  rewind rollback --yes                  to the newest backup
  rewind rollback --to 20261123-1715 --yes
  rewind rollback --deploy-id 2026-11-24.3 --yes   to the backup that deploy took here
  rewind rollback --chain db-only --yes  only the instances of a named chain
  rewind rollback --only code --yes      only some instances of the chain
  rewind rollback --resume               continue an interrupted or failed rollback
  rewind rollback --resume --skip db     continue a failed one past its `db` step";

pub const GUARD_AFTER_HELP: &str = "\
Backs up (chains.backup), runs the deploy command with its output streamed,
then runs the health checks (guard.health, guard.retries, guard.delay_s).
If the command fails or health stays bad, rolls back automatically to the
backup it just took (unless --no-rollback or guard.auto_rollback = false),
and notifies the sinks.

Exit codes: 0 deployed and healthy; 1 the deploy failed and was not rolled
back (or the backup before it failed, so it never ran); 2 usage or config
error; 3 the deploy failed and was rolled back to a healthy state; 4 the
rollback failed too; 5 another run holds the store lock.

Examples:
  rewind guard -- ./deploy.sh v2.4.0
  rewind guard --deploy-id 2026-11-24.3 -- ./deploy.sh v2.4.0   one id on every host
  rewind guard --no-rollback -- dep deploy production";

/// `--deploy-id`: 1-128 characters of A-Z a-z 0-9 . _ -
fn parse_deploy_id(text: &str) -> std::result::Result<String, String> {
    if rewind::store::valid_deploy_id(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a deploy id: use 1-128 characters of A-Z a-z 0-9 . _ - \
             (a build number, a git sha, a tag)"
        ))
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A label recorded with the run.
    #[arg(long)]
    pub label: Option<String>,
    /// Run a chain from [chains.named] instead of chains.backup.
    #[arg(long, value_name = "NAME")]
    pub chain: Option<String>,
    /// Tag the run with a fleet-wide deploy id (`rollback --deploy-id` finds it).
    #[arg(long, value_name = "ID", value_parser = parse_deploy_id)]
    pub deploy_id: Option<String>,
    /// Print the run's manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The backup run to restore (an id or a unique prefix); default: the newest.
    #[arg(long, value_name = "RUN")]
    pub to: Option<String>,
    /// Restore the backup the fleet-wide deploy ID took on this host.
    #[arg(long, value_name = "ID", value_parser = parse_deploy_id, conflicts_with = "to")]
    pub deploy_id: Option<String>,
    /// Run a chain from [chains.named] instead of chains.rollback.
    #[arg(long, value_name = "NAME")]
    pub chain: Option<String>,
    /// Skip the safety backup of the current state.
    #[arg(long)]
    pub quick: bool,
    /// Print the plan (steps, plugins, artifacts with digests), verify the artifacts, and let
    /// each plugin report what it would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Continue the interrupted rollback, or else the newest rollback if it failed, from
    /// its first unfinished step (`rewind status` shows it).
    #[arg(long, conflicts_with_all = ["to", "deploy_id", "dry_run", "chain"])]
    pub resume: bool,
    /// With --resume: do not run this instance's step, record it as skipped (repeatable).
    #[arg(long, value_name = "INSTANCE", requires = "resume")]
    pub skip: Vec<String>,
    /// Run only these instances of the rollback chain, in chain order (repeatable, or a
    /// comma-separated list).
    #[arg(
        long,
        value_name = "INSTANCE",
        value_delimiter = ',',
        conflicts_with = "resume"
    )]
    pub only: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Tag this deploy (the guard run and its backup) with a fleet-wide id.
    #[arg(long, value_name = "ID", value_parser = parse_deploy_id)]
    pub deploy_id: Option<String>,
    /// Never roll back automatically.
    #[arg(long)]
    pub no_rollback: bool,
    /// Print JSON instead of text (the deploy's output goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// The deploy command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A runner over the config's store, reporting to `observer`.
pub fn runner<'a>(
    cli: &Cli,
    config: &'a rewind::config::Config,
    observer: &'a dyn Observer,
) -> Result<Runner<'a>> {
    Ok(Runner::new(
        config,
        open_store(config)?,
        super::runtime()?,
        observer,
        super::command_line(),
    )?
    .with_lock_wait(cli.lock_wait))
}

pub fn backup(cli: &Cli, args: &BackupArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let console = Console::new(cli.quiet, cli.verbose);
    let runner = runner(cli, &config, &console)?;
    let run = runner.backup(
        args.label.clone(),
        args.chain.clone(),
        args.deploy_id.clone(),
    )?;
    runner.finish_notifications();
    if args.json {
        print_json(&run)?;
    } else {
        print_backup(&run);
    }
    Ok(ExitCode::ok_or_failed(run.status == RunStatus::Succeeded))
}

fn print_backup(run: &RunManifest) {
    if run.status != RunStatus::Succeeded {
        println!(
            "backup {} {}: {}",
            run.id,
            run.status.as_str(),
            run.error.as_deref().unwrap_or("")
        );
        return;
    }
    println!("backup {}", run.id);
    for a in run.artifacts() {
        println!(
            "  {:<12} {:<20} {}  {} bytes ({} stored)",
            a.instance,
            a.name,
            a.blob.digest,
            a.blob.size,
            a.blob.footprint()
        );
    }
    println!("roll back to it with: rewind rollback --to {}", run.id);
}

pub fn rollback(cli: &Cli, args: &RollbackArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let console = Console::new(cli.quiet, cli.verbose);
    let runner = runner(cli, &config, &console)?;

    // A deploy id names one backup: the operator confirms that one.
    let mut to = match &args.deploy_id {
        Some(deploy) => Some(runner.source_of(None, Some(deploy))?.id),
        None => args.to.clone(),
    };
    let interactive =
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !args.json;
    if interactive && !args.yes && !args.dry_run && !args.resume {
        match confirm(&runner, to.as_deref(), args.chain.as_deref(), &args.only)? {
            Some(chosen) => to = Some(chosen),
            None => {
                eprintln!("nothing was changed");
                return Ok(ExitCode::Usage);
            }
        }
    }

    let result = runner.rollback(RollbackOptions {
        to,
        deploy_id: args.deploy_id.clone(),
        chain: args.chain.clone(),
        quick: args.quick,
        dry_run: args.dry_run,
        resume: args.resume,
        skip: args.skip.clone(),
        only: args.only.clone(),
        safety_best_effort: false,
        notify: true,
    })?;
    runner.finish_notifications();

    if args.json {
        print_json(&json!({
            "dry_run": args.dry_run,
            "ok": result.succeeded(),
            "plan": result.plan,
            "problems": result.problems,
            "preflight": result.preflight,
            "run": result.run,
            "dry_run_steps": result.dry_run_steps,
        }))?;
    } else if args.dry_run {
        print_plan(&result);
    } else if let Some(run) = &result.run {
        match run.status {
            RunStatus::Succeeded => {
                println!("rolled back to {} (run {})", result.plan.source_run, run.id);
                for note in rewind::run::fallbacks_used(run) {
                    println!("  {note}");
                }
            }
            _ => {
                println!(
                    "rollback {} failed: {}",
                    run.id,
                    run.error.as_deref().unwrap_or("")
                );
                // A damaged backup cannot be resumed from: name another.
                if result.problems.is_empty() {
                    println!("{}", rewind::run::resume_hint(run));
                } else {
                    println!("{}", older_backup_hint(&result.plan.source_run));
                }
            }
        }
    }
    Ok(result.exit_code())
}

/// On a terminal: choose a backup (when none was named) and confirm.
/// `None` means the operator declined.
fn confirm(
    runner: &Runner<'_>,
    to: Option<&str>,
    chain: Option<&str>,
    only: &[String],
) -> Result<Option<String>> {
    let stdin = std::io::stdin();
    let mut answer = String::new();
    let chosen = match to {
        Some(id) => runner.source_of(Some(id), None)?,
        None => {
            let runs = runner.store.runs()?;
            let backups: Vec<&RunManifest> = runs
                .iter()
                .rev()
                .filter(|m| m.is_restorable())
                .take(10)
                .collect();
            if backups.is_empty() {
                fail!("there is no backup to roll back to: run `rewind backup` first");
            }
            eprintln!("Backups (newest first):");
            for (i, run) in backups.iter().enumerate() {
                let label = run.label.as_deref().unwrap_or("");
                let safety = if run.safety { " [safety]" } else { "" };
                eprintln!(
                    "  {}) {}  {}  {}{safety}",
                    i + 1,
                    run.id,
                    super::short_time(&run.started_at),
                    label
                );
            }
            let default = newest_backup(&runs)
                .and_then(|n| backups.iter().position(|b| b.id == n.id))
                .unwrap_or(0);
            eprint!("Roll back to which backup? [{}]: ", default + 1);
            std::io::stderr().flush()?;
            stdin.lock().read_line(&mut answer)?;
            let index = match answer.trim() {
                "" => default,
                text => match text.parse::<usize>() {
                    Ok(n) if (1..=backups.len()).contains(&n) => n - 1,
                    _ => fail!("`{text}` is not one of 1-{}", backups.len()),
                },
            };
            backups[index].clone()
        }
    };
    let mut plan = runner.plan_rollback(&chosen, chain, false)?;
    rewind::run::restrict(&mut plan, only)?;
    eprintln!(
        "Rollback to {} ({}):",
        chosen.id,
        super::short_time(&chosen.started_at)
    );
    for (i, step) in plan.steps.iter().enumerate() {
        eprintln!(
            "  {}. {} {} ({} artifact(s)){}",
            i + 1,
            step.instance,
            step.hook,
            step.artifacts.len(),
            step.fallback
                .as_ref()
                .map(|f| format!("; if it fails: {} {}", f.instance, f.hook))
                .unwrap_or_default()
        );
    }
    eprint!("Proceed? [y/N]: ");
    std::io::stderr().flush()?;
    answer.clear();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes").then_some(chosen.id))
}

fn print_plan(result: &rewind::run::RollbackResult) {
    let plan = &result.plan;
    println!(
        "rollback plan (dry run: nothing was changed)\n  from backup {} ({}{})",
        plan.source_run,
        super::short_time(&plan.source_started_at),
        plan.source_label
            .as_deref()
            .map(|l| format!(", {l}"))
            .unwrap_or_default()
    );
    if plan.safety_backup {
        println!("  0. safety backup of what the steps below change");
    }
    for (i, step) in plan.steps.iter().enumerate() {
        println!("  {}. {} {}", i + 1, step.instance, step.hook);
        print_plan_step(result, step, None, "       ");
        match &step.fallback {
            Some(fallback) => {
                println!(
                    "       if it fails: fall back to {} {} (from the same backup){}",
                    fallback.instance,
                    fallback.hook,
                    match step.on_failure {
                        OnFailure::Stop => ", and stop if that fails too",
                        OnFailure::Continue => ", and go on if that fails too",
                    }
                );
                print_plan_step(result, fallback, Some(&step.instance), "         ");
            }
            None => println!(
                "       if it fails: {}",
                match step.on_failure {
                    OnFailure::Stop => "stop (later steps do not run)",
                    OnFailure::Continue => "go on with the next step (on_failure = \"continue\")",
                }
            ),
        }
    }
    if !plan.health.is_empty() {
        println!("  then health: {}", plan.health.join(", "));
    }
    if !result.preflight.is_empty() {
        println!("  PREFLIGHT FAILED: the rollback would fail:");
        for p in &result.preflight {
            println!("    {p}");
        }
    }
    if result.problems.is_empty() {
        println!("  all artifacts verified");
    } else {
        println!("  VERIFICATION FAILED: a rollback would be refused:");
        for p in &result.problems {
            println!("    {p}");
        }
        println!("{}", older_backup_hint(&result.plan.source_run));
    }
}

/// One planned step's plugin, artifacts and what its dry run said.
fn print_plan_step(
    result: &rewind::run::RollbackResult,
    step: &PlanStep,
    fallback_for: Option<&str>,
    indent: &str,
) {
    println!(
        "{indent}plugin {} sha256:{}",
        step.plugin.source, step.plugin.sha256
    );
    for a in &step.artifacts {
        println!(
            "{indent}{:<20} sha256:{}  {} bytes",
            a.name, a.blob.digest, a.blob.size
        );
    }
    let said = result
        .dry_run_steps
        .iter()
        .find(|s| s.instance == step.instance && s.fallback_for.as_deref() == fallback_for);
    if let Some(said) = said {
        match (&said.summary, &said.error) {
            (_, Some(err)) => println!("{indent}would fail: {err}"),
            // Plugins word their dry-run summaries themselves ("would …").
            (Some(summary), None) => println!("{indent}{summary}"),
            _ => {}
        }
        for (k, v) in &said.details {
            println!("{indent}  {k}: {v}");
        }
    }
}

/// What to do when the backup a rollback would use is damaged.
fn older_backup_hint(source: &str) -> String {
    format!(
        "  backup {source} is damaged and will not be used; roll back to an older backup whose \
         artifacts verify: `rewind rollback --to RUN` (`rewind history` lists the backups, \
         `rewind artifacts verify` names every damaged one)"
    )
}

pub fn guard(cli: &Cli, args: &GuardArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let console = Console::new(cli.quiet, cli.verbose);
    let runner = runner(cli, &config, &console)?;
    let result = runner.guard(
        &args.command,
        GuardOptions {
            no_rollback: args.no_rollback,
            deploy_stdout_to_stderr: args.json,
            deploy_id: args.deploy_id.clone(),
        },
    )?;
    runner.finish_notifications();
    if args.json {
        print_json(&json!({
            "outcome": result.outcome.as_str(),
            "run": result.run,
            "backup": result.backup,
            "rollback": result.rollback.as_ref().and_then(|r| r.run.as_ref()),
        }))?;
    } else {
        let detail = result.run.error.as_deref().unwrap_or("");
        match result.outcome {
            GuardOutcome::Deployed => println!("deployed and healthy (run {})", result.run.id),
            GuardOutcome::RolledBack => {
                println!("ROLLED BACK: {detail}");
                let rollback = result.rollback.as_ref().and_then(|r| r.run.as_ref());
                for note in rollback
                    .map(rewind::run::fallbacks_used)
                    .unwrap_or_default()
                {
                    println!("  {note}");
                }
            }
            GuardOutcome::RollbackFailed => {
                println!("ROLLBACK FAILED, manual action needed: {detail}");
                if let Some(rollback) = result.rollback.as_ref() {
                    match &rollback.run {
                        Some(run) if rollback.problems.is_empty() => {
                            println!("{}", rewind::run::resume_hint(run))
                        }
                        _ => println!("{}", older_backup_hint(&rollback.plan.source_run)),
                    }
                }
            }
            GuardOutcome::DeployFailed | GuardOutcome::BackupFailed => {
                println!("FAILED: {detail}")
            }
        }
    }
    Ok(result.outcome.exit_code())
}

pub fn health(cli: &Cli, json: bool) -> Result<ExitCode> {
    let config = load_config(cli)?;
    if config.guard.health.is_empty() {
        fail!(
            "{}: guard.health lists no instances to check",
            config.path.display()
        );
    }
    let runner = runner(cli, &config, &Silent)?;
    let (result, steps) = runner.health();
    if json {
        print_json(
            &json!({ "healthy": result.healthy, "failures": result.failures, "steps": steps }),
        )?;
    } else {
        for step in &steps {
            if let Some(err) = &step.error {
                println!("error      {}: {err}", step.instance);
            }
            for c in &step.checks {
                println!(
                    "{:<10} {}/{}  {} ({} ms)",
                    c.status, step.instance, c.name, c.detail, c.latency_ms
                );
            }
            if step.status == StepStatus::Failed && step.error.is_none() {
                println!("failed     {}", step.instance);
            }
        }
    }
    Ok(ExitCode::ok_or_failed(result.healthy))
}
