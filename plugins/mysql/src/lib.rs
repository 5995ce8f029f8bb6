//! rewind plugin `mysql`, for MariaDB and MySQL: backup with `mysqldump`
//! (or `mariadb-dump`) `--single-transaction --routines --triggers`
//! streamed straight into an artifact, restore by streaming it into
//! `mysql` (or `mariadb`), and a health check. The dump never passes
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
        port: u16 = 3306,
        /// User to connect as
        user: String = "root",
        /// Restore into this database instead
        restore_database: Option<String>,
        /// Granted env var holding the password (MYSQL_PWD)
        // The clients read `MYSQL_PWD`.
        password_env: Option<String>,
        /// mysqldump or mariadb-dump (or a path)
        dump_program: String = "mysqldump",
        /// mysql or mariadb (or a path)
        client_program: String = "mysql",
        /// clean: the dump replaces its tables; recreate: the whole database
        // `clean`: the dump drops and recreates its tables (tables created
        // after the backup stay). `recreate`: drop and recreate the database.
        mode: Mode = Mode::Clean,
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
    character_set: String,
    collation: String,
    size_bytes: u64,
}

impl Params {
    /// A client program with connection options and credentials; option
    /// files are ignored so that only rewind.toml decides where it connects.
    fn program(&self, program: &str) -> Command {
        let mut command = Command::new(program.to_string()).args([
            "--no-defaults".to_string(),
            "--protocol=TCP".to_string(),
            format!("--host={}", self.host),
            format!("--port={}", self.port),
            format!("--user={}", self.user),
        ]);
        if let Some(var) = &self.password_env {
            command = command.env_from("MYSQL_PWD", var);
        }
        command
    }

    /// Rows of a query, tab-separated, no headers.
    fn query(&self, database: Option<&str>, sql: &str) -> Result<String, HookError> {
        let mut command = self
            .program(&self.client_program)
            .args(["--batch", "--skip-column-names"]);
        if let Some(db) = database {
            command = command.arg(format!("--database={db}"));
        }
        let out = command.args(["--execute", sql]).run()?;
        Ok(out.stdout_text().trim().to_string())
    }

    fn target_database(&self) -> &str {
        self.restore_database.as_deref().unwrap_or(&self.database)
    }
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn quote_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

struct Mysql;

impl Plugin for Mysql {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "mysql".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "MariaDB/MySQL: mysqldump backup, mysql restore, connection health".into(),
            capabilities: Capabilities {
                exec: vec![
                    "<params.dump_program, mysqldump> **".into(),
                    "<params.client_program, mysql> **".into(),
                ],
                env: vec!["<params.password_env, usually MYSQL_PWD>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for Mysql {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let facts = params.query(
            None,
            &format!(
                "select version(), s.default_character_set_name, s.default_collation_name, \
                 (select coalesce(sum(data_length + index_length), 0) from information_schema.tables t \
                  where t.table_schema = s.schema_name) \
                 from information_schema.schemata s where s.schema_name = {}",
                quote_string(&params.database)
            ),
        )?;
        let fields: Vec<&str> = facts.split('\t').collect();
        let [version, charset, collation, size] = fields[..] else {
            return Err(HookError::failed(format!(
                "database `{}` does not exist on {}:{}",
                params.database, params.host, params.port
            )));
        };
        let dump = params
            .program(&params.dump_program)
            .args([
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--default-character-set=utf8mb4",
            ])
            .arg(params.database.clone())
            .run_to_artifact("dump", "application/sql")?;
        let state = artifacts::write_json(
            "state",
            &State {
                server_version: version.to_string(),
                database: params.database.clone(),
                character_set: charset.to_string(),
                collation: collation.to_string(),
                size_bytes: size.parse().unwrap_or(0),
            },
        )?;
        Ok(vec![dump, state])
    }
}

impl Restore for Mysql {
    fn restore(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let dump = artifacts::find(saved, "dump")?;
        let state: Option<State> = artifacts::find(saved, "state")
            .ok()
            .and_then(|a| artifacts::read_json(a).ok());
        let target = params.target_database();
        if ctx.dry_run() {
            return Ok(Report::new(format!(
                "would load a {} byte dump into database {target} ({})",
                dump.size,
                match params.mode {
                    Mode::Clean => "replacing the dump's tables",
                    Mode::Recreate => "dropping and recreating the database",
                }
            )));
        }
        let started = Instant::now();
        let name = quote_ident(target);
        if params.mode == Mode::Recreate {
            let options = state
                .as_ref()
                .map(|s| {
                    format!(
                        " character set {} collate {}",
                        quote_string(&s.character_set),
                        quote_string(&s.collation)
                    )
                })
                .unwrap_or_default();
            params.query(
                None,
                &format!("drop database if exists {name}; create database {name}{options}"),
            )?;
        } else {
            params.query(None, &format!("create database if not exists {name}"))?;
        }
        params
            .program(&params.client_program)
            .arg(format!("--database={target}"))
            .run_from_artifact(dump)?;
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

impl Health for Mysql {
    fn check(ctx: &Context) -> HealthReport {
        let started = Instant::now();
        let (status, detail) = match ctx.params::<Params>() {
            Err(err) => (HealthStatus::Unhealthy, err.message()),
            Ok(params) => match params.query(Some(&params.database), "select version()") {
                Ok(version) => (
                    HealthStatus::Healthy,
                    format!("server {version}, database {} answers", params.database),
                ),
                Err(err) => (HealthStatus::Unhealthy, err.message()),
            },
        };
        let mut check = HealthCheck::new("mysql", status, detail);
        check.latency_ms = started.elapsed().as_millis() as u64;
        HealthReport {
            checks: vec![check],
        }
    }
}

rewind_sdk::export_plugin!(Mysql: backup, restore, health);
