//! rewind plugin `webhook`: POSTs each event as JSON. With a secret, the
//! body is signed with HMAC-SHA256 and the signature sent as
//! `X-Rewind-Signature: sha256=<hex>`, so a receiver can check that the
//! event came from rewind and was not changed on the way (compute the HMAC
//! of the raw body with the shared secret, compare in constant time).

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rewind_sdk::http::Request;
use rewind_sdk::{Capabilities, Context, Event, HookError, Notify, Plugin, PluginInfo};
use sha2::Sha256;

rewind_sdk::params! {
    struct Params {
        /// Where to POST the event
        url: String,
        /// A granted env var holding the HMAC secret
        secret_env: Option<String>,
        /// Header carrying the signature
        signature_header: String = "X-Rewind-Signature",
        /// Extra request headers
        headers: BTreeMap<String, String> = BTreeMap::new(),
        /// Per-request timeout
        timeout_ms: u64 = 5000,
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Webhook;

impl Plugin for Webhook {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "POSTs rewind events as JSON, signed with HMAC-SHA256".into(),
            capabilities: Capabilities {
                http: vec!["<origin of params.url>".into()],
                env: vec!["<params.secret_env>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

impl Notify for Webhook {
    fn notify(ctx: &Context, event: &Event) -> Result<(), HookError> {
        let params: Params = ctx.params()?;
        let body = serde_json::to_vec(&event.to_json())
            .map_err(|err| HookError::failed(format!("encoding the event: {err}")))?;
        let mut request = Request::post(&params.url)
            .header("content-type", "application/json")
            .header("x-rewind-event", event.kind_name())
            .timeout(Duration::from_millis(params.timeout_ms));
        for (name, value) in &params.headers {
            request = request.header(name, value);
        }
        if let Some(var) = &params.secret_env {
            let secret = rewind_sdk::secret_from_env(var)?;
            request = request.header(
                &params.signature_header,
                &signature(secret.as_bytes(), &body),
            );
        }
        let response = request.body(body).send()?;
        if !(200..300).contains(&response.status) {
            return Err(HookError::failed(format!(
                "{} answered HTTP {}: {}",
                params.url,
                response.status,
                response.text().chars().take(200).collect::<String>()
            )));
        }
        Ok(())
    }
}

rewind_sdk::export_plugin!(Webhook: notify);
