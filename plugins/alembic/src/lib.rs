//! rewind plugin `alembic`: returns an Alembic-managed database to exactly
//! the revisions recorded before a deploy.
//!
//! Runbooks say `alembic downgrade -1`, which is wrong whenever a deploy
//! ran zero or several revisions. Backup records `alembic current` (every
//! head, for branched histories); revert runs `alembic downgrade <recorded
//! revision>` for each recorded head (or a target given for the run), then
//! checks `alembic current` again. Alembic logs to stderr; only stdout is
//! parsed.

use std::collections::BTreeSet;

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, Health, HealthCheck, HealthReport,
    HealthStatus, HookError, Plugin, PluginInfo, Report, Revert, artifacts,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// alembic.ini (absolute path)
        config: String,
        /// The alembic program
        // A virtualenv's `bin/alembic`, say.
        alembic: String = "alembic",
        /// Granted env vars the project reads (DATABASE_URL)
        env: Vec<String> = Vec::new(),
        /// Health: require every head to be applied
        // `--check-heads`
        check_heads: bool = false,
        /// Health: the revisions alembic current must show
        expect: Vec<String> = Vec::new(),
    }
}

/// What a backup records: the revisions `alembic current` printed.
#[derive(Serialize, Deserialize)]
struct State {
    revisions: Vec<String>,
}

impl Params {
    fn alembic<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut command = Command::new(self.alembic.clone())
            .args(["-c".to_string(), self.config.clone()])
            .args(args);
        for var in &self.env {
            command = command.inherit_env(var.clone());
        }
        command
    }

    /// The applied revisions (one per current head).
    fn current(&self) -> Result<BTreeSet<String>, HookError> {
        let command = self.alembic(["current"]);
        let out = command.output()?;
        if !out.success() {
            // Alembic says what is wrong with its ini on stdout ("FAILED:
            // No config file …"), everything else on stderr.
            let said = format!("{}{}", out.stdout_text(), out.stderr_text());
            if said.contains("No config file") || said.contains("No 'script_location' key") {
                return Err(HookError::invalid_input(format!(
                    "{} does not exist or has no [alembic] section with a script_location: \
                     params.config must be the project's alembic.ini (absolute path)",
                    self.config
                )));
            }
            return Err(HookError::failed_with_stderr(
                format!("`{}` failed", command.display()),
                said.as_bytes(),
            ));
        }
        Ok(parse_current(&out.stdout_text()))
    }
}

/// `alembic current` prints one line per applied head:
/// `ae1027a6acf (head)`, `27c6a30d7c24 (effective head)`, or `abc123` when a
/// newer revision exists. Log lines go to stderr and never reach here.
fn parse_current(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_string)
        .collect()
}

fn list(revisions: &BTreeSet<String>) -> String {
    if revisions.is_empty() {
        "base".to_string()
    } else {
        revisions.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

struct Alembic;

impl Plugin for Alembic {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "alembic".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Alembic: downgrade to exactly the revisions recorded before the deploy"
                .into(),
            capabilities: Capabilities {
                exec: vec!["<params.alembic> -c <params.config> **".into()],
                env: vec!["<params.env>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for Alembic {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let revisions = params.current()?.into_iter().collect();
        Ok(vec![artifacts::write_json(
            "revisions",
            &State { revisions },
        )?])
    }
}

impl Revert for Alembic {
    fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let targets: BTreeSet<String> = match ctx.target() {
            Some(target) => [target.to_string()].into(),
            None => {
                let state: State = artifacts::read_json(artifacts::find(saved, "revisions")?)?;
                state.revisions.into_iter().collect()
            }
        };
        let before = params.current()?;
        if before == targets {
            return Ok(Report::new(format!(
                "already at {} (nothing to downgrade)",
                list(&targets)
            )));
        }

        if ctx.dry_run() {
            let mut report = Report::new(format!(
                "would downgrade from {} to {}",
                list(&before),
                list(&targets)
            ));
            // Offline mode needs one starting point: show the SQL for the
            // usual single-head case.
            if let ([from], [to] | [to, ..]) = (
                before.iter().collect::<Vec<_>>().as_slice(),
                targets.iter().collect::<Vec<_>>().as_slice(),
            ) {
                let sql = params
                    .alembic([
                        "downgrade".to_string(),
                        "--sql".to_string(),
                        format!("{from}:{to}"),
                    ])
                    .run()?;
                report = report.detail("sql", sql.stdout_text().trim().to_string());
            }
            return Ok(report);
        }

        let goals: Vec<String> = if targets.is_empty() {
            vec!["base".to_string()]
        } else {
            targets.iter().cloned().collect()
        };
        for goal in &goals {
            let down = params.alembic(["downgrade", goal.as_str()]).output()?;
            if down.success() {
                continue;
            }
            // A deploy that downgraded a branch leaves it below the record:
            // move it back up instead.
            let said = down.stderr_text();
            if said.contains("not a valid downgrade target") {
                params.alembic(["upgrade", goal.as_str()]).run()?;
            } else {
                return Err(HookError::failed_with_stderr(
                    format!("`alembic downgrade {goal}` failed"),
                    &down.stderr,
                ));
            }
        }
        let after = params.current()?;
        if after != targets {
            return Err(HookError::failed(format!(
                "after the downgrade `alembic current` is {}, but the goal was {}",
                list(&after),
                list(&targets)
            )));
        }
        Ok(Report::new(format!(
            "downgraded from {} to {}; alembic current confirms it",
            list(&before),
            list(&after)
        ))
        .detail("revision_before", list(&before))
        .detail("revision_after", list(&after)))
    }
}

impl Health for Alembic {
    fn check(ctx: &Context) -> HealthReport {
        let result = ctx.params::<Params>().and_then(|params| {
            if params.check_heads {
                params.alembic(["current", "--check-heads"]).run()?;
            }
            let current = params.current()?;
            let expected: BTreeSet<String> = params.expect.iter().cloned().collect();
            if !expected.is_empty() && current != expected {
                return Err(HookError::failed(format!(
                    "alembic current is {}, expected {}",
                    list(&current),
                    list(&expected)
                )));
            }
            Ok(current)
        });
        let (status, detail) = match result {
            Ok(revisions) => (
                HealthStatus::Healthy,
                format!("alembic current: {}", list(&revisions)),
            ),
            Err(err) => (HealthStatus::Unhealthy, err.message()),
        };
        HealthReport {
            checks: vec![HealthCheck::new("alembic", status, detail)],
        }
    }
}

rewind_sdk::export_plugin!(Alembic: backup, revert, health);
