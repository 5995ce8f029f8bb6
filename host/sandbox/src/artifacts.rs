//! The `artifacts` import: streaming writers and verifying readers over the
//! store, limited to what this call may see.

use std::io::{Read, Write};

use wasmtime::component::Resource;

use super::HookState;
use crate::bindings::rewind::hooks::artifacts::{Host, HostReader, HostWriter};
use crate::bindings::rewind::hooks::types::{ArtifactRef, HookError};
use rewind_store::{ArtifactRecord, BlobReader, BlobWriter};

/// A writer resource: the blob being written and what will be recorded.
pub struct WriterHandle {
    name: String,
    media_type: String,
    labels: Vec<(String, String)>,
    blob: Option<BlobWriter>,
}

/// A reader resource over a verified stream.
pub struct ReaderHandle {
    reader: BlobReader<'static>,
}

/// The largest single read a guest may ask for: keeps one call's copy small.
const MAX_READ: u64 = 1 << 20;

pub(crate) fn to_ref(record: &ArtifactRecord) -> ArtifactRef {
    ArtifactRef {
        digest: record.blob.digest.clone(),
        name: record.name.clone(),
        media_type: record.media_type.clone(),
        size: record.blob.size,
        labels: record.labels.clone(),
    }
}

fn host_failure(what: &str, err: impl std::fmt::Display) -> HookError {
    HookError::Failed(crate::bindings::rewind::hooks::types::Failure {
        message: format!("{what}: {err}"),
        stderr_tail: None,
    })
}

impl HookState {
    /// Check a new artifact's name, reserving it for this call.
    pub(crate) fn reserve_artifact_name(&mut self, name: &str) -> Result<(), HookError> {
        // Deny by default: these hooks have no artifacts to return, so what
        // they stored would only fill the store.
        if matches!(self.call.hook, "describe" | "health" | "notify") {
            return Err(self.call.denied(rewind_grants::Denial::new(
                rewind_grants::Kind::Never,
                format!("store artifact `{name}` in a {} hook", self.call.hook),
                "only backup, restore and revert hooks may store artifacts",
            )));
        }
        if name.is_empty()
            || name.len() > 200
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(HookError::InvalidInput(format!(
                "artifact name `{name}` must be 1-200 characters of [A-Za-z0-9._-]"
            )));
        }
        if self.call.names.len() >= super::bounded::MAX_ARTIFACTS_PER_CALL {
            return Err(HookError::InvalidInput(format!(
                "a hook call may create at most {} artifacts",
                super::bounded::MAX_ARTIFACTS_PER_CALL
            )));
        }
        if !self.call.names.insert(name.to_string()) {
            return Err(HookError::InvalidInput(format!(
                "artifact name `{name}` is already used in this hook call"
            )));
        }
        Ok(())
    }

    /// Record a finished artifact as produced by (and readable in) this call.
    pub(crate) fn record_artifact(&mut self, record: ArtifactRecord) -> ArtifactRef {
        let reference = to_ref(&record);
        self.call
            .readable
            .insert(record.blob.digest.clone(), record.blob.clone());
        self.call.produced.push(record);
        reference
    }

    /// Count one more open artifact (reader or writer), or refuse it
    /// when the call has [`super::bounded::MAX_OPEN_ARTIFACTS`] open.
    fn reserve_open(&mut self, what: &str) -> Result<(), HookError> {
        let max = super::bounded::MAX_OPEN_ARTIFACTS;
        if self.call.open_artifacts >= max {
            return Err(HookError::InvalidInput(format!(
                "cannot {what}: a hook call may have at most {max} artifacts open at once \
                 (readers and unfinished writers); finish or drop one first"
            )));
        }
        self.call.open_artifacts += 1;
        Ok(())
    }

    fn release_open(&mut self) {
        self.call.open_artifacts = self.call.open_artifacts.saturating_sub(1);
    }

    /// Open an artifact this call may read.
    pub(crate) fn open_artifact(
        &mut self,
        artifact: &ArtifactRef,
    ) -> Result<BlobReader<'static>, HookError> {
        let Some(blob) = self.call.readable.get(&artifact.digest) else {
            return Err(HookError::InvalidInput(format!(
                "artifact `{}` ({}) was not given to this hook call; a plugin can open only the \
                 artifacts its instance produced in the run being restored",
                artifact.name, artifact.digest
            )));
        };
        self.call
            .store
            .open_blob(blob)
            .map_err(|err| host_failure(&format!("opening artifact `{}`", artifact.name), err))
    }

    pub(crate) fn new_blob(&mut self) -> Result<BlobWriter, HookError> {
        self.call
            .store
            .create_blob()
            .map(|blob| blob.with_quota(self.call.artifact_quota.clone()))
            .map_err(|err| host_failure("creating an artifact in the store", err))
    }
}

