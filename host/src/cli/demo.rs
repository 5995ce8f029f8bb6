//! `rewind demo`: a sample app in a temp dir, a guarded deploy that
//! breaks, the automatic rollback, and proof that everything is back.
//!
//! Everything in it is real: the plugins are the shipped .wasm files run in
//! the sandbox, the health check is an HTTP GET to a server on 127.0.0.1,
//! the deploy is a shell script, the artifacts land in a local store.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Result;
use clap::Args;
use rewind::config::Config;
use rewind::run::{GuardOptions, GuardOutcome};

use super::Cli;
use super::console::Console;
use super::setup::{Template, plugin_dir, template_text};
use rewind::exit::ExitCode;

pub const AFTER_HELP: &str = "\
Sets up releases/v1 and releases/v2 with a `current` symlink, a config file
and a data file, serves a health endpoint on 127.0.0.1 that reads
current/HEALTH, then runs `rewind guard` of a deploy that switches to v2
(whose health check fails) and rewrites the config and data. The guard
rolls back automatically; the demo then shows the verified state and the
run's manifest. Needs only the built plugins (./build).

Examples:
  rewind demo
  rewind demo --dir /tmp/rewind-demo      keep everything there to explore";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the plugin .wasm files are (default: $REWIND_PLUGINS, or the
    /// wasm32-wasip2 build next to this binary).
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Build the sample app here (must not exist) and keep it; default: a
    /// new temp dir, removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const CONFIG_V1: &str = "APP_ENV=production\nDB_PASSWORD=v1-secret\nFEATURE_CHECKOUT=off\n";
const DATA_V1: &str = "order,amount\n1001,19.90\n1002,5.00\n1003,42.00\n";

pub fn run(cli: &Cli, args: &DemoArgs) -> Result<ExitCode> {
    let plugins = plugin_dir(args.plugins.as_deref()).context(
        "cannot find the plugin .wasm files: build them with ./build, or pass --plugins DIR",
    )?;
    let (_temp, root) = match &args.dir {
        Some(dir) => {
            if dir.exists() {
                fail!("{} exists; give --dir a new directory", dir.display());
            }
            std::fs::create_dir_all(dir)?;
            (None, std::fs::canonicalize(dir)?)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("rewind-demo-").tempdir()?;
            let path = std::fs::canonicalize(temp.path())?;
            (Some(temp), path)
        }
    };

    // The app and, beside it, the store and the config: a plugin granted
    // the app reaches neither.
    let app = root.join("app");
    std::fs::create_dir_all(&app)?;

    say("1. a sample app");
    build_app(&app)?;
    let port = serve_health(&app)?;
    let config_path = root.join("rewind.toml");
    let text =
        template_text(Template::Demo, &app, Some(&plugins)).replace("{port}", &port.to_string());
    std::fs::write(&config_path, text)?;
    println!("   {}", app.display());
    println!("   current -> {}", link(&app)?);
    println!(
        "   health:    http://127.0.0.1:{port}/health reads current/HEALTH: {}",
        health_now(&app)
    );
    println!("   config:    {}", config_path.display());

    let config = Config::load(&config_path)?;
    let console = Console::new(cli.quiet, cli.verbose);
    let runner = super::runs::runner(cli, &config, &console)?;
    let store = runner.store.clone();

    say("2. rewind guard -- sh deploy.sh   (v2 is broken: its health check fails)");
    let deploy = vec![
        "sh".to_string(),
        app.join("deploy.sh").display().to_string(),
    ];
    let result = runner.guard(&deploy, GuardOptions::default())?;
    runner.finish_notifications();

    say("3. the state after the automatic rollback");
    let mut ok = result.outcome == GuardOutcome::RolledBack;
    println!("   guard outcome: {}", result.outcome.as_str());
    ok &= show(
        "current -> releases/v1",
        link(&app)? == "releases/v1",
        &format!("current -> {}", link(&app)?),
    );
    let config_now = std::fs::read_to_string(app.join("shared/config.env"))?;
    ok &= show(
        "shared/config.env is the v1 config, mode 600",
        config_now == CONFIG_V1 && mode(&app.join("shared/config.env"))? == 0o600,
        &config_now,
    );
    let data_now = std::fs::read_to_string(app.join("shared/data/orders.csv"))?;
    ok &= show(
        "shared/data/orders.csv has exactly the 3 orders from before",
        data_now == DATA_V1,
        &data_now,
    );
    ok &= show(
        "health endpoint answers ok",
        health_now(&app) == "ok",
        &health_now(&app),
    );
    let report = store.verify(None, &|_| {})?;
    ok &= show(
        &format!(
            "store verified: {} runs hash-chained, {} blobs re-hashed",
            report.runs, report.blobs
        ),
        report.ok(),
        &format!("{:?}", report.problems),
    );

    say("4. the guard run's manifest");
    super::read::print_manifest(&result.run);
    if let Some(rollback) = result.rollback.as_ref().and_then(|r| r.run.as_ref()) {
        println!();
        super::read::print_manifest(rollback);
    }

    say("5. the event log");
    for event in rewind::run::events::read_log(&store)?
        .iter()
        .filter(|e| !e.title.contains(" started") || e.kind != "INFO")
        .filter(|e| e.kind != "SUCCESS" || !e.title.ends_with("succeeded"))
    {
        println!("   {:<17} {}  {}", event.kind, event.title, event.message);
    }
    println!("   (all events: {})", store.events_path().display());

    if args.dir.is_some() {
        println!(
            "\nexplore it: rewind --config {} history",
            config_path.display()
        );
    }
    println!(
        "\n{}",
        if ok {
            "demo complete: the broken deploy was rolled back and verified"
        } else {
            "demo FAILED: the state above is not what the rollback should have left"
        }
    );
    Ok(if ok { ExitCode::Ok } else { ExitCode::Failed })
}

