//! Attacks on what a guest makes the host hold or wait for: log floods,
//! cut characters, blocking host calls, artifact quotas, terminal escapes.

use std::time::Duration;

use rewind_sdk::http::Request;
use rewind_sdk::log::{self, Level};
use rewind_sdk::{HookError, artifacts};

use crate::Params;

fn number(params: &Params, key: &str, default: u64) -> u64 {
    params
        .extra
        .get(key)
        .and_then(|v| v.as_u64())
        .unwrap_or(default)
}

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    Some(match params.attack.as_str() {
        // A line just over the host's 16 KiB cap whose cut falls inside a
        // multi-byte character, at every alignment.
        "log-multibyte" => {
            for pad in 0..4 {
                let line = format!("{}{}", "a".repeat(pad), "€😀é".repeat(2000));
                log::warn(&line);
                log::with_fields(Level::Info, &line, &[(&line, &line)]);
            }
            Err("logged".into())
        }
        // Many large lines: the host must keep a bounded amount.
        "log-flood" => {
            let line = "x".repeat(number(params, "bytes", 16 * 1024) as usize);
            for _ in 0..number(params, "lines", 100_000) {
                log::info(&line);
            }
            Err("flooded".into())
        }
        // Many fields per line.
        "log-fields" => {
            let value = "v".repeat(4096);
            let fields: Vec<(String, String)> = (0..2000)
                .map(|i| (format!("k{i}"), value.clone()))
                .collect();
            let borrowed: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            for _ in 0..number(params, "lines", 200) {
                log::with_fields(Level::Info, "fields", &borrowed);
            }
            Err("fields".into())
        }
        // Blocked in a host call: a WASI sleep, then a poll on a clock.
        "sleep" => {
            std::thread::sleep(Duration::from_secs(number(params, "secs", 30)));
            Ok("slept through the limit".into())
        }
        // An HTTP request to a granted origin that answers slowly.
        "http-slow" => Request::get(&params.target)
            .timeout(Duration::from_secs(number(params, "secs", 30)))
            .send()
            .map(|r| format!("answered {}", r.status))
            .map_err(|e| e.message()),
        // Control characters and a forged line for another instance.
        "ansi" => {
            let forged = "done\n  [db/backup] info: all rows deleted\x1b[2J\x1b]0;pwned\x07\r";
            log::warn(forged);
            println!("{forged}");
            Err(forged.to_string())
        }
        // Hold thousands of host resources.
        "resources" => {
            let mut held = Vec::new();
            for _ in 0..number(params, "count", 1_000_000) {
                held.push(wasip2::clocks::monotonic_clock::subscribe_duration(
                    1_000_000_000,
                ));
            }
            Ok(format!("held {} pollables", held.len()))
        }
        // Make the host hold HTTP header maps: each is host memory the
        // guest's own memory limit does not count.
        "http-fields" => {
            let value = vec![b'v'; number(params, "bytes", 60 * 1024) as usize];
            let mut held = Vec::new();
            for i in 0..number(params, "count", 100_000) {
                let fields = wasip2::http::types::Fields::new();
                if let Err(e) = fields.append("x-fill", &value) {
                    return Some(Err(format!("after {i}: {e:?}")));
                }
                held.push(fields);
            }
            Ok(format!("held {} header maps", held.len()))
        }
        // Write more artifact bytes than the quota.
        "artifact-quota" => {
            let chunk = vec![7u8; 1 << 20];
            let write = || -> Result<String, HookError> {
                let mut writer = artifacts::Writer::create("big", "application/octet-stream")?;
                for _ in 0..number(params, "mb", 64) {
                    std::io::Write::write_all(&mut writer, &chunk)?;
                }
                let done = writer.finish()?;
                Ok(format!("stored {} bytes", done.size))
            };
            write().map_err(|e| e.message())
        }
        // More artifacts than a call may create.
        "artifact-count" => {
            let mut made = 0;
            for i in 0..number(params, "count", 5000) {
                match artifacts::write_bytes(&format!("a{i}"), "text/plain", b"x") {
                    Ok(_) => made += 1,
                    Err(e) => return Some(Err(format!("after {made}: {}", e.message()))),
                }
            }
            Ok(format!("created {made}"))
        }
        _ => return None,
    })
}
