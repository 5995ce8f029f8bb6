//! `rewind fleet status`: every host of a fleet store (`store.fleet =
//! true`), read from the shared store alone.

use clap::{Args, Subcommand};
use rewind::exit::ExitCode;
use rewind::store::{Fleet, FleetStatus, HostStatus, RunSummary};

use super::{Cli, Result, load_config, print_json, short_time};

pub const STATUS_AFTER_HELP: &str = "\
Reads the fleet store that store.url names (store.fleet = true): for each
host with a store under <store.url>/hosts/, its newest backup, its last run
and how it ended, runs running or interrupted, the lease on its store (and
whether it expired), and what fails verification. Without --verify the
hash chain of each host's manifests is checked and that every blob a run
names is present (a few requests per host); --verify also downloads and
re-hashes every blob of every host, as `rewind artifacts verify` does on
each host.

Exits 0 when no host needs attention, 1 when one does (an interrupted run,
an expired lease, a verification problem, a last run that failed other than
a guard that rolled back cleanly), 2 when the store is not a fleet store.

Examples:
  rewind fleet status
  rewind fleet status --json | jq '.hosts[] | select(.attention != [])'
  rewind fleet status --verify";

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Every host of the fleet store: newest backup, last run, interrupted runs, leases, problems.
    #[command(after_help = STATUS_AFTER_HELP)]
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also re-read and re-hash every blob of every host (downloads every stored byte).
    #[arg(long)]
    pub verify: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, command: &FleetCommand) -> Result<ExitCode> {
    match command {
        FleetCommand::Status(args) => status(cli, args),
    }
}

fn status(cli: &Cli, args: &StatusArgs) -> Result<ExitCode> {
    let config = load_config(cli)?;
    let Some(root) = config.store.fleet_root() else {
        fail!(
            "{} is a single-host store; `rewind fleet status` reads a fleet store: set \
             store.fleet = true in {} (docs/fleet.md, \"One store for the fleet\")",
            config.store.location().display(),
            config.path.display()
        );
    };
    let status = Fleet::at(&root)
        .and_then(|fleet| fleet.status(args.verify))
        .map_err(|err| anyhow::anyhow!("cannot read the fleet store {}: {err}", root.display()))?;
    if args.json {
        print_json(&status)?;
    } else {
        print_table(&status);
    }
    Ok(ExitCode::ok_or_failed(!status.attention()))
}

fn print_table(status: &FleetStatus) {
    println!(
        "fleet store {} ({} host(s); checked: {}{})",
        status.store,
        status.hosts.len(),
        status.checked,
        match status.checked {
            rewind::store::Checked::Presence => "; --verify re-hashes every blob",
            rewind::store::Checked::Content => "",
        }
    );
    if status.hosts.is_empty() {
        println!("  no host has a store here yet");
        return;
    }
    let header = [
        "HOST",
        "RUNS",
        "NEWEST BACKUP",
        "LAST RUN",
        "LEASE",
        "ATTENTION",
    ];
    let rows: Vec<[String; 6]> = status.hosts.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    println!();
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    // The details a table cannot hold, for the hosts that need them.
    for host in &status.hosts {
        let details: Vec<String> = host
            .interrupted
            .iter()
            .map(|r| {
                format!(
                    "interrupted: {} {} since {}{}",
                    r.kind.as_str(),
                    r.id,
                    short_time(&r.started_at),
                    r.step
                        .as_ref()
                        .map(|s| format!(", in step {s}"))
                        .unwrap_or_default()
                )
            })
            .chain(host.running.iter().map(|r| {
                format!(
                    "running: {} {} since {}",
                    r.kind.as_str(),
                    r.id,
                    short_time(&r.started_at)
                )
            }))
            .chain(host.lease.iter().map(|l| {
                format!(
                    "lease{}: {}",
                    if l.expired { " (expired)" } else { "" },
                    l.holder
                )
            }))
            .chain(host.problems.iter().map(|p| match &p.run {
                Some(run) => format!("problem: run {run}: {}", p.message),
                None => format!("problem: {}", p.message),
            }))
            .chain(
                host.last_run
                    .iter()
                    .filter(|r| !host.attention.is_empty() && r.error.is_some())
                    .map(|r| format!("last run: {}", r.error.as_deref().unwrap_or_default())),
            )
            .collect();
        if !details.is_empty() {
            println!();
            println!("{} ({}):", host.host, host.store);
            for detail in details {
                println!("  {detail}");
            }
        }
    }
}

fn row(host: &HostStatus) -> [String; 6] {
    let run = |r: &RunSummary, with_kind: bool| {
        let mut text = r.id.clone();
        if with_kind {
            text = format!(
                "{} {} {text}",
                r.kind.as_str(),
                r.outcome.as_deref().unwrap_or(r.status.as_str())
            );
        }
        if let Some(deploy) = &r.deploy_id {
            text.push_str(&format!(" ({deploy})"));
        }
        text
    };
    [
        host.host.clone(),
        host.runs.to_string(),
        host.newest_backup
            .as_ref()
            .map_or("-".into(), |r| run(r, false)),
        host.last_run.as_ref().map_or("-".into(), |r| run(r, true)),
        match &host.lease {
            None => "-".into(),
            Some(l) if l.expired => "expired".into(),
            Some(_) => "held".into(),
        },
        if host.attention.is_empty() {
            "-".into()
        } else {
            host.attention.join("; ")
        },
    ]
}
