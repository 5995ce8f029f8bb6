//! http-health against a real HTTP server, command against real programs.

use std::fs;
use std::time::Duration;

use crate::common::{Call, HttpServer, load, only_check, scratch};
use rewind::bindings::rewind::hooks::types::HealthStatus;
use rewind::sandbox::{ErrorKind, HookInput, HookOutput};
use serde_json::json;

// ---------------------------------------------------------------- http-health

fn http_check(server: &HttpServer, params: serde_json::Value) -> (HealthStatus, String) {
    let s = scratch();
    let call = Call::new("web", params).http(&server.origin());
    only_check(&call.health(&load("http-health"), &s.store))
}

#[test]
fn http_health_is_healthy_on_the_expected_status_and_body() {
    let server = HttpServer::start(200, "status: ok");
    let (status, detail) = http_check(
        &server,
        json!({ "url": server.url("/health"), "body_contains": "ok" }),
    );
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
    assert!(detail.starts_with("HTTP 200"), "{detail}");
    assert_eq!(server.paths.lock().unwrap().as_slice(), ["/health"]);
}

#[test]
fn http_health_is_unhealthy_on_a_wrong_status_and_says_what_it_saw() {
    let server = HttpServer::start(503, "down for maintenance");
    let (status, detail) = http_check(&server, json!({ "url": server.url("/") }));
    assert_eq!(status, HealthStatus::Unhealthy);
    assert!(detail.contains("HTTP 503, expected 200"), "{detail}");
    // A list of accepted statuses.
    let (status, detail) = http_check(
        &server,
        json!({ "url": server.url("/"), "expect_status": [200, 503] }),
    );
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
}

#[test]
fn http_health_checks_the_body() {
    let server = HttpServer::start(200, "database: error");
    let (status, detail) = http_check(
        &server,
        json!({ "url": server.url("/"), "body_contains": "database: ok" }),
    );
    assert_eq!(status, HealthStatus::Unhealthy);
    assert!(detail.contains("does not contain"), "{detail}");
}

#[test]
fn http_health_retries_then_reports_all_tries() {
    let server = HttpServer::start(500, "");
    let (status, detail) = http_check(
        &server,
        json!({ "url": server.url("/"), "retries": 2, "retry_delay_ms": 10 }),
    );
    assert_eq!(status, HealthStatus::Unhealthy);
    assert!(detail.contains("after 3 tries"), "{detail}");
    assert_eq!(server.hits(), 3);
}

#[test]
fn http_health_times_out_per_try() {
    let server = HttpServer::start_with_delay(200, "late", Duration::from_secs(3));
    let (status, detail) = http_check(
        &server,
        json!({ "url": server.url("/"), "timeout_ms": 300 }),
    );
    assert_eq!(status, HealthStatus::Unhealthy, "{detail}");
    assert!(detail.to_lowercase().contains("time"), "{detail}");
}

#[test]
fn http_health_without_the_grant_is_unhealthy_and_names_the_grant() {
    let server = HttpServer::start(200, "ok");
    let s = scratch();
    let call = Call::new("web", json!({ "url": server.url("/") }));
    let (status, detail) = only_check(&call.health(&load("http-health"), &s.store));
    assert_eq!(status, HealthStatus::Unhealthy);
    assert!(
        detail.contains(&format!("grants.http = [\"{}\"]", server.origin())),
        "{detail}"
    );
    assert_eq!(server.hits(), 0);
}

#[test]
fn http_health_reports_a_refused_connection() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = scratch();
    let url = format!("http://127.0.0.1:{port}/");
    let call = Call::new("web", json!({ "url": url })).http("http://127.0.0.1:*");
    let (status, detail) = only_check(&call.health(&load("http-health"), &s.store));
    assert_eq!(status, HealthStatus::Unhealthy);
    assert!(detail.to_lowercase().contains("refused"), "{detail}");
}

// ---------------------------------------------------------------- command

