//! Sharing plugins: `plugins push`, `plugins lock`, `plugins sign`,
//! `plugins keygen` (registry, lock and signature code is
//! `rewind-registry`'s; this parses, calls and prints).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use rewind::exit::ExitCode;
use rewind::registry::cache::signature_path;
use rewind::registry::{LockFile, OciReference, PluginCache, Registry};

use super::{Cli, Result, print_json};

pub const PUSH_AFTER_HELP: &str = "\
Credentials: $REWIND_REGISTRY_USERNAME and $REWIND_REGISTRY_PASSWORD, or
$REWIND_REGISTRY_TOKEN, else the registry's entry in docker's config.json
($DOCKER_CONFIG/config.json or ~/.docker/config.json, as `docker login` writes
it), else anonymous. Plain HTTP only for a registry on loopback.

Examples:
  rewind plugins push target/wasm32-wasip2/release/greeting.wasm \\
      oci://registry.example:5000/platform/greeting:0.1.0 --sign platform.key
  docker login registry.example:5000 && rewind plugins push greeting.wasm \\
      oci://registry.example:5000/platform/greeting:0.1.1";

pub const SIGN_AFTER_HELP: &str = "\
Examples:
  rewind plugins sign --key platform.key greeting.wasm      # writes greeting.wasm.minisig
  rewind plugins sign --key platform.key oci://registry.example:5000/platform/greeting:0.1.0";

pub const KEYGEN_AFTER_HELP: &str = "\
Examples:
  rewind plugins keygen platform     # platform.key, platform.pub; prints the [trust.keys] line";

pub const LOCK_AFTER_HELP: &str = "\
Resolves every oci:// plugin source of the config that rewind.lock does not pin
yet to digests (the manifest and its one application/wasm layer), keeps the
entries that are already locked, drops those no instance uses any more, writes
rewind.lock beside the config and pulls each plugin into the plugin cache.
Every other command uses only the lock: a tag moved on the registry changes
nothing until `rewind plugins update` takes it on purpose.

Examples:
  rewind plugins lock
  rewind --config prod.toml plugins lock --json   # writes prod.lock";

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component (.wasm) to publish.
    pub file: PathBuf,
    /// Where: oci://registry.example:5000/team/plugin:1.2.0
    pub reference: String,
    /// Also sign it with this minisign secret key (NAME.key) and push the signature.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The minisign secret key (NAME.key from `rewind plugins keygen`); an encrypted
    /// key's password is read from $REWIND_SIGNING_PASSWORD.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// A .wasm file (the signature is written to FILE.minisig) or an oci:// reference
    /// (the signature is pushed beside it, tagged sha256-<manifest hex>.sig).
    pub plugin: String,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Writes NAME.key (the secret key, mode 0600, not password-protected) and NAME.pub.
    pub name: PathBuf,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn parse_reference(text: &str) -> anyhow::Result<OciReference> {
    Ok(OciReference::parse(text)?)
}

fn sign_bytes(key: &Path, bytes: &[u8], what: &str) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(key)
        .with_context(|| format!("cannot read the secret key {}", key.display()))?;
    let password = std::env::var("REWIND_SIGNING_PASSWORD").ok();
    let comment = format!(
        "rewind plugin {what} component sha256:{}",
        rewind::plugin::sha256_hex(bytes)
    );
    rewind::registry::sign::sign(&secret, password, bytes, &comment)
        .with_context(|| format!("cannot sign with {}", key.display()))
}

/// `rewind plugins push FILE oci://…`.
pub fn push(args: &PushArgs) -> Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    if reference.digest.is_some() || reference.tag.is_none() {
        fail!(
            "push to a tag (oci://registry/repository:1.2.0): the registry gives the digest; got {}",
            args.reference
        );
    }
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let signature = match &args.sign {
        Some(key) => Some(sign_bytes(key, &wasm, &reference.to_string())?),
        None => None,
    };
    let registry = Registry::for_reference(&reference)?;
    let pushed = registry.push(&reference, wasm)?;
    println!("pushed {}", reference);
    println!("  manifest {}", pushed.digest);
    println!("  component {}", pushed.wasm);
    if let Some(signature) = signature {
        registry.push_signature(&reference, &pushed.digest, &signature)?;
        println!(
            "  signature {}",
            reference.with_tag(&Registry::signature_tag(&pushed.digest))
        );
    }
    Ok(ExitCode::Ok)
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Only this plugin: an instance name of the config, or a locked repository
    /// (`platform/postgres`). Default: every oci:// source.
    pub name: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub const UPDATE_AFTER_HELP: &str = "\
Re-resolves the tags of oci:// sources on purpose (all of them, or NAME's) and
writes the new digests to rewind.lock, printing each change as old -> new digest.
This is the only command that takes a moved tag; `rewind plugins lock` keeps what
is locked.

Examples:
  rewind plugins update              # every oci:// source
  rewind plugins update db           # the instance `db` (or every instance of its reference)
  rewind plugins update --json";

