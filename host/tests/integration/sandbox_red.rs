//! Red-team cases, class by class: what an independent hostile suite would
//! try first. Each test states the class; the ones that hold stay as
//! regression tests of the class.
//!
//! Layout of every tree: `app` granted read-write, `app/protected` granted
//! read-only inside it (with a file `x` and a directory `v1` holding
//! `conf`), `outside` granted nothing. The operator's own deployment link
//! `app/current -> protected/v1` (a release layout: rewind is a rollback
//! tool) lies in the read-write tree.

use std::fs;
use std::path::Path;

use rewind::bindings::rewind::hooks::types::HealthStatus;
use rewind::sandbox::HookInput;
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
    std::fs::create_dir_all(t.protected.join("v1")).unwrap();
    std::fs::write(t.protected.join("v1/conf"), "keep").unwrap();
    std::os::unix::fs::symlink("protected/v1", t.app.join("current")).unwrap();
    Tree(t)
}

impl Tree {
    /// A raw `wasi:filesystem` attack starting at the `app` preopen.
    fn raw(&self, attack: &str, extra: Value) -> Attack {
        let mut extra = extra;
        extra["dir"] = json!(self.app.display().to_string());
        self.run(&self.call(attack, "", extra))
    }

    fn refused(&self, what: &str, a: &Attack) {
        assert_eq!(
            a.status,
            HealthStatus::Unhealthy,
            "{what} succeeded: {}",
            a.detail
        );
        self.next_call_works();
    }

    fn next_call_works(&self) {
        let ok = self.app.join("ok.txt");
        let a = self.run(&self.call("write-file", &ok, json!({})));
        assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
        assert!(a.denials.is_empty(), "{:?}", a.denials);
    }

