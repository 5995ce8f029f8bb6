//! Hostile plugins against the WASI filesystem and name lookups: links that leave the grants, nested grants, paths outside every grant, DNS.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.
//!
//! The tests run as root in CI. As a normal user they behave the same: the
//! refusals come from the policy layer before the kernel is asked, so file
//! permissions never decide them (the hostile suite runs as root precisely
//! so that they could not).

use std::fs;
use std::path::{Path, PathBuf};

use rewind::bindings::rewind::hooks::types::HealthStatus;
use serde_json::{Value, json};

use crate::common::{Attack, Call, NestedTree, nested_tree};

/// The shared tree, with this file's checks on it.
struct Tree(NestedTree);

impl std::ops::Deref for Tree {
    type Target = NestedTree;
    fn deref(&self) -> &NestedTree {
        &self.0
    }
}

fn tree() -> Tree {
    let t = nested_tree();
    Tree(t)
}

impl Tree {
    fn attack(&self, attack: &str, target: &Path, extra: Value) -> Attack {
        self.run(&self.call(attack, target, extra))
    }

    /// The attack was refused, and a denial containing `needle` logged.
    fn refused(&self, attack: &str, target: &Path, extra: Value, needle: &str) -> Attack {
        let a = self.attack(attack, target, extra);
        assert_eq!(
            a.status,
            HealthStatus::Unhealthy,
            "{attack} {} succeeded: {}",
            target.display(),
            a.detail
        );
        assert!(
            a.denials.iter().any(|d| d.contains(needle)),
            "{attack} {}: no denial naming {needle:?} in {:?} (guest saw: {})",
            target.display(),
            a.denials,
            a.detail
        );
        self.next_call_works();
        a
    }

    /// The host carries on: a legitimate write in the grant works.
    fn next_call_works(&self) {
        let ok = self.app.join("ok.txt");
        let a = self.attack("write-file", &ok, json!({}));
        assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
        assert_eq!(fs::read_to_string(&ok).unwrap(), "pwned");
        assert!(a.denials.is_empty(), "{:?}", a.denials);
    }

    fn protected_untouched(&self) {
        assert_eq!(
            fs::read_to_string(self.protected.join("x")).unwrap(),
            "keep"
        );
        let names: Vec<_> = fs::read_dir(&self.protected)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x")]);
    }
}

fn path_grant(path: &Path, read_only: bool) -> String {
    let prefix = if read_only { "ro:" } else { "" };
    format!("grants.paths = [\"{prefix}{}\"]", path.display())
}

#[test]
fn an_absolute_symlink_out_of_the_grant_is_refused_and_a_command_reads_nothing() {
    let t = tree();
    let link = t.app.join("evil");
    let a = t.refused(
        "symlink",
        &link,
        json!({ "original": t.outside.join("secret").display().to_string(),
                "link": link.display().to_string(), "cat": "cat" }),
        "not in a read-write grant",
    );
    assert!(!a.detail.contains("secret;"), "{}", a.detail);
    assert!(fs::symlink_metadata(&link).is_err(), "the link exists");
    t.outside_untouched();
}

#[test]
fn a_relative_symlink_out_of_the_grant_is_refused_and_cat_through_it_leaks_nothing() {
    let t = tree();
    let link = t.app.join("evil");
    let call = t
        .call(
            "symlink",
            &link,
            json!({ "original": "../../outside/secret", "link": link.display().to_string(), "cat": "cat" }),
        )
        .exec(&format!("cat {}", link.display()));
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Unhealthy, "{}", a.detail);
    assert!(!a.detail.contains("cat: secret"), "{}", a.detail);
    assert!(
        a.denials
            .iter()
            .any(|d| d.contains("symbolic link") && d.contains("../../outside/secret")),
        "{:?}",
        a.denials
    );
    assert!(fs::symlink_metadata(&link).is_err());
    t.outside_untouched();
    t.next_call_works();
}

