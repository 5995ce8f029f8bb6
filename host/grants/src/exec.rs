//! Commands: `grants.exec` patterns and the check every `process` call makes.
//!
//! A pattern is a program, then argument patterns. `*` matches exactly one
//! argument, `**` (last) matches all remaining arguments (including none),
//! and `*` inside a token matches any characters within one argument
//! (`--file=*`). A token in single quotes is literal: `'**'` matches only the
//! argument `**`, `'a b'` the one argument `a b`; inside quotes `\'` and `\\`
//! stand for `'` and `\`. Modelled on Zed's `process:exec` capability.
//!
//! The grant a refusal suggests is never wider than the attempt: every
//! argument is rendered as a literal, quoted where it holds `*`, spaces or
//! quotes.

use std::fmt;

use serde::Serialize;

use super::{Denial, Grants, Kind, grant_line};

/// One argument position of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPattern {
    /// Exactly this argument.
    Literal(String),
    /// `*` within one argument (a bare `*` matches any one argument).
    Glob(String),
    /// `**`: every remaining argument.
    Rest,
}

/// A command pattern: a program, then argument patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct ExecPattern {
    /// The program, by name (looked up in `COMMAND_PATH`) or absolute path.
    pub program: String,
    /// One pattern per argument; a trailing `*` takes any rest.
    pub args: Vec<ArgPattern>,
}

impl From<ExecPattern> for String {
    fn from(p: ExecPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for ArgPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgPattern::Rest => f.write_str("**"),
            ArgPattern::Glob(g) => f.write_str(g),
            ArgPattern::Literal(text) => f.write_str(&literal_token(text)),
        }
    }
}

impl fmt::Display for ExecPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", literal_token(&self.program))?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// A token that means exactly `text`: bare when it has nothing a pattern
/// would read specially, else single-quoted.
pub fn literal_token(text: &str) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '\'' | '\\'));
    if plain {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Split a pattern into (token, quoted) pairs.
fn tokenize(text: &str) -> Result<Vec<(String, bool)>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(tokens);
        };
        if first == '\'' {
            chars.next();
            let mut token = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => token.push(c),
                        None => return Err(format!("`{text}` ends inside a quoted token")),
                    },
                    Some('\'') => break,
                    Some(c) => token.push(c),
                    None => return Err(format!("`{text}` has an unclosed quote")),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(format!(
                    "`{text}`: a quoted token must stand alone (quote the whole argument)"
                ));
            }
            tokens.push((token, true));
        } else {
            let mut token = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\'' {
                    return Err(format!(
                        "`{text}`: a quote may only open a token (quote the whole argument)"
                    ));
                }
                token.push(c);
            }
            tokens.push((token, false));
        }
    }
}

impl ExecPattern {
    /// Parse "program arg-pattern…"; tokens are whitespace-separated.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = tokenize(text)?.into_iter();
        let (program, quoted) = tokens
            .next()
            .ok_or_else(|| "an exec grant needs at least a program name".to_string())?;
        if program.is_empty() || (!quoted && program.contains('*')) {
            return Err(format!(
                "the program in `{text}` cannot be a pattern; name the program exactly"
            ));
        }
        let args: Vec<ArgPattern> = tokens
            .map(|(token, quoted)| match (quoted, token.as_str()) {
                (true, _) => ArgPattern::Literal(token),
                (false, "**") => ArgPattern::Rest,
                (false, t) if t.contains('*') => ArgPattern::Glob(token),
                (false, _) => ArgPattern::Literal(token),
            })
            .collect();
        if let Some(pos) = args.iter().position(|a| *a == ArgPattern::Rest)
            && pos + 1 != args.len()
        {
            return Err(format!("`**` must be the last token in `{text}`"));
        }
        Ok(ExecPattern { program, args })
    }

    /// Whether any argument can be anything (`*`, `**` or a glob): such a
    /// pattern lets the plugin choose what the program reads or runs.
    pub fn has_wildcards(&self) -> bool {
        self.args
            .iter()
            .any(|a| !matches!(a, ArgPattern::Literal(_)))
    }

    /// Whether this pattern allows running `program` with `args`.
    pub fn matches(&self, program: &str, args: &[String]) -> bool {
        if self.program != program {
            return false;
        }
        let mut given = args.iter();
        for pattern in &self.args {
            let matched = match pattern {
                ArgPattern::Rest => return true,
                ArgPattern::Literal(text) => given.next().is_some_and(|a| a == text),
                ArgPattern::Glob(glob) => given.next().is_some_and(|a| glob_one(glob, a)),
            };
            if !matched {
                return false;
            }
        }
        given.next().is_none()
    }
}

