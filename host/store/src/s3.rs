//! The store on S3 (`store.url = "s3://bucket/prefix"`), through the
//! `object_store` crate: the same keys as the local directory
//! (docs/store-format.md, "The store on S3"), under `prefix/`.
//!
//! S3 has neither rename nor append, so three things differ from a
//! directory, each keeping the local store's guarantee:
//!
//! - **Blobs.** A blob's key is the sha256 of its content, known only
//!   once the last byte is in. A blob smaller than one part (8 MiB
//!   compressed) is kept in memory and written with one PUT under its
//!   final key (`If-None-Match: *`, so an existing blob is never
//!   replaced). A larger one streams as a multipart upload to
//!   `tmp/blob-<unique>` (8 MiB parts, at most two in flight: memory stays
//!   about 24 MiB whatever the size) and, once hashed and completed, is
//!   copied server-side to its final key and the temp object deleted. An
//!   upload is invisible until it is completed, and it is completed only
//!   after every byte was hashed, so no partial blob is ever visible under
//!   `blobs/`: a crash leaves an incomplete upload (invisible; a bucket
//!   lifecycle rule `AbortIncompleteMultipartUpload` reclaims it) or a
//!   complete object under `tmp/` (deleted by the next run that takes a
//!   stale lock over). Why not a multipart upload straight to the final
//!   key: its key is fixed when the upload starts, before the digest is
//!   known. CopyObject is limited to 5 GiB; a larger blob is copied by
//!   streaming it through this host (still part by part).
//! - **Atomic writes** are single PUTs, which S3 makes visible atomically.
//! - **Events** are one object per event, `events/<time>-<unique>.json`
//!   (S3 cannot append); reading the log lists them in name (time) order.
//!
//! The lease uses S3's conditional writes: created with `If-None-Match: *`,
//! renewed and taken over with `If-Match: <ETag>` (lock.rs has the logic).
//!
//! `object_store` is async. The store gives it one current-thread tokio
//! runtime, driven by a thread of its own ([`Rt`]); the store's callers
//! stay synchronous and block on a channel for each result.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, BlobSink, ListedBlob, Version, is_digest};

/// `s3://bucket/prefix` and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The key prefix the store lives under, without leading or trailing
    /// slash; empty for the bucket's root.
    pub prefix: String,
    /// `store.endpoint`: an S3-compatible endpoint (`http://127.0.0.1:9000`);
    /// AWS's own when `None`.
    pub endpoint: Option<String>,
    /// `store.region`; else `AWS_REGION`/`AWS_DEFAULT_REGION`, the AWS
    /// config file, or `us-east-1`.
    pub region: Option<String>,
}

impl S3Location {
    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Split `s3://bucket/prefix` into bucket and prefix, or say what is wrong.
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{url}` does not start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3's bucket naming rules, the part that matters for a URL.
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(format!(
            "`{bucket}` is not an S3 bucket name (3 to 63 lower-case letters, digits, `-` and `.`)"
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    if prefix
        .split('/')
        .any(|part| part.is_empty() && !prefix.is_empty() || part == "." || part == "..")
        || prefix.starts_with('/')
    {
        return Err(format!(
            "`{prefix}` is not a usable key prefix (no empty, `.` or `..` parts)"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// The store's runtime: one current-thread tokio runtime, driven by a
/// thread of its own.
///
/// Why not `block_on` in the caller: the store is called from inside the
/// sandbox's own runtime (a plugin writing an artifact reaches
/// `BlobWriter::write` from an async host call), where starting or
/// blocking on another runtime panics. Spawning onto this runtime and
/// waiting on a std channel works from any thread. Why current-thread:
/// the store makes one request at a time, apart from the two parts of a
/// multipart upload in flight, so one thread is all it needs, and
/// nothing in a run competes with it for cores.
#[derive(Debug, Clone)]
struct Rt {
    handle: tokio::runtime::Handle,
    _thread: Arc<RtThread>,
}

#[derive(Debug)]
struct RtThread {
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for RtThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
    }
}

/// A result the runtime will deliver.
struct Pending<T> {
    rx: std::sync::mpsc::Receiver<T>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Pending<T> {
    fn wait(self) -> io::Result<T> {
        self.rx
            .recv()
            .map_err(|_| io::Error::other("the S3 client stopped unexpectedly"))
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        // A result nobody waits for any more: stop working on it.
        self.task.abort();
    }
}

impl Rt {
    fn new() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("rewind-s3".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(Rt {
            handle,
            _thread: Arc::new(RtThread {
                stop: Mutex::new(Some(stop)),
            }),
        })
    }

    fn spawn<F>(&self, future: F) -> Pending<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        Pending { rx, task }
    }

    fn call<F>(&self, future: F) -> io::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn(future).wait()
    }
}

/// The store on S3.
#[derive(Debug)]
pub(crate) struct S3 {
    client: Arc<AmazonS3>,
    rt: Rt,
    location: S3Location,
    /// `s3://bucket/prefix`, for messages.
    url: PathBuf,
}

