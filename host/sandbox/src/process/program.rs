//! Which file a command runs.
//!
//! A bare program name is looked up in [`COMMAND_PATH`] only (never the
//! host's `PATH`); an absolute one is taken as written. Either way the file
//! is then canonicalized and refused when a plugin could have written or
//! replaced it: when the path as found or as canonicalized lies inside a
//! read-write grant, or when the file or any directory above it is
//! writable by every user without the sticky bit. The command then runs
//! the *canonical* path, whose every directory was just found not to be
//! writable by the plugin, so nothing can be swapped between the check and
//! `execve`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rewind_grants::risks::COMMAND_PATH;
use rewind_grants::{Denial, Grants, Kind};

/// Why a program cannot run.
#[derive(Debug)]
pub(super) enum ProgramError {
    /// A relative path with a `/`.
    Invalid(String),
    /// Not found, or not an executable file.
    Missing(String),
    /// A file the plugin could write or replace.
    Refused(Denial),
}

/// Find `program` and check that no plugin can write it; returns the
/// canonical path to execute.
pub(super) fn resolve_program(grants: &Grants, program: &str) -> Result<PathBuf, ProgramError> {
    let found = if program.contains('/') {
        let path = Path::new(program);
        if !path.is_absolute() {
            return Err(ProgramError::Invalid(format!(
                "program `{program}` must be a bare name (looked up in {COMMAND_PATH}) or an \
                 absolute path"
            )));
        }
        path.to_path_buf()
    } else {
        COMMAND_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| {
                ProgramError::Missing(format!(
                    "program `{program}` was not found in {COMMAND_PATH} (commands never use the \
                     host's PATH; grant an absolute path to run a program installed elsewhere)"
                ))
            })?
    };
    let lexical = rewind_grants::normalize(&found);
    let canonical = found
        .canonicalize()
        .map_err(|err| ProgramError::Missing(format!("program {}: {err}", found.display())))?;
    if !is_executable(&canonical) {
        return Err(ProgramError::Missing(format!(
            "program {} is not an executable file",
            canonical.display()
        )));
    }
    let refuse = |reason: String| ProgramError::Refused(Denial::new(Kind::Never, program, reason));
    let shown = |path: &Path| {
        if path == lexical {
            format!("program {}", lexical.display())
        } else {
            format!(
                "program {} (which is {})",
                lexical.display(),
                path.display()
            )
        }
    };
    for path in [&lexical, &canonical] {
        if let Some(grant) = grants.grant_for(path).filter(|g| g.writable) {
            return Err(refuse(format!(
                "{} lies inside the read-write grant {}: a plugin could replace it; install it \
                 outside every read-write grant",
                shown(path),
                grant.path.display()
            )));
        }
    }
    let mode = |path: &Path| path.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
    if mode(&canonical) & 0o002 != 0 {
        return Err(refuse(format!(
            "{} is writable by every user: anyone could replace its contents; remove that \
             permission (chmod o-w)",
            shown(&canonical)
        )));
    }
    for dir in canonical.ancestors().skip(1) {
        let m = mode(dir);
        if m & 0o002 != 0 && m & 0o1000 == 0 {
            return Err(refuse(format!(
                "{} lies in {}, a directory every user can write (and not sticky): anyone could \
                 replace it; install it in a directory only its owner can write",
                shown(&canonical),
                dir.display()
            )));
        }
    }
    Ok(canonical)
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_grants::PathGrant;

    fn grants(paths: &[&Path]) -> Grants {
        Grants {
            paths: paths
                .iter()
                .map(|p| PathGrant::parse(&p.display().to_string()).unwrap())
                .collect(),
            ..Grants::default()
        }
    }

    fn executable(path: &Path) {
        std::fs::write(path, "#!/bin/sh\necho pwned\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn bare_names_come_from_the_fixed_path() {
        let path = resolve_program(&Grants::default(), "sh").unwrap();
        assert!(path.is_absolute());
        assert!(matches!(
            resolve_program(&Grants::default(), "no-such-program-rewind"),
            Err(ProgramError::Missing(m)) if m.contains(COMMAND_PATH)
        ));
        assert!(matches!(
            resolve_program(&Grants::default(), "bin/sh"),
            Err(ProgramError::Invalid(_))
        ));
    }

    #[test]
    fn a_program_in_a_writable_grant_or_behind_a_link_into_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().canonicalize().unwrap().join("app");
        std::fs::create_dir_all(&app).unwrap();
        executable(&app.join("x"));
        let g = grants(&[&app]);
        let Err(ProgramError::Refused(d)) = resolve_program(&g, &app.join("x").to_string_lossy())
        else {
            panic!("not refused")
        };
        assert_eq!(d.kind, Kind::Never);
        assert!(
            d.grant
                .contains(&format!("inside the read-write grant {}", app.display())),
            "{}",
            d.grant
        );
        // A link outside the grant that leads into it.
        let outside = dir.path().canonicalize().unwrap().join("bin");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(app.join("x"), outside.join("x")).unwrap();
        let Err(ProgramError::Refused(d)) =
            resolve_program(&g, &outside.join("x").to_string_lossy())
        else {
            panic!("not refused")
        };
        assert!(d.grant.contains("which is"), "{}", d.grant);
        // With no grant over it, the program runs (by its canonical path).
        let ok = resolve_program(&Grants::default(), &outside.join("x").to_string_lossy()).unwrap();
        assert_eq!(ok, app.join("x"));
    }

    #[test]
    fn a_program_in_a_world_writable_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir_all(&open).unwrap();
        executable(&open.join("x"));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let Err(ProgramError::Refused(d)) =
            resolve_program(&Grants::default(), &open.join("x").to_string_lossy())
        else {
            panic!("not refused")
        };
        assert!(d.grant.contains("every user can write"), "{}", d.grant);
        // Sticky (like /tmp): others cannot replace the owner's file.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(resolve_program(&Grants::default(), &open.join("x").to_string_lossy()).is_ok());
        // The file itself writable by all.
        std::fs::set_permissions(open.join("x"), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            resolve_program(&Grants::default(), &open.join("x").to_string_lossy()),
            Err(ProgramError::Refused(_))
        ));
    }
}
