//! rewind plugin `service`: restart or reload services after a revert —
//! `systemctl restart php-fpm nginx`, `docker compose restart web`, or any
//! granted command list — each command with its own timeout.

use std::time::{Duration, Instant};

use rewind_sdk::{
    ArtifactRef, Capabilities, Command, Context, HookError, Plugin, PluginInfo, Report, Revert, log,
};
use serde::Deserialize;

rewind_sdk::params! {
    struct Params {
        /// [{ run = ["systemctl", "restart", "nginx"], timeout_s = 60, cwd = "…" }, …]
        commands: Vec<ServiceCommand>,
        /// Run the remaining commands after one fails
        // The hook still fails.
        keep_going: bool = false,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceCommand {
    /// argv, e.g. ["systemctl", "restart", "php8.2-fpm"].
    run: Vec<String>,
    /// Kill it after this long (capped by the instance's limit).
    #[serde(default = "default_timeout_s")]
    timeout_s: u64,
    /// Working directory, inside a granted path (for `docker compose`).
    cwd: Option<String>,
}

fn default_timeout_s() -> u64 {
    60
}

impl ServiceCommand {
    fn command(&self) -> Result<Command, HookError> {
        let Some((program, args)) = self.run.split_first() else {
            return Err(HookError::invalid_input(
                "a command in params.commands has an empty `run`",
            ));
        };
        let mut command = Command::new(program.clone())
            .args(args.iter().cloned())
            .timeout(Duration::from_secs(self.timeout_s));
        if let Some(dir) = &self.cwd {
            command = command.cwd(dir.clone());
        }
        Ok(command)
    }
}

struct Service;

impl Plugin for Service {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "service".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary:
                "Restarts or reloads services after a revert, each command with its own timeout"
                    .into(),
            capabilities: Capabilities {
                exec: vec!["<each command in params.commands>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Revert for Service {
    fn revert(ctx: &Context, _saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        if params.commands.is_empty() {
            return Err(HookError::invalid_input(
                "params.commands is empty: list the restarts to run",
            ));
        }
        let commands = params
            .commands
            .iter()
            .map(ServiceCommand::command)
            .collect::<Result<Vec<_>, _>>()?;
        if ctx.dry_run() {
            let lines: Vec<String> = commands.iter().map(Command::display).collect();
            return Ok(Report::new(format!("would run: {}", lines.join("; "))));
        }
        let mut report = Report::new(String::new());
        let mut first_error = None;
        let mut ran = 0;
        for command in &commands {
            let started = Instant::now();
            match command.run() {
                Ok(_) => {
                    ran += 1;
                    report = report.detail(
                        command.display(),
                        format!("ok in {} ms", started.elapsed().as_millis()),
                    );
                }
                Err(err) => {
                    log::error(format!("`{}` failed: {}", command.display(), err.message()));
                    report = report.detail(command.display(), format!("failed: {}", err.message()));
                    if first_error.is_none() {
                        first_error = Some(err);
                    }
                    if !params.keep_going {
                        break;
                    }
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        report.summary = format!("ran {ran} command(s)");
        Ok(report)
    }
}

rewind_sdk::export_plugin!(Service: revert);
