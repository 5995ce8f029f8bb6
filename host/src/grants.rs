//! What an operator granted a plugin instance, and the checks against it.
//!
//! Deny by default: an empty [`Grants`] allows nothing. Every refusal is a
//! [`Denial`] that names the exact line to add to rewind.toml, so the
//! operator never has to guess which grant was missing.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// The grants of one plugin instance, as parsed from `grants.*` in rewind.toml.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Grants {
    pub exec: Vec<ExecPattern>,
    pub paths: Vec<PathGrant>,
    pub env: Vec<String>,
    pub http: Vec<OriginPattern>,
    /// Plain TCP connections (SMTP): `host:port`.
    pub tcp: Vec<TcpGrant>,
}

/// A refused capability, with the grant that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// "exec", "path", "env" or "http".
    pub kind: &'static str,
    /// What the plugin tried.
    pub attempted: String,
    /// The line to add under `[plugins.<instance>]`.
    pub grant: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` is not granted; to allow it add {}",
            self.kind, self.attempted, self.grant
        )
    }
}

/// Quote a string as a TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

// ---------------------------------------------------------------- exec

/// A command pattern: a program, then argument patterns. `*` matches exactly
/// one argument, `**` (last) matches all remaining arguments (including none),
/// and `*` inside a token matches any characters within one argument
/// (`--file=*`). Modelled on Zed's `process:exec` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct ExecPattern {
    pub program: String,
    pub args: Vec<String>,
}

impl From<ExecPattern> for String {
    fn from(p: ExecPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for ExecPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

impl ExecPattern {
    /// Parse "program arg-pattern…"; tokens are whitespace-separated.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = text.split_whitespace().map(str::to_string);
        let program = tokens
            .next()
            .ok_or_else(|| "an exec grant needs at least a program name".to_string())?;
        if program.contains('*') {
            return Err(format!(
                "the program in `{text}` cannot be a pattern; name the program exactly"
            ));
        }
        let args: Vec<String> = tokens.collect();
        if let Some(pos) = args.iter().position(|a| a == "**")
            && pos + 1 != args.len()
        {
            return Err(format!("`**` must be the last token in `{text}`"));
        }
        Ok(ExecPattern { program, args })
    }

    pub fn matches(&self, program: &str, args: &[String]) -> bool {
        if self.program != program {
            return false;
        }
        let mut given = args.iter();
        for pattern in &self.args {
            if pattern == "**" {
                return true;
            }
            match given.next() {
                Some(arg) if glob_one(pattern, arg) => {}
                _ => return false,
            }
        }
        given.next().is_none()
    }
}

/// `*` in `pattern` matches any run of characters (within one argument).
fn glob_one(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == text;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().expect("split yields one part");
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().expect("pattern has a star");
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last)
}

/// Quote an argument for display in a command line the way a shell would
/// need it, so that a suggested grant is unambiguous.
fn shell_word(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl Grants {
    /// Is `program args…` allowed?
    pub fn check_exec(&self, program: &str, args: &[String]) -> Result<(), Denial> {
        if self.exec.iter().any(|p| p.matches(program, args)) {
            return Ok(());
        }
        let line: Vec<String> = std::iter::once(program.to_string())
            .chain(args.iter().map(|a| shell_word(a)))
            .collect();
        let line = line.join(" ");
        // Whitespace inside an argument cannot be expressed by a pattern
        // token; suggest `program **` in that case.
        let suggestion = if args.iter().any(|a| a.chars().any(char::is_whitespace)) {
            format!("{program} **")
        } else {
            std::iter::once(program.to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        Err(Denial {
            kind: "exec",
            attempted: line,
            grant: format!("grants.exec = [{}]", toml_string(&suggestion)),
        })
    }

    /// Is `name` a granted environment variable?
    pub fn check_env(&self, name: &str) -> Result<(), Denial> {
        if self.env.iter().any(|g| g == name) {
            Ok(())
        } else {
            Err(Denial {
                kind: "env",
                attempted: name.to_string(),
                grant: format!("grants.env = [{}]", toml_string(name)),
            })
        }
    }

    /// Is `dir` (absolute, normalized) inside a granted path? Used for a
    /// command's working directory.
    pub fn check_dir(&self, dir: &Path) -> Result<(), Denial> {
        if self.paths.iter().any(|g| dir.starts_with(&g.path)) {
            Ok(())
        } else {
            Err(Denial {
                kind: "path",
                attempted: dir.display().to_string(),
                grant: format!(
                    "grants.paths = [{}]",
                    toml_string(&dir.display().to_string())
                ),
            })
        }
    }

    /// Is `path` (absolute, normalized) inside a granted path, a writable
    /// one when `write`? Used by the `fs` import.
    pub fn check_path(&self, path: &Path, write: bool) -> Result<(), Denial> {
        if self
            .paths
            .iter()
            .any(|g| path.starts_with(&g.path) && (g.writable || !write))
        {
            return Ok(());
        }
        let dir = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(path)
        };
        let shown = dir.display().to_string();
        Err(Denial {
            kind: "path",
            attempted: format!(
                "{} {}",
                if write { "write" } else { "read" },
                path.display()
            ),
            grant: format!("grants.paths = [{}]", toml_string(&shown)),
        })
    }

    /// Is an outgoing request to `scheme://host:port` allowed?
    pub fn check_http(&self, scheme: &str, host: &str, port: u16) -> Result<(), Denial> {
        if self.http.iter().any(|o| o.matches(scheme, host, port)) {
            return Ok(());
        }
        let origin = if Some(port) == default_port(scheme) {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        Err(Denial {
            kind: "http",
            attempted: origin.clone(),
            grant: format!("grants.http = [{}]", toml_string(&origin)),
        })
    }
}

