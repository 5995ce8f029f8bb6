//! Outgoing HTTP: `grants.http` origins and the check the `wasi:http` gate
//! makes before any connection.

use std::fmt;

use serde::Serialize;

use super::{Denial, Grants, Kind, grant_line};

/// An origin pattern: `scheme://host[:port]`. `*` as the port matches any
/// port; a host starting with `*.` matches subdomains. Without a port, the
/// scheme's default port is meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct OriginPattern {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address, lower case; may start with `*.`.
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

pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl OriginPattern {
    /// Parse `scheme://host[:port]` as written in a grant.
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

    /// Whether a request to `scheme://host:port` is within this origin.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => self.host == host,
        };
        self.scheme == scheme && host_ok && self.port.is_none_or(|p| p == port)
    }
}

impl Grants {
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
        Err(Denial::new(
            Kind::Http,
            origin.clone(),
            grant_line("http", &origin),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
