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
    write_project(&dir, &files)?;
    let hook_list = hook_names(&hooks);
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

/// Create `dir` and write `files` into it, by descriptor: the directory
/// is made here (never one that exists, mode at most 0755 so nobody else
/// can add to it), opened once and checked to be this user's and empty,
/// and every file and subdirectory is then created through that
/// descriptor (`/proc/self/fd/N/…`), exclusively (`O_EXCL`: never an
/// existing file, never through a link). Why: DIR may be shared (`/tmp`,
/// a team directory); another user who swaps DIR/NAME for a directory of
/// links, or a link to one of ours, between our steps must not get us to
/// write, truncate or chmod a file elsewhere.
fn write_project(dir: &Path, files: &Files) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
    let swapped = |what: &str| {
        anyhow::anyhow!(
            "{} {what}: another user replaced it while the project was being written; \
             nothing was written there",
            dir.display()
        )
    };
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let root = std::fs::File::open(dir)
        .map_err(|err| swapped(&format!("could not be opened once created ({err})")))?;
    let meta = root.metadata()?;
    let me = std::fs::metadata("/proc/self")
        .context("cannot read /proc/self (rewind needs /proc)")?
        .uid();
    if !meta.is_dir() || meta.uid() != me {
        return Err(swapped(&format!(
            "is not this user's directory (owner uid {})",
            meta.uid()
        )));
    }
    let at = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&root)
    ));
    if std::fs::read_dir(&at)?.next().is_some() {
        return Err(swapped("is not the empty directory just created"));
    }
    let mut made = std::collections::BTreeSet::new();
    for (file, text, executable) in files {
        // The directories on the way, each made by this loop (an existing
        // one that it did not make is refused).
        let mut sub = PathBuf::new();
        let mut parts: Vec<&str> = file.split('/').collect();
        let leaf = parts.pop().expect("a file name");
        for part in parts {
            sub.push(part);
            if made.contains(&sub) {
                continue;
            }
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(at.join(&sub))
                .with_context(|| format!("cannot create {}", dir.join(&sub).display()))?;
            made.insert(sub.clone());
        }
        let path = sub.join(leaf);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if *executable { 0o755 } else { 0o644 })
            .open(at.join(&path))
            .with_context(|| format!("cannot create {}", dir.join(&path).display()))?;
        if *executable {
            // As written whatever the umask, on the file just created.
            use std::os::unix::fs::PermissionsExt as _;
            out.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        }
        std::io::Write::write_all(&mut out, text.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join(&path).display()))?;
    }
    Ok(())
}

/// `text` as a TOML basic string (quoted, `"`, `\` and control
/// characters escaped): a path from the file system goes into Cargo.toml
/// as data, never as more TOML.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `backup, restore`: the hooks as the CLI and `export_plugin!` write them.
fn hook_names(hooks: &[HookKind]) -> String {
    hooks
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a project is made of: (path in the project, content, executable).
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
            "rewind-sdk = {{ path = {} }}",
            toml_string(&root.join("sdk").display().to_string())
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

/// The skeleton's pieces, filled by [`fill`]: one file a hook, so that
/// what an author starts from reads as code here too.
mod template {
    pub const LIB_HEAD: &str = include_str!("templates/new/lib_head.rs.in");
    pub const BACKUP_RS: &str = include_str!("templates/new/backup.rs.in");
    pub const PUT_BACK_RS: &str = include_str!("templates/new/put_back.rs.in");
    pub const RESTORE_RS: &str = include_str!("templates/new/restore.rs.in");
    pub const HEALTH_RS: &str = include_str!("templates/new/health.rs.in");
    pub const NOTIFY_RS: &str = include_str!("templates/new/notify.rs.in");
    pub const LIB_TAIL: &str = include_str!("templates/new/lib_tail.rs.in");
    pub const APP_HEAD: &str = include_str!("templates/new/app_head.py.in");
    pub const BACKUP_PY: &str = include_str!("templates/new/backup.py.in");
    pub const PUT_BACK_PY: &str = include_str!("templates/new/put_back.py.in");
    pub const RESTORE_PY: &str = include_str!("templates/new/restore.py.in");
    pub const HEALTH_PY: &str = include_str!("templates/new/health.py.in");
    pub const NOTIFY_PY: &str = include_str!("templates/new/notify.py.in");
    pub const README: &str = include_str!("templates/new/README.md.in");
    pub const TEST_HEAD: &str = include_str!("templates/new/test_head.sh.in");
}

/// What the skeleton does with params.file, hook by hook.
fn what_it_does(hooks: &[HookKind]) -> String {
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
        .join(", ")
}

fn reason(hooks: &[HookKind]) -> &'static str {
    if needs_write(hooks) {
        "read and rewrite params.file"
    } else {
        "read params.file"
    }
}

