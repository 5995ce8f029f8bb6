//! A store shared by a fleet: one root (`s3://bucket/prefix` or a
//! directory), and under it one ordinary store per host.
//!
//! ```text
//! <root>/hosts/<host>/VERSION, runs/, journal/, HEAD, lock, blobs/, …
//! ```
//!
//! Each host's store is a complete store of docs/store-format.md under
//! `hosts/<host>/`: its chain, its lease, its prune and its blobs touch
//! nothing outside that prefix, so one host's prune never removes a blob
//! another host's run names and one host's run never waits for another's
//! lock. (Blobs are not shared between hosts: deduplicating across hosts
//! would make one host's prune depend on every other host's manifests,
//! and the lease would have to cover the whole fleet.)
//!
//! The root holds nothing but `hosts/`: it is not a store, and a
//! single-host store is refused there (and a fleet root refused as a
//! single-host store, in `version.rs`), so the two layouts never mix.
//!
//! A host's name is a path component of every key it writes, so it is
//! checked ([`check_host_name`]): lower-case letters, digits, `.`, `_` and
//! `-`, starting with a letter or digit, never `/`, `.` or `..`.

use std::io;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::{Backend, Local};
use crate::check::Problem;
use crate::runs::{RunKind, RunManifest, RunStatus};
use crate::{LockHolder, Store, StoreLocation};

/// The directory of a fleet store's root that holds one store per host.
pub const HOSTS_DIR: &str = "hosts";

/// Hosts `fleet status` reads at once.
const READERS: usize = 8;

/// The longest host name: a fully qualified domain name's limit.
const MAX_HOST: usize = 253;

