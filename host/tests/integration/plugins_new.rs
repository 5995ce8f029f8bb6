//! `rewind plugins new`: the project it writes builds (Rust for
//! wasm32-wasip2 on this checkout's SDK; Python with componentize-py), its
//! own test.sh passes (every hook through `rewind hook`, refused without its
//! grant), and it can be pushed and run from a registry. Bad input is
//! refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{Project, componentize_py, rewind_in, show};
use crate::servers::OciRegistry;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `rewind plugins new NAME ARGS… --dir <a temp dir>`, which must succeed:
/// the temp dir and the project's directory in it.
fn new_project(name: &str, args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let dir_arg = root.display().to_string();
    let mut all = vec!["plugins", "new", name, "--dir", &dir_arg];
    all.extend(args);
    let out = rewind_in(&root, &all);
    assert!(out.status.success(), "{}", show(&out));
    (dir, root.join(name))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run a generated project's test.sh against this rewind.
fn run_test_script(project: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(project.join("test.sh"));
    cmd.env("REWIND", env!("CARGO_BIN_EXE_rewind"))
        .env_remove("REWIND_CONFIG")
        .env_remove("REWIND_STORE");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

#[test]
fn a_new_rust_plugin_builds_passes_its_test_and_is_published() {
    let (dir, project) = new_project("note-keeper", &["--hooks", "backup,restore,health,notify"]);
    let root = dir.path().canonicalize().unwrap();
    for file in ["Cargo.toml", "src/lib.rs", "README.md", "test.sh"] {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    let cargo = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains(&format!(
            "rewind-sdk = {{ path = \"{}\" }}",
            repo().join("sdk").display()
        )),
        "outside the checkout, it depends on this checkout's SDK by path:\n{cargo}"
    );
    let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("export_plugin!(NoteKeeper: backup, restore, health, notify)"),
        "{lib}"
    );

    // What an author starts from is formatted as rustfmt writes it.
    let out = Command::new("cargo")
        .args(["fmt", "--check"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));

    // The versions this repository builds with, so the build needs no
    // registry index; a target dir of its own that outlives the test, so
    // only the first run compiles wit-bindgen.
    std::fs::copy(repo().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    let target = repo().join("target/plugins-new");
    let cache = root.join("cache");
    let out = run_test_script(
        &project,
        &[("CARGO_TARGET_DIR", &target), ("REWIND_CACHE_DIR", &cache)],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("ok: every hook ran in the sandbox"),
        "{}",
        show(&out)
    );
    let wasm = target.join("wasm32-wasip2/release/note_keeper.wasm");

    // Published and used from a registry like any plugin.
    let registry = OciRegistry::start();
    let reference = registry.reference("team/note-keeper:0.1.0");
    let mut user = Project::new("");
    user.set_env(
        "REWIND_PLUGIN_CACHE",
        &root.join("plugin-cache").display().to_string(),
    );
    let app = user.root().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("notes.txt"), "v1\n").unwrap();
    let out = user.rewind(&["plugins", "push", &wasm.display().to_string(), &reference]);
    assert!(out.status.success(), "{}", show(&out));
    user.write(&format!(
        "[plugins.notes]\nsource = \"{reference}\"\ngrants.paths = [\"{app}\"]\n\
         params = {{ file = \"{app}/notes.txt\" }}\n\n[chains]\nbackup = [\"notes\"]\n\
         rollback = [\"notes\"]\n\n[guard]\nhealth = [\"notes\"]\n",
        app = app.display()
    ));
    let out = user.rewind(&["plugins", "lock"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = user.rewind(&["check"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("note-keeper 0.1.0 (rewind:hooks@0.1.0) pinned and loaded"),
        "{}",
        show(&out)
    );
    let out = user.rewind(&["backup"]);
    assert!(out.status.success(), "{}", show(&out));
    std::fs::write(app.join("notes.txt"), "v2\n").unwrap();
    let out = user.rewind(&["rollback", "--yes"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        std::fs::read_to_string(app.join("notes.txt"))
            .unwrap()
            .starts_with("v1\n"),
        "the rollback put the file back"
    );
}

#[test]
fn a_new_python_plugin_builds_and_passes_its_test() {
    let (dir, project) = new_project(
        "py-notes",
        &["--lang", "python", "--hooks", "backup,revert,health,notify"],
    );
    let root = dir.path().canonicalize().unwrap();
    let world = std::fs::read_to_string(project.join("wit/world.wit")).unwrap();
    assert!(
        world.contains("include rewind:hooks/revert-export@0.1.0;"),
        "{world}"
    );
    assert!(!world.contains("restore-export"), "{world}");
    // The WIT it builds against is the one this host runs.
    assert_eq!(
        std::fs::read_to_string(project.join("wit/deps/rewind-hooks/types.wit")).unwrap(),
        std::fs::read_to_string(repo().join("wit/types.wit")).unwrap()
    );
    let started = std::time::Instant::now();
    let out = run_test_script(
        &project,
        &[
            ("COMPONENTIZE_PY", &componentize_py()),
            ("REWIND_CACHE_DIR", &root.join("cache")),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("ok: every hook ran in the sandbox"),
        "{}",
        show(&out)
    );
    eprintln!(
        "plugins new --lang python: build and test.sh in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn plugins_new_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let dir_arg = root.display().to_string();
    let refuse = |args: &[&str], needle: &str| {
        let mut all = vec!["plugins", "new"];
        all.extend(args);
        all.extend(["--dir", &dir_arg]);
        let out = rewind_in(&root, &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            show(&out)
        );
    };
    refuse(&["Bad_Name"], "`Bad_Name` is not a plugin name");
    refuse(
        &["ok-name", "--hooks", "backup,rollback"],
        "unknown hook `rollback`",
    );
    refuse(
        &["ok-name", "--hooks", "backup,rollback"],
        "backup, restore, revert, health, notify",
    );
    refuse(&["ok-name", "--lang", "cobol"], "cobol");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "nothing was written"
    );

    std::fs::create_dir(root.join("taken")).unwrap();
    std::fs::write(root.join("taken/keep.txt"), "mine").unwrap();
    refuse(&["taken"], "already exists");
    assert_eq!(
        std::fs::read_to_string(root.join("taken/keep.txt")).unwrap(),
        "mine"
    );
    let out = rewind_in(&root, &["plugins", "new", "x", "--dir", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("no such directory"),
        "{}",
        show(&out)
    );
}
