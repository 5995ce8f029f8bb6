//! The `rewind` command line: argument definitions and dispatch.

/// `return Err(anyhow!(…).into())`: `anyhow::bail!` for the CLI's [`Result`].
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(anyhow::anyhow!($($arg)*).into())
    };
}

mod console;
mod demo;
mod fleet;
mod hook;
mod inspect;
mod new;
mod read;
mod runs;
mod setup;
mod share;
mod target;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rewind::exit::ExitCode;
use rewind::run::RunError;

/// A command's failure and the exit code it ends with: the code is chosen
/// where the error is typed (a [`RunError`] knows its own), never by
/// downcasting; anything else is a usage, configuration or environment
/// error.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub error: anyhow::Error,
}

impl From<RunError> for Failure {
    fn from(err: RunError) -> Self {
        Failure {
            code: err.exit_code(),
            error: err.into(),
        }
    }
}

impl From<rewind::run::hook::HookRunError> for Failure {
    fn from(err: rewind::run::hook::HookRunError) -> Self {
        Failure {
            code: err.exit_code(),
            error: err.into(),
        }
    }
}

impl From<rewind::store::LockError> for Failure {
    fn from(err: rewind::store::LockError) -> Self {
        RunError::from(err).into()
    }
}

macro_rules! usage_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Failure {
            fn from(err: $ty) -> Self {
                Failure {
                    code: ExitCode::Usage,
                    error: err.into(),
                }
            }
        }
    )*};
}
usage_errors!(
    anyhow::Error,
    std::io::Error,
    serde_json::Error,
    rewind::config::ConfigError,
    rewind::engine::EngineError,
    rewind::plugin::PluginError,
    rewind::plugin::DescribeError,
    rewind::registry::RegistryError,
    rewind::registry::LockFileError,
    rewind::registry::ReferenceError,
    rewind::registry::SignatureError,
    rewind::run::source::SourceError
);

/// What every command returns.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

const EXAMPLES: &str = "\
Examples:
  rewind demo                          the self-contained demo
  rewind init --template static        write a commented rewind.toml
  rewind check                         config, pins, grants, store
  rewind guard -- ./deploy.sh v2       backup, deploy, health gate, auto-rollback
  rewind rollback --dry-run            what a rollback would do
  rewind status
  rewind fleet status                  every host of a store the fleet shares";

/// `rewind --help`'s epilogue: the exit codes (from their one definition),
/// then examples.
fn after_help() -> String {
    format!("{}\n{EXAMPLES}", ExitCode::help_text(76))
}

#[derive(Debug, Parser)]
#[command(
    name = "rewind",
    version,
    about = "Safe, fast, tested deployment rollback, with sandboxed WebAssembly plugins",
    after_help = after_help()
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "REWIND_CONFIG", default_value = crate_config_default())]
    pub config: PathBuf,
    /// Show plugin log lines (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Wait this long for a store lock another run holds (`30s`, `5m`),
    /// instead of failing at once with exit 5.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_wait, default_value = "0s")]
    pub lock_wait: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// `30s`, `5m`, `1h 30m`, `2 minutes`: what jiff's friendly format reads.
fn parse_wait(text: &str) -> std::result::Result<std::time::Duration, String> {
    let span: jiff::SignedDuration = text
        .parse()
        .map_err(|err| format!("`{text}` is not a duration like 30s, 5m or 1h 30m ({err})"))?;
    std::time::Duration::try_from(span).map_err(|_| format!("`{text}` is negative"))
}

const fn crate_config_default() -> &'static str {
    rewind::config::DEFAULT_CONFIG
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the self-contained demo: a guarded deploy that breaks and is rolled back.
    #[command(after_help = demo::AFTER_HELP)]
    Demo(demo::DemoArgs),
    /// Write a commented starting rewind.toml.
    #[command(after_help = setup::INIT_AFTER_HELP)]
    Init(setup::InitArgs),
    /// Validate the config, plugin pins, grants against what plugins request, and the store.
    #[command(after_help = setup::CHECK_AFTER_HELP)]
    Check(JsonArg),
    /// List or inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Run the backup chain.
    #[command(after_help = runs::BACKUP_AFTER_HELP)]
    Backup(runs::BackupArgs),
    /// Roll back to a backup: verify, safety backup, rollback chain, health.
    #[command(after_help = runs::ROLLBACK_AFTER_HELP)]
    Rollback(runs::RollbackArgs),
    /// Back up, run a deploy command, check health, roll back automatically if it fails.
    #[command(after_help = runs::GUARD_AFTER_HELP)]
    Guard(runs::GuardArgs),
    /// Run the health checks (guard.health) once.
    Health(JsonArg),
    /// Health, last runs, newest backup, interrupted runs, the lock.
    Status(JsonArg),
    /// The runs in the store, newest first; with a run id, that run's manifest.
    History(read::HistoryArgs),
    /// List, verify or prune stored artifacts.
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// Remove a stale store lock (one whose process is gone).
    Unlock(read::UnlockArgs),
    /// A fleet store (store.fleet = true): every host's backups, runs and leases.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Run one hook of one plugin, for plugin development and debugging.
    #[command(after_help = hook::AFTER_HELP)]
    Hook(Box<HookArgs>),
}

