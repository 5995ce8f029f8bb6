//! Attacks on commands: programs a plugin can write, PATH, links followed by commands, processes that outlive their command, working-directory races, ro grants and commands.

use crate::Params;

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let _ = params;
    None
}