/// Compressed bytes per part of a multipart upload: S3's minimum is 5 MiB,
/// and 10,000 parts of 8 MiB allow a blob of 78 GiB.
const PART: usize = 8 << 20;
/// Parts uploading at once; with the one being filled, the memory a blob
/// upload holds is `(IN_FLIGHT + 1) * PART`.
const IN_FLIGHT: usize = 2;
/// The largest object CopyObject copies in one request.
const COPY_LIMIT: u64 = 5 << 30;

impl S3 {
    /// A client for `location`, without reading anything there (a fleet
    /// store's root is not a store: fleet.rs).
    pub(crate) fn connect(location: &S3Location) -> io::Result<Self> {
        // reqwest's TLS is rustls without a built-in provider; use ring's
        // (an error only says a provider is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    // A blob streams for as long as its reader takes (a
                    // restore into a slow database): no limit on the whole
                    // request, only on each read.
                    .with_timeout_disabled()
                    .with_read_timeout(Duration::from_secs(120)),
            );
        let files = aws_files::Profile::load();
        let region = location
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .or_else(|| files.region.clone())
            .unwrap_or_else(|| "us-east-1".into());
        builder = builder.with_region(region);
        if let Some(endpoint) = &location.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        // The environment first (from_env read it); else the shared
        // credentials file's profile.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && let Some((key, secret, token)) = files.credentials
        {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
        let client = builder.build().map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot set up the S3 client for {}: {err}", location.url()),
            )
        })?;
        Ok(S3 {
            client: Arc::new(client),
            rt: Rt::new()?,
            url: PathBuf::from(location.url()),
            location: location.clone(),
        })
    }

    pub(crate) fn open(location: &S3Location) -> io::Result<Self> {
        let s3 = S3::connect(location)?;
        crate::version::check_or_write(&s3)?;
        Ok(s3)
    }

    fn key(&self, key: &str) -> Key {
        if self.location.prefix.is_empty() {
            Key::from(key)
        } else {
            Key::from(format!("{}/{key}", self.location.prefix))
        }
    }

    /// One level of `dir/`: its objects and its common prefixes.
    fn list_with_delimiter(&self, dir: &str) -> io::Result<object_store::ListResult> {
        let client = self.client.clone();
        let prefix = self.key(dir);
        self.rt
            .call(async move { client.list_with_delimiter(Some(&prefix)).await })?
            .map_err(|err| self.error("LIST", dir, err))
    }

    /// An `object_store` error as an `io::Error` that says what to do.
    fn error(&self, what: &str, key: &str, err: object_store::Error) -> io::Error {
        let kind = match &err {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
            object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            _ => io::ErrorKind::Other,
        };
        let detail = error_chain(&err);
        let url = self.location.url();
        let bucket = &self.location.bucket;
        let endpoint = self
            .location
            .endpoint
            .as_deref()
            .unwrap_or("AWS's S3 endpoint");
        let fix = if detail.contains("NoSuchBucket") {
            format!(
                "the bucket `{bucket}` does not exist at {endpoint}: create it (`aws s3 mb s3://{bucket}`), \
                 or point store.url (and store.endpoint) at an existing one"
            )
        } else if detail.contains("SignatureDoesNotMatch") {
            "S3 refused the request's signature: the secret key does not belong to the access key; \
             check AWS_SECRET_ACCESS_KEY (or aws_secret_access_key in ~/.aws/credentials)"
                .to_string()
        } else if detail.contains("InvalidAccessKeyId") {
            "S3 does not know the access key: check AWS_ACCESS_KEY_ID (or aws_access_key_id in \
             ~/.aws/credentials)"
                .to_string()
        } else if detail.contains("ExpiredToken") || detail.contains("InvalidToken") {
            "the session token expired or is invalid: refresh AWS_SESSION_TOKEN".to_string()
        } else if kind == io::ErrorKind::PermissionDenied {
            format!(
                "access denied: the credentials need s3:GetObject, s3:PutObject, s3:DeleteObject and \
                 s3:ListBucket on {url}"
            )
        } else if detail.contains("onnect") || detail.contains("dns error") {
            format!(
                "cannot reach {endpoint}: check store.endpoint and the network (`aws s3 ls {url} --endpoint-url …`)"
            )
        } else if kind == io::ErrorKind::NotFound {
            return io::Error::new(kind, format!("{}: not found", self.display(key).display()));
        } else {
            String::new()
        };
        // S3's own words (`<Code>`, `<Message>`) rather than the whole
        // response, when it sent them.
        let said = match (xml_field(&detail, "Code"), xml_field(&detail, "Message")) {
            (Some(code), Some(text)) => format!("{code}: {text}"),
            (Some(code), None) => code.to_string(),
            _ => err.to_string(),
        };
        let mut message = format!("S3 {what} {}: {said}", self.display(key).display());
        if !fix.is_empty() {
            message = format!("{message}\n  {fix}");
        }
        io::Error::new(kind, message)
    }

    fn get_bytes(&self, key: &str) -> io::Result<Option<(Vec<u8>, Option<String>)>> {
        let client = self.client.clone();
        let path = self.key(key);
        let got = self.rt.call(async move {
            let result = client.get(&path).await?;
            let e_tag = result.meta.e_tag.clone();
            let bytes = result.bytes().await?;
            Ok::<_, object_store::Error>((bytes.to_vec(), e_tag))
        })?;
        match got {
            Ok(found) => Ok(Some(found)),
            Err(err) => match self.error("GET", key, err) {
                err if err.kind() == io::ErrorKind::NotFound && !is_bucket_error(&err) => Ok(None),
                err => Err(err),
            },
        }
    }

    fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> io::Result<PutOutcome> {
        let client = self.client.clone();
        let path = self.key(key);
        let result = self.rt.call(async move {
            client
                .put_opts(&path, PutPayload::from(bytes), PutOptions::from(mode))
                .await
        })?;
        match result {
            Ok(done) => Ok(PutOutcome::Written(Version(done.e_tag.unwrap_or_default()))),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::Exists),
            Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::Changed),
            Err(err) => Err(self.error("PUT", key, err)),
        }
    }

    fn conditional(
        &self,
        key: &str,
        bytes: &[u8],
        version: &Version,
    ) -> io::Result<Option<Version>> {
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(version.0.clone()),
            version: None,
        });
        match self.put(key, bytes.to_vec(), mode)? {
            PutOutcome::Written(version) => Ok(Some(version)),
            PutOutcome::Exists | PutOutcome::Changed => Ok(None),
        }
    }

    fn head(&self, key: &str) -> io::Result<Option<object_store::ObjectMeta>> {
        let client = self.client.clone();
        let path = self.key(key);
        match self.rt.call(async move { client.head(&path).await })? {
            Ok(meta) => Ok(Some(meta)),
            Err(err) => match self.error("HEAD", key, err) {
                err if err.kind() == io::ErrorKind::NotFound => Ok(None),
                err => Err(err),
            },
        }
    }

    fn copy(&self, from: &str, to: &str) -> io::Result<()> {
        let client = self.client.clone();
        let (source, dest) = (self.key(from), self.key(to));
        self.rt
            .call(async move { client.copy(&source, &dest).await })?
            .map_err(|err| self.error("COPY to", to, err))
    }

    /// sha256 and size of an object's bytes, streamed.
    fn hash_object(&self, key: &str) -> io::Result<(String, u64)> {
        let mut hasher = Sha256::new();
        let size = io::copy(&mut self.open_read(key)?, &mut hasher)?;
        Ok((hex::encode(hasher.finalize()), size))
    }

    fn sink_to(self: &Arc<Self>, key: String) -> S3Sink {
        S3Sink {
            s3: self.clone(),
            key,
            buf: Vec::with_capacity(PART),
            upload: None,
            parts: VecDeque::new(),
            done: false,
        }
    }
}

