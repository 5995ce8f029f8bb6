//! `verify` (re-hash blobs, walk the manifest chain) and `prune`
//! (retention), both over the finished runs of a store.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

use serde::Serialize;

use super::runs::{ChainLink, RunKind, RunManifest, RunStatus};
use super::{BlobInfo, Store, blob, chunk};

/// One thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The run it concerns, when there is one.
    pub run: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Runs checked.
    pub runs: usize,
    /// Blobs checked.
    pub blobs: usize,
    /// Stored bytes read.
    pub bytes: u64,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Which runs a prune removes, and why the others stay.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Keep runs younger than this many days.
    pub keep_days: u32,
    /// Keep the newest this many backups whatever their age.
    pub keep_last: u32,
    /// Safety backups are kept unless this is set.
    pub include_safety: bool,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            keep_days: 7,
            keep_last: 3,
            include_safety: false,
        }
    }
}

/// Whether a prune also collects **orphans**: blobs in the store that no
/// manifest, journal or chunk index of either names (chunks of a backup
/// that died mid-artifact, chunks only a damaged index of a removed run
/// listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphans {
    /// Do not list the store's blobs: only what removed runs name goes
    /// (the prune after every backup, where a listing of a large bucket
    /// would cost more than the few orphans it finds).
    Skip,
    /// Remove orphans last written at least this long ago; younger ones
    /// are counted and kept (see [`DEFAULT_ORPHAN_GRACE`] for why).
    OlderThan(Duration),
}

/// How old an orphan must be before prune removes it: 24 hours.
///
/// The store lock alone does not make collecting orphans safe. A backup
/// writes its chunks before the index and the manifest that name them,
/// and it can outlive its lease while still running: frozen (SIGSTOP, a
/// suspended VM, a stalled disk or S3) for longer than the lease, taken
/// over, or removed by `rewind unlock --force`, and then woken to finish.
/// A prune holding the taken-over lock would see its chunks as orphans.
/// Chunks it wrote are at most as old as the run, so waiting a day before
/// removing an orphan means such a run must have stalled for a day and
/// then finished for a chunk it wrote to be lost.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A run prune removes (or would).
#[derive(Debug, Clone, Serialize)]
pub struct PrunedRun {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: RunKind,
    /// It was a safety backup.
    pub safety: bool,
    /// When it started.
    pub started_at: String,
}

/// What prune removes (or would), by the retention rule.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    /// The runs.
    pub runs: Vec<PrunedRun>,
    /// Blobs no remaining run refers to: digest and stored size.
    pub blobs: Vec<(String, u64)>,
    /// Blob bytes freed (blobs no kept run names).
    pub bytes: u64,
    /// Safety backups kept only because they are safety backups.
    pub safety_kept: usize,
    /// Whether the store's blobs were listed for orphans (not after a
    /// backup: [`Orphans::Skip`]).
    pub orphans_checked: bool,
    /// Orphans removed (or that would be): blobs no manifest, journal or
    /// index names, past the grace period; digest and stored size, by
    /// digest. Not in `blobs`.
    pub orphans: Vec<(String, u64)>,
    /// Their stored bytes. Not in `bytes`.
    pub orphan_bytes: u64,
    /// Orphans kept because they are younger than the grace period (or
    /// their age is unknown): a run that still holds the lock may be about
    /// to name them.
    pub orphans_recent: usize,
    /// Their stored bytes.
    pub orphans_recent_bytes: u64,
}

