//! `rewind-store`: the artifact store, checksummed blobs and the records
//! that name them (run manifests, the journal, the lock, verify and prune).
//! It depends on `rewind-core` only, and never on wasmtime: what a run
//! recorded can be read, verified and pruned without the sandbox
//! (ARCHITECTURE.md's dependency check enforces it).
//!
//! The local directory store is the embedded default. Its layout:
//!
//! ```text
//! <root>/blobs/sha256/<2 hex>/<sha256>   zstd-compressed content, 0600
//! <root>/tmp/                            blobs being written (never read)
//! <root>/runs/<run id>.json              finished runs, hash-chained
//! <root>/journal/<run id>.json           runs in progress (or interrupted)
//! <root>/HEAD                            the newest finished run
//! <root>/pruned.json                     runs removed by prune
//! <root>/lock                            the holder of the one-run lock
//! <root>/events.jsonl                    the event log
//! <root>/VERSION                         the store format (`1`)
//! ```
//!
//! See `docs/store-format.md` for the complete format.

#![deny(missing_docs)]

mod blob;
mod check;
mod lock;
mod runs;
mod version;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use blob::{BlobInfo, BlobReader, BlobWriter, Quota};
pub use blob::{create_private_dir, write_atomic};
pub use check::{Problem, PrunePlan, PrunedRun, RetentionPolicy, VerifyReport, newest_backup};
pub use lock::{DEFAULT_LEASE, LockError, LockHolder, StoreLock, hostname, lease_length};
pub use runs::{
    ChainLink, CheckRecord, Head, MANIFEST_FORMAT, PlannedStep, PluginRef, PrunedRuns, RunKind,
    RunManifest, RunStatus, StepRecord, StepStatus, deploy_backup, new_run_id, parse_manifest,
    valid_deploy_id,
};
pub use version::{FormatError, STORE_FORMAT, VERSION_FILE};

/// One artifact as recorded in a run: who made it, what it is, its blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Plugin instance that produced it.
    pub instance: String,
    /// Hook that produced it ("backup").
    pub hook: String,
    /// The artifact's name within the step (`dump`).
    pub name: String,
    /// Its media type (`application/sql`).
    pub media_type: String,
    /// Labels the plugin attached.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// The blob holding its content.
    #[serde(flatten)]
    pub blob: BlobInfo,
}

/// A local directory store. Clones share one byte meter.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Uncompressed bytes written to and read from blobs through this
    /// store, so a terminal can show progress of a step it cannot see into.
    meter: Arc<AtomicU64>,
}

impl Store {
    /// Open (creating if needed) a store rooted at `root`.
    ///
    /// A store whose `VERSION` names another store format is refused (a
    /// [`FormatError`] inside the error) before anything in it changes; a
    /// new store, or one from before `VERSION` existed, gets the file.
    pub fn open(root: &Path) -> io::Result<Self> {
        create_private_dir(root)?;
        version::check_or_write(root)?;
        create_private_dir(&root.join("blobs"))?;
        create_private_dir(&root.join("tmp"))?;
        Ok(Store {
            root: root.to_path_buf(),
            meter: Arc::default(),
        })
    }

    /// Uncompressed blob bytes moved so far (written plus read).
    pub fn bytes_moved(&self) -> u64 {
        self.meter.load(Ordering::Relaxed)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Start writing a new blob.
    pub fn create_blob(&self) -> io::Result<BlobWriter> {
        BlobWriter::new(&self.root.join("tmp"), &self.blobs_dir())
            .map(|w| w.metered(self.meter.clone()))
    }

    /// Open a blob for reading, verified as it streams.
    pub fn open_blob(&self, blob: &BlobInfo) -> io::Result<BlobReader<'static>> {
        BlobReader::open(&self.blobs_dir(), blob).map(|r| r.metered(self.meter.clone()))
    }

    /// Re-read a blob end to end and check both digests.
    pub fn verify_blob(&self, blob: &BlobInfo) -> io::Result<()> {
        self.verify_blob_with(blob, &|_| {})
    }

    /// [`Store::verify_blob`] in one pass over the stored file (hashing it
    /// as it feeds the decompressor), reporting stored bytes read.
    pub fn verify_blob_with(
        &self,
        blob: &BlobInfo,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<()> {
        let path = blob::blob_path(&self.blobs_dir(), &blob.digest);
        let file = std::fs::File::open(&path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        let mut stored = blob::HashingReader::new(file, progress);
        let mut content = BlobReader::from_reader(&mut stored, blob)?;
        io::copy(&mut content, &mut io::sink())?;
        drop(content);
        let (stored_digest, stored_size) = stored.finish();
        if stored_digest != blob.stored_digest || stored_size != blob.stored_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "checksum mismatch: the stored file ({stored_size} bytes) hashes to {stored_digest}, recorded {} ({} bytes)",
                    blob.stored_digest, blob.stored_size
                ),
            ));
        }
        Ok(())
    }

    /// Does the store hold this blob at all?
    pub fn has_blob(&self, digest: &str) -> bool {
        blob::blob_path(&self.blobs_dir(), digest).is_file()
    }

    /// Can this process create and remove files in the store?
    pub fn check_writable(&self) -> io::Result<()> {
        let probe = self
            .root
            .join("tmp")
            .join(format!("probe-{}", blob::unique_suffix()));
        blob::create_private(&probe)?;
        std::fs::remove_file(&probe)
    }

    /// The event log.
    pub fn events_path(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }
}

/// Where the store lives when the config does not say: `$REWIND_STORE`,
/// else `$XDG_DATA_HOME/rewind/store`, else `~/.local/share/rewind/store`.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("REWIND_STORE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("rewind").join("store")
}

/// Resolve a store URL from config (`file:///path` or `/path`), relative to nothing.
pub fn root_from_url(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}
