//! Content-defined chunking: an artifact is cut into chunks where its
//! content says (FastCDC), each chunk stored once as a blob named by its
//! sha256, and an artifact of more than one chunk is recorded as an index
//! blob listing its chunks (docs/store-format.md, "Chunked artifacts").
//!
//! Why: before every deploy the same database is dumped again; most of a
//! dump is what the last one held, and cutting by content (not at fixed
//! offsets) keeps the cuts, and so the chunks, the same around a change.
//!
//! The work is spread over threads: the writer's caller only copies bytes
//! and finds cut points; workers hash, compress and write chunks; commit
//! threads make them blobs (the waits on fsync or S3); readers' workers
//! fetch, decompress and verify chunks ahead of the consumer, in order.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::blob::{self, BlobInfo};

/// The smallest chunk FastCDC cuts (but the last of an artifact).
///
/// Why 256 KiB / 1 MiB / 4 MiB: restic's 512 KiB / 1 MiB / 8 MiB suit file
/// trees; a dump changes in place, and smaller chunks keep more of it
/// shared around a changed row, at the price of one object per chunk (a
/// file here, a PUT on S3): ~1000 for a 1 GB dump. A zstd frame per 1 MiB
/// chunk compresses as well as one frame for the whole stream (measured on
/// a 519 MB SQL dump: 156.1 MB in 1 MiB frames, 157.3 MB in one).
pub(crate) const MIN_CHUNK: usize = 256 << 10;
/// The average chunk FastCDC aims at.
pub(crate) const AVG_CHUNK: usize = 1 << 20;
/// The largest chunk: FastCDC cuts here when the content offers no cut
/// point (long runs of one byte). A writer holds at most a few of these.
pub(crate) const MAX_CHUNK: usize = 4 << 20;

/// The `format` of an index blob.
pub(crate) const INDEX_FORMAT: &str = "rewind.chunks/1";

/// zstd level 3: zstd's default and `zstd -3`, the reference the ingest
/// benchmark compares with; ~200 MB/s per core on SQL dumps here.
pub(crate) const ZSTD_LEVEL: i32 = 3;

/// Threads that hash/compress (writing) or decompress/verify (reading)
/// chunks: one per core, at most 4. Why: zstd level 3 and sha256 are both
/// CPU-bound, so more threads than cores only add switching; beyond 4 the
/// store (one disk, or S3 PUTs) is the bound, not the CPU.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
}

/// Where the next chunk of `data` ends (all of it when it is shorter
/// than [`MIN_CHUNK`]). The cut depends only on the first [`MAX_CHUNK`]
/// bytes, so cutting a stream as it arrives gives the same chunks as
/// cutting it whole.
pub(crate) fn cut(data: &[u8]) -> usize {
    use fastcdc::v2020::{MASKS, logarithm2};
    let bits = logarithm2(AVG_CHUNK as u32) as usize;
    // Normalization level 1 (the crate's default): cut points are looked
    // for with a stricter mask before the average size and a looser one
    // after, so sizes cluster around the average.
    let (small, large) = (MASKS[bits + 1], MASKS[bits - 1]);
    fastcdc::v2020::cut(
        data,
        MIN_CHUNK,
        AVG_CHUNK,
        MAX_CHUNK,
        small,
        large,
        small << 1,
        large << 1,
    )
    .1
}

/// The content of an index blob: the chunks of one artifact, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Index {
    /// [`INDEX_FORMAT`].
    pub(crate) format: String,
    /// The artifact's size: the sum of the chunks' sizes.
    pub(crate) size: u64,
    /// Each chunk's digests and sizes, as a blob record without `chunks`.
    pub(crate) chunks: Vec<BlobInfo>,
}

/// Chunks the store is known to hold, with their stored digest and size:
/// read from the indexes of the store's runs, and added to as chunks are
/// written. A chunk found here is not compressed or written again.
#[derive(Debug, Default)]
pub(crate) struct Known(Mutex<HashMap<String, (String, u64)>>);

impl Known {
    pub(crate) fn insert(&self, blob: &BlobInfo) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            blob.digest.clone(),
            (blob.stored_digest.clone(), blob.stored_size),
        );
    }

    fn get(&self, digest: &str) -> Option<(String, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }
}

/// `checksum mismatch: …`, the one wording every damaged blob or chunk is
/// reported with.
pub(crate) fn mismatch(what: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("checksum mismatch: {what} is damaged: {why}"),
    )
}

