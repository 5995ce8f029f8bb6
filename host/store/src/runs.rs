//! Run manifests: one JSON file per finished run, hash-chained.
//!
//! A run in progress lives in `journal/<id>.json`, rewritten atomically
//! before and after every step, so a crash leaves a record of exactly where
//! it stopped. Finishing a run assigns it the next sequence number, links it
//! to the previous manifest by that file's sha256, writes
//! `runs/<id>.json`, moves `HEAD` to it and only then removes the journal.
//! `docs/store-format.md` is the format's specification.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ArtifactRecord, FormatError, Store, write_atomic};
use rewind_core::CallError;

/// The manifest format written by this version.
pub const MANIFEST_FORMAT: &str = "rewind.run/1";

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Backed up.
    Backup,
    /// Rolled back.
    Rollback,
    /// A guarded deploy.
    Guard,
}

impl RunKind {
    /// `backup`, `rollback`, `guard`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Rollback => "rollback",
            RunKind::Guard => "guard",
        }
    }
}

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// In the journal: not finished (or its process died).
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed or the run could not finish.
    Failed,
    /// Its process died; closed by a later run.
    Interrupted,
}

impl RunStatus {
    /// `running`, `succeeded`, `failed`, `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// How a step ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Not finished yet (or its run was interrupted).
    Running,
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed,
    /// Rollback: a planned step `rollback --resume --skip` passed over.
    Skipped,
}

impl StepStatus {
    /// `running`, `succeeded`, `failed`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// The link from a manifest to the one finished before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The run's id.
    pub id: String,
    /// Its position in the chain.
    pub seq: u64,
    /// sha256 of the previous manifest file's bytes.
    pub digest: String,
}

/// The plugin a step ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    /// The plugin file.
    pub source: String,
    /// Its sha256.
    pub sha256: String,
}

/// One health check as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The check's name.
    pub name: String,
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: String,
    /// What it saw.
    pub detail: String,
    /// How long it took.
    pub latency_ms: u64,
}

/// One step of a run: a hook call, the deploy command, or a health check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Plugin instance, or `deploy` for guard's deploy command.
    pub instance: String,
    /// backup, restore, revert, health, notify, or `command`.
    pub hook: String,
    /// The plugin file and digest the step ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginRef>,
    /// Running, succeeded or failed.
    pub status: StepStatus,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took.
    #[serde(default)]
    pub duration_ms: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallError>,
    /// Artifacts the step wrote (backup) or was given (restore, revert).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactRecord>,
    /// restore, revert: the report's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// restore, revert: the report's details.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
    /// health: each check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRecord>,
    /// For `deploy`: the command line and its exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// For `deploy`: the command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What the plugin logged at info and above (at most 200 lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<rewind_core::LogLine>,
    /// A rollback step run because the step of this instance failed (its
    /// `fallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
}

impl StepRecord {
    /// A step that is starting now.
    pub fn start(instance: &str, hook: &str) -> Self {
        StepRecord {
            instance: instance.to_string(),
            hook: hook.to_string(),
            plugin: None,
            status: StepStatus::Running,
            started_at: jiff::Timestamp::now().to_string(),
            duration_ms: 0,
            error: None,
            artifacts: Vec::new(),
            summary: None,
            details: Vec::new(),
            checks: Vec::new(),
            command: None,
            exit_code: None,
            logs: Vec::new(),
            fallback_for: None,
        }
    }
}

/// A step a rollback plans to run, recorded up front so that a resumed run
/// follows the same plan even if the config changed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// The instance the step runs.
    pub instance: String,
    /// The hook it calls.
    pub hook: String,
    /// What runs if this step fails: the fallback instance and its hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<PlannedStep>>,
    /// `stop` or `continue` after this step (and its fallback) failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

/// Everything recorded about one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    /// Artifact bytes this run's calls stored so far, returned or not; for
    /// the per-run quota while the run lasts (not recorded).
    #[serde(skip)]
    pub stored_bytes: u64,
    /// The manifest format (`rewind.run/1`).
    pub format: String,
    /// The run id (a timestamp, unique in the store).
    pub id: String,
    /// Backup, rollback or guard.
    pub kind: RunKind,
    /// Position in the chain, from 1; 0 while in the journal.
    pub seq: u64,
    /// The newest run before it, on the hash chain; `None` for the first.
    pub previous: Option<ChainLink>,
    /// The project of the config.
    pub project: String,
    /// The environment of the config.
    pub environment: String,
    /// The host it ran on.
    pub host: String,
    /// The rewind version that ran it.
    pub rewind_version: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// Why it failed or could not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `--label`: what the operator called it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `--deploy-id`: the fleet-wide deploy this run belongs to (a guard
    /// and its backup, or a backup taken for it), so that
    /// `rollback --deploy-id` on every host finds the backup that deploy
    /// took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_id: Option<String>,
    /// The named chain it ran (`--chain`), when not the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// A backup taken automatically before a rollback.
    #[serde(default)]
    pub safety: bool,
    /// Rollback: the backup run whose artifacts it restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run: Option<String>,
    /// Rollback: the safety backup taken before its first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_run: Option<String>,
    /// Guard: the backup run it took before deploying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_run: Option<String>,
    /// Guard: the rollback run it started, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_run: Option<String>,
    /// Guard: deployed, rolled-back, rollback-failed, deploy-failed, backup-failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Rollback: the steps it will run, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedStep>,
    /// Rollback: the failed rollback run this one continues
    /// (`rollback --resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumes: Option<String>,
    /// Rollback: the instances `--only` restricted the chain to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    /// Its steps, in order.
    pub steps: Vec<StepRecord>,
}

