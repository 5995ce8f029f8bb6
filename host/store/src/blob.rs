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

use bytes::BytesMut;

use crate::backend::Backend;
use crate::chunk::{self, ChunkedReader, INDEX_FORMAT, Index, Known, MAX_CHUNK, Pipeline};

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
    /// Present when the content is stored in chunks: the blob `digest` is
    /// then the artifact's chunk index, `stored_digest` and `stored_size`
    /// describe the index's stored file, and `size` is the content's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Chunks>,
}

/// The chunks of a chunked artifact (docs/store-format.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunks {
    /// How many chunks the index lists.
    pub count: u64,
    /// Their stored sizes added up (chunks shared with other artifacts
    /// included): what the artifact takes in the store besides its index.
    pub stored_size: u64,
}

impl BlobInfo {
    /// The stored bytes the artifact's content takes: the blob, plus its
    /// chunks when it is chunked.
    pub fn footprint(&self) -> u64 {
        self.stored_size + self.chunks.as_ref().map_or(0, |c| c.stored_size)
    }
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

/// A blob being written: bytes in, cut into chunks by content, each
/// chunk hashed, compressed and stored by worker threads while more bytes
/// come (`chunk.rs`). [`BlobWriter::finish`] records the artifact: one
/// chunk as a plain blob, more through an index blob. Nothing names the
/// chunks of an unfinished writer.
pub struct BlobWriter {
    /// Bytes not cut into a chunk yet (less than `MAX_CHUNK` between
    /// writes).
    buf: BytesMut,
    pipeline: Option<Pipeline>,
    backend: Arc<dyn Backend>,
    known: Arc<Known>,
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
    /// A writer storing into `backend`, skipping chunks `known` lists.
    pub(crate) fn new(backend: Arc<dyn Backend>, known: Arc<Known>) -> Self {
        BlobWriter {
            buf: BytesMut::new(),
            pipeline: None,
            backend,
            known,
            size: 0,
            meter: None,
            quota: None,
        }
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

    /// Hand the next chunk (the first `len` bytes buffered) to the workers.
    fn send(&mut self, len: usize) -> io::Result<()> {
        if self.pipeline.is_none() {
            self.pipeline = Some(Pipeline::start(self.backend.clone(), self.known.clone())?);
        }
        let chunk = self.buf.split_to(len).freeze();
        self.pipeline.as_mut().expect("started above").send(chunk)
    }

    /// Seal the blob: store the last chunks, wait for all, and record the
    /// artifact. Each blob becomes visible only complete (locally: fsync,
    /// rename, fsync the directory; on S3 see `s3.rs`), and the artifact
    /// exists only once its record names them.
    pub fn finish(mut self) -> io::Result<BlobInfo> {
        if self.pipeline.is_none()
            && self.buf.len() <= MAX_CHUNK
            && chunk::cut(&self.buf) == self.buf.len()
        {
            // One chunk (or none): stored and recorded as a plain blob,
            // right here.
            let mut compressor = zstd::bulk::Compressor::new(chunk::ZSTD_LEVEL)?;
            return chunk::put(
                &*self.backend,
                &self.known,
                &self.buf,
                &mut compressor,
                &mut Vec::new(),
            );
        }
        while !self.buf.is_empty() {
            let len = chunk::cut(&self.buf);
            self.send(len)?;
        }
        let chunks = self.pipeline.take().expect("chunks were sent").finish()?;
        if let [only] = &chunks[..] {
            return Ok(only.clone());
        }
        let index = Index {
            format: INDEX_FORMAT.to_string(),
            size: self.size,
            chunks,
        };
        let json = serde_json::to_vec(&index).map_err(io::Error::other)?;
        let mut compressor = zstd::bulk::Compressor::new(chunk::ZSTD_LEVEL)?;
        let stored = chunk::put(
            &*self.backend,
            &self.known,
            &json,
            &mut compressor,
            &mut Vec::new(),
        )?;
        Ok(BlobInfo {
            size: self.size,
            chunks: Some(Chunks {
                count: index.chunks.len() as u64,
                stored_size: index.chunks.iter().map(|c| c.stored_size).sum(),
            }),
            ..stored
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(quota) = &self.quota {
            quota.take(buf.len() as u64)?;
        }
        // Grow by at least two chunks at once, so the bytes kept are moved
        // at most once per MAX_CHUNK written, not on every small write.
        if self.buf.capacity() - self.buf.len() < buf.len() {
            self.buf.reserve(buf.len().max(2 * MAX_CHUNK));
        }
        self.buf.extend_from_slice(buf);
        self.size += buf.len() as u64;
        if let Some(meter) = &self.meter {
            meter.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        // Cut only with MAX_CHUNK bytes in hand: the cut then cannot
        // depend on bytes still to come.
        while self.buf.len() >= MAX_CHUNK {
            let len = chunk::cut(&self.buf);
            if let Err(err) = self.send(len) {
                if let Some(quota) = &self.quota {
                    quota.give_back(buf.len() as u64);
                }
                return Err(err);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The store key of blob `digest`: `blobs/sha256/ab/abcdef…`. Digests
/// come from records a shared store's writers (or its tamperers) wrote:
/// one that is not 64 lowercase hex digits would name a path outside
/// `blobs/` (`../../…`), so it is refused here, where every lookup,
/// read and removal of a blob gets its key.
pub(crate) fn blob_key(digest: &str) -> io::Result<String> {
    if !crate::chunk::is_digest(digest) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "blob {digest:.80?} is refused: its name is not 64 lowercase hex digits (the record naming it is damaged or was tampered with; `rewind artifacts verify` names the run)"
            ),
        ));
    }
    Ok(format!("blobs/sha256/{}/{digest}", &digest[..2]))
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

/// Reads an artifact's content, verifying it. A plain blob is hashed as
/// it streams and a mismatch surfaces as an `InvalidData` error from the
/// read that reaches the end; a chunked artifact's chunks are each
/// verified before any of their bytes are handed on. Either way nothing
/// downstream can mistake a corrupt stream for a complete one.
pub struct BlobReader<'a> {
    inner: Inner<'a>,
    meter: Option<Arc<AtomicU64>>,
}

enum Inner<'a> {
    Whole(Box<WholeReader<'a>>),
    Chunked {
        reader: ChunkedReader,
        /// The artifact's digest, for messages.
        digest: String,
    },
}

/// The largest zstd window a plain blob may ask for (16 MiB: zstd's
/// levels up to 12 stay within it).
const MAX_WINDOW_LOG: u32 = 24;

/// A plain blob: one zstd frame, hashed as it is decompressed.
struct WholeReader<'a> {
    decoder: zstd::Decoder<'static, BufReader<Box<dyn Read + Send + 'a>>>,
    hasher: Sha256,
    read: u64,
    expected: BlobInfo,
    verified: bool,
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

    /// Decompress and verify a plain blob read from `stored`.
    pub(crate) fn from_reader(
        stored: impl Read + Send + 'a,
        expected: &BlobInfo,
    ) -> io::Result<Self> {
        let stored: Box<dyn Read + Send + 'a> = Box::new(stored);
        let mut decoder = zstd::Decoder::new(stored)?;
        // A frame's header chooses the window the decoder allocates, up to
        // 128 MiB by default; rewind writes level 3 (a 2 MiB window at
        // most), so a tampered blob asking for more is refused instead of
        // making the host hold it.
        decoder.window_log_max(MAX_WINDOW_LOG)?;
        Ok(BlobReader {
            inner: Inner::Whole(Box::new(WholeReader {
                decoder,
                hasher: Sha256::new(),
                read: 0,
                expected: expected.clone(),
                verified: false,
            })),
            meter: None,
        })
    }

    /// Read the chunks `index` lists (of the artifact `expected`), verified.
    pub(crate) fn chunked(
        backend: Arc<dyn Backend>,
        expected: &BlobInfo,
        index: Index,
    ) -> io::Result<Self> {
        Ok(BlobReader {
            inner: Inner::Chunked {
                reader: ChunkedReader::start(backend, index.chunks)?,
                digest: expected.digest.clone(),
            },
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
        let n = match &mut self.inner {
            Inner::Whole(whole) => whole.read(buf)?,
            Inner::Chunked { reader, digest } => reader
                .read(buf)
                .map_err(|err| io::Error::new(err.kind(), format!("blob {digest}: {err}")))?,
        };
        if let Some(meter) = &self.meter {
            meter.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl Read for WholeReader<'_> {
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
    fn a_plain_blob_whose_frame_asks_for_a_huge_window_is_refused() {
        let content = vec![7u8; 1 << 20];
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        encoder.window_log(27).unwrap();
        encoder.write_all(&content).unwrap();
        let stored = encoder.finish().unwrap();
        let info = BlobInfo {
            digest: rewind_core::sha256_hex(&content),
            size: content.len() as u64,
            stored_digest: rewind_core::sha256_hex(&stored),
            stored_size: stored.len() as u64,
            chunks: None,
        };
        let mut reader = BlobReader::from_reader(&stored[..], &info).unwrap();
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert!(
            err.to_string().contains("requires too much memory"),
            "{err}"
        );
    }

    #[test]
    fn round_trip_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (dir.path().join("tmp"), dir.path().join("blobs"));
        let mut w = crate::Store::open(dir.path())
            .unwrap()
            .create_blob()
            .unwrap();
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

        let mut again = crate::Store::open(dir.path())
            .unwrap()
            .create_blob()
            .unwrap();
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
        let mut w = crate::Store::open(dir.path())
            .unwrap()
            .create_blob()
            .unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert!(!blobs.exists() || fs::read_dir(&blobs).unwrap().count() == 0);
    }

    #[test]
    fn reader_detects_a_swapped_blob() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let mut w = crate::Store::open(dir.path())
            .unwrap()
            .create_blob()
            .unwrap();
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

    /// Text like a SQL dump: numbered rows of varied content.
    fn dump(rows: std::ops::Range<u64>, version: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for i in rows {
            let h = hex::encode(Sha256::digest(i.to_le_bytes()));
            writeln!(
                out,
                "{i}\tcustomer {}\t{}.{:02}\t{h}\t{version}",
                i % 5000,
                i * 37 % 1000,
                i % 100
            )
            .unwrap();
        }
        out
    }

    fn stored_bytes(root: &Path) -> u64 {
        fn walk(dir: &Path) -> u64 {
            fs::read_dir(dir).map_or(0, |entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .map(|p| {
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            fs::metadata(&p).unwrap().len()
                        }
                    })
                    .sum()
            })
        }
        walk(&root.join("blobs"))
    }

    fn write(store: &crate::Store, content: &[u8]) -> BlobInfo {
        let mut w = store.create_blob().unwrap();
        // In pieces of odd sizes, as a command's output arrives.
        for piece in content.chunks(65_519) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn read(store: &crate::Store, info: &BlobInfo) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        store.open_blob(info)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_large_artifact_is_chunked_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let content = dump(0..200_000, 0);
        let info = write(&store, &content);
        let chunks = info.chunks.clone().expect("chunked");
        assert!(chunks.count >= 4, "{info:?}");
        assert_eq!(info.size, content.len() as u64);
        assert_eq!(read(&store, &info).unwrap(), content);
        store.verify_blob(&info).unwrap();
        store.check_stored(&info, &|_| {}).unwrap();
        // Each chunk is a plain blob of its content.
        let index = store.index(&info).unwrap();
        let mut joined = Vec::new();
        for chunk in &index.chunks {
            assert!(chunk.size as usize <= MAX_CHUNK);
            let stored = fs::read(blob_path(&dir.path().join("blobs"), &chunk.digest)).unwrap();
            joined.extend(zstd::decode_all(&stored[..]).unwrap());
        }
        assert_eq!(joined, content);
        // The same content again: the same record, nothing more stored.
        let before = stored_bytes(dir.path());
        assert_eq!(write(&store, &content), info);
        assert_eq!(stored_bytes(dir.path()), before);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_second_backup_with_a_few_rows_changed_adds_little() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let first = dump(0..300_000, 0);
        write(&store, &first);
        let after_first = stored_bytes(dir.path());
        // 1% of the rows changed, in one stretch, and some appended.
        let mut second = dump(0..100_000, 0);
        second.extend(dump(100_000..103_000, 1));
        second.extend(dump(103_000..300_000, 0));
        second.extend(dump(300_000..301_000, 0));
        // A new store process: the known chunks come from the records.
        let store = crate::Store::open(dir.path()).unwrap();
        let info = write(&store, &second);
        let added = stored_bytes(dir.path()) - after_first;
        // About 30 chunks, of which the changed stretch and the end touch
        // 3 or 4 (a 1 GB dump has 1000: bench/dedup measures that case).
        // Stored whole it would add as much as the first.
        assert!(
            added * 5 < after_first,
            "added {added} bytes to {after_first}"
        );
        assert_eq!(read(&store, &info).unwrap(), second);
    }

    #[test]
    fn a_damaged_chunk_is_refused_before_any_byte_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let content = dump(0..200_000, 0);
        let info = write(&store, &content);
        let index = store.index(&info).unwrap();
        let last = index.chunks.last().unwrap();
        let path = blob_path(&dir.path().join("blobs"), &last.digest);
        let mut stored = fs::read(&path).unwrap();
        let middle = stored.len() / 2;
        stored[middle] ^= 1;
        fs::write(&path, stored).unwrap();

        let err = store.check_stored(&info, &|_| {}).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(err.to_string().contains(&last.digest), "{err}");
        let err = store.verify_blob(&info).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // A reader hands on the chunks before it, verified, then fails:
        // never a byte of the damaged chunk.
        let mut reader = store.open_blob(&info).unwrap();
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains(&info.digest), "{err}");
        let good: u64 = index.chunks[..index.chunks.len() - 1]
            .iter()
            .map(|c| c.size)
            .sum();
        assert_eq!(out.len() as u64, good);
        assert_eq!(out[..], content[..good as usize]);

        // A new writer that has no record of the damaged chunk (no run
        // names it here) proves it before reusing it, and stores it again.
        let store = crate::Store::open(dir.path()).unwrap();
        let again = write(&store, &content);
        assert_eq!(again, info);
        store.check_stored(&info, &|_| {}).unwrap();
        assert_eq!(read(&store, &info).unwrap(), content);
    }

    #[test]
    fn an_empty_artifact_is_one_empty_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let info = write(&store, b"");
        assert_eq!(info.digest, hex::encode(Sha256::digest(b"")));
        assert!(info.chunks.is_none());
        assert_eq!(read(&store, &info).unwrap(), b"");
    }
}
