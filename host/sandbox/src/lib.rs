//! One hook call in a fresh, locked-down store.
//!
//! Per call: a new wasmtime `Store` whose WASI context has only the granted
//! directories preopened (read-only or read-write), only the granted
//! environment variables, no args, no stdin, captured stdout/stderr, no
//! sockets; outgoing HTTP only to granted origins; a memory cap; a
//! wall-clock deadline. A trap (panic, deadline, memory) becomes a
//! [`CallError`] naming plugin and hook, and the host carries on.

pub mod artifacts;
pub mod bounded;
mod fs;
mod http;
mod log;
mod process;
pub(crate) use process::preflight_program;
mod refusals;
pub(crate) mod resolve;
pub(crate) mod wasi;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store as WasmStore, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::exports::rewind::hooks as guest;
use crate::bindings::rewind::hooks::types::{
    ArtifactRef, Event, HealthReport, HookContext, HookError, PluginInfo, Report,
};
use crate::grants::Grants;
use crate::plugin::{HookKind, LoadedPlugin};
use crate::store::{ArtifactRecord, BlobInfo, Store};

pub use log::{LogLevel, LogLine, LogSink};

/// Resource limits of one plugin instance.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Linear memory cap per hook call.
    pub memory_bytes: u64,
    /// Wall-clock limit per hook call (guest code and the commands it runs).
    pub timeout: Duration,
    /// Cap on each captured output stream of a command (stdout, stderr).
    pub output_bytes: usize,
    /// Bytes of artifact content one hook call may write (`limits.artifacts_mb`).
    pub artifact_bytes: u64,
    /// Bytes of artifact content a run may hold when this instance writes
    /// (`limits.run_artifacts_mb`, counted over every instance's backup in
    /// the run); the runner lowers a call's `artifact_bytes` to what is left.
    pub run_artifact_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(300),
            output_bytes: 1 << 20,
            artifact_bytes: 64 << 30,
            run_artifact_bytes: 256 << 30,
        }
    }
}

/// Who a call runs as: the instance name, its grants and limits.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub instance: String,
    pub grants: Arc<Grants>,
    pub limits: Limits,
}

/// What a hook is called with.
pub enum HookInput<'a> {
    Describe,
    Backup,
    Restore(&'a [ArtifactRecord]),
    Revert(&'a [ArtifactRecord]),
    Health,
    Notify(Event),
}

impl HookInput<'_> {
    /// The hook's name ("describe" for describe).
    pub fn name(&self) -> &'static str {
        match self {
            HookInput::Describe => "describe",
            HookInput::Backup => HookKind::Backup.as_str(),
            HookInput::Restore(_) => HookKind::Restore.as_str(),
            HookInput::Revert(_) => HookKind::Revert.as_str(),
            HookInput::Health => HookKind::Health.as_str(),
            HookInput::Notify(_) => HookKind::Notify.as_str(),
        }
    }

    /// The artifacts a restore or revert is given.
    pub fn given_artifacts(&self) -> &[ArtifactRecord] {
        match self {
            HookInput::Restore(a) | HookInput::Revert(a) => a,
            _ => &[],
        }
    }
}

/// What a hook returned.
#[derive(Debug, Clone)]
pub enum HookOutput {
    Info(PluginInfo),
    Artifacts(Vec<ArtifactRecord>),
    Report(Report),
    Health(HealthReport),
    Notified,
}

