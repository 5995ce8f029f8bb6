//! `rewind plugins new NAME`: a plugin project that builds, with a test
//! that runs its hooks through `rewind hook`, in Rust (a cargo project on
//! `rewind-sdk`) or Python (a `componentize-py` project on the WIT).
//!
//! Both skeletons do the same small, real thing with one file,
//! `params.file` (backup keeps it, restore and revert put it back, health
//! says whether it exists, notify appends the event to it), so the test
//! they come with shows the sandbox at work: it passes with the grant and
//! is refused without it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use rewind::exit::ExitCode;
use rewind::plugin::HookKind;

use super::Result;

pub const AFTER_HELP: &str = "\
Writes DIR/NAME (default ./NAME): the plugin's code, README.md, and test.sh,
which builds it and runs each of its hooks through `rewind hook` in the
sandbox (with the grant it needs, and once without to see it refused).

Rust: a cargo project for wasm32-wasip2 on rewind-sdk. Inside a rewind checkout
(or with --sdk DIR) it depends on that checkout's sdk/ by path; elsewhere on
the rewind git repository.
Python: app.py, built by componentize-py (pip install componentize-py) against
the rewind:hooks WIT this rewind runs, copied into wit/deps/rewind-hooks.

Examples:
  rewind plugins new redis-cache --hooks backup,restore
  rewind plugins new disk-space --hooks health --lang python --dir plugins-py
  cd redis-cache && REWIND=rewind ./test.sh
  rewind plugins push redis-cache/target/wasm32-wasip2/release/redis_cache.wasm \\
      oci://registry.example:5000/platform/redis-cache:0.1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case words of a-z and 0-9 joined by `-` (redis-cache).
    pub name: String,
    /// The hooks it exports besides describe: a comma list of backup, restore,
    /// revert, health, notify.
    #[arg(long, value_delimiter = ',', default_value = "backup,restore")]
    pub hooks: Vec<String>,
    /// The language of the project.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// The directory the project is created in (as DIR/NAME).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Rust: the sdk/ directory of a rewind checkout to depend on by path
    /// (default: the checkout around DIR or around this rewind binary).
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

/// The WIT this host runs, written into a Python project (the SDK carries
/// it for Rust).
const WIT_FILES: [(&str, &str); 4] = [
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("hooks.wit", include_str!("../../../wit/hooks.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// Where the rewind git repository is, for a Rust project outside a checkout.
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// A name that is a crate name, a WIT identifier (package and world) and a
/// file name at once.
fn check_name(name: &str) -> anyhow::Result<()> {
    let words_ok = name.split('-').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !words_ok || name.len() > 64 {
        anyhow::bail!(
            "`{name}` is not a plugin name: use 1-64 characters, lower-case words of a-z and 0-9 \
             that start with a letter, joined by `-` (e.g. redis-cache); it becomes the crate, \
             the WIT world and the .wasm file name"
        );
    }
    Ok(())
}

fn parse_hooks(list: &[String]) -> anyhow::Result<Vec<HookKind>> {
    let mut hooks = Vec::new();
    for text in list.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        let hook: HookKind = text.parse().map_err(|_| {
            anyhow::anyhow!(
                "--hooks: unknown hook `{text}`; a plugin exports any of: {} (describe is always \
                 exported)",
                HookKind::ALL.map(|h| h.as_str()).join(", ")
            )
        })?;
        if !hooks.contains(&hook) {
            hooks.push(hook);
        }
    }
    if hooks.is_empty() {
        anyhow::bail!(
            "--hooks: name at least one of {}",
            HookKind::ALL.map(|h| h.as_str()).join(", ")
        );
    }
    // The order the host lists them in, whatever the order given.
    hooks.sort_by_key(|h| HookKind::ALL.iter().position(|k| k == h));
    Ok(hooks)
}

/// The root of a rewind checkout at or above `start`: it has the SDK and the WIT.
fn checkout_above(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let manifest = std::fs::read_to_string(dir.join("sdk/Cargo.toml")).ok()?;
        (manifest.contains("name = \"rewind-sdk\"") && dir.join("wit/hooks.wit").is_file())
            .then(|| dir.to_path_buf())
    })
}

