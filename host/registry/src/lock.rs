//! `rewind.lock`: every plugin that comes from a registry, pinned to the
//! digests `rewind plugins lock` resolved.
//!
//! The shape follows `wkg.lock` (name, the reference asked for, the
//! resolved version, the digest), flattened to one entry per reference:
//!
//! ```toml
//! version = 1
//!
//! [[plugins]]
//! name = "platform/postgres"
//! reference = "oci://registry.example:5000/platform/postgres:1.2.0"
//! version = "1.2.0"
//! digest = "sha256:…"   # the OCI manifest
//! wasm = "sha256:…"     # its one application/wasm layer: the component
//! ```
//!
//! Only `rewind plugins lock` writes it and only it resolves tags; every
//! other command reads it and pulls by digest.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock format this rewind reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// One resolved plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlugin {
    /// The repository (`platform/postgres`).
    pub name: String,
    /// The source as written in the config (`oci://…:1.2.0`).
    pub reference: String,
    /// The version it resolved to: the tag, or the digest asked for.
    pub version: String,
    /// The manifest's digest (`sha256:…`): what is pulled.
    pub digest: String,
    /// The component's digest (`sha256:…`), the manifest's one layer: what
    /// the sandbox pin-checks before compiling.
    pub wasm: String,
}

/// `rewind.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// [`LOCK_VERSION`].
    pub version: u32,
    /// Resolved plugins, in reference order.
    #[serde(default)]
    pub plugins: Vec<LockedPlugin>,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            version: LOCK_VERSION,
            plugins: Vec::new(),
        }
    }
}

/// Why a lock file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockFileError {
    /// Reading or writing it failed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// "read", "write".
        what: &'static str,
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a lock file this rewind understands.
    #[error(
        "{} is not a valid rewind.lock: {message} (it is written by `rewind plugins lock`; \
         run that again rather than editing it)",
        path.display()
    )]
    Invalid {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

const HEADER: &str = "# rewind.lock: written by `rewind plugins lock`, which resolves every oci://\n\
# plugin source to digests. Every other command uses these digests and never\n\
# resolves a tag: a tag moved on the registry changes nothing until the next\n\
# `rewind plugins lock`. Commit this file beside rewind.toml.\n";

impl LockFile {
    /// The lock file of a config file: `rewind.toml` → `rewind.lock`, beside it.
    pub fn path_for(config: &Path) -> PathBuf {
        config.with_extension("lock")
    }

    /// Read a lock file; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<LockFile>, LockFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockFileError::Io {
                    what: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let invalid = |message: String| LockFileError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let lock: LockFile = toml::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        if lock.version != LOCK_VERSION {
            return Err(invalid(format!(
                "its version is {}, this rewind reads version {LOCK_VERSION}",
                lock.version
            )));
        }
        // Its digests name files (the plugin cache's `sha256/<hex>.wasm`)
        // and registry paths (`sha256-<hex>.sig`): each must be exactly a
        // digest, as `plugins lock` writes it, never a path.
        for plugin in &lock.plugins {
            for (field, value) in [("digest", &plugin.digest), ("wasm", &plugin.wasm)] {
                let hex = value.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(invalid(format!(
                        "the {field} of {} is {:?}, not sha256: and 64 lowercase hex digits",
                        plugin.reference,
                        value.chars().take(100).collect::<String>()
                    )));
                }
            }
        }
        Ok(Some(lock))
    }

    /// Write it (atomically), entries sorted by reference.
    pub fn write(&self, path: &Path) -> Result<(), LockFileError> {
        let mut sorted = self.clone();
        sorted.plugins.sort_by(|a, b| a.reference.cmp(&b.reference));
        let body = toml::to_string(&sorted).expect("a lock file serializes");
        let text = format!("{HEADER}\n{body}");
        let io = |source| LockFileError::Io {
            what: "write",
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp.1, text.as_bytes()).map_err(io)?;
        tmp.1.sync_all().map_err(io)?;
        // A lock is committed beside rewind.toml: readable like it.
        std::fs::rename(&tmp.0, path).map_err(io)?;
        Ok(())
    }

    /// The entry for a source, as written in the config.
    pub fn get(&self, reference: &str) -> Option<&LockedPlugin> {
        self.plugins.iter().find(|p| p.reference == reference)
    }

    /// What changed from `old` to `self`, by reference.
    pub fn changes_from(&self, old: &LockFile) -> Vec<LockChange> {
        let before: BTreeMap<&str, &LockedPlugin> = old
            .plugins
            .iter()
            .map(|p| (p.reference.as_str(), p))
            .collect();
        let after: BTreeMap<&str, &LockedPlugin> = self
            .plugins
            .iter()
            .map(|p| (p.reference.as_str(), p))
            .collect();
        let mut changes = Vec::new();
        for (reference, new) in &after {
            match before.get(reference) {
                None => changes.push(LockChange::Added((*new).clone())),
                Some(old) if old != new => changes.push(LockChange::Changed {
                    old: (*old).clone(),
                    new: (*new).clone(),
                }),
                Some(_) => changes.push(LockChange::Unchanged((*new).clone())),
            }
        }
        for (reference, old) in &before {
            if !after.contains_key(reference) {
                changes.push(LockChange::Removed((*old).clone()));
            }
        }
        changes
    }
}

