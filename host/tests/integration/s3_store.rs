//! The artifact store on S3 (`store.url = "s3://bucket/prefix"`), through
//! the real `rewind` binary against moto's server on 127.0.0.1: the whole
//! backup → rollback → verify → prune flow, a blob corrupted in the bucket,
//! a large artifact streamed with bounded memory, the lease shared by two
//! processes (refused, waited for, taken over after `kill -9`), and the
//! errors for a wrong secret key and a missing bucket.
//!
//! The app is the one runs.rs tests on a local store, common.rs's
//! `SampleApp` with `StoreAt::S3`: releases and a `current` symlink
//! (release-symlink), a config file and data (files), and `command`
//! instances for slow or large steps.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    S3Bucket, SampleApp, StoreAt, artifact_digest, assert_a_backup_takes_over_the_expired_lease,
    run_artifacts, run_kinds, sample_plugins, sh_command_table, show, text,
};
use crate::servers::Moto;

const BUCKET: &str = "rewind-fleet";
const PREFIX: &str = "shop/test";

/// The sample app's plugins: release-symlink for the code,
/// files for config and data, and a `slow` backup that runs until the test
/// creates `fast`, to hold the store's lease.
fn plugins(root: &Path) -> String {
    // Slow until the test creates `fast` (at most 20 s).
    let slow = format!(
        "head -c 200000 /dev/urandom; for _ in $(seq 200); do test -e {}/fast && break; sleep 0.1; done",
        root.display()
    );
    sample_plugins(root, &slow)
}

/// The sample app on v1, its store `s3://rewind-fleet/shop/test` on
/// `moto`; its chains `backup` and `rollback` plus any `extra` TOML.
fn app_on_s3(moto: &Moto, backup: &[&str], rollback: &[&str], extra: &str) -> SampleApp {
    let store = StoreAt::S3(S3Bucket {
        endpoint: moto.url(),
        bucket: BUCKET.into(),
        prefix: PREFIX.into(),
    });
    SampleApp::new(store, plugins, backup, rollback, extra)
}

