//! Grant combinations that amount to running arbitrary code, which
//! `rewind check` reports.
//!
//! Each grant is checked on its own, but some combinations hand the plugin
//! the host: a plugin that may write a file and may run an interpreter on
//! an argument of its choice runs whatever it wrote. The `process` import
//! refuses the direct forms (a program inside a read-write grant, a program
//! the plugin could replace; see `sandbox::process`), but it cannot know
//! what an interpreter will do with its arguments, so these are warnings for
//! the operator, who can narrow the exec pattern or the path grant.
//!
//! The rules:
//!
//! 1. An [interpreter](INTERPRETERS) (a shell, a scripting language, or a
//!    program that runs other programs: `env`, `xargs`, `find -exec`,
//!    `git -c core.pager=…`, …) with a wildcard argument (`*`, `**`, a
//!    glob), while the instance has any read-write path grant.
//! 2. An exec pattern whose program is an absolute path inside a read-write
//!    grant (the import refuses to run it; the grant is a mistake).
//! 3. A read-write grant that contains a directory of [`COMMAND_PATH`]
//!    (bare program names would resolve to files the plugin writes).

use std::path::Path;

use super::{Access, Grants};

/// The `PATH` every command gets, and the only directories a bare program
/// name in an exec grant is looked up in. Never the host's `PATH`: a
/// host whose `PATH` names a directory a plugin can write would let the
/// plugin choose what `pg_dump` means.
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Programs that run code they are given (in arguments, or in files their
/// arguments name). A program matches by its file name; names ending in
/// `*` here match any suffix (`python3.12`, `php8.3`, `lua5.4`).
pub const INTERPRETERS: &[&str] = &[
    // Shells.
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "ash",
    "csh",
    "tcsh",
    "fish",
    "busybox",
    // Scripting languages.
    "python*",
    "php*",
    "perl*",
    "ruby*",
    "node",
    "nodejs",
    "deno",
    "bun",
    "lua*",
    "luajit",
    "tclsh*",
    "wish*",
    "Rscript",
    "java",
    "jshell",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "sed",
    // Programs that run other programs or configurable hooks.
    "env",
    "xargs",
    "find",
    "nice",
    "nohup",
    "timeout",
    "time",
    "stdbuf",
    "setsid",
    "sudo",
    "su",
    "doas",
    "runuser",
    "chroot",
    "unshare",
    "nsenter",
    "strace",
    "ltrace",
    "gdb",
    "watch",
    "flock",
    "git",
    "make",
    "tar",
    "rsync",
    "ssh",
    "scp",
    "vim",
    "vi",
    "ex",
    "ed",
    "less",
    "man",
    "npm",
    "npx",
    "pip",
    "pip3",
    "composer",
    "bundle",
    "cargo",
    "docker",
    "podman",
    "systemd-run",
];

/// Whether `program` (a bare name or a path) is one of [`INTERPRETERS`].
pub fn is_interpreter(program: &str) -> bool {
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    INTERPRETERS
        .iter()
        .any(|entry| match entry.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *entry,
        })
}

