//! Pushing and pulling plugins, in the format the Wasm ecosystem shares.
//!
//! A plugin is the CNCF TAG Runtime Wasm OCI artifact: an image manifest
//! (`application/vnd.oci.image.manifest.v1+json`) whose config is
//! `application/vnd.wasm.config.v0+json` (the component's exports and
//! imports, made by `oci-wasm` as `wkg` makes it) and whose one layer is the
//! component, `application/wasm`. What rewind pushes, `wkg oci pull` and
//! `oras pull` pull, and the reverse.
//!
//! A signature is a second artifact in the same repository, tagged
//! `sha256-<manifest hex>.sig` (cosign's tag convention, so it is found
//! without the referrers API, which Debian's registry lacks) and naming the
//! plugin's manifest as its `subject` (so registries with the OCI 1.1
//! referrers API list it): an empty config, `artifactType`
//! [`SIGNATURE_ARTIFACT_TYPE`], one layer [`SIGNATURE_MEDIA_TYPE`] holding
//! the minisign signature of the component.
//!
//! Plain HTTP is used only for a registry on loopback (`127.0.0.0/8`,
//! `localhost`, `[::1]`); everywhere else it is HTTPS (rustls). Credentials:
//! `REWIND_REGISTRY_USERNAME` and `REWIND_REGISTRY_PASSWORD` (basic, or the
//! registry's bearer-token flow with them), `REWIND_REGISTRY_TOKEN`
//! (bearer), else the registry's entry in docker's `config.json` (what
//! `docker login` and `oras login` write: `auths`, or a credential helper),
//! else anonymous (with the registry's anonymous token flow).

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;

use crate::cache::PluginCache;
use crate::lock::LockedPlugin;
use crate::reference::{OciReference, digest_hex};

/// The manifest media type of a plugin (and of its signature).
pub const MANIFEST_MEDIA_TYPE: &str = oci_wasm::WASM_MANIFEST_MEDIA_TYPE;
/// The config media type of a plugin.
pub const CONFIG_MEDIA_TYPE: &str = oci_wasm::WASM_MANIFEST_CONFIG_MEDIA_TYPE;
/// The media type of a plugin's one layer.
pub const LAYER_MEDIA_TYPE: &str = oci_wasm::WASM_LAYER_MEDIA_TYPE;
/// The `artifactType` of a signature artifact.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.rewind.signature.v1";
/// The media type of a signature artifact's one layer: a `.minisig` file.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.rewind.signature.v1.minisig";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// Why talking to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The client runtime could not start.
    #[error("cannot start the registry client")]
    Runtime(#[source] std::io::Error),
    /// The registry refused or failed a request.
    #[error("{what} {reference}")]
    Request {
        /// What was being done ("pull the manifest of").
        what: &'static str,
        /// The reference.
        reference: String,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// What the registry holds is not a Wasm component artifact.
    #[error("{reference} is not a Wasm component artifact: {why}")]
    NotAPlugin {
        /// The reference.
        reference: String,
        /// What is wrong with its manifest.
        why: String,
    },
    /// The registry's manifest or layer is not the locked one.
    #[error(
        "{reference}: the registry's {what} has digest {actual}, but rewind.lock pins {expected}; \
         nothing was run. If the registry's content is what you want, run `rewind plugins lock`"
    )]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// "manifest", "component".
        what: &'static str,
        /// The locked digest.
        expected: String,
        /// What the registry served.
        actual: String,
    },
    /// Docker's `config.json` names credentials for the registry that
    /// cannot be used (a helper that failed, an `auth` that does not decode).
    #[error(
        "cannot use the credentials for {registry} in docker's config ({config}): {reason}; \
         fix them with `docker login {registry}`, or set REWIND_REGISTRY_USERNAME and \
         REWIND_REGISTRY_PASSWORD"
    )]
    Credentials {
        /// The registry (`host:port`).
        registry: String,
        /// Where the config was looked for.
        config: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing into the plugin cache failed (or the content was not its digest).
    #[error("cannot keep {reference} in the plugin cache {}", dir.display())]
    Cache {
        /// The reference.
        reference: String,
        /// The cache directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a push made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest's digest.
    pub digest: String,
    /// The component's digest.
    pub wasm: String,
}

/// A client for the registries rewind talks to.
pub struct Registry {
    client: oci_wasm::WasmClient,
    runtime: tokio::runtime::Runtime,
    auth: RegistryAuth,
}

/// The credentials for `registry`: rewind's own variables first (a CI job
/// sets them for one command), then docker's `config.json`, else anonymous.
fn auth(registry: &str) -> Result<RegistryAuth, RegistryError> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (
        var("REWIND_REGISTRY_USERNAME"),
        var("REWIND_REGISTRY_PASSWORD"),
        var("REWIND_REGISTRY_TOKEN"),
    ) {
        (Some(user), Some(password), _) => return Ok(RegistryAuth::Basic(user, password)),
        (_, _, Some(token)) => return Ok(RegistryAuth::Bearer(token)),
        _ => {}
    }
    docker_auth(&docker_config_path(), registry)
}

