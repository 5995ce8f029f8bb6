//! The `rewind` command line: argument definitions and dispatch.

mod hook;
mod inspect;
mod target;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes, documented in `rewind --help` and docs/cli.md.
pub mod exit {
    /// Everything succeeded.
    pub const OK: i32 = 0;
    /// A hook failed, was denied, or reported unhealthy.
    pub const HOOK_FAILED: i32 = 1;
    /// Bad arguments or configuration (clap also uses 2).
    pub const USAGE: i32 = 2;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  a hook failed, was denied, or reported unhealthy
  2  usage or configuration error

Examples:
  rewind plugins inspect plugins/release-symlink.wasm
  rewind hook plugins/http-health.wasm health --grant-http http://127.0.0.1:8080 \\
      --param url=http://127.0.0.1:8080/health
  rewind --config /srv/shop/rewind.toml hook code backup";

#[derive(Debug, Parser)]
#[command(
    name = "rewind",
    version,
    about = "Safe, fast, tested deployment rollback, with sandboxed WebAssembly plugins",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "REWIND_CONFIG", default_value = crate_config_default())]
    pub config: PathBuf,
    /// More log output from plugins (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

const fn crate_config_default() -> &'static str {
    rewind::config::DEFAULT_CONFIG
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Run one hook of one plugin, for plugin development and debugging.
    #[command(after_help = hook::AFTER_HELP)]
    Hook(Box<HookArgs>),
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
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
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// A .wasm file, or the name of an instance in the config.
    pub plugin: String,
    /// backup, restore, revert, health or notify.
    pub hook: rewind::plugin::HookKind,
    /// Artifacts for restore/revert: the JSON that `rewind hook … backup --json` printed.
    #[arg(long, value_name = "FILE")]
    pub artifacts: Option<PathBuf>,
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
pub fn run(cli: Cli) -> anyhow::Result<i32> {
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
        Command::Plugins(PluginsCommand::Inspect { plugin, json }) => {
            inspect::run(&cli, plugin, *json)
        }
        Command::Hook(args) => hook::run(&cli, args, echo),
    }
}
