//! Hostile plugins against the sandbox: every attempt is refused, the refusal
//! says what was missing, and the host carries on.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::{Call, HttpServer, load, only_check, scratch};
use rewind::bindings::rewind::hooks::types::HealthStatus;
use rewind::sandbox::{ErrorKind, HookInput};
use serde_json::json;

const SECRET: &str = "top-secret-contents";

fn attack(name: &str, target: &str) -> Call {
    Call::new("hostile", json!({ "attack": name, "target": target }))
}

fn attack_args(name: &str, target: &str, args: &[&str]) -> Call {
    Call::new(
        "hostile",
        json!({ "attack": name, "target": target, "args": args }),
    )
}

/// The attack failed inside the guest: the check is unhealthy and nothing leaked.
fn assert_refused(call: &Call, s: &crate::common::Scratch) -> String {
    let plugin = load("hostile");
    let (status, detail) = only_check(&call.health(&plugin, &s.store));
    assert_eq!(
        status,
        HealthStatus::Unhealthy,
        "attack succeeded: {detail}"
    );
    assert!(!detail.contains(SECRET), "secret leaked: {detail}");
    detail
}

/// The host keeps serving calls after a refused or killed one.
fn assert_host_still_works(s: &crate::common::Scratch) {
    let granted = s.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    fs::write(granted.join("ok.txt"), "fine").unwrap();
    let call = attack("read-file", &granted.join("ok.txt").display().to_string()).path(&granted);
    let (status, detail) = only_check(&call.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
}

fn secret_beside_grant(s: &crate::common::Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    let granted = s.path().join("granted");
    fs::create_dir_all(&granted).unwrap();
    let secret = s.path().join("secret.txt");
    fs::write(&secret, SECRET).unwrap();
    (granted, secret)
}

#[test]
fn reading_a_granted_file_works_so_refusals_below_are_meaningful() {
    let s = scratch();
    let (granted, _) = secret_beside_grant(&s);
    fs::write(granted.join("app.env"), "APP_KEY=1").unwrap();
    let call = attack("read-file", &granted.join("app.env").display().to_string()).path(&granted);
    let (status, detail) = only_check(&call.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
}

#[test]
fn reading_outside_the_preopens_is_refused() {
    let s = scratch();
    let (granted, secret) = secret_beside_grant(&s);
    assert_refused(
        &attack("read-file", &secret.display().to_string()).path(&granted),
        &s,
    );
    assert_refused(&attack("read-file", "/etc/passwd").path(&granted), &s);
    assert_host_still_works(&s);
}

#[test]
fn reading_through_dotdot_is_refused() {
    let s = scratch();
    let (granted, _) = secret_beside_grant(&s);
    let sneaky = format!("{}/../secret.txt", granted.display());
    assert_refused(&attack("read-file", &sneaky).path(&granted), &s);
}

#[test]
fn reading_through_a_symlink_that_leaves_the_grant_is_refused() {
    let s = scratch();
    let (granted, secret) = secret_beside_grant(&s);
    std::os::unix::fs::symlink(&secret, granted.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", granted.join("relative-link")).unwrap();
    for link in ["absolute-link", "relative-link"] {
        let target = granted.join(link).display().to_string();
        assert_refused(&attack("readlink-escape", &target).path(&granted), &s);
        assert_refused(&attack("read-file", &target).path(&granted), &s);
    }
}

#[test]
fn writing_to_a_read_only_grant_is_refused() {
    let s = scratch();
    let config = s.path().join("config");
    fs::create_dir_all(&config).unwrap();
    fs::write(config.join("app.ini"), "original").unwrap();
    let target = config.join("app.ini").display().to_string();
    assert_refused(&attack("write-file", &target).read_only(&config), &s);
    assert_eq!(
        fs::read_to_string(config.join("app.ini")).unwrap(),
        "original"
    );
    // Creating a new file there is refused too.
    let new_file = config.join("new.txt").display().to_string();
    assert_refused(&attack("write-file", &new_file).read_only(&config), &s);
    assert!(!config.join("new.txt").exists());
    // The same write with a read-write grant goes through.
    let call = attack("write-file", &target).path(&config);
    let (status, detail) = only_check(&call.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
    assert_eq!(fs::read_to_string(config.join("app.ini")).unwrap(), "pwned");
}

#[test]
fn a_command_that_is_not_granted_is_refused_naming_the_grant() {
    let s = scratch();
    let (_, secret) = secret_beside_grant(&s);
    let secret = secret.display().to_string();
    let detail = assert_refused(&attack_args("exec", "cat", &[&secret]), &s);
    assert!(
        detail.contains(&format!("grants.exec = [\"cat {secret}\"]")),
        "the denial should name the grant line: {detail}"
    );
    assert_host_still_works(&s);
}

#[test]
fn an_allowed_program_with_arguments_outside_its_pattern_is_refused() {
    let s = scratch();
    let (_, secret) = secret_beside_grant(&s);
    // `ls -l <one arg>` is allowed; `ls -l a b` and `ls -la x` are not.
    let ok = attack_args("exec", "ls", &["-l", "/"]).exec("ls -l *");
    let (status, detail) = only_check(&ok.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");

    let secret = secret.display().to_string();
    let two = attack_args("exec", "ls", &["-l", "/", &secret]).exec("ls -l *");
    let detail = assert_refused(&two, &s);
    assert!(detail.contains("grants.exec"), "{detail}");
    let other_flag = attack_args("exec", "ls", &["-la", "/"]).exec("ls -l *");
    let detail = assert_refused(&other_flag, &s);
    assert!(detail.contains("grants.exec = [\"ls -la /\"]"), "{detail}");
}

#[test]
fn an_env_var_that_is_not_granted_is_invisible() {
    let s = scratch();
    // PATH is set for every test process; the guest must not see it.
    let path = std::env::var("PATH").expect("PATH is set");
    let detail = assert_refused(&attack("env", "PATH"), &s);
    assert!(!detail.contains(&path), "{detail}");
    // Granted, it is visible: the refusal above is the grant's doing.
    let call = attack("env", "PATH").env("PATH");
    let (status, detail) = only_check(&call.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
}

#[test]
fn a_command_with_an_env_var_that_is_not_granted_is_refused() {
    let s = scratch();
    let call = attack_args("exec-env", "LD_PRELOAD", &["true"]).exec("true");
    let detail = assert_refused(&call, &s);
    assert!(detail.contains("grants.env = [\"LD_PRELOAD\"]"), "{detail}");
}

#[test]
fn http_to_an_origin_that_is_not_granted_is_refused_before_connecting() {
    let s = scratch();
    let server = HttpServer::start(200, "ok");
    let other = HttpServer::start(200, "ok");
    let call = attack("http", &server.url("/")).http(&other.origin());
    let detail = assert_refused(&call, &s);
    assert!(
        detail.contains(&format!("grants.http = [\"{}\"]", server.origin())),
        "the denial should name the origin to grant: {detail}"
    );
    assert_eq!(
        server.hits(),
        0,
        "a refused request must never reach the server"
    );
    // Granted, the same request goes through.
    let call = attack("http", &server.url("/")).http(&server.origin());
    let (status, detail) = only_check(&call.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
    assert_eq!(server.hits(), 1);
}

#[test]
fn a_tcp_connection_that_is_not_granted_is_refused_and_the_log_names_the_grant() {
    let s = scratch();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let other = "127.0.0.1:1";
    let plugin = load("hostile");
    let call = attack("tcp", &target).tcp(other);
    let outcome = call.run(&plugin, &s.store, HookInput::Health);
    let report = match outcome.result {
        Ok(rewind::sandbox::HookOutput::Health(report)) => report,
        other => panic!("{other:?}"),
    };
    let (status, detail) = only_check(&report);
    assert_eq!(status, HealthStatus::Unhealthy, "connected: {detail}");
    assert!(
        listener.accept().is_err(),
        "a refused connection must never reach the listener"
    );
    let logged: Vec<&str> = outcome.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        logged
            .iter()
            .any(|l| l.contains(&format!("grants.tcp = [\"{target}\"]"))),
        "{logged:?}"
    );
    // Without any tcp grant there are no sockets at all.
    assert_refused(&attack("tcp", &target), &s);
    // Granted, the same connection goes through.
    let call = attack("tcp", &target).tcp(&target);
    let (status, detail) = only_check(&call.health(&plugin, &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
    // A tcp grant never allows listening, on any address.
    for address in ["127.0.0.1:0", "0.0.0.0:0", target.as_str()] {
        assert_refused(&attack("listen", address).tcp(&target), &s);
    }
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let s = scratch();
    let started = Instant::now();
    let outcome = attack("loop", "").timeout(Duration::from_secs(1)).run(
        &load("hostile"),
        &s.store,
        HookInput::Health,
    );
    let err = outcome.result.expect_err("a loop cannot succeed");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(
        err.message.contains("plugin `hostile` hook `health`"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_host_still_works(&s);
}

#[test]
fn allocating_past_the_memory_cap_is_stopped() {
    let s = scratch();
    let outcome =
        attack("alloc", "")
            .memory_mb(32)
            .run(&load("hostile"), &s.store, HookInput::Health);
    let err = outcome
        .result
        .expect_err("unbounded allocation cannot succeed");
    assert_eq!(err.kind, ErrorKind::MemoryLimit, "{err}");
    assert!(err.message.contains("32 MiB"), "{err}");
    assert_host_still_works(&s);
}

#[test]
fn a_panic_becomes_a_typed_error_naming_plugin_and_hook() {
    let s = scratch();
    let outcome = attack("panic", "").run(&load("hostile"), &s.store, HookInput::Health);
    let err = outcome.result.expect_err("a panic cannot succeed");
    assert_eq!(err.kind, ErrorKind::Crashed, "{err}");
    assert!(
        err.message
            .contains("plugin `hostile` hook `health` crashed"),
        "{err}"
    );
    let tail = err.stderr_tail.unwrap_or_default();
    assert!(
        tail.contains("hostile panic"),
        "the panic message should be kept: {tail}"
    );
    assert_host_still_works(&s);
}

/// An artifact of another instance, really in the store: its digest.
fn victim_artifact_digest(s: &crate::common::Scratch) -> String {
    let (granted, secret) = secret_beside_grant(s);
    fs::copy(&secret, granted.join("loot.txt")).unwrap();
    let loot = granted.join("loot.txt").display().to_string();
    let records = Call::new(
        "victim",
        json!({ "attack": "write-artifact", "target": loot }),
    )
    .path(&granted)
    .backup(&load("hostile"), &s.store);
    records[0].blob.digest.clone()
}

#[test]
fn a_plugin_cannot_open_an_artifact_it_was_not_given() {
    let s = scratch();
    let plugin = load("hostile");
    let digest = &victim_artifact_digest(&s);
    let outcome = Call::new(
        "hostile",
        json!({ "attack": "open-foreign", "digest": digest }),
    )
    .run(&plugin, &s.store, HookInput::Backup);
    let err = outcome
        .result
        .expect_err("opening a foreign artifact must fail");
    assert!(
        err.message.contains(digest.as_str()) || err.message.contains("not given"),
        "{err}"
    );
}

#[test]
fn a_plugin_whose_sha256_does_not_match_its_pin_is_not_compiled() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = rewind::engine::Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let path = crate::common::plugin_path("hostile");
    let wrong = "0".repeat(64);
    let err = rewind::plugin::load(&runtime, &path, Some(&wrong)).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("does not match its pin"), "{message}");
    assert!(message.contains(&wrong), "{message}");
    assert_eq!(
        fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing may be compiled for a plugin that failed its pin"
    );
    // With the right pin it loads, and is compiled into the cache once.
    let right = rewind::plugin::sha256_hex(&fs::read(&path).unwrap());
    let first = rewind::plugin::load(&runtime, &path, Some(&right)).unwrap();
    assert!(!first.from_cache);
    let second = rewind::plugin::load(&runtime, &path, Some(&right)).unwrap();
    assert!(second.from_cache, "a second load must not compile again");
}

#[test]
fn a_backup_cannot_claim_an_artifact_it_did_not_write() {
    let s = scratch();
    let plugin = load("hostile");
    let digest = &victim_artifact_digest(&s);
    let outcome = Call::new(
        "hostile",
        json!({ "attack": "claim-foreign", "digest": digest }),
    )
    .run(&plugin, &s.store, HookInput::Backup);
    let err = outcome
        .result
        .expect_err("claiming a foreign artifact must fail");
    assert!(err.message.contains("claimed"), "{err}");
}

#[test]
fn a_plugin_built_for_another_api_version_is_refused_naming_both_versions() {
    // Same-length rewrite of the version in every interface name keeps the
    // component valid while making it a plugin for rewind:hooks@0.9.0.
    let wasm = fs::read(crate::common::plugin_path("hostile")).unwrap();
    let (from, to) = (b"rewind:hooks/", b"@0.1.0");
    let mut patched = wasm.clone();
    let mut i = 0;
    let mut rewritten = 0;
    while let Some(pos) = patched[i..].windows(from.len()).position(|w| w == from) {
        let start = i + pos;
        if let Some(at) = patched[start..].iter().take(40).position(|&b| b == b'@')
            && patched[start + at..].starts_with(to)
        {
            patched[start + at..start + at + to.len()].copy_from_slice(b"@0.9.0");
            rewritten += 1;
        }
        i = start + from.len();
    }
    assert!(rewritten > 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.wasm");
    fs::write(&path, patched).unwrap();
    let err = rewind::plugin::load(crate::common::runtime(), &path, None).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("0.9.0") && message.contains("0.1.0"),
        "the refusal should name both versions: {message}"
    );
}

#[test]
fn command_output_is_capped() {
    let s = scratch();
    let mut call = attack_args("exec-size", "head", &["-c", "3000000", "/dev/zero"])
        .exec("head -c * /dev/zero");
    call.limits.output_bytes = 64 << 10;
    let (status, detail) = only_check(&call.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
    assert_eq!(
        detail,
        format!("{} bytes, truncated=true", 64 << 10),
        "stdout must stop at the cap"
    );
}

/// A backup that turns an io::Error into its hook error with `?`, as any
/// plugin does: the refusal arrives as a typed `denied` naming the grant.
fn typed_refusal(call: Call, s: &crate::common::Scratch) -> rewind::sandbox::CallError {
    let outcome = call.run(&load("hostile"), &s.store, HookInput::Backup);
    let err = outcome.result.expect_err("the attack is refused");
    assert_eq!(err.kind, ErrorKind::Denied, "{err}");
    err
}

#[test]
fn a_refused_file_reaches_the_plugin_as_a_typed_denial_naming_the_grant() {
    let s = scratch();
    let (granted, secret) = secret_beside_grant(&s);
    let call = Call::new(
        "hostile",
        json!({ "attack": "write-artifact", "target": secret }),
    )
    .path(&granted);
    let err = typed_refusal(call, &s);
    let dir = secret.parent().unwrap().display().to_string();
    assert_eq!(
        err.grant.as_deref(),
        Some(format!("grants.paths = [\"ro:{dir}\"]").as_str()),
        "{err}"
    );
    assert!(!err.message.contains(SECRET), "{err}");
    assert_host_still_works(&s);
}

#[test]
fn a_refused_socket_and_a_refused_lookup_reach_the_plugin_typed() {
    let s = scratch();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    // No tcp grant at all: still a typed refusal naming the line to add.
    let err = typed_refusal(
        Call::new(
            "hostile",
            json!({ "attack": "tcp-typed", "target": target }),
        ),
        &s,
    );
    assert_eq!(
        err.grant.as_deref(),
        Some(format!("grants.tcp = [\"{target}\"]").as_str()),
        "{err}"
    );
    let err = typed_refusal(
        Call::new(
            "hostile",
            json!({ "attack": "lookup-typed", "target": "leak-c2VjcmV0.example.invalid" }),
        ),
        &s,
    );
    assert!(err.message.contains("dns"), "{err}");
    assert_eq!(
        err.grant.as_deref(),
        Some("grants.tcp = [\"leak-c2VjcmV0.example.invalid:PORT\"]"),
        "{err}"
    );
}
