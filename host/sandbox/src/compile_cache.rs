//! The on-disk cache of compiled components.
//!
//! A cached entry is native code: whoever can write it runs code as rewind,
//! outside every sandbox. So the cache is trusted only as far as its
//! directory is:
//!
//! * the directory is created 0700 and refused when it is a symlink, is not
//!   owned by the user rewind runs as, or is writable by group or others;
//!   every ancestor of its real path must be owned by root or by that user
//!   and not writable by group or others, unless it has the sticky bit (as
//!   `/tmp`), where nobody else can rename or remove the entries of ours;
//! * no plugin may be granted a path containing it (config validation
//!   checks [`rewind_grants::paths::host_private`]);
//! * an entry is opened with `O_NOFOLLOW` beneath the directory's
//!   descriptor, must be a regular file owned by that user with no group or
//!   other permissions, and is read whole into memory, where its header is
//!   checked: `REWINDC1`, the sha256 of the wasm it was compiled from, the
//!   sha256 of the compiled bytes. An entry copied over another plugin's
//!   name (or truncated, or corrupted) is refused and compiled again. The
//!   header binds an entry to its wasm; it is not a signature (anyone who
//!   can write the directory could forge one), which is why the directory
//!   itself is checked.
//!
//! Callers deserialize the verified in-memory bytes, never the file, so
//! nothing can change the code between the check and its use.

use std::fmt;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use sha2::{Digest as _, Sha256};

use rewind_store::{create_private_dir, write_atomic};

/// The first bytes of every entry.
pub const MAGIC: &[u8; 8] = b"REWINDC1";
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

/// Why a cache directory is not used.
#[derive(Debug)]
pub struct CacheError {
    /// The directory refused.
    pub dir: PathBuf,
    /// Why.
    pub message: String,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "compile cache {}: {}", self.dir.display(), self.message)
    }
}

impl std::error::Error for CacheError {}