/// `--json` for commands that take nothing else.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Every artifact of every run (or of one run).
    List(read::ArtifactsListArgs),
    /// Re-hash every blob and walk the manifest hash chain.
    #[command(after_help = read::VERIFY_AFTER_HELP)]
    Verify(read::VerifyArgs),
    /// Remove runs and blobs past retention (store.keep_days, store.keep_last).
    #[command(after_help = read::PRUNE_AFTER_HELP)]
    Prune(read::PruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// The plugin instances of the config: source, pin, hooks, chains.
    List(JsonArg),
    /// Show a plugin's name, version, API version, hooks, requested
    /// capabilities, parameters and sha256 (and, for an instance, its grants).
    #[command(after_help = inspect::AFTER_HELP)]
    Inspect {
        /// A .wasm file, or the name of an instance in the config.
        plugin: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a new plugin project (Rust or Python) that builds and tests its hooks.
    #[command(after_help = new::AFTER_HELP)]
    New(new::NewArgs),
    /// Publish a component to an OCI registry as the CNCF Wasm artifact (what wkg and oras pull).
    #[command(after_help = share::PUSH_AFTER_HELP)]
    Push(share::PushArgs),
    /// Lock the oci:// plugin sources rewind.lock does not pin yet (keeps what is locked).
    #[command(after_help = share::LOCK_AFTER_HELP)]
    Lock(JsonArg),
    /// Re-resolve oci:// tags on purpose (all, or NAME's) and print old -> new digests.
    #[command(after_help = share::UPDATE_AFTER_HELP)]
    Update(share::UpdateArgs),
    /// Sign a .wasm file (FILE.minisig) or a pushed plugin (a signature artifact beside it).
    #[command(after_help = share::SIGN_AFTER_HELP)]
    Sign(share::SignArgs),
    /// Make a minisign key pair for signing plugins: NAME.key and NAME.pub.
    #[command(after_help = share::KEYGEN_AFTER_HELP)]
    Keygen(share::KeygenArgs),
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// A .wasm file, or the name of an instance in the config.
    pub plugin: String,
    /// backup, restore, revert, health or notify.
    pub hook: rewind::plugin::HookKind,
    /// Artifacts for restore/revert: the JSON that `rewind hook … backup --json` printed.
    #[arg(long, value_name = "FILE", conflicts_with = "run")]
    pub artifacts: Option<PathBuf>,
    /// Artifacts for restore/revert: those this instance wrote in a backup run.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Change nothing; the plugin reports what it would do.
    #[arg(long)]
    pub dry_run: bool,
    /// An explicit target (release, commit, revision) for revert.
    #[arg(long)]
    pub target: Option<String>,
    /// The artifact store directory (default: the config's store.url, else $REWIND_STORE,
    /// else ~/.local/share/rewind/store).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub adhoc: AdHocArgs,
    #[command(flatten)]
    pub event: EventArgs,
}

/// Grants, params and limits for running a .wasm file directly (an instance
/// takes them from the config instead).
#[derive(Debug, Args, Default)]
pub struct AdHocArgs {
    /// Expected sha256 of the .wasm file; refuse to load on mismatch.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Params as one JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// One param: key=value (value parsed as JSON when it is valid JSON, else a string).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// Grant a directory (prefix ro: for read-only), like grants.paths.
    #[arg(long = "grant-path", value_name = "DIR")]
    pub grant_path: Vec<String>,
    /// Grant a command pattern, like grants.exec ("git rev-parse *").
    #[arg(long = "grant-exec", value_name = "PATTERN")]
    pub grant_exec: Vec<String>,
    /// Grant an environment variable, like grants.env.
    #[arg(long = "grant-env", value_name = "NAME")]
    pub grant_env: Vec<String>,
    /// Grant an HTTP origin, like grants.http ("http://127.0.0.1:*").
    #[arg(long = "grant-http", value_name = "ORIGIN")]
    pub grant_http: Vec<String>,
    /// Grant a TCP connection, like grants.tcp ("127.0.0.1:25").
    #[arg(long = "grant-tcp", value_name = "HOST:PORT")]
    pub grant_tcp: Vec<String>,
    /// Let the fs import give files to this owner, like grants.owners ("www-data:www-data").
    #[arg(long = "grant-owner", value_name = "USER:GROUP")]
    pub grant_owner: Vec<String>,
    /// Let the fs import set setuid and setgid bits, like grants.setid = true.
    #[arg(long = "grant-setid")]
    pub grant_setid: bool,
    /// Memory cap in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory_mb: Option<u64>,
    /// Wall-clock limit in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout_s: Option<u64>,
}

/// The event a notify hook is called with.
#[derive(Debug, Args)]
pub struct EventArgs {
    /// Event kind for notify: info, success, warning, error, rollback-success, rollback-failed.
    #[arg(long, default_value = "info", value_name = "KIND")]
    pub event_kind: String,
    /// Event title for notify.
    #[arg(long, default_value = "rewind test notification", value_name = "TEXT")]
    pub event_title: String,
    /// Event message for notify.
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub event_message: String,
}

/// Run the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let echo = if cli.quiet {
        None
    } else {
        Some(match cli.verbose {
            0 => rewind::sandbox::LogLevel::Info,
            1 => rewind::sandbox::LogLevel::Debug,
            _ => rewind::sandbox::LogLevel::Trace,
        })
    };
    match &cli.command {
        Command::Demo(args) => demo::run(&cli, args),
        Command::Init(args) => setup::init(&cli, args),
        Command::Check(args) => setup::check(&cli, args.json),
        Command::Plugins(PluginsCommand::List(args)) => setup::list_plugins(&cli, args.json),
        Command::Plugins(PluginsCommand::Inspect { plugin, json }) => {
            inspect::run(&cli, plugin, *json)
        }
        Command::Plugins(PluginsCommand::New(args)) => new::run(args),
        Command::Plugins(PluginsCommand::Push(args)) => share::push(args),
        Command::Plugins(PluginsCommand::Lock(args)) => share::lock(&cli, args.json, None),
        Command::Plugins(PluginsCommand::Update(args)) => {
            share::lock(&cli, args.json, Some(args.name.as_deref()))
        }
        Command::Plugins(PluginsCommand::Sign(args)) => share::sign(args),
        Command::Plugins(PluginsCommand::Keygen(args)) => share::keygen(args),
        Command::Backup(args) => runs::backup(&cli, args),
        Command::Rollback(args) => runs::rollback(&cli, args),
        Command::Guard(args) => runs::guard(&cli, args),
        Command::Health(args) => runs::health(&cli, args.json),
        Command::Status(args) => read::status(&cli, args.json),
        Command::History(args) => read::history(&cli, args),
        Command::Artifacts(ArtifactsCommand::List(args)) => read::list_artifacts(&cli, args),
        Command::Artifacts(ArtifactsCommand::Verify(args)) => read::verify(&cli, args),
        Command::Artifacts(ArtifactsCommand::Prune(args)) => read::prune(&cli, args),
        Command::Unlock(args) => read::unlock(&cli, args),
        Command::Fleet(command) => fleet::run(&cli, command),
        Command::Hook(args) => hook::run(&cli, args, echo),
    }
}