/// Is `name` usable as a host's name in a fleet store? `Err` says why and
/// what would be accepted.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let rule = "a host name is 1 to 253 lower-case letters, digits, `.`, `_` and `-`, \
                starting with a letter or digit";
    if name.is_empty() {
        return Err(format!("the host name is empty; {rule}"));
    }
    if name.len() > MAX_HOST {
        return Err(format!(
            "the host name is {} characters long; {rule}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        // Host names are case-insensitive; S3 keys are not. Two spellings
        // of one host would be two stores, and a rollback would not find
        // the backups of the other.
        let hint = if name.bytes().any(|b| b.is_ascii_uppercase())
            && check_host_name(&name.to_ascii_lowercase()).is_ok()
        {
            format!(" (write it in lower case: `{}`)", name.to_ascii_lowercase())
        } else {
            String::new()
        };
        return Err(format!(
            "`{}` contains {bad:?}; {rule}{hint}",
            name.escape_default()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        // Also what keeps `.` and `..` out.
        return Err(format!(
            "`{name}` does not start with a letter or digit; {rule}"
        ));
    }
    Ok(())
}

/// Where a host's name comes from when `store.host` does not give one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSource {
    /// `$REWIND_HOST`.
    Env,
    /// The machine's host name, lower-cased.
    Machine,
}

/// This host's name in a fleet store when the config has none:
/// `$REWIND_HOST`, else the machine's host name in lower case. `Err` says
/// why it cannot be used and how to set one.
pub fn default_host_name() -> Result<(String, HostSource), String> {
    if let Some(value) = std::env::var_os("REWIND_HOST") {
        let value = value.to_string_lossy().into_owned();
        return check_host_name(&value)
            .map(|()| (value, HostSource::Env))
            .map_err(|why| format!("REWIND_HOST: {why}"));
    }
    let machine = crate::hostname().to_ascii_lowercase();
    // Every unconfigured machine and container is `localhost`: two hosts
    // sharing a name would share a store, and one would roll back to the
    // other's backups.
    if machine == "localhost" || machine.starts_with("localhost.") {
        return Err(format!(
            "this machine's host name is `{machine}`, which does not tell hosts apart; \
             set store.host (or REWIND_HOST) to this host's name in the fleet"
        ));
    }
    check_host_name(&machine)
        .map(|()| (machine.clone(), HostSource::Machine))
        .map_err(|why| {
            format!(
                "this machine's host name cannot name it in the fleet store ({why}); \
                 set store.host (or REWIND_HOST)"
            )
        })
}

impl StoreLocation {
    /// The store of `host` in the fleet store rooted here:
    /// `<root>/hosts/<host>`. `host` must have passed [`check_host_name`].
    pub fn host(&self, host: &str) -> StoreLocation {
        debug_assert!(check_host_name(host).is_ok(), "{host}");
        match self {
            StoreLocation::Local(root) => StoreLocation::Local(root.join(HOSTS_DIR).join(host)),
            StoreLocation::S3(s3) => {
                let mut s3 = s3.clone();
                s3.prefix = if s3.prefix.is_empty() {
                    format!("{HOSTS_DIR}/{host}")
                } else {
                    format!("{}/{HOSTS_DIR}/{host}", s3.prefix)
                };
                StoreLocation::S3(s3)
            }
        }
    }
}

/// The root of a fleet store, read as it is (nothing is created there).
#[derive(Debug)]
pub struct Fleet {
    backend: Arc<dyn Backend>,
    location: StoreLocation,
}

impl Fleet {
    /// The fleet store rooted at `location`. Reads nothing yet.
    pub fn at(location: &StoreLocation) -> io::Result<Fleet> {
        let backend: Arc<dyn Backend> = match location {
            StoreLocation::Local(root) => Arc::new(Local::at(root)),
            StoreLocation::S3(s3) => Arc::new(crate::s3::S3::connect(s3)?.shared()),
        };
        Ok(Fleet {
            backend,
            location: location.clone(),
        })
    }

    /// The root, as people read it.
    pub fn display(&self) -> String {
        self.location.display()
    }

    /// Refuse a root that holds a single-host store (its `HEAD` or
    /// `VERSION`): its runs would be invisible to every host of the fleet.
    pub fn refuse_single_store(&self) -> io::Result<()> {
        for name in ["HEAD", crate::VERSION_FILE] {
            if self.backend.exists(name)? {
                let root = self.display();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{root} holds a single-host store ({name} is there), not a fleet store; \
                         a fleet store keeps each host's store under {root}/{HOSTS_DIR}/<host>/. \
                         Move this store there (the layout inside is the same: \
                         docs/fleet.md, \"Moving to a fleet store\"), or set store.url to \
                         an empty prefix or directory"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Open (creating if needed) the store of `host`, after checking that
    /// the root is a fleet store's.
    pub fn open_host(&self, host: &str) -> io::Result<Store> {
        check_host_name(host).map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
        self.refuse_single_store()?;
        if let StoreLocation::Local(root) = &self.location {
            // Private like a store's own directory (0700), not left to the
            // umask as `create_dir_all` would leave the parents.
            crate::create_private_dir(root)?;
            // `hosts/` and `hosts/<host>` must be directories of their
            // own, never links: whoever else writes the shared directory
            // (another host, over NFS) could otherwise point this host's
            // store at another host's, and its rollbacks at their backups,
            // or anywhere on this machine.
            for (dir, what) in [
                (root.join(HOSTS_DIR), format!("{HOSTS_DIR}/")),
                (
                    root.join(HOSTS_DIR).join(host),
                    format!("{HOSTS_DIR}/{host}"),
                ),
            ] {
                match std::fs::symlink_metadata(&dir) {
                    Ok(meta) if !meta.is_dir() => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{} is refused: {what} of the fleet store {} is a {}, not a \
                                 directory; each host's store is a directory of its own under \
                                 {HOSTS_DIR}/, never a link to another (someone who can write \
                                 the fleet store made it one)",
                                dir.display(),
                                self.display(),
                                if meta.file_type().is_symlink() {
                                    "symbolic link"
                                } else {
                                    "file"
                                }
                            ),
                        ));
                    }
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
                if what == format!("{HOSTS_DIR}/") {
                    crate::create_private_dir(&dir)?;
                }
            }
        }
        Store::open_at(&self.location.host(host))
    }

    /// The hosts that have a store here, sorted. Names that are not host
    /// names (made by hand) are left out: they could not be opened safely.
    pub fn hosts(&self) -> io::Result<Vec<String>> {
        let mut hosts: Vec<String> = self
            .backend
            .list_dirs(HOSTS_DIR)?
            .into_iter()
            .filter(|name| check_host_name(name).is_ok())
            .collect();
        hosts.sort();
        Ok(hosts)
    }

    /// What each host's store says: newest backup, last run, interrupted
    /// runs, the lease, and what fails verification. `verify` re-reads and
    /// re-hashes every blob of every host (a full `artifacts verify` per
    /// host: every stored byte is downloaded); without it the chain of
    /// manifests is checked and each blob's presence.
    pub fn status(&self, verify: bool) -> io::Result<FleetStatus> {
        self.refuse_single_store()?;
        let names = self.hosts()?;
        let read = |host: &String| {
            let location = self.location.host(host);
            let store = location.display();
            match Store::open_at(&location).and_then(|s| host_status(&s, verify)) {
                Ok(status) => HostStatus {
                    host: host.clone(),
                    store,
                    ..status
                },
                Err(err) => HostStatus::unreadable(host.clone(), store, &err),
            }
        };
        // Hosts are read a few at a time: each is a few requests per run
        // and blob, mostly waiting on the network, and a fleet of hundreds
        // read one by one would take minutes.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<HostStatus>>> =
            names.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..READERS.min(names.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(host) = names.get(i) else { break };
                        let status = read(host);
                        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    }
                });
            }
        });
        let hosts = slots
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .expect("every host was read")
            })
            .collect();
        Ok(FleetStatus {
            store: self.display(),
            checked: if verify {
                Checked::Content
            } else {
                Checked::Presence
            },
            hosts,
        })
    }
}

