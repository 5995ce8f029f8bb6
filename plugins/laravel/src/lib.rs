//! rewind plugin `laravel`: returns a Laravel application's migrations to
//! exactly the state recorded before a deploy.
//!
//! Runbooks roll back "one step" (`migrate:rollback --step=1`), which is
//! wrong whenever a deploy ran zero or several migrations. Backup records
//! `migrate:status` (every migration, whether it ran, its batch); revert
//! computes which migrations ran since and undoes exactly those
//! (`--step=N`), re-applies any the deploy rolled back, checks the result
//! against the record, then rebuilds the caches. Every artisan call passes
//! `--force --no-interaction`: in production Laravel would otherwise ask
//! for confirmation, and a prompt would hang the step until its deadline.

use std::collections::BTreeSet;

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, Health, HealthCheck, HealthReport,
    HealthStatus, HookError, Plugin, PluginInfo, Report, Revert, artifacts, log, take_denial,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// The application root (holding artisan)
        app: String,
        /// The PHP binary
        php: String = "php",
        /// artisan down during the revert, up after
        maintenance: bool = true,
        /// Caches to rebuild after config:clear: config, route, view
        caches: Vec<String> = ["config"],
        /// Migration files, relative to app
        migrations_path: String = "database/migrations",
        /// Health: pending migrations are not a failure
        allow_pending: bool = false,
        /// false: revert only rebuilds the caches (an instance after the code switch)
        // Revert the migrations (the default). `false` makes an instance
        // that only clears and rebuilds the caches: put one after the code
        // switch in a release layout, where the migrations must be rolled
        // back with the new release's code and the caches rebuilt with the
        // old one's.
        migrate: bool = true,
    }
}

/// One row of `migrate:status`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
struct Migration {
    name: String,
    ran: bool,
    batch: Option<u32>,
}

/// What a backup records.
#[derive(Serialize, Deserialize)]
struct State {
    migrations: Vec<Migration>,
}

impl State {
    fn ran(&self) -> BTreeSet<&str> {
        self.migrations
            .iter()
            .filter(|m| m.ran)
            .map(|m| m.name.as_str())
            .collect()
    }
}

impl Params {
    fn artisan<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command::new(self.php.clone())
            .arg(format!("{}/artisan", self.app.trim_end_matches('/')))
            .args(args)
    }

    /// Run artisan; on failure, the error carries artisan's own words
    /// (Laravel prints exceptions on stdout as often as on stderr).
    fn run(&self, args: &[&str]) -> Result<String, HookError> {
        let command = self.artisan(args.iter().copied());
        let out = command.output()?;
        if out.success() {
            return Ok(out.stdout_text());
        }
        let mut said = out.stdout_text();
        said.push_str(&out.stderr_text());
        if let Some(err) = self.missing_artisan(&said) {
            return Err(err);
        }
        Err(HookError::failed_with_stderr(
            format!(
                "`{}` exited with {}",
                command.display(),
                out.exit_code
                    .map_or("a signal".to_string(), |c| format!("code {c}"))
            ),
            said.as_bytes(),
        ))
    }

    fn root(&self) -> &str {
        self.app.trim_end_matches('/')
    }

    /// PHP's own words for a script that is not there, said as the fix.
    fn missing_artisan(&self, said: &str) -> Option<HookError> {
        said.contains("Could not open input file").then(|| {
            HookError::invalid_input(format!(
                "{}/artisan does not exist: params.app must be the Laravel application's root \
                 (the directory holding artisan)",
                self.root()
            ))
        })
    }

    /// The dry run's preflight: what would go wrong in a real revert that
    /// can be known without changing anything. Artisan must run (it boots
    /// the application), and with `maintenance` the directory `artisan
    /// down` writes its marker into must exist: a real revert only warns
    /// when it cannot enter maintenance mode, but the operator should hear
    /// of it before the night it matters.
    fn preflight(&self) -> Result<(), HookError> {
        self.run(&["--version", "--no-interaction"])?;
        if !(self.migrate && self.maintenance) {
            return Ok(());
        }
        let framework = format!("{}/storage/framework", self.root());
        let problem = match std::fs::metadata(&framework) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => "is not a directory",
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && take_denial().is_none() => {
                "does not exist"
            }
            Err(_) => {
                // Not granted (the host has said which grant to add): the
                // revert itself only warns, so the dry run does too.
                log::info(format!(
                    "maintenance mode not checked: {framework} is outside this instance's \
                     grants (a read-only grant of it, or of the application, lets the dry run \
                     check that `artisan down` can write there)"
                ));
                return Ok(());
            }
        };
        Err(HookError::failed(format!(
            "maintenance mode cannot be entered: {framework} {problem} (artisan down writes \
             storage/framework/down); create it, or set maintenance = false"
        )))
    }

    fn status(&self) -> Result<State, HookError> {
        let command = self.artisan(["migrate:status", "--no-interaction"]);
        let out = command.output()?;
        let text = out.stdout_text();
        if text.contains("Migration table not found") {
            return Ok(State {
                migrations: Vec::new(),
            });
        }
        if !out.success() {
            if let Some(err) = self.missing_artisan(&format!("{text}{}", out.stderr_text())) {
                return Err(err);
            }
            return Err(HookError::failed_with_stderr(
                format!("`{}` failed", command.display()),
                format!("{text}{}", out.stderr_text()).as_bytes(),
            ));
        }
        Ok(State {
            migrations: parse_status(&text),
        })
    }
}

