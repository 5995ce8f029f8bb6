//! Files: `grants.paths` and the one path check.
//!
//! Paths are normalised once, lexically (`.` and `..` resolved without
//! touching the filesystem), and the **most specific** grant that contains a
//! path decides: with `/srv/app` read-write and `ro:/srv/app/protected`,
//! everything under `protected` is read-only however it is spelled. Callers
//! that act on the filesystem resolve the path beneath the deciding grant by
//! descriptor and check the resolved path again (see `sandbox::resolve`).
//!
//! A refusal never looks at the filesystem: its hint is built from the path
//! as written, so it cannot tell a plugin whether a path outside its grants
//! exists.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::{Denial, Grants, Kind, grant_line};

/// What a grant allows under its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read and list only.
    ReadOnly,
    /// Also create, write, rename and delete.
    ReadWrite,
}

/// A granted directory, preopened at the same path in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathGrant {
    /// The granted path, normalised and absolute.
    pub path: PathBuf,
    /// False for an `ro:` grant.
    pub writable: bool,
}

impl PathGrant {
    /// Parse "/srv/app" (read-write) or "ro:/etc/app" (read-only).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (writable, raw) = match text.strip_prefix("ro:") {
            Some(rest) => (false, rest),
            None => (true, text.strip_prefix("rw:").unwrap_or(text)),
        };
        let path = Path::new(raw);
        if !path.is_absolute() {
            return Err(format!(
                "path grant `{text}` must be absolute (e.g. \"/srv/app\" or \"ro:/etc/app\")"
            ));
        }
        Ok(PathGrant {
            path: normalize(path),
            writable,
        })
    }

    /// What this grant allows beneath its path.
    pub fn access(&self) -> Access {
        if self.writable {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        }
    }
}

/// Resolve `.` and `..` lexically, without touching the filesystem. `..` at
/// the root stays at the root, as the kernel does.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl Grants {
    /// The most specific grant whose directory contains `path` (which is
    /// normalised first). Two grants of the same directory: the read-only
    /// one wins.
    pub fn grant_for(&self, path: &Path) -> Option<&PathGrant> {
        let path = normalize(path);
        self.paths
            .iter()
            .filter(|g| path.starts_with(&g.path))
            .max_by_key(|g| (g.path.components().count(), !g.writable))
    }

    /// What the plugin may do at `path`: decided by the most specific grant.
    pub fn access(&self, path: &Path) -> Option<Access> {
        self.grant_for(path).map(PathGrant::access)
    }

    /// The grants that are read-only and lie strictly inside a read-write
    /// grant: the tree of such a grant is writable except below them.
    pub fn nested_read_only(&self) -> impl Iterator<Item = &PathGrant> {
        self.paths.iter().filter(|ro| {
            !ro.writable
                && self
                    .paths
                    .iter()
                    .any(|rw| rw.writable && ro.path != rw.path && ro.path.starts_with(&rw.path))
        })
    }

    /// May the plugin read (or, when `write`, change) `path`? The hint names
    /// the path's directory as written.
    pub fn check_path(&self, path: &Path, write: bool) -> Result<(), Denial> {
        let path = normalize(path);
        let needed = if write {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        if self.access(&path).is_some_and(|a| a >= needed) {
            return Ok(());
        }
        // The directory as written; never the root, which would grant
        // everything.
        let dir = match path.parent() {
            Some(parent) if parent.parent().is_some() => parent,
            _ => &path,
        };
        Err(path_denial(&path, dir, write))
    }

    /// May a command start in `dir`? Any grant containing it will do (a
    /// read-only one keeps the command from writing there).
    pub fn check_dir(&self, dir: &Path) -> Result<(), Denial> {
        let dir = normalize(dir);
        if self.access(&dir).is_some() {
            return Ok(());
        }
        Err(Denial::new(
            Kind::Path,
            format!("working directory {}", dir.display()),
            grant_line("paths", &format!("ro:{}", dir.display())),
        ))
    }
}

impl Grants {
    /// The first path grant that contains `dir`, compared lexically and by
    /// real path (either side may be reached through a symlink).
    pub fn grant_containing(&self, dir: &Path) -> Option<&PathGrant> {
        let wanted = forms(dir);
        self.paths.iter().find(|grant| {
            let granted = forms(&grant.path);
            wanted
                .iter()
                .any(|w| granted.iter().any(|g| w.starts_with(g)))
        })
    }
}

/// A directory that only the host may touch, which no grant may contain.
#[derive(Debug, Clone)]
pub struct HostPrivate {
    /// The private path, absolute.
    pub path: PathBuf,
    /// "the store", "the compile cache".
    pub what: &'static str,
    /// What a plugin granted it could do, and how to avoid it.
    pub why: &'static str,
}

