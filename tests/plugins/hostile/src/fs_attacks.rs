//! Attacks on WASI filesystem: links that leave the grants, nested grants, paths outside every grant, name lookups.

use crate::Params;

/// Run the attack named by `params.attack`, or `None` if this module does
/// not know it. `Ok` carries what leaked (a breach), `Err` the refusal.
pub(crate) fn attempt(params: &Params) -> Option<Result<String, String>> {
    let _ = params;
    None
}
