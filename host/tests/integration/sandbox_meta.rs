//! Hostile plugins against the `fs` import: modes, owners, setuid bits, check-then-use races, hints that leak.
//! Each case asserts the refusal, that the host survived and that the next
//! hook call works, and that the message names the grant.
//!
//! Run as root (as CI does). As a normal user, the cases that give a file
//! to another user only check the refusal (the kernel refuses the allowed
//! chown too), and the owner-restoring `files` case is skipped.

use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[allow(unused_imports)]
use crate::common::{Call, allowed, load, only_check, outcome, refused, scratch};
use crate::common::{Project, Scratch, pin, plugin_path};
use rewind::bindings::rewind::hooks::types::HealthStatus;
use rewind::grants::OwnerGrant;
use rewind::sandbox::{HookInput, HookOutput};
use serde_json::{Value, json};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn attack(name: &str, target: &Path, extra: Value) -> Call {
    Call::new(
        "hostile",
        json!({ "attack": name, "target": target.display().to_string(), "extra": extra }),
    )
}

fn set_mode_call(target: &Path, mode: u32) -> Call {
    attack("fs-set-mode", target, json!({ "mode": mode }))
}

fn set_owner_call(target: &Path, uid: u32, gid: u32) -> Call {
    attack("fs-set-owner", target, json!({ "uid": uid, "gid": gid }))
}