/// The directories no grant may contain: the store (every instance's
/// dumps, and the backups a rollback needs) and the compile cache (native
/// code run outside the sandbox).
pub fn host_private(store: &Path, compile_cache: Option<&Path>) -> Vec<HostPrivate> {
    // The cache first: what it allows (native code) is the worse.
    let mut dirs = Vec::new();
    if let Some(cache) = compile_cache {
        dirs.push(HostPrivate {
            path: cache.to_path_buf(),
            what: "the compile cache",
            why: "compiled plugins, run as native code outside the sandbox: this plugin could \
                  read or replace another plugin's code; grant a narrower directory, or set \
                  REWIND_CACHE_DIR to a directory outside every grant",
        });
    }
    dirs.push(HostPrivate {
        path: store.to_path_buf(),
        what: "the store",
        why: "every instance's backups, database dumps included: this plugin could read them \
              or delete the backups a rollback needs; grant a narrower directory, or move the \
              store outside every grant (store.url)",
    });
    dirs
}

/// A path lexically normalised, and its real path (of the longest existing
/// prefix, with the rest appended).
fn forms(path: &Path) -> Vec<PathBuf> {
    let lexical = normalize(path);
    let mut out = vec![lexical.clone()];
    let mut rest = Vec::new();
    let mut existing = lexical.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut real = real;
            for part in rest.iter().rev() {
                real.push(part);
            }
            if real != lexical {
                out.push(real);
            }
            break;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    out
}

fn path_denial(path: &Path, dir: &Path, write: bool) -> Denial {
    let (verb, prefix) = if write {
        ("write", "")
    } else {
        ("read", "ro:")
    };
    Denial::new(
        Kind::Path,
        format!("{verb} {}", path.display()),
        grant_line("paths", &format!("{prefix}{}", dir.display())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[&str]) -> Grants {
        Grants {
            paths: list.iter().map(|p| PathGrant::parse(p).unwrap()).collect(),
            ..Grants::default()
        }
    }

    #[test]
    fn parse_and_normalize() {
        let g = PathGrant::parse("ro:/etc/app/../app2/").unwrap();
        assert_eq!(g.path, PathBuf::from("/etc/app2"));
        assert!(!g.writable);
        assert!(PathGrant::parse("relative").is_err());
        assert_eq!(normalize(Path::new("/../../etc")), PathBuf::from("/etc"));
        let g = grants(&["/srv/app"]);
        assert!(g.check_dir(Path::new("/srv/app/releases")).is_ok());
        assert!(g.check_dir(Path::new("/srv/application")).is_err());
    }

    #[test]
    fn the_most_specific_grant_decides_however_the_path_is_spelled() {
        let g = grants(&["/srv/app", "ro:/srv/app/protected"]);
        for spelled in [
            "/srv/app/protected/x",
            "/srv/app/./protected/x",
            "/srv/app/sub/../protected/x",
            "/srv/app//protected/./x",
            "/srv/app/protected",
        ] {
            assert!(g.check_path(Path::new(spelled), true).is_err(), "{spelled}");
            assert!(g.check_path(Path::new(spelled), false).is_ok(), "{spelled}");
        }
        assert!(g.check_path(Path::new("/srv/app/other/x"), true).is_ok());
        assert!(g.check_path(Path::new("/srv/app/protectedx"), true).is_ok());
        assert_eq!(g.nested_read_only().count(), 1);
        // The same directory granted twice: read-only wins.
        let g = grants(&["/srv/app", "ro:/srv/app"]);
        assert!(g.check_path(Path::new("/srv/app/x"), true).is_err());
    }

    #[test]
    fn a_refusal_does_not_reveal_whether_the_path_exists() {
        let g = grants(&["/srv/app"]);
        // `/etc` exists and `/nonexistent-dir` does not: the same shape of hint.
        let a = g.check_path(Path::new("/etc"), false).unwrap_err();
        let b = g
            .check_path(Path::new("/nonexistent-dir"), false)
            .unwrap_err();
        assert_eq!(a.grant, r#"grants.paths = ["ro:/etc"]"#);
        assert_eq!(b.grant, r#"grants.paths = ["ro:/nonexistent-dir"]"#);
        let d = g.check_path(Path::new("/etc/shadow"), true).unwrap_err();
        assert_eq!(d.grant, r#"grants.paths = ["/etc"]"#);
        assert_eq!(d.attempted, "write /etc/shadow");
    }

    #[test]
    fn a_directory_inside_a_grant_is_found_lexically_and_through_links() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("data")).unwrap();
        std::os::unix::fs::symlink(real.join("data"), real.join("app")).unwrap();
        let grants = |p: &Path| Grants {
            paths: vec![PathGrant::parse(&format!("ro:{}", p.display())).unwrap()],
            ..Grants::default()
        };
        // Lexically.
        let g = grants(&real.join("data"));
        assert!(
            g.grant_containing(&real.join("data/./x/../cache"))
                .is_some()
        );
        // The grant is a symlink to the cache's parent.
        assert!(
            grants(&real.join("app"))
                .grant_containing(&real.join("data/cache"))
                .is_some()
        );
        // The cache is named through the symlink.
        assert!(g.grant_containing(&real.join("app/cache")).is_some());
        assert!(g.grant_containing(&real.join("other/cache")).is_none());
        assert!(g.grant_containing(&real.join("database")).is_none());
    }
}