/// Why a call did not succeed, in a form the CLI, the manifest and the
/// event log all use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    pub kind: ErrorKind,
    pub message: String,
    /// For denials: the grant line to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Unsupported,
    Denied,
    Failed,
    Timeout,
    InvalidInput,
    /// The guest trapped (panic, abort, unreachable).
    Crashed,
    /// The guest hit its memory cap.
    MemoryLimit,
    /// Setting up the call failed on the host side.
    Host,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(tail) = self.stderr_tail.as_deref().filter(|t| !t.is_empty()) {
            write!(f, "\n  stderr:\n    {}", tail.replace('\n', "\n    "))?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {}

impl CallError {
    pub fn new(kind: ErrorKind, message: String) -> Self {
        CallError {
            kind,
            message,
            grant: None,
            stderr_tail: None,
        }
    }

    /// The error a hook returned, cleaned and bounded (a guest wrote it).
    /// A `denied` the sandbox did not record in this call is the plugin's
    /// claim, not a refusal: it is reported as such, so that a plugin
    /// cannot talk an operator into a grant.
    fn from_hook(who: &str, err: HookError, refused: &[crate::grants::Denial]) -> Self {
        let text = |m: &str| bounded::line(m, bounded::MAX_MESSAGE);
        match err {
            HookError::Unsupported(m) => Self::new(
                ErrorKind::Unsupported,
                format!("{who}: unsupported: {}", text(&m)),
            ),
            HookError::Denied(d) => {
                let recorded = refused
                    .iter()
                    .find(|r| r.attempted == d.attempted && r.grant == d.grant);
                match recorded {
                    Some(denial) => CallError {
                        kind: ErrorKind::Denied,
                        message: format!("{who} was denied: {denial}"),
                        grant: Some(denial.grant.clone()),
                        stderr_tail: None,
                    },
                    None => Self::new(
                        ErrorKind::Failed,
                        format!(
                            "{who} failed, saying it was denied `{}` (the sandbox refused nothing like it in this call; its suggested grant is not shown)",
                            bounded::line(&d.attempted, bounded::MAX_VALUE)
                        ),
                    ),
                }
            }
            HookError::Failed(f) => CallError {
                kind: ErrorKind::Failed,
                message: format!("{who} failed: {}", text(&f.message)),
                grant: None,
                stderr_tail: f
                    .stderr_tail
                    .map(|t| bounded::lines(&t, bounded::MAX_MESSAGE)),
            },
            HookError::Timeout(m) => {
                Self::new(ErrorKind::Timeout, format!("{who} timed out: {}", text(&m)))
            }
            HookError::InvalidInput(m) => Self::new(
                ErrorKind::InvalidInput,
                format!("{who}: invalid input: {}", text(&m)),
            ),
        }
    }
}

/// The result of one hook call, with everything it produced and logged.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<HookOutput, CallError>,
    pub logs: Vec<LogLine>,
    pub duration: Duration,
    /// Bytes of artifact content the call stored, returned or not (the
    /// run's quota counts all of it).
    pub stored_bytes: u64,
}

/// Per-call store data.
pub struct HookState {
    wasi: WasiCtx,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    http_gate: http::HttpGate,
    limiter: MemoryLimiter,
    /// The filesystem policy's per-call state (`wasi::filesystem`).
    fs_policy: wasi::FsPolicy,
    pub(crate) call: CallState,
}

/// What host imports need to know about the call they serve.
pub(crate) struct CallState {
    pub instance: String,
    pub hook: &'static str,
    pub grants: Arc<Grants>,
    pub limits: Limits,
    pub store: Store,
    pub deadline: Instant,
    /// Blobs this call may open: those given to it and those it wrote.
    pub readable: HashMap<String, BlobInfo>,
    /// Artifacts written in this call, in order.
    pub produced: Vec<ArtifactRecord>,
    pub names: HashSet<String>,
    pub log: LogSink,
    /// Default working directory for commands: empty and private.
    pub workdir: tempfile::TempDir,
    /// Every refusal of this call, shared with the WASI gates.
    pub(crate) refusals: refusals::Refusals,
    /// What is left of `limits.artifact_bytes`, shared by the call's writers.
    pub artifact_quota: crate::store::Quota,
}

impl CallState {
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Record and log a refusal. Every enforcement point calls this (or
    /// [`CallState::denied`]), so the operator sees each refusal with the
    /// grant line that would allow it, whatever the plugin does with the
    /// error.
    pub fn refuse(&self, denial: &crate::grants::Denial) {
        self.refusals.refuse(denial);
    }

    /// [`CallState::refuse`], as the typed error a host import returns.
    pub fn denied(&self, denial: crate::grants::Denial) -> HookError {
        self.refuse(&denial);
        HookError::Denied(refusals::to_wit(denial))
    }
}

impl WasiView for HookState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HookState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http_gate,
        }
    }
}

