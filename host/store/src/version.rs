//! The store's format version, `<root>/VERSION`, and the errors for a store
//! or manifest this rewind cannot read.
//!
//! `VERSION` holds the store format as a decimal number and a newline
//! (`2\n`). It is written atomically when a store is created, and when a
//! store written by a rewind from before the file existed (one with
//! `runs/`, `blobs/` or `HEAD` but no `VERSION`) is first opened: such a
//! store is format 1. A format 1 store is upgraded to 2 when first opened
//! (format 2 only adds chunked artifacts, and every format 1 file reads
//! the same in format 2). Every open reads it and refuses any other
//! number.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::backend::Backend;
use super::runs::MANIFEST_FORMAT;

/// The store format this rewind reads and writes. 2: artifacts may be
/// chunked (an index blob naming chunk blobs); a rewind that reads format
/// 1 would take an index for the artifact's content, so it must refuse.
pub const STORE_FORMAT: u32 = 2;

/// Earlier formats this rewind reads, and upgrades to [`STORE_FORMAT`] by
/// rewriting `VERSION` when it first opens them: format 2 is format 1 plus
/// chunked artifacts, so no other file changes.
const UPGRADED: [u32; 1] = [1];

/// The name of the version file in the store's root.
pub const VERSION_FILE: &str = "VERSION";

/// What a store written by an earlier rewind has, one of which marks a
/// directory as a store rather than a new one.
const STORE_ENTRIES: [&str; 3] = ["runs", "blobs", "HEAD"];

/// A store, or a file in it, in a format this rewind does not read.
///
/// Carried inside the `io::Error` (kind `InvalidData`) that opening or
/// reading returns; `FormatError::of` finds it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `VERSION` names a store format other than [`STORE_FORMAT`].
    Store {
        /// The `VERSION` file.
        path: PathBuf,
        /// The format it names.
        found: u32,
    },
    /// `VERSION` does not hold a format number.
    Unreadable {
        /// The `VERSION` file.
        path: PathBuf,
        /// What it holds instead.
        content: String,
    },
    /// A manifest or journal names a `format` other than [`MANIFEST_FORMAT`].
    Manifest {
        /// The manifest or journal file.
        path: PathBuf,
        /// The format it names.
        found: String,
    },
}

impl FormatError {
    /// The format error inside an `io::Error`, if that is what it is.
    pub fn of(err: &io::Error) -> Option<&FormatError> {
        err.get_ref()?.downcast_ref()
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Store { path, found } if *found > STORE_FORMAT => write!(
                f,
                "this store was written by a newer rewind (store format {found}, in {}); \
                 this rewind ({}) reads store format {STORE_FORMAT}: upgrade rewind",
                path.display(),
                env!("CARGO_PKG_VERSION"),
            ),
            FormatError::Store { path, found } => write!(
                f,
                "{} says store format {found}, which no rewind writes; \
                 this rewind reads store format {STORE_FORMAT} (its VERSION holds `{STORE_FORMAT}`)",
                path.display(),
            ),
            FormatError::Unreadable { path, content } => write!(
                f,
                "{} holds `{content}`, not a store format number; \
                 this rewind reads store format {STORE_FORMAT} (its VERSION holds `{STORE_FORMAT}`)",
                path.display(),
            ),
            FormatError::Manifest { path, found } => {
                write!(
                    f,
                    "{} has manifest format {found}; this rewind ({}) reads format \"{MANIFEST_FORMAT}\"",
                    path.display(),
                    env!("CARGO_PKG_VERSION"),
                )?;
                if manifest_format_number(found).is_some_and(|n| n > manifest_format_number_ours())
                {
                    write!(f, ": it was written by a newer rewind, upgrade rewind")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FormatError {}

/// `N` of a JSON string `"rewind.run/N"`.
fn manifest_format_number(json: &str) -> Option<u32> {
    json.strip_prefix("\"rewind.run/")?
        .strip_suffix('"')?
        .parse()
        .ok()
}

fn manifest_format_number_ours() -> u32 {
    MANIFEST_FORMAT
        .strip_prefix("rewind.run/")
        .and_then(|n| n.parse().ok())
        .expect("MANIFEST_FORMAT is rewind.run/<number>")
}

/// The bytes of the version file this rewind writes.
pub(crate) fn version_bytes() -> Vec<u8> {
    format!("{STORE_FORMAT}\n").into_bytes()
}

/// Read the store format from `VERSION`'s bytes: ASCII digits, leading
/// and trailing ASCII whitespace ignored.
fn parse_version(path: &Path, bytes: &[u8]) -> Result<u32, FormatError> {
    let unreadable = || FormatError::Unreadable {
        path: path.to_path_buf(),
        content: String::from_utf8_lossy(bytes.trim_ascii())
            .chars()
            .take(40)
            .flat_map(char::escape_default)
            .collect(),
    };
    let text = std::str::from_utf8(bytes.trim_ascii()).map_err(|_| unreadable())?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unreadable());
    }
    text.parse().map_err(|_| unreadable())
}

/// Check the version of the store (which exists), writing `VERSION` if it
/// has none: a new store, or one written before the file existed (adopted
/// as format 1).
pub(crate) fn check_or_write(store: &dyn Backend) -> io::Result<()> {
    let path = store.display(VERSION_FILE);
    match store.read(VERSION_FILE) {
        Ok(Some(bytes)) => {
            let found = parse_version(&path, &bytes).map_err(FormatError::into_io)?;
            if found == STORE_FORMAT {
                Ok(())
            } else if UPGRADED.contains(&found) {
                write_version(store, &path, true)
            } else {
                Err(FormatError::Store { path, found }.into_io())
            }
        }
        Ok(None) => {
            let mut adopted = false;
            for name in STORE_ENTRIES {
                adopted |= store.has_entry(name)?;
            }
            // A fleet store's root is not a store: a host opening it as
            // one would put its runs where no host of the fleet looks.
            if !adopted && store.has_entry(crate::HOSTS_DIR)? {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is the root of a fleet store (each host's store is under {}/<host>/); \
                         set store.fleet = true (and store.host, or REWIND_HOST) to use this \
                         host's store in it",
                        store.root().display(),
                        crate::HOSTS_DIR
                    ),
                ));
            }
            write_version(store, &path, adopted)
        }
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("cannot read {}: {err}", path.display()),
        )),
    }
}