/// The text of `<name>…</name>` in an S3 error body.
fn xml_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let len = text[start..].find(&format!("</{name}>"))?;
    Some(&text[start..start + len])
}

/// A missing bucket answers 404 like a missing key: it is not "absent".
fn is_bucket_error(err: &io::Error) -> bool {
    err.to_string().contains("does not exist at")
}

/// An error and its sources, for finding S3's error code in them.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

enum PutOutcome {
    Written(Version),
    Exists,
    Changed,
}

/// The S3 backend is shared by the store's clones and the lease thread;
/// blob sinks hold it too, so it lives in an `Arc` of its own.
#[derive(Debug)]
pub(crate) struct SharedS3(Arc<S3>);

impl S3 {
    pub(crate) fn shared(self) -> SharedS3 {
        SharedS3(Arc::new(self))
    }
}

impl Backend for SharedS3 {
    fn root(&self) -> &Path {
        &self.0.url
    }

    fn read(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        self.0.read(key)
    }

    fn write_atomic(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.0.write_atomic(key, bytes)
    }

    fn remove(&self, key: &str) -> io::Result<()> {
        self.0.remove(key)
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        self.0.exists(key)
    }

    fn has_entry(&self, name: &str) -> io::Result<bool> {
        self.0.has_entry(name)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        self.0.list(dir)
    }

