//! `rewind check`: is a config ready to run? Every finding at once, not
//! the first error: the config parses (the caller loaded it), each plugin
//! matches its pin, loads and describes itself, params have the declared
//! types, chain entries export the hooks they are used for, requested
//! capabilities are granted, risky grant combinations, the store.

use serde::Serialize;

use crate::config::Config;
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
    let mut hooks_of = std::collections::BTreeMap::new();
    for (name, instance) in &config.instances {
        let subject = format!("plugins.{name}");
        let plugin =
            match rewind_sandbox::plugin::load(runtime, &instance.source, Some(&instance.sha256)) {
                Ok(plugin) => plugin,
                Err(err) => {
                    add(Level::Error, &subject, format!("{err:#}"));
                    continue;
                }
            };
        let info = match rewind_sandbox::plugin::describe(&plugin, name) {
            Ok(info) => info,
            Err(err) => {
                add(Level::Error, &subject, format!("describe failed: {err:#}"));
                continue;
            }
        };
        add(
            Level::Ok,
            &subject,
            format!(
                "{} {} pinned and loaded; hooks: {}",
                info.name,
                info.version,
                plugin.hook_list()
            ),
        );
        for problem in rewind_sandbox::params::check(name, &info, &instance.params) {
            add(Level::Error, &subject, problem);
        }
        // What a rollback would fail on, knowable now: a capability the
        // plugin needs and does not have, a program that is not there.
        for missing in rewind_sandbox::requests::ungranted(&info.capabilities, &instance.grants) {
            add(
                Level::Error,
                &subject,
                format!(
                    "requests {missing}, which is not granted: the hooks that need it would be \
                     denied; add the line (or a narrower grant that still covers what the hooks run)"
                ),
            );
        }
        for pattern in &instance.grants.exec {
            if let Err(why) = rewind_sandbox::preflight_program(&instance.grants, &pattern.program)
            {
                add(
                    Level::Error,
                    &subject,
                    format!("grants.exec `{pattern}`: {why}"),
                );
            }
        }
        for risk in rewind_grants::risks::code_execution_risks(&instance.grants) {
            add(Level::Warning, &subject, risk);
        }
        hooks_of.insert(name.clone(), plugin.hooks.clone());
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

    let root = config.store.root();
    let store_check = rewind_store::Store::open(&root).and_then(|s| s.check_writable());
    out.push(match store_check {
        Ok(()) => Finding {
            level: Level::Ok,
            subject: "store".into(),
            message: format!("{} is writable", root.display()),
        },
        Err(err) => Finding {
            level: Level::Error,
            subject: "store".into(),
            message: format!("{} is not usable: {err}", root.display()),
        },
    });
    out
}
