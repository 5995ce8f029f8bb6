//! Hostile plugins against what a guest makes the host hold or wait for: strings cut inside a character, log floods, blocking host calls, describe, artifact quotas, terminal escapes, the compile cache.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.

#[allow(unused_imports)]
use crate::common::{Call, load, only_check, scratch};
use std::fs;
use std::time::{Duration, Instant};

use crate::common::HttpServer;
use rewind::bindings::rewind::hooks::types::HealthStatus;
use rewind::sandbox::bounded;
use rewind::sandbox::{CallOutcome, ErrorKind, HookInput, HookOutput};
use serde_json::json;

fn attack(name: &str, extra: serde_json::Value) -> Call {
    Call::new("hostile", json!({ "attack": name, "extra": extra }))
}

fn health_of(outcome: &CallOutcome) -> (HealthStatus, String) {
    match &outcome.result {
        Ok(HookOutput::Health(report)) => only_check(report),
        other => panic!("expected a health report, got {other:?}"),
    }
}

/// The host still serves a normal call after an attack.
fn assert_host_still_works(s: &crate::common::Scratch) {
    let granted = s.path().join("still-works");
    fs::create_dir_all(&granted).unwrap();
    fs::write(granted.join("ok.txt"), "fine").unwrap();
    let call = Call::new(
        "hostile",
        json!({ "attack": "read-file", "target": granted.join("ok.txt") }),
    )
    .path(&granted);
    let (status, detail) = only_check(&call.health(&load("hostile"), &s.store));
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
}

fn no_control_characters(text: &str) -> bool {
    !text.chars().any(|c| c.is_control())
}

#[test]
fn a_log_line_cut_inside_a_multibyte_character_does_not_crash_the_host() {
    let s = scratch();
    let outcome =
        attack("log-multibyte", json!({})).run(&load("hostile"), &s.store, HookInput::Health);
    let (_, detail) = health_of(&outcome);
    assert_eq!(detail, "logged");
    let cut: Vec<_> = outcome
        .logs
        .iter()
        .filter(|l| l.message.contains("bytes cut"))
        .collect();
    assert_eq!(cut.len(), 8, "every oversized line is cut and says so");
    for line in &outcome.logs {
        assert!(line.message.len() <= bounded::MAX_MESSAGE + 32);
        for (k, v) in &line.fields {
            assert!(k.len() <= bounded::MAX_NAME + 32 && v.len() <= bounded::MAX_VALUE + 32);
        }
    }
    assert_host_still_works(&s);
}

#[test]
fn a_log_flood_is_capped_and_what_was_dropped_is_reported() {
    let s = scratch();
    let outcome = attack("log-flood", json!({ "lines": 20_000, "bytes": 16 * 1024 })).run(
        &load("hostile"),
        &s.store,
        HookInput::Health,
    );
    health_of(&outcome);
    let kept: usize = outcome.logs.iter().map(|l| l.message.len()).sum();
    assert!(
        kept <= bounded::MAX_LOG_BYTES + 1024,
        "the host kept {kept} bytes of log"
    );
    let last = outcome.logs.last().expect("a final line");
    assert!(
        last.message.contains("log lines") && last.message.contains("were dropped"),
        "{}",
        last.message
    );
    assert_host_still_works(&s);
}

#[test]
fn log_fields_are_capped_per_line() {
    let s = scratch();
    let outcome = attack("log-fields", json!({ "lines": 50 })).run(
        &load("hostile"),
        &s.store,
        HookInput::Health,
    );
    health_of(&outcome);
    let with_fields: Vec<_> = outcome
        .logs
        .iter()
        .filter(|l| l.message == "fields")
        .collect();
    assert!(!with_fields.is_empty());
    for line in with_fields {
        assert_eq!(line.fields.len(), bounded::MAX_FIELDS + 1);
        assert_eq!(
            line.fields.last().unwrap(),
            &("rewind.dropped_fields".to_string(), "1968".to_string())
        );
    }
}

#[test]
fn a_guest_sleeping_in_a_host_call_is_stopped_at_its_limit() {
    let s = scratch();
    let started = Instant::now();
    let outcome = attack("sleep", json!({ "secs": 30 }))
        .timeout(Duration::from_secs(2))
        .run(&load("hostile"), &s.store, HookInput::Health);
    let elapsed = started.elapsed();
    let err = outcome
        .result
        .expect_err("a 30 s sleep cannot finish in 2 s");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    assert!(
        err.message.contains("time limit of 2 s") && err.message.contains("stopped after 2"),
        "the message tells the truth: {err}"
    );
    assert_host_still_works(&s);
}

#[test]
fn a_slow_granted_http_origin_cannot_hold_a_hook_past_its_limit() {
    let s = scratch();
    let server = HttpServer::start_with_delay(200, "late", Duration::from_secs(30));
    let started = Instant::now();
    let outcome = Call::new(
        "hostile",
        json!({ "attack": "http-slow", "target": server.url("/"), "extra": { "secs": 60 } }),
    )
    .http(&server.origin())
    .timeout(Duration::from_secs(2))
    .run(&load("hostile"), &s.store, HookInput::Health);
    let err = outcome
        .result
        .expect_err("the origin answers after the limit");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_host_still_works(&s);
}

