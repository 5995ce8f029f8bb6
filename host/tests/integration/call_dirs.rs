//! The directories a call is lent (its commands' working directory and
//! the empty root behind the guest's `/`) are private to the call: the
//! runtime hands a directory to a later call only when it came back empty
//! and intact (`host/sandbox/src/scratch.rs`), so nothing one call's
//! commands leave there reaches another call.

use crate::common::*;
use serde_json::json;
use std::path::Path;

/// Run `script` with `sh -c` in the default working directory of a call
/// of the hostile plugin; its output.
fn in_call_workdir(script: &str, s: &Scratch) -> String {
    let call = Call::new(
        "hostile",
        json!({ "attack": "exec-in", "extra": { "program": "sh", "args": ["-c", script] } }),
    )
    .exec("sh -c *");
    allowed(&call, s).replace("\\n", "\n")
}

#[test]
fn files_a_command_leaves_in_its_working_directory_never_reach_a_later_call() {
    let s = scratch();
    let first = in_call_workdir("pwd; stat -c %a .; echo secret > left-behind", &s);
    let mut lines = first.lines();
    let first_dir = lines.next().expect("pwd").trim().to_string();
    assert_eq!(
        lines.next().map(str::trim),
        Some("700"),
        "the working directory is private: {first}"
    );
    assert!(
        !Path::new(&first_dir).exists(),
        "a working directory a command wrote to is removed after the call: {first_dir}"
    );

    let second = in_call_workdir("pwd; ls -A", &s);
    let mut lines = second.lines();
    assert_ne!(lines.next().map(str::trim), Some(first_dir.as_str()));
    assert_eq!(
        lines.next(),
        None,
        "a later call's working directory is empty: {second}"
    );
}

#[test]
fn a_working_directory_a_command_opened_up_is_not_lent_again() {
    let s = scratch();
    let out = in_call_workdir("pwd; chmod 777 .", &s);
    let dir = out.lines().next().expect("pwd").trim().to_string();
    assert!(
        !Path::new(&dir).exists(),
        "an empty directory whose mode a command changed is removed, not reused: {dir}"
    );
    let next = in_call_workdir("stat -c %a .; ls -A", &s);
    assert_eq!(next.trim(), "700", "{next}");
}
