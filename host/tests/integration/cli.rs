//! The `rewind` binary, as an operator or plugin author runs it.

use std::fs;
use std::process::Output;

use crate::common::{HttpServer, files_table, plugin_path};

fn rewind(args: &[&str], dir: &std::path::Path) -> Output {
    crate::common::rewind_in(dir, args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_and_help_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = rewind(&["--version"], dir.path());
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("rewind "),
        "{}",
        text(&out.stdout)
    );
    let out = rewind(&["hook", "--help"], dir.path());
    assert!(
        text(&out.stdout).contains("Examples:"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn inspect_reports_hooks_api_version_and_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin_path("release-symlink");
    let out = rewind(
        &["plugins", "inspect", wasm.to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], "release-symlink");
    assert_eq!(json["api_version"], "0.1.0");
    assert_eq!(json["hooks"], serde_json::json!(["backup", "revert"]));
    let digest = rewind::plugin::sha256_hex(&fs::read(&wasm).unwrap());
    assert_eq!(json["sha256"], digest);
    assert_eq!(json["requested"]["paths"][0]["writable"], true);
    // Params come from the plugin's one `params!` declaration: type,
    // required-ness and the default as TOML.
    let params = json["params"].as_array().unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(param("base")["required"], true);
    assert_eq!(param("base")["type"], "string");
    assert_eq!(param("current")["default"], "\"current\"");
    assert_eq!(param("keep")["type"], "integer");
    assert_eq!(param("keep")["required"], false);
    assert_eq!(param("keep")["default"], serde_json::Value::Null);
}

#[test]
fn hook_backup_then_revert_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("app");
    for v in ["v1", "v2"] {
        fs::create_dir_all(base.join("releases").join(v)).unwrap();
    }
    std::os::unix::fs::symlink("releases/v1", base.join("current")).unwrap();
    let wasm = plugin_path("release-symlink");
    let (wasm, base_s) = (wasm.to_str().unwrap(), base.to_str().unwrap());
    let param = format!("base={base_s}");
    let common_args = ["--grant-path", base_s, "--param", &param];

    let mut args = vec!["hook", wasm, "backup", "--json"];
    args.extend(common_args);
    let out = rewind(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs::write(dir.path().join("backup.json"), &out.stdout).unwrap();

    fs::remove_file(base.join("current")).unwrap();
    std::os::unix::fs::symlink("releases/v2", base.join("current")).unwrap();

    let mut args = vec!["hook", wasm, "revert", "--artifacts", "backup.json"];
    args.extend(common_args);
    let out = rewind(&args, dir.path());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("current -> releases/v1 (was v2)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        fs::read_link(base.join("current")).unwrap(),
        std::path::Path::new("releases/v1")
    );
}

#[test]
fn a_denied_hook_exits_1_and_prints_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(200, "ok");
    let wasm = plugin_path("http-health");
    let param = format!("url={}", server.url("/"));
    let out = rewind(
        &["hook", wasm.to_str().unwrap(), "health", "--param", &param],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&format!("grants.http = [\"{}\"]", server.origin())),
        "{}",
        text(&out.stdout)
    );
    let origin = server.origin();
    let out = rewind(
        &[
            "hook",
            wasm.to_str().unwrap(),
            "health",
            "--param",
            &param,
            "--grant-http",
            &origin,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn an_instance_runs_from_the_config_and_a_wrong_pin_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = HttpServer::start(200, "ok");
    let wasm = plugin_path("http-health");
    let digest = rewind::plugin::sha256_hex(&fs::read(&wasm).unwrap());
    let config = |pin: &str| {
        format!(
            "[project]\nname = \"shop\"\n\n[plugins.web]\nsource = \"{}\"\nsha256 = \"{pin}\"\ngrants.http = [\"{}\"]\nparams = {{ url = \"{}\" }}\n",
            wasm.display(),
            server.origin(),
            server.url("/health")
        )
    };
    fs::write(dir.path().join("rewind.toml"), config(&digest)).unwrap();
    let out = rewind(&["hook", "web", "health"], dir.path());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("healthy"),
        "{}",
        text(&out.stdout)
    );

    fs::write(dir.path().join("rewind.toml"), config(&"ab".repeat(32))).unwrap();
    let out = rewind(&["hook", "web", "health"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not match its pin"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(server.hits(), 1, "the refused plugin never ran");
}

#[test]
fn a_config_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("rewind.toml"),
        "[project]\nname = \"shop\"\n\n[plugins.web]\nsource = \"x.wasm\"\nsha256 = \"00\"\n",
    )
    .unwrap();
    let out = rewind(&["hook", "web", "health"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("rewind.toml:6:10: sha256 must be 64 hex digits"),
        "{err}"
    );
}

/// A fleet store in a local directory: hosts `a` and `b` back up into it
/// through the real binary, `fleet status` shows both, and neither a
/// single-host config pointed at its root nor a fleet config pointed at a
/// single-host store writes anything.
#[test]
fn a_local_fleet_store_keeps_hosts_apart_and_never_mixes_with_a_single_host_store() {
    let body = |root: &std::path::Path, store: &str| {
        let app = root.join("app");
        fs::create_dir_all(&app).unwrap();
        fs::write(app.join("config.env"), "DB_PASSWORD=v1\n").unwrap();
        // `store` lines go first: they extend the `[store]` section that
        // Project::write puts before the body.
        format!(
            "{store}\n{config}\n[chains]\nbackup = [\"config\"]\nrollback = [\"config\"]\n",
            config = files_table("config", &app, &[&app]),
        )
    };
    let project = crate::common::Project::new("");
    let root = project.root();
    for host in ["a", "b"] {
        project.write(&body(&root, &format!("fleet = true\nhost = \"{host}\"")));
        project.json(&["backup", "--json"], 0);
    }
    let report = project.json(&["fleet", "status", "--json"], 0);
    assert_eq!(report["store"], root.join("store").display().to_string());
    let hosts: Vec<_> = report["hosts"].as_array().unwrap().iter().collect();
    assert_eq!(hosts.len(), 2, "{report:#}");
    for (entry, host) in hosts.iter().zip(["a", "b"]) {
        assert_eq!(entry["host"], host);
        assert_eq!(entry["runs"], 1, "{entry:#}");
        assert_eq!(entry["last_run"]["kind"], "backup", "{entry:#}");
        assert_eq!(entry["attention"], serde_json::json!([]), "{entry:#}");
        assert!(root.join("store/hosts").join(host).join("HEAD").is_file());
    }
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listing(&root.join("store")), ["hosts"]);
    for dir in ["store", "store/hosts", "store/hosts/a"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(root.join(dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{dir}");
    }

    // No store.host and no REWIND_HOST: the machine's host name, in lower
    // case, unless it is one that every unconfigured machine shares.
    let machine = rewind::store::hostname().to_ascii_lowercase();
    project.write(&body(&root, "fleet = true"));
    let out = project.rewind(&["backup"]);
    if machine == "localhost" || machine.starts_with("localhost.") {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("set store.host (or REWIND_HOST)"));
    } else {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            root.join("store/hosts")
                .join(&machine)
                .join("HEAD")
                .is_file()
        );
    }

    // The same root as a single-host store: refused, and nothing written.
    project.write(&body(&root, ""));
    let out = project.rewind(&["backup"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is the root of a fleet store")
            && text(&out.stderr).contains("set store.fleet = true"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(listing(&root.join("store")), ["hosts"]);
    let out = project.rewind(&["fleet", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`rewind fleet status` reads a fleet store"),
        "{}",
        text(&out.stderr)
    );

    // A fleet config whose root holds a single-host store: refused too.
    let single = crate::common::Project::new("");
    let root = single.root();
    single.write(&body(&root, ""));
    single.json(&["backup", "--json"], 0);
    single.write(&body(&root, "fleet = true\nhost = \"a\""));
    for args in [&["backup"][..], &["fleet", "status"]] {
        let out = single.rewind(args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("holds a single-host store"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!root.join("store/hosts").exists());
}
