//! `rewind.toml`: parsing, validation, and errors that point at
//! `file:line:column`.
//!
//! Unknown keys are errors (every table is `deny_unknown_fields`), so a typo
//! never silently turns a grant or a chain step off. Values that parse as
//! TOML but mean nothing (a malformed exec grant, a chain naming an instance
//! that does not exist) are reported at the value's own span.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use rewind_grants::{GrantTexts, Grants};
use rewind_registry::{LockFile, LockedPlugin, OciReference, PluginCache, TrustedKey};
use rewind_sandbox::{Limits, SandboxSpec};

/// The default config file name, looked up in the working directory.
pub const DEFAULT_CONFIG: &str = "rewind.toml";

/// An error in a config file, located at a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line and column, when the error has a location.
    pub location: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
    /// The offending source line, for display under the message.
    pub source_line: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)?
            }
            None => write!(f, "{}: {}", self.path.display(), self.message)?,
        }
        if let (Some(text), Some((line, col))) = (&self.source_line, self.location) {
            let gutter = line.to_string().len();
            write!(
                f,
                "\n {:gutter$} |\n {line} | {text}\n {:gutter$} | {:>col$}",
                "", "", "^"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A name the config does not define: a run or a command asked for an
/// instance or a named chain that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No `[plugins.NAME]`.
    #[error(
        "{}: there is no plugin instance `{name}`; defined instances: {}",
        config.display(),
        listed(known)
    )]
    NoInstance {
        /// The config file.
        config: PathBuf,
        /// The name asked for.
        name: String,
        /// The instances it defines.
        known: Vec<String>,
    },
    /// No `NAME = [...]` under `[chains.named]`.
    #[error(
        "there is no chain `{name}` under [chains.named]; named chains: {}",
        listed(known)
    )]
    NoChain {
        /// The name asked for.
        name: String,
        /// The named chains it defines.
        known: Vec<String>,
    },
}

/// "a, b", or "(none)".
fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// Turns byte spans into positioned errors for one file.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        let Some(span) = span else {
            return ConfigError {
                path: self.path.to_path_buf(),
                location: None,
                message,
                source_line: None,
            };
        };
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        let source_line = self.text[line_start..]
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        ConfigError {
            path: self.path.to_path_buf(),
            location: Some((line, col)),
            message,
            source_line: Some(source_line),
        }
    }
}

// ------------------------------------------------------------ raw schema

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    project: RawProject,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    plugins: BTreeMap<Spanned<String>, RawInstance>,
    #[serde(default)]
    chains: RawChains,
    #[serde(default)]
    guard: Option<RawGuard>,
    #[serde(default)]
    notify: Option<RawNotify>,
    #[serde(default)]
    trust: Option<RawTrust>,
}

/// `[trust]`: who plugins must be signed by.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    require_signature: Option<Spanned<bool>>,
    /// NAME = "RW…" (a minisign public key).
    #[serde(default)]
    keys: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: String,
    #[serde(default = "default_environment")]
    environment: String,
}

fn default_environment() -> String {
    "production".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    fleet: Option<Spanned<bool>>,
    host: Option<Spanned<String>>,
    keep_days: Option<u32>,
    keep_last: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    /// A path, `oci://…`, or `{ oci = "oci://…", digest = "sha256:…" }`.
    source: Spanned<toml::Value>,
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    limits: RawLimits,
    /// The instance whose backup is restored when this one's rollback step
    /// fails.
    fallback: Option<Spanned<String>>,
    /// `stop` or `continue`: what a rollback does after this instance's
    /// step (and its fallback) failed.
    on_failure: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    #[serde(default)]
    exec: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default)]
    http: Vec<Spanned<String>>,
    #[serde(default)]
    tcp: Vec<Spanned<String>>,
    /// `user:group` the `fs` import may give files to.
    #[serde(default)]
    owners: Vec<Spanned<String>>,
    /// Whether the `fs` import may set setuid and setgid bits.
    #[serde(default)]
    setid: Option<Spanned<bool>>,
}

impl RawGrants {
    /// Every entry with its span.
    fn entries(&self) -> GrantTexts<&Spanned<String>> {
        GrantTexts {
            exec: self.exec.iter().collect(),
            paths: self.paths.iter().collect(),
            env: self.env.iter().collect(),
            http: self.http.iter().collect(),
            tcp: self.tcp.iter().collect(),
            owners: self.owners.iter().collect(),
            setid: self.setid.as_ref().is_some_and(|s| *s.get_ref()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<Spanned<u64>>,
    timeout_s: Option<Spanned<u64>>,
    output_mb: Option<Spanned<u64>>,
    artifacts_mb: Option<Spanned<u64>>,
    run_artifacts_mb: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChains {
    #[serde(default)]
    backup: Vec<Spanned<String>>,
    #[serde(default)]
    rollback: Vec<Spanned<String>>,
    /// `[chains.named]`: `db-only = ["db"]`, run with `--chain db-only`.
    #[serde(default)]
    named: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    #[serde(default)]
    health: Vec<Spanned<String>>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    delay_s: Option<u64>,
    #[serde(default)]
    auto_rollback: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default)]
    sinks: Vec<Spanned<String>>,
}

// ------------------------------------------------------------ validated

/// A validated `rewind.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The project named in events and manifests.
    pub project: String,
    /// The environment named in events and manifests (`production`).
    pub environment: String,
    /// Where the artifact store is and how long runs are kept.
    pub store: StoreConfig,
    /// Plugin instances by name, in name order.
    pub instances: BTreeMap<String, Instance>,
    /// Which instances run in which order.
    pub chains: Chains,
    /// `rewind guard`'s health gate.
    pub guard: GuardConfig,
    /// Instances that receive each run's start and outcome.
    pub notify_sinks: Vec<String>,
    /// `[trust]`: the keys plugins are signed by.
    pub trust: TrustConfig,
    /// `rewind.lock`, beside the config: where `oci://` sources are pinned.
    pub lock_path: PathBuf,
}

/// `[trust]`: the team keys plugins must be signed by.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    /// Refuse a plugin that is not signed by one of `keys`.
    pub require_signature: bool,
    /// `[trust.keys]`, in name order.
    pub keys: Vec<TrustedKey>,
}

/// Where an `oci://` instance's plugin comes from.
#[derive(Debug, Clone)]
pub struct OciSource {
    /// The reference, as the lock keys it (`oci://registry/repo:tag`).
    pub reference: OciReference,
    /// Its `rewind.lock` entry; `None` only in a config read with
    /// [`Config::load_unlocked`] (for `rewind plugins lock`).
    pub locked: Option<LockedPlugin>,
}