/// Wait until `status` shows the lock held and a run in the journal.
fn wait_for_a_holder(app: &SampleApp) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = app.rewind(&["status", "--json"]);
        if out.status.success() {
            let status: Value = serde_json::from_slice(&out.stdout).unwrap();
            if !status["lock"].is_null()
                && status["interrupted"]
                    .as_array()
                    .is_some_and(|j| !j.is_empty())
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no run took the lock");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// moto with the store's bucket.
fn moto_with_bucket() -> Moto {
    let moto = Moto::start();
    moto.python(&format!("s3.create_bucket(Bucket={BUCKET:?})"));
    moto
}

/// The store's keys in the bucket (without the prefix) and their sizes.
fn keys(moto: &Moto) -> Vec<(String, u64)> {
    let out = moto.python(&format!(
        r#"
p = s3.get_paginator("list_objects_v2")
keys = [[o["Key"], o["Size"]] for page in p.paginate(Bucket={BUCKET:?}, Prefix={PREFIX:?} + "/") for o in page.get("Contents", [])]
print(json.dumps(keys))
"#
    ));
    let keys: Vec<(String, u64)> = serde_json::from_str(&out).unwrap();
    keys.into_iter()
        .map(|(k, n)| (k[PREFIX.len() + 1..].to_string(), n))
        .collect()
}

fn blob_key(digest: &str) -> String {
    format!("{PREFIX}/blobs/sha256/{}/{digest}", &digest[..2])
}

#[test]
fn backup_rollback_verify_and_prune_on_an_s3_store() {
    let moto = moto_with_bucket();
    let app = app_on_s3(&moto, &["code", "config"], &["code", "config"], "");
    let config_before = app.read("shared/config.env");
    let data_before = app.read("shared/data/orders.bin");

    let backup = app.json(&["backup", "--label", "before v2", "--json"], 0);
    assert_eq!(backup["status"], "succeeded");
    let stored = keys(&moto);
    let names: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    // The layout of docs/store-format.md, under the prefix.
    assert!(
        names.contains(&"VERSION") && names.contains(&"HEAD"),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("runs/{}.json", backup["id"].as_str().unwrap()).as_str()),
        "{names:?}"
    );
    for artifact in run_artifacts(&backup) {
        let digest = artifact["digest"].as_str().unwrap();
        let key = format!("blobs/sha256/{}/{digest}", &digest[..2]);
        let size = stored.iter().find(|(k, _)| *k == key).map(|(_, n)| *n);
        assert_eq!(size, artifact["stored_size"].as_u64(), "{key}");
    }
    // Nothing half-written is left, and no lock.
    assert!(
        !names.iter().any(|k| k.starts_with("tmp/") || *k == "lock"),
        "{names:?}"
    );
    assert_eq!(
        moto.python(&format!(
            "print(s3.get_object(Bucket={BUCKET:?}, Key={PREFIX:?} + '/VERSION')['Body'].read().decode().strip())"
        )),
        "2"
    );

    app.break_it();
    let result = app.json(&["rollback", "--yes", "--json"], 0);
    assert_eq!(result["ok"], true, "{result:#}");
    assert_eq!(result["run"]["source_run"], backup["id"]);
    assert!(result["run"]["safety_run"].is_string());
    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), config_before);
    assert_eq!(app.read("shared/data/orders.bin"), data_before);

    let history = app.json(&["history", "--json"], 0);
    assert_eq!(run_kinds(&history), ["rollback", "backup", "backup"]);
    assert_eq!(history[0]["previous"]["id"], history[1]["id"]);
    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(verify["runs"], 3);
    assert_eq!(
        verify["problems"].as_array().unwrap().len(),
        0,
        "{verify:#}"
    );

    // The event log: one object per event, read back in order by status.
    let events: Vec<String> = keys(&moto)
        .into_iter()
        .filter(|(k, _)| k.starts_with("events/"))
        .map(|(k, _)| k)
        .collect();
    assert!(events.len() >= 4, "{events:?}");
    let all = moto.python(&format!(
        r#"
for k in sorted(o["Key"] for o in s3.list_objects_v2(Bucket={BUCKET:?}, Prefix={PREFIX:?} + "/events/")["Contents"]):
    print(s3.get_object(Bucket={BUCKET:?}, Key=k)["Body"].read().decode().strip())
"#
    ));
    assert!(all.contains("\"ROLLBACK_SUCCESS\""), "{all}");

    // Prune: only the newest backup by count, the safety backup kept.
    let newest = app.json(&["backup", "--json"], 0);
    let config = fs::read_to_string(app.root().join("rewind.toml")).unwrap();
    fs::write(
        app.root().join("rewind.toml"),
        config.replace("[store]\n", "[store]\nkeep_days = 0\nkeep_last = 1\n"),
    )
    .unwrap();
    let pruned = app.json(&["artifacts", "prune", "--json"], 0);
    let gone: Vec<&str> = pruned["plan"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(gone.contains(&backup["id"].as_str().unwrap()), "{pruned:#}");
    assert!(!gone.contains(&newest["id"].as_str().unwrap()));
    let names: Vec<String> = keys(&moto).into_iter().map(|(k, _)| k).collect();
    assert!(
        !names.contains(&format!("runs/{}.json", backup["id"].as_str().unwrap())),
        "{names:?}"
    );
    assert!(names.contains(&"pruned.json".to_string()), "{names:?}");
    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(
        verify["problems"].as_array().unwrap().len(),
        0,
        "{verify:#}"
    );
    // What is left still rolls back.
    app.break_it();
    app.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(app.current(), "releases/v1");
}