/// Caps linear memory and table space and remembers whether the memory
/// cap was hit, so that the trap that follows a failed allocation can be
/// reported as what it is.
///
/// The cap is on the *total* of every memory of the call: a component may
/// hold several core instances, each with memories of its own, and a cap
/// checked per memory would let it multiply the limit.
#[derive(Debug)]
struct MemoryLimiter {
    limit: u64,
    /// Bytes of linear memory the call's memories hold together.
    used: u64,
    /// Table elements the call's tables hold together.
    table_elements: u64,
    hit: bool,
}

/// Table elements a call may hold (all tables together).
const MAX_TABLE_ELEMENTS: u64 = 1_000_000;
/// Instances, memories and tables a call may create: far more than any
/// component the SDK builds, far fewer than it takes to hurt the host.
const MAX_INSTANCES: usize = 1_000;
const MAX_MEMORIES: usize = 100;
const MAX_TABLES: usize = 1_000;

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            table_elements: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used - (current as u64).min(self.used) + desired as u64;
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            self.table_elements - (current as u64).min(self.table_elements) + desired as u64;
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Guest stdout/stderr are captured up to this many bytes each.
const GUEST_OUTPUT_CAP: usize = 1 << 20;

/// Run one hook (or `describe`) of a loaded plugin.
///
/// The call's wall-clock limit holds whatever the guest is doing: running
/// code (the epoch deadline traps it), waiting in a WASI host call (the
/// pending future is dropped at the deadline), or running a command (the
/// `process` import kills it at the deadline).
pub fn call_hook(
    plugin: &LoadedPlugin,
    spec: &SandboxSpec,
    store: &Store,
    ctx: HookContext,
    input: HookInput<'_>,
    log: LogSink,
) -> CallOutcome {
    let started = Instant::now();
    let hook = input.name();
    let who = format!("plugin `{}` hook `{hook}`", spec.instance);
    let log = log.scoped(&spec.instance, hook);
    let stdout = MemoryOutputPipe::new(GUEST_OUTPUT_CAP);
    let stderr = MemoryOutputPipe::new(GUEST_OUTPUT_CAP);
    let refusals = refusals::Refusals::new(log.clone());
    let stored_bytes = std::cell::Cell::new(0u64);

    let result = (|| {
        let mut wasm_store = new_store(
            plugin, spec, store, hook, &input, &log, &refusals, &stdout, &stderr,
        )
        .map_err(|err| {
            CallError::new(
                ErrorKind::Host,
                format!("{who}: cannot start the sandbox: {err:#}"),
            )
        })?;
        // One small runtime per call: WASI's async host calls run on it,
        // and dropping it at the end leaves nothing of the call behind.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| {
                CallError::new(
                    ErrorKind::Host,
                    format!("{who}: cannot start the sandbox's event loop: {err}"),
                )
            })?;
        let limit = spec.limits.timeout;
        let called = runtime.block_on(async {
            let call = async {
                let instance = plugin
                    .instance_pre
                    .instantiate_async(&mut wasm_store)
                    .await?;
                invoke(&mut wasm_store, &instance, plugin, ctx, &input).await
            };
            tokio::time::timeout(limit, call).await
        });
        // A blocking filesystem call (a read from a FIFO, say) may still sit
        // on the runtime's blocking pool: do not wait for it.
        runtime.shutdown_background();
        stored_bytes.set(stored(&wasm_store));
        let output = match called {
            Err(_elapsed) => {
                return Err(CallError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{who} exceeded its time limit of {} while waiting in a host call, and was stopped after {} (raise limits.timeout_s if it needs more)",
                        seconds(limit),
                        seconds(started.elapsed())
                    ),
                ));
            }
            Ok(Ok(Ok(output))) => output,
            Ok(Ok(Err(hook_err))) => {
                return Err(CallError::from_hook(&who, hook_err, &refusals.all()));
            }
            Ok(Err(err)) => return Err(trap_to_error(&who, &wasm_store, err, started)),
        };
        finish_output(&who, output, &wasm_store.data().call)
    })();

    flush_guest_output(&log, &stdout, &stderr);
    let result = result.map_err(|mut err| {
        if err.kind == ErrorKind::Crashed && err.stderr_tail.is_none() {
            err.stderr_tail = tail(&stderr.contents());
        }
        explain_refusals(&mut err, &refusals.all());
        err
    });
    CallOutcome {
        result,
        logs: log.take(),
        duration: started.elapsed(),
        stored_bytes: stored_bytes.get(),
    }
}

