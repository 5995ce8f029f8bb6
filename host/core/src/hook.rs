//! The hooks a plugin can export besides `describe`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The five hook kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    /// Save what a rollback needs, as artifacts.
    Backup,
    /// Put back the state an artifact holds.
    Restore,
    /// Undo a deploy (switch a release back) from backup artifacts.
    Revert,
    /// Report whether the application is healthy.
    Health,
    /// Deliver an event to people.
    Notify,
}

impl HookKind {
    /// Every hook kind, in the order runs and messages list them.
    pub const ALL: [HookKind; 5] = [
        HookKind::Backup,
        HookKind::Restore,
        HookKind::Revert,
        HookKind::Health,
        HookKind::Notify,
    ];

    /// The name, as in the WIT interface and `rewind hook <plugin> <hook>`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Backup => "backup",
            HookKind::Restore => "restore",
            HookKind::Revert => "revert",
            HookKind::Health => "health",
            HookKind::Notify => "notify",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        HookKind::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown hook `{s}`; expected one of: backup, restore, revert, health, notify"
                )
            })
    }
}
