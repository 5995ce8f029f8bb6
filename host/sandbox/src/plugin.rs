//! Loading a plugin: check the file's digest against its pin, compile (or
//! load the cached compilation), and find which hooks it exports.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use crate::HookState;
use crate::engine::Runtime;
pub use rewind_core::{HookKind, sha256_hex};

/// The WIT package plugins are built against.
pub const WIT_PACKAGE: &str = "rewind:hooks";
/// The API versions this host supports.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1.0"];

/// Why a plugin file could not be loaded ([`load`]). Each case names the
/// file; the causes that come from elsewhere (the file system, wasmtime)
/// are its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin file {}", path.display())]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file's sha256 is not its pin: it changed since it was pinned.
    /// Nothing of it was compiled.
    #[error(
        "plugin {} does not match its pin: the file's sha256 is {actual}, the pin is {expected}. \
         The file changed since it was pinned: if the new file is trusted, run \
         `rewind plugins inspect {}` and update `sha256`; otherwise restore the pinned file.",
        path.display(),
        path.display()
    )]
    PinMismatch {
        /// The plugin file.
        path: PathBuf,
        /// The pin, lowercase hex without a `sha256:` prefix.
        expected: String,
        /// The file's sha256.
        actual: String,
    },
    /// The file does not start with the WebAssembly magic number.
    #[error("{} is not a WebAssembly file", path.display())]
    NotWasm {
        /// The plugin file.
        path: PathBuf,
    },
    /// The file is WebAssembly, but wasmtime cannot compile it as a
    /// component (a core module, a corrupt or unsupported binary).
    #[error("{} is not a loadable WebAssembly component", path.display())]
    NotAComponent {
        /// The plugin file.
        path: PathBuf,
        /// wasmtime's reason.
        source: wasmtime::Error,
    },
    /// The component was built against a `rewind:hooks` version this host
    /// does not support.
    #[error(
        "plugin {}: it was built for the {WIT_PACKAGE} API version {version}, but this host \
         supports {}; rebuild the plugin against {WIT_PACKAGE}@{} or use a rewind release that \
         supports {version}",
        path.display(),
        SUPPORTED_API_VERSIONS.join(", "),
        SUPPORTED_API_VERSIONS[SUPPORTED_API_VERSIONS.len() - 1]
    )]
    ApiVersion {
        /// The plugin file.
        path: PathBuf,
        /// The version it was built against.
        version: String,
    },
    /// The component does not export `rewind:hooks/describe`: it is some
    /// other component.
    #[error(
        "plugin {}: it is not a rewind plugin: it does not export {WIT_PACKAGE}/describe \
         (exports: {})",
        path.display(),
        exports.join(", ")
    )]
    NotARewindPlugin {
        /// The plugin file.
        path: PathBuf,
        /// Every name the component exports.
        exports: Vec<String>,
    },
    /// The component imports something the host's linker does not provide.
    #[error("plugin {} imports something this host does not provide", path.display())]
    Imports {
        /// The plugin file.
        path: PathBuf,
        /// wasmtime's reason, naming the import.
        source: wasmtime::Error,
    },
}

