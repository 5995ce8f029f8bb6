//! `rewind-store`: the artifact store, checksummed blobs and the records
//! that name them (run manifests, the journal, the lock, verify and prune).
//! It depends on `rewind-core` only, and never on wasmtime: what a run
//! recorded can be read, verified and pruned without the sandbox
//! (ARCHITECTURE.md's dependency check enforces it).
//!
//! The local directory store is the embedded default. Its layout:
//!
//! ```text
//! <root>/blobs/sha256/<2 hex>/<sha256>   zstd-compressed content (an artifact,
//!                                        a chunk of one, or a chunk index), 0600
//! <root>/tmp/                            blobs being written (never read)
//! <root>/runs/<run id>.json              finished runs, hash-chained
//! <root>/journal/<run id>.json           runs in progress (or interrupted)
//! <root>/HEAD                            the newest finished run
//! <root>/pruned.json                     runs removed by prune
//! <root>/lock                            the holder of the one-run lock
//! <root>/events.jsonl                    the event log
//! <root>/VERSION                         the store format (`2`)
//! ```
//!
//! A store on S3 (`s3://bucket/prefix`, [`StoreLocation::S3`]) holds the
//! same keys as objects under the prefix, with the same semantics: the
//! store's logic (blobs, manifests and the chain, the lease, verify and
//! prune) is written once against a backend (`backend.rs`: the directory,
//! `s3.rs`: S3 through `object_store`).
//!
//! A fleet shares one root, with each host's store under `hosts/<host>/`
//! (`fleet.rs`, [`Fleet`]).
//!
//! See `docs/store-format.md` for the complete format.

#![deny(missing_docs)]

mod backend;
mod blob;
mod check;
mod chunk;
mod fleet;
mod lock;
mod runs;
mod s3;
mod version;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use backend::Backend;

pub use blob::{BlobInfo, BlobReader, BlobWriter, Chunks, Quota};
pub use blob::{create_private_dir, write_atomic};
pub use check::{
    DEFAULT_ORPHAN_GRACE, Orphans, Problem, PrunePlan, PrunedRun, RetentionPolicy, VerifyReport,
    newest_backup,
};
pub use fleet::{
    Checked, Fleet, FleetStatus, HOSTS_DIR, HostSource, HostStatus, Lease, RunSummary,
    check_host_name, default_host_name,
};
pub use lock::{
    DEFAULT_LEASE, LeaseCheck, LockError, LockHolder, StoreLock, hostname, lease_length,
};
pub use runs::{
    ChainLink, CheckRecord, Head, MANIFEST_FORMAT, PlannedStep, PluginRef, PrunedRuns, RunKind,
    RunManifest, RunStatus, StepRecord, StepStatus, deploy_backup, new_run_id, parse_manifest,
    valid_deploy_id,
};
pub use s3::{S3Location, parse_s3_url};
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

/// Where a store is: a local directory, or a bucket and prefix on S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory (`file:///var/lib/rewind`).
    Local(PathBuf),
    /// `s3://bucket/prefix` with its connection settings.
    S3(S3Location),
}

impl StoreLocation {
    /// The location as people read it: a path or an `s3://` URL.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Local(root) => root.display().to_string(),
            StoreLocation::S3(s3) => s3.url(),
        }
    }
}

/// The artifact store, local or on S3 (the same semantics on both). Clones
/// share the backend and one byte meter.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// Uncompressed bytes written to and read from blobs through this
    /// store, so a terminal can show progress of a step it cannot see into.
    meter: Arc<AtomicU64>,
    /// The chunks the store's runs record, read once, when the first
    /// blob is written (so that a chunk already stored is not stored
    /// again).
    known: Arc<OnceLock<Arc<chunk::Known>>>,
}

impl Store {
    /// Open (creating if needed) a store rooted at `root`.
    ///
    /// A store whose `VERSION` names another store format is refused (a
    /// [`FormatError`] inside the error) before anything in it changes; a
    /// new store, or one from before `VERSION` existed, gets the file.
    pub fn open(root: &Path) -> io::Result<Self> {
        Ok(Store::with_backend(Arc::new(backend::Local::open(root)?)))
    }

