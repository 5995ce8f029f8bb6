//! `rewind-registry`: sharing plugins between teams.
//!
//! * [`reference`]: `oci://registry/repository:tag` (or `@sha256:…`) as
//!   written in `rewind.toml`;
//! * [`client`]: pushing and pulling plugins as the CNCF TAG Runtime Wasm
//!   OCI artifact (`oci-wasm` over `oci-client`), and their signatures;
//! * [`lock`]: `rewind.lock`, every resolved plugin pinned to a digest;
//! * [`cache`]: the content-addressed local copy of pulled plugins;
//! * [`sign`]: minisign (ed25519) keys, signatures and their verification
//!   against the team keys a config trusts.
//!
//! No wasmtime here: what a registry hands over is checked by digest and
//! signature before the sandbox ever sees it.

#![deny(missing_docs)]

pub mod cache;
pub mod client;
pub mod lock;
pub mod reference;
pub mod sign;

pub use cache::PluginCache;
pub use client::{Pushed, Registry, RegistryError};
pub use lock::{LockChange, LockFile, LockFileError, LockedPlugin};
pub use reference::{OciReference, ReferenceError};
pub use sign::{SignatureError, TrustedKey};
