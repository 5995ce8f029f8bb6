//! `rewind`: the host that runs rewind plugins.
//!
//! A plugin is a WebAssembly component exporting `describe` plus any subset of
//! the five hooks of the `rewind:hooks` WIT package (backup, restore, revert,
//! health, notify). The host loads plugins (checking their sha256 pin before
//! compiling), runs each hook call in a fresh sandbox that can reach only the
//! files, commands, environment variables and HTTP origins it was granted, and
//! stores what plugins produce as checksummed artifacts.
//!
//! The work is done by layered crates (ARCHITECTURE.md, "Dependency rules");
//! this crate is the `rewind` binary's CLI and re-exports them under the
//! module paths the library always had: [`engine`], [`plugin`],
//! [`bindings`], [`params`] and [`compile_cache`] from `rewind-sandbox`
//! ([`sandbox`] is that crate's root: one hook call and the host imports);
//! [`grants`] is `rewind-grants`; [`registry`] is `rewind-registry`; [`store`] is `rewind-store`; [`run`] and
//! [`config`] are `rewind-runs`; [`exit`] is `rewind-core`'s.

#![deny(missing_docs)]

pub use rewind_core::exit;
pub use rewind_grants as grants;
pub use rewind_registry as registry;
pub use rewind_runs as run;
pub use rewind_runs::config;
pub use rewind_sandbox as sandbox;
pub use rewind_sandbox::{bindings, compile_cache, engine, params, plugin};
pub use rewind_store as store;