/// Concrete capabilities a plugin requests that `grants` does not cover,
/// as the grant line that would. Requests written as placeholders
/// (`<origin of params.url>`) depend on params and are skipped: the grants
/// are the boundary, the requests are advice.
pub fn ungranted(
    requested: &crate::bindings::rewind::hooks::types::Capabilities,
    grants: &Grants,
) -> Vec<String> {
    let concrete = |s: &str| !s.contains('<') && !s.trim().is_empty();
    let mut out = Vec::new();
    for text in requested.exec.iter().filter(|s| concrete(s)) {
        let covered = ExecPattern::parse(text).is_ok_and(|want| {
            grants
                .exec
                .iter()
                .any(|g| g.to_string() == want.to_string())
        });
        if !covered {
            out.push(format!("grants.exec = [{}]", toml_string(text)));
        }
    }
    for request in requested.paths.iter().filter(|p| concrete(&p.path)) {
        let path = normalize(Path::new(&request.path));
        if grants.check_path(&path, request.writable).is_err() {
            let prefix = if request.writable { "" } else { "ro:" };
            out.push(format!(
                "grants.paths = [{}]",
                toml_string(&format!("{prefix}{}", path.display()))
            ));
        }
    }
    for name in requested.env.iter().filter(|s| concrete(s)) {
        if grants.check_env(name).is_err() {
            out.push(format!("grants.env = [{}]", toml_string(name)));
        }
    }
    for text in requested.http.iter().filter(|s| concrete(s)) {
        let covered = OriginPattern::parse(text).is_ok_and(|want| {
            grants.http.iter().any(|g| {
                g.to_string() == want.to_string()
                    || want
                        .port
                        .is_some_and(|port| g.matches(&want.scheme, &want.host, port))
            })
        });
        if !covered {
            out.push(format!("grants.http = [{}]", toml_string(text)));
        }
    }
    out
}

// ---------------------------------------------------------------- tcp

/// A host and port a plugin may open a TCP connection to (and nothing
/// else: no listening, no UDP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct TcpGrant {
    pub host: String,
    pub port: u16,
}

impl From<TcpGrant> for String {
    fn from(g: TcpGrant) -> String {
        g.to_string()
    }
}

impl fmt::Display for TcpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl TcpGrant {
    /// Parse "smtp.example.com:587", "127.0.0.1:25" or "[::1]:25".
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("tcp grant `{text}` must be host:port, e.g. \"smtp.example.com:587\"");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.contains('*') {
            return Err(bad());
        }
        Ok(TcpGrant {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl Grants {
    /// The refusal for a TCP connection to `addr`, which no grant allows.
    pub fn tcp_denial(addr: std::net::SocketAddr) -> Denial {
        let target = addr.to_string();
        Denial {
            kind: "tcp",
            attempted: target.clone(),
            grant: format!("grants.tcp = [{}]", toml_string(&target)),
        }
    }
}

// ---------------------------------------------------------------- paths

/// A granted directory or file, preopened at the same path in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathGrant {
    pub path: PathBuf,
    pub writable: bool,
}

impl PathGrant {
    /// Parse "/srv/app" (read-write) or "ro:/etc/app" (read-only).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (writable, raw) = match text.strip_prefix("ro:") {
            Some(rest) => (false, rest),
            None => (true, text.strip_prefix("rw:").unwrap_or(text)),
        };
        let path = Path::new(raw);
        if !path.is_absolute() {
            return Err(format!(
                "path grant `{text}` must be absolute (e.g. \"/srv/app\" or \"ro:/etc/app\")"
            ));
        }
        Ok(PathGrant {
            path: normalize(path),
            writable,
        })
    }
}

