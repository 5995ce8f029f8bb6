//! rewind plugin `sqlite`: a consistent backup of a live SQLite database
//! and a restore that is safe while the application has it open.
//!
//! Backup runs `sqlite3 <db> .dump`, which reads inside one transaction:
//! the dump is the last committed state even while a writer is busy (a
//! bare file copy of a database being written, or of one in WAL mode
//! without its -wal file, can be torn). Restore builds a fresh database
//! from the dump beside the original, then copies it in with `.restore`,
//! which uses SQLite's backup API: it takes the database's locks and
//! handles the WAL, so readers never see a half-restored file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, Health, HealthCheck, HealthReport,
    HealthStatus, HookError, PathRequest, Plugin, PluginInfo, Report, Restore, artifacts,
};

rewind_sdk::params! {
    struct Params {
        /// The database file (absolute)
        path: String,
        /// The sqlite3 program
        sqlite3: String = "sqlite3",
        /// How long to wait for the application's locks
        // In milliseconds.
        busy_timeout_ms: u64 = 10_000,
    }
}

impl Params {
    fn database(&self) -> Result<PathBuf, HookError> {
        let path = PathBuf::from(&self.path);
        if !path.is_absolute() {
            return Err(HookError::invalid_input(format!(
                "params.path `{}` must be an absolute path",
                self.path
            )));
        }
        Ok(path)
    }

    fn sqlite3(&self, database: &Path) -> Command {
        // `-cmd` (not a trailing argument) so that a command fed on stdin
        // still reads stdin: trailing arguments make sqlite3 ignore it.
        Command::new(self.sqlite3.clone()).args([
            "-bail".to_string(),
            "-cmd".to_string(),
            format!(".timeout {}", self.busy_timeout_ms),
            database.display().to_string(),
        ])
    }
}

struct Sqlite;

impl Plugin for Sqlite {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sqlite".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "SQLite: consistent .dump of a live database, restore through the backup API"
                .into(),
            capabilities: Capabilities {
                exec: vec!["sqlite3 **".into()],
                paths: vec![PathRequest {
                    path: "<directory of params.path>".into(),
                    writable: true,
                    reason: "restore builds the new database beside the old one".into(),
                }],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for Sqlite {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let database = params.database()?;
        if !database.is_file() {
            return Err(HookError::failed(format!(
                "{} does not exist (or its directory is not in grants.paths)",
                database.display()
            )));
        }
        let dump = params
            .sqlite3(&database)
            .arg(".dump")
            .run_to_artifact("dump", "application/sql")?;
        Ok(vec![dump])
    }
}

impl Restore for Sqlite {
    fn restore(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let database = params.database()?;
        let dump = artifacts::find(saved, "dump")?;
        if ctx.dry_run() {
            return Ok(Report::new(format!(
                "would rebuild {} from a {} byte SQL dump",
                database.display(),
                dump.size
            )));
        }
        let started = Instant::now();
        let dir = database.parent().unwrap_or(Path::new("/"));
        let name = database
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fresh = dir.join(format!(".{name}.rewind-restore-{}", ctx.run_id()));
        let _ = std::fs::remove_file(&fresh);
        let result = (|| {
            params.sqlite3(&fresh).run_from_artifact(dump)?;
            params
                .sqlite3(&database)
                .arg(format!(".restore '{}'", fresh.display()))
                .run()
        })();
        let _ = std::fs::remove_file(&fresh);
        result?;
        Ok(Report::new(format!(
            "restored {} from a {} byte dump",
            database.display(),
            dump.size
        ))
        .detail("duration_ms", started.elapsed().as_millis().to_string()))
    }
}

impl Health for Sqlite {
    fn check(ctx: &Context) -> HealthReport {
        let started = Instant::now();
        let (status, detail) = match ctx.params::<Params>().and_then(|p| {
            let db = p.database()?;
            let out = p.sqlite3(&db).arg("pragma quick_check").run()?;
            Ok((db, out.stdout_text().trim().to_string()))
        }) {
            Ok((db, verdict)) if verdict == "ok" => (
                HealthStatus::Healthy,
                format!("{}: quick_check ok", db.display()),
            ),
            Ok((db, verdict)) => (
                HealthStatus::Unhealthy,
                format!("{}: quick_check says {verdict}", db.display()),
            ),
            Err(err) => (HealthStatus::Unhealthy, err.message()),
        };
        let mut check = HealthCheck::new("sqlite", status, detail);
        check.latency_ms = started.elapsed().as_millis() as u64;
        HealthReport {
            checks: vec![check],
        }
    }
}

rewind_sdk::export_plugin!(Sqlite: backup, restore, health);
