//! `rewind-sdk`: write [rewind](https://example.invalid/rewind) plugins in Rust.
//!
//! A rewind plugin is a WebAssembly component (built for `wasm32-wasip2`) that
//! exports `describe` plus any subset of the five hooks: backup, restore,
//! revert, health and notify. The host runs each hook call in a fresh sandbox
//! that can touch only the files, commands, environment variables and HTTP
//! origins the operator granted.
//!
//! This crate gives you:
//! - one trait per hook ([`Plugin`] for `describe`, [`Backup`], [`Restore`],
//!   [`Revert`], [`Health`], [`Notify`]) and [`export_plugin!`], which exports
//!   exactly the hooks you name;
//! - [`params!`], one declaration of the parameters: the typed struct with
//!   its defaults, and the specs `describe` returns (so `rewind check`
//!   validates what the hooks read); [`Context`] gives the struct to a hook;
//! - [`secret_from_env`] for passwords and tokens in granted variables;
//! - [`Command`] to run granted commands, including streaming a command's
//!   stdout straight into an artifact and an artifact into a command's stdin;
//! - [`artifacts`]: [`std::io::Write`] / [`std::io::Read`] access to
//!   checksummed artifacts, and JSON state records;
//! - [`log`], and [`http`] for outgoing requests to granted origins;
//! - [`HookError`] constructors and conversions.
//!
//! # A complete plugin
//!
//! ```no_run
//! use rewind_sdk::{artifacts, Backup, Context, HookError, Plugin, PluginInfo, Report, Revert};
//! use rewind_sdk::{ArtifactRef, Capabilities};
//!
//! rewind_sdk::params! {
//!     struct Params {
//!         /// The file to keep
//!         file: String,
//!     }
//! }
//!
//! struct Greeting;
//!
//! impl Plugin for Greeting {
//!     fn info() -> PluginInfo {
//!         PluginInfo {
//!             name: "greeting".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             summary: "Backs up and restores one text file".into(),
//!             capabilities: Capabilities::default(),
//!             params: Params::specs(),
//!         }
//!     }
//! }
//!
//! impl Backup for Greeting {
//!     fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
//!         let params: Params = ctx.params()?;
//!         let text = std::fs::read(&params.file)?;
//!         Ok(vec![artifacts::write_bytes("greeting", "text/plain", &text)?])
//!     }
//! }
//!
//! impl Revert for Greeting {
//!     fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
//!         let params: Params = ctx.params()?;
//!         let text = artifacts::read_bytes(artifacts::find(saved, "greeting")?)?;
//!         if !ctx.dry_run() {
//!             std::fs::write(&params.file, text)?;
//!         }
//!         Ok(Report::new(format!("restored {}", params.file)))
//!     }
//! }
//!
//! rewind_sdk::export_plugin!(Greeting: backup, revert);
//! ```

#![deny(missing_docs)]

// Generated from the WIT; its doc comments are the WIT's.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        world: "host-api",
        path: "../wit",
        generate_all,
    });
}

/// Generated types of the `rewind:hooks` WIT package, for what the
/// re-exports at the crate root do not cover.
pub mod wit {
    pub use crate::bindings::rewind::hooks::{artifacts, fs, log, process, sandbox, types};
}

pub use bindings::rewind::hooks::types::{
    ArtifactRef, Capabilities, Denial, Event, EventKind, Failure, HealthCheck, HealthReport,
    HealthStatus, HookContext, HookError, ParamKind, ParamSpec, PathRequest, PluginInfo, Report,
};

pub mod artifacts;
mod command;
mod context;
mod error;
mod event;
pub mod fs;
pub mod http;
pub mod log;
pub mod params;

pub use command::{Command, Output};
pub use context::Context;
pub use error::take_denial;
pub use params::{ParamType, secret_from_env};

// Hidden: re-exported so that `export_plugin!` works in crates that do not
// depend on `serde` themselves.
#[doc(hidden)]
pub use serde_json as __serde_json;
// Hidden: for the `Deserialize` impl `params!` writes.
#[doc(hidden)]
pub use serde as __serde;

/// `describe`: every plugin implements this.
pub trait Plugin {
    /// Name, version, summary, requested capabilities and param specs.
    fn info() -> PluginInfo;
}

/// Capture data and state before a deploy.
pub trait Backup {
    /// Write artifacts for this instance and return them.
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError>;
}

/// Put data back from the artifacts this instance produced in a backup run.
pub trait Restore {
    /// Restore from `artifacts`, this instance's output of the chosen backup.
    fn restore(ctx: &Context, artifacts: &[ArtifactRef]) -> Result<Report, HookError>;
}

/// Return code, schema or CDN to the recorded state (or to `ctx.target()`).
pub trait Revert {
    /// Revert using `artifacts`, this instance's output of the chosen backup.
    fn revert(ctx: &Context, artifacts: &[ArtifactRef]) -> Result<Report, HookError>;
}

/// Named checks, each healthy, degraded or unhealthy.
pub trait Health {
    /// Run every check and report each one.
    fn check(ctx: &Context) -> HealthReport;
}

