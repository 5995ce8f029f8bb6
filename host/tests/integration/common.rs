//! Shared by the integration tests: the plugins built by `tests/run`, one
//! runtime per test binary, a scratch store, and a real HTTP server on
//! loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use rewind::bindings::rewind::hooks::types::{HealthReport, HealthStatus, HookContext};
use rewind::engine::Runtime;
use rewind::grants::{ExecPattern, Grants, OriginPattern, PathGrant};
use rewind::plugin::LoadedPlugin;
use rewind::sandbox::{
    CallOutcome, HookInput, HookOutput, Limits, LogSink, SandboxSpec, call_hook,
};
use rewind::store::{ArtifactRecord, Store};

/// Where `tests/run` put the plugin components.
pub fn plugin_dir() -> PathBuf {
    match std::env::var_os("REWIND_TEST_PLUGINS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release"),
    }
}

pub fn plugin_path(crate_name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/run` (it builds the plugins for wasm32-wasip2 first)",
        path.display()
    );
    path
}

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let cache = std::env::temp_dir().join(format!("rewind-test-cache-{}", std::process::id()));
    Runtime::new(Some(cache)).expect("engine")
});

pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

pub fn load(crate_name: &str) -> LoadedPlugin {
    rewind::plugin::load(runtime(), &plugin_path(crate_name), None).expect("plugin loads")
}

/// One hook call's setup: grants, params, limits.
pub struct Call {
    pub instance: String,
    pub grants: Grants,
    pub params: serde_json::Value,
    pub limits: Limits,
    pub dry_run: bool,
    pub target: Option<String>,
}

impl Call {
    pub fn new(instance: &str, params: serde_json::Value) -> Self {
        Call {
            instance: instance.to_string(),
            grants: Grants::default(),
            params,
            limits: Limits::default(),
            dry_run: false,
            target: None,
        }
    }

    pub fn path(mut self, path: &Path) -> Self {
        self.grants
            .paths
            .push(PathGrant::parse(&path.display().to_string()).unwrap());
        self
    }

    pub fn read_only(mut self, path: &Path) -> Self {
        self.grants
            .paths
            .push(PathGrant::parse(&format!("ro:{}", path.display())).unwrap());
        self
    }

    pub fn exec(mut self, pattern: &str) -> Self {
        self.grants.exec.push(ExecPattern::parse(pattern).unwrap());
        self
    }

    pub fn env(mut self, name: &str) -> Self {
        self.grants.env.push(name.to_string());
        self
    }

    pub fn http(mut self, origin: &str) -> Self {
        self.grants.http.push(OriginPattern::parse(origin).unwrap());
        self
    }

    pub fn tcp(mut self, target: &str) -> Self {
        self.grants
            .tcp
            .push(rewind::grants::TcpGrant::parse(target).unwrap());
        self
    }

    pub fn timeout(mut self, limit: Duration) -> Self {
        self.limits.timeout = limit;
        self
    }

    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.limits.memory_bytes = mb << 20;
        self
    }

    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(target.to_string());
        self
    }

    pub fn run(&self, plugin: &LoadedPlugin, store: &Store, input: HookInput<'_>) -> CallOutcome {
        let spec = SandboxSpec {
            instance: self.instance.clone(),
            grants: Arc::new(self.grants.clone()),
            limits: self.limits.clone(),
        };
        let ctx = HookContext {
            run_id: "test-run".into(),
            project: "shop".into(),
            environment: "test".into(),
            instance: self.instance.clone(),
            dry_run: self.dry_run,
            params_json: self.params.to_string(),
            target: self.target.clone(),
        };
        call_hook(plugin, &spec, store, ctx, input, LogSink::new(None))
    }

    pub fn backup(&self, plugin: &LoadedPlugin, store: &Store) -> Vec<ArtifactRecord> {
        match self.run(plugin, store, HookInput::Backup).result {
            Ok(HookOutput::Artifacts(records)) => records,
            other => panic!("backup of {} did not succeed: {other:?}", self.instance),
        }
    }

    pub fn health(&self, plugin: &LoadedPlugin, store: &Store) -> HealthReport {
        match self.run(plugin, store, HookInput::Health).result {
            Ok(HookOutput::Health(report)) => report,
            other => panic!(
                "health of {} did not return a report: {other:?}",
                self.instance
            ),
        }
    }
}

/// A scratch directory with a store inside it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

pub fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    Scratch { dir, store }
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Run the hostile plugin's health hook with `call`'s setup: the attack's
/// one check (healthy = it got through).
pub fn outcome(call: &Call, s: &Scratch) -> (HealthStatus, String) {
    only_check(&call.health(&load("hostile"), &s.store))
}

/// The attack was refused; its refusal.
pub fn refused(call: &Call, s: &Scratch) -> String {
    let (status, detail) = outcome(call, s);
    assert_eq!(
        status,
        HealthStatus::Unhealthy,
        "attack succeeded: {detail}"
    );
    detail
}

/// The attempt went through (a control case); what it got.
pub fn allowed(call: &Call, s: &Scratch) -> String {
    let (status, detail) = outcome(call, s);
    assert_eq!(status, HealthStatus::Healthy, "refused: {detail}");
    detail
}

/// A single health check's status and detail.
pub fn only_check(report: &HealthReport) -> (HealthStatus, String) {
    assert_eq!(report.checks.len(), 1, "{report:?}");
    (report.checks[0].status, report.checks[0].detail.clone())
}

/// A real HTTP/1.1 server on 127.0.0.1, answering every request with a
/// fixed status and body (or one chosen per request), and recording
/// requests.
pub struct HttpServer {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
    pub paths: Arc<Mutex<Vec<String>>>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl HttpServer {
    pub fn start(status: u16, body: &'static str) -> HttpServer {
        Self::start_with_delay(status, body, Duration::ZERO)
    }

    pub fn start_with_delay(status: u16, body: &'static str, delay: Duration) -> HttpServer {
        Self::start_answering(delay, move |_| (status, body.to_string()))
    }

    /// A server whose answer depends on the request: `answer` gets each
    /// request and returns the status and body, sent after `delay`.
    pub fn start_answering(
        delay: Duration,
        answer: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpServer {
        let answer = Arc::new(answer);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (h, p, r) = (hits.clone(), paths.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (h, p, r, a) = (h.clone(), p.clone(), r.clone(), answer.clone());
                std::thread::spawn(move || serve(stream, &*a, delay, &h, &p, &r));
            }
        });
        HttpServer {
            port,
            hits,
            paths,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    answer: &(dyn Fn(&Recorded) -> (u16, String) + Send + Sync),
    delay: Duration,
    hits: &AtomicUsize,
    paths: &Mutex<Vec<String>>,
    requests: &Mutex<Vec<Recorded>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut content_length = 0usize;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let request_body = if chunked {
        read_chunked(&mut reader)
    } else {
        let mut body = vec![0; content_length];
        let _ = reader.read_exact(&mut body);
        body
    };
    let mut parts = request_line.split_whitespace();
    let request = Recorded {
        method: parts.next().unwrap_or("").to_string(),
        path: parts.next().unwrap_or("").to_string(),
        headers,
        body: request_body,
    };
    let (status, body) = answer(&request);
    requests.lock().unwrap().push(request);
    hits.fetch_add(1, Ordering::SeqCst);
    paths.lock().unwrap().push(
        request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string(),
    );
    std::thread::sleep(delay);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A `transfer-encoding: chunked` body (what wasi-http sends when the
/// plugin does not set a length).
fn read_chunked(reader: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
            break;
        }
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or(0);
        if size == 0 {
            let mut trailer = String::new();
            let _ = reader.read_line(&mut trailer);
            break;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            break;
        }
        body.extend_from_slice(&chunk[..size]);
    }
    body
}

/// A scratch tree for filesystem attacks: `app` granted read-write,
/// `app/protected` read-only inside it, `outside` granted nothing.
pub struct NestedTree {
    pub s: Scratch,
    pub app: PathBuf,
    pub protected: PathBuf,
    pub outside: PathBuf,
    pub plugin: LoadedPlugin,
}

/// What one attack of the hostile health hook produced.
pub struct Attack {
    pub status: HealthStatus,
    pub detail: String,
    /// The refusals the host logged during the call.
    pub denials: Vec<String>,
}

pub fn nested_tree() -> NestedTree {
    let s = scratch();
    let root = s.path().canonicalize().unwrap();
    let app = root.join("app");
    let protected = app.join("protected");
    let outside = root.join("outside");
    std::fs::create_dir_all(&protected).unwrap();
    std::fs::create_dir_all(app.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(protected.join("x"), "keep").unwrap();
    std::fs::write(outside.join("secret"), "secret").unwrap();
    NestedTree {
        s,
        app,
        protected,
        outside,
        plugin: load("hostile"),
    }
}

impl NestedTree {
    /// The attack with `app` granted read-write and `protected` read-only.
    pub fn call(
        &self,
        attack: &str,
        target: impl AsRef<std::ffi::OsStr>,
        extra: serde_json::Value,
    ) -> Call {
        let target = Path::new(target.as_ref()).display().to_string();
        Call::new(
            "hostile",
            serde_json::json!({ "attack": attack, "target": target, "extra": extra }),
        )
        .path(&self.app)
        .read_only(&self.protected)
    }

    pub fn run(&self, call: &Call) -> Attack {
        let outcome = call.run(&self.plugin, &self.s.store, HookInput::Health);
        let report = match outcome.result {
            Ok(HookOutput::Health(report)) => report,
            other => panic!("the health hook did not report: {other:?}"),
        };
        assert_eq!(report.checks.len(), 1, "{report:?}");
        Attack {
            status: report.checks[0].status,
            detail: report.checks[0].detail.clone(),
            denials: outcome
                .logs
                .iter()
                .filter(|l| l.message.contains("denied:"))
                .map(|l| l.message.clone())
                .collect(),
        }
    }

    pub fn outside_untouched(&self) {
        assert_eq!(
            std::fs::read_to_string(self.outside.join("secret")).unwrap(),
            "secret"
        );
        assert_eq!(std::fs::read_dir(&self.outside).unwrap().count(), 1);
    }
}

/// Run the real `rewind` binary in `dir`, with its cache and default store
/// there and no config from the environment.
pub fn rewind_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(args)
        .current_dir(dir)
        .env("REWIND_CACHE_DIR", dir.join("cache"))
        .env("REWIND_STORE", dir.join("store"))
        .env_remove("REWIND_CONFIG")
        .output()
        .unwrap()
}

/// A command's exit code, stdout and stderr, for an assertion's message.
pub fn show(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Python of the test venv (`tests/run` makes it, in target/test-venv).
pub fn test_python() -> PathBuf {
    std::env::var_os("REWIND_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python")
        })
}

/// componentize-py, from the test venv beside [`test_python`].
pub fn componentize_py() -> PathBuf {
    let path = test_python().with_file_name("componentize-py");
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/run` (it installs componentize-py into the test venv)",
        path.display()
    );
    path
}