/// `[store]`: the artifact store and its retention.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// `file://` URL or plain path of the store, or `s3://bucket/prefix`;
    /// `None` means the default directory.
    pub url: Option<String>,
    /// `endpoint`: the S3 endpoint of an `s3://` store (an S3-compatible
    /// server); AWS's when absent.
    pub endpoint: Option<String>,
    /// `region`: the S3 region of an `s3://` store.
    pub region: Option<String>,
    /// `fleet = true`: `url` is a fleet store's root and this is the
    /// host's name in it (`store.host`, else `$REWIND_HOST`, else the
    /// machine's host name; checked when the config was loaded). `None`
    /// for a single-host store.
    pub host: Option<String>,
    /// Keep runs younger than this many days.
    pub keep_days: Option<u32>,
    /// Keep at least this many newest backup runs.
    pub keep_last: Option<u32>,
}

impl StoreConfig {
    /// The store directory: `store.url`, else the default location. For
    /// an `s3://` store, its URL as a path (for messages); use
    /// [`StoreConfig::location`] to open it.
    pub fn root(&self) -> PathBuf {
        match self.location() {
            rewind_store::StoreLocation::Local(root) => root,
            rewind_store::StoreLocation::S3(s3) => PathBuf::from(s3.url()),
        }
    }

    /// Where this host's store is: a directory, or a bucket and prefix on
    /// S3 with `endpoint` and `region` (validated when the config was
    /// loaded). In a fleet store, the host's store under the root
    /// (`<root>/hosts/<host>`); open it with [`StoreConfig::open`], which
    /// checks the root first.
    pub fn location(&self) -> rewind_store::StoreLocation {
        let url = self.url_location();
        match &self.host {
            Some(host) => url.host(host),
            None => url,
        }
    }

    /// The root of the fleet store `store.url` names, `None` unless
    /// `store.fleet = true`.
    pub fn fleet_root(&self) -> Option<rewind_store::StoreLocation> {
        self.host.as_ref().map(|_| self.url_location())
    }

    /// Open (creating if needed) this host's store: the store at
    /// `store.url`, or in a fleet store this host's, after checking that
    /// the root is not a single-host store.
    pub fn open(&self) -> std::io::Result<rewind_store::Store> {
        match (&self.host, self.fleet_root()) {
            (Some(host), Some(root)) => rewind_store::Fleet::at(&root)?.open_host(host),
            _ => rewind_store::Store::open_at(&self.location()),
        }
    }

    /// What `store.url` names, with the S3 settings.
    fn url_location(&self) -> rewind_store::StoreLocation {
        match &self.url {
            Some(url) if url.starts_with("s3://") => {
                let (bucket, prefix) =
                    rewind_store::parse_s3_url(url).expect("validated when loaded");
                rewind_store::StoreLocation::S3(rewind_store::S3Location {
                    bucket,
                    prefix,
                    endpoint: self.endpoint.clone(),
                    region: self.region.clone(),
                })
            }
            Some(url) => rewind_store::StoreLocation::Local(rewind_store::root_from_url(url)),
            None => rewind_store::StoreLocation::Local(rewind_store::default_root()),
        }
    }
}

/// `[chains]`: the instances each kind of run calls, in order.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    /// Instances a backup runs.
    pub backup: Vec<String>,
    /// Instances a rollback runs (restore or revert each).
    pub rollback: Vec<String>,
    /// Named chains (`[chains.named]`): one list of instances used by
    /// `rewind backup --chain NAME` and `rewind rollback --chain NAME`.
    pub named: BTreeMap<String, Vec<String>>,
}

impl Chains {
    /// The backup chain: `chains.backup`, or the named one.
    pub fn backup_chain(&self, name: Option<&str>) -> Result<&[String], LookupError> {
        match name {
            None => Ok(&self.backup),
            Some(name) => self.named_chain(name),
        }
    }

    /// The rollback chain: `chains.rollback`, or the named one.
    pub fn rollback_chain(&self, name: Option<&str>) -> Result<&[String], LookupError> {
        match name {
            None => Ok(&self.rollback),
            Some(name) => self.named_chain(name),
        }
    }

    fn named_chain(&self, name: &str) -> Result<&[String], LookupError> {
        self.named
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| LookupError::NoChain {
                name: name.to_string(),
                known: self.named.keys().cloned().collect(),
            })
    }
}

/// `[guard]`: the health gate after a deploy.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Instances whose health hook decides.
    pub health: Vec<String>,
    /// Health passes after the first before giving up.
    pub retries: u32,
    /// Wait between passes.
    pub delay: Duration,
    /// Roll back when the deploy fails or stays unhealthy.
    pub auto_rollback: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            health: Vec::new(),
            retries: 3,
            delay: Duration::from_secs(10),
            auto_rollback: true,
        }
    }
}

/// One `[plugins.<name>]` instance.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The instance's name (`[plugins.<name>]`).
    pub name: String,
    /// The plugin file, resolved against the config file's directory; for
    /// an `oci://` source, the locked component in the plugin cache.
    pub source: PathBuf,
    /// The pinned sha256 (lower-case hex); for an `oci://` source, the
    /// locked component's digest.
    pub sha256: String,
    /// The registry reference and its lock entry, for an `oci://` source.
    pub oci: Option<OciSource>,
    /// What it may reach.
    pub grants: Arc<Grants>,
    /// Its memory, time and output limits.
    pub limits: Limits,
    /// `params`, as the JSON object the plugin receives.
    pub params: serde_json::Value,
    /// `fallback`: the instance restored from the same backup when this
    /// instance's rollback step fails.
    pub fallback: Option<String>,
    /// `on_failure`: what a rollback does when this instance's step (and
    /// its fallback) failed.
    pub on_failure: OnFailure,
}

/// What a rollback does when a step, and its fallback if it has one, failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// End the rollback there: later steps do not run (`rollback --resume`
    /// continues it).
    #[default]
    Stop,
    /// Run the later steps anyway; the rollback is still reported failed.
    Continue,
}

impl OnFailure {
    /// The word written in `rewind.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Stop => "stop",
            OnFailure::Continue => "continue",
        }
    }
}

impl Instance {
    /// The source for people and manifests: the file, or the reference at
    /// its locked digest.
    pub fn source_label(&self) -> String {
        match &self.oci {
            Some(OciSource {
                reference,
                locked: Some(locked),
            }) => reference.at_digest(&locked.digest).to_string(),
            Some(oci) => oci.reference.to_string(),
            None => self.source.display().to_string(),
        }
    }

