//! Plugins shared through a real OCI registry: Debian's `docker-registry`
//! (the CNCF distribution server) on 127.0.0.1, driven through the real
//! `rewind` binary: push, lock, pull on a clean cache, run; a moved tag;
//! a tampered blob; signatures under `require_signature`.

use std::path::Path;
use std::process::Output;

use crate::common::{Project, plugin_path};
use crate::servers::OciRegistry;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The failure's stderr, asserting it failed with `code`.
fn fails(out: Output, code: i32, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// A project whose `files` instance comes from `source`, backing up one
/// file; its plugin cache is its own (a clean cache per test).
fn project(source: &str, extra: &str) -> Project {
    let mut project = Project::new("");
    let root = project.root();
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(root.join("app/data.txt"), "v1\n").unwrap();
    project.write(&format!(
        "[plugins.files]\n{source}\ngrants.paths = [\"{app}\"]\nparams = {{ paths = [\"{app}/data.txt\"] }}\n\n\
         [chains]\nbackup = [\"files\"]\nrollback = [\"files\"]\n\n{extra}",
        app = root.join("app").display()
    ));
    project.set_env(
        "REWIND_PLUGIN_CACHE",
        &root.join("plugin-cache").display().to_string(),
    );
    project
}

fn push(project: &Project, file: &Path, reference: &str) -> String {
    ok(
        project.rewind(&["plugins", "push", &file.display().to_string(), reference]),
        "plugins push",
    )
}

fn lock_entry(project: &Project) -> (String, String) {
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(project.root().join("rewind.lock")).unwrap())
            .unwrap();
    let entry = &lock["plugins"].as_array().unwrap()[0];
    (
        entry["digest"].as_str().unwrap().to_string(),
        entry["wasm"].as_str().unwrap().to_string(),
    )
}

fn sha256_of(path: &Path) -> String {
    format!(
        "sha256:{}",
        rewind::plugin::sha256_hex(&std::fs::read(path).unwrap())
    )
}

