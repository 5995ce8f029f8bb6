//! A plugin whose `describe` waits in a host call (a WASI sleep) for an
//! hour, for the test that `plugins inspect` and `check` do not hang on it.

use rewind_sdk::{Capabilities, Context, Health, HealthReport, Plugin, PluginInfo};

struct Sleepy;

impl Plugin for Sleepy {
    fn info() -> PluginInfo {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        PluginInfo {
            name: "sleepy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Never finishes describing itself; for tests only".into(),
            capabilities: Capabilities::default(),
            params: Vec::new(),
        }
    }
}

impl Health for Sleepy {
    fn check(_ctx: &Context) -> HealthReport {
        HealthReport { checks: Vec::new() }
    }
}

rewind_sdk::export_plugin!(Sleepy: health);
