//! Hostile plugins against commands: programs a plugin can write, the fixed PATH, links a command follows, processes that outlive their command, working-directory races, read-only grants and commands.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.
//!
//! Run as root (as CI does) every case runs. As a normal user the cases
//! that need root say so and return early: a writable cgroup v2 hierarchy
//! (`cgroup_containment_…`: non-root falls back to the subreaper, which
//! `forced_subreaper_…` covers), mount namespaces (`…read_only_grant…`:
//! without root, `ro:` does not bind commands) and a grant of
//! `/usr/local/bin` (`a_bare_name_…`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Call, Project, Scratch, allowed, outcome, pin, refused, scratch};
use rewind::grants::risks::{COMMAND_PATH, code_execution_risks};
use rewind::grants::{ExecPattern, Grants, PathGrant};
use serde_json::{Value, json};

fn hostile(attack: &str, extra: Value) -> Call {
    Call::new("hostile", json!({ "attack": attack, "extra": extra }))
}

/// The command's output as the plugin reported it. The host escapes line
/// breaks and tabs in a health detail (they could forge lines on a
/// terminal); undo that to read the command's lines.
fn succeeded(call: &Call, s: &Scratch) -> String {
    allowed(call, s).replace("\\n", "\n").replace("\\t", "\t")
}

/// The host keeps running commands after a refused or killed one.
fn assert_host_still_works(s: &Scratch) {
    let call = hostile(
        "exec-in",
        json!({ "program": "echo", "args": ["still here"] }),
    )
    .exec("echo 'still here'");
    assert_eq!(succeeded(&call, s).trim(), "still here");
}

fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

/// A scratch directory by its real path (grants compare real paths).
fn dir(s: &Scratch, name: &str) -> PathBuf {
    let path = s.path().canonicalize().unwrap().join(name);
    fs::create_dir_all(&path).unwrap();
    path
}

fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Whether `pid` is gone (or a zombie nobody reaped yet) within 3 s.
fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                if state.starts_with('Z') || state.starts_with('X') {
                    return true;
                }
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pids(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("not a pid: {w:?} in {text:?}"))
        })
        .collect()
}

/// `REWIND_COMMAND_CONTAINMENT` for the duration of a test; tests that
/// depend on it take this lock. (Other tests running meanwhile may get the
/// forced mode too; every mode must pass them.)
static CONTAINMENT: Mutex<()> = Mutex::new(());

struct Forced(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

fn force_containment(mode: &str) -> Forced {
    let guard = CONTAINMENT.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: tests only; the host reads the variable through std::env.
    unsafe { std::env::set_var("REWIND_COMMAND_CONTAINMENT", mode) };
    Forced(guard)
}

impl Drop for Forced {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { std::env::remove_var("REWIND_COMMAND_CONTAINMENT") };
    }
}

// ---- programs a plugin can write -------------------------------------

#[test]
fn a_program_planted_in_a_read_write_grant_is_refused() {
    let s = scratch();
    let app = dir(&s, "app");
    let outside = dir(&s, "outside");
    let tool = app.join("tool");
    let call = hostile(
        "plant-and-run",
        json!({
            "file": p(&tool),
            "content": format!("#!/bin/sh\ntouch {}/pwned\necho PWNED\n", p(&outside)),
            "program": p(&tool),
        }),
    )
    .path(&app)
    .exec(&p(&tool));
    let detail = refused(&call, &s);
    assert!(tool.exists(), "the plant itself is allowed: {detail}");
    assert!(!outside.join("pwned").exists(), "{detail}");
    assert!(
        detail.contains(&format!(
            "program {} lies inside the read-write grant {}",
            p(&tool),
            p(&app)
        )) && detail.contains("install it outside every read-write grant"),
        "{detail}"
    );
    assert_host_still_works(&s);
}

#[test]
fn a_link_outside_the_grants_to_a_planted_program_is_refused() {
    let s = scratch();
    let app = dir(&s, "app");
    let bin = dir(&s, "bin"); // not granted at all, like /usr/local/bin
    let outside = dir(&s, "outside");
    std::os::unix::fs::symlink(app.join("tool"), bin.join("tool")).unwrap();
    let call = hostile(
        "plant-and-run",
        json!({
            "file": p(&app.join("tool")),
            "content": format!("#!/bin/sh\ntouch {}/pwned\n", p(&outside)),
            "program": p(&bin.join("tool")),
        }),
    )
    .path(&app)
    .exec(&p(&bin.join("tool")));
    let detail = refused(&call, &s);
    assert!(!outside.join("pwned").exists(), "{detail}");
    assert!(
        detail.contains(&format!("(which is {})", p(&app.join("tool"))))
            && detail.contains(&format!("read-write grant {}", p(&app))),
        "{detail}"
    );
    assert_host_still_works(&s);
}