fn rust_lib(name: &str, hooks: &[HookKind]) -> String {
    let ty = type_name(name);
    let has = |h| hooks.contains(&h);
    let mut uses = vec!["Capabilities", "PathRequest", "Plugin", "PluginInfo"];
    for hook in hooks {
        uses.extend(match hook {
            HookKind::Backup => &[
                "Backup",
                "ArtifactRef",
                "Context",
                "HookError",
                "artifacts",
                "log",
            ][..],
            HookKind::Restore => &[
                "Restore",
                "ArtifactRef",
                "Context",
                "HookError",
                "Report",
                "artifacts",
            ],
            HookKind::Revert => &[
                "Revert",
                "ArtifactRef",
                "Context",
                "HookError",
                "Report",
                "artifacts",
            ],
            HookKind::Health => &[
                "Context",
                "Health",
                "HealthCheck",
                "HealthReport",
                "HealthStatus",
                "HookError",
            ],
            HookKind::Notify => &["Context", "Event", "HookError", "Notify"],
        });
    }
    // rustfmt's order: types before modules, each alphabetical.
    uses.sort_by_key(|u| (u.starts_with(char::is_lowercase), u.to_string()));
    uses.dedup();
    let writable = needs_write(hooks).to_string();
    let what = what_it_does(hooks);
    let use_line = use_line("rewind_sdk", &uses);
    let hook_list = hook_names(hooks);
    let vars = [
        ("name", name),
        ("type", ty.as_str()),
        ("what", what.as_str()),
        ("uses", use_line.as_str()),
        ("writable", writable.as_str()),
        ("reason", reason(hooks)),
        ("hooks", hook_list.as_str()),
    ];
    let mut out = fill(template::LIB_HEAD, &vars);
    if has(HookKind::Backup) {
        out.push_str(&fill(template::BACKUP_RS, &vars));
    }
    if has(HookKind::Restore) || has(HookKind::Revert) {
        out.push_str(template::PUT_BACK_RS);
    }
    for (hook, method) in [(HookKind::Restore, "restore"), (HookKind::Revert, "revert")] {
        if has(hook) {
            let trait_name = type_name(method);
            let more = [("Trait", trait_name.as_str()), ("method", method)];
            out.push_str(&fill(&fill(template::RESTORE_RS, &vars), &more));
        }
    }
    if has(HookKind::Health) {
        out.push_str(&fill(template::HEALTH_RS, &vars));
    }
    if has(HookKind::Notify) {
        out.push_str(&fill(template::NOTIFY_RS, &vars));
    }
    out.push_str(&fill(template::LIB_TAIL, &vars));
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
    let hook_list = hooks
        .iter()
        .map(|h| format!("- `{}`", h.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    let ro = if needs_write(hooks) { "" } else { "ro:" };
    let own = [
        ("name", name),
        ("lang", lang),
        ("hook_list", hook_list.as_str()),
        ("ro", ro),
        ("build", build),
    ];
    fill(&fill(template::README, &own), vars)
}

/// test.sh: build, then each hook through `rewind hook`, with the grant
/// and (once) without it.
fn test_script(hooks: &[HookKind], build: &str, vars: &[(&str, &str)]) -> String {
    let has = |h| hooks.contains(&h);
    let grant = if needs_write(hooks) { "" } else { "ro:" };
    let mut s = fill(template::TEST_HEAD, &[("build", build)]);
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
    let vars = [
        ("name", name),
        (
            "writable",
            if needs_write(hooks) { "True" } else { "False" },
        ),
        ("reason", reason(hooks)),
    ];
    let mut out = fill(template::APP_HEAD, &vars);
    if has(HookKind::Backup) {
        out.push_str(template::BACKUP_PY);
    }
    if has(HookKind::Restore) || has(HookKind::Revert) {
        out.push_str(template::PUT_BACK_PY);
    }
    for (hook, class, method) in [
        (HookKind::Restore, "Restore", "restore"),
        (HookKind::Revert, "Revert", "revert"),
    ] {
        if has(hook) {
            out.push_str(&fill(
                template::RESTORE_PY,
                &[("Class", class), ("method", method)],
            ));
        }
    }
    if has(HookKind::Health) {
        out.push_str(template::HEALTH_PY);
    }
    if has(HookKind::Notify) {
        out.push_str(template::NOTIFY_PY);
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

    /// How the Cargo.toml finds rewind-sdk: `--sdk`, or the checkout the
    /// project is in (a member of its workspace under plugins/).
    #[test]
    fn a_rust_project_finds_the_sdk_of_its_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        let checkout = tmp.path().join("rewind");
        std::fs::create_dir_all(checkout.join("sdk")).unwrap();
        std::fs::create_dir_all(checkout.join("wit")).unwrap();
        std::fs::create_dir_all(checkout.join("plugins")).unwrap();
        std::fs::write(
            checkout.join("sdk/Cargo.toml"),
            "[package]\nname = \"rewind-sdk\"\n",
        )
        .unwrap();
        std::fs::write(checkout.join("wit/hooks.wit"), "").unwrap();
        let args = |dir: &Path, sdk: Option<PathBuf>| NewArgs {
            name: "x".into(),
            hooks: vec!["health".into()],
            lang: Lang::Rust,
            dir: dir.to_path_buf(),
            sdk,
        };
        let cargo = |args: &NewArgs| {
            let files = rust_project(args, &args.dir.join("x"), &[HookKind::Health]).unwrap();
            files.into_iter().find(|f| f.0 == "Cargo.toml").unwrap().1
        };

        let member = cargo(&args(&checkout.join("plugins"), None));
        assert!(
            member.contains("rewind-sdk = { path = \"../../sdk\" }"),
            "{member}"
        );
        assert!(!member.contains("[workspace]"), "{member}");

        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let with_sdk = cargo(&args(&elsewhere, Some(checkout.join("sdk"))));
        assert!(
            with_sdk.contains(&format!(
                "rewind-sdk = {{ path = \"{}\" }}",
                checkout.join("sdk").display()
            )),
            "{with_sdk}"
        );
        assert!(with_sdk.contains("[workspace]"), "{with_sdk}");

        let err = rust_project(
            &args(&elsewhere, Some(elsewhere.clone())),
            &elsewhere.join("x"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("not the sdk/ directory of a rewind checkout"),
            "{err}"
        );
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
