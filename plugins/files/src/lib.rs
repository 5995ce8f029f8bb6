//! rewind plugin `files`: back up granted files and directories (`.env`,
//! config, storage) as one tar artifact plus an index, and restore them with
//! their modes (and owners, where the host may set them).
//!
//! A restore never exposes a half-written file: each file is written to a
//! temporary name beside its target, checked against the sha256 in the
//! index, given its mode, and renamed over the target.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rewind_sdk::artifacts::{Reader, Writer};
use rewind_sdk::fs::{FileKind, metadata, set_mode, set_owner};
use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Context, HookError, PathRequest, Plugin, PluginInfo, Report,
    Restore, artifacts, log,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

rewind_sdk::params! {
    struct Params {
        /// Absolute files and directories to keep
        paths: Vec<String>,
        /// File names to skip (`*` wildcard)
        exclude: Vec<String> = Vec::new(),
        /// Also restore owner and group
        restore_owner: bool = false,
        /// Skip paths that do not exist
        missing_ok: bool = false,
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// One entry of the index artifact.
#[derive(Serialize, Deserialize, Debug)]
struct Entry {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Index {
    roots: Vec<String>,
    entries: Vec<Entry>,
}

struct Files;

impl Plugin for Files {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "files".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Backs up and restores files and directories, with modes and owners".into(),
            capabilities: Capabilities {
                paths: vec![PathRequest {
                    path: "<each of params.paths, or its directory>".into(),
                    writable: true,
                    reason: "read on backup; rewrite files and modes on restore".into(),
                }],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

fn excluded(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| wildcard(p, name))
}

/// `*` matches any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| wildcard(tail, &rest[i..]))
        }
    }
}

fn io_failed(what: &str, path: &Path, err: impl std::fmt::Display) -> HookError {
    HookError::failed(format!("{what} {}: {err}", path.display()))
}

/// Collect entries depth-first, parents before children, in name order.
fn walk(path: &Path, exclude: &[String], out: &mut Vec<(PathBuf, Kind)>) -> Result<(), HookError> {
    let meta = metadata(path)?;
    let kind = match meta.kind {
        FileKind::File => Kind::File,
        FileKind::Directory => Kind::Dir,
        FileKind::Symlink => Kind::Symlink,
        FileKind::Other => {
            log::warn(format!(
                "skipping {} (not a file, directory or symlink)",
                path.display()
            ));
            return Ok(());
        }
    };
    out.push((path.to_path_buf(), kind));
    if kind == Kind::Dir {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| io_failed("cannot list", path, e))?
            .flatten()
            .filter(|e| !excluded(&e.file_name().to_string_lossy(), exclude))
            .map(|e| e.path())
            .collect();
        children.sort();
        for child in children {
            walk(&child, exclude, out)?;
        }
    }
    Ok(())
}

fn tar_name(path: &Path) -> PathBuf {
    path.strip_prefix("/").unwrap_or(path).to_path_buf()
}

impl Backup for Files {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let mut found = Vec::new();
        for root in &params.paths {
            let path = Path::new(root);
            if !path.is_absolute() {
                return Err(HookError::invalid_input(format!(
                    "params.paths: `{root}` must be absolute"
                )));
            }
            match std::fs::symlink_metadata(path) {
                Ok(_) => walk(path, &params.exclude, &mut found)?,
                Err(_) if params.missing_ok => log::info(format!("{root} does not exist; skipped")),
                Err(err) => {
                    return Err(HookError::failed(format!(
                        "{root}: {err} (grant its directory in grants.paths, or set missing_ok = true)"
                    )));
                }
            }
        }

        let mut tar = tar::Builder::new(Writer::create("files", "application/x-tar")?);
        let mut entries = Vec::with_capacity(found.len());
        for (path, kind) in found {
            let meta = metadata(&path)?;
            let mut header = tar::Header::new_gnu();
            header.set_mode(meta.mode);
            header.set_uid(meta.uid as u64);
            header.set_gid(meta.gid as u64);
            header.set_mtime(meta.mtime.max(0) as u64);
            let mut entry = Entry {
                path: path.to_string_lossy().into_owned(),
                kind,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                size: 0,
                sha256: None,
                link: None,
            };
            match kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, tar_name(&path), std::io::empty())
                        .map_err(|e| io_failed("cannot archive", &path, e))?;
                }
                Kind::Symlink => {
                    let target = std::fs::read_link(&path)
                        .map_err(|e| io_failed("cannot read link", &path, e))?;
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, tar_name(&path), &target)
                        .map_err(|e| io_failed("cannot archive", &path, e))?;
                    entry.link = Some(target.to_string_lossy().into_owned());
                }
                Kind::File => {
                    let bytes =
                        std::fs::read(&path).map_err(|e| io_failed("cannot read", &path, e))?;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, tar_name(&path), bytes.as_slice())
                        .map_err(|e| io_failed("cannot archive", &path, e))?;
                    entry.size = bytes.len() as u64;
                    entry.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
                }
            }
            entries.push(entry);
        }
        let mut writer = tar
            .into_inner()
            .map_err(|e| HookError::failed(format!("cannot finish the archive: {e}")))?;
        writer.label("entries", &entries.len().to_string());
        writer.flush()?;
        let files = writer.finish()?;
        log::info(format!("archived {} entries", entries.len()));
        let index = artifacts::write_json(
            "index",
            &Index {
                roots: params.paths.clone(),
                entries,
            },
        )?;
        Ok(vec![files, index])
    }
}