/// `rewind plugins new`.
pub fn run(args: &NewArgs) -> Result<ExitCode> {
    check_name(&args.name)?;
    let hooks = parse_hooks(&args.hooks)?;
    if !args.dir.is_dir() {
        fail!(
            "--dir {}: no such directory; create it first",
            args.dir.display()
        );
    }
    let dir = std::path::absolute(&args.dir)?.join(&args.name);
    if dir.exists() {
        fail!(
            "{} already exists; choose another name or --dir, or remove it first (nothing was written)",
            dir.display()
        );
    }
    let files = match args.lang {
        Lang::Rust => rust_project(args, &dir, &hooks)?,
        Lang::Python => python_project(&args.name, &hooks),
    };
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text, executable) in &files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if *executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let hook_list = hooks.map_join(", ");
    let lang = match args.lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
    };
    println!(
        "created {} ({lang} plugin `{}`; hooks: describe, {hook_list})",
        dir.display(),
        args.name
    );
    for (name, _, _) in &files {
        println!("  {name}");
    }
    println!(
        "\nnext:\n  cd {}\n  ./test.sh        # builds it and runs every hook through `rewind hook`",
        dir.display()
    );
    Ok(ExitCode::Ok)
}

trait MapJoin {
    fn map_join(&self, sep: &str) -> String;
}

impl MapJoin for [HookKind] {
    fn map_join(&self, sep: &str) -> String {
        self.iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(sep)
    }
}

type Files = Vec<(String, String, bool)>;

/// Fill `{{key}}` placeholders.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

fn rust_project(args: &NewArgs, dir: &Path, hooks: &[HookKind]) -> anyhow::Result<Files> {
    let name = args.name.as_str();
    let parent = dir.parent().expect("DIR/NAME has a parent");
    let checkout = match &args.sdk {
        Some(sdk) => {
            let sdk = std::path::absolute(sdk)?;
            let root = sdk.parent().map(Path::to_path_buf).unwrap_or_default();
            if checkout_above(&root).as_deref() != Some(root.as_path()) {
                anyhow::bail!(
                    "--sdk {}: not the sdk/ directory of a rewind checkout (no sdk/Cargo.toml \
                     for rewind-sdk with wit/ beside it)",
                    sdk.display()
                );
            }
            Some(root)
        }
        None => checkout_above(parent).or_else(|| {
            let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
            checkout_above(exe.parent()?)
        }),
    };
    // A project in a checkout's plugins/ is a member of its workspace (the
    // root manifest lists plugins/*); anywhere else it stands alone.
    let member = checkout
        .as_ref()
        .is_some_and(|root| parent == root.join("plugins"));
    let sdk_line = match &checkout {
        Some(_) if member => "rewind-sdk = { path = \"../../sdk\" }".to_string(),
        Some(root) => format!(
            "rewind-sdk = {{ path = \"{}\" }}",
            root.join("sdk").display()
        ),
        None => format!(
            "# rewind-sdk is not on crates.io: this takes it from the rewind repository. With a\n\
             # checkout, use a path instead: rewind-sdk = {{ path = \"/path/to/rewind/sdk\" }}\n\
             rewind-sdk = {{ git = \"{REPOSITORY}\", tag = \"v{}\" }}",
            env!("CARGO_PKG_VERSION")
        ),
    };
    let standalone = if member {
        ""
    } else {
        "\n# Its own workspace, not a member of one around it.\n[workspace]\n\n\
         [profile.release]\n# Smaller components, as the plugins in rewind's own workspace.\nlto = \"thin\"\n"
    };
    let cargo = format!(
        "[package]\nname = \"{name}\"\ndescription = \"rewind plugin: TODO say what it does\"\n\
         version = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[lib]\n\
         # A WebAssembly component: cargo build --release --target wasm32-wasip2\n\
         crate-type = [\"cdylib\"]\n\n[dependencies]\n{sdk_line}\n{standalone}"
    );
    let crate_file = name.replace('-', "_");
    let vars = [
        ("name", name),
        ("type", &type_name(name)),
        (
            "wasm",
            &format!("target/wasm32-wasip2/release/{crate_file}.wasm"),
        ),
    ];
    let mut files: Files = vec![
        ("Cargo.toml".into(), cargo, false),
        ("src/lib.rs".into(), rust_lib(name, hooks), false),
        (".gitignore".into(), "/target\n".into(), false),
        (
            "README.md".into(),
            readme(name, hooks, "Rust", RUST_BUILD, &vars),
            false,
        ),
    ];
    let build = "cargo build --release --target wasm32-wasip2\n";
    // Where cargo puts it, also with a CARGO_TARGET_DIR of the caller's.
    let built =
        format!("\"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{crate_file}.wasm\"");
    let test_vars = [vars[0], vars[1], ("wasm", built.as_str())];
    files.push((
        "test.sh".into(),
        test_script(hooks, build, &test_vars),
        true,
    ));
    Ok(files)
}