/// `rewind fleet status`: every host of a fleet store.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// The fleet store's root (`s3://bucket/prefix` or a directory).
    pub store: String,
    /// How far artifacts were checked.
    pub checked: Checked,
    /// One entry per host, by name.
    pub hosts: Vec<HostStatus>,
}

impl FleetStatus {
    /// Does any host need someone to look at it?
    pub fn attention(&self) -> bool {
        self.hosts.iter().any(|h| !h.attention.is_empty())
    }
}

/// How far `fleet status` checked each host's artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checked {
    /// The hash chain of manifests, and that every blob a run names exists
    /// (for a chunked artifact: its index, read and checked, and each chunk).
    Presence,
    /// That, and every blob re-read and re-hashed (`--verify`).
    Content,
}

/// One host as its store records it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// The host's name in the fleet (`store.host`).
    pub host: String,
    /// Its store (`<root>/hosts/<host>`).
    pub store: String,
    /// Finished runs kept.
    pub runs: usize,
    /// The newest succeeded backup, the one a plain rollback restores.
    pub newest_backup: Option<RunSummary>,
    /// The newest finished run of any kind.
    pub last_run: Option<RunSummary>,
    /// Runs in the journal while a live lease is held: running now.
    pub running: Vec<RunSummary>,
    /// Runs in the journal with no live lease: their process died.
    pub interrupted: Vec<RunSummary>,
    /// The lease on the host's store, if one is held.
    pub lease: Option<Lease>,
    /// What failed verification (or could not be read).
    pub problems: Vec<Problem>,
    /// Why someone should look at this host; empty when nothing needs it.
    pub attention: Vec<String>,
}

impl HostStatus {
    fn unreadable(host: String, store: String, err: &io::Error) -> HostStatus {
        HostStatus {
            host,
            store,
            runs: 0,
            newest_backup: None,
            last_run: None,
            running: Vec::new(),
            interrupted: Vec::new(),
            lease: None,
            problems: vec![Problem {
                run: None,
                message: format!("cannot read this host's store: {err}"),
            }],
            attention: vec!["its store cannot be read".into()],
        }
    }
}

/// A run, as much of it as a fleet view shows.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// Backup, rollback or guard.
    pub kind: RunKind,
    /// Succeeded, failed, interrupted (running in a journal).
    pub status: RunStatus,
    /// Guard: deployed, rolled-back, rollback-failed, deploy-failed,
    /// backup-failed.
    pub outcome: Option<String>,
    /// `--deploy-id`.
    pub deploy_id: Option<String>,
    /// When it started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// A journal: the step it was in (or stopped in), as `instance hook`.
    pub step: Option<String>,
}

impl From<&RunManifest> for RunSummary {
    fn from(run: &RunManifest) -> Self {
        RunSummary {
            id: run.id.clone(),
            kind: run.kind,
            status: run.status,
            outcome: run.outcome.clone(),
            deploy_id: run.deploy_id.clone(),
            started_at: run.started_at.clone(),
            finished_at: run.finished_at.clone(),
            error: run.error.clone(),
            step: None,
        }
    }
}

/// The lease on a host's store.
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    /// Who holds it.
    pub holder: LockHolder,
    /// Its lease ended unrenewed: the holder is gone, and the host's next
    /// run takes it over.
    pub expired: bool,
}