/// Rows of the `migrate:status` table:
/// `| Yes  | 2014_10_12_000000_create_users_table | 1     |`.
fn parse_status(text: &str) -> Vec<Migration> {
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split('|')
                .map(str::trim)
                .collect();
            let [ran, name, batch] = cells[..] else {
                return None;
            };
            let ran = match ran {
                "Yes" | "Ran" => true,
                "No" | "Pending" => false,
                _ => return None, // the header
            };
            Some(Migration {
                name: name.to_string(),
                ran,
                batch: batch.parse().ok(),
            })
        })
        .collect()
}

/// Migrations in the order `migrate:rollback` undoes them: newest batch
/// first, and within a batch the last-run (name-wise last) first.
fn rollback_order(state: &State) -> Vec<&Migration> {
    let mut ran: Vec<&Migration> = state.migrations.iter().filter(|m| m.ran).collect();
    ran.sort_by(|a, b| b.batch.cmp(&a.batch).then(b.name.cmp(&a.name)));
    ran
}

/// What the revert must do to get from `now` back to `recorded`.
struct Plan {
    /// Ran since the backup: undone with `--step=N`.
    undo: Vec<String>,
    /// Rolled back since the backup: run again.
    redo: Vec<String>,
}

fn plan(now: &State, recorded: &State) -> Result<Plan, HookError> {
    let (now_ran, recorded_ran) = (now.ran(), recorded.ran());
    let newer: BTreeSet<&str> = now_ran.difference(&recorded_ran).copied().collect();
    let order = rollback_order(now);
    let undo: Vec<String> = order
        .iter()
        .take(newer.len())
        .map(|m| m.name.clone())
        .collect();
    if undo.iter().any(|name| !newer.contains(name.as_str())) {
        return Err(HookError::failed(format!(
            "the migrations that ran after the backup ({}) are not the newest ones, so \
             `migrate:rollback --step` cannot undo exactly them; roll back by hand",
            newer.iter().copied().collect::<Vec<_>>().join(", ")
        )));
    }
    let redo = recorded_ran
        .difference(&now_ran)
        .map(|s| s.to_string())
        .collect();
    Ok(Plan { undo, redo })
}

/// `config:clear`, then each configured cache.
/// What the cache step does (`done`: did), for reports: never a
/// dangling list.
fn caches_text(params: &Params, done: bool) -> String {
    let (clear, rebuild) = if done {
        ("cleared the config cache", "rebuilt")
    } else {
        ("clear the config cache", "rebuild")
    };
    if params.caches.is_empty() {
        clear.to_string()
    } else {
        format!(
            "{clear} and {rebuild} caches ({})",
            params.caches.join(", ")
        )
    }
}

fn rebuild_caches(params: &Params) -> Result<(), HookError> {
    params.run(&["config:clear", "--no-interaction"])?;
    for cache in &params.caches {
        match cache.as_str() {
            "config" | "route" | "view" => {
                params.run(&[&format!("{cache}:cache"), "--no-interaction"])?;
            }
            other => {
                return Err(HookError::invalid_input(format!(
                    "params.caches: `{other}` is not one of config, route, view"
                )));
            }
        }
    }
    Ok(())
}

struct Laravel;

