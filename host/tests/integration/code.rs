//! The `git` and `service` plugins through the `rewind` binary, on real
//! repositories (with merges) and real commands.

use std::path::Path;
use std::process::Command;

use crate::common::{Project, pin};

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(repo: &Path, file: &str, content: &str, message: &str) -> String {
    std::fs::write(repo.join(file), content).unwrap();
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

/// A repository with history, a tag and a merge, checked out on main.
fn repository(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    commit(&repo, "app.txt", "v1\n", "v1");
    git(&repo, &["tag", "v1.0"]);
    git(&repo, &["checkout", "-q", "-b", "feature"]);
    commit(&repo, "feature.txt", "feature\n", "feature");
    git(&repo, &["checkout", "-q", "main"]);
    commit(&repo, "app.txt", "v1.1\n", "v1.1");
    git(
        &repo,
        &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"],
    );
    repo
}

fn git_project(root: &Path, repo: &Path, params: &str) -> Project {
    let project = Project::new("");
    let _ = root;
    project.write(&format!(
        r#"[plugins.code]
{pin}
grants.exec = ["git -C {repo} **"]
params = {{ repo = "{repo}"{params} }}

[chains]
backup = ["code"]
rollback = ["code"]
"#,
        pin = pin("git"),
        repo = repo.display(),
    ));
    project
}

/// A deploy after the backup: two commits and a merge of another branch.
fn deploy(repo: &Path) {
    commit(repo, "app.txt", "v2\n", "v2");
    git(repo, &["checkout", "-q", "-b", "hotfix"]);
    commit(repo, "hotfix.txt", "hotfix\n", "hotfix");
    git(repo, &["checkout", "-q", "main"]);
    git(
        repo,
        &["merge", "-q", "--no-ff", "-m", "merge hotfix", "hotfix"],
    );
    commit(repo, "app.txt", "v2.1\n", "v2.1");
}

#[test]
fn git_backup_records_commit_branch_and_dirtiness() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let project = git_project(dir.path(), &repo, "");
    std::fs::write(repo.join("app.txt"), "local edit\n").unwrap();
    let run = project.json(&["backup", "--json"], 0);
    let digest = run["steps"][0]["artifacts"][0]["digest"].as_str().unwrap();
    let out = project.rewind(&[
        "hook",
        "code",
        "revert",
        "--run",
        run["id"].as_str().unwrap(),
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "a dirty tree is refused");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("uncommitted changes"),
        "{json:#}"
    );
    assert_eq!(digest.len(), 64);
    let logs = run["steps"][0]["logs"].to_string();
    assert!(logs.contains("uncommitted changes"), "{logs}");
}

#[test]
fn git_reset_mode_returns_the_branch_to_the_recorded_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let recorded = git(&repo, &["rev-parse", "HEAD"]);
    let project = git_project(dir.path(), &repo, "");
    project.json(&["backup", "--json"], 0);
    deploy(&repo);
    let result = project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    assert_eq!(result["run"]["status"], "succeeded", "{result:#}");
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), recorded);
    assert_eq!(git(&repo, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(
        std::fs::read_to_string(repo.join("app.txt")).unwrap(),
        "v1.1\n"
    );
}

#[test]
fn git_revert_mode_adds_revert_commits_including_merges() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let recorded = git(&repo, &["rev-parse", "HEAD"]);
    let project = git_project(dir.path(), &repo, ", mode = \"revert\"");
    project.json(&["backup", "--json"], 0);
    deploy(&repo);
    let deployed = git(&repo, &["rev-parse", "HEAD"]);

    let result = project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    let step = &result["run"]["steps"][0];
    assert_eq!(step["status"], "succeeded", "{result:#}");
    // History kept, tree identical to the recorded commit.
    git(&repo, &["merge-base", "--is-ancestor", &deployed, "HEAD"]);
    assert_eq!(git(&repo, &["diff", &recorded, "HEAD", "--stat"]), "");
    assert!(!repo.join("hotfix.txt").exists());
    let details = step["details"].to_string();
    assert!(details.contains("\"reverted\",\"3\""), "{details}");
    let subjects = git(&repo, &["log", "--format=%s", "-3"]);
    assert!(subjects.contains("Revert \"merge hotfix\""), "{subjects}");
}

#[test]
fn git_checks_out_a_tag_given_as_target_and_force_discards_changes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let project = git_project(dir.path(), &repo, ", force = true");
    let run = project.json(&["backup", "--json"], 0);
    std::fs::write(repo.join("app.txt"), "hot edit on the server\n").unwrap();
    let out = project.rewind(&[
        "hook",
        "code",
        "revert",
        "--run",
        run["id"].as_str().unwrap(),
        "--target",
        "v1.0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        git(&repo, &["rev-parse", "HEAD"]),
        git(&repo, &["rev-parse", "v1.0^{commit}"])
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("app.txt")).unwrap(),
        "v1\n"
    );
}

// ---------------------------------------------------------------- service

#[test]
fn service_runs_each_restart_with_its_timeout_and_a_refused_one_names_the_grant() {
    let project = Project::new("");
    let root = project.root();
    let marker = root.join("restarted");
    let body = |commands: &str| {
        format!(
            r#"[plugins.restart]
{pin}
grants.exec = ["sh -c *", "sleep *"]
params = {{ commands = [{commands}] }}
"#,
            pin = pin("service"),
        )
    };
    project.write(&body(&format!(
        r#"{{ run = ["sh", "-c", "echo php-fpm >> {m}"] }}, {{ run = ["sh", "-c", "echo nginx >> {m}"], timeout_s = 5 }}"#,
        m = marker.display()
    )));
    let out = project.json(&["hook", "restart", "revert", "--json"], 0);
    assert_eq!(out["result"]["summary"], "ran 2 command(s)");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "php-fpm\nnginx\n"
    );

    // A command past its timeout is killed, and the hook fails saying so.
    project.write(&body(r#"{ run = ["sleep", "30"], timeout_s = 1 }"#));
    let started = std::time::Instant::now();
    let out = project.json(&["hook", "restart", "revert", "--json"], 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let message = out["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("sleep 30"), "{message}");

    // A command outside the grants is refused with the line to add.
    project.write(&body(r#"{ run = ["systemctl", "restart", "nginx"] }"#));
    let out = project.json(&["hook", "restart", "revert", "--json"], 1);
    assert_eq!(out["error"]["kind"], "denied", "{out:#}");
    assert_eq!(
        out["error"]["grant"],
        "grants.exec = [\"systemctl restart nginx\"]"
    );
}

#[test]
fn git_push_moves_the_remote_branch_back_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let remote = dir.path().join("remote.git");
    let out = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&remote)
        .output()
        .unwrap();
    assert!(out.status.success());
    git(
        &repo,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    git(&repo, &["push", "-q", "origin", "main"]);
    let recorded = git(&repo, &["rev-parse", "HEAD"]);
    let remote_head = |remote: &Path| git(remote, &["rev-parse", "main"]);

    let project = git_project(dir.path(), &repo, ", mode = \"revert\", push = true");
    project.json(&["backup", "--json"], 0);
    deploy(&repo);
    git(&repo, &["push", "-q", "origin", "main"]);
    let deployed = remote_head(&remote);
    assert_ne!(deployed, recorded);

    project.json(&["rollback", "--quick", "--yes", "--json"], 0);
    let pushed = remote_head(&remote);
    assert_eq!(
        pushed,
        git(&repo, &["rev-parse", "HEAD"]),
        "the revert commits were pushed"
    );
    assert_eq!(git(&repo, &["diff", &recorded, &pushed, "--stat"]), "");
}