#[test]
fn command_health_follows_the_exit_code() {
    let s = scratch();
    let plugin = load("command");
    let ok = Call::new("probe", json!({ "health": ["true"] })).exec("true");
    assert_eq!(
        only_check(&ok.health(&plugin, &s.store)).0,
        HealthStatus::Healthy
    );
    let bad = Call::new(
        "probe",
        json!({ "health": ["sh", "-c", "echo broken >&2; exit 3"] }),
    )
    .exec("sh -c *");
    let (status, detail) = only_check(&bad.health(&plugin, &s.store));
    assert_eq!(status, HealthStatus::Unhealthy);
    assert!(
        detail.contains("code 3") && detail.contains("broken"),
        "{detail}"
    );
}

#[test]
fn command_backup_keeps_stdout_and_restore_feeds_it_back() {
    let s = scratch();
    let plugin = load("command");
    let work = s.path().join("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("data.txt"), "precious rows\n").unwrap();
    let call = Call::new(
        "dump",
        json!({
            "backup": ["cat", "data.txt"],
            "restore": ["sh", "-c", "cat > data.txt"],
            "restore_stdin": true,
            "cwd": work.display().to_string(),
        }),
    )
    .path(&work)
    .exec("cat data.txt")
    .exec("sh -c *");
    let saved = call.backup(&plugin, &s.store);
    assert_eq!(saved[0].name, "stdout");
    assert_eq!(saved[0].blob.size, "precious rows\n".len() as u64);

    fs::write(work.join("data.txt"), "lost\n").unwrap();
    let outcome = call.run(&plugin, &s.store, HookInput::Restore(&saved));
    assert!(
        matches!(outcome.result, Ok(HookOutput::Report(_))),
        "{:?}",
        outcome.result
    );
    assert_eq!(
        fs::read_to_string(work.join("data.txt")).unwrap(),
        "precious rows\n"
    );
}

#[test]
fn command_revert_runs_in_its_granted_directory() {
    let s = scratch();
    let plugin = load("command");
    let work = s.path().join("app");
    fs::create_dir_all(&work).unwrap();
    let call = Call::new(
        "maint",
        json!({ "revert": ["touch", "reverted"], "cwd": work.display().to_string() }),
    )
    .path(&work)
    .exec("touch reverted");
    let outcome = call.run(&plugin, &s.store, HookInput::Revert(&[]));
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert!(work.join("reverted").exists());
}

#[test]
fn command_with_a_cwd_outside_its_grants_is_denied() {
    let s = scratch();
    let plugin = load("command");
    let call = Call::new("maint", json!({ "revert": ["true"], "cwd": "/etc" })).exec("true");
    let err = call
        .run(&plugin, &s.store, HookInput::Revert(&[]))
        .result
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied, "{err}");
    assert_eq!(
        err.grant.as_deref(),
        // A working directory needs reading only: the narrowest grant.
        Some("grants.paths = [\"ro:/etc\"]"),
        "{err}"
    );
}

