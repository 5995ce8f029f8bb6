//! The operator's workflow end to end, through the real `rewind` binary:
//! backup, rollback, guard, verify, prune, status, the lock, crashes.
//!
//! Each test builds an app in a temp dir (common.rs's `SampleApp`:
//! releases, a `current` symlink, a config file, a data file) with a local
//! store, and a rewind.toml whose instances are the
//! shipped plugins: release-symlink for the code, files for config and
//! data, command for health checks and deliberately slow or failing steps.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    SAMPLE_CONFIG_V1, SampleApp, StoreAt, artifact_digest,
    assert_a_backup_takes_over_the_expired_lease, cache_dir, files_table, health_file_table,
    plugin_path, plugin_table, release_symlink_table, run_artifacts, run_kinds, sh_command_table,
    sh_hooks, text,
};
use serde_json::Value;

/// release-symlink for the code, files for config and data, command for
/// a health check and for deliberately slow or failing steps.
fn plugins(root: &Path) -> String {
    let r = root.display();
    [
        release_symlink_table("code", root),
        files_table("config", &root.join("shared"), &[&root.join("shared")]),
        health_file_table(
            "web",
            &root.join("current/HEALTH"),
            Some("current/HEALTH"),
        ),
        sh_command_table(
            "slow",
            &[
                (
                    "backup",
                    &format!("head -c 10000000 /dev/urandom; test -e {r}/fast || sleep 20"),
                ),
                ("revert", &format!("test -e {r}/fast-revert || sleep 20")),
            ],
        ),
        sh_command_table(
            "breaker",
            &[(
                "revert",
                &format!(
                    "if test -e {r}/break-rollback; then echo 'cannot restore: disk full' >&2; exit 3; fi"
                ),
            )],
        ),
    ]
    .map(|table| table.to_string())
    .join("\n")
}

/// The sample app on v1 with a local store, its chains `backup` and
/// `rollback` (instance names) plus any `extra` TOML.
fn local_app(backup: &[&str], rollback: &[&str], extra: &str) -> SampleApp {
    SampleApp::new(StoreAt::Local, plugins, backup, rollback, extra)
}

