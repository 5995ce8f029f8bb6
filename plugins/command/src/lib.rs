//! rewind plugin `command`: the escape hatch. Runs a configured command as
//! a backup, restore, revert or health step, under the same grants as any
//! other plugin (the program and its arguments must match `grants.exec`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, Health, HealthCheck, HealthReport,
    HealthStatus, HookError, Plugin, PluginInfo, Report, Restore, Revert, artifacts,
};

rewind_sdk::params! {
    struct Params {
        /// argv of the backup command
        backup: Option<Vec<String>>,
        /// argv of the restore command
        restore: Option<Vec<String>>,
        /// argv of the revert command
        revert: Option<Vec<String>>,
        /// argv of the health command (exit 0 = healthy)
        health: Option<Vec<String>>,
        /// Working directory (inside a granted path)
        cwd: Option<String>,
        /// Literal environment variables (each must be granted)
        env: BTreeMap<String, String> = BTreeMap::new(),
        /// Host variables to pass through (granted)
        inherit_env: Vec<String> = Vec::new(),
        /// Kill the command after this long
        timeout_ms: Option<u64>,
        /// Keep the backup command's stdout as artifact `stdout`
        capture: bool = true,
        /// Feed `stdout` to restore/revert stdin
        // The backed-up `stdout` artifact.
        restore_stdin: bool = false,
        /// Name of the health check
        name: String = "command",
    }
}

impl Params {
    fn command(&self, step: &str) -> Result<Command, HookError> {
        let argv = match step {
            "backup" => &self.backup,
            "restore" => &self.restore,
            "revert" => &self.revert,
            _ => &self.health,
        };
        let Some((program, args)) = argv.as_deref().and_then(<[String]>::split_first) else {
            return Err(HookError::unsupported(format!(
                "no `{step}` command is configured; set params.{step} = [\"program\", \"arg\", ...]"
            )));
        };
        let mut command = Command::new(program.clone()).args(args.iter().cloned());
        if let Some(dir) = &self.cwd {
            command = command.cwd(dir.clone());
        }
        for (key, value) in &self.env {
            command = command.env(key.clone(), value.clone());
        }
        for key in &self.inherit_env {
            command = command.inherit_env(key.clone());
        }
        if let Some(ms) = self.timeout_ms {
            command = command.timeout(Duration::from_millis(ms));
        }
        Ok(command)
    }

    /// Restore and revert share one shape: run, optionally fed the backup's stdout.
    fn apply(&self, step: &str, ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let command = self.command(step)?;
        if ctx.dry_run() {
            return Ok(Report::new(format!("would run `{}`", command.display())));
        }
        let started = Instant::now();
        let output = if self.restore_stdin {
            command.run_from_artifact(artifacts::find(saved, "stdout")?)?
        } else {
            command.run()?
        };
        Ok(Report::new(format!("ran `{}`", command.display()))
            .detail("exit_code", "0")
            .detail("duration_ms", started.elapsed().as_millis().to_string())
            .detail("stdout_bytes", output.stdout.len().to_string()))
    }
}

struct CommandPlugin;

impl Plugin for CommandPlugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "command".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Runs a configured command as a backup, restore, revert or health step".into(),
            capabilities: Capabilities {
                exec: vec!["<program of each configured command> **".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for CommandPlugin {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let command = params.command("backup")?;
        if params.capture {
            Ok(vec![
                command.run_to_artifact("stdout", "application/octet-stream")?,
            ])
        } else {
            command.run()?;
            Ok(Vec::new())
        }
    }
}

impl Restore for CommandPlugin {
    fn restore(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        ctx.params::<Params>()?.apply("restore", ctx, saved)
    }
}

impl Revert for CommandPlugin {
    fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        ctx.params::<Params>()?.apply("revert", ctx, saved)
    }
}

impl Health for CommandPlugin {
    fn check(ctx: &Context) -> HealthReport {
        let started = Instant::now();
        let (name, status, detail) = match ctx.params::<Params>() {
            Err(err) => (
                "command".to_string(),
                HealthStatus::Unhealthy,
                err.message(),
            ),
            Ok(params) => {
                let outcome = params
                    .command("health")
                    .and_then(|c| c.output().map(|o| (c, o)));
                let (status, detail) = match outcome {
                    Err(err) => (HealthStatus::Unhealthy, err.message()),
                    Ok((command, out)) if out.success() => {
                        let first = out.stdout_text().lines().next().unwrap_or("").to_string();
                        (
                            HealthStatus::Healthy,
                            format!("`{}` exited 0 {first}", command.display())
                                .trim_end()
                                .to_string(),
                        )
                    }
                    Ok((command, out)) => {
                        let last = out
                            .stderr_text()
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("")
                            .to_string();
                        let code = out
                            .exit_code
                            .map_or("a signal".to_string(), |c| format!("code {c}"));
                        let said = if last.is_empty() {
                            String::new()
                        } else {
                            format!(": {last}")
                        };
                        (
                            HealthStatus::Unhealthy,
                            format!("`{}` exited with {code}{said}", command.display()),
                        )
                    }
                };
                (params.name, status, detail)
            }
        };
        let mut check = HealthCheck::new(&name, status, detail);
        check.latency_ms = started.elapsed().as_millis() as u64;
        HealthReport {
            checks: vec![check],
        }
    }
}

rewind_sdk::export_plugin!(CommandPlugin: backup, restore, revert, health);