#[test]
fn a_granted_program_behind_a_symlink_the_plugin_can_repoint_is_refused() {
    let s = scratch();
    let app = dir(&s, "app");
    let outside = dir(&s, "outside");
    // The operator granted what used to be a harmless system program.
    std::os::unix::fs::symlink("/bin/echo", app.join("tool")).unwrap();
    let call = hostile(
        "plant-and-run",
        json!({
            "file": p(&app.join("evil")),
            "content": format!("#!/bin/sh\ntouch {}/pwned\n", p(&outside)),
            "link": p(&app.join("tool")),
            "link_to": "evil",
            "program": p(&app.join("tool")),
            "args": ["hi"],
        }),
    )
    .path(&app)
    .exec(&format!("{} hi", p(&app.join("tool"))));
    let detail = refused(&call, &s);
    assert!(!outside.join("pwned").exists(), "{detail}");
    assert!(
        detail.contains(&format!("read-write grant {}", p(&app))),
        "{detail}"
    );
    assert_host_still_works(&s);
}

#[test]
fn a_bare_name_that_resolves_into_a_writable_path_directory_is_refused() {
    let bin = Path::new("/usr/local/bin");
    if !is_root() || !bin.is_dir() {
        eprintln!("skipped: needs root and /usr/local/bin");
        return;
    }
    let s = scratch();
    let outside = dir(&s, "outside");
    let name = format!("rewind-planted-{}", std::process::id());
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _cleanup = Cleanup(bin.join(&name));
    let call = hostile(
        "plant-and-run",
        json!({
            "file": p(&bin.join(&name)),
            "content": format!("#!/bin/sh\ntouch {}/pwned\n", p(&outside)),
            "program": name,
        }),
    )
    .path(bin)
    .exec(&name);
    let detail = refused(&call, &s);
    assert!(!outside.join("pwned").exists(), "{detail}");
    assert!(
        detail.contains("read-write grant /usr/local/bin"),
        "{detail}"
    );
    // And `rewind check` would have said so.
    let mut grants = Grants::default();
    grants
        .paths
        .push(PathGrant::parse("/usr/local/bin").unwrap());
    let risks = code_execution_risks(&grants);
    assert!(
        risks.iter().any(|r| r.contains("/usr/local/bin")),
        "{risks:?}"
    );
    assert_host_still_works(&s);
}

#[test]
fn a_program_in_a_world_writable_directory_is_refused() {
    let s = scratch();
    let open = dir(&s, "open");
    let outside = dir(&s, "outside");
    script(&open.join("tool"), &format!("touch {}/pwned", p(&outside)));
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let call = hostile("exec-in", json!({ "program": p(&open.join("tool")) }))
        .exec(&p(&open.join("tool")));
    let detail = refused(&call, &s);
    assert!(!outside.join("pwned").exists(), "{detail}");
    assert!(
        detail.contains(&format!(
            "lies in {}, a directory every user can write",
            p(&open)
        )),
        "{detail}"
    );
}

#[test]
fn commands_get_the_fixed_path_and_bare_names_only_resolve_there() {
    let s = scratch();
    let call = hostile(
        "exec-in",
        json!({ "program": "sh", "args": ["-c", "echo $PATH"] }),
    )
    .exec("sh -c *");
    assert_eq!(succeeded(&call, &s).trim(), COMMAND_PATH);
    // A name found nowhere in COMMAND_PATH (whatever the host's PATH says).
    let call = hostile("exec-in", json!({ "program": "rewind-nowhere" })).exec("rewind-nowhere");
    let detail = refused(&call, &s);
    assert!(
        detail.contains(&format!("was not found in {COMMAND_PATH}")),
        "{detail}"
    );
}

#[test]
fn a_plugin_cannot_set_path_for_a_command() {
    let s = scratch();
    let call = Call::new(
        "hostile",
        json!({ "attack": "exec-env", "target": "PATH", "args": ["true"] }),
    )
    .env("PATH")
    .exec("true");
    let detail = refused(&call, &s);
    assert!(
        detail.contains(&format!("every command gets PATH={COMMAND_PATH}")),
        "{detail}"
    );
    assert_host_still_works(&s);
}

// ---- the working directory -------------------------------------------

#[test]
fn a_working_directory_link_leaving_the_grant_is_refused() {
    let s = scratch();
    let app = dir(&s, "app");
    let outside = dir(&s, "outside");
    std::os::unix::fs::symlink(&outside, app.join("door")).unwrap();
    let call = hostile(
        "exec-in",
        json!({ "program": "touch", "args": ["escaped"], "cwd": p(&app.join("door")) }),
    )
    .path(&app)
    .exec("touch escaped");
    refused(&call, &s);
    assert!(!outside.join("escaped").exists());
    assert_host_still_works(&s);
}