/// The newest modification time of the files under `dir` (following the
/// `wit/deps` symlink into the repository's wit/).
fn newest_mtime(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::metadata(&path).unwrap();
        let time = if meta.is_dir() {
            newest_mtime(&path)
        } else {
            meta.modified().unwrap()
        };
        newest = newest.max(time);
    }
    newest
}

/// A plugin written in Python, `plugins-py/<name>`, built into a component
/// by its build.sh (componentize-py) next to the Rust plugins. It is built
/// once: again only when a source is newer than the component, since a
/// build takes about 10 s (and wasmtime's first compile of its 18 MB, which
/// the compile cache keeps, about 15 s more).
pub fn python_plugin_path(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let project = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins-py")
        .join(name);
    let out = plugin_dir().join(format!("{name}.wasm"));
    let fresh = std::fs::metadata(&out)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_mtime(&project));
    if !fresh {
        let started = std::time::Instant::now();
        let tmp = plugin_dir().join(format!(".{name}.wasm.tmp-{}", std::process::id()));
        let output = std::process::Command::new(project.join("build.sh"))
            .arg(&tmp)
            .env("COMPONENTIZE_PY", componentize_py())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "building {} with componentize-py failed:\n{}{}",
            project.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&tmp, &out).unwrap();
        eprintln!(
            "built {} with componentize-py in {:.1} s ({} MB)",
            out.display(),
            started.elapsed().as_secs_f64(),
            std::fs::metadata(&out).unwrap().len() / 1_000_000
        );
    }
    out
}

