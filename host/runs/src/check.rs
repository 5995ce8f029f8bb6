//! `rewind check`: is a config ready to run? Every finding at once, not
//! the first error: the config parses (the caller loaded it), each plugin
//! matches its pin, loads and describes itself, params have the declared
//! types, chain entries export the hooks they are used for, requested
//! capabilities are granted, risky grant combinations, the store.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::config::Config;
use rewind_core::ErrorReport;
use rewind_sandbox::engine::Runtime;
use rewind_sandbox::plugin::HookKind;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// What a run would fail on.
    Error,
    /// A risk or something a run may trip on.
    Warning,
    /// Checked and fine.
    Ok,
}

/// One thing `check_config` found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub level: Level,
    /// What it is about: `config`, `plugins.<name>`, `chains.backup`, `store`, …
    pub subject: String,
    /// What was found, and what to do about it.
    pub message: String,
}

/// `rewind check`: [`check_config`], then, if that found no error, the
/// rollback chain's dry runs against the newest backup
/// ([`Runner::rollback_preflight`]): each plugin's own preflight.
///
/// [`Runner::rollback_preflight`]: crate::Runner::rollback_preflight
pub fn check(config: &Config, runtime: &Runtime) -> Vec<Finding> {
    let mut out = check_config(config, runtime);
    let subject = "rollback preflight".to_string();
    if out.iter().any(|f| f.level == Level::Error) {
        out.push(Finding {
            level: Level::Warning,
            subject,
            message: "not run until the errors above are fixed".into(),
        });
        return out;
    }
    // A store that does not exist yet holds no backup to preflight, and
    // opening it would create it: check changes nothing.
    if store_is_new(config).unwrap_or(false) {
        out.push(Finding {
            level: Level::Ok,
            subject,
            message: "no backup yet: the first backup is what a rollback would restore".into(),
        });
        return out;
    }
    let runner = config
        .store
        .open()
        .map_err(crate::RunError::from)
        .and_then(|store| {
            crate::Runner::new(
                config,
                store,
                runtime.clone(),
                &crate::Silent,
                "rewind check".into(),
            )
        });
    match runner {
        Ok(runner) => out.extend(runner.rollback_preflight()),
        Err(err) => out.push(Finding {
            level: Level::Error,
            subject,
            message: ErrorReport(&err).to_string(),
        }),
    }
    out
}

