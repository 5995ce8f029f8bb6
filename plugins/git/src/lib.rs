//! rewind plugin `git`: backup records the commit, the branch and whether
//! the working tree is dirty; revert returns to that commit by resetting
//! (`mode = "reset"`), by revert commits for everything after it
//! (`mode = "revert"`, merges reverted against their first parent), or
//! checks out the ref given as the run's target (a tag). A dirty tree is
//! refused unless `force = true`; pushing happens only with `push = true`.

use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, HookError, Plugin, PluginInfo, Report,
    Revert, artifacts, log,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// The working tree (absolute path)
        repo: String,
        /// reset: move back to the commit; revert: add revert commits
        mode: Mode = Mode::Reset,
        /// Proceed even with uncommitted changes
        // (which a reset discards)
        force: bool = false,
        /// Push the branch afterwards
        // A reset pushes with --force-with-lease.
        push: bool = false,
        /// The remote to push to
        remote: String = "origin",
        /// The git program
        git: String = "git",
        /// Name on revert commits
        // The identity of revert commits: the sandbox has no HOME, so no
        // global git config.
        author_name: String = "rewind",
        /// Email on revert commits
        author_email: String = "rewind@localhost",
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Reset,
    Revert,
}

impl rewind_sdk::ParamType for Mode {
    const KIND: rewind_sdk::ParamKind = rewind_sdk::ParamKind::String;
}

/// What a backup records.
#[derive(Serialize, Deserialize)]
struct State {
    commit: String,
    /// None when HEAD was detached.
    branch: Option<String>,
    dirty: bool,
    /// Changed files (at most 50), as `git status --porcelain` prints them.
    changes: Vec<String>,
}

impl Params {
    /// `git -C <repo>` with the settings every call needs.
    fn git(&self) -> Command {
        Command::new(self.git.clone()).args([
            "-C".to_string(),
            self.repo.clone(),
            // The operator granted this repository; git's ownership check
            // (for a repo owned by the deploy user) adds nothing here.
            "-c".to_string(),
            format!("safe.directory={}", self.repo),
            "-c".to_string(),
            format!("user.name={}", self.author_name),
            "-c".to_string(),
            format!("user.email={}", self.author_email),
        ])
    }

    fn text(&self, args: &[&str]) -> Result<String, HookError> {
        let out = self.git().args(args.iter().copied()).run()?;
        Ok(out.stdout_text().trim().to_string())
    }

    fn state(&self) -> Result<State, HookError> {
        let commit = self.text(&["rev-parse", "--verify", "HEAD"])?;
        let branch_out = self
            .git()
            .args(["symbolic-ref", "--short", "-q", "HEAD"])
            .output()?;
        let branch = branch_out
            .success()
            .then(|| branch_out.stdout_text().trim().to_string());
        let status = self.text(&["status", "--porcelain", "--untracked-files=no"])?;
        let changes: Vec<String> = status.lines().take(50).map(str::to_string).collect();
        Ok(State {
            commit,
            branch,
            dirty: !changes.is_empty(),
            changes,
        })
    }
}

struct Git;