/// `redis-cache` → `RedisCache`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn needs_write(hooks: &[HookKind]) -> bool {
    hooks
        .iter()
        .any(|h| matches!(h, HookKind::Restore | HookKind::Revert | HookKind::Notify))
}

fn rust_lib(name: &str, hooks: &[HookKind]) -> String {
    let ty = type_name(name);
    let has = |h| hooks.contains(&h);
    let mut uses = vec!["Capabilities", "PathRequest", "Plugin", "PluginInfo"];
    if has(HookKind::Backup) {
        uses.extend([
            "Backup",
            "ArtifactRef",
            "Context",
            "HookError",
            "artifacts",
            "log",
        ]);
    }
    if has(HookKind::Restore) || has(HookKind::Revert) {
        uses.extend(["ArtifactRef", "Context", "HookError", "Report", "artifacts"]);
    }
    if has(HookKind::Restore) {
        uses.push("Restore");
    }
    if has(HookKind::Revert) {
        uses.push("Revert");
    }
    if has(HookKind::Health) {
        uses.extend([
            "Context",
            "Health",
            "HealthCheck",
            "HealthReport",
            "HealthStatus",
            "HookError",
        ]);
    }
    if has(HookKind::Notify) {
        uses.extend(["Context", "Event", "HookError", "Notify"]);
    }
    uses.sort_by_key(|u| (u.starts_with(char::is_lowercase), u.to_string()));
    uses.dedup();
    let mut out = format!(
        "//! {name}: a rewind plugin, from `rewind plugins new`.\n//!\n\
         //! The skeleton works on one file, `params.file`: {}. Replace the\n\
         //! bodies with what your plugin does; `./test.sh` builds it and runs every\n\
         //! hook through `rewind hook`.\n\n\
         {}\n\n\
         // The one declaration of the parameters: what the hooks read and what\n\
         // `describe` tells the host (rewind check refuses unknown and missing ones).\n\
         rewind_sdk::params! {{\n    struct Params {{\n        /// The file this plugin works on\n        file: String,\n    }}\n}}\n\n\
         struct {ty};\n\n\
         impl Plugin for {ty} {{\n    fn info() -> PluginInfo {{\n        PluginInfo {{\n\
         \x20           name: \"{name}\".into(),\n            version: env!(\"CARGO_PKG_VERSION\").into(),\n\
         \x20           summary: \"TODO: one line about what {name} does\".into(),\n\
         \x20           // What the operator should grant (rewind plugins inspect shows it); the\n\
         \x20           // sandbox gives the hooks only what rewind.toml grants.\n\
         \x20           capabilities: Capabilities {{\n                paths: vec![PathRequest {{\n\
         \x20                   path: \"<directory of params.file>\".into(),\n\
         \x20                   writable: {},\n\
         \x20                   reason: \"{}\".into(),\n                }}],\n\
         \x20               ..Capabilities::default()\n            }},\n\
         \x20           params: Params::specs(),\n        }}\n    }}\n}}\n",
        hooks
            .iter()
            .map(|h| match h {
                HookKind::Backup => "backup keeps it",
                HookKind::Restore => "restore puts it back",
                HookKind::Revert => "revert puts it back",
                HookKind::Health => "health says whether it exists",
                HookKind::Notify => "notify appends each event to it",
            })
            .collect::<Vec<_>>()
            .join(", "),
        use_line("rewind_sdk", &uses),
        needs_write(hooks),
        if needs_write(hooks) {
            "read and rewrite params.file"
        } else {
            "read params.file"
        },
    );
    if has(HookKind::Backup) {
        out.push_str(&fill(
            "\nimpl Backup for {{type}} {\n    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {\n\
             \x20       let params: Params = ctx.params()?;\n\
             \x20       // A refused read comes back as HookError::Denied naming the grant.\n\
             \x20       let bytes = std::fs::read(&params.file)?;\n\
             \x20       log::info(format!(\"keeping {} ({} bytes)\", params.file, bytes.len()));\n\
             \x20       let saved = artifacts::write_bytes(\"file\", \"application/octet-stream\", &bytes)?;\n\
             \x20       Ok(vec![saved])\n    }\n}\n",
            &[("type", &ty)],
        ));
    }
    if has(HookKind::Restore) || has(HookKind::Revert) {
        out.push_str(
            "\n/// Put back the file a backup kept (only this instance's artifacts are given).\n\
             fn put_back(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {\n\
             \x20   let params: Params = ctx.params()?;\n\
             \x20   let Some(saved) = saved.iter().find(|a| a.name == \"file\") else {\n\
             \x20       return Ok(Report::new(\"nothing to put back: no saved file\"));\n    };\n\
             \x20   let bytes = artifacts::read_bytes(saved)?;\n\
             \x20   if ctx.dry_run() {\n\
             \x20       let what = format!(\"would write {} bytes to {}\", bytes.len(), params.file);\n\
             \x20       return Ok(Report::new(what));\n    }\n\
             \x20   std::fs::write(&params.file, &bytes)?;\n\
             \x20   Ok(Report::new(format!(\"restored {}\", params.file)))\n}\n",
        );
    }
    for (hook, method) in [(HookKind::Restore, "restore"), (HookKind::Revert, "revert")] {
        if has(hook) {
            let trait_name = type_name(method);
            out.push_str(&format!(
                "\nimpl {trait_name} for {ty} {{\n    fn {method}(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {{\n\
                 \x20       put_back(ctx, saved)\n    }}\n}}\n"
            ));
        }
    }
    if has(HookKind::Health) {
        out.push_str(&fill(
            "\nimpl Health for {{type}} {\n    fn check(ctx: &Context) -> HealthReport {\n\
             \x20       let started = std::time::Instant::now();\n\
             \x20       let (status, detail) = match ctx.params::<Params>() {\n\
             \x20           Err(err) => (HealthStatus::Unhealthy, err.message()),\n\
             \x20           Ok(params) => match std::fs::metadata(&params.file) {\n\
             \x20               Ok(meta) => (\n                    HealthStatus::Healthy,\n\
             \x20                   format!(\"{} exists ({} bytes)\", params.file, meta.len()),\n                ),\n\
             \x20               // A refusal becomes HookError::Denied, whose message names the grant.\n\
             \x20               Err(err) => (HealthStatus::Unhealthy, HookError::from(err).message()),\n\
             \x20           },\n        };\n\
             \x20       let mut check = HealthCheck::new(\"file\", status, detail);\n\
             \x20       check.latency_ms = started.elapsed().as_millis() as u64;\n\
             \x20       HealthReport {\n            checks: vec![check],\n        }\n    }\n}\n",
            &[("type", &ty)],
        ));
    }
    if has(HookKind::Notify) {
        out.push_str(&fill(
            "\nimpl Notify for {{type}} {\n    fn notify(ctx: &Context, event: &Event) -> Result<(), HookError> {\n\
             \x20       use std::io::Write as _;\n\
             \x20       let params: Params = ctx.params()?;\n\
             \x20       let mut file = std::fs::OpenOptions::new()\n            .create(true)\n            .append(true)\n            .open(&params.file)?;\n\
             \x20       writeln!(file, \"{}\", event.to_json())?;\n        Ok(())\n    }\n}\n",
            &[("type", &ty)],
        ));
    }
    out.push_str(&format!(
        "\n// Exports describe and exactly these hooks; the host reads them from the component.\n\
         rewind_sdk::export_plugin!({ty}: {});\n",
        hooks.map_join(", ")
    ));
    out
}

