//! Every refusal of one hook call, from every gate.
//!
//! The WASI gates (filesystem, sockets, name lookup, HTTP) and the host
//! imports all report a refusal here: it is logged once, naming the grant
//! line to add, kept for the call's error, and offered to the guest through
//! `sandbox.take-denial` so that a plugin can return it as a typed
//! `hook-error.denied` although WASI's own error codes cannot carry it.

use std::sync::{Arc, Mutex};

use super::LogSink;
use crate::bindings::rewind::hooks::types::Denial as WitDenial;
use rewind_grants::Denial;

/// Refusals kept per call; more are still logged (the log is capped too).
const MAX_KEPT: usize = 64;

#[derive(Clone)]
pub(crate) struct Refusals {
    log: LogSink,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Oldest first, at most [`MAX_KEPT`].
    all: Vec<Denial>,
    /// Not yet taken by the guest, at most [`MAX_KEPT`].
    untaken: Vec<Denial>,
}

impl Refusals {
    pub fn new(log: LogSink) -> Self {
        Refusals {
            log,
            inner: Arc::default(),
        }
    }

    /// Log and keep a refusal.
    pub fn refuse(&self, denial: &Denial) {
        self.log.warn(format!("denied: {denial}"));
        let mut inner = self.inner.lock().expect("refusals lock");
        if inner.all.len() < MAX_KEPT {
            inner.all.push(denial.clone());
        }
        if inner.untaken.len() >= MAX_KEPT {
            inner.untaken.remove(0);
        }
        inner.untaken.push(denial.clone());
    }

    /// The newest refusal the guest has not taken yet.
    pub fn take_latest(&self) -> Option<Denial> {
        self.inner.lock().expect("refusals lock").untaken.pop()
    }

    /// Every refusal so far, oldest first.
    pub fn all(&self) -> Vec<Denial> {
        self.inner.lock().expect("refusals lock").all.clone()
    }
}

pub(crate) fn to_wit(denial: Denial) -> WitDenial {
    WitDenial {
        kind: denial.kind.to_string(),
        attempted: denial.attempted,
        grant: denial.grant,
    }
}

impl crate::bindings::rewind::hooks::sandbox::Host for super::HookState {
    fn take_denial(&mut self) -> wasmtime::Result<Option<WitDenial>> {
        Ok(self.call.refusals.take_latest().map(to_wit))
    }
}