/// `source = "…"` and `sha256 = "…"` lines for a built plugin.
pub fn pin(crate_name: &str) -> String {
    let path = plugin_path(crate_name);
    format!(
        "source = \"{}\"\nsha256 = \"{}\"",
        path.display(),
        rewind::plugin::sha256_hex(&std::fs::read(&path).unwrap())
    )
}

/// A command's output as text, for assertions and their messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Where the `rewind` binary of the tests caches compiled plugins: the
/// runner's `REWIND_CACHE_DIR` (`tests/run` sets one per run), so every
/// test reuses the first compile of each plugin.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("REWIND_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("rewind-test-cache-project"))
}

/// A bucket on moto's S3 server that a store lives in.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
}

/// Where a rewind.toml keeps its store: what its `[store]` section says,
/// and so what rewind's environment needs to reach it.
#[derive(Clone, Debug)]
pub enum StoreAt {
    /// `store/` at the top of the project's temp dir.
    Local,
    /// `s3://bucket/prefix` on moto.
    S3(S3Bucket),
    /// One host's part of a fleet store on moto (under `hosts/<host>/`).
    Fleet { s3: S3Bucket, host: String },
}

impl StoreAt {
    /// The `[store]` section, with `extra` lines (retention, say) at its
    /// end; a `Local` store lies in `top`.
    pub fn section(&self, top: &Path, extra: &str) -> String {
        let s3_lines = |s3: &S3Bucket| {
            format!(
                "url = \"s3://{}/{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
                s3.bucket, s3.prefix, s3.endpoint
            )
        };
        let lines = match self {
            StoreAt::Local => format!("url = \"file://{}/store\"\n", top.display()),
            StoreAt::S3(s3) => s3_lines(s3),
            StoreAt::Fleet { s3, host } => {
                format!("{}fleet = true\nhost = \"{host}\"\n", s3_lines(s3))
            }
        };
        format!("[store]\n{lines}{extra}\n")
    }

