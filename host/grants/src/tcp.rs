//! Plain TCP (SMTP): `grants.tcp` host:port pairs, the connect check, and
//! the name-lookup check (only granted names are ever resolved, so a lookup
//! cannot carry data out through DNS).

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

use super::{Denial, Grants, Kind, grant_line};

/// A host and port a plugin may open a TCP connection to (and nothing
/// else: no listening, no UDP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct TcpGrant {
    /// Host name or address.
    pub host: String,
    /// The port.
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
    /// The refusal for a TCP connection to `addr`, which no grant allows
    /// (the socket gate compares resolved addresses).
    pub fn tcp_denial(addr: SocketAddr) -> Denial {
        let target = addr.to_string();
        Denial::new(Kind::Tcp, target.clone(), grant_line("tcp", &target))
    }

    /// May the plugin resolve `name`? Only the host names its tcp grants
    /// name (an IP literal needs no lookup and is checked at connect).
    pub fn check_lookup(&self, name: &str) -> Result<(), Denial> {
        let wanted = name.trim_end_matches('.').to_ascii_lowercase();
        if self.tcp.iter().any(|g| g.host == wanted) {
            return Ok(());
        }
        let shown: String = name.chars().take(255).collect();
        Err(Denial::new(
            Kind::Dns,
            shown.clone(),
            grant_line("tcp", &format!("{shown}:PORT")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_granted_names_resolve() {
        let grants = Grants {
            tcp: vec![TcpGrant::parse("smtp.example.com:587").unwrap()],
            ..Grants::default()
        };
        assert!(grants.check_lookup("SMTP.example.com").is_ok());
        assert!(grants.check_lookup("smtp.example.com.").is_ok());
        let d = grants
            .check_lookup("secret-data.attacker.example")
            .unwrap_err();
        assert_eq!(d.kind, Kind::Dns);
        assert!(Grants::default().check_lookup("localhost").is_err());
    }
}