impl Store {
    /// Check the chain of manifests and (for every run, or just `only`)
    /// re-hash every blob. `progress` receives stored bytes as they are read.
    pub fn verify(
        &self,
        only: Option<&str>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<VerifyReport> {
        let runs = self.runs()?;
        let mut report = VerifyReport::default();
        let selected: Vec<&RunManifest> = match only {
            Some(id) => {
                let run = self.find_run(id)?;
                runs.iter().filter(|m| m.id == run.id).collect()
            }
            None => runs.iter().collect(),
        };
        report.problems.extend(self.check_chain(&runs)?);
        report.runs = selected.len();

        // Each blob once, however many runs share it.
        let mut users: BTreeMap<&str, (Vec<&str>, &BlobInfo)> = BTreeMap::new();
        for run in &selected {
            for record in run.artifacts() {
                let entry = users
                    .entry(record.blob.digest.as_str())
                    .or_insert((Vec::new(), &record.blob));
                entry.0.push(run.id.as_str());
            }
        }
        let mut plain: Vec<&BlobInfo> = Vec::new();
        // Each chunk once, however many artifacts share it: the runs using
        // it and the artifacts (index digests) it belongs to.
        let mut chunk_users: BTreeMap<String, (BlobInfo, BTreeSet<&str>, BTreeSet<&str>)> =
            BTreeMap::new();
        for (digest, (runs_using, info)) in &users {
            report.blobs += 1;
            report.bytes += info.stored_size;
            if info.chunks.is_none() {
                plain.push(info);
                continue;
            }
            match self.index(info) {
                Ok(index) => {
                    progress(info.stored_size);
                    for chunk in index.chunks {
                        let entry = chunk_users
                            .entry(chunk.digest.clone())
                            .or_insert_with(|| (chunk, BTreeSet::new(), BTreeSet::new()));
                        entry.1.extend(runs_using.iter().copied());
                        entry.2.insert(digest);
                    }
                }
                Err(err) => {
                    for run in runs_using {
                        report.problems.push(Problem {
                            run: Some(run.to_string()),
                            message: format!("blob {digest}: {err}"),
                        });
                    }
                }
            }
        }
        for info in plain {
            if let Err(err) = self.verify_blob_with(info, progress) {
                for run in &users[info.digest.as_str()].0 {
                    report.problems.push(Problem {
                        run: Some(run.to_string()),
                        message: format!("blob {}: {err}", info.digest),
                    });
                }
            }
        }
        // The chunks of all artifacts together, on several threads.
        let chunks: Vec<&BlobInfo> = chunk_users.values().map(|(c, _, _)| c).collect();
        report.blobs += chunks.len();
        report.bytes += chunks.iter().map(|c| c.stored_size).sum::<u64>();
        for (i, err) in chunk::check_all(self.backend(), &chunks, chunk::Depth::Content, progress) {
            let (_, runs_using, artifacts) = &chunk_users[chunks[i].digest.as_str()];
            // Every run using a damaged chunk is named, and every artifact.
            for run in runs_using {
                for artifact in artifacts {
                    if users[artifact].0.contains(run) {
                        report.problems.push(Problem {
                            run: Some(run.to_string()),
                            message: format!("blob {artifact}: {err}"),
                        });
                    }
                }
            }
        }
        Ok(report)
    }

    /// Walk the hash chain from the first manifest to `HEAD`.
    pub(crate) fn check_chain(&self, runs: &[RunManifest]) -> io::Result<Vec<Problem>> {
        let pruned = self.pruned_runs()?;
        let mut problems = Vec::new();
        let mut problem = |run: &str, message: String| {
            problems.push(Problem {
                run: Some(run.to_string()),
                message,
            })
        };
        let by_id: BTreeMap<&str, &RunManifest> = runs.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut seen_seq = BTreeSet::new();
        for run in runs {
            if !seen_seq.insert(run.seq) {
                problem(
                    &run.id,
                    format!("sequence number {} appears twice", run.seq),
                );
            }
            let Some(link) = &run.previous else {
                if run.seq != 1 {
                    problem(
                        &run.id,
                        format!(
                            "run {} has no previous run but is number {}",
                            run.id, run.seq
                        ),
                    );
                }
                continue;
            };
            if link.seq + 1 != run.seq {
                problem(
                    &run.id,
                    format!(
                        "run number {} links to run number {}: the chain skips runs",
                        run.seq, link.seq
                    ),
                );
            }
            if by_id.contains_key(link.id.as_str()) {
                let (_, digest) = self.manifest_file(&link.id)?;
                if digest != link.digest {
                    problem(
                        &run.id,
                        format!(
                            "the manifest of the previous run {} hashes to {digest}, but run {} recorded {}: it was changed after it was written",
                            link.id, run.id, link.digest
                        ),
                    );
                }
            } else if pruned.runs.get(&link.id) != Some(link) {
                problem(
                    &run.id,
                    format!(
                        "the manifest of the previous run {} is missing and was not pruned by rewind",
                        link.id
                    ),
                );
            }
        }
        match (self.head()?, runs.last()) {
            (Some(head), Some(newest)) => {
                if head.id != newest.id || head.seq != newest.seq {
                    problem(
                        &head.id,
                        format!(
                            "HEAD names run {} (number {}) but the newest manifest is {} (number {}): a manifest was removed or added by hand",
                            head.id, head.seq, newest.id, newest.seq
                        ),
                    );
                } else if self.manifest_file(&newest.id)?.1 != head.digest {
                    problem(
                        &newest.id,
                        format!(
                            "the manifest of run {} does not match the digest HEAD recorded: it was changed after it was written",
                            newest.id
                        ),
                    );
                }
            }
            (Some(head), None) if !pruned.runs.contains_key(&head.id) => problem(
                &head.id,
                format!("HEAD names run {} but no manifest exists", head.id),
            ),
            (None, Some(newest)) => problem(
                &newest.id,
                "the store has manifests but no HEAD".to_string(),
            ),
            _ => {}
        }
        Ok(problems)
    }

    /// What `prune` would remove under `policy` at time `now`, without
    /// looking for orphans ([`Store::prune_plan_with`], [`Orphans::Skip`]).
    pub fn prune_plan(
        &self,
        policy: RetentionPolicy,
        now: jiff::Timestamp,
    ) -> io::Result<PrunePlan> {
        self.prune_plan_with(policy, now, Orphans::Skip)
    }

    /// What `prune` would remove under `policy` at time `now`: the runs
    /// past retention, the blobs only they name, and, unless `orphans` is
    /// [`Orphans::Skip`], the blobs nothing names that are old enough.
    ///
    /// Why removing orphans is safe, given the lock (docs/store-format.md,
    /// Retention): what is still named is found first, from every
    /// manifest (kept or being removed), every journal (an interrupted
    /// rollback's `--resume` needs what it names) and every index they
    /// name; an index of a kept run or journal that cannot be read stops
    /// the prune. Everything else under `blobs/` was written by a run that
    /// died before naming it, or by a run still in flight. A run in flight
    /// holds the store lock, which the prune must take first, so normally
    /// there is none. Because a lease can be lost by a holder that still
    /// lives (frozen past its expiry and taken over, or `unlock --force`),
    /// only orphans older than the grace period are removed: a live run's
    /// chunks are younger than the run ([`DEFAULT_ORPHAN_GRACE`]).
    pub fn prune_plan_with(
        &self,
        policy: RetentionPolicy,
        now: jiff::Timestamp,
        orphans: Orphans,
    ) -> io::Result<PrunePlan> {
        let runs = self.runs()?;
        let cutoff = now
            .checked_sub(jiff::SignedDuration::from_hours(
                24 * i64::from(policy.keep_days),
            ))
            .unwrap_or(now);
        let young = |m: &RunManifest| m.started().is_none_or(|t| t >= cutoff);

        // The newest `keep_last` restorable backups (safety ones counted
        // separately), and always the newest one.
        let mut protected: BTreeSet<&str> = BTreeSet::new();
        for safety in [false, true] {
            let newest = runs
                .iter()
                .rev()
                .filter(|m| m.is_restorable() && m.safety == safety);
            let keep = (policy.keep_last as usize).max(1);
            protected.extend(newest.take(keep).map(|m| m.id.as_str()));
        }
        // Runs in the journal may still be resumed: keep what they use.
        let journals = self.journals()?;
        for journal in &journals {
            protected.extend(journal.source_run.as_deref());
        }

        let mut plan = PrunePlan::default();
        let mut kept: Vec<&RunManifest> = Vec::new();
        for run in &runs {
            let keep = protected.contains(run.id.as_str()) || young(run);
            if keep {
                kept.push(run);
            } else if run.safety && !policy.include_safety {
                plan.safety_kept += 1;
                kept.push(run);
            } else {
                plan.runs.push(PrunedRun {
                    id: run.id.clone(),
                    kind: run.kind,
                    safety: run.safety,
                    started_at: run.started_at.clone(),
                });
            }
        }

        // What the kept runs (and journals) use: their blobs, and the chunks
        // of their chunked artifacts. An index that cannot be read stops
        // the prune: without it no chunk can be known to be unused.
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        for record in kept
            .iter()
            .copied()
            .chain(journals.iter())
            .flat_map(|m| m.steps.iter().flat_map(|s| s.artifacts.iter()))
        {
            if referenced.insert(record.blob.digest.clone()) && record.blob.chunks.is_some() {
                let index = self.index(&record.blob).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!(
                            "cannot tell which chunks artifact `{}` of `{}` uses, so nothing is pruned (`rewind artifacts verify` names what is damaged): {err}",
                            record.name, record.instance
                        ),
                    )
                })?;
                referenced.extend(index.chunks.into_iter().map(|c| c.digest));
            }
        }
        let mut removed: BTreeSet<String> = BTreeSet::new();
        for run in &runs {
            if !plan.runs.iter().any(|p| p.id == run.id) {
                continue;
            }
            for record in run.artifacts() {
                let digest = record.blob.digest.as_str();
                if referenced.contains(digest) || !removed.insert(digest.to_string()) {
                    continue;
                }
                plan.blobs
                    .push((digest.to_string(), record.blob.stored_size));
                plan.bytes += record.blob.stored_size;
                if record.blob.chunks.is_some() {
                    // A damaged index of a run being removed: its chunks
                    // that no kept run uses stay behind as unnamed blobs.
                    let Ok(index) = self.index(&record.blob) else {
                        continue;
                    };
                    for chunk in index.chunks {
                        if !referenced.contains(&chunk.digest)
                            && removed.insert(chunk.digest.clone())
                        {
                            plan.bytes += chunk.stored_size;
                            plan.blobs.push((chunk.digest, chunk.stored_size));
                        }
                    }
                }
            }
        }
        if let Orphans::OlderThan(grace) = orphans {
            // Listed after every record was read: a blob named by none of
            // them (kept or removed) is an orphan. The chunks of a removed
            // run's damaged index are among them: nothing else names them.
            let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
            let cutoff = now.checked_sub(grace).ok();
            plan.orphans_checked = true;
            let mut listed = self.backend().list_blobs()?;
            listed.sort_by(|a, b| a.digest.cmp(&b.digest));
            for blob in listed {
                if referenced.contains(&blob.digest) || removed.contains(&blob.digest) {
                    continue;
                }
                let old = grace.is_zero()
                    || matches!((blob.modified, cutoff), (Some(m), Some(c)) if m <= c);
                if old {
                    plan.orphan_bytes += blob.size;
                    plan.orphans.push((blob.digest, blob.size));
                } else {
                    plan.orphans_recent += 1;
                    plan.orphans_recent_bytes += blob.size;
                }
            }
        }
        Ok(plan)
    }

    /// Remove what `plan` lists. Call with the store lock held. Manifests
    /// go first (recorded in `pruned.json` so the chain still verifies),
    /// then the blobs no one refers to any more.
    /// Orphans go last: a crash before them leaves only more orphans.
    pub fn apply_prune(&self, plan: &PrunePlan) -> io::Result<()> {
        self.apply_prune_while(plan, &mut || Ok(()))
    }

    /// [`Store::apply_prune`], asking `still_held` before each removal
    /// whether the store lock is still the caller's (an error stops the
    /// prune where it is): a prune frozen past its lease must not go on
    /// removing blobs that the run that took the lock over may have just
    /// chosen to reuse.
    pub fn apply_prune_while(
        &self,
        plan: &PrunePlan,
        still_held: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        if !plan.runs.is_empty() {
            still_held()?;
            self.remove_runs(plan, still_held)?;
        }
        for (digest, _) in &plan.orphans {
            still_held()?;
            self.backend().remove(&blob::blob_key(digest)?)?;
        }
        Ok(())
    }

    fn remove_runs(
        &self,
        plan: &PrunePlan,
        still_held: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut pruned = self.pruned_runs()?;
        for run in &plan.runs {
            let (_, digest) = self.manifest_file(&run.id)?;
            let manifest = self.find_run(&run.id)?;
            pruned.runs.insert(
                run.id.clone(),
                ChainLink {
                    id: run.id.clone(),
                    seq: manifest.seq,
                    digest,
                },
            );
        }
        // Record first: a crash after this leaves manifests that verify
        // still accepts; the reverse order would leave unexplained gaps.
        self.write_pruned_runs(&pruned)?;
        for run in &plan.runs {
            still_held()?;
            self.backend().remove(&Store::manifest_key(&run.id))?;
        }
        for (digest, _) in &plan.blobs {
            still_held()?;
            self.backend().remove(&blob::blob_key(digest)?)?;
        }
        Ok(())
    }
}

