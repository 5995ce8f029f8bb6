//! `rewind plugins inspect`.

use super::Result;
use rewind::bindings::rewind::hooks::types::PluginInfo;
use rewind::grants::Grants;
use serde_json::json;

use super::target;
use super::{AdHocArgs, Cli};
use rewind::exit::ExitCode;

pub const AFTER_HELP: &str = "\
Examples:
  rewind plugins inspect target/wasm32-wasip2/release/http_health.wasm
  rewind plugins inspect db            # an instance: requested vs granted side by side
  rewind plugins inspect db --json";

pub fn run(cli: &Cli, plugin_arg: &str, json: bool) -> Result<ExitCode> {
    let target = target::resolve(cli, plugin_arg, &AdHocArgs::default())?;
    let runtime = super::runtime()?;
    let plugin = rewind::plugin::load(&runtime, &target.source, target.pin.as_deref())?;
    let info = rewind::plugin::describe(&plugin, &target.spec.instance)?;

    let granted = target.config.as_ref().map(|_| target.spec.grants.clone());
    if json {
        let mut out = json!({
            "file": plugin.path,
            "sha256": plugin.sha256,
            "api_version": plugin.api_version,
            "hooks": plugin.hooks,
            "name": info.name,
            "version": info.version,
            "summary": info.summary,
            "requested": {
                "exec": info.capabilities.exec,
                "paths": info.capabilities.paths.iter().map(|p| json!({
                    "path": p.path, "writable": p.writable, "reason": p.reason
                })).collect::<Vec<_>>(),
                "env": info.capabilities.env,
                "http": info.capabilities.http,
            },
            "params": info.params.iter().map(|p| json!({
                "name": p.name, "required": p.required, "description": p.description,
                "type": rewind::params::kind_name(p.kind), "default": p.default_value,
            })).collect::<Vec<_>>(),
        });
        if let Some(grants) = &granted {
            out["instance"] = json!(target.spec.instance);
            out["granted"] = serde_json::to_value(grants.as_ref())?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::Ok);
    }

    println!("{} {}", info.name, info.version);
    println!("  {}", info.summary);
    println!("  file:         {}", plugin.path.display());
    println!("  sha256:       {}", plugin.sha256);
    println!(
        "  api version:  {}@{}",
        rewind::plugin::WIT_PACKAGE,
        plugin.api_version
    );
    let hooks: Vec<&str> = plugin.hooks.iter().map(|h| h.as_str()).collect();
    println!("  hooks:        {}", hooks.join(", "));
    if !info.params.is_empty() {
        println!("  params:");
        for p in &info.params {
            let kind = rewind::params::kind_name(p.kind);
            let extra = match (&p.default_value, p.required) {
                (_, true) => ", required".to_string(),
                (Some(default), false) => format!(", default {default}"),
                (None, false) => String::new(),
            };
            println!("    {} ({kind}{extra}): {}", p.name, p.description);
        }
    }
    print_capabilities(&info, granted.as_deref());
    Ok(ExitCode::Ok)
}

pub fn print_capabilities(info: &PluginInfo, granted: Option<&Grants>) {
    let caps = &info.capabilities;
    let paths: Vec<String> = caps
        .paths
        .iter()
        .map(|p| {
            let mode = if p.writable { "rw" } else { "ro" };
            format!("{mode}:{} ({})", p.path, p.reason)
        })
        .collect();
    let rows: [(&str, Vec<String>, Vec<String>); 4] = [
        (
            "exec",
            caps.exec.clone(),
            granted.map_or_else(Vec::new, |g| g.exec.iter().map(|e| e.to_string()).collect()),
        ),
        (
            "paths",
            paths,
            granted.map_or_else(Vec::new, |g| {
                g.paths
                    .iter()
                    .map(|p| {
                        let mode = if p.writable { "rw" } else { "ro" };
                        format!("{mode}:{}", p.path.display())
                    })
                    .collect()
            }),
        ),
        (
            "env",
            caps.env.clone(),
            granted.map_or_else(Vec::new, |g| g.env.clone()),
        ),
        (
            "http",
            caps.http.clone(),
            granted.map_or_else(Vec::new, |g| g.http.iter().map(|o| o.to_string()).collect()),
        ),
    ];
    match granted {
        None => {
            println!("  requests:");
            for (kind, requested, _) in &rows {
                let list = if requested.is_empty() {
                    "-".to_string()
                } else {
                    requested.join(", ")
                };
                println!("    {kind:<6} {list}");
            }
        }
        Some(_) => {
            println!("  {:<8}{:<48}granted", "", "requested");
            for (kind, requested, given) in &rows {
                let n = requested.len().max(given.len()).max(1);
                for i in 0..n {
                    let label = if i == 0 { *kind } else { "" };
                    println!(
                        "  {label:<8}{:<48}{}",
                        requested.get(i).map_or("-", String::as_str),
                        given.get(i).map_or("-", String::as_str)
                    );
                }
            }
        }
    }
}