fn host_status(store: &Store, verify: bool) -> io::Result<HostStatus> {
    let runs = store.runs()?;
    let journals = store.journals()?;
    let lease = store.lock_holder()?.map(|holder| Lease {
        expired: holder.is_expired(),
        holder,
    });
    // Whether the journal's runs are running is the lease's to say; from
    // another machine a pid cannot be checked, so only expiry counts.
    let live = lease.as_ref().is_some_and(|l| !l.expired);
    let journal: Vec<RunSummary> = journals
        .iter()
        .map(|j| RunSummary {
            step: j.last_step().map(|s| format!("{} {}", s.instance, s.hook)),
            ..RunSummary::from(j)
        })
        .collect();
    let (running, interrupted) = if live {
        (journal, Vec::new())
    } else {
        (Vec::new(), journal)
    };

    let problems = if verify {
        store.verify(None, &|_| {})?.problems
    } else {
        let mut problems = store.check_chain(&runs)?;
        for run in &runs {
            for record in run.artifacts() {
                let what = format!("{}/{}", record.instance, record.name);
                let message = match store.missing_blobs(&record.blob) {
                    Ok(missing) if missing.is_empty() => continue,
                    Ok(missing) if missing == [record.blob.digest.clone()] => {
                        format!("blob {} ({what}) is missing", record.blob.digest)
                    }
                    Ok(missing) => format!(
                        "{} of the chunks of {what} are missing, e.g. {}",
                        missing.len(),
                        missing[0]
                    ),
                    Err(err) => format!("{what}: {err}"),
                };
                problems.push(Problem {
                    run: Some(run.id.clone()),
                    message,
                });
            }
        }
        problems
    };

    let last = runs.last();
    let mut attention = Vec::new();
    if !interrupted.is_empty() {
        attention.push(format!(
            "{} run(s) interrupted: its next run records them (`rewind status` on the host)",
            interrupted.len()
        ));
    }
    if let Some(lease) = lease.as_ref().filter(|l| l.expired) {
        attention.push(format!(
            "the lease of pid {} on {} expired unrenewed",
            lease.holder.pid, lease.holder.host
        ));
    }
    if !problems.is_empty() {
        attention.push(format!("{} verification problem(s)", problems.len()));
    }
    if let Some(run) = last.filter(|r| needs_attention(r)) {
        attention.push(format!(
            "its last run ({} {}) {}",
            run.kind.as_str(),
            run.id,
            run.outcome.as_deref().unwrap_or(run.status.as_str())
        ));
    }
    Ok(HostStatus {
        host: String::new(),
        store: String::new(),
        runs: runs.len(),
        newest_backup: crate::newest_backup(&runs).map(RunSummary::from),
        last_run: last.map(RunSummary::from),
        running,
        interrupted,
        lease,
        problems,
        attention,
    })
}