/// A failed call names what the sandbox refused during it, whatever the
/// plugin made of the refusal: the operator sees the grant line to add.
fn explain_refusals(err: &mut CallError, refused: &[crate::grants::Denial]) {
    let Some(last) = refused.last() else {
        return;
    };
    if err.grant.is_none() && last.kind != crate::grants::Kind::Never {
        err.grant = Some(last.grant.clone());
    }
    let mut shown: Vec<String> = Vec::new();
    for denial in refused.iter().rev() {
        let line = denial.to_string();
        if !err.message.contains(&line) && !shown.contains(&line) && shown.len() < 3 {
            shown.push(line);
        }
    }
    for line in shown.iter().rev() {
        err.message
            .push_str(&format!("\n  the sandbox refused: {line}"));
    }
}

fn stored(store: &WasmStore<HookState>) -> u64 {
    store.data().call.produced.iter().map(|a| a.blob.size).sum()
}

/// "2 s", "1.5 s": a duration as an operator reads it.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 0.05 {
        format!("{} s", s.round())
    } else {
        format!("{s:.1} s")
    }
}

/// Raw results of the export call, before artifact references are resolved.
enum RawOutput {
    Info(PluginInfo),
    Artifacts(Vec<ArtifactRef>),
    Report(Report),
    Health(HealthReport),
    Notified,
}

async fn invoke(
    store: &mut WasmStore<HookState>,
    instance: &wasmtime::component::Instance,
    plugin: &LoadedPlugin,
    ctx: HookContext,
    input: &HookInput<'_>,
) -> wasmtime::Result<Result<RawOutput, HookError>> {
    let pre = &plugin.instance_pre;
    let missing = |hook: &str| {
        Ok(Err(HookError::Unsupported(format!(
            "this plugin does not export the {hook} hook (it exports: {})",
            plugin.hook_list()
        ))))
    };
    let refs = |records: &[ArtifactRecord]| -> Vec<ArtifactRef> {
        records.iter().map(artifacts::to_ref).collect()
    };
    Ok(match input {
        HookInput::Describe => {
            let g = guest::describe::GuestIndices::new(pre)?.load(&mut *store, instance)?;
            Ok(RawOutput::Info(g.call_info(&mut *store).await?))
        }
        HookInput::Backup => {
            if !plugin.hooks.contains(&HookKind::Backup) {
                return missing("backup");
            }
            let g = guest::backup::GuestIndices::new(pre)?.load(&mut *store, instance)?;
            g.call_backup(&mut *store, &ctx)
                .await?
                .map(RawOutput::Artifacts)
        }
        HookInput::Restore(given) => {
            if !plugin.hooks.contains(&HookKind::Restore) {
                return missing("restore");
            }
            let g = guest::restore::GuestIndices::new(pre)?.load(&mut *store, instance)?;
            g.call_restore(&mut *store, &ctx, &refs(given))
                .await?
                .map(RawOutput::Report)
        }
        HookInput::Revert(given) => {
            if !plugin.hooks.contains(&HookKind::Revert) {
                return missing("revert");
            }
            let g = guest::revert::GuestIndices::new(pre)?.load(&mut *store, instance)?;
            g.call_revert(&mut *store, &ctx, &refs(given))
                .await?
                .map(RawOutput::Report)
        }
        HookInput::Health => {
            if !plugin.hooks.contains(&HookKind::Health) {
                return missing("health");
            }
            let g = guest::health::GuestIndices::new(pre)?.load(&mut *store, instance)?;
            Ok(RawOutput::Health(g.call_check(&mut *store, &ctx).await?))
        }
        HookInput::Notify(event) => {
            if !plugin.hooks.contains(&HookKind::Notify) {
                return missing("notify");
            }
            let g = guest::notify::GuestIndices::new(pre)?.load(&mut *store, instance)?;
            g.call_notify(&mut *store, &ctx, event)
                .await?
                .map(|()| RawOutput::Notified)
        }
    })
}