    /// Open (creating if needed) the store at `location`: a directory as
    /// [`Store::open`], or a bucket and prefix on S3 (the bucket must
    /// exist; `VERSION` is checked or written as for a directory).
    pub fn open_at(location: &StoreLocation) -> io::Result<Self> {
        match location {
            StoreLocation::Local(root) => Store::open(root),
            StoreLocation::S3(s3) => Ok(Store::with_backend(Arc::new(s3::S3::open(s3)?.shared()))),
        }
    }

    /// Would opening `location` create a new store: is nothing there that
    /// [`Store::open_at`] reads (a `VERSION`, what a store from before
    /// `VERSION` has, or a fleet store's `hosts/`, which it refuses)?
    /// Creates and writes nothing: for `rewind check`, which leaves no trace.
    pub fn is_new_at(location: &StoreLocation) -> io::Result<bool> {
        let backend: Box<dyn Backend> = match location {
            StoreLocation::Local(root) => Box::new(backend::Local::at(root)),
            StoreLocation::S3(s3) => Box::new(s3::S3::connect(s3)?),
        };
        if backend.exists(version::VERSION_FILE)? {
            return Ok(false);
        }
        for name in ["HEAD", "runs", "blobs", HOSTS_DIR] {
            if backend.has_entry(name)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn with_backend(backend: Arc<dyn Backend>) -> Self {
        Store {
            backend,
            meter: Arc::default(),
            known: Arc::default(),
        }
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Uncompressed blob bytes moved so far (written plus read).
    pub fn bytes_moved(&self) -> u64 {
        self.meter.load(Ordering::Relaxed)
    }

    /// The store's directory; for a store on S3 its `s3://bucket/prefix`
    /// URL (as a path, for messages: there is no local directory).
    pub fn root(&self) -> &Path {
        self.backend.root()
    }

    /// Is the store a local directory (and [`Store::root`] a real path)?
    pub fn is_local(&self) -> bool {
        !self.root().starts_with("s3:")
    }

    /// Start writing a new blob.
    pub fn create_blob(&self) -> io::Result<BlobWriter> {
        Ok(BlobWriter::new(self.backend.clone(), self.known_chunks()).metered(self.meter.clone()))
    }

    /// The chunks (and plain blobs) the store's runs record, with their
    /// stored digests. A run or index that cannot be read only makes
    /// fewer chunks known: those are then checked in the store or
    /// written again.
    fn known_chunks(&self) -> Arc<chunk::Known> {
        self.known
            .get_or_init(|| {
                let known = chunk::Known::default();
                let runs = self.runs().unwrap_or_default();
                let journals = self.journals().unwrap_or_default();
                for record in runs.iter().chain(&journals).flat_map(|m| m.artifacts()) {
                    let blob = &record.blob;
                    if blob.chunks.is_none() {
                        known.insert(blob);
                    } else if let Ok(index) = chunk::read_index(self.backend(), blob) {
                        index.chunks.iter().for_each(|c| known.insert(c));
                    }
                }
                Arc::new(known)
            })
            .clone()
    }

    fn open_stored(&self, blob: &BlobInfo) -> io::Result<Box<dyn io::Read + Send>> {
        let key = blob::blob_key(&blob.digest)?;
        self.backend.open_read(&key).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "blob {} ({}): {err}",
                    blob.digest,
                    self.backend.display(&key).display()
                ),
            )
        })
    }

    /// The chunks of a chunked artifact, from its index (read and
    /// verified whole).
    pub(crate) fn index(&self, blob: &BlobInfo) -> io::Result<chunk::Index> {
        chunk::read_index(self.backend(), blob)
    }

    /// Open a blob for reading, verified as it streams.
    pub fn open_blob(&self, blob: &BlobInfo) -> io::Result<BlobReader<'static>> {
        let reader = if blob.chunks.is_some() {
            BlobReader::chunked(self.backend.clone(), blob, self.index(blob)?)?
        } else {
            BlobReader::from_reader(self.open_stored(blob)?, blob)?
        };
        Ok(reader.metered(self.meter.clone()))
    }

    /// Re-read a blob end to end and check both digests.
    pub fn verify_blob(&self, blob: &BlobInfo) -> io::Result<()> {
        self.verify_blob_with(blob, &|_| {})
    }

    /// [`Store::verify_blob`]: every stored byte hashed against its
    /// recorded digest and every content byte against its digest (for a
    /// plain blob in one pass over the stored file, hashing it as it feeds
    /// the decompressor; for a chunked artifact its index, then its
    /// chunks on several threads), reporting stored bytes read.
    pub fn verify_blob_with(
        &self,
        blob: &BlobInfo,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<()> {
        self.check_blob(blob, chunk::Depth::Content, progress)
    }

    /// What a restore checks before it begins: that the stored bytes of
    /// the artifact (its blob, or its index and every chunk) hash to the
    /// digests recorded when they were written. That proves them intact at
    /// a fraction of [`Store::verify_blob_with`]'s cost (no
    /// decompression; compressed bytes are fewer), and the restore checks
    /// each content digest as it streams.
    pub fn check_stored(&self, blob: &BlobInfo, progress: &(dyn Fn(u64) + Sync)) -> io::Result<()> {
        self.check_blob(blob, chunk::Depth::Stored, progress)
    }

    fn check_blob(
        &self,
        blob: &BlobInfo,
        depth: chunk::Depth,
        progress: &(dyn Fn(u64) + Sync),
    ) -> io::Result<()> {
        if blob.chunks.is_some() {
            let index = self.index(blob)?;
            progress(blob.stored_size);
            let chunks: Vec<&BlobInfo> = index.chunks.iter().collect();
            return match chunk::check_all(self.backend(), &chunks, depth, progress)
                .into_iter()
                .next()
            {
                Some((_, err)) => Err(err),
                None => Ok(()),
            };
        }
        let file = self.open_stored(blob)?;
        let mut stored = blob::HashingReader::new(file, progress);
        if depth == chunk::Depth::Stored {
            io::copy(&mut stored, &mut io::sink())?;
        } else {
            let mut content = BlobReader::from_reader(&mut stored, blob)?;
            io::copy(&mut content, &mut io::sink())?;
        }
        let (stored_digest, stored_size) = stored.finish();
        chunk::expect_stored(
            &format!("blob {} ({} bytes)", blob.digest, blob.size),
            blob,
            stored_size,
            &stored_digest,
        )
    }

    /// The blobs an artifact needs that the store does not hold: its blob,
    /// and for a chunked artifact each chunk its index lists (the index is
    /// read and checked; the chunks are only looked up). Presence, not
    /// content: [`Store::verify_blob`] re-hashes.
    pub fn missing_blobs(&self, blob: &BlobInfo) -> io::Result<Vec<String>> {
        if !self.has_blob(&blob.digest) {
            return Ok(vec![blob.digest.clone()]);
        }
        if blob.chunks.is_none() {
            return Ok(Vec::new());
        }
        let index = chunk::read_index(self.backend(), blob)?;
        Ok(index
            .chunks
            .iter()
            .filter(|c| !self.has_blob(&c.digest))
            .map(|c| c.digest.clone())
            .collect())
    }

    /// Does the store hold this blob at all?
    pub fn has_blob(&self, digest: &str) -> bool {
        blob::blob_key(digest)
            .and_then(|key| self.backend.exists(&key))
            .unwrap_or(false)
    }

    /// Can this process create and remove files in the store?
    pub fn check_writable(&self) -> io::Result<()> {
        self.backend.check_writable()
    }

    /// The event log of a local store (`events.jsonl`); on S3 the events
    /// are objects under `events/` (see [`Store::append_event`]).
    pub fn events_path(&self) -> PathBuf {
        self.backend.display("events.jsonl")
    }

    /// Add one event (a JSON object, without newline) to the event log:
    /// one write appending a line locally, one new object on S3.
    pub fn append_event(&self, json: &[u8]) -> io::Result<()> {
        let mut line = json.to_vec();
        line.push(b'\n');
        self.backend.append_event(&line)
    }

    /// The event log, oldest first: one JSON object per line.
    pub fn read_events(&self) -> io::Result<Vec<u8>> {
        self.backend.read_events()
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