impl RunManifest {
    /// A run starting now.
    pub fn start(kind: RunKind, project: &str, environment: &str) -> Self {
        RunManifest {
            stored_bytes: 0,
            format: MANIFEST_FORMAT.to_string(),
            id: new_run_id(),
            kind,
            seq: 0,
            previous: None,
            project: project.to_string(),
            environment: environment.to_string(),
            host: super::hostname(),
            rewind_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: jiff::Timestamp::now().to_string(),
            finished_at: None,
            status: RunStatus::Running,
            error: None,
            label: None,
            deploy_id: None,
            chain: None,
            safety: false,
            source_run: None,
            safety_run: None,
            backup_run: None,
            rollback_run: None,
            outcome: None,
            plan: Vec::new(),
            resumes: None,
            only: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// All artifacts the run's steps wrote (for a backup) in step order.
    pub fn artifacts(&self) -> impl Iterator<Item = &ArtifactRecord> {
        self.steps
            .iter()
            .filter(|s| s.hook == "backup")
            .flat_map(|s| s.artifacts.iter())
    }

    /// Can a rollback restore from this run? A backup that finished.
    /// The run's status as an operator reads it: a guard whose deploy
    /// failed but whose rollback restored a healthy state "rolled back",
    /// not "failed" (its manifest status stays `failed`: the deploy did).
    pub fn status_text(&self) -> &'static str {
        if self.kind == RunKind::Guard && self.outcome.as_deref() == Some("rolled-back") {
            "rolled back"
        } else {
            self.status.as_str()
        }
    }

    /// A finished backup whose every step succeeded: rollback can use it.
    pub fn is_restorable(&self) -> bool {
        self.kind == RunKind::Backup && self.status == RunStatus::Succeeded
    }

    /// The step a journal stopped in (or after), for `status`.
    pub fn last_step(&self) -> Option<&StepRecord> {
        self.steps.last()
    }

    /// `started_at`, parsed.
    pub fn started(&self) -> Option<jiff::Timestamp> {
        self.started_at.parse().ok()
    }
}

/// The record of runs removed by `prune`, so that `verify` can tell a
/// pruned link from a deleted one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PrunedRuns {
    /// Run id → sha256 of its manifest when it was pruned.
    pub runs: BTreeMap<String, ChainLink>,
}

/// `HEAD`: the newest finished manifest, so deleting it is detectable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The previous run's id.
    pub id: String,
    /// Its position in the chain.
    pub seq: u64,
    /// The sha256 of its manifest file.
    pub digest: String,
}

/// A new run id: UTC time to the second plus 4 random hex digits, so ids
/// sort by time and two runs in one second still differ.
pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    let mut bytes = [0u8; 2];
    getrandom(&mut bytes);
    format!("{}-{}", now.strftime("%Y%m%d-%H%M%S"), hex::encode(bytes))
}

pub(crate) fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let mix = nanos ^ std::process::id().rotate_left(16);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (mix >> (8 * (i % 4))) as u8;
        }
    }
}

fn manifest_bytes(manifest: &RunManifest) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parse a manifest or journal file, refusing a `format` other than
/// [`MANIFEST_FORMAT`] before reading any other field.
pub fn parse_manifest(path: &std::path::Path, bytes: &[u8]) -> io::Result<RunManifest> {
    let invalid = |err: serde_json::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a valid run manifest: {err}", path.display()),
        )
    };
    /// Only the format, so that a newer manifest is named as such rather
    /// than reported as invalid by the fields it changed.
    #[derive(Deserialize)]
    struct Format {
        format: Option<serde_json::Value>,
    }
    let Format { format } = serde_json::from_slice(bytes).map_err(invalid)?;
    match format {
        Some(serde_json::Value::String(f)) if f == MANIFEST_FORMAT => {}
        // Missing: the full parse below names the field.
        None => {}
        Some(found) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                FormatError::Manifest {
                    path: path.to_path_buf(),
                    found: shortened(found.to_string()),
                },
            ));
        }
    }
    serde_json::from_slice(bytes).map_err(invalid)
}

