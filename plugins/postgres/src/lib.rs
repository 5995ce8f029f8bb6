//! rewind plugin `postgres`: backup with `pg_dump` (custom format,
//! uncompressed: the store compresses) streamed straight into an artifact,
//! restore with `pg_restore --clean --if-exists` (in one transaction)
//! streamed straight from it, and a health check. The dump never passes
//! through the plugin's memory.

use std::time::Instant;

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, Health, HealthCheck, HealthReport,
    HealthStatus, HookError, Plugin, PluginInfo, Report, Restore, artifacts,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// The database to back up and restore
        database: String,
        /// Server host
        host: String = "127.0.0.1",
        /// Server port
        port: u16 = 5432,
        /// Role to connect as
        user: String = "postgres",
        /// Restore into this database instead
        restore_database: Option<String>,
        /// Granted env var holding the password (PGPASSWORD)
        password_env: Option<String>,
        /// A .pgpass file (PGPASSFILE)
        // Passed as PGPASSFILE: grant `PGPASSFILE` in grants.env.
        passfile: Option<String>,
        /// Directory of pg_dump, pg_restore, psql
        // e.g. /usr/lib/postgresql/15/bin
        bin_dir: Option<String>,
        /// clean: recreate the dump's objects; recreate: the whole database
        // `clean`: drop and recreate the dump's objects (objects created
        // after the backup stay). `recreate`: drop and recreate the whole
        // database, so it is exactly the dump.
        mode: Mode = Mode::Clean,
        /// Restore in one transaction (all or nothing)
        single_transaction: bool = true,
        /// Do not restore object owners
        no_owner: bool = false,
        /// pg_dump's --compress for the dump: "0" (default) leaves it to the store, whose zstd is faster and whose chunks deduplicate unchanged data across backups; "6", "zstd", … compress in pg_dump instead
        // pg_dump's own zlib costs most of a custom-format dump's time (20x
        // the CPU of the uncompressed dump here) and makes every dump's
        // bytes differ, so content-defined chunking finds nothing to share.
        dump_compression: String = "0",
    }
}

#[derive(Deserialize, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Clean,
    Recreate,
}

impl rewind_sdk::ParamType for Mode {
    const KIND: rewind_sdk::ParamKind = rewind_sdk::ParamKind::String;
}

/// What a backup records beside the dump.
#[derive(Serialize, Deserialize)]
struct State {
    server_version: String,
    database: String,
    host: String,
    port: u16,
    size_bytes: u64,
}

impl Params {
    fn program(&self, name: &str) -> String {
        match &self.bin_dir {
            Some(dir) => format!("{}/{name}", dir.trim_end_matches('/')),
            None => name.to_string(),
        }
    }

    /// A client command with connection options and credentials.
    fn client(&self, program: &str, database: &str) -> Command {
        let mut command = Command::new(self.program(program)).args([
            "--no-password".to_string(),
            format!("--host={}", self.host),
            format!("--port={}", self.port),
            format!("--username={}", self.user),
            format!("--dbname={database}"),
        ]);
        if let Some(var) = &self.password_env {
            command = command.env_from("PGPASSWORD", var);
        }
        if let Some(file) = &self.passfile {
            command = command.env("PGPASSFILE", file.clone());
        }
        command
    }

    /// One value from `psql`: unaligned, tuples only, stop on error.
    fn query(&self, database: &str, sql: &str) -> Result<String, HookError> {
        let out = self
            .client("psql", database)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .run()?;
        Ok(out.stdout_text().trim().to_string())
    }

    fn target_database(&self) -> &str {
        self.restore_database.as_deref().unwrap_or(&self.database)
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

struct Postgres;

impl Plugin for Postgres {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "postgres".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "PostgreSQL: pg_dump backup, pg_restore restore, connection health".into(),
            capabilities: Capabilities {
                exec: vec![
                    "pg_dump **".into(),
                    "pg_restore **".into(),
                    "psql **".into(),
                ],
                env: vec!["<params.password_env, usually PGPASSWORD>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for Postgres {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let facts = params.query(
            &params.database,
            "select current_setting('server_version') || '|' || pg_database_size(current_database())",
        )?;
        let (version, size) = facts.split_once('|').unwrap_or((&facts, "0"));
        let dump = params
            .client("pg_dump", &params.database)
            .arg("--format=custom")
            .arg(format!("--compress={}", params.dump_compression))
            .run_to_artifact("dump", "application/vnd.postgresql.pg-dump")?;
        let state = artifacts::write_json(
            "state",
            &State {
                server_version: version.to_string(),
                database: params.database.clone(),
                host: params.host.clone(),
                port: params.port,
                size_bytes: size.parse().unwrap_or(0),
            },
        )?;
        Ok(vec![dump, state])
    }
}

impl Restore for Postgres {
    fn restore(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let dump = artifacts::find(saved, "dump")?;
        let state: Option<State> = artifacts::find(saved, "state")
            .ok()
            .and_then(|a| artifacts::read_json(a).ok());
        let target = params.target_database();
        if ctx.dry_run() {
            let listing = Command::new(params.program("pg_restore"))
                .arg("--list")
                .run_from_artifact(dump)?;
            let entries = listing
                .stdout_text()
                .lines()
                .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                .count();
            return Ok(Report::new(format!(
                "would restore {entries} objects into database {target} ({})",
                match params.mode {
                    Mode::Clean => "replacing the dump's objects",
                    Mode::Recreate => "dropping and recreating the database",
                }
            ))
            .detail("dump_bytes", dump.size.to_string()));
        }

        let started = Instant::now();
        if params.mode == Mode::Recreate {
            let name = quote_ident(target);
            params.query(
                "postgres",
                &format!("drop database if exists {name} with (force)"),
            )?;
            params.query("postgres", &format!("create database {name}"))?;
        }
        let mut restore = params.client("pg_restore", target);
        if params.mode == Mode::Clean {
            restore = restore.args(["--clean", "--if-exists"]);
        }
        if params.single_transaction {
            restore = restore.args(["--single-transaction", "--exit-on-error"]);
        }
        if params.no_owner {
            restore = restore.arg("--no-owner");
        }
        restore.run_from_artifact(dump)?;
        let mut report = Report::new(format!(
            "restored database {target} from a {} byte dump",
            dump.size
        ))
        .detail("duration_ms", started.elapsed().as_millis().to_string());
        if let Some(state) = state {
            report = report
                .detail("dumped_from", state.database)
                .detail("server_version_at_backup", state.server_version);
        }
        Ok(report)
    }
}

impl Health for Postgres {
    fn check(ctx: &Context) -> HealthReport {
        let started = Instant::now();
        let (status, detail) = match ctx.params::<Params>() {
            Err(err) => (HealthStatus::Unhealthy, err.message()),
            Ok(params) => match params.query(
                &params.database,
                "select 'PostgreSQL ' || current_setting('server_version')",
            ) {
                Ok(version) => (
                    HealthStatus::Healthy,
                    format!("{version}, database {} answers", params.database),
                ),
                Err(err) => (HealthStatus::Unhealthy, err.message()),
            },
        };
        let mut check = HealthCheck::new("postgres", status, detail);
        check.latency_ms = started.elapsed().as_millis() as u64;
        HealthReport {
            checks: vec![check],
        }
    }
}

rewind_sdk::export_plugin!(Postgres: backup, restore, health);