#[test]
fn a_blob_corrupted_in_the_bucket_fails_verify_and_rollback_refuses_before_changing_anything() {
    let moto = moto_with_bucket();
    let app = app_on_s3(&moto, &["code", "config"], &["code", "config"], "");
    let backup = app.json(&["backup", "--json"], 0);
    app.break_it();
    let digest = artifact_digest(&backup, 1, "files");
    // Flip one byte in the middle of the object, in the bucket.
    moto.python(&format!(
        r#"
key = {key:?}
body = bytearray(s3.get_object(Bucket={BUCKET:?}, Key=key)["Body"].read())
body[len(body) // 2] ^= 1
s3.put_object(Bucket={BUCKET:?}, Key=key, Body=bytes(body))
"#,
        key = blob_key(&digest)
    ));

    let out = app.rewind(&["artifacts", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains(&digest) && report.contains("checksum mismatch"),
        "{report}"
    );

    let out = app.rewind(&["rollback", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("verification failed, nothing was changed"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(app.current(), "releases/v2");
    assert_eq!(app.read("shared/config.env"), b"DB_PASSWORD=wrong\n");
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history.as_array().unwrap().len(), 2, "{history:#}");
    assert_eq!(history[0]["status"], "failed");
}

/// Peak resident memory (kB) of a finished command, from GNU time.
fn peak_rss_kb(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time -v:\n{stderr}"))
}

#[test]
fn a_large_artifact_streams_through_with_bounded_memory() {
    // 1 GiB: about 25 s on two cores, moto holding the bytes in memory
    // (REWIND_TEST_S3_LARGE_MB=256 for a quicker run).
    let mb: u64 = std::env::var("REWIND_TEST_S3_LARGE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let moto = moto_with_bucket();
    // Random bytes: zstd cannot shrink them, so the stored blob is as big.
    let app = app_on_s3(
        &moto,
        &["dump"],
        &["dump"],
        &sh_command_table(
            "dump",
            &[
                ("backup", &format!("head -c {} /dev/urandom", mb << 20)),
                ("revert", "true"),
            ],
        )
        .to_string(),
    );
    let timed = |args: &[&str]| {
        let rewind = app.command(args);
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-v")
            .arg(rewind.get_program())
            .args(rewind.get_args());
        cmd.current_dir(app.root());
        for (key, value) in rewind.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let out = cmd.output().unwrap();
        let err = text(&out.stderr);
        assert!(
            out.status.success(),
            "rewind {args:?}:\n{}\n{err}",
            text(&out.stdout)
        );
        (out, peak_rss_kb(&err))
    };
    let started = Instant::now();
    let (out, backup_rss) = timed(&["backup", "--json"]);
    let backup: Value = serde_json::from_slice(&out.stdout).unwrap();
    let artifact = &backup["steps"][0]["artifacts"][0];
    assert_eq!(artifact["size"].as_u64(), Some(mb << 20), "{backup:#}");
    let upload = started.elapsed();
    let started = Instant::now();
    let (_, verify_rss) = timed(&["artifacts", "verify", "--json"]);
    let verify = started.elapsed();
    println!(
        "{mb} MiB artifact on S3: backup peak RSS {} MiB ({upload:.1?}), verify peak RSS {} MiB ({verify:.1?})",
        backup_rss / 1024,
        verify_rss / 1024
    );
    // Far below the artifact: the parts in flight and the runtime, not the dump.
    let bound_kb = 160 * 1024;
    assert!(backup_rss < bound_kb, "backup peak RSS {backup_rss} kB");
    assert!(verify_rss < bound_kb, "verify peak RSS {verify_rss} kB");
    // Multipart through tmp/, then copied: nothing is left under tmp/.
    let names: Vec<String> = keys(&moto).into_iter().map(|(k, _)| k).collect();
    assert!(!names.iter().any(|k| k.starts_with("tmp/")), "{names:?}");
}

#[test]
fn two_processes_share_one_lease_on_s3() {
    let moto = moto_with_bucket();
    let app = app_on_s3(&moto, &["slow"], &["code"], "");
    let mut holder = app.spawn(&["backup"]);
    wait_for_a_holder(&app);

    // moto enforces If-None-Match: a second conditional create of the lock
    // is refused (S3 look-alikes that ignore the header would let it in).
    let refused = moto.python(&format!(
        r#"
try:
    s3.put_object(Bucket={BUCKET:?}, Key={PREFIX:?} + "/lock", Body=b"{{}}", IfNoneMatch="*")
    print("accepted")
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"])
"#
    ));
    assert_eq!(refused, "PreconditionFailed");

    // A second run is refused, naming the holder.
    let out = app.rewind(&["backup"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("pid {}", holder.id())) && err.contains("rewind backup"),
        "{err}"
    );

    // One with --lock-wait waits, then runs once the holder is done.
    let waiter = app
        .command(&["backup", "--lock-wait", "2m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    fs::write(app.root().join("fast"), "").unwrap();
    let status = holder.wait().unwrap();
    assert!(status.success());
    let out = waiter.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("for the store lock, held by pid"), "{err}");
    fs::remove_file(app.root().join("fast")).unwrap();

    // A holder killed with kill -9 stops renewing: once its lease expired
    // the next run takes it over (as if from another host, where rewind
    // cannot see the process), and says so, and so does status.
    let mut holder = app.spawn_with_lease(&["backup"], "3");
    wait_for_a_holder(&app);
    holder.kill().unwrap();
    holder.wait().unwrap();
    moto.python(&format!(
        r#"
key = {PREFIX:?} + "/lock"
lock = json.loads(s3.get_object(Bucket={BUCKET:?}, Key=key)["Body"].read())
lock["host"] = "web-2.example"
s3.put_object(Bucket={BUCKET:?}, Key=key, Body=json.dumps(lock).encode())
"#
    ));
    fs::write(app.root().join("fast"), "").unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    assert_a_backup_takes_over_the_expired_lease(&app);
    let names: Vec<String> = keys(&moto).into_iter().map(|(k, _)| k).collect();
    assert!(!names.contains(&"lock".to_string()), "{names:?}");
}

/// A run frozen past its lease (a stopped process, a suspended machine)
/// loses the lock to the next run, which records it as interrupted. When
/// it wakes it must neither run another step nor write its manifest over
/// that record: the chain stays one the store verifies.
#[test]
fn a_run_frozen_past_its_lease_writes_nothing_once_another_took_the_lock() {
    let moto = moto_with_bucket();
    let app = app_on_s3(&moto, &["slow", "code"], &["code"], "");
    let frozen = app
        .command(&["backup"])
        .env("REWIND_LEASE_S", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_a_holder(&app);
    let pid = frozen.id() as libc::pid_t;
    // SAFETY: signals to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(3500));

    fs::write(app.root().join("fast"), "").unwrap();
    let out = app.rewind(&["backup"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("took over the store lock") && err.contains("lease expired"),
        "{err}"
    );

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let out = frozen.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("was not recorded") && err.contains("the store lock was taken over"),
        "{err}"
    );

    let history = app.json(&["history", "--json"], 0);
    let runs: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        runs,
        [("backup", "succeeded"), ("backup", "interrupted")],
        "the frozen run is recorded once, as the run that took over left it"
    );
    let out = app.rewind(&["artifacts", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let names: Vec<String> = keys(&moto).into_iter().map(|(k, _)| k).collect();
    assert!(!names.contains(&"lock".to_string()), "{names:?}");
}

#[test]
fn a_wrong_secret_key_and_a_missing_bucket_say_what_to_fix() {
    let moto = Moto::start();
    // No bucket yet.
    let app = app_on_s3(&moto, &["code"], &["code"], "");
    let out = app.rewind(&["status"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("the bucket `{BUCKET}` does not exist"))
            && err.contains(&format!("aws s3 mb s3://{BUCKET}"))
            && err.contains("NoSuchBucket"),
        "{err}"
    );
    assert_eq!(err.matches("<Error>").count(), 0, "{err}");

    // moto checks signatures once IAM auth is on: a wrong secret is named.
    let (key, secret) = moto.enable_iam_auth();
    moto.python(&format!("s3.create_bucket(Bucket={BUCKET:?})"));
    let mut app = app;
    app.set_env("AWS_ACCESS_KEY_ID", &key);
    app.set_env("AWS_SECRET_ACCESS_KEY", &format!("{secret}-wrong"));
    let out = app.rewind(&["status"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("check AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    // And with the right one, the store works.
    app.set_env("AWS_SECRET_ACCESS_KEY", &secret);
    let backup = app.json(&["backup", "--json"], 0);
    assert_eq!(backup["status"], "succeeded");
}