/// Resolve the artifact references a backup returned to what it wrote: a
/// plugin cannot claim an artifact it did not produce in this call.
fn finish_output(who: &str, output: RawOutput, call: &CallState) -> Result<HookOutput, CallError> {
    Ok(match output {
        RawOutput::Info(info) => HookOutput::Info(bound_info(info)),
        RawOutput::Report(r) => HookOutput::Report(bound_report(r)),
        RawOutput::Health(h) => HookOutput::Health(bound_health(h)),
        RawOutput::Notified => HookOutput::Notified,
        RawOutput::Artifacts(refs) => {
            let mut records = Vec::with_capacity(refs.len());
            for r in refs {
                let record = call
                    .produced
                    .iter()
                    .find(|p| p.blob.digest == r.digest && p.name == r.name)
                    .ok_or_else(|| {
                        CallError::new(
                            ErrorKind::InvalidInput,
                            format!(
                                "{who} returned artifact `{}` ({}) that it did not write in this call",
                                r.name, r.digest
                            ),
                        )
                    })?;
                records.push(record.clone());
            }
            HookOutput::Artifacts(records)
        }
    })
}

/// A report as the host keeps it: bounded, cleaned, drops counted.
fn bound_report(mut report: Report) -> Report {
    use bounded::*;
    report.summary = line(&report.summary, MAX_VALUE);
    let dropped = list(&mut report.details, MAX_ENTRIES, |(k, v)| {
        in_place(k, MAX_NAME);
        in_place(v, MAX_VALUE);
    });
    if dropped > 0 {
        report
            .details
            .push(("rewind.dropped_details".into(), dropped.to_string()));
    }
    report
}

fn bound_health(mut health: HealthReport) -> HealthReport {
    use bounded::*;
    let dropped = list(&mut health.checks, MAX_ENTRIES, |c| {
        in_place(&mut c.name, MAX_NAME);
        in_place(&mut c.detail, MAX_VALUE);
    });
    if dropped > 0 {
        health
            .checks
            .push(crate::bindings::rewind::hooks::types::HealthCheck {
                name: "rewind.dropped_checks".into(),
                status: crate::bindings::rewind::hooks::types::HealthStatus::Degraded,
                detail: format!(
                    "{dropped} more checks were dropped (at most {MAX_ENTRIES} are kept)"
                ),
                latency_ms: 0,
            });
    }
    health
}

fn bound_info(mut info: PluginInfo) -> PluginInfo {
    use bounded::*;
    in_place(&mut info.name, MAX_NAME);
    in_place(&mut info.version, MAX_NAME);
    in_place(&mut info.summary, MAX_VALUE);
    let caps = &mut info.capabilities;
    for texts in [&mut caps.exec, &mut caps.env, &mut caps.http] {
        list(texts, MAX_ENTRIES, |t| in_place(t, MAX_VALUE));
    }
    list(&mut caps.paths, MAX_ENTRIES, |p| {
        in_place(&mut p.path, MAX_VALUE);
        in_place(&mut p.reason, MAX_VALUE);
    });
    list(&mut info.params, MAX_ENTRIES, |p| {
        in_place(&mut p.name, MAX_NAME);
        in_place(&mut p.description, MAX_VALUE);
        if let Some(d) = p.default_value.as_mut() {
            in_place(d, MAX_VALUE);
        }
    });
    info
}