impl Plugin for Laravel {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "laravel".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Laravel: migrations back to the recorded state, maintenance mode, caches"
                .into(),
            capabilities: Capabilities {
                exec: vec!["php <params.app>/artisan **".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for Laravel {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let state = params.status()?;
        log::info(format!(
            "{} migrations, {} ran",
            state.migrations.len(),
            state.ran().len()
        ));
        Ok(vec![artifacts::write_json("migrations", &state)?])
    }
}

impl Revert for Laravel {
    fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        if ctx.dry_run() {
            params.preflight()?;
        }
        if !params.migrate {
            if ctx.dry_run() {
                return Ok(Report::new(format!(
                    "would {}",
                    caches_text(&params, false)
                )));
            }
            rebuild_caches(&params)?;
            return Ok(Report::new(caches_text(&params, true)));
        }
        let recorded: State = artifacts::read_json(artifacts::find(saved, "migrations")?)?;
        let now = params.status()?;
        let plan = plan(&now, &recorded)?;
        let step = format!("--step={}", plan.undo.len());

        if ctx.dry_run() {
            let mut report = Report::new(format!(
                "would roll back {} migration(s){}, re-run {}, then {}",
                plan.undo.len(),
                if plan.undo.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", plan.undo.join(", "))
                },
                plan.redo.len(),
                caches_text(&params, false)
            ));
            if !plan.undo.is_empty() {
                let sql = params.run(&[
                    "migrate:rollback",
                    &step,
                    "--pretend",
                    "--force",
                    "--no-interaction",
                ])?;
                report = report.detail("sql", sql.trim().to_string());
            }
            return Ok(report);
        }

        // Maintenance mode never blocks a rollback: a rollback that cannot
        // enter it is still better than leaving a broken release live.
        let down = params.maintenance
            && match params.run(&["down", "--no-interaction"]) {
                Ok(_) => true,
                Err(err) => {
                    log::warn(format!(
                        "could not enter maintenance mode; rolling back without it: {}",
                        err.message()
                    ));
                    false
                }
            };
        let changed = (|| {
            if !plan.undo.is_empty() {
                params.run(&["migrate:rollback", &step, "--force", "--no-interaction"])?;
            }
            for name in &plan.redo {
                let path = format!("{}/{name}.php", params.migrations_path);
                params.run(&["migrate", "--path", &path, "--force", "--no-interaction"])?;
            }
            let after = params.status()?;
            if after.ran() != recorded.ran() {
                return Err(HookError::failed(format!(
                    "after the rollback the migrations that ran are [{}], but the backup recorded [{}]",
                    after.ran().into_iter().collect::<Vec<_>>().join(", "),
                    recorded.ran().into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            rebuild_caches(&params)
        })();
        // `up` whatever happened: a failed step may still be repaired by a
        // later one (a database restore), and the operator decides then.
        if down && let Err(err) = params.run(&["up", "--no-interaction"]) {
            log::warn(format!(
                "the application may still be in maintenance mode (`php artisan up` failed: {})",
                err.message()
            ));
        }
        changed?;
        Ok(Report::new(format!(
            "rolled back {} migration(s), re-ran {}; the migrations are as recorded",
            plan.undo.len(),
            plan.redo.len()
        ))
        .detail("rolled_back", plan.undo.join(" "))
        .detail("reapplied", plan.redo.join(" "))
        .detail("caches", params.caches.join(" ")))
    }
}

impl Health for Laravel {
    fn check(ctx: &Context) -> HealthReport {
        let result = ctx.params::<Params>().and_then(|params| {
            let state = params.status()?;
            Ok((params.allow_pending, state))
        });
        let (status, detail) = match result {
            Err(err) => (HealthStatus::Unhealthy, err.message()),
            Ok((allow_pending, state)) => {
                let pending: Vec<&str> = state
                    .migrations
                    .iter()
                    .filter(|m| !m.ran)
                    .map(|m| m.name.as_str())
                    .collect();
                if pending.is_empty() || allow_pending {
                    (
                        HealthStatus::Healthy,
                        format!(
                            "artisan boots; {} migrations ran, {} pending",
                            state.ran().len(),
                            pending.len()
                        ),
                    )
                } else {
                    (
                        HealthStatus::Unhealthy,
                        format!("pending migrations: {}", pending.join(", ")),
                    )
                }
            }
        };
        HealthReport {
            checks: vec![HealthCheck::new("laravel", status, detail)],
        }
    }
}

rewind_sdk::export_plugin!(Laravel: backup, revert, health);