    fn on_s3(&self) -> bool {
        !matches!(self, StoreAt::Local)
    }
}

/// The opening of every test's rewind.toml: the project (`shop` in
/// `environment`) and its `[store]` section.
pub fn config_head(environment: &str, store_section: &str) -> String {
    format!("[project]\nname = \"shop\"\nenvironment = \"{environment}\"\n\n{store_section}")
}

/// Keep a `rewind` (or Ansible) process to the S3 credentials the test
/// sets: no ~/.aws of the machine running the tests (HOME is `home`), no
/// profile, session or endpoint from the environment.
pub fn isolate_from_aws_config(cmd: &mut std::process::Command, home: &Path) {
    cmd.env("HOME", home)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3");
}

/// `["a", "b"]`. The items are written as they are: the tests' paths and
/// scripts have no `"` or `\` to escape.
pub fn toml_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// A `[plugins.<instance>]` table of rewind.toml: the built plugin pinned
/// (path and sha256), then the lines the builder methods add.
pub struct PluginTable(String);

pub fn plugin_table(instance: &str, crate_name: &str) -> PluginTable {
    PluginTable(format!("[plugins.{instance}]\n{}\n", pin(crate_name)))
}

impl PluginTable {
    /// Any other line of the table (`limits = …`, `fallback = …`).
    pub fn line(mut self, line: &str) -> Self {
        self.0.push_str(line);
        self.0.push('\n');
        self
    }