fn metadata_call(target: &Path) -> Call {
    attack("fs-metadata", target, json!({}))
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `<scratch>/app` (granted read-write, with `app/file` mode 0644) and
/// `<scratch>/outside/victim` (mode 0600, not granted). Real paths.
struct Layout {
    root: PathBuf,
    app: PathBuf,
    outside: PathBuf,
    victim: PathBuf,
    victim_owner: (u32, u32),
}

fn layout(s: &Scratch) -> Layout {
    let root = s.path().canonicalize().unwrap();
    let app = root.join("app");
    let outside = root.join("outside");
    fs::create_dir_all(&app).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(app.join("file"), "mine").unwrap();
    chmod(&app.join("file"), 0o644);
    let victim = outside.join("victim");
    fs::write(&victim, "not yours").unwrap();
    chmod(&victim, 0o600);
    Layout {
        root,
        app,
        outside,
        victim_owner: owner(&victim),
        victim,
    }
}

/// The next hook call still works: a set-mode inside the grant.
fn still_works(s: &Scratch, l: &Layout) {
    chmod(&l.app.join("file"), 0o644);
    allowed(&set_mode_call(&l.app.join("file"), 0o640).path(&l.app), s);
    assert_eq!(mode(&l.app.join("file")), 0o640);
    chmod(&l.app.join("file"), 0o644);
}

fn assert_victim_untouched(l: &Layout) {
    assert_eq!(mode(&l.victim), 0o600, "the victim's mode changed");
    assert_eq!(
        owner(&l.victim),
        l.victim_owner,
        "the victim's owner changed"
    );
    assert_eq!(fs::read_to_string(&l.victim).unwrap(), "not yours");
}

#[test]
fn metadata_set_mode_and_set_owner_work_inside_a_grant() {
    let s = scratch();
    let l = layout(&s);
    let file = l.app.join("file");
    let meta = allowed(&metadata_call(&file).path(&l.app), &s);
    assert!(meta.starts_with("file 644 "), "{meta}");
    allowed(&set_mode_call(&file, 0o600).path(&l.app), &s);
    assert_eq!(mode(&file), 0o600);
    // Keeping the current owner needs no owner grant.
    let (uid, gid) = owner(&file);
    allowed(&set_owner_call(&file, uid, gid).path(&l.app), &s);
    // A read-only grant allows metadata but no change.
    let detail = refused(&set_mode_call(&file, 0o644).read_only(&l.app), &s);
    assert!(detail.contains("grants.paths"), "{detail}");
    assert_eq!(mode(&file), 0o600);
    allowed(&metadata_call(&file).read_only(&l.app), &s);
    still_works(&s, &l);
}

#[test]
fn set_mode_set_owner_and_metadata_outside_the_grants_are_refused_naming_the_grant() {
    let s = scratch();
    let l = layout(&s);
    let outside_dir = l.outside.display().to_string();
    let detail = refused(&set_mode_call(&l.victim, 0o777).path(&l.app), &s);
    assert!(
        detail.contains(&format!("grants.paths = [\"{outside_dir}\"]")),
        "{detail}"
    );
    let detail = refused(&set_owner_call(&l.victim, 65534, 65534).path(&l.app), &s);
    assert!(
        detail.contains(&format!("grants.paths = [\"{outside_dir}\"]")),
        "{detail}"
    );
    let detail = refused(&metadata_call(&l.victim).path(&l.app), &s);
    assert!(
        detail.contains(&format!("grants.paths = [\"ro:{outside_dir}\"]")),
        "{detail}"
    );
    assert!(detail.starts_with("denied:"), "metadata leaked: {detail}");
    assert_victim_untouched(&l);
    still_works(&s, &l);
}

#[test]
fn dotdot_out_of_the_grant_is_refused() {
    let s = scratch();
    let l = layout(&s);
    let sneaky = l.app.join("../outside/victim");
    let deeper = l.app.join("sub/../../outside/./victim");
    for path in [&sneaky, &deeper] {
        let detail = refused(&set_mode_call(path, 0o777).path(&l.app), &s);
        assert!(detail.contains("grants.paths"), "{detail}");
        refused(&set_owner_call(path, 65534, 65534).path(&l.app), &s);
        refused(&metadata_call(path).path(&l.app), &s);
    }
    assert_victim_untouched(&l);
    still_works(&s, &l);
}

#[test]
fn symlinks_out_of_the_grant_are_never_followed() {
    let s = scratch();
    let l = layout(&s);
    symlink(&l.victim, l.app.join("abs-link")).unwrap();
    symlink("../outside/victim", l.app.join("rel-link")).unwrap();
    symlink(&l.outside, l.app.join("abs-dir")).unwrap();
    symlink("../outside", l.app.join("rel-dir")).unwrap();
    for link in ["abs-link", "rel-link"] {
        let path = l.app.join(link);
        // A final symlink: its own metadata, never its target's mode.
        let detail = refused(&set_mode_call(&path, 0o777).path(&l.app), &s);
        assert!(detail.contains("is a symlink"), "{detail}");
        let detail = refused(&set_owner_call(&path, 65534, 65534).path(&l.app), &s);
        assert!(detail.contains("is a symlink"), "{detail}");
        let meta = allowed(&metadata_call(&path).path(&l.app), &s);
        assert!(meta.starts_with("symlink "), "{meta}");
    }
    for dir in ["abs-dir", "rel-dir"] {
        let path = l.app.join(dir).join("victim");
        let detail = refused(&set_mode_call(&path, 0o777).path(&l.app), &s);
        assert!(detail.contains("leads outside the grant"), "{detail}");
        refused(&set_owner_call(&path, 65534, 65534).path(&l.app), &s);
        let detail = refused(&metadata_call(&path).path(&l.app), &s);
        assert!(detail.contains("leads outside the grant"), "{detail}");
    }
    assert_victim_untouched(&l);
    still_works(&s, &l);
}

#[test]
fn a_nested_read_only_grant_holds_however_the_path_is_spelled() {
    let s = scratch();
    let l = layout(&s);
    let protected = l.app.join("protected");
    fs::create_dir_all(&protected).unwrap();
    fs::create_dir_all(l.app.join("sub")).unwrap();
    fs::write(protected.join("x"), "keep").unwrap();
    chmod(&protected.join("x"), 0o640);
    symlink("protected", l.app.join("door")).unwrap();
    let app = l.app.display().to_string();
    let spellings = [
        format!("{app}/protected/x"),
        format!("{app}/./protected/x"),
        format!("{app}/sub/../protected/x"),
        format!("{app}/door/x"),
    ];
    let grants = |call: Call| call.path(&l.app).read_only(&protected);
    for spelled in &spellings {
        let path = Path::new(spelled);
        let detail = refused(&grants(set_mode_call(path, 0o666)), &s);
        assert!(
            detail.contains(&format!("grants.paths = [\"{}\"]", protected.display())),
            "{spelled}: {detail}"
        );
        let detail = refused(&grants(set_owner_call(path, 65534, 65534)), &s);
        assert!(detail.contains("protected"), "{spelled}: {detail}");
        // Reading is what the read-only grant allows.
        allowed(&grants(metadata_call(path)), &s);
    }
    assert_eq!(mode(&protected.join("x")), 0o640);
    assert_eq!(
        owner(&protected.join("x")).0,
        rustix::process::geteuid().as_raw()
    );
    // The directory itself, by name or through the door, is read-only too.
    let before = mode(&protected);
    refused(&grants(set_mode_call(&protected, 0o777)), &s);
    refused(&grants(set_mode_call(&l.app.join("door/."), 0o777)), &s);
    refused(&grants(set_mode_call(&l.app.join("door"), 0o777)), &s);
    assert_eq!(mode(&protected), before);
    still_works(&s, &l);
}

#[test]
fn setuid_and_setgid_need_grants_setid() {
    let s = scratch();
    let l = layout(&s);
    let file = l.app.join("file");
    for bits in [0o4755, 0o2755, 0o6755] {
        let detail = refused(&set_mode_call(&file, bits).path(&l.app), &s);
        assert!(detail.contains("grants.setid = true"), "{detail}");
        assert_eq!(mode(&file), 0o644, "{bits:o}");
    }
    // The sticky bit and plain modes need nothing more.
    allowed(&set_mode_call(&l.app, 0o1777).path(&l.app), &s);
    chmod(&l.app, 0o755);
    still_works(&s, &l);
    for bits in [0o4755, 0o2755] {
        let mut call = set_mode_call(&file, bits).path(&l.app);
        call.grants.setid = true;
        allowed(&call, &s);
        assert_eq!(mode(&file), bits);
    }
    // setid does not widen the paths.
    let mut call = set_mode_call(&l.victim, 0o4755).path(&l.app);
    call.grants.setid = true;
    let detail = refused(&call, &s);
    assert!(detail.contains("grants.paths"), "{detail}");
    assert_victim_untouched(&l);
}

#[test]
fn giving_a_file_to_another_user_needs_grants_owners() {
    let s = scratch();
    let l = layout(&s);
    let file = l.app.join("file");
    let before = owner(&file);
    let detail = refused(&set_owner_call(&file, 4242, 4243).path(&l.app), &s);
    assert!(
        detail.contains("grants.owners = [\"4242:4243\"]"),
        "{detail}"
    );
    // Only the group is another one: refused too.
    let detail = refused(&set_owner_call(&file, before.0, 4243).path(&l.app), &s);
    assert!(detail.contains("grants.owners"), "{detail}");
    assert_eq!(owner(&file), before);
    // An owner grant does not widen the paths.
    let mut call = set_owner_call(&l.victim, 4242, 4243).path(&l.app);
    call.grants
        .owners
        .push(OwnerGrant::parse("4242:4243").unwrap());
    let detail = refused(&call, &s);
    assert!(detail.contains("grants.paths"), "{detail}");
    assert_victim_untouched(&l);

    let mut call = set_owner_call(&file, 4242, 4243).path(&l.app);
    call.grants
        .owners
        .push(OwnerGrant::parse("4242:4243").unwrap());
    if is_root() {
        allowed(&call, &s);
        assert_eq!(owner(&file), (4242, 4243));
    } else {
        // Granted, but the kernel refuses a normal user.
        let detail = refused(&call, &s);
        assert!(detail.contains("chown"), "{detail}");
    }
    still_works(&s, &l);
}

/// Swap `a` and `b` with `renameat2(RENAME_EXCHANGE)` until `stop`.
fn swapper(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let a = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
        let b = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
        let mut swaps = 0;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: two valid NUL-terminated paths.
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
}

fn counts(detail: &str) -> (u64, u64) {
    let n = |key: &str| {
        detail
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {detail}"))
    };
    (n("ok="), n("refused="))
}

/// Race set-mode against a loop that swaps `swap` (inside the grant) with
/// `link` (a symlink leaving it), for about two seconds.
fn race(s: &Scratch, l: &Layout, swap: PathBuf, link: PathBuf, target: &Path) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = swapper(swap, link, stop.clone());
    let call = attack(
        "fs-set-mode-race",
        target,
        json!({ "mode": 0o777, "millis": 2000 }),
    )
    .path(&l.app);
    let (status, detail) = outcome(&call, s);
    stop.store(true, Ordering::Relaxed);
    let swaps = swaps.join().unwrap();
    assert_eq!(status, HealthStatus::Unhealthy, "{detail}");
    assert!(swaps > 100, "the race barely ran: {swaps} swaps");
    let (ok, refused) = counts(&detail);
    assert!(ok + refused > 10, "{detail}");
    assert_victim_untouched(l);
    (ok, refused)
}

