//! Helpers on [`Event`], for notify plugins.

use crate::{Event, EventKind};

impl Event {
    /// The kind as the runbooks write it: `ROLLBACK_SUCCESS`, `ERROR`, …
    /// (the WIT `event-kind` case in upper case, like the host's event log).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of `enum event-kind` in the WIT, in order, as event names.
    fn wit_event_kinds() -> Vec<String> {
        crate::wit_enum_cases("event-kind")
            .iter()
            .map(|case| case.to_uppercase().replace('-', "_"))
            .collect()
    }

    #[test]
    fn kind_names_are_the_wit_case_names() {
        let all = [
            EventKind::Info,
            EventKind::Success,
            EventKind::Warning,
            EventKind::Error,
            EventKind::RollbackSuccess,
            EventKind::RollbackFailed,
        ];
        let names: Vec<&str> = all
            .into_iter()
            .map(|kind| event_with(kind).kind_name())
            .collect();
        assert_eq!(names, wit_event_kinds());
    }

    fn event_with(kind: EventKind) -> Event {
        Event {
            kind,
            title: String::new(),
            message: String::new(),
            run_id: String::new(),
            project: String::new(),
            environment: String::new(),
            timestamp: String::new(),
            fields: Vec::new(),
        }
    }
}
