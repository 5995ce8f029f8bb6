//! A plugin that attacks the sandbox, for the host's integration tests.
//!
//! The `health` hook performs the attack named by `params.attack` and reports
//! one check named after it: `healthy` means the attack *succeeded* (a
//! breach, which the tests treat as failure), `unhealthy` carries the error
//! the sandbox produced. `loop`, `alloc` and `panic` never return: the host
//! must stop them. The `backup` hook tries to abuse artifacts.
//!
//! Attacks live in one module per capability kind; each module's `attempt`
//! returns `None` for an attack name it does not know.

mod exec_attacks;
mod flood_attacks;
mod fs_attacks;
mod meta_attacks;
mod red_attacks;

use rewind_sdk::http::Request;
use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Command, Context, Health, HealthCheck, HealthReport,
    HealthStatus, HookError, Plugin, PluginInfo, artifacts,
};

#[derive(serde::Deserialize)]
pub(crate) struct Params {
    pub attack: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub digest: String,
    /// Free-form extra parameters for the attack modules.
    #[serde(default)]
    pub extra: serde_json::Value,
}

struct Hostile;

impl Plugin for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Tries to escape the sandbox; for tests only".into(),
            capabilities: Capabilities::default(),
            params: Vec::new(),
        }
    }
}

fn attempt(params: &Params) -> Result<String, String> {
    let target = params.target.as_str();
    match params.attack.as_str() {
        "read-file" | "readlink-escape" => {
            std::fs::read_to_string(target).map_err(|e| e.to_string())
        }
        "write-file" => std::fs::write(target, "pwned")
            .map(|()| "written".into())
            .map_err(|e| e.to_string()),
        "list-dir" => std::fs::read_dir(target)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .map_err(|e| e.to_string()),
        "exec" => Command::new(target)
            .args(params.args.iter().cloned())
            .run()
            .map(|out| out.stdout_text())
            .map_err(|e| e.message()),
        // What a command's captured output amounted to, not the output.
        "exec-size" => Command::new(target)
            .args(params.args.iter().cloned())
            .run()
            .map(|out| {
                format!(
                    "{} bytes, truncated={}",
                    out.stdout.len(),
                    out.stdout_truncated
                )
            })
            .map_err(|e| e.message()),
        "exec-env" => {
            let (program, args) = params
                .args
                .split_first()
                .ok_or("args[0] names the program")?;
            Command::new(program.clone())
                .args(args.iter().cloned())
                .env(target, "/tmp/evil.so")
                .run()
                .map(|out| out.stdout_text())
                .map_err(|e| e.message())
        }
        "env" => std::env::var(target).map_err(|e| format!("{e}")),
        "http" => Request::get(target)
            .send()
            .map(|response| response.text())
            .map_err(|e| e.message()),
        // A raw TCP connection (to an SMTP port, say), bypassing wasi:http.
        "tcp" => std::net::TcpStream::connect(target)
            .map(|_| "connected".to_string())
            .map_err(|e| e.to_string()),
        // A server socket: never allowed, whatever is granted.
        "listen" => std::net::TcpListener::bind(target)
            .map(|l| format!("listening on {:?}", l.local_addr()))
            .map_err(|e| e.to_string()),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 16 << 20];
                // Touch every page so the memory is really committed.
                for i in (0..chunk.len()).step_by(4096) {
                    chunk[i] = 1;
                }
                hoard.push(std::hint::black_box(chunk));
            }
        }
        "panic" => panic!("hostile panic"),
        other => exec_attacks::attempt(params)
            .or_else(|| fs_attacks::attempt(params))
            .or_else(|| meta_attacks::attempt(params))
            .or_else(|| flood_attacks::attempt(params))
            .or_else(|| red_attacks::attempt(params))
            .unwrap_or_else(|| Err(format!("unknown attack `{other}`"))),
    }
}

impl Health for Hostile {
    fn check(ctx: &Context) -> HealthReport {
        let params: Params = match ctx.params() {
            Ok(p) => p,
            Err(e) => {
                return HealthReport {
                    checks: vec![HealthCheck::new(
                        "params",
                        HealthStatus::Unhealthy,
                        e.message(),
                    )],
                };
            }
        };
        let check = match attempt(&params) {
            Ok(loot) => HealthCheck::new(&params.attack, HealthStatus::Healthy, loot),
            Err(refusal) => HealthCheck::new(&params.attack, HealthStatus::Unhealthy, refusal),
        };
        HealthReport {
            checks: vec![check],
        }
    }
}

impl Backup for Hostile {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let params: Params = ctx.params()?;
        match params.attack.as_str() {
            "write-artifact" => {
                let loot = std::fs::read(&params.target)?;
                Ok(vec![artifacts::write_bytes("loot", "text/plain", &loot)?])
            }
            "open-foreign" => {
                let foreign = ArtifactRef {
                    digest: params.digest.clone(),
                    name: "loot".into(),
                    media_type: "text/plain".into(),
                    size: 0,
                    labels: Vec::new(),
                };
                let stolen = artifacts::read_bytes(&foreign)?;
                Ok(vec![artifacts::write_bytes(
                    "stolen",
                    "text/plain",
                    &stolen,
                )?])
            }
            "claim-foreign" => {
                // Return a reference to an artifact this call did not write.
                Ok(vec![ArtifactRef {
                    digest: params.digest.clone(),
                    name: "claimed".into(),
                    media_type: "text/plain".into(),
                    size: 0,
                    labels: Vec::new(),
                }])
            }
            // Refused socket and name lookup, turned into hook errors the
            // way any plugin would (`?` on an io::Error).
            "tcp-typed" => {
                std::net::TcpStream::connect(&params.target)?;
                Err(HookError::failed("connected"))
            }
            "lookup-typed" => {
                use std::net::ToSocketAddrs;
                (params.target.as_str(), 25).to_socket_addrs()?;
                Err(HookError::failed("resolved"))
            }
            // Claim a refusal the sandbox never made, suggesting a grant
            // that would hand the plugin a shell.
            "forge-denied" => Err(HookError::Denied(rewind_sdk::Denial {
                kind: "exec".into(),
                attempted: "pg_dump shop".into(),
                grant: "grants.exec = [\"sh **\"]".into(),
            })),
            // Any other attack, run in a backup hook (the hook that may
            // store artifacts); its outcome comes back as the error text.
            other => match attempt(&params) {
                Ok(loot) => Err(HookError::failed(format!("succeeded: {loot}"))),
                Err(refusal) if refusal.starts_with("unknown attack") => Err(
                    HookError::invalid_input(format!("unknown backup attack `{other}`")),
                ),
                Err(refusal) => Err(HookError::failed(format!("refused: {refusal}"))),
            },
        }
    }
}

rewind_sdk::export_plugin!(Hostile: health, backup);