    /// What the sandbox runs a call of this instance as.
    pub fn sandbox_spec(&self) -> SandboxSpec {
        SandboxSpec {
            instance: self.name.clone(),
            grants: self.grants.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            path: path.to_path_buf(),
            location: None,
            message: format!(
                "cannot read the config file: {err} (create one with `rewind init`, or pass --config)"
            ),
            source_line: None,
        })?;
        Config::parse(path, &text)
    }

    /// Validate config text; `path` is used for messages and to resolve
    /// relative plugin sources. No instance may be granted a path that
    /// contains the compile cache ([`Runtime::default_cache_dir`]).
    ///
    /// [`Runtime::default_cache_dir`]: rewind_sandbox::engine::Runtime::default_cache_dir
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cache_dir = rewind_sandbox::engine::Runtime::default_cache_dir();
        Config::parse_with_cache(path, text, cache_dir.as_deref())
    }

    /// [`Config::parse`] against the compile cache `cache_dir` (`None`: no
    /// cache).
    pub fn parse_with_cache(
        path: &Path,
        text: &str,
        cache_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        Config::parse_inner(path, text, cache_dir, true)
    }

    /// Read a config whose `oci://` sources may not be in `rewind.lock`
    /// yet (their [`OciSource::locked`] is `None` and their `source` empty):
    /// what `rewind plugins lock` resolves. Nothing may run from it.
    pub fn load_unlocked(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            path: path.to_path_buf(),
            location: None,
            message: format!("cannot read the config file: {err}"),
            source_line: None,
        })?;
        let cache_dir = rewind_sandbox::engine::Runtime::default_cache_dir();
        Config::parse_inner(path, &text, cache_dir.as_deref(), false)
    }

    fn parse_inner(
        path: &Path,
        text: &str,
        cache_dir: Option<&Path>,
        require_lock: bool,
    ) -> Result<Config, ConfigError> {
        let loc = Locator { path, text };
        let raw: RawConfig =
            toml::from_str(text).map_err(|err| loc.error(err.span(), err.message().trim_end()))?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));

        // The store holds every instance's dumps: no plugin may see it.
        let store_dir = match &raw.store.url {
            Some(url) if url.get_ref().starts_with("s3://") => None,
            Some(url) => Some(rewind_store::root_from_url(url.get_ref())),
            None => Some(rewind_store::default_root()),
        };
        let lock_path = LockFile::path_for(path);
        let any_oci = raw.plugins.values().any(
            |i| !matches!(i.source.get_ref(), toml::Value::String(s) if !OciReference::is_oci(s)),
        );
        let lock = if any_oci {
            LockFile::read(&lock_path).map_err(|err| loc.error(None, err.to_string()))?
        } else {
            None
        };
        let sources = Sources {
            lock: lock.as_ref(),
            lock_path: &lock_path,
            require_lock,
            plugin_cache: PluginCache::default_dir(cache_dir).map(PluginCache::new),
        };
        let trust = validate_trust(&loc, raw.trust)?;
        let mut instances = BTreeMap::new();
        let mut fallbacks = Vec::new();
        for (name, mut raw_instance) in raw.plugins {
            if let Some(fallback) = raw_instance.fallback.take() {
                fallbacks.push((name.get_ref().clone(), fallback));
            }
            let instance = validate_instance(
                &loc,
                base_dir,
                cache_dir,
                &sources,
                store_dir.as_deref(),
                &name,
                raw_instance,
            )?;
            instances.insert(name.into_inner(), instance);
        }
        for (name, fallback) in fallbacks {
            let target = fallback.get_ref();
            if *target == name {
                return Err(loc.error(
                    Some(fallback.span()),
                    format!(
                        "`{name}` cannot be its own fallback; name the instance whose backup is \
                         restored when `{name}` fails, e.g. fallback = \"db\""
                    ),
                ));
            }
            if !instances.contains_key(target) {
                return Err(loc.error(
                    Some(fallback.span()),
                    format!(
                        "fallback names `{target}`, which is not a plugin instance; defined \
                         instances: {}",
                        known(&instances)
                    ),
                ));
            }
            if let Some(instance) = instances.get_mut(&name) {
                instance.fallback = Some(target.clone());
            }
        }

        let check_refs = |list: &[Spanned<String>],
                          what: &str|
         -> Result<Vec<String>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, entry)| {
                    // A rollback's steps, and resuming one, are keyed by
                    // instance: each runs once per chain.
                    if list[..i].iter().any(|e| e.get_ref() == entry.get_ref()) {
                        Err(loc.error(
                            Some(entry.span()),
                            format!(
                                "{what} lists `{}` twice; each instance runs once per chain",
                                entry.get_ref()
                            ),
                        ))
                    } else if instances.contains_key(entry.get_ref()) {
                        Ok(entry.get_ref().clone())
                    } else {
                        Err(loc.error(
                            Some(entry.span()),
                            format!(
                                "{what} names `{}`, which is not a plugin instance; defined instances: {}",
                                entry.get_ref(),
                                known(&instances)
                            ),
                        ))
                    }
                })
                .collect()
        };
        let mut named = BTreeMap::new();
        for (name, list) in &raw.chains.named {
            if !valid_instance_name(name.get_ref()) {
                return Err(loc.error(
                    Some(name.span()),
                    format!(
                        "chain name `{}` must be 1-64 characters of [a-z0-9_-]",
                        name.get_ref()
                    ),
                ));
            }
            let key = format!("chains.named.{}", name.get_ref());
            named.insert(name.get_ref().clone(), check_refs(list, &key)?);
        }
        let chains = Chains {
            backup: check_refs(&raw.chains.backup, "chains.backup")?,
            rollback: check_refs(&raw.chains.rollback, "chains.rollback")?,
            named,
        };
        let mut guard = GuardConfig::default();
        if let Some(g) = raw.guard {
            guard.health = check_refs(&g.health, "guard.health")?;
            guard.retries = g.retries.unwrap_or(guard.retries);
            guard.delay = g.delay_s.map(Duration::from_secs).unwrap_or(guard.delay);
            guard.auto_rollback = g.auto_rollback.unwrap_or(guard.auto_rollback);
        }
        let notify_sinks = match raw.notify {
            Some(n) => check_refs(&n.sinks, "notify.sinks")?,
            None => Vec::new(),
        };
        validate_store(&loc, &raw.store)?;
        let fleet_host = fleet_host(&loc, &raw.store)?;

        Ok(Config {
            path: path.to_path_buf(),
            project: raw.project.name,
            environment: raw.project.environment,
            store: StoreConfig {
                url: raw.store.url.map(Spanned::into_inner),
                endpoint: raw.store.endpoint.map(Spanned::into_inner),
                region: raw.store.region.map(Spanned::into_inner),
                host: fleet_host,
                keep_days: raw.store.keep_days,
                keep_last: raw.store.keep_last,
            },
            instances,
            chains,
            guard,
            notify_sinks,
            trust,
            lock_path,
        })
    }

    /// Look up an instance, with an error that lists the defined ones.
    pub fn instance(&self, name: &str) -> Result<&Instance, LookupError> {
        self.instances
            .get(name)
            .ok_or_else(|| LookupError::NoInstance {
                config: self.path.clone(),
                name: name.to_string(),
                known: self.instances.keys().cloned().collect(),
            })
    }
}