/// `*` in `pattern` matches any run of characters (within one argument).
pub(crate) fn glob_one(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().expect("split yields one part");
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

impl Grants {
    /// Is `program args…` allowed? The refusal suggests exactly this
    /// command, every argument literal.
    pub fn check_exec(&self, program: &str, args: &[String]) -> Result<(), Denial> {
        if self.exec.iter().any(|p| p.matches(program, args)) {
            return Ok(());
        }
        let exact = ExecPattern {
            program: program.to_string(),
            args: args.iter().cloned().map(ArgPattern::Literal).collect(),
        }
        .to_string();
        Err(Denial::new(
            Kind::Exec,
            exact.clone(),
            grant_line("exec", &exact),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exec_patterns() {
        let p = ExecPattern::parse("pg_dump --format=* **").unwrap();
        assert!(p.matches("pg_dump", &args(&["--format=custom"])));
        assert!(p.matches("pg_dump", &args(&["--format=c", "-d", "shop"])));
        assert!(!p.matches("pg_dump", &args(&["-d", "shop"])));
        assert!(!p.matches("/tmp/pg_dump", &args(&["--format=c"])));

        let p = ExecPattern::parse("git rev-parse *").unwrap();
        assert!(p.matches("git", &args(&["rev-parse", "HEAD"])));
        assert!(!p.matches("git", &args(&["rev-parse"])));
        assert!(!p.matches("git", &args(&["rev-parse", "HEAD", "--x"])));
        assert!(!p.matches("git", &args(&["push", "HEAD"])));

        let p = ExecPattern::parse("true").unwrap();
        assert!(p.matches("true", &[]));
        assert!(!p.matches("true", &args(&["x"])));

        assert!(ExecPattern::parse("git ** x").is_err());
        assert!(ExecPattern::parse("*").is_err());
        assert!(ExecPattern::parse("  ").is_err());
    }

    #[test]
    fn quoted_tokens_are_literal() {
        let p = ExecPattern::parse(r"rm '**'").unwrap();
        assert!(p.matches("rm", &args(&["**"])));
        assert!(!p.matches("rm", &args(&["-rf", "/"])));
        assert!(!p.matches("rm", &args(&["x"])));
        let p = ExecPattern::parse(r"echo 'a b' '*' 'it\'s'").unwrap();
        assert!(p.matches("echo", &args(&["a b", "*", "it's"])));
        assert!(!p.matches("echo", &args(&["a b", "x", "it's"])));
        assert_eq!(p.to_string(), r"echo 'a b' '*' 'it\'s'");
        assert!(ExecPattern::parse("echo 'open").is_err());
        assert!(ExecPattern::parse("echo a'b'").is_err());
        assert!(ExecPattern::parse("echo 'a'b").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_one("a*c", "abc"));
        assert!(glob_one("a*c", "ac"));
        assert!(!glob_one("a*c", "ab"));
        assert!(glob_one("*", ""));
        assert!(glob_one("--x=*-y*", "--x=1-y2"));
        assert!(!glob_one("a*a", "a"));
        assert!(glob_one("a*a", "aa"));
    }

    #[test]
    fn a_denial_suggests_exactly_the_attempt() {
        let grants = Grants {
            exec: vec![ExecPattern::parse("ls *").unwrap()],
            ..Grants::default()
        };
        let d = grants.check_exec("rm", &args(&["-rf", "/"])).unwrap_err();
        assert_eq!(d.grant, r#"grants.exec = ["rm -rf /"]"#);
        // `*` matches one argument, spaces and all.
        assert!(grants.check_exec("ls", &args(&["a b"])).is_ok());
        let d = grants.check_exec("cat", &args(&["a b"])).unwrap_err();
        assert_eq!(d.attempted, "cat 'a b'");
        assert_eq!(d.grant, r#"grants.exec = ["cat 'a b'"]"#);
        // A literal wildcard is suggested quoted, so the grant is no wider
        // than the attempt.
        let d = grants.check_exec("rm", &args(&["**"])).unwrap_err();
        assert_eq!(d.grant, r#"grants.exec = ["rm '**'"]"#);
        let suggested = ExecPattern::parse("rm '**'").unwrap();
        assert!(!suggested.matches("rm", &args(&["-rf", "/"])));
        let d = grants
            .check_exec("cp", &args(&["*.conf", "/etc"]))
            .unwrap_err();
        assert_eq!(d.grant, r#"grants.exec = ["cp '*.conf' /etc"]"#);
        assert!(grants.check_exec("ls", &args(&["/tmp"])).is_ok());
    }
}
