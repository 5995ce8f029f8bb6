//! Where a store's bytes live: the few operations the store's logic needs,
//! implemented once for a local directory ([`Local`], the on-disk format
//! of docs/store-format.md, unchanged) and once for S3 (`s3.rs`).
//!
//! Everything above this module (blobs, manifests and the chain, the
//! journal, the lease, verify and prune, the event log) is written once,
//! against [`Backend`], so both stores keep the same semantics.
//!
//! Keys are the store-relative names of docs/store-format.md
//! (`runs/<id>.json`, `blobs/sha256/ab/<digest>`, `lock`, …).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::blob::{create_private, create_private_dir, hash_file, sync_dir, unique_suffix};

/// Which version of an object a conditional operation expects: the ETag on
/// S3, the sha256 of the file's bytes locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version(pub(crate) String);

/// The bytes of a blob on their way into the store. Dropping a sink that
/// was not committed leaves nothing visible (and removes what it can).
pub(crate) trait BlobSink: Write + Send {
    /// The stored bytes are complete and their content hashes to `digest`:
    /// make them the blob `digest`, unless the store already has it. Then
    /// the existing blob is kept and its stored sha256 and size returned,
    /// or, with `replace` (it was found damaged), replaced.
    fn commit(self: Box<Self>, digest: &str, replace: bool) -> io::Result<Option<(String, u64)>>;
}

/// A blob as a listing of `blobs/` finds it (prune's orphan collection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedBlob {
    /// Its digest: the name, checked to be 64 lower-case hex digits
    /// under its own `<aa>/` directory.
    pub(crate) digest: String,
    /// Its stored size in bytes.
    pub(crate) size: u64,
    /// When it was last written (the file's mtime, the object's
    /// `LastModified`), if the backend says.
    pub(crate) modified: Option<jiff::Timestamp>,
}

/// Is `name` a blob's name: 64 lower-case hex digits?
pub(crate) fn is_digest(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The operations a store needs from where it keeps its bytes.
pub(crate) trait Backend: Send + Sync + fmt::Debug {
    /// The store's location for people: a directory or an `s3://` URL.
    fn root(&self) -> &Path;

    /// Where `key` is, for messages (a path, or an `s3://` URL as a path).
    fn display(&self, key: &str) -> PathBuf {
        self.root().join(key)
    }

    /// A small object's bytes (a manifest, `HEAD`), `None` if absent.
    fn read(&self, key: &str) -> io::Result<Option<Vec<u8>>>;

    /// Replace `key` atomically: readers see the old bytes or the new.
    fn write_atomic(&self, key: &str, bytes: &[u8]) -> io::Result<()>;

    /// Remove `key`; an absent key is not an error.
    fn remove(&self, key: &str) -> io::Result<()>;

    /// Does `key` exist?
    fn exists(&self, key: &str) -> io::Result<bool>;

    /// Does the store have anything under `name` (a file or a directory)?
    /// For recognising a store from before `VERSION`.
    fn has_entry(&self, name: &str) -> io::Result<bool>;

    /// The names directly in `dir` (not those of temp files, which start
    /// with a dot); none if it does not exist.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;

    /// The names of the directories directly in `dir` (on S3: the common
    /// prefixes below `dir/`); none if it does not exist. For a fleet
    /// store's `hosts/` (fleet.rs).
    fn list_dirs(&self, dir: &str) -> io::Result<Vec<String>>;

    /// Every blob under `blobs/sha256/`, with its stored size and
    /// modification time: for prune, which removes those no record names.
    /// Anything there that is not a blob's name at its place (a stray
    /// file, a temp file) is left out, so never removed.
    fn list_blobs(&self) -> io::Result<Vec<ListedBlob>>;

    /// Start a new blob.
    fn blob_sink(&self) -> io::Result<Box<dyn BlobSink>>;

    /// Stream an object's stored bytes.
    fn open_read(&self, key: &str) -> io::Result<Box<dyn Read + Send>>;

    /// Create `key` only if it does not exist (`O_EXCL`, `If-None-Match: *`);
    /// `None` when it does.
    fn create_new(&self, key: &str, bytes: &[u8]) -> io::Result<Option<Version>>;

    /// An object's bytes and version, `None` if absent.
    fn read_versioned(&self, key: &str) -> io::Result<Option<(Vec<u8>, Version)>>;

    /// Replace `key` only if it is still at `version` (`If-Match`); `None`
    /// when it changed (or is gone).
    fn replace_if(&self, key: &str, bytes: &[u8], version: &Version)
    -> io::Result<Option<Version>>;

    /// Replace the expired object at `stale` by `bytes`, so that of two
    /// callers with the same `stale` only one succeeds; `None` for the other.
    fn take_over(&self, key: &str, bytes: &[u8], stale: &Version) -> io::Result<Option<Version>>;

    /// Remove `key` if it is still at `version`; whether it was removed.
    fn remove_if(&self, key: &str, version: &Version) -> io::Result<bool>;

    /// Add one line (a JSON object and `\n`) to the event log.
    fn append_event(&self, line: &[u8]) -> io::Result<()>;

    /// The event log, oldest first, one JSON object per line.
    fn read_events(&self) -> io::Result<Vec<u8>>;

    /// Remove blobs half-written by a run that died (under the lock).
    fn clear_tmp(&self) -> io::Result<()>;

    /// Can this process create and remove objects in the store?
    fn check_writable(&self) -> io::Result<()>;
}

/// A local directory store: the layout of docs/store-format.md.
#[derive(Debug)]
pub(crate) struct Local {
    root: PathBuf,
}

impl Local {
    /// The store at `root`: the directory is created (0700) if needed,
    /// `VERSION` checked or written, then `blobs/` and `tmp/` created.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        create_private_dir(root)?;
        let local = Local {
            root: root.to_path_buf(),
        };
        crate::version::check_or_write(&local)?;
        create_private_dir(&root.join("blobs"))?;
        create_private_dir(&root.join("tmp"))?;
        Ok(local)
    }

    /// The directory at `root` as it is: nothing created, no `VERSION`
    /// checked. For reading a fleet store's root (fleet.rs), which is not
    /// a store itself.
    pub(crate) fn at(root: &Path) -> Self {
        Local {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The names in `dir` of the entries whose type `keep` accepts, but
    /// not temp files of atomic writes (they start with a dot); none if
    /// `dir` does not exist.
    fn entries(&self, dir: &str, keep: fn(fs::FileType) -> bool) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && keep(entry.file_type()?) {
                out.push(name);
            }
        }
        Ok(out)
    }
}

fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = match open_regular(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Open a store file for reading, refusing anything but a regular file. A
/// store may be shared (a fleet's hosts, an NFS mount): a FIFO planted
/// where a file belongs would block the reader forever, a device never
/// end, and a link could send the open to a device whose mere opening
/// acts (a watchdog). The open itself must not block, hence `O_NONBLOCK`,
/// which regular files ignore; no file of a store is a link, hence
/// `O_NOFOLLOW`.
fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is a symbolic link: the store keeps only files there; remove it",
                    path.display()
                ),
            ),
            _ => err,
        })?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file: the store keeps only files there; remove it (`rewind artifacts verify` checks the rest)",
                path.display()
            ),
        ));
    }
    Ok(file)
}

fn version_of(bytes: &[u8]) -> Version {
    Version(rewind_core::sha256_hex(bytes))
}

impl Backend for Local {
    fn root(&self) -> &Path {
        &self.root
    }

    fn read(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        read_optional(&self.path(key))
    }

    fn write_atomic(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        crate::blob::write_atomic(&self.path(key), bytes)
    }

    fn remove(&self, key: &str) -> io::Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        Ok(self.path(key).is_file())
    }

    fn has_entry(&self, name: &str) -> io::Result<bool> {
        Ok(fs::symlink_metadata(self.path(name)).is_ok())
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        self.entries(dir, |_| true)
    }

    fn list_dirs(&self, dir: &str) -> io::Result<Vec<String>> {
        self.entries(dir, |kind| kind.is_dir())
    }

    fn list_blobs(&self) -> io::Result<Vec<ListedBlob>> {
        let mut out = Vec::new();
        for fan in self.entries("blobs/sha256", |kind| kind.is_dir())? {
            let dir = format!("blobs/sha256/{fan}");
            for name in self.entries(&dir, |kind| kind.is_file())? {
                if !is_digest(&name) || name[..2] != fan {
                    continue;
                }
                // Removed meanwhile (only by someone ignoring the lock):
                // not listed.
                let meta = match fs::symlink_metadata(self.path(&format!("{dir}/{name}"))) {
                    Ok(meta) => meta,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                };
                out.push(ListedBlob {
                    digest: name,
                    size: meta.len(),
                    modified: meta
                        .modified()
                        .ok()
                        .and_then(|t| jiff::Timestamp::try_from(t).ok()),
                });
            }
        }
        Ok(out)
    }

    fn blob_sink(&self) -> io::Result<Box<dyn BlobSink>> {
        Ok(Box::new(LocalSink::new(
            &self.root.join("tmp"),
            &self.root.join("blobs"),
        )?))
    }

    fn open_read(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(open_regular(&self.path(key))?))
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> io::Result<Option<Version>> {
        let path = self.path(key);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(bytes)?;
                file.sync_all()?;
                sync_dir(path.parent().unwrap_or(&self.root))?;
                Ok(Some(version_of(bytes)))
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn read_versioned(&self, key: &str) -> io::Result<Option<(Vec<u8>, Version)>> {
        Ok(self.read(key)?.map(|bytes| {
            let version = version_of(&bytes);
            (bytes, version)
        }))
    }

    fn replace_if(
        &self,
        key: &str,
        bytes: &[u8],
        version: &Version,
    ) -> io::Result<Option<Version>> {
        match self.read_versioned(key)? {
            Some((_, now)) if now == *version => {
                self.write_atomic(key, bytes)?;
                Ok(Some(version_of(bytes)))
            }
            _ => Ok(None),
        }
    }

    fn take_over(&self, key: &str, bytes: &[u8], stale: &Version) -> io::Result<Option<Version>> {
        // Remove the file only if it is still the stale one, then create it
        // exclusively: of two callers, one create fails.
        self.remove_if(key, stale)?;
        self.create_new(key, bytes)
    }

    fn remove_if(&self, key: &str, version: &Version) -> io::Result<bool> {
        match self.read_versioned(key)? {
            Some((_, now)) if now == *version => {
                self.remove(key)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn append_event(&self, line: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.path("events.jsonl"))
            .and_then(|mut file| file.write_all(line))
    }

    fn read_events(&self) -> io::Result<Vec<u8>> {
        Ok(self.read("events.jsonl")?.unwrap_or_default())
    }

    fn clear_tmp(&self) -> io::Result<()> {
        for entry in fs::read_dir(self.path("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(())
    }

    fn check_writable(&self) -> io::Result<()> {
        let probe = self.path("tmp").join(format!("probe-{}", unique_suffix()));
        create_private(&probe)?;
        fs::remove_file(&probe)
    }
}

/// A blob being written to `tmp/blob-<unique>`, renamed to its digest on
/// commit; removed if dropped uncommitted.
pub(crate) struct LocalSink {
    file: Option<File>,
    tmp: PathBuf,
    blobs_dir: PathBuf,
}

impl LocalSink {
    pub(crate) fn new(tmp_dir: &Path, blobs_dir: &Path) -> io::Result<Self> {
        create_private_dir(tmp_dir)?;
        let tmp = tmp_dir.join(format!("blob-{}", unique_suffix()));
        let file = create_private(&tmp)?;
        Ok(LocalSink {
            file: Some(file),
            tmp,
            blobs_dir: blobs_dir.to_path_buf(),
        })
    }
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl BlobSink for LocalSink {
    fn commit(
        mut self: Box<Self>,
        digest: &str,
        replace: bool,
    ) -> io::Result<Option<(String, u64)>> {
        let mut file = self.file.take().expect("commit is called once");
        file.flush()?;
        file.sync_all()?;
        drop(file);
        let path = crate::blob::blob_path(&self.blobs_dir, digest);
        let dir = path.parent().expect("blob paths have a parent");
        let result = (|| {
            create_private_dir(dir)?;
            if path.exists() && !replace {
                // Same content already stored: keep the existing blob. The
                // caller records this write's stored digest, so describe
                // the existing file instead.
                fs::remove_file(&self.tmp)?;
                let existing = fs::metadata(&path)?;
                return Ok(Some((hash_file(&path)?, existing.len())));
            }
            fs::rename(&self.tmp, &path)?;
            sync_dir(dir)?;
            Ok(None)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared store's file replaced by a link (to a device whose opening
    /// acts, say) or a FIFO (which would block the reader) is refused
    /// without being opened through.
    #[test]
    fn only_regular_files_are_read_never_links_or_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("runs")).unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"{}").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join("runs/a.json")).unwrap();
        let err = local.read("runs/a.json").unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(local.open_read("runs/a.json").is_err());

        let fifo =
            std::ffi::CString::new(dir.path().join("runs/b.json").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = local.read("runs/b.json").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