/// A last run that leaves the host needing someone: anything that did not
/// succeed, except a guard that rolled back to a healthy state (the host
/// is as it was; the deploy is what failed, and the orchestrator saw it).
fn needs_attention(run: &RunManifest) -> bool {
    run.status != RunStatus::Succeeded && run.outcome.as_deref() != Some("rolled-back")
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Checked::Presence => "the hash chain and that every blob is present",
            Checked::Content => "the hash chain and every blob re-hashed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_cannot_leave_their_prefix() {
        for ok in [
            "h1",
            "web-1",
            "ip-10-0-1-23.eu-west-1.compute.internal",
            "a_b",
            "7",
        ] {
            assert_eq!(check_host_name(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            (".", "does not start"),
            ("..", "does not start"),
            ("../h2", "contains '/'"),
            ("h1/..", "contains '/'"),
            ("a/b", "contains '/'"),
            ("-h", "does not start"),
            ("h 1", "contains ' '"),
            ("h\n", "contains '\\n'"),
            ("Web1", "lower case: `web1`"),
            ("h\u{e9}", "contains"),
        ] {
            let err = check_host_name(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(check_host_name(&"a".repeat(254)).is_err());
        assert!(check_host_name(&"a".repeat(253)).is_ok());
    }

    #[test]
    fn a_host_store_is_under_hosts_of_the_root() {
        let local = StoreLocation::Local("/srv/fleet".into());
        assert_eq!(
            local.host("h1"),
            StoreLocation::Local("/srv/fleet/hosts/h1".into())
        );
        let s3 = |prefix: &str| {
            StoreLocation::S3(crate::S3Location {
                bucket: "b".into(),
                prefix: prefix.into(),
                endpoint: None,
                region: None,
            })
        };
        assert_eq!(
            s3("shop/prod").host("h1").display(),
            "s3://b/shop/prod/hosts/h1"
        );
        assert_eq!(s3("").host("h1").display(), "s3://b/hosts/h1");
    }

    fn backup(store: &Store, content: &[u8]) {
        let lock = store.lock("test").unwrap();
        let mut blob = store.create_blob().unwrap();
        std::io::Write::write_all(&mut blob, content).unwrap();
        let info = blob.finish().unwrap();
        let mut run = RunManifest::start(RunKind::Backup, "p", "e");
        let mut step = crate::StepRecord::start("code", "backup");
        step.status = crate::StepStatus::Succeeded;
        step.artifacts.push(crate::ArtifactRecord {
            instance: "code".into(),
            hook: "backup".into(),
            name: "state".into(),
            media_type: "application/json".into(),
            labels: Vec::new(),
            blob: info,
        });
        run.steps.push(step);
        run.status = RunStatus::Succeeded;
        store.finish_run(&mut run).unwrap();
        drop(lock);
    }

    #[test]
    fn hosts_of_one_store_keep_their_own_runs_lease_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Fleet::at(&StoreLocation::Local(dir.path().to_path_buf())).unwrap();
        let h1 = fleet.open_host("h1").unwrap();
        let h2 = fleet.open_host("h2").unwrap();
        // The same content on both hosts: with blobs shared across hosts,
        // h1's prune would remove the blob h2's backup names.
        backup(&h1, b"data");
        backup(&h2, b"data");
        backup(&h1, b"newer");
        // h1 holds its lease: h2 still takes its own.
        let held = h1.lock("h1 run").unwrap();
        drop(h2.lock("h2 run").unwrap());
        assert!(h2.lock_holder().unwrap().is_none());
        assert!(h1.lock_holder().unwrap().is_some());
        // A prune of h1 that removes its first backup and that blob
        // leaves h2 intact.
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let policy = crate::RetentionPolicy {
            keep_days: 0,
            keep_last: 1,
            include_safety: true,
        };
        let plan = h1.prune_plan(policy, later).unwrap();
        assert_eq!(plan.runs.len(), 1, "{plan:?}");
        assert_eq!(plan.blobs.len(), 1, "{plan:?}");
        h1.apply_prune(&plan).unwrap();
        assert_eq!(h1.runs().unwrap().len(), 1);
        drop(held);
        assert_eq!(h2.runs().unwrap().len(), 1);
        assert!(h2.verify(None, &|_| {}).unwrap().ok());
        assert_eq!(fleet.hosts().unwrap(), ["h1", "h2"]);
        let status = fleet.status(true).unwrap();
        assert_eq!(status.hosts.len(), 2);
        assert!(!status.attention(), "{status:#?}");

        // A host whose store cannot be read is reported, not fatal: the
        // others are still shown. Its store is left as it was.
        let h3 = dir.path().join(HOSTS_DIR).join("h3");
        std::fs::create_dir_all(&h3).unwrap();
        std::fs::write(h3.join(crate::VERSION_FILE), "9\n").unwrap();
        let status = fleet.status(false).unwrap();
        let names: Vec<&str> = status.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["h1", "h2", "h3"]);
        let h3_status = &status.hosts[2];
        assert!(
            h3_status.problems[0].message.contains("store format 9"),
            "{h3_status:#?}"
        );
        assert_eq!(h3_status.attention, ["its store cannot be read"]);
        assert!(status.hosts[..2].iter().all(|h| h.attention.is_empty()));
        assert_eq!(
            std::fs::read_to_string(h3.join(crate::VERSION_FILE)).unwrap(),
            "9\n"
        );
        // A directory whose name is not a host name is not a host.
        std::fs::create_dir_all(dir.path().join(HOSTS_DIR).join(".hidden")).unwrap();
        std::fs::create_dir_all(dir.path().join(HOSTS_DIR).join("Upper")).unwrap();
        assert_eq!(fleet.hosts().unwrap(), ["h1", "h2", "h3"]);
    }

    #[test]
    fn single_host_stores_and_fleet_roots_do_not_mix() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        Store::open(&root).unwrap();
        let fleet = Fleet::at(&StoreLocation::Local(root.clone())).unwrap();
        let err = fleet.open_host("h1").unwrap_err();
        assert!(
            err.to_string().contains("holds a single-host store"),
            "{err}"
        );
        assert!(!root.join(HOSTS_DIR).exists());

        let root = dir.path().join("fleet");
        let fleet = Fleet::at(&StoreLocation::Local(root.clone())).unwrap();
        fleet.open_host("h1").unwrap();
        let err = Store::open(&root).unwrap_err();
        assert!(
            err.to_string().contains("is the root of a fleet store"),
            "{err}"
        );
        assert!(!root.join(crate::VERSION_FILE).exists());
    }
}