#[test]
fn a_symlink_swapped_in_while_set_mode_runs_never_reaches_the_victim() {
    let s = scratch();
    let l = layout(&s);
    // The final component swapped: a file and a symlink to the victim.
    let swap = l.app.join("swap");
    fs::write(&swap, "inside").unwrap();
    chmod(&swap, 0o644);
    let link = l.app.join("link");
    symlink(&l.victim, &link).unwrap();
    let (_, refused) = race(&s, &l, swap.clone(), link, &swap);
    assert!(refused > 0, "the symlink was never seen");
    still_works(&s, &l);
}

#[test]
fn a_directory_swapped_for_a_symlink_while_set_mode_runs_never_reaches_the_victim() {
    let s = scratch();
    let l = layout(&s);
    // A directory on the way swapped with a symlink to the victim's.
    let dir = l.app.join("dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("victim"), "inside").unwrap();
    let link = l.app.join("dirlink");
    symlink(&l.outside, &link).unwrap();
    race(&s, &l, dir.clone(), link, &dir.join("victim"));
    still_works(&s, &l);
}

/// Builds one attack call on a path.
type MakeCall = dyn Fn(&Path) -> Call;

#[test]
fn refusals_read_the_same_whether_an_outside_path_exists_or_not() {
    let s = scratch();
    let l = layout(&s);
    let missing = l.outside.join("missing");
    symlink(&l.victim, l.app.join("to-existing")).unwrap();
    symlink(l.outside.join("nothing"), l.app.join("to-missing")).unwrap();
    symlink(&l.outside, l.app.join("dir-existing")).unwrap();
    symlink(l.root.join("no-dir"), l.app.join("dir-missing")).unwrap();
    let same = |make: &MakeCall, a: &Path, b: &Path, what: &str| {
        let one = refused(&make(a).path(&l.app), &s);
        let two = refused(&make(b).path(&l.app), &s);
        let a_name = a.file_name().unwrap().to_str().unwrap();
        let b_name = b.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            one.replace(&a.display().to_string(), "P")
                .replace(a_name, "N"),
            two.replace(&b.display().to_string(), "P")
                .replace(b_name, "N"),
            "{what}: the refusal tells an existing path from a missing one"
        );
    };
    let set_mode = |p: &Path| set_mode_call(p, 0o777);
    let set_owner = |p: &Path| set_owner_call(p, 65534, 65534);
    let calls: [(&MakeCall, &str); 3] = [
        (&set_mode, "set-mode"),
        (&set_owner, "set-owner"),
        (&metadata_call, "metadata"),
    ];
    for (make, what) in calls {
        same(make, &l.victim, &missing, what);
        let (a, b) = (
            l.app.join("dir-existing/victim"),
            l.app.join("dir-missing/victim"),
        );
        let one = refused(&make(&a).path(&l.app), &s);
        let two = refused(&make(&b).path(&l.app), &s);
        assert_eq!(
            one.replace("dir-existing", "D"),
            two.replace("dir-missing", "D"),
            "{what} through a symlink"
        );
    }
    let changes: [(&MakeCall, &str); 2] = [(&set_mode, "set-mode"), (&set_owner, "set-owner")];
    for (make, what) in changes {
        same(
            make,
            &l.app.join("to-existing"),
            &l.app.join("to-missing"),
            what,
        );
    }
    assert_victim_untouched(&l);
    still_works(&s, &l);
}

