//! A fleet: five hosts (local connection, each its own app dir, release
//! symlink and PostgreSQL database on one server), all keeping their
//! backups in one fleet store on S3 (moto's server, `store.fleet = true`,
//! each host under `hosts/<host>/`). The Ansible collection
//! (`integrations/ansible/rewind/cli`) installed with `ansible-galaxy` and
//! documented for `ansible-doc`; a rolling guarded deploy stopped by
//! `max_fail_percentage`, `rewind fleet status` over the shared store,
//! check mode, and a fleet-wide rollback to one deploy id. Then two hosts
//! of one store: one's prune, lease and crash never touch the other's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    S3Bucket, StoreAt, cache_dir, config_head, files_table, health_file_table,
    isolate_from_aws_config, postgres_table, release_symlink_table, text,
};
use crate::frameworks::venv_bin;
use crate::servers::{Moto, PASSWORD, Postgres};

const CONFIG_V1: &str = "DB_PASSWORD=v1\n";
const BUCKET: &str = "rewind-fleet";
const PREFIX: &str = "shop/production";

/// A stdout callback that prints every task result as one JSON document at
/// the end (ansible-core no longer ships a JSON one without ansible.posix).
const JSON_CALLBACK: &str = r#"
import json
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "results_json"

    def __init__(self):
        super().__init__()
        self.results = []

    def _record(self, result, failed):
        data = dict(result._result)
        data["failed"] = failed
        self.results.append({"host": result._host.get_name(), "task": result._task.get_name(), "result": data})

    def v2_runner_on_ok(self, result):
        self._record(result, False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, True)

    def v2_playbook_on_stats(self, stats):
        print(json.dumps({"results": self.results}))
"#;

/// The servers a fleet's hosts share: one PostgreSQL (a database per
/// host) and moto's S3 (one fleet store).
struct Servers {
    pg: Postgres,
    moto: Moto,
}

struct Fleet {
    dir: tempfile::TempDir,
    hosts: Vec<String>,
    servers: Option<Servers>,
}

/// Everything a host keeps, for byte-for-byte comparison: every file and
/// symlink of its app (path, then bytes or link target), its database's
/// fingerprint (each table's rows and the columns) and its whole `pg_dump`
/// (schema and data, in the server's row order).
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    files: Vec<(String, String)>,
    database: String,
    dump: String,
}

impl Fleet {
    /// Just the collection installed, for its documentation and sanity.
    fn collection_only() -> Fleet {
        let fleet = Fleet {
            dir: tempfile::tempdir().unwrap(),
            hosts: Vec::new(),
            servers: None,
        };
        fleet.install_collection();
        fleet
    }

    /// `count` hosts sharing one fleet store on moto and one PostgreSQL;
    /// `broken` hosts get a release v2 whose health check fails.
    /// `store_extra` is added to each host's `[store]` (retention, for one).
    fn new(count: usize, broken: &[&str], store_extra: &str) -> Fleet {
        let servers = Servers {
            pg: Postgres::start(),
            moto: Moto::start(),
        };
        servers
            .moto
            .python(&format!("s3.create_bucket(Bucket={BUCKET:?})"));
        let dir = tempfile::tempdir().unwrap();
        let hosts: Vec<String> = (1..=count).map(|i| format!("h{i}")).collect();
        for host in &hosts {
            let app = dir.path().join(host).join("app");
            for (release, health) in [
                ("v1", "ok"),
                (
                    "v2",
                    if broken.contains(&host.as_str()) {
                        "broken"
                    } else {
                        "ok"
                    },
                ),
                ("v3", "ok"),
            ] {
                let release = app.join("releases").join(release);
                fs::create_dir_all(&release).unwrap();
                fs::write(release.join("HEALTH"), format!("{health}\n")).unwrap();
            }
            std::os::unix::fs::symlink("releases/v1", app.join("current")).unwrap();
            fs::create_dir_all(app.join("shared")).unwrap();
            fs::write(app.join("shared/config.env"), CONFIG_V1).unwrap();
            let database = format!("shop_{host}");
            servers
                .pg
                .sql("postgres", &format!("create database {database}"));
            servers.pg.sql(
                &database,
                "create table orders (id int primary key, total numeric(10,2) not null); \
                 insert into orders select i, i * 1.25 from generate_series(1, 200) i",
            );
            let store = StoreAt::Fleet {
                s3: S3Bucket {
                    endpoint: servers.moto.url(),
                    bucket: BUCKET.into(),
                    prefix: PREFIX.into(),
                },
                host: host.clone(),
            };
            fs::write(
                dir.path().join(host).join("rewind.toml"),
                format!(
                    r#"{head}{db}
{code}
{config}
{web}
[chains]
backup = ["db", "code", "config"]
rollback = ["code", "config", "db"]

[guard]
health = ["web"]
retries = 0
delay_s = 0
"#,
                    head = config_head("production", &store.section(dir.path(), store_extra)),
                    db = postgres_table("db", &servers.pg, &database, ""),
                    code = release_symlink_table("code", &app),
                    config = files_table("config", &app.join("shared"), &[&app.join("shared")]),
                    web = health_file_table(
                        "web",
                        &app.join("current/HEALTH"),
                        Some("current/HEALTH")
                    ),
                ),
            )
            .unwrap();
        }
        let fleet = Fleet {
            dir,
            hosts,
            servers: Some(servers),
        };
        fleet.write_inventory();
        fleet.install_collection();
        fleet
    }