/// The grant combinations in `grants` that let a plugin run code of its
/// choosing, one sentence each (empty when there are none).
pub fn code_execution_risks(grants: &Grants) -> Vec<String> {
    let mut risks = Vec::new();
    let writable: Vec<&Path> = grants
        .paths
        .iter()
        .filter(|g| g.writable)
        .map(|g| g.path.as_path())
        .collect();

    for pattern in &grants.exec {
        if is_interpreter(&pattern.program) && pattern.has_wildcards() && !writable.is_empty() {
            risks.push(format!(
                "grants.exec `{pattern}` lets the plugin choose the arguments of `{}`, which runs \
                 code, and grants.paths lets it write files ({}): together they run any code the \
                 plugin writes; replace the wildcards with the exact arguments, or drop the \
                 read-write grant",
                pattern.program,
                list(&writable)
            ));
        }
        let program = Path::new(&pattern.program);
        if program.is_absolute()
            && let Some(grant) = grants
                .grant_for(program)
                .filter(|g| g.access() == Access::ReadWrite)
        {
            risks.push(format!(
                "grants.exec `{pattern}` names a program inside the read-write grant {}: the \
                 plugin could replace it (rewind refuses to run it); install it outside every \
                 read-write grant",
                grant.path.display()
            ));
        }
    }

    for dir in COMMAND_PATH.split(':') {
        if let Some(grant) = grants
            .grant_for(Path::new(dir))
            .filter(|g| g.access() == Access::ReadWrite)
        {
            risks.push(format!(
                "grants.paths makes {} writable, and it contains {dir}, a directory of the \
                 command PATH ({COMMAND_PATH}): the plugin could put a program there that a bare \
                 name resolves to (rewind refuses to run it); grant a narrower directory",
                grant.path.display()
            ));
        }
    }
    risks
}

fn list(paths: &[&Path]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecPattern, PathGrant};

    fn grants(exec: &[&str], paths: &[&str]) -> Grants {
        Grants {
            exec: exec
                .iter()
                .map(|p| ExecPattern::parse(p).unwrap())
                .collect(),
            paths: paths.iter().map(|p| PathGrant::parse(p).unwrap()).collect(),
            ..Grants::default()
        }
    }

    #[test]
    fn an_interpreter_with_wildcards_and_a_writable_grant_is_a_risk() {
        let risks = code_execution_risks(&grants(&["php **"], &["/srv/app"]));
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert!(risks[0].contains("`php **`"), "{}", risks[0]);
        assert!(risks[0].contains("/srv/app"), "{}", risks[0]);
        for pattern in [
            "python3.12 *",
            "/usr/bin/perl -e *",
            "sh -c *",
            "env **",
            "find . -name *.log",
            "git -c * status",
            "awk *",
        ] {
            let risks = code_execution_risks(&grants(&[pattern], &["/srv/app"]));
            assert_eq!(risks.len(), 1, "{pattern}: {risks:?}");
        }
    }

    #[test]
    fn no_risk_without_wildcards_or_without_a_writable_grant() {
        // Exact arguments: the operator chose what runs.
        assert!(code_execution_risks(&grants(&["php artisan migrate"], &["/srv/app"])).is_empty());
        // Nothing writable: the plugin cannot plant code.
        assert!(code_execution_risks(&grants(&["php **"], &["ro:/srv/app"])).is_empty());
        // Not an interpreter.
        assert!(code_execution_risks(&grants(&["pg_dump **", "ls *"], &["/srv/app"])).is_empty());
        assert!(!is_interpreter("shred"));
        assert!(is_interpreter("/usr/bin/python3"));
        assert!(is_interpreter("php8.3"));
    }

    #[test]
    fn a_program_inside_a_writable_grant_is_a_risk() {
        let risks = code_execution_risks(&grants(&["/srv/app/bin/migrate"], &["/srv/app"]));
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert!(
            risks[0].contains("read-write grant /srv/app"),
            "{}",
            risks[0]
        );
        // Under a nested read-only grant it is not writable.
        let risks = code_execution_risks(&grants(
            &["/srv/app/bin/migrate"],
            &["/srv/app", "ro:/srv/app/bin"],
        ));
        assert!(risks.is_empty(), "{risks:?}");
    }

    #[test]
    fn a_writable_grant_holding_a_path_directory_is_a_risk() {
        let risks = code_execution_risks(&grants(&[], &["/usr/local"]));
        assert_eq!(risks.len(), 2, "{risks:?}"); // /usr/local/sbin and /usr/local/bin
        assert!(risks[0].contains("/usr/local/sbin"), "{}", risks[0]);
        assert!(code_execution_risks(&grants(&[], &["ro:/usr"])).is_empty());
        assert!(code_execution_risks(&grants(&[], &["/usr/local/share"])).is_empty());
    }
}