/// Check `config`, loading its plugins with `runtime`.
pub fn check_config(config: &Config, runtime: &Runtime) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |level, subject: &str, message: String| {
        out.push(Finding {
            level,
            subject: subject.to_string(),
            message,
        })
    };
    add(
        Level::Ok,
        "config",
        format!("{} parses", config.path.display()),
    );
    out.extend(lock_findings(config));
    let mut hooks_of = std::collections::BTreeMap::new();
    for name in config.instances.keys() {
        let (findings, hooks) = check_instance(config, name, runtime);
        out.extend(findings);
        if let Some(hooks) = hooks {
            hooks_of.insert(name.clone(), hooks);
        }
    }

    let mut need = |list: &[String],
                    what: &str,
                    ok: &dyn Fn(&std::collections::BTreeSet<HookKind>) -> bool,
                    hook: &str| {
        for name in list {
            if let Some(hooks) = hooks_of.get(name)
                && !ok(hooks)
            {
                out.push(Finding {
                    level: Level::Error,
                    subject: what.to_string(),
                    message: format!("`{name}` is listed, but its plugin does not export {hook}"),
                });
            }
        }
    };
    need(
        &config.chains.backup,
        "chains.backup",
        &|h| h.contains(&HookKind::Backup),
        "backup",
    );
    need(
        &config.chains.rollback,
        "chains.rollback",
        &|h| h.contains(&HookKind::Revert) || h.contains(&HookKind::Restore),
        "revert or restore",
    );
    need(
        &config.guard.health,
        "guard.health",
        &|h| h.contains(&HookKind::Health),
        "health",
    );
    need(
        &config.notify_sinks,
        "notify.sinks",
        &|h| h.contains(&HookKind::Notify),
        "notify",
    );
    for (name, instance) in &config.instances {
        let Some(fallback) = &instance.fallback else {
            continue;
        };
        let subject = format!("plugins.{name}.fallback");
        if let Some(hooks) = hooks_of.get(fallback)
            && !hooks.contains(&HookKind::Revert)
            && !hooks.contains(&HookKind::Restore)
        {
            out.push(Finding {
                level: Level::Error,
                subject: subject.clone(),
                message: format!(
                    "`{fallback}`'s plugin exports neither restore nor revert, so it cannot be \
                     restored when `{name}` fails; name an instance that restores, e.g. the \
                     database dump"
                ),
            });
        }
        if !config.chains.backup.contains(fallback) {
            out.push(Finding {
                level: Level::Error,
                subject,
                message: format!(
                    "`{fallback}` is not in chains.backup, so no backup holds anything to \
                     restore when `{name}` fails; add it to chains.backup"
                ),
            });
        }
    }
    for (key, list) in [
        ("chains.backup", &config.chains.backup),
        ("chains.rollback", &config.chains.rollback),
    ] {
        if list.is_empty() {
            out.push(Finding {
                level: Level::Warning,
                subject: key.to_string(),
                message: "is empty".into(),
            });
        }
    }

    let root = config.store.location().display();
    let store_check = match store_is_new(config) {
        // Check writes nothing, so it cannot create the store to prove it
        // writable; the first backup does both.
        Ok(true) => Ok(false),
        Err(err) => Err(err),
        Ok(false) => config
            .store
            .open()
            .and_then(|s| s.check_writable())
            .map(|()| true),
    };
    out.push(match store_check {
        Ok(false) => Finding {
            level: Level::Ok,
            subject: "store".into(),
            message: format!(
                "{root} does not exist yet; the first backup creates it (check writes nothing, \
                 so whether it can be written is proven then)"
            ),
        },
        Ok(true) => Finding {
            level: Level::Ok,
            subject: "store".into(),
            message: format!("{root} is writable"),
        },
        Err(err) => Finding {
            level: Level::Error,
            subject: "store".into(),
            message: format!("{root} is not usable: {err}"),
        },
    });
    out
}

/// Would the first run create this host's store? Nothing is created to
/// find out. A fleet root that is a single-host store is refused here as
/// the first run would refuse it.
fn store_is_new(config: &Config) -> std::io::Result<bool> {
    if let Some(root) = config.store.fleet_root() {
        rewind_store::Fleet::at(&root)?.refuse_single_store()?;
    }
    rewind_store::Store::is_new_at(&config.store.location())
}

/// Where rewind.lock and the config disagree: a registry source the lock
/// does not pin (an error: nothing can run it), perhaps because its
/// reference changed, and lock entries no source uses any more (stale).
/// Each names the fix, `rewind plugins lock`.
pub fn lock_findings(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let sources: Vec<(&str, &crate::config::OciSource)> = config
        .instances
        .iter()
        .filter_map(|(name, i)| i.oci.as_ref().map(|oci| (name.as_str(), oci)))
        .collect();
    let lock = match rewind_registry::LockFile::read(&config.lock_path) {
        Ok(lock) => lock,
        Err(err) => {
            out.push(Finding {
                level: Level::Error,
                subject: "rewind.lock".into(),
                message: ErrorReport(&err).to_string(),
            });
            return out;
        }
    };
    if sources.is_empty() && lock.is_none() {
        return out;
    }
    let lock = lock.unwrap_or_default();
    let lock_name = config.lock_path.display();
    let used: BTreeSet<String> = sources
        .iter()
        .map(|(_, oci)| oci.reference.to_string())
        .collect();
    let mut problems = 0;
    for (name, oci) in &sources {
        if oci.locked.is_some() {
            continue;
        }
        problems += 1;
        let reference = oci.reference.to_string();
        let was = lock
            .plugins
            .iter()
            .find(|p| !used.contains(&p.reference) && p.name == oci.reference.repository);
        let changed = match was {
            Some(old) => format!(
                " (it pins {} of the same repository: the reference in the config changed)",
                old.reference
            ),
            None => String::new(),
        };
        out.push(Finding {
            level: Level::Error,
            subject: format!("plugins.{name}"),
            message: format!(
                "{reference} is not in {lock_name}{changed}, so nothing can run it; run \
                 `rewind plugins lock`"
            ),
        });
    }
    for stale in lock.plugins.iter().filter(|p| !used.contains(&p.reference)) {
        problems += 1;
        out.push(Finding {
            level: Level::Warning,
            subject: "rewind.lock".into(),
            message: format!(
                "pins {}, which no plugin source of {} names any more; `rewind plugins lock` \
                 drops it",
                stale.reference,
                config.path.display()
            ),
        });
    }
    if problems == 0 {
        out.push(Finding {
            level: Level::Ok,
            subject: "rewind.lock".into(),
            message: format!(
                "pins every registry source of the config ({} plugin(s))",
                lock.plugins.len()
            ),
        });
    }
    out
}