/// At most 80 characters of `text`, for quoting a value from a file.
fn shortened(text: String) -> String {
    if text.chars().count() <= 80 {
        return text;
    }
    let mut short: String = text.chars().take(79).collect();
    short.push('…');
    short
}

impl Store {
    pub(crate) fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub(crate) fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    fn head_path(&self) -> PathBuf {
        self.root.join("HEAD")
    }

    fn pruned_path(&self) -> PathBuf {
        self.root.join("pruned.json")
    }

    /// Record a run in progress (atomically replacing its previous record).
    pub fn write_journal(&self, manifest: &RunManifest) -> io::Result<()> {
        write_atomic(
            &self.journal_dir().join(format!("{}.json", manifest.id)),
            &manifest_bytes(manifest)?,
        )
    }

    /// Runs in the journal: in progress, or interrupted by a crash.
    pub fn journals(&self) -> io::Result<Vec<RunManifest>> {
        let mut out = Vec::new();
        for path in json_files(&self.journal_dir())? {
            let manifest = parse_manifest(&path, &fs::read(&path)?)?;
            if self.manifest_path(&manifest.id).exists() {
                // Finished, but the process died before removing the journal.
                let _ = fs::remove_file(&path);
                continue;
            }
            out.push(manifest);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Finish a run: chain it to the newest manifest and make it visible.
    /// Must be called with the store lock held.
    pub fn finish_run(&self, manifest: &mut RunManifest) -> io::Result<()> {
        let head = self.head()?;
        manifest.seq = head.as_ref().map_or(1, |h| h.seq + 1);
        manifest.previous = head.map(|h| ChainLink {
            id: h.id,
            seq: h.seq,
            digest: h.digest,
        });
        if manifest.finished_at.is_none() {
            manifest.finished_at = Some(jiff::Timestamp::now().to_string());
        }
        let bytes = manifest_bytes(manifest)?;
        write_atomic(&self.manifest_path(&manifest.id), &bytes)?;
        let head = Head {
            id: manifest.id.clone(),
            seq: manifest.seq,
            digest: rewind_core::sha256_hex(&bytes),
        };
        write_atomic(
            &self.head_path(),
            &serde_json::to_vec_pretty(&head).map_err(io::Error::other)?,
        )?;
        let journal = self.journal_dir().join(format!("{}.json", manifest.id));
        match fs::remove_file(&journal) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    pub(crate) fn manifest_path(&self, id: &str) -> PathBuf {
        self.runs_dir().join(format!("{id}.json"))
    }

    /// The newest finished run, as `HEAD` records it.
    pub fn head(&self) -> io::Result<Option<Head>> {
        match fs::read(self.head_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("HEAD: {err}"))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every finished run, oldest first (by sequence number).
    pub fn runs(&self) -> io::Result<Vec<RunManifest>> {
        let mut out = Vec::new();
        for path in json_files(&self.runs_dir())? {
            out.push(parse_manifest(&path, &fs::read(&path)?)?);
        }
        out.sort_by_key(|m| m.seq);
        Ok(out)
    }

    /// A finished run by id, or by a prefix that names exactly one run.
    pub fn find_run(&self, id_or_prefix: &str) -> io::Result<RunManifest> {
        let exact = self.manifest_path(id_or_prefix);
        if exact.is_file() {
            return parse_manifest(&exact, &fs::read(&exact)?);
        }
        let runs = self.runs()?;
        let matches: Vec<&RunManifest> = runs
            .iter()
            .filter(|m| m.id.starts_with(id_or_prefix))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no run `{id_or_prefix}` in the store {} (`rewind history` lists the runs)",
                    self.root.display()
                ),
            )),
            many => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{id_or_prefix}` matches {} runs ({}); give more of the id",
                    many.len(),
                    many.iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// The raw bytes of a finished manifest and their sha256.
    pub fn manifest_file(&self, id: &str) -> io::Result<(Vec<u8>, String)> {
        let bytes = fs::read(self.manifest_path(id))?;
        let digest = rewind_core::sha256_hex(&bytes);
        Ok((bytes, digest))
    }

    /// What prune removed so far (`pruned.json`).
    pub fn pruned_runs(&self) -> io::Result<PrunedRuns> {
        match fs::read(self.pruned_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                io::Error::new(io::ErrorKind::InvalidData, format!("pruned.json: {err}"))
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(PrunedRuns::default()),
            Err(err) => Err(err),
        }
    }

    pub(crate) fn write_pruned_runs(&self, pruned: &PrunedRuns) -> io::Result<()> {
        write_atomic(
            &self.pruned_path(),
            &serde_json::to_vec_pretty(pruned).map_err(io::Error::other)?,
        )
    }
}

/// `*.json` files directly in `dir` (none if it does not exist).
fn json_files(dir: &std::path::Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Temp files of atomic writes start with a dot.
        if name.ends_with(".json") && !name.starts_with('.') {
            out.push(path);
        }
    }
    Ok(out)
}

/// Whether `id` can be a deploy id: 1–128 characters of `A-Z a-z 0-9 . _ -`
/// (what a CI system's build number, a git sha or a tag looks like; safe in
/// file names, logs and shell commands).
pub fn valid_deploy_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The newest backup run of the deploy `deploy_id` that can be restored
/// from (it succeeded).
pub fn deploy_backup<'a>(runs: &'a [RunManifest], deploy_id: &str) -> Option<&'a RunManifest> {
    runs.iter()
        .rev()
        .filter(|r| r.deploy_id.as_deref() == Some(deploy_id))
        .find(|r| r.is_restorable())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with one finished backup; returns it and the manifest's path.
    fn store_with_a_run() -> (tempfile::TempDir, Store, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut run = RunManifest::start(RunKind::Backup, "shop", "test");
        run.status = RunStatus::Succeeded;
        store.finish_run(&mut run).unwrap();
        let path = store.manifest_path(&run.id);
        (dir, store, path)
    }

    fn set_format(path: &std::path::Path, format: &str) {
        let text = fs::read_to_string(path).unwrap();
        let needle = format!("\"format\": \"{MANIFEST_FORMAT}\"");
        assert!(text.contains(&needle), "{text}");
        fs::write(
            path,
            text.replace(&needle, &format!("\"format\": {format}")),
        )
        .unwrap();
    }

    #[test]
    fn manifests_record_and_accept_this_format() {
        let (_dir, store, path) = store_with_a_run();
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].format, MANIFEST_FORMAT);
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .contains("\"format\": \"rewind.run/1\"")
        );
    }

    #[test]
    fn a_manifest_of_a_newer_format_is_refused_naming_the_file_and_both_formats() {
        let (_dir, store, path) = store_with_a_run();
        let id = store.runs().unwrap()[0].id.clone();
        set_format(&path, "\"rewind.run/9\"");
        for err in [
            store.runs().unwrap_err(),
            store.find_run(&id).unwrap_err(),
            store.find_run(&id[..8]).unwrap_err(),
        ] {
            assert!(
                matches!(FormatError::of(&err), Some(FormatError::Manifest { .. })),
                "{err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string())
                    && message.contains("\"rewind.run/9\"")
                    && message.contains("reads format \"rewind.run/1\"")
                    && message.contains("upgrade rewind"),
                "{message}"
            );
        }
        // verify refuses too, rather than reporting a broken chain.
        assert!(FormatError::of(&store.verify(None, &|_| {}).unwrap_err()).is_some());
    }

    #[test]
    fn a_manifest_whose_format_is_not_ours_is_refused_even_if_it_parses() {
        for format in ["\"rewind.run/0\"", "\"something/1\"", "1"] {
            let (_dir, store, path) = store_with_a_run();
            set_format(&path, format);
            let err = store.runs().unwrap_err();
            let message = err.to_string();
            assert!(FormatError::of(&err).is_some(), "{message}");
            assert!(
                message.contains(&format!("has manifest format {format}"))
                    && !message.contains("newer"),
                "{format}: {message}"
            );
        }
    }

    #[test]
    fn a_manifest_without_a_format_is_invalid() {
        let (_dir, store, path) = store_with_a_run();
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace(&format!("\"format\": \"{MANIFEST_FORMAT}\","), "");
        fs::write(&path, text).unwrap();
        let message = store.runs().unwrap_err().to_string();
        assert!(
            message.contains("is not a valid run manifest") && message.contains("format"),
            "{message}"
        );
    }

    #[test]
    fn a_journal_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = RunManifest::start(RunKind::Rollback, "shop", "test");
        store.write_journal(&run).unwrap();
        assert_eq!(store.journals().unwrap().len(), 1);
        let path = store.journal_dir().join(format!("{}.json", run.id));
        set_format(&path, "\"rewind.run/2\"");
        let message = store.journals().unwrap_err().to_string();
        assert!(
            message.contains(&path.display().to_string())
                && message.contains("manifest format \"rewind.run/2\"")
                && message.contains("upgrade rewind"),
            "{message}"
        );
        // Still there: refused, not recovered or removed.
        assert!(path.exists());
    }

    #[test]
    fn a_long_format_value_is_shortened() {
        let (_dir, store, path) = store_with_a_run();
        set_format(&path, &format!("\"{}\"", "x".repeat(500)));
        let message = store.runs().unwrap_err().to_string();
        assert!(message.contains('…') && message.len() < 400, "{message}");
    }
}
