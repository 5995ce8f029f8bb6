//! The one wasmtime [`Engine`] of a rewind process, its linker, and the
//! on-disk cache of compiled components.

use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::HookState;
use crate::bindings::Plugin;
use crate::compile_cache::{self, CacheDir, CacheError};

/// Why the engine could not be built ([`Runtime::new`]).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The compile cache directory was refused (others could write it, a
    /// symlink, not creatable).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// wasmtime refused the engine's configuration, or a host import could
    /// not be added to the linker.
    #[error(transparent)]
    Wasmtime(wasmtime::Error),
    /// The thread that advances the epoch (hooks' deadlines) did not start.
    #[error(transparent)]
    EpochThread(std::io::Error),
}

/// How often the epoch advances. Deadlines are whole ticks, so this is the
/// resolution of a hook's wall-clock limit; checking an epoch costs a load
/// and a compare in generated code, so a coarse tick is free.
pub const EPOCH_TICK: Duration = Duration::from_millis(20);

/// A shared engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HookState>,
    cache: Option<CacheDir>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Build the engine. `cache_dir` holds compiled components; `None`
    /// disables the cache (every load compiles). A cache directory that
    /// others could write is refused (see [`compile_cache::open_dir`]).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        // Checked first: a refused cache fails before any thread starts.
        let cache = cache_dir
            .as_deref()
            .map(compile_cache::open_dir)
            .transpose()?;
        let mut config = Config::new();
        // Plugins are components; core modules are never loaded.
        config.wasm_component_model(true);
        // Epoch interruption is how a hook's wall-clock deadline stops a
        // guest that never yields (an infinite loop); fuel would also count
        // instructions but costs far more at run time.
        config.epoch_interruption(true);
        // Keep guest stacks small and bounded: deep recursion traps instead
        // of exhausting host memory.
        config.max_wasm_stack(1 << 20);
        // Cranelift at speed: plugins are compiled once per digest and cached.
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Compile functions in parallel on first load.
        config.parallel_compilation(true);
        let engine = Engine::new(&config).map_err(EngineError::Wasmtime)?;

        let mut linker = Linker::<HookState>::new(&engine);
        // The async WASI bindings: a guest waiting in a host call (sleep,
        // poll, socket, HTTP) is then a pending future that the call's
        // deadline can drop, not a blocked thread that nothing can stop.
        crate::wasi::add_to_linker(&mut linker).map_err(EngineError::Wasmtime)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(EngineError::Wasmtime)?;
        Plugin::add_to_linker::<HookState, HasSelf<HookState>>(&mut linker, |state| state)
            .map_err(EngineError::Wasmtime)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("rewind-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(EngineError::EpochThread)?;
        }

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                ticker_stop,
            }),
        })
    }

    /// The default cache directory: `$REWIND_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/rewind/components`, else `~/.cache/rewind/components`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("REWIND_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("rewind").join("components"))
    }

    /// The wasmtime engine, for inspecting component types.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HookState> {
        &self.inner.linker
    }

    /// Compile `wasm` (whose sha256 is `digest`), or load the compiled code
    /// cached under that digest and this engine's compatibility hash.
    /// Returns the component and whether it came from the cache; the error
    /// is wasmtime's own (why the bytes do not compile as a component), which
    /// [`crate::plugin::load`] puts in context.
    pub fn component(&self, wasm: &[u8], digest: &str) -> wasmtime::Result<(Component, bool)> {
        let engine = &self.inner.engine;
        let Some(cache) = &self.inner.cache else {
            return Ok((Component::new(engine, wasm)?, false));
        };
        let key = compatibility_key(engine);
        if let Some(bytes) = cache.read(digest, &key) {
            // SAFETY: `bytes` are in memory (nothing can change them after
            // the check), were read from a file owned by us with no group
            // or other permissions, in a directory only we can write and
            // that no plugin is granted, and carry the sha256 of the wasm
            // they were compiled from, which is `digest`, checked against
            // the pin before we got here. wasmtime checks the engine
            // compatibility of the bytes itself.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => return Ok((component, true)),
                Err(err) => tracing::warn!(
                    "discarding unusable compiled cache entry for {digest} in {}: {err:#}",
                    cache.path().display()
                ),
            }
        }
        let component = Component::new(engine, wasm)?;
        match component.serialize() {
            Ok(bytes) => {
                if let Err(err) = cache.write(digest, &key, &bytes) {
                    tracing::warn!(
                        "could not cache compiled plugin in {}: {err}",
                        cache.path().display()
                    );
                }
            }
            Err(err) => tracing::warn!("could not serialize compiled plugin: {err:#}"),
        }
        Ok((component, false))
    }
}

/// A stable name for the engine's compatibility hash (wasmtime version,
/// target, and every setting that affects compiled code). `DefaultHasher`
/// may change between Rust releases, so the key is a truncated sha256 of
/// what the engine hashes.
fn compatibility_key(engine: &Engine) -> String {
    struct Sha(sha2::Sha256);
    impl std::hash::Hasher for Sha {
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
        fn write(&mut self, bytes: &[u8]) {
            sha2::Digest::update(&mut self.0, bytes);
        }
    }
    let mut hasher = Sha(<sha2::Sha256 as sha2::Digest>::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&sha2::Digest::finalize(hasher.0)[..8])
}