/// The stored file of `record` (`what`, for the message) was `size` bytes
/// hashing to `digest`: is that what was recorded?
pub(crate) fn expect_stored(
    what: &str,
    record: &BlobInfo,
    size: u64,
    digest: &str,
) -> io::Result<()> {
    if size == record.stored_size && digest == record.stored_digest {
        return Ok(());
    }
    Err(mismatch(
        what,
        &format!(
            "its stored file ({size} bytes) hashes to {digest}, recorded {} ({} bytes)",
            record.stored_digest, record.stored_size
        ),
    ))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The most chunks an index may list: 1 Mi, an artifact of 1 TiB at the
/// average chunk size (256 GiB at the minimum). Why a cap: the store is
/// shared (S3, a fleet), so an index is read as untrusted input, and its
/// entries are held in memory while the artifact is read (about 250
/// bytes each; an index repeating one chunk compresses to almost
/// nothing, so the stored size bounds nothing).
pub(crate) const MAX_INDEX_CHUNKS: u64 = 1 << 20;

/// The most bytes one entry of an index takes as the writer writes it
/// (compact JSON: two 64-digit digests and two sizes of at most 7
/// digits, about 200 bytes), with room to spare.
const INDEX_ENTRY_MAX: u64 = 256;

/// The largest stored file a chunk of at most [`MAX_CHUNK`] bytes
/// compresses to (zstd's bound for incompressible input).
pub(crate) fn max_stored_chunk() -> u64 {
    zstd::zstd_safe::compress_bound(MAX_CHUNK) as u64
}

/// Is `digest` what a blob is named by: 64 lowercase hex digits? Anything
/// else (`/`, `..`, an empty or short name) would name a path outside
/// `blobs/`, so a record or index naming one is refused before it is
/// looked up.
pub(crate) fn is_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Refuse a chunk an index lists that no writer makes: a digest that is
/// not one, a chunk that is empty or larger than [`MAX_CHUNK`], a stored
/// size larger than such a chunk compresses to, a nested index. Checked
/// before any of them is read, so that a tampered index cannot make the
/// host read outside the store or reserve memory it names.
fn check_entry(what: &str, i: usize, chunk: &BlobInfo) -> io::Result<()> {
    let why = if !is_digest(&chunk.digest) {
        format!(
            "its digest {:?} is not 64 lowercase hex digits",
            chunk.digest
        )
    } else if !is_digest(&chunk.stored_digest) {
        format!(
            "its stored digest {:?} is not 64 lowercase hex digits",
            chunk.stored_digest
        )
    } else if chunk.size == 0 || chunk.size > MAX_CHUNK as u64 {
        format!(
            "its size {} is not between 1 and {MAX_CHUNK} bytes",
            chunk.size
        )
    } else if chunk.stored_size == 0 || chunk.stored_size > max_stored_chunk() {
        format!(
            "its stored size {} is not between 1 and {} bytes",
            chunk.stored_size,
            max_stored_chunk()
        )
    } else if chunk.chunks.is_some() {
        "it is itself chunked".to_string()
    } else {
        return Ok(());
    };
    Err(invalid(format!(
        "{what} is refused: chunk {i} ({:.80}) is not a chunk rewind writes: {why}",
        chunk.digest
    )))
}

/// Read a whole stored blob into `stored` (emptied first), refusing one
/// larger than `limit` (a chunk's stored bytes are bounded; a damaged
/// store must not make us hold more).
fn read_stored(
    backend: &dyn Backend,
    digest: &str,
    limit: u64,
    stored: &mut Vec<u8>,
) -> io::Result<()> {
    if !is_digest(digest) {
        return Err(invalid(format!(
            "blob {digest:.80?} is refused: its name is not 64 lowercase hex digits"
        )));
    }
    let key = blob::blob_key(digest)?;
    stored.clear();
    // Room for what a chunk takes; more only as it is really read (a
    // recorded size is not trusted with memory).
    stored.reserve((limit.min(max_stored_chunk()) as usize).saturating_add(1));
    backend
        .open_read(&key)
        .and_then(|r| r.take(limit + 1).read_to_end(stored))
        .map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("blob {digest} ({}): {err}", backend.display(&key).display()),
            )
        })?;
    Ok(())
}

/// What a thread that reads chunks keeps from one chunk to the next, so
/// that it allocates (and the kernel zeroes) no new memory per chunk.
pub(crate) struct Scratch {
    decompressor: zstd::bulk::Decompressor<'static>,
    stored: Vec<u8>,
}

impl Scratch {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Scratch {
            decompressor: zstd::bulk::Decompressor::new()?,
            stored: Vec::new(),
        })
    }
}

/// What [`check`] proves of a stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// The stored bytes hash to `stored_digest`: enough before a restore,
    /// which checks each chunk's content as it streams.
    Stored,
    /// And the content they decompress to hashes to `digest`.
    Content,
    /// Only the content: what a reader checks as it streams. A content
    /// that hashes to its digest is right whatever bytes it came from, and
    /// a restore checked the stored bytes before it began.
    Streamed,
}

