//! Attacks on WASI filesystem: links that leave the grants, nested grants, paths outside every grant, name lookups.
//!
//! Paths come from `params.target` and `params.extra` (`from`, `to`,
//! `original`, `link`); `extra.cat` names a program to run on the link
//! afterwards (commands run on the host and follow links).

use std::path::Path;

use rewind_sdk::Command;

use crate::Params;

fn extra<'a>(params: &'a Params, key: &str) -> Result<&'a str, String> {
    params
        .extra
        .get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("extra.{key} is missing"))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Run `extra.cat` (if given) on `path` and return what it printed.
fn follow_up(params: &Params, path: &str, done: &str) -> Result<String, String> {
    match params.extra.get("cat").and_then(|v| v.as_str()) {
        Some(cat) => Command::new(cat)
            .arg(path)
            .run()
            .map(|out| format!("{done}; cat: {}", out.stdout_text()))
            .map_err(|e| format!("{done}, but cat failed: {}", e.message())),
        None => Ok(done.to_string()),
    }
}

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let target = params.target.as_str();
    Some(match params.attack.as_str() {
        // A symbolic link (then, optionally, a command that follows it).
        "symlink" => (|| {
            let original = extra(params, "original")?;
            let link = extra(params, "link")?;
            rewind_sdk::fs::symlink(Path::new(original), Path::new(link)).map_err(err)?;
            follow_up(params, link, "linked")
        })(),
        // Move something (a relative link to another depth, say).
        "rename" => (|| {
            let from = extra(params, "from")?;
            let to = extra(params, "to")?;
            std::fs::rename(from, to).map_err(err)?;
            follow_up(params, to, "renamed")
        })(),
        "hard-link" => (|| {
            let from = extra(params, "from")?;
            let to = extra(params, "to")?;
            std::fs::hard_link(from, to).map_err(err)?;
            std::fs::write(to, "pwned").map_err(|e| format!("linked, not written: {e}"))?;
            Ok("linked and written".to_string())
        })(),
        "mkdir" => std::fs::create_dir(target)
            .map(|()| "created".into())
            .map_err(err),
        "unlink" => std::fs::remove_file(target)
            .map(|()| "removed".into())
            .map_err(err),
        "rmdir" => std::fs::remove_dir(target)
            .map(|()| "removed".into())
            .map_err(err),
        // Open read-only, then change the times through the descriptor.
        "set-times" => (|| {
            let file = std::fs::File::open(target).map_err(err)?;
            let epoch = std::time::SystemTime::UNIX_EPOCH;
            file.set_times(std::fs::FileTimes::new().set_modified(epoch))
                .map_err(err)?;
            Ok("times set".to_string())
        })(),
        // Append to an existing file without truncating it.
        "append" => (|| {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(target)
                .map_err(err)?;
            file.write_all(b"pwned").map_err(err)?;
            Ok("appended".to_string())
        })(),
        "stat" => std::fs::metadata(target)
            .map(|m| {
                format!(
                    "dir={} len={} modified={:?}",
                    m.is_dir(),
                    m.len(),
                    m.modified().ok()
                )
            })
            .map_err(err),
        "readlink" => std::fs::read_link(target)
            .map(|p| p.display().to_string())
            .map_err(err),
        // A name lookup (DNS carries data out even without a connection).
        "lookup" => {
            use std::net::ToSocketAddrs as _;
            (target, 25)
                .to_socket_addrs()
                .map(|addrs| {
                    addrs
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .map_err(err)
        }
        _ => return None,
    })
}