/// The most bytes of docker's `config.json` rewind reads: a config of
/// many registries is a few KiB; a larger file is not one docker wrote.
const DOCKER_CONFIG_MAX: u64 = 1 << 20;

/// Is `name` a credential helper's name: the `<name>` of a program
/// `docker-credential-<name>` looked up on `PATH`? Letters, digits, `.`,
/// `_`, `-`, at most 64. Why: the name is appended to
/// `docker-credential-` and run, so a `/` in it would make it a path
/// (`x/../../tmp/evil` runs `./docker-credential-x/../../tmp/evil`, a
/// program anyone who can write the working directory chooses), and
/// nothing else belongs in a program name.
pub fn is_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != ".."
}

/// The credentials for `registry` in the docker config at `config`
/// (anonymous when there is none). The file is read here, bounded, and
/// the helper it names is checked before `docker_credential` may run it.
fn docker_auth(config: &str, registry: &str) -> Result<RegistryAuth, RegistryError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    use std::io::Read;
    let refuse = |reason: String| RegistryError::Credentials {
        registry: registry.to_string(),
        config: config.to_string(),
        reason,
    };
    // Only a regular file (a FIFO would block the open or the read, a
    // device never end), and only its first DOCKER_CONFIG_MAX bytes.
    let bytes = match std::fs::metadata(config) {
        Err(_) => return Ok(RegistryAuth::Anonymous),
        Ok(meta) if !meta.is_file() => {
            return Err(refuse("it is not a regular file".into()));
        }
        Ok(meta) if meta.len() > DOCKER_CONFIG_MAX => {
            return Err(refuse(format!(
                "it is {} bytes, more than the {DOCKER_CONFIG_MAX} rewind reads",
                meta.len()
            )));
        }
        Ok(_) => {
            let mut bytes = Vec::new();
            match std::fs::File::open(config)
                .and_then(|f| f.take(DOCKER_CONFIG_MAX + 1).read_to_end(&mut bytes))
            {
                Ok(_) if bytes.len() as u64 > DOCKER_CONFIG_MAX => {
                    return Err(refuse(format!(
                        "it is more than the {DOCKER_CONFIG_MAX} bytes rewind reads"
                    )));
                }
                Ok(_) => bytes,
                Err(_) => return Ok(RegistryAuth::Anonymous),
            }
        }
    };
    // The helpers this registry's lookup may run: its `credHelpers` entry,
    // and `credsStore`. Each must be a program name, never a path.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Helpers {
        creds_store: Option<String>,
        cred_helpers: Option<std::collections::HashMap<String, String>>,
    }
    if let Ok(helpers) = serde_json::from_slice::<Helpers>(&bytes) {
        let named = helpers
            .cred_helpers
            .as_ref()
            .and_then(|h| h.get(registry))
            .filter(|name| !name.is_empty())
            .map(|name| (format!("credHelpers[{registry:?}]"), name));
        let store = helpers
            .creds_store
            .as_ref()
            .map(|name| ("credsStore".to_string(), name));
        for (key, name) in named.into_iter().chain(store) {
            if !is_helper_name(name) {
                return Err(refuse(format!(
                    "{key} names the credential helper {:?}, which is not a program name \
                     (letters, digits, '.', '_', '-'); rewind runs docker-credential-<name> \
                     from PATH and never a path",
                    name.chars().take(80).collect::<String>()
                )));
            }
        }
    }
    match docker_credential::get_credential_from_reader(&bytes[..], registry) {
        Ok(DockerCredential::UsernamePassword(user, password)) => {
            Ok(RegistryAuth::Basic(user, password))
        }
        // An identity token is an OAuth refresh token for the registry's
        // token service, which oci-client cannot exchange; a `docker login`
        // with a password (or the variables above) is what works.
        Ok(DockerCredential::IdentityToken(_)) => Err(refuse(
            "it holds an identity token, which rewind cannot use".into(),
        )),
        // No config, or nothing in it for this registry: anonymous.
        Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => {
            Ok(RegistryAuth::Anonymous)
        }
        // A helper that failed: its stderr says why; its stdout may hold
        // a secret and is not repeated. Cut, and control characters out.
        Err(E::HelperFailure { helper, stderr, .. }) => Err(refuse(format!(
            "the credential helper {helper} failed: {}",
            stderr
                .trim()
                .chars()
                .take(500)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
        ))),
        Err(err) => Err(refuse(err.to_string().trim().to_string())),
    }
}