/// Wait until a journal shows `instance` running, and (for backups,
/// `writing`) its artifact being written: a blob in tmp/, or chunks of
/// it already stored (the `slow` plugin's random bytes make chunks of
/// ~1 MiB; every other blob of these tests is far smaller).
fn wait_for_running(app: &SampleApp, instance: &str, hook: &str, writing: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let journal_says = fs::read_dir(app.store().join("journal"))
            .into_iter()
            .flatten()
            .flatten()
            // Not the temp files of atomic writes: only what is on
            // record once they are renamed.
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
            .any(|j| {
                j["steps"].as_array().is_some_and(|steps| {
                    steps.iter().any(|s| {
                        s["instance"] == instance && s["hook"] == hook && s["status"] == "running"
                    })
                })
            });
        let tmp_busy = !writing
            || fs::read_dir(app.store().join("tmp"))
                .map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
                .unwrap_or(false)
            || blob_files(&app.store())
                .iter()
                .any(|b| fs::metadata(b).is_ok_and(|m| m.len() > 256 << 10));
        if journal_says && tmp_busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{instance} {hook}` never started running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every blob file under the store.
fn blob_files(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![store.join("blobs")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn backup_then_rollback_restores_code_config_and_data_exactly() {
    let app = local_app(&["code", "config"], &["code", "config"], "");
    let config_before = app.read("shared/config.env");
    let data_before = app.read("shared/data/orders.bin");

    let backup = app.json(&["backup", "--label", "before v2", "--json"], 0);
    assert_eq!(backup["status"], "succeeded");
    assert_eq!(backup["label"], "before v2");
    let artifacts = run_artifacts(&backup);
    assert!(artifacts.iter().any(|a| a["instance"] == "code"));
    assert!(
        artifacts
            .iter()
            .any(|a| a["instance"] == "config" && a["name"] == "files")
    );
    for a in &artifacts {
        assert_eq!(a["digest"].as_str().unwrap().len(), 64);
        assert!(a["stored_size"].as_u64().unwrap() > 0);
    }
    // Store files are private.
    for blob in blob_files(&app.store()) {
        assert_eq!(mode(&blob), 0o600, "{}", blob.display());
    }
    assert_eq!(mode(&app.store().join("runs")), 0o700);

    app.break_it();
    let result = app.json(&["rollback", "--yes", "--json"], 0);
    assert_eq!(result["ok"], true);
    let run = &result["run"];
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["source_run"], backup["id"]);
    assert!(run["safety_run"].is_string(), "a safety backup was taken");

    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), config_before);
    assert_eq!(mode(&app.root().join("shared/config.env")), 0o600);
    assert_eq!(app.read("shared/data/orders.bin"), data_before);

    // The safety backup holds the broken state, so it can be undone.
    let safety = app.json(
        &["history", run["safety_run"].as_str().unwrap(), "--json"],
        0,
    );
    assert_eq!(safety["safety"], true);
    assert_eq!(safety["status"], "succeeded");

    // History is a chain: backup, safety, rollback.
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(run_kinds(&history), ["rollback", "backup", "backup"]);
    assert_eq!(history[0]["previous"]["id"], history[1]["id"]);

    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(verify["runs"], 3);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0);

    // The event log says what happened, in the seeds' words.
    let events = fs::read_to_string(app.store().join("events.jsonl")).unwrap();
    assert!(events.contains("\"ROLLBACK_SUCCESS\""), "{events}");
}

#[test]
fn a_flipped_byte_fails_verify_and_rollback_refuses_before_touching_anything() {
    let app = local_app(&["code", "config"], &["code", "config"], "");
    let backup = app.json(&["backup", "--json"], 0);
    app.break_it();

    // Flip one byte in the middle of the config plugin's tar blob.
    let digest = artifact_digest(&backup, 1, "files");
    let blob = app
        .store()
        .join("blobs/sha256")
        .join(&digest[..2])
        .join(&digest);
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&blob, bytes).unwrap();

    let out = app.rewind(&["artifacts", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains(&digest) && report.contains("checksum mismatch"),
        "{report}"
    );
    assert!(report.contains(backup["id"].as_str().unwrap()), "{report}");

    let out = app.rewind(&["rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("verification failed, nothing was changed"),
        "{}",
        text(&out.stdout)
    );
    // Said plainly, with what to do instead.
    assert!(
        text(&out.stdout).contains("is damaged:"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("rewind rollback --to RUN"),
        "{}",
        text(&out.stdout)
    );
    // Nothing was touched: still the broken deploy, and no safety backup.
    assert_eq!(app.current(), "releases/v2");
    assert_eq!(app.read("shared/config.env"), b"DB_PASSWORD=wrong\n");
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history.as_array().unwrap().len(), 2, "{history:#}");
    assert_eq!(history[0]["kind"], "rollback");
    assert_eq!(history[0]["status"], "failed");
    assert_eq!(history[0]["steps"].as_array().unwrap().len(), 0);
}

#[test]
fn a_changed_manifest_breaks_the_chain() {
    let app = local_app(&["code"], &["code"], "");
    let first = app.json(&["backup", "--json"], 0);
    app.json(&["backup", "--json"], 0);
    let path = app
        .store()
        .join("runs")
        .join(format!("{}.json", first["id"].as_str().unwrap()));
    let edited = fs::read_to_string(&path)
        .unwrap()
        .replace("\"environment\": \"test\"", "\"environment\": \"tset\"");
    fs::write(&path, edited).unwrap();
    let out = app.rewind(&["artifacts", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("changed after it was written"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn dry_run_prints_the_plan_with_digests_and_changes_nothing() {
    let app = local_app(&["code", "config"], &["code", "config"], "");
    let backup = app.json(&["backup", "--json"], 0);
    app.break_it();
    let out = app.rewind(&["rollback", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains(backup["id"].as_str().unwrap()), "{plan}");
    assert!(plan.contains("1. code revert"), "{plan}");
    assert!(plan.contains("2. config restore"), "{plan}");
    let digest = backup["steps"][0]["artifacts"][0]["digest"]
        .as_str()
        .unwrap();
    assert!(plan.contains(digest), "{plan}");
    assert!(plan.contains("would switch"), "{plan}");
    assert!(!plan.contains("would: would"), "said once: {plan}");
    assert_eq!(app.current(), "releases/v2");
    assert_eq!(app.read("shared/config.env"), b"DB_PASSWORD=wrong\n");
    assert_eq!(
        app.json(&["history", "--json"], 0)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn kill_during_backup_leaves_no_partial_artifact_and_the_next_backup_works() {
    let app = local_app(&["code", "slow"], &["code"], "");
    let mut child = app.spawn(&["backup"]);
    wait_for_running(&app, "slow", "backup", true);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // No manifest, and every visible blob is complete.
    assert!(
        fs::read_dir(app.store().join("runs"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    );
    for blob in blob_files(&app.store()) {
        let stored = fs::read(&blob).unwrap();
        let content = zstd::decode_all(&stored[..]).expect("a visible blob is a whole zstd frame");
        assert_eq!(
            rewind::plugin::sha256_hex(&content),
            blob.file_name().unwrap().to_str().unwrap()
        );
    }

    // status explains it: the interrupted backup and the stale lock.
    let out = app.rewind(&["status"]);
    let status = text(&out.stdout);
    assert!(status.contains("INTERRUPTED:   backup"), "{status}");
    assert!(status.contains("(slow backup)"), "{status}");
    assert!(status.contains("STALE"), "{status}");

    fs::write(app.root().join("fast"), "").unwrap();
    let out = app.rewind(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no longer running"),
        "{}",
        text(&out.stderr)
    );
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history[0]["status"], "succeeded");
    assert_eq!(history[1]["status"], "interrupted");
    assert_eq!(fs::read_dir(app.store().join("tmp")).unwrap().count(), 0);
    app.json(&["artifacts", "verify", "--json"], 0);
}

#[test]
fn a_killed_rollback_resumes_where_it_stopped() {
    let app = local_app(&["code", "config"], &["code", "slow", "config"], "");
    app.json(&["backup", "--json"], 0);
    app.break_it();
    // The safety backup (which includes `slow`) is quick; its revert is not.
    fs::write(app.root().join("fast"), "").unwrap();
    let mut child = app.spawn(&["rollback", "--yes"]);
    wait_for_running(&app, "slow", "revert", false);
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed after the code step, before config.
    assert_eq!(
        app.current(),
        "releases/v1",
        "{}",
        text(&app.rewind(&["status"]).stdout)
    );
    assert_eq!(app.read("shared/config.env"), b"DB_PASSWORD=wrong\n");

    let status = text(&app.rewind(&["status"]).stdout);
    assert!(
        status.contains("INTERRUPTED:   rollback") && status.contains("at step 2/3 (slow revert)"),
        "{status}"
    );
    assert!(status.contains("rewind rollback --resume"), "{status}");

    fs::write(app.root().join("fast-revert"), "").unwrap();
    let result = app.json(&["rollback", "--resume", "--json"], 0);
    let run = &result["run"];
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());
    let steps: Vec<String> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {} {}",
                s["instance"].as_str().unwrap(),
                s["hook"].as_str().unwrap(),
                s["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "code revert succeeded",
            "slow revert failed",
            "slow revert succeeded",
            "config restore succeeded"
        ]
    );
    let status = app.rewind(&["status"]);
    assert!(!text(&status.stdout).contains("INTERRUPTED"));
}

#[test]
fn a_second_run_is_refused_naming_the_holder() {
    let app = local_app(&["slow"], &["code"], "");
    let mut child = app.spawn(&["backup"]);
    wait_for_running(&app, "slow", "backup", false);
    let out = app.rewind(&["backup"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("pid {}", child.id())) && err.contains("rewind backup"),
        "{err}"
    );
}

#[test]
fn a_run_with_lock_wait_waits_for_the_holder_then_runs() {
    let app = local_app(&["slow"], &["code"], "");
    let mut holder = app.spawn(&["backup"]);
    wait_for_running(&app, "slow", "backup", false);
    let waiter = app
        .command(&["backup", "--lock-wait", "2m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The holder is busy; let the waiter see it waiting, then end the
    // holder (its backup would take 20 s more).
    std::thread::sleep(Duration::from_millis(1500));
    fs::write(app.root().join("fast"), "").unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("waiting up to 2m00s for the store lock, held by pid"),
        "{err}"
    );
    // A wait that ends first is refused like no wait at all.
    fs::remove_file(app.root().join("fast")).unwrap();
    let mut holder = app.spawn(&["backup"]);
    wait_for_running(&app, "slow", "backup", false);
    let out = app.rewind(&["backup", "--lock-wait", "1s"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = app.rewind(&["backup", "--lock-wait", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a duration like 30s"));
}

#[test]
fn a_killed_holder_from_another_host_is_taken_over_once_its_lease_expires() {
    let app = local_app(&["slow"], &["code"], "");
    let mut holder = app.spawn_with_lease(&["backup"], "3");
    wait_for_running(&app, "slow", "backup", false);
    // kill -9: nothing renews the lease now. As if it ran on another host
    // (where rewind cannot see whether the process lives), only the lease
    // decides.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let lock_path = app.store().join("lock");
    let mut lock: Value = serde_json::from_slice(&fs::read(&lock_path).unwrap()).unwrap();
    lock["host"] = "web-2.example".into();
    fs::write(&lock_path, serde_json::to_vec(&lock).unwrap()).unwrap();
    fs::write(app.root().join("fast"), "").unwrap();

    // While the lease lasts the lock is refused, saying what to do.
    let out = app.rewind(&["backup"]);
    let err = text(&out.stderr);
    if lock["expires_at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        > jiff::Timestamp::now() + jiff::SignedDuration::from_millis(500)
    {
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert!(
            err.contains("web-2.example")
                && err.contains("--lock-wait")
                && err.contains("lease expires"),
            "{err}"
        );
    }
    // Once it expired, the next run takes over and says so, and so does
    // status afterwards.
    std::thread::sleep(Duration::from_millis(3500));
    assert_a_backup_takes_over_the_expired_lease(&app);
}

#[test]
fn unlock_force_on_a_live_lock_is_recorded() {
    let app = local_app(&["slow"], &["code"], "");
    let mut holder = app.spawn(&["backup"]);
    wait_for_running(&app, "slow", "backup", false);
    let out = app.rewind(&["unlock"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let out = app.rewind(&["unlock", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let events = fs::read_to_string(app.store().join("events.jsonl")).unwrap();
    assert!(
        events.contains("store lock removed by force")
            && events.contains("rewind unlock --force")
            && events.contains(&format!("pid {}", holder.id())),
        "{events}"
    );
}

#[test]
fn prune_removes_old_runs_keeps_safety_backups_and_the_chain_verifies() {
    let app = local_app(&["code", "config"], &["code", "config"], "");
    let first = app.json(&["backup", "--json"], 0);
    app.break_it();
    app.json(&["rollback", "--yes", "--json"], 0);
    app.break_it();
    app.json(&["rollback", "--yes", "--json"], 0);
    let newest = app.json(&["backup", "--json"], 0);

    // Now everything is "old", and only the newest backup is kept by count.
    let text_config = fs::read_to_string(app.root().join("rewind.toml")).unwrap();
    fs::write(
        app.root().join("rewind.toml"),
        text_config.replace("[store]\n", "[store]\nkeep_days = 0\nkeep_last = 1\n"),
    )
    .unwrap();

    let dry = app.json(&["artifacts", "prune", "--dry-run", "--json"], 0);
    let doomed: Vec<&str> = dry["plan"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(doomed.contains(&first["id"].as_str().unwrap()), "{dry:#}");
    assert!(!doomed.contains(&newest["id"].as_str().unwrap()));
    assert_eq!(dry["plan"]["safety_kept"], 1, "{dry:#}");
    assert_eq!(
        app.json(&["history", "--json"], 0)
            .as_array()
            .unwrap()
            .len(),
        6
    );

    app.json(&["artifacts", "prune", "--json"], 0);
    let history = app.json(&["history", "--json"], 0);
    let left: Vec<(String, bool)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["safety"] == true))
        .collect();
    assert_eq!(
        left.len(),
        3,
        "newest backup + two safety backups: {left:?}"
    );
    assert_eq!(left.iter().filter(|(_, safety)| *safety).count(), 2);
    app.json(&["artifacts", "verify", "--json"], 0);

    // Pruning on purpose removes the older safety backup too.
    app.json(&["artifacts", "prune", "--safety", "--json"], 0);
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history.as_array().unwrap().len(), 2, "{history:#}");
    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0);
    // What is left still rolls back.
    app.break_it();
    app.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(app.current(), "releases/v1");
}

#[test]
fn config_errors_point_at_line_and_column() {
    let app = local_app(
        &["code"],
        &["code"],
        "[guard]\nhealth = [\"web\"]\nretry = 3\n",
    );
    let out = app.rewind(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let lines = fs::read_to_string(app.root().join("rewind.toml")).unwrap();
    let line = lines.lines().position(|l| l.starts_with("retry")).unwrap() + 1;
    assert!(
        err.contains(&format!("rewind.toml:{line}:1: unknown field `retry`"))
            && err.contains("`retries`"),
        "{err}"
    );
}

#[test]
fn check_accepts_a_good_config_and_names_what_is_wrong_in_a_bad_one() {
    let app = local_app(
        &["code", "config"],
        &["code", "config"],
        "[guard]\nhealth = [\"web\"]\n",
    );
    let out = app.rewind(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // A health instance whose plugin has no health hook, and a file that
    // no longer matches its pin.
    app.write_config(&["code"], &["code"], "[guard]\nhealth = [\"config\"]\n");
    let config = fs::read_to_string(app.root().join("rewind.toml")).unwrap();
    let wasm = plugin_path("release-symlink");
    let copy = app.root().join("tampered.wasm");
    let mut bytes = fs::read(&wasm).unwrap();
    bytes.extend_from_slice(b"\0");
    fs::write(&copy, bytes).unwrap();
    fs::write(
        app.root().join("rewind.toml"),
        config.replacen(&wasm.display().to_string(), &copy.display().to_string(), 1),
    )
    .unwrap();
    let report = app.json(&["check", "--json"], 1);
    let findings = report["findings"].to_string();
    assert!(findings.contains("does not export health"), "{findings}");
    assert!(findings.contains("sha256"), "{findings}");
}

#[test]
fn check_refuses_a_param_of_the_wrong_type_naming_param_type_and_value() {
    let pin = crate::common::pin("postgres");
    let grants = "grants.exec = [\"pg_dump **\", \"pg_restore **\", \"psql **\"]";
    let project = crate::common::Project::new(&format!(
        "[plugins.db]\n{pin}\n{grants}\nparams = {{ database = \"app\", port = \"5432\" }}\n"
    ));
    let out = project.rewind(&["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(r#"plugins.db.params.port: expected an integer, found the string "5432""#),
        "{stdout}"
    );
    let report = project.json(&["check", "--json"], 1);
    let errors: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{report:#}");

    // The same value as an integer is fine.
    project.write(&format!(
        "[plugins.db]\n{pin}\n{grants}\nparams = {{ database = \"app\", port = 5432, no_owner = true }}\n"
    ));
    let report = project.json(&["check", "--json"], 0);
    assert_eq!(report["ok"], true, "{report:#}");
}

#[test]
fn check_fails_for_what_a_rollback_would_fail_on_naming_the_fix() {
    let pin = crate::common::pin("postgres");
    // The plugin runs pg_dump, pg_restore and psql; none is granted.
    let project = crate::common::Project::new(&format!(
        "[plugins.db]\n{pin}\nparams = {{ database = \"app\" }}\n"
    ));
    let report = project.json(&["check", "--json"], 1);
    let errors = report["findings"].to_string();
    assert!(
        errors.contains(r#"requests grants.exec = [\"pg_restore **\"], which is not granted"#),
        "{errors}"
    );
    // A granted program that is not installed.
    project.write(&format!(
        "[plugins.db]\n{pin}\ngrants.exec = [\"pg_dump **\", \"pg_restore **\", \"psql **\", \"no-such-tool-here **\"]\nparams = {{ database = \"app\" }}\n"
    ));
    let report = project.json(&["check", "--json"], 1);
    let errors: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "error")
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("grants.exec `no-such-tool-here **`")
            && errors[0].contains("was not found in /usr/local/sbin"),
        "{errors:?}"
    );
}

#[test]
fn guard_exit_codes() {
    let health = "[guard]\nhealth = [\"web\"]\nretries = 1\ndelay_s = 0\n";
    let deploy_v2 = |app: &SampleApp| {
        format!(
            "ln -sfn releases/v2 {r}/current.new && mv -T {r}/current.new {r}/current && echo DB_PASSWORD=v2 > {r}/shared/config.env",
            r = app.root().display()
        )
    };

    // 0: a deploy that stays healthy.
    let app = local_app(&["code", "config"], &["code", "config"], health);
    let out = app.rewind(&["guard", "--", "sh", "-c", "echo deploying v1.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("deploying v1.1"),
        "deploy output is streamed"
    );

    // 3: the deploy breaks health and is rolled back.
    let out = app.rewind(&["guard", "--json", "--", "sh", "-c", &deploy_v2(&app)]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "rolled-back");
    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());
    // The timeline and the history say what happened: rolled back, not failed.
    let guard_id = result["run"]["id"].as_str().unwrap().to_string();
    assert!(
        text(&out.stderr).contains(&format!("guard {guard_id} rolled back")),
        "{}",
        text(&out.stderr)
    );
    let history = text(&app.rewind(&["history"]).stdout);
    let line = history
        .lines()
        .find(|l| l.starts_with(&guard_id))
        .unwrap_or_else(|| panic!("{history}"));
    assert!(line.contains("rolled back"), "{line}");

    // 3 as well when the deploy command itself fails.
    let out = app.rewind(&[
        "guard",
        "--",
        "sh",
        "-c",
        &format!("{}; exit 7", deploy_v2(&app)),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(app.current(), "releases/v1");

    // 1: the deploy fails and --no-rollback leaves it.
    let out = app.rewind(&["guard", "--no-rollback", "--", "sh", "-c", &deploy_v2(&app)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(app.current(), "releases/v2");
    assert!(
        text(&out.stdout).contains("rewind rollback --to"),
        "{}",
        text(&out.stdout)
    );
    app.json(&["rollback", "--yes", "--json"], 0);

    // 4: the rollback fails too, and says which step and why.
    let app = local_app(&["code", "config"], &["code", "breaker", "config"], health);
    fs::write(app.root().join("break-rollback"), "").unwrap();
    let out = app.rewind(&["guard", "--json", "--", "sh", "-c", &deploy_v2(&app)]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outcome"], "rollback-failed");
    let error = result["rollback"]["error"].as_str().unwrap();
    assert!(
        error.contains("breaker revert") && error.contains("disk full"),
        "{error}"
    );
    let events = fs::read_to_string(app.store().join("events.jsonl")).unwrap();
    assert!(events.contains("\"ROLLBACK_FAILED\""), "{events}");
}

/// (instance, status) of a run's rollback steps, health left out.
fn step_statuses(run: &Value) -> Vec<(String, String)> {
    step_records(run)
        .into_iter()
        .map(|(instance, status, _)| (instance, status))
        .collect()
}

#[test]
fn a_failed_rollback_resumes_past_its_failed_step_or_retries_it() {
    for skip in [true, false] {
        let app = local_app(&["code", "config"], &["code", "breaker", "config"], "");
        app.json(&["backup", "--json"], 0);
        app.break_it();
        fs::write(app.root().join("break-rollback"), "").unwrap();
        // --quick: breaker (a command plugin) has no backup command, so a
        // safety backup of it would fail.
        let failed = app.json(&["rollback", "--yes", "--quick", "--json"], 4);
        let failed_id = failed["run"]["id"].as_str().unwrap().to_string();
        assert_eq!(
            step_statuses(&failed["run"]),
            [
                ("code".into(), "succeeded".into()),
                ("breaker".into(), "failed".into())
            ]
        );
        assert_eq!(app.current(), "releases/v1");
        assert_ne!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());

        // status names the run and the commands that continue it.
        let said = text(&app.rewind(&["status"]).stdout);
        assert!(
            said.contains(&format!("rollback {failed_id}"))
                && said.contains("breaker revert")
                && said.contains("`rewind rollback --resume`")
                && said.contains("`rewind rollback --resume --skip breaker`"),
            "{said}"
        );
        let status = app.json(&["status", "--json"], 0);
        assert_eq!(status["failed_rollback"]["id"], failed_id.as_str());

        // A step already done cannot be skipped; nothing is recorded.
        let err = refused(&app, &["rollback", "--resume", "--skip", "code"]);
        assert!(err.contains("--skip code"), "{err}");
        // --skip only with --resume.
        assert_eq!(
            app.rewind(&["rollback", "--yes", "--skip", "breaker"])
                .status
                .code(),
            Some(2)
        );

        let mut failed_id = failed_id;
        let resumed = if skip {
            app.json(&["rollback", "--resume", "--skip", "breaker", "--json"], 0)
        } else {
            // Still broken: the resume fails at the same step, and the next
            // resume continues that run, with `code` still counted done.
            let again = app.json(&["rollback", "--resume", "--json"], 4);
            assert_eq!(again["run"]["resumes"], failed_id.as_str());
            assert_eq!(
                step_statuses(&again["run"]),
                [("breaker".into(), "failed".into())]
            );
            failed_id = again["run"]["id"].as_str().unwrap().to_string();
            fs::remove_file(app.root().join("break-rollback")).unwrap();
            app.json(&["rollback", "--resume", "--json"], 0)
        };
        let run = &resumed["run"];
        assert_eq!(run["resumes"], failed_id.as_str());
        assert_eq!(run["source_run"], failed["run"]["source_run"]);
        assert_eq!(run["plan"], failed["run"]["plan"]);
        let breaker = if skip { "skipped" } else { "succeeded" };
        assert_eq!(
            step_statuses(run),
            [
                ("breaker".into(), breaker.into()),
                ("config".into(), "succeeded".into())
            ]
        );
        assert_eq!(app.current(), "releases/v1");
        assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());
        // The same manifest on disk.
        let id = run["id"].as_str().unwrap();
        let stored: Value = serde_json::from_slice(
            &fs::read(app.store().join("runs").join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(stored["resumes"], failed_id.as_str());

        // Nothing is left to resume, and status says nothing failed.
        let err = refused(&app, &["rollback", "--resume"]);
        assert!(err.contains("no interrupted or failed rollback"), "{err}");
        let said = text(&app.rewind(&["status"]).stdout);
        assert!(!said.contains("FAILED"), "{said}");
    }
}

/// Each step record as (instance, status, fallback_for).
fn step_records(run: &Value) -> Vec<(String, String, String)> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["hook"] != "health")
        .map(|s| {
            (
                s["instance"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
                s["fallback_for"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn records(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn a_failed_step_falls_back_to_another_instance_and_the_rollback_succeeds() {
    let app = local_app(&["code", "config"], &["code", "breaker"], "");
    app.set("breaker", "fallback = \"config\"");
    app.json(&["backup", "--json"], 0);
    app.break_it();
    fs::write(app.root().join("break-rollback"), "").unwrap();

    // check runs every step's dry run, fallbacks too, against the backup.
    let check = app.rewind(&["check"]);
    let said = text(&check.stdout);
    assert!(
        said.contains("every step's dry run passes against backup"),
        "{said}"
    );

    // The plan shows the fallback, and runs its dry run too.
    let plan = app.rewind(&["rollback", "--dry-run"]);
    let said = text(&plan.stdout);
    assert!(
        said.contains("if it fails: fall back to config"),
        "{said}\n{}",
        text(&plan.stderr)
    );
    let dry = app.json(&["rollback", "--dry-run", "--json"], 0);
    assert_eq!(dry["plan"]["steps"][1]["fallback"]["instance"], "config");
    assert!(
        dry["dry_run_steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["instance"] == "config" && s["fallback_for"] == "breaker"),
        "{dry}"
    );

    let result = app.json(&["rollback", "--yes", "--quick", "--json"], 0);
    let run = &result["run"];
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        step_records(run),
        records(&[
            ("code", "succeeded", ""),
            ("breaker", "failed", ""),
            ("config", "succeeded", "breaker"),
        ])
    );
    let breaker = &run["steps"][1];
    assert!(
        breaker["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk full"),
        "{breaker}"
    );
    // The fallback restored config from the same backup.
    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());
    // Nothing is left to resume.
    let said = text(&app.rewind(&["status"]).stdout);
    assert!(!said.contains("FAILED"), "{said}");
    let err = refused(&app, &["rollback", "--resume"]);
    assert!(err.contains("no interrupted or failed rollback"), "{err}");
}

#[test]
fn a_failed_step_without_fallback_stops_or_continues_and_names_what_ran_and_what_did_not() {
    // stop (the default): the report names every step.
    let app = local_app(&["code", "config"], &["breaker", "code", "config"], "");
    app.json(&["backup", "--json"], 0);
    app.break_it();
    fs::write(app.root().join("break-rollback"), "").unwrap();
    let out = app.rewind(&["rollback", "--yes", "--quick"]);
    assert_eq!(out.status.code(), Some(4));
    let said = text(&out.stdout);
    for expected in [
        "`breaker revert` failed",
        "disk full",
        "\nsteps run: `breaker revert` failed\n",
        "\nnot run: `code revert`, `config",
        "`rewind rollback --resume --skip breaker`",
    ] {
        assert!(said.contains(expected), "no {expected:?} in:\n{said}");
    }
    assert_eq!(app.current(), "releases/v2");

    // continue: the later steps run; the rollback is still failed.
    let app = local_app(&["code", "config"], &["breaker", "code", "config"], "");
    app.set("breaker", "on_failure = \"continue\"");
    app.json(&["backup", "--json"], 0);
    app.break_it();
    fs::write(app.root().join("break-rollback"), "").unwrap();
    let result = app.json(&["rollback", "--yes", "--quick", "--json"], 4);
    let run = &result["run"];
    assert_eq!(
        step_records(run),
        records(&[
            ("breaker", "failed", ""),
            ("code", "succeeded", ""),
            ("config", "succeeded", ""),
        ])
    );
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("`breaker revert` failed") && error.contains("on_failure = \"continue\""),
        "{error}"
    );
    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());
    // Resuming retries only the failed step.
    fs::remove_file(app.root().join("break-rollback")).unwrap();
    let resumed = app.json(&["rollback", "--resume", "--json"], 0);
    assert_eq!(
        step_records(&resumed["run"]),
        records(&[("breaker", "succeeded", "")])
    );
}