/// Resolve `.` and `..` lexically, without touching the filesystem.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------- http

/// An origin pattern: `scheme://host[:port]`. `*` as the port matches any
/// port; a host starting with `*.` matches subdomains. Without a port, the
/// scheme's default port is meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct OriginPattern {
    pub scheme: String,
    pub host: String,
    /// None = any port.
    pub port: Option<u16>,
}

impl From<OriginPattern> for String {
    fn from(p: OriginPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}://{}:{port}", self.scheme, self.host),
            None => write!(f, "{}://{}:*", self.scheme, self.host),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{text}` is not an origin; write scheme://host[:port], e.g. \"https://hooks.slack.com\" or \"http://127.0.0.1:*\""
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(usage)?;
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "`{text}`: only http and https origins can be granted"
            ));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!(
                "`{text}`: grant an origin, without a path (e.g. \"{scheme}://{}\")",
                rest.split('/').next().unwrap_or_default()
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                (host, Some(port.parse::<u16>().map_err(|_| usage())?))
            }
            _ => (rest, default_port(scheme)),
        };
        if host.is_empty() {
            return Err(usage());
        }
        Ok(OriginPattern {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => self.host == host,
        };
        self.scheme == scheme && host_ok && self.port.is_none_or(|p| p == port)
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
    fn globs() {
        assert!(glob_one("a*c", "abc"));
        assert!(glob_one("a*c", "ac"));
        assert!(!glob_one("a*c", "ab"));
        assert!(glob_one("*", ""));
        assert!(glob_one("--x=*-y*", "--x=1-y2"));
        assert!(!glob_one("a*a", "a"));
    }

    #[test]
    fn tcp_grants_parse_host_and_port() {
        let g = TcpGrant::parse("SMTP.example.com:587").unwrap();
        assert_eq!((g.host.as_str(), g.port), ("smtp.example.com", 587));
        assert_eq!(TcpGrant::parse("[::1]:25").unwrap().to_string(), "[::1]:25");
        assert!(TcpGrant::parse("smtp.example.com").is_err());
        assert!(TcpGrant::parse("*.example.com:25").is_err());
        let d = Grants::tcp_denial("127.0.0.1:2525".parse().unwrap());
        assert_eq!(d.grant, r#"grants.tcp = ["127.0.0.1:2525"]"#);
    }

    #[test]
    fn exec_denial_names_the_grant() {
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
        assert_eq!(d.grant, r#"grants.exec = ["cat **"]"#);
        assert!(grants.check_exec("ls", &args(&["/tmp"])).is_ok());
    }

    #[test]
    fn origins() {
        let any_port = OriginPattern::parse("http://127.0.0.1:*").unwrap();
        assert!(any_port.matches("http", "127.0.0.1", 8080));
        assert!(!any_port.matches("https", "127.0.0.1", 8080));
        let default = OriginPattern::parse("https://hooks.slack.com/").unwrap();
        assert!(default.matches("https", "HOOKS.slack.com", 443));
        assert!(!default.matches("https", "hooks.slack.com", 8443));
        let sub = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(sub.matches("https", "a.example.com", 443));
        assert!(!sub.matches("https", "example.com.evil", 443));
        assert!(OriginPattern::parse("ftp://x").is_err());
        assert!(OriginPattern::parse("https://x/path").is_err());

        let grants = Grants::default();
        let d = grants.check_http("http", "127.0.0.1", 9000).unwrap_err();
        assert_eq!(d.grant, r#"grants.http = ["http://127.0.0.1:9000"]"#);
    }

    #[test]
    fn paths() {
        let g = PathGrant::parse("ro:/etc/app/../app2/").unwrap();
        assert_eq!(g.path, PathBuf::from("/etc/app2"));
        assert!(!g.writable);
        assert!(PathGrant::parse("relative").is_err());
        let grants = Grants {
            paths: vec![PathGrant::parse("/srv/app").unwrap()],
            ..Grants::default()
        };
        assert!(grants.check_dir(Path::new("/srv/app/releases")).is_ok());
        assert!(grants.check_dir(Path::new("/srv/application")).is_err());
    }
}