/// `rewind plugins lock` (`update: None`): lock what is not locked yet,
/// keep what is, drop what no instance uses. `rewind plugins update
/// [NAME]` (`update: Some(name)`): also re-resolve the tags of every
/// source (or NAME's), so a moved tag is taken on purpose.
pub fn lock(cli: &Cli, json: bool, update: Option<Option<&str>>) -> Result<ExitCode> {
    let config = rewind::config::Config::load_unlocked(&cli.config)?;
    let old = LockFile::read(&config.lock_path)?.unwrap_or_default();
    let cache = PluginCache::default_dir(rewind::engine::Runtime::default_cache_dir().as_deref())
        .map(PluginCache::new);
    if let Some(Some(name)) = update {
        let known = config.instances.values().any(|i| {
            i.oci
                .as_ref()
                .is_some_and(|oci| i.name == name || oci.reference.repository == name)
        });
        if !known {
            let oci: Vec<&str> = config
                .instances
                .values()
                .filter(|i| i.oci.is_some())
                .map(|i| i.name.as_str())
                .collect();
            fail!(
                "`{name}` is neither an instance with an oci:// source in {} nor a repository \
                 one uses; instances from registries: {}",
                config.path.display(),
                if oci.is_empty() {
                    "none".to_string()
                } else {
                    oci.join(", ")
                }
            );
        }
    }
    // The references to re-resolve: a lock entry is per reference, so
    // updating one instance updates every instance that names the same one.
    let wanted: std::collections::BTreeSet<String> = config
        .instances
        .values()
        .filter_map(|i| i.oci.as_ref().map(|oci| (i, oci)))
        .filter(|(i, oci)| match update {
            None => false,
            Some(None) => true,
            Some(Some(name)) => i.name == name || oci.reference.repository == name,
        })
        .map(|(_, oci)| oci.reference.to_string())
        .collect();
    let mut new = LockFile::default();
    for instance in config.instances.values() {
        let Some(oci) = &instance.oci else { continue };
        let key = oci.reference.to_string();
        if new.get(&key).is_some() {
            continue;
        }
        let wanted = wanted.contains(&key);
        // A kept entry already in the cache needs no registry at all.
        let mut registry: Option<Registry> = None;
        let locked = match old.get(&key) {
            Some(kept) if !wanted => kept.clone(),
            _ => {
                let client = Registry::for_reference(&oci.reference)?;
                let locked = client.resolve(&oci.reference, &key)?;
                registry = Some(client);
                locked
            }
        };
        if let Some(cache) = &cache
            && !cache.wasm_path(&locked.wasm).is_file()
        {
            let client = match registry {
                Some(client) => client,
                None => Registry::for_reference(&oci.reference)?,
            };
            client.pull(&oci.reference, &locked, cache)?;
        }
        new.plugins.push(locked);
    }
    new.write(&config.lock_path)?;
    let changes = new.changes_from(&old);
    if json {
        let digests = |p: &rewind::registry::LockedPlugin| serde_json::json!({ "version": p.version, "digest": p.digest, "wasm": p.wasm });
        let rows: Vec<_> = changes
            .iter()
            .map(|c| {
                use rewind::registry::LockChange as C;
                let (kind, reference, old, new) = match c {
                    C::Added(p) => ("added", &p.reference, None, Some(digests(p))),
                    C::Changed { old, new } => (
                        "moved",
                        &new.reference,
                        Some(digests(old)),
                        Some(digests(new)),
                    ),
                    C::Unchanged(p) => (
                        "unchanged",
                        &p.reference,
                        Some(digests(p)),
                        Some(digests(p)),
                    ),
                    C::Removed(p) => ("removed", &p.reference, Some(digests(p)), None),
                };
                serde_json::json!({
                    "change": kind, "reference": reference, "old": old, "new": new,
                    "text": c.to_string(),
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "lock": config.lock_path,
            "changes": rows,
            "plugins": new.plugins.iter().map(|p| serde_json::json!({
                "name": p.name, "reference": p.reference, "version": p.version,
                "digest": p.digest, "wasm": p.wasm,
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::Ok);
    }
    let changed = changes.iter().filter(|c| c.is_change()).count();
    println!(
        "{}: {} plugin(s) locked, {changed} change(s)",
        config.lock_path.display(),
        new.plugins.len()
    );
    for change in &changes {
        println!("  {change}");
    }
    Ok(ExitCode::Ok)
}

/// `rewind plugins sign --key KEY (FILE | oci://…)`.
pub fn sign(args: &SignArgs) -> Result<ExitCode> {
    if OciReference::is_oci(&args.plugin) {
        let reference = parse_reference(&args.plugin)?;
        let registry = Registry::for_reference(&reference)?;
        let (locked, wasm) = registry.fetch_component(&reference)?;
        let signature = sign_bytes(&args.key, &wasm, &reference.to_string())?;
        registry.push_signature(&reference, &locked.digest, &signature)?;
        println!(
            "signed {} (manifest {}, component {})",
            reference, locked.digest, locked.wasm
        );
        println!(
            "  signature {}",
            reference.with_tag(&Registry::signature_tag(&locked.digest))
        );
    } else {
        let file = PathBuf::from(&args.plugin);
        let wasm =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let what = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let signature = sign_bytes(&args.key, &wasm, &what)?;
        let out = signature_path(&file);
        std::fs::write(&out, signature)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("signed {} -> {}", file.display(), out.display());
    }
    Ok(ExitCode::Ok)
}

/// `rewind plugins keygen NAME`.
pub fn keygen(args: &KeygenArgs) -> Result<ExitCode> {
    let (secret, public, id) = rewind::registry::sign::generate_keypair()?;
    let key_path = with_suffix(&args.name, ".key");
    let pub_path = with_suffix(&args.name, ".pub");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("cannot create {} (it must not exist)", key_path.display()))?;
    file.write_all(secret.as_bytes())?;
    std::fs::write(&pub_path, &public)
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    let line = public.lines().last().unwrap_or_default().trim().to_string();
    let name = args
        .name
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "team".into());
    println!("secret key {} (keep it secret)", key_path.display());
    println!("public key {} (key id {id})", pub_path.display());
    println!(
        "trust it in rewind.toml:\n\n[trust]\nrequire_signature = true\n[trust.keys]\n{name} = \"{line}\""
    );
    Ok(ExitCode::Ok)
}
