//! `rewind-grants`: what an operator granted a plugin instance, and the one
//! check per capability kind. It depends on no other rewind crate: the
//! sandbox, the config and the compile cache all build on it, so it must
//! not know any of them.
//!
//! Deny by default: an empty [`Grants`] allows nothing. Each capability kind
//! has one module here with one check that every enforcement point calls
//! (the WASI filesystem, the `fs` and `process` imports, the HTTP gate, the
//! socket and name-lookup gates), and every refusal is a [`Denial`] that
//! renders the exact line to add to rewind.toml, so the operator never has
//! to guess which grant was missing.

#![deny(missing_docs)]

pub mod env;
pub mod exec;
pub mod http;
pub mod owners;
pub mod paths;
pub mod risks;
pub mod tcp;
pub mod text;

use std::fmt;

use serde::Serialize;

pub use exec::ExecPattern;
pub use http::OriginPattern;
pub use owners::OwnerGrant;
pub use paths::{Access, PathGrant, normalize};
pub use tcp::TcpGrant;
pub use text::{GrantError, GrantKey, GrantTexts};

/// The grants of one plugin instance, as parsed from `grants.*` in rewind.toml.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Grants {
    /// Commands the `process` import may run.
    pub exec: Vec<ExecPattern>,
    /// Directories and files, read-only or read-write.
    pub paths: Vec<PathGrant>,
    /// Environment variables a hook may read (and pass to commands).
    pub env: Vec<String>,
    /// Origins outgoing HTTP may reach.
    pub http: Vec<OriginPattern>,
    /// Plain TCP connections (SMTP): `host:port`.
    pub tcp: Vec<TcpGrant>,
    /// Users and groups the `fs` import may give files to (`grants.owners`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<OwnerGrant>,
    /// Whether the `fs` import may set setuid and setgid bits (`grants.setid`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub setid: bool,
}

/// The kind of capability a denial is about; also the `grants.<kind>` key
/// that would allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Running a command.
    Exec,
    /// A file or directory.
    Path,
    /// An environment variable.
    Env,
    /// An HTTP request.
    Http,
    /// A TCP connection or name lookup.
    Tcp,
    /// Resolving a host name (allowed only for names in `grants.tcp`).
    Dns,
    /// Giving a file to another user or group.
    Owner,
    /// Setting setuid or setgid bits.
    Setid,
    /// Something no grant can allow (a link that leaves the grants, a
    /// program the plugin can write): the refusal explains why instead.
    Never,
}

impl Kind {
    /// The word a refusal uses for it (`command`, `path`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Path => "path",
            Kind::Env => "env",
            Kind::Http => "http",
            Kind::Tcp => "tcp",
            Kind::Dns => "dns",
            Kind::Owner => "owner",
            Kind::Setid => "setid",
            Kind::Never => "never",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused capability, with the grant that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// What kind of capability was refused.
    pub kind: Kind,
    /// What the plugin tried.
    pub attempted: String,
    /// The line to add under `[plugins.<instance>]`; for [`Kind::Never`],
    /// why no grant allows it.
    pub grant: String,
}

impl Denial {
    /// A refusal of `attempted`, naming the `grant` line that would allow it.
    pub fn new(kind: Kind, attempted: impl Into<String>, grant: impl Into<String>) -> Self {
        Denial {
            kind,
            attempted: attempted.into(),
            grant: grant.into(),
        }
    }
}

/// The one sentence every refusal is rendered as, in logs, errors and the
/// CLI alike.
impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Never => write!(f, "`{}` is refused: {}", self.attempted, self.grant),
            kind => write!(
                f,
                "{kind} `{}` is not granted; to allow it add {}",
                self.attempted, self.grant
            ),
        }
    }
}

/// Quote a string as a TOML basic string.
pub(crate) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `grants.<key> = ["<value>"]`, quoted for TOML: the line a refusal or a
/// check tells the operator to add.
pub fn grant_line(key: &str, value: &str) -> String {
    format!("grants.{key} = [{}]", toml_string(value))
}
