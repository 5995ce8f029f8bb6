//! Content-addressed, zstd-compressed blobs with atomic writes.
//!
//! A blob is named by the sha256 of its *uncompressed* content and stored
//! compressed. Both digests and both sizes are computed while the bytes
//! stream through (one pass). Nothing is visible under its final name until
//! it is complete and synced; a reader verifies the uncompressed digest as it
//! goes and fails at the end of the stream on a mismatch.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::BlobSink;

/// zstd level 3: zstd's default, ~300 MB/s per core on text dumps, a good
/// trade between CPU on the deploy host and store size.
const ZSTD_LEVEL: i32 = 3;

/// Digests and sizes of one stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// sha256 of the uncompressed content (the blob's name).
    pub digest: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// sha256 of the stored (compressed) file.
    pub stored_digest: String,
    /// Stored (compressed) size in bytes.
    pub stored_size: u64,
}

/// Writes a file with mode 0600, creating it exclusively.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Create a directory (and parents) with mode 0700.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// fsync a directory so that a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("atomic writes target a file in a dir");
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    let result = (|| {
        let mut file = create_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Counts and hashes the bytes that pass through to the inner writer.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A blob being written: bytes in, compressed and hashed on the fly, into a
/// temp file that becomes the blob on [`BlobWriter::finish`]. Dropping an
/// unfinished writer deletes the temp file.
pub struct BlobWriter {
    encoder: Option<zstd::Encoder<'static, HashingWriter<Box<dyn BlobSink>>>>,
    hasher: Sha256,
    size: u64,
    meter: Option<Arc<AtomicU64>>,
    quota: Option<Quota>,
}

/// A number of bytes that several writers draw from (the artifacts of one
/// hook call), and what to say when it runs out.
#[derive(Debug, Clone)]
pub struct Quota {
    remaining: Arc<AtomicU64>,
    exhausted: Arc<str>,
}

impl Quota {
    /// `bytes` to share; `exhausted` is the error text once they are used
    /// up (it should name the limit to raise).
    pub fn new(bytes: u64, exhausted: impl Into<String>) -> Self {
        Quota {
            remaining: Arc::new(AtomicU64::new(bytes)),
            exhausted: exhausted.into().into(),
        }
    }

    /// Take `n` bytes, or fail without taking any.
    fn take(&self, n: u64) -> io::Result<()> {
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .map(drop)
            .map_err(|_| io::Error::new(io::ErrorKind::QuotaExceeded, self.exhausted.to_string()))
    }

    fn give_back(&self, n: u64) {
        self.remaining.fetch_add(n, Ordering::Relaxed);
    }
}

impl BlobWriter {
    #[cfg(test)]
    pub(crate) fn new(tmp_dir: &Path, blobs_dir: &Path) -> io::Result<Self> {
        Self::into_sink(Box::new(crate::backend::LocalSink::new(
            tmp_dir, blobs_dir,
        )?))
    }

    /// A writer whose stored (compressed) bytes go to `sink`.
    pub(crate) fn into_sink(sink: Box<dyn BlobSink>) -> io::Result<Self> {
        let encoder = zstd::Encoder::new(
            HashingWriter {
                inner: sink,
                hasher: Sha256::new(),
                bytes: 0,
            },
            ZSTD_LEVEL,
        )?;
        Ok(BlobWriter {
            encoder: Some(encoder),
            hasher: Sha256::new(),
            size: 0,
            meter: None,
            quota: None,
        })
    }

    /// Draw the bytes written from `quota`; a write past it fails.
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Count the bytes written into `meter` too.
    pub(crate) fn metered(mut self, meter: Arc<AtomicU64>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Bytes written so far (uncompressed).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Seal the blob: complete the stored bytes and make them the blob
    /// named by their content's digest (locally: flush, fsync, rename,
    /// fsync the directory; on S3 see `s3.rs`).
    pub fn finish(mut self) -> io::Result<BlobInfo> {
        let encoder = self.encoder.take().expect("finish is called once");
        let mut sink = encoder.finish()?;
        sink.flush()?;
        let HashingWriter {
            inner,
            hasher,
            bytes,
        } = sink;
        let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let info = BlobInfo {
            digest: digest.clone(),
            size: self.size,
            stored_digest: hex::encode(hasher.finalize()),
            stored_size: bytes,
        };
        match inner.commit(&digest)? {
            None => Ok(info),
            // Same content already stored: the existing blob is kept, and
            // the record describes it rather than this write.
            Some((stored_digest, stored_size)) => Ok(BlobInfo {
                stored_digest,
                stored_size,
                ..info
            }),
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(quota) = &self.quota {
            quota.take(buf.len() as u64)?;
        }
        let encoder = self.encoder.as_mut().expect("not finished");
        let written = encoder.write(buf);
        if let Some(quota) = &self.quota {
            let used = written.as_ref().map_or(0, |n| *n);
            quota.give_back((buf.len() - used) as u64);
        }
        let n = written?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if let Some(meter) = &self.meter {
            meter.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The store key of blob `digest`: `blobs/sha256/ab/abcdef…`.
pub(crate) fn blob_key(digest: &str) -> String {
    format!("blobs/sha256/{}/{digest}", &digest[..2])
}

/// `blobs/sha256/ab/abcdef…`: a two-hex-digit fan-out keeps directories small.
pub(crate) fn blob_path(blobs_dir: &Path, digest: &str) -> PathBuf {
    blobs_dir.join("sha256").join(&digest[..2]).join(digest)
}

/// Hashes and counts the stored bytes a reader yields, reporting progress.
pub(crate) struct HashingReader<'p, R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    progress: &'p (dyn Fn(u64) + Sync),
}

impl<'p, R: Read> HashingReader<'p, R> {
    pub(crate) fn new(inner: R, progress: &'p (dyn Fn(u64) + Sync)) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            progress,
        }
    }

    /// The sha256 and length of everything read.
    pub(crate) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// sha256 of a file's raw bytes.
pub(crate) fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Reads a blob's uncompressed content, verifying size and digest. The
/// mismatch surfaces as an `InvalidData` error from the read that reaches
/// the end, so nothing downstream can mistake a corrupt stream for a
/// complete one.
pub struct BlobReader<'a> {
    decoder: zstd::Decoder<'static, BufReader<Box<dyn Read + Send + 'a>>>,
    hasher: Sha256,
    read: u64,
    expected: BlobInfo,
    verified: bool,
    meter: Option<Arc<AtomicU64>>,
}

impl<'a> BlobReader<'a> {
    #[cfg(test)]
    pub(crate) fn open(blobs_dir: &Path, expected: &BlobInfo) -> io::Result<BlobReader<'static>> {
        let path = blob_path(blobs_dir, &expected.digest);
        let file = File::open(&path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("blob {} ({}): {err}", expected.digest, path.display()),
            )
        })?;
        BlobReader::from_reader(file, expected)
    }

    /// Decompress and verify a stored blob read from `stored`.
    pub(crate) fn from_reader(
        stored: impl Read + Send + 'a,
        expected: &BlobInfo,
    ) -> io::Result<Self> {
        let stored: Box<dyn Read + Send + 'a> = Box::new(stored);
        Ok(BlobReader {
            decoder: zstd::Decoder::new(stored)?,
            hasher: Sha256::new(),
            read: 0,
            expected: expected.clone(),
            verified: false,
            meter: None,
        })
    }

    /// Count the bytes read into `meter` too.
    pub(crate) fn metered(mut self, meter: Arc<AtomicU64>) -> Self {
        self.meter = Some(meter);
        self
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified {
            return Ok(0);
        }
        let n = self.decoder.read(buf).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} is corrupt: {err}", self.expected.digest),
            )
        })?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if let Some(meter) = &self.meter {
            meter.fetch_add(n as u64, Ordering::Relaxed);
        }
        if self.read > self.expected.size {
            return Err(corrupt(&self.expected, "it is longer than recorded"));
        }
        if n == 0 && !buf.is_empty() {
            let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if self.read != self.expected.size {
                return Err(corrupt(&self.expected, "it is shorter than recorded"));
            }
            if digest != self.expected.digest {
                return Err(corrupt(
                    &self.expected,
                    &format!("its content hashes to {digest} instead"),
                ));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

fn corrupt(expected: &BlobInfo, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "checksum mismatch: blob {} ({} bytes) is damaged: {why}",
            expected.digest, expected.size
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (dir.path().join("tmp"), dir.path().join("blobs"));
        let mut w = BlobWriter::new(&tmp, &blobs).unwrap();
        w.write_all(b"hello world").unwrap();
        let info = w.finish().unwrap();
        assert_eq!(
            info.digest,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(info.size, 11);
        let path = blob_path(&blobs, &info.digest);
        assert_eq!(hash_file(&path).unwrap(), info.stored_digest);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut again = BlobWriter::new(&tmp, &blobs).unwrap();
        again.write_all(b"hello world").unwrap();
        assert_eq!(again.finish().unwrap(), info);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);

        let mut out = String::new();
        BlobReader::open(&blobs, &info)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (dir.path().join("tmp"), dir.path().join("blobs"));
        let mut w = BlobWriter::new(&tmp, &blobs).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert!(!blobs.exists() || fs::read_dir(&blobs).unwrap().count() == 0);
    }

    #[test]
    fn reader_detects_a_swapped_blob() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (dir.path().join("tmp"), dir.path().join("blobs"));
        let mut w = BlobWriter::new(&tmp, &blobs).unwrap();
        w.write_all(b"good content").unwrap();
        let info = w.finish().unwrap();
        // Replace the blob with a valid zstd stream of other content.
        let path = blob_path(&blobs, &info.digest);
        fs::remove_file(&path).unwrap();
        fs::write(&path, zstd::encode_all(&b"evil content"[..], 3).unwrap()).unwrap();
        let mut out = Vec::new();
        let err = BlobReader::open(&blobs, &info)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}