/// A temp file in `dir`, mode 0644.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(format!(".rewind.lock.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)?;
    Ok((path, file))
}

/// One line of what `rewind plugins lock` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockChange {
    /// A reference locked for the first time.
    Added(LockedPlugin),
    /// A reference that now resolves to another digest (a moved tag).
    Changed {
        /// What was locked.
        old: LockedPlugin,
        /// What is locked now.
        new: LockedPlugin,
    },
    /// A reference that resolved to what was locked.
    Unchanged(LockedPlugin),
    /// A reference no instance uses any more.
    Removed(LockedPlugin),
}

impl LockChange {
    /// Whether this is a change at all.
    pub fn is_change(&self) -> bool {
        !matches!(self, LockChange::Unchanged(_))
    }
}

fn short(digest: &str) -> &str {
    let hex = crate::reference::digest_hex(digest);
    &hex[..hex.len().min(12)]
}

impl fmt::Display for LockChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockChange::Added(p) => write!(
                f,
                "+ {} locked: manifest sha256:{}, wasm sha256:{}",
                p.reference,
                short(&p.digest),
                short(&p.wasm)
            ),
            LockChange::Changed { old, new } => write!(
                f,
                "~ {} moved: manifest sha256:{} -> sha256:{}, wasm sha256:{} -> sha256:{}",
                new.reference,
                short(&old.digest),
                short(&new.digest),
                short(&old.wasm),
                short(&new.wasm)
            ),
            LockChange::Unchanged(p) => write!(
                f,
                "= {} unchanged: manifest sha256:{}",
                p.reference,
                short(&p.digest)
            ),
            LockChange::Removed(p) => write!(f, "- {} no longer used", p.reference),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reference: &str, digest: char) -> LockedPlugin {
        LockedPlugin {
            name: "platform/postgres".into(),
            reference: reference.into(),
            version: "1.2.0".into(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            wasm: format!("sha256:{}", "c".repeat(64)),
        }
    }

    #[test]
    fn a_lock_whose_digests_are_not_digests_is_refused() {
        let dir = std::env::temp_dir().join(format!("rewind-lock-digests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rewind.lock");
        let good = format!("sha256:{}", "a".repeat(64));
        for (field, bad) in [
            ("wasm", "sha256:../../../../etc/cron.d/x".to_string()),
            ("wasm", format!("sha256:{}/../x", "a".repeat(60))),
            ("digest", format!("sha256:{}", "A".repeat(64))),
            ("digest", "a".repeat(64)),
            ("wasm", String::new()),
        ] {
            let (digest, wasm) = if field == "wasm" {
                (good.clone(), bad.clone())
            } else {
                (bad.clone(), good.clone())
            };
            let text = format!(
                "version = {LOCK_VERSION}\n[[plugins]]\nname = \"p\"\nreference = \"oci://r.example/p:1\"\n\
                 version = \"1\"\ndigest = {digest:?}\nwasm = {wasm:?}\n"
            );
            std::fs::write(&path, text).unwrap();
            let err = LockFile::read(&path).unwrap_err().to_string();
            assert!(
                err.contains(&format!("the {field} of oci://r.example/p:1")),
                "{err}"
            );
            assert!(err.contains("64 lowercase hex digits"), "{err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lock_round_trips_and_shows_what_moved() {
        let dir = std::env::temp_dir().join(format!("rewind-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = LockFile::path_for(&dir.join("rewind.toml"));
        assert_eq!(path, dir.join("rewind.lock"));
        assert_eq!(LockFile::read(&path).unwrap(), None);
        let old = LockFile {
            version: LOCK_VERSION,
            plugins: vec![
                entry("oci://r.example/a:1", 'a'),
                entry("oci://r.example/b:1", 'b'),
            ],
        };
        old.write(&path).unwrap();
        assert_eq!(LockFile::read(&path).unwrap().as_ref(), Some(&old));
        let new = LockFile {
            version: LOCK_VERSION,
            plugins: vec![
                entry("oci://r.example/a:1", 'd'),
                entry("oci://r.example/c:1", 'e'),
            ],
        };
        let changes: Vec<String> = new
            .changes_from(&old)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(
            changes[0].starts_with(
                "~ oci://r.example/a:1 moved: manifest sha256:aaaaaaaaaaaa -> sha256:dddddddddddd"
            ),
            "{changes:?}"
        );
        assert!(
            changes[1].starts_with("+ oci://r.example/c:1"),
            "{changes:?}"
        );
        assert!(
            changes[2].starts_with("- oci://r.example/b:1"),
            "{changes:?}"
        );
        std::fs::write(&path, "version = 7\n").unwrap();
        let err = LockFile::read(&path).unwrap_err();
        assert!(err.to_string().contains("version is 7"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
