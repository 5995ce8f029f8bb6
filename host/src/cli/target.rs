//! What a `<PLUGIN>` argument names: a .wasm file run with grants from the
//! command line, or an instance from the config.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rewind::config::Config;
use rewind::grants::{GrantTexts, Grants};
use rewind::sandbox::{Limits, SandboxSpec};

use super::{AdHocArgs, Cli};

/// A plugin ready to load and call.
pub struct PluginTarget {
    pub source: PathBuf,
    pub pin: Option<String>,
    pub spec: SandboxSpec,
    pub params: serde_json::Value,
    pub project: String,
    pub environment: String,
    /// The config it came from, when it is an instance.
    pub config: Option<Config>,
}

/// Does the argument name a file rather than an instance?
pub fn is_file_argument(arg: &str) -> bool {
    arg.ends_with(".wasm") || arg.contains('/') || Path::new(arg).is_file()
}

pub fn resolve(cli: &Cli, arg: &str, adhoc: &AdHocArgs) -> Result<PluginTarget> {
    if is_file_argument(arg) {
        return from_file(arg, adhoc);
    }
    let config = Config::load(&cli.config)?;
    let instance = config.instance(arg)?.clone();
    rewind::run::source::prepare(&config, &instance)?;
    if adhoc.has_any() {
        bail!(
            "`{arg}` is an instance of {}: its params, grants and limits come from there; \
             the --param/--grant-*/--sha256/--memory-mb/--timeout-s options are for .wasm files",
            config.path.display()
        );
    }
    Ok(PluginTarget {
        source: instance.source.clone(),
        pin: Some(instance.sha256.clone()),
        spec: instance.sandbox_spec(),
        params: instance.params.clone(),
        project: config.project.clone(),
        environment: config.environment.clone(),
        config: Some(config),
    })
}

impl AdHocArgs {
    fn has_any(&self) -> bool {
        self.sha256.is_some()
            || self.params.is_some()
            || !self.param.is_empty()
            || !self.grant_path.is_empty()
            || !self.grant_exec.is_empty()
            || !self.grant_env.is_empty()
            || !self.grant_http.is_empty()
            || !self.grant_tcp.is_empty()
            || !self.grant_owner.is_empty()
            || self.grant_setid
            || self.memory_mb.is_some()
            || self.timeout_s.is_some()
    }
}

fn from_file(arg: &str, adhoc: &AdHocArgs) -> Result<PluginTarget> {
    let source = PathBuf::from(arg);
    let instance = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());

    // Relative --grant-path values are taken against the working directory.
    let paths = adhoc
        .grant_path
        .iter()
        .map(|text| absolutize(text))
        .collect::<Result<Vec<_>>>()?;
    let written = GrantTexts {
        exec: adhoc.grant_exec.clone(),
        paths,
        env: adhoc.grant_env.clone(),
        http: adhoc.grant_http.clone(),
        tcp: adhoc.grant_tcp.clone(),
        owners: adhoc.grant_owner.clone(),
        setid: adhoc.grant_setid,
    };
    let texts = written.map(String::as_str);
    let grants = Grants::from_texts(&texts).map_err(|err| {
        let value = texts.get(err.key)[err.index];
        anyhow::anyhow!("{} {value}: {}", err.key.flag(), err.message)
    })?;
    let mut limits = Limits::default();
    if let Some(mb) = adhoc.memory_mb {
        limits.memory_bytes = mb << 20;
    }
    if let Some(s) = adhoc.timeout_s {
        limits.timeout = Duration::from_secs(s);
    }

    Ok(PluginTarget {
        source,
        pin: adhoc.sha256.clone(),
        spec: SandboxSpec {
            instance,
            grants: Arc::new(grants),
            limits,
        },
        params: params(adhoc)?,
        project: "adhoc".into(),
        environment: "development".into(),
        config: None,
    })
}

/// Make a --grant-path absolute against the working directory, keeping `ro:`.
fn absolutize(text: &str) -> Result<String> {
    let (prefix, raw) = match text.strip_prefix("ro:") {
        Some(rest) => ("ro:", rest),
        None => ("", text.strip_prefix("rw:").unwrap_or(text)),
    };
    let path = Path::new(raw);
    if path.is_absolute() {
        return Ok(text.to_string());
    }
    let cwd = std::env::current_dir().context("reading the working directory")?;
    Ok(format!("{prefix}{}", cwd.join(path).display()))
}

fn params(adhoc: &AdHocArgs) -> Result<serde_json::Value> {
    let mut object = match &adhoc.params {
        Some(text) => match serde_json::from_str(text)
            .with_context(|| format!("--params is not valid JSON: {text}"))?
        {
            serde_json::Value::Object(map) => map,
            _ => bail!("--params must be a JSON object, e.g. '{{\"url\": \"http://127.0.0.1/\"}}'"),
        },
        None => serde_json::Map::new(),
    };
    for pair in &adhoc.param {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--param `{pair}` must be KEY=VALUE");
        };
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        object.insert(key.to_string(), value);
    }
    Ok(serde_json::Value::Object(object))
}