/// Check one chunk, read into memory whole: its stored bytes, and its
/// content (left in `content`) when `depth` asks for it.
pub(crate) fn check(
    backend: &dyn Backend,
    chunk: &BlobInfo,
    depth: Depth,
    scratch: &mut Scratch,
    content: &mut Vec<u8>,
) -> io::Result<()> {
    let what = format!("chunk {} ({} bytes)", chunk.digest, chunk.size);
    read_stored(
        backend,
        &chunk.digest,
        chunk.stored_size,
        &mut scratch.stored,
    )?;
    let stored = &scratch.stored;
    let stored_digest = if depth == Depth::Streamed {
        chunk.stored_digest.clone()
    } else {
        sha256_hex(stored)
    };
    expect_stored(&what, chunk, stored.len() as u64, &stored_digest)?;
    if depth == Depth::Stored {
        return Ok(());
    }
    decompress(stored, chunk, &mut scratch.decompressor, content)
}

/// Decompress a chunk's stored bytes into `content` and check the
/// content's size and digest.
fn decompress(
    stored: &[u8],
    chunk: &BlobInfo,
    decompressor: &mut zstd::bulk::Decompressor<'_>,
    content: &mut Vec<u8>,
) -> io::Result<()> {
    let what = format!("chunk {} ({} bytes)", chunk.digest, chunk.size);
    // One byte more than recorded, so that a longer content is seen as
    // such rather than as a decompression error.
    content.clear();
    content.reserve(chunk.size as usize + 1);
    decompressor
        .decompress_to_buffer(stored, content)
        .map_err(|err| mismatch(&what, &format!("it does not decompress: {err}")))?;
    if content.len() as u64 != chunk.size {
        return Err(mismatch(
            &what,
            &format!("its content is {} bytes", content.len()),
        ));
    }
    let digest = sha256_hex(content);
    if digest != chunk.digest {
        return Err(mismatch(
            &what,
            &format!("its content hashes to {digest} instead"),
        ));
    }
    Ok(())
}

/// Store `data` (a chunk, or an index) as the blob named by its sha256,
/// unless the store has it, compressing into `out` (kept by the caller
/// from one chunk to the next). Returns its record.
pub(crate) fn put(
    backend: &dyn Backend,
    known: &Known,
    data: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
    out: &mut Vec<u8>,
) -> io::Result<BlobInfo> {
    match prepare(backend, known, data, compressor, out)? {
        Prepared::Stored(info) => Ok(info),
        Prepared::Commit(commit) => commit.run(known),
    }
}

/// A chunk [`prepare`] found in the store, or wrote and must commit.
pub(crate) enum Prepared {
    Stored(BlobInfo),
    Commit(Commit),
}

/// A chunk's stored bytes, written but not yet made its blob: the part of
/// storing a chunk that waits on the disk (fsync, rename, fsync) or on S3
/// (the PUT), done on threads of its own so the workers keep compressing.
pub(crate) struct Commit {
    info: BlobInfo,
    sink: Box<dyn crate::backend::BlobSink>,
    replace: bool,
}

impl Commit {
    pub(crate) fn run(self, known: &Known) -> io::Result<BlobInfo> {
        let mut info = self.info;
        if let Some((stored_digest, stored_size)) = self.sink.commit(&info.digest, self.replace)? {
            // Stored meanwhile by someone else: that blob is the one kept.
            info.stored_digest = stored_digest;
            info.stored_size = stored_size;
        }
        known.insert(&info);
        Ok(info)
    }
}

/// [`put`] up to the commit: hash `data`, and unless the store has it,
/// compress it and write the stored bytes.
pub(crate) fn prepare(
    backend: &dyn Backend,
    known: &Known,
    data: &[u8],
    compressor: &mut zstd::bulk::Compressor<'_>,
    out: &mut Vec<u8>,
) -> io::Result<Prepared> {
    let digest = sha256_hex(data);
    let key = blob::blob_key(&digest)?;
    let mut info = BlobInfo {
        digest,
        size: data.len() as u64,
        stored_digest: String::new(),
        stored_size: 0,
        chunks: None,
    };
    let mut replace = false;
    if let Some((stored_digest, stored_size)) = known.get(&info.digest) {
        // A run of this store recorded it: the same bytes again, without
        // compressing them. Its stored digest comes from that record, so a
        // chunk damaged since then fails the next check of this artifact.
        if backend.exists(&key)? {
            info.stored_digest = stored_digest;
            info.stored_size = stored_size;
            return Ok(Prepared::Stored(info));
        }
    } else if backend.exists(&key)? {
        // No record this process read names it (a run that died after
        // storing it, or a blob of an earlier format): reuse it only once
        // it is proven to hold this content, else store it again over it.
        let mut scratch = Scratch::new()?;
        let limit = (2 * MAX_CHUNK).max(data.len() + (data.len() >> 7) + 4096) as u64;
        match read_stored(backend, &info.digest, limit, &mut scratch.stored).and_then(|()| {
            decompress(
                &scratch.stored,
                &info,
                &mut scratch.decompressor,
                &mut Vec::new(),
            )
        }) {
            Ok(()) => {
                let stored = scratch.stored;
                info.stored_digest = sha256_hex(&stored);
                info.stored_size = stored.len() as u64;
                known.insert(&info);
                return Ok(Prepared::Stored(info));
            }
            Err(_) => replace = true,
        }
    }
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    compressor.compress_to_buffer(data, out)?;
    info.stored_digest = sha256_hex(out);
    info.stored_size = out.len() as u64;
    let mut sink = backend.blob_sink()?;
    sink.write_all(out)?;
    Ok(Prepared::Commit(Commit {
        info,
        sink,
        replace,
    }))
}