#[allow(clippy::too_many_arguments)]
fn new_store(
    plugin: &LoadedPlugin,
    spec: &SandboxSpec,
    store: &Store,
    hook: &'static str,
    input: &HookInput<'_>,
    log: &LogSink,
    refusals: &refusals::Refusals,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
) -> anyhow::Result<WasmStore<HookState>> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone()).stderr(stderr.clone());
    // No sockets but outgoing TCP to granted host:port pairs (SMTP); HTTP
    // goes through wasi:http and its gate, never through sockets.
    wasi.allow_udp(false);
    // Sockets always go through the gate, so that every refusal (with or
    // without tcp grants) is recorded and names the grant; name lookups
    // go through their own gate (only granted names resolve).
    let allowed = resolve_tcp_grants(&spec.grants.tcp, log);
    {
        let refusals = refusals.clone();
        wasi.allow_tcp(true)
            .allow_ip_name_lookup(true)
            .socket_addr_check(move |addr, usage| {
                use wasmtime_wasi::sockets::SocketAddrUse;
                let refusal = match usage {
                    SocketAddrUse::TcpConnect if allowed.contains(&addr) => None,
                    SocketAddrUse::TcpConnect => Some(Grants::tcp_denial(addr)),
                    // The implicit bind to an ephemeral port that every
                    // connect performs.
                    SocketAddrUse::TcpBind if addr.ip().is_unspecified() && addr.port() == 0 => {
                        None
                    }
                    _ => Some(crate::grants::Denial::new(
                        crate::grants::Kind::Never,
                        format!("{usage:?} {addr}"),
                        "a plugin may only connect out to its grants.tcp endpoints; listening, accepting, binding and UDP are never allowed",
                    )),
                };
                if let Some(denial) = &refusal {
                    refusals.refuse(denial);
                }
                Box::pin(async move { refusal.is_none() })
            });
    }
    for grant in &spec.grants.paths {
        if !grant.path.is_dir() {
            anyhow::bail!(
                "granted path {} is not an existing directory (grants.paths takes directories)",
                grant.path.display()
            );
        }
        let perms = if grant.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        let guest_path = grant.path.to_string_lossy();
        wasi.preopened_dir(&grant.path, &guest_path, perms)?;
    }
    // Every path outside the grants lands on this empty directory, where
    // the filesystem policy refuses it naming the grant that is missing.
    let fs_policy = wasi::FsPolicy::new(&spec.grants)?;
    if let Some(empty) = fs_policy.catch_all_dir() {
        wasi.preopened_dir(empty, wasi::filesystem::CATCH_ALL, FsPerms::ReadOnly)?;
    }
    for name in &spec.grants.env {
        if let Ok(value) = std::env::var(name) {
            wasi.env(name, value);
        }
    }

    let readable = input
        .given_artifacts()
        .iter()
        .map(|r| (r.blob.digest.clone(), r.blob.clone()))
        .collect();
    let call = CallState {
        instance: spec.instance.clone(),
        hook,
        grants: spec.grants.clone(),
        limits: spec.limits.clone(),
        store: store.clone(),
        deadline: Instant::now() + spec.limits.timeout,
        readable,
        produced: Vec::new(),
        names: HashSet::new(),
        log: log.clone(),
        workdir: tempfile::Builder::new().prefix("rewind-cmd-").tempdir()?,
        refusals: refusals.clone(),
        artifact_quota: crate::store::Quota::new(
            spec.limits.artifact_bytes,
            format!(
                "this call may store at most {} of artifacts (limits.artifacts_mb per call, limits.run_artifacts_mb per run); nothing partial was kept",
                indicatif::HumanBytes(spec.limits.artifact_bytes)
            ),
        ),
    };
    // Every handle a guest holds is host memory: cap how many.
    let mut table = ResourceTable::new();
    table.set_max_capacity(bounded::MAX_RESOURCES);
    let state = HookState {
        wasi: wasi.build(),
        table,
        http_ctx: {
            let mut ctx = WasiHttpCtx::new();
            ctx.set_field_size_limit(bounded::MAX_HTTP_FIELDS_BYTES);
            ctx
        },
        http_gate: http::HttpGate::new(spec.grants.clone(), refusals.clone()),
        limiter: MemoryLimiter::new(spec.limits.memory_bytes),
        fs_policy,
        call,
    };
    let mut wasm_store = WasmStore::new(plugin.instance_pre.engine(), state);
    wasm_store.limiter(|state| &mut state.limiter);
    let ticks = spec.limits.timeout.as_millis() / crate::engine::EPOCH_TICK.as_millis();
    wasm_store.set_epoch_deadline(ticks.max(1) as u64);
    wasm_store.epoch_deadline_trap();
    Ok(wasm_store)
}