/// Runs shown as "newest backup" and chosen by default for a rollback:
/// finished, restorable, not a safety backup.
pub fn newest_backup(runs: &[RunManifest]) -> Option<&RunManifest> {
    runs.iter()
        .rev()
        .find(|m| m.is_restorable() && !m.safety && m.status == RunStatus::Succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArtifactRecord, RunKind, RunManifest, RunStatus, StepRecord, StepStatus};
    use std::io::Write;

    /// Incompressible, but the same for the same seed: chunks of ~1 MiB.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn blob(store: &Store, content: &[u8]) -> BlobInfo {
        let mut writer = store.create_blob().unwrap();
        writer.write_all(content).unwrap();
        writer.finish().unwrap()
    }

    fn record(info: BlobInfo) -> ArtifactRecord {
        ArtifactRecord {
            instance: "db".into(),
            hook: "backup".into(),
            name: "dump".into(),
            media_type: "application/sql".into(),
            labels: Vec::new(),
            blob: info,
        }
    }

    /// A finished backup naming `blobs`.
    fn backup(store: &Store, blobs: &[&BlobInfo]) -> RunManifest {
        let mut run = RunManifest::start(RunKind::Backup, "p", "e");
        let mut step = StepRecord::start("db", "backup");
        step.status = StepStatus::Succeeded;
        step.artifacts = blobs.iter().map(|b| record((*b).clone())).collect();
        run.steps.push(step);
        run.status = RunStatus::Succeeded;
        store.finish_run(&mut run).unwrap();
        run
    }

    fn keep_newest() -> RetentionPolicy {
        RetentionPolicy {
            keep_days: 0,
            keep_last: 1,
            include_safety: true,
        }
    }

    fn later(hours: i64) -> jiff::Timestamp {
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours)
    }

    fn digests(list: &[(String, u64)]) -> BTreeSet<String> {
        list.iter().map(|(d, _)| d.clone()).collect()
    }

    fn chunk_digests(store: &Store, info: &BlobInfo) -> BTreeSet<String> {
        store
            .index(info)
            .unwrap()
            .chunks
            .into_iter()
            .map(|c| c.digest)
            .collect()
    }

    #[test]
    fn orphans_are_the_blobs_nothing_names_apart_from_runs_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _lock = store.lock("test").unwrap();
        let old = blob(&store, b"the first backup");
        let kept_chunked = blob(&store, &noise(1, 6 << 20));
        assert!(kept_chunked.chunks.is_some());
        backup(&store, &[&old]);
        backup(&store, &[&kept_chunked]);
        // A rollback interrupted mid-way: its journal names a blob.
        let journaled = blob(&store, b"named by a journal only");
        let mut journal = RunManifest::start(RunKind::Rollback, "p", "e");
        let mut step = StepRecord::start("db", "restore");
        step.artifacts.push(record(journaled.clone()));
        journal.steps.push(step);
        store.write_journal(&journal).unwrap();
        // A backup that died mid-artifact: its chunks (and here its index)
        // are stored, no record names them. Plus a plain blob no one named.
        let dead = blob(&store, &noise(2, 6 << 20));
        let lone = blob(&store, b"written, never recorded");
        let mut expected = chunk_digests(&store, &dead);
        expected.insert(dead.digest.clone());
        expected.insert(lone.digest.clone());
        // Not blobs: never listed, never removed.
        let stray = dir.path().join("blobs/sha256/ab/not-a-digest");
        std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
        std::fs::write(&stray, b"?").unwrap();

        // The prune after a backup does not look.
        let plan = store.prune_plan(keep_newest(), later(48)).unwrap();
        assert!(!plan.orphans_checked && plan.orphans.is_empty(), "{plan:?}");

        let plan = store
            .prune_plan_with(keep_newest(), later(48), Orphans::OlderThan(Duration::ZERO))
            .unwrap();
        assert!(plan.orphans_checked);
        assert_eq!(digests(&plan.blobs), BTreeSet::from([old.digest.clone()]));
        assert_eq!(digests(&plan.orphans), expected, "{plan:?}");
        let sizes: u64 = plan.orphans.iter().map(|(_, n)| n).sum();
        assert_eq!(plan.orphan_bytes, sizes);
        assert_eq!(plan.bytes, old.stored_size, "orphans are not in `bytes`");
        for named in [&kept_chunked.digest, &journaled.digest] {
            assert!(!digests(&plan.orphans).contains(named));
        }
        assert!(
            chunk_digests(&store, &kept_chunked).is_disjoint(&digests(&plan.orphans)),
            "a kept run's chunks are never orphans"
        );

        store.apply_prune(&plan).unwrap();
        for digest in &expected {
            assert!(!store.has_blob(digest), "{digest}");
        }
        assert!(!store.has_blob(&old.digest));
        assert!(stray.exists());
        store.verify_blob(&kept_chunked).unwrap();
        store.verify_blob(&journaled).unwrap();
        // Nothing left to collect.
        let again = store
            .prune_plan_with(keep_newest(), later(48), Orphans::OlderThan(Duration::ZERO))
            .unwrap();
        assert!(
            again.orphans.is_empty() && again.runs.is_empty(),
            "{again:?}"
        );
    }

    #[test]
    fn young_orphans_are_counted_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let named = blob(&store, b"named");
        backup(&store, &[&named]);
        let lone = blob(&store, b"just written by a run in flight");
        let day = Orphans::OlderThan(DEFAULT_ORPHAN_GRACE);

        let plan = store.prune_plan_with(keep_newest(), later(0), day).unwrap();
        assert!(plan.orphans.is_empty(), "{plan:?}");
        assert_eq!(plan.orphans_recent, 1);
        assert_eq!(plan.orphans_recent_bytes, lone.stored_size);
        store.apply_prune(&plan).unwrap();
        assert!(store.has_blob(&lone.digest));

        // A day on, it is collected.
        let plan = store
            .prune_plan_with(keep_newest(), later(25), day)
            .unwrap();
        assert_eq!(plan.orphans, vec![(lone.digest.clone(), lone.stored_size)]);
        assert_eq!(plan.orphans_recent, 0);
        store.apply_prune(&plan).unwrap();
        assert!(!store.has_blob(&lone.digest));
        assert!(store.has_blob(&named.digest));
    }

    #[test]
    fn an_unreadable_index_of_a_kept_run_stops_the_prune_before_any_orphan_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let chunked = blob(&store, &noise(3, 6 << 20));
        backup(&store, &[&chunked]);
        let lone = blob(&store, b"orphan");
        std::fs::remove_file(dir.path().join(blob::blob_key(&chunked.digest).unwrap())).unwrap();
        let err = store
            .prune_plan_with(keep_newest(), later(48), Orphans::OlderThan(Duration::ZERO))
            .unwrap_err();
        assert!(err.to_string().contains("nothing is pruned"), "{err}");
        assert!(store.has_blob(&lone.digest));
    }

    #[test]
    fn the_chunks_of_a_removed_runs_damaged_index_are_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let chunked = blob(&store, &noise(4, 6 << 20));
        let chunks = chunk_digests(&store, &chunked);
        backup(&store, &[&chunked]);
        let newer = blob(&store, b"newer");
        backup(&store, &[&newer]);
        std::fs::write(
            dir.path().join(blob::blob_key(&chunked.digest).unwrap()),
            b"damaged",
        )
        .unwrap();
        let plan = store
            .prune_plan_with(keep_newest(), later(48), Orphans::OlderThan(Duration::ZERO))
            .unwrap();
        assert_eq!(plan.runs.len(), 1);
        assert_eq!(
            digests(&plan.blobs),
            BTreeSet::from([chunked.digest.clone()])
        );
        assert_eq!(digests(&plan.orphans), chunks);
        store.apply_prune(&plan).unwrap();
        assert!(chunks.iter().all(|c| !store.has_blob(c)));
        store.verify_blob(&newer).unwrap();
    }
}
