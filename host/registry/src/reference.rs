//! `oci://registry/repository:tag`, `oci://registry/repository@sha256:…`.

use std::fmt;

/// The scheme of a plugin source that lives in an OCI registry.
pub const SCHEME: &str = "oci://";

/// A plugin's place in an OCI registry, as written after `oci://`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciReference {
    /// `registry.example:5000`.
    pub registry: String,
    /// `platform/postgres`.
    pub repository: String,
    /// `1.2.0`, when one is named.
    pub tag: Option<String>,
    /// `sha256:…` (of the manifest), when one is named.
    pub digest: Option<String>,
}

/// Why a source is not an OCI reference rewind accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an OCI plugin reference: {why}; write it as oci://registry.example:5000/team/plugin:1.2.0"
)]
pub struct ReferenceError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl OciReference {
    /// Whether a source names a registry (starts with `oci://`).
    pub fn is_oci(source: &str) -> bool {
        source.starts_with(SCHEME)
    }

    /// Parse `oci://registry/repository:tag[@digest]`. The registry must be
    /// named (no implicit Docker Hub) and a tag or a digest given (no
    /// implicit `latest`): what runs is always said in the config.
    pub fn parse(text: &str) -> Result<OciReference, ReferenceError> {
        let error = |why: &str| ReferenceError {
            text: text.to_string(),
            why: why.to_string(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| error("it does not start with oci://"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| error("it names no repository after the registry"))?;
        if registry.is_empty()
            || !(registry.contains('.') || registry.contains(':') || registry == "localhost")
        {
            return Err(error(
                "the registry (the part before the first `/`) must be a host name with a dot \
                 or a port, or localhost",
            ));
        }
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => (
                path,
                Some(normalize_digest(digest).ok_or_else(|| {
                    error("the digest after `@` must be sha256: and 64 hex digits")
                })?),
            ),
            None => (path, None),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_string())),
            _ => (path, None),
        };
        if tag.is_none() && digest.is_none() {
            return Err(error(
                "it names neither a tag (:1.2.0) nor a digest (@sha256:…)",
            ));
        }
        let valid_repository = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !valid_repository {
            return Err(error(
                "the repository must be lower-case letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !valid {
                return Err(error(
                    "the tag must be 1-128 letters, digits, `.`, `_` or `-`",
                ));
            }
        }
        Ok(OciReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The same repository at a manifest digest (the tag kept for people).
    pub fn at_digest(&self, digest: &str) -> OciReference {
        OciReference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The same repository under another tag.
    pub fn with_tag(&self, tag: &str) -> OciReference {
        OciReference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The version a lock records: the tag, else the digest.
    pub fn version(&self) -> String {
        self.tag
            .clone()
            .or_else(|| self.digest.clone())
            .unwrap_or_default()
    }

    /// Whether the registry is on this host's loopback, the only place
    /// rewind talks plain HTTP to.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => self.registry.as_str(),
        };
        matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
    }

    /// The client's reference: by digest when there is one, so a tag is
    /// never what decides.
    pub(crate) fn to_client(&self) -> oci_client::Reference {
        match &self.digest {
            Some(digest) => match &self.tag {
                Some(tag) => oci_client::Reference::with_tag_and_digest(
                    self.registry.clone(),
                    self.repository.clone(),
                    tag.clone(),
                    digest.clone(),
                ),
                None => oci_client::Reference::with_digest(
                    self.registry.clone(),
                    self.repository.clone(),
                    digest.clone(),
                ),
            },
            None => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                self.tag.clone().unwrap_or_default(),
            ),
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `sha256:<64 hex>` in lower case, from `sha256:…` or bare hex.
pub fn normalize_digest(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let hex = text.strip_prefix("sha256:").unwrap_or(&text);
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// The hex part of `sha256:<hex>`.
pub fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        let r = OciReference::parse("oci://registry.example:5000/platform/postgres:1.2.0").unwrap();
        assert_eq!(r.registry, "registry.example:5000");
        assert_eq!(r.repository, "platform/postgres");
        assert_eq!(r.tag.as_deref(), Some("1.2.0"));
        assert_eq!(
            r.to_string(),
            "oci://registry.example:5000/platform/postgres:1.2.0"
        );
        assert!(!r.is_loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r = OciReference::parse(&format!("oci://127.0.0.1:5000/p@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(r.is_loopback());
    }

    #[test]
    fn what_is_not_said_is_refused() {
        for (text, why) in [
            ("oci://registry.example/p", "neither a tag"),
            ("oci://postgres:1.2", "no repository"),
            ("oci://docker/postgres:1", "must be a host name"),
            ("oci://r.example/Postgres:1", "lower-case"),
            ("oci://r.example/p@sha256:12", "64 hex"),
        ] {
            let err = OciReference::parse(text).unwrap_err();
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }
}