/// The socket addresses the tcp grants name, resolved when the call
/// starts: the sandbox checks addresses, so a granted host name allows
/// exactly the addresses it resolves to now.
fn resolve_tcp_grants(
    grants: &[crate::grants::TcpGrant],
    log: &LogSink,
) -> HashSet<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let mut allowed = HashSet::new();
    for grant in grants {
        match (grant.host.as_str(), grant.port).to_socket_addrs() {
            Ok(addrs) => allowed.extend(addrs),
            Err(err) => log.warn(format!("grants.tcp: cannot resolve {grant}: {err}")),
        }
    }
    allowed
}

/// Explain a trap in the operator's terms.
fn trap_to_error(
    who: &str,
    store: &WasmStore<HookState>,
    err: wasmtime::Error,
    started: Instant,
) -> CallError {
    let state = store.data();
    if state.limiter.hit {
        return CallError::new(
            ErrorKind::MemoryLimit,
            format!(
                "{who} exceeded its memory limit of {} MiB (raise limits.memory_mb if it needs more)",
                state.call.limits.memory_bytes >> 20
            ),
        );
    }
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return CallError::new(
            ErrorKind::Timeout,
            format!(
                "{who} exceeded its time limit of {} and was stopped after {} (raise limits.timeout_s if it needs more)",
                seconds(state.call.limits.timeout),
                seconds(started.elapsed())
            ),
        );
    }
    let trap = err
        .downcast_ref::<Trap>()
        .map(|t| t.to_string())
        .unwrap_or_else(|| format!("{err:#}"));
    CallError::new(ErrorKind::Crashed, format!("{who} crashed: {trap}"))
}

fn flush_guest_output(log: &LogSink, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) {
    for (pipe, level) in [(stdout, LogLevel::Info), (stderr, LogLevel::Warn)] {
        let bytes = pipe.contents();
        for line in String::from_utf8_lossy(&bytes).lines() {
            if !line.trim().is_empty() {
                log.line(level, line.to_string(), Vec::new());
            }
        }
    }
}

/// The last 20 non-empty lines of some output (a command's or a guest's
/// stderr), bounded and escaped for a terminal.
pub(crate) fn tail(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return None;
    }
    let kept: Vec<String> = lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| bounded::line(l, bounded::MAX_VALUE))
        .collect();
    Some(kept.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_holds_for_all_memories_together() {
        let mut limiter = MemoryLimiter::new(100);
        // Two memories of 60 each would be 120: the second is refused.
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(!limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.hit);
        // Growing the first memory counts only the difference.
        assert!(limiter.memory_growing(60, 90, None).unwrap());
        assert!(!limiter.memory_growing(90, 101, None).unwrap());
        assert!(limiter.memory_growing(0, 10, None).unwrap());
        assert!(!limiter.memory_growing(0, 1, None).unwrap());
    }

    #[test]
    fn table_space_is_capped_for_all_tables_together() {
        let mut limiter = MemoryLimiter::new(0);
        assert!(
            limiter
                .table_growing(0, MAX_TABLE_ELEMENTS as usize, None)
                .unwrap()
        );
        assert!(!limiter.table_growing(0, 1, None).unwrap());
    }
}
