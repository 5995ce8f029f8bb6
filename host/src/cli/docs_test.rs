//! docs/cli.md against the one definition of each flag (the clap
//! definitions) and of the exit codes ([`ExitCode`]): every command and
//! every option is documented, with its short form and its default, and
//! the page names nothing that does not exist.

use std::collections::BTreeMap;

use clap::CommandFactory;
use rewind::exit::ExitCode;

use super::Cli;

const CLI_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md"));

/// `--name` tokens in `text`.
fn long_options(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
        let mut end = start + 2;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'-')
        {
            end += 1;
        }
        if before_ok && end > start + 2 && bytes[start + 2].is_ascii_lowercase() {
            found.push(text[start + 2..end].to_string());
        }
        i = end.max(start + 2);
    }
    found
}

/// Does `text` name the short option `-c` as a token of its own?
fn has_short(text: &str, c: char) -> bool {
    let token = format!("-{c}");
    text.match_indices(&token).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + token.len()..].chars().next();
        !before.is_some_and(|b| b.is_alphanumeric() || b == '-')
            && !after.is_some_and(|a| a.is_alphanumeric() || a == '-')
    })
}

/// The command tables' rows, by command path (`["artifacts", "prune"]`).
fn command_rows() -> BTreeMap<Vec<String>, &'static str> {
    let mut rows = BTreeMap::new();
    for line in CLI_MD.lines() {
        let Some(rest) = line.strip_prefix("| `rewind ") else {
            continue;
        };
        let path: Vec<String> = rest
            .split([' ', '`'])
            .take_while(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .map(str::to_string)
            .collect();
        assert!(
            rows.insert(path.clone(), line).is_none(),
            "docs/cli.md documents `rewind {}` twice",
            path.join(" ")
        );
    }
    rows
}

/// Every leaf command with its path.
fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    let subs: Vec<_> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    if subs.is_empty() {
        out.push((path, cmd.clone()));
        return;
    }
    for sub in subs {
        let mut path = path.clone();
        path.push(sub.get_name().to_string());
        leaves(sub, path, out);
    }
}

fn is_global(arg: &clap::Arg) -> bool {
    arg.is_global_set() || matches!(arg.get_id().as_str(), "help" | "version")
}

#[test]
fn every_command_and_option_is_documented_and_nothing_else() {
    let mut cli = Cli::command();
    cli.build();
    let globals: Vec<String> = cli
        .get_arguments()
        .filter(|a| is_global(a))
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let mut commands = Vec::new();
    leaves(&cli, Vec::new(), &mut commands);
    let mut rows = command_rows();
    let mut problems = Vec::new();
    for (path, cmd) in &commands {
        let name = format!("rewind {}", path.join(" "));
        let Some(row) = rows.remove(path) else {
            problems.push(format!("{name} is not in docs/cli.md"));
            continue;
        };
        let mut longs = Vec::new();
        for arg in cmd
            .get_arguments()
            .filter(|a| !is_global(a) && !a.is_positional())
        {
            let long = arg.get_long().expect("every option has a long form");
            longs.push(long.to_string());
            if !long_options(row).iter().any(|l| l == long) {
                problems.push(format!("{name}: --{long} is not documented"));
            }
            if let Some(short) = arg.get_short()
                && !has_short(row, short)
            {
                problems.push(format!("{name}: -{short} (--{long}) is not documented"));
            }
            let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values());
            for default in arg.get_default_values() {
                let default = default.to_string_lossy();
                if takes_value && !default.is_empty() && !row.contains(default.as_ref()) {
                    problems.push(format!(
                        "{name}: the default of --{long} ({default}) is not documented"
                    ));
                }
            }
        }
        for named in long_options(row) {
            if !longs.contains(&named) && !globals.contains(&named) {
                problems.push(format!(
                    "{name}: docs/cli.md names --{named}, which it does not take"
                ));
            }
        }
    }
    for path in rows.keys() {
        problems.push(format!(
            "docs/cli.md documents `rewind {}`, which does not exist",
            path.join(" ")
        ));
    }
    let global_line = CLI_MD
        .split("\n\n")
        .find(|p| p.starts_with("Global options:"))
        .expect("docs/cli.md has a Global options paragraph");
    for arg in cli.get_arguments().filter(|a| a.is_global_set()) {
        let long = arg.get_long().expect("global options are long");
        if !long_options(global_line).iter().any(|l| l == long) {
            problems.push(format!("global --{long} is not documented"));
        }
        if let Some(short) = arg.get_short()
            && !has_short(global_line, short)
        {
            problems.push(format!("global -{short} is not documented"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/cli.md has drifted:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_exit_code_table_is_the_one_definition() {
    let start = CLI_MD
        .find("| code | meaning |")
        .expect("docs/cli.md has the exit-code table");
    let table: String = CLI_MD[start..]
        .lines()
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        table,
        ExitCode::markdown_table(),
        "docs/cli.md's exit-code table differs from rewind::exit::ExitCode"
    );
}

#[test]
fn option_scanning() {
    assert_eq!(long_options("`a [--to RUN] -- CMD --x-y`"), ["to", "x-y"]);
    assert!(has_short("[--yes\\|-y]", 'y'));
    assert!(!has_short("--yes", 'y'));
}