/// `use krate::{a, b};` as rustfmt writes it: one line when it fits (its
/// import lists keep a column spare), else the names filling indented lines.
fn use_line(krate: &str, names: &[&str]) -> String {
    let one = format!("use {krate}::{{{}}};", names.join(", "));
    if one.len() < 99 {
        return one;
    }
    let mut out = format!("use {krate}::{{\n");
    let mut line = String::from("   ");
    for name in names {
        if line.len() + 1 + name.len() + 1 >= 100 {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(name);
        line.push(',');
    }
    out.push_str(line.trim_end());
    out.push_str("\n};");
    out
}

const RUST_BUILD: &str = "\
```sh
rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
```";

const PYTHON_BUILD: &str = "\
```sh
pip install componentize-py
./build.sh        # componentize-py -d wit -w {{name}} componentize app -o {{name}}.wasm
```

`app.py` implements the hooks `wit/world.wit` exports; `wit/deps/rewind-hooks/`
is the `rewind:hooks` WIT of the rewind that wrote this project. To see the
Python types of the WIT: `componentize-py -d wit -w {{name}} bindings bindings/`.";

fn readme(
    name: &str,
    hooks: &[HookKind],
    lang: &str,
    build: &str,
    vars: &[(&str, &str)],
) -> String {
    fill(
        &format!(
            "# {name}\n\nA rewind plugin in {lang}. TODO: say what it does.\n\n\
             ## Hooks\n\n{}\n\n\
             ## Params\n\n| param | required | meaning |\n|-------|----------|---------|\n\
             | `file` | yes | The file this plugin works on |\n\n\
             ## Grants\n\n```toml\n[plugins.{name}]\nsource = \"{{{{wasm}}}}\"   # or oci://… after `rewind plugins push`\n\
             sha256 = \"…\"   # a file is pinned: `rewind plugins inspect FILE` prints it (a registry source is pinned by rewind.lock)\n\
             grants.paths = [\"{}/srv/app\"]   # the directory of params.file\nparams = {{ file = \"/srv/app/state.json\" }}\n```\n\n\
             ## Build and test\n\n{build}\n\n\
             `./test.sh` builds the component and runs every hook through `rewind hook`\n\
             in the sandbox, once without the grant to see the refusal (`$REWIND` names\n\
             the rewind binary; default `rewind`).\n\n\
             ## Publish\n\n```sh\nrewind plugins push {{{{wasm}}}} oci://registry.example:5000/team/{name}:0.1.0 --sign team.key\n```\n",
            hooks
                .iter()
                .map(|h| format!("- `{}`", h.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
            if needs_write(hooks) { "" } else { "ro:" },
        ),
        vars,
    )
}