/// Load the config named by `--config`.
pub fn load_config(cli: &Cli) -> anyhow::Result<rewind::config::Config> {
    Ok(rewind::config::Config::load(&cli.config)?)
}

/// Open the store a config names (creating it if needed).
pub fn open_store(config: &rewind::config::Config) -> anyhow::Result<rewind::store::Store> {
    let location = config.store.location();
    let shown = location.display();
    config.store.open().map_err(|err| {
        if rewind::store::FormatError::of(&err).is_some() {
            // The store is there but in a format this rewind does not read:
            // pointing store.url elsewhere would not be the fix.
            anyhow::anyhow!("cannot open the artifact store {shown}: {err}")
        } else if let rewind::store::StoreLocation::S3(_) = location {
            // The S3 errors say what to fix (credentials, bucket, endpoint).
            anyhow::anyhow!(
                "cannot open the artifact store {shown}: {err}\n  (store.url, store.endpoint and store.region are in {})",
                config.path.display()
            )
        } else {
            anyhow::anyhow!(
                "cannot open the artifact store {shown}: {err} (set store.url in {} to a directory rewind can write)",
                config.path.display()
            )
        }
    })
}

/// The wasmtime runtime every command that loads plugins uses: created here
/// only, with the default compile cache.
pub fn runtime() -> Result<rewind::engine::Runtime, rewind::engine::EngineError> {
    rewind::engine::Runtime::new(rewind::engine::Runtime::default_cache_dir())
}

/// The command line as typed, for the lock file.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    let mut line = args.join(" ");
    if let Some(first) = args.first() {
        let name = std::path::Path::new(first)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        line = line.replacen(first.as_str(), &name, 1);
    }
    line
}

/// An RFC 3339 timestamp to the second, for people.
pub fn short_time(text: &str) -> String {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| text.to_string())
}

/// Print a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod docs_test;