    fn list_dirs(&self, dir: &str) -> io::Result<Vec<String>> {
        self.0.list_dirs(dir)
    }

    fn list_blobs(&self) -> io::Result<Vec<ListedBlob>> {
        self.0.list_blobs()
    }

    fn blob_sink(&self) -> io::Result<Box<dyn BlobSink>> {
        let key = format!("tmp/blob-{}", unique());
        Ok(Box::new(self.0.sink_to(key)))
    }

    fn open_read(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        self.0.open_read(key)
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> io::Result<Option<Version>> {
        self.0.create_new(key, bytes)
    }

    fn read_versioned(&self, key: &str) -> io::Result<Option<(Vec<u8>, Version)>> {
        self.0.read_versioned(key)
    }

    fn replace_if(
        &self,
        key: &str,
        bytes: &[u8],
        version: &Version,
    ) -> io::Result<Option<Version>> {
        self.0.replace_if(key, bytes, version)
    }

    fn take_over(&self, key: &str, bytes: &[u8], stale: &Version) -> io::Result<Option<Version>> {
        self.0.take_over(key, bytes, stale)
    }

    fn remove_if(&self, key: &str, version: &Version) -> io::Result<bool> {
        self.0.remove_if(key, version)
    }

    fn append_event(&self, line: &[u8]) -> io::Result<()> {
        self.0.append_event(line)
    }

    fn read_events(&self) -> io::Result<Vec<u8>> {
        self.0.read_events()
    }

    fn clear_tmp(&self) -> io::Result<()> {
        self.0.clear_tmp()
    }

    fn check_writable(&self) -> io::Result<()> {
        self.0.check_writable()
    }
}

/// A name no other writer on any host picks: time, pid, a counter and
/// random bits.
fn unique() -> String {
    let mut random = [0u8; 4];
    crate::runs::getrandom(&mut random);
    format!("{}-{}", crate::blob::unique_suffix(), hex::encode(random))
}

impl Backend for S3 {
    fn root(&self) -> &Path {
        &self.url
    }

