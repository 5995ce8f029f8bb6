//! Helpers on [`Event`], for notify plugins.

use crate::{Event, EventKind};

impl Event {
    /// The kind as the runbooks write it: `ROLLBACK_SUCCESS`, `ERROR`, …
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            EventKind::Info => "INFO",
            EventKind::Success => "SUCCESS",
            EventKind::Warning => "WARNING",
            EventKind::Error => "ERROR",
            EventKind::RollbackSuccess => "ROLLBACK_SUCCESS",
            EventKind::RollbackFailed => "ROLLBACK_FAILED",
        }
    }

    /// One of the structured fields (`duration_ms`, `failed_step`,
    /// `release`, `commit`, `source_run`, …).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The event as one JSON object, fields as an object: what webhook
    /// receivers get.
    pub fn to_json(&self) -> serde_json::Value {
        let fields: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "kind": self.kind_name(),
            "title": self.title,
            "message": self.message,
            "run_id": self.run_id,
            "project": self.project,
            "environment": self.environment,
            "timestamp": self.timestamp,
            "fields": fields,
        })
    }
}