#[test]
fn a_symlink_into_a_nested_read_only_grant_is_refused() {
    let t = tree();
    let link = t.app.join("door");
    t.refused(
        "symlink",
        &link,
        json!({ "original": "protected/x", "link": link.display().to_string() }),
        &format!("it resolves to {}", t.protected.join("x").display()),
    );
    assert!(fs::symlink_metadata(&link).is_err());
    t.protected_untouched();
}

#[test]
fn a_symlink_climbing_after_a_name_is_refused() {
    let t = tree();
    let link = t.app.join("sneaky");
    t.refused(
        "symlink",
        &link,
        json!({ "original": "sub/../sub", "link": link.display().to_string() }),
        "only at its start",
    );
    assert!(fs::symlink_metadata(&link).is_err());
}

#[test]
fn moving_a_relative_link_to_a_depth_where_it_escapes_is_refused() {
    let t = tree();
    // Legitimate where it is made: app/sub/data -> ../data.txt = app/data.txt.
    fs::write(t.app.join("data.txt"), "ok").unwrap();
    let link = t.app.join("sub/data");
    let made = t.attack(
        "symlink",
        &link,
        json!({ "original": "../data.txt", "link": link.display().to_string() }),
    );
    assert_eq!(made.status, HealthStatus::Healthy, "{}", made.detail);
    // One level up it would point at <root>/data.txt, outside the grant.
    let moved = t.app.join("data");
    t.refused(
        "rename",
        &moved,
        json!({ "from": link.display().to_string(), "to": moved.display().to_string() }),
        "symbolic link",
    );
    assert!(fs::symlink_metadata(&moved).is_err());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("../data.txt"));
}

#[test]
fn moving_a_directory_whose_links_would_escape_is_refused() {
    let t = tree();
    let deep = t.app.join("d1/d2");
    fs::create_dir_all(&deep).unwrap();
    // app/d1/d2/l -> ../../sub = app/sub; from app/d2 it would be <root>/sub.
    std::os::unix::fs::symlink("../../sub", deep.join("l")).unwrap();
    let to = t.app.join("d2");
    t.refused(
        "rename",
        &to,
        json!({ "from": deep.display().to_string(), "to": to.display().to_string() }),
        "symbolic link",
    );
    assert!(deep.join("l").symlink_metadata().is_ok());
    assert!(!to.exists());
}

#[test]
fn a_hard_link_from_the_read_only_grant_into_the_writable_one_is_refused() {
    let t = tree();
    let to = t.app.join("stolen");
    t.refused(
        "hard-link",
        &to,
        json!({ "from": t.protected.join("x").display().to_string(), "to": to.display().to_string() }),
        &path_grant(&t.protected, false),
    );
    assert!(!to.exists());
    t.protected_untouched();
}

#[test]
fn a_hard_link_of_a_file_outside_every_grant_is_refused_naming_the_grant() {
    let t = tree();
    let to = t.app.join("stolen");
    t.refused(
        "hard-link",
        &to,
        json!({ "from": t.outside.join("secret").display().to_string(), "to": to.display().to_string() }),
        &path_grant(&t.outside, false),
    );
    assert!(!to.exists());
    t.outside_untouched();
}

#[test]
fn the_nested_read_only_grant_is_not_written_through_dot_or_dotdot() {
    let t = tree();
    let grant = path_grant(&t.protected, false);
    for spelled in [
        format!("{}/./protected/x", t.app.display()),
        format!("{}/sub/../protected/x", t.app.display()),
        format!("{}/./protected/new", t.app.display()),
    ] {
        t.refused("write-file", Path::new(&spelled), json!({}), &grant);
        t.refused(
            "append",
            Path::new(&spelled.replace("new", "x")),
            json!({}),
            &grant,
        );
    }
    t.protected_untouched();
}

#[test]
fn the_nested_read_only_grant_is_not_written_through_a_symlink_already_there() {
    let t = tree();
    std::os::unix::fs::symlink("protected", t.app.join("door")).unwrap();
    let grant = path_grant(&t.protected, false);
    t.refused("write-file", &t.app.join("door/x"), json!({}), &grant);
    t.refused("write-file", &t.app.join("door/new"), json!({}), &grant);
    t.refused("mkdir", &t.app.join("door/newdir"), json!({}), &grant);
    t.protected_untouched();
    // Reading through it is fine: the grant is read-only, not hidden.
    let a = t.attack("read-file", &t.app.join("door/x"), json!({}));
    assert_eq!(
        (a.status, a.detail.as_str()),
        (HealthStatus::Healthy, "keep")
    );
}