/// test.sh: build, then each hook through `rewind hook`, with the grant
/// and (once) without it.
fn test_script(hooks: &[HookKind], build: &str, vars: &[(&str, &str)]) -> String {
    let has = |h| hooks.contains(&h);
    let grant = if needs_write(hooks) { "" } else { "ro:" };
    let mut s = format!(
        "#!/bin/sh\n# Build the plugin, then run each of its hooks through `rewind hook` in the\n\
         # sandbox, as a rewind.toml instance would run it.\nset -eu\ncd \"$(dirname \"$0\")\"\n\
         REWIND=\"${{REWIND:-rewind}}\"\n\n{build}\nwasm={{{{wasm}}}}\n\"$REWIND\" plugins inspect \"$wasm\"\n\n\
         work=$(mktemp -d)\ntrap 'rm -rf \"$work\"' EXIT\nmkdir \"$work/app\"\nprintf 'v1\\n' > \"$work/app/file.txt\"\n\
         hook() {{\n    name=$1\n    shift\n    echo \"==> $name\" >&2\n\
         \x20   \"$REWIND\" hook \"$wasm\" \"$name\" --store \"$work/store\" --param \"file=$work/app/file.txt\" \"$@\"\n}}\n\
         fail() {{\n    echo \"FAILED: $*\" >&2\n    exit 1\n}}\n\n\
         ",
    );
    // Without a grant the plugin sees no file at all: a hook that touches
    // it must fail (or report unhealthy), and the host names the grant.
    if let Some(probe) = hooks
        .iter()
        .find(|h| matches!(h, HookKind::Backup | HookKind::Health | HookKind::Notify))
    {
        s.push_str(&format!(
            "# Without a grant the plugin sees no file at all: {probe} must fail and the\n\
             # host must name the grant to add.\n\
             if hook {probe} >\"$work/denied.out\" 2>&1; then\n    cat \"$work/denied.out\"\n    fail \"{probe} ran without a grant\"\nfi\n\
             grep -q 'grants.paths' \"$work/denied.out\" || fail \"the refusal does not name the grant\"\n\n",
            probe = probe.as_str()
        ));
    }
    let with = format!("--grant-path \"{grant}$work/app\"");
    if has(HookKind::Backup) {
        s.push_str(&format!(
            "hook backup {with} --json > \"$work/backup.json\"\nprintf 'v2\\n' > \"$work/app/file.txt\"\n"
        ));
    }
    for (hook, name) in [(HookKind::Restore, "restore"), (HookKind::Revert, "revert")] {
        if !has(hook) {
            continue;
        }
        if has(HookKind::Backup) {
            s.push_str(&format!(
                "hook {name} {with} --artifacts \"$work/backup.json\"\n\
                 [ \"$(cat \"$work/app/file.txt\")\" = v1 ] || fail \"{name} did not put v1 back\"\n\
                 printf 'v2\\n' > \"$work/app/file.txt\"\n"
            ));
        } else {
            s.push_str(&format!("hook {name} {with}\n"));
        }
    }
    if has(HookKind::Health) {
        s.push_str(&format!("hook health {with}\n"));
    }
    if has(HookKind::Notify) {
        s.push_str(&format!(
            "hook notify {with} --event-kind rollback-success --event-title 'test of {{{{name}}}}'\n\
             grep -q ROLLBACK_SUCCESS \"$work/app/file.txt\" || fail \"notify did not append the event\"\n"
        ));
    }
    s.push_str("\necho \"ok: every hook ran in the sandbox\"\n");
    fill(&s, vars)
}

