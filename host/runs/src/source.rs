//! Before a plugin of the config is loaded: an `oci://` plugin that is not
//! in the plugin cache yet is pulled by its locked digest (never by tag),
//! and under `[trust] require_signature = true` its signature (beside the
//! file: `FILE.minisig`, or the cached one for a registry plugin) is
//! verified against `[trust.keys]` before a byte of it is compiled.

use std::path::PathBuf;

use rewind_registry::cache::signature_path;
use rewind_registry::{PluginCache, Registry, RegistryError, SignatureError};
use rewind_sandbox::plugin::PluginError;

use crate::config::{Config, Instance, OciSource};

/// Why an instance's plugin is not ready to load.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Its `oci://` source has no lock entry (a config read unlocked).
    #[error(
        "plugin instance `{instance}`: {reference} is not locked in {}; run `rewind plugins lock`",
        lock.display()
    )]
    NotLocked {
        /// The instance.
        instance: String,
        /// The source.
        reference: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// Pulling its locked plugin failed, or the registry served other
    /// content than the lock pins.
    #[error("plugin instance `{instance}`: cannot fetch its locked plugin")]
    Fetch {
        /// The instance.
        instance: String,
        /// Why.
        source: RegistryError,
    },
    /// The plugin file could not be read, or is not its pin.
    #[error("plugin instance `{instance}`")]
    Plugin {
        /// The instance.
        instance: String,
        /// Why.
        source: PluginError,
    },
    /// `require_signature` and the plugin is not signed by a trusted key.
    #[error(
        "plugin instance `{instance}` ({plugin}) is refused before it is compiled: {reason}. {fix}"
    )]
    Signature {
        /// The instance.
        instance: String,
        /// Its source.
        plugin: String,
        /// What is wrong with its signature.
        reason: SignatureError,
        /// What to do.
        fix: String,
    },
}

/// Make `instance`'s plugin ready for [`rewind_sandbox::plugin::load`]:
/// pulled (by digest) if it comes from a registry and is not cached, and
/// its signature verified when the config requires one.
pub fn prepare(config: &Config, instance: &Instance) -> Result<(), SourceError> {
    let name = || instance.name.clone();
    if let Some(OciSource { reference, locked }) = &instance.oci {
        let Some(locked) = locked else {
            return Err(SourceError::NotLocked {
                instance: name(),
                reference: reference.to_string(),
                lock: config.lock_path.clone(),
            });
        };
        if !instance.source.is_file() {
            let cache = PluginCache::new(
                instance
                    .source
                    .parent()
                    .and_then(|p| p.parent())
                    .expect("a cached plugin is <cache>/sha256/<hex>.wasm"),
            );
            let client =
                Registry::for_reference(reference).map_err(|source| SourceError::Fetch {
                    instance: name(),
                    source,
                })?;
            client
                .pull(reference, locked, &cache)
                .map_err(|source| SourceError::Fetch {
                    instance: name(),
                    source,
                })?;
        }
    }
    if !config.trust.require_signature {
        return Ok(());
    }
    let bytes = std::fs::read(&instance.source).map_err(|source| SourceError::Plugin {
        instance: name(),
        source: PluginError::Read {
            path: instance.source.clone(),
            source,
        },
    })?;
    // The bytes verified are the pinned bytes, so the file the sandbox
    // reads next (and pin-checks) is the one whose signature was checked.
    let actual = rewind_core::sha256_hex(&bytes);
    if actual != instance.sha256 {
        return Err(SourceError::Plugin {
            instance: name(),
            source: PluginError::PinMismatch {
                path: instance.source.clone(),
                expected: instance.sha256.clone(),
                actual,
            },
        });
    }
    let sig_path = signature_path(&instance.source);
    let cached = std::fs::read_to_string(&sig_path).ok();
    let mut verified = rewind_registry::sign::verify(&config.trust.keys, &bytes, cached.as_deref());
    if verified.is_err()
        && let Some(OciSource {
            reference,
            locked: Some(locked),
        }) = &instance.oci
    {
        // Cached before it was signed, or signed again since: ask the
        // registry once more. Offline, the refusal stands.
        let fresh = Registry::for_reference(reference)
            .and_then(|client| client.pull_signature(reference, &locked.digest));
        if let Ok(Some(fresh)) = fresh
            && Some(&fresh) != cached.as_ref()
        {
            let _ = rewind_store::write_atomic(&sig_path, fresh.as_bytes());
            verified = rewind_registry::sign::verify(&config.trust.keys, &bytes, Some(&fresh));
        }
    }
    match verified {
        Ok(_) => Ok(()),
        Err(reason) => {
            let plugin = instance.source_label();
            let target = match &instance.oci {
                Some(oci) => oci.reference.to_string(),
                None => instance.source.display().to_string(),
            };
            let fix = match &reason {
                SignatureError::Missing { .. } | SignatureError::Malformed(_) => format!(
                    "Sign it with `rewind plugins sign --key KEY.key {target}` using the secret \
                     half of a key in [trust.keys], or set require_signature = false in [trust] \
                     of {}",
                    config.path.display()
                ),
                SignatureError::UntrustedKey { signed_by, .. } => format!(
                    "If key {signed_by} is a team key you trust, add its public key under \
                     [trust.keys] in {}; otherwise have the plugin signed by a listed key",
                    config.path.display()
                ),
                _ => "Do not run it: re-sign the intended component, or restore it".to_string(),
            };
            Err(SourceError::Signature {
                instance: name(),
                plugin,
                reason,
                fix,
            })
        }
    }
}