    pub fn grant_paths(self, paths: &[&Path]) -> Self {
        let list = toml_list(paths.iter().map(|p| p.display()));
        self.line(&format!("grants.paths = {list}"))
    }

    pub fn grant_exec(self, patterns: &[&str]) -> Self {
        self.line(&format!("grants.exec = {}", toml_list(patterns)))
    }

    pub fn grant_env(self, names: &[&str]) -> Self {
        self.line(&format!("grants.env = {}", toml_list(names)))
    }

    /// `params = { <fields> }`.
    pub fn params(self, fields: &str) -> Self {
        self.line(&format!("params = {{ {fields} }}"))
    }
}

impl std::fmt::Display for PluginTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// release-symlink over `base` (its releases/ and the `current` symlink).
pub fn release_symlink_table(instance: &str, base: &Path) -> PluginTable {
    plugin_table(instance, "release-symlink")
        .grant_paths(&[base])
        .params(&format!("base = \"{}\"", base.display()))
}

/// files, granted `granted`, keeping `paths` (inside it).
pub fn files_table(instance: &str, granted: &Path, paths: &[&Path]) -> PluginTable {
    plugin_table(instance, "files")
        .grant_paths(&[granted])
        .params(&format!(
            "paths = {}",
            toml_list(paths.iter().map(|p| p.display()))
        ))
}

/// The command plugin as a health check: healthy while `file` holds the
/// line `ok` (a release's HEALTH file), the check called `name` if given.
pub fn health_file_table(instance: &str, file: &Path, name: Option<&str>) -> PluginTable {
    let check = toml_list(["grep", "-qx", "ok", &file.display().to_string()]);
    let name = name.map_or(String::new(), |n| format!(", name = \"{n}\""));
    plugin_table(instance, "command")
        .grant_exec(&["grep -qx ok *"])
        .params(&format!("health = {check}{name}"))
}

/// The command plugin's params running each `(hook, script)` as
/// `sh -c script` (what it prints on backup is the artifact, what it reads
/// on revert the artifact back).
pub fn sh_hooks(hooks: &[(&str, &str)]) -> String {
    hooks
        .iter()
        .map(|(hook, script)| format!("{hook} = {}", toml_list(["sh", "-c", script])))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The command plugin running `sh -c` scripts for `hooks` (see [`sh_hooks`]).
pub fn sh_command_table(instance: &str, hooks: &[(&str, &str)]) -> PluginTable {
    plugin_table(instance, "command")
        .grant_exec(&["sh -c *"])
        .params(&sh_hooks(hooks))
}

/// The postgres plugin on `pg`'s `database`: its programs from `pg`'s bin
/// dir, the password from PGPASSWORD, and `more_params` (`, mode = …`) at
/// the end of its params.
pub fn postgres_table(
    instance: &str,
    pg: &crate::servers::Postgres,
    database: &str,
    more_params: &str,
) -> PluginTable {
    let bin = pg.bin.display();
    plugin_table(instance, "postgres")
        .grant_exec(&[
            &format!("{bin}/pg_dump **"),
            &format!("{bin}/pg_restore **"),
            &format!("{bin}/psql **"),
        ])
        .grant_env(&["PGPASSWORD"])
        .params(&format!(
            "database = \"{database}\", port = {}, bin_dir = \"{bin}\", password_env = \"PGPASSWORD\"{more_params}",
            pg.port
        ))
}

/// A rewind project in a temp dir: a rewind.toml and a store, driven
/// through the real binary.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// Where rewind.toml lies and rewind runs, relative to `dir`.
    workdir: PathBuf,
    store: StoreAt,
    pub env: Vec<(String, String)>,
}

impl Project {
    /// `body` is everything after `[project]` and `[store]`; the store is
    /// local, beside rewind.toml.
    pub fn new(body: &str) -> Project {
        Project::with_store(StoreAt::Local, "", body)
    }

