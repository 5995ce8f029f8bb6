//! A plugin written in Python (`plugins-py/heartbeat`, built by
//! componentize-py against the `rewind:hooks` WIT) run by the real host:
//! pinned, loaded and sandboxed like any plugin, seeing a file only when
//! its directory is granted, and refused by name otherwise.

use std::time::{Duration, SystemTime};

use crate::common::{Project, python_plugin_path, rewind_in, show};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_python_health_check_sees_only_what_is_granted() {
    let wasm = python_plugin_path("heartbeat");
    let wasm_arg = wasm.display().to_string();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().canonicalize().unwrap();
    let run_dir = root.join("run");
    let other = root.join("other");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let beat = run_dir.join("heartbeat");
    std::fs::write(&beat, "").unwrap();
    let param = format!("file={}", beat.display());
    // `rewind hook heartbeat.wasm health` on the heartbeat file, plus `extra`.
    let health = |extra: &[&str]| {
        let mut args = vec![
            "hook",
            wasm_arg.as_str(),
            "health",
            "--param",
            param.as_str(),
        ];
        args.extend(extra);
        rewind_in(&root, &args)
    };

    // What the host reads from the component: the API version and hooks
    // from its type, the params from its describe.
    let out = rewind_in(&root, &["plugins", "inspect", &wasm_arg, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["name"], "heartbeat", "{info}");
    assert_eq!(info["api_version"], "0.1.0", "{info}");
    assert_eq!(info["hooks"], serde_json::json!(["health"]), "{info}");
    let params = info["params"].to_string();
    assert!(
        params.contains("max_age_s") && params.contains("integer"),
        "{params}"
    );

    // No grant: the file does not exist for the plugin; the host refused
    // the read and names the grant, and the check is unhealthy.
    let out = health(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let grant = format!("grants.paths = [\"ro:{}\"]", run_dir.display());
    assert!(text(&out.stdout).contains("unhealthy"), "{}", show(&out));
    assert!(text(&out.stdout).contains(&grant), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("to allow it add {grant}")),
        "{}",
        show(&out)
    );

    // A grant of another directory does not help.
    let ro_other = format!("ro:{}", other.display());
    let out = health(&["--grant-path", &ro_other]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stdout).contains(&grant), "{}", show(&out));

    // With the grant: healthy.
    let ro_run = format!("ro:{}", run_dir.display());
    let out = health(&["--grant-path", &ro_run, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.to_string().contains("healthy"), "{report}");
    assert!(!report.to_string().contains("unhealthy"), "{report}");

    // A heartbeat an hour old is stale.
    std::fs::File::options()
        .write(true)
        .open(&beat)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let out = health(&["--param", "max_age_s=60", "--grant-path", &ro_run]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("(more than 60s)"),
        "{}",
        show(&out)
    );
}

/// In rewind.toml a Python plugin is an instance like any other: pinned,
/// its params type-checked from its describe, its API version shown by
/// `check`, and its health hook deciding `rewind health`.
#[test]
fn a_python_plugin_is_an_instance_like_any_other() {
    let wasm = python_plugin_path("heartbeat");
    let sha = rewind::plugin::sha256_hex(&std::fs::read(&wasm).unwrap());
    let project = Project::new("");
    let run_dir = project.root().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("heartbeat"), "").unwrap();
    let config = |grants: &str, max_age: &str| {
        format!(
            "[plugins.beat]\nsource = \"{}\"\nsha256 = \"{sha}\"\n{grants}\n\
             params = {{ file = \"{}/heartbeat\", max_age_s = {max_age} }}\n\n\
             [chains]\nbackup = []\nrollback = []\n\n[guard]\nhealth = [\"beat\"]\n",
            wasm.display(),
            run_dir.display()
        )
    };
    let grant = format!("grants.paths = [\"ro:{}\"]", run_dir.display());

    project.write(&config(&grant, "\"60\""));
    let out = project.rewind(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("max_age_s: expected an integer, found the string \"60\""),
        "{}",
        show(&out)
    );

    project.write(&config(&grant, "60"));
    let out = project.rewind(&["check"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("heartbeat 0.1.0 (rewind:hooks@0.1.0)"),
        "{}",
        show(&out)
    );
    let out = project.rewind(&["health"]);
    assert!(out.status.success(), "{}", show(&out));

    // The same instance without its grant: unhealthy, naming the grant.
    project.write(&config("", "60"));
    let out = project.rewind(&["health"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stdout).contains(&grant), "{}", show(&out));
}

/// A plugin built against an API version this host does not run is refused
/// when it loads, naming both versions and the fix: the same component,
/// built against the WIT with its package version raised to 0.2.0.
#[test]
fn a_plugin_built_for_another_api_version_is_refused_naming_both() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().canonicalize().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins-py/heartbeat");
    let project = root.join("heartbeat");
    std::fs::create_dir_all(project.join("wit/deps/rewind-hooks")).unwrap();
    for file in ["app.py", "build.sh"] {
        std::fs::copy(source.join(file), project.join(file)).unwrap();
    }
    let bump = |text: String| text.replace("@0.1.0", "@0.2.0");
    let world = std::fs::read_to_string(source.join("wit/world.wit")).unwrap();
    std::fs::write(project.join("wit/world.wit"), bump(world)).unwrap();
    for entry in std::fs::read_dir(source.join("wit/deps/rewind-hooks")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            project
                .join("wit/deps/rewind-hooks")
                .join(path.file_name().unwrap()),
            bump(text),
        )
        .unwrap();
    }
    let wasm = root.join("heartbeat-0.2.wasm");
    let out = std::process::Command::new(project.join("build.sh"))
        .arg(&wasm)
        .env("COMPONENTIZE_PY", crate::common::componentize_py())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));

    let out = rewind_in(&root, &["plugins", "inspect", &wasm.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "it was built for the rewind:hooks API version 0.2.0, but this host supports 0.1.0"
        ),
        "{}",
        show(&out)
    );
    assert!(
        err.contains("rebuild the plugin against rewind:hooks@0.1.0"),
        "{}",
        show(&out)
    );
}
