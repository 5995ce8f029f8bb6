//! `verify` (re-hash blobs, walk the manifest chain) and `prune`
//! (retention), both over the finished runs of a store.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

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

    /// What `prune` would remove under `policy` at time `now`.
    pub fn prune_plan(
        &self,
        policy: RetentionPolicy,
        now: jiff::Timestamp,
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
        Ok(plan)
    }

    /// Remove what `plan` lists. Call with the store lock held. Manifests
    /// go first (recorded in `pruned.json` so the chain still verifies),
    /// then the blobs no one refers to any more.
    pub fn apply_prune(&self, plan: &PrunePlan) -> io::Result<()> {
        if plan.runs.is_empty() {
            return Ok(());
        }
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
            self.backend().remove(&Store::manifest_key(&run.id))?;
        }
        for (digest, _) in &plan.blobs {
            self.backend().remove(&blob::blob_key(digest))?;
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
