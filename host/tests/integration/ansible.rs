//! The Ansible collection (`integrations/ansible/rewind/cli`) against five
//! hosts (local connection, each its own app and store): installed with
//! `ansible-galaxy`, documented for `ansible-doc`, a rolling guarded deploy
//! stopped by `max_fail_percentage`, check mode, and a fleet-wide rollback
//! to one deploy id.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::pin;
use crate::frameworks::venv_bin;

const CONFIG_V1: &str = "DB_PASSWORD=v1\n";

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

struct Fleet {
    dir: tempfile::TempDir,
    hosts: Vec<String>,
}

impl Fleet {
    /// `broken` hosts get a release v2 whose health check fails.
    fn new(count: usize, broken: &[&str]) -> Fleet {
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
            let a = app.display();
            let store = dir.path().join(host).join("store");
            fs::write(
                dir.path().join(host).join("rewind.toml"),
                format!(
                    r#"[project]
name = "shop"
environment = "{host}"

[store]
url = "file://{store}"

[plugins.code]
{code}
grants.paths = ["{a}"]
params = {{ base = "{a}" }}

[plugins.config]
{files}
grants.paths = ["{a}/shared"]
params = {{ paths = ["{a}/shared"] }}

[plugins.web]
{command}
grants.exec = ["grep -qx ok *"]
params = {{ health = ["grep", "-qx", "ok", "{a}/current/HEALTH"], name = "current/HEALTH" }}

[chains]
backup = ["code", "config"]
rollback = ["code", "config"]

[guard]
health = ["web"]
retries = 0
delay_s = 0
"#,
                    store = store.display(),
                    code = pin("release-symlink"),
                    files = pin("files"),
                    command = pin("command"),
                ),
            )
            .unwrap();
        }
        let fleet = Fleet { dir, hosts };
        fleet.write_inventory();
        fleet.install_collection();
        fleet
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn app(&self, host: &str) -> PathBuf {
        self.root().join(host).join("app")
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

    fn runs(&self, host: &str) -> usize {
        fs::read_dir(self.root().join(host).join("store/runs"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn write_inventory(&self) {
        let mut hosts = String::new();
        for host in &self.hosts {
            hosts.push_str(&format!(
                "    {host}:\n      app: {app}\n      config: {config}\n",
                app = self.app(host).display(),
                config = self.root().join(host).join("rewind.toml").display()
            ));
        }
        fs::write(
            self.root().join("inventory.yml"),
            format!(
                "app:\n  hosts:\n{hosts}  vars:\n    ansible_connection: local\n    \
                 ansible_python_interpreter: {python}\n    rewind_binary: {binary}\n",
                python = venv_bin("python").display(),
                binary = env!("CARGO_BIN_EXE_rewind"),
            ),
        )
        .unwrap();
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
          - cd {{ app }} && ln -sfn releases/{{ release }} current.new && mv -T current.new current && echo "DB_PASSWORD={{ release }}" > shared/config.env
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
            .env("ANSIBLE_FORKS", "2")
            .env(
                "REWIND_CACHE_DIR",
                std::env::var_os("REWIND_CACHE_DIR").unwrap_or_else(|| {
                    std::env::temp_dir()
                        .join("rewind-test-cache-ansible")
                        .into()
                }),
            )
            .env_remove("REWIND_CONFIG")
            .env_remove("REWIND_STORE");
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
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "ansible-playbook {args:?} printed no JSON ({err}):\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            )
        });
        (out.status.code(), report)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
    let fleet = Fleet::new(1, &[]);
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
    let fleet = Fleet::new(1, &[]);
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

#[test]
fn a_rolling_deploy_that_breaks_stops_rolls_back_and_a_fleet_rollback_returns_every_host() {
    let fleet = Fleet::new(5, &["h1", "h2"]);

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
    for host in &fleet.hosts {
        assert_eq!(fleet.current(host), "releases/v1");
        assert_eq!(fleet.runs(host), 0, "{host} recorded a run in check mode");
    }

    // The first batch (h1, h2) breaks: both roll back by themselves, and
    // max_fail_percentage stops the rollout before h3..h5.
    let (code, report) = fleet.playbook(&["deploy.yml", "-e", "deploy_id=d1", "-e", "release=v2"]);
    assert_eq!(code, Some(2), "{report:#}");
    let results = host_results(&report);
    let mut hosts: Vec<&str> = results.iter().map(|(h, _)| h.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["h1", "h2"], "{report:#}");
    for (host, result) in &results {
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
        assert_eq!(fleet.current(host), "releases/v1");
        assert_eq!(fleet.config_env(host), CONFIG_V1);
    }
    for host in ["h3", "h4", "h5"] {
        assert_eq!(fleet.current(host), "releases/v1");
        assert_eq!(fleet.runs(host), 0, "{host} was deployed to");
    }

    // A deploy that is healthy everywhere, then a fleet-wide rollback to
    // the backups that deploy took: every host is back as it was.
    let (code, report) = fleet.playbook(&["deploy.yml", "-e", "deploy_id=d2", "-e", "release=v3"]);
    assert_eq!(code, Some(0), "{report:#}");
    for (host, result) in host_results(&report) {
        assert_eq!(result["changed"], true, "{result:#}");
        assert_eq!(result["outcome"], "deployed", "{result:#}");
        assert_eq!(fleet.current(&host), "releases/v3");
    }
    let (code, report) = fleet.playbook(&["rollback.yml", "-e", "deploy_id=d2"]);
    assert_eq!(code, Some(0), "{report:#}");
    let results = host_results(&report);
    assert_eq!(results.len(), 5, "{report:#}");
    for (host, result) in results {
        assert_eq!(result["changed"], true, "{result:#}");
        assert_eq!(result["run"]["deploy_id"], "d2", "{result:#}");
        assert_eq!(result["run"]["status"], "succeeded", "{result:#}");
        assert_eq!(fleet.current(&host), "releases/v1");
        assert_eq!(fleet.config_env(&host), CONFIG_V1);
    }

    // Check mode of a rollback is its dry run: nothing changes.
    let before: Vec<usize> = fleet.hosts.iter().map(|h| fleet.runs(h)).collect();
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
    let after: Vec<usize> = fleet.hosts.iter().map(|h| fleet.runs(h)).collect();
    assert_eq!(before, after);
}
