//! Attacks on commands: programs a plugin can write, PATH, links followed by commands, processes that outlive their command, working-directory races, ro grants and commands.
//!
//! Parameters come in `params.extra`:
//!
//! - `exec-in`: run `program` with `args`, optionally in `cwd` with
//!   `timeout_ms`; `Ok(stdout)` when it exited 0 (for a write attack, a
//!   breach), else the error.
//! - `plant-and-run`: first write `content` to `file` and give it `mode`
//!   (default 0o755) and/or create the symlink `link` → `link_to`, then as
//!   `exec-in`. `Ok` means the planted program ran.
//! - `cwd-race`: run `program args` in `cwd` again and again for `ms`
//!   milliseconds while the test swaps `cwd` with a symlink to outside;
//!   `Ok("ran N, refused M")`. Whether it broke out is judged by the test
//!   from the filesystem outside.

use std::path::Path;
use std::time::{Duration, Instant};

use rewind_sdk::Command;
use serde_json::Value;

use crate::Params;

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let extra = &params.extra;
    Some(match params.attack.as_str() {
        "exec-in" => exec_in(extra),
        "plant-and-run" => plant(extra).and_then(|()| exec_in(extra)),
        "cwd-race" => cwd_race(extra),
        _ => return None,
    })
}

fn text(extra: &Value, key: &str) -> Option<String> {
    extra.get(key).and_then(Value::as_str).map(str::to_string)
}

fn command(extra: &Value) -> Result<Command, String> {
    let program = text(extra, "program").ok_or("extra.program is required")?;
    let args: Vec<String> = extra
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut cmd = Command::new(program).args(args);
    if let Some(cwd) = text(extra, "cwd") {
        cmd = cmd.cwd(cwd);
    }
    if let Some(ms) = extra.get("timeout_ms").and_then(Value::as_u64) {
        cmd = cmd.timeout(Duration::from_millis(ms));
    }
    Ok(cmd)
}

fn exec_in(extra: &Value) -> Result<String, String> {
    command(extra)?
        .run()
        .map(|out| out.stdout_text())
        .map_err(|e| e.message())
}

/// Write an executable (and/or a symlink) where the grants allow it.
fn plant(extra: &Value) -> Result<(), String> {
    if let Some(file) = text(extra, "file") {
        let content = text(extra, "content").unwrap_or_else(|| "#!/bin/sh\necho PWNED\n".into());
        std::fs::write(&file, content).map_err(|e| format!("planting {file}: {e}"))?;
        let mode = extra.get("mode").and_then(Value::as_u64).unwrap_or(0o755) as u32;
        rewind_sdk::fs::set_mode(Path::new(&file), mode)
            .map_err(|e| format!("chmod {file}: {}", e.message()))?;
    }
    if let (Some(link), Some(to)) = (text(extra, "link"), text(extra, "link_to")) {
        let _ = std::fs::remove_file(&link);
        rewind_sdk::fs::symlink(Path::new(&to), Path::new(&link))
            .map_err(|e| format!("symlink {link}: {e}"))?;
    }
    Ok(())
}

fn cwd_race(extra: &Value) -> Result<String, String> {
    let cmd = command(extra)?;
    let budget = Duration::from_millis(extra.get("ms").and_then(Value::as_u64).unwrap_or(2000));
    let started = Instant::now();
    let (mut ran, mut refused) = (0u32, 0u32);
    let mut last_refusal = String::new();
    while started.elapsed() < budget {
        match cmd.run() {
            Ok(_) => ran += 1,
            Err(e) => {
                refused += 1;
                last_refusal = e.message();
            }
        }
    }
    Ok(format!(
        "ran {ran}, refused {refused} (last refusal: {last_refusal})"
    ))
}
