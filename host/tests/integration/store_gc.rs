//! Orphans (blobs no manifest, journal or index names) through the real
//! `rewind` binary: a backup killed with SIGKILL mid-chunks leaves chunk
//! blobs; `artifacts prune --dry-run` lists them and removes nothing; the
//! grace period keeps young ones; `artifacts prune` removes exactly them;
//! every kept run still verifies and rolls back byte-identical; a prune
//! never collects what a backup holding the lock wrote. On a local store
//! and on S3 (moto's server).
//!
//! The app is runs.rs's idea, kept small: releases and a `current`
//! symlink (release-symlink), a config file and data (files), and a
//! `command` instance whose backup writes 10 MB of random bytes (about ten
//! chunks) and then, unless the file `fast` exists, sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::common::{S3Bucket, SampleApp, StoreAt, sample_plugins, text};
use crate::servers::Moto;

const BUCKET: &str = "rewind-gc";
const PREFIX: &str = "shop/test";

enum Where<'m> {
    Local,
    S3(&'m Moto),
}

/// common.rs's sample app, and what these tests look at in its store.
struct App<'m> {
    app: SampleApp,
    store: Where<'m>,
}

/// The app is driven as the sample app is (`rewind`, `json`, `break_it`, …).
impl std::ops::Deref for App<'_> {
    type Target = SampleApp;
    fn deref(&self) -> &SampleApp {
        &self.app
    }
}

fn plugins(root: &Path) -> String {
    let slow = format!(
        "head -c 10000000 /dev/urandom; test -e {}/fast || sleep 20",
        root.display()
    );
    sample_plugins(root, &slow)
}

impl<'m> App<'m> {
    fn new(store: Where<'m>) -> App<'m> {
        let at = match &store {
            Where::Local => StoreAt::Local,
            Where::S3(moto) => StoreAt::S3(S3Bucket {
                endpoint: moto.url(),
                bucket: BUCKET.into(),
                prefix: PREFIX.into(),
            }),
        };
        App {
            app: SampleApp::new(
                at,
                plugins,
                &["code", "config", "slow"],
                &["code", "config"],
                "",
            ),
            store,
        }
    }

    /// Every blob in the store: digest → stored size.
    fn blobs(&self) -> BTreeMap<String, u64> {
        match &self.store {
            Where::Local => {
                let mut out = BTreeMap::new();
                let mut stack = vec![self.app.store().join("blobs")];
                while let Some(dir) = stack.pop() {
                    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                        if entry.file_type().unwrap().is_dir() {
                            stack.push(entry.path());
                        } else {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            out.insert(name, entry.metadata().unwrap().len());
                        }
                    }
                }
                out
            }
            Where::S3(moto) => {
                let listed = moto.python(&format!(
                    r#"
p = s3.get_paginator("list_objects_v2")
keys = [[o["Key"], o["Size"]] for page in p.paginate(Bucket={BUCKET:?}, Prefix={PREFIX:?} + "/blobs/") for o in page.get("Contents", [])]
print(json.dumps(keys))
"#
                ));
                let keys: Vec<(String, u64)> = serde_json::from_str(&listed).unwrap();
                keys.into_iter()
                    .map(|(k, n)| (k.rsplit('/').next().unwrap().to_string(), n))
                    .collect()
            }
        }
    }