#[test]
fn a_fallback_or_on_failure_that_cannot_work_is_a_config_or_check_error() {
    let app = local_app(&["code", "config"], &["code", "breaker"], "");
    app.set("breaker", "on_failure = \"retry\"");
    let out = app.rewind(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains("rewind.toml:") && said.contains("on_failure = \"retry\""),
        "{said}"
    );

    let app = local_app(&["code", "config"], &["code", "breaker"], "");
    app.set("breaker", "fallback = \"nothing\"");
    let said = text(&app.rewind(&["check"]).stderr);
    assert!(said.contains("fallback names `nothing`"), "{said}");

    // A fallback that no backup covers: check names the fix.
    let app = local_app(&["code"], &["code", "breaker"], "");
    app.set("breaker", "fallback = \"config\"");
    let out = app.rewind(&["check"]);
    assert_ne!(out.status.code(), Some(0));
    let said = text(&out.stdout);
    assert!(
        said.contains("`config` is not in chains.backup")
            && said.contains("add it to chains.backup"),
        "{said}"
    );
}

#[test]
fn rollback_only_runs_the_named_instances_of_the_chain() {
    let app = local_app(&["code", "config"], &["code", "config"], "");
    app.json(&["backup", "--json"], 0);
    app.break_it();
    let err = refused(&app, &["rollback", "--yes", "--only", "breaker"]);
    assert!(err.contains("--only breaker"), "{err}");

    let result = app.json(&["rollback", "--yes", "--only", "code", "--json"], 0);
    let run = &result["run"];
    assert_eq!(run["only"], serde_json::json!(["code"]));
    assert_eq!(step_statuses(run), [("code".into(), "succeeded".into())]);
    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), b"DB_PASSWORD=wrong\n");
    // The safety backup covers what those steps change: code only.
    let safety = run["safety_run"].as_str().unwrap();
    let safety: Value = serde_json::from_slice(
        &fs::read(app.store().join("runs").join(format!("{safety}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        step_statuses(&safety),
        [("code".into(), "succeeded".into())]
    );

    // A comma list runs both, in chain order.
    let result = app.json(&["rollback", "--yes", "--only", "config,code", "--json"], 0);
    let planned: Vec<&str> = result["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instance"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["code", "config"]);
    assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());
}

#[test]
fn rollback_deploy_id_returns_to_the_backup_that_deploy_took_not_the_newest() {
    let app = local_app(&["code", "config"], &["code", "config"], "");
    let tagged = app.json(&["backup", "--deploy-id", "2026-11-24.3", "--json"], 0);
    assert_eq!(tagged["deploy_id"], "2026-11-24.3");
    app.break_it();
    // A newer backup, of the broken state: the newest is not the one.
    app.json(&["backup", "--json"], 0);

    let result = app.json(
        &["rollback", "--deploy-id", "2026-11-24.3", "--yes", "--json"],
        0,
    );
    assert_eq!(result["run"]["source_run"], tagged["id"]);
    assert_eq!(result["run"]["deploy_id"], "2026-11-24.3");
    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());

    // A guard tags its own run and its backup.
    let guard = app.json(&["guard", "--deploy-id", "d2", "--json", "--", "true"], 0);
    assert_eq!(guard["run"]["deploy_id"], "d2");
    assert_eq!(guard["backup"]["deploy_id"], "d2");
    let history = text(&app.rewind(&["history"]).stdout);
    assert_eq!(history.matches("deploy d2").count(), 2, "{history}");

    // A deploy with no backup here, or an id that is not one: exit 2, named.
    let err = refused(&app, &["rollback", "--deploy-id", "nope", "--yes"]);
    assert!(
        err.contains("no backup of deploy `nope`") && err.contains("--deploy-id nope"),
        "{err}"
    );
    let err = refused(&app, &["rollback", "--deploy-id", "a b", "--yes"]);
    assert!(err.contains("is not a deploy id"), "{err}");
    let err = refused(
        &app,
        &["rollback", "--deploy-id", "d2", "--to", "x", "--yes"],
    );
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn rollback_with_nothing_to_roll_back_to_says_what_to_do() {
    let app = local_app(&["code"], &["code"], "");
    let out = app.rewind(&["rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("run `rewind backup`"),
        "{}",
        text(&out.stderr)
    );
    let out = app.rewind(&["rollback", "--resume"]);
    assert!(text(&out.stderr).contains("no interrupted or failed rollback"));
}

#[test]
fn init_writes_a_config_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    fs::create_dir_all(app.join("shared")).unwrap();
    let config = dir.path().join("rewind.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "init",
            "--template",
            "demo",
        ])
        .args(["--app", app.to_str().unwrap()])
        .args(["--plugins", crate::common::plugin_dir().to_str().unwrap()])
        .env("REWIND_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["--config", config.to_str().unwrap(), "check"])
        .env("REWIND_CACHE_DIR", cache_dir())
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
fn the_demo_runs_and_verifies_its_rollback() {
    let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args([
            "demo",
            "--plugins",
            crate::common::plugin_dir().to_str().unwrap(),
        ])
        .env("REWIND_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("ok  current -> releases/v1"), "{stdout}");
    assert!(stdout.contains("demo complete"), "{stdout}");
}

#[test]
fn a_named_chain_rolls_back_only_its_instances_and_its_safety_backup_covers_them() {
    let app = local_app(
        &["code", "config"],
        &["code", "config"],
        "[chains.named]\nsettings = [\"config\"]\n",
    );
    app.json(&["backup", "--json"], 0);
    app.break_it();
    let result = app.json(&["rollback", "--chain", "settings", "--yes", "--json"], 0);
    assert_eq!(result["run"]["chain"], "settings");
    assert_eq!(app.read("shared/config.env"), SAMPLE_CONFIG_V1.as_bytes());
    assert_eq!(app.current(), "releases/v2", "code is not in the chain");

    let safety_id = result["run"]["safety_run"].as_str().unwrap();
    let safety = app.json(&["history", safety_id, "--json"], 0);
    let instances: Vec<&str> = safety["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instance"].as_str().unwrap())
        .collect();
    assert_eq!(instances, ["config"]);

    let out = app.rewind(&["backup", "--chain", "setings"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("named chains: settings"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn init_templates_for_each_framework_parse_with_their_plugins_pinned() {
    for template in ["static", "laravel", "django", "alembic"] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rewind.toml");
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_rewind"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("REWIND_CACHE_DIR", cache_dir())
                .output()
                .unwrap()
        };
        let out = run(&[
            "init",
            "--template",
            template,
            "--app",
            "/srv/shop",
            "--plugins",
            crate::common::plugin_dir().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{template}: {}", text(&out.stderr));
        let out = run(&["plugins", "list", "--json"]);
        assert!(out.status.success(), "{template}: {}", text(&out.stderr));
        let instances: Value = serde_json::from_slice(&out.stdout).unwrap();
        for instance in instances.as_array().unwrap() {
            assert_eq!(
                instance["sha256"].as_str().unwrap().len(),
                64,
                "{template}: every plugin is pinned"
            );
        }
    }
}

/// On a terminal, `rewind rollback` with no arguments lists the backups,
/// asks which, shows the plan and asks to confirm. (`script` gives it a
/// pseudo-terminal; off a terminal it never prompts, as the other tests show.)
#[test]
fn on_a_terminal_rollback_offers_the_backups_and_asks_to_confirm() {
    let app = local_app(&["code", "config"], &["code", "config"], "");
    let first = app.json(&["backup", "--label", "first", "--json"], 0);
    app.json(&["backup", "--label", "second", "--json"], 0);
    app.break_it();
    let on_a_terminal = |answers: &str| app.on_a_terminal("rollback", answers);

    // Decline: nothing changes.
    let (code, screen) = on_a_terminal("\nn\n");
    assert!(screen.contains("Backups (newest first):"), "{screen}");
    assert!(
        screen.contains("second") && screen.contains("first"),
        "{screen}"
    );
    assert!(screen.contains("Proceed? [y/N]"), "{screen}");
    assert!(screen.contains("nothing was changed"), "{screen}");
    assert_eq!(code, Some(2));
    assert_eq!(app.current(), "releases/v2");

    // Choose the older backup (number 2) and confirm.
    let (code, screen) = on_a_terminal("2\ny\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains(&format!("rolled back to {}", first["id"].as_str().unwrap())),
        "{screen}"
    );
    assert_eq!(app.current(), "releases/v1");
}

#[test]
fn a_run_cannot_store_more_than_its_artifact_quota() {
    let extra = plugin_table("big", "command")
        .grant_exec(&["head -c 3000000 /dev/zero"])
        .params(r#"backup = ["head", "-c", "3000000", "/dev/zero"]"#)
        .line("limits = { run_artifacts_mb = 1 }")
        .to_string();
    // `config` stores ~300 kB first; `big` then may add only what is left
    // of the run's 1 MiB.
    let app = local_app(&["config", "big"], &["config"], &extra);
    let out = app.rewind(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("limits.run_artifacts_mb"), "{said}");
    // Nothing partial is left behind: the store verifies.
    let out = app.rewind(&["artifacts", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Run `rewind <args>`, asserting exit code 2, and return its stderr.
fn refused(app: &SampleApp, args: &[&str]) -> String {
    let out = app.rewind(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rewind {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

#[test]
fn a_store_of_a_newer_format_is_refused_naming_both_formats() {
    let app = local_app(&["code"], &["code"], "");
    app.json(&["backup", "--json"], 0);
    let version = app.store().join("VERSION");
    assert_eq!(fs::read_to_string(&version).unwrap(), "2\n");
    assert_eq!(mode(&version), 0o600);

    fs::write(&version, "99\n").unwrap();
    for args in [
        &["status"][..],
        &["backup"],
        &["history"],
        &["artifacts", "verify"],
    ] {
        let stderr = refused(&app, args);
        assert!(
            stderr.contains("written by a newer rewind (store format 99")
                && stderr.contains("reads store format 2: upgrade rewind")
                && stderr.contains(&version.display().to_string()),
            "rewind {args:?}: {stderr}"
        );
        // Not a wrong store.url: no advice to point it elsewhere.
        assert!(!stderr.contains("set store.url"), "{stderr}");
    }
    // Nothing was written: still one run, and the newer rewind's VERSION.
    assert_eq!(fs::read_dir(app.store().join("runs")).unwrap().count(), 1);
    assert_eq!(fs::read_to_string(&version).unwrap(), "99\n");
}

#[test]
fn a_manifest_of_an_unknown_format_is_refused_naming_the_file() {
    let app = local_app(&["code"], &["code"], "");
    let backup = app.json(&["backup", "--json"], 0);
    assert_eq!(backup["format"], "rewind.run/1");
    let path = app
        .store()
        .join("runs")
        .join(format!("{}.json", backup["id"].as_str().unwrap()));
    let edited = fs::read_to_string(&path).unwrap().replace(
        "\"format\": \"rewind.run/1\"",
        "\"format\": \"rewind.run/9\"",
    );
    fs::write(&path, edited).unwrap();
    for args in [
        &["history"][..],
        &["artifacts", "verify"],
        &["status"],
        &["rollback", "--yes"],
    ] {
        let stderr = refused(&app, args);
        assert!(
            stderr.contains(&path.display().to_string())
                && stderr.contains("manifest format \"rewind.run/9\"")
                && stderr.contains("reads format \"rewind.run/1\"")
                && stderr.contains("upgrade rewind"),
            "rewind {args:?}: {stderr}"
        );
    }
    // The rollback was refused before it touched anything.
    assert_eq!(app.current(), "releases/v1");
}

#[test]
fn a_store_from_before_the_version_file_is_adopted_and_keeps_working() {
    let app = local_app(&["code"], &["code"], "");
    let first = app.json(&["backup", "--json"], 0);
    // What an earlier rewind left: runs, blobs, HEAD, no VERSION.
    let version = app.store().join("VERSION");
    fs::remove_file(&version).unwrap();

    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history[0]["id"], first["id"]);
    assert_eq!(fs::read_to_string(&version).unwrap(), "2\n");
    assert_eq!(mode(&version), 0o600);

    fs::remove_file(&version).unwrap();
    app.json(&["backup", "--json"], 0);
    assert_eq!(fs::read_to_string(&version).unwrap(), "2\n");
    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(verify["runs"], 2);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0);
}

/// Rows like a SQL dump's: `rows` numbered lines, those in `changed`
/// carrying `version` instead of 0.
fn dump_rows(rows: u64, changed: std::ops::Range<u64>, version: u64) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    for i in 0..rows {
        let v = if changed.contains(&i) { version } else { 0 };
        let h = rewind::plugin::sha256_hex(&i.to_le_bytes());
        writeln!(
            out,
            "{i}\tcustomer {}\t{}.{:02}\t{h}\t{v}",
            i % 5000,
            i * 37 % 1000,
            i % 100
        )
        .unwrap();
    }
    out
}

/// The bytes of every blob file in the store.
fn blob_bytes(store: &Path) -> u64 {
    blob_files(store)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn backups_share_chunks_prune_keeps_shared_ones_and_a_damaged_chunk_refuses_every_run_using_it() {
    let app = local_app(&["dump"], &["dump"], "");
    let r = app.root();
    app.write_config(
        &["dump"],
        &["dump"],
        &plugin_table("dump", "command")
            .grant_exec(&["sh -c *"])
            .params(&format!(
                "{}, restore_stdin = true",
                sh_hooks(&[
                    ("backup", &format!("cat {}/dump.sql", r.display())),
                    ("revert", &format!("cat > {}/restored.sql", r.display())),
                ])
            ))
            .to_string(),
    );
    // ~24 MB, so about 24 chunks; 1% of the rows change between backups,
    // in one stretch (rows updated together, as a deploy's migration does).
    let rows = 250_000;
    let v1 = dump_rows(rows, 0..0, 0);
    fs::write(r.join("dump.sql"), &v1).unwrap();
    let first = app.json(&["backup", "--json"], 0);
    let artifact = &first["steps"][0]["artifacts"][0];
    assert!(
        artifact["chunks"]["count"].as_u64().unwrap() > 10,
        "{first:#}"
    );
    let after_first = blob_bytes(&app.store());

    let v2 = dump_rows(rows, 100_000..102_500, 2);
    fs::write(r.join("dump.sql"), &v2).unwrap();
    let second = app.json(&["backup", "--json"], 0);
    let after_second = blob_bytes(&app.store());
    // The changed stretch touches one or two chunks of ~24 (a 1 GB dump
    // has ~1000: bench/dedup measures that); stored whole, the second
    // backup would add as much as the first.
    let added = after_second - after_first;
    assert!(added * 6 < after_first, "added {added} to {after_first}");
    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(
        verify["problems"].as_array().unwrap().len(),
        0,
        "{verify:#}"
    );

    // Damage a chunk both backups use (the first: the change is later).
    let index_digest = artifact["digest"].as_str().unwrap();
    let index_path = app
        .store()
        .join("blobs/sha256")
        .join(&index_digest[..2])
        .join(index_digest);
    let index: Value =
        serde_json::from_slice(&zstd::decode_all(&fs::read(index_path).unwrap()[..]).unwrap())
            .unwrap();
    let shared = index["chunks"][0]["digest"].as_str().unwrap().to_string();
    let shared_path = app
        .store()
        .join("blobs/sha256")
        .join(&shared[..2])
        .join(&shared);
    let good = fs::read(&shared_path).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 1;
    fs::write(&shared_path, &bad).unwrap();

    let out = app.rewind(&["artifacts", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for run in [&first, &second] {
        assert!(
            report["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["run"] == run["id"]
                    && p["message"].as_str().unwrap().contains(&shared)
                    && p["message"].as_str().unwrap().contains("checksum mismatch")),
            "{report:#}"
        );
    }
    for run in [&first, &second] {
        let out = app.rewind(&[
            "rollback",
            "--quick",
            "--yes",
            "--to",
            run["id"].as_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("verification failed, nothing was changed"),
            "{}",
            text(&out.stdout)
        );
        assert!(!r.join("restored.sql").exists());
    }
    fs::write(&shared_path, &good).unwrap();
    app.json(
        &[
            "rollback",
            "--quick",
            "--yes",
            "--to",
            first["id"].as_str().unwrap(),
            "--json",
        ],
        0,
    );
    assert!(fs::read(r.join("restored.sql")).unwrap() == v1);

    // Keep only the newest backup: the third, which shares chunks with
    // both earlier ones. Prune (after the backup) removes what only the
    // earlier runs used, and nothing the third needs.
    let config = fs::read_to_string(r.join("rewind.toml")).unwrap();
    fs::write(
        r.join("rewind.toml"),
        config.replace("[store]\n", "[store]\nkeep_days = 0\nkeep_last = 1\n"),
    )
    .unwrap();
    let v3 = dump_rows(rows, 200_000..202_500, 3);
    fs::write(r.join("dump.sql"), &v3).unwrap();
    let before_prune = blob_files(&app.store()).len();
    let third = app.json(&["backup", "--json"], 0);
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history.as_array().unwrap().len(), 1, "{history:#}");
    assert!(blob_files(&app.store()).len() < before_prune);
    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(
        verify["problems"].as_array().unwrap().len(),
        0,
        "{verify:#}"
    );
    app.json(
        &[
            "rollback",
            "--quick",
            "--yes",
            "--to",
            third["id"].as_str().unwrap(),
            "--json",
        ],
        0,
    );
    assert!(fs::read(r.join("restored.sql")).unwrap() == v3);
}