#[test]
fn the_files_plugin_restores_owners_only_as_granted() {
    if !is_root() {
        eprintln!("skipped: restoring another owner needs root");
        return;
    }
    let s = scratch();
    let plugin = load("files");
    let l = layout(&s);
    let mine = l.app.join("mine.conf");
    let theirs = l.app.join("theirs.conf");
    fs::write(&mine, "v1").unwrap();
    fs::write(&theirs, "v1").unwrap();
    std::os::unix::fs::chown(&theirs, Some(4242), Some(4243)).unwrap();
    let params = json!({
        "paths": [mine.display().to_string(), theirs.display().to_string()],
        "restore_owner": true,
    });
    let call = Call::new("config", params.clone()).path(&l.app);
    let saved = call.backup(&plugin, &s.store);
    let restore = |call: &Call| {
        fs::write(&mine, "v2").unwrap();
        fs::write(&theirs, "v2").unwrap();
        let outcome = call.run(&plugin, &s.store, HookInput::Restore(&saved));
        assert!(
            matches!(outcome.result, Ok(HookOutput::Report(_))),
            "{:?}",
            outcome.result
        );
        assert_eq!(fs::read_to_string(&mine).unwrap(), "v1");
        assert_eq!(fs::read_to_string(&theirs).unwrap(), "v1");
        outcome.logs
    };
    // The restored file is written by rewind, so giving it back to 4242
    // needs the owner grant: without it the restore succeeds and warns.
    let logs = restore(&call);
    assert_eq!(owner(&mine), (0, 0));
    assert_eq!(owner(&theirs), (0, 0));
    let warning = logs
        .iter()
        .find(|line| line.message.contains("owner of"))
        .unwrap_or_else(|| panic!("no warning in {logs:?}"));
    assert!(
        warning.message.contains(&theirs.display().to_string()),
        "{warning:?}"
    );
    assert!(warning.message.contains("grants.owners"), "{warning:?}");
    assert!(
        !logs
            .iter()
            .any(|l| l.message.contains("owner of") && l.message.contains("mine.conf")),
        "{logs:?}"
    );
    // With the grant, the owner is restored.
    let mut granted = Call::new("config", params).path(&l.app);
    granted
        .grants
        .owners
        .push(OwnerGrant::parse("4242:4243").unwrap());
    let logs = restore(&granted);
    assert_eq!(owner(&theirs), (4242, 4243));
    assert_eq!(owner(&mine), (0, 0));
    assert!(
        !logs.iter().any(|l| l.message.contains("owner of")),
        "{logs:?}"
    );
}

