//! Signatures: minisign's format (ed25519 over the BLAKE2b-512 hash of the
//! component), verified with `minisign-verify` (the reference author's
//! small verifier, no dependencies) and made with the `minisign` crate
//! (same author; key generation and signing).
//!
//! A key's id is minisign's 8-byte key number, printed as 16 hex digits as
//! `minisign` prints it; refusals name the trusted keys by name and id.

use std::fmt;

/// A key a config trusts (`[trust.keys]`: NAME = "RW…").
#[derive(Clone)]
pub struct TrustedKey {
    /// Its name in the config (`platform`).
    pub name: String,
    /// The public key as written (base64, `RW…`).
    pub text: String,
    /// Its key id, 16 upper-case hex digits.
    pub id: String,
    key: minisign_verify::PublicKey,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({} {})", self.name, self.id)
    }
}

impl fmt::Display for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (key id {})", self.name, self.id)
    }
}

/// Why a key, a signature or a signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A public key that is not a minisign public key.
    #[error("not a minisign public key (the `RW…` line of a .pub file): {0}")]
    BadPublicKey(String),
    /// A secret key that cannot be used.
    #[error("cannot use the secret key: {0}")]
    BadSecretKey(String),
    /// No signature where one is required.
    #[error("it has no signature; it must be signed by {}", keys_list(.keys))]
    Missing {
        /// The trusted keys, as listed.
        keys: Vec<String>,
    },
    /// Signed, but by a key the config does not trust.
    #[error("it is signed by key id {signed_by}, which is not trusted; it must be signed by {}", keys_list(.keys))]
    UntrustedKey {
        /// The key id of the signature.
        signed_by: String,
        /// The trusted keys.
        keys: Vec<String>,
    },
    /// A signature by a trusted key that does not verify: the component or
    /// the signature was changed.
    #[error(
        "its signature by {key} does not verify: the component or its signature was changed after signing"
    )]
    Invalid {
        /// The key, as listed.
        key: String,
    },
    /// Not a minisign signature.
    #[error("its signature is not a minisign signature: {0}")]
    Malformed(String),
}

fn keys_list(keys: &[String]) -> String {
    if keys.is_empty() {
        "a key listed in [trust.keys] (there are none)".to_string()
    } else {
        format!("one of [trust.keys]: {}", keys.join(", "))
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl TrustedKey {
    /// A trusted key from its base64 text (or a whole `.pub` file).
    pub fn parse(name: &str, text: &str) -> Result<TrustedKey, SignatureError> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .unwrap_or("")
            .to_string();
        let key = minisign_verify::PublicKey::from_base64(&line)
            .map_err(|err| SignatureError::BadPublicKey(err.to_string()))?;
        let id = minisign::PublicKey::from_base64(&line)
            .map(|pk| {
                let mut keynum = pk.keynum().to_vec();
                keynum.reverse();
                hex_upper(&keynum)
            })
            .map_err(|err| SignatureError::BadPublicKey(err.to_string()))?;
        Ok(TrustedKey {
            name: name.to_string(),
            text: line,
            id,
            key,
        })
    }
}

/// Verify `signature` (a `.minisig` file's text; `None`: there is none) of
/// `bytes` against `keys`; the key that signed it.
pub fn verify<'k>(
    keys: &'k [TrustedKey],
    bytes: &[u8],
    signature: Option<&str>,
) -> Result<&'k TrustedKey, SignatureError> {
    let listed: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let Some(signature) = signature else {
        return Err(SignatureError::Missing { keys: listed });
    };
    let parsed = minisign_verify::Signature::decode(signature)
        .map_err(|err| SignatureError::Malformed(err.to_string()))?;
    for key in keys {
        match key.key.verify(bytes, &parsed, false) {
            Ok(()) => return Ok(key),
            Err(minisign_verify::Error::UnexpectedKeyId) => continue,
            Err(_) => {
                return Err(SignatureError::Invalid {
                    key: key.to_string(),
                });
            }
        }
    }
    let signed_by = minisign::SignatureBox::from_string(signature)
        .map(|sig| {
            let mut keynum = sig.keynum().to_vec();
            keynum.reverse();
            hex_upper(&keynum)
        })
        .unwrap_or_else(|_| "?".into());
    Err(SignatureError::UntrustedKey {
        signed_by,
        keys: listed,
    })
}

/// A new key pair: (secret key file text, public key file text, key id).
/// The secret key is not password-protected (for CI signers); keep it as
/// a secret.
pub fn generate_keypair() -> Result<(String, String, String), SignatureError> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|err| SignatureError::BadSecretKey(err.to_string()))?;
    let mut keynum = pair.pk.keynum().to_vec();
    keynum.reverse();
    let id = hex_upper(&keynum);
    let secret = pair
        .sk
        .to_box(Some(&format!("rewind secret key {id}")))
        .map_err(|err| SignatureError::BadSecretKey(err.to_string()))?
        .into_string();
    let public = pair
        .pk
        .to_box()
        .map_err(|err| SignatureError::BadSecretKey(err.to_string()))?
        .into_string();
    Ok((secret, public, id))
}

/// Sign `bytes` with a secret key file's text (unencrypted, or encrypted
/// with `password`); the `.minisig` text. `comment` becomes the trusted
/// comment (signed too).
pub fn sign(
    secret_key: &str,
    password: Option<String>,
    bytes: &[u8],
    comment: &str,
) -> Result<String, SignatureError> {
    let bad = |err: minisign::PError| SignatureError::BadSecretKey(err.to_string());
    let boxed = minisign::SecretKeyBox::from_string(secret_key).map_err(bad)?;
    let sk = match password {
        Some(password) => boxed.into_secret_key(Some(password)),
        None => boxed.into_unencrypted_secret_key(),
    }
    .map_err(bad)?;
    let signature = minisign::sign(None, &sk, bytes, Some(comment), None).map_err(bad)?;
    Ok(signature.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_signing_key() {
        let (secret, public, id) = generate_keypair().unwrap();
        let (_, other_public, _) = generate_keypair().unwrap();
        let trusted = TrustedKey::parse("platform", &public).unwrap();
        assert_eq!(trusted.id, id);
        let other = TrustedKey::parse("other", &other_public).unwrap();
        let signature = sign(&secret, None, b"component", "rewind plugin").unwrap();

        let keys = [other.clone(), trusted.clone()];
        assert_eq!(
            verify(&keys, b"component", Some(&signature)).unwrap().name,
            "platform"
        );
        let err = verify(std::slice::from_ref(&other), b"component", Some(&signature)).unwrap_err();
        assert!(
            matches!(&err, SignatureError::UntrustedKey { signed_by, .. } if *signed_by == id),
            "{err}"
        );
        assert!(err.to_string().contains("`other`"), "{err}");
        let err = verify(&keys, b"changed", Some(&signature)).unwrap_err();
        assert!(matches!(err, SignatureError::Invalid { .. }), "{err}");
        let err = verify(&keys, b"component", None).unwrap_err();
        assert!(err.to_string().contains("no signature"), "{err}");
        assert!(TrustedKey::parse("x", "RWnot-a-key").is_err());
    }
}