#[test]
fn describe_has_a_limit_too() {
    let plugin = load("sleepy");
    let started = Instant::now();
    let err = rewind::plugin::describe(&plugin, "sleepy").expect_err("describe sleeps for an hour");
    let elapsed = started.elapsed();
    assert!(
        elapsed < rewind::plugin::DESCRIBE_TIMEOUT + Duration::from_secs(5),
        "describe ran {elapsed:?}"
    );
    let message = format!("{err:#}");
    assert!(message.contains("time limit"), "{message}");
}

#[test]
fn terminal_escapes_and_forged_lines_are_escaped() {
    let s = scratch();
    let outcome = attack("ansi", json!({})).run(&load("hostile"), &s.store, HookInput::Health);
    let (_, detail) = health_of(&outcome);
    assert!(no_control_characters(&detail), "{detail:?}");
    assert!(detail.contains("\\n  [db/backup]"), "{detail}");
    let forged: Vec<_> = outcome
        .logs
        .iter()
        .filter(|l| l.message.contains("all rows deleted"))
        .collect();
    assert_eq!(forged.len(), 2, "the log line and the stdout line");
    for line in forged {
        assert!(no_control_characters(&line.message), "{:?}", line.message);
        assert_eq!(line.instance, "hostile", "every line is attributed");
    }
}

#[test]
fn a_plugin_cannot_forge_a_denial_to_talk_the_operator_into_a_grant() {
    let s = scratch();
    let outcome = Call::new("hostile", json!({ "attack": "forge-denied" })).run(
        &load("hostile"),
        &s.store,
        HookInput::Backup,
    );
    let err = outcome.result.expect_err("the backup fails");
    assert_eq!(err.kind, ErrorKind::Failed, "{err}");
    assert!(err.grant.is_none(), "{err:?}");
    assert!(!err.message.contains("sh **"), "{err}");
    assert!(err.message.contains("refused nothing like it"), "{err}");
}

#[test]
fn the_host_resources_a_guest_holds_are_capped() {
    let s = scratch();
    let outcome = attack("resources", json!({ "count": 100_000 })).run(
        &load("hostile"),
        &s.store,
        HookInput::Health,
    );
    let err = outcome
        .result
        .expect_err("100 000 handles are more than a call may hold");
    assert_eq!(err.kind, ErrorKind::Crashed, "{err}");
    assert_host_still_works(&s);
}

#[test]
fn http_header_maps_a_guest_holds_are_capped() {
    let s = scratch();
    // One map larger than the cap ends the call (wasmtime traps on it).
    let outcome = attack("http-fields", json!({ "count": 1, "bytes": 100 * 1024 })).run(
        &load("hostile"),
        &s.store,
        HookInput::Health,
    );
    let err = outcome
        .result
        .expect_err("a 100 KiB header map is over the cap");
    assert!(err.message.contains("exceeds limit"), "{err}");
    // Many maps just under it: the handle cap ends the call long before the
    // host holds more than MAX_RESOURCES of them.
    let outcome = attack(
        "http-fields",
        json!({ "count": 100_000, "bytes": 60 * 1024 }),
    )
    .run(&load("hostile"), &s.store, HookInput::Health);
    let err = outcome
        .result
        .expect_err("100 000 header maps are more than a call may hold");
    assert_eq!(err.kind, ErrorKind::Crashed, "{err}");
    assert_host_still_works(&s);
}

fn blob_files(store_dir: &std::path::Path) -> usize {
    walk(store_dir).into_iter().filter(|p| p.is_file()).count()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// An attack run in a backup hook (the hook that may store artifacts):
/// its outcome comes back as the error text.
fn in_backup(call: &Call, s: &crate::common::Scratch) -> String {
    let outcome = call.run(&load("hostile"), &s.store, HookInput::Backup);
    outcome
        .result
        .expect_err("the hostile backup reports through its error")
        .message
}

#[test]
fn an_artifact_over_the_quota_is_refused_and_nothing_partial_is_kept() {
    let s = scratch();
    let store_dir = s.path().join("store");
    let before = blob_files(&store_dir);
    let mut call = attack("artifact-quota", json!({ "mb": 16 }));
    call.limits.artifact_bytes = 1 << 20;
    let message = in_backup(&call, &s);
    assert!(message.contains("refused: "), "{message}");
    assert!(message.contains("limits.artifacts_mb"), "{message}");
    assert_eq!(
        blob_files(&store_dir),
        before,
        "no partial blob or temp file"
    );
    // Within the quota the same write succeeds.
    let mut call = attack("artifact-quota", json!({ "mb": 2 }));
    call.limits.artifact_bytes = 4 << 20;
    let message = in_backup(&call, &s);
    assert!(message.contains("succeeded: stored"), "{message}");
}

#[test]
fn a_call_creates_a_bounded_number_of_artifacts() {
    let s = scratch();
    let message = in_backup(&attack("artifact-count", json!({ "count": 1500 })), &s);
    assert!(message.contains("refused: after 1000:"), "{message}");
}

#[test]
fn hooks_that_return_no_artifacts_cannot_store_any() {
    let s = scratch();
    let outcome = attack("artifact-count", json!({ "count": 3 })).run(
        &load("hostile"),
        &s.store,
        HookInput::Health,
    );
    let (status, detail) = health_of(&outcome);
    assert_eq!(status, HealthStatus::Unhealthy, "{detail}");
    assert!(
        detail.contains("only backup, restore and revert hooks"),
        "{detail}"
    );
    assert!(
        outcome
            .logs
            .iter()
            .any(|l| l.message.contains("store artifact `a0` in a health hook")),
        "the refusal is logged"
    );
}