/// Where docker's config is read from, as docker_credential looks for it.
fn docker_config_path() -> String {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
    match dir {
        Some(dir) => dir.join("config.json").display().to_string(),
        None => "$DOCKER_CONFIG/config.json".to_string(),
    }
}

fn request_error(
    what: &'static str,
    reference: &OciReference,
) -> impl FnOnce(OciDistributionError) -> RegistryError {
    let reference = reference.to_string();
    move |err| RegistryError::Request {
        what,
        reference,
        source: Box::new(err),
    }
}

fn not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// The largest component rewind pulls (a Python plugin, CPython inside,
/// is about 40 MB): what a registry sends beyond it is refused, not held.
pub const MAX_COMPONENT: u64 = 256 << 20;
/// The largest signature layer rewind pulls (a `.minisig` is ~300 bytes).
const MAX_SIGNATURE: u64 = 64 << 10;

/// A blob's bytes in memory, refusing more than `max` (the layer's
/// declared size when it has one, and never more than the caller's cap):
/// a registry that streams without end cannot exhaust rewind's memory.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
}

impl Capped {
    fn for_layer(layer: &OciDescriptor, cap: u64) -> Capped {
        let declared = u64::try_from(layer.size).unwrap_or(0);
        let max = if declared > 0 { declared.min(cap) } else { cap };
        Capped {
            bytes: Vec::new(),
            max,
        }
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.bytes.len() as u64 + data.len() as u64 > self.max {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the registry sent more than the {} bytes rewind accepts for this layer \
                     (its declared size, capped); refused",
                    self.max
                ),
            )));
        }
        self.bytes.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Registry {
    /// A blob of `target`, at most `cap` bytes and never more than its
    /// layer declares.
    fn pull_capped(
        &self,
        target: &OciReference,
        layer: &OciDescriptor,
        cap: u64,
    ) -> Result<Vec<u8>, OciDistributionError> {
        let mut out = Capped::for_layer(layer, cap);
        self.runtime
            .block_on(self.client.pull_blob(&target.to_client(), layer, &mut out))?;
        Ok(out.bytes)
    }

    /// A client for `reference`'s registry: HTTPS, or plain HTTP when the
    /// registry is on loopback.
    pub fn for_reference(reference: &OciReference) -> Result<Registry, RegistryError> {
        let protocol = if reference.is_loopback() {
            ClientProtocol::HttpsExcept(vec![reference.registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::Runtime)?;
        Ok(Registry {
            client: oci_wasm::WasmClient::new(client),
            runtime,
            auth: auth(&reference.registry)?,
        })
    }

    /// Push a component under `reference`'s tag as the Wasm artifact.
    pub fn push(&self, reference: &OciReference, wasm: Vec<u8>) -> Result<Pushed, RegistryError> {
        let auth = self.auth.clone();
        let wasm_digest = format!("sha256:{}", rewind_core::sha256_hex(&wasm));
        let (config, layer) =
            oci_wasm::WasmConfig::from_raw_component(wasm, None).map_err(|err| {
                RegistryError::NotAPlugin {
                    reference: reference.to_string(),
                    why: format!("{err:#}"),
                }
            })?;
        let mut annotations = BTreeMap::new();
        if let Some(tag) = &reference.tag {
            annotations.insert("org.opencontainers.image.version".to_string(), tag.clone());
        }
        let target = reference.to_client();
        self.runtime.block_on(async {
            self.client
                .push(&target, &auth, layer, config, Some(annotations))
                .await
                .map_err(|err| RegistryError::Request {
                    what: "push",
                    reference: reference.to_string(),
                    source: err.into(),
                })?;
            let digest = self
                .client
                .fetch_manifest_digest(&target, &auth)
                .await
                .map_err(request_error("read back the digest of", reference))?;
            Ok(Pushed {
                digest,
                wasm: wasm_digest,
            })
        })
    }

    /// Resolve `reference` (its tag, or its digest) to the digests a lock
    /// pins, checking it is a Wasm component artifact. `written` is the
    /// source as the config writes it.
    pub fn resolve(
        &self,
        reference: &OciReference,
        written: &str,
    ) -> Result<LockedPlugin, RegistryError> {
        let (manifest, digest) = self.manifest(reference)?;
        Ok(LockedPlugin {
            name: reference.repository.clone(),
            reference: written.to_string(),
            version: reference.version(),
            digest,
            wasm: manifest.layers[0].digest.clone(),
        })
    }

    fn manifest(
        &self,
        reference: &OciReference,
    ) -> Result<(OciImageManifest, String), RegistryError> {
        let auth = self.auth.clone();
        let (manifest, digest) = self
            .runtime
            .block_on(
                self.client
                    .pull_image_manifest(&reference.to_client(), &auth),
            )
            .map_err(request_error("cannot pull the manifest of", reference))?;
        let not_a_plugin = |why: String| RegistryError::NotAPlugin {
            reference: reference.to_string(),
            why,
        };
        if manifest.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(not_a_plugin(format!(
                "its config is {}, not {CONFIG_MEDIA_TYPE}",
                manifest.config.media_type
            )));
        }
        if manifest.layers.len() != 1 || manifest.layers[0].media_type != LAYER_MEDIA_TYPE {
            let types: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            return Err(not_a_plugin(format!(
                "it must have exactly one {LAYER_MEDIA_TYPE} layer, it has [{}]",
                types.join(", ")
            )));
        }
        Ok((manifest, digest))
    }

    /// Pull the locked plugin by digest (never by tag) into `cache`, with
    /// its signature when the registry has one; the cached file.
    pub fn pull(
        &self,
        reference: &OciReference,
        locked: &LockedPlugin,
        cache: &PluginCache,
    ) -> Result<PathBuf, RegistryError> {
        let pinned = OciReference {
            tag: None,
            digest: Some(locked.digest.clone()),
            ..reference.clone()
        };
        let (manifest, digest) = self.manifest(&pinned)?;
        if digest != locked.digest {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: "manifest",
                expected: locked.digest.clone(),
                actual: digest,
            });
        }
        let layer = &manifest.layers[0];
        if layer.digest != locked.wasm {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                what: "component",
                expected: locked.wasm.clone(),
                actual: layer.digest.clone(),
            });
        }
        let bytes = self
            .pull_capped(&pinned, layer, MAX_COMPONENT)
            .map_err(request_error("cannot pull the component of", reference))?;
        let cache_error = |source| RegistryError::Cache {
            reference: reference.to_string(),
            dir: cache.dir().to_path_buf(),
            source,
        };
        let path = cache.put_wasm(&locked.wasm, &bytes).map_err(cache_error)?;
        if let Some(signature) = self.pull_signature(reference, &locked.digest)? {
            cache
                .put_signature(&locked.wasm, &signature)
                .map_err(cache_error)?;
        }
        Ok(path)
    }

    /// The tag a plugin manifest's signature is pushed under.
    pub fn signature_tag(manifest_digest: &str) -> String {
        format!("sha256-{}.sig", digest_hex(manifest_digest))
    }

    /// The signature of the plugin whose manifest is `manifest_digest`, if
    /// the registry has one.
    pub fn pull_signature(
        &self,
        reference: &OciReference,
        manifest_digest: &str,
    ) -> Result<Option<String>, RegistryError> {
        let auth = self.auth.clone();
        let target = reference.with_tag(&Self::signature_tag(manifest_digest));
        let pulled = self
            .runtime
            .block_on(self.client.pull_image_manifest(&target.to_client(), &auth));
        let manifest = match pulled {
            Ok((manifest, _)) => manifest,
            Err(err) if not_found(&err) => return Ok(None),
            Err(err) => {
                return Err(request_error("cannot pull the signature of", reference)(
                    err,
                ));
            }
        };
        let Some(layer) = manifest
            .layers
            .iter()
            .find(|l| l.media_type == SIGNATURE_MEDIA_TYPE)
        else {
            return Ok(None);
        };
        let bytes = self
            .pull_capped(&target, layer, MAX_SIGNATURE)
            .map_err(request_error("cannot pull the signature of", reference))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Push `signature` (a `.minisig` text) for the plugin whose manifest is
    /// `manifest_digest`, under [`Registry::signature_tag`] with the plugin
    /// as its subject.
    pub fn push_signature(
        &self,
        reference: &OciReference,
        manifest_digest: &str,
        signature: &str,
    ) -> Result<(), RegistryError> {
        let auth = self.auth.clone();
        let pinned = OciReference {
            tag: None,
            digest: Some(manifest_digest.to_string()),
            ..reference.clone()
        };
        let (raw, _) = self
            .runtime
            .block_on(self.client.pull_manifest_raw(
                &pinned.to_client(),
                &auth,
                &[MANIFEST_MEDIA_TYPE],
            ))
            .map_err(request_error("cannot pull the manifest of", reference))?;
        let layer = ImageLayer {
            data: signature.as_bytes().to_vec().into(),
            media_type: SIGNATURE_MEDIA_TYPE.to_string(),
            annotations: None,
        };
        let config = Config {
            data: b"{}".to_vec().into(),
            media_type: EMPTY_MEDIA_TYPE.to_string(),
            annotations: None,
        };
        let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        manifest.media_type = Some(MANIFEST_MEDIA_TYPE.to_string());
        manifest.artifact_type = Some(SIGNATURE_ARTIFACT_TYPE.to_string());
        manifest.subject = Some(OciDescriptor {
            media_type: MANIFEST_MEDIA_TYPE.to_string(),
            digest: manifest_digest.to_string(),
            size: raw.len() as i64,
            ..Default::default()
        });
        let target = reference.with_tag(&Self::signature_tag(manifest_digest));
        self.runtime
            .block_on(AsRef::<oci_client::Client>::as_ref(&self.client).push(
                &target.to_client(),
                &[layer],
                config,
                &auth,
                Some(manifest),
            ))
            .map_err(request_error("cannot push the signature of", reference))?;
        Ok(())
    }

    /// Pull the component `reference` names (by tag or digest), verified
    /// against the manifest's layer digest: for signing what is published.
    pub fn fetch_component(
        &self,
        reference: &OciReference,
    ) -> Result<(LockedPlugin, Vec<u8>), RegistryError> {
        let written = reference.to_string();
        let locked = self.resolve(reference, &written)?;
        let pinned = OciReference {
            tag: None,
            digest: Some(locked.digest.clone()),
            ..reference.clone()
        };
        let (manifest, _) = self.manifest(&pinned)?;
        let bytes = self
            .pull_capped(&pinned, &manifest.layers[0], MAX_COMPONENT)
            .map_err(request_error("cannot pull the component of", reference))?;
        Ok((locked, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A docker config in a fresh directory of its own.
    fn config(name: &str, body: &[u8]) -> (PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "rewind-docker-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, body).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn a_helper_name_that_is_a_path_or_not_a_program_name_is_refused_before_it_runs() {
        for name in [
            "x/../../../../tmp/evil",
            "/usr/bin/id",
            "../../bin/sh",
            "/",
            "x y",
            "x;id",
            "x\nid",
            "x\0",
            "..",
            "",
            &"a".repeat(65),
        ] {
            for body in [
                serde_json::json!({"credsStore": name}),
                serde_json::json!({"credHelpers": {"reg.example:5000": name}}),
            ] {
                if name.is_empty() && body.get("credHelpers").is_some() {
                    // An empty credHelpers entry means none (docker's reading).
                    continue;
                }
                let (dir, path) = config("helper", body.to_string().as_bytes());
                let err = docker_auth(&path, "reg.example:5000")
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("not a program name"), "{name:?}: {err}");
                assert!(err.contains("docker's config"), "{err}");
                assert!(err.contains(&path), "{err}");
                let key = if body.get("credsStore").is_some() {
                    "credsStore"
                } else {
                    "credHelpers[\"reg.example:5000\"]"
                };
                assert!(err.contains(key), "{err}");
                std::fs::remove_dir_all(dir).unwrap();
            }
        }
        // Docker's own helper names are names.
        for name in [
            "desktop",
            "osxkeychain",
            "ecr-login",
            "pass",
            "acr-env",
            "gcloud",
        ] {
            assert!(is_helper_name(name), "{name}");
        }
    }

    #[test]
    fn a_helper_for_another_registry_is_not_checked_or_run() {
        let body = serde_json::json!({
            "credHelpers": {"other.example": "x/../evil"},
            "auths": {"reg.example:5000": {"auth": "dXNlcjpwYXNz"}},
        });
        let (dir, path) = config("other", body.to_string().as_bytes());
        match docker_auth(&path, "reg.example:5000").unwrap() {
            RegistryAuth::Basic(user, password) => {
                assert_eq!((&*user, &*password), ("user", "pass"))
            }
            other => panic!("{other:?}"),
        }
        // A prefix or suffix of a registry's name is another registry.
        for registry in [
            "reg.example:500",
            "reg.example:50000",
            "reg.example",
            "g.example:5000",
        ] {
            assert!(
                matches!(
                    docker_auth(&path, registry).unwrap(),
                    RegistryAuth::Anonymous
                ),
                "{registry}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A registry on loopback (plain HTTP) that serves one plugin
    /// manifest declaring a layer of `declared` bytes and then sends
    /// `sent` bytes for it.
    fn lying_registry(declared: u64, sent: usize) -> String {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let layer = format!("sha256:{}", "ab".repeat(32));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": layer, "size": 2},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer, "size": declared}],
        })
        .to_string();
        let digest = format!("sha256:{}", rewind_core::sha256_hex(manifest.as_bytes()));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    head.push_str(&line);
                    line.clear();
                }
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let (kind, body, len): (&str, Vec<u8>, usize) = if path.contains("/manifests/") {
                    (
                        MANIFEST_MEDIA_TYPE,
                        manifest.clone().into_bytes(),
                        manifest.len(),
                    )
                } else if path.contains("/blobs/") {
                    // Sent in pieces, not held here either.
                    ("application/octet-stream", vec![b'A'; 64 << 10], sent)
                } else {
                    ("application/json", b"{}".to_vec(), 2)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nDocker-Content-Digest: {digest}\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    len
                );
                let mut left = len;
                while left > 0 {
                    let n = left.min(body.len());
                    if stream.write_all(&body[..n]).is_err() {
                        break;
                    }
                    left -= n;
                }
            }
        });
        format!("oci://127.0.0.1:{port}/team/plugin:1.0.0")
    }

    #[test]
    fn a_registry_sending_more_than_a_layer_declares_is_refused_not_held() {
        // 64 MiB for a layer of 1000 bytes: refused once past 1000.
        let reference = OciReference::parse(&lying_registry(1000, 64 << 20)).unwrap();
        let registry = Registry::for_reference(&reference).unwrap();
        let err = registry.fetch_component(&reference).unwrap_err();
        let text = rewind_core::ErrorReport(&err).to_string();
        assert!(
            text.contains("more than the 1000 bytes rewind accepts"),
            "{text}"
        );
        // A layer that declares more than a component may be: the cap.
        let reference =
            OciReference::parse(&lying_registry(u64::MAX >> 1, (MAX_COMPONENT + 1) as usize))
                .unwrap();
        let registry = Registry::for_reference(&reference).unwrap();
        let err = registry.fetch_component(&reference).unwrap_err();
        let text = rewind_core::ErrorReport(&err).to_string();
        assert!(
            text.contains(&format!("more than the {MAX_COMPONENT} bytes")),
            "{text}"
        );
    }

    #[test]
    fn a_huge_or_special_docker_config_is_refused_not_read_whole() {
        let (dir, path) = config("huge", b"");
        let mut body = b"{\"auths\": {\"reg.example\": {\"auth\": \"".to_vec();
        body.extend(std::iter::repeat_n(b'A', 2 << 20));
        body.extend(b"\"}}}");
        std::fs::write(&path, &body).unwrap();
        let err = docker_auth(&path, "reg.example").unwrap_err().to_string();
        assert!(err.contains("more than the 1048576"), "{err}");
        std::fs::remove_file(&path).unwrap();
        // A FIFO would block the read for ever.
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let err = docker_auth(&path, "reg.example").unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
        // None at all: anonymous.
        assert!(matches!(
            docker_auth("/nonexistent/config.json", "reg.example").unwrap(),
            RegistryAuth::Anonymous
        ));
    }
}