    /// A project whose rewind.toml lies in `workdir` (inside the temp dir,
    /// "" for the temp dir itself) and keeps its store at `store`; on S3,
    /// with moto's test credentials until [`Project::set_env`] changes them.
    pub fn with_store(store: StoreAt, workdir: &str, body: &str) -> Project {
        let mut project = Project {
            dir: tempfile::tempdir().unwrap(),
            workdir: PathBuf::from(workdir),
            store,
            env: Vec::new(),
        };
        if project.store.on_s3() {
            project.set_env("AWS_ACCESS_KEY_ID", "testing-key");
            project.set_env("AWS_SECRET_ACCESS_KEY", "testing-secret");
        }
        project.write(body);
        project
    }

    /// Where rewind.toml lies and rewind runs.
    pub fn root(&self) -> PathBuf {
        let root = self.dir.path().join(&self.workdir);
        std::fs::create_dir_all(&root).unwrap();
        root.canonicalize().unwrap()
    }

    /// The temp dir, where a local store lies (`store/`).
    pub fn top(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    pub fn write(&self, body: &str) {
        let head = config_head("test", &self.store.section(&self.top(), ""));
        std::fs::write(self.root().join("rewind.toml"), format!("{head}{body}")).unwrap();
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// `rewind <args>` in the project, with no config or store from the
    /// environment, ready to run.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rewind"));
        cmd.args(args)
            .current_dir(self.root())
            .env("REWIND_CACHE_DIR", cache_dir())
            .env_remove("REWIND_CONFIG")
            .env_remove("REWIND_STORE");
        if self.store.on_s3() {
            isolate_from_aws_config(&mut cmd, self.dir.path());
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn rewind(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// Run, assert the exit code, parse stdout as JSON.
    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let out = self.rewind(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "rewind {args:?}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|err| panic!("{err}: {}", text(&out.stdout)))
    }

    /// Start `rewind <args>` in the background, its output discarded.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Start `rewind <args>` in the background, its output discarded, its
    /// store lease `lease_s` seconds long (renewed every third of it), so
    /// that a test can let a killed holder's lease expire.
    pub fn spawn_with_lease(&self, args: &[&str], lease_s: &str) -> std::process::Child {
        self.command(args)
            .env("REWIND_LEASE_S", lease_s)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Run `rewind <args>` under `script`, which gives it a terminal, typing
    /// `answers`; returns the exit code and what appeared on the terminal.
    pub fn on_a_terminal(&self, args: &str, answers: &str) -> (Option<i32>, String) {
        use std::process::{Command, Stdio};
        let program = env!("CARGO_BIN_EXE_rewind");
        let command = self.command(&[]);
        let mut script = Command::new("script");
        script
            .args(["-qec", &format!("{program} {args}"), "/dev/null"])
            .current_dir(self.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => script.env(key, value),
                None => script.env_remove(key),
            };
        }
        let mut child = script.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answers.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), text(&out.stdout))
    }
}

/// The sample app's config file as first deployed.
pub const SAMPLE_CONFIG_V1: &str = "APP_ENV=production\nDB_PASSWORD=v1-secret\n";

/// The sample app's plugin tables: release-symlink for the code, files
/// for its config and data, and a `slow` command instance whose backup is
/// the shell script `slow_backup` (to hold the store's lock a while).
pub fn sample_plugins(root: &Path, slow_backup: &str) -> String {
    [
        release_symlink_table("code", root),
        files_table("config", &root.join("shared"), &[&root.join("shared")]),
        sh_command_table("slow", &[("backup", slow_backup)]),
    ]
    .map(|table| table.to_string())
    .join("\n")
}

/// The end-to-end tests' app, in `app/` of a project's temp dir: releases
/// v1 (healthy, `current`) and v2 (broken), a private config file and a data
/// file under shared/, and its rewind.toml. A local store lies beside
/// `app/`, outside every grant.
pub struct SampleApp {
    project: Project,
    /// The `[plugins.*]` tables, given the app's root: each test module
    /// has its own, the chains pick from them.
    plugins: fn(&Path) -> String,
}

/// The app is driven like any project (`rewind`, `json`, `command`, …).
impl std::ops::Deref for SampleApp {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.project
    }
}

impl std::ops::DerefMut for SampleApp {
    fn deref_mut(&mut self) -> &mut Project {
        &mut self.project
    }
}

impl SampleApp {
    /// The app on v1, its store at `store`, with `plugins`; the chains
    /// are `backup` and `rollback` (instance names), then any `extra` TOML.
    pub fn new(
        store: StoreAt,
        plugins: fn(&Path) -> String,
        backup: &[&str],
        rollback: &[&str],
        extra: &str,
    ) -> SampleApp {
        let app = SampleApp {
            project: Project::with_store(store, "app", ""),
            plugins,
        };
        let root = app.root();
        for (version, health) in [("v1", "ok"), ("v2", "broken")] {
            let dir = root.join("releases").join(version);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("HEALTH"), format!("{health}\n")).unwrap();
        }
        std::os::unix::fs::symlink("releases/v1", root.join("current")).unwrap();
        std::fs::create_dir_all(root.join("shared/data")).unwrap();
        std::fs::write(root.join("shared/config.env"), SAMPLE_CONFIG_V1).unwrap();
        set_mode(&root.join("shared/config.env"), 0o600);
        // Enough bytes that compression and streaming are exercised.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(root.join("shared/data/orders.bin"), data).unwrap();
        app.write_config(backup, rollback, extra);
        app
    }

