//! `rewind init`, `rewind check` and `rewind plugins list`.

use std::path::{Path, PathBuf};

use super::Result;
use clap::Args;
use rewind::config::Config;
use rewind::run::check::{self, Level};
use serde_json::json;

use super::{Cli, print_json};
use rewind::exit::ExitCode;

pub const INIT_AFTER_HELP: &str = "\
Templates:
  static   a release-symlink deploy (Capistrano/Deployer layout) with
           config files and an HTTP health check
  laravel  static + PostgreSQL + Laravel migrations and caches
  django   static + PostgreSQL + Django migrations
  alembic  static + PostgreSQL + Alembic revisions
  demo     the layout `rewind demo` uses, rooted at --app

Plugin files are looked up in --plugins (default: $REWIND_PLUGINS, then the
wasm32-wasip2 build next to this binary) and pinned by their sha256.

Examples:
  rewind init
  rewind init --template static --app /srv/shop --plugins /usr/lib/rewind/plugins
  rewind init --template demo --app /tmp/demo-app --config /tmp/demo-app/rewind.toml";

pub const CHECK_AFTER_HELP: &str = "\
Checks, in order: the config parses (errors point at file:line:column);
rewind.lock pins every oci:// source and nothing else (else: `rewind plugins
lock`); every plugin file matches its sha256 pin and loads (shown with its
API version, rewind:hooks@0.1.0); each instance has the
params its plugin requires; each chain step's plugin exports the hook it is
used for; concrete capabilities a plugin requests are granted (and grants it
never requested are flagged); the store is reachable and writable.

Examples:
  rewind check
  rewind --config /srv/shop/rewind.toml check --json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    Static,
    Demo,
    Laravel,
    Django,
    Alembic,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Which starting point.
    #[arg(long, value_enum, default_value = "static")]
    pub template: Template,
    /// The application directory (holding releases/ and current).
    #[arg(long, value_name = "DIR", default_value = "/srv/app")]
    pub app: PathBuf,
    /// Where the plugin .wasm files are.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Where plugins are found: `explicit`, `$REWIND_PLUGINS`, or the
/// wasm32-wasip2 build next to this binary (`target/<profile>/rewind` →
/// `target/wasm32-wasip2/release`).
pub fn plugin_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    // Absolute, since the paths end up in a config file elsewhere.
    let absolute = |dir: PathBuf| std::path::absolute(&dir).unwrap_or(dir);
    if let Some(dir) = explicit {
        return Some(absolute(dir.to_path_buf()));
    }
    if let Some(dir) = std::env::var_os("REWIND_PLUGINS") {
        return Some(absolute(PathBuf::from(dir)));
    }
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?;
    let dir = target.join("wasm32-wasip2").join("release");
    dir.is_dir().then_some(dir)
}

/// The .wasm file of plugin `name` (`release-symlink` → `release_symlink.wasm`
/// as cargo names it, or `release-symlink.wasm`).
pub fn plugin_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [
        format!("{}.wasm", name.replace('-', "_")),
        format!("{name}.wasm"),
    ]
    .into_iter()
    .map(|file| dir.join(file))
    .find(|path| path.is_file())
}

/// The `source = …` and `sha256 = …` lines for a plugin.
pub fn pin_lines(dir: Option<&Path>, name: &str) -> String {
    match dir.and_then(|d| plugin_file(d, name)) {
        Some(path) => match std::fs::read(&path) {
            Ok(bytes) => format!(
                "source = \"{}\"\nsha256 = \"{}\"",
                path.display(),
                rewind::plugin::sha256_hex(&bytes)
            ),
            Err(_) => unpinned(name),
        },
        None => unpinned(name),
    }
}

fn unpinned(name: &str) -> String {
    format!(
        "source = \"plugins/{name}.wasm\"\n# sha256 = \"…\"  (`rewind plugins inspect plugins/{name}.wasm` prints it; `rewind check` shows the line to add)"
    )
}

/// The config text of a template.
pub fn template_text(template: Template, app: &Path, plugins: Option<&Path>) -> String {
    // The demo's store lies beside the app, outside every grant: a plugin
    // granted the app must not reach the backups.
    let beside = app.parent().unwrap_or(app).join("store");
    let app = app.display();
    let (project, environment, store) = match template {
        Template::Demo => ("demo", "demo", format!("file://{}", beside.display())),
        _ => ("shop", "production", "file:///var/lib/rewind".to_string()),
    };
    let pin = |name: &str| pin_lines(plugins, name);
    // The demo's broken release fails for certain: one retry is enough.
    let (health_url, retries, delay_s) = match template {
        Template::Demo => ("http://127.0.0.1:{port}/health", 1, 1),
        _ => ("http://127.0.0.1:8080/health", 3, 5),
    };
    let mut text = format!(
        r#"# rewind.toml: what to back up, how to roll back, how to tell it worked.
# Every key is documented in docs/config.md. `rewind check` validates this file.

[project]
name = "{project}"
environment = "{environment}"

[store]
# Where backups live: a local directory (the embedded default store).
url = "{store}"
keep_days = 7      # runs younger than this are kept
keep_last = 3      # and always the newest 3 backups; safety backups stay until pruned on purpose

# The code: where `current` points, switched back atomically on rollback.
[plugins.code]
{symlink}
grants.paths = ["{app}"]
params = {{ base = "{app}", keep = 5 }}

# Config and data files: backed up as one artifact, restored with their modes.
[plugins.config]
{files}
grants.paths = ["{app}/shared"]
params = {{ paths = ["{app}/shared"] }}

# The health check the guard and every rollback wait for.
[plugins.web]
{health}
grants.http = ["http://127.0.0.1:*"]
params = {{ url = "{health_url}", expect_status = 200, timeout_ms = 2000 }}
limits = {{ timeout_s = 30 }}
"#,
        symlink = pin("release-symlink"),
        files = pin("files"),
        health = pin("http-health"),
    );
    if !matches!(template, Template::Static | Template::Demo) {
        text.push_str(&format!(
            r#"
# The database: a pg_dump before every deploy (or plugins/mysql.wasm for MariaDB).
[plugins.db]
{postgres}
grants.exec = ["pg_dump **", "pg_restore **", "psql **"]
grants.env = ["PGPASSWORD"]
params = {{ database = "shop", user = "shop", password_env = "PGPASSWORD" }}
limits = {{ timeout_s = 1800 }}
"#,
            postgres = pin("postgres"),
        ));
    }
    let (backup, rollback, health) = match template {
        Template::Static | Template::Demo => {
            (r#""code", "config""#, r#""code", "config""#, r#""web""#)
        }
        Template::Laravel => {
            text.push_str(&format!(
                r#"
# Migrations: undone with the new release's code, before the code switch.
# If they cannot be undone, the database dump taken before the deploy is
# restored instead, and the rollback goes on.
[plugins.migrations]
{laravel}
grants.exec = ["php {app}/current/artisan **"]
# Read-only: lets its preflight (`rewind check`, `rollback --dry-run`) see
# that `artisan down` can write storage/framework.
grants.paths = ["ro:{app}"]
params = {{ app = "{app}/current", caches = [] }}
fallback = "db"

# Caches: rebuilt with the old release's code, after the code switch.
[plugins.caches]
{laravel}
grants.exec = ["php {app}/current/artisan **"]
params = {{ app = "{app}/current", migrate = false, maintenance = false, caches = ["config", "route", "view"] }}
"#,
                laravel = pin("laravel"),
            ));
            (
                r#""db", "migrations", "config", "code""#,
                r#""migrations", "config", "code", "caches""#,
                r#""web", "migrations""#,
            )
        }
        Template::Django => {
            text.push_str(&format!(
                r#"
# Migrations: unapplied with the new release's code, before the code switch.
[plugins.migrations]
{django}
grants.exec = ["{app}/venv/bin/python {app}/current/manage.py **"]
grants.env = ["DATABASE_URL"]
params = {{ manage = "{app}/current/manage.py", python = "{app}/venv/bin/python", env = ["DATABASE_URL"], collectstatic = true }}
fallback = "db"    # an irreversible migration: restore the dump taken before the deploy
"#,
                django = pin("django"),
            ));
            (
                r#""db", "migrations", "config", "code""#,
                r#""migrations", "config", "code""#,
                r#""web", "migrations""#,
            )
        }
        Template::Alembic => {
            text.push_str(&format!(
                r#"
# The schema: downgraded to exactly the revisions recorded before the deploy.
[plugins.schema]
{alembic}
grants.exec = ["{app}/venv/bin/alembic -c {app}/current/alembic.ini **"]
grants.env = ["DATABASE_URL"]
params = {{ config = "{app}/current/alembic.ini", alembic = "{app}/venv/bin/alembic", env = ["DATABASE_URL"] }}
fallback = "db"    # a downgrade that fails: restore the dump taken before the deploy
"#,
                alembic = pin("alembic"),
            ));
            (
                r#""db", "schema", "config", "code""#,
                r#""schema", "config", "code""#,
                r#""web", "schema""#,
            )
        }
    };
    text.push_str(&format!(
        r#"
[chains]
backup = [{backup}]        # backup hooks, in order
rollback = [{rollback}]    # revert (or restore) hooks, in order

[guard]
health = [{health}]
retries = {retries}          # extra health passes after the first
delay_s = {delay_s}          # seconds between passes
auto_rollback = true
"#
    ));
    text
}

pub fn init(cli: &Cli, args: &InitArgs) -> Result<ExitCode> {
    let path = &cli.config;
    if path.exists() && !args.force {
        fail!(
            "{} already exists; pass --force to replace it, or --config to write elsewhere",
            path.display()
        );
    }
    let plugins = plugin_dir(args.plugins.as_deref());
    let text = template_text(args.template, &args.app, plugins.as_deref());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    println!("wrote {}", path.display());
    println!("next: edit it, then run `rewind check`");
    Ok(ExitCode::Ok)
}

pub fn check(cli: &Cli, json: bool) -> Result<ExitCode> {
    // Unlocked: a registry source missing from rewind.lock is one finding
    // among all the others (with the fix), not the end of the check.
    let config = Config::load_unlocked(&cli.config)?;
    let findings = check::check(&config, &super::runtime()?);
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    if json {
        print_json(&json!({ "ok": errors == 0, "findings": findings }))?;
    } else {
        for f in &findings {
            let mark = match f.level {
                Level::Error => "ERROR  ",
                Level::Warning => "warning",
                Level::Ok => "ok     ",
            };
            println!("{mark} {:<18} {}", f.subject, f.message);
        }
        if errors == 0 {
            println!("{}: ready", config.path.display());
        } else {
            println!("{}: {errors} error(s)", config.path.display());
        }
    }
    Ok(if errors == 0 {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    })
}

pub fn list_plugins(cli: &Cli, json: bool) -> Result<ExitCode> {
    let config = Config::load(&cli.config)?;
    let roles = |name: &str| {
        let mut roles = Vec::new();
        for (role, list) in [
            ("backup", &config.chains.backup),
            ("rollback", &config.chains.rollback),
            ("health", &config.guard.health),
            ("notify", &config.notify_sinks),
        ] {
            if list.iter().any(|n| n == name) {
                roles.push(role);
            }
        }
        roles
    };
    if json {
        let rows: Vec<_> = config
            .instances
            .values()
            .map(|i| {
                json!({
                    "instance": i.name, "source": i.source_label(), "sha256": i.sha256,
                    "used_in": roles(&i.name),
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(ExitCode::Ok);
    }
    for i in config.instances.values() {
        println!(
            "{:<14} {}  sha256:{}…  used in: {}",
            i.name,
            i.source_label(),
            &i.sha256[..12],
            roles(&i.name).join(", ")
        );
    }
    Ok(ExitCode::Ok)
}
