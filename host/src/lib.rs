//! `rewind`: the host that runs rewind plugins.
//!
//! A plugin is a WebAssembly component exporting `describe` plus any subset of
//! the five hooks of the `rewind:hooks` WIT package (backup, restore, revert,
//! health, notify). This crate loads plugins (checking their sha256 pin before
//! compiling), runs each hook call in a fresh sandbox that can reach only the
//! files, commands, environment variables and HTTP origins it was granted, and
//! stores what plugins produce as checksummed artifacts.
//!
//! Map: [`engine`] owns the one wasmtime engine and the compiled-component
//! cache; [`plugin`] loads and inspects components; [`sandbox`] runs one hook
//! call and implements the host imports; [`grants`] parses and checks grants;
//! [`store`] is the content-addressed artifact store, its run manifests,
//! lock, verification and retention; [`run`] executes backup, rollback and
//! guard runs over them.

pub mod bindings;
pub mod compile_cache;
pub mod config;
pub mod engine;
pub mod exit;
pub mod grants;
pub mod params;
pub mod plugin;
pub mod run;
pub mod sandbox;
pub mod store;