/// Deliver an event (chat, mail, webhook).
pub trait Notify {
    /// Deliver `event`; a failure is reported and never fails the run.
    fn notify(ctx: &Context, event: &Event) -> Result<(), HookError>;
}

// One generated module per exported interface. Each has its own world, so a
// plugin's component exports only the hooks it passes to `export_plugin!`:
// wit-bindgen emits each world's type information from the export macro, in
// the plugin's own crate, and wit-component merges what is linked.
macro_rules! export_world {
    ($module:ident, $world:literal, $macro_name:literal) => {
        #[doc(hidden)]
        pub mod $module {
            wit_bindgen::generate!({
                world: $world,
                path: "../wit",
                with: {
                    "rewind:hooks/types@0.1.0": crate::bindings::rewind::hooks::types,
                    "rewind:hooks/log@0.1.0": crate::bindings::rewind::hooks::log,
                    "rewind:hooks/artifacts@0.1.0": crate::bindings::rewind::hooks::artifacts,
                    "rewind:hooks/process@0.1.0": crate::bindings::rewind::hooks::process,
                    "rewind:hooks/fs@0.1.0": crate::bindings::rewind::hooks::fs,
                },
                pub_export_macro: true,
                export_macro_name: $macro_name,
            });
        }
    };
}

export_world!(describe_world, "describe-export", "__export_describe");
export_world!(backup_world, "backup-export", "__export_backup");
export_world!(restore_world, "restore-export", "__export_restore");
export_world!(revert_world, "revert-export", "__export_revert");
export_world!(health_world, "health-export", "__export_health");
export_world!(notify_world, "notify-export", "__export_notify");

impl<T: Plugin> describe_world::exports::rewind::hooks::describe::Guest for T {
    fn info() -> PluginInfo {
        T::info()
    }
}

impl<T: Backup> backup_world::exports::rewind::hooks::backup::Guest for T {
    fn backup(ctx: HookContext) -> Result<Vec<ArtifactRef>, HookError> {
        T::backup(&Context::new(ctx))
    }
}

impl<T: Restore> restore_world::exports::rewind::hooks::restore::Guest for T {
    fn restore(ctx: HookContext, artifacts: Vec<ArtifactRef>) -> Result<Report, HookError> {
        T::restore(&Context::new(ctx), &artifacts)
    }
}

impl<T: Revert> revert_world::exports::rewind::hooks::revert::Guest for T {
    fn revert(ctx: HookContext, artifacts: Vec<ArtifactRef>) -> Result<Report, HookError> {
        T::revert(&Context::new(ctx), &artifacts)
    }
}

impl<T: Health> health_world::exports::rewind::hooks::health::Guest for T {
    fn check(ctx: HookContext) -> HealthReport {
        T::check(&Context::new(ctx))
    }
}

impl<T: Notify> notify_world::exports::rewind::hooks::notify::Guest for T {
    fn notify(ctx: HookContext, event: Event) -> Result<(), HookError> {
        T::notify(&Context::new(ctx), &event)
    }
}

/// Export a plugin type: `describe` always, plus the hooks listed.
///
/// ```ignore
/// rewind_sdk::export_plugin!(MyPlugin: backup, restore, health);
/// ```
///
/// The type must implement [`Plugin`] and the trait of every hook listed.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ident $(: $($hook:ident),* $(,)?)?) => {
        $crate::describe_world::__export_describe!($ty with_types_in $crate::describe_world);
        $($($crate::__export_one_hook!($hook, $ty);)*)?
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_one_hook {
    (backup, $ty:ident) => {
        $crate::backup_world::__export_backup!($ty with_types_in $crate::backup_world);
    };
    (restore, $ty:ident) => {
        $crate::restore_world::__export_restore!($ty with_types_in $crate::restore_world);
    };
    (revert, $ty:ident) => {
        $crate::revert_world::__export_revert!($ty with_types_in $crate::revert_world);
    };
    (health, $ty:ident) => {
        $crate::health_world::__export_health!($ty with_types_in $crate::health_world);
    };
    (notify, $ty:ident) => {
        $crate::notify_world::__export_notify!($ty with_types_in $crate::notify_world);
    };
    ($other:ident, $ty:ident) => {
        compile_error!(concat!(
            "unknown hook `",
            stringify!($other),
            "`; expected one of: backup, restore, revert, health, notify"
        ));
    };
}

/// The cases of `enum <name>` in `wit/types.wit`, in order, as written
/// (`%` escapes removed): what the SDK names from the WIT (event kinds,
/// param kinds) is pinned to these by its tests, as the host's are.
#[cfg(test)]
pub(crate) fn wit_enum_cases(name: &str) -> Vec<String> {
    let wit = include_str!("../../wit/types.wit");
    let Some(body) = wit.split(&format!("enum {name} {{")).nth(1) else {
        return Vec::new();
    };
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.lines()
        .map(|line| line.split("//").next().unwrap_or("").trim())
        .flat_map(|line| line.split(','))
        .map(|case| case.trim().trim_start_matches('%'))
        .filter(|case| !case.is_empty())
        .map(str::to_string)
        .collect()
}