impl Host for HookState {
    fn create(
        &mut self,
        name: String,
        media_type: String,
    ) -> wasmtime::Result<Result<Resource<WriterHandle>, HookError>> {
        if let Err(err) = self.reserve_open(&format!(
            "create artifact `{}`",
            super::bounded::line(&name, super::bounded::MAX_NAME)
        )) {
            return Ok(Err(err));
        }
        if let Err(err) = self.reserve_artifact_name(&name) {
            self.release_open();
            return Ok(Err(err));
        }
        let blob = match self.new_blob() {
            Ok(blob) => blob,
            Err(err) => {
                self.release_open();
                return Ok(Err(err));
            }
        };
        let handle = WriterHandle {
            name,
            media_type: super::bounded::line(&media_type, super::bounded::MAX_NAME),
            labels: Vec::new(),
            blob: Some(blob),
        };
        Ok(Ok(self.table.push(handle)?))
    }

    fn open(
        &mut self,
        artifact: ArtifactRef,
    ) -> wasmtime::Result<Result<Resource<ReaderHandle>, HookError>> {
        if let Err(err) = self.reserve_open(&format!(
            "open artifact `{}`",
            super::bounded::line(&artifact.name, super::bounded::MAX_NAME)
        )) {
            return Ok(Err(err));
        }
        match self.open_artifact(&artifact) {
            Ok(reader) => Ok(Ok(self.table.push(ReaderHandle { reader })?)),
            Err(err) => {
                self.release_open();
                Ok(Err(err))
            }
        }
    }
}

impl HostWriter for HookState {
    fn write(
        &mut self,
        this: Resource<WriterHandle>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), HookError>> {
        let handle = self.table.get_mut(&this)?;
        let Some(blob) = handle.blob.as_mut() else {
            return Ok(Err(HookError::InvalidInput(format!(
                "artifact `{}` is already finished",
                handle.name
            ))));
        };
        Ok(blob
            .write_all(&bytes)
            .map_err(|err| host_failure(&format!("writing artifact `{}`", handle.name), err)))
    }

    fn label(
        &mut self,
        this: Resource<WriterHandle>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        use super::bounded::{MAX_NAME, MAX_VALUE, line};
        let handle = self.table.get_mut(&this)?;
        if handle.labels.len() < 64 {
            handle
                .labels
                .push((line(&key, MAX_NAME), line(&value, MAX_VALUE)));
        }
        Ok(())
    }

    fn finish(
        &mut self,
        this: Resource<WriterHandle>,
    ) -> wasmtime::Result<Result<ArtifactRef, HookError>> {
        let handle = self.table.get_mut(&this)?;
        let Some(blob) = handle.blob.take() else {
            return Ok(Err(HookError::InvalidInput(format!(
                "artifact `{}` is already finished",
                handle.name
            ))));
        };
        let (name, media_type, labels) = (
            handle.name.clone(),
            handle.media_type.clone(),
            handle.labels.clone(),
        );
        // Finished (or failed to): it holds nothing open any more.
        self.release_open();
        let info = match blob.finish() {
            Ok(info) => info,
            Err(err) => {
                return Ok(Err(host_failure(
                    &format!("sealing artifact `{name}`"),
                    err,
                )));
            }
        };
        let record = ArtifactRecord {
            instance: self.call.instance.clone(),
            hook: self.call.hook.to_string(),
            name,
            media_type,
            labels,
            blob: info,
        };
        Ok(Ok(self.record_artifact(record)))
    }

    fn drop(&mut self, this: Resource<WriterHandle>) -> wasmtime::Result<()> {
        // An unfinished blob deletes its temp file when dropped.
        if self.table.delete(this)?.blob.is_some() {
            self.release_open();
        }
        Ok(())
    }
}

impl HostReader for HookState {
    fn read(
        &mut self,
        this: Resource<ReaderHandle>,
        max: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, HookError>> {
        let handle = self.table.get_mut(&this)?;
        let mut buf = vec![0; max.clamp(1, MAX_READ) as usize];
        let mut filled = 0;
        // Fill the buffer (or reach the end) so that an empty result always
        // means end of content.
        while filled < buf.len() {
            match handle.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) => return Ok(Err(host_failure("reading artifact", err))),
            }
        }
        buf.truncate(filled);
        Ok(Ok(buf))
    }

    fn drop(&mut self, this: Resource<ReaderHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.release_open();
        Ok(())
    }
}
