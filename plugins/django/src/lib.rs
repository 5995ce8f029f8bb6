//! rewind plugin `django`: returns every app's migrations to exactly the
//! state recorded before a deploy.
//!
//! Backup records `manage.py showmigrations --plan` (the applied set, in
//! dependency order). Revert finds each app whose applied migrations
//! changed and runs `manage.py migrate <app> <recorded migration>` (or
//! `zero`), the app whose new migrations come last in the plan first, so
//! dependents are unapplied before what they depend on; then it checks the
//! result against the record. An irreversible migration fails the step
//! with its name.

use std::collections::{BTreeMap, BTreeSet};

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, Health, HealthCheck, HealthReport,
    HealthStatus, HookError, Plugin, PluginInfo, Report, Revert, artifacts, log,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// manage.py (absolute path)
        manage: String,
        /// The Python interpreter
        python: String = "python3",
        /// --settings for every command
        settings: Option<String>,
        /// Granted env vars the project reads
        // DATABASE_URL, …
        env: Vec<String> = Vec::new(),
        /// collectstatic --noinput after migrating
        collectstatic: bool = false,
        /// Health: check --deploy
        check_deploy: bool = false,
        /// Health: unapplied migrations are fine
        allow_pending: bool = false,
    }
}

/// One line of `showmigrations --plan`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Step {
    app: String,
    name: String,
    applied: bool,
}

/// What a backup records: the plan, in order.
#[derive(Serialize, Deserialize)]
struct State {
    plan: Vec<Step>,
}

impl State {
    fn applied(&self) -> BTreeSet<(&str, &str)> {
        self.plan
            .iter()
            .filter(|s| s.applied)
            .map(|s| (s.app.as_str(), s.name.as_str()))
            .collect()
    }

    /// Per app, the applied migrations.
    fn applied_by_app(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for step in &self.plan {
            let entry = out.entry(step.app.as_str()).or_default();
            if step.applied {
                entry.insert(step.name.as_str());
            }
        }
        out
    }
}

impl Params {
    fn manage<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut command = Command::new(self.python.clone())
            .arg(self.manage.clone())
            .args(args);
        if let Some(settings) = &self.settings {
            command = command.arg(format!("--settings={settings}"));
        }
        for var in &self.env {
            command = command.inherit_env(var.clone());
        }
        command
    }

    fn state(&self) -> Result<State, HookError> {
        let out = self
            .manage(["showmigrations", "--plan"])
            .run()
            .map_err(|err| self.missing_manage(err))?;
        Ok(State {
            plan: parse_plan(&out.stdout_text()),
        })
    }
}

/// `[X]  shop.0001_initial` / `[ ]  billing.0002_invoice_sku`
/// (with `-v 2` a trailing ` (… dependencies)` may follow).
fn parse_plan(stdout: &str) -> Vec<Step> {
    stdout
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (applied, rest) = if let Some(rest) = line.strip_prefix("[X]") {
                (true, rest)
            } else {
                (false, line.strip_prefix("[ ]")?)
            };
            let id = rest.split_whitespace().next()?;
            let (app, name) = id.split_once('.')?;
            Some(Step {
                app: app.to_string(),
                name: name.to_string(),
                applied,
            })
        })
        .collect()
}

/// For each app whose applied set differs from the record: the migration
/// to migrate it to (the last recorded applied one, or `zero`), ordered so
/// that the app whose changed migrations come last in the plan goes first.
fn targets(now: &State, recorded: &State) -> Vec<(String, String)> {
    let (now_by_app, recorded_by_app) = (now.applied_by_app(), recorded.applied_by_app());
    let empty = BTreeSet::new();
    let mut changed: Vec<(usize, String, String)> = Vec::new();
    for (app, now_applied) in &now_by_app {
        let was = recorded_by_app.get(app).unwrap_or(&empty);
        if now_applied == was {
            continue;
        }
        let last_change = now
            .plan
            .iter()
            .rposition(|s| {
                s.app == *app
                    && (now_applied.contains(s.name.as_str()) != was.contains(s.name.as_str()))
            })
            .unwrap_or(0);
        let target = recorded
            .plan
            .iter()
            .rev()
            .find(|s| s.app == *app && s.applied)
            .map_or("zero".to_string(), |s| s.name.clone());
        changed.push((last_change, app.to_string(), target));
    }
    changed.sort_by_key(|c| std::cmp::Reverse(c.0));
    changed
        .into_iter()
        .map(|(_, app, target)| (app, target))
        .collect()
}