impl Plugin for Git {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "git".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "git: record the deployed commit; reset, revert commits, or check out a tag"
                .into(),
            capabilities: Capabilities {
                exec: vec!["git -C <params.repo> **".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Backup for Git {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        let state = params.state()?;
        if state.dirty {
            log::warn(format!(
                "the working tree has uncommitted changes, which a commit cannot restore: {}",
                state.changes.join("; ")
            ));
        }
        Ok(vec![artifacts::write_json("state", &state)?])
    }
}

impl Revert for Git {
    fn revert(ctx: &Context, saved: &[ArtifactRef]) -> Result<Report, HookError> {
        let params: Params = ctx.params()?;
        let now = params.state()?;
        if now.dirty && !params.force {
            return Err(HookError::failed(format!(
                "{} has uncommitted changes ({}); commit or stash them, or set force = true to \
                 discard them",
                params.repo,
                now.changes.join("; ")
            )));
        }

        if let Some(target) = ctx.target() {
            let commit =
                params.text(&["rev-parse", "--verify", &format!("{target}^{{commit}}")])?;
            if ctx.dry_run() {
                return Ok(Report::new(format!(
                    "would check out {target} ({commit}), now at {}",
                    now.commit
                )));
            }
            let mut checkout = params.git().arg("checkout");
            if params.force {
                checkout = checkout.arg("--force");
            }
            checkout.args(["--detach", target]).run()?;
            return Ok(Report::new(format!("checked out {target} ({commit})"))
                .detail("commit_before", now.commit)
                .detail("commit_after", commit));
        }

        let recorded: State = artifacts::read_json(artifacts::find(saved, "state")?)?;
        if now.commit == recorded.commit && now.branch == recorded.branch {
            return Ok(Report::new(format!(
                "already at {} (nothing to revert)",
                recorded.commit
            )));
        }
        let report = match params.mode {
            Mode::Reset => reset(&params, ctx, &now, &recorded)?,
            Mode::Revert => revert_commits(&params, ctx, &now, &recorded)?,
        };
        if params.push && !ctx.dry_run() {
            let Some(branch) = recorded.branch.as_deref().or(now.branch.as_deref()) else {
                return Err(HookError::failed(
                    "push = true, but HEAD is detached: there is no branch to push",
                ));
            };
            let mut push = params.git().arg("push");
            if params.mode == Mode::Reset {
                push = push.arg("--force-with-lease");
            }
            push.args([params.remote.as_str(), branch]).run()?;
        }
        Ok(report)
    }
}

/// Move back to the recorded commit: on the recorded branch when there was
/// one (the branch itself moves), detached otherwise.
fn reset(
    params: &Params,
    ctx: &Context,
    now: &State,
    recorded: &State,
) -> Result<Report, HookError> {
    let what = match &recorded.branch {
        Some(branch) => format!("reset {branch} to {}", recorded.commit),
        None => format!("check out {} (detached)", recorded.commit),
    };
    if ctx.dry_run() {
        return Ok(Report::new(format!("would {what}, now at {}", now.commit)));
    }
    match &recorded.branch {
        Some(branch) => {
            if now.branch.as_deref() != Some(branch) {
                let mut checkout = params.git().arg("checkout");
                if params.force {
                    checkout = checkout.arg("--force");
                }
                checkout.arg(branch.as_str()).run()?;
            }
            params
                .git()
                .args(["reset", "--hard", recorded.commit.as_str()])
                .run()?;
        }
        None => {
            let mut checkout = params.git().arg("checkout");
            if params.force {
                checkout = checkout.arg("--force");
            }
            checkout
                .args(["--detach", recorded.commit.as_str()])
                .run()?;
        }
    }
    Ok(Report::new(what)
        .detail("commit_before", now.commit.clone())
        .detail("commit_after", recorded.commit.clone()))
}

/// Add a revert commit for every first-parent commit after the recorded
/// one, newest first; merges are reverted against their first parent.
fn revert_commits(
    params: &Params,
    ctx: &Context,
    now: &State,
    recorded: &State,
) -> Result<Report, HookError> {
    let ancestor = params
        .git()
        .args([
            "merge-base",
            "--is-ancestor",
            recorded.commit.as_str(),
            "HEAD",
        ])
        .output()?;
    if !ancestor.success() {
        return Err(HookError::failed(format!(
            "the recorded commit {} is not an ancestor of HEAD ({}): there is nothing to revert \
             commit by commit; use mode = \"reset\"",
            recorded.commit, now.commit
        )));
    }
    let list = params.text(&[
        "rev-list",
        "--first-parent",
        "--parents",
        &format!("{}..HEAD", recorded.commit),
    ])?;
    let commits: Vec<(String, bool)> = list
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let commit = parts.next()?.to_string();
            Some((commit, parts.count() > 1))
        })
        .collect();
    if ctx.dry_run() {
        return Ok(Report::new(format!(
            "would add {} revert commit(s) on top of {}",
            commits.len(),
            now.commit
        ))
        .detail(
            "commits",
            commits
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ));
    }
    for (commit, merge) in &commits {
        let mut revert = params.git().args(["revert", "--no-edit"]);
        if *merge {
            revert = revert.args(["-m", "1"]);
        }
        if let Err(err) = revert.arg(commit.as_str()).run() {
            let _ = params.git().args(["revert", "--abort"]).output();
            return Err(err);
        }
    }
    let after = params.text(&["rev-parse", "HEAD"])?;
    Ok(Report::new(format!(
        "added {} revert commit(s); the tree is back to {}",
        commits.len(),
        recorded.commit
    ))
    .detail("commit_before", now.commit.clone())
    .detail("commit_after", after)
    .detail("reverted", commits.len().to_string()))
}

rewind_sdk::export_plugin!(Git: backup, revert);
