//! The exit codes of the `rewind` command: the one definition.
//!
//! Every command returns one of these; the library's errors and results say
//! which (`RunError::exit_code`, `RollbackResult::exit_code`, …). `rewind
//! --help` and the table in docs/cli.md are rendered from, or tested
//! against, [`ExitCode::ALL`] and [`ExitCode::meaning`].

/// What a `rewind` process tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// 0: success (guard: deployed and healthy).
    Ok = 0,
    /// 1: a hook failed or reported unhealthy; a check or verification found problems.
    Failed = 1,
    /// 2: usage, configuration or environment error (clap also uses 2).
    Usage = 2,
    /// 3: guard: the deploy failed and was rolled back to a healthy state.
    RolledBack = 3,
    /// 4: a rollback failed or was refused: manual action needed.
    RollbackFailed = 4,
    /// 5: another run holds the store lock.
    Busy = 5,
}

impl ExitCode {
    /// Every code, in order.
    pub const ALL: [ExitCode; 6] = [
        ExitCode::Ok,
        ExitCode::Failed,
        ExitCode::Usage,
        ExitCode::RolledBack,
        ExitCode::RollbackFailed,
        ExitCode::Busy,
    ];

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// `Ok` when `ok`, else `Failed`.
    pub fn ok_or_failed(ok: bool) -> Self {
        if ok { ExitCode::Ok } else { ExitCode::Failed }
    }

    /// What the code means, as docs/cli.md's table says it.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "success (guard: deployed and healthy)",
            ExitCode::Failed => {
                "a hook failed or reported unhealthy; a check, verification or dry run found \
                 problems; `status` found the app unhealthy or a run interrupted; guard: the \
                 deploy (or the backup before it) failed and nothing was rolled back"
            }
            ExitCode::Usage => {
                "usage, configuration or environment error (bad arguments, config errors with \
                 file:line:column, no backup to roll back to, a plugin that does not match its pin)"
            }
            ExitCode::RolledBack => {
                "guard: the deploy failed and was rolled back to a healthy state"
            }
            ExitCode::RollbackFailed => {
                "a rollback failed or was refused (artifact verification, safety backup, a step, \
                 or health afterwards): manual action needed"
            }
            ExitCode::Busy => "another run holds the store lock",
        }
    }

    /// The exit-code table of docs/cli.md, rendered from [`ExitCode::ALL`].
    pub fn markdown_table() -> String {
        let mut table = String::from("| code | meaning |\n|------|---------|\n");
        for code in ExitCode::ALL {
            table.push_str(&format!("| {} | {} |\n", code.code(), code.meaning()));
        }
        table
    }

    /// The exit codes for `--help`, wrapped to `width` columns.
    pub fn help_text(width: usize) -> String {
        let mut text = String::from("Exit codes:\n");
        for code in ExitCode::ALL {
            let indent = "     ";
            let mut line = format!("  {}  ", code.code());
            for word in code.meaning().split(' ') {
                if line.len() + 1 + word.len() > width && line.len() > indent.len() {
                    text.push_str(line.trim_end());
                    text.push('\n');
                    line = indent.to_string();
                } else if !line.ends_with(' ') {
                    line.push(' ');
                }
                line.push_str(word);
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

impl From<ExitCode> for i32 {
    fn from(code: ExitCode) -> i32 {
        code.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_documented_ones() {
        let codes: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn help_text_wraps_every_meaning() {
        let text = ExitCode::help_text(72);
        assert!(text.lines().all(|l| l.len() <= 72), "{text}");
        let words: usize = ExitCode::ALL
            .iter()
            .map(|c| c.meaning().split(' ').count())
            .sum();
        let rendered: usize = text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().count())
            .sum();
        assert_eq!(rendered, words + ExitCode::ALL.len());
    }
}