    /// The digests the journals (runs in progress or interrupted) name.
    fn journal_digests(&self) -> BTreeSet<String> {
        let journals: Vec<Value> = match &self.store {
            Where::Local => fs::read_dir(self.app.store().join("journal"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| serde_json::from_slice(&fs::read(e.path()).unwrap()).unwrap())
                .collect(),
            Where::S3(moto) => serde_json::from_str(&moto.python(&format!(
                r#"
out = []
for o in s3.list_objects_v2(Bucket={BUCKET:?}, Prefix={PREFIX:?} + "/journal/").get("Contents", []):
    out.append(json.loads(s3.get_object(Bucket={BUCKET:?}, Key=o["Key"])["Body"].read()))
print(json.dumps(out))
"#
            )))
            .unwrap(),
        };
        let mut out = BTreeSet::new();
        for journal in &journals {
            for step in journal["steps"].as_array().into_iter().flatten() {
                for artifact in step["artifacts"].as_array().into_iter().flatten() {
                    out.insert(artifact["digest"].as_str().unwrap().to_string());
                }
            }
        }
        out
    }

    /// Start a backup and wait until its `slow` step has stored at least
    /// `chunks` new blobs (it then sleeps, holding the lock).
    fn backup_in_flight(&self, chunks: usize) -> Child {
        fs::remove_file(self.root().join("fast")).ok();
        let before = self.blobs().len();
        let mut child = self.spawn(&["backup"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.blobs().len() < before + chunks {
            if Instant::now() >= deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("the backup stored no chunks: {:?}", self.blobs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The chunks before the last are stored; the last waits in memory
        // for the end of the artifact, which does not come for 20 s.
        std::thread::sleep(Duration::from_millis(1500));
        child
    }
}

/// `prune --dry-run --json` with no grace period: the plan lists every
/// orphan, whatever its age.
fn plan_every_orphan(app: &App) -> Value {
    let args = [
        "artifacts",
        "prune",
        "--dry-run",
        "--orphans-older-than",
        "0s",
        "--json",
    ];
    app.json(&args, 0)
}

/// The digests of a plan's list (`orphans`, `blobs`): `[[digest, size]]`.
fn digests(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_string())
        .collect()
}

fn moto_with_bucket() -> Moto {
    let moto = Moto::start();
    moto.python(&format!("s3.create_bucket(Bucket={BUCKET:?})"));
    moto
}

/// Age a local blob by `hours` (its mtime).
fn age(store: &Path, digest: &str, hours: u64) {
    let path = store.join("blobs/sha256").join(&digest[..2]).join(digest);
    let file = fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(hours * 3600))
        .unwrap();
}

/// A backup that finished (and so whose chunks are named), then one
/// killed with SIGKILL mid-chunks: its chunks are the orphans, exactly
/// the blobs it added that its journal does not name. Returns the first
/// backup's id and the orphans with their sizes.
fn kill_a_backup_mid_chunks(app: &App) -> (String, BTreeMap<String, u64>) {
    fs::write(app.root().join("fast"), "").unwrap();
    let kept = app.json(&["backup", "--json"], 0);
    assert_eq!(kept["status"], "succeeded");
    let chunked = &kept["steps"][2]["artifacts"][0];
    assert!(chunked["chunks"]["count"].as_u64().unwrap() > 3, "{kept:#}");
    let before = app.blobs();

    let mut child = app.backup_in_flight(3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let named = app.journal_digests();
    let orphans: BTreeMap<String, u64> = app
        .blobs()
        .into_iter()
        .filter(|(d, _)| !before.contains_key(d) && !named.contains(d))
        .collect();
    assert!(orphans.len() >= 3, "{orphans:?}");
    (kept["id"].as_str().unwrap().to_string(), orphans)
}

/// After the orphans went: every run verifies and the kept backup rolls
/// the app back byte for byte.
fn everything_kept_still_restores(app: &App, backup: &str) {
    let config = app.read("shared/config.env");
    let data = app.read("shared/data/orders.bin");
    // The safety backup's `slow` step need not sleep.
    fs::write(app.root().join("fast"), "").unwrap();
    let verify = app.json(&["artifacts", "verify", "--json"], 0);
    assert_eq!(verify["problems"], Value::Array(Vec::new()), "{verify:#}");
    app.break_it();
    let out = app.rewind(&["rollback", "--to", backup, "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(app.current(), "releases/v1");
    assert_eq!(app.read("shared/config.env"), config);
    assert_eq!(app.read("shared/data/orders.bin"), data);
}

#[test]
fn a_killed_backups_chunks_are_listed_kept_while_young_and_then_removed_exactly() {
    let app = App::new(Where::Local);
    let (kept, orphans) = kill_a_backup_mid_chunks(&app);
    let all = app.blobs();
    let expected: BTreeSet<String> = orphans.keys().cloned().collect();
    let bytes: u64 = orphans.values().sum();

    // --dry-run lists them, apart from the runs' blobs, and removes nothing.
    let dry = plan_every_orphan(&app);
    assert_eq!(digests(&dry["plan"]["orphans"]), expected, "{dry:#}");
    assert_eq!(dry["plan"]["orphan_bytes"], bytes);
    assert_eq!(dry["plan"]["blobs"], Value::Array(Vec::new()));
    assert_eq!(dry["plan"]["runs"], Value::Array(Vec::new()));
    let out = app.rewind(&[
        "artifacts",
        "prune",
        "--dry-run",
        "--orphans-older-than",
        "0s",
    ]);
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!(
            "would remove {} orphan blob(s), {bytes} stored bytes",
            expected.len()
        )),
        "{said}"
    );
    assert!(expected.iter().all(|d| said.contains(d.as_str())), "{said}");
    assert_eq!(app.blobs(), all);

    // By default (24 hours) they are too young: counted, kept.
    let young = app.json(&["artifacts", "prune", "--json"], 0);
    assert_eq!(
        young["plan"]["orphans"],
        Value::Array(Vec::new()),
        "{young:#}"
    );
    assert_eq!(young["plan"]["orphans_recent"], expected.len());
    assert_eq!(young["plan"]["orphans_recent_bytes"], bytes);
    assert_eq!(app.blobs(), all);
    let out = app.rewind(&["artifacts", "prune"]);
    assert!(
        text(&out.stdout).contains(&format!("kept {} orphan blob(s)", expected.len())),
        "{}",
        text(&out.stdout)
    );

    // Two of them a day and a half old: the default removes those two.
    let aged: BTreeSet<String> = expected.iter().take(2).cloned().collect();
    for digest in &aged {
        age(&app.store(), digest, 36);
    }
    let pruned = app.json(&["artifacts", "prune", "--json"], 0);
    assert_eq!(digests(&pruned["plan"]["orphans"]), aged, "{pruned:#}");
    assert_eq!(pruned["plan"]["orphans_recent"], expected.len() - 2);

    // Then the rest, and exactly them.
    let pruned = app.json(
        &["artifacts", "prune", "--orphans-older-than", "0s", "--json"],
        0,
    );
    let rest: BTreeSet<String> = expected.difference(&aged).cloned().collect();
    assert_eq!(digests(&pruned["plan"]["orphans"]), rest, "{pruned:#}");
    let left: BTreeMap<String, u64> = all
        .into_iter()
        .filter(|(d, _)| !expected.contains(d))
        .collect();
    assert_eq!(app.blobs(), left);

    // The killed backup is on record as interrupted, its finished steps'
    // blobs kept; and what is kept restores.
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history[0]["status"], "interrupted", "{history:#}");
    everything_kept_still_restores(&app, &kept);
}

#[test]
fn a_prune_never_collects_what_a_backup_holding_the_lock_wrote() {
    let app = App::new(Where::Local);
    let mut backup = app.backup_in_flight(3);
    let during = app.blobs();

    // The prune needs the lock the backup holds: refused (exit 5),
    // nothing removed, even with no grace period at all.
    let out = app.rewind(&["artifacts", "prune", "--orphans-older-than", "0s"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("holds the store lock"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(app.blobs(), during);

    // A dry run takes no lock: the grace period keeps the chunks in flight
    // out of what it would remove.
    let dry = app.json(&["artifacts", "prune", "--dry-run", "--json"], 0);
    assert_eq!(dry["plan"]["orphans"], Value::Array(Vec::new()), "{dry:#}");
    assert!(
        dry["plan"]["orphans_recent"].as_u64().unwrap() >= 3,
        "{dry:#}"
    );

    // Waiting for the lock, the prune runs once the backup finished and
    // named its chunks: none is an orphan then.
    let pruned = app.json(
        &[
            "artifacts",
            "prune",
            "--lock-wait",
            "90s",
            "--orphans-older-than",
            "0s",
            "--json",
        ],
        0,
    );
    assert!(backup.wait().unwrap().success());
    assert_eq!(
        pruned["plan"]["orphans"],
        Value::Array(Vec::new()),
        "{pruned:#}"
    );
    let after = app.blobs();
    assert!(
        during.keys().all(|d| after.contains_key(d)),
        "{during:?} {after:?}"
    );
    let history = app.json(&["history", "--json"], 0);
    assert_eq!(history[0]["status"], "succeeded", "{history:#}");
    everything_kept_still_restores(&app, history[0]["id"].as_str().unwrap());
}

#[test]
fn orphans_on_an_s3_store_are_listed_kept_while_young_and_removed_exactly() {
    let moto = moto_with_bucket();
    let app = App::new(Where::S3(&moto));
    let (kept, orphans) = kill_a_backup_mid_chunks(&app);
    let all = app.blobs();
    let expected: BTreeSet<String> = orphans.keys().cloned().collect();

    let dry = plan_every_orphan(&app);
    assert_eq!(digests(&dry["plan"]["orphans"]), expected, "{dry:#}");
    assert_eq!(dry["plan"]["orphan_bytes"], orphans.values().sum::<u64>());
    assert_eq!(app.blobs(), all);

    // S3's LastModified says they are minutes old: kept by default.
    let young = app.json(&["artifacts", "prune", "--json"], 0);
    assert_eq!(
        young["plan"]["orphans"],
        Value::Array(Vec::new()),
        "{young:#}"
    );
    assert_eq!(young["plan"]["orphans_recent"], expected.len());
    assert_eq!(app.blobs(), all);

    let pruned = app.json(
        &["artifacts", "prune", "--orphans-older-than", "0s", "--json"],
        0,
    );
    assert_eq!(digests(&pruned["plan"]["orphans"]), expected, "{pruned:#}");
    let left: BTreeMap<String, u64> = all
        .into_iter()
        .filter(|(d, _)| !expected.contains(d))
        .collect();
    assert_eq!(app.blobs(), left);
    everything_kept_still_restores(&app, &kept);

    // A prune while a backup holds the S3 lease: refused, nothing removed.
    let mut backup = app.backup_in_flight(3);
    let during = app.blobs();
    let out = app.rewind(&["artifacts", "prune", "--orphans-older-than", "0s"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(app.blobs(), during);
    backup.kill().unwrap();
    backup.wait().unwrap();
}