/// Write `data` beside `target` under a temporary name, verify, set mode
/// (and owner), then rename over `target`.
fn restore_file(entry: &Entry, data: &mut impl Read, restore_owner: bool) -> Result<(), HookError> {
    let target = Path::new(&entry.path);
    let dir = target
        .parent()
        .ok_or_else(|| HookError::invalid_input(format!("bad path {}", entry.path)))?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.rewind-tmp"));
    let result = (|| {
        let mut file =
            std::fs::File::create(&temp).map_err(|e| io_failed("cannot write", &temp, e))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = data.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])
                .map_err(|e| io_failed("cannot write", &temp, e))?;
        }
        file.sync_all()
            .map_err(|e| io_failed("cannot sync", &temp, e))?;
        drop(file);
        let digest = hex::encode(hasher.finalize());
        if entry.sha256.as_deref() != Some(digest.as_str()) {
            return Err(HookError::failed(format!(
                "{}: restored content hashes to {digest}, the index says {}; the file was not replaced",
                entry.path,
                entry.sha256.as_deref().unwrap_or("nothing")
            )));
        }
        apply_attributes(&temp, entry, restore_owner)?;
        std::fs::rename(&temp, target).map_err(|e| io_failed("cannot replace", target, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn apply_attributes(path: &Path, entry: &Entry, restore_owner: bool) -> Result<(), HookError> {
    set_mode(path, entry.mode)?;
    if restore_owner && let Err(err) = set_owner(path, entry.uid, entry.gid) {
        log::warn(format!(
            "owner of {} not restored: {}",
            entry.path,
            err.message()
        ));
    }
    Ok(())
}

fn restore_symlink(entry: &Entry) -> Result<(), HookError> {
    let target = Path::new(&entry.path);
    let link = entry.link.as_deref().unwrap_or_default();
    if std::fs::read_link(target).is_ok_and(|current| current == Path::new(link)) {
        return Ok(());
    }
    let dir = target.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(
        ".{}.rewind-tmp",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&temp);
    rewind_sdk::fs::symlink(Path::new(link), &temp)
        .map_err(|e| io_failed("cannot create link", &temp, e))?;
    std::fs::rename(&temp, target).map_err(|e| io_failed("cannot replace", target, e))
}

impl Restore for Files {
    fn restore(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let index: Index = artifacts::read_json(artifacts::find(saved, "index")?)?;
        let counts = |kind| index.entries.iter().filter(|e| e.kind == kind).count();
        let summary = format!(
            "{} files, {} directories, {} symlinks",
            counts(Kind::File),
            counts(Kind::Dir),
            counts(Kind::Symlink)
        );
        if ctx.dry_run() {
            return Ok(Report::new(format!("would restore {summary}")));
        }
        let by_path: std::collections::HashMap<&str, &Entry> =
            index.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut archive = tar::Archive::new(Reader::open(artifacts::find(saved, "files")?)?);
        let mut dirs = Vec::new();
        for tar_entry in archive
            .entries()
            .map_err(|e| HookError::failed(format!("cannot read the archive: {e}")))?
        {
            let mut tar_entry = tar_entry
                .map_err(|e| HookError::failed(format!("cannot read the archive: {e}")))?;
            let name = tar_entry
                .path()
                .map_err(|e| HookError::failed(format!("bad name in the archive: {e}")))?
                .into_owned();
            let path = Path::new("/").join(&name);
            let Some(entry) = by_path.get(path.to_string_lossy().as_ref()) else {
                return Err(HookError::invalid_input(format!(
                    "the archive holds {} which its index does not list",
                    path.display()
                )));
            };
            match entry.kind {
                Kind::Dir => {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| io_failed("cannot create", &path, e))?;
                    dirs.push(*entry);
                }
                Kind::Symlink => restore_symlink(entry)?,
                Kind::File => restore_file(entry, &mut tar_entry, params.restore_owner)?,
            }
        }
        // Directory modes last, deepest first, so a read-only directory does
        // not stop its own contents from being restored.
        for entry in dirs.iter().rev() {
            apply_attributes(Path::new(&entry.path), entry, params.restore_owner)?;
        }
        Ok(Report::new(format!("restored {summary}"))
            .detail("files", counts(Kind::File).to_string())
            .detail("directories", counts(Kind::Dir).to_string())
            .detail("symlinks", counts(Kind::Symlink).to_string()))
    }
}

rewind_sdk::export_plugin!(Files: backup, restore);