    /// Nothing in the read-only grant changed.
    fn protected_untouched(&self) {
        assert_eq!(
            fs::read_to_string(self.protected.join("x")).unwrap(),
            "keep"
        );
        assert_eq!(
            fs::read_to_string(self.protected.join("v1/conf")).unwrap(),
            "keep"
        );
        let mut names: Vec<_> = fs::read_dir(&self.protected)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["v1".to_string(), "x".to_string()]);
        let names: Vec<_> = fs::read_dir(self.protected.join("v1"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["conf".to_string()]);
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

// ---------------------------------------------------------------------------
// Class: `..` after a symbolic link. The policy normalises `current/../x` to
// `app/x` lexically; the kernel (and cap-std) resolve `current` first and
// climb out of *its target*, landing in `protected/x`.
// ---------------------------------------------------------------------------

#[test]
fn red_dotdot_after_a_symlink_cannot_create_in_a_read_only_grant() {
    let t = tree();
    let a = t.raw("red-create", json!({ "path": "current/../planted" }));
    t.refused("creating current/../planted", &a);
    let a = t.raw(
        "red-create",
        json!({ "path": "current/../planted-dir", "mkdir": true }),
    );
    t.refused("mkdir current/../planted-dir", &a);
    t.protected_untouched();
}

#[test]
fn red_dotdot_after_a_symlink_cannot_remove_or_truncate_in_a_read_only_grant() {
    let t = tree();
    let a = t.raw("red-unlink", json!({ "path": "current/../x" }));
    t.refused("unlink current/../x", &a);
    let a = t.raw("red-truncate", json!({ "path": "current/../x" }));
    t.refused("truncate current/../x", &a);
    t.protected_untouched();
}

#[test]
fn red_dotdot_after_a_symlink_cannot_move_or_link_a_read_only_file_out() {
    let t = tree();
    let a = t.raw(
        "red-rename",
        json!({ "path": "current/../x", "to": "stolen" }),
    );
    t.refused("rename current/../x", &a);
    let a = t.raw(
        "red-link",
        json!({ "path": "current/../x", "to": "linked" }),
    );
    t.refused("hard link current/../x", &a);
    // Nor move a file of ours in.
    fs::write(t.app.join("mine"), "mine").unwrap();
    let a = t.raw(
        "red-rename",
        json!({ "path": "mine", "to": "current/../mine" }),
    );
    t.refused("rename into current/../mine", &a);
    t.protected_untouched();
}

#[test]
fn red_dotdot_through_wasi_libc_cannot_write_in_a_read_only_grant() {
    // The same through std::fs (wasi-libc's path handling in between).
    let t = tree();
    let through = format!("{}/current/../x", p(&t.app));
    let a = t.run(&t.call("write-file", &through, json!({})));
    t.refused("std::fs::write current/../x", &a);
    let a = t.run(&t.call("unlink", &through, json!({})));
    t.refused("std::fs::remove_file current/../x", &a);
    t.protected_untouched();
}

#[test]
fn red_a_directory_opened_through_dotdot_is_where_the_kernel_put_it() {
    // Opening `current/..` for reading needs no check; the descriptor is
    // `protected`, whatever its lexical path says.
    let t = tree();
    let a = t.raw(
        "red-open-dir",
        json!({ "path": "current/..", "then": "planted" }),
    );
    t.refused("create inside the directory current/..", &a);
    let a = t.raw(
        "red-open-dir",
        json!({ "path": "current/..", "then": "planted", "mkdir": true }),
    );
    t.refused("mkdir inside the directory current/..", &a);
    // A directory opened through the link, then `..` from it: cap-std
    // keeps every descriptor its own root.
    let a = t.raw(
        "red-open-dir",
        json!({ "path": "current", "then": "../planted" }),
    );
    t.refused("create ../planted inside the directory current", &a);
    let a = t.raw(
        "red-open-dir",
        json!({ "path": "sub", "then": "../protected/planted" }),
    );
    t.refused("create ../protected/planted inside sub", &a);
    // Reading through `name/..` still works: only changes are refused.
    let through = format!("{}/current/../x", p(&t.app));
    let a = t.run(&t.call("read-file", &through, json!({})));
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
    assert_eq!(a.detail, "keep");
    t.protected_untouched();
}

#[test]
fn red_a_link_the_plugin_made_into_a_nested_writable_grant_cannot_climb_into_read_only() {
    // app rw, app/protected ro, app/protected/v1 rw again: a plugin's own
    // link `up -> protected/v1` is allowed (it lands in a writable grant),
    // and `up/..` is protected.
    let t = tree();
    fs::remove_file(t.app.join("current")).unwrap();
    let call = |attack: &str, extra: Value| {
        let mut extra = extra;
        extra["dir"] = json!(p(&t.app));
        t.call(attack, "", extra).path(&t.protected.join("v1"))
    };
    let a = t.run(&call(
        "red-symlink",
        json!({ "path": "up", "text": "protected/v1" }),
    ));
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
    let a = t.run(&call("red-create", json!({ "path": "up/../planted" })));
    t.refused("create up/../planted", &a);
    let a = t.run(&call("red-unlink", json!({ "path": "up/../x" })));
    t.refused("unlink up/../x", &a);
    t.protected_untouched();
}

// ---------------------------------------------------------------------------
// Class: links and renames across grants (as written, no `..` tricks).
// ---------------------------------------------------------------------------

#[test]
fn red_renaming_the_read_only_grant_root_or_its_parent_is_refused() {
    let t = tree();
    let a = t.raw("red-rename", json!({ "path": "protected", "to": "moved" }));
    t.refused("rename the ro grant root", &a);
    let a = t.raw(
        "red-rename",
        json!({ "path": "sub", "to": "protected/sub" }),
    );
    t.refused("rename into the ro grant", &a);
    t.protected_untouched();
}

#[test]
fn red_symlink_text_cannot_reach_outside_through_slashes_or_dots() {
    let t = tree();
    for text in [
        "//etc/shadow",
        "/../etc/shadow",
        "./../../outside/secret",
        "../../outside",
        "protected/x",
        "./protected",
        "",
    ] {
        let a = t.raw("red-symlink", json!({ "path": "l", "text": text }));
        assert_eq!(
            a.status,
            HealthStatus::Unhealthy,
            "symlink l -> {text:?} was made: {}",
            a.detail
        );
    }
    assert!(fs::symlink_metadata(t.app.join("l")).is_err());
    t.next_call_works();
    t.protected_untouched();
    t.outside_untouched();
}

#[test]
fn red_hard_link_of_a_read_only_file_is_refused() {
    let t = tree();
    let a = t.raw("red-link", json!({ "path": "protected/x", "to": "linked" }));
    t.refused("hard link protected/x", &a);
    let a = t.raw(
        "red-link",
        json!({ "path": "current/conf", "to": "linked" }),
    );
    t.refused("hard link through current/conf", &a);
    t.protected_untouched();
}

// ---------------------------------------------------------------------------
// Class: the catch-all preopen at `/`.
// ---------------------------------------------------------------------------

#[test]
fn red_the_catch_all_reveals_and_allows_nothing() {
    let t = tree();
    for (attack, target) in [
        ("list-dir", "/"),
        ("list-dir", "//"),
        ("list-dir", "/."),
        ("read-file", "/etc/passwd"),
        ("read-file", "//etc/passwd"),
        ("write-file", "/tmp/rewind-red-pwned"),
        ("mkdir", "/rewind-red-dir"),
        ("stat", "/etc"),
    ] {
        let a = t.run(&t.call(attack, target, json!({})));
        assert_eq!(
            a.status,
            HealthStatus::Unhealthy,
            "{attack} {target}: {}",
            a.detail
        );
    }
    assert!(!Path::new("/tmp/rewind-red-pwned").exists());
    assert!(!Path::new("/rewind-red-dir").exists());
    // Through the grant, climbing above it.
    let climb = format!("{}/../outside/secret", p(&t.app));
    let a = t.run(&t.call("read-file", &climb, json!({})));
    assert_eq!(a.status, HealthStatus::Unhealthy, "{}", a.detail);
    assert!(!a.detail.contains("secret"), "{}", a.detail);
    t.next_call_works();
}

// ---------------------------------------------------------------------------
// Class: parsing edge cases of paths (long, NUL, unicode, trailing slash).
// ---------------------------------------------------------------------------

#[test]
fn red_odd_paths_do_not_crash_the_host_or_slip_past() {
    let t = tree();
    let long = format!("{}/{}", p(&t.app), "a/".repeat(3000));
    let cases = [
        format!("{}/protected/x/", p(&t.app)),
        format!("{}/protected//x", p(&t.app)),
        format!("{}/protected/./x", p(&t.app)),
        format!("{}/protected/x\u{0}tail", p(&t.app)),
        format!("{}/protected/\u{202e}x", p(&t.app)),
        format!("{}/protected", p(&t.app)),
        format!("{}/protected/", p(&t.app)),
        long,
    ];
    for target in &cases {
        for attack in ["write-file", "mkdir", "unlink", "rmdir", "append"] {
            let a = t.run(&t.call(attack, target, json!({})));
            assert_eq!(
                a.status,
                HealthStatus::Unhealthy,
                "{attack} {target:?}: {}",
                a.detail
            );
        }
    }
    t.protected_untouched();
    t.next_call_works();
}

// ---------------------------------------------------------------------------
// Class: environment given to commands.
// ---------------------------------------------------------------------------

#[test]
fn red_a_command_cannot_be_given_an_ungranted_loader_or_pager_variable() {
    let t = tree();
    for name in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_GLOBAL",
        "PAGER",
        "BASH_ENV",
        "PATH",
        "ld_preload",
        "PGPASSWORD=x",
    ] {
        let call = t
            .call("exec-env", name, json!({}))
            .exec("env")
            .env("PGPASSWORD");
        let mut call = call;
        call.params["args"] = json!(["env"]);
        let a = t.run(&call);
        assert_eq!(
            a.status,
            HealthStatus::Unhealthy,
            "{name} reached the command: {}",
            a.detail
        );
    }
    t.next_call_works();
}

#[test]
fn red_a_command_does_not_inherit_the_hosts_environment() {
    let t = tree();
    let mut call = t.call("exec", "env", json!({})).exec("env");
    call.params["args"] = json!([]);
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
    // Health details reach the host with control characters escaped.
    let detail = a.detail.replace("\\n", "\n");
    let names: Vec<&str> = detail
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(names, vec!["PATH"], "{}", a.detail);
}

// ---------------------------------------------------------------------------
// Class: argument patterns (quoting, `**`, options smuggled in one token).
// ---------------------------------------------------------------------------

#[test]
fn red_arguments_outside_a_literal_pattern_are_refused() {
    let t = tree();
    for args in [
        vec!["-c", "core.sshCommand=touch /tmp/rewind-red-git", "status"],
        vec!["status", "--upload-pack=touch /tmp/rewind-red-git"],
        vec!["status "],
        vec!["status\0"],
        vec![" status"],
        vec!["Status"],
    ] {
        let mut call = t.call("exec", "git", json!({})).exec("git status");
        call.params["args"] = json!(args);
        let a = t.run(&call);
        assert_eq!(
            a.status,
            HealthStatus::Unhealthy,
            "git {args:?}: {}",
            a.detail
        );
    }
    assert!(!Path::new("/tmp/rewind-red-git").exists());
    t.next_call_works();
}

// ---------------------------------------------------------------------------
// Class: name lookups by IP-literal forms, and HTTP origin matching.
// ---------------------------------------------------------------------------

#[test]
fn red_odd_ip_literals_and_names_are_not_looked_up() {
    let t = tree();
    for name in [
        "0x7f.1",
        "2130706433",
        "127.1",
        "0177.0.0.1",
        "localhost",
        "smtp.example.com.attacker.example",
        "SMTP.EXAMPLE.COM.evil",
        "smtp.example.com\0.evil",
    ] {
        let call = t.call("lookup", name, json!({})).tcp("smtp.example.com:25");
        let a = t.run(&call);
        assert_eq!(
            a.status,
            HealthStatus::Unhealthy,
            "lookup {name:?}: {}",
            a.detail
        );
    }
    t.next_call_works();
}

#[test]
fn red_http_origin_is_the_host_connected_to_not_the_userinfo() {
    let t = tree();
    let server = crate::common::HttpServer::start(200, "loot");
    for url in [
        // Userinfo that looks like the granted origin, host elsewhere.
        format!("http://127.0.0.1:{}@evil.invalid/", server.port),
        "http://127.0.0.1@evil.invalid/".to_string(),
        // Another port on the granted host.
        format!("http://127.0.0.1:{}/", server.port + 1),
        // Same host, other scheme.
        format!("https://127.0.0.1:{}/", server.port),
        // Other spellings of loopback.
        format!("http://localhost:{}/", server.port),
        format!("http://[::ffff:127.0.0.1]:{}/", server.port),
        format!("http://2130706433:{}/", server.port),
    ] {
        let call = t.call("http", &url, json!({})).http(&server.origin());
        let a = t.run(&call);
        assert_eq!(a.status, HealthStatus::Unhealthy, "{url}: {}", a.detail);
        if url.contains('@') {
            // Refused before any lookup of `user@host` could leak `user`.
            assert!(
                a.detail.contains("credentials in a URL"),
                "{url}: {}",
                a.detail
            );
        }
    }
    assert_eq!(server.hits(), 0);
    // The granted origin itself works (so the refusals above mean something).
    let call = t
        .call("http", server.url("/"), json!({}))
        .http(&server.origin());
    let a = t.run(&call);
    assert_eq!(a.status, HealthStatus::Healthy, "{}", a.detail);
}

// ---------------------------------------------------------------------------
// Class: what a guest makes the host hold on disk. Hooks that return no
// artifacts (describe, health, notify) cannot store any; every byte a run's
// calls store, returned or not, counts against `limits.run_artifacts_mb`.
// ---------------------------------------------------------------------------

fn blob_files(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.join("blobs")];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn red_a_health_call_cannot_store_blobs() {
    let t = tree();
    let store_root = t.s.path().join("store");
    let before = blob_files(&store_root);
    let a = t.run(&t.call(
        "red-artifacts-from-health",
        "",
        json!({ "count": 5, "size": 4096 }),
    ));
    assert_eq!(a.status, HealthStatus::Unhealthy, "{}", a.detail);
    assert!(
        a.detail
            .contains("only backup, restore and revert hooks may store artifacts"),
        "{}",
        a.detail
    );
    assert_eq!(blob_files(&store_root), before, "health stored blobs");
}

/// The same attack in a backup hook, where storing is allowed: its outcome
/// comes back as the error text.
fn in_backup(t: &Tree, call: &Call) -> String {
    let outcome = call.run(&t.plugin, &t.s.store, HookInput::Backup);
    outcome
        .result
        .expect_err("the hostile backup reports through its error")
        .message
}

#[test]
fn red_the_per_call_artifact_quota_is_shared_by_every_writer_of_the_call() {
    let t = tree();
    let mut call = t.call(
        "red-artifacts-from-health",
        "",
        json!({ "count": 10, "size": 100_000 }),
    );
    call.limits.artifact_bytes = 250_000;
    let message = in_backup(&t, &call);
    assert!(message.ends_with("succeeded: stored 2"), "{message}");
}