fn known(instances: &BTreeMap<String, Instance>) -> String {
    if instances.is_empty() {
        "(none)".to_string()
    } else {
        instances.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn valid_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// What `oci://` sources are resolved with.
struct Sources<'a> {
    lock: Option<&'a LockFile>,
    lock_path: &'a Path,
    /// Whether a source missing from the lock is an error.
    require_lock: bool,
    plugin_cache: Option<PluginCache>,
}

fn validate_trust(loc: &Locator<'_>, raw: Option<RawTrust>) -> Result<TrustConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TrustConfig::default());
    };
    let mut keys = Vec::new();
    for (name, key) in &raw.keys {
        let trusted = TrustedKey::parse(name.get_ref(), key.get_ref()).map_err(|err| {
            loc.error(
                Some(key.span()),
                format!(
                    "trust.keys.{}: {err}; `rewind plugins keygen NAME` writes one to NAME.pub",
                    name.get_ref()
                ),
            )
        })?;
        keys.push(trusted);
    }
    let require_signature = match &raw.require_signature {
        Some(flag) if *flag.get_ref() && keys.is_empty() => {
            return Err(loc.error(
                Some(flag.span()),
                "require_signature = true, but [trust.keys] lists no key a signature could be                  made with; add NAME = \"RW…\" (the public key line of NAME.pub) under [trust.keys]",
            ));
        }
        Some(flag) => *flag.get_ref(),
        None => false,
    };
    Ok(TrustConfig {
        require_signature,
        keys,
    })
}

/// An `oci://` source: the reference (a table's `digest` folded in) and,
/// from the lock, where its component is and what it is pinned to.
fn resolve_oci(
    loc: &Locator<'_>,
    sources: &Sources<'_>,
    name: &Spanned<String>,
    raw: &RawInstance,
) -> Result<(PathBuf, String, OciSource), ConfigError> {
    let at_source = |message: String| loc.error(Some(raw.source.span()), message);
    let (text, digest) = match raw.source.get_ref() {
        toml::Value::String(text) => (text.as_str(), None),
        toml::Value::Table(table) => {
            if let Some(key) = table.keys().find(|k| *k != "oci" && *k != "digest") {
                return Err(at_source(format!(
                    "source: unknown key `{key}`; a registry source is {{ oci = \"oci://…\", \
                     digest = \"sha256:…\" }}"
                )));
            }
            let Some(toml::Value::String(text)) = table.get("oci") else {
                return Err(at_source(
                    "source: a table source needs oci = \"oci://registry/repository:tag\"".into(),
                ));
            };
            let digest = match table.get("digest") {
                None => None,
                Some(toml::Value::String(d)) => Some(
                    rewind_registry::reference::normalize_digest(d).ok_or_else(|| {
                        at_source(format!(
                            "source.digest `{d}` must be sha256: and 64 hex digits"
                        ))
                    })?,
                ),
                Some(_) => return Err(at_source("source.digest must be a string".into())),
            };
            (text.as_str(), digest)
        }
        _ => {
            return Err(at_source(
                "source must be a path, \"oci://…\", or { oci = \"oci://…\", digest = \"sha256:…\" }"
                    .into(),
            ));
        }
    };
    let mut reference = OciReference::parse(text).map_err(|err| at_source(err.to_string()))?;
    if let Some(digest) = digest {
        if reference.digest.as_ref().is_some_and(|d| *d != digest) {
            return Err(at_source(format!(
                "source: `{text}` names digest {}, but digest = \"{digest}\"",
                reference.digest.as_deref().unwrap_or_default()
            )));
        }
        reference.digest = Some(digest);
    }
    let key = reference.to_string();
    let locked = sources.lock.and_then(|lock| lock.get(&key)).cloned();
    let Some(locked) = locked else {
        if sources.require_lock {
            return Err(at_source(format!(
                "plugin instance `{}`: {key} is not locked in {}; run `rewind plugins lock` to \
                 resolve it to a digest (every other command uses only the lock, never a tag)",
                name.get_ref(),
                sources.lock_path.display()
            )));
        }
        return Ok((
            PathBuf::new(),
            String::new(),
            OciSource {
                reference,
                locked: None,
            },
        ));
    };
    if let Some(digest) = &reference.digest
        && *digest != locked.digest
    {
        return Err(at_source(format!(
            "{} pins {key} to {}, not to the digest the source names; run `rewind plugins lock`",
            sources.lock_path.display(),
            locked.digest
        )));
    }
    let wasm_hex = rewind_registry::reference::digest_hex(&locked.wasm).to_string();
    if let Some(pin) = &raw.sha256 {
        let value = pin.get_ref().trim().to_ascii_lowercase();
        if value.strip_prefix("sha256:").unwrap_or(&value) != wasm_hex {
            return Err(loc.error(
                Some(pin.span()),
                format!(
                    "sha256 pins the component to {value}, but {} locks {key} to the component \
                     sha256:{wasm_hex}; remove sha256 (the lock pins it) or run `rewind plugins lock` \
                     against the intended registry content",
                    sources.lock_path.display()
                ),
            ));
        }
    }
    let Some(cache) = &sources.plugin_cache else {
        return Err(at_source(
            "there is no plugin cache to keep registry plugins in: set REWIND_CACHE_DIR (or \
             REWIND_PLUGIN_CACHE) to a private directory outside every grant"
                .into(),
        ));
    };
    Ok((
        cache.wasm_path(&locked.wasm),
        wasm_hex,
        OciSource {
            reference,
            locked: Some(locked),
        },
    ))
}