/// Write `VERSION` for a new store, or for an `earlier` one (adopted or
/// upgraded).
fn write_version(store: &dyn Backend, path: &Path, earlier: bool) -> io::Result<()> {
    match store.write_atomic(VERSION_FILE, &version_bytes()) {
        Ok(()) => Ok(()),
        // An earlier rewind's store that this process may read but not
        // write (a read-only mount): it reads the same all the same, and
        // the next rewind that can write it records the format.
        Err(err)
            if earlier
                && matches!(
                    err.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                ) =>
        {
            Ok(())
        }
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("cannot write {}: {err}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use std::fs;

    fn version(root: &Path) -> String {
        fs::read_to_string(root.join(VERSION_FILE)).unwrap()
    }

    #[test]
    fn a_new_store_gets_a_version_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        Store::open(&root).unwrap();
        assert_eq!(version(&root), format!("{STORE_FORMAT}\n"));
        assert_eq!(version(&root), "2\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(root.join(VERSION_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temp file of the atomic write is left behind.
        let names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        // Opening again reads it and changes nothing.
        Store::open(&root).unwrap();
        assert_eq!(version(&root), "2\n");
    }

    #[test]
    fn an_empty_existing_directory_becomes_a_store() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        assert_eq!(version(dir.path()), "2\n");
    }

    #[test]
    fn a_format_1_store_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(VERSION_FILE), "1\n").unwrap();
        Store::open(dir.path()).unwrap();
        assert_eq!(version(dir.path()), "2\n");
    }

    #[test]
    fn a_store_from_before_the_version_file_is_adopted_and_upgraded() {
        for entry in STORE_ENTRIES {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            if entry == "HEAD" {
                fs::write(root.join(entry), "{}").unwrap();
            } else {
                fs::create_dir(root.join(entry)).unwrap();
            }
            Store::open(root).unwrap();
            assert_eq!(version(root), "2\n", "a store with {entry}");
        }
    }

    #[test]
    fn a_newer_store_is_refused_naming_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(VERSION_FILE), "3\n").unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            FormatError::of(&err),
            Some(FormatError::Store { found: 3, .. })
        ));
        let message = err.to_string();
        assert!(
            message.contains("written by a newer rewind (store format 3")
                && message.contains("reads store format 2: upgrade rewind")
                && message.contains(&dir.path().join(VERSION_FILE).display().to_string()),
            "{message}"
        );
        // Refused before anything was created in it.
        assert!(!dir.path().join("blobs").exists());
        assert!(!dir.path().join("tmp").exists());
        assert_eq!(version(dir.path()), "3\n");
    }

    #[test]
    fn a_version_that_is_not_a_format_number_is_refused() {
        for (content, shown) in [
            ("", "``"),
            ("one\n", "`one`"),
            ("+1\n", "`+1`"),
            ("1.0\n", "`1.0`"),
            ("99999999999\n", "`99999999999`"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(VERSION_FILE), content).unwrap();
            let err = Store::open(dir.path()).unwrap_err();
            assert!(
                matches!(FormatError::of(&err), Some(FormatError::Unreadable { .. })),
                "{content:?}: {err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("holds {shown}, not a store format number"))
                    && message.contains("reads store format 2"),
                "{message}"
            );
        }
        // Format 0 is a number, but not one any rewind writes.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(VERSION_FILE), "0\n").unwrap();
        let message = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("says store format 0, which no rewind writes"),
            "{message}"
        );
    }

    #[test]
    fn whitespace_around_the_number_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(VERSION_FILE), " 1 \r\n\n").unwrap();
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn manifest_format_messages() {
        let newer = FormatError::Manifest {
            path: PathBuf::from("/s/runs/x.json"),
            found: "\"rewind.run/9\"".into(),
        }
        .to_string();
        assert!(
            newer.starts_with("/s/runs/x.json has manifest format \"rewind.run/9\"")
                && newer.contains("reads format \"rewind.run/1\"")
                && newer.ends_with("written by a newer rewind, upgrade rewind"),
            "{newer}"
        );
        let other = FormatError::Manifest {
            path: PathBuf::from("/s/runs/x.json"),
            found: "\"restic/2\"".into(),
        }
        .to_string();
        assert!(!other.contains("newer"), "{other}");
    }
}
