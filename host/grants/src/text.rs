//! Grants written as text: `grants.*` in rewind.toml and the `--grant-*`
//! flags of ad-hoc runs go through this one parser, so both accept and
//! refuse exactly the same values with the same messages.

use std::fmt;

use super::{ExecPattern, Grants, OriginPattern, OwnerGrant, PathGrant, TcpGrant};

/// A kind of grant written as a list of texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKey {
    /// `grants.exec`.
    Exec,
    /// `grants.paths`.
    Paths,
    /// `grants.env`.
    Env,
    /// `grants.http`.
    Http,
    /// `grants.tcp`.
    Tcp,
    /// `grants.owners`.
    Owners,
}

impl GrantKey {
    /// Every key, in the order grants are parsed (and errors reported).
    pub const ALL: [GrantKey; 6] = [
        GrantKey::Exec,
        GrantKey::Paths,
        GrantKey::Env,
        GrantKey::Http,
        GrantKey::Tcp,
        GrantKey::Owners,
    ];

    /// The key under `grants.` in rewind.toml.
    pub fn key(self) -> &'static str {
        match self {
            GrantKey::Exec => "exec",
            GrantKey::Paths => "paths",
            GrantKey::Env => "env",
            GrantKey::Http => "http",
            GrantKey::Tcp => "tcp",
            GrantKey::Owners => "owners",
        }
    }

    /// The command-line flag that grants one value of this kind.
    pub fn flag(self) -> &'static str {
        match self {
            GrantKey::Exec => "--grant-exec",
            GrantKey::Paths => "--grant-path",
            GrantKey::Env => "--grant-env",
            GrantKey::Http => "--grant-http",
            GrantKey::Tcp => "--grant-tcp",
            GrantKey::Owners => "--grant-owner",
        }
    }
}

/// The grants of one instance as written, before parsing: texts, or
/// (for rewind.toml) the entries that carry them with their spans.
#[derive(Debug, Clone)]
pub struct GrantTexts<T> {
    /// `grants.exec` as written.
    pub exec: Vec<T>,
    /// Absolute paths, optionally prefixed `ro:` or `rw:`.
    pub paths: Vec<T>,
    /// `grants.env` as written.
    pub env: Vec<T>,
    /// `grants.http` as written.
    pub http: Vec<T>,
    /// `grants.tcp` as written.
    pub tcp: Vec<T>,
    /// `grants.owners` as written.
    pub owners: Vec<T>,
    /// `grants.setid`: commands and `fs` may set setuid/setgid bits.
    pub setid: bool,
}

impl<T> Default for GrantTexts<T> {
    fn default() -> Self {
        GrantTexts {
            exec: Vec::new(),
            paths: Vec::new(),
            env: Vec::new(),
            http: Vec::new(),
            tcp: Vec::new(),
            owners: Vec::new(),
            setid: false,
        }
    }
}

impl<T> GrantTexts<T> {
    /// The entries written for `key`.
    pub fn get(&self, key: GrantKey) -> &[T] {
        match key {
            GrantKey::Exec => &self.exec,
            GrantKey::Paths => &self.paths,
            GrantKey::Env => &self.env,
            GrantKey::Http => &self.http,
            GrantKey::Tcp => &self.tcp,
            GrantKey::Owners => &self.owners,
        }
    }

    /// The same lists, each entry mapped by `f`.
    pub fn map<'a, U>(&'a self, f: impl Fn(&'a T) -> U) -> GrantTexts<U> {
        let list = |entries: &'a [T]| entries.iter().map(&f).collect();
        GrantTexts {
            exec: list(&self.exec),
            paths: list(&self.paths),
            env: list(&self.env),
            http: list(&self.http),
            tcp: list(&self.tcp),
            owners: list(&self.owners),
            setid: self.setid,
        }
    }
}

/// A grant text that does not parse: the `index`-th value of `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError {
    /// Which key the bad grant was under.
    pub key: GrantKey,
    /// Its position in that list, from 0.
    pub index: usize,
    /// Why it is not a grant.
    pub message: String,
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grants.{}: {}", self.key.key(), self.message)
    }
}

impl std::error::Error for GrantError {}

impl Grants {
    /// Parse every grant text; the first one that does not parse is the
    /// error, in [`GrantKey::ALL`] order.
    pub fn from_texts(texts: &GrantTexts<&str>) -> Result<Grants, GrantError> {
        let mut grants = Grants {
            setid: texts.setid,
            ..Grants::default()
        };
        for key in GrantKey::ALL {
            for (index, text) in texts.get(key).iter().enumerate() {
                grants.add(key, text).map_err(|message| GrantError {
                    key,
                    index,
                    message,
                })?;
            }
        }
        Ok(grants)
    }

    /// Parse one grant of kind `key` and add it.
    pub fn add(&mut self, key: GrantKey, text: &str) -> Result<(), String> {
        match key {
            GrantKey::Exec => self.exec.push(ExecPattern::parse(text)?),
            GrantKey::Paths => self.paths.push(PathGrant::parse(text)?),
            GrantKey::Env => {
                super::env::check_name(text)?;
                self.env.push(text.to_string());
            }
            GrantKey::Http => self.http.push(OriginPattern::parse(text)?),
            GrantKey::Tcp => self.tcp.push(TcpGrant::parse(text)?),
            GrantKey::Owners => self.owners.push(OwnerGrant::parse(text)?),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_the_first_bad_text_is_named() {
        let texts = GrantTexts {
            exec: vec!["git rev-parse *"],
            paths: vec!["/srv/app", "ro:/etc/app"],
            env: vec!["PGPASSWORD"],
            http: vec!["https://hooks.slack.com"],
            tcp: vec!["smtp.example.com:587"],
            owners: vec!["0:0"],
            setid: true,
        };
        let grants = Grants::from_texts(&texts).unwrap();
        assert_eq!(grants.exec.len(), 1);
        assert_eq!(grants.paths.len(), 2);
        assert_eq!(grants.env, ["PGPASSWORD"]);
        assert_eq!(grants.http.len(), 1);
        assert_eq!(grants.tcp.len(), 1);
        assert_eq!(grants.owners.len(), 1);
        assert!(grants.setid);

        let texts = GrantTexts {
            paths: vec!["/srv/app", "srv/app"],
            env: vec!["A=B"],
            ..GrantTexts::default()
        };
        let err = Grants::from_texts(&texts).unwrap_err();
        assert_eq!((err.key, err.index), (GrantKey::Paths, 1), "{err}");
        assert!(err.to_string().starts_with("grants.paths: "), "{err}");
        assert!(err.message.contains("must be absolute"), "{err}");
    }
}
