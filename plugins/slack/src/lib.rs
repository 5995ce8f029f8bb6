//! rewind plugin `slack`: posts each event to a Slack incoming webhook,
//! coloured by outcome (green: success; yellow: rolled back or a warning;
//! red: an error or a failed rollback), with what an on-call engineer needs
//! to act: project, environment, run, release or commit, duration and the
//! failing step.

use std::time::Duration;

use rewind_sdk::http::Request;
use rewind_sdk::{Capabilities, Context, Event, EventKind, HookError, Notify, Plugin, PluginInfo};
use serde_json::json;

rewind_sdk::params! {
    struct Params {
        /// The incoming-webhook URL
        // It is a secret: prefer `webhook_url_env`.
        webhook_url: Option<String>,
        /// A granted env var holding the URL (keeps it out of rewind.toml)
        webhook_url_env: Option<String>,
        /// Sender name
        username: String = "rewind",
        /// Per-request timeout
        timeout_ms: u64 = 5000,
    }
}

impl Params {
    fn url(&self) -> Result<String, HookError> {
        if let Some(url) = &self.webhook_url {
            return Ok(url.clone());
        }
        let Some(var) = &self.webhook_url_env else {
            return Err(HookError::invalid_input(
                "set params.webhook_url, or params.webhook_url_env naming a granted variable",
            ));
        };
        rewind_sdk::secret_from_env(var)
    }
}

/// Slack attachment colours: green, yellow, red; blue for information.
fn colour(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Success => "#2eb67d",
        EventKind::RollbackSuccess | EventKind::Warning => "#ecb22e",
        EventKind::Error | EventKind::RollbackFailed => "#e01e5a",
        EventKind::Info => "#36c5f0",
    }
}

fn payload(event: &Event, username: &str) -> serde_json::Value {
    let mut fields = vec![
        json!({ "title": "Project", "value": event.project, "short": true }),
        json!({ "title": "Environment", "value": event.environment, "short": true }),
        json!({ "title": "Run", "value": event.run_id, "short": true }),
    ];
    for (key, title) in [
        ("release", "Release"),
        ("commit", "Commit"),
        ("source_run", "Restored backup"),
        ("failed_step", "Failing step"),
    ] {
        if let Some(value) = event.field(key) {
            fields.push(json!({ "title": title, "value": value, "short": true }));
        }
    }
    if let Some(ms) = event
        .field("duration_ms")
        .and_then(|v| v.parse::<u64>().ok())
    {
        fields.push(json!({
            "title": "Duration",
            "value": format!("{:.1} s", ms as f64 / 1000.0),
            "short": true,
        }));
    }
    let headline = format!(
        "[{}] {} — {} ({})",
        event.kind_name(),
        event.title,
        event.project,
        event.environment
    );
    json!({
        "username": username,
        "text": headline,
        "attachments": [{
            "color": colour(event.kind),
            "fallback": headline,
            "title": event.title,
            "text": event.message,
            "fields": fields,
            "ts": event.timestamp,
        }],
    })
}

struct Slack;

impl Plugin for Slack {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "slack".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Posts rewind events to a Slack incoming webhook".into(),
            capabilities: Capabilities {
                http: vec!["https://hooks.slack.com".into()],
                env: vec!["<params.webhook_url_env>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Notify for Slack {
    fn notify(ctx: &Context, event: &Event) -> Result<(), HookError> {
        let params: Params = ctx.params()?;
        let url = params.url()?;
        let response = Request::post(&url)
            .json(&payload(event, &params.username))?
            .timeout(Duration::from_millis(params.timeout_ms))
            .send()?;
        if !(200..300).contains(&response.status) {
            return Err(HookError::failed(format!(
                "Slack answered HTTP {}: {}",
                response.status,
                response.text().chars().take(200).collect::<String>()
            )));
        }
        Ok(())
    }
}

rewind_sdk::export_plugin!(Slack: notify);