/// Read and fully verify an index blob, and check it against its record.
pub(crate) fn read_index(backend: &dyn Backend, record: &BlobInfo) -> io::Result<Index> {
    let what = format!(
        "the chunk index {} of a {}-byte artifact",
        record.digest, record.size
    );
    // What an index of the recorded number of chunks can take, checked
    // before anything is read: the record may come from a tampered store.
    let count = record.chunks.as_ref().map_or(0, |c| c.count);
    if count > MAX_INDEX_CHUNKS {
        return Err(invalid(format!(
            "{what} is refused: its record counts {count} chunks, more than the \
             {MAX_INDEX_CHUNKS} an index may list"
        )));
    }
    let content_max = count * INDEX_ENTRY_MAX + 4096;
    let stored_max = zstd::zstd_safe::compress_bound(content_max as usize) as u64;
    if record.stored_size > stored_max {
        return Err(invalid(format!(
            "{what} is refused: its record says it is stored in {} bytes, more than an \
             index of {count} chunks takes ({stored_max})",
            record.stored_size
        )));
    }
    let mut stored = Vec::new();
    read_stored(backend, &record.digest, record.stored_size, &mut stored)?;
    let stored_digest = sha256_hex(&stored);
    expect_stored(&what, record, stored.len() as u64, &stored_digest)?;
    // Decompressed up to what its chunks need, never more (a small
    // stored file can hold a zstd frame of gigabytes).
    let mut content = Vec::new();
    zstd::stream::Decoder::new(&stored[..])
        .and_then(|d| d.take(content_max + 1).read_to_end(&mut content))
        .map_err(|err| mismatch(&what, &format!("it does not decompress: {err}")))?;
    if content.len() as u64 > content_max {
        return Err(invalid(format!(
            "{what} is refused: it decompresses to more than the {content_max} bytes \
             an index of {count} chunks takes"
        )));
    }
    let digest = sha256_hex(&content);
    if digest != record.digest {
        return Err(mismatch(
            &what,
            &format!("its content hashes to {digest} instead"),
        ));
    }
    let index: Index = serde_json::from_slice(&content).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is not a chunk index: {err}"),
        )
    })?;
    if index.format != INDEX_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what} has format {:?}; this rewind reads {INDEX_FORMAT:?}",
                index.format
            ),
        ));
    }
    for (i, chunk) in index.chunks.iter().enumerate() {
        check_entry(&what, i, chunk)?;
    }
    // Each size is at most MAX_CHUNK and there are at most
    // MAX_INDEX_CHUNKS of them: the sum cannot overflow.
    let total: u64 = index.chunks.iter().map(|c| c.size).sum();
    if total != record.size
        || index.size != record.size
        || record.chunks.is_none()
        || count != index.chunks.len() as u64
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what} lists {} chunks of {total} bytes, which its record does not",
                index.chunks.len()
            ),
        ));
    }
    Ok(index)
}

