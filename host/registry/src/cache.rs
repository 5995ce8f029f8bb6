//! The local copy of pulled plugins, content-addressed: a component is
//! kept as `sha256/<hex>.wasm`, its signature (when it has one) as
//! `sha256/<hex>.wasm.minisig`, the same place a signature sits beside a
//! local plugin file.
//!
//! The cache is trusted for nothing: the sandbox hashes a cached file and
//! compares it with the locked digest before compiling it (as it does every
//! plugin file), and a signature is verified on every load. It is a private
//! directory (0700) inside the compile cache by default, which no grant may
//! contain (`rewind_grants::paths::host_private`); `REWIND_PLUGIN_CACHE`
//! moves it, and the config refuses a grant that contains it.

use std::path::{Path, PathBuf};

use crate::reference::digest_hex;

/// The directory pulled plugins are kept in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCache {
    dir: PathBuf,
}

impl PluginCache {
    /// `$REWIND_PLUGIN_CACHE`, else `plugins/` inside the compile cache
    /// directory; `None` when there is neither.
    pub fn default_dir(compile_cache: Option<&Path>) -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("REWIND_PLUGIN_CACHE") {
            return Some(PathBuf::from(dir));
        }
        compile_cache.map(|dir| dir.join("plugins"))
    }

    /// The cache in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> PluginCache {
        PluginCache { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the component with digest `wasm` (`sha256:…`) is kept.
    pub fn wasm_path(&self, wasm: &str) -> PathBuf {
        self.dir
            .join("sha256")
            .join(format!("{}.wasm", digest_hex(wasm)))
    }

    /// Keep a component, after checking its bytes are the digest `wasm`.
    pub fn put_wasm(&self, wasm: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let actual = format!("sha256:{}", rewind_core::sha256_hex(bytes));
        if actual != wasm {
            return Err(std::io::Error::other(format!(
                "the content's digest is {actual}, not {wasm}"
            )));
        }
        let path = self.wasm_path(wasm);
        rewind_store::create_private_dir(&self.dir)?;
        rewind_store::write_atomic(&path, bytes)?;
        Ok(path)
    }

    /// Keep the signature of the component `wasm`.
    pub fn put_signature(&self, wasm: &str, signature: &str) -> std::io::Result<PathBuf> {
        let path = signature_path(&self.wasm_path(wasm));
        rewind_store::create_private_dir(&self.dir)?;
        rewind_store::write_atomic(&path, signature.as_bytes())?;
        Ok(path)
    }
}

/// Where the minisign signature of a plugin file sits: `FILE.minisig`, as
/// the `minisign` tool writes it.
pub fn signature_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}