/// A checked cache directory.
#[derive(Debug)]
pub struct CacheDir {
    path: PathBuf,
    /// The directory as checked; entries are opened beneath it.
    fd: OwnedFd,
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

const FIX: &str = "set REWIND_CACHE_DIR to a directory of your own, mode 0700, \
                   outside every plugin's grants";

/// Open (creating it 0700 if missing) and check the cache directory `dir`.
pub fn open_dir(dir: &Path) -> Result<CacheDir, CacheError> {
    let error = |message: String| CacheError {
        dir: dir.to_path_buf(),
        message,
    };
    if !dir.is_absolute() {
        return Err(error(format!("the path must be absolute; {FIX}")));
    }
    if std::fs::symlink_metadata(dir).is_err() {
        create_private_dir(dir).map_err(|err| error(format!("cannot create it: {err}")))?;
    }
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| {
        if err == rustix::io::Errno::LOOP || err == rustix::io::Errno::NOTDIR {
            error(format!(
                "it is a symlink or not a directory, so whoever controls the link controls \
                 compiled code; {FIX}"
            ))
        } else {
            error(format!("cannot open it: {err}"))
        }
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|err| error(format!("cannot stat it: {err}")))?;
    let me = euid();
    if stat.st_uid != me {
        return Err(error(format!(
            "it is owned by uid {}, not by uid {me} that rewind runs as, so that user could \
             replace compiled code; chown it to uid {me} or {FIX}",
            stat.st_uid
        )));
    }
    if stat.st_mode & 0o022 != 0 {
        return Err(error(format!(
            "it is writable by group or others (mode {:o}), so they could replace compiled \
             code; run `chmod 700 {}` or {FIX}",
            stat.st_mode & 0o7777,
            dir.display()
        )));
    }
    // The ancestors of the directory as the kernel sees it.
    let real = super::resolve::real_path(&fd)
        .map_err(|err| error(format!("cannot read where it is: {err}")))?;
    for ancestor in real.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .map_err(|err| error(format!("cannot stat {}: {err}", ancestor.display())))?;
        let owner_ok = meta.uid() == 0 || meta.uid() == me;
        let sticky = meta.mode() & 0o1000 != 0;
        let writable = meta.mode() & 0o022 != 0;
        if !owner_ok || (writable && !sticky) {
            return Err(error(format!(
                "its parent {} is owned by uid {} with mode {:o}: another user could replace \
                 the cache directory; every ancestor must be owned by root or uid {me} and not \
                 writable by group or others (unless sticky, as /tmp); {FIX}",
                ancestor.display(),
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(CacheDir {
        path: dir.to_path_buf(),
        fd,
    })
}

/// The 32 bytes of a hex sha256, or `None`.
fn digest_bytes(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

impl CacheDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry's file name for this wasm digest and engine.
    pub fn entry_name(wasm_digest: &str, compat_key: &str) -> String {
        format!("{wasm_digest}-{compat_key}.cwasm")
    }

    /// The compiled bytes cached for `wasm_digest` (hex sha256 of the wasm)
    /// under this engine's `compat_key`, if an entry exists and passes every
    /// check. A refused entry is logged and reported as missing, so the
    /// caller compiles (and overwrites it).
    pub fn read(&self, wasm_digest: &str, compat_key: &str) -> Option<Vec<u8>> {
        let name = Self::entry_name(wasm_digest, compat_key);
        match self.read_checked(&name, wasm_digest) {
            Ok(bytes) => bytes,
            Err(why) => {
                tracing::warn!(
                    "refusing compiled cache entry {}: {why}; compiling again",
                    self.path.join(&name).display()
                );
                None
            }
        }
    }

    /// `Ok(None)`: no entry. `Err`: an entry that is refused.
    fn read_checked(&self, name: &str, wasm_digest: &str) -> Result<Option<Vec<u8>>, String> {
        let want = digest_bytes(wasm_digest).ok_or("the wasm digest is not a hex sha256")?;
        if name.contains('/') {
            return Err("not a plain file name".into());
        }
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => return Err("it is a symlink".into()),
            Err(err) => return Err(format!("cannot open it: {err}")),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|err| format!("cannot stat it: {err}"))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err("it is not a regular file".into());
        }
        if stat.st_uid != euid() {
            return Err(format!("it is owned by uid {}", stat.st_uid));
        }
        if stat.st_mode & 0o077 != 0 {
            return Err(format!("its mode is {:o}, not 600", stat.st_mode & 0o7777));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(stat.st_size).unwrap_or(0));
        std::fs::File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(|err| format!("cannot read it: {err}"))?;
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err("it has no rewind cache header".into());
        }
        let (header, body) = bytes.split_at(HEADER_LEN);
        if header[8..40] != want {
            return Err(format!(
                "it was compiled from another plugin (wasm sha256 {}), not {wasm_digest}",
                hex::encode(&header[8..40])
            ));
        }
        if header[40..72] != Sha256::digest(body)[..] {
            return Err("its compiled code does not match its checksum".into());
        }
        Ok(Some(body.to_vec()))
    }

    /// Store `serialized` (compiled from the wasm whose sha256 is
    /// `wasm_digest`) atomically: a 0600 temp file, fsync, rename.
    pub fn write(
        &self,
        wasm_digest: &str,
        compat_key: &str,
        serialized: &[u8],
    ) -> std::io::Result<()> {
        let want = digest_bytes(wasm_digest).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the wasm digest is not a hex sha256",
            )
        })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + serialized.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&want);
        bytes.extend_from_slice(&Sha256::digest(serialized));
        bytes.extend_from_slice(serialized);
        write_atomic(
            &self.path.join(Self::entry_name(wasm_digest, compat_key)),
            &bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    const WASM_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const WASM_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn entries_round_trip_and_a_copied_entry_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = open_dir(&tmp.path().join("c")).unwrap();
        let mode = std::fs::metadata(tmp.path().join("c")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(cache.read(WASM_A, "k"), None);
        cache.write(WASM_A, "k", b"code of a").unwrap();
        cache.write(WASM_B, "k", b"code of b").unwrap();
        assert_eq!(cache.read(WASM_A, "k").unwrap(), b"code of a");
        let entry = |d| tmp.path().join("c").join(CacheDir::entry_name(d, "k"));
        assert_eq!(
            std::fs::metadata(entry(WASM_A)).unwrap().mode() & 0o777,
            0o600
        );
        std::fs::copy(entry(WASM_B), entry(WASM_A)).unwrap();
        assert_eq!(cache.read(WASM_A, "k"), None, "b's code under a's name");
        // Corrupted body.
        let mut bytes = std::fs::read(entry(WASM_B)).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(entry(WASM_B), &bytes).unwrap();
        assert_eq!(cache.read(WASM_B, "k"), None);
        // A symlink entry is not followed.
        std::fs::remove_file(entry(WASM_A)).unwrap();
        cache.write(WASM_B, "k", b"code of b").unwrap();
        std::os::unix::fs::symlink(entry(WASM_B), entry(WASM_A)).unwrap();
        assert_eq!(cache.read(WASM_A, "k"), None);
        // A group-readable entry is refused.
        std::fs::set_permissions(entry(WASM_B), std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(cache.read(WASM_B, "k"), None);
    }

    #[test]
    fn unsafe_directories_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = open_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        assert!(err.contains("chmod 700"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = open_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        // A parent others may write (without the sticky bit).
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = open_dir(&open.join("c")).unwrap_err().to_string();
        assert!(err.contains("its parent"), "{err}");
        assert!(open_dir(&dir).is_ok());
    }
}
