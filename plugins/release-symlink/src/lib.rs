//! rewind plugin `release-symlink`: records which release the `current`
//! symlink points at, and switches it back atomically.
//!
//! The layout is Capistrano's and Deployer's: `<base>/releases/<name>/` and
//! `<base>/current -> releases/<name>`. A revert never leaves a moment
//! without `current`: it creates the new link under a temporary name and
//! renames it over the old one, which rename(2) does atomically.

use std::path::{Path, PathBuf};

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Context, HookError, PathRequest, Plugin, PluginInfo, Report,
    Revert, artifacts, log,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// Deploy root holding `current` and `releases/`
        base: String,
        /// Name of the symlink inside base
        current: String = "current",
        /// Name of the releases directory
        releases: String = "releases",
        /// Releases to keep after a revert (absent: never prune)
        keep: Option<usize>,
    }
}

/// What a backup records.
#[derive(Serialize, Deserialize)]
struct State {
    /// The link text exactly as read.
    current: String,
    /// The release directory name it names.
    release: String,
    /// Release directories present at backup time.
    releases: Vec<String>,
}

struct Layout {
    base: PathBuf,
    current_name: String,
    releases_name: String,
}

impl Layout {
    fn new(params: &Params) -> Result<Self, HookError> {
        let base = PathBuf::from(&params.base);
        if !base.is_absolute() {
            return Err(HookError::invalid_input(format!(
                "params.base `{}` must be an absolute path",
                params.base
            )));
        }
        for (key, value) in [("current", &params.current), ("releases", &params.releases)] {
            if value.is_empty() || value.contains('/') || value == ".." {
                return Err(HookError::invalid_input(format!(
                    "params.{key} `{value}` must be a plain name inside base"
                )));
            }
        }
        Ok(Layout {
            base,
            current_name: params.current.clone(),
            releases_name: params.releases.clone(),
        })
    }

    fn current(&self) -> PathBuf {
        self.base.join(&self.current_name)
    }

    fn releases_dir(&self) -> PathBuf {
        self.base.join(&self.releases_name)
    }

    fn list_releases(&self) -> Result<Vec<String>, HookError> {
        let dir = self.releases_dir();
        let entries = std::fs::read_dir(&dir).map_err(|err| {
            HookError::failed(format!("cannot list releases in {}: {err}", dir.display()))
        })?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn read_current(&self) -> Result<String, HookError> {
        let link = self.current();
        let meta = std::fs::symlink_metadata(&link)
            .map_err(|err| HookError::failed(format!("cannot read {}: {err}", link.display())))?;
        if !meta.file_type().is_symlink() {
            return Err(HookError::failed(format!(
                "{} is not a symlink; release-symlink manages a `current -> releases/<name>` link",
                link.display()
            )));
        }
        let text = std::fs::read_link(&link)
            .map_err(|err| HookError::failed(format!("cannot read {}: {err}", link.display())))?;
        Ok(text.to_string_lossy().into_owned())
    }

    /// The release a link text names, if it names one under releases/.
    fn release_of(&self, link_text: &str) -> Option<String> {
        let target = Path::new(link_text);
        let absolute = if target.is_absolute() {
            target.to_path_buf()
        } else {
            self.base.join(target)
        };
        let relative = absolute.strip_prefix(self.releases_dir()).ok()?;
        let mut parts = relative.components();
        let name = parts.next()?.as_os_str().to_string_lossy().into_owned();
        Some(name)
    }
}

struct ReleaseSymlink;

impl Plugin for ReleaseSymlink {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "release-symlink".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Records where `current` points and switches it back atomically".into(),
            capabilities: Capabilities {
                paths: vec![PathRequest {
                    path: "<params.base>".into(),
                    writable: true,
                    reason: "read and replace the current symlink, prune old releases".into(),
                }],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for ReleaseSymlink {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let layout = Layout::new(&params)?;
        let current = layout.read_current()?;
        let release = layout.release_of(&current).ok_or_else(|| {
            HookError::failed(format!(
                "{} points at `{current}`, which is not inside {}",
                layout.current().display(),
                layout.releases_dir().display()
            ))
        })?;
        let state = State {
            current,
            release,
            releases: layout.list_releases()?,
        };
        log::info(format!("current is {}", state.release));
        Ok(vec![artifacts::write_json("state", &state)?])
    }
}

impl Revert for ReleaseSymlink {
    fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let layout = Layout::new(&params)?;
        let available = layout.list_releases()?;
        let recorded: Option<State> = match artifacts::find(saved, "state") {
            Ok(artifact) => Some(artifacts::read_json(artifact)?),
            Err(err) if ctx.target().is_none() => return Err(err),
            Err(_) => None,
        };
        let wanted = match (ctx.target(), &recorded) {
            (Some(target), _) => target.to_string(),
            (None, Some(state)) => state.release.clone(),
            (None, None) => unreachable!("handled above"),
        };
        if !available.contains(&wanted) {
            return Err(HookError::invalid_input(format!(
                "release `{wanted}` is not in {} (available: {})",
                layout.releases_dir().display(),
                available.join(", ")
            )));
        }
        let before = layout.read_current().ok();
        let before_release = before.as_deref().and_then(|t| layout.release_of(t));
        if before_release.as_deref() == Some(wanted.as_str()) {
            return Ok(Report::new(format!("current already at {wanted}"))
                .detail("release", wanted.clone()));
        }
        // Keep the style of the recorded link: relative unless it was absolute.
        let absolute = recorded
            .as_ref()
            .map(|s| Path::new(&s.current).is_absolute())
            .or_else(|| before.as_deref().map(|t| Path::new(t).is_absolute()))
            .unwrap_or(false);
        let link_text = if absolute {
            layout.releases_dir().join(&wanted)
        } else {
            Path::new(&layout.releases_name).join(&wanted)
        };
        let was = before_release.clone().unwrap_or_else(|| "(none)".into());
        if ctx.dry_run() {
            return Ok(Report::new(format!(
                "would switch {} -> {} (now {was})",
                layout.current_name,
                link_text.display()
            )));
        }
        switch_atomically(&layout, &link_text, ctx.run_id())?;
        log::info(format!(
            "{} -> {}",
            layout.current_name,
            link_text.display()
        ));

