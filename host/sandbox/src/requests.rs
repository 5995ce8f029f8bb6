//! A plugin's requests (what its `describe` says it needs) against what
//! an operator granted, for `rewind check` and `plugins inspect`. Here, not
//! in `rewind-grants`, because the requests are a WIT type: grants know
//! nothing of WebAssembly.

use rewind_grants::{Access, ExecPattern, Grants, OriginPattern, grant_line, normalize};

use crate::bindings::rewind::hooks::types::Capabilities;

/// Concrete capabilities a plugin requests that `grants` does not cover,
/// as the grant line that would. Requests written as placeholders
/// (`<origin of params.url>`) depend on params and are skipped: the grants
/// are the boundary, the requests are advice.
pub fn ungranted(requested: &Capabilities, grants: &Grants) -> Vec<String> {
    let concrete = |s: &str| !s.contains('<') && !s.trim().is_empty();
    let mut out = Vec::new();
    for text in requested.exec.iter().filter(|s| concrete(s)) {
        let covered = ExecPattern::parse(text).is_ok_and(|want| {
            grants
                .exec
                .iter()
                .any(|g| g.to_string() == want.to_string())
        });
        if !covered {
            out.push(grant_line("exec", text));
        }
    }
    for request in requested.paths.iter().filter(|p| concrete(&p.path)) {
        let path = normalize(std::path::Path::new(&request.path));
        let wanted = if request.writable {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        if grants.access(&path).is_none_or(|a| a < wanted) {
            let prefix = if request.writable { "" } else { "ro:" };
            out.push(grant_line("paths", &format!("{prefix}{}", path.display())));
        }
    }
    for name in requested.env.iter().filter(|s| concrete(s)) {
        if grants.check_env(name).is_err() {
            out.push(grant_line("env", name));
        }
    }
    for text in requested.http.iter().filter(|s| concrete(s)) {
        let covered = OriginPattern::parse(text).is_ok_and(|want| {
            grants.http.iter().any(|g| {
                g.to_string() == want.to_string()
                    || want
                        .port
                        .is_some_and(|port| g.matches(&want.scheme, &want.host, port))
            })
        });
        if !covered {
            out.push(grant_line("http", text));
        }
    }
    out
}