#[test]
fn a_file_is_not_created_through_a_dangling_symlink_into_the_read_only_grant() {
    let t = tree();
    std::os::unix::fs::symlink("protected/new", t.app.join("dangling")).unwrap();
    t.refused(
        "write-file",
        &t.app.join("dangling"),
        json!({}),
        "does not exist",
    );
    t.protected_untouched();
}

#[test]
fn mkdir_unlink_rmdir_rename_and_set_times_inside_the_nested_read_only_grant_are_refused() {
    let t = tree();
    fs::create_dir(t.protected.join("d")).unwrap();
    let before = fs::metadata(t.protected.join("x"))
        .unwrap()
        .modified()
        .unwrap();
    let via = |rest: &str| PathBuf::from(format!("{}/./protected/{rest}", t.app.display()));
    let grant = path_grant(&t.protected, false);
    t.refused("mkdir", &via("newdir"), json!({}), &grant);
    t.refused("unlink", &via("x"), json!({}), &grant);
    t.refused("rmdir", &via("d"), json!({}), &grant);
    t.refused(
        "rename",
        &via("x"),
        json!({ "from": via("x").display().to_string(), "to": t.app.join("moved").display().to_string() }),
        &grant,
    );
    t.refused(
        "rename",
        &via("y"),
        json!({ "from": t.app.join("ok.txt").display().to_string(), "to": via("y").display().to_string() }),
        &grant,
    );
    t.refused("set-times", &via("x"), json!({}), &grant);
    assert!(t.protected.join("d").is_dir());
    assert!(!t.protected.join("newdir").exists() && !t.protected.join("y").exists());
    assert!(!t.app.join("moved").exists());
    assert_eq!(
        fs::metadata(t.protected.join("x"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    assert_eq!(fs::read_to_string(t.protected.join("x")).unwrap(), "keep");
}

#[test]
fn reads_writes_lists_and_stats_outside_every_grant_name_the_grant() {
    let t = tree();
    let secret = t.outside.join("secret");
    let a = t.refused(
        "read-file",
        &secret,
        json!({}),
        &path_grant(&t.outside, true),
    );
    assert!(!a.detail.contains("secret"), "{}", a.detail);
    t.refused(
        "write-file",
        &t.outside.join("new"),
        json!({}),
        &path_grant(&t.outside, false),
    );
    t.refused("stat", &secret, json!({}), &path_grant(&t.outside, true));
    t.refused(
        "readlink",
        &secret,
        json!({}),
        &path_grant(&t.outside, true),
    );
    let a = t.refused(
        "list-dir",
        &t.outside.join("."),
        json!({}),
        &format!("read {}", t.outside.display()),
    );
    assert!(!a.detail.contains("secret"), "{}", a.detail);
    // A path that does not exist gets the same kind of answer: a refusal
    // does not reveal what exists.
    let missing = t.outside.join("no-such-file");
    let b = t.refused(
        "read-file",
        &missing,
        json!({}),
        &path_grant(&t.outside, true),
    );
    assert_eq!(
        a.detail.replace("list", "read"),
        b.detail.replace("list", "read")
    );
    t.outside_untouched();
}

#[test]
fn the_root_reveals_nothing() {
    let t = tree();
    let a = t.refused("list-dir", Path::new("/"), json!({}), "ro:/");
    for name in ["etc", "usr", "proc", "tmp"] {
        assert!(!a.detail.split(',').any(|n| n == name), "{}", a.detail);
    }
    t.refused("stat", Path::new("/"), json!({}), "ro:/");
    t.refused(
        "read-file",
        Path::new("/etc/hostname"),
        json!({}),
        "ro:/etc",
    );
    t.refused(
        "write-file",
        Path::new("/pwned"),
        json!({}),
        "grants.paths = [\"/pwned\"]",
    );
    assert!(!Path::new("/pwned").exists());
}

#[test]
fn an_ungranted_name_is_not_looked_up() {
    let t = tree();
    let name = "c2VjcmV0.exfil.invalid";
    let call =
        Call::new("hostile", json!({ "attack": "lookup", "target": name })).tcp("localhost:25");
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Unhealthy, "{}", a.detail);
    assert!(
        a.denials
            .iter()
            .any(|d| d.contains(name)
                && d.contains("grants.tcp = [\"c2VjcmV0.exfil.invalid:PORT\"]")),
        "{:?}",
        a.denials
    );
    // Without any tcp grant the lookup is refused the same way.
    let call = Call::new("hostile", json!({ "attack": "lookup", "target": name }));
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Unhealthy, "{}", a.detail);
    assert!(
        a.denials.iter().any(|d| d.contains("dns")),
        "{:?}",
        a.denials
    );
    t.next_call_works();
}

#[test]
fn a_granted_name_resolves() {
    let t = tree();
    let call = Call::new(
        "hostile",
        json!({ "attack": "lookup", "target": "localhost" }),
    )
    .tcp("localhost:25");
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
    assert!(
        a.detail.contains("127.0.0.1") || a.detail.contains("::1"),
        "{}",
        a.detail
    );
    assert!(a.denials.is_empty(), "{:?}", a.denials);
    // An IP literal needs no lookup and is not refused here.
    let call = Call::new(
        "hostile",
        json!({ "attack": "lookup", "target": "127.0.0.1" }),
    )
    .tcp("localhost:25");
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
}

#[test]
fn links_that_stay_inside_the_grant_still_work() {
    let t = tree();
    fs::create_dir_all(t.app.join("releases/v1")).unwrap();
    fs::write(t.app.join("releases/v1/VERSION"), "v1").unwrap();
    fs::create_dir_all(t.app.join("config")).unwrap();
    fs::create_dir_all(t.app.join("storage")).unwrap();
    fs::write(t.app.join("config/app.ini"), "ini").unwrap();
    let current = t.app.join("current");
    let call = t
        .call(
            "symlink",
            &current,
            json!({ "original": "releases/v1", "link": current.display().to_string() }),
        )
        .exec(&format!("cat {}/VERSION", current.display()));
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
    assert_eq!(fs::read_link(&current).unwrap(), Path::new("releases/v1"));
    let ini = t.app.join("storage/ini");
    let call = t
        .call(
            "symlink",
            &ini,
            json!({ "original": "../config/app.ini", "link": ini.display().to_string(), "cat": "cat" }),
        )
        .exec(&format!("cat {}", ini.display()));
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
    assert!(a.detail.contains("cat: ini"), "{}", a.detail);
    // Moving a link to where it still resolves inside the grant is fine.
    let tmp = t.app.join("current.tmp");
    fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink("releases/v1", &tmp).unwrap();
    let a = t.attack(
        "rename",
        &current,
        json!({ "from": tmp.display().to_string(), "to": current.display().to_string() }),
    );
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
    assert!(a.denials.is_empty(), "{:?}", a.denials);
    // And a hard link within the writable grant.
    let a = t.attack(
        "hard-link",
        &t.app.join("hl"),
        json!({ "from": t.app.join("config/app.ini").display().to_string(),
                "to": t.app.join("hl").display().to_string() }),
    );
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
}

#[test]
fn a_directory_holding_the_read_only_grant_is_not_moved() {
    let t = tree();
    let deep = t.app.join("a/locked");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("x"), "keep").unwrap();
    let call = Call::new(
        "hostile",
        json!({ "attack": "rename", "target": "",
                "extra": { "from": t.app.join("a").display().to_string(),
                           "to": t.app.join("b").display().to_string() } }),
    )
    .path(&t.app)
    .read_only(&deep);
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Unhealthy, "{}", a.detail);
    assert!(
        a.denials
            .iter()
            .any(|d| d.contains("holds the read-only grant")),
        "{:?}",
        a.denials
    );
    assert_eq!(fs::read_to_string(deep.join("x")).unwrap(), "keep");
    assert!(!t.app.join("b").exists());
    t.next_call_works();
}