        let mut pruned = Vec::new();
        if let Some(keep) = params.keep {
            let protect: Vec<&str> = [
                Some(wanted.as_str()),
                recorded.as_ref().map(|s| s.release.as_str()),
            ]
            .into_iter()
            .flatten()
            .collect();
            pruned = prune(&layout, keep, &protect)?;
        }
        let mut report = Report::new(format!(
            "{} -> {} (was {was})",
            layout.current_name,
            link_text.display()
        ))
        .detail("from", was)
        .detail("release", wanted);
        if !pruned.is_empty() {
            report = report.detail("pruned", pruned.join(","));
        }
        Ok(report)
    }
}

/// New symlink under a temporary name, then rename over `current`.
fn switch_atomically(layout: &Layout, link_text: &Path, run_id: &str) -> Result<(), HookError> {
    let unique: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let temp = layout
        .base
        .join(format!(".{}.rewind-{unique}", layout.current_name));
    let _ = std::fs::remove_file(&temp);
    rewind_sdk::fs::symlink(link_text, &temp).map_err(|err| {
        HookError::failed(format!("cannot create symlink {}: {err}", temp.display()))
    })?;
    std::fs::rename(&temp, layout.current()).map_err(|err| {
        let _ = std::fs::remove_file(&temp);
        HookError::failed(format!(
            "cannot replace {}: {err}",
            layout.current().display()
        ))
    })
}

/// Remove the oldest releases (by name) beyond `keep`, never the protected ones.
fn prune(layout: &Layout, keep: usize, protect: &[&str]) -> Result<Vec<String>, HookError> {
    let releases = layout.list_releases()?;
    let excess = releases.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for name in releases
        .iter()
        .filter(|n| !protect.contains(&n.as_str()))
        .take(excess)
    {
        let dir = layout.releases_dir().join(name);
        std::fs::remove_dir_all(&dir)
            .map_err(|err| HookError::failed(format!("cannot prune {}: {err}", dir.display())))?;
        log::info(format!("pruned release {name}"));
        removed.push(name.clone());
    }
    Ok(removed)
}

rewind_sdk::export_plugin!(ReleaseSymlink: backup, revert);
