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
    // A request names a program and the arguments the plugin may use; the
    // operator may grant narrower arguments or the program at a full path
    // (`/usr/lib/postgresql/15/bin/pg_dump`). Only a program no grant names
    // at all is certain to be denied.
    let program_name = |program: &str| {
        std::path::Path::new(program)
            .file_name()
            .map(|n| n.to_os_string())
    };
    for text in requested.exec.iter().filter(|s| concrete(s)) {
        let covered = ExecPattern::parse(text).is_ok_and(|want| {
            grants.exec.iter().any(|g| {
                g.program == want.program || program_name(&g.program) == program_name(&want.program)
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(exec: &[&str]) -> Grants {
        Grants {
            exec: exec
                .iter()
                .map(|e| ExecPattern::parse(e).unwrap())
                .collect(),
            ..Grants::default()
        }
    }

    #[test]
    fn a_requested_program_is_covered_by_any_grant_of_it_at_any_path() {
        let requested = Capabilities {
            exec: vec!["pg_dump **".into(), "pg_restore **".into()],
            paths: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
        };
        // The operator's narrower arguments and full paths are their choice.
        let covered = grants(&[
            "/usr/lib/postgresql/15/bin/pg_dump -Fc *",
            "pg_restore --list *",
        ]);
        assert!(ungranted(&requested, &covered).is_empty());
        // A program no grant names is certain to be denied.
        let missing = ungranted(&requested, &grants(&["pg_dump **"]));
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("pg_restore **"), "{missing:?}");
    }
}