/// A local plugin file's pin: `sha256`, or an error whose message has the
/// line to add.
fn local_pin(
    loc: &Locator<'_>,
    name: &Spanned<String>,
    raw: &RawInstance,
    source: &Path,
) -> Result<String, ConfigError> {
    Ok(match &raw.sha256 {
        Some(pin) => {
            let value = pin.get_ref().trim().to_ascii_lowercase();
            let value = value.strip_prefix("sha256:").unwrap_or(&value).to_string();
            if value.len() != 64 || !value.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(loc.error(
                    Some(pin.span()),
                    "sha256 must be 64 hex digits (`rewind plugins inspect <file.wasm>` prints it)",
                ));
            }
            value
        }
        None => {
            let hint = std::fs::read(source)
                .map(|bytes| {
                    format!(
                        "sha256 = \"{}\"",
                        rewind_sandbox::plugin::sha256_hex(&bytes)
                    )
                })
                .unwrap_or_else(|_| "sha256 = \"<digest from `rewind plugins inspect`>\"".into());
            return Err(loc.error(
                Some(raw.source.span()),
                format!(
                    "plugin instance `{}` has no sha256 pin; every plugin is pinned so that a \
                     changed file is never run. If {} is the file you trust, add: {hint}",
                    name.get_ref(),
                    source.display()
                ),
            ));
        }
    })
}

/// `[store]`: an absolute directory or an `s3://bucket/prefix` URL; the
/// `endpoint` and `region` of an S3 store.
fn validate_store(loc: &Locator<'_>, raw: &RawStore) -> Result<(), ConfigError> {
    let s3 = match &raw.url {
        Some(url) if url.get_ref().starts_with("s3://") => {
            rewind_store::parse_s3_url(url.get_ref()).map_err(|why| {
                loc.error(
                    Some(url.span()),
                    format!(
                        "store.url {why}; an S3 store is \"s3://bucket/prefix\", e.g. \"s3://acme-rewind/shop\""
                    ),
                )
            })?;
            true
        }
        Some(url) => {
            let value = url.get_ref();
            let path = value.strip_prefix("file://").unwrap_or(value);
            if !path.starts_with('/') {
                return Err(loc.error(
                    Some(url.span()),
                    format!(
                        "store.url `{value}` is not supported; use an absolute local directory, \
                         e.g. \"file:///var/lib/rewind\", or an S3 bucket and prefix, \
                         e.g. \"s3://acme-rewind/shop\""
                    ),
                ));
            }
            false
        }
        None => false,
    };
    for (key, value) in [("endpoint", &raw.endpoint), ("region", &raw.region)] {
        if let Some(value) = value
            && !s3
        {
            return Err(loc.error(
                Some(value.span()),
                format!(
                    "store.{key} applies to a store on S3 only; set store.url = \"s3://bucket/prefix\" \
                     or remove store.{key}"
                ),
            ));
        }
    }
    if let Some(endpoint) = &raw.endpoint {
        let value = endpoint.get_ref();
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"));
        let host = rest.map(|r| r.split('/').next().unwrap_or(""));
        let valid = rest.is_some_and(|r| !r.contains(char::is_whitespace))
            && host.is_some_and(|h| !h.is_empty() && !h.starts_with(':'));
        if !valid {
            return Err(loc.error(
                Some(endpoint.span()),
                format!(
                    "store.endpoint `{value}` is not an http:// or https:// URL with a host, \
                     e.g. \"https://s3.eu-west-1.amazonaws.com\" or \"http://127.0.0.1:9000\""
                ),
            ));
        }
    }
    if let Some(region) = &raw.region {
        let value = region.get_ref();
        if value.is_empty()
            || value.len() > 64
            || !value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(loc.error(
                Some(region.span()),
                format!(
                    "store.region `{value}` is not a region name (lower-case letters, digits and `-`, \
                     e.g. \"eu-west-1\")"
                ),
            ));
        }
    }
    Ok(())
}

/// `store.fleet` and `store.host`: this host's name in a fleet store,
/// `None` for a single-host store.
fn fleet_host(loc: &Locator<'_>, raw: &RawStore) -> Result<Option<String>, ConfigError> {
    let fleet = raw.fleet.as_ref();
    if !fleet.is_some_and(|f| *f.get_ref()) {
        // A host name without the fleet layout would be ignored, and the
        // operator would believe the hosts are kept apart.
        if let Some(host) = &raw.host {
            return Err(loc.error(
                Some(host.span()),
                "store.host names this host in a fleet store; set store.fleet = true \
                 (each host's store is then <store.url>/hosts/<host>) or remove store.host"
                    .to_string(),
            ));
        }
        return Ok(None);
    }
    let fleet = fleet.expect("checked above");
    if raw.url.is_none() {
        // The default directory is this machine's: no other host shares it.
        return Err(loc.error(
            Some(fleet.span()),
            "store.fleet = true needs store.url: the store the fleet shares, \
             e.g. \"s3://acme-rewind/shop/production\""
                .to_string(),
        ));
    }
    match &raw.host {
        Some(host) => rewind_store::check_host_name(host.get_ref())
            .map(|()| Some(host.get_ref().clone()))
            .map_err(|why| loc.error(Some(host.span()), format!("store.host: {why}"))),
        // No name in the file: the environment's, else the machine's. If
        // neither is usable, point at `fleet`, which asked for a name.
        None => rewind_store::default_host_name()
            .map(|(name, _)| Some(name))
            .map_err(|why| loc.error(Some(fleet.span()), format!("store.fleet = true: {why}"))),
    }
}