    fn read(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get_bytes(key)?.map(|(bytes, _)| bytes))
    }

    fn write_atomic(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.put(key, bytes.to_vec(), PutMode::Overwrite).map(drop)
    }

    fn remove(&self, key: &str) -> io::Result<()> {
        let client = self.client.clone();
        let path = self.key(key);
        match self.rt.call(async move { client.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.error("DELETE", key, err)),
        }
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        Ok(self.head(key)?.is_some())
    }

    fn has_entry(&self, name: &str) -> io::Result<bool> {
        if self.exists(name)? {
            return Ok(true);
        }
        let client = self.client.clone();
        let prefix = self.key(name);
        let first = self
            .rt
            .call(async move { client.list(Some(&prefix)).next().await })?;
        match first {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(err)) => Err(self.error("LIST", name, err)),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(self
            .list_with_delimiter(dir)?
            .objects
            .iter()
            .filter_map(|meta| meta.location.filename())
            .filter(|name| !name.starts_with('.'))
            .map(str::to_string)
            .collect())
    }

    fn list_dirs(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(self
            .list_with_delimiter(dir)?
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename())
            .filter(|name| !name.starts_with('.'))
            .map(str::to_string)
            .collect())
    }

    fn list_blobs(&self) -> io::Result<Vec<ListedBlob>> {
        // One recursive LIST of `blobs/sha256/` (1000 keys a request),
        // each object with its size and `LastModified`.
        let client = self.client.clone();
        let prefix = self.key("blobs/sha256");
        let metas = self
            .rt
            .call(async move { client.list(Some(&prefix)).try_collect::<Vec<_>>().await })?
            .map_err(|err| self.error("LIST", "blobs/sha256/", err))?;
        let root = Key::from(self.location.prefix.as_str());
        let root = root.as_ref();
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let key = meta.location.as_ref();
                let key = if root.is_empty() {
                    key
                } else {
                    key.strip_prefix(root)?.strip_prefix('/')?
                };
                let digest = key.rsplit('/').next()?;
                if !is_digest(digest) || crate::blob::blob_key(digest).ok().as_deref() != Some(key)
                {
                    return None;
                }
                let modified = jiff::Timestamp::new(
                    meta.last_modified.timestamp(),
                    meta.last_modified.timestamp_subsec_nanos() as i32,
                )
                .ok();
                Some(ListedBlob {
                    digest: digest.to_string(),
                    size: meta.size,
                    modified,
                })
            })
            .collect())
    }

    fn blob_sink(&self) -> io::Result<Box<dyn BlobSink>> {
        unreachable!("blob sinks come from the shared backend")
    }

    fn open_read(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        let client = self.client.clone();
        let path = self.key(key);
        let stream = self
            .rt
            .call(async move { client.get(&path).await.map(|got| got.into_stream()) })?
            .map_err(|err| self.error("GET", key, err))?;
        Ok(Box::new(S3Read {
            rt: self.rt.clone(),
            stream: Some(stream),
            chunk: Bytes::new(),
            url: self.display(key),
        }))
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> io::Result<Option<Version>> {
        match self.put(key, bytes.to_vec(), PutMode::Create)? {
            PutOutcome::Written(version) => Ok(Some(version)),
            PutOutcome::Exists | PutOutcome::Changed => Ok(None),
        }
    }

    fn read_versioned(&self, key: &str) -> io::Result<Option<(Vec<u8>, Version)>> {
        Ok(self
            .get_bytes(key)?
            .map(|(bytes, e_tag)| (bytes, Version(e_tag.unwrap_or_default()))))
    }

    fn replace_if(
        &self,
        key: &str,
        bytes: &[u8],
        version: &Version,
    ) -> io::Result<Option<Version>> {
        self.conditional(key, bytes, version)
    }

    fn take_over(&self, key: &str, bytes: &[u8], stale: &Version) -> io::Result<Option<Version>> {
        // One conditional PUT: of two takers with the same ETag, S3 lets
        // one through and answers 412 to the other.
        self.conditional(key, bytes, stale)
    }

    fn remove_if(&self, key: &str, version: &Version) -> io::Result<bool> {
        // object_store has no conditional DELETE: compare, then delete.
        match self.head(key)? {
            Some(meta) if meta.e_tag.as_deref() == Some(version.0.as_str()) => {
                self.remove(key)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn append_event(&self, line: &[u8]) -> io::Result<()> {
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let key = format!("events/{nanos:020}-{}.json", unique());
        self.put(&key, line.to_vec(), PutMode::Overwrite).map(drop)
    }

    fn read_events(&self) -> io::Result<Vec<u8>> {
        let mut names = self.list("events")?;
        names.sort();
        let client = self.client.clone();
        let keys: Vec<Key> = names
            .iter()
            .map(|name| self.key(&format!("events/{name}")))
            .collect();
        let objects = self
            .rt
            .call(async move {
                futures_util::stream::iter(keys)
                    .map(|key| {
                        let client = client.clone();
                        async move { client.get(&key).await?.bytes().await }
                    })
                    .buffered(16)
                    .try_collect::<Vec<Bytes>>()
                    .await
            })?
            .map_err(|err| self.error("GET", "events/", err))?;
        Ok(objects.concat())
    }

    fn clear_tmp(&self) -> io::Result<()> {
        for name in self.list("tmp")? {
            self.remove(&format!("tmp/{name}"))?;
        }
        Ok(())
    }

    fn check_writable(&self) -> io::Result<()> {
        let key = format!("tmp/probe-{}", unique());
        self.write_atomic(&key, b"")?;
        self.remove(&key)
    }
}

/// A blob on its way to S3: one PUT if it fits in a part, else a
/// multipart upload to a temp key, copied to the blob's key once complete.
struct S3Sink {
    s3: Arc<S3>,
    /// Where the multipart upload goes.
    key: String,
    buf: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    parts: VecDeque<Pending<object_store::Result<()>>>,
    done: bool,
}

impl S3Sink {
    /// Send the buffer as the next part, waiting while too many are in
    /// flight.
    fn send_part(&mut self) -> io::Result<()> {
        let s3 = self.s3.clone();
        if self.upload.is_none() {
            let client = s3.client.clone();
            let path = s3.key(&self.key);
            let upload = s3
                .rt
                .call(async move { client.put_multipart(&path).await })?
                .map_err(|err| s3.error("multipart upload to", &self.key, err))?;
            self.upload = Some(upload);
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(PART));
        let upload = self.upload.as_mut().expect("started above");
        let part = upload.put_part(PutPayload::from(data));
        self.parts.push_back(s3.rt.spawn(part));
        while self.parts.len() > IN_FLIGHT {
            self.wait_part()?;
        }
        Ok(())
    }

    fn wait_part(&mut self) -> io::Result<()> {
        if let Some(part) = self.parts.pop_front() {
            part.wait()?
                .map_err(|err| self.s3.error("upload part of", &self.key, err))?;
        }
        Ok(())
    }

    /// Complete the multipart upload to `self.key`.
    fn complete(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        while !self.parts.is_empty() {
            self.wait_part()?;
        }
        let mut upload = self.upload.take().expect("a multipart upload was started");
        let s3 = self.s3.clone();
        s3.rt
            .call(async move { upload.complete().await })?
            .map_err(|err| s3.error("complete upload of", &self.key, err))?;
        self.done = true;
        Ok(())
    }
}

impl Write for S3Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(PART - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == PART {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobSink for S3Sink {
    fn commit(
        mut self: Box<Self>,
        digest: &str,
        replace: bool,
    ) -> io::Result<Option<(String, u64)>> {
        let s3 = self.s3.clone();
        let blob = crate::blob::blob_key(digest)?;
        if self.upload.is_none() {
            // Small: one PUT under the final key, never over an existing
            // blob.
            self.done = true;
            let bytes = std::mem::take(&mut self.buf);
            // Over a damaged blob: an unconditional PUT, which S3 makes
            // visible whole.
            let mode = if replace {
                PutMode::Overwrite
            } else {
                PutMode::Create
            };
            return match s3.put(&blob, bytes, mode)? {
                PutOutcome::Written(_) => Ok(None),
                PutOutcome::Exists | PutOutcome::Changed => s3.hash_object(&blob).map(Some),
            };
        }
        self.complete()?;
        let tmp = self.key.clone();
        let result = (|| {
            if !replace && s3.exists(&blob)? {
                return s3.hash_object(&blob).map(Some);
            }
            let size = s3.head(&tmp)?.map_or(0, |meta| meta.size);
            if size <= COPY_LIMIT {
                s3.copy(&tmp, &blob)?;
            } else {
                let mut sink = s3.sink_to(blob);
                io::copy(&mut s3.open_read(&tmp)?, &mut sink)?;
                sink.complete()?;
            }
            Ok(None)
        })();
        let _ = s3.remove(&tmp);
        result
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.parts.clear();
        if let Some(mut upload) = self.upload.take() {
            // Abandoned: nothing was ever visible; free the parts.
            let _ = self.s3.rt.call(async move { upload.abort().await });
        }
    }
}

/// An object's bytes, pulled from the runtime one chunk at a time.
struct S3Read {
    rt: Rt,
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
    url: PathBuf,
}

impl Read for S3Read {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk.split_to(n));
                return Ok(n);
            }
            let Some(mut stream) = self.stream.take() else {
                return Ok(0);
            };
            let (stream, item) = self.rt.call(async move {
                let item = stream.next().await;
                (stream, item)
            })?;
            match item {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.stream = Some(stream);
                }
                Some(Err(err)) => {
                    return Err(io::Error::other(format!(
                        "reading {}: {}",
                        self.url.display(),
                        error_chain(&err)
                    )));
                }
            }
        }
    }
}

