//! A plugin that makes the host hold what it can: `backup` creates
//! `count` artifacts and writes `size` bytes to each without finishing
//! any; `restore` opens the artifact it is given `count` times at once.
//! Each open artifact holds host memory (buffers, chunk threads) that the
//! guest's memory limit does not count. For the tests of
//! `bounded::MAX_OPEN_ARTIFACTS` (host/tests/integration/hostile_shared.rs).

use std::io::Write as _;

use rewind_sdk::artifacts::{Reader, Writer};
use rewind_sdk::{
    ArtifactRef, Backup, Capabilities, Context, HookError, Plugin, PluginInfo, Report, Restore,
};

struct Hoarder;

fn param(ctx: &Context, key: &str, default: u64) -> u64 {
    ctx.params::<serde_json::Value>()
        .ok()
        .and_then(|p| p.get(key).and_then(|v| v.as_u64()))
        .unwrap_or(default)
}

/// `held N open`, and why the next one was refused if it was.
fn outcome(held: usize, refused: Option<HookError>) -> HookError {
    HookError::InvalidInput(match refused {
        Some(err) => format!("held {held} open; then: {}", err.message()),
        None => format!("held {held} open"),
    })
}

impl Plugin for Hoarder {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hoarder".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Holds artifacts open; for tests only".into(),
            capabilities: Capabilities::default(),
            params: Vec::new(),
        }
    }
}

impl Backup for Hoarder {
    fn backup(ctx: &Context) -> Result<Vec<ArtifactRef>, HookError> {
        let (count, size) = (param(ctx, "count", 1), param(ctx, "size", 1024));
        if count == 1 {
            let mut one = Writer::create("held", "application/octet-stream")?;
            one.write_all(&vec![7u8; size as usize])?;
            return Ok(vec![one.finish()?]);
        }
        let mut held = Vec::new();
        let chunk: Vec<u8> = (0..size).map(|i| ((i * 2654435761) >> 13) as u8).collect();
        for i in 0..count {
            match Writer::create(&format!("held{i}"), "application/octet-stream") {
                Ok(mut writer) => {
                    writer.write_all(&chunk)?;
                    held.push(writer);
                }
                Err(err) => return Err(outcome(held.len(), Some(err))),
            }
        }
        Err(outcome(held.len(), None))
    }
}

impl Restore for Hoarder {
    fn restore(ctx: &Context, artifacts: &[ArtifactRef]) -> Result<Report, HookError> {
        let count = param(ctx, "count", 1);
        let artifact = artifacts
            .first()
            .ok_or_else(|| HookError::InvalidInput("no artifact".into()))?;
        let mut held = Vec::new();
        for _ in 0..count {
            match Reader::open(artifact) {
                Ok(reader) => held.push(reader),
                Err(err) => return Err(outcome(held.len(), Some(err))),
            }
        }
        // Dropping them frees their places: one more opens.
        drop(held);
        Reader::open(artifact)?;
        Err(outcome(count as usize, None))
    }
}

rewind_sdk::export_plugin!(Hoarder: backup, restore);