fn validate_instance(
    loc: &Locator<'_>,
    base_dir: &Path,
    cache_dir: Option<&Path>,
    sources: &Sources<'_>,
    store_dir: Option<&Path>,
    name: &Spanned<String>,
    raw: RawInstance,
) -> Result<Instance, ConfigError> {
    if !valid_instance_name(name.get_ref()) {
        return Err(loc.error(
            Some(name.span()),
            format!(
                "instance name `{}` must be 1-64 characters of [a-z0-9_-]",
                name.get_ref()
            ),
        ));
    }
    let local = match raw.source.get_ref() {
        toml::Value::String(text) if !OciReference::is_oci(text) => Some(text.clone()),
        _ => None,
    };
    let (source, sha256, oci) = match local {
        None => {
            let (source, sha256, oci) = resolve_oci(loc, sources, name, &raw)?;
            (source, sha256, Some(oci))
        }
        Some(text) => {
            let source = base_dir.join(text);
            let sha256 = local_pin(loc, name, &raw, &source)?;
            (source, sha256, None)
        }
    };

    let entries = raw.grants.entries();
    let grants = Grants::from_texts(&entries.map(|e| e.get_ref().as_str())).map_err(|err| {
        let entry = entries.get(err.key)[err.index];
        loc.error(Some(entry.span()), err.to_string())
    })?;
    // A store on S3 has no local directory to keep out of the grants.
    let mut private: Vec<_> = match store_dir {
        Some(store_dir) => rewind_grants::paths::host_private(store_dir, cache_dir),
        None => rewind_grants::paths::host_private(Path::new("/"), cache_dir)
            .into_iter()
            .filter(|p| p.path != Path::new("/"))
            .collect(),
    };
    if let Some(cache) = &sources.plugin_cache {
        private.push(rewind_grants::paths::HostPrivate {
            path: cache.dir().to_path_buf(),
            what: "the plugin cache",
            why: "plugins pulled from registries: this plugin could read or replace another \
                  plugin's component (it is verified on every load, so it would be refused); grant \
                  a narrower directory, or set REWIND_PLUGIN_CACHE to a directory outside every grant",
        });
    }
    for private in private {
        let Some(grant) = grants.grant_containing(&private.path) else {
            continue;
        };
        let index = grants
            .paths
            .iter()
            .position(|g| std::ptr::eq(g, grant))
            .expect("the grant is one of these");
        let entry = &raw.grants.paths[index];
        return Err(loc.error(
            Some(entry.span()),
            format!(
                "grants.paths: `{}` of plugin instance `{}` contains {} {} ({})",
                entry.get_ref(),
                name.get_ref(),
                private.what,
                private.path.display(),
                private.why
            ),
        ));
    }

    let mut limits = Limits::default();
    let positive = |value: &Spanned<u64>, key: &str| -> Result<u64, ConfigError> {
        if *value.get_ref() == 0 {
            Err(loc.error(
                Some(value.span()),
                format!("limits.{key} must be at least 1"),
            ))
        } else {
            Ok(*value.get_ref())
        }
    };
    if let Some(mb) = &raw.limits.memory_mb {
        limits.memory_bytes = positive(mb, "memory_mb")? << 20;
    }
    if let Some(s) = &raw.limits.timeout_s {
        limits.timeout = Duration::from_secs(positive(s, "timeout_s")?);
    }
    if let Some(mb) = &raw.limits.output_mb {
        limits.output_bytes = (positive(mb, "output_mb")? << 20) as usize;
    }
    if let Some(mb) = &raw.limits.artifacts_mb {
        limits.artifact_bytes = positive(mb, "artifacts_mb")?.saturating_mul(1 << 20);
    }
    if let Some(mb) = &raw.limits.run_artifacts_mb {
        limits.run_artifact_bytes = positive(mb, "run_artifacts_mb")?.saturating_mul(1 << 20);
    }

    let on_failure = match &raw.on_failure {
        None => OnFailure::default(),
        Some(value) => match value.get_ref().as_str() {
            "stop" => OnFailure::Stop,
            "continue" => OnFailure::Continue,
            other => {
                return Err(loc.error(
                    Some(value.span()),
                    format!(
                        "on_failure = \"{other}\" is not known; use \"stop\" (the default: \
                         later steps do not run) or \"continue\" (later steps run, the rollback \
                         is still reported failed); to restore another instance instead, set \
                         fallback = \"INSTANCE\""
                    ),
                ));
            }
        },
    };

    let params = serde_json::to_value(&raw.params).map_err(|err| {
        loc.error(
            Some(raw.source.span()),
            format!(
                "params of `{}` cannot be passed to the plugin: {err}",
                name.get_ref()
            ),
        )
    })?;

    Ok(Instance {
        name: name.get_ref().clone(),
        source,
        sha256,
        oci,
        grants: Arc::new(grants),
        limits,
        params,
        fallback: None,
        on_failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/app/rewind.toml"), text)
    }

    #[test]
    fn a_complete_config_validates() {
        let config = parse(&format!(
            r#"
[project]
name = "shop"

[plugins.code]
source = "plugins/release-symlink.wasm"
sha256 = "{PIN}"
grants.paths = ["/srv/app"]
grants.exec = ["git rev-parse *"]
params = {{ base = "/srv/app", keep = 3 }}
limits = {{ memory_mb = 64, timeout_s = 30 }}

[chains]
backup = ["code"]
rollback = ["code"]
"#
        ))
        .unwrap();
        let code = config.instance("code").unwrap();
        assert_eq!(
            code.source,
            Path::new("/etc/app/plugins/release-symlink.wasm")
        );
        assert_eq!(code.params["keep"], 3);
        assert_eq!(code.limits.memory_bytes, 64 << 20);
        assert_eq!(config.environment, "production");
        assert_eq!(config.chains.rollback, ["code"]);
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let err = parse("[project]\nname = \"x\"\nenviroment = \"prod\"\n").unwrap_err();
        assert_eq!(err.location, Some((3, 1)), "{err}");
        assert!(err.message.contains("enviroment"), "{err}");
        assert!(
            err.to_string().starts_with("/etc/app/rewind.toml:3:1:"),
            "{err}"
        );
    }

    #[test]
    fn a_chain_naming_a_missing_instance_points_at_the_name() {
        let text = format!(
            "[project]\nname = \"x\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n[chains]\nbackup = [\"db\", \"dbb\"]\n"
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.location, Some((7, 17)), "{err}");
        assert!(
            err.message.contains("`dbb`") && err.message.contains("defined instances: db"),
            "{err}"
        );
    }

    #[test]
    fn fallbacks_and_on_failure_are_validated_at_their_value() {
        let with = |extra: &str| {
            format!(
                "[project]\nname = \"x\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n\
                 [plugins.migrations]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n{extra}\n"
            )
        };
        let config = parse(&with("fallback = \"db\"\non_failure = \"continue\"")).unwrap();
        let migrations = &config.instances["migrations"];
        assert_eq!(migrations.fallback.as_deref(), Some("db"));
        assert_eq!(migrations.on_failure, OnFailure::Continue);
        assert_eq!(config.instances["db"].on_failure, OnFailure::Stop);

        let err = parse(&with("fallback = \"dbb\"")).unwrap_err();
        assert_eq!(err.location, Some((9, 12)), "{err}");
        assert!(err.message.contains("`dbb`"), "{err}");
        let err = parse(&with("fallback = \"migrations\"")).unwrap_err();
        assert!(err.message.contains("its own fallback"), "{err}");
        let err = parse(&with("on_failure = \"retry\"")).unwrap_err();
        assert_eq!(err.location, Some((9, 14)), "{err}");
        assert!(err.message.contains("\"stop\""), "{err}");
    }

    #[test]
    fn a_chain_listing_an_instance_twice_points_at_the_second() {
        let text = format!(
            "[project]\nname = \"x\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n[chains]\nrollback = [\"db\", \"db\"]\n"
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.location, Some((7, 19)), "{err}");
        assert!(err.message.contains("twice"), "{err}");
    }

    #[test]
    fn named_chains_are_validated_and_found() {
        let base = format!(
            "[project]\nname = \"x\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n"
        );
        let config = parse(&format!("{base}[chains.named]\ndb-only = [\"db\"]\n")).unwrap();
        assert_eq!(
            config.chains.rollback_chain(Some("db-only")).unwrap(),
            ["db"]
        );
        let err = config.chains.backup_chain(Some("dbonly")).unwrap_err();
        assert!(err.to_string().contains("named chains: db-only"), "{err}");
        assert_eq!(
            err,
            LookupError::NoChain {
                name: "dbonly".into(),
                known: vec!["db-only".into()],
            }
        );
        let err = config.instance("web").unwrap_err();
        assert!(matches!(&err, LookupError::NoInstance { name, known, .. }
            if name == "web" && known == &["db"]));
        assert!(
            err.to_string()
                .ends_with("there is no plugin instance `web`; defined instances: db"),
            "{err}"
        );
        let err = parse(&format!("{base}[chains.named]\ndb-only = [\"web\"]\n")).unwrap_err();
        assert_eq!(err.location, Some((7, 12)), "{err}");
        assert!(
            err.message.contains("chains.named.db-only names `web`"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_exec_grant_points_at_the_grant() {
        let text = format!(
            "[project]\nname = \"x\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\ngrants.exec = [\"pg_dump ** --x\"]\n"
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.location, Some((6, 16)), "{err}");
        assert!(err.message.contains("must be the last"), "{err}");
    }

    #[test]
    fn a_missing_pin_is_refused_with_the_line_to_add() {
        let err =
            parse("[project]\nname = \"x\"\n[plugins.db]\nsource = \"a.wasm\"\n").unwrap_err();
        assert_eq!(err.location, Some((4, 10)), "{err}");
        assert!(err.message.contains("sha256 ="), "{err}");
    }

    #[test]
    fn a_relative_store_is_refused_at_its_value() {
        for url in ["file://store", "store", "ftp://host/x"] {
            let err = parse(&format!(
                "[project]\nname = \"x\"\n[store]\nurl = \"{url}\"\n"
            ))
            .unwrap_err();
            assert_eq!(err.location, Some((4, 7)), "{err}");
            assert!(err.message.contains("absolute local directory"), "{err}");
        }
    }

    #[test]
    fn an_s3_store_is_read_with_its_endpoint_and_region() {
        let config = parse(
            "[project]\nname = \"x\"\n[store]\nurl = \"s3://acme-rewind/shop/prod\"\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\n",
        )
        .unwrap();
        assert_eq!(
            config.store.location(),
            rewind_store::StoreLocation::S3(rewind_store::S3Location {
                bucket: "acme-rewind".into(),
                prefix: "shop/prod".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
            })
        );
    }

    #[test]
    fn a_fleet_store_puts_this_host_under_hosts_of_the_root() {
        let config = parse(
            "[project]\nname = \"x\"\n[store]\nurl = \"s3://acme-rewind/shop/prod\"\nfleet = true\nhost = \"web-1.eu\"\n",
        )
        .unwrap();
        assert_eq!(config.store.host.as_deref(), Some("web-1.eu"));
        assert_eq!(
            config.store.location().display(),
            "s3://acme-rewind/shop/prod/hosts/web-1.eu"
        );
        assert_eq!(
            config.store.fleet_root().map(|r| r.display()).as_deref(),
            Some("s3://acme-rewind/shop/prod")
        );
        // A single-host store is where store.url says.
        let config = parse("[project]\nname = \"x\"\n[store]\nurl = \"/srv/rewind\"\n").unwrap();
        assert_eq!(config.store.host, None);
        assert_eq!(config.store.location().display(), "/srv/rewind");
    }

    #[test]
    fn bad_host_names_are_refused_at_the_value() {
        for (store, at, says) in [
            ("fleet = true\nhost = \"../h2\"", (6, 8), "contains '/'"),
            (
                "fleet = true\nhost = \"..\"",
                (6, 8),
                "does not start with a letter",
            ),
            (
                "fleet = true\nhost = \"\"",
                (6, 8),
                "the host name is empty",
            ),
            (
                "fleet = true\nhost = \"Web1\"",
                (6, 8),
                "lower case: `web1`",
            ),
            ("host = \"web1\"", (5, 8), "set store.fleet = true"),
            (
                "fleet = false\nhost = \"web1\"",
                (6, 8),
                "set store.fleet = true",
            ),
        ] {
            let err = parse(&format!(
                "[project]\nname = \"x\"\n[store]\nurl = \"/srv/fleet\"\n{store}\n"
            ))
            .unwrap_err();
            assert_eq!(err.location, Some(at), "{store}: {err}");
            assert!(err.message.contains(says), "{store}: {err}");
        }
        let err =
            parse("[project]\nname = \"x\"\n[store]\nfleet = true\nhost = \"h1\"\n").unwrap_err();
        assert_eq!(err.location, Some((4, 9)), "{err}");
        assert!(err.message.contains("needs store.url"), "{err}");
    }

    #[test]
    fn bad_s3_store_values_are_refused_at_the_value() {
        for (store, at, says) in [
            ("url = \"s3://B/x\"", (4, 7), "not an S3 bucket name"),
            (
                "url = \"s3://bucket/a//b\"",
                (4, 7),
                "not a usable key prefix",
            ),
            (
                "url = \"s3://bucket/p\"\nendpoint = \"127.0.0.1:9000\"",
                (5, 12),
                "not an http:// or https:// URL",
            ),
            (
                "url = \"s3://bucket/p\"\nregion = \"EU West\"",
                (5, 10),
                "not a region name",
            ),
            (
                "url = \"/srv/store\"\nregion = \"eu-west-1\"",
                (5, 10),
                "applies to a store on S3 only",
            ),
            (
                "endpoint = \"http://127.0.0.1:9000\"",
                (4, 12),
                "applies to a store on S3 only",
            ),
        ] {
            let err = parse(&format!("[project]\nname = \"x\"\n[store]\n{store}\n")).unwrap_err();
            assert_eq!(err.location, Some(at), "{store}: {err}");
            assert!(err.message.contains(says), "{store}: {err}");
        }
    }

    #[test]
    fn a_grant_containing_the_store_is_refused_at_the_grant() {
        // Read-write or read-only, directly or as a parent: a plugin that
        // sees the store can read every dump and delete the backups.
        for grant in ["/srv", "ro:/srv/rewind", "/srv/rewind/store/blobs/.."] {
            let text = format!(
                "[project]\nname = \"x\"\n[store]\nurl = \"file:///srv/rewind/store\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\ngrants.paths = [\"/opt/x\", \"{grant}\"]\n"
            );
            let err = parse(&text).unwrap_err();
            assert_eq!(err.location, Some((8, 27)), "{grant}: {err}");
            assert!(err.message.contains("contains the store"), "{err}");
        }
        // A sibling of the store is fine.
        let text = format!(
            "[project]\nname = \"x\"\n[store]\nurl = \"file:///srv/rewind/store\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\ngrants.paths = [\"/srv/app\"]\n"
        );
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn a_relative_path_grant_is_refused() {
        let text = format!(
            "[project]\nname = \"x\"\n[plugins.db]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\ngrants.paths = [\"srv/app\"]\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("must be absolute"), "{err}");
    }

    #[test]
    fn owner_and_setid_grants_are_parsed_and_a_bad_owner_points_at_itself() {
        let base = format!(
            "[project]\nname = \"x\"\n[plugins.files]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n"
        );
        let config = parse(&format!(
            "{base}grants.owners = [\"root:root\", \"33:33\"]\ngrants.setid = true\n"
        ))
        .unwrap();
        let grants = &config.instance("files").unwrap().grants;
        assert_eq!(grants.owners.len(), 2);
        assert_eq!(grants.owners[0].uid, Some(0));
        assert_eq!(grants.owners[1].gid, Some(33));
        assert!(grants.setid);
        let config = parse(&base).unwrap();
        let grants = &config.instance("files").unwrap().grants;
        assert!(grants.owners.is_empty() && !grants.setid);
        let err = parse(&format!(
            "{base}grants.owners = [\"0:0\", \"no-such-user-here:0\"]\n"
        ))
        .unwrap_err();
        assert_eq!(err.location, Some((6, 25)), "{err}");
        assert!(err.message.starts_with("grants.owners:"), "{err}");
        assert!(err.message.contains("no-such-user-here"), "{err}");
        let err = parse(&format!("{base}grants.setid = \"yes\"\n")).unwrap_err();
        assert_eq!(err.location.map(|l| l.0), Some(6), "{err}");
    }

    #[test]
    fn a_grant_containing_the_compile_cache_is_refused_at_the_grant() {
        let text = format!(
            "[project]\nname = \"x\"\n[plugins.web]\nsource = \"a.wasm\"\nsha256 = \"{PIN}\"\n\
             grants.paths = [\"/srv/app\", \"ro:/var/cache\"]\n"
        );
        let at = |cache: &str| {
            Config::parse_with_cache(
                Path::new("/etc/app/rewind.toml"),
                &text,
                Some(Path::new(cache)),
            )
        };
        let err = at("/var/cache/rewind/components").unwrap_err();
        assert_eq!(err.location, Some((6, 29)), "{err}");
        assert!(err.message.contains("`ro:/var/cache`"), "{err}");
        assert!(err.message.contains("instance `web`"), "{err}");
        assert!(err.message.contains("REWIND_CACHE_DIR"), "{err}");
        let err = at("/srv/app/../app/.cache").unwrap_err();
        assert_eq!(err.location, Some((6, 17)), "{err}");
        assert!(at("/var/lib/rewind/cache").is_ok());
        assert!(at("/srv/application").is_ok());
    }

    #[test]
    fn registry_sources_need_the_lock_and_trust_needs_keys() {
        let dir = std::env::temp_dir().join(format!("rewind-config-oci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rewind.toml");
        let at =
            |text: &str| Config::parse_with_cache(&path, text, Some(Path::new("/var/cache/rw")));
        let base = "[project]\nname = \"x\"\n[plugins.db]\n";
        let err = at(&format!(
            "{base}source = \"oci://r.example:5000/platform/pg:1.2.0\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.location, Some((4, 10)), "{err}");
        assert!(err.message.contains("rewind plugins lock"), "{err}");
        let err = at(&format!("{base}source = \"oci://r.example/pg\"\n")).unwrap_err();
        assert!(err.message.contains("neither a tag"), "{err}");
        let err = at(&format!(
            "{base}source = {{ oci = \"oci://r.example/pg:1\", digest = \"sha256:12\" }}\n"
        ))
        .unwrap_err();
        assert!(err.message.contains("64 hex digits"), "{err}");

        let wasm = format!("sha256:{}", "b".repeat(64));
        let lock = LockFile {
            version: rewind_registry::lock::LOCK_VERSION,
            plugins: vec![LockedPlugin {
                name: "platform/pg".into(),
                reference: "oci://r.example:5000/platform/pg:1.2.0".into(),
                version: "1.2.0".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                wasm: wasm.clone(),
            }],
        };
        lock.write(&LockFile::path_for(&path)).unwrap();
        let config = at(&format!(
            "{base}source = \"oci://r.example:5000/platform/pg:1.2.0\"\n"
        ))
        .unwrap();
        let db = &config.instances["db"];
        assert_eq!(db.sha256, "b".repeat(64));
        assert!(
            db.source
                .ends_with(format!("plugins/sha256/{}.wasm", "b".repeat(64))),
            "{:?}",
            db.source
        );
        let err = at(&format!(
            "{base}source = \"oci://r.example:5000/platform/pg:1.2.0\"\nsha256 = \"{PIN}\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.location, Some((5, 10)), "{err}");

        let err = at("[project]\nname = \"x\"\n[trust]\nrequire_signature = true\n").unwrap_err();
        assert_eq!(err.location, Some((4, 21)), "{err}");
        let err = at("[project]\nname = \"x\"\n[trust.keys]\nteam = \"RWnope\"\n").unwrap_err();
        assert_eq!(err.location, Some((4, 8)), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