// ------------------------------------------------------------ compile cache

fn cache_entries(dir: &Path, digest: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(digest) && name.ends_with(".cwasm")
        })
        .collect()
}

#[test]
fn a_compiled_entry_copied_over_another_plugins_is_refused_and_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = rewind::engine::Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let hostile = plugin_path("hostile");
    let files = plugin_path("files");
    let digest = |p: &Path| rewind::plugin::sha256_hex(&fs::read(p).unwrap());
    let first = rewind::plugin::load(&runtime, &hostile, None).unwrap();
    assert!(!first.from_cache);
    rewind::plugin::load(&runtime, &files, None).unwrap();
    let [victim] = cache_entries(cache.path(), &digest(&hostile))
        .try_into()
        .unwrap();
    let [other] = cache_entries(cache.path(), &digest(&files))
        .try_into()
        .unwrap();
    assert!(fs::read(&victim).unwrap().starts_with(b"REWINDC1"));
    // Another plugin's compiled code under the hostile plugin's name.
    fs::copy(&other, &victim).unwrap();
    let again = rewind::plugin::load(&runtime, &hostile, None).unwrap();
    assert!(!again.from_cache, "the copied entry was used");
    // It is the hostile plugin: it knows its attacks.
    let s = scratch();
    let l = layout(&s);
    let (status, detail) = only_check(
        &set_mode_call(&l.app.join("file"), 0o600)
            .path(&l.app)
            .health(&again, &s.store),
    );
    assert_eq!(status, HealthStatus::Healthy, "{detail}");
    assert_ne!(fs::read(&victim).unwrap(), fs::read(&other).unwrap());
    // The entry was rewritten, and is used from now on.
    let third = rewind::plugin::load(&runtime, &hostile, None).unwrap();
    assert!(third.from_cache);
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn a_group_writable_or_symlinked_cache_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o770);
    let err = rewind::engine::Runtime::new(Some(dir.clone()))
        .err()
        .expect("a group-writable cache is refused")
        .to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains("writable by group or others"), "{err}");
    assert!(
        err.contains("chmod 700") && err.contains("REWIND_CACHE_DIR"),
        "{err}"
    );
    chmod(&dir, 0o700);
    let link = tmp.path().join("link");
    symlink(&dir, &link).unwrap();
    let err = rewind::engine::Runtime::new(Some(link))
        .err()
        .expect("a symlinked cache is refused")
        .to_string();
    assert!(err.contains("symlink"), "{err}");
    // Fixed, it works, and a missing one is created 0700.
    rewind::engine::Runtime::new(Some(dir)).unwrap();
    let fresh = tmp.path().join("fresh/cache");
    rewind::engine::Runtime::new(Some(fresh.clone())).unwrap();
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn a_cache_dir_inside_a_grant_is_a_config_error_naming_instance_and_grant() {
    let hostile_pin = pin("hostile");
    let mut project = Project::new("");
    let root = project.root();
    let data = root.join("data");
    fs::create_dir_all(&data).unwrap();
    let body = format!(
        "[plugins.web]\n{hostile_pin}\ngrants.paths = [\"ro:/etc\", \"{}\"]\n",
        data.display()
    );
    project.write(&body);
    let cache = data.join("cache");
    project.set_env("REWIND_CACHE_DIR", &cache.display().to_string());
    let out = project.rewind(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let text = fs::read_to_string(root.join("rewind.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("grants.paths"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("rewind.toml:{line}:")), "{err}");
    assert!(err.contains("instance `web`"), "{err}");
    assert!(err.contains(&format!("`{}`", data.display())), "{err}");
    assert!(err.contains("REWIND_CACHE_DIR"), "{err}");
    assert!(!cache.exists(), "the cache was created inside the grant");
    // Through a symlink to the granted directory: the same.
    let alias = root.join("alias");
    symlink(&data, &alias).unwrap();
    project.set_env(
        "REWIND_CACHE_DIR",
        &alias.join("cache").display().to_string(),
    );
    let out = project.rewind(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Elsewhere, the config is fine.
    let elsewhere = tempfile::tempdir().unwrap();
    project.set_env(
        "REWIND_CACHE_DIR",
        &elsewhere.path().join("cache").display().to_string(),
    );
    let out = project.rewind(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("compile cache"), "{err}");
    // And the library says the same without the binary.
    let parsed = rewind::config::Config::parse_with_cache(
        &root.join("rewind.toml"),
        &text,
        Some(&data.join("x/../cache")),
    );
    let err = parsed.unwrap_err();
    assert_eq!(err.location.map(|l| l.0), Some(line), "{err}");
}

// ------------------------------------------------------------ ad-hoc flags

fn rewind_in(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = crate::common::rewind_in(dir, args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ad_hoc_grant_flags_for_owners_setid_and_env_are_parsed_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let app = dir.join("app");
    fs::create_dir_all(&app).unwrap();
    let file = app.join("file");
    fs::write(&file, "x").unwrap();
    chmod(&file, 0o755);
    let wasm = plugin_path("hostile");
    let wasm = wasm.to_str().unwrap();
    let app_s = app.display().to_string();
    let params = json!({ "attack": "fs-set-mode", "target": file.display().to_string(),
                         "extra": { "mode": 0o4755 } })
    .to_string();
    let base = [
        "hook",
        wasm,
        "health",
        "--params",
        &params,
        "--grant-path",
        &app_s,
    ];

    // Without --grant-setid: refused, and the refusal names the grant.
    let (_, out, err) = rewind_in(&dir, &base);
    assert!(
        format!("{out}{err}").contains("grants.setid = true"),
        "{out}{err}"
    );
    assert_eq!(mode(&file), 0o755);
    // With it: set.
    let mut args = base.to_vec();
    args.push("--grant-setid");
    let (code, out, err) = rewind_in(&dir, &args);
    assert_eq!(mode(&file), 0o4755, "{code:?} {out}{err}");

    // --grant-owner is parsed like grants.owners.
    let mut args = base.to_vec();
    args.extend(["--grant-owner", "no-such-user-here:0"]);
    let (code, out, err) = rewind_in(&dir, &args);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        err.contains("--grant-owner") && err.contains("no-such-user-here"),
        "{err}"
    );
    // --grant-env names are validated now.
    let mut args = base.to_vec();
    args.extend(["--grant-env", "LD_PRELOAD=/tmp/evil.so"]);
    let (code, out, err) = rewind_in(&dir, &args);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        err.contains("--grant-env") && err.contains("not an environment variable name"),
        "{err}"
    );
    // A --grant-path containing the compile cache is refused.
    let dir_s = dir.display().to_string();
    let args = [
        "hook",
        wasm,
        "health",
        "--params",
        &params,
        "--grant-path",
        &dir_s,
    ];
    let (code, out, err) = rewind_in(&dir, &args);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        err.contains("compile cache") && err.contains("REWIND_CACHE_DIR"),
        "{err}"
    );
}
