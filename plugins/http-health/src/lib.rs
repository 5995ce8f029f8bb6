//! rewind plugin `http-health`: GET a URL; healthy when the status is one of
//! the expected ones and the body contains the expected text.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rewind_sdk::http::Request;
use rewind_sdk::{
    Capabilities, Context, Health, HealthCheck, HealthReport, HealthStatus, Plugin, PluginInfo,
};
use serde::{Deserialize, Serialize};

rewind_sdk::params! {
    struct Params {
        /// The URL to GET
        url: String,
        /// Expected status, or a list of them
        expect_status: ExpectStatus = ExpectStatus::One(200),
        /// Text the body must contain
        body_contains: Option<String>,
        /// Timeout of each try
        timeout_ms: u64 = 5000,
        /// Extra tries after a failed one
        retries: u32 = 0,
        /// Pause between tries
        retry_delay_ms: u64 = 1000,
        /// Name of the check
        name: String = "http",
        /// Request headers (table)
        headers: BTreeMap<String, String> = BTreeMap::new(),
    }
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum ExpectStatus {
    One(u16),
    Any(Vec<u16>),
}

// A number or a list of numbers: the plugin checks which.
impl rewind_sdk::ParamType for ExpectStatus {
    const KIND: rewind_sdk::ParamKind = rewind_sdk::ParamKind::Any;
}

impl ExpectStatus {
    fn accepts(&self, status: u16) -> bool {
        match self {
            ExpectStatus::One(s) => *s == status,
            ExpectStatus::Any(list) => list.contains(&status),
        }
    }

    fn describe(&self) -> String {
        match self {
            ExpectStatus::One(s) => s.to_string(),
            ExpectStatus::Any(list) => list
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

struct HttpHealth;

impl Plugin for HttpHealth {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "http-health".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "GET a URL; check the status and, optionally, the body".into(),
            capabilities: Capabilities {
                http: vec!["<origin of params.url>".into()],
                ..Capabilities::default()
            },
            params: Params::specs(),
        }
    }
}

/// One try: Ok(detail) when healthy, Err(detail) when not.
fn try_once(params: &Params) -> Result<String, String> {
    let mut request = Request::get(&params.url).timeout(Duration::from_millis(params.timeout_ms));
    for (name, value) in &params.headers {
        request = request.header(name, value);
    }
    let response = request.send().map_err(|err| err.message())?;
    if !params.expect_status.accepts(response.status) {
        return Err(format!(
            "HTTP {}, expected {}",
            response.status,
            params.expect_status.describe()
        ));
    }
    if let Some(needle) = &params.body_contains
        && !response.text().contains(needle.as_str())
    {
        return Err(format!(
            "HTTP {}, but the body does not contain {needle:?}",
            response.status
        ));
    }
    Ok(format!("HTTP {}", response.status))
}

impl Health for HttpHealth {
    fn check(ctx: &Context) -> HealthReport {
        let params: Params = match ctx.params() {
            Ok(p) => p,
            Err(err) => {
                return HealthReport {
                    checks: vec![HealthCheck::new(
                        "http",
                        HealthStatus::Unhealthy,
                        err.message(),
                    )],
                };
            }
        };
        let started = Instant::now();
        let mut outcome = try_once(&params);
        let mut tries = 1;
        while outcome.is_err() && tries <= params.retries {
            std::thread::sleep(Duration::from_millis(params.retry_delay_ms));
            outcome = try_once(&params);
            tries += 1;
        }
        let latency_ms = started.elapsed().as_millis() as u64;
        let suffix = if tries > 1 {
            format!(" after {tries} tries")
        } else {
            String::new()
        };
        let (status, detail) = match outcome {
            Ok(detail) => (
                HealthStatus::Healthy,
                format!("{detail} in {latency_ms} ms{suffix}"),
            ),
            Err(detail) => (HealthStatus::Unhealthy, format!("{detail}{suffix}")),
        };
        let mut check = HealthCheck::new(&params.name, status, detail);
        check.latency_ms = latency_ms;
        HealthReport {
            checks: vec![check],
        }
    }
}

rewind_sdk::export_plugin!(HttpHealth: health);