fn python_project(name: &str, hooks: &[HookKind]) -> Files {
    let wasm = format!("{name}.wasm");
    let vars = [("name", name), ("wasm", wasm.as_str())];
    let mut world = format!(
        "package rewind-plugin:{name};\n\n\
         /// What {name} exports: describe and its hooks (the host reads them from the\n\
         /// component). Add or remove a hook here and in app.py together.\n\
         world {name} {{\n    include rewind:hooks/describe-export@{api};\n",
        api = api_version()
    );
    for hook in hooks {
        world.push_str(&format!(
            "    include rewind:hooks/{}-export@{};\n",
            hook.as_str(),
            api_version()
        ));
    }
    world.push_str("}\n");
    let build = fill(
        "#!/bin/sh\n# Build {{name}}.wasm, a WebAssembly component, from app.py against wit/.\n\
         # componentize-py comes from PyPI: pip install componentize-py\nset -eu\ncd \"$(dirname \"$0\")\"\n\
         \"${COMPONENTIZE_PY:-componentize-py}\" -d wit -w {{name}} componentize app -o {{name}}.wasm\n",
        &vars,
    );
    let mut files: Files = vec![
        ("app.py".into(), python_app(name, hooks), false),
        ("wit/world.wit".into(), world, false),
        ("build.sh".into(), build, true),
        (
            ".gitignore".into(),
            format!("/{name}.wasm\n__pycache__/\n/bindings/\n"),
            false,
        ),
        (
            "README.md".into(),
            readme(name, hooks, "Python", &fill(PYTHON_BUILD, &vars), &vars),
            false,
        ),
        (
            "test.sh".into(),
            test_script(hooks, "./build.sh\n", &vars),
            true,
        ),
    ];
    for (file, text) in WIT_FILES {
        files.push((
            format!("wit/deps/rewind-hooks/{file}"),
            text.to_string(),
            false,
        ));
    }
    files
}

