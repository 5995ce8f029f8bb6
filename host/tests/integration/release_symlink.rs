//! release-symlink against real directories and symlinks.

use std::fs;
use std::path::Path;

use crate::common::{Call, load, scratch};
use rewind::sandbox::{HookInput, HookOutput};
use serde_json::json;

/// base/releases/{v1,v2,v3}, current -> releases/<at>.
fn deploy_root(root: &Path, at: &str) -> std::path::PathBuf {
    let base = root.join("app");
    for v in ["v1", "v2", "v3"] {
        fs::create_dir_all(base.join("releases").join(v)).unwrap();
        fs::write(base.join("releases").join(v).join("VERSION"), v).unwrap();
    }
    std::os::unix::fs::symlink(format!("releases/{at}"), base.join("current")).unwrap();
    base
}

fn deploy(base: &Path, to: &str) {
    let tmp = base.join("current.tmp");
    std::os::unix::fs::symlink(format!("releases/{to}"), &tmp).unwrap();
    fs::rename(tmp, base.join("current")).unwrap();
}

fn call(base: &Path) -> Call {
    Call::new("code", json!({ "base": base.display().to_string() })).path(base)
}

#[test]
fn revert_puts_current_back_where_the_backup_found_it() {
    let s = scratch();
    let base = deploy_root(s.path(), "v1");
    let plugin = load("release-symlink");
    let saved = call(&base).backup(&plugin, &s.store);
    let state: serde_json::Value =
        serde_json::from_slice(&read_artifact(&s.store, &saved, "state")).unwrap();
    assert_eq!(state["release"], "v1");

    deploy(&base, "v2");
    assert_eq!(
        fs::read_to_string(base.join("current/VERSION")).unwrap(),
        "v2"
    );

    let outcome = call(&base).run(&plugin, &s.store, HookInput::Revert(&saved));
    let Ok(HookOutput::Report(report)) = outcome.result else {
        panic!("revert failed: {:?}", outcome.result)
    };
    assert!(report.summary.contains("was v2"), "{}", report.summary);
    assert_eq!(
        fs::read_link(base.join("current")).unwrap(),
        Path::new("releases/v1")
    );
    assert_eq!(
        fs::read_to_string(base.join("current/VERSION")).unwrap(),
        "v1"
    );
    // No temporary link is left behind.
    let leftovers: Vec<_> = fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_explicit_target_wins_and_an_unknown_one_lists_the_releases() {
    let s = scratch();
    let base = deploy_root(s.path(), "v3");
    let plugin = load("release-symlink");
    let saved = call(&base).backup(&plugin, &s.store);
    let outcome = call(&base)
        .target("v2")
        .run(&plugin, &s.store, HookInput::Revert(&saved));
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(
        fs::read_link(base.join("current")).unwrap(),
        Path::new("releases/v2")
    );

    let outcome = call(&base)
        .target("v9")
        .run(&plugin, &s.store, HookInput::Revert(&saved));
    let err = outcome.result.unwrap_err();
    assert!(
        err.message.contains("v9") && err.message.contains("v1, v2, v3"),
        "{err}"
    );
    assert_eq!(
        fs::read_link(base.join("current")).unwrap(),
        Path::new("releases/v2")
    );
}

#[test]
fn dry_run_changes_nothing() {
    let s = scratch();
    let base = deploy_root(s.path(), "v1");
    let plugin = load("release-symlink");
    let saved = call(&base).backup(&plugin, &s.store);
    deploy(&base, "v3");
    let mut dry = call(&base);
    dry.dry_run = true;
    let outcome = dry.run(&plugin, &s.store, HookInput::Revert(&saved));
    let Ok(HookOutput::Report(report)) = outcome.result else {
        panic!("{:?}", outcome.result)
    };
    assert!(
        report.summary.starts_with("would switch"),
        "{}",
        report.summary
    );
    assert_eq!(
        fs::read_link(base.join("current")).unwrap(),
        Path::new("releases/v3")
    );
}

#[test]
fn keep_prunes_the_oldest_releases_but_never_the_one_in_use() {
    let s = scratch();
    let base = deploy_root(s.path(), "v2");
    let plugin = load("release-symlink");
    let saved = call(&base).backup(&plugin, &s.store);
    deploy(&base, "v3");
    let keep = Call::new(
        "code",
        json!({ "base": base.display().to_string(), "keep": 1 }),
    )
    .path(&base);
    let outcome = keep.run(&plugin, &s.store, HookInput::Revert(&saved));
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert!(
        base.join("releases/v2").is_dir(),
        "the release reverted to must stay"
    );
    assert!(
        !base.join("releases/v1").exists(),
        "v1 is the oldest and must go"
    );
}

#[test]
fn without_a_path_grant_the_backup_fails_and_says_so() {
    let s = scratch();
    let base = deploy_root(s.path(), "v1");
    let plugin = load("release-symlink");
    let outcome = Call::new("code", json!({ "base": base.display().to_string() })).run(
        &plugin,
        &s.store,
        HookInput::Backup,
    );
    let err = outcome.result.unwrap_err();
    assert!(err.message.contains("current"), "{err}");
}

fn read_artifact(
    store: &rewind::store::Store,
    saved: &[rewind::store::ArtifactRecord],
    name: &str,
) -> Vec<u8> {
    use std::io::Read;
    let record = saved.iter().find(|r| r.name == name).expect("artifact");
    let mut bytes = Vec::new();
    store
        .open_blob(&record.blob)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}