impl Params {
    /// Python's own words for a script that is not there, said as the fix.
    fn missing_manage(&self, err: HookError) -> HookError {
        if err.message().contains("can't open file") {
            HookError::invalid_input(format!(
                "{} does not exist: params.manage must be the project's manage.py (absolute path)",
                self.manage
            ))
        } else {
            err
        }
    }
}

/// Name the irreversible migration when Django refuses to unapply one.
fn explain(err: HookError) -> HookError {
    let text = err.message();
    let lines = || text.lines();
    match lines()
        .find(|l| l.contains("is not reversible"))
        .or_else(|| lines().find(|l| l.contains("IrreversibleError:")))
    {
        Some(line) => HookError::failed(format!(
            "an irreversible migration stops the rollback: {}",
            line.trim()
        )),
        None => err,
    }
}

struct Django;

impl Plugin for Django {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "django".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Django: every app's migrations back to the recorded state".into(),
            capabilities: Capabilities {
                exec: vec!["<params.python> <params.manage> **".into()],
                env: vec!["<params.env>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for Django {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let state = params.state()?;
        log::info(format!(
            "{} migrations, {} applied",
            state.plan.len(),
            state.applied().len()
        ));
        Ok(vec![artifacts::write_json("migrations", &state)?])
    }
}

impl Revert for Django {
    fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let recorded: State = artifacts::read_json(artifacts::find(saved, "migrations")?)?;
        let now = params.state()?;
        let moves = targets(&now, &recorded);
        let described: Vec<String> = moves.iter().map(|(a, t)| format!("{a} → {t}")).collect();

        if ctx.dry_run() {
            let mut report = Report::new(if moves.is_empty() {
                "the migrations are as recorded: nothing to do".to_string()
            } else {
                format!("would migrate {}", described.join(", "))
            });
            for (app, target) in &moves {
                let plan = params
                    .manage(["migrate", app.as_str(), target.as_str(), "--plan"])
                    .run()?;
                report =
                    report.detail(format!("plan {app}"), plan.stdout_text().trim().to_string());
            }
            return Ok(report);
        }

        for (app, target) in &moves {
            params
                .manage(["migrate", app.as_str(), target.as_str(), "--noinput"])
                .run()
                .map_err(explain)?;
        }
        let mut after = params.state()?;
        // Unapplying one app can unapply dependents elsewhere that the
        // record has as applied: a second pass migrates those forward.
        for (app, target) in targets(&after, &recorded) {
            params
                .manage(["migrate", app.as_str(), target.as_str(), "--noinput"])
                .run()
                .map_err(explain)?;
            after = params.state()?;
        }
        if after.applied() != recorded.applied() {
            let show = |s: &State| {
                s.applied()
                    .into_iter()
                    .map(|(a, n)| format!("{a}.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(HookError::failed(format!(
                "after migrating, the applied migrations are [{}], but the backup recorded [{}]",
                show(&after),
                show(&recorded)
            )));
        }
        if params.collectstatic {
            params.manage(["collectstatic", "--noinput"]).run()?;
        }
        Ok(Report::new(if moves.is_empty() {
            "the migrations were already as recorded".to_string()
        } else {
            format!(
                "migrated {}; the migrations are as recorded",
                described.join(", ")
            )
        })
        .detail("migrated", described.join(", ")))
    }
}

impl Health for Django {
    fn check(ctx: &Context) -> HealthReport {
        let result = ctx.params::<Params>().and_then(|params| {
            let mut check = params.manage(["check"]);
            if params.check_deploy {
                check = check.arg("--deploy");
            }
            check.run()?;
            Ok((params.allow_pending, params.state()?))
        });
        let (status, detail) = match result {
            Err(err) => (HealthStatus::Unhealthy, err.message()),
            Ok((allow_pending, state)) => {
                let pending: Vec<String> = state
                    .plan
                    .iter()
                    .filter(|s| !s.applied)
                    .map(|s| format!("{}.{}", s.app, s.name))
                    .collect();
                if pending.is_empty() || allow_pending {
                    (
                        HealthStatus::Healthy,
                        format!(
                            "manage.py check passes; {} migrations applied",
                            state.applied().len()
                        ),
                    )
                } else {
                    (
                        HealthStatus::Unhealthy,
                        format!("unapplied migrations: {}", pending.join(", ")),
                    )
                }
            }
        };
        HealthReport {
            checks: vec![HealthCheck::new("django", status, detail)],
        }
    }
}

rewind_sdk::export_plugin!(Django: backup, revert, health);
