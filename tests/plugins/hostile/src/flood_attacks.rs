//! Attacks on what a guest makes the host hold or wait for: log floods, cut characters, blocking host calls, artifact quotas, terminal escapes.

use crate::Params;

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let _ = params;
    None
}