    fn servers(&self) -> &Servers {
        self.servers.as_ref().expect("a fleet with servers")
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn app(&self, host: &str) -> PathBuf {
        self.root().join(host).join("app")
    }

    fn config(&self, host: &str) -> PathBuf {
        self.root().join(host).join("rewind.toml")
    }

    fn current(&self, host: &str) -> String {
        fs::read_link(self.app(host).join("current"))
            .unwrap()
            .display()
            .to_string()
    }

    fn config_env(&self, host: &str) -> String {
        fs::read_to_string(self.app(host).join("shared/config.env")).unwrap()
    }

    fn state(&self, host: &str) -> HostState {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
            let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                let kind = entry.file_type().unwrap();
                if kind.is_symlink() {
                    out.push((
                        rel,
                        format!("-> {}", fs::read_link(&path).unwrap().display()),
                    ));
                } else if kind.is_dir() {
                    out.push((rel, "dir".into()));
                    walk(&path, base, out);
                } else {
                    out.push((
                        rel,
                        String::from_utf8_lossy(&fs::read(&path).unwrap()).into(),
                    ));
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.app(host), &self.app(host), &mut files);
        let pg = &self.servers().pg;
        let database = format!("shop_{host}");
        let dump = Command::new(pg.bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["--no-owner", "-d", &database])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(dump.status.success(), "{}", output_text(&dump));
        HostState {
            files,
            database: pg.fingerprint(&database),
            // pg_dump wraps its output in `\restrict KEY` … `\unrestrict
            // KEY` with a new random key each time (CVE-2025-8714).
            dump: text(&dump.stdout)
                .lines()
                .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// `rewind ARGS` with `host`'s config, the fleet's credentials.
    fn rewind(&self, host: &str, args: &[&str]) -> Command {
        self.rewind_with(&self.config(host), args)
    }

    /// `rewind ARGS` with the config `config`.
    fn rewind_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rewind"));
        cmd.arg("--config").arg(config).args(args);
        self.environment(&mut cmd);
        cmd
    }

    /// `rewind fleet status --json` from `host`'s config: its exit code and
    /// report.
    fn status(&self, host: &str, extra: &[&str]) -> (Option<i32>, Value) {
        let out = self
            .rewind(host, &["fleet", "status", "--json"])
            .args(extra)
            .output()
            .unwrap();
        code_and_json("fleet status", &out)
    }

    /// Finished runs `host` keeps in the fleet store (0 without a store).
    fn runs(&self, host: &str) -> u64 {
        let (_, report) = self.status(self.hosts.first().unwrap(), &[]);
        host_entry(&report, host).map_or(0, |h| h["runs"].as_u64().unwrap())
    }

    /// What rewind and Ansible's modules need: the fleet store's
    /// credentials (and nothing of this machine's ~/.aws), PGPASSWORD.
    fn environment(&self, cmd: &mut Command) {
        isolate_from_aws_config(cmd, self.root());
        cmd.env("REWIND_CACHE_DIR", cache_dir())
            .env_remove("REWIND_CONFIG")
            .env_remove("REWIND_STORE")
            .env_remove("REWIND_HOST")
            .env("AWS_ACCESS_KEY_ID", "testing-key")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
            .env("PGPASSWORD", PASSWORD);
    }

    fn write_inventory(&self) {
        let mut hosts = String::new();
        for host in &self.hosts {
            hosts.push_str(&format!(
                "    {host}:\n      app: {app}\n      config: {config}\n      database: shop_{host}\n",
                app = self.app(host).display(),
                config = self.config(host).display()
            ));
        }
        let pg = &self.servers().pg;
        fs::write(
            self.root().join("inventory.yml"),
            format!(
                "app:\n  hosts:\n{hosts}  vars:\n    ansible_connection: local\n    \
                 ansible_python_interpreter: {python}\n    rewind_binary: {binary}\n    \
                 psql: {psql}\n    pg_port: {port}\n",
                python = venv_bin("python").display(),
                binary = env!("CARGO_BIN_EXE_rewind"),
                psql = pg.bin.join("psql").display(),
                port = pg.port,
            ),
        )
        .unwrap();
        // The deploy switches the release, rewrites the config and
        // migrates the database: everything a rollback must undo.
        fs::write(
            self.root().join("deploy.yml"),
            r#"- name: Rolling guarded deploy, two hosts at a time
  hosts: app
  serial: 2
  max_fail_percentage: 0
  gather_facts: false
  tasks:
    - name: Deploy under rewind's guard
      rewind.cli.rewind:
        command: guard
        binary: "{{ rewind_binary }}"
        config: "{{ config }}"
        deploy_id: "{{ deploy_id }}"
        deploy:
          - sh
          - -c
          - >-
            cd {{ app }} && ln -sfn releases/{{ release }} current.new && mv -T current.new current
            && echo "DB_PASSWORD={{ release }}" > shared/config.env
            && {{ psql }} -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p {{ pg_port }} -U postgres -d {{ database }}
            -c "alter table orders add column note_{{ release }} text; update orders set total = total * 2 where id % 3 = 0; insert into orders values (1000, 9.99)"
"#,
        )
        .unwrap();
        fs::write(
            self.root().join("fleet.yml"),
            r#"- name: One view of the fleet
  hosts: app
  gather_facts: false
  tasks:
    - name: Read the fleet store
      rewind.cli.rewind:
        command: fleet_status
        binary: "{{ rewind_binary }}"
        config: "{{ config }}"
      run_once: true
"#,
        )
        .unwrap();
        fs::write(
            self.root().join("rollback.yml"),
            r#"- name: Fleet-wide rollback to the state before one deploy
  hosts: app
  gather_facts: false
  tasks:
    - name: Roll back to the backup that deploy took
      rewind.cli.rewind:
        command: rollback
        binary: "{{ rewind_binary }}"
        config: "{{ config }}"
        deploy_id: "{{ deploy_id }}"
"#,
        )
        .unwrap();
    }

    fn install_collection(&self) {
        fs::create_dir_all(self.root().join("callback_plugins")).unwrap();
        fs::write(
            self.root().join("callback_plugins/results_json.py"),
            JSON_CALLBACK,
        )
        .unwrap();
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations/ansible/rewind/cli");
        let out = self
            .ansible("ansible-galaxy")
            .args(["collection", "install", "--force", "-p"])
            .arg(self.root().join("collections"))
            .arg(&source)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ansible-galaxy collection install failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    fn ansible(&self, program: &str) -> Command {
        let mut cmd = Command::new(venv_bin(program));
        cmd.current_dir(self.root())
            .env("ANSIBLE_COLLECTIONS_PATH", self.root().join("collections"))
            .env("ANSIBLE_LOCAL_TEMP", self.root().join("ansible-tmp"))
            .env("ANSIBLE_HOME", self.root().join("ansible-home"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env(
                "ANSIBLE_CALLBACK_PLUGINS",
                self.root().join("callback_plugins"),
            )
            .env("ANSIBLE_STDOUT_CALLBACK", "results_json")
            .env("ANSIBLE_FORKS", "2");
        // The modules run rewind with this environment (local connection).
        self.environment(&mut cmd);
        cmd
    }

    /// Run a playbook with the JSON callback; its exit code and report.
    fn playbook(&self, args: &[&str]) -> (Option<i32>, Value) {
        let out = self
            .ansible("ansible-playbook")
            .args(["-i", "inventory.yml"])
            .args(args)
            .output()
            .unwrap();
        code_and_json(&format!("ansible-playbook {args:?}"), &out)
    }
}

/// A command's exit code and the JSON document it printed.
fn code_and_json(what: &str, out: &Output) -> (Option<i32>, Value) {
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("{what} printed no JSON ({err}):\n{}", output_text(out)));
    (out.status.code(), report)
}

/// What the module returned for each host, in order, over all batches.
fn host_results(report: &Value) -> Vec<(String, Value)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["host"].as_str().unwrap().to_string(), r["result"].clone()))
        .collect()
}

#[test]
fn ansible_doc_shows_the_module_documentation() {
    let fleet = Fleet::collection_only();
    let out = fleet
        .ansible("ansible-doc")
        .env("ANSIBLE_STDOUT_CALLBACK", "default")
        .args(["-t", "module", "rewind.cli.rewind"])
        .output()
        .unwrap();
    let doc = text(&out.stdout);
    assert!(out.status.success(), "{doc}{}", text(&out.stderr));
    for expected in [
        "guard",
        "deploy_id",
        "check mode",
        "max_fail_percentage",
        "RETURN VALUES",
    ] {
        assert!(doc.contains(expected), "no {expected:?} in:\n{doc}");
    }
}

#[test]
fn the_collection_passes_its_sanity_checks() {
    let fleet = Fleet::collection_only();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations/ansible/rewind/cli");
    // Documented options are exactly the argument spec; the YAML parses.
    let out = Command::new(venv_bin("python"))
        .arg(source.join("tests/check_docs.py"))
        .arg(source.join("plugins/modules/rewind.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // ansible-test's compile check, on the collection as installed (the
    // other sanity tests bootstrap a venv from the network).
    let installed = fleet
        .root()
        .join("collections/ansible_collections/rewind/cli");
    let out = fleet
        .ansible("ansible-test")
        .current_dir(&installed)
        .args(["sanity", "--test", "compile", "--python", "3.11", "--local"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `host`'s entry in a `fleet status --json` report.
fn host_entry<'a>(report: &'a Value, host: &str) -> Option<&'a Value> {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
}

fn output_text(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_rolling_deploy_that_breaks_stops_rolls_back_and_a_fleet_rollback_returns_every_host() {
    let fleet = Fleet::new(5, &["h1", "h2"], "");
    let before: Vec<HostState> = fleet.hosts.iter().map(|h| fleet.state(h)).collect();
    let unchanged = |why: &str| {
        for (host, state) in fleet.hosts.iter().zip(&before) {
            assert_eq!(&fleet.state(host), state, "{host}: {why}");
        }
    };

    // Check mode: nothing changes anywhere, and the hosts are ready.
    let (code, report) = fleet.playbook(&[
        "--check",
        "deploy.yml",
        "-e",
        "deploy_id=d0",
        "-e",
        "release=v2",
    ]);
    assert_eq!(code, Some(0), "{report:#}");
    unchanged("check mode changed it");
    for host in &fleet.hosts {
        assert_eq!(fleet.runs(host), 0, "{host} recorded a run in check mode");
    }
    // `rewind check` creates no store to prove it writable: check mode
    // leaves nothing at all in the bucket.
    assert_eq!(keys(&fleet, PREFIX), Vec::<String>::new());

    // The first batch (h1, h2) breaks: both roll back by themselves, and
    // max_fail_percentage stops the rollout before h3..h5.
    let (code, report) = fleet.playbook(&["deploy.yml", "-e", "deploy_id=d1", "-e", "release=v2"]);
    assert_eq!(code, Some(2), "{report:#}");
    let results = host_results(&report);
    let mut hosts: Vec<&str> = results.iter().map(|(h, _)| h.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["h1", "h2"], "{report:#}");
    for (_, result) in &results {
        assert_eq!(result["failed"], true, "{result:#}");
        assert_eq!(result["rc"], 3, "{result:#}");
        assert_eq!(result["outcome"], "rolled-back", "{result:#}");
        assert_eq!(result["run"]["deploy_id"], "d1", "{result:#}");
        assert!(
            result["msg"]
                .as_str()
                .unwrap()
                .contains("the deploy failed and was rolled back"),
            "{result:#}"
        );
    }
    // h1 and h2 byte for byte as before (release, config, database); the
    // others never touched.
    unchanged("after the broken deploy");

    // One view of the fleet, from the shared store alone: h1 and h2 rolled
    // back from deploy d1 and are fine; h3..h5 never ran (check mode left
    // nothing), so the store has nothing of them.
    let (code, report) = fleet.status("h3", &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["store"], format!("s3://{BUCKET}/{PREFIX}"));
    assert_eq!(report["checked"], "presence");
    let names: Vec<&str> = report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["h1", "h2"], "{report:#}");
    for host in ["h1", "h2"] {
        let h = host_entry(&report, host).unwrap();
        assert_eq!(
            h["store"],
            format!("s3://{BUCKET}/{PREFIX}/hosts/{host}"),
            "{h:#}"
        );
        assert_eq!(h["last_run"]["kind"], "guard", "{h:#}");
        assert_eq!(h["last_run"]["outcome"], "rolled-back", "{h:#}");
        assert_eq!(h["last_run"]["deploy_id"], "d1", "{h:#}");
        assert_eq!(h["newest_backup"]["deploy_id"], "d1", "{h:#}");
        for empty in ["attention", "interrupted", "running", "problems"] {
            assert_eq!(h[empty], serde_json::json!([]), "{host} {empty}: {h:#}");
        }
        assert!(h["lease"].is_null(), "{h:#}");
    }
    // The module reads the same report, once for the whole fleet.
    let (code, playbook) = fleet.playbook(&["fleet.yml"]);
    assert_eq!(code, Some(0), "{playbook:#}");
    let results = host_results(&playbook);
    assert_eq!(results.len(), 1, "run_once: {playbook:#}");
    let (_, result) = &results[0];
    assert_eq!(result["changed"], false, "{result:#}");
    assert_eq!(result["attention"], serde_json::json!({}), "{result:#}");
    assert_eq!(result["result"]["hosts"], report["hosts"], "{result:#}");
    // The table says the same, one host per line.
    let out = fleet.rewind("h1", &["fleet", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let table = text(&out.stdout);
    eprintln!("{table}");
    for host in ["h1", "h2"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("no {host} line in:\n{table}"));
        assert!(line.contains("guard rolled-back"), "{table}");
        assert!(line.contains("(d1)"), "{table}");
    }

    // A deploy that is healthy everywhere, then a fleet-wide rollback to
    // the backups that deploy took: every host is back as it was.
    let (code, report) = fleet.playbook(&["deploy.yml", "-e", "deploy_id=d2", "-e", "release=v3"]);
    assert_eq!(code, Some(0), "{report:#}");
    for (host, result) in host_results(&report) {
        assert_eq!(result["changed"], true, "{result:#}");
        assert_eq!(result["outcome"], "deployed", "{result:#}");
        assert_eq!(fleet.current(&host), "releases/v3");
        assert_eq!(fleet.config_env(&host), "DB_PASSWORD=v3\n");
        // The migration ran: the rollback below has a database to undo.
        let i = fleet.hosts.iter().position(|h| *h == host).unwrap();
        assert_ne!(fleet.state(&host).database, before[i].database, "{host}");
    }
    let (code, report) = fleet.playbook(&["rollback.yml", "-e", "deploy_id=d2"]);
    assert_eq!(code, Some(0), "{report:#}");
    let results = host_results(&report);
    assert_eq!(results.len(), 5, "{report:#}");
    for (_, result) in results {
        assert_eq!(result["changed"], true, "{result:#}");
        assert_eq!(result["run"]["deploy_id"], "d2", "{result:#}");
        assert_eq!(result["run"]["status"], "succeeded", "{result:#}");
    }
    unchanged("after the fleet-wide rollback to d2");
    // Every host's last run is that rollback, and every blob of every host
    // re-hashes to its digest.
    let (code, report) = fleet.status("h1", &["--verify"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["checked"], "content");
    for host in &fleet.hosts {
        let h = host_entry(&report, host).unwrap();
        assert_eq!(h["last_run"]["kind"], "rollback", "{h:#}");
        assert_eq!(h["last_run"]["status"], "succeeded", "{h:#}");
        assert_eq!(h["last_run"]["deploy_id"], "d2", "{h:#}");
        assert_eq!(h["problems"], serde_json::json!([]), "{h:#}");
    }

    // Check mode of a rollback is its dry run: nothing changes.
    let runs_before: Vec<u64> = fleet.hosts.iter().map(|h| fleet.runs(h)).collect();
    let keys_before = keys(&fleet, PREFIX);
    let (code, report) = fleet.playbook(&["--check", "rollback.yml", "-e", "deploy_id=d1"]);
    // h3..h5 never took a backup for d1: the dry run says so and fails.
    assert_eq!(code, Some(2), "{report:#}");
    for (host, result) in host_results(&report) {
        let expect_ok = host == "h1" || host == "h2";
        assert_eq!(
            result["failed"].as_bool().unwrap_or(false),
            !expect_ok,
            "{host}: {result:#}"
        );
        if !expect_ok {
            assert!(
                result["msg"]
                    .as_str()
                    .unwrap()
                    .contains("no backup of deploy `d1`"),
                "{result:#}"
            );
        }
    }
    let runs_after: Vec<u64> = fleet.hosts.iter().map(|h| fleet.runs(h)).collect();
    assert_eq!(runs_before, runs_after);
    unchanged("check mode of a rollback changed it");
    assert_eq!(
        keys(&fleet, PREFIX),
        keys_before,
        "check mode wrote to the store"
    );
}

/// The keys under `prefix` in the fleet's bucket, sorted.
fn keys(fleet: &Fleet, prefix: &str) -> Vec<String> {
    let out = fleet.servers().moto.python(&format!(
        "p = s3.get_paginator('list_objects_v2')\n\
         for page in p.paginate(Bucket={BUCKET:?}, Prefix={prefix:?}):\n    \
         for o in page.get('Contents', []): print(o['Key'], o['ETag'])"
    ));
    let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
    keys.sort();
    keys
}

#[test]
fn hosts_of_one_fleet_store_never_touch_each_others_runs_prune_or_lease() {
    // Retention that keeps one backup: every backup prunes the one before.
    let fleet = Fleet::new(2, &[], "keep_days = 0\nkeep_last = 1");
    let backup = |host: &str| {
        let out = fleet.rewind(host, &["backup", "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    };
    // Both hosts back up the same config.env: if blobs were shared across
    // hosts, h1's prune would remove the blob h2's backup names.
    backup("h2");
    let h2_prefix = format!("{PREFIX}/hosts/h2/");
    let h2_keys = keys(&fleet, &h2_prefix);
    assert!(
        h2_keys.iter().any(|k| k.contains("/blobs/sha256/")),
        "{h2_keys:?}"
    );
    for _ in 0..3 {
        backup("h1");
    }
    assert_eq!(
        fleet.runs("h1"),
        1,
        "h1's retention pruned its older backups"
    );
    assert_eq!(keys(&fleet, &h2_prefix), h2_keys, "h1's prune touched h2");
    let out = fleet
        .rewind("h2", &["artifacts", "verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // Nothing of either host outside its own prefix.
    for key in keys(&fleet, PREFIX) {
        assert!(
            key.starts_with(&format!("{PREFIX}/hosts/h1/")) || key.starts_with(&h2_prefix),
            "{key}"
        );
    }

    // h1 holds its lease (a deploy that takes a while): h2 runs anyway.
    let mut holder = fleet
        .rewind("h1", &["guard", "--", "sleep", "20"])
        // Short enough to expire in the test, long enough that a renewal
        // on a loaded machine (every third of it) is never late.
        .env("REWIND_LEASE_S", "5")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, report) = fleet.status("h2", &[]);
        let h1 = host_entry(&report, "h1").unwrap();
        // The guard's backup is done and its deploy command runs.
        let running = h1["running"].as_array().unwrap();
        if running.len() == 1 && running[0]["step"] == "deploy command" {
            assert_eq!(running[0]["kind"], "guard", "{h1:#}");
            assert_eq!(h1["lease"]["expired"], false, "{h1:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "h1 never took its lease: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    backup("h2");

    // h1 dies in the middle of its run: its lease expires unrenewed, and
    // the fleet view says what needs attention on h1 only.
    assert!(
        holder.try_wait().unwrap().is_none(),
        "h1's guard ended early"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, report) = loop {
        let (code, report) = fleet.status("h2", &[]);
        if host_entry(&report, "h1").unwrap()["lease"]["expired"] == true {
            break (code, report);
        }
        assert!(
            Instant::now() < deadline,
            "h1's lease never expired: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(code, Some(1), "{report:#}");
    let h1 = host_entry(&report, "h1").unwrap();
    assert_eq!(h1["lease"]["expired"], true, "{h1:#}");
    assert_eq!(h1["interrupted"].as_array().unwrap().len(), 1, "{h1:#}");
    assert_eq!(h1["interrupted"][0]["kind"], "guard", "{h1:#}");
    assert_eq!(h1["interrupted"][0]["step"], "deploy command", "{h1:#}");
    assert_eq!(h1["running"], serde_json::json!([]), "{h1:#}");
    let attention = h1["attention"].to_string();
    assert!(attention.contains("interrupted"), "{h1:#}");
    assert!(attention.contains("expired"), "{h1:#}");
    let h2 = host_entry(&report, "h2").unwrap();
    assert_eq!(h2["attention"], serde_json::json!([]), "{h2:#}");
    assert!(h2["lease"].is_null(), "{h2:#}");
    let out = fleet.rewind("h2", &["fleet", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let table = text(&out.stdout);
    eprintln!("{table}");
    let h1_line = table.lines().find(|l| l.starts_with("h1 ")).unwrap();
    assert!(h1_line.contains("expired"), "{table}");
    assert!(table.contains("interrupted: guard"), "{table}");
    // Through Ansible: the task fails, naming h1 and why.
    let (code, playbook) = fleet.playbook(&["fleet.yml"]);
    assert_eq!(code, Some(2), "{playbook:#}");
    let (_, result) = &host_results(&playbook)[0];
    assert_eq!(result["failed"], true, "{result:#}");
    assert_eq!(result["rc"], 1, "{result:#}");
    let msg = result["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("rewind fleet status: hosts need attention (exit 1): h1: "),
        "{msg}"
    );
    assert!(!msg.contains("h2"), "{msg}");
    assert_eq!(
        result["attention"]["h1"].as_array().map(Vec::len),
        Some(2),
        "{result:#}"
    );

    // A blob of h2 corrupted in the bucket: present, so the quick check
    // passes it; --verify re-hashes it and names it.
    let blob = keys(&fleet, &format!("{h2_prefix}blobs/"))
        .first()
        .map(|line| line.split(' ').next().unwrap().to_string())
        .unwrap();
    fleet.servers().moto.python(&format!(
        "s3.put_object(Bucket={BUCKET:?}, Key={blob:?}, Body=b'not what was stored')"
    ));
    let (_, report) = fleet.status("h1", &[]);
    assert_eq!(
        host_entry(&report, "h2").unwrap()["problems"],
        serde_json::json!([])
    );
    let (code, report) = fleet.status("h1", &["--verify"]);
    assert_eq!(code, Some(1), "{report:#}");
    let h2 = host_entry(&report, "h2").unwrap();
    let digest = blob.rsplit('/').next().unwrap();
    assert!(h2["problems"].to_string().contains(digest), "{h2:#}");
    assert!(
        h2["attention"].to_string().contains("verification"),
        "{h2:#}"
    );

    // h1's next run takes its own expired lease over and records the
    // interrupted guard; h2's store is untouched by it.
    let h2_keys = keys(&fleet, &h2_prefix);
    backup("h1");
    assert_eq!(keys(&fleet, &h2_prefix), h2_keys);
    let (_, report) = fleet.status("h1", &[]);
    let h1 = host_entry(&report, "h1").unwrap();
    assert!(h1["lease"].is_null(), "{h1:#}");
    assert_eq!(h1["interrupted"], serde_json::json!([]), "{h1:#}");

    // With no store.host, REWIND_HOST names the host; one that would
    // leave its prefix is refused before anything is written.
    let config = fs::read_to_string(fleet.config("h2")).unwrap();
    let unnamed = fleet.root().join("unnamed.toml");
    fs::write(&unnamed, config.replace("host = \"h2\"\n", "")).unwrap();
    let out = fleet
        .rewind_with(&unnamed, &["backup", "--json"])
        .env("REWIND_HOST", "h2")
        .output()
        .unwrap();
    let (code, run) = code_and_json("backup", &out);
    assert_eq!(code, Some(0), "{}", output_text(&out));
    let (_, report) = fleet.status("h1", &[]);
    assert_eq!(
        host_entry(&report, "h2").unwrap()["newest_backup"]["id"],
        run["id"],
        "{report:#}"
    );
    let all_keys = keys(&fleet, PREFIX);
    let out = fleet
        .rewind_with(&unnamed, &["backup"])
        .env("REWIND_HOST", "../h1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        text(&out.stderr).contains("REWIND_HOST: `../h1` contains '/'"),
        "{}",
        output_text(&out)
    );
    assert_eq!(keys(&fleet, PREFIX), all_keys);
}
