//! Red-team attacks: raw `wasi:filesystem` calls that bypass wasi-libc's
//! path handling (so `name/..` reaches the host exactly as written), and
//! descriptors opened one way and used another.
//!
//! `params.extra`:
//!
//! - `dir`: the preopen to start from (its guest path, exactly as granted);
//! - `path`: the path relative to it (sent as is, `..` and all);
//! - `then`: for `red-open-dir`, the name to create inside the directory
//!   that was opened (as a file, or a directory when `mkdir` is true);
//! - `to`: for `red-rename`/`red-link`, the destination (relative to `dir`);
//! - `text`: for `red-symlink`, the link's text.
//!
//! `Ok` means the operation went through (a breach, when the test expected
//! a refusal).

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

use crate::Params;

fn extra<'a>(params: &'a Params, key: &str) -> Result<&'a str, String> {
    params
        .extra
        .get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("extra.{key} is missing"))
}

/// The preopen whose guest path is exactly `dir`.
fn preopen(dir: &str) -> Result<Descriptor, String> {
    get_directories()
        .into_iter()
        .find(|(_, name)| name == dir)
        .map(|(d, _)| d)
        .ok_or_else(|| format!("no preopen named {dir}"))
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

fn create_in(d: &Descriptor, name: &str, mkdir: bool) -> Result<String, String> {
    if mkdir {
        d.create_directory_at(name).map_err(err)?;
        return Ok(format!("created directory {name}"));
    }
    let file = d
        .open_at(
            PathFlags::empty(),
            name,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .map_err(err)?;
    file.write(b"pwned", 0).map_err(err)?;
    Ok(format!("wrote {name}"))
}

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let mkdir = params
        .extra
        .get("mkdir")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some(match params.attack.as_str() {
        // Create (file or directory) at `path`, sent raw.
        "red-create" => (|| {
            let d = preopen(extra(params, "dir")?)?;
            create_in(&d, extra(params, "path")?, mkdir)
        })(),
        // Open `path` with create + truncate (no write), then report.
        "red-truncate" => (|| {
            let d = preopen(extra(params, "dir")?)?;
            let path = extra(params, "path")?;
            d.open_at(
                PathFlags::SYMLINK_FOLLOW,
                path,
                OpenFlags::TRUNCATE,
                DescriptorFlags::WRITE,
            )
            .map_err(err)?;
            Ok(format!("truncated {path}"))
        })(),
        "red-unlink" => (|| {
            let d = preopen(extra(params, "dir")?)?;
            let path = extra(params, "path")?;
            d.unlink_file_at(path).map_err(err)?;
            Ok(format!("removed {path}"))
        })(),
        // Open `path` as a directory, read-only (no check needed for a
        // read), then create `then` inside the descriptor.
        "red-open-dir" => (|| {
            let d = preopen(extra(params, "dir")?)?;
            let path = extra(params, "path")?;
            let sub = d
                .open_at(
                    PathFlags::SYMLINK_FOLLOW,
                    path,
                    OpenFlags::DIRECTORY,
                    DescriptorFlags::READ,
                )
                .map_err(err)?;
            create_in(&sub, extra(params, "then")?, mkdir)
        })(),
        "red-rename" => (|| {
            let d = preopen(extra(params, "dir")?)?;
            let (from, to) = (extra(params, "path")?, extra(params, "to")?);
            d.rename_at(from, &d, to).map_err(err)?;
            Ok(format!("renamed {from} to {to}"))
        })(),
        "red-link" => (|| {
            let d = preopen(extra(params, "dir")?)?;
            let (from, to) = (extra(params, "path")?, extra(params, "to")?);
            d.link_at(PathFlags::empty(), from, &d, to).map_err(err)?;
            Ok(format!("linked {from} to {to}"))
        })(),
        "red-symlink" => (|| {
            let d = preopen(extra(params, "dir")?)?;
            let (text, at) = (extra(params, "text")?, extra(params, "path")?);
            d.symlink_at(text, at).map_err(err)?;
            Ok(format!("linked {at} -> {text}"))
        })(),
        // Store artifacts from a hook that returns none (health): `count`
        // distinct blobs of `size` bytes each. `Ok` says how many landed.
        "red-artifacts-from-health" => {
            let count = params
                .extra
                .get("count")
                .and_then(|v| v.as_u64())
                .unwrap_or(1);
            let size = params
                .extra
                .get("size")
                .and_then(|v| v.as_u64())
                .unwrap_or(1024);
            let mut stored = 0;
            for i in 0..count {
                let mut bytes = vec![0u8; size as usize];
                bytes[..8].copy_from_slice(&i.to_le_bytes());
                match rewind_sdk::artifacts::write_bytes(&format!("junk{i}"), "x/y", &bytes) {
                    Ok(_) => stored += 1,
                    Err(e) if stored == 0 => return Some(Err(e.message())),
                    Err(_) => break,
                }
            }
            Ok(format!("stored {stored}"))
        }
        _ => return None,
    })
}
