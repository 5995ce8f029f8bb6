//! The artifact store: checksummed blobs and the records that name them.
//!
//! The local directory store is the embedded default. Its layout:
//!
//! ```text
//! <root>/blobs/sha256/<2 hex>/<sha256>   zstd-compressed content, 0600
//! <root>/tmp/                            blobs being written (never read)
//! ```
//!
//! See `docs/store-format.md` for the complete format.

mod blob;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use blob::{BlobInfo, BlobReader, BlobWriter};
pub(crate) use blob::{create_private_dir, write_atomic};

/// One artifact as recorded in a run: who made it, what it is, its blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Plugin instance that produced it.
    pub instance: String,
    /// Hook that produced it ("backup").
    pub hook: String,
    pub name: String,
    pub media_type: String,
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    #[serde(flatten)]
    pub blob: BlobInfo,
}

/// A local directory store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        create_private_dir(root)?;
        create_private_dir(&root.join("blobs"))?;
        create_private_dir(&root.join("tmp"))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Start writing a new blob.
    pub fn create_blob(&self) -> io::Result<BlobWriter> {
        BlobWriter::new(&self.root.join("tmp"), &self.blobs_dir())
    }

    /// Open a blob for reading, verified as it streams.
    pub fn open_blob(&self, blob: &BlobInfo) -> io::Result<BlobReader> {
        BlobReader::open(&self.blobs_dir(), blob)
    }

    /// Re-read a blob end to end and check both digests.
    pub fn verify_blob(&self, blob: &BlobInfo) -> io::Result<()> {
        let path = blob::blob_path(&self.blobs_dir(), &blob.digest);
        let stored = blob::hash_file(&path)?;
        if stored != blob.stored_digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "checksum mismatch: stored file of blob {} hashes to {stored}, recorded {}",
                    blob.digest, blob.stored_digest
                ),
            ));
        }
        io::copy(&mut self.open_blob(blob)?, &mut io::sink())?;
        Ok(())
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