#[test]
fn command_is_killed_at_its_timeout() {
    let s = scratch();
    let plugin = load("command");
    let call = Call::new(
        "slow",
        json!({ "revert": ["sleep", "30"], "timeout_ms": 300 }),
    )
    .exec("sleep *");
    let started = std::time::Instant::now();
    let err = call
        .run(&plugin, &s.store, HookInput::Revert(&[]))
        .result
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn command_without_a_configured_step_is_unsupported_and_names_the_param() {
    let s = scratch();
    let plugin = load("command");
    let err = Call::new("x", json!({ "health": ["true"] }))
        .run(&plugin, &s.store, HookInput::Backup)
        .result
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    assert!(err.message.contains("params.backup"), "{err}");
}

// ---------------------------------------------------------------- files

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn files_restores_contents_modes_and_symlinks() {
    let s = scratch();
    let plugin = load("files");
    let app = s.path().join("app");
    fs::create_dir_all(app.join("config")).unwrap();
    fs::create_dir_all(app.join("storage/cache")).unwrap();
    fs::write(app.join(".env"), "APP_KEY=base64:old\nDB_PASSWORD=s3cret\n").unwrap();
    set_mode(&app.join(".env"), 0o600);
    fs::write(app.join("config/app.ini"), "debug=false\n").unwrap();
    set_mode(&app.join("config/app.ini"), 0o640);
    fs::write(app.join("storage/cache/skip.tmp"), "junk").unwrap();
    set_mode(&app.join("storage"), 0o750);
    std::os::unix::fs::symlink("../config/app.ini", app.join("storage/ini")).unwrap();

    let params = json!({
        "paths": [app.join(".env").display().to_string(), app.join("config").display().to_string(),
                  app.join("storage").display().to_string()],
        "exclude": ["*.tmp"],
    });
    let call = Call::new("config", params).path(&app);
    let saved = call.backup(&plugin, &s.store);
    let names: Vec<&str> = saved.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["files", "index"]);

    // A bad deploy: rewritten secrets, loosened modes, a deleted file, a moved link.
    fs::write(app.join(".env"), "APP_KEY=base64:new\n").unwrap();
    set_mode(&app.join(".env"), 0o644);
    fs::remove_file(app.join("config/app.ini")).unwrap();
    fs::remove_file(app.join("storage/ini")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", app.join("storage/ini")).unwrap();
    set_mode(&app.join("storage"), 0o777);

    let outcome = call.run(&plugin, &s.store, HookInput::Restore(&saved));
    let Ok(HookOutput::Report(report)) = outcome.result else {
        panic!("restore failed: {:?}", outcome.result)
    };
    assert!(report.summary.contains("2 files"), "{}", report.summary);
    assert_eq!(
        fs::read_to_string(app.join(".env")).unwrap(),
        "APP_KEY=base64:old\nDB_PASSWORD=s3cret\n"
    );
    assert_eq!(mode(&app.join(".env")), 0o600);
    assert_eq!(
        fs::read_to_string(app.join("config/app.ini")).unwrap(),
        "debug=false\n"
    );
    assert_eq!(mode(&app.join("config/app.ini")), 0o640);
    assert_eq!(mode(&app.join("storage")), 0o750);
    assert_eq!(
        fs::read_link(app.join("storage/ini")).unwrap(),
        std::path::Path::new("../config/app.ini")
    );
    let leftovers: Vec<_> = fs::read_dir(&app)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".rewind-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn files_cannot_touch_modes_outside_its_grants() {
    let s = scratch();
    let plugin = load("files");
    let app = s.path().join("app");
    let elsewhere = s.path().join("elsewhere");
    fs::create_dir_all(&app).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(elsewhere.join("x"), "x").unwrap();
    // The path is not granted: the backup is refused and names the grant.
    let call = Call::new(
        "config",
        json!({ "paths": [elsewhere.join("x").display().to_string()] }),
    )
    .path(&app);
    let err = call
        .run(&plugin, &s.store, HookInput::Backup)
        .result
        .unwrap_err();
    assert!(err.message.contains("grants.paths"), "{err}");

    // A read-only grant allows the backup but not the restore.
    fs::write(app.join("a.conf"), "v1").unwrap();
    let params = json!({ "paths": [app.join("a.conf").display().to_string()] });
    let saved = Call::new("config", params.clone())
        .read_only(&app)
        .backup(&plugin, &s.store);
    fs::write(app.join("a.conf"), "v2").unwrap();
    let outcome = Call::new("config", params).read_only(&app).run(
        &plugin,
        &s.store,
        HookInput::Restore(&saved),
    );
    assert!(
        outcome.result.is_err(),
        "a read-only grant must not allow a restore"
    );
    assert_eq!(fs::read_to_string(app.join("a.conf")).unwrap(), "v2");
}