#[test]
fn a_working_directory_swapped_while_commands_start_never_lets_a_write_out() {
    let s = scratch();
    let app = dir(&s, "app");
    let work = dir(&s, "app/work");
    let outside = dir(&s, "outside");
    let swap = app.join("swap");
    std::os::unix::fs::symlink(&outside, &swap).unwrap();

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        let (a, b) = (
            std::ffi::CString::new(p(&work)).unwrap(),
            std::ffi::CString::new(p(&swap)).unwrap(),
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(10) {
                // SAFETY: renameat2 with valid C strings.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
                swaps += 1;
            }
            swaps
        })
    };
    let call = hostile(
        "cwd-race",
        json!({ "program": "touch", "args": ["race-marker"], "cwd": p(&work), "ms": 2000 }),
    )
    .path(&app)
    .exec("touch race-marker");
    let (_, detail) = outcome(&call, &s);
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert!(swaps > 100, "the race hardly ran: {swaps} swaps");
    assert!(
        !outside.join("race-marker").exists(),
        "a command wrote outside its grant: {detail}"
    );
    let ran: u32 = detail
        .strip_prefix("ran ")
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(
        ran > 0,
        "no command ran at all, so the race proved nothing: {detail}"
    );
    assert_host_still_works(&s);
}

// ---- processes that outlive their command ----------------------------

/// A background child and a `setsid` grandchild; returns their pids and
/// checks the grandchild really left the command's session.
fn leftovers_end_with_the_command(s: &Scratch) {
    let started = Instant::now();
    let call = hostile(
        "exec-in",
        json!({
            "program": "sh",
            "args": ["-c", "sleep 60 & b=$!; setsid sleep 61 & g=$!; sleep 0.2; echo $b $g $(cut -d' ' -f6 /proc/$g/stat)"],
        }),
    )
    .exec("sh -c *");
    let out = succeeded(&call, s);
    let list = pids(&out);
    let (background, grandchild, session) = (list[0], list[1], list[2]);
    assert_eq!(
        session, grandchild,
        "the grandchild did not start its own session"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for leftovers"
    );
    assert!(
        gone(background),
        "background child {background} survived its command"
    );
    assert!(
        gone(grandchild),
        "setsid grandchild {grandchild} survived its command"
    );
}

fn a_timeout_ends_everything(s: &Scratch) {
    let app = dir(s, "app");
    let started = Instant::now();
    let call = hostile(
        "exec-in",
        json!({
            "program": "sh",
            "args": ["-c", format!("sleep 60 & echo $! > {0}/bg; setsid sleep 61 & echo $! > {0}/sid; wait", p(&app))],
            "timeout_ms": 700,
        }),
    )
    .path(&app)
    .exec("sh -c *");
    let detail = refused(&call, s);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        detail.contains("ran for 0.") && detail.contains("its time limit"),
        "{detail}"
    );
    for file in ["bg", "sid"] {
        let pid = pids(&fs::read_to_string(app.join(file)).unwrap())[0];
        assert!(gone(pid), "{file} process {pid} survived the timeout");
    }
}

#[test]
fn a_background_child_and_a_setsid_grandchild_end_with_their_command() {
    let s = scratch();
    leftovers_end_with_the_command(&s);
    assert_host_still_works(&s);
}

#[test]
fn a_timeout_kills_every_process_the_command_started() {
    let s = scratch();
    a_timeout_ends_everything(&s);
    assert_host_still_works(&s);
}

fn cgroup2_root() -> Option<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
}

#[test]
fn cgroup_containment_gives_each_command_a_cgroup_and_removes_it() {
    let Some(root) = cgroup2_root().filter(|_| is_root()) else {
        eprintln!("skipped: needs root and a cgroup v2 hierarchy (non-root uses the subreaper)");
        return;
    };
    let _forced = force_containment("cgroup");
    let s = scratch();
    let call = hostile(
        "exec-in",
        json!({ "program": "cat", "args": ["/proc/self/cgroup"] }),
    )
    .exec("cat /proc/self/cgroup");
    let out = succeeded(&call, &s);
    let own = out
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(own.contains("/rewind/"), "{out}");
    let cgroup = root.join(own.trim_start_matches('/'));
    assert!(!cgroup.exists(), "{} was left behind", cgroup.display());
    leftovers_end_with_the_command(&s);
    a_timeout_ends_everything(&s);
    assert_host_still_works(&s);
}

