//! Loading a plugin: check the file's digest against its pin, compile (or
//! load the cached compilation), and find which hooks it exports.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use crate::HookState;
use crate::engine::Runtime;
pub use rewind_core::{HookKind, sha256_hex};

/// The WIT package plugins are built against.
pub const WIT_PACKAGE: &str = "rewind:hooks";
/// The API versions this host supports.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["0.1.0"];

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
pub fn load(runtime: &Runtime, path: &Path, pin: Option<&str>) -> Result<LoadedPlugin> {
    let wasm = std::fs::read(path)
        .with_context(|| format!("cannot read plugin file {}", path.display()))?;
    let sha256 = sha256_hex(&wasm);
    if let Some(pin) = pin {
        let pin = pin.trim().to_ascii_lowercase();
        let pin = pin.strip_prefix("sha256:").unwrap_or(&pin);
        if pin != sha256 {
            bail!(
                "plugin {} does not match its pin: the file's sha256 is {sha256}, the pin is {pin}. \
                 The file changed since it was pinned: if the new file is trusted, run \
                 `rewind plugins inspect {}` and update `sha256`; otherwise restore the pinned file.",
                path.display(),
                path.display()
            );
        }
    }
    if !wasm.starts_with(b"\0asm") {
        bail!("{} is not a WebAssembly file", path.display());
    }
    let (component, from_cache) = runtime
        .component(&wasm, &sha256)
        .with_context(|| format!("{} is not a loadable WebAssembly component", path.display()))?;
    let (api_version, hooks) = discover_exports(runtime, &component)
        .with_context(|| format!("plugin {}", path.display()))?;
    let instance_pre = runtime
        .linker()
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "plugin {} imports something this host does not provide",
                path.display()
            )
        })?;
    Ok(LoadedPlugin {
        path: path.to_path_buf(),
        sha256,
        api_version,
        hooks,
        from_cache,
        instance_pre,
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
) -> Result<(String, BTreeSet<HookKind>)> {
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
            bail!(
                "it was built for the {WIT_PACKAGE} API version {version}, but this host supports \
                 {}; rebuild the plugin against {WIT_PACKAGE}@{} or use a rewind release that \
                 supports {version}",
                SUPPORTED_API_VERSIONS.join(", "),
                SUPPORTED_API_VERSIONS[SUPPORTED_API_VERSIONS.len() - 1],
            );
        }
    }
    let exported: BTreeSet<String> = ty
        .exports(runtime.engine())
        .filter_map(|(name, _)| parse_interface_name(name).map(|(i, _)| i.to_string()))
        .collect();
    if !exported.contains("describe") {
        bail!(
            "it is not a rewind plugin: it does not export {WIT_PACKAGE}/describe (exports: {})",
            ty.exports(runtime.engine())
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
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
) -> Result<crate::bindings::rewind::hooks::types::PluginInfo> {
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
        Ok(_) => bail!("describe returned something other than plugin info"),
        Err(err) => Err(anyhow::Error::new(err)),
    }
}