/// The shared AWS files: `~/.aws/credentials` and `~/.aws/config` (or
/// `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`), profile `AWS_PROFILE`
/// or `default`. Static keys and region only: SSO, `credential_process`
/// and role profiles are not read.
mod aws_files {
    use std::path::PathBuf;

    #[derive(Debug, Default)]
    pub(super) struct Profile {
        pub(super) credentials: Option<(String, String, Option<String>)>,
        pub(super) region: Option<String>,
    }

    impl Profile {
        pub(super) fn load() -> Profile {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let file = |var: &str, name: &str| {
                std::env::var_os(var)
                    .map(PathBuf::from)
                    .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .unwrap_or_default()
            };
            let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
            let credentials = section(
                &file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
                &profile,
            );
            let config_name = if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            };
            let config = section(&file("AWS_CONFIG_FILE", "config"), &config_name);
            let get = |pairs: &[(String, String)], key: &str| {
                pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
            };
            Profile {
                credentials: get(&credentials, "aws_access_key_id")
                    .zip(get(&credentials, "aws_secret_access_key"))
                    .map(|(key, secret)| (key, secret, get(&credentials, "aws_session_token"))),
                region: get(&config, "region"),
            }
        }
    }

    /// The `key = value` pairs of `[name]` in an INI file.
    fn section(text: &str, name: &str) -> Vec<(String, String)> {
        let mut inside = false;
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = header.trim() == name;
            } else if inside && let Some((key, value)) = line.split_once('=') {
                out.push((key.trim().to_string(), value.trim().to_string()));
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn a_profile_section_is_read() {
            let text = "[default]\naws_access_key_id = A\n[other]\naws_access_key_id = B\n# c\naws_secret_access_key=S\n";
            assert_eq!(
                super::section(text, "other"),
                vec![
                    ("aws_access_key_id".into(), "B".into()),
                    ("aws_secret_access_key".into(), "S".into())
                ]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://my-bucket/a/b/").unwrap(),
            ("my-bucket".into(), "a/b".into())
        );
        assert_eq!(
            parse_s3_url("s3://my-bucket").unwrap(),
            ("my-bucket".into(), String::new())
        );
        for bad in [
            "s3://",
            "s3://B/x",
            "s3://ab/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "http://b/x",
        ] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }
}