#[test]
fn forced_subreaper_containment_ends_every_descendant_too() {
    let _forced = force_containment("subreaper");
    let s = scratch();
    // Not in a cgroup of ours: a supervisor is the command's parent.
    let call = hostile(
        "exec-in",
        json!({ "program": "sh", "args": ["-c", "cat /proc/self/cgroup; grep PPid /proc/self/status"] }),
    )
    .exec("sh -c *");
    let out = succeeded(&call, &s);
    assert!(!out.contains("/rewind/"), "{out}");
    let parent = out
        .lines()
        .find_map(|l| l.strip_prefix("PPid:\t"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_ne!(parent, std::process::id().to_string(), "{out}");
    leftovers_end_with_the_command(&s);
    a_timeout_ends_everything(&s);
    // Exit codes pass through the supervisor.
    let call = hostile(
        "exec-in",
        json!({ "program": "sh", "args": ["-c", "exit 7"] }),
    )
    .exec("sh -c *");
    let detail = refused(&call, &s);
    assert!(detail.contains("exited with code 7"), "{detail}");
    assert_host_still_works(&s);
}

// ---- read-only grants and commands -----------------------------------

#[test]
fn a_read_only_grant_binds_a_commands_writes() {
    if !is_root() {
        eprintln!("skipped: as a normal user commands get no mount namespace (documented)");
        return;
    }
    let s = scratch();
    let config = dir(&s, "config");
    fs::write(config.join("app.ini"), "original").unwrap();
    let call = hostile(
        "exec-in",
        json!({ "program": "touch", "args": ["written-by-command"], "cwd": p(&config) }),
    )
    .read_only(&config)
    .exec("touch written-by-command");
    let detail = refused(&call, &s);
    assert!(detail.contains("Read-only file system"), "{detail}");
    assert!(!config.join("written-by-command").exists());
    let call = hostile(
        "exec-in",
        json!({ "program": "sh", "args": ["-c", format!("echo pwned > {}/app.ini", p(&config))] }),
    )
    .read_only(&config)
    .exec("sh -c *");
    refused(&call, &s);
    assert_eq!(
        fs::read_to_string(config.join("app.ini")).unwrap(),
        "original"
    );
    assert_host_still_works(&s);
}

#[test]
fn a_read_only_grant_nested_in_a_read_write_grant_binds_commands() {
    if !is_root() {
        eprintln!("skipped: as a normal user commands get no mount namespace (documented)");
        return;
    }
    let s = scratch();
    let app = dir(&s, "app");
    let protected = dir(&s, "app/protected");
    fs::write(protected.join("app.ini"), "original").unwrap();
    let write = |cwd: &Path, target: &str| {
        hostile(
            "exec-in",
            json!({ "program": "sh", "args": ["-c", format!("echo pwned > {target}")], "cwd": p(cwd) }),
        )
        .path(&app)
        .read_only(&protected)
        .exec("sh -c *")
    };
    refused(&write(&app, "protected/app.ini"), &s);
    refused(&write(&protected, "new-file"), &s);
    assert_eq!(
        fs::read_to_string(protected.join("app.ini")).unwrap(),
        "original"
    );
    assert!(!protected.join("new-file").exists());
    // The rest of the read-write grant stays writable.
    succeeded(&write(&app, "ok.txt"), &s);
    assert_eq!(fs::read_to_string(app.join("ok.txt")).unwrap(), "pwned\n");
    assert_host_still_works(&s);
}

#[test]
fn a_read_write_grant_nested_in_a_read_only_grant_stays_writable_for_commands() {
    if !is_root() {
        eprintln!("skipped: needs root (mount namespace)");
        return;
    }
    let s = scratch();
    let site = dir(&s, "site");
    let storage = dir(&s, "site/storage");
    let write = |target: &Path| {
        hostile(
            "exec-in",
            json!({ "program": "sh", "args": ["-c", format!("echo data > {}", p(target))] }),
        )
        .read_only(&site)
        .path(&storage)
        .exec("sh -c *")
    };
    succeeded(&write(&storage.join("cache")), &s);
    assert!(storage.join("cache").exists());
    refused(&write(&site.join("index.php")), &s);
    assert!(!site.join("index.php").exists());
}

// ---- rewind check ----------------------------------------------------

#[test]
fn check_warns_that_an_interpreter_with_wildcards_and_a_writable_grant_run_any_code() {
    let grants = Grants {
        exec: vec![ExecPattern::parse("php **").unwrap()],
        paths: vec![PathGrant::parse("/srv/app").unwrap()],
        ..Grants::default()
    };
    let risks = code_execution_risks(&grants);
    assert_eq!(risks.len(), 1, "{risks:?}");
    assert!(risks[0].contains("`php **`") && risks[0].contains("/srv/app"));

    let s = scratch();
    let app = dir(&s, "app");
    let project = Project::new(&format!(
        "[plugins.shell]\n{}\ngrants.exec = [\"php **\"]\ngrants.paths = [\"{}\"]\n",
        pin("hostile"),
        p(&app)
    ));
    let out = project.rewind(&["check", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "{err}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["level"] == "warning"
            && f["subject"] == "plugins.shell"
            && f["message"].as_str().unwrap().contains("`php **`")),
        "{report:#}"
    );
}