/// Check `chunks` on [`workers`] threads; the failures, by position.
/// `progress` receives stored bytes as they are checked.
pub(crate) fn check_all(
    backend: &dyn Backend,
    chunks: &[&BlobInfo],
    depth: Depth,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<(usize, io::Error)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers().min(chunks.len()) {
            scope.spawn(|| {
                let mut content = Vec::new();
                let mut scratch = match Scratch::new() {
                    Ok(s) => s,
                    Err(err) => {
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((0, err));
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { return };
                    if let Err(err) = check(backend, chunk, depth, &mut scratch, &mut content) {
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((i, err));
                    }
                    progress(chunk.stored_size);
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by_key(|(i, _)| *i);
    failures
}

/// The chunks of an artifact being written, stored by worker threads
/// while the caller goes on cutting.
pub(crate) struct Pipeline {
    jobs: Option<mpsc::SyncSender<(usize, Bytes)>>,
    results: mpsc::Receiver<(usize, io::Result<BlobInfo>)>,
    workers: Vec<JoinHandle<()>>,
    sent: usize,
    stored: Vec<Option<BlobInfo>>,
}

impl Pipeline {
    pub(crate) fn start(backend: Arc<dyn Backend>, known: Arc<Known>) -> io::Result<Self> {
        let n = workers();
        // As many chunks queued as there are workers: enough that a worker
        // never waits for the caller, few enough that memory stays at a
        // few chunks (each at most MAX_CHUNK).
        let (jobs, queue) = mpsc::sync_channel::<(usize, Bytes)>(n);
        let queue = Arc::new(Mutex::new(queue));
        // Commits waiting on the disk or S3, and as many threads doing
        // them: several fsyncs (or PUTs) in flight at once, which the file
        // system batches into one journal commit, while the workers go on
        // compressing. Bounded: a commit holds its chunk's stored bytes
        // (in a temp file, or in memory for S3).
        let (to_commit, commits) = mpsc::sync_channel::<(usize, Commit)>(COMMITTERS);
        let commits = Arc::new(Mutex::new(commits));
        let (done, results) = mpsc::channel();
        let mut workers = Vec::with_capacity(n + COMMITTERS);
        for _ in 0..n {
            let (queue, done, to_commit) = (queue.clone(), done.clone(), to_commit.clone());
            let (backend, known) = (backend.clone(), known.clone());
            workers.push(
                std::thread::Builder::new()
                    .name("rewind-chunk".into())
                    .spawn(move || {
                        let mut compressor = match zstd::bulk::Compressor::new(ZSTD_LEVEL) {
                            Ok(c) => c,
                            Err(err) => {
                                let _ = done.send((usize::MAX, Err(err)));
                                return;
                            }
                        };
                        let mut out = Vec::new();
                        loop {
                            let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok((seq, data)) = job else { return };
                            let sent = match prepare(
                                &*backend,
                                &known,
                                &data,
                                &mut compressor,
                                &mut out,
                            ) {
                                Ok(Prepared::Commit(commit)) => {
                                    to_commit.send((seq, commit)).is_ok()
                                }
                                Ok(Prepared::Stored(info)) => done.send((seq, Ok(info))).is_ok(),
                                Err(err) => done.send((seq, Err(err))).is_ok(),
                            };
                            if !sent {
                                return;
                            }
                        }
                    })?,
            );
        }
        drop(to_commit);
        for _ in 0..COMMITTERS {
            let (commits, done, known) = (commits.clone(), done.clone(), known.clone());
            workers.push(
                std::thread::Builder::new()
                    .name("rewind-commit".into())
                    .spawn(move || {
                        loop {
                            let job = commits.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok((seq, commit)) = job else { return };
                            if done.send((seq, commit.run(&known))).is_err() {
                                return;
                            }
                        }
                    })?,
            );
        }
        Ok(Pipeline {
            jobs: Some(jobs),
            results,
            workers,
            sent: 0,
            stored: Vec::new(),
        })
    }

    fn take_result(&mut self, (seq, result): (usize, io::Result<BlobInfo>)) -> io::Result<()> {
        let info = result?;
        if self.stored.len() <= seq {
            self.stored.resize(seq + 1, None);
        }
        self.stored[seq] = Some(info);
        Ok(())
    }

    /// Queue a chunk, waiting while the workers are busy; fails with the
    /// first error a worker met.
    pub(crate) fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        while let Ok(result) = self.results.try_recv() {
            self.take_result(result)?;
        }
        let jobs = self.jobs.as_ref().expect("not finished");
        jobs.send((self.sent, chunk))
            .map_err(|_| io::Error::other("the chunk workers stopped"))?;
        self.sent += 1;
        Ok(())
    }

    /// Wait for every chunk; their records in order.
    pub(crate) fn finish(mut self) -> io::Result<Vec<BlobInfo>> {
        drop(self.jobs.take());
        let mut first_error = None;
        while let Ok(result) = self.results.recv() {
            if let Err(err) = self.take_result(result) {
                first_error.get_or_insert(err);
            }
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        let stored: Option<Vec<BlobInfo>> = std::mem::take(&mut self.stored).into_iter().collect();
        match stored {
            Some(chunks) if chunks.len() == self.sent => Ok(chunks),
            _ => Err(io::Error::other(
                "a chunk worker stopped before storing its chunk",
            )),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Abandoned: stop the workers. Chunks they stored stay, complete,
        // as blobs no record names (docs/store-format.md, Retention); a
        // later backup proves such a chunk before it reuses it.
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Threads committing written chunks (fsync and rename locally, the PUT
/// on S3). Why 4: a commit mostly waits (on the disk's journal, or on
/// S3), so more of them than cores is what keeps the workers busy; four
/// in flight let ext4 batch their fsyncs, and on S3 are four requests at
/// once, while the chunks they hold stay a few MiB.
const COMMITTERS: usize = 4;

/// How many chunks readers fetch ahead of the consumer, per worker.
/// Why 2: a worker always has the next chunk to work on while the
/// consumer takes the current one, and memory stays at a few chunks.
const AHEAD_PER_WORKER: usize = 2;

struct Ahead {
    /// The next chunk a worker takes.
    next_job: usize,
    /// Chunks the consumer took.
    taken: usize,
    ready: BTreeMap<usize, io::Result<Vec<u8>>>,
    /// Buffers the reader is done with, for the workers to fill again.
    spare: Vec<Vec<u8>>,
    stop: bool,
}

struct Shared {
    state: Mutex<Ahead>,
    changed: Condvar,
}

/// The content of a chunked artifact, in order: workers fetch,
/// decompress and verify chunks ahead of the reader; each chunk's content
/// is handed on only after its digest was checked.
pub(crate) struct ChunkedReader {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    count: usize,
    /// The chunk being read, verified, and how far.
    current: Vec<u8>,
    at: usize,
}

impl ChunkedReader {
    pub(crate) fn start(backend: Arc<dyn Backend>, chunks: Vec<BlobInfo>) -> io::Result<Self> {
        let count = chunks.len();
        let chunks = Arc::new(chunks);
        let n = workers().min(count.max(1));
        let window = n * AHEAD_PER_WORKER;
        let shared = Arc::new(Shared {
            state: Mutex::new(Ahead {
                next_job: 0,
                taken: 0,
                ready: BTreeMap::new(),
                spare: Vec::new(),
                stop: false,
            }),
            changed: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let (shared, chunks, backend) = (shared.clone(), chunks.clone(), backend.clone());
            workers.push(
                std::thread::Builder::new()
                    .name("rewind-chunk".into())
                    .spawn(move || {
                        let mut scratch = Scratch::new();
                        loop {
                            let (i, mut content) = {
                                let mut state =
                                    shared.state.lock().unwrap_or_else(|e| e.into_inner());
                                while !state.stop
                                    && state.next_job < count
                                    && state.next_job >= state.taken + window
                                {
                                    state = shared
                                        .changed
                                        .wait(state)
                                        .unwrap_or_else(|e| e.into_inner());
                                }
                                if state.stop || state.next_job >= count {
                                    return;
                                }
                                state.next_job += 1;
                                (state.next_job - 1, state.spare.pop().unwrap_or_default())
                            };
                            let result = match &mut scratch {
                                Ok(scratch) => check(
                                    &*backend,
                                    &chunks[i],
                                    Depth::Streamed,
                                    scratch,
                                    &mut content,
                                )
                                .map(|()| content),
                                Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
                            };
                            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                            state.ready.insert(i, result);
                            shared.changed.notify_all();
                        }
                    })?,
            );
        }
        Ok(ChunkedReader {
            shared,
            workers,
            count,
            current: Vec::new(),
            at: 0,
        })
    }

    /// Move to the next chunk's verified content (handing the current
    /// buffer back to the workers); `false` after the last.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let done = std::mem::take(&mut self.current);
        if done.capacity() > 0 {
            state.spare.push(done);
        }
        self.at = 0;
        let i = state.taken;
        if i >= self.count {
            return Ok(false);
        }
        loop {
            if let Some(result) = state.ready.remove(&i) {
                state.taken += 1;
                self.shared.changed.notify_all();
                self.current = result?;
                return Ok(true);
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Read for ChunkedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for ChunkedReader {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop = true;
        self.shared.changed.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{Chunks, blob_path};
    use std::fs;
    use std::path::Path;

    /// Store `content` as the blob named by its sha256, compressed as
    /// the writer does (an attacker who can write the store can do this).
    fn plant(root: &Path, content: &[u8]) -> BlobInfo {
        let stored = zstd::encode_all(content, 3).unwrap();
        let digest = sha256_hex(content);
        let path = blob_path(&root.join("blobs"), &digest);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &stored).unwrap();
        BlobInfo {
            digest,
            size: content.len() as u64,
            stored_digest: sha256_hex(&stored),
            stored_size: stored.len() as u64,
            chunks: None,
        }
    }

    /// An index blob listing `chunks` (JSON as given), planted, and the
    /// record of an artifact of `size` bytes naming it.
    fn plant_index(root: &Path, json: &[u8], count: u64, size: u64) -> BlobInfo {
        let mut record = plant(root, json);
        record.size = size;
        record.chunks = Some(Chunks {
            count,
            stored_size: 0,
        });
        record
    }

    fn index_json(chunks: &[BlobInfo]) -> Vec<u8> {
        let size = chunks.iter().fold(0u64, |a, c| a.wrapping_add(c.size));
        serde_json::to_vec(&Index {
            format: INDEX_FORMAT.into(),
            size,
            chunks: chunks.to_vec(),
        })
        .unwrap()
    }

    /// Every way a store is read for an artifact: all must refuse `record`
    /// with a message containing `expect`, and none may panic.
    fn assert_refused(store: &crate::Store, record: &BlobInfo, expect: &str) {
        let errors = [
            ("open_blob", store.open_blob(record).err()),
            ("check_stored", store.check_stored(record, &|_| {}).err()),
            ("verify_blob", store.verify_blob(record).err()),
            ("missing_blobs", store.missing_blobs(record).err()),
        ];
        for (how, err) in errors {
            let err = err.unwrap_or_else(|| panic!("{how} accepted {record:?}"));
            assert!(err.to_string().contains(expect), "{how}: {err}");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{how}: {err}");
        }
    }

    #[test]
    fn a_chunk_digest_that_is_a_path_or_not_hex_is_refused_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = crate::Store::open(&root).unwrap();
        // A file outside the store that a `..` digest would reach, a zstd
        // frame like a blob: its bytes must never be read as a chunk.
        let secret = b"the secret outside the store";
        let outside = plant(dir.path(), secret);
        let good = plant(&root, b"a chunk");
        for digest in [
            format!(
                "../../../../blobs/sha256/{}/{}",
                &outside.digest[..2],
                outside.digest
            ),
            "/etc/passwd".to_string(),
            "../".repeat(20) + "etc/passwd",
            "ab/../../../../etc/passwd".to_string(),
            String::new(),
            "a".to_string(),
            "a\u{e9}".to_string(),
            good.digest.to_uppercase(),
            good.digest[..63].to_string(),
            format!("{}0", good.digest),
            format!("{}\0", &good.digest[..63]),
        ] {
            let mut chunk = outside.clone();
            chunk.digest = digest.clone();
            let json = index_json(&[good.clone(), chunk]);
            let record = plant_index(&root, &json, 2, good.size + outside.size);
            assert_refused(&store, &record, "is not 64 lowercase hex digits");
            assert_refused(&store, &record, "chunk 1");
            // The stored digest too.
            let mut chunk = good.clone();
            chunk.stored_digest = digest;
            let json = index_json(&[good.clone(), chunk]);
            let record = plant_index(&root, &json, 2, 2 * good.size);
            assert_refused(&store, &record, "stored digest");
        }
        // The record's own digest (a manifest's) is a name too.
        let mut record = plant_index(
            &root,
            &index_json(std::slice::from_ref(&good)),
            1,
            good.size,
        );
        record.digest = format!(
            "../../../blobs/sha256/{}/{}",
            &outside.digest[..2],
            outside.digest
        );
        // (missing_blobs looks a record's own digest up in lib.rs, which
        // does not check it: see the report of this change.)
        for err in [
            store.open_blob(&record).err(),
            store.check_stored(&record, &|_| {}).err(),
            store.verify_blob(&record).err(),
        ] {
            let err = err.expect("refused");
            assert!(
                err.to_string().contains("is not 64 lowercase hex digits"),
                "{err}"
            );
        }
    }

    /// The same class for a plain blob's record (a manifest's `digest`):
    /// `Store::open_stored` and `Store::has_blob` (host/store/src/lib.rs)
    /// look it up by `blob_key` unchecked, so `../../…` reads, and tells
    /// the existence of, a file outside the store. Fix: refuse a digest
    /// that is not [`is_digest`] there (or in `blob_key`) before any lookup.
    #[test]
    fn a_plain_record_digest_that_is_a_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = crate::Store::open(&root).unwrap();
        plant(&root, b"a blob of the store");
        let outside = plant(dir.path(), b"the secret outside the store");
        let mut record = outside.clone();
        record.digest = format!(
            "../../blobs/sha256/{}/{}",
            &outside.digest[..2],
            outside.digest
        );
        assert!(
            !store.has_blob(&record.digest),
            "has_blob found a file outside the store"
        );
        let err = store
            .open_blob(&record)
            .err()
            .expect("open_blob opened a file outside the store");
        assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
    }

    #[test]
    fn chunk_sizes_that_lie_are_refused_without_reserving_what_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let good = plant(dir.path(), b"a chunk");
        let with = |size: u64, stored_size: u64| BlobInfo {
            size,
            stored_size,
            ..good.clone()
        };
        for (chunks, expect) in [
            // A terabyte chunk: reserving it aborts the host.
            (
                vec![good.clone(), with(1 << 40, good.stored_size)],
                "its size 1099511627776",
            ),
            (
                vec![with(u64::MAX, good.stored_size), with(2, good.stored_size)],
                "its size",
            ),
            (
                vec![with(MAX_CHUNK as u64 + 1, good.stored_size)],
                "not between 1 and",
            ),
            (vec![good.clone(), with(0, good.stored_size)], "its size 0"),
            (
                vec![good.clone(), with(good.size, 1 << 50)],
                "its stored size",
            ),
            (
                vec![good.clone(), with(good.size, u64::MAX)],
                "its stored size",
            ),
            (vec![good.clone(), with(good.size, 0)], "its stored size 0"),
        ] {
            let size = chunks.iter().fold(0u64, |a, c| a.wrapping_add(c.size));
            let record = plant_index(dir.path(), &index_json(&chunks), chunks.len() as u64, size);
            assert_refused(&store, &record, expect);
            assert_refused(&store, &record, "is not a chunk rewind writes");
        }
        // An entry that is itself an index.
        let mut nested = good.clone();
        nested.chunks = Some(Chunks {
            count: 1,
            stored_size: 1,
        });
        let record = plant_index(
            dir.path(),
            &index_json(&[good.clone(), nested]),
            2,
            2 * good.size,
        );
        assert_refused(&store, &record, "itself chunked");
    }

    #[test]
    fn a_chunk_that_decompresses_to_more_than_its_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let good = plant(dir.path(), b"a chunk");
        // 64 MiB of zeros in a few KiB, recorded as the 1-byte chunk its
        // first byte is: the host must not inflate it.
        let bomb = plant(dir.path(), &vec![0u8; 64 << 20]);
        assert!(bomb.stored_size < max_stored_chunk());
        let chunk = BlobInfo {
            digest: sha256_hex(&[0]),
            size: 1,
            ..bomb.clone()
        };
        // Named as the bomb's digest so it is found: the content digest check
        // fails anyway, but only after decompressing (bounded) it.
        let chunk = BlobInfo {
            digest: bomb.digest.clone(),
            ..chunk
        };
        let record = plant_index(
            dir.path(),
            &index_json(&[good.clone(), chunk]),
            2,
            good.size + 1,
        );
        let mut out = Vec::new();
        let err = store
            .open_blob(&record)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("does not decompress"), "{err}");
        assert_eq!(out, b"a chunk");
        let err = store.verify_blob(&record).unwrap_err();
        assert!(err.to_string().contains("does not decompress"), "{err}");
        // Recorded at its true size it is larger than any chunk.
        let record = plant_index(
            dir.path(),
            &index_json(&[good.clone(), bomb.clone()]),
            2,
            good.size + bomb.size,
        );
        assert_refused(&store, &record, "is not between 1 and");
    }

    #[test]
    fn an_index_that_decompresses_to_more_than_its_chunks_need_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let good = plant(dir.path(), b"a chunk");
        // A valid index padded with 64 MiB of spaces (JSON allows them):
        // its digest matches the record, so only a bound stops it.
        let mut json = index_json(&[good.clone(), good.clone()]);
        json.extend(std::iter::repeat_n(b' ', 64 << 20));
        let record = plant_index(dir.path(), &json, 2, 2 * good.size);
        assert_refused(&store, &record, "decompresses to more than");
    }

    #[test]
    fn an_index_record_counting_too_many_chunks_or_bytes_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let good = plant(dir.path(), b"a chunk");
        let record = plant_index(
            dir.path(),
            &index_json(std::slice::from_ref(&good)),
            1,
            good.size,
        );
        let mut many = record.clone();
        many.chunks = Some(Chunks {
            count: u64::MAX,
            stored_size: 0,
        });
        assert_refused(&store, &many, "more than the 1048576 an index may list");
        let mut large = record.clone();
        large.stored_size = 1 << 50;
        assert_refused(&store, &large, "its record says it is stored in");
        // And one chunk the record does not count.
        let mut fewer = record.clone();
        fewer.chunks = Some(Chunks {
            count: 2,
            stored_size: 0,
        });
        assert_refused(&store, &fewer, "which its record does not");
        // The good one reads.
        let mut out = Vec::new();
        store
            .open_blob(&record)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"a chunk");
    }

    #[test]
    fn cuts_do_not_depend_on_what_follows_max_chunk() {
        let data: Vec<u8> = (0..3 * MAX_CHUNK as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let first = cut(&data);
        assert!((MIN_CHUNK..=MAX_CHUNK).contains(&first), "{first}");
        assert_eq!(cut(&data[..MAX_CHUNK]), first);
        assert_eq!(cut(&data[..100]), 100);
    }
}
