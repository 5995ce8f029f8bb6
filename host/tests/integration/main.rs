//! The host's integration tests, as one test binary: every module links the
//! same wasmtime, so one binary links it once (CI time is mostly linking).
//!
//! They run real plugin components, built for wasm32-wasip2 by `tests/run`
//! (found through `$REWIND_TEST_PLUGINS`), and the real `rewind` binary.

mod common;
mod servers;

mod ansible;
mod call_dirs;
mod cli;
mod cloudfront;
mod code;
mod databases;
mod fallbacks;
mod first_plugins;
mod frameworks;
mod hostile_shared;
mod notify;
mod plugins_new;
mod python;
mod registry;
mod release_symlink;
mod runs;
mod s3_store;
mod sandbox;
mod sandbox_exec;
mod sandbox_fs;
mod sandbox_limits;
mod sandbox_meta;
mod sandbox_red;
mod store_gc;