/// Why [`describe`] did not return a plugin's info.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The scratch directory or store the call runs against could not be
    /// created.
    #[error(transparent)]
    Scratch(#[from] std::io::Error),
    /// The call failed: a trap, its time limit, an error it returned.
    #[error(transparent)]
    Call(#[from] rewind_core::CallError),
    /// The call returned something other than plugin info.
    #[error("describe returned something other than plugin info")]
    NotInfo,
}

/// What [`discover_exports`] finds wrong, before [`load`] names the file.
enum ExportsError {
    ApiVersion(String),
    NotARewindPlugin(Vec<String>),
}

/// A compiled plugin, ready to instantiate once per hook call.
pub struct LoadedPlugin {
    /// The .wasm file.
    pub path: PathBuf,
    /// sha256 of the .wasm file.
    pub sha256: String,
    /// The `rewind:hooks` version it was built against.
    pub api_version: String,
    /// Hooks the component exports (besides `describe`).
    pub hooks: BTreeSet<HookKind>,
    /// True when the compiled code came from the on-disk cache.
    pub from_cache: bool,
    pub(crate) instance_pre: InstancePre<HookState>,
    /// Empty directories for its calls, removed with the plugin (a run
    /// keeps one loaded plugin per file: `rewind-runs`' `Runner::plugin`).
    pub(crate) scratch: std::sync::Arc<crate::scratch::ScratchDirs>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("api_version", &self.api_version)
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl LoadedPlugin {
    /// The exported hooks as "backup, revert", for messages.
    pub fn hook_list(&self) -> String {
        let names: Vec<&str> = self.hooks.iter().map(|h| h.as_str()).collect();
        names.join(", ")
    }
}

/// Read, pin-check, compile and inspect a plugin file.
///
/// `pin` is the expected sha256 (from rewind.toml). A mismatch is refused
/// before a single byte is compiled.
pub fn load(
    runtime: &Runtime,
    path: &Path,
    pin: Option<&str>,
) -> Result<LoadedPlugin, PluginError> {
    let path_buf = || path.to_path_buf();
    let wasm = std::fs::read(path).map_err(|source| PluginError::Read {
        path: path_buf(),
        source,
    })?;
    let sha256 = sha256_hex(&wasm);
    if let Some(pin) = pin {
        let pin = pin.trim().to_ascii_lowercase();
        let pin = pin.strip_prefix("sha256:").unwrap_or(&pin);
        if pin != sha256 {
            return Err(PluginError::PinMismatch {
                path: path_buf(),
                expected: pin.to_string(),
                actual: sha256,
            });
        }
    }
    if !wasm.starts_with(b"\0asm") {
        return Err(PluginError::NotWasm { path: path_buf() });
    }
    let (component, from_cache) =
        runtime
            .component(&wasm, &sha256)
            .map_err(|source| PluginError::NotAComponent {
                path: path_buf(),
                source,
            })?;
    let (api_version, hooks) = discover_exports(runtime, &component).map_err(|err| match err {
        ExportsError::ApiVersion(version) => PluginError::ApiVersion {
            path: path_buf(),
            version,
        },
        ExportsError::NotARewindPlugin(exports) => PluginError::NotARewindPlugin {
            path: path_buf(),
            exports,
        },
    })?;
    let instance_pre = runtime
        .linker()
        .instantiate_pre(&component)
        .map_err(|source| PluginError::Imports {
            path: path_buf(),
            source,
        })?;
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        sha256,
        api_version,
        hooks,
        from_cache,
        instance_pre,
        scratch: Default::default(),
    })
}

/// Split "rewind:hooks/backup@0.1.0" into ("backup", "0.1.0").
fn parse_interface_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@')
}

fn discover_exports(
    runtime: &Runtime,
    component: &Component,
) -> Result<(String, BTreeSet<HookKind>), ExportsError> {
    let ty = component.component_type();
    let mut versions = BTreeSet::new();
    let mut interfaces = BTreeSet::new();
    let names = ty
        .exports(runtime.engine())
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_string())
        .chain(
            ty.imports(runtime.engine())
                .map(|(name, _)| name.to_string()),
        );
    for name in names {
        if let Some((iface, version)) = parse_interface_name(&name) {
            versions.insert(version.to_string());
            interfaces.insert(iface.to_string());
        }
    }
    for version in &versions {
        if !SUPPORTED_API_VERSIONS.contains(&version.as_str()) {
            return Err(ExportsError::ApiVersion(version.clone()));
        }
    }
    let exported: BTreeSet<String> = ty
        .exports(runtime.engine())
        .filter_map(|(name, _)| parse_interface_name(name).map(|(i, _)| i.to_string()))
        .collect();
    if !exported.contains("describe") {
        return Err(ExportsError::NotARewindPlugin(
            ty.exports(runtime.engine())
                .map(|(n, _)| n.to_string())
                .collect(),
        ));
    }
    let hooks = HookKind::ALL
        .into_iter()
        .filter(|h| exported.contains(h.as_str()))
        .collect();
    let version = versions
        .into_iter()
        .next()
        .expect("describe carries a version");
    Ok((version, hooks))
}