/// Check one instance: pin, load, describe, params, requested capabilities,
/// programs, paths it may write, risky grants. Returns its findings and,
/// when it loaded, the hooks it exports.
pub fn check_instance(
    config: &Config,
    name: &str,
    runtime: &Runtime,
) -> (Vec<Finding>, Option<BTreeSet<HookKind>>) {
    let mut out = Vec::new();
    let Some(instance) = config.instances.get(name) else {
        return (out, None);
    };
    let subject = format!("plugins.{name}");
    let mut add = |level, message: String| {
        out.push(Finding {
            level,
            subject: subject.clone(),
            message,
        })
    };
    if instance
        .oci
        .as_ref()
        .is_some_and(|oci| oci.locked.is_none())
    {
        // Not in rewind.lock: `lock_findings` says so, with the fix.
        return (out, None);
    }
    if let Err(err) = crate::source::prepare(config, instance) {
        add(Level::Error, ErrorReport(&err).to_string());
        return (out, None);
    }
    if let Some(crate::config::OciSource {
        reference,
        locked: Some(locked),
    }) = &instance.oci
    {
        add(
            Level::Ok,
            format!(
                "{reference} locked to {} (component sha256:{})",
                locked.digest, instance.sha256
            ),
        );
    }
    let plugin =
        match rewind_sandbox::plugin::load(runtime, &instance.source, Some(&instance.sha256)) {
            Ok(plugin) => plugin,
            Err(err) => {
                add(Level::Error, ErrorReport(&err).to_string());
                return (out, None);
            }
        };
    let info = match rewind_sandbox::plugin::describe(&plugin, name) {
        Ok(info) => info,
        Err(err) => {
            add(
                Level::Error,
                format!("describe failed: {}", ErrorReport(&err)),
            );
            return (out, None);
        }
    };
    add(
        Level::Ok,
        format!(
            "{} {} ({}@{}) pinned and loaded; hooks: {}",
            info.name,
            info.version,
            rewind_sandbox::plugin::WIT_PACKAGE,
            plugin.api_version,
            plugin.hook_list()
        ),
    );
    for problem in rewind_sandbox::params::check(name, &info, &instance.params) {
        add(Level::Error, problem);
    }
    // What a rollback would fail on, knowable now: a capability the
    // plugin needs and does not have, a program that is not there, a
    // directory it may write that cannot be written.
    for missing in rewind_sandbox::requests::ungranted(&info.capabilities, &instance.grants) {
        add(
            Level::Error,
            format!(
                "requests {missing}, which is not granted: the hooks that need it would be \
                 denied; add the line (or a narrower grant that still covers what the hooks run)"
            ),
        );
    }
    for pattern in &instance.grants.exec {
        if let Err(why) = rewind_sandbox::preflight_program(&instance.grants, &pattern.program) {
            add(Level::Error, format!("grants.exec `{pattern}`: {why}"));
        }
    }
    for grant in instance.grants.paths.iter().filter(|g| g.writable) {
        if let Err(why) = rewind_sandbox::preflight_writable(&grant.path) {
            add(
                Level::Error,
                format!(
                    "grants.paths `{}` is granted read-write, but {why}: a hook that writes \
                     there would fail; fix the directory, or grant it `ro:` if nothing writes",
                    grant.path.display()
                ),
            );
        }
    }
    for risk in rewind_grants::risks::code_execution_risks(&instance.grants) {
        add(Level::Warning, risk);
    }
    (out, Some(plugin.hooks.clone()))
}