fn say(text: &str) {
    println!("\n== {text}");
}

fn show(what: &str, ok: bool, actual: &str) -> bool {
    if ok {
        println!("   ok  {what}");
    } else {
        println!("   NO  {what}; found: {}", actual.trim());
    }
    ok
}

fn link(app: &Path) -> Result<String> {
    Ok(std::fs::read_link(app.join("current"))?
        .display()
        .to_string())
}

fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

fn build_app(app: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (version, health) in [("v1", "ok"), ("v2", "broken: checkout throws 500")] {
        let dir = app.join("releases").join(version);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("index.html"), format!("shop {version}\n"))?;
        std::fs::write(dir.join("HEALTH"), format!("{health}\n"))?;
    }
    std::os::unix::fs::symlink("releases/v1", app.join("current"))?;
    std::fs::create_dir_all(app.join("shared/data"))?;
    let config = app.join("shared/config.env");
    std::fs::write(&config, CONFIG_V1)?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(app.join("shared/data/orders.csv"), DATA_V1)?;
    std::fs::write(
        app.join("deploy.sh"),
        format!(
            r#"set -e
cd '{app}'
echo "   deploy: switching current to releases/v2"
ln -sfn releases/v2 current.new && mv -T current.new current
echo "   deploy: new config (DB_PASSWORD changed, checkout on)"
printf 'APP_ENV=production\nDB_PASSWORD=v2-secret\nFEATURE_CHECKOUT=on\n' > shared/config.env
chmod 644 shared/config.env
echo "   deploy: data migration rewrote orders.csv"
printf 'order,amount,currency\n1001,19.90,EUR\n' > shared/data/orders.csv
echo "   deploy: done"
"#,
            app = app.display()
        ),
    )?;
    Ok(())
}

fn health_now(app: &Path) -> String {
    std::fs::read_to_string(app.join("current/HEALTH"))
        .unwrap_or_else(|err| format!("unreadable: {err}"))
        .trim()
        .to_string()
}

/// Serve `GET /health` on a free loopback port: 200 when current/HEALTH
/// says "ok", 500 with its text otherwise.
fn serve_health(app: &Path) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let app = app.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut request_line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = health_now(&app);
            let status = if !request_line.starts_with("GET /health ") {
                "404 Not Found"
            } else if body == "ok" {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}