    /// A local store's directory.
    pub fn store(&self) -> PathBuf {
        self.top().join("store")
    }

    pub fn write_config(&self, backup: &[&str], rollback: &[&str], extra: &str) {
        let plugins = (self.plugins)(&self.root());
        self.write(&format!(
            "{plugins}\n[chains]\nbackup = {}\nrollback = {}\n\n{extra}\n",
            toml_list(backup),
            toml_list(rollback)
        ));
    }

    /// Add `line` to the table of `instance` in rewind.toml.
    pub fn set(&self, instance: &str, line: &str) {
        let path = self.root().join("rewind.toml");
        let header = format!("[plugins.{instance}]\n");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&header), "no {header} in rewind.toml");
        std::fs::write(&path, text.replace(&header, &format!("{header}{line}\n"))).unwrap();
    }

    /// Where `current` points.
    pub fn current(&self) -> String {
        std::fs::read_link(self.root().join("current"))
            .unwrap()
            .display()
            .to_string()
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root().join(rel)).unwrap()
    }

    /// A bad deploy: current → v2, config and data rewritten.
    pub fn break_it(&self) {
        let root = self.root();
        std::fs::remove_file(root.join("current")).unwrap();
        std::os::unix::fs::symlink("releases/v2", root.join("current")).unwrap();
        std::fs::write(root.join("shared/config.env"), "DB_PASSWORD=wrong\n").unwrap();
        set_mode(&root.join("shared/config.env"), 0o644);
        std::fs::write(root.join("shared/data/orders.bin"), b"truncated").unwrap();
    }
}

/// Once the lease of a killed holder (recorded as on `web-2.example`) has
/// expired: the next backup takes the lock over and says so, and so does
/// status afterwards; the lock is free again. The same on every store.
pub fn assert_a_backup_takes_over_the_expired_lease(project: &Project) {
    let out = project.rewind(&["backup"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("took over the store lock of pid")
            && err.contains("web-2.example")
            && err.contains("lease expired"),
        "{err}"
    );
    let status = text(&project.rewind(&["status"]).stdout);
    assert!(
        status.contains("last lock event") && status.contains("lease expired unrenewed"),
        "{status}"
    );
    assert!(status.contains("lock:          free"), "{status}");
}

/// Every artifact a run (`backup --json`, say) stored, over its steps.
pub fn run_artifacts(run: &serde_json::Value) -> Vec<&serde_json::Value> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["artifacts"].as_array().unwrap())
        .collect()
}

/// The digest of the artifact `name` of a run's step `step`.
pub fn artifact_digest(run: &serde_json::Value, step: usize, name: &str) -> String {
    run["steps"][step]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The kind of each run of `history --json`, newest first.
pub fn run_kinds(history: &serde_json::Value) -> Vec<&str> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect()
}
