//! Attacks on what rewind shares with others: docker's `config.json`
//! (registry credentials), a store other hosts write (chunk indexes,
//! fleets), and the project `plugins new` writes. Each case asserts the
//! attack is refused, the message names what was refused and why, and
//! nothing happened outside.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `rewind ARGS` in `dir` with nothing of the caller's registry or
/// docker environment, and `env` added.
fn rewind(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rewind"));
    command
        .args(args)
        .current_dir(dir)
        .env("REWIND_CACHE_DIR", dir.join("cache"))
        .env("REWIND_STORE", dir.join("store"))
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env_remove("REWIND_CONFIG")
        .env_remove("REWIND_REGISTRY_USERNAME")
        .env_remove("REWIND_REGISTRY_PASSWORD")
        .env_remove("REWIND_REGISTRY_TOKEN")
        .env_remove("REWIND_HOST");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn executable(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A push to a registry that is not there: the credentials are looked up
/// first, so whatever a docker config makes rewind run, it runs here.
fn push(dir: &Path, env: &[(&str, &str)]) -> Output {
    std::fs::write(dir.join("plugin.wasm"), b"\0asm").unwrap();
    rewind(
        dir,
        &[
            "plugins",
            "push",
            "plugin.wasm",
            "oci://127.0.0.1:9/team/plugin:1.0.0",
        ],
        env,
    )
}

/// `credsStore` or `credHelpers` naming a path: docker_credential runs
/// `docker-credential-<name>`, so `x/../evil` ran
/// `./docker-credential-x/../evil`, a program whoever can write the
/// working directory chooses, with rewind's rights.
#[test]
fn a_docker_credential_helper_named_as_a_path_is_never_run() {
    for (key, name) in [
        ("credsStore", "x/../evil"),
        ("credHelpers", "x/../evil"),
        (
            "credsStore",
            "x/../../../../../../../../tmp/../PLACEHOLDER/evil",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        std::fs::create_dir_all(dir.path().join("docker-credential-x")).unwrap();
        executable(
            &dir.path().join("evil"),
            &format!(
                "#!/bin/sh\ntouch {}\nprintf '{{\"Username\":\"u\",\"Secret\":\"s\"}}'\n",
                marker.display()
            ),
        );
        let name = name.replace(
            "PLACEHOLDER",
            dir.path().to_str().unwrap().trim_start_matches('/'),
        );
        let config = if key == "credsStore" {
            serde_json::json!({ "credsStore": name })
        } else {
            serde_json::json!({ "credHelpers": { "127.0.0.1:9": name } })
        };
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::write(dir.path().join("docker/config.json"), config.to_string()).unwrap();

        let out = push(dir.path(), &[]);
        assert!(
            !marker.exists(),
            "{key} = {name:?} ran the program\n{}",
            show(&out)
        );
        assert!(!out.status.success(), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a program name"), "{}", show(&out));
        assert!(stderr.contains(key), "{}", show(&out));
        assert!(stderr.contains("config.json"), "{}", show(&out));
    }
}

/// A helper that fails may print the secret it holds on stdout: the
/// message repeats its stderr only, without terminal escapes.
#[test]
fn a_failing_credential_helper_s_stdout_is_not_repeated_and_its_stderr_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    executable(
        &bin.join("docker-credential-leaky"),
        "#!/bin/sh\nread registry\necho 'TOPSECRET-PASSWORD'\nprintf 'no such item\\033]0;owned\\007\\n' >&2\nexit 1\n",
    );
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    std::fs::write(
        dir.path().join("docker/config.json"),
        r#"{"credsStore": "leaky"}"#,
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = push(dir.path(), &[("PATH", &path)]);
    assert!(!out.status.success(), "{}", show(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("TOPSECRET"), "{}", show(&out));
    assert!(!all.contains('\u{1b}'), "{}", show(&out));
    assert!(
        all.contains("docker-credential-leaky failed: no such item"),
        "{}",
        show(&out)
    );
}

/// A docker config that is a FIFO (or a device) never ends the read: it
/// is refused at once, not waited on; one larger than any docker writes
/// is refused without being read whole.
#[test]
fn a_docker_config_that_is_a_fifo_or_huge_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let status = Command::new("mkfifo")
        .arg(docker.join("config.json"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(dir.path().join("plugin.wasm"), b"\0asm").unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args([
            "plugins",
            "push",
            "plugin.wasm",
            "oci://127.0.0.1:9/team/plugin:1.0.0",
        ])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("DOCKER_CONFIG", &docker)
        .env("REWIND_CACHE_DIR", dir.path().join("cache"))
        .env_remove("REWIND_REGISTRY_USERNAME")
        .env_remove("REWIND_REGISTRY_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("rewind blocked on a FIFO docker config");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{}",
        show(&out)
    );

    std::fs::remove_file(docker.join("config.json")).unwrap();
    let mut huge = br#"{"auths": {"127.0.0.1:9": {"auth": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'A', 8 << 20));
    huge.extend(br#""}}}"#);
    std::fs::write(docker.join("config.json"), huge).unwrap();
    let out = push(dir.path(), &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("more than the 1048576"),
        "{}",
        show(&out)
    );
}

/// Run `rewind ARGS` in `dir`, killed after `limit`: `None` if it had to be.
fn rewind_within(dir: &Path, args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(args)
        .current_dir(dir)
        .env("REWIND_CACHE_DIR", dir.join("cache"))
        .env_remove("REWIND_CONFIG")
        .env_remove("REWIND_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

fn local_fleet(dir: &Path, host: &str) {
    std::fs::write(
        dir.join("rewind.toml"),
        format!(
            "[project]\nname = \"shop\"\n[store]\nurl = \"{}\"\nfleet = true\nhost = \"{host}\"\n",
            dir.join("fleet").display()
        ),
    )
    .unwrap();
}

/// Another host of a fleet store in a shared directory (NFS) puts a FIFO
/// where a store file belongs: `fleet status` (and the host whose store
/// it is) must report it, not block on it for ever: the local backend
/// opens store files non-blocking and refuses what is not a regular file
/// (host/store/src/backend.rs, `open_regular`).
#[test]
fn a_fifo_in_another_hosts_store_does_not_hang_fleet_status() {
    let dir = tempfile::tempdir().unwrap();
    local_fleet(dir.path(), "good");
    let evil = dir.path().join("fleet/hosts/evil");
    std::fs::create_dir_all(&evil).unwrap();
    let status = Command::new("mkfifo")
        .arg(evil.join("VERSION"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = rewind_within(dir.path(), &["fleet", "status"], Duration::from_secs(20))
        .expect("fleet status blocked on a FIFO in hosts/evil");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("evil"),
        "{}",
        show(&out)
    );
}

/// A host name from REWIND_HOST that would leave `hosts/<host>/` or
/// alias another host (`..`, `/`, empty, case, look-alike characters,
/// too long) is refused naming the variable, and nothing is created.
#[test]
fn a_host_name_from_rewind_host_cannot_leave_its_prefix_or_alias_another() {
    let long = "a".repeat(254);
    for host in [
        "..",
        ".",
        "../other",
        "a/../other",
        "/abs",
        "",
        "Other",
        "othe\u{0440}",
        "ｏther",
        "other\u{200b}",
        "a\\b",
        "-rf",
        ".hidden",
        long.as_str(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rewind.toml"),
            format!(
                "[project]\nname = \"shop\"\n[store]\nurl = \"{}\"\nfleet = true\n",
                dir.path().join("fleet").display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
            .args(["status"])
            .current_dir(dir.path())
            .env("REWIND_CACHE_DIR", dir.path().join("cache"))
            .env_remove("REWIND_CONFIG")
            .env("REWIND_HOST", host)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{host:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("REWIND_HOST"), "{host:?}: {}", show(&out));
        let hosts = dir.path().join("fleet/hosts");
        let made: Vec<_> = std::fs::read_dir(&hosts)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(made.is_empty(), "{host:?} made {made:?}");
        let mut top: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "cache")
            .collect();
        top.sort();
        assert!(
            top == ["rewind.toml"] || top == ["fleet", "rewind.toml"],
            "{host:?}: {top:?}"
        );
    }
}

fn plugins_new(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["plugins", "new"];
    all.extend(args);
    rewind(dir, &all, &[])
}

/// NAME never leaves DIR, and DIR/NAME that exists in any form (a file,
/// a directory, a link, a dangling link) is refused with nothing written
/// through it.
#[test]
fn plugins_new_writes_only_a_new_directory_named_by_a_plugin_name() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("Cargo.toml"), "VICTIM").unwrap();
    for name in [
        "../victim",
        "a/b",
        "/tmp/x",
        "..",
        ".",
        "Redis",
        "a b",
        "a--b",
        "",
    ] {
        let out = plugins_new(dir.path(), &[name, "--dir", dir.path().to_str().unwrap()]);
        assert!(!out.status.success(), "{name:?}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a plugin name"),
            "{name:?}: {}",
            show(&out)
        );
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(&victim, work.join("linked")).unwrap();
    std::os::unix::fs::symlink(victim.join("gone"), work.join("dangling")).unwrap();
    std::fs::write(work.join("file"), "FILE").unwrap();
    std::fs::create_dir(work.join("existing")).unwrap();
    for (name, lang) in [
        ("linked", "rust"),
        ("dangling", "rust"),
        ("file", "python"),
        ("existing", "python"),
    ] {
        let out = plugins_new(
            dir.path(),
            &[name, "--dir", work.to_str().unwrap(), "--lang", lang],
        );
        assert!(!out.status.success(), "{name}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("already exists")
                || String::from_utf8_lossy(&out.stderr).contains("File exists"),
            "{name}: {}",
            show(&out)
        );
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("Cargo.toml")).unwrap(),
        "VICTIM"
    );
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
    assert!(!victim.join("gone").exists());
    assert_eq!(std::fs::read_to_string(work.join("file")).unwrap(), "FILE");
    assert_eq!(std::fs::read_dir(work.join("existing")).unwrap().count(), 0);
}

/// DIR shared with another user who can rename in it (a team directory
/// without the sticky bit): while `plugins new` writes DIR/NAME, they
/// swap it for a link to another directory of ours. Nothing may be
/// written, truncated or chmod-ed through the link: each run either
/// writes its own new directory or stops naming the swap.
#[test]
fn plugins_new_never_writes_through_a_directory_swapped_while_it_writes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(victim.join("src")).unwrap();
    let planted = [
        "Cargo.toml",
        "README.md",
        "test.sh",
        ".gitignore",
        "src/lib.rs",
    ];
    for file in planted {
        std::fs::write(victim.join(file), "VICTIM").unwrap();
    }
    let target = shared.join("swapped");
    let (stop, won) = (AtomicBool::new(false), AtomicBool::new(false));
    let runs = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                if std::fs::rename(&target, shared.join(format!("moved-{k}"))).is_ok() {
                    k += 1;
                    if std::os::unix::fs::symlink(&victim, &target).is_ok() {
                        won.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        // Asserted after the racer stops (a panic in the scope would wait
        // for it for ever).
        let runs: Vec<Output> = (0..60)
            .map(|_| {
                let _ = std::fs::remove_file(&target);
                plugins_new(dir.path(), &["swapped", "--dir", shared.to_str().unwrap()])
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        runs
    });
    for file in planted {
        assert_eq!(
            std::fs::read_to_string(victim.join(file)).unwrap(),
            "VICTIM",
            "{file} was written through the swapped link"
        );
    }
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        5,
        "files were added to the victim"
    );
    for out in &runs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success()
                || stderr.contains("another user replaced it")
                || stderr.contains("File exists")
                || stderr.contains("already exists"),
            "{}",
            show(out)
        );
    }
    eprintln!(
        "the racer swapped the directory in: {}",
        won.load(Ordering::Relaxed)
    );
}

/// A checkout whose path holds `"` (or a newline): the generated
/// Cargo.toml names its sdk/ as data, and stays valid TOML that adds
/// nothing (no `build =`, no other dependency).
#[test]
fn plugins_new_writes_a_checkout_path_into_cargo_toml_as_a_string() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("co\"\nbuild = \"evil.rs\"\n[x]\ny = \"");
    std::fs::create_dir_all(checkout.join("sdk")).unwrap();
    std::fs::create_dir_all(checkout.join("wit")).unwrap();
    std::fs::create_dir_all(checkout.join("work")).unwrap();
    std::fs::write(
        checkout.join("sdk/Cargo.toml"),
        "[package]\nname = \"rewind-sdk\"\n",
    )
    .unwrap();
    std::fs::write(checkout.join("wit/hooks.wit"), "").unwrap();
    let out = plugins_new(
        dir.path(),
        &["demo", "--dir", checkout.join("work").to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = std::fs::read_to_string(checkout.join("work/demo/Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(manifest.get("x").is_none(), "{text}");
    let package = manifest["package"].as_table().unwrap();
    assert!(package.get("build").is_none(), "{text}");
    assert_eq!(
        manifest["dependencies"]["rewind-sdk"]["path"]
            .as_str()
            .unwrap(),
        checkout.join("sdk").to_str().unwrap(),
        "{text}"
    );
}

/// The error text a hoarder hook ends with (it always fails, saying how
/// many artifacts it held open and why the next was refused).
fn hoarded(outcome: rewind::sandbox::CallOutcome) -> String {
    outcome
        .result
        .expect_err("the hoarder reports through its error")
        .message
}

/// Every open artifact holds host memory the guest's memory limit does
/// not count (a writer's chunk buffer and storing threads, a reader's
/// chunks fetched ahead on threads of its own: tens of MiB each). A guest
/// may hold only `MAX_OPEN_ARTIFACTS` (8) open at once, whatever its
/// resource handles allow (2,000); dropping one frees its place.
#[test]
fn a_guest_cannot_make_the_host_hold_more_than_eight_open_artifacts() {
    let s = crate::common::scratch();
    let plugin = crate::common::load("hoarder");
    let mut call =
        crate::common::Call::new("hoard", serde_json::json!({ "count": 50, "size": 4096 }));
    call.limits.artifact_bytes = 1 << 30;
    let message = hoarded(call.run(&plugin, &s.store, rewind::sandbox::HookInput::Backup));
    assert!(
        message.contains("held 8 open; then: ")
            && message.contains("cannot create artifact `held8`: a hook call may have at most 8 artifacts open at once"),
        "{message}"
    );

    let saved = crate::common::Call::new("hoard", serde_json::json!({ "count": 1, "size": 4096 }))
        .backup(&plugin, &s.store);
    let call = crate::common::Call::new("hoard", serde_json::json!({ "count": 50 }));
    let message = hoarded(call.run(
        &plugin,
        &s.store,
        rewind::sandbox::HookInput::Restore(&saved),
    ));
    assert!(
        message.contains("held 8 open; then: ")
            && message.contains(
                "cannot open artifact `held`: a hook call may have at most 8 artifacts open at once"
            ),
        "{message}"
    );
    // Eight at once, dropped, then one more: the places are freed.
    let call = crate::common::Call::new("hoard", serde_json::json!({ "count": 8 }));
    let message = hoarded(call.run(
        &plugin,
        &s.store,
        rewind::sandbox::HookInput::Restore(&saved),
    ));
    assert!(message.ends_with("invalid input: held 8 open"), "{message}");
}

/// In a fleet store on a shared directory, another host makes this
/// host's `hosts/<host>` (or `hosts/` itself) a link to another host's
/// store: this host must refuse it, never run against (or roll back to)
/// the other host's backups.
#[test]
fn a_host_store_made_a_link_to_another_hosts_is_refused() {
    for linked in ["hosts/good", "hosts"] {
        let dir = tempfile::tempdir().unwrap();
        // `other` has a store of its own (made by a command run as it).
        local_fleet(dir.path(), "other");
        let out = rewind(dir.path(), &["status"], &[]);
        assert!(out.status.success(), "{}", show(&out));
        let fleet = dir.path().join("fleet");
        assert!(fleet.join("hosts/other/VERSION").is_file());
        if linked == "hosts" {
            std::fs::rename(fleet.join("hosts"), dir.path().join("elsewhere")).unwrap();
            std::fs::create_dir(dir.path().join("elsewhere/good")).unwrap();
            std::os::unix::fs::symlink(dir.path().join("elsewhere"), fleet.join("hosts")).unwrap();
        } else {
            std::os::unix::fs::symlink(fleet.join("hosts/other"), fleet.join("hosts/good"))
                .unwrap();
        }
        local_fleet(dir.path(), "good");
        let out = rewind(dir.path(), &["status"], &[]);
        assert!(!out.status.success(), "{linked}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is a symbolic link, not a directory"),
            "{linked}: {}",
            show(&out)
        );
    }
}