#[test]
fn a_plugin_pushed_locked_and_pulled_backs_up_and_rolls_back() {
    let registry = OciRegistry::start();
    let reference = registry.reference("platform/files:1.0.0");
    let project = project(&format!("source = \"{reference}\""), "");
    let pushed = push(&project, &plugin_path("files"), &reference);
    assert!(pushed.contains("manifest sha256:"), "{pushed}");

    // Not locked yet: a config error at the source, naming the command.
    let err = fails(project.rewind(&["backup"]), 2, "backup before lock");
    assert!(err.contains("rewind.toml:"), "{err}");
    assert!(err.contains("rewind plugins lock"), "{err}");

    let out = ok(project.rewind(&["plugins", "lock"]), "plugins lock");
    assert!(out.contains(&format!("+ {reference} locked")), "{out}");
    let (manifest, wasm) = lock_entry(&project);
    assert_eq!(wasm, sha256_of(&plugin_path("files")));

    // What the registry holds is the CNCF Wasm artifact wkg and oras pull.
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.blob_file(&manifest)).unwrap()).unwrap();
    assert_eq!(
        stored["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        stored["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(stored["layers"].as_array().unwrap().len(), 1);
    assert_eq!(stored["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(stored["layers"][0]["digest"], wasm.as_str());
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(registry.blob_file(stored["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(config["os"], "wasip2");
    assert!(config["component"]["exports"].is_array(), "{config}");

    // A clean cache: the run pulls by digest, then works offline.
    std::fs::remove_dir_all(project.root().join("plugin-cache")).unwrap();
    let backup = project.json(&["backup", "--json"], 0);
    let backup_id = backup["run_id"]
        .as_str()
        .or(backup["id"].as_str())
        .map(str::to_string);
    drop(registry);
    std::fs::write(project.root().join("app/data.txt"), "v2 broken\n").unwrap();
    let mut args = vec!["rollback", "--yes"];
    if let Some(id) = &backup_id {
        args.extend(["--to", id.as_str()]);
    }
    ok(project.rewind(&args), "rollback with the registry gone");
    assert_eq!(
        std::fs::read_to_string(project.root().join("app/data.txt")).unwrap(),
        "v1\n"
    );
    let list = ok(project.rewind(&["plugins", "list"]), "plugins list");
    assert!(list.contains(&format!("{reference}@{manifest}")), "{list}");
}

#[test]
fn a_moved_tag_changes_nothing_until_plugins_update() {
    let registry = OciRegistry::start();
    let reference = registry.reference("platform/files:stable");
    // A second instance of the same reference, listed before `files`: the
    // lock entry is per reference, so `update files` moves both.
    let project = project(
        &format!("source = \"{reference}\""),
        &format!("[plugins.archive]\nsource = \"{reference}\"\n"),
    );
    push(&project, &plugin_path("files"), &reference);
    ok(project.rewind(&["plugins", "lock"]), "plugins lock");
    let (manifest, wasm) = lock_entry(&project);

    // The tag moves to another component.
    push(&project, &plugin_path("command"), &reference);
    std::fs::remove_dir_all(project.root().join("plugin-cache")).unwrap();
    ok(project.rewind(&["backup"]), "backup after the tag moved");
    let check = project.rewind(&["plugins", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(rows[0]["sha256"], wasm.trim_start_matches("sha256:"));
    assert_eq!(rows[1]["sha256"], wasm.trim_start_matches("sha256:"));
    assert_eq!(lock_entry(&project), (manifest.clone(), wasm.clone()));

    // `plugins lock` keeps what is locked: only `update` takes the tag.
    let out = ok(project.rewind(&["plugins", "lock"]), "plugins lock again");
    assert!(out.contains("0 change(s)"), "{out}");
    assert!(out.contains(&format!("= {reference} unchanged")), "{out}");
    assert_eq!(lock_entry(&project), (manifest.clone(), wasm.clone()));

    // An unknown name is refused, naming what can be updated.
    let err = fails(
        project.rewind(&["plugins", "update", "nope"]),
        2,
        "update nope",
    );
    assert!(err.contains("`nope` is neither"), "{err}");
    assert!(
        err.contains("instances from registries: archive, files"),
        "{err}"
    );
    assert_eq!(lock_entry(&project), (manifest.clone(), wasm.clone()));

    // `plugins update files` moves it and says from what to what.
    let out = project.json(&["plugins", "update", "files", "--json"], 0);
    let change = &out["changes"][0];
    assert_eq!(change["change"], "moved", "{out}");
    assert_eq!(change["reference"], reference.as_str());
    assert_eq!(change["old"]["digest"], manifest.as_str());
    assert_eq!(change["old"]["wasm"], wasm.as_str());
    let (new_manifest, new_wasm) = lock_entry(&project);
    assert_ne!(new_manifest, manifest);
    assert_eq!(change["new"]["digest"], new_manifest.as_str());
    assert_eq!(new_wasm, sha256_of(&plugin_path("command")));
    assert_eq!(change["new"]["wasm"], new_wasm.as_str());
    let rows: serde_json::Value =
        serde_json::from_slice(&project.rewind(&["plugins", "list", "--json"]).stdout).unwrap();
    // Both instances of the reference run the new component.
    assert_eq!(rows[0]["sha256"], new_wasm.trim_start_matches("sha256:"));
    assert_eq!(rows[1]["sha256"], new_wasm.trim_start_matches("sha256:"));

    // Run again with nothing moved: the text form says so.
    let out = ok(project.rewind(&["plugins", "update"]), "update again");
    assert!(out.contains("0 change(s)"), "{out}");
}

/// Registry credentials from docker's config.json, as `docker login`
/// writes them, against a registry with htpasswd basic auth.
#[test]
fn a_registry_with_basic_auth_takes_docker_config_credentials() {
    let registry = OciRegistry::start_with_password("team", "s3cret-pass");
    let reference = registry.reference("platform/files:1.0.0");
    let mut project = project(&format!("source = \"{reference}\""), "");
    let docker = project.root().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    project.set_env("DOCKER_CONFIG", &docker.display().to_string());
    let file = plugin_path("files").display().to_string();

    // No credentials: the registry says no, and so does rewind.
    let err = fails(
        project.rewind(&["plugins", "push", &file, &reference]),
        2,
        "push without credentials",
    );
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );

    // A wrong password in config.json is refused the same way.
    let login = |user: &str, password: &str| {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        std::fs::write(
            docker.join("config.json"),
            format!(
                "{{\"auths\": {{\"127.0.0.1:{}\": {{\"auth\": \"{auth}\"}}}}}}",
                registry.port
            ),
        )
        .unwrap();
    };
    login("team", "wrong");
    fails(
        project.rewind(&["plugins", "push", &file, &reference]),
        2,
        "push with a wrong password",
    );

    // The right one: push, lock, and a run on a clean cache pulls with it.
    login("team", "s3cret-pass");
    push(&project, &plugin_path("files"), &reference);
    ok(project.rewind(&["plugins", "lock"]), "plugins lock");
    std::fs::remove_dir_all(project.root().join("plugin-cache")).unwrap();
    ok(
        project.rewind(&["backup"]),
        "backup pulling with config.json credentials",
    );

    // rewind's own variables take precedence over docker's config.
    project.set_env("REWIND_REGISTRY_USERNAME", "team");
    project.set_env("REWIND_REGISTRY_PASSWORD", "wrong");
    std::fs::remove_dir_all(project.root().join("plugin-cache")).unwrap();
    fails(
        project.rewind(&["backup"]),
        2,
        "backup with wrong env credentials",
    );

    // A credential helper (credHelpers), run as docker runs it: the
    // program docker-credential-<name> on PATH, given the registry on stdin.
    project.set_env("REWIND_REGISTRY_USERNAME", "");
    project.set_env("REWIND_REGISTRY_PASSWORD", "");
    let bin = project.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rwtest");
    std::fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread registry\n\
         printf '{\"ServerURL\":\"%s\",\"Username\":\"team\",\"Secret\":\"s3cret-pass\"}' \"$registry\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    project.set_env(
        "PATH",
        &format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );
    std::fs::write(
        docker.join("config.json"),
        format!(
            "{{\"credHelpers\": {{\"127.0.0.1:{}\": \"rwtest\"}}}}",
            registry.port
        ),
    )
    .unwrap();
    // The failed backup above cached nothing: this one pulls, through the helper.
    assert!(!project.root().join("plugin-cache/sha256").exists());
    ok(
        project.rewind(&["backup"]),
        "backup pulling with a credential helper",
    );

    // A broken entry is named with the fix.
    std::fs::write(
        docker.join("config.json"),
        format!(
            "{{\"auths\": {{\"127.0.0.1:{}\": {{\"auth\": \"!!not base64\"}}}}}}",
            registry.port
        ),
    )
    .unwrap();
    let err = fails(
        project.rewind(&["plugins", "update"]),
        2,
        "broken config.json",
    );
    assert!(
        err.contains("cannot use the credentials for 127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("docker login"), "{err}");
}

#[test]
fn a_tampered_blob_in_the_registry_is_refused() {
    let registry = OciRegistry::start();
    let reference = registry.reference("platform/files:1.0.0");
    let project = project(&format!("source = \"{reference}\""), "");
    push(&project, &plugin_path("files"), &reference);
    ok(project.rewind(&["plugins", "lock"]), "plugins lock");
    let (_, wasm) = lock_entry(&project);

    // Someone with access to the registry's storage swaps the component.
    std::fs::copy(plugin_path("command"), registry.blob_file(&wasm)).unwrap();
    std::fs::remove_dir_all(project.root().join("plugin-cache")).unwrap();
    let err = fails(
        project.rewind(&["backup"]),
        2,
        "backup from a tampered registry",
    );
    assert!(err.contains("cannot fetch its locked plugin"), "{err}");
    assert!(err.to_lowercase().contains("digest"), "{err}");
    assert!(
        !project.root().join("plugin-cache/sha256").exists()
            || std::fs::read_dir(project.root().join("plugin-cache/sha256"))
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".wasm"))
    );

    // The table form pins the manifest digest in the config itself.
    let (manifest, _) = lock_entry(&project);
    let other = project_with_table(&registry, &manifest);
    let err = fails(other.rewind(&["backup"]), 2, "unlocked table source");
    assert!(err.contains("rewind plugins lock"), "{err}");
}

fn project_with_table(registry: &OciRegistry, manifest: &str) -> Project {
    project(
        &format!(
            "source = {{ oci = \"{}\", digest = \"{manifest}\" }}",
            registry.reference("platform/files:1.0.0")
        ),
        "",
    )
}

#[test]
fn require_signature_refuses_unsigned_and_wrongly_signed_plugins() {
    let registry = OciRegistry::start();
    let reference = registry.reference("platform/files:1.0.0");
    let keys = tempfile::tempdir().unwrap();
    let team = keys.path().join("team");
    let other = keys.path().join("other");
    let scratch = Project::new("");
    for key in [&team, &other] {
        ok(
            scratch.rewind(&["plugins", "keygen", &key.display().to_string()]),
            "keygen",
        );
    }
    let public = |key: &Path| {
        let text = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        text.lines().last().unwrap().trim().to_string()
    };
    let trust = format!(
        "[trust]\nrequire_signature = true\n[trust.keys]\nteam = \"{}\"\n",
        public(&team)
    );
    let project = project(&format!("source = \"{reference}\""), &trust);
    push(&project, &plugin_path("files"), &reference);
    ok(project.rewind(&["plugins", "lock"]), "plugins lock");

    let err = fails(project.rewind(&["backup"]), 2, "unsigned");
    assert!(err.contains("refused before it is compiled"), "{err}");
    assert!(err.contains("no signature"), "{err}");
    assert!(err.contains("`team` (key id"), "{err}");
    assert!(err.contains("rewind plugins sign --key"), "{err}");

    let sign = |key: &Path| {
        ok(
            project.rewind(&[
                "plugins",
                "sign",
                "--key",
                &key.with_extension("key").display().to_string(),
                &reference,
            ]),
            "plugins sign",
        )
    };
    sign(&other);
    let err = fails(project.rewind(&["backup"]), 2, "signed by another key");
    assert!(err.contains("which is not trusted"), "{err}");
    assert!(err.contains("`team`"), "{err}");

    sign(&team);
    ok(project.rewind(&["backup"]), "signed by the team key");
    // Offline, the cached signature still verifies.
    drop(registry);
    ok(project.rewind(&["backup"]), "signed, registry gone");

    // A local file is signed beside it (FILE.minisig).
    let local = project.root().join("files.wasm");
    std::fs::copy(plugin_path("files"), &local).unwrap();
    let local_project = self::project(
        &format!(
            "source = \"{}\"\nsha256 = \"{}\"",
            local.display(),
            sha256_of(&local).trim_start_matches("sha256:")
        ),
        &trust,
    );
    let err = fails(local_project.rewind(&["backup"]), 2, "unsigned local file");
    assert!(err.contains("no signature"), "{err}");
    ok(
        local_project.rewind(&[
            "plugins",
            "sign",
            "--key",
            &team.with_extension("key").display().to_string(),
            &local.display().to_string(),
        ]),
        "sign a file",
    );
    assert!(local.with_extension("wasm.minisig").exists());
    ok(local_project.rewind(&["backup"]), "signed local file");
}

/// `rewind check` compares rewind.lock with the config: every finding at
/// once, each with the fix, and each plugin's API version.
#[test]
fn check_says_when_the_lock_and_the_config_disagree() {
    let registry = OciRegistry::start();
    let v1 = registry.reference("platform/files:1.0.0");
    let v2 = registry.reference("platform/files:2.0.0");
    let project = project(&format!("source = \"{v1}\""), "");
    push(&project, &plugin_path("files"), &v1);
    push(&project, &plugin_path("files"), &v2);

    // Not locked yet: check runs anyway and says what to do.
    let out = project.rewind(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("{v1} is not in")), "{stdout}");
    assert!(stdout.contains("run `rewind plugins lock`"), "{stdout}");

    ok(project.rewind(&["plugins", "lock"]), "plugins lock");
    let stdout = ok(project.rewind(&["check"]), "check, locked");
    assert!(stdout.contains("pins every registry source"), "{stdout}");
    assert!(
        stdout.contains("(rewind:hooks@0.1.0) pinned and loaded"),
        "{stdout}"
    );

    // The config moves to 2.0.0; the lock still pins 1.0.0.
    project.write(
        &std::fs::read_to_string(project.root().join("rewind.toml"))
            .unwrap()
            .split_once("[project]")
            .map(|(_, rest)| {
                rest.split_once("[plugins.files]")
                    .unwrap()
                    .1
                    .replace(&v1, &v2)
            })
            .map(|rest| format!("[plugins.files]{rest}"))
            .unwrap(),
    );
    let out = project.rewind(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let find = |level: &str, subject: &str| {
        findings
            .iter()
            .find(|f| f["level"] == level && f["subject"] == subject)
            .unwrap_or_else(|| panic!("no {level} on {subject}: {report}"))["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let missing = find("error", "plugins.files");
    assert!(missing.contains(&format!("{v2} is not in")), "{missing}");
    assert!(
        missing.contains(&format!(
            "it pins {v1} of the same repository: the reference in the config changed"
        )),
        "{missing}"
    );
    let stale = find("warning", "rewind.lock");
    assert!(
        stale.contains(&format!("pins {v1}, which no plugin source")),
        "{stale}"
    );
    assert!(stale.contains("`rewind plugins lock` drops it"), "{stale}");

    let out = ok(
        project.rewind(&["plugins", "lock"]),
        "plugins lock for 2.0.0",
    );
    assert!(out.contains(&format!("+ {v2} locked")), "{out}");
    assert!(out.contains(&format!("- {v1} no longer used")), "{out}");
    ok(project.rewind(&["check"]), "check after lock");
}