/// The `rewind:hooks` version of the WIT this host carries.
fn api_version() -> &'static str {
    rewind::plugin::SUPPORTED_API_VERSIONS[rewind::plugin::SUPPORTED_API_VERSIONS.len() - 1]
}

fn python_app(name: &str, hooks: &[HookKind]) -> String {
    let has = |h| hooks.contains(&h);
    let mut out = fill(
        "\"\"\"{{name}}: a rewind plugin in Python, from `rewind plugins new`.

The skeleton works on one file, params[\"file\"]. Replace the hook bodies with
what your plugin does; ./test.sh builds it and runs every hook through
`rewind hook`. Each exported interface of wit/world.wit is a class here, named
as componentize-py names it (Describe, Backup, Restore, Revert, Health, Notify).
\"\"\"
import json
import os
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import artifacts, log, sandbox, types

# What `describe` tells the host about the params (rewind check enforces it).
PARAMS = [
    types.ParamSpec(\"file\", \"The file this plugin works on\", True, None, types.ParamKind.STRING),
]


def params(ctx: types.HookContext) -> dict:
    try:
        value = json.loads(ctx.params_json or \"{}\")
        return {\"file\": str(value[\"file\"])}
    except (ValueError, KeyError) as err:
        message = f\"params of instance `{ctx.instance}`: missing or bad {err}\"
        raise Err(types.HookError_InvalidInput(message))


def failed(err: OSError) -> Err:
    \"\"\"An OSError as the hook's error: a refusal of the sandbox stays a typed
    denial naming the grant to add; anything else is a failure.\"\"\"
    denial = sandbox.take_denial()
    if denial is not None:
        return Err(types.HookError_Denied(denial))
    return Err(types.HookError_Failed(types.Failure(f\"{err.filename}: {err.strerror}\", None)))


class Describe(exports.Describe):
    def info(self) -> types.PluginInfo:
        return types.PluginInfo(
            name=\"{{name}}\",
            version=\"0.1.0\",
            summary=\"TODO: one line about what {{name}} does\",
            # What the operator should grant; the sandbox gives only what is granted.
            capabilities=types.Capabilities(
                exec=[],
                paths=[
                    types.PathRequest(\"<directory of params.file>\", {{writable}}, \"{{reason}}\"),
                ],
                env=[],
                http=[],
            ),
            params=PARAMS,
        )
",
        &[
            ("name", name),
            ("writable", if needs_write(hooks) { "True" } else { "False" }),
            (
                "reason",
                if needs_write(hooks) {
                    "read and rewrite params.file"
                } else {
                    "read params.file"
                },
            ),
        ],
    );
    if has(HookKind::Backup) {
        out.push_str(
            "

class Backup(exports.Backup):
    def backup(self, ctx: types.HookContext) -> list:
        path = params(ctx)[\"file\"]
        try:
            with open(path, \"rb\") as f:
                data = f.read()
        except OSError as err:
            raise failed(err)
        log.write(log.Level.INFO, f\"keeping {path} ({len(data)} bytes)\", [])
        writer = artifacts.create(\"file\", \"application/octet-stream\")
        writer.write(data)
        return [writer.finish()]
",
        );
    }
    if has(HookKind::Restore) || has(HookKind::Revert) {
        out.push_str(
            "

def put_back(ctx: types.HookContext, saved: list) -> types.Report:
    \"\"\"Put back the file a backup kept (only this instance's artifacts are given).\"\"\"
    path = params(ctx)[\"file\"]
    found = [a for a in saved if a.name == \"file\"]
    if not found:
        return types.Report(\"nothing to put back: no saved file\", [])
    reader = artifacts.open(found[0])
    data = b\"\"
    while True:
        chunk = reader.read(1 << 20)
        if not chunk:
            break
        data += chunk
    if ctx.dry_run:
        return types.Report(f\"would write {len(data)} bytes to {path}\", [])
    try:
        with open(path, \"wb\") as f:
            f.write(data)
    except OSError as err:
        raise failed(err)
    return types.Report(f\"restored {path}\", [])
",
        );
    }
    for (hook, class, method) in [
        (HookKind::Restore, "Restore", "restore"),
        (HookKind::Revert, "Revert", "revert"),
    ] {
        if has(hook) {
            out.push_str(&format!(
                "\n\nclass {class}(exports.{class}):\n    def {method}(self, ctx: types.HookContext, saved: list) -> types.Report:\n        return put_back(ctx, saved)\n"
            ));
        }
    }
    if has(HookKind::Health) {
        out.push_str(
            "

class Health(exports.Health):
    def check(self, ctx: types.HookContext) -> types.HealthReport:
        started = time.monotonic()
        try:
            path = params(ctx)[\"file\"]
            size = os.stat(path).st_size
            status, detail = types.HealthStatus.HEALTHY, f\"{path} exists ({size} bytes)\"
        except Err as err:
            status, detail = types.HealthStatus.UNHEALTHY, str(err.value.value)
        except OSError as err:
            denial = sandbox.take_denial()
            detail = f\"denied: add {denial.grant}\" if denial else f\"{err.filename}: {err.strerror}\"
            status = types.HealthStatus.UNHEALTHY
        ms = int((time.monotonic() - started) * 1000)
        return types.HealthReport([types.HealthCheck(\"file\", status, detail, ms)])
",
        );
    }
    if has(HookKind::Notify) {
        out.push_str(
            "

class Notify(exports.Notify):
    def notify(self, ctx: types.HookContext, event: types.Event) -> None:
        path = params(ctx)[\"file\"]
        line = json.dumps({
            \"kind\": event.kind.name,
            \"title\": event.title,
            \"message\": event.message,
            \"run_id\": event.run_id,
            \"fields\": dict(event.fields),
        })
        try:
            with open(path, \"a\") as f:
                f.write(line + \"\\n\")
        except OSError as err:
            raise failed(err)
",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hooks_are_checked_with_the_fix() {
        assert!(check_name("redis-cache").is_ok());
        assert!(check_name("a1").is_ok());
        for bad in [
            "",
            "Redis",
            "redis_cache",
            "-x",
            "x-",
            "2fa",
            "a--b",
            &"a".repeat(65),
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("lower-case words"), "{bad}: {err}");
        }
        let err = parse_hooks(&["backup".into(), "rollback".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown hook `rollback`"), "{err}");
        assert!(
            err.contains("backup, restore, revert, health, notify"),
            "{err}"
        );
        let hooks = parse_hooks(&["notify".into(), "backup".into(), "notify".into()]).unwrap();
        assert_eq!(hooks, vec![HookKind::Backup, HookKind::Notify]);
        assert_eq!(type_name("redis-cache"), "RedisCache");
    }

    #[test]
    fn a_python_project_carries_the_wit_of_this_host() {
        let files = python_project("disk-space", &[HookKind::Health]);
        let world = &files.iter().find(|f| f.0 == "wit/world.wit").unwrap().1;
        assert!(
            world.contains("include rewind:hooks/health-export@0.1.0;"),
            "{world}"
        );
        assert!(!world.contains("backup-export"), "{world}");
        let app = &files.iter().find(|f| f.0 == "app.py").unwrap().1;
        assert!(app.contains("class Health(exports.Health)"), "{app}");
        assert!(!app.contains("class Backup"), "{app}");
        assert!(files.iter().any(
            |f| f.0 == "wit/deps/rewind-hooks/types.wit" && f.1.contains("record plugin-info")
        ));
    }
}
