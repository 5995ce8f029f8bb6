//! Attacks on the `fs` import: modes, owners, setuid bits, check-then-use races, hints that leak.
//!
//! `params.target` is the path; `params.extra` carries the rest:
//! `{"mode": 0o4755}` for `set-mode`, `{"uid": 0, "gid": 0}` for
//! `set-owner`, `{"mode": …, "millis": 2000}` for `set-mode-race`.

use std::path::Path;
use std::time::{Duration, Instant};

use rewind_sdk::fs::{FileKind, metadata, set_mode, set_owner};

use crate::Params;

fn extra_u32(params: &Params, key: &str, default: u32) -> u32 {
    params
        .extra
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .map_or(default, |v| v as u32)
}

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let target = Path::new(&params.target);
    Some(match params.attack.as_str() {
        // What the host says about a path: kind, mode, owner, size.
        "fs-metadata" => metadata(target)
            .map(|m| {
                let kind = match m.kind {
                    FileKind::File => "file",
                    FileKind::Directory => "directory",
                    FileKind::Symlink => "symlink",
                    FileKind::Other => "other",
                };
                format!("{kind} {:o} {}:{} {} bytes", m.mode, m.uid, m.gid, m.size)
            })
            .map_err(|e| e.message()),
        "fs-set-mode" => {
            let mode = extra_u32(params, "mode", 0o777);
            set_mode(target, mode)
                .map(|()| format!("mode {mode:o} set on {}", params.target))
                .map_err(|e| e.message())
        }
        "fs-set-owner" => {
            let uid = extra_u32(params, "uid", 0);
            let gid = extra_u32(params, "gid", 0);
            set_owner(target, uid, gid)
                .map(|()| format!("{} given to {uid}:{gid}", params.target))
                .map_err(|e| e.message())
        }
        // Call set-mode in a loop while the test swaps the target for a
        // symlink to a victim outside the grants. The plugin cannot see the
        // victim, so it reports counts; the test checks the victim's mode.
        "fs-set-mode-race" => {
            let mode = extra_u32(params, "mode", 0o777);
            let millis = extra_u32(params, "millis", 2000);
            let deadline = Instant::now() + Duration::from_millis(u64::from(millis));
            let (mut ok, mut refused) = (0u64, 0u64);
            let mut last = String::new();
            while Instant::now() < deadline {
                match set_mode(target, mode) {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        refused += 1;
                        last = e.message();
                    }
                }
            }
            Err(format!("ok={ok} refused={refused} last={last}"))
        }
        _ => return None,
    })
}
