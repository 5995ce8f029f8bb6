//! The architecture, checked: every workspace package depends only on the
//! workspace crates ARCHITECTURE.md's "Layers" table allows it, and never
//! has the crates that table forbids anywhere in its dependency tree (the
//! store never pulls in wasmtime). The table is the one definition of the
//! rules; this test reads it, so the document and the check cannot drift.
//!
//! A failure names the forbidden arrow, e.g.
//! `rewind-store -> rewind-sandbox (host/store/Cargo.toml)`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One row of the table: who may depend on which workspace crates, and
/// which crates must never appear in its dependency tree.
#[derive(Debug)]
struct Rule {
    allowed: BTreeSet<String>,
    never: BTreeSet<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// `a`, `` `a`, `b` `` or `—` → the names.
fn names(cell: &str) -> BTreeSet<String> {
    cell.split(',')
        .map(|n| n.trim().trim_matches('`').trim().to_string())
        .filter(|n| !n.is_empty() && n != "—" && n != "-")
        .collect()
}

/// The "Layers" table of ARCHITECTURE.md: `| crate | path | may depend on | never in its tree |`.
/// The crate cell `plugins` stands for every package whose manifest lies
/// under a `plugins/` directory.
fn rules() -> BTreeMap<String, Rule> {
    let path = root().join("ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).expect("read ARCHITECTURE.md");
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("| Crate | Path | May depend on"));
    assert!(
        lines.next().is_some(),
        "ARCHITECTURE.md has no table starting `| Crate | Path | May depend on`"
    );
    let mut rules = BTreeMap::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        assert_eq!(
            cells.len(),
            4,
            "ARCHITECTURE.md layers row `{line}` needs 4 cells"
        );
        rules.insert(
            cells[0].trim().trim_matches('`').to_string(),
            Rule {
                allowed: names(cells[2]),
                never: names(cells[3]),
            },
        );
    }
    assert!(!rules.is_empty(), "ARCHITECTURE.md's layers table is empty");
    rules
}

fn cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every workspace package: name → (manifest path relative to the root,
/// the workspace packages it depends on, of any kind).
fn packages() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let json = run(cargo().args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]));
    let meta: serde_json::Value = serde_json::from_str(&json).expect("cargo metadata is JSON");
    let root = root();
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    let mut out = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let manifest = Path::new(p["manifest_path"].as_str().expect("manifest_path"));
        let manifest = manifest.strip_prefix(&root).unwrap_or(manifest);
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .map(|d| d["name"].as_str().expect("dependency name").to_string())
            .filter(|d| members.contains(d))
            .collect();
        out.insert(
            p["name"].as_str().expect("name").to_string(),
            (manifest.display().to_string(), deps),
        );
    }
    out
}

fn rule_name(name: &str, manifest: &str) -> String {
    if manifest.starts_with("plugins/") || manifest.contains("/plugins/") {
        "plugins".to_string()
    } else {
        name.to_string()
    }
}

#[test]
fn workspace_dependencies_follow_architecture_md() {
    let rules = rules();
    let mut forbidden = Vec::new();
    for (name, (manifest, deps)) in packages() {
        let row = rule_name(&name, &manifest);
        let Some(rule) = rules.get(&row) else {
            forbidden.push(format!(
                "{name} ({manifest}) has no row in ARCHITECTURE.md's layers table: add one saying what it may depend on"
            ));
            continue;
        };
        for dep in deps.difference(&rule.allowed) {
            let allowed = if rule.allowed.is_empty() {
                "no workspace crate".to_string()
            } else {
                rule.allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            forbidden.push(format!(
                "{name} -> {dep} ({manifest}): ARCHITECTURE.md's layers table allows {name} {allowed}"
            ));
        }
    }
    assert!(
        forbidden.is_empty(),
        "forbidden dependency arrows:\n  {}",
        forbidden.join("\n  ")
    );
}

#[test]
fn crates_the_table_forbids_are_nowhere_in_the_tree() {
    let packages = packages();
    let mut forbidden = Vec::new();
    for (row, rule) in rules() {
        if rule.never.is_empty() {
            continue;
        }
        assert!(
            packages.contains_key(&row),
            "ARCHITECTURE.md's layers table forbids crates for `{row}`, which is not a package"
        );
        // Normal and build dependencies: what the crate is made of (its
        // tests may use anything).
        let tree = run(cargo().args([
            "tree",
            "-p",
            &row,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "-f",
            "{p}",
            "--offline",
        ]));
        let present: BTreeSet<&str> = tree
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for never in &rule.never {
            if present.contains(never.as_str()) {
                let path = run(cargo().args([
                    "tree",
                    "-p",
                    &row,
                    "-e",
                    "normal,build",
                    "-i",
                    never,
                    "--offline",
                ]));
                forbidden.push(format!("{row} -> … -> {never}, through:\n{path}"));
            }
        }
    }
    assert!(
        forbidden.is_empty(),
        "crates ARCHITECTURE.md forbids are in the dependency tree:\n  {}",
        forbidden.join("\n  ")
    );
}

#[test]
fn tests_run_tests_every_host_crate() {
    let script = std::fs::read_to_string(root().join("tests/run")).expect("read tests/run");
    let line = script
        .lines()
        .find(|l| l.trim_start().starts_with("cargo test"))
        .expect("tests/run runs cargo test");
    for (name, (manifest, _)) in packages() {
        if manifest.starts_with("host/") {
            assert!(
                line.contains(&format!("-p {name} ")) || line.ends_with(&format!("-p {name}")),
                "tests/run's `{line}` does not test {name} ({manifest}); add `-p {name}`"
            );
        }
    }
}