/// How long `describe` may take: it only returns constants, and `plugins
/// inspect` or `check` must not hang on a plugin that sleeps instead.
pub const DESCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Call `describe` with no grants at all (it must need none) in a scratch
/// store, returning what the plugin says about itself.
pub fn describe(
    plugin: &LoadedPlugin,
    instance: &str,
) -> Result<crate::bindings::rewind::hooks::types::PluginInfo, DescribeError> {
    use crate::bindings::rewind::hooks::types::HookContext;
    use crate::{HookInput, HookOutput, LogSink, SandboxSpec, call_hook};
    let scratch = tempfile::tempdir()?;
    let store = rewind_store::Store::open(scratch.path())?;
    let spec = SandboxSpec {
        instance: instance.to_string(),
        grants: Default::default(),
        limits: crate::Limits {
            timeout: DESCRIBE_TIMEOUT,
            ..Default::default()
        },
    };
    let ctx = HookContext {
        run_id: "describe".into(),
        project: String::new(),
        environment: String::new(),
        instance: instance.to_string(),
        dry_run: false,
        params_json: "{}".into(),
        target: None,
    };
    let outcome = call_hook(
        plugin,
        &spec,
        &store,
        ctx,
        HookInput::Describe,
        LogSink::new(None),
    );
    match outcome.result {
        Ok(HookOutput::Info(info)) => Ok(info),
        Ok(_) => Err(DescribeError::NotInfo),
        Err(err) => Err(DescribeError::Call(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_mismatch_names_both_digests_before_anything_is_compiled() {
        let runtime = Runtime::new(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, b"not even wasm").unwrap();
        let actual = sha256_hex(b"not even wasm");
        let pin = format!("sha256:{}", "AB".repeat(32));
        let err = load(&runtime, &path, Some(&pin)).unwrap_err();
        let PluginError::PinMismatch {
            path: at,
            expected,
            actual: found,
        } = &err
        else {
            panic!("expected a pin mismatch, got {err:?}");
        };
        assert_eq!(at, &path);
        assert_eq!(expected, &"ab".repeat(32));
        assert_eq!(found, &actual);
        assert!(err.to_string().contains(&format!(
            "the file's sha256 is {actual}, the pin is {}",
            "ab".repeat(32)
        )));
        // With its own pin, the same file gets as far as the magic number.
        let err = load(&runtime, &path, Some(&actual)).unwrap_err();
        assert!(matches!(err, PluginError::NotWasm { .. }), "{err:?}");
    }

    #[test]
    fn a_missing_file_is_a_read_error_with_its_cause() {
        let runtime = Runtime::new(None).unwrap();
        let path = Path::new("/nonexistent/rewind/p.wasm");
        let err = load(&runtime, path, None).unwrap_err();
        let PluginError::Read { source, .. } = &err else {
            panic!("expected a read error, got {err:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "cannot read plugin file /nonexistent/rewind/p.wasm"
        );
        assert!(
            rewind_core::ErrorReport(&err)
                .to_string()
                .starts_with("cannot read plugin file /nonexistent/rewind/p.wasm: "),
        );
    }

    #[test]
    fn a_core_module_is_not_a_component_and_keeps_wasmtimes_reason() {
        let runtime = Runtime::new(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.wasm");
        // The smallest core module: magic and version 1.
        std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
        let err = load(&runtime, &path, None).unwrap_err();
        assert!(matches!(err, PluginError::NotAComponent { .. }), "{err:?}");
        let report = rewind_core::ErrorReport(&err).to_string();
        assert!(
            report.starts_with(&format!(
                "{} is not a loadable WebAssembly component: ",
                path.display()
            )),
            "{report}"
        );
    }
}
